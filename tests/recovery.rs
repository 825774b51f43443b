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
    terminate_app_backends(&tag).await;
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
