//! A bounded LRU of routing decisions keyed by statement text, so that a
//! repeated statement costs a hash lookup instead of a parse. Decisions are
//! context-free (see `classify`), so one cache serves every session.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::{route, Decision, FunctionPolicy, RouterError};

pub struct RouteCache {
    entries: Mutex<LruCache<Box<str>, Decision>>,
}

impl RouteCache {
    /// A cache of at most `capacity` statements (at least 1).
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        RouteCache {
            entries: Mutex::new(LruCache::new(cap)),
        }
    }

    /// The decision for `sql`, from the cache or computed and remembered.
    /// Errors (bad hints) are not cached.
    pub fn route(&self, sql: &str, functions: &FunctionPolicy) -> Result<Decision, RouterError> {
        if let Some(d) = self.lock().get(sql) {
            return Ok(d.clone());
        }
        let d = route(sql, functions)?;
        self.lock().put(sql.into(), d.clone());
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

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Box<str>, Decision>> {
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
        assert_eq!(cache.len(), 2, "bounded");
        assert!(cache.route("/* pgswitch:nowhere */ SELECT 1", &p).is_err());
        assert_eq!(cache.len(), 2, "errors are not cached");
        cache.clear();
        assert!(cache.is_empty());
    }
}
