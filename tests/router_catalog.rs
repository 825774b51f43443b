//! Function volatility comes from the real primary's catalog: a user
//! function declared STABLE routes to a replica, a VOLATILE one (or one that
//! really writes) to the primary, and the router agrees with the server
//! about which one a read-only replica would reject.

mod common;

use common::*;
use pgswitch::router::{catalog, route, FunctionPolicy, Route};

#[tokio::test]
async fn user_functions_route_by_declared_volatility() {
    let su = superuser().await;
    let schema = format!("rt_{}", std::process::id());
    su.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.audit (v int);
         CREATE FUNCTION {schema}.lookup(x int) RETURNS int STABLE LANGUAGE sql AS 'SELECT x + 1';
         CREATE FUNCTION {schema}.record(x int) RETURNS int VOLATILE LANGUAGE sql
           AS 'INSERT INTO {schema}.audit VALUES (x) RETURNING v';
         GRANT USAGE ON SCHEMA {schema} TO app; GRANT ALL ON {schema}.audit TO app;"
    ))
    .await
    .unwrap();
    let mut policy = FunctionPolicy::new([]);
    let n = catalog::load(&su, &mut policy).await.unwrap();
    assert!(n > 1000, "pg_proc has thousands of built-ins, got {n}");
    let stable = format!("SELECT {schema}.lookup(1)");
    let volatile = format!("SELECT {schema}.record(1)");
    assert_eq!(route(&stable, &policy).unwrap().route, Route::Replica);
    assert_eq!(route(&volatile, &policy).unwrap().route, Route::Primary);
    assert_eq!(
        route("SELECT lower('X'), md5('y')", &policy).unwrap().route,
        Route::Replica
    );
    // The server agrees: a replica runs the stable one and refuses the
    // writing one with 25006 (read_only_sql_transaction).
    let replica = connect(&replica_urls()[0]).await.unwrap();
    let ok = eventually(std::time::Duration::from_secs(10), || async {
        replica.query_one(&stable, &[]).await.is_ok()
    })
    .await;
    assert!(ok, "the stable function never reached the replica");
    let e = replica.query_one(&volatile, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "25006");
    su.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

fn proxy_config(extra: &str) -> pgswitch::config::Config {
    let settings = format!(
        "pool_mode = \"transaction\"\nhealth_check_interval = \"50ms\"\nconsistency = \"eventual\"\n{extra}"
    );
    cluster_config(&settings, &replica_urls())
}

async fn port(c: &tokio_postgres::Client, sql: &str) -> String {
    first_row(c, sql).await[0].clone()
}

#[tokio::test]
async fn listed_read_only_functions_run_on_replicas() {
    let su = superuser().await;
    let schema = format!("rof_{}", std::process::id());
    su.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE FUNCTION {schema}.report() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT inet_server_port()';
         GRANT USAGE ON SCHEMA {schema} TO app;"
    ))
    .await
    .unwrap();
    let sql = format!("SELECT {schema}.report()");
    // Not listed: VOLATILE, so the primary.
    let plain = Proxy::start(proxy_config("")).await;
    let c = plain.client().await;
    let on_replica = eventually(std::time::Duration::from_secs(10), || async {
        port(&c, "SELECT inet_server_port()").await != primary_port().to_string()
    })
    .await;
    assert!(on_replica, "plain reads should reach a replica");
    for _ in 0..5 {
        assert_eq!(port(&c, &sql).await, primary_port().to_string());
    }
    plain.stop().await;
    // Listed: the operator vouches for it, so a replica.
    let listed = Proxy::start(proxy_config(&format!(
        "read_only_functions = [\"{schema}.report\"]"
    )))
    .await;
    let c = listed.client().await;
    let on_replica = eventually(std::time::Duration::from_secs(10), || async {
        port(&c, &sql).await != primary_port().to_string()
    })
    .await;
    assert!(on_replica, "a listed function should run on a replica");
    listed.stop().await;
    su.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn ddl_through_the_proxy_refreshes_the_catalog() {
    let su = superuser().await;
    let schema = format!("ddl_{}", std::process::id());
    su.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema} AUTHORIZATION app;
         CREATE FUNCTION {schema}.before() RETURNS int STABLE LANGUAGE sql AS 'SELECT inet_server_port()';"
    ))
    .await
    .unwrap();
    let proxy = Proxy::start(proxy_config("")).await;
    let c = proxy.client().await;
    // The first catalog load is done once a function made before the
    // proxy started runs on a replica.
    let loaded = eventually(std::time::Duration::from_secs(15), || async {
        port(&c, &format!("SELECT {schema}.before()")).await != primary_port().to_string()
    })
    .await;
    assert!(loaded, "the catalog never loaded");
    let sql = format!("SELECT {schema}.where_am_i()");
    // Created through pgswitch after its catalog was loaded: unknown at
    // first (primary), then, without waiting for the minute's refresh, a
    // STABLE function that runs on a replica.
    c.batch_execute(&format!(
        "CREATE FUNCTION {schema}.where_am_i() RETURNS int STABLE LANGUAGE sql AS 'SELECT inet_server_port()'"
    ))
    .await
    .unwrap();
    let on_replica = eventually(std::time::Duration::from_secs(15), || async {
        port(&c, &sql).await != primary_port().to_string()
    })
    .await;
    assert!(
        on_replica,
        "the new STABLE function never reached a replica"
    );
    proxy.stop().await;
    su.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// The metrics text of a running proxy.
fn metrics(proxy: &Proxy) -> String {
    proxy.shared.metrics.render()
}

/// The value of one exported sample (a metric name with its labels), or 0.
fn sample(proxy: &Proxy, series: &str) -> u64 {
    metrics(proxy)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn views_that_may_write_go_to_the_primary_the_first_time() {
    let su = superuser().await;
    let schema = format!("vw_{}", std::process::id());
    su.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
         CREATE TABLE {schema}.audit (p int);
         CREATE SEQUENCE {schema}.s;
         CREATE FUNCTION {schema}.record() RETURNS int VOLATILE LANGUAGE sql
           AS 'INSERT INTO {schema}.audit VALUES (inet_server_port()) RETURNING p';
         CREATE FUNCTION {schema}.ready() RETURNS int STABLE LANGUAGE sql AS 'SELECT inet_server_port()';
         CREATE VIEW {schema}.calls_writer AS SELECT {schema}.record() AS p;
         CREATE VIEW {schema}.calls_nextval AS SELECT inet_server_port() AS p, nextval('{schema}.s') AS n;
         CREATE VIEW {schema}.on_writer AS SELECT p FROM {schema}.calls_writer;
         CREATE VIEW {schema}.reads AS
           SELECT inet_server_port() AS p, random() AS r, pg_database_size(current_database()) AS size;
         GRANT USAGE ON SCHEMA {schema} TO app; GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO app;
         GRANT ALL ON SEQUENCE {schema}.s TO app;"
    ))
    .await
    .unwrap();
    let writers = [
        format!("SELECT p FROM {schema}.calls_writer"),
        format!("SELECT p, n FROM {schema}.calls_nextval"),
        format!("SELECT p FROM {schema}.on_writer"),
    ];
    let reads = format!("SELECT p FROM {schema}.reads");
    // The router, with the catalog as the primary has it: pg_depend names
    // the user function, the definition's text shows nextval(), and a view
    // of a writing view writes.
    let mut policy = FunctionPolicy::new([]);
    catalog::load(&su, &mut policy).await.unwrap();
    for sql in &writers {
        assert_eq!(route(sql, &policy).unwrap().route, Route::Primary, "{sql}");
    }
    for (sql, want) in [
        (reads.clone(), Route::Replica),
        (format!("TABLE {schema}.calls_writer"), Route::Primary),
        // Plans only: nothing in the view runs.
        (
            format!("EXPLAIN SELECT * FROM {schema}.calls_writer"),
            Route::Replica,
        ),
    ] {
        assert_eq!(route(&sql, &policy).unwrap().route, want, "{sql}");
    }
    // The server agrees: a replica refuses each writer with 25006 and runs
    // the reader.
    let replica = connect(&replica_urls()[0]).await.unwrap();
    let replayed = eventually(std::time::Duration::from_secs(10), || async {
        replica.simple_query(&reads).await.is_ok()
    })
    .await;
    assert!(replayed, "the views never reached the replica");
    for sql in &writers {
        let e = replica.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), "25006", "{sql}");
    }
    // Through pgswitch, once its catalog is loaded: the primary, asked
    // first (no replica refused them: no re-run), every time.
    let primary = port_of(&primary_url()).to_string();
    let proxy = Proxy::start(proxy_config("")).await;
    let c = proxy.client().await;
    let loaded = eventually(std::time::Duration::from_secs(15), || async {
        port(&c, &format!("SELECT {schema}.ready()")).await != primary
    })
    .await;
    assert!(loaded, "the catalog never loaded");
    let reruns = "pgswitch_replica_reruns_total{cause=\"read_only\"}";
    let by_view = "pgswitch_route_decisions_total{reason=\"view\",route=\"primary\"}";
    let (reruns_before, by_view_before) = (sample(&proxy, reruns), sample(&proxy, by_view));
    for sql in &writers {
        for _ in 0..3 {
            assert_eq!(port(&c, sql).await, primary, "{sql}");
        }
    }
    assert_eq!(
        sample(&proxy, reruns),
        reruns_before,
        "a replica was asked first: {}",
        metrics(&proxy)
    );
    assert_eq!(
        sample(&proxy, by_view),
        by_view_before + 9,
        "{}",
        metrics(&proxy)
    );
    let audited = first_row(
        &su,
        &format!("SELECT count(*) FROM {schema}.audit WHERE p = {primary}"),
    )
    .await;
    assert_eq!(
        audited[0], "6",
        "calls_writer and on_writer wrote on the primary"
    );
    // A view that only reads still reaches a replica.
    let on_replica = eventually(std::time::Duration::from_secs(10), || async {
        port(&c, &reads).await != primary
    })
    .await;
    assert!(on_replica, "a read-only view stayed on the primary");
    proxy.stop().await;
    su.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
