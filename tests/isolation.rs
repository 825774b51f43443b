//! The isolation rule in transaction mode: nothing one client does is
//! visible to another through a shared server connection, whatever
//! comments, casing or multi-statement text carry it, in the simple and the
//! extended protocol. One server connection (pool_size 1), so client B
//! always gets the connection client A used.

mod common;

use common::*;

/// How a statement reaches the server.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    Simple,
    Extended,
}

async fn run(c: &tokio_postgres::Client, protocol: Protocol, sql: &str) {
    match protocol {
        Protocol::Simple => c.batch_execute(sql).await.unwrap(),
        Protocol::Extended => {
            c.execute(sql, &[]).await.unwrap();
        }
    }
}

fn one_connection() -> pgswitch::config::Config {
    cluster_config("pool_mode = \"transaction\"\npool_size = 1", &[])
}

/// What a client sees of temporary tables, LISTEN and statement_timeout in
/// its server session.
async fn session_view(c: &tokio_postgres::Client) -> Vec<String> {
    first_row(
        c,
        "SELECT to_regclass('pg_temp.iso_t') IS NOT NULL, \
                (SELECT count(*) FROM pg_listening_channels()), \
                current_setting('statement_timeout')",
    )
    .await
}

fn clean() -> Vec<String> {
    vec!["f".into(), "0".into(), "0".into()]
}

/// State that cannot follow the client pins it; when it leaves, the next
/// client finds the connection wiped.
#[tokio::test]
async fn pinned_state_never_reaches_the_next_client() {
    let cases = [
        "/* any comment */ CREATE TEMP TABLE iso_t (x int)",
        "-- comment\nCREATE TEMP TABLE iso_t (x int)",
        "SELECT 1 AS x INTO TEMP iso_t",
        "/* c */ select 1 as x into temporary table iso_t",
        "CREATE TEMP TABLE iso_t AS SELECT 1 AS x",
        // EXPLAIN ANALYZE runs the statement it explains.
        "EXPLAIN ANALYZE CREATE TEMP TABLE iso_t AS SELECT 1 AS x",
        "explain (analyze, costs off) create temporary table iso_t as select 1 as x",
        "/* c */ LISTEN chan",
        "-- tag\n listen chan",
        // A `--` comment ends at a carriage return too, as Postgres reads it.
        "-- tag\rCREATE TEMP TABLE iso_t (x int)\n",
        "SET ROLE app",
        // A name spelled with Unicode escapes may be any function.
        "SELECT U&\"\\0073et_config\"('statement_timeout', '2h', false)",
        "SELECT U&\"!0073et_config\" UESCAPE '!' ('statement_timeout', '2h', false)",
    ];
    let proxy = Proxy::start(one_connection()).await;
    for protocol in [Protocol::Simple, Protocol::Extended] {
        for sql in cases {
            let a = proxy.client().await;
            run(&a, protocol, sql).await;
            assert_eq!(
                proxy.shared.metrics.pinned_clients.get(),
                1,
                "{protocol:?} {sql:?} should pin"
            );
            drop(a);
            let b = proxy.client().await;
            assert_eq!(session_view(&b).await, clean(), "{protocol:?} {sql:?}");
            assert_eq!(proxy.shared.metrics.pinned_clients.get(), 0);
        }
    }
    // Several statements in one Query: the second one counts too.
    let a = proxy.client().await;
    a.batch_execute("SELECT 1; /* c */ LISTEN chan; SELECT 2")
        .await
        .unwrap();
    drop(a);
    let b = proxy.client().await;
    assert_eq!(session_view(&b).await, clean());
    proxy.stop().await;
}

/// Settings follow their client to its next server connection and are
/// reset before anyone else runs on the one it leaves.
#[tokio::test]
async fn settings_follow_their_client_only() {
    let cases = [
        "/* c */ SET statement_timeout = '2h'",
        "-- c\nSet Statement_Timeout TO '2h'",
        "SELECT 1; /* c */ SET statement_timeout = '2h'",
        "SELECT 1; --c\rSET statement_timeout = '2h'\n",
        "SELECT set_config('statement_timeout', '2h', false)",
        "/* c */ select pg_catalog.set_config('statement_timeout', '2h', 'off')",
        // A quoted name calls the same function.
        "SELECT \"set_config\"('statement_timeout', '2h', false)",
        "select \"pg_catalog\".\"set_config\"('statement_timeout', '2h', false)",
    ];
    let proxy = Proxy::start(one_connection()).await;
    for protocol in [Protocol::Simple, Protocol::Extended] {
        for sql in cases {
            if matches!(protocol, Protocol::Extended) && sql.starts_with("SELECT 1;") {
                continue; // One statement per Parse.
            }
            let a = proxy.client().await;
            run(&a, protocol, sql).await;
            let b = proxy.client().await;
            assert_eq!(session_view(&b).await, clean(), "{protocol:?} {sql:?}");
            let mut mine = clean();
            mine[2] = "2h".into();
            assert_eq!(session_view(&a).await, mine, "{protocol:?} {sql:?}");
            assert_eq!(session_view(&b).await, clean(), "{protocol:?} {sql:?}");
            assert_eq!(proxy.shared.metrics.pinned_clients.get(), 0);
        }
    }
    proxy.stop().await;
}

/// A named statement that sets something runs again in later turns,
/// without its text: each run is read back and carried like a SET.
#[tokio::test]
async fn named_statements_that_set_are_tracked_at_each_run() {
    let proxy = Proxy::start(one_connection()).await;
    let a = proxy.client().await;
    let b = proxy.client().await;
    let st = a
        .prepare("SELECT set_config('statement_timeout', $1, false)")
        .await
        .unwrap();
    assert_eq!(session_view(&b).await, clean());
    a.query(&st, &[&"3h"]).await.unwrap();
    assert_eq!(session_view(&b).await, clean());
    assert_eq!(first_row(&a, "SHOW statement_timeout").await, ["3h"]);
    a.query(&st, &[&"4h"]).await.unwrap();
    assert_eq!(session_view(&b).await, clean());
    assert_eq!(first_row(&a, "SHOW statement_timeout").await, ["4h"]);
    assert_eq!(proxy.shared.metrics.pinned_clients.get(), 0);
    proxy.stop().await;
}

/// `set_config` with a name known only when it runs cannot be tracked: it
/// pins, and the connection is wiped when the client leaves.
#[tokio::test]
async fn computed_set_config_pins() {
    let proxy = Proxy::start(one_connection()).await;
    let a = proxy.client().await;
    a.query(
        "SELECT set_config($1, '2h', false)",
        &[&"statement_timeout"],
    )
    .await
    .unwrap();
    assert_eq!(proxy.shared.metrics.pinned_clients.get(), 1);
    assert_eq!(first_row(&a, "SHOW statement_timeout").await, ["2h"]);
    drop(a);
    let b = proxy.client().await;
    assert_eq!(session_view(&b).await, clean());
    proxy.stop().await;
}
