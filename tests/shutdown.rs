//! SIGTERM semantics: stop accepting, let running transactions finish for up
//! to shutdown_timeout, then close clients with 57P01; no task left behind.

mod common;

use std::time::Duration;

use common::*;
use pgswitch::config::PoolMode;

#[tokio::test]
async fn graceful_shutdown_lets_transactions_finish() {
    let proxy = Proxy::start(trust_config(
        PoolMode::Transaction,
        2,
        "shutdown_timeout = \"30s\"",
    ))
    .await;
    let url = proxy.url();
    let (idle, idle_done) = connect_watched(&url).await;
    idle.query_one("SELECT 1", &[]).await.unwrap();
    let (busy, busy_done) = connect_watched(&url).await;
    busy.batch_execute("BEGIN").await.unwrap();
    let Proxy {
        addr,
        shutdown,
        task,
        ..
    } = proxy;
    shutdown.cancel();
    // The idle client is told at once.
    assert_eq!(
        ended_with(idle_done, "idle client closed").await.as_deref(),
        Some("57P01")
    );
    // No new clients.
    let refused = eventually(Duration::from_secs(10), || async {
        connect(&url).await.is_err()
    })
    .await;
    assert!(
        refused,
        "pgswitch still accepts clients on {addr} after shutdown began"
    );
    // The open transaction goes on and commits.
    assert_eq!(
        busy.query_one("SELECT 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    busy.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        ended_with(busy_done, "busy client closed").await.as_deref(),
        Some("57P01")
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("pgswitch stopped")
        .unwrap();
}

#[tokio::test]
async fn shutdown_timeout_closes_lingering_transactions() {
    let proxy = Proxy::start(trust_config(
        PoolMode::Transaction,
        2,
        "shutdown_timeout = \"300ms\"",
    ))
    .await;
    let (c, done) = connect_watched(&proxy.url()).await;
    c.batch_execute("BEGIN").await.unwrap();
    let pid = backend_pid(&c).await;
    let Proxy { shutdown, task, .. } = proxy;
    shutdown.cancel();
    assert_eq!(
        ended_with(done, "closed after the timeout")
            .await
            .as_deref(),
        Some("57P01")
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("pgswitch stopped")
        .unwrap();
    // The transaction did not stay open on the server.
    let clean = backend_settles(pid).await;
    assert!(clean);
}
