//! A plain HTTP/1.1 client for the serverless front, on a raw socket so
//! that tests can also send what no well-behaved client would.

use std::net::SocketAddr;
use std::time::Duration;

use super::{cluster_config, Proxy};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends `raw` as it is and reads the answer to the end of the connection
/// (requests say `Connection: close`); `None` if the server closed without
/// an answer. Gives up after 30 s.
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> Option<Reply> {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the front");
    s.write_all(raw).await.expect("send");
    read_reply(&mut s).await
}

/// Reads one answer to the end of the connection.
pub async fn read_reply(s: &mut TcpStream) -> Option<Reply> {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("the front answered within 30 s")
        .ok()?;
    parse(&buf)
}

pub fn parse(buf: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// `POST /sql` with the connection string `conn` (none if empty), extra
/// headers and a body.
pub fn sql_request(conn: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r = String::from("POST /sql HTTP/1.1\r\nHost: pgswitch\r\nConnection: close\r\n");
    r.push_str("Content-Type: application/json\r\n");
    if !conn.is_empty() {
        r.push_str(&format!("Neon-Connection-String: {conn}\r\n"));
    }
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r.into_bytes()
}

/// `POST /sql` and its answer.
pub async fn post_sql(addr: SocketAddr, conn: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    exchange(addr, &sql_request(conn, headers, body))
        .await
        .expect("an answer")
}

/// The body of a one-statement request.
pub fn query(sql: &str, params: serde_json::Value) -> String {
    serde_json::json!({ "query": sql, "params": params }).to_string()
}

/// pgswitch with the serverless front on (transaction mode, pool of 10),
/// in front of the primary alone: a read over HTTP right after a write
/// over HTTP carries no position unless the test sends one, so no replica
/// may answer it. `extra`: more `[pgswitch]` settings.
pub async fn front(extra: &str) -> (Proxy, SocketAddr) {
    let settings = format!(
        "pool_mode = \"transaction\"\npool_size = 10\nhttp_listen = \"127.0.0.1:0\"\n{extra}"
    );
    let proxy = Proxy::start(cluster_config(&settings, &[])).await;
    let addr = proxy.http_addr.expect("the front is on");
    (proxy, addr)
}
