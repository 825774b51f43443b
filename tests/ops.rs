//! The operations endpoint: `/metrics` scraped and parsed while real traffic
//! flows, `/healthz`, and `/readyz` flipping while draining or when a primary
//! is unreachable.

mod common;

use std::time::Duration;

use common::*;

fn ops_config(primary: &str, mode: &str, replicas: &[String]) -> pgswitch::config::Config {
    config_from_toml(&format!(
        r#"
        [pgswitch]
        listen = "127.0.0.1:0"
        metrics_listen = "127.0.0.1:0"
        pool_mode = "{mode}"
        pool_size = 4
        health_check_interval = "50ms"
        [[databases]]
        name = "app"
        primary = "{primary}"
        replicas = {replicas:?}
        [[users]]
        name = "app"
        password = "app-secret"
        "#,
    ))
}

async fn scrape(proxy: &Proxy) -> std::collections::BTreeMap<String, f64> {
    let (status, body) = http_get(proxy.metrics_addr.expect("metrics on"), "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse_metrics(&body)
}

fn value(m: &std::collections::BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_with_traffic() {
    let proxy = Proxy::start(ops_config(&primary_url(), "transaction", &replica_urls())).await;
    let c = proxy.client().await;
    c.simple_query("SELECT 1").await.unwrap();
    let before = scrape(&proxy).await;
    for _ in 0..10 {
        c.simple_query("SELECT 1").await.unwrap();
    }
    let e = c.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e), "22012");
    let bad = proxy.url_as("app", "wrong", "app");
    assert!(connect(&bad).await.is_err());
    let after = scrape(&proxy).await;
    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(delta("pgswitch_queries_total{pool=\"app/app\"}"), 11.0);
    assert_eq!(delta("pgswitch_transactions_total{pool=\"app/app\"}"), 11.0);
    assert_eq!(
        delta("pgswitch_transaction_duration_seconds_count{pool=\"app/app\"}"),
        11.0
    );
    assert_eq!(
        delta("pgswitch_server_errors_total{class=\"22\",pool=\"app/app\"}"),
        1.0
    );
    assert_eq!(delta("pgswitch_auth_failures_total"), 1.0);
    assert!(delta("pgswitch_client_received_bytes_total{pool=\"app/app\"}") > 0.0);
    assert!(delta("pgswitch_client_sent_bytes_total{pool=\"app/app\"}") > 0.0);
    let routed: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("pgswitch_route_decisions_total{"))
        .map(|(_, v)| v)
        .sum();
    assert!(routed >= 12.0, "route decisions: {routed}");
    assert_eq!(
        value(&after, "pgswitch_pool_max_connections{pool=\"app/app\"}"),
        4.0
    );
    assert_eq!(
        value(&after, "pgswitch_client_connections{state=\"waiting\"}"),
        0.0
    );
    assert_eq!(
        value(&after, "pgswitch_client_connections{state=\"idle\"}"),
        1.0
    );
    let idle_primary = format!(
        "pgswitch_server_connections{{pool=\"app/app\",server=\"{}\",state=\"idle\"}}",
        server_addr(&primary_url())
    );
    assert!(value(&after, &idle_primary) >= 1.0, "{after:?}");
    // Replica health: both replicas in rotation once the monitor has run.
    let healthy = eventually(Duration::from_secs(15), || async {
        let m = scrape(&proxy).await;
        let up: f64 = m
            .iter()
            .filter(|(k, _)| k.starts_with("pgswitch_replica_in_rotation{"))
            .map(|(_, v)| v)
            .sum();
        up == 2.0 && value(&m, "pgswitch_primary_in_recovery{pool=\"app/app\"}") == 0.0
    })
    .await;
    assert!(healthy, "replicas should be reported in rotation");
    proxy.stop().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let proxy = Proxy::start(ops_config(&primary_url(), "transaction", &[])).await;
    let ops = proxy.metrics_addr.expect("metrics on");
    assert_eq!(http_get(ops, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(http_get(ops, "/readyz").await, (200, "ready\n".into()));
    let (status, body) = http_get(ops, "/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"), "{body}");
    // Draining: not ready, while a transaction still runs and is served.
    let c = proxy.client().await;
    c.batch_execute("BEGIN").await.unwrap();
    proxy.shutdown.cancel();
    let (status, body) = http_get(ops, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");
    assert_eq!(http_get(ops, "/healthz").await.0, 200);
    c.batch_execute("COMMIT").await.unwrap();
    proxy.ends("the transaction ended (draining)").await;
}

#[tokio::test]
async fn unreachable_primary_is_not_ready() {
    let proxy = Proxy::start(ops_config(
        "postgres://app:app-secret@127.0.0.1:1/app",
        "transaction",
        &[],
    ))
    .await;
    let (status, body) = http_get(proxy.metrics_addr.expect("metrics on"), "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("127.0.0.1:1"), "{body}");
    proxy.stop().await;
}
