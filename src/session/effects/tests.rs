use super::*;
use crate::sqltext::Words;

fn pin(sql: &str) -> Option<&'static str> {
    effects(sql, false).pin
}

fn names(sql: &str) -> Vec<String> {
    effects(sql, false)
        .change
        .map(|c| c.names)
        .unwrap_or_default()
}

#[test]
fn features_that_pin() {
    let cases: &[(&str, &str)] = &[
        ("LISTEN jobs", "LISTEN"),
        ("select 1; listen jobs", "LISTEN"),
        ("/* app:web */ LISTEN chan", "LISTEN"),
        ("-- tag\nlisten chan", "LISTEN"),
        ("CREATE TEMP TABLE t (a int)", "a temporary table"),
        ("/* c */ CREATE TEMP TABLE t (x int)", "a temporary table"),
        (
            "-- comment\nCREATE TEMP TABLE t (x int)",
            "a temporary table",
        ),
        (
            "create local temporary table t (a int)",
            "a temporary table",
        ),
        (
            "CREATE GLOBAL TEMP TABLE t AS SELECT 1",
            "a temporary table",
        ),
        ("create temp view v as select 1", "a temporary view"),
        (
            "EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1",
            "a temporary table",
        ),
        (
            "explain (analyze, format json) verbose create temporary table t as select 1",
            "a temporary table",
        ),
        (
            "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
            "a temporary view",
        ),
        ("create temporary sequence s", "a temporary sequence"),
        ("CREATE TABLE pg_temp.t (a int)", "a temporary object"),
        (
            "create function pg_temp.f() returns int as 'select 1' language sql",
            "a temporary object",
        ),
        ("SELECT 1 AS x INTO TEMP t", "a temporary table"),
        ("select 1 as x into temporary table t", "a temporary table"),
        ("SELECT * INTO LOCAL TEMP \"T\" FROM s", "a temporary table"),
        (
            "WITH a AS (SELECT 1) SELECT * INTO TEMP t FROM a",
            "a temporary table",
        ),
        ("SELECT pg_advisory_lock(42)", "a session advisory lock"),
        ("select PG_TRY_ADVISORY_LOCK(1)", "a session advisory lock"),
        (
            "select pg_catalog.pg_advisory_lock_shared (1)",
            "a session advisory lock",
        ),
        (
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            "a WITH HOLD cursor",
        ),
        (
            "declare c no scroll cursor with\nhold for select 1",
            "a WITH HOLD cursor",
        ),
        ("SET ROLE other", "SET ROLE"),
        ("/* x */ set session role other", "SET ROLE"),
        (
            "SET SESSION AUTHORIZATION other",
            "SET SESSION AUTHORIZATION",
        ),
        ("LOAD 'auto_explain'", "LOAD"),
        ("SELECT setseed(0.5)", "setseed"),
        (
            "SET standard_conforming_strings = off",
            "standard_conforming_strings",
        ),
        (
            "SELECT set_config($1, $2, false)",
            "set_config with a name or scope known only when it runs",
        ),
        (
            "SELECT set_config('a.b', 'c', $1)",
            "set_config with a name or scope known only when it runs",
        ),
        (
            "SELECT set_config(name, 'c', false) FROM t",
            "set_config with a name or scope known only when it runs",
        ),
        ("select set_config('role', 'other', false)", "SET ROLE"),
        (
            "PREPARE p AS SELECT set_config('a.b', 'c', false)",
            "a prepared statement that changes settings",
        ),
        (
            "DO $$ BEGIN PERFORM set_config('a.b', 'c', false); END $$",
            "a DO block that may change session state",
        ),
        (
            "do 'begin execute ''listen x''; end'",
            "a DO block that may change session state",
        ),
        (
            "DO $f$ BEGIN CREATE TEMP TABLE t (a int); END $f$",
            "a DO block that may change session state",
        ),
        // A quoted name calls the same function.
        ("SELECT \"pg_advisory_lock\"(1)", "a session advisory lock"),
        ("select \"setseed\"(0.5)", "setseed"),
        // An escaped name may be any function.
        (
            "SELECT U&\"\\0073et_config\"('a.b', 'c', false)",
            "a function called by a Unicode-escaped name",
        ),
        (
            "select u&\"!0073etseed\" UESCAPE '!' (0.5)",
            "a function called by a Unicode-escaped name",
        ),
    ];
    for (sql, feature) in cases {
        assert_eq!(pin(sql), Some(*feature), "{sql}");
    }
}

#[test]
fn statements_that_do_not_pin() {
    for sql in [
        "SELECT pg_advisory_xact_lock(42)",
        "CREATE TABLE t (a int)",
        "EXPLAIN ANALYZE SELECT 1",
        "EXPLAIN (ANALYZE) CREATE TABLE t AS SELECT 1",
        "DECLARE c CURSOR FOR SELECT 1",
        "SELECT 'listen'",
        "SELECT 1 -- listen\n",
        "/* listen */ SELECT 1",
        "NOTIFY jobs",
        "INSERT INTO temp VALUES (1)",
        "insert into temp select 1",
        "INSERT INTO temp (a) VALUES (1)",
        "MERGE INTO temp USING s ON true WHEN MATCHED THEN DO NOTHING",
        "SELECT * FROM temp",
        "SELECT \"create temp table\"",
        "SELECT set_config('a.b', 'c', true)",
        "SELECT set_config('a.b', 'c', 't')",
        "SET LOCAL ROLE other",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "DO $$ BEGIN RAISE NOTICE 'hi'; END $$",
        "UPDATE t SET a = 1",
        "SELECT pg_advisory_lock_id",
        "SELECT U&\"d\\0061t\" FROM t",
        "SELECT \"into\" FROM t",
    ] {
        assert_eq!(pin(sql), None, "{sql}");
    }
}

#[test]
fn settings_that_follow_the_client() {
    assert_eq!(names("SET search_path = app, public"), ["search_path"]);
    assert_eq!(
        names("set statement_timeout to '5s'; SET work_mem = '64MB'"),
        ["statement_timeout", "work_mem"]
    );
    assert_eq!(
        names("/* c */ SET statement_timeout = '2h'"),
        ["statement_timeout"]
    );
    assert_eq!(
        names("-- c\n set Statement_Timeout = '2h'"),
        ["statement_timeout"]
    );
    assert_eq!(names("SET SESSION work_mem = '1MB'"), ["work_mem"]);
    assert_eq!(names("SET app.tenant_id = '5'"), ["app.tenant_id"]);
    assert_eq!(names("SET \"App\".\"Tenant\" TO 5"), ["app.tenant"]);
    assert_eq!(names("SET TIME ZONE 'UTC'"), ["timezone"]);
    assert_eq!(names("SET NAMES 'UTF8'"), ["client_encoding"]);
    assert_eq!(names("SET SCHEMA 'app'"), ["search_path"]);
    assert_eq!(names("SET XML OPTION DOCUMENT"), ["xmloption"]);
    assert_eq!(
        names("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"),
        [
            "default_transaction_isolation",
            "default_transaction_read_only",
            "default_transaction_deferrable"
        ]
    );
    assert_eq!(names("RESET work_mem"), ["work_mem"]);
    assert_eq!(
        names("SELECT set_config('statement_timeout', '2h', false)"),
        ["statement_timeout"]
    );
    assert_eq!(
        names("select pg_catalog.set_config('Work_Mem', $1, 'off')"),
        ["work_mem"]
    );
    assert_eq!(names("BEGIN; SET work_mem = '6MB'; COMMIT"), ["work_mem"]);
    assert_eq!(
        names("SELECT \"set_config\"('statement_timeout', '2h', false)"),
        ["statement_timeout"]
    );
    assert_eq!(
        names("select \"pg_catalog\".\"set_config\"('Work_Mem', '1MB', false)"),
        ["work_mem"]
    );
    assert!(effects("RESET ALL", false).change.unwrap().reset_all);
    assert!(effects("/**/ discard all", false).change.unwrap().reset_all);
    assert!(effects("DISCARD PLANS", false).change.is_none());
    for sql in [
        "SET LOCAL statement_timeout = '1s'",
        "SET pgswitch.route = replica",
        "SELECT 1",
        "UPDATE t SET a = 1",
        "SELECT 'SET work_mem = 1'",
        "SET CONSTRAINTS ALL DEFERRED",
    ] {
        assert_eq!(effects(sql, false), Effects::default(), "{sql}");
    }
}

#[test]
fn named_statements_that_change_settings_pin() {
    let fx = effects("SELECT set_config('a.b', 'c', false)", true);
    assert_eq!(fx.pin, Some("a prepared statement that changes settings"));
    assert_eq!(effects("SELECT 1", true), Effects::default());
}

#[test]
fn texts_without_a_trigger_word_skip_the_lexer() {
    for sql in [
        "SELECT 1",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        "INSERT INTO t VALUES (1)",
    ] {
        // (INTO in an INSERT names its target.)
        assert!(!Words::of(sql).session, "{sql}");
    }
    // Every word a rule looks for is a trigger, in any case.
    for sql in [
        "reset all",
        "SELECT SET_CONFIG('a', 'b', false)",
        "select pg_try_advisory_lock_shared(1)",
        "Do $$ begin end $$",
        "SELECT \"setseed\"(1)",
        "select U&\"x\"",
    ] {
        assert!(Words::of(sql).session, "{sql}");
    }
}
