//! A bounded LRU of routing decisions keyed by statement *shape*, so that a
//! repeated statement costs a hash instead of a parse, also when its
//! literals change (`... WHERE id = 1`, `... WHERE id = 2`). Decisions are
//! context-free (see `classify`), so one cache serves every session.
//!
//! The key is the statement's fingerprint (`stats::fingerprint`: literals
//! and parameters as `?`, comments dropped). No literal changes where a
//! statement may run: function names, keywords and identifiers stay in the
//! key, and the fingerprint's scanner never takes for a literal what the
//! server would run as code. Texts that mention `pgswitch` (routing hints
//! in comments, `SET pgswitch.route = '...'`) are keyed by their exact text
//! instead, since there the comment or the value decides.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::{route, Decision, FunctionPolicy, RouterError};

/// Keys are hashes already (foldhash, or SipHash for exact texts).
type Entries = LruCache<u64, Decision, nohash_hasher::BuildNoHashHasher<u64>>;

pub struct RouteCache {
    entries: Mutex<Entries>,
}

/// The cache key of a statement text (see the module docs).
pub fn key(b: &[u8]) -> u64 {
    let mentions_us = memchr::memchr2_iter(b'p', b'P', b).any(|i| {
        b.get(i..i + 8)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"pgswitch"))
    });
    if mentions_us {
        use std::hash::Hasher;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u8(0xff); // apart from fingerprint keys
        h.write(b);
        h.finish()
    } else {
        crate::stats::fingerprint::key_of_bytes(b)
    }
}

impl RouteCache {
    /// A cache of at most `capacity` statements (at least 1).
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        RouteCache {
            entries: Mutex::new(LruCache::with_hasher(cap, Default::default())),
        }
    }

    /// The decision for `sql`, from the cache or computed and remembered.
    /// Errors (bad hints) are not cached. (The session asks its database's
    /// `Router`, which holds the function catalog; this is for tests.)
    pub fn route(&self, sql: &str, functions: &FunctionPolicy) -> Result<Decision, RouterError> {
        let key = key(sql.as_bytes());
        match self.get(key) {
            Some(d) => Ok(d),
            None => self.decide(key, sql, functions),
        }
    }

    /// The decision cached under `key` (see `key`).
    pub fn get(&self, key: u64) -> Option<Decision> {
        self.lock().get(&key).cloned()
    }

    /// The decision for `sql` (whose key is `key`), computed and
    /// remembered; errors (bad hints) are not.
    pub fn decide(
        &self,
        key: u64,
        sql: &str,
        functions: &FunctionPolicy,
    ) -> Result<Decision, RouterError> {
        let d = route(sql, functions)?;
        self.lock().put(key, d.clone());
        Ok(d)
    }

    /// Forgets everything, e.g. after DDL changed function volatility.
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Route;

    #[test]
    fn remembers_and_evicts() {
        let p = FunctionPolicy::new([]);
        let cache = RouteCache::new(2);
        assert_eq!(cache.route("SELECT 1", &p).unwrap().route, Route::Replica);
        assert_eq!(
            cache.route("INSERT INTO t VALUES (1)", &p).unwrap().route,
            Route::Primary
        );
        assert_eq!(cache.len(), 2);
        cache.route("SELECT 2", &p).unwrap();
        assert_eq!(cache.len(), 2, "same shape: a hit");
        cache.route("SELECT now()", &p).unwrap();
        assert_eq!(cache.len(), 2, "bounded");
        assert!(cache.route("/* pgswitch:nowhere */ SELECT 1", &p).is_err());
        assert_eq!(cache.len(), 2, "errors are not cached");
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn literals_share_an_entry_hints_do_not() {
        let p = FunctionPolicy::new([]);
        let cache = RouteCache::new(100);
        for id in 0..50 {
            let d = cache
                .route(&format!("SELECT * FROM t WHERE id = {id}"), &p)
                .unwrap();
            assert_eq!(d.route, Route::Replica);
        }
        assert_eq!(cache.len(), 1);
        let sql = "SELECT * FROM t WHERE id = 1";
        let hinted = "/* pgswitch:primary */ SELECT * FROM t WHERE id = 1";
        assert_eq!(cache.route(hinted, &p).unwrap().route, Route::Primary);
        assert_eq!(cache.route(sql, &p).unwrap().route, Route::Replica);
        let set = |v: &str| {
            cache
                .route(&format!("SET pgswitch.route = '{v}'"), &p)
                .unwrap()
                .reason
        };
        assert_ne!(set("primary"), set("replica"), "the value decides");
        // Same shape, different functions: different entries.
        assert_eq!(
            cache.route("SELECT nextval('s')", &p).unwrap().route,
            Route::Primary
        );
        assert_eq!(
            cache.route("SELECT lower('s')", &p).unwrap().route,
            Route::Replica
        );
    }

    #[test]
    fn no_literal_decides_a_route() {
        // Pairs that share a fingerprint must route alike, whichever is
        // cached first.
        let p = FunctionPolicy::new([]);
        for (a, b) in [
            (
                "EXPLAIN (ANALYZE 0) DELETE FROM t",
                "EXPLAIN (ANALYZE 1) DELETE FROM t",
            ),
            (
                "EXPLAIN (ANALYZE 'off') DELETE FROM t",
                "EXPLAIN (ANALYZE 'on') DELETE FROM t",
            ),
            (
                "WITH RECURSIVE s AS (SELECT 1) CYCLE a SET c TO 1 DEFAULT 0 USING p SELECT 1",
                "WITH RECURSIVE s AS (SELECT 1) CYCLE a SET c TO 'x' DEFAULT 'y' USING p SELECT 1",
            ),
        ] {
            assert_eq!(key(a.as_bytes()), key(b.as_bytes()), "{a}");
            assert_eq!(route(a, &p).unwrap(), route(b, &p).unwrap(), "{a}");
        }
    }
}
