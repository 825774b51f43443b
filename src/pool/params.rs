//! Server-reported run-time parameters (ParameterStatus) and the statements
//! that bring a server connection in line with what a client was told.

/// Parameters whose value a client relies on and that a shared server
/// connection may carry over from its previous client.
use std::sync::Arc;

pub const TRACKED: [&str; 6] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "application_name",
];

/// Name/value pairs as reported by ParameterStatus. The tracked ones sit in
/// fixed slots, so the check made on every server attach is six short string
/// comparisons, and are shared (`Arc<str>`), so a client's copy of the
/// pool's values costs no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSet {
    tracked: [Option<Arc<str>>; TRACKED.len()],
    other: Vec<(String, String)>,
}

fn slot(name: &str) -> Option<usize> {
    TRACKED.iter().position(|t| *t == name)
}

impl ParamSet {
    pub fn get(&self, name: &str) -> Option<&str> {
        match slot(name) {
            Some(i) => self.tracked[i].as_deref(),
            None => self
                .other
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
        }
    }

    pub fn set(&mut self, name: &str, value: &str) {
        if let Some(i) = slot(name) {
            if self.tracked[i].as_deref() != Some(value) {
                self.tracked[i] = Some(Arc::from(value));
            }
            return;
        }
        match self.other.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) if v == value => {}
            Some((_, v)) => *v = value.to_owned(),
            None => self.other.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Every parameter, tracked ones first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let tracked = TRACKED
            .iter()
            .zip(&self.tracked)
            .filter_map(|(k, v)| Some((*k, v.as_deref()?)));
        tracked.chain(self.other.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// A copy of the tracked parameters only (what a session keeps after
    /// login); shares the values, allocates nothing.
    pub fn tracked_only(&self) -> Self {
        ParamSet {
            tracked: self.tracked.clone(),
            other: Vec::new(),
        }
    }

    /// The untracked parameters (server_version, integer_datetimes, ...).
    pub fn untracked(&self) -> impl Iterator<Item = (&str, &str)> {
        self.other.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether a server whose parameters are `self` already reports what
    /// a client with `wanted` was told (no `sync_sql` needed). Values found
    /// equal are shared from then on, so the next check is six pointer
    /// comparisons.
    pub fn in_line_with(&mut self, wanted: &ParamSet) -> bool {
        for (have, want) in self.tracked.iter_mut().zip(&wanted.tracked) {
            let Some(want) = want else {
                continue;
            };
            match have {
                Some(h) if Arc::ptr_eq(h, want) => {}
                Some(h) if **h == **want => *h = want.clone(),
                _ => return false,
            }
        }
        true
    }

    /// SET statements that make a server whose parameters are `self` report
    /// what `wanted` says, for the tracked parameters; `None` if in line.
    pub fn sync_sql(&self, wanted: &ParamSet) -> Option<String> {
        let mut sql = String::new();
        for (i, name) in TRACKED.iter().enumerate() {
            let Some(want) = wanted.tracked[i].as_deref() else {
                continue;
            };
            if self.tracked[i].as_deref() == Some(want) {
                continue;
            }
            sql.push_str(&format!(
                "SET {} TO {};",
                quote_ident(name),
                quote_literal(want)
            ));
        }
        (!sql.is_empty()).then_some(sql)
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A literal that reads the same whatever standard_conforming_strings is.
fn quote_literal(value: &str) -> String {
    if value.contains('\\') {
        format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> ParamSet {
        let mut p = ParamSet::default();
        for (k, v) in pairs {
            p.set(k, v);
        }
        p
    }

    #[test]
    fn in_line_needs_nothing() {
        let a = set(&[("TimeZone", "UTC"), ("server_version", "15")]);
        assert_eq!(a.sync_sql(&set(&[("TimeZone", "UTC")])), None);
        assert_eq!(a.get("server_version"), Some("15"));
        assert_eq!(a.tracked_only().get("server_version"), None);
        assert_eq!(a.tracked_only().get("TimeZone"), Some("UTC"));
    }

    #[test]
    fn differences_become_set_statements() {
        let server = set(&[("TimeZone", "UTC"), ("application_name", "")]);
        let client = set(&[
            ("TimeZone", "Europe/Paris"),
            ("application_name", "o'brien\\x"),
            ("work_mem", "1MB"),
        ]);
        assert_eq!(
            server.sync_sql(&client).unwrap(),
            "SET \"TimeZone\" TO 'Europe/Paris';SET \"application_name\" TO E'o''brien\\\\x';"
        );
    }

    #[test]
    fn in_line_with_agrees_with_sync_sql_and_shares_equal_values() {
        let client = set(&[("TimeZone", "UTC"), ("DateStyle", "ISO")]);
        let mut server = set(&[("TimeZone", "UTC"), ("DateStyle", "ISO"), ("x", "1")]);
        assert!(server.in_line_with(&client));
        assert_eq!(server.sync_sql(&client), None);
        let (i, j) = (slot("TimeZone").unwrap(), slot("DateStyle").unwrap());
        assert!(Arc::ptr_eq(
            server.tracked[i].as_ref().unwrap(),
            client.tracked[i].as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            server.tracked[j].as_ref().unwrap(),
            client.tracked[j].as_ref().unwrap()
        ));
        let mut other = set(&[("TimeZone", "GMT"), ("DateStyle", "ISO")]);
        assert!(!other.in_line_with(&client));
        assert!(other.sync_sql(&client).is_some());
        let mut missing = set(&[("DateStyle", "ISO")]);
        assert!(!missing.in_line_with(&client));
    }

    #[test]
    fn iter_lists_everything_once() {
        let p = set(&[
            ("server_version", "15"),
            ("TimeZone", "UTC"),
            ("TimeZone", "GMT"),
        ]);
        let all: Vec<_> = p.iter().collect();
        assert_eq!(all, vec![("TimeZone", "GMT"), ("server_version", "15")]);
    }
}
