//! The router of one database: its route cache and function catalog,
//! shared by every (database, user) pool of it, asked by the session at the
//! start of each transaction. The catalog is read from the primary by the
//! database's watch (`pool::watch`), which fills it here.

use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use super::{Decision, FunctionPolicy, RouteCache, RouterError};

/// Decisions cached per statement shape.
const CACHE_SIZE: usize = 10_000;

pub struct Router {
    functions: RwLock<FunctionPolicy>,
    cache: RouteCache,
    /// Wakes the catalog refresh early (DDL went through the proxy).
    catalog_changed: Notify,
}

impl Router {
    /// Built-in rules and `read_only_functions` until the catalog is read.
    pub fn new(read_only_functions: &[String]) -> Arc<Router> {
        Arc::new(Router {
            functions: RwLock::new(FunctionPolicy::new(read_only_functions.iter().cloned())),
            cache: RouteCache::new(CACHE_SIZE),
            catalog_changed: Notify::new(),
        })
    }

    /// The routing decision for a statement (cached by its shape).
    /// Errors (bad hints) are not cached.
    pub fn route(&self, sql: &str) -> Result<Decision, RouterError> {
        let d = self.route_bytes(sql.as_bytes())?;
        Ok(d.unwrap_or_else(|| Decision::primary(super::Reason::Unparsed)))
    }

    /// `route` of a text not yet checked as UTF-8, checked on a cache miss
    /// only: `None` if it is not UTF-8. (A text that shares a cached shape
    /// gets its decision, valid or not: the server refuses an invalid one
    /// wherever it runs.)
    pub fn route_bytes(&self, sql: &[u8]) -> Result<Option<Decision>, RouterError> {
        let key = super::cache::key(sql);
        if let Some(d) = self.cache.get(key) {
            return Ok(Some(d));
        }
        let Ok(sql) = std::str::from_utf8(sql) else {
            return Ok(None);
        };
        // The catalog's lock is held until the decision is cached: a new
        // catalog (`set_functions`) clears the cache after that, not before.
        let functions = self.functions.read().unwrap_or_else(|p| p.into_inner());
        self.cache.decide(key, sql, &functions).map(Some)
    }

    /// DDL went through the proxy: re-read function volatility soon.
    pub fn catalog_changed(&self) {
        self.catalog_changed.notify_one();
    }

    /// Resolves when DDL was reported (for the catalog reader).
    pub async fn catalog_change(&self) {
        self.catalog_changed.notified().await;
    }

    /// A freshly read catalog replaces the rules; cached decisions go.
    pub fn set_functions(&self, policy: FunctionPolicy) {
        *self.functions.write().unwrap_or_else(|p| p.into_inner()) = policy;
        self.cache.clear();
    }

    /// Forgets every cached decision (shutdown).
    pub fn clear(&self) {
        self.cache.clear();
    }
}
