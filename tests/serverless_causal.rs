//! Causal reads across stateless HTTP requests: a write's answer carries
//! the primary's WAL position (`Pgswitch-Lsn`), and a read that sends it
//! back is served only by a replica that has replayed it, or the primary.
//! Replica 2's replay is paused meanwhile (while it stays in rotation), so
//! in a test binary of its own: pausing replay disturbs no other test.

mod common;

use std::time::Duration;

use common::http::{post_sql, query};
use common::*;
use serde_json::json;

const CONN: &str = "postgres://app:app-secret@anyhost/app";

/// A `pg_lsn` text as a number.
fn lsn_of(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').expect("X/Y");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

#[tokio::test]
async fn reads_carrying_a_writes_position_never_see_a_paused_replica_before_it() {
    let settings = "pool_mode = \"transaction\"\npool_size = 4\nhealth_check_interval = \"10ms\"\n\
                    max_replica_lag_bytes = 1073741824\nmax_replica_lag = \"0s\"\n\
                    read_your_writes_timeout = \"2s\"\nhttp_listen = \"127.0.0.1:0\"";
    let proxy = Proxy::start(cluster_config(settings, &replica_urls())).await;
    let addr = proxy.http_addr.expect("the front is on");
    let table = format!("causal_{}", std::process::id());
    let sql = |text: String, lsn: Option<String>| async move {
        let headers: Vec<(&str, &str)> = match &lsn {
            Some(l) => vec![("Pgswitch-Lsn", l.as_str())],
            None => vec![],
        };
        let r = post_sql(addr, CONN, &headers, &query(&text, json!([]))).await;
        assert_eq!(r.status, 200, "{text}: {}", r.body);
        r
    };
    // The very first request, before its pool exists, already knows there
    // are replicas and hands out a position.
    let r = sql(format!("DROP TABLE IF EXISTS {table}"), None).await;
    assert!(
        r.header("pgswitch-lsn").is_some(),
        "the first request's answer carries the position"
    );
    let r = sql(format!("CREATE TABLE {table} (id int)"), None).await;
    assert!(
        r.header("pgswitch-lsn").is_some(),
        "a write's answer carries the position"
    );
    // Both replicas have the (empty) table before replica 2 stops.
    for url in replica_urls() {
        let direct = connect(&url).await.unwrap();
        let probe = format!("SELECT 1 FROM {table}");
        assert!(
            eventually(Duration::from_secs(10), || async {
                direct.simple_query(&probe).await.is_ok()
            })
            .await,
            "the table never reached {url}"
        );
    }
    let lag = LaggingReplica::start("causallag").await;
    let w = sql(format!("INSERT INTO {table} VALUES (1)"), None).await;
    let lsn = w
        .header("pgswitch-lsn")
        .expect("the insert's position")
        .to_owned();
    let read = format!("SELECT count(*)::int AS n, inet_server_port() AS port FROM {table}");
    let (replica1, replica2) = (i64::from(replica_port(0)), i64::from(replica_port(1)));
    // The premise: without the position, some reads land on replica 2 and
    // miss the row.
    let mut stale = 0;
    for _ in 0..40 {
        let r = sql(read.clone(), None).await.json();
        if r["rows"][0]["n"] == 0 {
            assert_eq!(
                r["rows"][0]["port"], replica2,
                "only the paused replica is behind"
            );
            stale += 1;
        }
    }
    assert!(
        stale > 0,
        "no read reached the paused replica: the test proves nothing"
    );
    // With it: 100 reads, none stale, none on replica 2.
    let mut ports = std::collections::BTreeMap::new();
    for i in 0..100 {
        let r = sql(read.clone(), Some(lsn.clone())).await;
        let v = r.json();
        assert_eq!(v["rows"][0]["n"], 1, "read {i} was stale: {v}");
        let port = v["rows"][0]["port"].as_i64().unwrap();
        assert_ne!(port, replica2, "read {i} ran on the paused replica");
        *ports.entry(port).or_insert(0) += 1;
        // A read's answer hands the position on (the same, or the
        // primary's later one if the primary served it).
        let handed = r
            .header("pgswitch-lsn")
            .expect("a read's answer carries a position");
        assert!(
            lsn_of(handed) >= lsn_of(&lsn),
            "read {i} handed back {handed}, before {lsn}"
        );
    }
    assert!(
        ports.contains_key(&replica1),
        "replica 1 (caught up) served none: {ports:?}"
    );
    lag.resume().await;
    // Replayed: replica 2 serves reads with the position again.
    let back = eventually(Duration::from_secs(20), || {
        let (read, lsn) = (read.clone(), lsn.clone());
        async move {
            let v = post_sql(
                addr,
                CONN,
                &[("Pgswitch-Lsn", &lsn)],
                &query(&read, json!([])),
            )
            .await
            .json();
            assert_eq!(v["rows"][0]["n"], 1, "stale after resume: {v}");
            v["rows"][0]["port"] == replica2
        }
    })
    .await;
    assert!(
        back,
        "replica 2 never served a read with the position after replaying it"
    );
    sql(format!("DROP TABLE {table}"), None).await;
    proxy.stop().await;
}
