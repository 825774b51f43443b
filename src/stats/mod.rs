//! Per-query statistics: every statement is fingerprinted
//! ([`fingerprint`]) and aggregated per fingerprint: calls, errors, rows,
//! total and maximum time, p50/p95/p99 from a fixed-memory [`histogram`],
//! the share served by replicas, and the last routing reason. Memory is
//! bounded: at most `query_stats_size` fingerprints per shard, and when a
//! new one arrives at the cap, the one with the least total time leaves.
//!
//! Each worker thread counts into a shard of its own (merged when read), so
//! that threads do not share a lock or the hot entries' cache lines on
//! every request.
//!
//! Shown by `SHOW QUERIES` in the admin console and `/queries` on the
//! metrics endpoint. Statements slower than `slow_query_threshold` are
//! logged with their fingerprint (never their parameters).

pub mod fingerprint;
pub mod histogram;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The requests in flight on one server connection, oldest first. The
/// oldest is kept inline: a turn most often runs one request, and then
/// needs no allocation.
#[derive(Debug, Default)]
pub struct InFlight {
    first: Option<Running>,
    /// The rest, when more than one runs (pipelining); empty while `first`
    /// is.
    rest: std::collections::VecDeque<Running>,
}

impl InFlight {
    pub fn push(&mut self, r: Running) {
        match self.first {
            None => self.first = Some(r),
            Some(_) => self.rest.push_back(r),
        }
    }

    /// The oldest, taken out.
    pub fn pop(&mut self) -> Option<Running> {
        let r = self.first.take();
        self.first = self.rest.pop_front();
        r
    }

    pub fn oldest_mut(&mut self) -> Option<&mut Running> {
        self.first.as_mut()
    }
}

/// Fingerprints are hashes already: the map keys on them as they are.
type Entries = HashMap<u64, Entry, nohash_hasher::BuildNoHashHasher<u64>>;

/// One shard, on a cache line (pair) of its own.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Entries>);

pub struct QueryStats {
    max: usize,
    shards: Box<[Shard]>,
}

/// Threads take shards in turn, once.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Keys of requests whose text pgswitch does not see.
pub const PREPARED: &str = "(execute of a prepared statement)";
pub const FUNCTION_CALL: &str = "(function call)";
pub const TOO_LARGE: &str = "(query larger than one read)";

impl QueryStats {
    /// `max = 0` turns statistics off; `shards`: one per worker thread.
    pub fn new(max: usize, shards: usize) -> Self {
        QueryStats {
            max,
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max > 0
    }

    /// This thread's shard.
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        let i = MY_SHARD.with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed));
            }
            s.get()
        });
        Self::locked(&self.shards[i % self.shards.len()])
    }

    fn locked(shard: &Shard) -> std::sync::MutexGuard<'_, Entries> {
        shard.0.lock().unwrap_or_else(|p| p.into_inner())
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
        now: Instant,
    ) -> Option<(Duration, String)> {
        let took = now.saturating_duration_since(r.start);
        let update = |e: &mut Entry| {
            e.calls += 1;
            e.errors += u64::from(r.error);
            e.rows += r.rows;
            e.total += took;
            e.max = e.max.max(took);
            e.on_replica += u64::from(on_replica);
            e.latency.record(took);
            slow.filter(|s| took >= *s).map(|_| (took, e.text.clone()))
        };
        if let Some(e) = self.lock().get_mut(&r.key) {
            return update(e);
        }
        // The session moved to another thread since `begin`.
        self.shards
            .iter()
            .find_map(|s| Self::locked(s).get_mut(&r.key).map(update))
            .flatten()
    }

    /// Entries by total time, heaviest first.
    pub fn top(&self, n: usize) -> Vec<Entry> {
        let mut merged: HashMap<u64, Entry> = HashMap::new();
        for shard in self.shards.iter() {
            for (k, e) in Self::locked(shard).iter().filter(|(_, e)| e.calls > 0) {
                match merged.get_mut(k) {
                    None => {
                        merged.insert(*k, e.clone());
                    }
                    Some(m) => {
                        m.calls += e.calls;
                        m.errors += e.errors;
                        m.rows += e.rows;
                        m.total += e.total;
                        m.max = m.max.max(e.max);
                        m.on_replica += e.on_replica;
                        m.latency.merge(&e.latency);
                    }
                }
            }
        }
        let mut all: Vec<Entry> = merged.into_values().collect();
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
        s.end(&r, replica, None, Instant::now());
    }

    #[test]
    fn in_flight_is_first_in_first_out() {
        let at = |key| Running {
            key,
            start: Instant::now(),
            rows: 0,
            error: false,
        };
        let mut q = InFlight::default();
        assert!(q.pop().is_none());
        q.push(at(1));
        q.push(at(2));
        q.oldest_mut().unwrap().rows = 5;
        q.push(at(3));
        let first = q.pop().unwrap();
        assert_eq!((first.key, first.rows), (1, 5));
        q.push(at(4));
        let keys: Vec<u64> = std::iter::from_fn(|| q.pop()).map(|r| r.key).collect();
        assert_eq!(keys, [2, 3, 4]);
        assert!(q.oldest_mut().is_none());
    }

    #[test]
    fn shards_merge_and_follow_a_session_across_threads() {
        let s = std::sync::Arc::new(QueryStats::new(10, 2));
        // Two threads take different shards; the same fingerprint in both
        // is one entry when read.
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || run(&s, &format!("SELECT {i}"), 10, i == 0))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Begun on one thread, ended on another (work stealing).
        let s2 = s.clone();
        let key = std::thread::spawn(move || s2.begin("SELECT 9", "read"))
            .join()
            .unwrap();
        let r = Running {
            key,
            start: Instant::now() - Duration::from_millis(5),
            rows: 3,
            error: false,
        };
        s.end(&r, false, None, Instant::now());
        let top = s.top(10);
        assert_eq!(top.len(), 1, "{top:?}");
        assert_eq!((top[0].calls, top[0].rows, top[0].on_replica), (3, 5, 1));
    }

    #[test]
    fn aggregates_per_fingerprint_and_stays_bounded() {
        let s = QueryStats::new(2, 1);
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
        let s = QueryStats::new(10, 1);
        let key = s.begin("SELECT pg_sleep(1)", "read");
        let r = Running {
            key,
            start: Instant::now() - Duration::from_millis(250),
            rows: 0,
            error: false,
        };
        let slow = s.end(&r, false, Some(Duration::from_millis(100)), Instant::now());
        assert_eq!(slow.map(|(_, t)| t), Some("select pg_sleep(?)".to_owned()));
        assert!(s
            .end(&r, false, Some(Duration::from_secs(10)), Instant::now())
            .is_none());
    }
}
