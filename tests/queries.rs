//! Per-query statistics through real traffic: fingerprints fold literals,
//! calls/rows/errors/latency/replica share add up, and `SHOW QUERIES` and
//! `/queries` agree.

mod common;

use common::*;

#[tokio::test]
async fn statements_are_aggregated_by_fingerprint() {
    let settings = "metrics_listen = \"127.0.0.1:0\"\npool_mode = \"transaction\"\n\
        health_check_interval = \"50ms\"\nconsistency = \"eventual\"\n\
        slow_query_threshold = \"100ms\"\nadmin_users = [\"app\"]";
    let cfg = cluster_config(settings, &replica_urls());
    let proxy = Proxy::start(cfg).await;
    let c = proxy.client().await;
    // Wait until reads reach replicas, so the replica share is not zero.
    let primary = primary_port().to_string();
    let ready = eventually(std::time::Duration::from_secs(15), || async {
        first_row(&c, "SELECT inet_server_port()::text").await[0] != primary
    })
    .await;
    assert!(ready);
    for i in 0..20 {
        c.simple_query(&format!("SELECT {i} AS v, g FROM generate_series(1, 3) g"))
            .await
            .unwrap();
    }
    for i in 0..10i32 {
        let t = tokio_postgres::types::Type::INT4;
        c.query_typed("SELECT $1::int + 1 AS next", &[(&i, t)])
            .await
            .unwrap();
    }
    // Prepared once, executed in 7 later batches: its own entry.
    let prepared = c.prepare("SELECT $1::int * 7 AS seven").await.unwrap();
    for i in 0..7i32 {
        c.query_one(&prepared, &[&i]).await.unwrap();
    }
    for _ in 0..3 {
        assert!(c.simple_query("SELECT 1/0").await.is_err());
    }
    c.simple_query("SELECT pg_sleep(0.2)").await.unwrap();

    let admin = connect(&proxy.url_as("app", "app-secret", "pgswitch"))
        .await
        .unwrap();
    let rows = rows(&admin, "SHOW QUERIES").await;
    let find = |fp: &str| {
        rows.iter()
            .find(|r| r["fingerprint"] == fp)
            .unwrap_or_else(|| panic!("no fingerprint {fp} in {rows:#?}"))
            .clone()
    };
    // The prepare (Parse, Describe, Sync) is a request too: 1 + 7 calls.
    let seven = find("select ?::int * ? as seven");
    assert_eq!(
        (seven["calls"].as_str(), seven["rows"].as_str()),
        ("8", "7")
    );
    let series = find("select ? as v, g from generate_series(?) g");
    assert_eq!(
        (
            series["calls"].as_str(),
            series["rows"].as_str(),
            series["errors"].as_str()
        ),
        ("20", "60", "0")
    );
    assert!(
        series["replica_share"].parse::<f64>().unwrap() > 0.5,
        "{series:?}"
    );
    assert_eq!(series["last_route_reason"], "read");
    let typed = find("select ?::int + ? as next");
    assert_eq!(typed["calls"], "10");
    let div = find("select ?/?");
    assert_eq!((div["calls"].as_str(), div["errors"].as_str()), ("3", "3"));
    let sleep = find("select pg_sleep(?)");
    assert!(
        sleep["max_ms"].parse::<f64>().unwrap() >= 200.0,
        "{sleep:?}"
    );
    assert!(
        sleep["p99_ms"].parse::<f64>().unwrap() >= 200.0,
        "{sleep:?}"
    );
    // Heaviest first: the sleep dominates total time.
    assert_eq!(rows[0]["fingerprint"], "select pg_sleep(?)");

    let (status, body) = http_get(proxy.metrics_addr.unwrap(), "/queries").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["fingerprint"] == "select ? as v, g from generate_series(?) g")
        .expect("in /queries too");
    assert_eq!(entry["calls"], 20);
    assert_eq!(entry["rows"], 60);
    proxy.stop().await;
}
