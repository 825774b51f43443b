//! Real server restarts (`scripts/cluster.sh stop|start NODE`):
//! - the primary: clients connected through it get a clean error while the
//!   server is down, stay connected, and are served again once it is back;
//! - a replica, under read load: no client is lost, no read fails, and the
//!   replica is back in rotation within seconds of its return.
//!
//! Tests that stop servers live in test binaries of their own (this one,
//! `replica_crash`, `outage_logs`): cargo runs test binaries one after
//! another, so no other test sees the outage, and `OUTAGE` keeps the tests
//! of one binary apart. Servers are found by the cluster's URLs, so a
//! cluster on other ports is tested too, never skipped.

mod common;

use std::time::Duration;

use common::*;
use pgswitch::config::PoolMode;

#[tokio::test]
async fn clients_survive_a_primary_restart() {
    let _outage = OUTAGE.lock().await;
    let proxy = Proxy::mode(PoolMode::Transaction, 4).await;
    let (c, closed) = connect_watched(&proxy.url()).await;
    let before = backend_pid(&c).await;

    let restart = Restart::stop(Node::Primary, StopMode::Fast).await;
    // While it is down: an error, promptly, not a hang; the client stays.
    let r = tokio::time::timeout(Duration::from_secs(20), c.query_one("SELECT 1", &[])).await;
    let e = r
        .expect("a query against a stopped server must not hang")
        .expect_err("server is down");
    assert_eq!(sqlstate(&e), "08006", "{e}");
    let primary = format!("127.0.0.1:{}", port_of(&primary_url()));
    assert!(message(&e).contains(&primary), "{}", message(&e));

    drop(restart);
    // The same client connection is served by a new server connection.
    let served = eventually(Duration::from_secs(20), || async {
        c.query_one("SELECT 1", &[]).await.is_ok()
    })
    .await;
    assert!(
        served,
        "the connected client was not served after the restart"
    );
    assert_ne!(backend_pid(&c).await, before);
    drop(c);
    // It was never disconnected: its connection ended only when we dropped it.
    assert_ended_cleanly(closed).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_replica_restart_under_load_fails_no_read() {
    let _outage = OUTAGE.lock().await;
    let settings = "pool_mode = \"transaction\"\npool_size = 4\nhealth_check_interval = \"50ms\"\n\
        connect_timeout = \"1s\"\nconsistency = \"eventual\"";
    let replicas = replica_urls();
    let proxy = Proxy::start(cluster_config(settings, &replicas)).await;
    let (up, down) = (port_of(&replicas[0]), port_of(&replicas[1]));
    let load = ReadLoad::start(&proxy, 8).await;
    // Load reaches both replicas...
    assert!(
        load.grows(down).await,
        "replica 2 never served: {:?}",
        load.by_port()
    );
    let restart = Restart::stop(Node::Replica2, StopMode::Fast).await;
    // ...goes on while replica 2 is down (reads keep being served; the
    // first round lets replies already on their way arrive)...
    assert!(load.grows(up).await, "replica 1 stopped serving");
    let stopped = load.served_by(down);
    assert!(load.grows(up).await, "replica 1 stopped serving");
    assert_eq!(load.served_by(down), stopped, "a stopped server answered");
    drop(restart);
    // ...and replica 2 is back in rotation within seconds.
    assert!(
        load.grows(down).await,
        "replica 2 did not return to rotation"
    );
    let by_port = load.by_port();
    let failures = load.finish().await;
    assert!(failures.is_empty(), "reads failed: {failures:?}");
    eprintln!("reads by server port: {by_port:?}");
    proxy.stop().await;
}
