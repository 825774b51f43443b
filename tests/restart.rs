//! Real server restarts (`scripts/cluster.sh stop|start NODE`):
//! - the primary: clients connected through it get a clean error while the
//!   server is down, stay connected, and are served again once it is back;
//! - a replica, under read load: no client is lost, no read fails, and the
//!   replica is back in rotation within seconds of its return.
//!
//! The only tests that stop servers, in their own test binary: cargo runs
//! test binaries one after another, so no other test sees the outage, and
//! `OUTAGE` keeps these two apart.

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

/// Starts a stopped node again when dropped, also when a test fails midway,
/// so that later tests find the cluster whole.
struct Restart(&'static str);

impl Drop for Restart {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");
        let ok = std::process::Command::new("bash")
            .args([script, "start", self.0])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok && !std::thread::panicking() {
            panic!("could not start {} again", self.0);
        }
    }
}

/// One outage at a time.
static OUTAGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster_is_local() -> bool {
    std::env::var_os("PGSWITCH_TEST_PRIMARY")
        .is_none_or(|u| u.to_string_lossy().contains(":15432/"))
}

#[tokio::test]
async fn clients_survive_a_primary_restart() {
    let _outage = OUTAGE.lock().await;
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

#[tokio::test]
async fn a_replica_restart_under_load_fails_no_read() {
    let _outage = OUTAGE.lock().await;
    if !cluster_is_local() {
        eprintln!("skipped: PGSWITCH_TEST_PRIMARY is not the scripts/cluster.sh primary");
        return;
    }
    let settings = "pool_mode = \"transaction\"\npool_size = 4\nhealth_check_interval = \"50ms\"\n\
        connect_timeout = \"1s\"\nconsistency = \"eventual\"";
    let cfg = cluster_config(settings, &replica_urls());
    let proxy = Proxy::start(cfg).await;
    let stop = tokio_util::sync::CancellationToken::new();
    // Which servers answered, per client, and every failure.
    let served = std::sync::Arc::new(std::sync::Mutex::new(
        std::collections::BTreeMap::<i32, u64>::new(),
    ));
    let mut clients = Vec::new();
    for i in 0..8 {
        let (c, closed) = connect_watched(&proxy.url()).await;
        let (stop, served) = (stop.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.is_cancelled() {
                // Half simple, half extended protocol.
                let port = if i % 2 == 0 {
                    c.simple_query("SELECT inet_server_port()")
                        .await
                        .map(|m| match &m[1] {
                            tokio_postgres::SimpleQueryMessage::Row(r) => {
                                r.get(0).unwrap_or("0").parse().unwrap_or(0)
                            }
                            _ => 0,
                        })
                } else {
                    c.query_typed("SELECT inet_server_port()", &[])
                        .await
                        .map(|r| r[0].get::<_, i32>(0))
                };
                match port {
                    Ok(p) => *served.lock().unwrap().entry(p).or_default() += 1,
                    Err(e) => {
                        // One failure fails the test; stop this client.
                        failures.push(e.to_string());
                        break;
                    }
                }
            }
            drop(c);
            let end = closed.await.unwrap();
            (failures, end)
        }));
    }
    let served_by = |port: i32| served.lock().unwrap().get(&port).copied().unwrap_or(0);
    // Whether `port` serves more reads from now on (within 15 s).
    let grows = |port: i32| {
        let before = served_by(port);
        async move {
            eventually(Duration::from_secs(15), || async {
                served_by(port) > before
            })
            .await
        }
    };
    // Load reaches both replicas...
    assert!(
        grows(15434).await,
        "replica 2 never served: {:?}",
        served.lock().unwrap()
    );
    let restart = Restart("replica2");
    cluster(&["stop", "replica2"]).await;
    // ...goes on while replica 2 is down (reads keep being served; the
    // first round lets replies already on their way arrive)...
    assert!(grows(15433).await, "replica 1 stopped serving");
    let down = served_by(15434);
    assert!(grows(15433).await, "replica 1 stopped serving");
    assert_eq!(served_by(15434), down, "a stopped server answered");
    drop(restart);
    // ...and replica 2 is back in rotation within seconds.
    assert!(grows(15434).await, "replica 2 did not return to rotation");
    stop.cancel();
    for c in clients {
        let (failures, end) = c.await.unwrap();
        assert!(
            failures.is_empty() && end.is_none(),
            "reads failed: {failures:?}; connection ended with {end:?}"
        );
    }
    eprintln!("reads by server port: {:?}", served.lock().unwrap());
    proxy.stop().await;
}
