//! Load generator for `benches/serverless.sh`: N callers, each sending
//! `POST /sql` (one query per request) for a fixed time, over keep-alive
//! connections or a new TCP connection per request. Prints requests per
//! second and latency percentiles as one line of `key=value` pairs.
//!
//!   cargo run --release --example http_load -- ADDR SECONDS CALLERS keepalive|connect
//!
//! A plain HTTP/1.1 client on raw sockets: the load generator should cost
//! little next to what it measures, and needs no HTTP client library.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BODY: &str = r#"{"query":"SELECT $1::int AS n","params":[1]}"#;

fn request(keepalive: bool) -> Vec<u8> {
    format!(
        "POST /sql HTTP/1.1\r\nHost: bench\r\nConnection: {}\r\n\
         Neon-Connection-String: postgres://app:app-secret@bench/app\r\n\
         Neon-Raw-Text-Output: true\r\nNeon-Array-Mode: true\r\n\
         Content-Length: {}\r\n\r\n{BODY}",
        if keepalive { "keep-alive" } else { "close" },
        BODY.len()
    )
    .into_bytes()
}

/// Reads one response (headers with Content-Length, then the body);
/// returns its status.
async fn response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            return Ok(status);
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn caller(addr: SocketAddr, until: Instant, keepalive: bool) -> (Vec<u32>, u64) {
    let req = request(keepalive);
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut buf = Vec::with_capacity(4096);
    let mut conn: Option<TcpStream> = None;
    while Instant::now() < until {
        let start = Instant::now();
        let mut s = match conn.take() {
            Some(s) => s,
            None => match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    s
                }
                Err(_) => {
                    errors += 1;
                    continue;
                }
            },
        };
        let ok = match s.write_all(&req).await {
            Ok(()) => matches!(response(&mut s, &mut buf).await, Ok(200)),
            Err(_) => false,
        };
        if ok {
            latencies.push(start.elapsed().as_micros() as u32);
            if keepalive {
                conn = Some(s);
            }
        } else {
            errors += 1;
        }
    }
    (latencies, errors)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: http_load ADDR SECONDS CALLERS keepalive|connect");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR is host:port");
    let seconds: u64 = args[2].parse().expect("SECONDS");
    let callers: usize = args[3].parse().expect("CALLERS");
    let keepalive = args[4] == "keepalive";
    let begin = Instant::now();
    let until = begin + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|_| tokio::spawn(caller(addr, until, keepalive)))
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("caller");
        all.extend(l);
        errors += e;
    }
    let elapsed = begin.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "requests={} errors={} rps={:.0} p50_us={} p99_us={}",
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
}
