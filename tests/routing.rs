//! Read/write routing through pgswitch against the real primary and two
//! streaming replicas. Where a statement ran is asked of the server
//! (`inet_server_port()`), never taken from pgswitch.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn reads_go_to_replicas_and_everything_else_to_the_primary() {
    let proxy = Proxy::start(routing_config("transaction", "")).await;
    let c = proxy.client().await;
    let table = format!("route_{}", std::process::id());
    c.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (id serial, v int)"
    ))
    .await
    .unwrap();
    // Right after a write, reads wait for a replica that has replayed it.
    assert!(reads_reach_a_replica(&c).await, "no read reached a replica");
    // Reads.
    for sql in [
        "SELECT inet_server_port()",
        "SELECT inet_server_port() FROM generate_series(1, 3) LIMIT 1",
        "/* pgswitch:replica */ SELECT inet_server_port()",
    ] {
        assert_ne!(port_that_ran(&c, sql).await, primary_port(), "{sql}");
    }
    // Writes, locks, side effects, hints, transactions.
    for sql in [
        &format!("INSERT INTO {table} (v) VALUES (1) RETURNING inet_server_port()"),
        &format!("SELECT inet_server_port() FROM {table} FOR UPDATE"),
        &format!("WITH w AS (INSERT INTO {table} (v) VALUES (2) RETURNING v) SELECT inet_server_port() FROM w"),
        &format!("SELECT inet_server_port() FROM (SELECT nextval('{table}_id_seq')) s"),
        "/* pgswitch:primary */ SELECT inet_server_port()",
    ] {
        let sql: &str = sql;
        assert_eq!(port_that_ran(&c, sql).await, primary_port(), "{sql}");
    }
    // Unknown functions: see unknown_functions_go_to_the_primary.
    // An explicit transaction stays on the primary for its whole life...
    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        port_that_ran(&c, "SELECT inet_server_port()").await,
        primary_port()
    );
    c.batch_execute("COMMIT").await.unwrap();
    // ...unless it is read-only (once replicas have caught up with the
    // writes above: read-your-writes).
    assert!(reads_reach_a_replica(&c).await);
    c.batch_execute("BEGIN READ ONLY").await.unwrap();
    assert_ne!(
        port_that_ran(&c, "SELECT inet_server_port()").await,
        primary_port()
    );
    c.batch_execute("COMMIT").await.unwrap();
    // The extended protocol routes too, unnamed and named statements alike
    // (a named one follows the client to whichever server runs its Bind).
    let t = tokio_postgres::types::Type::INT4;
    let rows = c
        .query_typed("SELECT inet_server_port(), $1::int", &[(&7i32, t)])
        .await
        .unwrap();
    assert_ne!(rows[0].get::<_, i32>(0), primary_port());
    let row = c
        .query_one("SELECT inet_server_port(), $1::int", &[&7i32])
        .await
        .unwrap();
    assert_ne!(row.get::<_, i32>(0), primary_port());
    // Prepared once, bound in later transactions: each Bind is routed by
    // the statement's text, a write's to the primary.
    let read = c
        .prepare("SELECT inet_server_port(), $1::int")
        .await
        .unwrap();
    let write = c
        .prepare(&format!(
            "INSERT INTO {table} (v) VALUES ($1) RETURNING inet_server_port()"
        ))
        .await
        .unwrap();
    for i in 0..3 {
        let row = c.query_one(&read, &[&i]).await.unwrap();
        assert_ne!(row.get::<_, i32>(0), primary_port());
    }
    for i in 0..3 {
        let row = c.query_one(&write, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), primary_port());
    }
    // A bad hint is an error, not a guess; the connection goes on.
    let e = c
        .simple_query("/* pgswitch:sideways */ SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023");
    c.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    proxy.stop().await;
}

/// The port in the first column of the last row a simple query returned
/// (with several statements, the last one's).
async fn last_port(c: &tokio_postgres::Client, sql: &str) -> i32 {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.iter()
        .rev()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: no port: {e}"))
}

#[tokio::test]
async fn unknown_functions_go_to_the_primary() {
    // A function pgswitch has never seen: created behind its back, after
    // its catalog was loaded. Every server has it, so where a call ran is
    // in its answer (not in a 42883 that any server would give).
    let su = superuser().await;
    let schema = format!("unk_{}", std::process::id());
    su.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE FUNCTION {schema}.known() RETURNS int STABLE LANGUAGE sql AS 'SELECT inet_server_port()';
         GRANT USAGE ON SCHEMA {schema} TO app;"
    ))
    .await
    .unwrap();
    let proxy = Proxy::start(routing_config("transaction", "consistency = \"eventual\"")).await;
    let c = proxy.client().await;
    let known = format!("SELECT {schema}.known()");
    let loaded = eventually(Duration::from_secs(15), || async {
        port_that_ran(&c, &known).await != primary_port()
    })
    .await;
    assert!(loaded, "the catalog never loaded");
    // STABLE: the catalog would make it a read. Only being unknown keeps
    // it on the primary.
    su.batch_execute(&format!(
        "CREATE FUNCTION {schema}.unknown() RETURNS int STABLE LANGUAGE sql AS 'SELECT inet_server_port()'"
    ))
    .await
    .unwrap();
    let sql = format!("SELECT {schema}.unknown()");
    for url in replica_urls() {
        let r = connect(&url).await.unwrap();
        let replayed = eventually(Duration::from_secs(10), || async {
            r.simple_query(&sql).await.is_ok()
        })
        .await;
        assert!(replayed, "{url} never replayed the new function");
    }
    // Nothing went through pgswitch that would make it re-read its catalog,
    // and the periodic refresh is a minute after its start.
    for _ in 0..10 {
        assert_eq!(port_that_ran(&c, &sql).await, primary_port(), "{sql}");
    }
    assert_ne!(port_that_ran(&c, &known).await, primary_port(), "{known}");
    proxy.stop().await;
    su.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn reads_the_router_used_to_send_to_the_primary_reach_replicas() {
    let su = superuser().await;
    let schema = format!("miss_{}", std::process::id());
    let t = format!("{schema}.t");
    su.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {t} (id int, v int);
         INSERT INTO {t} SELECT g, g FROM generate_series(1, 10) g;
         CREATE VIEW {schema}.where_am_i AS SELECT inet_server_port() AS p;
         GRANT USAGE ON SCHEMA {schema} TO app; GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO app;"
    ))
    .await
    .unwrap();
    // The premise of the standby-only case: a primary refuses it.
    let e = su
        .simple_query("SELECT pg_is_wal_replay_paused()")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "55000");
    let proxy = Proxy::start(routing_config("transaction", "consistency = \"eventual\"")).await;
    let c = proxy.client().await;
    for url in replica_urls() {
        let r = connect(&url).await.unwrap();
        let replayed = eventually(Duration::from_secs(10), || async {
            r.simple_query(&format!("TABLE {schema}.where_am_i"))
                .await
                .is_ok()
        })
        .await;
        assert!(replayed, "{url} never replayed the schema");
    }
    assert!(reads_reach_a_replica(&c).await, "no read reached a replica");
    let reads = [
        // EXPLAIN without ANALYZE only plans, writes included; the SELECT
        // after it in the same Query tells where both ran.
        format!("EXPLAIN INSERT INTO {t} VALUES (11, 11); SELECT inet_server_port()"),
        format!("EXPLAIN (ANALYZE false) DELETE FROM {t}; SELECT inet_server_port()"),
        format!("EXPLAIN (ANALYZE) SELECT * FROM {t}; SELECT inet_server_port()"),
        // Built-ins that pg_proc calls VOLATILE but that only read.
        format!(
            "SELECT inet_server_port(), pg_database_size(current_database()), \
             pg_relation_size('{t}'), pg_total_relation_size('{t}'), \
             pg_size_pretty(pg_table_size('{t}')), pg_indexes_size('{t}')"
        ),
        "SELECT inet_server_port(), pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), \
         pg_last_xact_replay_timestamp(), txid_current_if_assigned(), pg_stat_clear_snapshot()"
            .into(),
        "SELECT inet_server_port(), random(), clock_timestamp(), timeofday(), gen_random_uuid()"
            .into(),
        // Only a standby runs these.
        "SELECT inet_server_port(), pg_is_wal_replay_paused(), pg_get_wal_replay_pause_state()"
            .into(),
        // PostgreSQL syntax that sqlparser does not parse.
        format!("SELECT inet_server_port(), count(*) FROM {t} GROUP BY DISTINCT ROLLUP(v)"),
        format!("SELECT inet_server_port() FROM {t} WHERE id BETWEEN SYMMETRIC 5 AND 1"),
        "WITH RECURSIVE s(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM s WHERE id < 3) \
         SEARCH DEPTH FIRST BY id SET ord SELECT inet_server_port(), ord FROM s"
            .into(),
        "WITH RECURSIVE s(id) AS (SELECT 1 UNION ALL SELECT id % 3 + 1 FROM s) \
         CYCLE id SET is_cycle USING path SELECT inet_server_port(), id FROM s"
            .into(),
        "SELECT p, n FROM ROWS FROM (inet_server_port(), generate_series(1, 1)) AS x(p, n)".into(),
        "SELECT (ARRAY(SELECT inet_server_port()))[1]".into(),
        format!(
            "SELECT inet_server_port(), sum(v) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING \
             AND 1 FOLLOWING EXCLUDE CURRENT ROW) FROM {t}"
        ),
        format!("TABLE {schema}.where_am_i"),
    ];
    for sql in &reads {
        // Eventually: a moment with no replica in rotation (another test
        // pausing one) sends any read to the primary.
        let on_replica = eventually(Duration::from_secs(10), || async {
            last_port(&c, sql).await != primary_port()
        })
        .await;
        assert!(on_replica, "went to the primary: {sql}");
    }
    // EXPLAIN ANALYZE of a write runs the write: the primary, which now
    // has the row.
    let sql = format!("EXPLAIN ANALYZE INSERT INTO {t} VALUES (12, 12); SELECT inet_server_port()");
    assert_eq!(last_port(&c, &sql).await, primary_port(), "{sql}");
    let n = first_row(&su, &format!("SELECT count(*) FROM {t} WHERE id = 12")).await;
    assert_eq!(
        n[0], "1",
        "the EXPLAIN ANALYZE'd insert ran once, on the primary"
    );
    let n = first_row(&su, &format!("SELECT count(*) FROM {t}")).await;
    assert_eq!(n[0], "11", "the plain EXPLAINs wrote nothing");
    proxy.stop().await;
    su.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn session_mode_stays_on_the_primary() {
    let proxy = Proxy::start(routing_config("session", "")).await;
    let c = proxy.client().await;
    for _ in 0..5 {
        assert_eq!(
            port_that_ran(&c, "SELECT inet_server_port()").await,
            primary_port()
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn lagging_replica_is_skipped() {
    let proxy = Proxy::start(routing_config(
        "transaction",
        "max_replica_lag_bytes = 65536",
    ))
    .await;
    let c = proxy.client().await;
    assert!(reads_reach_a_replica(&c).await);
    let r2_port = replica_port(1);
    let lag = LaggingReplica::start("lagskip").await;
    // Once the monitor sees the lag, no read lands on replica 2.
    let skipped = eventually(Duration::from_secs(15), || async {
        let mut ports = Vec::new();
        for _ in 0..10 {
            ports.push(port_that_ran(&c, "SELECT inet_server_port()").await);
        }
        !ports.contains(&r2_port)
    })
    .await;
    lag.resume().await;
    assert!(skipped, "reads kept going to the paused replica");
    proxy.stop().await;
}

#[tokio::test]
async fn unreachable_replica_costs_reads_nothing() {
    // Replica 2's address points at a closed port: reads routed to it must
    // fall back (to replica 1 via the monitor, or to the primary), never fail.
    let replicas = [
        "postgres://app:app-secret@127.0.0.1:1/app".to_owned(),
        replica_urls()[0].clone(),
    ];
    let cfg = routing_config_with("transaction", "", &replicas);
    let proxy = Proxy::start(cfg).await;
    let c = proxy.client().await;
    for _ in 0..50 {
        let port = port_that_ran(&c, "SELECT inet_server_port()").await;
        assert!(
            port == primary_port() || port == replica_port(0),
            "read served by {port}"
        );
    }
    assert!(
        reads_reach_a_replica(&c).await,
        "the healthy replica should serve reads"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn set_pgswitch_route_steers_the_session() {
    let proxy = Proxy::start(routing_config("transaction", "")).await;
    let c = proxy.client().await;
    assert!(reads_reach_a_replica(&c).await);
    c.batch_execute("SET pgswitch.route = primary")
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            port_that_ran(&c, "SELECT inet_server_port()").await,
            primary_port()
        );
    }
    c.batch_execute("SET pgswitch.route TO 'auto'")
        .await
        .unwrap();
    assert!(reads_reach_a_replica(&c).await);
    // An unknown value is an error, and the setting stays as it was.
    let e = c
        .batch_execute("SET pgswitch.route = fastest")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "22023");
    assert!(
        message(&e).contains("primary, replica or auto"),
        "{}",
        message(&e)
    );
    assert!(reads_reach_a_replica(&c).await);
    // Other clients are not affected by one client's setting.
    c.batch_execute("SET pgswitch.route = primary")
        .await
        .unwrap();
    let other = proxy.client().await;
    assert!(reads_reach_a_replica(&other).await);
    proxy.stop().await;
}

#[tokio::test]
async fn replica_refusal_is_rerun_on_the_primary() {
    // A function declared STABLE that calls nextval(): the catalog says
    // "read", the replica says 25006, and the client must not notice.
    let su = superuser().await;
    let schema = format!("net_{}", std::process::id());
    su.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE SEQUENCE {schema}.s;
         CREATE FUNCTION {schema}.sneaky() RETURNS bigint STABLE LANGUAGE sql AS 'SELECT nextval(''{schema}.s'')';
         GRANT USAGE ON SCHEMA {schema} TO app; GRANT ALL ON SEQUENCE {schema}.s TO app;"
    ))
    .await
    .unwrap();
    let proxy = Proxy::start(routing_config("transaction", "")).await;
    let c = proxy.client().await;
    let sql = format!("SELECT {schema}.sneaky(), inet_server_port()");
    // Once the catalog is loaded the router believes the function is a read;
    // whichever server it picks, the client gets the right answer, from the
    // primary.
    let mut last = 0i64;
    for _ in 0..20 {
        assert!(reads_reach_a_replica(&c).await);
        let row = first_row(&c, &sql).await;
        let (v, port): (i64, i32) = (row[0].parse().unwrap(), row[1].parse().unwrap());
        assert_eq!(
            port,
            primary_port(),
            "nextval can only have run on the primary"
        );
        assert!(v > last, "the sequence moved forward");
        last = v;
    }
    // The extended protocol (an unnamed statement, Parse/Bind/Execute/Sync
    // in one batch) gets the same safety net.
    let rerun = "pgswitch_replica_reruns_total{cause=\"read_only\"}";
    let before = sample(&proxy, rerun);
    assert!(before > 0, "{}", metrics(&proxy));
    for _ in 0..5 {
        assert!(reads_reach_a_replica(&c).await);
        let rows = c.query_typed(&sql, &[]).await.unwrap();
        let (v, port): (i64, i32) = (rows[0].get(0), rows[0].get(1));
        assert_eq!(port, primary_port());
        assert!(v > last, "the sequence moved forward");
        last = v;
    }
    assert_eq!(sample(&proxy, rerun), before + 5, "{}", metrics(&proxy));
    // The premise: with the catalog loaded, the router sends it to a
    // replica, and the replica refuses it (so the retry path is what made
    // every call above succeed).
    let mut policy = pgswitch::router::FunctionPolicy::new([]);
    pgswitch::router::catalog::load(&su, &mut policy)
        .await
        .unwrap();
    assert_eq!(
        pgswitch::router::route(&sql, &policy).unwrap().route,
        pgswitch::router::Route::Replica
    );
    let replica = connect(&replica_urls()[0]).await.unwrap();
    let e = replica.simple_query(&sql).await.unwrap_err();
    assert_eq!(sqlstate(&e), "25006");
    proxy.stop().await;
    su.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn eventual_consistency_reads_replicas_right_after_writes() {
    let proxy = Proxy::start(routing_config("transaction", "consistency = \"eventual\"")).await;
    let c = proxy.client().await;
    assert!(reads_reach_a_replica(&c).await);
    let table = format!("eventual_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v int)"
    ))
    .await
    .unwrap();
    let mut on_replica = 0;
    for i in 0..20 {
        c.batch_execute(&format!("INSERT INTO {table} VALUES ({i})"))
            .await
            .unwrap();
        if port_that_ran(&c, "SELECT inet_server_port()").await != primary_port() {
            on_replica += 1;
        }
    }
    // Unlike read_your_writes, nothing holds a read back after a write.
    assert_eq!(
        on_replica, 20,
        "reads right after writes stayed on the primary"
    );
    c.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    proxy.stop().await;
}

/// The metrics text of a running proxy.
#[tokio::test]
async fn routing_decisions_are_counted() {
    let proxy = Proxy::start(routing_config("transaction", "")).await;
    let c = proxy.client().await;
    assert!(reads_reach_a_replica(&c).await);
    let reads = "pgswitch_route_decisions_total{reason=\"read\",route=\"replica\"}";
    let unparsed = "pgswitch_route_decisions_total{reason=\"unparsed\",route=\"primary\"}";
    let (r0, u0) = (sample(&proxy, reads), sample(&proxy, unparsed));
    for _ in 0..5 {
        c.simple_query("SELECT 1").await.unwrap();
    }
    // Not SQL sqlparser knows, so the primary gets it (and says what it is).
    let e = c.simple_query("SELEKT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    assert_eq!(sample(&proxy, reads), r0 + 5, "{}", metrics(&proxy));
    assert_eq!(sample(&proxy, unparsed), u0 + 1, "{}", metrics(&proxy));
    proxy.stop().await;
}

#[tokio::test]
async fn first_statement_routing_places_whole_transactions() {
    let proxy = Proxy::start(routing_config(
        "transaction",
        "transaction_routing = \"first_statement\"",
    ))
    .await;
    let c = proxy.client().await;
    let table = format!("first_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v int)"
    ))
    .await
    .unwrap();
    assert!(reads_reach_a_replica(&c).await);
    // A transaction that starts with a read runs on a replica throughout.
    let on_replica = eventually(Duration::from_secs(15), || async {
        c.batch_execute("BEGIN").await.unwrap();
        let a = port_that_ran(&c, "SELECT inet_server_port()").await;
        let b = port_that_ran(&c, "SELECT inet_server_port()").await;
        c.batch_execute("COMMIT").await.unwrap();
        assert_eq!(a, b, "a transaction moved between servers");
        a != primary_port()
    })
    .await;
    assert!(on_replica, "no read-first transaction reached a replica");
    // One that starts with a write runs on the primary throughout, and its
    // write is there to read afterwards.
    c.batch_execute("BEGIN").await.unwrap();
    let w = port_that_ran(
        &c,
        &format!("INSERT INTO {table} VALUES (1) RETURNING inet_server_port()"),
    )
    .await;
    assert_eq!(w, primary_port());
    assert_eq!(
        port_that_ran(&c, "SELECT inet_server_port()").await,
        primary_port()
    );
    c.batch_execute("COMMIT").await.unwrap();
    let n = first_row(&c, &format!("SELECT count(*) FROM {table}")).await;
    assert_eq!(n[0], "1", "read-your-writes after a deferred BEGIN");
    // The client sees a real transaction: ROLLBACK undoes, and an empty
    // transaction commits cleanly.
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute(&format!("INSERT INTO {table} VALUES (2)"))
        .await
        .unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    c.batch_execute("BEGIN; COMMIT").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    let n = first_row(&c, &format!("SELECT count(*) FROM {table}")).await;
    assert_eq!(n[0], "1", "the rolled-back row is gone");
    // SET TRANSACTION READ ONLY as the first statement makes it a read-only
    // transaction: a replica.
    let on_replica = eventually(Duration::from_secs(15), || async {
        c.batch_execute("BEGIN").await.unwrap();
        c.batch_execute("SET TRANSACTION READ ONLY").await.unwrap();
        let p = port_that_ran(&c, "SELECT inet_server_port()").await;
        c.batch_execute("COMMIT").await.unwrap();
        p != primary_port()
    })
    .await;
    assert!(
        on_replica,
        "SET TRANSACTION READ ONLY stayed on the primary"
    );
    // SERIALIZABLE cannot run on a standby: primary, however it starts.
    c.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    assert_eq!(
        port_that_ran(&c, "SELECT inet_server_port()").await,
        primary_port()
    );
    c.batch_execute("COMMIT").await.unwrap();
    c.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn primary_only_keeps_everything_on_the_primary() {
    let proxy = Proxy::start(routing_config(
        "transaction",
        "consistency = \"primary_only\"",
    ))
    .await;
    let c = proxy.client().await;
    for _ in 0..20 {
        assert_eq!(
            port_that_ran(&c, "SELECT inet_server_port()").await,
            primary_port()
        );
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_primary_in_recovery_refuses_writes() {
    // Misconfigured on purpose: the "primary" is replica 1, a standby.
    let r = replica_urls();
    let cfg = config_from_toml(&format!(
        r#"
        [pgswitch]
        listen = "127.0.0.1:0"
        pool_mode = "transaction"
        health_check_interval = "50ms"
        [[databases]]
        name = "app"
        primary = "{r1}"
        replicas = ["{r2}"]
        [[users]]
        name = "app"
        password = "app-secret"
        "#,
        r1 = r[0],
        r2 = r[1],
    ));
    let proxy = Proxy::start(cfg).await;
    let c = proxy.client().await;
    let refused = eventually(Duration::from_secs(15), || async {
        match c
            .simple_query("CREATE TABLE pgswitch_never_created (v int)")
            .await
        {
            Err(e) => message(&e).contains("reports that it is in recovery"),
            Ok(_) => panic!("a standby accepted a write"),
        }
    })
    .await;
    assert!(refused, "writes were not refused by pgswitch");
    let e = c
        .simple_query("CREATE TABLE pgswitch_never_created (v int)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "25006");
    let standby = server_addr(&r[0]);
    assert!(message(&e).contains(&standby), "{}", message(&e));
    // Reads still work.
    let port = port_that_ran(&c, "SELECT inet_server_port()").await;
    assert!(
        port == replica_port(0) || port == replica_port(1),
        "read served by {port}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn closing_a_statement_raises_no_fence() {
    // tokio-postgres closes each statement it prepared for a query (Close,
    // Sync) when it drops it. That runs nothing, so it must not hold the
    // client's next reads on the primary until the next health check (a
    // long interval here, so that such a fence would last the whole test).
    let config = cluster_config(
        "pool_mode = \"transaction\"\npool_size = 4\nhealth_check_interval = \"5s\"",
        &replica_urls(),
    );
    let proxy = Proxy::start(config).await;
    let c = proxy.client().await;
    assert!(reads_reach_a_replica(&c).await, "no read reached a replica");
    for i in 0..5 {
        let port: i32 = c
            .query_one("SELECT inet_server_port()", &[])
            .await
            .unwrap()
            .get(0);
        assert_ne!(port, primary_port(), "extended read {i}");
    }
    drop(c);
    proxy.stop().await;
}

#[tokio::test]
async fn a_query_with_more_after_its_text_is_the_servers_to_refuse() {
    // The server ends a Query's text at its NUL and refuses a message with
    // more after it (08P01). pgswitch must not act on the text before the
    // NUL (here its own setting, which it would answer itself).
    use common::raw;
    use tokio::io::AsyncWriteExt;
    let toml = format!(
        "{}\n[[users]]\nname = \"postgres\"\nauth = \"trust\"\n",
        cluster_toml(
            "pool_mode = \"transaction\"\npool_size = 4\nhealth_check_interval = \"50ms\"",
            &replica_urls(),
        )
    );
    let proxy = Proxy::start(config_from_toml(&toml)).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    for text in [
        "SET pgswitch.route = 'replica'\0SELECT 1",
        "SELECT 1\0DELETE FROM nowhere",
    ] {
        s.write_all(&raw::query(text)).await.unwrap();
        let reply = raw::read_until(&mut s, b'Z').await;
        assert_eq!(
            raw::error_code(&reply).as_deref(),
            Some("08P01"),
            "{text:?}: {reply:?}"
        );
    }
    s.write_all(&raw::query("SELECT 1")).await.unwrap();
    let reply = raw::read_until(&mut s, b'Z').await;
    assert_eq!(raw::error_code(&reply), None, "{reply:?}");
    assert!(reply.iter().any(|(t, _)| *t == b'D'), "{reply:?}");
}
