//! Which function calls a replica may run. A SELECT that calls a function
//! may write (`SELECT nextval(...)`, `SELECT my_audit_fn()`), so every call
//! is checked, most specific rule first:
//!
//! 1. built-ins with side effects (sequences, advisory locks, NOTIFY, xid
//!    assignment, set_config, large objects): primary, always;
//! 2. volatile built-ins that only read (`random()`, `clock_timestamp()`,
//!    `gen_random_uuid()`, ...): replica;
//! 3. functions the operator lists as read-only: replica;
//! 4. the primary's catalog (`pg_proc.provolatile`): IMMUTABLE and STABLE
//!    are reads, VOLATILE goes to the primary;
//! 5. common immutable/stable built-ins, known before the catalog loads;
//! 6. anything else is unknown: primary.

use std::collections::{HashMap, HashSet};

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

const ALWAYS_PRIMARY: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "pg_notify",
    "txid_current",
    "pg_current_xact_id",
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_unlock",
    "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lo_truncate",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
    "dblink_exec",
    "txid_current_if_assigned",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
];

const READ_SAFE_VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "setseed",
    "now",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "timeofday",
    "gen_random_uuid",
    "uuid_generate_v4",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_backend_pid",
    "inet_server_port",
    "inet_server_addr",
    "pg_is_in_recovery",
    "pg_last_wal_replay_lsn",
    "pg_last_wal_receive_lsn",
    "version",
];

/// Immutable or stable built-ins common in application queries, so that
/// routing works before (or without) the catalog.
const COMMON_BUILTINS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "stddev",
    "variance",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "row_number",
    "rank",
    "dense_rank",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "ntile",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "lower",
    "upper",
    "length",
    "char_length",
    "octet_length",
    "substring",
    "substr",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "concat",
    "concat_ws",
    "format",
    "left",
    "right",
    "lpad",
    "rpad",
    "position",
    "strpos",
    "split_part",
    "regexp_replace",
    "regexp_match",
    "regexp_matches",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_number",
    "date_trunc",
    "date_part",
    "extract",
    "age",
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "mod",
    "power",
    "sqrt",
    "exp",
    "ln",
    "log",
    "sign",
    "md5",
    "encode",
    "decode",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "to_json",
    "to_jsonb",
    "jsonb_array_length",
    "json_array_length",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "array_length",
    "cardinality",
    "unnest",
    "generate_series",
    "array_position",
    "array_to_string",
    "string_to_array",
    "current_setting",
    "current_database",
    "current_schema",
    "current_user",
    "session_user",
    "pg_typeof",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "make_date",
    "make_interval",
    "make_timestamp",
    "date",
    "exists",
    "any",
    "all",
];

/// The rules above, with the operator's list and the catalog filled in.
#[derive(Debug, Clone, Default)]
pub struct FunctionPolicy {
    read_only: HashSet<String>,
    /// Lower-case name (and `schema.name`) -> most volatile overload.
    catalog: HashMap<String, Volatility>,
}

impl FunctionPolicy {
    /// The built-in rules plus functions the operator declares read-only.
    pub fn new(read_only: impl IntoIterator<Item = String>) -> Self {
        FunctionPolicy {
            read_only: read_only.into_iter().map(|n| n.to_lowercase()).collect(),
            catalog: HashMap::new(),
        }
    }

    /// Records `pg_proc` rows: (schema, name, provolatile). Overloads keep
    /// the most volatile, so a name is a read only if every overload is.
    pub fn load_catalog<'a>(&mut self, rows: impl IntoIterator<Item = (&'a str, &'a str, char)>) {
        self.catalog.clear();
        for (schema, name, code) in rows {
            let v = Volatility::from_code(code);
            for key in [
                name.to_lowercase(),
                format!("{}.{}", schema.to_lowercase(), name.to_lowercase()),
            ] {
                let slot = self.catalog.entry(key).or_insert(v);
                *slot = (*slot).max(v);
            }
        }
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
        let builtin = parts.len() == 1
            || parts
                .first()
                .is_some_and(|s| s.eq_ignore_ascii_case("pg_catalog"));
        if builtin && ALWAYS_PRIMARY.contains(&name.as_str()) {
            return false;
        }
        if builtin && READ_SAFE_VOLATILE.contains(&name.as_str()) {
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
}
