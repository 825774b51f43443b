//! One named prepared statement as the server sees it: a pooler-wide name
//! derived from the statement's text and parameter types, and the Parse
//! message that creates it under that name.

use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::{BufMut, Bytes, BytesMut};

/// Prefix of every pooler-wide statement name. Clients never see it.
pub const PREFIX: &str = "pgswitch_";

/// Length of a pooler-wide name with its NUL: the prefix, 16 hex digits.
pub const NAME_Z_LEN: usize = PREFIX.len() + 17;

/// A statement shared by every client that prepared the same text with the
/// same parameter types.
#[derive(Debug)]
pub struct Statement {
    /// Hash of the Parse body after the name (text, type count, types).
    pub hash: u64,
    /// The whole Parse message, with the pooler-wide name.
    pub parse: Bytes,
    /// The text's fingerprint (per-query statistics), computed once.
    pub fingerprint: u64,
    /// The session settings the statement changes each time it runs
    /// (`SET ...`, `set_config(..., false)`), read back after every turn
    /// that binds it; see `session::effects`.
    pub change: Option<Box<crate::session::settings::Change>>,
    /// The memory gauge this statement is counted in while it lives.
    gauge: Option<prometheus::IntGauge>,
}

impl PartialEq for Statement {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.parse == other.parse
    }
}

impl Eq for Statement {}

impl Drop for Statement {
    fn drop(&mut self) {
        if let Some(g) = &self.gauge {
            g.sub(self.size() as i64);
        }
    }
}

impl Statement {
    /// The statement a Parse body (`name\0 text\0 types`) prepares, with
    /// the client's name for it; `None` for a malformed body.
    pub fn from_parse(body: &[u8]) -> Option<(&[u8], Statement)> {
        let nul = body.iter().position(|&b| b == 0)?;
        let (name, rest) = (&body[..nul], &body[nul + 1..]);
        let mut h = DefaultHasher::new();
        rest.hash(&mut h);
        let hash = h.finish();
        let mut parse = BytesMut::with_capacity(5 + PREFIX.len() + 17 + rest.len());
        parse.put_u8(b'P');
        parse.put_u32(0);
        put_name(&mut parse, hash);
        parse.put_slice(rest);
        let len = (parse.len() - 1) as u32;
        parse[1..5].copy_from_slice(&len.to_be_bytes());
        let text = rest.split(|&b| b == 0).next().unwrap_or_default();
        let text = String::from_utf8_lossy(text);
        let fingerprint = crate::stats::fingerprint::key(&text);
        let change = crate::session::effects::effects(&text, false)
            .change
            .map(Box::new);
        Some((
            name,
            Statement {
                hash,
                parse: parse.freeze(),
                fingerprint,
                change,
                gauge: None,
            },
        ))
    }

    /// The pooler-wide name, NUL-terminated, as it sits in the Parse message.
    pub fn name_z(&self) -> &[u8] {
        &self.parse[5..5 + PREFIX.len() + 17]
    }

    /// The pooler-wide name, NUL-terminated, of the statement with `hash`
    /// (what `name_z` gives, without the statement).
    pub fn name_z_of(hash: u64) -> [u8; NAME_Z_LEN] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut name = [0u8; NAME_Z_LEN];
        name[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        for (i, d) in name[PREFIX.len()..NAME_Z_LEN - 1].iter_mut().enumerate() {
            *d = HEX[((hash >> ((15 - i) * 4)) & 0xf) as usize];
        }
        name
    }

    /// The pooler-wide name of the statement with `hash`.
    pub fn name_of(hash: u64) -> String {
        let name = Statement::name_z_of(hash);
        String::from_utf8_lossy(&name[..NAME_Z_LEN - 1]).into_owned()
    }

    /// The pooler-wide name.
    pub fn name(&self) -> &str {
        let n = self.name_z();
        std::str::from_utf8(&n[..n.len() - 1]).unwrap_or(PREFIX)
    }

    /// The statement's text.
    pub fn text(&self) -> &str {
        let rest = &self.parse[5 + PREFIX.len() + 17..];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Bytes this statement holds.
    pub fn size(&self) -> usize {
        self.parse.len() + std::mem::size_of::<Statement>()
    }

    /// This statement, counted in `gauge` until it is dropped.
    pub fn counted(mut self, gauge: prometheus::IntGauge) -> Self {
        gauge.add(self.size() as i64);
        self.gauge = Some(gauge);
        self
    }
}

/// Appends `pgswitch_<16 hex digits>\0`.
fn put_name(buf: &mut BytesMut, hash: u64) {
    buf.put_slice(&Statement::name_z_of(hash));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_name_follows_from_the_hash() {
        let s = stmt("SELECT 1");
        assert_eq!(&Statement::name_z_of(s.hash)[..], s.name_z());
        assert_eq!(Statement::name_of(s.hash), s.name());
    }

    /// A statement with text `sql` and no parameter types.
    pub(crate) fn stmt(sql: &str) -> Arc<Statement> {
        let body = [b"x\0".as_slice(), sql.as_bytes(), b"\0\0\0"].concat();
        Arc::new(Statement::from_parse(&body).unwrap().1)
    }
    use crate::protocol::frame::whole_messages;

    fn parse_body(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        b.push(0);
        b.extend_from_slice(&(types.len() as u16).to_be_bytes());
        for t in types {
            b.extend_from_slice(&t.to_be_bytes());
        }
        b
    }

    #[test]
    fn same_text_and_types_share_a_name() {
        let (b1, b2) = (
            parse_body("a", "SELECT $1", &[23]),
            parse_body("b", "SELECT $1", &[23]),
        );
        let (n1, a) = Statement::from_parse(&b1).unwrap();
        let (n2, b) = Statement::from_parse(&b2).unwrap();
        let (_, c) = Statement::from_parse(&parse_body("a", "SELECT $1", &[25])).unwrap();
        assert_eq!((n1, n2), (&b"a"[..], &b"b"[..]));
        assert_eq!(a, b);
        assert_ne!(a.hash, c.hash, "parameter types are part of the key");
        assert!(a.name().starts_with(PREFIX) && a.name().len() == PREFIX.len() + 16);
        assert_eq!(a.text(), "SELECT $1");
    }

    #[test]
    fn parse_message_is_well_formed() {
        let (_, s) = Statement::from_parse(&parse_body("s1", "SELECT 1", &[])).unwrap();
        let msgs: Vec<_> = whole_messages(&s.parse).collect();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].0, b'P');
        let body = msgs[0].1;
        assert_eq!(&body[..s.name_z().len()], s.name_z());
        assert_eq!(&body[s.name_z().len()..], b"SELECT 1\0\0\0");
    }

    #[test]
    fn malformed_body_is_refused() {
        assert!(Statement::from_parse(b"no terminator").is_none());
    }
}
