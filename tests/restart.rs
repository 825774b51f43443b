//! A real primary restart (`scripts/cluster.sh stop|start primary`): clients
//! connected through it get a clean error while the server is down, stay
//! connected, and are served again once it is back.
//!
//! This is the only test that stops a server, in its own test binary: cargo
//! runs test binaries one after another, so no other test sees the outage.

mod common;

use std::time::Duration;

use common::*;
use pgswitch::config::PoolMode;

async fn cluster(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .await
        .expect("run scripts/cluster.sh");
    assert!(
        out.status.success(),
        "cluster.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn clients_survive_a_primary_restart() {
    if std::env::var_os("PGSWITCH_TEST_PRIMARY")
        .is_some_and(|u| !u.to_string_lossy().contains(":15432/"))
    {
        eprintln!("skipped: PGSWITCH_TEST_PRIMARY is not the scripts/cluster.sh primary");
        return;
    }
    let proxy = Proxy::mode(PoolMode::Transaction, 4).await;
    let (c, closed) = connect_watched(&proxy.url()).await;
    let before = backend_pid(&c).await;

    cluster(&["stop", "primary"]).await;
    // While it is down: an error, promptly, not a hang; the client stays.
    let r = tokio::time::timeout(Duration::from_secs(20), c.query_one("SELECT 1", &[])).await;
    let e = r
        .expect("a query against a stopped server must not hang")
        .expect_err("server is down");
    assert_eq!(sqlstate(&e), "08006", "{e}");
    assert!(message(&e).contains("127.0.0.1:15432"), "{}", message(&e));

    cluster(&["start", "primary"]).await;
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
    let end = tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("closed")
        .unwrap();
    assert!(
        end.is_none(),
        "the client connection ended with an error: {end:?}"
    );
    proxy.stop().await;
}
