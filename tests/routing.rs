//! Read/write routing through pgswitch against the real primary and two
//! streaming replicas. Where a statement ran is asked of the server
//! (`inet_server_port()`), never taken from pgswitch.

mod common;

use std::time::Duration;

use common::*;

const PRIMARY_PORT: i32 = 15432;

fn routing_config(mode: &str, extra: &str) -> pgswitch::config::Config {
    routing_config_with(mode, extra, &replica_urls())
}

fn routing_config_with(mode: &str, extra: &str, replicas: &[String]) -> pgswitch::config::Config {
    config_from_toml(&format!(
        r#"
        [pgswitch]
        listen = "127.0.0.1:0"
        pool_mode = "{mode}"
        pool_size = 4
        read_routing = true
        health_check_interval = "50ms"
        {extra}
        [[databases]]
        name = "app"
        primary = "{primary}"
        replicas = {replicas:?}
        [[users]]
        name = "app"
        password = "app-secret"
        "#,
        primary = primary_url(),
    ))
}

/// The port of the server that ran `sql` (which must return it as int).
async fn port_of(c: &tokio_postgres::Client, sql: &str) -> i32 {
    first_row(c, sql).await[0]
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: no port: {e}"))
}

async fn reads_reach_a_replica(c: &tokio_postgres::Client) -> bool {
    eventually(Duration::from_secs(15), || async {
        port_of(c, "SELECT inet_server_port()").await != PRIMARY_PORT
    })
    .await
}

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
        assert_ne!(port_of(&c, sql).await, PRIMARY_PORT, "{sql}");
    }
    // Writes, locks, side effects, hints, transactions.
    for sql in [
        &format!("INSERT INTO {table} (v) VALUES (1) RETURNING inet_server_port()"),
        &format!("SELECT inet_server_port() FROM {table} FOR UPDATE"),
        &format!("WITH w AS (INSERT INTO {table} (v) VALUES (2) RETURNING v) SELECT inet_server_port() FROM w"),
        &format!("SELECT inet_server_port() FROM (SELECT nextval('{table}_id_seq')) s"),
        "/* pgswitch:primary */ SELECT inet_server_port()",
        "SELECT inet_server_port() FROM unknown_function_xyz()",
    ] {
        let sql: &str = sql;
        match c.simple_query(sql).await {
            Ok(_) => assert_eq!(port_of(&c, sql).await, PRIMARY_PORT, "{sql}"),
            // unknown_function_xyz does not exist: the primary says so.
            Err(e) => assert_eq!(sqlstate(&e), "42883", "{sql}: {e}"),
        }
    }
    // An explicit transaction stays on the primary for its whole life...
    c.batch_execute("BEGIN").await.unwrap();
    assert_eq!(port_of(&c, "SELECT inet_server_port()").await, PRIMARY_PORT);
    c.batch_execute("COMMIT").await.unwrap();
    // ...unless it is read-only (once replicas have caught up with the
    // writes above: read-your-writes).
    assert!(reads_reach_a_replica(&c).await);
    c.batch_execute("BEGIN READ ONLY").await.unwrap();
    assert_ne!(port_of(&c, "SELECT inet_server_port()").await, PRIMARY_PORT);
    c.batch_execute("COMMIT").await.unwrap();
    // The extended protocol routes too (unnamed statements; named ones stay
    // on the primary, where their later Bind will look for them).
    let t = tokio_postgres::types::Type::INT4;
    let rows = c
        .query_typed("SELECT inet_server_port(), $1::int", &[(&7i32, t)])
        .await
        .unwrap();
    assert_ne!(rows[0].get::<_, i32>(0), PRIMARY_PORT);
    let row = c
        .query_one("SELECT inet_server_port(), $1::int", &[&7i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), PRIMARY_PORT);
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

#[tokio::test]
async fn session_mode_stays_on_the_primary() {
    let proxy = Proxy::start(routing_config("session", "")).await;
    let c = proxy.client().await;
    for _ in 0..5 {
        assert_eq!(port_of(&c, "SELECT inet_server_port()").await, PRIMARY_PORT);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn read_your_writes_holds_in_a_loop() {
    let proxy = Proxy::start(routing_config("transaction", "")).await;
    let c = proxy.client().await;
    assert!(reads_reach_a_replica(&c).await);
    let table = format!("ryw_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int)"
    ))
    .await
    .unwrap();
    let mut on_replica = 0;
    for i in 0..500 {
        c.batch_execute(&format!("INSERT INTO {table} VALUES ({i})"))
            .await
            .unwrap();
        let sql = format!("SELECT count(*)::text, inet_server_port()::text FROM {table}");
        let row = first_row(&c, &sql).await;
        assert_eq!(
            row[0],
            (i + 1).to_string(),
            "iteration {i}: read did not see the client's own write (server {})",
            row[1]
        );
        if row[1] != PRIMARY_PORT.to_string() {
            on_replica += 1;
        }
    }
    // Some reads wait for the primary, some find a caught-up replica; both
    // are fine, a stale read is not.
    eprintln!("{on_replica} of 500 reads after a write ran on a replica");
    c.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
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
    let r2_port: i32 = 15434;
    let lag = LaggingReplica::start("lagskip").await;
    // Once the monitor sees the lag, no read lands on replica 2.
    let skipped = eventually(Duration::from_secs(15), || async {
        let mut ports = Vec::new();
        for _ in 0..10 {
            ports.push(port_of(&c, "SELECT inet_server_port()").await);
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
        let port = port_of(&c, "SELECT inet_server_port()").await;
        assert!(
            port == PRIMARY_PORT || port == 15433,
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
        assert_eq!(port_of(&c, "SELECT inet_server_port()").await, PRIMARY_PORT);
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
            port, PRIMARY_PORT,
            "nextval can only have run on the primary"
        );
        assert!(v > last, "the sequence moved forward");
        last = v;
    }
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
        if port_of(&c, "SELECT inet_server_port()").await != PRIMARY_PORT {
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
