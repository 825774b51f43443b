//! The wire protocol through pgswitch against the real primary: simple and
//! extended queries, pipelining, COPY, notices, notifications, auth.

mod common;

use common::*;
use futures_util::{pin_mut, SinkExt, StreamExt, TryStreamExt};
use pgswitch::config::PoolMode;

#[tokio::test]
async fn simple_and_extended_queries() {
    for mode in [
        PoolMode::Session,
        PoolMode::Transaction,
        PoolMode::Statement,
    ] {
        let proxy = Proxy::mode(mode, 2).await;
        let c = proxy.client().await;
        let msgs = c
            .simple_query("SELECT 1 AS a; SELECT 'x' AS b")
            .await
            .unwrap();
        let rows: Vec<String> = msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect();
        assert_eq!(rows, ["1", "x"], "{mode}");
        let row = c
            .query_one("SELECT $1::int + 1, $2::text", &[&41i32, &"hi"])
            .await
            .unwrap();
        assert_eq!((row.get::<_, i32>(0), row.get::<_, &str>(1)), (42, "hi"));
        // An error in the middle leaves the connection usable.
        let err = c.query_one("SELECT 1/0", &[]).await.unwrap_err();
        assert_eq!(sqlstate(&err), "22012");
        assert_eq!(
            c.query_one("SELECT 7", &[]).await.unwrap().get::<_, i32>(0),
            7
        );
        drop(c);
        proxy.stop().await;
    }
}

#[tokio::test]
async fn pipelined_extended_queries() {
    let proxy = Proxy::mode(PoolMode::Transaction, 2).await;
    let c = proxy.client().await;
    let stmt = c.prepare("SELECT $1::int * 2").await.unwrap();
    // tokio-postgres pipelines concurrent queries on one connection: several
    // Bind/Execute/Sync in flight before the first reply.
    let futs: Vec<_> = (0..50)
        .map(|i| {
            let c = &c;
            let stmt = &stmt;
            async move { c.query_one(stmt, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
        })
        .collect();
    let results = futures_util::future::join_all(futs).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), i as i32 * 2);
    }
    // An error mid-pipeline fails only its own statement.
    let (a, b, d) = tokio::join!(
        c.query_one("SELECT 1", &[]),
        c.query_one("SELECT 1/0", &[]),
        c.query_one("SELECT 3", &[])
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(sqlstate(&b.unwrap_err()), "22012");
    assert_eq!(d.unwrap().get::<_, i32>(0), 3);
    proxy.stop().await;
}

#[tokio::test]
async fn copy_in_and_out() {
    let proxy = Proxy::mode(PoolMode::Transaction, 2).await;
    let c = proxy.client().await;
    // Temp tables don't outlive a transaction in transaction mode: use a
    // real table with a unique name.
    let table = format!("copy_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int, v text)"
    ))
    .await
    .unwrap();
    let sink = c
        .copy_in(&format!("COPY {table} FROM STDIN"))
        .await
        .unwrap();
    pin_mut!(sink);
    let mut data = String::new();
    for i in 0..10_000 {
        data.push_str(&format!("{i}\trow {i}\n"));
    }
    sink.send(bytes::Bytes::from(data.clone())).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 10_000);
    let out: Vec<bytes::Bytes> = c
        .copy_out(&format!("COPY {table} TO STDOUT"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let text: Vec<u8> = out.concat();
    assert_eq!(String::from_utf8(text).unwrap(), data);
    // A failed COPY leaves the connection usable.
    let sink = c
        .copy_in(&format!("COPY {table} FROM STDIN"))
        .await
        .unwrap();
    pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"not-a-number\tx\n"))
        .await
        .unwrap();
    assert_eq!(sqlstate(&sink.finish().await.unwrap_err()), "22P02");
    let count: i64 = c
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 10_000);
    c.batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn notices_and_notifications_reach_the_client() {
    let proxy = Proxy::mode(PoolMode::Session, 2).await;
    let (client, mut conn) = tokio_postgres::connect(&proxy.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(stream.for_each(move |m| {
        let _ = tx.send(m);
        async {}
    }));
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello from server'; END $$")
        .await
        .unwrap();
    client
        .batch_execute("LISTEN pgswitch_test_chan")
        .await
        .unwrap();
    let other = proxy.client().await;
    other
        .batch_execute("NOTIFY pgswitch_test_chan, 'ping'")
        .await
        .unwrap();
    let mut saw_notice = false;
    let mut saw_notify = false;
    while !(saw_notice && saw_notify) {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("message within 10s")
            .unwrap()
            .unwrap();
        match m {
            tokio_postgres::AsyncMessage::Notice(n) => {
                saw_notice |= n.message() == "hello from server"
            }
            tokio_postgres::AsyncMessage::Notification(n) => saw_notify |= n.payload() == "ping",
            _ => {}
        }
    }
    drop((client, other));
    proxy.stop().await;
}

#[tokio::test]
async fn auth_methods_and_failures() {
    // SCRAM (the --primary user) is tested everywhere; md5 and trust here.
    let toml = format!(
        r#"
        [pgswitch]
        listen = "127.0.0.1:0"
        [[databases]]
        name = "app"
        primary = "{}"
        [[users]]
        name = "app_md5"
        password = "md5-secret"
        auth = "md5"
        [[users]]
        name = "app"
        password = "app-secret"
        [[users]]
        name = "postgres"
        auth = "trust"
        "#,
        primary_url()
    );
    let dir = std::env::temp_dir().join(format!("pgswitch-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("auth.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = pgswitch::config::Config::load(Some(&path), &Default::default()).unwrap();
    let proxy = Proxy::start(cfg).await;
    let md5 = connect(&proxy.url_as("app_md5", "md5-secret", "app"))
        .await
        .unwrap();
    let who: String = md5
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "app_md5");
    let trust = connect(&format!("postgres://postgres@{}/app", proxy.addr))
        .await
        .unwrap();
    assert_eq!(
        trust
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "postgres"
    );
    let e = connect(&proxy.url_as("app_md5", "wrong", "app"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "28P01");
    let e = connect(&proxy.url_as("app", "wrong", "app"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "28P01");
    let wrong_pw = message(&e);
    // An unknown user reads exactly like a wrong password for that name.
    let e = connect(&proxy.url_as("nobody", "x", "app"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "28P01");
    assert_eq!(message(&e), wrong_pw.replace("\"app\"", "\"nobody\""));
    let e = connect(&proxy.url_as("app", "app-secret", "nodb"))
        .await
        .err()
        .unwrap();
    assert_eq!(sqlstate(&e), "3D000");
    proxy.stop().await;
}

#[tokio::test]
async fn ssl_gss_and_newer_protocol_requests() {
    use common::raw::{read_until, startup_packet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 2, "")).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    // SSLRequest, then GSSENCRequest: both answered 'N'.
    for code in [80_877_103i32, 80_877_104] {
        let mut p = 8i32.to_be_bytes().to_vec();
        p.extend_from_slice(&code.to_be_bytes());
        s.write_all(&p).await.unwrap();
        let mut answer = [0u8; 1];
        s.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"N");
    }
    // Protocol 3.2 with a _pq_ option: NegotiateProtocolVersion for 3.0,
    // naming the option, then a normal login.
    let mut p = startup_packet("postgres", "app");
    p[4..8].copy_from_slice(&196_610i32.to_be_bytes());
    let opt = b"_pq_.test\0on\0";
    let at = p.len() - 1;
    p.splice(at..at, opt.iter().copied());
    let len = p.len() as i32;
    p[0..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&p).await.unwrap();
    let msgs = read_until(&mut s, b'Z').await;
    let (tag, body) = &msgs[0];
    assert_eq!(*tag, b'v', "NegotiateProtocolVersion first");
    assert_eq!(&body[0..4], &0i32.to_be_bytes(), "newest minor version: 0");
    assert!(body.windows(9).any(|w| w == b"_pq_.test"));
    assert!(msgs.iter().any(|m| m.0 == b'K'), "BackendKeyData");
    assert_eq!(msgs.last().unwrap().0, b'Z');
    proxy.stop().await;
}

#[tokio::test]
async fn function_call_is_forwarded() {
    use common::raw::{login, read_until};
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::start(trust_config(PoolMode::Transaction, 1, "")).await;
    let c = connect(&format!("postgres://postgres@{}/app", proxy.addr))
        .await
        .unwrap();
    let oid: u32 = c
        .query_one("SELECT 'pg_backend_pid'::regproc::oid", &[])
        .await
        .unwrap()
        .get(0);
    let pid = backend_pid(&c).await;
    drop(c);
    let mut s = login(proxy.addr, "postgres", "app").await;
    // FunctionCall: oid, 0 argument format codes, 0 arguments, text result.
    let mut body = oid.to_be_bytes().to_vec();
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    let mut m = vec![b'F'];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend(body);
    s.write_all(&m).await.unwrap();
    let msgs = read_until(&mut s, b'Z').await;
    let (tag, result) = msgs
        .iter()
        .find(|m| m.0 == b'V')
        .expect("FunctionCallResponse");
    assert_eq!(*tag, b'V');
    let len = i32::from_be_bytes(result[0..4].try_into().unwrap()) as usize;
    let value = std::str::from_utf8(&result[4..4 + len]).unwrap();
    assert_eq!(
        value.parse::<i32>().unwrap(),
        pid,
        "pool_size 1: the same server answered"
    );
    proxy.stop().await;
}
