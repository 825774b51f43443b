//! Read-your-writes against real replication lag: replica 2's replay is
//! paused (`pg_wal_replay_pause()`) while it stays in rotation, so only
//! pgswitch's LSN fence stands between a client and a stale read. In a test
//! binary of its own, so that pausing replay disturbs no other test.

mod common;

use common::*;

/// Replica 2's replay is paused by one test at a time (each checks what the
/// pause does, and ends it).
static PAUSE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(interval: &str, extra: &str) -> pgswitch::config::Config {
    // A paused replica stays in rotation: the fence alone must protect.
    let settings = format!(
        "pool_mode = \"transaction\"\npool_size = 4\nhealth_check_interval = \"{interval}\"\n\
         max_replica_lag_bytes = 1073741824\nmax_replica_lag = \"0s\"\n{extra}"
    );
    cluster_config(&settings, &replica_urls())
}

/// Count of rows and the port of the server that counted them.
async fn count_and_port(c: &tokio_postgres::Client, table: &str) -> (String, String) {
    let row = first_row(
        c,
        &format!("SELECT count(*)::text, inet_server_port()::text FROM {table}"),
    )
    .await;
    (row[0].clone(), row[1].clone())
}

#[tokio::test]
async fn read_your_writes_holds_for_1000_writes_with_a_lagging_replica() {
    // Reads wait for a replica that has replayed the client's write, so
    // most of them run on one: the fence is exercised, not sidestepped.
    let proxy = Proxy::start(config("10ms", "read_your_writes_timeout = \"2s\"")).await;
    let c = proxy.client().await;
    let table = format!("ryw_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int)"
    ))
    .await
    .unwrap();
    let (replica1, replica2) = (replica_port(0).to_string(), replica_port(1).to_string());
    let mut served = std::collections::BTreeMap::<String, usize>::new();
    // Resumed at iteration 500, or when dropped if the test fails before.
    let _paused = PAUSE.lock().await;
    let mut lag = Some(LaggingReplica::start("rywlag").await);
    for i in 0..1000 {
        if i == 500 {
            // The premise: replica 2 really is behind (it has not even got
            // the table's first rows)...
            let direct = connect(&replica_urls()[1]).await.unwrap();
            let stale = match direct
                .simple_query(&format!("SELECT count(*)::text FROM {table}"))
                .await
            {
                Err(_) => true, // not even the table yet
                Ok(rows) => !rows.iter().any(|m| {
                    matches!(m,
                    tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("500"))
                }),
            };
            assert!(stale, "replica 2 replayed while paused");
            // ...then it catches up for the second half.
            if let Some(lag) = lag.take() {
                lag.resume().await;
            }
        }
        c.batch_execute(&format!("INSERT INTO {table} VALUES ({i})"))
            .await
            .unwrap();
        let (count, port) = count_and_port(&c, &table).await;
        assert_eq!(
            count,
            (i + 1).to_string(),
            "iteration {i}: read did not see the client's own write (server {port})"
        );
        if i < 500 {
            assert_ne!(
                port, replica2,
                "iteration {i}: read from the paused replica"
            );
        }
        *served.entry(port).or_default() += 1;
    }
    eprintln!("reads right after a write, by server port: {served:?}");
    assert!(
        served.get(&replica1).copied().unwrap_or(0) >= 500,
        "most reads should have waited for replica 1: {served:?}"
    );
    c.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn reads_wait_for_a_replica_to_catch_up() {
    // With a wait bound well above the monitor's interval, a read right
    // after a write finds a replica that has replayed it instead of falling
    // back to the primary.
    let proxy = Proxy::start(config("50ms", "read_your_writes_timeout = \"5s\"")).await;
    let c = proxy.client().await;
    let table = format!("rywwait_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int)"
    ))
    .await
    .unwrap();
    let primary = primary_port().to_string();
    // Until the monitor's first round, no replica is known to be in rotation.
    let ready = eventually(std::time::Duration::from_secs(15), || async {
        count_and_port(&c, &table).await.1 != primary
    })
    .await;
    assert!(ready, "no replica came into rotation");
    for i in 0..20 {
        c.batch_execute(&format!("INSERT INTO {table} VALUES ({i})"))
            .await
            .unwrap();
        let (count, port) = count_and_port(&c, &table).await;
        assert_eq!(count, (i + 1).to_string(), "iteration {i} (server {port})");
        assert_ne!(port, primary, "iteration {i}: the read did not wait");
    }
    let fallbacks = proxy
        .shared
        .metrics
        .render()
        .lines()
        .any(|l| l.starts_with("pgswitch_read_fallbacks_total{cause=\"read_your_writes\"}"));
    assert!(!fallbacks, "no read should have fallen back");
    c.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    proxy.stop().await;
}

/// A frontend message: tag, length, body.
fn frontend(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

#[tokio::test]
async fn a_write_pipelined_behind_a_close_still_raises_the_fence() {
    // A driver closes a statement it dropped (Close, Sync: that segment
    // runs nothing, so it goes to the primary without a fence) and, in the
    // same write, sends its next statement, a write. The write runs on that
    // same connection; the read that follows must still see it.
    use common::raw;
    use tokio::io::AsyncWriteExt;
    let toml = format!(
        "{}\n[[users]]\nname = \"postgres\"\nauth = \"trust\"\n",
        cluster_toml(
            "pool_mode = \"transaction\"\npool_size = 4\nhealth_check_interval = \"10ms\"\n\
             max_replica_lag_bytes = 1073741824\nmax_replica_lag = \"0s\"",
            &replica_urls(),
        )
    );
    let proxy = Proxy::start(config_from_toml(&toml)).await;
    let table = format!("rywpipe_{}", std::process::id());
    let setup = proxy.client().await;
    setup
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int); \
             GRANT ALL ON {table} TO postgres"
        ))
        .await
        .unwrap();
    let c = proxy.client().await;
    let primary = primary_port().to_string();
    let ready = eventually(std::time::Duration::from_secs(15), || async {
        count_and_port(&c, &table).await.1 != primary
    })
    .await;
    assert!(ready, "no replica came into rotation");
    let _paused = PAUSE.lock().await;
    let _lag = LaggingReplica::start("rywpipelag").await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    for i in 0..20 {
        let insert = format!("INSERT INTO {table} VALUES ({i})");
        let mut batch = frontend(b'C', b"Sgone\0");
        batch.extend(frontend(b'S', b""));
        let mut parse = Vec::new();
        parse.push(0); // unnamed statement
        parse.extend_from_slice(insert.as_bytes());
        parse.extend_from_slice(&[0, 0, 0]);
        batch.extend(frontend(b'P', &parse));
        batch.extend(frontend(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
        batch.extend(frontend(b'E', &[0, 0, 0, 0, 0]));
        batch.extend(frontend(b'S', b""));
        s.write_all(&batch).await.unwrap();
        // Both segments' replies, which may come in one read.
        let replies = raw::read_until_nth(&mut s, b'Z', 2).await;
        assert_eq!(raw::error_code(&replies), None, "{replies:?}");
        s.write_all(&raw::query(&format!(
            "SELECT count(*)::text || ' ' || inet_server_port()::text FROM {table} WHERE id = {i}"
        )))
        .await
        .unwrap();
        let reply = raw::read_until(&mut s, b'Z').await;
        let row = reply
            .iter()
            .find(|(t, _)| *t == b'D')
            .map(|(_, body)| String::from_utf8_lossy(&body[6..]).into_owned())
            .expect("a row");
        assert!(
            row.starts_with("1 "),
            "iteration {i}: the read did not see the write pipelined behind the Close (count, server: {row})"
        );
    }
    drop(s);
    setup
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    proxy.stop().await;
}
