//! Named prepared statements in transaction mode: a client's statements
//! (protocol-level Parse, as drivers send them, and SQL-level `PREPARE`)
//! follow it from one server connection to the next; server connections
//! share one pooler-wide statement per text, parsed at most once each;
//! clients only ever see their own names, in replies and in errors; name
//! clashes, `Close`, `DEALLOCATE [ALL]` and `DISCARD ALL` behave as on a
//! direct connection; one client's SQL-level statements never reach
//! another; and both caps (`max_client_prepared_statements`,
//! `max_prepared_statements`) hold.
//!
//! Most tests use one server connection (pool_size 1), so clients really
//! take turns on the same backend. Backend pids are read with simple
//! queries (`server_pid`), not `backend_pid`, whose `query_one` would
//! prepare a statement of its own and skew the statement counts.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::raw::{self, error_code, query, read_until, read_until_nth};
use common::*;
use pgswitch::config::{Config, PoolMode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_postgres::{Client, Statement};

/// Transaction mode with `pool_size` server connections and `extra`
/// settings (TOML lines) under `[pgswitch]`.
fn transaction_mode(pool_size: usize, extra: &str) -> Config {
    cluster_config(
        &format!("pool_mode = \"transaction\"\npool_size = {pool_size}\n{extra}"),
        &[],
    )
}

/// The backend serving `c` for this one simple query (no Parse).
async fn server_pid(c: &Client) -> i32 {
    first_row(c, "SELECT pg_backend_pid()").await[0]
        .parse()
        .expect("a pid")
}

const TEXTS: [&str; 3] = [
    "SELECT $1::int + 1",
    "SELECT repeat($1::text, 2)",
    "SELECT count(*)::int FROM generate_series(1, $1::int)",
];

async fn prepare_three(c: &Client) -> Vec<Statement> {
    let mut out = Vec::new();
    for text in TEXTS {
        out.push(
            c.prepare(text)
                .await
                .unwrap_or_else(|e| panic!("prepare {text}: {e}")),
        );
    }
    out
}

/// Runs statement `k` of [`TEXTS`] with an argument made from `i` and
/// checks the exact result.
async fn run_one(c: &Client, statements: &[Statement], k: usize, i: i32) {
    match k {
        0 => {
            let row = c.query_one(&statements[0], &[&i]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i + 1);
        }
        1 => {
            let arg = format!("r{i}-");
            let row = c.query_one(&statements[1], &[&arg]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), format!("r{i}-r{i}-"));
        }
        _ => {
            let row = c.query_one(&statements[2], &[&i]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i);
        }
    }
}

#[tokio::test]
async fn statements_follow_clients_across_server_connections() {
    let proxy = Proxy::start(transaction_mode(2, "")).await;
    let metrics = &proxy.shared.metrics;
    let (holder1, holder2, a) = (
        proxy.client().await,
        proxy.client().await,
        proxy.client().await,
    );

    // Holder 1 keeps one server connection busy, so A prepares on the other.
    holder1.batch_execute("BEGIN").await.unwrap();
    let p1 = server_pid(&holder1).await;
    let statements = prepare_three(&a).await;
    a.batch_execute("BEGIN").await.unwrap();
    let p2 = server_pid(&a).await;
    for k in 0..3 {
        run_one(&a, &statements, k, 7).await;
    }
    a.batch_execute("COMMIT").await.unwrap();
    assert_ne!(p1, p2, "A's backend was held by holder 1");
    // Now holder 2 takes A's backend and holder 1 gives the other back:
    // A's statements must work on a connection it never prepared them on.
    holder2.batch_execute("BEGIN").await.unwrap();
    assert_eq!(server_pid(&holder2).await, p2, "the only free connection");
    holder1.batch_execute("COMMIT").await.unwrap();
    a.batch_execute("BEGIN").await.unwrap();
    assert_eq!(server_pid(&a).await, p1, "A moved to the other connection");
    for k in 0..3 {
        run_one(&a, &statements, k, 11).await;
    }
    a.batch_execute("COMMIT").await.unwrap();
    holder2.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        metrics.prepared_parses.get(),
        6,
        "each of the 3 statements parsed once on each of the 2 connections"
    );

    // Eight clients prepare the same three statements and take turns on
    // the two connections, one transaction per execution.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = proxy.url();
            tokio::spawn(async move {
                let c = connect(&url).await.expect("connect through pgswitch");
                let statements = prepare_three(&c).await;
                let mut pids = HashSet::new();
                for i in 0..20 {
                    for k in 0..3 {
                        c.batch_execute("BEGIN").await.unwrap();
                        run_one(&c, &statements, k, i).await;
                        pids.insert(server_pid(&c).await);
                        c.batch_execute("COMMIT").await.unwrap();
                    }
                }
                pids
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for pids in futures_util::future::join_all(tasks).await {
        seen.extend(pids.expect("client task"));
    }
    assert_eq!(
        seen,
        HashSet::from([p1, p2]),
        "eight clients on the pool's two backends"
    );
    assert_eq!(
        metrics.prepared_parses.get(),
        6,
        "both connections had every statement: no Parse reached a server"
    );
    assert_eq!(
        metrics.prepared_reused.get(),
        8 * 3,
        "every client Parse was answered from the connection's statements"
    );
    drop((holder1, holder2, a));
    proxy.stop().await;
}

// Raw protocol messages, for the tests that must see every reply.

fn wire(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut m = vec![tag];
    m.extend_from_slice(&((len + 4) as i32).to_be_bytes());
    for p in parts {
        m.extend_from_slice(p);
    }
    m
}

/// Parse of a named statement, no parameter types given.
fn parse(name: &str, sql: &str) -> Vec<u8> {
    wire(
        b'P',
        &[name.as_bytes(), b"\0", sql.as_bytes(), b"\0", &[0u8, 0]],
    )
}

/// Bind of `statement` to the unnamed portal, text parameters and results.
fn bind(statement: &str, params: &[&str]) -> Vec<u8> {
    let mut body = vec![0u8];
    body.extend_from_slice(statement.as_bytes());
    body.push(0);
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        body.extend_from_slice(&(p.len() as i32).to_be_bytes());
        body.extend_from_slice(p.as_bytes());
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    wire(b'B', &[&body[..]])
}

/// Execute of the unnamed portal, all rows.
fn execute() -> Vec<u8> {
    wire(b'E', &[b"\0", &0i32.to_be_bytes()])
}

fn sync() -> Vec<u8> {
    wire(b'S', &[])
}

/// Close of a statement.
fn close(name: &str) -> Vec<u8> {
    wire(b'C', &[b"S", name.as_bytes(), b"\0"])
}

/// Sends `msgs` in one write and reads the replies up to ReadyForQuery.
async fn exchange(s: &mut TcpStream, msgs: &[Vec<u8>]) -> Vec<(u8, Vec<u8>)> {
    s.write_all(&msgs.concat()).await.expect("send");
    read_until(s, b'Z').await
}

/// Drops and creates `table (v int)`.
async fn fresh_table(s: &mut TcpStream, table: &str) {
    let create = format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v int)");
    let m = exchange(s, &[query(&create)]).await;
    assert_eq!(error_code(&m), None);
}

/// Drops the table `fresh_table` made.
async fn drop_table(s: &mut TcpStream, table: &str) {
    let m = exchange(s, &[query(&format!("DROP TABLE {table}"))]).await;
    assert_eq!(error_code(&m), None);
}

/// Starts `COPY table FROM STDIN` with a Query, up to its CopyInResponse.
async fn start_copy(s: &mut TcpStream, table: &str) {
    s.write_all(&query(&format!("COPY {table} FROM STDIN")))
        .await
        .expect("send");
    let m = read_until(s, b'G').await;
    assert_eq!(tags(&m), "G", "{:?}", error_code(&m));
}

/// The reply tags in order, e.g. "12DCZ".
fn tags(msgs: &[(u8, Vec<u8>)]) -> String {
    msgs.iter().map(|(t, _)| *t as char).collect()
}

/// The first column of the first DataRow, as text.
fn first_value(msgs: &[(u8, Vec<u8>)]) -> String {
    let (_, body) = msgs.iter().find(|(t, _)| *t == b'D').expect("a DataRow");
    let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]) as usize;
    String::from_utf8_lossy(&body[6..6 + len]).into_owned()
}

/// A field (`b'M'`: the message) of the first ErrorResponse.
fn error_field(msgs: &[(u8, Vec<u8>)], field: u8) -> String {
    let (_, body) = msgs
        .iter()
        .find(|(t, _)| *t == b'E')
        .expect("an ErrorResponse");
    body.split(|&b| b == 0)
        .find(|f| f.first() == Some(&field))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

/// The whole first ErrorResponse, every field, as text.
fn error_text(msgs: &[(u8, Vec<u8>)]) -> String {
    let (_, body) = msgs
        .iter()
        .find(|(t, _)| *t == b'E')
        .expect("an ErrorResponse");
    String::from_utf8_lossy(body).into_owned()
}

#[tokio::test]
async fn errors_name_the_clients_statement() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    let m = exchange(&mut s, &[parse("mine", "SELECT $1::int"), sync()]).await;
    assert_eq!(tags(&m), "1Z", "{:?}", error_code(&m));
    let m = exchange(&mut s, &[bind("mine", &["5"]), execute(), sync()]).await;
    assert_eq!(tags(&m), "2DCZ", "{:?}", error_code(&m));
    assert_eq!(first_value(&m), "5");

    // A server error about the statement names the client's statement.
    let m = exchange(&mut s, &[bind("mine", &[]), execute(), sync()]).await;
    assert_eq!(tags(&m), "EZ");
    assert_eq!(error_code(&m).as_deref(), Some("08P01"));
    assert_eq!(
        error_field(&m, b'M'),
        "bind message supplies 0 parameters, but prepared statement \"mine\" requires 1"
    );
    assert!(
        !error_text(&m).contains("pgswitch_"),
        "the pooler-wide name leaked: {}",
        error_text(&m)
    );

    // Closed, the name is gone, and the server says so in the client's words.
    let m = exchange(&mut s, &[close("mine"), sync()]).await;
    assert_eq!(tags(&m), "3Z", "{:?}", error_code(&m));
    let m = exchange(&mut s, &[bind("mine", &["1"]), execute(), sync()]).await;
    assert_eq!(tags(&m), "EZ");
    assert_eq!(error_code(&m).as_deref(), Some("26000"));
    assert_eq!(
        error_field(&m, b'M'),
        "prepared statement \"mine\" does not exist"
    );
    drop(s);
    proxy.stop().await;
}

/// A Sync pipelined behind a Query that starts COPY FROM STDIN is ignored
/// by the server (copy-in mode), so it must not take the place of a reply
/// owed after the COPY: here the ParseComplete of the Parse pgswitch puts
/// ahead of a Bind (the connection no longer has the statement), which
/// the client must not see.
#[tokio::test]
async fn a_sync_behind_a_copy_query_gets_no_reply() {
    let config = trust_config(PoolMode::Transaction, 1, "max_prepared_statements = 1");
    let proxy = Proxy::start(config).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    let table = "prepared_copy_sync";
    fresh_table(&mut s, table).await;
    let m = exchange(&mut s, &[parse("mine", "SELECT $1::int"), sync()]).await;
    assert_eq!(tags(&m), "1Z", "{:?}", error_code(&m));
    // The connection keeps one statement: this one takes its place.
    let m = exchange(&mut s, &[parse("other", "SELECT 2"), sync()]).await;
    assert_eq!(tags(&m), "1Z", "{:?}", error_code(&m));

    let batch = [
        query(&format!("COPY {table} FROM STDIN")),
        sync(),
        wire(b'd', &[b"7\n"]),
        wire(b'c', &[]),
        bind("mine", &["5"]),
        execute(),
        sync(),
    ];
    s.write_all(&batch.concat()).await.expect("send");
    let m = read_until_nth(&mut s, b'Z', 2).await;
    assert_eq!(tags(&m), "GCZ2DCZ", "{:?}", error_code(&m));
    assert_eq!(first_value(&m), "5");

    let m = exchange(&mut s, &[query(&format!("SELECT sum(v) FROM {table}"))]).await;
    assert_eq!(first_value(&m), "7");
    exchange(&mut s, &[query(&format!("DROP TABLE {table}"))]).await;
    drop(s);
    proxy.stop().await;
}

/// An error in copy-in mode ends the COPY: the server drops the client's
/// CopyDone from then on and answers Syncs again. A Sync the client sends
/// after the error is owed its ReadyForQuery; counted as ignored, the
/// connection would go back to the pool one reply early, with this
/// client's last reply still to come (to whoever took the connection).
#[tokio::test]
async fn a_sync_after_an_error_in_copy_in_is_answered() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    let table = "copy_error_sync";
    fresh_table(&mut s, table).await;
    // Extended COPY, as tokio-postgres sends it: its Sync is ignored.
    let start = [
        parse("", &format!("COPY {table} FROM STDIN")),
        bind("", &[]),
        execute(),
        sync(),
    ];
    s.write_all(&start.concat()).await.expect("send");
    let m = read_until(&mut s, b'G').await;
    assert_eq!(tags(&m), "12G", "{:?}", error_code(&m));
    s.write_all(&wire(b'd', &[b"not a number\n"]))
        .await
        .expect("send");
    let m = read_until(&mut s, b'E').await;
    assert_eq!(error_code(&m).as_deref(), Some("22P02"));
    // The client gives up with a Sync and goes on, pipelining a CopyDone
    // (dropped by the server) and a second Query that answers late.
    let rest = [
        sync(),
        query("SELECT 1"),
        wire(b'c', &[]),
        query("SELECT pg_sleep(0.3)::text || 'late'"),
    ];
    s.write_all(&rest.concat()).await.expect("send");
    let m = read_until_nth(&mut s, b'Z', 3).await;
    assert_eq!(tags(&m), "ZTDCZTDCZ", "{:?}", error_code(&m));
    assert_eq!(
        String::from_utf8_lossy(&m.last().expect("replies").1),
        "I",
        "idle at the end"
    );
    drop_table(&mut s, table).await;
    drop(s);
    proxy.stop().await;
}

/// A Sync sent in copy-in mode is ignored by the server, unless the data
/// before it failed the COPY, and then it is answered. pgswitch cannot
/// tell which, so the client keeps its connection (pinned), and the
/// connection is closed, not pooled, when the client leaves.
#[tokio::test]
async fn a_sync_in_copy_in_mode_pins_the_client() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    let table = "copy_mid_sync";
    fresh_table(&mut s, table).await;
    let m = exchange(&mut s, &[query("SELECT pg_backend_pid()::text")]).await;
    let pid = first_value(&m);
    start_copy(&mut s, table).await;
    let data = [
        wire(b'd', &[b"1\n"]),
        sync(),
        wire(b'd', &[b"2\n"]),
        wire(b'c', &[]),
    ];
    let m = exchange(&mut s, &data).await;
    assert_eq!(tags(&m), "CZ", "{:?}", error_code(&m));
    assert_eq!(proxy.shared.metrics.pinned_clients.get(), 1);
    let m = exchange(&mut s, &[query(&format!("SELECT sum(v) FROM {table}"))]).await;
    assert_eq!(first_value(&m), "3");
    let m = exchange(&mut s, &[query("SELECT pg_backend_pid()::text")]).await;
    assert_eq!(first_value(&m), pid, "the same connection");
    drop(s);
    // The only connection of the pool was closed: the next client gets a
    // new one.
    let mut t = raw::login(proxy.addr, "postgres", "app").await;
    let m = exchange(&mut t, &[query("SELECT pg_backend_pid()::text")]).await;
    assert_ne!(
        first_value(&m),
        pid,
        "the unsure connection went back to the pool"
    );
    drop_table(&mut t, table).await;
    drop(t);
    proxy.stop().await;
}

/// A Flush in copy-in mode is ignored by the server, and holds nothing:
/// once the COPY is done the connection serves the next client, while
/// this one is still connected.
#[tokio::test]
async fn a_flush_in_copy_in_mode_keeps_the_connection_pooled() {
    let extra = "query_wait_timeout = \"2s\"";
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, extra)).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    let table = "copy_mid_flush";
    fresh_table(&mut s, table).await;
    start_copy(&mut s, table).await;
    let data = [
        wire(b'd', &[b"1\n"]),
        wire(b'H', &[]),
        wire(b'd', &[b"2\n"]),
        wire(b'c', &[]),
    ];
    let m = exchange(&mut s, &data).await;
    assert_eq!(tags(&m), "CZ", "{:?}", error_code(&m));
    // `s` stays connected: the pool's one connection must be free again.
    let mut t = raw::login(proxy.addr, "postgres", "app").await;
    let m = exchange(&mut t, &[query(&format!("SELECT sum(v) FROM {table}"))]).await;
    assert_eq!(error_code(&m), None, "the connection was still held");
    assert_eq!(first_value(&m), "3");
    assert_eq!(proxy.shared.metrics.pinned_clients.get(), 0);
    drop_table(&mut t, table).await;
    drop((s, t));
    proxy.stop().await;
}

/// A Query sent in the middle of COPY data is a protocol violation: the
/// server fails the COPY and, having lost its place in the client's
/// messages, ends the connection. The client gets the server's error, as
/// on a direct connection, and the pool serves the next client.
#[tokio::test]
async fn a_query_in_copy_in_mode_gets_the_servers_error_and_the_pool_recovers() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    let table = "copy_mid_query";
    fresh_table(&mut s, table).await;
    start_copy(&mut s, table).await;
    let data = [wire(b'd', &[b"1\n"]), query("SELECT 1")];
    let m = exchange(&mut s, &data).await;
    assert_eq!(m.first().map(|(t, _)| *t), Some(b'E'), "{}", tags(&m));
    assert_eq!(error_code(&m).as_deref(), Some("08P01"));
    drop(s);
    let mut t = raw::login(proxy.addr, "postgres", "app").await;
    let count = format!("SELECT count(*)::text FROM {table}");
    let m = exchange(&mut t, &[query(&count)]).await;
    assert_eq!(first_value(&m), "0", "the failed COPY wrote nothing");
    drop_table(&mut t, table).await;
    drop(t);
    proxy.stop().await;
}

/// The case that makes a Sync in copy-in mode unsure: the data before it
/// fails the COPY, so the server answers it. Counted as ignored, the
/// connection would go back to the pool before the client's last reply.
#[tokio::test]
async fn a_sync_behind_bad_copy_data_is_answered_and_nothing_is_lost() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    let table = "copy_bad_sync";
    fresh_table(&mut s, table).await;
    start_copy(&mut s, table).await;
    let rest = [
        wire(b'd', &[b"not a number\n"]),
        sync(),
        query("SELECT 1"),
        wire(b'c', &[]),
        query("SELECT pg_sleep(0.3)::text || 'late'"),
    ];
    s.write_all(&rest.concat()).await.expect("send");
    let m = read_until_nth(&mut s, b'Z', 4).await;
    assert_eq!(tags(&m), "EZZTDCZTDCZ", "{:?}", error_code(&m));
    assert_eq!(error_code(&m).as_deref(), Some("22P02"));
    drop_table(&mut s, table).await;
    drop(s);
    proxy.stop().await;
}

/// A COPY that fails right after its CopyInResponse, before reading any
/// data (here a BEFORE STATEMENT trigger), reads the Sync sent ahead of
/// the data after the failure, and answers it: with everything sent at
/// once, the client is owed two ReadyForQuery, not the one a COPY that
/// goes well gives.
#[tokio::test]
async fn a_copy_failing_before_its_data_answers_both_syncs() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    let table = "copy_refused_by_trigger";
    let create = format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (v int); \
         CREATE OR REPLACE FUNCTION {table}_no() RETURNS trigger LANGUAGE plpgsql \
         AS $$BEGIN RAISE EXCEPTION 'no copies'; END$$; \
         CREATE TRIGGER no_copies BEFORE INSERT ON {table} \
         FOR EACH STATEMENT EXECUTE FUNCTION {table}_no()"
    );
    let m = exchange(&mut s, &[query(&create)]).await;
    assert_eq!(error_code(&m), None);
    let batch = [
        parse("", &format!("COPY {table} FROM STDIN")),
        bind("", &[]),
        execute(),
        sync(),
        wire(b'd', &[b"1\n"]),
        wire(b'c', &[]),
        sync(),
    ];
    s.write_all(&batch.concat()).await.expect("send");
    let m = read_until_nth(&mut s, b'Z', 2).await;
    assert_eq!(tags(&m), "12GEZZ", "{:?}", error_code(&m));
    assert_eq!(error_code(&m).as_deref(), Some("P0001"));
    let m = exchange(&mut s, &[query("SELECT 'still mine'")]).await;
    assert_eq!(first_value(&m), "still mine");
    let cleanup = format!("DROP TABLE {table}; DROP FUNCTION {table}_no()");
    let m = exchange(&mut s, &[query(&cleanup)]).await;
    assert_eq!(error_code(&m), None);
    drop(s);
    proxy.stop().await;
}

#[tokio::test]
async fn duplicate_name_is_refused_like_postgres() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let mut s = raw::login(proxy.addr, "postgres", "app").await;
    let m = exchange(&mut s, &[parse("dup", "SELECT 1"), sync()]).await;
    assert_eq!(tags(&m), "1Z", "{:?}", error_code(&m));

    // The second Parse fails, and the server skips the rest to the Sync:
    // no BindComplete, no rows.
    let m = exchange(
        &mut s,
        &[
            parse("dup", "SELECT 2"),
            bind("dup", &[]),
            execute(),
            sync(),
        ],
    )
    .await;
    assert_eq!(tags(&m), "EZ");
    assert_eq!(error_code(&m).as_deref(), Some("42P05"));
    assert_eq!(
        error_field(&m, b'M'),
        "prepared statement \"dup\" already exists"
    );

    // The connection goes on, and "dup" is still the first statement.
    let m = exchange(&mut s, &[raw::query("SELECT 'still here'")]).await;
    assert_eq!(tags(&m), "TDCZ", "{:?}", error_code(&m));
    assert_eq!(first_value(&m), "still here");
    let m = exchange(&mut s, &[bind("dup", &[]), execute(), sync()]).await;
    assert_eq!(tags(&m), "2DCZ", "{:?}", error_code(&m));
    assert_eq!(first_value(&m), "1");
    drop(s);
    proxy.stop().await;
}

#[tokio::test]
async fn sql_prepare_execute_deallocate_in_transaction_mode() {
    let proxy = Proxy::start(transaction_mode(1, "")).await;
    let (a, b) = (proxy.client().await, proxy.client().await);
    assert_eq!(
        server_pid(&a).await,
        server_pid(&b).await,
        "one shared backend"
    );

    a.batch_execute("PREPARE q1 (int) AS SELECT $1 * 2")
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(first_row(&a, "EXECUTE q1(21)").await[0], "42");
        // B, on the same backend between A's transactions, cannot run it.
        let e = b.simple_query("EXECUTE q1(1)").await.unwrap_err();
        assert_eq!(sqlstate(&e), "26000", "B ran A's statement: {e}");
        assert_eq!(first_row(&b, "SELECT 'b'").await[0], "b");
    }
    a.batch_execute("BEGIN").await.unwrap();
    assert_eq!(first_row(&a, "EXECUTE q1(5)").await[0], "10");
    a.batch_execute("COMMIT").await.unwrap();

    a.batch_execute("DEALLOCATE q1").await.unwrap();
    let e = a.simple_query("EXECUTE q1(1)").await.unwrap_err();
    assert_eq!(sqlstate(&e), "26000", "{e}");
    assert_eq!(message(&e), "prepared statement \"q1\" does not exist");

    // A PREPARE inside a transaction outlives it, as on a direct connection.
    a.batch_execute("BEGIN").await.unwrap();
    a.batch_execute("PREPARE q2 (text) AS SELECT upper($1)")
        .await
        .unwrap();
    assert_eq!(first_row(&a, "EXECUTE q2('inside')").await[0], "INSIDE");
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(first_row(&a, "EXECUTE q2('after')").await[0], "AFTER");
    let e = b.simple_query("EXECUTE q2('b')").await.unwrap_err();
    assert_eq!(sqlstate(&e), "26000", "B ran A's statement: {e}");

    // A PREPARE that failed is forgotten: A keeps only q2, and its later
    // transactions (where q2 is recreated) go on.
    let e = a
        .batch_execute("PREPARE broken AS SELECT * FROM prepared_sql_no_such_table")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P01", "{e}");
    let forgotten = eventually(Duration::from_secs(10), || async {
        proxy.shared.metrics.prepared_statements.get() == 1
    })
    .await;
    assert!(
        forgotten,
        "tracked statements: {}",
        proxy.shared.metrics.prepared_statements.get()
    );
    for _ in 0..2 {
        assert_eq!(first_row(&a, "EXECUTE q2('again')").await[0], "AGAIN");
        assert_eq!(first_row(&b, "SELECT 'b'").await[0], "b");
    }
    let e = a.simple_query("EXECUTE broken").await.unwrap_err();
    assert_eq!(sqlstate(&e), "26000", "{e}");
    drop((a, b));
    proxy.stop().await;
}

#[tokio::test]
async fn deallocate_all_forgets_the_clients_statements() {
    let proxy = Proxy::start(transaction_mode(1, "")).await;
    let (a, b) = (proxy.client().await, proxy.client().await);
    assert_eq!(
        server_pid(&a).await,
        server_pid(&b).await,
        "one shared backend"
    );
    let times_ten = b.prepare("SELECT $1::int * 10").await.unwrap();
    let row = b.query_one(&times_ten, &[&4i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 40);
    let bang = a.prepare("SELECT $1::text || '!'").await.unwrap();
    let row = a.query_one(&bang, &[&"hi"]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "hi!");

    a.batch_execute("DEALLOCATE ALL").await.unwrap();
    let e = a.query_one(&bang, &[&"hi"]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "26000", "{e}");
    let text = message(&e);
    assert!(
        text.starts_with("prepared statement \"s") && text.ends_with("\" does not exist"),
        "the error should name A's own statement: {text}"
    );
    assert!(!text.contains("pgswitch_"), "{text}");
    let bang = a.prepare("SELECT $1::text || '!'").await.unwrap();
    let row = a.query_one(&bang, &[&"again"]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "again!");

    // B's statement was dropped from the backend with A's: it is parsed
    // there again on demand.
    let parses = proxy.shared.metrics.prepared_parses.get();
    let row = b.query_one(&times_ten, &[&5i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 50);
    assert!(
        proxy.shared.metrics.prepared_parses.get() > parses,
        "B's statement should have been parsed again"
    );

    // DISCARD ALL forgets them too.
    a.batch_execute("DISCARD ALL").await.unwrap();
    let e = a.query_one(&bang, &[&"hi"]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "26000", "{e}");
    let row = b.query_one(&times_ten, &[&6i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 60);
    drop((bang, times_ten, a, b));
    proxy.stop().await;
}

#[tokio::test]
async fn client_statement_cap() {
    let proxy = Proxy::start(transaction_mode(1, "max_client_prepared_statements = 3")).await;
    let c = proxy.client().await;
    let s1 = c.prepare("SELECT 1::int").await.unwrap();
    let s2 = c.prepare("SELECT 2::int").await.unwrap();
    let s3 = c.prepare("SELECT 3::int").await.unwrap();
    let e = c.prepare("SELECT 4::int").await.unwrap_err();
    assert_eq!(sqlstate(&e), "53400", "{e}");

    // The connection goes on, and the three still work. (A simple query:
    // tokio-postgres's query("...") prepares a statement of its own.)
    assert_eq!(first_row(&c, "SELECT 'alive'").await[0], "alive");
    for (s, v) in [(&s1, 1), (&s2, 2), (&s3, 3)] {
        assert_eq!(c.query_one(s, &[]).await.unwrap().get::<_, i32>(0), v);
    }
    assert_eq!(proxy.shared.metrics.prepared_statements.get(), 3);

    // Dropping a Statement sends its Close; after one round trip it has
    // surely arrived, and there is room for another.
    drop(s1);
    assert_eq!(first_row(&c, "SELECT 'closed'").await[0], "closed");
    let s4 = c.prepare("SELECT 4::int").await.unwrap();
    assert_eq!(c.query_one(&s4, &[]).await.unwrap().get::<_, i32>(0), 4);
    assert_eq!(proxy.shared.metrics.prepared_statements.get(), 3);
    assert!(proxy.shared.metrics.prepared_bytes.get() > 0);

    // A client that leaves takes its statements off the gauges; the
    // statement bodies stay counted while the server connection keeps them
    // prepared for the next client.
    let with_client = proxy.shared.metrics.prepared_bytes.get();
    drop((s2, s3, s4, c));
    let gone = eventually(Duration::from_secs(10), || async {
        proxy.shared.metrics.prepared_statements.get() == 0
            && proxy.shared.metrics.prepared_bytes.get() < with_client
    })
    .await;
    assert!(
        gone,
        "gauges after the client left: {} statements, {} bytes (were {with_client})",
        proxy.shared.metrics.prepared_statements.get(),
        proxy.shared.metrics.prepared_bytes.get()
    );
    assert!(proxy.shared.metrics.prepared_bytes.get() > 0);
    proxy.stop().await;
}

#[tokio::test]
async fn server_cap_evicts_least_recently_used() {
    let proxy = Proxy::start(transaction_mode(1, "max_prepared_statements = 2")).await;
    let c = proxy.client().await;
    let mut statements = Vec::new();
    for k in 1..=5 {
        statements.push(c.prepare(&format!("SELECT $1::int + {k}")).await.unwrap());
    }
    for i in 0..5 {
        for (k, s) in (1..=5).zip(&statements) {
            let row = c.query_one(s, &[&i]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i + k, "statement {k}, round {i}");
        }
    }
    assert!(proxy.shared.metrics.prepared_evictions.get() > 0);
    // The server connection keeps the two most recently used, no more.
    let left = rows(
        &c,
        "SELECT statement FROM pg_prepared_statements \
         WHERE name LIKE 'pgswitch\\_%' ORDER BY statement",
    )
    .await;
    let left: Vec<&str> = left.iter().map(|r| r["statement"].as_str()).collect();
    assert_eq!(left, ["SELECT $1::int + 4", "SELECT $1::int + 5"]);
    drop((statements, c));
    proxy.stop().await;
}

/// How many statements on the backend serving `c` have names that
/// (`LIKE`) or do not (`NOT LIKE`) start with the pooler-wide prefix.
async fn server_statements(c: &Client, like: &str, and: &str) -> String {
    let sql = format!(
        "SELECT count(*) FROM pg_prepared_statements WHERE name {like} 'pgswitch\\_%' {and}"
    );
    first_row(c, &sql).await[0].clone()
}

#[tokio::test]
async fn prepared_statements_are_shared_not_leaked() {
    let proxy = Proxy::start(transaction_mode(1, "")).await;
    let (a, b) = (proxy.client().await, proxy.client().await);
    assert_eq!(
        server_pid(&a).await,
        server_pid(&b).await,
        "one shared backend"
    );
    let s = a.prepare("SELECT 42").await.unwrap();
    assert_eq!(a.query_one(&s, &[]).await.unwrap().get::<_, i32>(0), 42);
    // B, on the backend right after A: A's name for it is not there, only
    // the pooler-wide statement.
    assert_eq!(
        server_statements(&b, "NOT LIKE", "").await,
        "0",
        "a client's statement name reached the server"
    );
    assert_eq!(
        server_statements(&b, "LIKE", "AND statement = 'SELECT 42'").await,
        "1",
        "A's statement under its pooler-wide name"
    );

    // Nor do SQL-level names outlive A's transactions.
    a.batch_execute("PREPARE mine_sql AS SELECT 7")
        .await
        .unwrap();
    assert_eq!(first_row(&a, "EXECUTE mine_sql").await[0], "7");
    assert_eq!(
        server_statements(&b, "NOT LIKE", "").await,
        "0",
        "A's PREPARE stayed on the server"
    );
    // ...while the shared statement stays, for everyone.
    assert_eq!(
        server_statements(&b, "LIKE", "AND statement = 'SELECT 42'").await,
        "1",
        "the shared statement was dropped with A's SQL-level one"
    );
    // A still has both.
    assert_eq!(a.query_one(&s, &[]).await.unwrap().get::<_, i32>(0), 42);
    assert_eq!(first_row(&a, "EXECUTE mine_sql").await[0], "7");
    drop((s, a, b));
    proxy.stop().await;
}

/// Describe of the unnamed portal.
fn describe_portal() -> Vec<u8> {
    wire(b'D', &[b"P", b"\0"])
}

/// Columns in the first RowDescription.
fn columns(msgs: &[(u8, Vec<u8>)]) -> i16 {
    let (_, body) = msgs
        .iter()
        .find(|(t, _)| *t == b'T')
        .expect("a RowDescription");
    i16::from_be_bytes([body[0], body[1]])
}

/// Bind `name` (parsed from `sql` first, if given), describe the portal,
/// execute it, Sync.
fn described_run(name: &str, sql: Option<&str>) -> Vec<Vec<u8>> {
    let mut msgs: Vec<Vec<u8>> = sql.map(|sql| parse(name, sql)).into_iter().collect();
    msgs.extend([bind(name, &[]), describe_portal(), execute(), sync()]);
    msgs
}

/// "cached plan must not change result type" after a schema change: a
/// client binding a statement it described before the change gets the
/// error, as from Postgres; a client that prepares the statement now (and
/// so expects today's columns) must not get it just because a server
/// connection still holds the old plan under the shared name: the request
/// runs again, once, with the statement parsed afresh.
#[tokio::test]
async fn stale_plans_are_replanned_only_when_the_client_cannot_tell() {
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let su = superuser().await;
    su.batch_execute(
        "DROP TABLE IF EXISTS prepared_stale; CREATE TABLE prepared_stale (a int);
         INSERT INTO prepared_stale VALUES (1); GRANT ALL ON prepared_stale TO PUBLIC",
    )
    .await
    .unwrap();
    let sql = "SELECT * FROM prepared_stale";
    let mut a = raw::login(proxy.addr, "postgres", "app").await;
    let m = exchange(&mut a, &described_run("a", Some(sql))).await;
    assert_eq!(tags(&m), "12TDCZ", "{:?}", error_code(&m));
    assert_eq!(columns(&m), 1);

    su.batch_execute("ALTER TABLE prepared_stale ADD COLUMN b int DEFAULT 7")
        .await
        .unwrap();
    // A binds what it described before the change, without asking again:
    // Postgres's own error.
    let m = exchange(&mut a, &[bind("a", &[]), execute(), sync()]).await;
    assert_eq!(tags(&m), "EZ");
    assert_eq!(error_code(&m).as_deref(), Some("0A000"));
    assert_eq!(
        error_field(&m, b'M'),
        "cached plan must not change result type"
    );
    assert_eq!(proxy.shared.metrics.prepared_replans.get(), 0);

    // The connection now has the statement with two columns; change the
    // table again, and a new client prepares the same text.
    let m = exchange(&mut a, &described_run("a", None)).await;
    assert_eq!(tags(&m), "2TDCZ", "{:?}", error_code(&m));
    su.batch_execute("ALTER TABLE prepared_stale ADD COLUMN c int DEFAULT 8")
        .await
        .unwrap();
    let mut b = raw::login(proxy.addr, "postgres", "app").await;
    let m = exchange(&mut b, &described_run("b", Some(sql))).await;
    assert_eq!(
        tags(&m),
        "12TDCZ",
        "replies exactly once: {:?}",
        error_code(&m)
    );
    assert_eq!(columns(&m), 3);
    assert_eq!(proxy.shared.metrics.prepared_replans.get(), 1);
    // And it keeps working.
    let m = exchange(&mut b, &described_run("b", None)).await;
    assert_eq!(tags(&m), "2TDCZ", "{:?}", error_code(&m));
    drop((a, b));
    su.batch_execute("DROP TABLE prepared_stale").await.unwrap();
    proxy.stop().await;
}

/// Queries over 1 MiB are not held back whole (they stream through as
/// before); they still work, next to named statements.
#[tokio::test]
async fn huge_queries_pass_beside_named_statements() {
    let proxy = Proxy::start(transaction_mode(1, "")).await;
    let c = proxy.client().await;
    let s = c.prepare("SELECT $1::int * 3").await.unwrap();
    let big = "x".repeat(3 << 20);
    let sql = format!("SELECT length('{big}')");
    for _ in 0..2 {
        assert_eq!(first_row(&c, &sql).await, [(3 << 20).to_string()]);
        assert_eq!(
            c.query_one(&s, &[&5i32]).await.unwrap().get::<_, i32>(0),
            15
        );
    }
    proxy.stop().await;
}

/// The replies as comparable text, one message per line, with everything a
/// client can see: RowDescription fields (name, table OID, column number,
/// type OID, size, modifier, format), DataRow values (NULL apart from
/// empty), ParameterDescription type OIDs, command tags, the transaction
/// status of ReadyForQuery, and other messages' bodies whole. Of an error
/// or notice, severity, code, message, detail and hint; not the server's
/// source file, line and routine.
fn replies(msgs: &[(u8, Vec<u8>)]) -> String {
    msgs.iter()
        .map(|(tag, body)| reply(*tag, body))
        .collect::<Vec<_>>()
        .join("\n")
}

fn reply(tag: u8, body: &[u8]) -> String {
    let mut r = Reader(body);
    let fields = match tag {
        b'T' => (0..r.i16())
            .map(|_| {
                let (name, table, column) = (r.cstr(), r.i32(), r.i16());
                let (oid, size, modifier, format) = (r.i32(), r.i16(), r.i32(), r.i16());
                format!("{name} table={table}.{column} type={oid} size={size} mod={modifier} format={format}")
            })
            .collect(),
        b'D' => (0..r.i16())
            .map(|_| match r.i32() {
                -1 => "NULL".to_owned(),
                n => format!("{:?}", String::from_utf8_lossy(r.take(n as usize))),
            })
            .collect(),
        b't' => (0..r.i16()).map(|_| format!("type={}", r.i32())).collect(),
        b'E' | b'N' => body
            .split(|&c| c == 0)
            .filter(|f| matches!(f.first(), Some(b'S' | b'C' | b'M' | b'D' | b'H')))
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect(),
        _ => vec![format!("{:?}", String::from_utf8_lossy(body))],
    };
    if matches!(tag, b'T' | b'D' | b't') {
        assert!(
            r.0.is_empty(),
            "{}: bytes after the fields: {body:?}",
            tag as char
        );
    }
    format!("{}[{}]", tag as char, fields.join(" | "))
}

/// Reads a message body's fields in order; panics on a short body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(
            self.0.len() >= n,
            "short message: {n} bytes wanted of {:?}",
            self.0
        );
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }

    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }

    fn cstr(&mut self) -> String {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .expect("a NUL-terminated string");
        let s = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        s
    }
}

/// The comparison of the randomized test sees a difference in any column
/// description or row value, not only in message types.
#[test]
fn replies_differ_when_columns_or_values_do() {
    // RowDescription of one column `name` of type `oid`, text format.
    let columns = |name: &str, oid: i32| {
        let mut b = 1i16.to_be_bytes().to_vec();
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&oid.to_be_bytes());
        b.extend_from_slice(&4i16.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        (b'T', b)
    };
    // DataRow of one value (None: NULL).
    let row = |v: Option<&str>| {
        let mut b = 1i16.to_be_bytes().to_vec();
        match v {
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        (b'D', b)
    };
    let done = (b'C', b"SELECT 1\0".to_vec());
    let idle = (b'Z', b"I".to_vec());
    let reply = |t, d| replies(&[t, d, done.clone(), idle.clone()]);
    let base = reply(columns("int4", 23), row(Some("7")));
    assert_eq!(base, reply(columns("int4", 23), row(Some("7"))));
    for (what, other) in [
        ("value", reply(columns("int4", 23), row(Some("2")))),
        ("NULL", reply(columns("int4", 23), row(None))),
        ("empty", reply(columns("int4", 23), row(Some("")))),
        ("type", reply(columns("int4", 25), row(Some("7")))),
        ("name", reply(columns("x", 23), row(Some("7")))),
    ] {
        assert_ne!(base, other, "a different {what} must show");
    }
    assert_ne!(
        base,
        replies(&[
            columns("int4", 23),
            row(Some("7")),
            done.clone(),
            (b'Z', b"T".to_vec())
        ])
    );
}

/// Random extended-protocol batches (named and unnamed Parse, Bind,
/// Describe, Execute, Close, errors of every kind, transactions,
/// DEALLOCATE) sent to Postgres directly and through pgswitch, whose one
/// server connection another client keeps using in between (with the same
/// names for other texts): every reply must be the same, with its contents
/// (see [`replies`]): column descriptions, row values, command tags,
/// transaction status, error codes and messages. Seeded, so a failure
/// repeats.
#[tokio::test]
async fn random_batches_get_the_replies_of_a_direct_connection() {
    use rand::{Rng, SeedableRng};
    // A tiny per-connection cap, so statements are closed and parsed again.
    let proxy = Proxy::start(trust_config(
        PoolMode::Transaction,
        1,
        "max_prepared_statements = 2",
    ))
    .await;
    let primary: std::net::SocketAddr = {
        let url = primary_url();
        let host_port = url.rsplit('@').next().unwrap().split('/').next().unwrap();
        host_port.parse().unwrap()
    };
    let mut direct = raw::login(primary, "postgres", "app").await;
    let mut through = raw::login(proxy.addr, "postgres", "app").await;
    let mut other = raw::login(proxy.addr, "postgres", "app").await;
    const NAMES: [&str; 4] = ["a", "b", "c", ""];
    const SQL: [&str; 5] = [
        "SELECT 1",
        "SELECT $1::int",
        "SELECT 'x' || $1::text",
        "SELEC oops",
        "SELECT 1/0",
    ];
    // PGSWITCH_TEST_SEED and PGSWITCH_TEST_ROUNDS explore further.
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let seed = env("PGSWITCH_TEST_SEED", 20261128);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut in_transaction, mut failed, mut unnamed) = (false, false, false);
    let rounds = env("PGSWITCH_TEST_ROUNDS", 400);
    // How many row descriptions and rows were compared.
    let (mut described, mut rows) = (0, 0);
    for round in 0..rounds {
        let mut batch = Vec::new();
        if rng.gen_ratio(1, 8) {
            let q = match rng.gen_range(0..11) {
                0 => "BEGIN",
                1 => "COMMIT",
                2 => "ROLLBACK",
                3 => "DEALLOCATE a",
                4 if !in_transaction => "DEALLOCATE ALL",
                5 if !in_transaction => "DISCARD ALL",
                6 => "PREPARE p1 AS SELECT 5",
                7 => "EXECUTE p1",
                8 => "DEALLOCATE p1",
                9 => "DEALLOCATE PREPARE b",
                _ => "SELECT 1",
            };
            batch.push(raw::query(q));
        } else {
            for _ in 0..rng.gen_range(1..6) {
                let mut name = NAMES[rng.gen_range(0..NAMES.len())];
                let kind = rng.gen_range(0..6);
                // In transaction mode the unnamed statement lasts only as
                // long as the client holds its server connection (as with
                // any pooler): use it only after parsing it in this turn.
                if name.is_empty() && kind != 0 && !unnamed {
                    name = "a";
                }
                let other_name = if rng.gen_ratio(1, 6) { "zz" } else { name };
                batch.push(match kind {
                    0 => {
                        unnamed |= name.is_empty();
                        parse(name, SQL[rng.gen_range(0..SQL.len())])
                    }
                    // In a failed transaction Postgres checks a Bind's
                    // parameter count before refusing it; on a connection
                    // that lacks the statement pgswitch can only answer that
                    // the transaction is aborted (see the README): no Binds
                    // there.
                    1 | 2 if !failed => {
                        let params: &[&str] = if rng.gen_bool(0.5) { &["7"] } else { &[] };
                        [bind(other_name, params), execute()].concat()
                    }
                    3 => wire(b'D', &[b"S", other_name.as_bytes(), b"\0"]),
                    4 => describe_portal(),
                    _ => close(other_name),
                });
            }
            batch.push(sync());
        }
        let want = exchange(&mut direct, &batch).await;
        let got = exchange(&mut through, &batch).await;
        assert_eq!(
            replies(&got),
            replies(&want),
            "round {round} (seed {seed}): batch tags {:?}",
            batch.iter().map(|m| m[0] as char).collect::<String>()
        );
        described += want.iter().filter(|(t, _)| *t == b'T').count();
        rows += want.iter().filter(|(t, _)| *t == b'D').count();
        let status = want.last().and_then(|(_, b)| b.first().copied());
        in_transaction = status != Some(b'I');
        failed = status == Some(b'E');
        unnamed &= in_transaction;
        // Between turns, another client uses the same server connection,
        // with the same statement names for other texts.
        if !in_transaction && rng.gen_ratio(1, 3) {
            let name = NAMES[rng.gen_range(0..3)];
            let m = exchange(&mut other, &[close(name), parse(name, "SELECT 2"), sync()]).await;
            assert_eq!(tags(&m), "31Z", "{:?}", error_code(&m));
        }
    }
    eprintln!("{rounds} rounds: {described} RowDescriptions and {rows} DataRows compared");
    assert!(
        rounds < 100 || (described > 0 && rows > 0),
        "the batches compared no rows"
    );
    drop((direct, through, other));
    proxy.stop().await;
}
