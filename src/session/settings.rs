//! Session settings in transaction and statement modes: a client's `SET`
//! outlives its transaction on a direct connection, but here the next
//! transaction may run on another server connection. So the settings a
//! client makes are learned from the server when its transaction ends
//! (`current_setting`, which also gets failed and rolled-back SETs right),
//! applied again (`set_config`) to whichever connection serves its next
//! transaction, and reset (`RESET ALL`) before that connection serves
//! anyone else. Startup `options=-c name=value` settings are applied the
//! same way, in every pool mode.
//!
//! What counts as a change is decided in `effects` (`SET`, `RESET`,
//! `DISCARD ALL`, `set_config(..., false)`, in any statement of a text).

/// The settings a client has made, as the server reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    values: Vec<(String, String)>,
}

/// What one or more client statements changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// Settings to read back from the server.
    pub names: Vec<String>,
    /// `RESET ALL` / `DISCARD ALL`: forget everything first.
    pub reset_all: bool,
}

impl Change {
    pub fn merge(&mut self, other: Change) {
        if other.reset_all {
            self.reset_all = true;
            self.names.clear();
        }
        for n in other.names {
            if !self.names.contains(&n) {
                self.names.push(n);
            }
        }
    }

    /// The query that reads the changed settings back (NULL for one that
    /// does not exist, e.g. a failed SET of an unknown name).
    pub fn read_back_sql(&self) -> Option<String> {
        if self.names.is_empty() {
            return None;
        }
        let cols: Vec<String> = self
            .names
            .iter()
            .map(|n| format!("current_setting({}, true)", literal(n)))
            .collect();
        Some(format!("SELECT {}", cols.join(", ")))
    }
}

impl Settings {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn set(&mut self, name: &str, value: &str) {
        match self.values.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.values.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Records what the server says after `change`.
    pub fn apply(&mut self, change: &Change, values: Vec<Option<String>>) {
        if change.reset_all {
            self.values.clear();
        }
        for (name, value) in change.names.iter().zip(values) {
            match value {
                Some(v) => self.set(name, &v),
                None => self.values.retain(|(n, _)| n != name),
            }
        }
    }

    /// One statement that puts every setting on a server connection.
    pub fn apply_sql(&self) -> Option<String> {
        if self.values.is_empty() {
            return None;
        }
        let calls: Vec<String> = self
            .values
            .iter()
            .map(|(n, v)| format!("set_config({}, {}, false)", literal(n), literal(v)))
            .collect();
        Some(format!("SELECT {}", calls.join(", ")))
    }

    /// `-c name=value` and `--name=value` pairs of a startup `options`
    /// string (spaces in values escaped with a backslash, as libpq does).
    pub fn from_options(options: &str) -> Settings {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut chars = options.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => word.extend(chars.next()),
                c if c.is_whitespace() => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        let mut s = Settings::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let pair = if w == "-c" {
                it.next().map(String::as_str)
            } else {
                w.strip_prefix("-c").or_else(|| w.strip_prefix("--"))
            };
            if let Some((name, value)) = pair.and_then(|p| p.split_once('=')) {
                s.set(&name.replace('-', "_"), value);
            }
        }
        s
    }
}

/// A SQL string literal (standard_conforming_strings on).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::effects::effects;

    #[test]
    fn settings_round_trip() {
        let mut s = Settings::default();
        let fx = effects("SET search_path = 'it''s'; SET work_mem = '64MB'", false);
        let c = fx.change.unwrap();
        s.apply(&c, vec![Some("\"it's\"".into()), Some("64MB".into())]);
        assert_eq!(
            s.apply_sql().unwrap(),
            "SELECT set_config('search_path', '\"it''s\"', false), set_config('work_mem', '64MB', false)"
        );
        assert_eq!(
            c.read_back_sql().unwrap(),
            "SELECT current_setting('search_path', true), current_setting('work_mem', true)"
        );
        s.apply(&effects("RESET ALL", false).change.unwrap(), vec![]);
        assert!(s.is_empty());
    }

    #[test]
    fn startup_options() {
        let s = Settings::from_options(
            "-c search_path=app -c statement_timeout=5s --work-mem=4MB -cgeqo=off -c x=a\\ b",
        );
        assert_eq!(
            s.values,
            [
                ("search_path".into(), "app".into()),
                ("statement_timeout".into(), "5s".into()),
                ("work_mem".into(), "4MB".into()),
                ("geqo".into(), "off".into()),
                ("x".into(), "a b".into()),
            ]
        );
    }
}
