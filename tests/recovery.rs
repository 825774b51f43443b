//! Server connections that die (terminated backends, server restarts) are
//! noticed and replaced; clients caught mid-query get a clean error.

mod common;

use std::time::Duration;

use common::*;
use pgswitch::config::PoolMode;

async fn terminate_app_backends(tag: &str) {
    let su = superuser().await;
    su.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
        &[&tag],
    )
    .await
    .unwrap();
}

/// Waits until the backend tagged `tag` runs a query, then terminates it.
async fn terminate_when_active(tag: &str) {
    let su = superuser().await;
    let active = eventually(Duration::from_secs(10), || async {
        let n: i64 = su
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'", &[&tag])
            .await
            .unwrap()
            .get(0);
        n == 1
    })
    .await;
    assert!(active);
    terminate_app_backends(tag).await;
}

#[tokio::test]
async fn dead_pooled_connections_are_replaced() {
    let proxy = Proxy::mode(PoolMode::Transaction, 4).await;
    let tag = format!("recovery-pool-{}", std::process::id());
    let url = format!("{}?application_name={tag}", proxy.url());
    let c = connect(&url).await.unwrap();
    // Warm four server connections, all carrying our application_name.
    let futs: Vec<_> = (0..4)
        .map(|_| c.query_one("SELECT pg_sleep(0.05)::text", &[]))
        .collect();
    for r in futures_util::future::join_all(futs).await {
        r.unwrap();
    }
    let before = backend_pid(&c).await;
    terminate_app_backends(&tag).await;
    // Every idle pooled connection is now dead; the next queries must still
    // succeed on fresh ones, with no error surfacing to the client.
    let ok = eventually(Duration::from_secs(5), || async {
        let su = superuser().await;
        let n: i64 = su
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&tag],
            )
            .await
            .unwrap()
            .get(0);
        n == 0
    })
    .await;
    assert!(ok, "backends were not terminated");
    for _ in 0..10 {
        c.query_one("SELECT 1", &[])
            .await
            .expect("query after server connections died");
    }
    assert_ne!(backend_pid(&c).await, before);
    proxy.stop().await;
}

#[tokio::test]
async fn client_mid_query_gets_a_clean_error() {
    let proxy = Proxy::mode(PoolMode::Session, 2).await;
    let tag = format!("recovery-mid-{}", std::process::id());
    let (c, done) = connect_watched(&format!("{}?application_name={tag}", proxy.url())).await;
    let running = tokio::spawn(async move {
        let r = c.simple_query("SELECT pg_sleep(30)").await;
        (r.err(), c)
    });
    terminate_when_active(&tag).await;
    let (err, _c) = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("no hang")
        .unwrap();
    let err = err.expect("the query must fail");
    let code = sqlstate(&err);
    let closed = tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("connection closed")
        .unwrap();
    let code = if code.is_empty() {
        closed.map(|e| sqlstate(&e)).unwrap_or_default()
    } else {
        code
    };
    assert!(
        code.starts_with("08") || code.starts_with("57P"),
        "got SQLSTATE {code:?}"
    );
    // Other clients are fine.
    let other = proxy.client().await;
    other.query_one("SELECT 1", &[]).await.unwrap();
    proxy.stop().await;
}

/// Transaction mode: a backend terminated under a running query gives
/// its client ERROR 08006 naming the server, and the client stays; one
/// terminated while the client is inside a transaction leaves the
/// transaction failed (25P02) until the client rolls it back, as on a
/// direct connection, and then the client is served again.
#[tokio::test]
async fn transaction_mode_clients_stay_when_their_server_dies() {
    let proxy = Proxy::mode(PoolMode::Transaction, 2).await;
    let tag = format!("recovery-stay-{}", std::process::id());
    let (c, closed) = connect_watched(&format!("{}?application_name={tag}", proxy.url())).await;
    let c = std::sync::Arc::new(c);
    let running = {
        let c = c.clone();
        tokio::spawn(async move { c.simple_query("SELECT pg_sleep(30)").await.err() })
    };
    terminate_when_active(&tag).await;
    let err = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("no hang")
        .unwrap()
        .expect("the query must fail");
    assert_eq!(sqlstate(&err), "08006", "{err}");
    let primary = format!("127.0.0.1:{}", port_of(&primary_url()));
    assert!(message(&err).contains(&primary), "{}", message(&err));
    assert_eq!(first_row(&c, "SELECT 1").await, ["1"]);

    // Inside a transaction: the extended protocol this time.
    c.batch_execute("BEGIN").await.unwrap();
    c.query("SELECT 1", &[]).await.unwrap();
    terminate_app_backends(&tag).await;
    let failed = eventually(Duration::from_secs(10), || async {
        matches!(c.query("SELECT 2", &[]).await, Err(e) if sqlstate(&e) == "25P02")
    })
    .await;
    assert!(
        failed,
        "statements in the lost transaction must fail with 25P02"
    );
    let e = c.simple_query("SELECT 3").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(first_row(&c, "SELECT 4").await, ["4"]);
    assert!(!in_transaction(&c).await);
    drop(c);
    assert_ended_cleanly(closed).await;
    proxy.stop().await;
}
