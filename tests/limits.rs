//! Limits and bad input: each gets a clear Postgres error for that client,
//! and every other client carries on.

mod common;

use std::time::Duration;

use common::raw::{self, error_code, read_until};
use common::*;
use pgswitch::config::PoolMode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Another client still gets answers.
async fn still_serves(proxy: &Proxy) {
    let c = proxy.client().await;
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn max_client_conn() {
    let proxy = Proxy::start(trust_config(
        PoolMode::Transaction,
        2,
        "max_client_conn = 2",
    ))
    .await;
    let a = proxy.client().await;
    let b = proxy.client().await;
    let e = connect(&proxy.url())
        .await
        .expect_err("third client must be refused");
    assert_eq!(sqlstate(&e), "53300");
    assert!(
        message(&e).contains("max_client_conn = 2"),
        "{}",
        message(&e)
    );
    drop(b);
    let ok = eventually(Duration::from_secs(10), || async {
        connect(&proxy.url()).await.is_ok()
    })
    .await;
    assert!(ok, "a slot must free up when a client leaves");
    assert_eq!(
        a.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    drop(a);
    proxy.stop().await;
}

#[tokio::test]
async fn wait_for_server_times_out_naming_the_pool() {
    let proxy = Proxy::start(trust_config(
        PoolMode::Transaction,
        1,
        "query_wait_timeout = \"300ms\"",
    ))
    .await;
    let holder = proxy.client().await;
    holder.batch_execute("BEGIN").await.unwrap();
    let waiter = proxy.client().await;
    let e = waiter.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "53300");
    assert!(message(&e).contains("app/app"), "{}", message(&e));
    holder.batch_execute("COMMIT").await.unwrap();
    // The refused client stays connected and is served once a server is free.
    assert_eq!(
        waiter
            .query_one("SELECT 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    // Pipelined extended-protocol requests are refused as a whole too.
    holder.batch_execute("BEGIN").await.unwrap();
    let (a, b) = tokio::join!(
        waiter.query_one("SELECT 3", &[]),
        waiter.query_one("SELECT 4", &[])
    );
    assert_eq!(sqlstate(&a.unwrap_err()), "53300");
    assert_eq!(sqlstate(&b.unwrap_err()), "53300");
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        waiter
            .query_one("SELECT 5", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );
    still_serves(&proxy).await;
    proxy.stop().await;
}

#[tokio::test]
async fn unreachable_server_is_08006_with_address_and_cause() {
    let cfg = config_from_toml(
        r#"
        [pgswitch]
        listen = "127.0.0.1:0"
        connect_timeout = "2s"
        [[databases]]
        name = "app"
        primary = "postgres://app:app-secret@127.0.0.1:1/app"
        [[users]]
        name = "app"
        password = "app-secret"
        "#,
    );
    let proxy = Proxy::start(cfg).await;
    let e = connect(&proxy.url())
        .await
        .expect_err("no server: login must fail");
    assert_eq!(sqlstate(&e), "08006");
    let m = message(&e);
    assert!(
        m.contains("127.0.0.1:1") && m.to_lowercase().contains("refused"),
        "{m}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn client_idle_timeout() {
    let proxy = Proxy::start(trust_config(
        PoolMode::Transaction,
        2,
        "client_idle_timeout = \"200ms\"",
    ))
    .await;
    let (c, done) = connect_watched(&proxy.url()).await;
    c.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(
        ended_with(done, "closed within 10s").await.as_deref(),
        Some("57P05")
    );
    proxy.stop().await;
}

#[tokio::test]
async fn idle_in_transaction_timeout_rolls_back() {
    let proxy = Proxy::start(trust_config(
        PoolMode::Transaction,
        1,
        "idle_transaction_timeout = \"200ms\"",
    ))
    .await;
    let table = format!("idle_tx_{}", std::process::id());
    let setup = proxy.client().await;
    setup
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v int)"
        ))
        .await
        .unwrap();
    let (c, done) = connect_watched(&proxy.url()).await;
    c.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();
    assert_eq!(
        ended_with(done, "closed within 10s").await.as_deref(),
        Some("25P03")
    );
    let n: i64 = setup
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the idle transaction must be rolled back");
    setup
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn oversized_message_is_refused_before_it_is_read() {
    let proxy = Proxy::start(trust_config(
        PoolMode::Transaction,
        2,
        "max_message_bytes = 4096",
    ))
    .await;
    // A header announcing 1 GB and no body: the error must come at once,
    // without waiting for (or buffering) the body.
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    let mut header = vec![b'Q'];
    header.extend_from_slice(&(1_000_000_000i32).to_be_bytes());
    s.write_all(&header).await.unwrap();
    let msgs = read_until(&mut s, b'E').await;
    assert_eq!(error_code(&msgs).as_deref(), Some("54000"));
    assert!(raw::closed(&mut s).await);
    // Through a real client too, and other clients carry on.
    let c = proxy.client().await;
    let e = c
        .simple_query(&format!("SELECT '{}'", "x".repeat(5000)))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "54000");
    still_serves(&proxy).await;
    proxy.stop().await;
}

/// Every whole message until the peer closes the connection; fails the
/// test if it is still open after `within`.
async fn read_to_end_within(s: &mut TcpStream, within: Duration) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut bytes))
        .await
        .unwrap_or_else(|_| panic!("the connection is still open after {within:?}"))
        .expect("read");
    let mut msgs = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 5 {
        let len = i32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        assert!(len >= 4 && rest.len() > len, "a torn message: {bytes:?}");
        msgs.push((rest[0], rest[5..1 + len].to_vec()));
        rest = &rest[1 + len..];
    }
    assert!(rest.is_empty(), "a torn message: {bytes:?}");
    msgs
}

#[tokio::test]
async fn garbage_and_truncated_startup_packets() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 2, "")).await;
    // HTTP on the Postgres port.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let msgs = read_until(&mut s, b'E').await;
    assert_eq!(error_code(&msgs).as_deref(), Some("08P01"));
    // Protocol 2.0.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut p = 8i32.to_be_bytes().to_vec();
    p.extend_from_slice(&0x0002_0000i32.to_be_bytes());
    s.write_all(&p).await.unwrap();
    assert_eq!(
        error_code(&read_until(&mut s, b'E').await).as_deref(),
        Some("0A000")
    );
    // Unterminated parameter list.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut p = 17i32.to_be_bytes().to_vec();
    p.extend_from_slice(&196_608i32.to_be_bytes());
    p.extend_from_slice(b"user\0abcd");
    s.write_all(&p).await.unwrap();
    assert_eq!(
        error_code(&read_until(&mut s, b'E').await).as_deref(),
        Some("08P01")
    );
    // Truncated: announces 100 bytes, sends 10, then stalls. Meanwhile
    // other clients are served...
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut p = 100i32.to_be_bytes().to_vec();
    p.extend_from_slice(&196_608i32.to_be_bytes());
    p.extend_from_slice(b"us");
    s.write_all(&p).await.unwrap();
    still_serves(&proxy).await;
    // ...and when it hangs up (its side only, so it can still read), the
    // packet can never be completed: like Postgres ("incomplete startup
    // packet"), pgswitch closes the connection, at most after an 08P01.
    s.shutdown().await.unwrap();
    let got = read_to_end_within(&mut s, Duration::from_secs(5)).await;
    assert!(
        got.is_empty() || (got.len() == 1 && error_code(&got).as_deref() == Some("08P01")),
        "a truncated startup packet got {got:?}"
    );
    still_serves(&proxy).await;
    // No user name.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&raw::startup_packet("", "app")).await.unwrap();
    assert_eq!(
        error_code(&read_until(&mut s, b'E').await).as_deref(),
        Some("08P01")
    );
    still_serves(&proxy).await;
    proxy.stop().await;
}

#[tokio::test]
async fn client_vanishing_mid_message_frees_the_server() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    for _ in 0..3 {
        let mut s = raw::login(proxy.addr, "postgres", "app").await;
        let q = raw::query("SELECT pg_sleep(0), 'a long enough query text'");
        s.write_all(&q[..12]).await.unwrap();
        s.flush().await.unwrap();
        drop(s);
    }
    // pool_size 1: the one server connection must have come back usable (or
    // been replaced), or this would time out.
    still_serves(&proxy).await;
    proxy.stop().await;
}

#[tokio::test]
async fn client_vanishing_mid_query_cancels_it() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    s.write_all(&raw::query("SELECT pg_sleep(60) /* vanishing-client */"))
        .await
        .unwrap();
    let su = superuser().await;
    let running = eventually(Duration::from_secs(10), || async {
        let n: i64 = su
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%vanishing-client%' AND state = 'active' AND pid <> pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        n == 1
    })
    .await;
    assert!(running);
    drop(s);
    let stopped = eventually(Duration::from_secs(10), || async {
        let n: i64 = su
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%vanishing-client%' AND state = 'active' AND pid <> pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        n == 0
    })
    .await;
    assert!(
        stopped,
        "the abandoned query must be cancelled, not left running for 60s"
    );
    still_serves(&proxy).await;
    proxy.stop().await;
}

/// Server connections to the primary that carry `app` as their
/// application_name (pgswitch sets each client's on the connection it lends).
async fn servers_named(app: &str) -> i64 {
    let su = superuser().await;
    su.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        &[&app],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn max_server_connections_is_shared_by_users_and_instances() {
    // 4 over 2 instances: 2 connections to the primary for this instance,
    // whatever the pools (users postgres and app, 10 each) would allow.
    let proxy = Proxy::start(trust_config(
        PoolMode::Transaction,
        10,
        "max_server_connections = 4\ninstances = 2\nquery_wait_timeout = \"1s\"",
    ))
    .await;
    let name = "pgswitch-share-test";
    let url =
        |user: &str, pw: &str| format!("{}?application_name={name}", proxy.url_as(user, pw, "app"));
    let a = connect(&url("postgres", "x")).await.unwrap();
    let b = connect(&url("postgres", "x")).await.unwrap();
    let c = connect(&url("app", "app-secret")).await.unwrap();
    for holder in [&a, &b] {
        holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    }
    assert_eq!(servers_named(name).await, 2);
    // Another user's pool has room, the database has not.
    let e = c.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "53300");
    let text = message(&e);
    assert!(
        text.contains("max_server_connections (2 for this instance: 4 shared by 2"),
        "{text}"
    );
    assert_eq!(servers_named(name).await, 2);
    // An idle connection of another pool is closed to make room.
    a.batch_execute("COMMIT").await.unwrap();
    let row = c.query_one("SELECT current_user::text", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "app");
    assert_eq!(servers_named(name).await, 2);
    // And the other way round, from the app pool's idle connection.
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    assert_eq!(servers_named(name).await, 2);
    // A client waiting when a transaction ends gets that connection's
    // place: it is closed instead of going back idle to its own pool.
    let waiting = tokio::spawn(async move {
        c.query_one("SELECT 2", &[])
            .await
            .map(|r| r.get::<_, i32>(0))
    });
    let waits = eventually(Duration::from_secs(10), || async {
        proxy.shared.metrics.clients_waiting.get() == 1
    })
    .await;
    assert!(waits, "the third client never waited");
    b.batch_execute("COMMIT").await.unwrap();
    assert_eq!(waiting.await.unwrap().expect("served within the wait"), 2);
    assert!(servers_named(name).await <= 2);
    a.batch_execute("COMMIT").await.unwrap();
    let shares = proxy.shared.pools.limits.list();
    assert_eq!(shares.len(), 1, "{shares:?}");
    assert_eq!(shares[0].1, 2, "{shares:?}");
    assert!(shares[0].2 <= 2, "{shares:?}");

    // Without `instances`, a second instance counts itself and its peer.
    let peer = format!("peers = [\"{}\"]\nmax_server_connections = 4", proxy.addr);
    let second = Proxy::start(trust_config(PoolMode::Transaction, 10, &peer)).await;
    let halved = eventually(Duration::from_secs(10), || async {
        second.shared.pools.limits.list().iter().all(|s| s.1 == 2)
            && !second.shared.pools.limits.list().is_empty()
    })
    .await;
    assert!(halved, "{:?}", second.shared.pools.limits.list());
    second.stop().await;
    proxy.stop().await;
}
