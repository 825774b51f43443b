//! Log volume during an outage: a replica stopped under 16 reading clients
//! is reported once when requests first meet it down and once when it is
//! back, not once per request. Stops a server, so it has its own test
//! binary (cargo runs test binaries one after another).

mod common;

use common::*;

#[tokio::test]
async fn a_replica_outage_is_logged_at_start_and_end_only() {
    let _outage = OUTAGE.lock().await;
    // The test runtime is single-threaded: the proxy's tasks log here.
    let (captured, _guard) = common::logs::Captured::start();

    // Health checks slow enough that requests meet the stopped replica
    // before the monitor takes it out of rotation.
    let settings = "pool_mode = \"transaction\"\npool_size = 4\nhealth_check_interval = \"2s\"\n\
        connect_timeout = \"1s\"\nconsistency = \"eventual\"\nlog_repeat_interval = \"1h\"";
    let replicas = replica_urls();
    let proxy = Proxy::start(cluster_config(settings, &replicas)).await;
    let down_port = port_of(&replicas[1]);
    let load = ReadLoad::start(&proxy, 16).await;
    assert!(load.grows(down_port).await, "replica 2 never served");

    let restart = Restart::stop(Node::Replica2, StopMode::Fast).await;
    // Plenty of reads while it is down.
    assert!(load.serves(500).await, "reads stopped during the outage");
    drop(restart);
    assert!(
        load.grows(down_port).await,
        "replica 2 did not return to rotation"
    );
    let failures = load.finish().await;
    assert!(failures.is_empty(), "reads failed: {failures:?}");
    proxy.stop().await;

    let lines = captured.lines();
    let unavailable: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("replica unavailable"))
        .collect();
    assert!(
        unavailable.len() <= 2,
        "one line at the start and one at the end, got {}:\n{}",
        unavailable.len(),
        lines.join("\n")
    );
    let port = format!(":{down_port}");
    let about_it = lines.iter().filter(|l| l.contains(&port)).count();
    assert!(
        about_it <= 6,
        "a handful of lines about the stopped replica, got {about_it}:\n{}",
        lines.join("\n")
    );
    let warnings = lines.iter().filter(|l| l.contains(" WARN ")).count();
    assert!(
        warnings <= 4,
        "a handful of WARN lines for one outage, got {warnings}:\n{}",
        lines.join("\n")
    );
}
