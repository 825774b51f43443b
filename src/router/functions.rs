//! Which function calls a replica may run, and which views hide a call
//! that may write. A SELECT that calls a function may write
//! (`SELECT nextval(...)`, `SELECT my_audit_fn()`), so every call is
//! checked, most specific rule first:
//!
//! 1. built-ins with side effects (sequences, advisory locks, NOTIFY, xid
//!    assignment, session state, server control, primary-only WAL
//!    functions): primary, always;
//! 2. built-ins that only read though `pg_proc` calls them VOLATILE
//!    (`random()`, `pg_database_size()`, `pg_last_wal_replay_lsn()`, ...)
//!    and the standby-only ones: replica;
//! 3. functions the operator lists as read-only: replica;
//! 4. the primary's catalog (`pg_proc.provolatile`): IMMUTABLE and STABLE
//!    are reads, VOLATILE goes to the primary;
//! 5. common immutable/stable built-ins, known before the catalog loads;
//! 6. anything else is unknown: primary.
//!
//! The lists behind rules 1, 2 and 5 live in `builtins.rs`, reviewed one
//! by one.
//!
//! A view runs its definition, so a `SELECT` from a view that calls a
//! writing function writes too. `catalog.rs` finds such views on the
//! primary and records them here ([`FunctionPolicy::load_views`]).

use std::collections::{HashMap, HashSet};

use super::builtins::{ALWAYS_PRIMARY, COMMON_BUILTINS, READ_ONLY_BUILTINS, STANDBY_ONLY};

/// `pg_proc.provolatile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Volatility {
    Immutable,
    Stable,
    Volatile,
}

impl Volatility {
    /// From the `provolatile` letter: 'i', 's' or 'v' (anything else is
    /// treated as volatile).
    pub fn from_code(code: char) -> Self {
        match code {
            'i' => Volatility::Immutable,
            's' => Volatility::Stable,
            _ => Volatility::Volatile,
        }
    }
}

/// The rules above, with the operator's list and the catalog filled in.
#[derive(Debug, Clone, Default)]
pub struct FunctionPolicy {
    read_only: HashSet<String>,
    /// Lower-case name (and `schema.name`) -> most volatile overload.
    catalog: HashMap<String, Volatility>,
    /// Views whose definition may write, by lower-case name and
    /// `schema.name`.
    writing_views: HashSet<String>,
}

impl FunctionPolicy {
    /// The built-in rules plus functions the operator declares read-only.
    pub fn new(read_only: impl IntoIterator<Item = String>) -> Self {
        FunctionPolicy {
            read_only: read_only.into_iter().map(|n| n.to_lowercase()).collect(),
            ..FunctionPolicy::default()
        }
    }

    /// Records `pg_proc` rows: (schema, name, provolatile). Overloads keep
    /// the most volatile, so a name is a read only if every overload is.
    pub fn load_catalog<'a>(&mut self, rows: impl IntoIterator<Item = (&'a str, &'a str, char)>) {
        self.catalog.clear();
        for (schema, name, code) in rows {
            let v = Volatility::from_code(code);
            for key in keys(schema, name) {
                let slot = self.catalog.entry(key).or_insert(v);
                *slot = (*slot).max(v);
            }
        }
    }

    /// Records the views (schema, name) whose definition may write,
    /// replacing any recorded before. An unqualified name matches a
    /// writing view of that name in any schema: the router does not know
    /// the client's `search_path`, so it errs towards the primary.
    pub fn load_views<'a>(&mut self, views: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.writing_views = views
            .into_iter()
            .flat_map(|(schema, name)| keys(schema, name))
            .collect();
    }

    /// True if the relation named by `parts` (as written: `v`, `schema.v`,
    /// `db.schema.v`) is a view whose definition may write.
    pub fn view_writes(&self, parts: &[String]) -> bool {
        let key = match parts {
            [] => return false,
            [name] => name.to_lowercase(),
            [.., schema, name] => format!("{}.{}", schema.to_lowercase(), name.to_lowercase()),
        };
        self.writing_views.contains(&key)
    }

    /// How many names [`load_views`](Self::load_views) recorded (two per
    /// view: bare and qualified).
    pub fn writing_view_keys(&self) -> usize {
        self.writing_views.len()
    }

    /// True if a replica may run a call of the function named by `parts`
    /// (as written: `f`, `schema.f`).
    pub fn read_safe(&self, parts: &[String]) -> bool {
        let Some(name) = parts.last().map(|n| n.to_lowercase()) else {
            return false;
        };
        let qualified = parts
            .iter()
            .map(|p| p.to_lowercase())
            .collect::<Vec<_>>()
            .join(".");
        let builtin = builtin(parts);
        if builtin && ALWAYS_PRIMARY.contains(&name.as_str()) {
            return false;
        }
        if builtin
            && (READ_ONLY_BUILTINS.contains(&name.as_str())
                || STANDBY_ONLY.contains(&name.as_str()))
        {
            return true;
        }
        if self.read_only.contains(&qualified)
            || (parts.len() == 1 && self.read_only.contains(&name))
        {
            return true;
        }
        let key = if parts.len() == 1 { &name } else { &qualified };
        if let Some(v) = self.catalog.get(key) {
            return *v != Volatility::Volatile;
        }
        builtin && COMMON_BUILTINS.contains(&name.as_str())
    }

    /// True for a built-in that only a standby runs (a primary fails it
    /// with 55000): the statement should reach a replica.
    pub fn standby_only(&self, parts: &[String]) -> bool {
        builtin(parts)
            && parts
                .last()
                .is_some_and(|n| STANDBY_ONLY.contains(&n.to_lowercase().as_str()))
    }
}

/// A call that resolves to `pg_catalog` (unqualified, or qualified with
/// it): `pg_catalog` comes first in the search path unless a client moves
/// it, which applications do not do.
fn builtin(parts: &[String]) -> bool {
    parts.len() == 1
        || parts
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("pg_catalog"))
}

/// The lookup keys of a catalog object: its bare and its qualified name.
fn keys(schema: &str, name: &str) -> [String; 2] {
    let name = name.to_lowercase();
    let qualified = format!("{}.{}", schema.to_lowercase(), name);
    [name, qualified]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Vec<String> {
        s.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn rules_in_order() {
        let mut p = FunctionPolicy::new(["audit.peek".to_owned(), "report_total".to_owned()]);
        p.load_catalog([
            ("public", "stable_fn", 's'),
            ("public", "volatile_fn", 'v'),
            ("public", "mixed", 'i'),
            ("other", "mixed", 'v'),
        ]);
        assert!(!p.read_safe(&parts("nextval")));
        assert!(!p.read_safe(&parts("pg_catalog.nextval")));
        assert!(p.read_safe(&parts("random")));
        assert!(p.read_safe(&parts("NOW")));
        assert!(p.read_safe(&parts("audit.peek")));
        assert!(p.read_safe(&parts("report_total")));
        assert!(p.read_safe(&parts("stable_fn")));
        assert!(!p.read_safe(&parts("volatile_fn")));
        assert!(
            !p.read_safe(&parts("mixed")),
            "one volatile overload makes the name volatile"
        );
        assert!(p.read_safe(&parts("public.mixed")));
        assert!(p.read_safe(&parts("count")));
        assert!(
            !p.read_safe(&parts("myschema.count")),
            "a user's count() is not the built-in"
        );
        assert!(!p.read_safe(&parts("mystery_fn")));
    }

    #[test]
    fn reviewed_builtins_beat_the_catalog() {
        // What pg_proc says of these (all VOLATILE) must not matter: the
        // reviewed lists decide built-ins, whichever way.
        let mut p = FunctionPolicy::new(["setseed".to_owned(), "pg_wal_replay_pause".to_owned()]);
        let names = [
            "pg_database_size",
            "pg_read_file",
            "pg_last_xact_replay_timestamp",
            "txid_current_if_assigned",
            "pg_stat_clear_snapshot",
            "pg_is_wal_replay_paused",
            "setseed",
            "pg_wal_replay_pause",
            "pg_current_wal_lsn",
        ];
        p.load_catalog(names.iter().map(|n| ("pg_catalog", *n, 'v')));
        for read in &names[..6] {
            assert!(p.read_safe(&parts(read)), "{read}");
            assert!(p.read_safe(&parts(&format!("pg_catalog.{read}"))), "{read}");
        }
        for write in &names[6..] {
            assert!(
                !p.read_safe(&parts(write)),
                "{write}: listing it as read-only does not override the review"
            );
        }
        assert!(
            !p.read_safe(&parts("myschema.pg_database_size")),
            "only the built-in is reviewed"
        );
        assert!(p.standby_only(&parts("pg_is_wal_replay_paused")));
        assert!(p.standby_only(&parts("PG_CATALOG.pg_get_wal_replay_pause_state")));
        assert!(!p.standby_only(&parts("pg_last_wal_replay_lsn")));
        assert!(!p.standby_only(&parts("other.pg_is_wal_replay_paused")));
    }

    #[test]
    fn the_lists_are_consistent() {
        use std::collections::HashSet;
        let lists = [
            ("ALWAYS_PRIMARY", ALWAYS_PRIMARY),
            ("READ_ONLY_BUILTINS", READ_ONLY_BUILTINS),
            ("STANDBY_ONLY", STANDBY_ONLY),
            ("COMMON_BUILTINS", COMMON_BUILTINS),
            ("SYNTAX_CALLS", super::super::builtins::SYNTAX_CALLS),
        ];
        let mut seen = HashSet::new();
        for (list, names) in lists {
            for n in names {
                assert_eq!(*n, n.to_lowercase(), "{list}: {n} must be lower case");
                assert!(seen.insert(*n), "{list}: {n} is in two lists (or twice)");
            }
        }
    }

    #[test]
    fn writing_views_by_bare_and_qualified_name() {
        let mut p = FunctionPolicy::new([]);
        p.load_views([("app", "Audited"), ("reports", "daily")]);
        assert!(p.view_writes(&parts("audited")));
        assert!(p.view_writes(&parts("app.AUDITED")));
        assert!(p.view_writes(&parts("mydb.app.audited")));
        assert!(p.view_writes(&parts("daily")));
        assert!(
            !p.view_writes(&parts("other.daily")),
            "qualified with another schema: another relation"
        );
        assert!(!p.view_writes(&parts("accounts")));
        assert!(!p.view_writes(&[]));
        p.load_views([]);
        assert!(
            !p.view_writes(&parts("audited")),
            "a reload replaces the set"
        );
    }
}
