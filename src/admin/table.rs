//! A result set of text columns, and its encoding: RowDescription, one
//! DataRow per row, CommandComplete.

use bytes::{BufMut, BytesMut};

use crate::protocol::messages;

/// Columns and rows, every value text (or NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Table {
    pub fn new(columns: &[&'static str]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
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
        messages::row_description(out, &self.columns);
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
