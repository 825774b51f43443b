//! Frame splitting throughput: the work pgswitch does per byte on the
//! forwarding path (header checks only; bodies are skipped, not copied).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pgswitch::protocol::frame::{Item, Splitter};

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A `SELECT` reply of `rows` DataRows of ~100 bytes, ending in ReadyForQuery.
fn server_reply(rows: usize) -> Vec<u8> {
    let mut buf = message(b'T', &[0u8; 40]);
    for _ in 0..rows {
        buf.extend(message(b'D', &[7u8; 100]));
    }
    buf.extend(message(b'C', b"SELECT 1\0"));
    buf.extend(message(b'Z', b"I"));
    buf
}

fn walk(buf: &[u8]) -> usize {
    let mut split = Splitter::new(1 << 30);
    let mut pos = 0;
    let mut ready = 0;
    while let Ok(Some((item, n))) = split.next(&buf[pos..], |t| t == b'Z' || t == b'S') {
        if let Item::Whole { tag: b'Z', .. } = item {
            ready += 1;
        }
        pos += n;
    }
    ready
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("split");
    for rows in [1usize, 100, 1000] {
        let buf = server_reply(rows);
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function(format!("server_reply_{rows}_rows"), |b| {
            b.iter_batched(|| buf.clone(), |buf| walk(&buf), BatchSize::SmallInput)
        });
    }
    let query = message(
        b'Q',
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 42;\0",
    );
    g.throughput(Throughput::Bytes(query.len() as u64));
    g.bench_function("client_query", |b| b.iter(|| walk(&query)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
