//! One copy of each statement for the whole pooler: every client that
//! prepares the same text with the same parameter types holds the same
//! `Statement`, so thousands of clients with the same hundred statements
//! cost a hundred statements, plus a name each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use prometheus::IntGauge;

use super::Statement;

/// Live statements by hash; dead entries are swept as the map grows.
pub struct Interner {
    map: Mutex<Map>,
    /// Memory of the live statements (`pgswitch_prepared_statement_bytes`).
    bytes: IntGauge,
}

struct Map {
    live: HashMap<u64, Weak<Statement>>,
    /// Size after the last sweep of dead entries.
    swept: usize,
}

impl Interner {
    pub fn new(bytes: IntGauge) -> Self {
        Interner {
            map: Mutex::new(Map {
                live: HashMap::new(),
                swept: 0,
            }),
            bytes,
        }
    }

    /// The shared copy of `stmt`, made now if there is none.
    pub fn intern(&self, stmt: Statement) -> Arc<Statement> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.live.get(&stmt.hash).and_then(Weak::upgrade) {
            if s.parse == stmt.parse {
                return s;
            }
        }
        let stmt = Arc::new(stmt.counted(self.bytes.clone()));
        map.live.insert(stmt.hash, Arc::downgrade(&stmt));
        if map.live.len() > 2 * map.swept + 1024 {
            map.live.retain(|_, w| w.strong_count() > 0);
            map.swept = map.live.len();
        }
        stmt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, sql: &str) -> Statement {
        let body = [name.as_bytes(), b"\0", sql.as_bytes(), b"\0\0\0"].concat();
        Statement::from_parse(&body).unwrap().1
    }

    #[test]
    fn the_same_statement_is_shared_and_counted_once() {
        let gauge = IntGauge::new("t", "t").unwrap();
        let interner = Interner::new(gauge.clone());
        let a = interner.intern(parse("a", "SELECT 1"));
        let b = interner.intern(parse("b", "SELECT 1"));
        let c = interner.intern(parse("a", "SELECT 2"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(gauge.get(), (a.size() + c.size()) as i64);
        drop((a, b));
        assert_eq!(gauge.get(), c.size() as i64, "freed with its last holder");
        let again = interner.intern(parse("x", "SELECT 1"));
        assert_eq!(gauge.get(), (again.size() + c.size()) as i64);
    }
}
