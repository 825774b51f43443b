//! A statement's answer as Neon's JSON: its RowDescription, DataRows and
//! CommandComplete as `{command, rowCount, rows, fields, rowAsArray}`, and
//! an ErrorResponse as the fields Neon's driver reads.

use bytes::Buf;
use serde_json::{json, Map, Value};

use super::values;
use super::wire::PgError;

/// A CommandComplete's tag.
pub fn tag_text(body: &[u8]) -> String {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// One statement's result as it arrives.
#[derive(Default)]
pub struct Table {
    fields: Vec<Value>,
    names: Vec<String>,
    types: Vec<u32>,
    rows: Vec<Value>,
}

impl Table {
    /// From a RowDescription body.
    pub fn describe(body: &[u8]) -> Table {
        let mut t = Table::default();
        let mut b = body;
        if b.len() < 2 {
            return t;
        }
        let count = b.get_i16();
        for _ in 0..count.max(0) {
            let Some(end) = b.iter().position(|&x| x == 0) else {
                break;
            };
            let name = String::from_utf8_lossy(&b[..end]).into_owned();
            b.advance(end + 1);
            if b.len() < 18 {
                break;
            }
            let (table, column, oid) = (b.get_u32(), b.get_i16(), b.get_u32());
            let (size, modifier, format) = (b.get_i16(), b.get_i32(), b.get_i16());
            t.fields.push(json!({
                "name": name,
                "tableID": table,
                "columnID": column,
                "dataTypeID": oid,
                "dataTypeSize": size,
                "dataTypeModifier": modifier,
                "format": if format == 1 { "binary" } else { "text" },
            }));
            t.names.push(name);
            t.types.push(oid);
        }
        t
    }

    /// Adds a DataRow; returns about what it adds to the answer's JSON
    /// (values, quotes and commas, and the names of object rows).
    pub fn row(&mut self, body: &[u8], raw: bool, array_mode: bool) -> usize {
        let texts = crate::protocol::messages::parse_data_row(body);
        let values: Vec<Value> = texts
            .iter()
            .enumerate()
            .map(|(i, v)| {
                values::to_json(self.types.get(i).copied().unwrap_or(25), v.as_deref(), raw)
            })
            .collect();
        let per_value = match array_mode {
            true => 4,
            false => {
                6 + self.names.iter().map(String::len).sum::<usize>() / self.names.len().max(1)
            }
        };
        self.rows.push(match array_mode {
            true => Value::Array(values),
            false => values::row_object(&self.names, values),
        });
        body.len() + 2 + texts.len() * per_value
    }

    pub fn finish(self, tag: &str, array_mode: bool) -> Value {
        let mut words = tag.split_whitespace();
        let command = words.next().unwrap_or("");
        let count = tag.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok());
        json!({
            "command": command,
            "rowCount": count,
            "rows": self.rows,
            "fields": self.fields,
            "rowAsArray": array_mode,
        })
    }
}

/// An ErrorResponse as Neon's driver reads it.
pub fn error_json(e: &PgError) -> Value {
    let mut m = Map::new();
    m.insert(
        "message".into(),
        json!(e.field(b'M').unwrap_or("unknown error")),
    );
    for (code, key) in [
        (b'C', "code"),
        (b'D', "detail"),
        (b'H', "hint"),
        (b'P', "position"),
        (b'p', "internalPosition"),
        (b'q', "internalQuery"),
        (b'W', "where"),
        (b's', "schema"),
        (b't', "table"),
        (b'c', "column"),
        (b'd', "dataType"),
        (b'n', "constraint"),
        (b'F', "file"),
        (b'L', "line"),
        (b'R', "routine"),
    ] {
        if let Some(v) = e.field(code) {
            m.insert(key.into(), json!(v));
        }
    }
    let severity = e.field(b'V').or(e.field(b'S'));
    if let Some(s) = severity {
        m.insert("severity".into(), json!(s));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tags() {
        let t = Table::default();
        let v = t.finish("INSERT 0 3", false);
        assert_eq!(v["command"], "INSERT");
        assert_eq!(v["rowCount"], 3);
        let v = Table::default().finish("CREATE TABLE", true);
        assert_eq!(v["rowCount"], Value::Null);
        assert_eq!(v["rowAsArray"], true);
    }
}
