//! Which shared statements one server connection has prepared, most
//! recently used last, capped by `max_prepared_statements`.

use std::sync::Arc;

use lru::LruCache;

use super::Statement;

/// The statements prepared on one server connection, by hash.
#[derive(Debug)]
pub struct ServerStatements {
    cache: LruCache<u64, Arc<Statement>>,
}

impl Default for ServerStatements {
    fn default() -> Self {
        ServerStatements {
            cache: LruCache::unbounded(),
        }
    }
}

impl ServerStatements {
    /// True if the connection has `stmt` (and marks it used).
    pub fn touch(&mut self, stmt: &Statement) -> bool {
        match self.cache.get(&stmt.hash) {
            // The same shared statement, mostly: no need to compare bytes.
            Some(s) => std::ptr::eq(&**s, stmt) || s.parse == stmt.parse,
            None => false,
        }
    }

    /// Records `stmt` as prepared on the connection. Returns another
    /// statement with the same hash (so the same pooler-wide name), which
    /// must be closed before `stmt` is parsed.
    pub fn add(&mut self, stmt: Arc<Statement>) -> Option<Arc<Statement>> {
        match self.cache.push(stmt.hash, stmt.clone()) {
            Some((_, old)) if old.parse != stmt.parse => Some(old),
            _ => None,
        }
    }

    /// The least recently used statements beyond `cap`, forgotten here and
    /// to be closed on the server. Called between transactions only, when
    /// no portal can still depend on them.
    pub fn over_cap(&mut self, cap: usize) -> Vec<Arc<Statement>> {
        let mut out = Vec::new();
        while self.cache.len() > cap {
            match self.cache.pop_lru() {
                Some((_, s)) => out.push(s),
                None => break,
            }
        }
        out
    }

    /// Forgets `hash` (a Parse that did not happen, a statement closed).
    pub fn forget(&mut self, hash: u64) {
        self.cache.pop(&hash);
    }

    /// Puts back a statement whose Close did not happen.
    pub fn restore(&mut self, stmt: Arc<Statement>) {
        self.cache.put(stmt.hash, stmt);
    }

    /// The server dropped everything (`DEALLOCATE ALL`, `DISCARD ALL`).
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::statement::tests::stmt;

    #[test]
    fn least_recently_used_is_evicted() {
        let mut s = ServerStatements::default();
        let (a, b, c) = (stmt("SELECT 1"), stmt("SELECT 2"), stmt("SELECT 3"));
        assert!(s.add(a.clone()).is_none());
        assert!(s.add(b.clone()).is_none());
        assert!(s.touch(&a));
        assert!(s.add(c.clone()).is_none());
        assert_eq!(s.over_cap(2), vec![b.clone()]);
        assert!(s.touch(&a) && s.touch(&c) && !s.touch(&b));
        s.forget(a.hash);
        assert!(!s.touch(&a));
        s.restore(b.clone());
        assert!(s.touch(&b));
        s.clear();
        assert!(s.is_empty());
    }
}
