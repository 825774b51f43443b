//! Per-query statistics: every statement is fingerprinted
//! ([`fingerprint`]) and aggregated per fingerprint: calls, errors, rows,
//! total and maximum time, p50/p95/p99 from a fixed-memory [`histogram`],
//! the share served by replicas, and the last routing reason. Memory is
//! bounded: at most `query_stats_size` fingerprints, and when a new one
//! arrives at the cap, the one with the least total time leaves.
//!
//! Shown by `SHOW QUERIES` in the admin console and `/queries` on the
//! metrics endpoint. Statements slower than `slow_query_threshold` are
//! logged with their fingerprint (never their parameters).

pub mod fingerprint;
pub mod histogram;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use histogram::Histogram;

/// Longest fingerprint text kept.
const MAX_TEXT: usize = 2048;

/// One fingerprint's totals.
#[derive(Debug, Clone)]
pub struct Entry {
    pub text: String,
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total: Duration,
    pub max: Duration,
    pub on_replica: u64,
    pub last_reason: &'static str,
    pub latency: Histogram,
}

/// A request in flight, matched to its ReadyForQuery.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub key: u64,
    pub start: Instant,
    pub rows: u64,
    pub error: bool,
}

pub struct QueryStats {
    max: usize,
    entries: Mutex<HashMap<u64, Entry>>,
}

/// Keys of requests whose text pgswitch does not see.
pub const PREPARED: &str = "(execute of a prepared statement)";
pub const FUNCTION_CALL: &str = "(function call)";
pub const TOO_LARGE: &str = "(query larger than one read)";

impl QueryStats {
    /// `max = 0` turns statistics off.
    pub fn new(max: usize) -> Self {
        QueryStats {
            max,
            entries: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request with statement text `sql` starts: its key, with an entry
    /// made for a new fingerprint (the text is normalized only then).
    pub fn begin(&self, sql: &str, reason: &'static str) -> u64 {
        self.begin_keyed(fingerprint::key(sql), sql, reason)
    }

    /// `begin` with the fingerprint already known (a prepared statement's).
    pub fn begin_keyed(&self, key: u64, sql: &str, reason: &'static str) -> u64 {
        let mut entries = self.lock();
        if let Some(e) = entries.get_mut(&key) {
            e.last_reason = reason;
            return key;
        }
        if entries.len() >= self.max {
            // Keep the heavy hitters: the least total time leaves.
            if let Some(k) = entries.iter().min_by_key(|(_, e)| e.total).map(|(k, _)| *k) {
                entries.remove(&k);
            }
        }
        entries.insert(
            key,
            Entry {
                text: fingerprint::text(sql, MAX_TEXT),
                calls: 0,
                errors: 0,
                rows: 0,
                total: Duration::ZERO,
                max: Duration::ZERO,
                on_replica: 0,
                last_reason: reason,
                latency: Histogram::default(),
            },
        );
        key
    }

    /// A request ended; returns its duration and the fingerprint text when
    /// it took at least `slow` (for the slow-query log).
    pub fn end(
        &self,
        r: &Running,
        on_replica: bool,
        slow: Option<Duration>,
    ) -> Option<(Duration, String)> {
        let took = r.start.elapsed();
        let mut entries = self.lock();
        let e = entries.get_mut(&r.key)?;
        e.calls += 1;
        e.errors += u64::from(r.error);
        e.rows += r.rows;
        e.total += took;
        e.max = e.max.max(took);
        e.on_replica += u64::from(on_replica);
        e.latency.record(took);
        slow.filter(|s| took >= *s).map(|_| (took, e.text.clone()))
    }

    /// Entries by total time, heaviest first.
    pub fn top(&self, n: usize) -> Vec<Entry> {
        let mut all: Vec<Entry> = self
            .lock()
            .values()
            .filter(|e| e.calls > 0)
            .cloned()
            .collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.total));
        all.truncate(n);
        all
    }

    /// The top entries as JSON (for `/queries`).
    pub fn json(&self, n: usize) -> String {
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let rows: Vec<serde_json::Value> = self
            .top(n)
            .iter()
            .map(|e| {
                serde_json::json!({
                    "fingerprint": e.text,
                    "calls": e.calls,
                    "errors": e.errors,
                    "rows": e.rows,
                    "total_ms": ms(e.total),
                    "mean_ms": ms(e.total / u32::try_from(e.calls.max(1)).unwrap_or(u32::MAX)),
                    "p50_ms": ms(e.latency.quantile(0.50)),
                    "p95_ms": ms(e.latency.quantile(0.95)),
                    "p99_ms": ms(e.latency.quantile(0.99)),
                    "max_ms": ms(e.max),
                    "replica_share": e.on_replica as f64 / e.calls.max(1) as f64,
                    "last_route_reason": e.last_reason,
                })
            })
            .collect();
        serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &QueryStats, sql: &str, ms: u64, replica: bool) {
        let key = s.begin(sql, "read");
        let r = Running {
            key,
            start: Instant::now() - Duration::from_millis(ms),
            rows: 1,
            error: false,
        };
        s.end(&r, replica, None);
    }

    #[test]
    fn aggregates_per_fingerprint_and_stays_bounded() {
        let s = QueryStats::new(2);
        run(&s, "SELECT * FROM a WHERE id = 1", 10, true);
        run(&s, "select * from a where id = 2", 30, false);
        run(&s, "SELECT * FROM b", 100, false);
        let top = s.top(10);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].text, "select * from b");
        assert_eq!(top[1].text, "select * from a where id = ?");
        assert_eq!((top[1].calls, top[1].on_replica, top[1].rows), (2, 1, 2));
        // A third fingerprint evicts the lightest (a: 40 ms, b: 100 ms).
        run(&s, "SELECT * FROM c", 500, false);
        let texts: Vec<String> = s.top(10).into_iter().map(|e| e.text).collect();
        assert_eq!(texts, ["select * from c", "select * from b"]);
        let json: serde_json::Value = serde_json::from_str(&s.json(10)).unwrap();
        assert_eq!(json[0]["fingerprint"], "select * from c");
        assert!(json[0]["p95_ms"].as_f64().unwrap() >= 500.0);
    }

    #[test]
    fn slow_statements_are_reported() {
        let s = QueryStats::new(10);
        let key = s.begin("SELECT pg_sleep(1)", "read");
        let r = Running {
            key,
            start: Instant::now() - Duration::from_millis(250),
            rows: 0,
            error: false,
        };
        let slow = s.end(&r, false, Some(Duration::from_millis(100)));
        assert_eq!(slow.map(|(_, t)| t), Some("select pg_sleep(?)".to_owned()));
        assert!(s.end(&r, false, Some(Duration::from_secs(10))).is_none());
    }
}
