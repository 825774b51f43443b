//! Which server serves a read: load balancing between replicas
//! (`load_balancing`, weights) and `primary_reads`, through pgswitch
//! against the real primary and two streaming replicas.
//! Where a statement ran is asked of the server (`inet_server_port()`).

mod common;

use std::time::Duration;

use common::*;

/// Whether both replicas, and not the primary, serve a handful of reads.
async fn both_replicas_serve(c: &tokio_postgres::Client) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..8 {
        seen.insert(port_that_ran(c, "SELECT inet_server_port()").await);
    }
    seen.len() == 2 && !seen.contains(&primary_port())
}

#[tokio::test]
async fn round_robin_follows_weights() {
    let r = replica_urls();
    let cfg = config_from_toml(&format!(
        r#"
        [pgswitch]
        listen = "127.0.0.1:0"
        pool_mode = "statement"
        health_check_interval = "50ms"
        load_balancing = "round_robin"
        consistency = "eventual"
        [[databases]]
        name = "app"
        primary = "{primary}"
        replicas = [{{ url = "{r1}", weight = 1 }}, {{ url = "{r2}", weight = 3 }}]
        [[users]]
        name = "app"
        password = "app-secret"
        "#,
        primary = primary_url(),
        r1 = r[0],
        r2 = r[1],
    ));
    let proxy = Proxy::start(cfg).await;
    let c = proxy.client().await;
    // Both replicas in rotation first.
    let both = eventually(Duration::from_secs(15), || both_replicas_serve(&c)).await;
    assert!(both, "both replicas should serve reads");
    let mut ports = std::collections::BTreeMap::new();
    for _ in 0..400 {
        *ports
            .entry(port_that_ran(&c, "SELECT inet_server_port()").await)
            .or_insert(0) += 1;
    }
    // 1:3, give or take a moment a replica was out of rotation.
    let (r1, r2) = (ports[&replica_port(0)], ports[&replica_port(1)]);
    assert!(
        (85..=115).contains(&r1) && r1 + r2 == 400,
        "weights 1 and 3: {ports:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn least_outstanding_avoids_the_busy_replica() {
    let cfg = routing_config(
        "transaction",
        "load_balancing = \"least_outstanding\"\nconsistency = \"eventual\"",
    );
    let proxy = Proxy::start(cfg).await;
    let (a, b) = (proxy.client().await, proxy.client().await);
    let both = eventually(Duration::from_secs(15), || both_replicas_serve(&b)).await;
    assert!(both, "both replicas should serve reads");
    // A read-only transaction holds a connection to one replica ...
    a.batch_execute("BEGIN READ ONLY").await.unwrap();
    let held = port_that_ran(&a, "SELECT inet_server_port()").await;
    assert_ne!(held, primary_port());
    // ... so every read meanwhile goes to the other, the less busy.
    for _ in 0..20 {
        let port = port_that_ran(&b, "SELECT inet_server_port()").await;
        assert_ne!(
            port, held,
            "a read went to the replica with a transaction open"
        );
        assert_ne!(port, primary_port());
    }
    a.batch_execute("COMMIT").await.unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn primary_reads_never_fails_reads_without_replicas() {
    let dead = [
        "postgres://app:app-secret@127.0.0.1:1/app".to_owned(),
        "postgres://app:app-secret@127.0.0.1:2/app".to_owned(),
    ];
    let cfg = routing_config_with("transaction", "primary_reads = \"never\"", &dead);
    let proxy = Proxy::start(cfg).await;
    let c = proxy.client().await;
    let e = c.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "57P03", "{e}");
    assert!(
        message(&e).contains("primary_reads = never"),
        "{}",
        message(&e)
    );
    // The connection lives on, and writes still go to the primary.
    assert_eq!(
        port_that_ran(
            &c,
            "SELECT inet_server_port() FROM (SELECT txid_current()) t"
        )
        .await,
        primary_port()
    );
    let refused = "pgswitch_requests_refused_total{sqlstate=\"57P03\"}";
    assert_eq!(sample(&proxy, refused), 1, "{}", metrics(&proxy));
    proxy.stop().await;
}

#[tokio::test]
async fn primary_reads_always_joins_the_rotation() {
    let cfg = routing_config_with(
        "transaction",
        "primary_reads = \"always\"\nload_balancing = \"round_robin\"\nconsistency = \"eventual\"",
        &replica_urls()[..1],
    );
    let proxy = Proxy::start(cfg).await;
    let c = proxy.client().await;
    assert!(reads_reach_a_replica(&c).await);
    let mut ports = std::collections::BTreeMap::new();
    for _ in 0..40 {
        *ports
            .entry(port_that_ran(&c, "SELECT inet_server_port()").await)
            .or_insert(0) += 1;
    }
    // In turn: 20 each, give or take a moment the replica was out of
    // rotation.
    let (p, r) = (
        ports[&primary_port()],
        ports.get(&replica_port(0)).copied().unwrap_or(0),
    );
    assert!(
        (17..=23).contains(&p) && p + r == 40,
        "round robin over the replica and the primary: {ports:?}"
    );
    proxy.stop().await;
}
