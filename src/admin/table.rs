//! A result set of text columns, and its encoding: RowDescription, one
//! DataRow per row, CommandComplete.

use bytes::{BufMut, BytesMut};

use crate::protocol::messages;

/// Columns and rows, every value text (or NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<&'static str>,
    /// Each column's type OID (`text` unless `typed`).
    pub types: Vec<u32>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Type OIDs a table may declare (values are still sent as text).
pub const TEXT: u32 = 25;
pub const INT4: u32 = 23;
pub const INT8: u32 = 20;
pub const NUMERIC: u32 = 1700;

impl Table {
    pub fn new(columns: &[&'static str]) -> Self {
        Table {
            columns: columns.to_vec(),
            types: vec![TEXT; columns.len()],
            rows: Vec::new(),
        }
    }

    /// Columns with their types.
    pub fn typed(columns: &[(&'static str, u32)]) -> Self {
        Table {
            columns: columns.iter().map(|c| c.0).collect(),
            types: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row whose values may be NULL.
    pub fn row_opt(&mut self, row: Vec<Option<String>>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// Adds a row of non-NULL values; it must have one value per column.
    pub fn row<I, S>(&mut self, values: I)
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        let row: Vec<Option<String>> = values.into_iter().map(|v| Some(v.to_string())).collect();
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// The value at (row, column name), for tests and callers that look up.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let c = self.columns.iter().position(|n| *n == column)?;
        self.rows.get(row)?.get(c)?.as_deref()
    }

    /// Appends the wire form; the tag is followed by the row count
    /// (`SHOW 3`).
    pub fn encode(&self, out: &mut BytesMut, tag: &str) {
        messages::row_description_typed(out, &self.columns, &self.types);
        for row in &self.rows {
            let mut data = BytesMut::new();
            for v in row {
                match v {
                    Some(s) => {
                        data.put_i32(s.len() as i32);
                        data.put_slice(s.as_bytes());
                    }
                    None => data.put_i32(-1),
                }
            }
            messages::data_row(out, data, row.len());
        }
        messages::command_complete(out, &format!("{tag} {}", self.rows.len()));
    }
}
