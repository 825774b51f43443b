//! Session settings in transaction mode: a client's SET follows it from one
//! server connection to the next and never reaches another client; SET
//! LOCAL, rolled-back and failed SETs behave as on a direct connection;
//! startup `options` are applied. One server connection (pool_size 1), so
//! clients really take turns on the same backend.

mod common;

use common::*;
use pgswitch::config::PoolMode;

fn one_connection(mode: &str) -> pgswitch::config::Config {
    cluster_config(&format!("pool_mode = \"{mode}\"\npool_size = 1"), &[])
}

async fn show(c: &tokio_postgres::Client, name: &str) -> String {
    first_row(c, &format!("SHOW {name}")).await[0].clone()
}

#[tokio::test]
async fn a_clients_settings_follow_it_and_no_one_else() {
    let proxy = Proxy::start(one_connection("transaction")).await;
    let (a, b) = (proxy.client().await, proxy.client().await);
    assert_eq!(
        backend_pid(&a).await,
        backend_pid(&b).await,
        "one shared backend"
    );
    let default_timeout = show(&b, "statement_timeout").await;
    let default_path = show(&b, "search_path").await;

    a.batch_execute("SET statement_timeout = '4321ms'; SET search_path = pg_catalog")
        .await
        .unwrap();
    // B, on the same backend right after A, sees the defaults...
    assert_eq!(show(&b, "statement_timeout").await, default_timeout);
    assert_eq!(show(&b, "search_path").await, default_path);
    // ...and A still sees its own values, transaction after transaction.
    for _ in 0..3 {
        assert_eq!(show(&a, "statement_timeout").await, "4321ms");
        assert_eq!(show(&a, "search_path").await, "pg_catalog");
        assert_eq!(show(&b, "statement_timeout").await, default_timeout);
    }
    // The setting really applies to A's statements.
    let e = a.simple_query("SELECT pg_sleep(5)").await.unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "statement_timeout should cancel it");
    // RESET forgets one, RESET ALL everything.
    a.batch_execute("RESET statement_timeout").await.unwrap();
    assert_eq!(show(&a, "statement_timeout").await, default_timeout);
    assert_eq!(show(&a, "search_path").await, "pg_catalog");
    a.batch_execute("RESET ALL").await.unwrap();
    assert_eq!(show(&a, "search_path").await, default_path);
    proxy.stop().await;
}

#[tokio::test]
async fn set_local_rollback_and_errors_behave_as_direct() {
    let proxy = Proxy::start(one_connection("transaction")).await;
    let (a, b) = (proxy.client().await, proxy.client().await);
    let default = show(&b, "work_mem").await;
    // SET LOCAL ends with its transaction.
    a.batch_execute("BEGIN; SET LOCAL work_mem = '7MB'")
        .await
        .unwrap();
    assert_eq!(show(&a, "work_mem").await, "7MB");
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(show(&a, "work_mem").await, default);
    // A SET rolled back is gone.
    a.batch_execute("BEGIN").await.unwrap();
    a.batch_execute("SET work_mem = '9MB'").await.unwrap();
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(show(&a, "work_mem").await, default);
    // A failed SET changes nothing, and the client goes on.
    let e = a.batch_execute("SET work_mem = 'bogus'").await.unwrap_err();
    assert_eq!(sqlstate(&e), "22023");
    assert_eq!(show(&a, "work_mem").await, default);
    // A SET committed inside a transaction stays.
    a.batch_execute("BEGIN; SET work_mem = '6MB'; COMMIT")
        .await
        .unwrap();
    assert_eq!(show(&a, "work_mem").await, "6MB");
    assert_eq!(show(&b, "work_mem").await, default);
    proxy.stop().await;
}

#[tokio::test]
async fn startup_options_are_applied_in_every_mode() {
    for mode in [PoolMode::Transaction, PoolMode::Session] {
        let proxy = Proxy::start(one_connection(&mode.to_string())).await;
        let mut cfg: tokio_postgres::Config = proxy.url().parse().unwrap();
        cfg.options("-c statement_timeout=1234 -c application_name=opts");
        let (a, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        assert_eq!(show(&a, "statement_timeout").await, "1234ms", "{mode}");
        assert_eq!(show(&a, "application_name").await, "opts", "{mode}");
        drop(a);
        let b = proxy.client().await;
        assert_ne!(
            show(&b, "statement_timeout").await,
            "1234ms",
            "{mode}: leaked"
        );
        proxy.stop().await;
    }
}

#[tokio::test]
async fn session_state_pins_the_client_and_is_wiped_after() {
    let proxy = Proxy::start(cluster_config(
        "pool_mode = \"transaction\"\npool_size = 2",
        &[],
    ))
    .await;
    let a = proxy.client().await;
    let b = proxy.client().await;
    a.batch_execute("CREATE TEMP TABLE scratch (v int); INSERT INTO scratch VALUES (1)")
        .await
        .unwrap();
    a.batch_execute("LISTEN pgswitch_pin_test").await.unwrap();
    let pinned = backend_pid(&a).await;
    assert_eq!(proxy.shared.metrics.pinned_clients.get(), 1);
    // A keeps its backend (and its temp table) while B comes and goes.
    for i in 0..5 {
        b.simple_query("SELECT 1").await.unwrap();
        a.batch_execute(&format!("INSERT INTO scratch VALUES ({i})"))
            .await
            .unwrap();
        assert_eq!(backend_pid(&a).await, pinned);
    }
    assert_eq!(first_row(&a, "SELECT count(*) FROM scratch").await[0], "6");
    assert_ne!(
        backend_pid(&b).await,
        pinned,
        "B never gets A's pinned backend"
    );
    drop(a);
    let released = eventually(std::time::Duration::from_secs(10), || async {
        proxy.shared.metrics.pinned_clients.get() == 0
    })
    .await;
    assert!(released);
    // A's backend comes back wiped: no temp table, no LISTEN.
    let clients: Vec<_> = futures_util::future::join_all((0..2).map(|_| proxy.client())).await;
    for c in &clients {
        c.batch_execute("BEGIN").await.unwrap();
    }
    // Both pool connections are in use now, so one of them is A's.
    let mut seen = false;
    for c in &clients {
        if backend_pid(c).await == pinned {
            seen = true;
            let channels = first_row(c, "SELECT count(*) FROM pg_listening_channels()").await;
            assert_eq!(channels[0], "0", "LISTEN survived the client");
            let e = c.simple_query("SELECT * FROM scratch").await.unwrap_err();
            assert_eq!(sqlstate(&e), "42P01", "the temp table survived the client");
        }
    }
    assert!(seen, "A's backend should be back in the pool");
    drop(clients);
    proxy.stop().await;
}

/// `session_state = "refuse"`: a statement that would create session state
/// fails with 0A000 naming the feature and the setting, as a failed
/// statement does (the transaction aborts), and the client goes on
/// unpinned.
#[tokio::test]
async fn session_state_can_be_refused_instead() {
    let config = cluster_config(
        "pool_mode = \"transaction\"\npool_size = 1\nsession_state = \"refuse\"",
        &[],
    );
    let proxy = Proxy::start(config).await;
    let c = proxy.client().await;
    let e = c.simple_query("LISTEN jobs").await.unwrap_err();
    assert_eq!(sqlstate(&e), "0A000");
    assert_eq!(
        message(&e),
        "LISTEN is not supported in transaction pool mode"
    );
    let hint = e
        .as_db_error()
        .and_then(|d| d.hint())
        .unwrap_or_default()
        .to_owned();
    assert!(hint.contains("session_state"), "{hint}");
    assert_eq!(first_row(&c, "SELECT 1").await, ["1"]);

    // Inside a transaction it aborts the transaction, like any error.
    c.batch_execute("BEGIN").await.unwrap();
    let e = c
        .simple_query("CREATE TEMP TABLE t (a int)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "0A000");
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();

    // The extended protocol too (refused at its Parse).
    let e = c
        .query("SELECT pg_advisory_lock($1)", &[&7i64])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "0A000");
    assert_eq!(
        message(&e),
        "a session advisory lock is not supported in transaction pool mode"
    );
    assert_eq!(proxy.shared.metrics.pinned_clients.get(), 0);
    // Not pinned: another client shares the one server connection.
    let other = proxy.client().await;
    assert_eq!(first_row(&other, "SELECT 2").await, ["2"]);
    assert_eq!(first_row(&c, "SELECT 3").await, ["3"]);
    proxy.stop().await;
}
