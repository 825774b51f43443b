//! Server-reported run-time parameters (ParameterStatus) and the statements
//! that bring a server connection in line with what a client was told.

/// Parameters whose value a client relies on and that a shared server
/// connection may carry over from its previous client.
pub const TRACKED: [&str; 6] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "application_name",
];

/// Name/value pairs as reported by ParameterStatus, in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSet(Vec<(String, String)>);

impl ParamSet {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) if v == value => {}
            Some((_, v)) => *v = value.to_owned(),
            None => self.0.push((name.to_owned(), value.to_owned())),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// SET statements that make a server whose parameters are `self` report
    /// what `wanted` says, for the tracked parameters; `None` if in line.
    pub fn sync_sql(&self, wanted: &ParamSet) -> Option<String> {
        let mut sql = String::new();
        for name in TRACKED {
            let Some(want) = wanted.get(name) else {
                continue;
            };
            if self.get(name) == Some(want) {
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
}
