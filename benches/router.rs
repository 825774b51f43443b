//! Router cost per statement: a full parse and walk, against a cache hit.

use criterion::{criterion_group, criterion_main, Criterion};
use pgswitch::router::{route, FunctionPolicy, Router};

const STATEMENTS: &[&str] = &[
    "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
    "SELECT o.id, sum(l.amount) FROM orders o JOIN lines l ON l.order_id = o.id \
     WHERE o.customer_id = $1 AND o.created_at > now() - interval '30 days' GROUP BY o.id ORDER BY 2 DESC LIMIT 20",
];

fn bench(c: &mut Criterion) {
    let policy = FunctionPolicy::new([]);
    let mut g = c.benchmark_group("route");
    for (i, sql) in STATEMENTS.iter().enumerate() {
        g.bench_function(format!("parse_{i}"), |b| b.iter(|| route(sql, &policy)));
        // A hit (the same text again: the fingerprint's memo answers too).
        let router = Router::new(&[]);
        g.bench_function(format!("cached_{i}"), |b| b.iter(|| router.route(sql)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
