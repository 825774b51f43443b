//! The serverless front (`http_listen`): `POST /sql` and `GET /v2` as Neon's
//! protocol has them, and what a hostile or broken client sends: each gets
//! a clear 4xx and the front keeps serving. The driver's own tests are in
//! `serverless_driver.rs`; causal reads across requests, which pause a
//! replica's replay, in `serverless_causal.rs`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::http::{exchange, front, post_sql, query, read_reply, sql_request};
use common::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

const CONN: &str = "postgres://app:app-secret@anyhost/app";

/// Small limits and a short read timeout, for the hostile tests.
const LIMITS: &str = "http_read_timeout = \"2s\"\nhttp_max_request_bytes = 65536\n\
                      http_max_response_bytes = 1048576";

/// A well-formed query still works (the front survived what came before).
async fn still_serves(addr: SocketAddr) {
    let r = post_sql(
        addr,
        CONN,
        &[],
        &query("SELECT $1::int * 2 AS v", json!([21])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["rows"][0]["v"], 42);
}

#[tokio::test]
async fn one_statement_with_parameters_mapped_by_type() {
    let (proxy, addr) = front("").await;
    let body = query(
        "SELECT $1::int4 AS i, $2::int8 AS big, $3::text AS t, $4::bool AS b, \
         $5::float8 AS f, 'NaN'::float8 AS nan, $6::numeric AS n, $7::jsonb AS j, \
         $8::int[] AS a, ARRAY[['x','y'],[NULL,'z']] AS m, $9::text AS nothing",
        json!([7, "9007199254740993", "it's \"quoted\"; DROP TABLE x", true, 2.5, "1.10",
               {"k": [1, null]}, [1, 2, 3], null]),
    );
    let r = post_sql(addr, CONN, &[], &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        v["rows"][0],
        json!({"i": 7, "big": "9007199254740993", "t": "it's \"quoted\"; DROP TABLE x",
               "b": true, "f": 2.5, "nan": "NaN", "n": "1.10", "j": {"k": [1, null]},
               "a": [1, 2, 3], "m": [["x", "y"], [null, "z"]], "nothing": null})
    );
    assert_eq!(v["command"], "SELECT");
    assert_eq!(v["rowCount"], 1);
    assert_eq!(v["fields"][1]["dataTypeID"], 20);
    // Raw text and array mode, as the driver asks for them.
    let raw = [
        ("Neon-Raw-Text-Output", "true"),
        ("Neon-Array-Mode", "true"),
    ];
    let r = post_sql(
        addr,
        CONN,
        &raw,
        &query("SELECT 1 AS one, true AS t", json!([])),
    )
    .await;
    assert_eq!(r.json()["rows"], json!([["1", "t"]]));
    assert_eq!(r.json()["rowAsArray"], true);
    proxy.stop().await;
}

#[tokio::test]
async fn errors_carry_the_servers_fields() {
    let (proxy, addr) = front("").await;
    let r = post_sql(
        addr,
        CONN,
        &[],
        &query("SELECT 1 FROM nowhere_at_all", json!([])),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let e = r.json();
    assert_eq!(e["code"], "42P01");
    assert_eq!(e["position"], "15");
    assert!(
        e["message"].as_str().unwrap().contains("nowhere_at_all"),
        "{e}"
    );
    still_serves(addr).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_failing_batch_is_rolled_back_whole() {
    let (proxy, addr) = front("").await;
    let table = format!("http_batch_{}", std::process::id());
    let run = |sql: String| async move { post_sql(addr, CONN, &[], &query(&sql, json!([]))).await };
    assert_eq!(
        run(format!("DROP TABLE IF EXISTS {table}")).await.status,
        200
    );
    assert_eq!(
        run(format!("CREATE TABLE {table} (id int PRIMARY KEY)"))
            .await
            .status,
        200
    );
    let batch = |ids: [i32; 2]| {
        json!({"queries": [
            {"query": format!("INSERT INTO {table} VALUES ($1)"), "params": [ids[0]]},
            {"query": format!("INSERT INTO {table} VALUES ($1)"), "params": [ids[1]]},
        ]})
        .to_string()
    };
    let ok = post_sql(addr, CONN, &[], &batch([1, 2])).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["results"].as_array().unwrap().len(), 2);
    // The second insert violates the key: the first is undone too.
    let failed = post_sql(addr, CONN, &[], &batch([3, 1])).await;
    assert_eq!(failed.status, 400, "{}", failed.body);
    assert_eq!(failed.json()["code"], "23505");
    assert!(failed.json()["detail"]
        .as_str()
        .unwrap()
        .contains("(id)=(1)"));
    let count = run(format!("SELECT count(*)::int AS n FROM {table}")).await;
    assert_eq!(
        count.json()["rows"][0]["n"],
        2,
        "the failed batch left rows"
    );
    // Isolation level and read-only from the headers.
    let headers = [
        ("Neon-Batch-Isolation-Level", "RepeatableRead"),
        ("Neon-Batch-Read-Only", "true"),
    ];
    let shows = json!({"queries": [{"query": "SHOW transaction_isolation"},
                                   {"query": "SHOW transaction_read_only"}]});
    let r = post_sql(addr, CONN, &headers, &shows.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["results"][0]["rows"][0]["transaction_isolation"],
        "repeatable read"
    );
    assert_eq!(
        r.json()["results"][1]["rows"][0]["transaction_read_only"],
        "on"
    );
    // The server connection went back clean: the next statement is not
    // inside a leftover transaction.
    let r = run("SELECT current_setting('transaction_isolation') AS i, current_setting('transaction_read_only') AS ro".into()).await;
    assert_eq!(
        r.json()["rows"][0],
        json!({"i": "read committed", "ro": "off"})
    );
    run(format!("DROP TABLE {table}")).await;
    proxy.stop().await;
}

#[tokio::test]
async fn hostile_requests_get_a_clear_4xx_and_the_front_keeps_serving() {
    let (proxy, addr) = front(LIMITS).await;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            sql_request(CONN, &[], "{\"query\": "),
            400,
            "not JSON",
        ),
        (
            "no query",
            sql_request(CONN, &[], "{\"params\": []}"),
            400,
            "query",
        ),
        (
            "no connection string",
            sql_request("", &[], &query("SELECT 1", json!([]))),
            400,
            "Neon-Connection-String",
        ),
        (
            "not a URL",
            sql_request("hello", &[], &query("SELECT 1", json!([]))),
            400,
            "postgres://",
        ),
        (
            "wrong password",
            sql_request(
                "postgres://app:nope@h/app",
                &[],
                &query("SELECT 1", json!([])),
            ),
            401,
            "password authentication failed",
        ),
        (
            "unknown user",
            sql_request(
                "postgres://ghost:x@h/app",
                &[],
                &query("SELECT 1", json!([])),
            ),
            401,
            "",
        ),
        (
            "unknown database",
            sql_request(
                "postgres://app:app-secret@h/nodb",
                &[],
                &query("SELECT 1", json!([])),
            ),
            400,
            "nodb",
        ),
        (
            "bad LSN",
            sql_request(
                CONN,
                &[("Pgswitch-Lsn", "yesterday")],
                &query("SELECT 1", json!([])),
            ),
            400,
            "WAL position",
        ),
        (
            "bad isolation",
            sql_request(
                CONN,
                &[("Neon-Batch-Isolation-Level", "Chaos")],
                &query("SELECT 1", json!([])),
            ),
            400,
            "Serializable",
        ),
        (
            "huge body",
            sql_request(CONN, &[], &"x".repeat(100_000)),
            413,
            "http_max_request_bytes",
        ),
        (
            "unknown path",
            b"GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            404,
            "/sql",
        ),
        (
            "GET /sql",
            b"GET /sql HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            405,
            "POST",
        ),
        (
            "/v2 without upgrade",
            b"GET /v2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            400,
            "WebSocket",
        ),
    ];
    for (what, raw, status, says) in cases {
        let r = exchange(addr, &raw)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert!(r.body.contains(says), "{what}: {}", r.body);
    }
    // A chunked body with no length, over the limit as it arrives.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("POST /sql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nNeon-Connection-String: {CONN}\r\nTransfer-Encoding: chunked\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..20 {
        let chunk = "y".repeat(8192);
        if s.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
        {
            break; // Closed on us after answering: fine.
        }
    }
    let r = read_reply(&mut s)
        .await
        .expect("an answer to the chunked body");
    assert_eq!(r.status, 413, "{}", r.body);
    // Slow loris: headers that never end, and a body that never comes.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /sql HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    let partial = sql_request(CONN, &[], &query("SELECT 1", json!([])));
    stalled
        .write_all(&partial[..partial.len() - 5])
        .await
        .unwrap();
    // Meanwhile others are served.
    still_serves(addr).await;
    let r = read_reply(&mut stalled)
        .await
        .expect("an answer to the stalled body");
    assert_eq!(r.status, 408, "{}", r.body);
    // Headers that never end: hyper closes the connection (with a 408 or
    // without an answer) after http_read_timeout.
    if let Some(r) = read_reply(&mut slow).await {
        assert_eq!(r.status, 408, "{}", r.body);
    }
    still_serves(addr).await;
    proxy.stop().await;
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let (proxy, addr) = front("http_cors_origin = \"https://app.example\"").await;
    let r = exchange(
        addr,
        b"OPTIONS /sql HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: https://app.example\r\n\
          Access-Control-Request-Method: POST\r\n\
          Access-Control-Request-Headers: neon-connection-string, neon-array-mode\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("neon-array-mode"));
    let r = post_sql(addr, CONN, &[], &query("SELECT 1 AS x", json!([]))).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("Pgswitch-Lsn")
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_result_over_the_limit_gets_507_and_its_query_ends() {
    let (proxy, addr) = front(LIMITS).await;
    let big = query(
        "SELECT repeat('x', 1000) FROM generate_series(1, 5000)",
        json!([]),
    );
    let r = post_sql(addr, CONN, &[], &big).await;
    assert_eq!(r.status, 507, "{}", r.body);
    assert!(r.body.contains("http_max_response_bytes"), "{}", r.body);
    still_serves(addr).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_mid_query_gets_its_query_cancelled() {
    let (proxy, addr) = front("").await;
    let marker = format!("cancel_me_{}", std::process::id());
    let sql = format!("SELECT pg_sleep(60) AS {marker}");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&sql_request(CONN, &[], &query(&sql, json!([]))))
        .await
        .unwrap();
    let su = superuser().await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            running(&su, &marker).await == 1
        })
        .await,
        "the query never started"
    );
    drop(s);
    assert!(
        eventually(Duration::from_secs(10), || async {
            running(&su, &marker).await == 0
        })
        .await,
        "the query still runs after its client left"
    );
    still_serves(addr).await;
    proxy.stop().await;
}

#[tokio::test]
async fn wire_clients_set_pgswitch_min_lsn() {
    let settings = "pool_mode = \"transaction\"\npool_size = 2";
    let proxy = Proxy::start(cluster_config(settings, &replica_urls())).await;
    let c = proxy.client().await;
    let lsn = first_row(&c, "SELECT pg_current_wal_insert_lsn()::text").await[0].clone();
    c.batch_execute(&format!("SET pgswitch.min_lsn = '{lsn}'"))
        .await
        .expect("a WAL position is accepted");
    // A read after it still runs (on a replica that has replayed it, or
    // the primary).
    assert_eq!(first_row(&c, "SELECT 1").await, ["1"]);
    let e = c
        .batch_execute("SET pgswitch.min_lsn = 'soon'")
        .await
        .expect_err("not a WAL position");
    assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{e}");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("WAL position"), "{message}");
    assert_eq!(first_row(&c, "SELECT 2").await, ["2"], "the client stays");
    proxy.stop().await;
}

/// Server backends running a query that ends with `marker`.
async fn running(su: &tokio_postgres::Client, marker: &str) -> i64 {
    su.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%' || $1 \
         AND state = 'active' AND pid <> pg_backend_pid()",
        &[&marker],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn copy_is_refused_without_hanging() {
    let (proxy, addr) = front("").await;
    let table = format!("http_copy_{}", std::process::id());
    let run = |sql: String| async move { post_sql(addr, CONN, &[], &query(&sql, json!([]))).await };
    assert_eq!(
        run(format!("DROP TABLE IF EXISTS {table}")).await.status,
        200
    );
    assert_eq!(
        run(format!("CREATE TABLE {table} (id int)")).await.status,
        200
    );
    let r = run(format!("COPY {table} FROM STDIN")).await;
    assert_eq!(r.status, 501, "{}", r.body);
    assert!(r.body.contains("/v2"), "{}", r.body);
    // The copy never ran: the table is still empty, and the front serves.
    let r = run(format!("SELECT count(*)::int AS n FROM {table}")).await;
    assert_eq!(r.json()["rows"][0]["n"], 0, "{}", r.body);
    run(format!("DROP TABLE {table}")).await;
    still_serves(addr).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_prepared_set_pgswitch_min_lsn_is_refused_not_ignored() {
    let settings = "pool_mode = \"transaction\"\npool_size = 2";
    let proxy = Proxy::start(cluster_config(settings, &replica_urls())).await;
    let c = proxy.client().await;
    // tokio-postgres's execute() goes through Parse/Bind/Execute.
    let e = c
        .execute("SET pgswitch.min_lsn = '0/1'", &[])
        .await
        .expect_err("a prepared SET pgswitch.min_lsn would raise no fence");
    assert_eq!(e.code().map(|c| c.code()), Some("22023"), "{e}");
    assert_eq!(first_row(&c, "SELECT 3").await, ["3"], "the client stays");
    proxy.stop().await;
}

#[tokio::test]
async fn users_without_a_password_are_refused_by_the_front() {
    let toml = cluster_toml(
        "pool_mode = \"transaction\"\nhttp_listen = \"127.0.0.1:0\"",
        &[],
    ) + "[[users]]\nname = \"dev\"\nauth = \"trust\"\nserver_user = \"app\"\nserver_password = \"app-secret\"\n";
    let proxy = Proxy::start(config_from_toml(&toml)).await;
    let addr = proxy.http_addr.unwrap();
    // Over TCP the trust user logs in...
    let c = connect(&proxy.url_as("dev", "", "app"))
        .await
        .expect("trust over TCP");
    assert_eq!(first_row(&c, "SELECT 1").await, ["1"]);
    // ...but not through the front, which any web page may reach.
    let r = post_sql(
        addr,
        "postgres://dev:@h/app",
        &[],
        &query("SELECT 1", json!([])),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["code"], "28000");
    assert!(r.body.contains("without a password"), "{}", r.body);
    still_serves(addr).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_large_request_and_a_large_answer_do_not_wait_for_each_other() {
    let (proxy, addr) = front("").await;
    // Several MB each way: more than a socket pair holds in either
    // direction, so writing all before reading anything would hang.
    let big = "x".repeat(700_000);
    let queries: Vec<_> = (0..6)
        .map(|i| json!({"query": "SELECT $1::text || $2 AS t", "params": [big, i]}))
        .collect();
    let body = json!({ "queries": queries }).to_string();
    let r = post_sql(addr, CONN, &[], &body).await;
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(300)]);
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 6);
    for (i, res) in results.iter().enumerate() {
        let t = res["rows"][0]["t"].as_str().unwrap();
        assert_eq!(t.len(), 700_001, "result {i}");
        assert!(t.ends_with(&i.to_string()), "result {i}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_request_over_http_query_timeout_is_cancelled() {
    let (proxy, addr) = front("http_query_timeout = \"1s\"").await;
    let marker = format!("slow_{}", std::process::id());
    let r = post_sql(
        addr,
        CONN,
        &[],
        &query(&format!("SELECT pg_sleep(60) AS {marker}"), json!([])),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["code"], "57014");
    assert!(r.body.contains("http_query_timeout"), "{}", r.body);
    let su = superuser().await;
    let gone = eventually(Duration::from_secs(10), || async {
        running(&su, &marker).await == 0
    })
    .await;
    assert!(gone, "the query still runs after its request timed out");
    still_serves(addr).await;
    proxy.stop().await;
}

#[tokio::test]
async fn a_websocket_from_another_origin_is_refused() {
    let (proxy, addr) = front("http_cors_origin = \"https://app.example\"").await;
    let upgrade = |origin: &str| {
        format!(
            "GET /v2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Origin: {origin}\r\n\r\n"
        )
    };
    let r = exchange(addr, upgrade("https://evil.example").as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    // The allowed origin gets its WebSocket (the answer's head is enough).
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(upgrade("https://app.example").as_bytes())
        .await
        .unwrap();
    let mut head = vec![0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut s, &mut head)
        .await
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    drop(s);
    proxy.stop().await;
}
