//! The reviewed lists of built-in functions behind [`FunctionPolicy`]
//! (`functions.rs`), each entry decided from what the function does (the
//! PostgreSQL manual's "System Administration Functions" and "System
//! Information Functions"), not from its name or its `provolatile`. A
//! comment per group says why. Names are lower-case and match unqualified
//! calls or calls qualified with `pg_catalog`.
//!
//! [`FunctionPolicy`]: super::FunctionPolicy

/// Built-ins a replica must never run: they write, take locks, or change
/// server or session state that must stay where the client's session is.
/// Checked first, so listing one in `read_only_functions` changes nothing.
pub(super) const ALWAYS_PRIMARY: &[&str] = &[
    // Sequences: advance a sequence, or read the session's last value.
    "nextval",
    "setval",
    "currval",
    "lastval",
    // Assign the transaction an id (a write).
    "txid_current",
    "pg_current_xact_id",
    // Session state: a setting, or the seed of this session's random().
    "set_config",
    "setseed",
    // Advisory locks are held on the server that took them.
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
    // Large objects that create, change or delete.
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "lo_truncate",
    // NOTIFY, and writes to another database.
    "pg_notify",
    "dblink_exec",
    // Server control: signals, configuration, logging, statistics resets,
    // and replay control (pausing a replica is not a read, and a primary
    // refuses it with 55000: clients that mean it connect to that replica).
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_log_backend_memory_contexts",
    "pg_wal_replay_pause",
    "pg_wal_replay_resume",
    "pg_promote",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot",
    "pg_stat_reset_subscription_stats",
    // WAL and slot functions that only a primary runs (a standby refuses
    // them with 55000, "recovery is in progress").
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_drop_replication_slot",
];

/// Built-ins that `pg_proc` marks VOLATILE (or STABLE) but that only read,
/// so a replica runs them as the primary would. Those that report on "the
/// server" report on the server that ran them: a client that wants the
/// primary's answer says `/* pgswitch:primary */`.
///
/// Deliberately absent: `setseed` (session state, above), extension
/// functions such as `uuid_generate_v4` (the catalog decides; an operator
/// can list them in `read_only_functions`), `pg_stat_force_next_flush`,
/// `pg_notification_queue_usage` (NOTIFY is a primary's business), and
/// the commit-status functions (`txid_status`, `pg_xact_status`,
/// `pg_xact_commit_timestamp`, `pg_last_committed_xact`), which a lagging
/// standby answers differently or refuses for a transaction it has not
/// replayed yet.
pub(super) const READ_ONLY_BUILTINS: &[&str] = &[
    // Random values and clocks: computed in the backend, nothing kept.
    "random",
    "random_normal",
    "gen_random_uuid",
    "clock_timestamp",
    "timeofday",
    "now",
    "statement_timestamp",
    "transaction_timestamp",
    // They only wait.
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    // Sizes on disk: a physical replica has the same files, up to its lag
    // (the two formatters are IMMUTABLE, listed to route before the catalog
    // loads).
    "pg_database_size",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_tablespace_size",
    "pg_size_pretty",
    "pg_size_bytes",
    // Read the server's own files and directories (superuser or
    // pg_read_server_files / pg_monitor); nothing is written.
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_current_logfile",
    // Recovery progress: false or NULL on a primary, the standby's own
    // position on a replica.
    "pg_is_in_recovery",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    // The transaction's id only if it already has one: the router decides
    // at a transaction's first statement, before anything could assign
    // one, so the answer is NULL wherever it runs.
    "txid_current_if_assigned",
    "pg_current_xact_id_if_assigned",
    // Statistics: read the server's counters (the pg_stat_get_* not listed
    // here are STABLE, which the catalog already treats as reads), or drop
    // this backend's cached snapshot of them.
    "pg_stat_clear_snapshot",
    "pg_stat_have_stats",
    "pg_stat_get_recovery_prefetch",
    "pg_stat_get_xact_blocks_fetched",
    "pg_stat_get_xact_blocks_hit",
    "pg_stat_get_xact_function_calls",
    "pg_stat_get_xact_function_self_time",
    "pg_stat_get_xact_function_total_time",
    "pg_stat_get_xact_numscans",
    "pg_stat_get_xact_tuples_deleted",
    "pg_stat_get_xact_tuples_fetched",
    "pg_stat_get_xact_tuples_hot_updated",
    "pg_stat_get_xact_tuples_inserted",
    "pg_stat_get_xact_tuples_returned",
    "pg_stat_get_xact_tuples_updated",
    // Locks and waits among the server's own backends.
    "pg_lock_status",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
    // Who and where the server is, and its control file (mostly STABLE:
    // listed to route before the catalog loads).
    "pg_backend_pid",
    "inet_server_port",
    "inet_server_addr",
    "inet_client_addr",
    "inet_client_port",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "version",
    "pg_jit_available",
    "pg_control_checkpoint",
    "pg_control_system",
    "pg_control_init",
    "pg_control_recovery",
];

/// Read-only built-ins that fail on a primary ("recovery is not in
/// progress", 55000): a statement calling one goes to a replica with
/// `Reason::StandbyOnly`.
pub(super) const STANDBY_ONLY: &[&str] =
    &["pg_is_wal_replay_paused", "pg_get_wal_replay_pause_state"];

/// SQL syntax that sqlparser presents as a call of this (unquoted) name,
/// though no function runs: `ARRAY(SELECT ...)`, `ROW(...)`,
/// `GROUPING(...)`, `USER`, `CURRENT_ROLE`, `CURRENT_CATALOG` and the SQL/JSON
/// constructors. Their arguments are walked like any others.
pub(super) const SYNTAX_CALLS: &[&str] = &[
    "array",
    "row",
    "grouping",
    "user",
    "current_role",
    "current_catalog",
    "json_array",
    "json_arrayagg",
    "json_object",
    "json_objectagg",
];

/// Immutable or stable built-ins common in application queries, so that
/// routing works before (or without) the catalog.
pub(super) const COMMON_BUILTINS: &[&str] = &[
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
