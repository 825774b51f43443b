//! A client's own view of its named prepared statements: its names, and
//! the shared statement behind each.

use std::collections::HashMap;
use std::sync::Arc;

use super::Statement;

/// The statements one client has prepared, by the client's names.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Arc<[u8]>, Arc<Statement>>,
    /// SQL-level `PREPARE`s: name and the statement that recreates it.
    sql: Vec<(String, String)>,
    /// Bytes held, for the memory gauge.
    bytes: usize,
}

impl ClientStatements {
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Statement>> {
        self.by_name.get(name)
    }

    /// The client's name (shared, for error messages) and its statement.
    pub fn entry(&self, name: &[u8]) -> Option<(&Arc<[u8]>, &Arc<Statement>)> {
        self.by_name.get_key_value(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Arc<Statement>)> {
        self.by_name.iter().map(|(n, s)| (&n[..], s))
    }

    pub fn len(&self) -> usize {
        self.by_name.len() + self.sql.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.sql.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `name`; the caller has checked it is new.
    pub fn insert(&mut self, name: &[u8], stmt: Arc<Statement>) {
        if self.by_name.insert(name.into(), stmt).is_none() {
            self.bytes += entry_size(name);
        }
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Arc<Statement>> {
        let old = self.by_name.remove(name)?;
        self.bytes -= entry_size(name);
        Some(old)
    }

    /// Forgets every statement (`DEALLOCATE ALL`, `DISCARD ALL`); returns
    /// how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.by_name.len() + self.sql.len();
        self.by_name.clear();
        self.sql.clear();
        self.bytes = 0;
        n
    }

    /// SQL-level `PREPARE`s, to replay on each server connection.
    pub fn sql(&self) -> &[(String, String)] {
        &self.sql
    }

    /// A `PREPARE name` sent (it may still fail: see `keep_sql`).
    pub fn prepare_sql(&mut self, name: &str, text: &str) {
        self.remove_sql(name);
        self.bytes += name.len() + text.len();
        self.sql.push((name.to_owned(), text.to_owned()));
    }

    /// `DEALLOCATE name` of an SQL-level statement; false if not one.
    pub fn remove_sql(&mut self, name: &str) -> bool {
        let Some(i) = self.sql.iter().position(|(n, _)| n == name) else {
            return false;
        };
        let (n, t) = self.sql.remove(i);
        self.bytes -= n.len() + t.len();
        true
    }

    /// Keeps only the SQL-level statements the server really has.
    pub fn keep_sql(&mut self, names: &[String]) {
        let gone: Vec<String> = self
            .sql
            .iter()
            .filter(|(n, _)| !names.contains(n))
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            self.remove_sql(&n);
        }
    }
}

/// What one name costs a client: the name and its map entry. The
/// statement itself is shared (see `Interner`) and counted there.
fn entry_size(name: &[u8]) -> usize {
    name.len() + std::mem::size_of::<(Arc<[u8]>, Arc<Statement>)>() + 24
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::statement::tests::stmt;

    #[test]
    fn bytes_follow_inserts_and_removals() {
        let mut c = ClientStatements::default();
        c.insert(b"a", stmt("SELECT 1"));
        c.insert(b"b", stmt("SELECT 22"));
        let both = c.bytes();
        assert!(both > 0);
        c.remove(b"a");
        assert!(c.bytes() < both);
        c.insert(b"b", stmt("SELECT 333"));
        assert_eq!(c.len(), 1);
        assert_eq!(c.clear(), 1);
        assert_eq!(c.bytes(), 0);
        assert!(c.get(b"b").is_none());
    }

    #[test]
    fn sql_statements_are_counted_and_reconciled() {
        let mut c = ClientStatements::default();
        c.prepare_sql("a", "PREPARE a AS SELECT 1");
        c.prepare_sql("b", "PREPARE b AS SELECT 2");
        c.prepare_sql("a", "PREPARE a AS SELECT 3");
        assert_eq!(c.len(), 2);
        c.keep_sql(&["a".into()]);
        assert_eq!(c.sql(), &[("a".into(), "PREPARE a AS SELECT 3".into())]);
        assert!(c.remove_sql("a") && !c.remove_sql("a"));
        assert_eq!(c.bytes(), 0);
    }
}
