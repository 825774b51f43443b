//! The replica monitor against the real cluster: both replicas in rotation;
//! a replica whose replay is paused falls behind and leaves rotation; it
//! comes back once replay resumes. Proven by asking the servers.

mod common;

use std::time::Duration;

use common::*;
use pgswitch::config::ServerAddr;
use pgswitch::pool::health::{self, MonitorConfig, Snapshot};
use tokio::sync::watch;

async fn until(rx: &mut watch::Receiver<Snapshot>, what: &str, cond: impl Fn(&Snapshot) -> bool) {
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| cond(s))).await,
        Ok(Ok(_))
    );
    assert!(ok, "{what}: last snapshot {:?}", *rx.borrow());
}

#[tokio::test]
async fn lagging_replica_leaves_and_rejoins_rotation() {
    let primary = ServerAddr::parse(&primary_url()).unwrap();
    let replicas: Vec<ServerAddr> = replica_urls()
        .iter()
        .map(|u| ServerAddr::parse(u).unwrap())
        .collect();
    let cfg = MonitorConfig {
        primary: primary.clone(),
        replicas: replicas.clone(),
        login: ("app".into(), primary.password.clone(), "app".into()),
        interval: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(2),
        max_lag_bytes: 64 * 1024,
        max_lag_time: None,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let (mut rx, task) = health::spawn(cfg, stop.clone());
    until(&mut rx, "both replicas in rotation", |s| {
        s.replicas.len() == 2 && s.replicas.iter().all(|r| r.in_rotation)
    })
    .await;

    // Pause replay on replica 2 and write enough WAL to put it behind.
    let lag = LaggingReplica::start("lag").await;
    let behind = matches!(
        tokio::time::timeout(
            Duration::from_secs(30),
            rx.wait_for(|s| s.replicas.len() == 2
                && !s.replicas[1].in_rotation
                && s.replicas[0].in_rotation),
        )
        .await,
        Ok(Ok(_))
    );
    let paused_snapshot = rx.borrow().clone();
    // Resume before asserting, so a failure leaves the cluster usable.
    lag.resume().await;
    assert!(
        behind,
        "replica 2 did not leave rotation: {paused_snapshot:?}"
    );
    assert!(
        paused_snapshot.replicas[1].why.contains("lagging"),
        "{paused_snapshot:?}"
    );

    until(&mut rx, "replica 2 back in rotation", |s| {
        s.replicas.len() == 2 && s.replicas.iter().all(|r| r.in_rotation)
    })
    .await;
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn unreachable_replica_is_out_of_rotation() {
    let primary = ServerAddr::parse(&primary_url()).unwrap();
    let dead = ServerAddr::parse("postgres://app:app-secret@127.0.0.1:1/app").unwrap();
    let cfg = MonitorConfig {
        primary: primary.clone(),
        replicas: vec![dead],
        login: ("app".into(), primary.password.clone(), "app".into()),
        interval: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(1),
        max_lag_bytes: 1 << 20,
        max_lag_time: None,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let (mut rx, task) = health::spawn(cfg, stop.clone());
    until(&mut rx, "dead replica reported", |s| {
        s.replicas.len() == 1
            && !s.replicas[0].in_rotation
            && s.replicas[0].why.contains("unreachable")
    })
    .await;
    assert!(rx.borrow().primary_lsn.is_some());
    assert!(!rx.borrow().primary_in_recovery);
    stop.cancel();
    task.await.unwrap();
}
