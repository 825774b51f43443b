//! A Postgres server that answers at once, for benches/ceiling.sh: with
//! the server's own work gone, what a pooler in front of it spends per
//! transaction is all that is left to measure.
//!
//! It speaks just enough of the protocol for pgbench and a pooler: any
//! login succeeds (AuthenticationOk, no password), an SSLRequest is refused,
//! every statement answers by its first word (a SELECT returns one row with
//! one int4 column, `1`; BEGIN/COMMIT/ROLLBACK move the transaction status;
//! anything else gets its command tag), and the extended protocol's Parse,
//! Bind, Describe, Execute, Close, Flush and Sync get their replies.
//!
//!   cargo run --release --example fake_pg -- 127.0.0.1:16450 [THREADS]

use std::collections::HashMap;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:16450".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let rt = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads);
            b
        }
    }
    .enable_all()
    .build()?;
    rt.block_on(async {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("fake_pg listening on {addr}");
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let _ = serve(stream).await;
            });
        }
    })
}

/// One message: its tag and body.
fn take(buf: &mut BytesMut) -> Option<(u8, BytesMut)> {
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 1 + len {
        return None;
    }
    let tag = buf[0];
    buf.advance(5);
    Some((tag, buf.split_to(len - 4)))
}

fn msg(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_u32(4 + body.len() as u32);
    out.put_slice(body);
}

fn ready(out: &mut BytesMut, status: u8) {
    msg(out, b'Z', &[status]);
}

fn row_description(out: &mut BytesMut) {
    let mut b = BytesMut::new();
    b.put_u16(1);
    b.put_slice(b"?column?\0");
    b.put_u32(0); // table
    b.put_u16(0); // column
    b.put_u32(23); // int4
    b.put_i16(4);
    b.put_i32(-1);
    b.put_i16(0); // text
    msg(out, b'T', &b);
}

fn data_row(out: &mut BytesMut) {
    msg(out, b'D', &[0, 1, 0, 0, 0, 1, b'1']);
}

fn is_select(sql: &str) -> bool {
    let first = first_word(sql);
    first.eq_ignore_ascii_case("select") || first.eq_ignore_ascii_case("show")
}

fn first_word(sql: &str) -> &str {
    let sql = sql.trim_start();
    let end = sql
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(sql.len());
    &sql[..end]
}

/// The command tag and the transaction status after `sql`.
fn complete(out: &mut BytesMut, sql: &str, status: &mut u8) {
    let word = first_word(sql).to_ascii_uppercase();
    let tag = match word.as_str() {
        "SELECT" | "SHOW" => "SELECT 1".to_owned(),
        "BEGIN" | "START" => {
            *status = b'T';
            "BEGIN".into()
        }
        "COMMIT" | "END" => {
            *status = b'I';
            "COMMIT".into()
        }
        "ROLLBACK" | "ABORT" => {
            *status = b'I';
            "ROLLBACK".into()
        }
        "INSERT" => "INSERT 0 1".into(),
        "UPDATE" | "DELETE" => format!("{word} 1"),
        "" => {
            msg(out, b'I', &[]);
            return;
        }
        _ => word,
    };
    let mut b = tag.into_bytes();
    b.push(0);
    msg(out, b'C', &b);
}

/// A NUL-terminated string at the start of `b`, and the rest.
fn cstr(b: &[u8]) -> (&str, &[u8]) {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    (
        std::str::from_utf8(&b[..end]).unwrap_or(""),
        b.get(end + 1..).unwrap_or_default(),
    )
}

async fn serve(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(8192);
    // Startup (after any SSLRequest, refused).
    loop {
        while buf.len() < 4 {
            if s.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        while buf.len() < len {
            if s.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let packet = buf.split_to(len);
        if packet.len() >= 8 && packet[4..8] == [0x04, 0xd2, 0x16, 0x2f] {
            s.write_all(b"N").await?;
            continue;
        }
        break;
    }
    let mut out = BytesMut::new();
    msg(&mut out, b'R', &0u32.to_be_bytes());
    for (k, v) in [
        ("server_version", "17.0"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("IntervalStyle", "postgres"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", ""),
    ] {
        msg(&mut out, b'S', format!("{k}\0{v}\0").as_bytes());
    }
    msg(&mut out, b'K', &[0, 0, 0, 1, 0, 0, 0, 2]);
    ready(&mut out, b'I');
    s.write_all(&out).await?;
    out.clear();

    let mut status = b'I';
    let mut statements: HashMap<String, String> = HashMap::new();
    let mut portal = String::new();
    loop {
        while let Some((tag, body)) = take(&mut buf) {
            match tag {
                b'Q' => {
                    let (text, _) = cstr(&body);
                    for sql in text.split(';').filter(|q| !q.trim().is_empty()) {
                        if is_select(sql) {
                            row_description(&mut out);
                            data_row(&mut out);
                        }
                        complete(&mut out, sql, &mut status);
                    }
                    if text.trim().is_empty() {
                        msg(&mut out, b'I', &[]);
                    }
                    ready(&mut out, status);
                }
                b'P' => {
                    let (name, rest) = cstr(&body);
                    let (sql, _) = cstr(rest);
                    statements.insert(name.to_owned(), sql.to_owned());
                    msg(&mut out, b'1', &[]);
                }
                b'B' => {
                    let (_, rest) = cstr(&body);
                    let (name, _) = cstr(rest);
                    portal = statements.get(name).cloned().unwrap_or_default();
                    msg(&mut out, b'2', &[]);
                }
                b'D' => {
                    let (name, _) = cstr(&body[1..]);
                    let sql = match body[0] {
                        b'S' => {
                            let sql = statements.get(name).cloned().unwrap_or_default();
                            let params = sql.matches('$').count() as u16;
                            let mut b = BytesMut::new();
                            b.put_u16(params);
                            for _ in 0..params {
                                b.put_u32(23);
                            }
                            msg(&mut out, b't', &b);
                            sql
                        }
                        _ => portal.clone(),
                    };
                    match is_select(&sql) {
                        true => row_description(&mut out),
                        false => msg(&mut out, b'n', &[]),
                    }
                }
                b'E' => {
                    if is_select(&portal) {
                        data_row(&mut out);
                    }
                    complete(&mut out, &portal, &mut status);
                }
                b'C' => msg(&mut out, b'3', &[]),
                b'S' => ready(&mut out, status),
                b'H' => {}
                b'X' => return Ok(()),
                _ => {
                    msg(
                        &mut out,
                        b'E',
                        b"SERROR\0C0A000\0Mfake_pg does not support this message\0\0",
                    );
                    ready(&mut out, status);
                }
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}
