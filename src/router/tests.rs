//! SQL -> route, as a table. Each row is a statement an application sends
//! and where it must (or may) run.

use super::*;

fn policy() -> FunctionPolicy {
    let mut p = FunctionPolicy::new(["reporting.safe_total".to_owned()]);
    p.load_catalog([
        ("public", "my_stable", 's'),
        ("public", "my_writer", 'v'),
        // As pg_proc has them: the reviewed lists must win.
        ("pg_catalog", "pg_database_size", 'v'),
        ("pg_catalog", "random", 'v'),
        ("pg_catalog", "txid_current_if_assigned", 's'),
        ("pg_catalog", "pg_is_wal_replay_paused", 'v'),
        ("pg_catalog", "setseed", 'v'),
        ("pg_catalog", "pg_wal_replay_pause", 'v'),
        ("pg_catalog", "pg_notification_queue_usage", 'v'),
        ("public", "uuid_generate_v4", 'v'),
        ("pg_catalog", "json_to_record", 's'),
    ]);
    p.load_views([("public", "audited_v")]);
    p
}

fn check(rows: &[(&str, Route)]) {
    let p = policy();
    for (sql, want) in rows {
        let d = route(sql, &p).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(d.route, *want, "{sql}: got {d:?}");
    }
}

#[test]
fn reads_go_to_replicas() {
    use Route::Replica as R;
    check(&[
        ("SELECT 1", R),
        ("select * from accounts where id = $1", R),
        (
            "SELECT count(*), max(balance) FROM accounts GROUP BY branch",
            R,
        ),
        ("VALUES (1), (2)", R),
        ("TABLE accounts", R),
        ("SHOW search_path", R),
        ("EXPLAIN SELECT * FROM accounts", R),
        ("EXPLAIN ANALYZE SELECT * FROM accounts", R),
        ("SELECT * FROM plain_v", R),
        ("COPY accounts TO STDOUT", R),
        ("COPY (SELECT id FROM accounts) TO STDOUT", R),
        (
            "SELECT random(), now(), gen_random_uuid(), clock_timestamp()",
            R,
        ),
        ("SELECT my_stable(id) FROM t", R),
        ("SELECT reporting.safe_total()", R),
        ("WITH x AS (SELECT 1) SELECT * FROM x", R),
        ("SELECT * FROM generate_series(1, 10) g", R),
        (
            "SELECT * FROM a JOIN b USING (id) WHERE a.x IN (SELECT x FROM c)",
            R,
        ),
        ("BEGIN READ ONLY", R),
        (
            "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            R,
        ),
        ("/* pgswitch:replica */ SELECT my_writer()", R),
        ("SET TRANSACTION READ ONLY", R),
        (
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            R,
        ),
        ("SELECT 1; SELECT 2", R),
    ]);
}

#[test]
fn writes_and_unprovable_go_to_the_primary() {
    use Route::Primary as P;
    check(&[
        ("INSERT INTO t VALUES (1)", P),
        ("UPDATE t SET x = 1", P),
        ("DELETE FROM t", P),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            P,
        ),
        ("CREATE TABLE t (id int)", P),
        ("ALTER TABLE t ADD COLUMN y int", P),
        ("DROP TABLE t", P),
        ("TRUNCATE t", P),
        ("VACUUM t", P),
        ("ANALYZE t", P),
        ("REFRESH MATERIALIZED VIEW v", P),
        ("LOCK TABLE t IN EXCLUSIVE MODE", P),
        ("GRANT SELECT ON t TO bob", P),
        ("COPY t FROM STDIN", P),
        ("SELECT * FROM t FOR UPDATE", P),
        ("SELECT * FROM t FOR SHARE", P),
        ("SELECT * FROM t FOR NO KEY UPDATE", P),
        ("SELECT * FROM t FOR KEY SHARE", P),
        ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", P),
        (
            "SELECT * FROM a WHERE id IN (SELECT id FROM b FOR UPDATE)",
            P,
        ),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", P),
        (
            "WITH a AS (SELECT 1), b AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM b",
            P,
        ),
        ("SELECT * INTO new_t FROM t", P),
        ("EXPLAIN ANALYZE DELETE FROM t", P),
        ("SELECT nextval('s')", P),
        ("SELECT setval('s', 10)", P),
        ("SELECT pg_advisory_lock(1)", P),
        ("SELECT pg_try_advisory_xact_lock(1)", P),
        ("SELECT pg_notify('c', 'x')", P),
        ("SELECT txid_current()", P),
        ("SELECT my_writer()", P),
        ("SELECT unknown_function(1)", P),
        ("SELECT * FROM t WHERE x = (SELECT nextval('s'))", P),
        ("SELECT * FROM nextval('s')", P),
        ("SELECT * FROM my_writer() AS w", P),
        ("SELECT * FROM t, LATERAL my_writer() w", P),
        ("DO $$ BEGIN PERFORM 1; END $$", P),
        ("CALL my_proc()", P),
        ("LISTEN chan", P),
        ("NOTIFY chan", P),
        ("PREPARE p AS INSERT INTO t VALUES ($1)", P),
        ("EXECUTE p(1)", P),
        ("SELECT 1; INSERT INTO t VALUES (1)", P),
        ("BEGIN", P),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", P),
        ("BEGIN READ ONLY ISOLATION LEVEL SERIALIZABLE", P),
        ("START TRANSACTION READ WRITE", P),
        ("this is not sql", P),
        ("/* pgswitch:primary */ SELECT 1", P),
    ]);
}

#[test]
fn explain_plans_anywhere_unless_it_runs_the_statement() {
    use Route::{Primary as P, Replica as R};
    check(&[
        // Plain EXPLAIN only plans, and a standby plans writes too.
        ("EXPLAIN DELETE FROM t", R),
        ("EXPLAIN INSERT INTO t VALUES (nextval('s'))", R),
        ("EXPLAIN VERBOSE UPDATE t SET x = my_writer()", R),
        (
            "EXPLAIN MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            R,
        ),
        ("EXPLAIN (FORMAT JSON) SELECT * FROM t FOR UPDATE", R),
        ("EXPLAIN SELECT * FROM audited_v", R),
        ("EXPLAIN CREATE TABLE x AS SELECT 1", R),
        ("EXPLAIN (ANALYZE false) DELETE FROM t", R),
        (
            "EXPLAIN (ANALYZE off, COSTS false) INSERT INTO t VALUES (1)",
            R,
        ),
        ("EXPLAIN (ANALYZE FALSE, VERBOSE) DELETE FROM t", R),
        (
            "/* c */ EXPLAIN (GENERIC_PLAN) DELETE FROM t WHERE id = $1",
            R,
        ),
        // EXPLAIN ANALYZE runs it: where the statement goes.
        ("EXPLAIN (ANALYZE) SELECT * FROM accounts", R),
        ("EXPLAIN ANALYZE VERBOSE SELECT my_stable(1)", R),
        ("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT 1", R),
        ("EXPLAIN ANALYZE DELETE FROM t", P),
        ("EXPLAIN (ANALYZE) DELETE FROM t", P),
        ("EXPLAIN (ANALYZE true) INSERT INTO t VALUES (1)", P),
        ("EXPLAIN (ANALYZE on, TIMING off) UPDATE t SET x = 1", P),
        ("EXPLAIN (FORMAT JSON, ANALYZE 1) DELETE FROM t", P),
        // A literal never decides (the cache folds literals): as `1`.
        ("EXPLAIN (ANALYZE 0) DELETE FROM t", P),
        ("EXPLAIN (ANALYZE 'false') DELETE FROM t", P),
        ("EXPLAIN (ANALYZE false, ANALYZE) DELETE FROM t", P),
        ("EXPLAIN (ANALYZE maybe) DELETE FROM t", P),
        ("EXPLAIN ANALYZE SELECT my_writer()", P),
        ("EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", P),
        ("EXPLAIN ANALYZE SELECT * FROM audited_v", P),
        ("EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", P),
        // The prepared statement is in the client's session.
        ("EXPLAIN EXECUTE p(1)", P),
    ]);
}

#[test]
fn reviewed_builtins_that_only_read() {
    use Route::{Primary as P, Replica as R};
    check(&[
        ("SELECT pg_database_size(current_database())", R),
        ("SELECT pg_catalog.pg_database_size('app')", R),
        (
            "SELECT pg_relation_size('t'), pg_total_relation_size('t')",
            R,
        ),
        ("SELECT pg_table_size('t'), pg_indexes_size('t')", R),
        ("SELECT pg_size_pretty(pg_database_size('app'))", R),
        (
            "SELECT pg_read_file('PG_VERSION'), pg_read_binary_file('PG_VERSION')",
            R,
        ),
        ("SELECT * FROM pg_ls_dir('.') AS f", R),
        ("SELECT (pg_stat_file('PG_VERSION')).size", R),
        (
            "SELECT pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()",
            R,
        ),
        (
            "SELECT pg_last_xact_replay_timestamp(), pg_is_in_recovery()",
            R,
        ),
        (
            "SELECT txid_current_if_assigned(), pg_current_xact_id_if_assigned()",
            R,
        ),
        ("SELECT pg_stat_clear_snapshot()", R),
        ("SELECT pg_stat_get_xact_numscans('t'::regclass)", R),
        (
            "SELECT random(), random_normal(), clock_timestamp(), timeofday()",
            R,
        ),
        ("SELECT gen_random_uuid(), statement_timestamp(), now()", R),
        ("SELECT pg_backend_pid(), inet_server_port(), version()", R),
        ("SELECT pg_postmaster_start_time(), pg_conf_load_time()", R),
        ("SELECT pg_sleep(0.1)", R),
        ("SELECT * FROM pg_catalog.pg_lock_status() l", R),
        // Looked at and left off.
        ("SELECT setseed(0.5)", P),
        ("SELECT uuid_generate_v4()", P),
        ("SELECT pg_notification_queue_usage()", P),
        ("SELECT txid_current()", P),
        ("SELECT pg_current_wal_lsn()", P),
        ("SELECT pg_stat_reset()", P),
        ("SELECT pg_wal_replay_pause()", P),
        ("SELECT pg_wal_replay_resume()", P),
        ("SELECT pg_promote()", P),
        ("SELECT myschema.pg_database_size()", P),
    ]);
}

#[test]
fn standby_only_functions_go_to_a_replica() {
    let p = policy();
    for sql in [
        "SELECT pg_is_wal_replay_paused()",
        "SELECT pg_catalog.pg_get_wal_replay_pause_state()",
        "SELECT 1; SELECT pg_is_wal_replay_paused()",
        "SELECT pg_is_wal_replay_paused(), pg_last_wal_replay_lsn()",
    ] {
        let d = route(sql, &p).unwrap();
        assert_eq!(d.route, Route::Replica, "{sql}");
        assert!(matches!(d.reason, Reason::StandbyOnly(_)), "{sql}: {d:?}");
    }
    // With a write, the write wins (and the primary says 55000).
    let d = route("SELECT pg_is_wal_replay_paused(), nextval('s')", &p).unwrap();
    assert_eq!(d.route, Route::Primary);
}

/// PostgreSQL syntax that sqlparser 0.64 does not parse (see
/// `sqlparser_still_lacks`), read through `rewrite.rs`.
const UNPARSED_READS: &[&str] = &[
    "SELECT a, count(*) FROM t GROUP BY DISTINCT a, ROLLUP(a, b)",
    "SELECT a FROM t GROUP BY ALL a",
    "SELECT * FROM t WHERE x BETWEEN SYMMETRIC 5 AND 1",
    "SELECT * FROM t WHERE x NOT BETWEEN SYMMETRIC 5 AND 1 OR y BETWEEN ASYMMETRIC 1 AND 2",
    "WITH RECURSIVE s(id, p) AS (SELECT 1, 0 UNION ALL SELECT id + 1, id FROM s WHERE id < 5) \
     SEARCH DEPTH FIRST BY id SET ord SELECT * FROM s ORDER BY ord",
    "WITH RECURSIVE s(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM s) \
     CYCLE id SET is_cycle USING path SELECT * FROM s",
    "WITH RECURSIVE s(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM s) \
     SEARCH BREADTH FIRST BY id SET ord CYCLE id SET c TO true DEFAULT false USING path, \
     u AS (SELECT 2) SELECT * FROM s, u",
    "SELECT * FROM ROWS FROM (generate_series(1, 3), generate_series(1, 4)) AS x(a, b)",
    "SELECT * FROM t, LATERAL ROWS FROM (json_to_record(t.j) AS (a int, b numeric(10, 2)[])) \
     WITH ORDINALITY AS r(a, b, n)",
    "SELECT sum(x) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING EXCLUDE CURRENT ROW) FROM t",
    "SELECT sum(x) OVER w FROM t WINDOW w AS (ORDER BY id GROUPS BETWEEN 1 PRECEDING AND CURRENT ROW EXCLUDE GROUP)",
    "SELECT sum(x) OVER (ORDER BY id RANGE UNBOUNDED PRECEDING EXCLUDE TIES) FROM t",
    "TABLE accounts",
    "TABLE app.accounts;",
    "EXPLAIN SELECT a FROM t GROUP BY DISTINCT a",
    "/* app */ SELECT * FROM t WHERE x BETWEEN SYMMETRIC 1 AND 2; SELECT 1",
];

#[test]
fn sqlparser_still_lacks() {
    // If an upgrade of sqlparser parses one of these, its rewrite rule
    // can go.
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;
    for sql in UNPARSED_READS {
        assert!(
            Parser::parse_sql(&PostgreSqlDialect {}, sql).is_err(),
            "sqlparser parses it now: {sql}"
        );
    }
    // ARRAY(SELECT ...) always parsed, as a call of a function "ARRAY".
    assert!(Parser::parse_sql(&PostgreSqlDialect {}, "SELECT ARRAY(SELECT 1)").is_ok());
}

#[test]
fn syntax_sqlparser_lacks_is_still_walked() {
    let reads: Vec<(&str, Route)> = UNPARSED_READS
        .iter()
        .map(|sql| (*sql, Route::Replica))
        .collect();
    check(&reads);
    use Route::{Primary as P, Replica as R};
    check(&[
        ("SELECT ARRAY(SELECT id FROM t)", R),
        ("SELECT 1 UNION TABLE accounts", R),
        ("(TABLE accounts)", R),
        ("SELECT ROW(1, 2), user, current_role, current_catalog", R),
        ("SELECT grouping(a), a FROM t GROUP BY ROLLUP(a)", R),
        // A write inside is still found.
        ("SELECT nextval('s') FROM t GROUP BY DISTINCT a", P),
        (
            "SELECT * FROM t WHERE x BETWEEN SYMMETRIC nextval('s') AND 1",
            P,
        ),
        (
            "SELECT * FROM t WHERE x BETWEEN SYMMETRIC 1 AND 2 FOR UPDATE",
            P,
        ),
        (
            "WITH RECURSIVE s(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM s) \
             SEARCH DEPTH FIRST BY id SET ord SELECT my_writer() FROM s",
            P,
        ),
        (
            "WITH RECURSIVE s(id) AS (SELECT 1) CYCLE id SET c USING p, \
             d AS (DELETE FROM t RETURNING 1) SELECT * FROM s, d",
            P,
        ),
        (
            "SELECT * FROM ROWS FROM (generate_series(1, 3), my_writer()) AS x(a, b)",
            P,
        ),
        (
            "SELECT * FROM ROWS FROM (nextval('s')) WITH ORDINALITY x",
            P,
        ),
        (
            "SELECT * FROM ROWS FROM (f(x) AS (a text DEFAULT nextval('s')))",
            P,
        ),
        ("SELECT ARRAY(SELECT nextval('s'))", P),
        (
            "SELECT sum(x) OVER (ROWS UNBOUNDED PRECEDING EXCLUDE TIES) INTO new_t FROM t",
            P,
        ),
        ("SELECT \"row\"(1)", P),
        ("TABLE audited_v", P),
        ("SELECT 1 UNION TABLE audited_v", P),
        ("SELECT 1 UNION (TABLE public.audited_v)", P),
        ("SELECT 1 GROUP BY DISTINCT 1; DELETE FROM t", P),
        ("CREATE TABLE t2 AS TABLE t", P),
    ]);
}

#[test]
fn views_that_may_write_go_to_the_primary() {
    use Route::{Primary as P, Replica as R};
    check(&[
        ("SELECT * FROM audited_v", P),
        ("SELECT * FROM public.audited_v a JOIN t USING (id)", P),
        ("SELECT * FROM t WHERE id IN (SELECT id FROM Audited_V)", P),
        ("WITH x AS (SELECT * FROM audited_v) SELECT * FROM x", P),
        ("COPY (SELECT * FROM audited_v) TO STDOUT", P),
        ("SELECT * FROM other.audited_v", R),
        ("SELECT * FROM audited_v_not", R),
    ]);
    let p = policy();
    assert_eq!(
        route("SELECT * FROM audited_v", &p).unwrap().reason,
        Reason::View("audited_v".into())
    );
}

#[test]
fn session_statements_follow_the_session() {
    use Route::Any as A;
    check(&[
        ("SET search_path = app", A),
        ("SET LOCAL statement_timeout = '5s'", A),
        ("RESET ALL", A),
        ("DISCARD ALL", A),
        ("COMMIT", A),
        ("ROLLBACK", A),
        ("SAVEPOINT s1", A),
        ("PREPARE q AS SELECT 1", A),
        ("DEALLOCATE q", A),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", A),
        ("SET TRANSACTION READ WRITE", A),
        ("", A),
    ]);
}

#[test]
fn reasons_say_why() {
    let p = policy();
    let reason = |sql: &str| route(sql, &p).unwrap().reason;
    assert_eq!(reason("SELECT 1"), Reason::Read);
    assert_eq!(reason("SELECT * FROM t FOR UPDATE"), Reason::RowLock);
    assert_eq!(
        reason("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d"),
        Reason::WritableCte
    );
    assert_eq!(
        reason("SELECT nextval('s')"),
        Reason::Function("nextval".into())
    );
    assert_eq!(reason("garbage garbage"), Reason::Unparsed);
    assert_eq!(
        reason("SELECT pg_is_wal_replay_paused()"),
        Reason::StandbyOnly("pg_is_wal_replay_paused".into())
    );
    assert_eq!(
        reason("SELECT * FROM public.audited_v"),
        Reason::View("public.audited_v".into())
    );
    assert_eq!(
        reason("SET pgswitch.route = replica"),
        Reason::RouteSetting(RouteHint::Replica)
    );
    assert_eq!(reason("/* pgswitch:primary */ SELECT 1"), Reason::Hint);
    assert!(route("/* pgswitch:somewhere */ SELECT 1", &p).is_err());
    assert!(route("SET pgswitch.route = sideways", &p).is_err());
    assert_eq!(
        reason("SET pgswitch.route TO 'auto'"),
        Reason::RouteSetting(RouteHint::Auto)
    );
}

#[test]
fn random_text_never_panics_and_never_hides_a_write_on_a_replica() {
    use rand::{Rng, SeedableRng};
    let p = policy();
    let words = [
        "SELECT",
        "INSERT INTO t VALUES (1)",
        "FROM",
        "WITH",
        "(",
        ")",
        "FOR UPDATE",
        "nextval('s')",
        "t",
        ",",
        ";",
        "'x'",
        "$1",
        "AS",
        "*",
        "1",
        "x",
        "WHERE",
        "IN",
        "JOIN",
        // What rewrite.rs looks for.
        "GROUP BY DISTINCT x",
        "BETWEEN SYMMETRIC",
        "AND",
        "ROWS FROM (",
        "TABLE",
        "AS (a int)",
        "WITH ORDINALITY",
        "OVER (ROWS UNBOUNDED PRECEDING",
        "EXCLUDE CURRENT ROW",
        "RECURSIVE",
        "SEARCH DEPTH FIRST BY x SET o",
        "CYCLE x SET c USING p",
        "ARRAY(SELECT",
        "my_writer()",
        "audited_v",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut replica = 0;
    for _ in 0..20_000 {
        let n = rng.gen_range(0..14);
        let sql = (0..n)
            .map(|_| words[rng.gen_range(0..words.len())])
            .collect::<Vec<_>>()
            .join(" ");
        let Ok(d) = route(&sql, &p) else { continue };
        if d.reason == Reason::Unparsed {
            assert_eq!(d.route, Route::Primary, "{sql}");
        }
        if d.route == Route::Replica {
            replica += 1;
            // Tokens that can only be a write, a row lock or a side effect
            // (never an alias or a name) must not reach a replica. Except
            // `f(...) 'x'`: PostgreSQL's typed literal (`varchar(3) 'abc'`),
            // a type name with modifiers that calls nothing, as sqlparser
            // also reads it.
            let calls = sql
                .replace("nextval('s') 'x'", "")
                .replace("my_writer() 'x'", "");
            for w in ["INSERT INTO", "FOR UPDATE", "nextval(", "my_writer("] {
                assert!(!calls.contains(w), "routed to a replica: {sql}");
            }
        }
    }
    assert!(
        replica > 0,
        "the generator never produced a read; the test checks nothing"
    );
}
