//! Cancel requests reach the query of the client that sent them, and never
//! another client's.

mod common;

use std::time::Duration;

use common::*;
use pgswitch::config::PoolMode;

async fn active_with(tag: &str) -> i64 {
    let su = superuser().await;
    su.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
        &[&tag],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn cancel_stops_the_clients_own_query() {
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let proxy = Proxy::mode(mode, 2).await;
        let c = proxy.client().await;
        let token = c.cancel_token();
        let tag = format!("cancel-own-{mode}");
        let sql = format!("SELECT pg_sleep(30) /* {tag} */");
        let running = tokio::spawn(async move { c.simple_query(&sql).await.map(|_| ()) });
        assert!(
            eventually(Duration::from_secs(10), || async {
                active_with(&tag).await == 1
            })
            .await
        );
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("cancelled within 10s")
            .unwrap();
        assert_eq!(sqlstate(&r.unwrap_err()), "57014", "{mode}");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn stale_cancel_never_hits_another_client() {
    // pool_size 1: a and b take turns on the same server connection.
    let proxy = Proxy::mode(PoolMode::Transaction, 1).await;
    let a = proxy.client().await;
    let a_token = a.cancel_token();
    a.query_one("SELECT 1", &[]).await.unwrap();
    let b = proxy.client().await;
    let tag = "stale-cancel-victim";
    let sql = format!("SELECT pg_sleep(1) /* {tag} */");
    let running = tokio::spawn(async move { b.simple_query(&sql).await.map(|_| ()) });
    assert!(
        eventually(Duration::from_secs(10), || async {
            active_with(tag).await == 1
        })
        .await
    );
    // a is idle: its cancel must go nowhere, even though its last server is
    // now running b's query.
    a_token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("b finished")
        .unwrap();
    assert!(r.is_ok(), "b's query was cancelled by a's stale key: {r:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn cancel_with_a_wrong_key_is_ignored() {
    let proxy = Proxy::mode(PoolMode::Session, 1).await;
    let c = proxy.client().await;
    let tag = "wrong-key-victim";
    let sql = format!("SELECT pg_sleep(1) /* {tag} */");
    let running = tokio::spawn(async move { c.simple_query(&sql).await.map(|_| ()) });
    assert!(
        eventually(Duration::from_secs(10), || async {
            active_with(tag).await == 1
        })
        .await
    );
    // Every pid pgswitch could have issued, with a secret that is wrong.
    for pid in 1..=64i32 {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let mut p = 16i32.to_be_bytes().to_vec();
        p.extend_from_slice(&80_877_102i32.to_be_bytes());
        p.extend_from_slice(&pid.to_be_bytes());
        p.extend_from_slice(&0i32.to_be_bytes());
        s.write_all(&p).await.unwrap();
    }
    let r = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("finished")
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    proxy.stop().await;
}

/// Transaction mode: a prepared statement's query, with another request
/// pipelined behind it, is cancelled; only it fails, and the statement
/// still works afterwards on whatever server connection comes next.
#[tokio::test]
async fn cancel_stops_a_prepared_pipelined_query() {
    let proxy = Proxy::mode(PoolMode::Transaction, 2).await;
    let c = std::sync::Arc::new(proxy.client().await);
    let token = c.cancel_token();
    let tag = "cancel-prepared";
    let sleep = c
        .prepare(&format!("SELECT pg_sleep($1::float8)::text /* {tag} */"))
        .await
        .unwrap();
    let add = c.prepare("SELECT $1::int + 1").await.unwrap();
    let (c1, c2, s1, a1) = (c.clone(), c.clone(), sleep.clone(), add.clone());
    // Both requests are written before the first is answered: a pipeline.
    let running = tokio::spawn(async move {
        let slow = c1.query_one(&s1, &[&30f64]);
        let quick = c2.query_one(&a1, &[&41i32]);
        futures_util::future::join(slow, quick).await
    });
    assert!(
        eventually(Duration::from_secs(10), || async {
            active_with(tag).await == 1
        })
        .await
    );
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (slow, quick) = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("cancelled within 10s")
        .unwrap();
    assert_eq!(sqlstate(&slow.unwrap_err()), "57014");
    assert_eq!(quick.unwrap().get::<_, i32>(0), 42, "the pipelined request");
    let row = c.query_one(&sleep, &[&0f64]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "");
    proxy.stop().await;
}

/// Two instances behind one address: the client's CancelRequest lands on
/// the other one, which passes it to its peer.
#[tokio::test]
async fn a_cancel_sent_to_another_instance_reaches_the_query() {
    let settings = |id: u8, peers: &str| {
        format!("pool_mode = \"transaction\"\npool_size = 2\ninstance_id = {id}\npeers = [{peers}]")
    };
    let a = Proxy::start(cluster_config(&settings(1, ""), &[])).await;
    // b knows a by a name that resolves to it; a knows no peer.
    let b_peers = format!("\"localhost:{}\"", a.addr.port());
    let b = Proxy::start(cluster_config(&settings(2, &b_peers), &[])).await;
    let c = a.client().await;
    let token = c.cancel_token();
    let tag = "cancel-via-peer";
    let sql = format!("SELECT pg_sleep(30) /* {tag} */");
    let running = tokio::spawn(async move { c.simple_query(&sql).await.map(|_| ()) });
    assert!(
        eventually(Duration::from_secs(10), || async {
            active_with(tag).await == 1
        })
        .await
    );
    // The client's key names instance 1.
    let to_b = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    token
        .cancel_query_raw(to_b, tokio_postgres::NoTls)
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("cancelled within 10s through the peer")
        .unwrap();
    assert_eq!(sqlstate(&r.unwrap_err()), "57014");
    // A cancel b has no peer for is dropped: a's second query runs on.
    let c2 = a.client().await;
    let token2 = c2.cancel_token();
    let a2 = Proxy::start(cluster_config(&settings(3, ""), &[])).await;
    let tag2 = "cancel-no-peer";
    let sql2 = format!("SELECT pg_sleep(1) /* {tag2} */");
    let running2 = tokio::spawn(async move { c2.simple_query(&sql2).await.map(|_| ()) });
    assert!(
        eventually(Duration::from_secs(10), || async {
            active_with(tag2).await == 1
        })
        .await
    );
    let to_a2 = tokio::net::TcpStream::connect(a2.addr).await.unwrap();
    token2
        .cancel_query_raw(to_a2, tokio_postgres::NoTls)
        .await
        .unwrap();
    running2
        .await
        .unwrap()
        .expect("an instance without peers drops a cancel for another instance's client");
    a2.stop().await;
    b.stop().await;
    a.stop().await;
}
