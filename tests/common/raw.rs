//! Raw-socket client for hostile-input tests: no library in the way.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn startup_packet(user: &str, db: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608i32.to_be_bytes());
    for (k, v) in [("user", user), ("database", db)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

pub fn query(sql: &str) -> Vec<u8> {
    let mut m = vec![b'Q'];
    m.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
    m.extend_from_slice(sql.as_bytes());
    m.push(0);
    m
}

/// Reads whole messages until one with tag `until` (returned with all the
/// tags seen) or EOF. Fails the test if nothing ends within 20s. Bytes
/// after that message are dropped: for replies to pipelined requests, use
/// [`read_until_nth`].
pub async fn read_until(s: &mut TcpStream, until: u8) -> Vec<(u8, Vec<u8>)> {
    read_until_nth(s, until, 1).await
}

/// Reads whole messages until the `nth` one with tag `until`.
pub async fn read_until_nth(s: &mut TcpStream, until: u8, nth: usize) -> Vec<(u8, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        while buf.len() >= 5 {
            let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < 1 + len {
                break;
            }
            let tag = buf[0];
            let body = buf[5..1 + len].to_vec();
            buf.drain(..1 + len);
            out.push((tag, body));
            seen += usize::from(tag == until);
            if seen == nth {
                return out;
            }
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk))
            .await
            .expect("no reply within 20s")
            .unwrap_or(0);
        if n == 0 {
            return out;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// SQLSTATE of the first ErrorResponse among `msgs`.
pub fn error_code(msgs: &[(u8, Vec<u8>)]) -> Option<String> {
    let (_, body) = msgs.iter().find(|(t, _)| *t == b'E')?;
    let mut rest = &body[..];
    while let Some((&code, tail)) = rest.split_first() {
        let end = tail.iter().position(|&b| b == 0)?;
        if code == b'C' {
            return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
        }
        rest = &tail[end + 1..];
    }
    None
}

/// Logs in as a trust user and waits for ReadyForQuery.
pub async fn login(addr: SocketAddr, user: &str, db: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&startup_packet(user, db))
        .await
        .expect("send startup");
    let msgs = read_until(&mut s, b'Z').await;
    assert_eq!(
        msgs.last().map(|m| m.0),
        Some(b'Z'),
        "login failed: {:?}",
        error_code(&msgs)
    );
    s
}

/// True once the peer has closed the connection (read returns EOF).
pub async fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}
