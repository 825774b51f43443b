//! Pool modes: who shares server connections, when they come back, and what
//! a client can observe of a previous one.

mod common;

use std::time::Duration;

use common::*;
use pgswitch::config::PoolMode;

#[tokio::test]
async fn transaction_mode_shares_one_server_between_clients() {
    let proxy = Proxy::mode(PoolMode::Transaction, 1).await;
    let a = proxy.client().await;
    let b = proxy.client().await;
    assert_eq!(
        backend_pid(&a).await,
        backend_pid(&b).await,
        "pool_size 1: same server"
    );
    // A transaction holds the server: b waits until a commits.
    a.batch_execute("BEGIN").await.unwrap();
    let (a_pid, a_xid) = {
        let row = first_row(&a, "SELECT pg_backend_pid(), txid_current()").await;
        (row[0].clone(), row[1].clone())
    };
    // The events in the order they happened, as seen by this test.
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<&str>::new()));
    let b_query = {
        let events = events.clone();
        // Whether a's transaction had committed when b's query ran, asked of
        // the server.
        let sql = format!("SELECT pg_backend_pid(), txid_status({a_xid})");
        tokio::spawn(async move {
            let row = first_row(&b, &sql).await;
            events.lock().unwrap().push("b answered");
            row
        })
    };
    // b's query is held by pgswitch, waiting for the server a holds.
    let waiting = eventually(Duration::from_secs(10), || async {
        proxy.shared.metrics.clients_waiting.get() == 1
    })
    .await;
    assert!(waiting, "b should be waiting for a server connection");
    assert!(
        !b_query.is_finished(),
        "b was answered while a held the server"
    );
    events.lock().unwrap().push("a commits");
    a.batch_execute("COMMIT").await.unwrap();
    let b_row = tokio::time::timeout(Duration::from_secs(10), b_query)
        .await
        .expect("b must be served once a commits")
        .unwrap();
    assert_eq!(*events.lock().unwrap(), ["a commits", "b answered"]);
    assert_eq!(
        b_row,
        [a_pid, "committed".to_owned()],
        "b ran on a's server after a's commit"
    );
    assert_eq!(proxy.shared.metrics.clients_waiting.get(), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn session_mode_resets_state_before_reuse() {
    let proxy = Proxy::mode(PoolMode::Session, 1).await;
    let a = proxy.client().await;
    let pid = backend_pid(&a).await;
    a.batch_execute(
        "SET work_mem = '7MB'; SET application_name = 'leaky'; PREPARE leak AS SELECT 1",
    )
    .await
    .unwrap();
    drop(a);
    let b = proxy.client().await;
    // The session ended, so the server was reset before b got it.
    let ok = eventually(Duration::from_secs(10), || async {
        backend_pid(&b).await == pid
    })
    .await;
    assert!(ok, "pool_size 1 must hand b the same server");
    let wm: String = b.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_ne!(wm, "7MB");
    let app: String = b
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(app, "leaky");
    let e = b.batch_execute("EXECUTE leak").await.unwrap_err();
    assert_eq!(sqlstate(&e), "26000");
    proxy.stop().await;
}

#[tokio::test]
async fn transaction_mode_brings_reported_parameters_in_line() {
    let proxy = Proxy::mode(PoolMode::Transaction, 1).await;
    let a = proxy.client().await;
    let b = proxy.client().await;
    a.batch_execute("SET TimeZone = 'America/New_York'; SET application_name = 'client-a'")
        .await
        .unwrap();
    // b shares the one server, but must see its own settings.
    let tz: String = b.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
    assert_ne!(tz, "America/New_York");
    let app: String = b
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(app, "client-a");
    // ...and a keeps its own when it comes back.
    let tz: String = a.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
    assert_eq!(tz, "America/New_York");
    let app: String = a
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "client-a");
    proxy.stop().await;
}

#[tokio::test]
async fn startup_parameters_are_honoured_on_shared_servers() {
    let proxy = Proxy::mode(PoolMode::Transaction, 1).await;
    let url = format!("{}?application_name=startup-app", proxy.url());
    let a = connect(&url).await.unwrap();
    let plain = proxy.client().await;
    let app: String = a
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "startup-app");
    let app: String = plain
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(app, "startup-app");
    proxy.stop().await;
}

#[tokio::test]
async fn statement_mode_refuses_transaction_blocks() {
    let proxy = Proxy::mode(PoolMode::Statement, 2).await;
    let c = proxy.client().await;
    let e = c.batch_execute("BEGIN").await.unwrap_err();
    assert_eq!(sqlstate(&e), "25P01");
    assert!(
        message(&e).contains("statement pool mode"),
        "{}",
        message(&e)
    );
    // The connection is still usable and not inside a transaction: in an
    // implicit single-statement transaction now() is the statement's start.
    assert!(!in_transaction(&c).await);
    let pid = backend_pid(&c).await;
    let su = superuser().await;
    let state: Option<String> = su
        .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state.as_deref(), Some("idle"));
    proxy.stop().await;
}

#[tokio::test]
async fn client_leaving_mid_transaction_leaves_nothing_open() {
    for mode in [PoolMode::Transaction, PoolMode::Session] {
        let proxy = Proxy::mode(mode, 1).await;
        let a = proxy.client().await;
        let tag = format!("left-mid-tx-{mode}");
        a.batch_execute(&format!("SET application_name = '{tag}'; BEGIN; SELECT 1"))
            .await
            .unwrap();
        let pid = backend_pid(&a).await;
        drop(a);
        let settled = backend_settles(pid).await;
        assert!(settled, "{mode}: server connection still in a transaction");
        // The next client gets a clean server.
        let b = proxy.client().await;
        assert!(!in_transaction(&b).await);
        proxy.stop().await;
    }
}

#[tokio::test]
async fn client_leaving_mid_copy_leaves_nothing_open() {
    use futures_util::SinkExt;
    let proxy = Proxy::mode(PoolMode::Transaction, 1).await;
    let table = format!("copy_abort_{}", std::process::id());
    let a = proxy.client().await;
    a.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v int)"
    ))
    .await
    .unwrap();
    let pid = backend_pid(&a).await;
    let sink = a
        .copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN"))
        .await
        .unwrap();
    let mut sink = Box::pin(sink);
    sink.send(bytes::Bytes::from_static(b"1\n2\n"))
        .await
        .unwrap();
    drop(sink);
    drop(a);
    let gone = backend_settles(pid).await;
    assert!(gone, "server connection left in COPY");
    let b = proxy.client().await;
    let n: i64 = b
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the aborted COPY must not commit");
    b.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    proxy.stop().await;
}

/// A client that vanishes mid-pipeline (a prepared statement's Execute
/// sent, no Sync yet) leaves a server connection that is cancelled and
/// closed, never handed to the next client in that state.
#[tokio::test]
async fn client_leaving_mid_pipeline_leaves_nothing_open() {
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let mut s = common::raw::login(proxy.addr, "postgres", "app").await;
    let msg = |tag: u8, body: &[u8]| {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    };
    let tag = "left-mid-pipeline";
    let sql = format!("SELECT pg_sleep(30) /* {tag} */\0");
    let pipeline = [
        msg(b'P', &[b"napper\0", sql.as_bytes(), &[0, 0]].concat()),
        msg(b'B', b"\0napper\0\0\0\0\0\0\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'H', b""),
    ]
    .concat();
    s.write_all(&pipeline).await.unwrap();
    let su = superuser().await;
    let running = || async {
        let q = "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()";
        su.query(q, &[&tag]).await.unwrap().len()
    };
    assert!(eventually(Duration::from_secs(10), || async { running().await == 1 }).await);
    drop(s);
    assert!(
        eventually(Duration::from_secs(10), || async { running().await == 0 }).await,
        "the abandoned query is still running"
    );
    // The next client gets a clean server connection.
    let b = proxy.client().await;
    assert!(!in_transaction(&b).await);
    assert_eq!(first_row(&b, "SELECT 1").await, ["1"]);
    proxy.stop().await;
}
