//! SQL -> route, as a table. Each row is a statement an application sends
//! and where it must (or may) run.

use super::*;

fn policy() -> FunctionPolicy {
    let mut p = FunctionPolicy::new(["reporting.safe_total".to_owned()]);
    p.load_catalog([("public", "my_stable", 's'), ("public", "my_writer", 'v')]);
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
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut replica = 0;
    for _ in 0..5_000 {
        let n = rng.gen_range(0..12);
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
            // (never an alias or a name) must not reach a replica.
            for w in ["INSERT INTO", "FOR UPDATE", "nextval("] {
                assert!(!sql.contains(w), "routed to a replica: {sql}");
            }
        }
    }
    assert!(
        replica > 0,
        "the generator never produced a read; the test checks nothing"
    );
}
