//! The admin console (database `pgswitch`) through tokio-postgres's simple
//! query protocol, as psql would use it, with output checked against what
//! the servers and clients are really doing.

mod common;

use std::time::Duration;

use common::*;

fn admin_config(replicas: &[String]) -> pgswitch::config::Config {
    config_from_toml(&format!(
        r#"
        [pgswitch]
        listen = "127.0.0.1:0"
        pool_mode = "transaction"
        pool_size = 4
        health_check_interval = "50ms"
        admin_users = ["app"]
        [[databases]]
        name = "app"
        primary = "{primary}"
        replicas = {replicas:?}
        [[users]]
        name = "app"
        password = "app-secret"
        [[users]]
        name = "app_md5"
        password = "md5-secret"
        auth = "md5"
        "#,
        primary = primary_url(),
    ))
}

#[tokio::test]
async fn show_commands_report_live_state() {
    let proxy = Proxy::start(admin_config(&replica_urls())).await;
    let admin = connect(&proxy.url_as("app", "app-secret", "pgswitch"))
        .await
        .expect("admin login");
    let c = proxy.client().await;
    c.batch_execute("SELECT 1").await.unwrap();
    // A client inside a transaction holds a primary connection.
    c.batch_execute("BEGIN; SELECT txid_current()")
        .await
        .unwrap();
    let pid = backend_pid(&c).await;

    let pools = rows(&admin, "SHOW POOLS").await;
    let primary = pools
        .iter()
        .find(|r| r["pool"] == "app/app" && r["role"] == "primary")
        .expect("a primary pool row");
    let primary_addr = server_addr(&primary_url());
    assert_eq!(primary["server"], primary_addr);
    assert_eq!(primary["mode"], "transaction");
    assert_eq!(primary["pool_size"], "4");
    assert_eq!(primary["active"], "1");
    let replicas = pools
        .iter()
        .filter(|r| r["pool"] == "app/app" && r["role"] == "replica");
    assert_eq!(replicas.count(), 2, "{pools:?}");

    let clients = rows(&admin, "SHOW CLIENTS").await;
    let active: Vec<_> = clients.iter().filter(|r| r["state"] == "active").collect();
    assert_eq!(active.len(), 1, "{clients:?}");
    assert_eq!(active[0]["server"], primary_addr);
    assert_eq!(active[0]["server_pid"], pid.to_string());
    assert_eq!(
        clients.len(),
        2,
        "the client and the admin itself: {clients:?}"
    );

    let servers = rows(&admin, "SHOW SERVERS").await;
    let lent: Vec<_> = servers.iter().filter(|r| r["state"] == "active").collect();
    assert_eq!(lent.len(), 1, "{servers:?}");
    assert_eq!(lent[0]["server_pid"], pid.to_string());
    assert_eq!(lent[0]["client_id"], active[0]["id"]);
    c.batch_execute("COMMIT").await.unwrap();

    let stats = rows(&admin, "SHOW STATS").await;
    let app = stats.iter().find(|r| r["pool"] == "app/app").unwrap();
    // SELECT 1, then BEGIN ... COMMIT.
    assert_eq!(app["transactions"], "2", "{app:?}");

    let healthy = eventually(Duration::from_secs(15), || async {
        let rows = rows(&admin, "SHOW REPLICAS").await;
        let app = |r: &&std::collections::BTreeMap<String, String>| r["pool"] == "app/app";
        rows.iter()
            .filter(app)
            .filter(|r| r["role"] == "replica" && r["in_rotation"] == "yes")
            .count()
            == 2
            && rows
                .iter()
                .filter(app)
                .any(|r| r["role"] == "primary" && r["status"] == "healthy")
    })
    .await;
    assert!(healthy, "{:?}", rows(&admin, "SHOW REPLICAS").await);

    let route = rows(&admin, "SHOW ROUTE SELECT * FROM t FOR UPDATE").await;
    assert_eq!(
        (route[0]["route"].as_str(), route[0]["reason"].as_str()),
        ("primary", "row_lock")
    );
    let route = rows(&admin, "show route select count(*) from t").await;
    assert_eq!(route[0]["route"], "replica");

    let config = rows(&admin, "SHOW CONFIG").await;
    let get = |k: &str| {
        config
            .iter()
            .find(|r| r["key"] == k)
            .map(|r| r["value"].clone())
    };
    assert_eq!(get("pool_mode").as_deref(), Some("transaction"));
    assert_eq!(get("admin_users").as_deref(), Some("app"));
    assert!(
        !config.iter().any(|r| r["value"].contains("secret")),
        "no passwords in SHOW CONFIG"
    );
    let version = rows(&admin, "SHOW VERSION").await;
    assert!(version[0]["version"].starts_with("pgswitch "));

    // Mistakes: a clear error, and the console goes on.
    let e = admin.simple_query("SHOW NONSENSE").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    let hint = e
        .as_db_error()
        .and_then(|d| d.hint())
        .unwrap_or_default()
        .to_owned();
    assert!(hint.contains("SHOW POOLS"), "{hint}");
    let e = admin.query("SHOW POOLS", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "0A000", "extended protocol: {e}");
    assert_eq!(rows(&admin, "SHOW VERSION").await.len(), 1);
    proxy.stop().await;
}

/// The `state` of each app/app client in SHOW CLIENTS.
async fn client_states(admin: &tokio_postgres::Client) -> Vec<String> {
    rows(admin, "SHOW CLIENTS")
        .await
        .into_iter()
        .filter(|r| r["pool"] == "app/app")
        .map(|r| r["state"].clone())
        .collect()
}

/// A client pinned by session state shows as `pinned`.
#[tokio::test]
async fn show_clients_marks_pinned_clients() {
    let proxy = Proxy::start(admin_config(&[])).await;
    let admin = connect(&proxy.url_as("app", "app-secret", "pgswitch"))
        .await
        .unwrap();
    let c = proxy.client().await;
    c.batch_execute("LISTEN admin_pinned").await.unwrap();
    assert_eq!(client_states(&admin).await, ["pinned"]);
    drop(c);
    proxy.stop().await;
}

#[tokio::test]
async fn only_admins_open_the_console() {
    let proxy = Proxy::start(admin_config(&[])).await;
    let e = connect(&proxy.url_as("app_md5", "md5-secret", "pgswitch"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    assert!(message(&e).contains("admin"), "{}", message(&e));
    // A wrong password is still a wrong password.
    let e = connect(&proxy.url_as("app", "nope", "pgswitch"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_from_the_console() {
    let proxy = Proxy::start(admin_config(&[])).await;
    let admin = connect(&proxy.url_as("app", "app-secret", "pgswitch"))
        .await
        .unwrap();
    admin.simple_query("SHUTDOWN").await.unwrap();
    proxy.ends("SHUTDOWN").await;
}

#[tokio::test]
async fn pause_waits_for_transactions_and_holds_new_ones() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let proxy = Proxy::start(admin_config(&[])).await;
    let admin_url = proxy.url_as("app", "app-secret", "pgswitch");
    let admin = connect(&admin_url).await.unwrap();
    let a = proxy.client().await;
    a.batch_execute("BEGIN; SELECT 1").await.unwrap();
    // PAUSE returns only once A's transaction has ended.
    let committed = Arc::new(AtomicBool::new(false));
    let pause = {
        let committed = committed.clone();
        let admin = connect(&admin_url).await.unwrap();
        tokio::spawn(async move {
            admin.simple_query("PAUSE app").await.unwrap();
            assert!(
                committed.load(Ordering::SeqCst),
                "PAUSE returned while a transaction ran"
            );
        })
    };
    // The pause is in effect before it returns.
    let paused = eventually(Duration::from_secs(10), || async {
        rows(&admin, "SHOW POOLS")
            .await
            .iter()
            .any(|r| r["pool"] == "app/app" && r["paused"] == "yes")
    })
    .await;
    assert!(paused);
    // A's running transaction is not held up.
    a.batch_execute("SELECT 2").await.unwrap();
    committed.store(true, Ordering::SeqCst);
    a.batch_execute("COMMIT").await.unwrap();
    pause.await.unwrap();
    // A new transaction waits until RESUME.
    let resumed = Arc::new(AtomicBool::new(false));
    let held = {
        let resumed = resumed.clone();
        tokio::spawn(async move {
            a.batch_execute("SELECT 3").await.unwrap();
            assert!(resumed.load(Ordering::SeqCst), "ran while paused");
        })
    };
    let waiting = eventually(Duration::from_secs(10), || async {
        proxy.shared.metrics.clients_waiting.get() == 1
    })
    .await;
    assert!(waiting, "the client should be waiting");
    assert_eq!(client_states(&admin).await, ["waiting"]);
    resumed.store(true, Ordering::SeqCst);
    admin.simple_query("RESUME app").await.unwrap();
    held.await.unwrap();
    let e = admin.simple_query("PAUSE nosuchdb").await.unwrap_err();
    assert_eq!(sqlstate(&e), "3D000");
    proxy.stop().await;
}

/// The column names of a simple query's result.
async fn columns(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::RowDescription(cols) => {
                Some(cols.iter().map(|c| c.name().to_owned()).collect())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no RowDescription"))
}

/// PgBouncer 1.24's columns, in its order (src/admin.c, src/stats.c of
/// pgbouncer_1_24_1).
const PGB_POOLS: &[&str] = &[
    "database",
    "user",
    "cl_active",
    "cl_waiting",
    "cl_active_cancel_req",
    "cl_waiting_cancel_req",
    "sv_active",
    "sv_active_cancel",
    "sv_being_canceled",
    "sv_idle",
    "sv_used",
    "sv_tested",
    "sv_login",
    "maxwait",
    "maxwait_us",
    "pool_mode",
    "load_balance_hosts",
];
const PGB_STATS: &[&str] = &[
    "database",
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
];
const PGB_STATS_TOTALS: &[&str] = &[
    "database",
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
];
const PGB_DATABASES: &[&str] = &[
    "name",
    "host",
    "port",
    "database",
    "force_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool_size",
    "server_lifetime",
    "pool_mode",
    "load_balance_hosts",
    "max_connections",
    "current_connections",
    "max_client_connections",
    "current_client_connections",
    "paused",
    "disabled",
];
const PGB_SOCKETS: &[&str] = &[
    "type",
    "user",
    "database",
    "replication",
    "state",
    "addr",
    "port",
    "local_addr",
    "local_port",
    "connect_time",
    "request_time",
    "wait",
    "wait_us",
    "close_needed",
    "ptr",
    "link",
    "remote_pid",
    "tls",
    "application_name",
    "prepared_statements",
    "id",
];

#[tokio::test]
async fn the_pgbouncer_database_answers_with_pgbouncers_columns() {
    let proxy = Proxy::start(admin_config(&[])).await;
    let admin = connect(&proxy.url_as("app", "app-secret", "pgbouncer"))
        .await
        .expect("console login as database pgbouncer");
    let c = proxy.client().await;
    c.batch_execute("SELECT 1").await.unwrap();
    c.batch_execute("BEGIN; SELECT txid_current()")
        .await
        .unwrap();
    let pid = backend_pid(&c).await;
    for (sql, want) in [
        ("SHOW POOLS", PGB_POOLS),
        ("SHOW STATS", PGB_STATS),
        ("SHOW STATS_TOTALS", PGB_STATS_TOTALS),
        ("SHOW DATABASES", PGB_DATABASES),
        ("SHOW CLIENTS", PGB_SOCKETS),
        ("SHOW SERVERS", PGB_SOCKETS),
        ("SHOW LISTS", &["list", "items"]),
        ("SHOW CONFIG", &["key", "value", "default", "changeable"]),
        ("SHOW VERSION", &["version"]),
    ] {
        assert_eq!(columns(&admin, sql).await, want, "{sql}");
    }
    // The figures are pgswitch's live ones.
    let pools = rows(&admin, "SHOW POOLS").await;
    let app = pools
        .iter()
        .find(|r| r["database"] == "app" && r["user"] == "app")
        .expect("the app/app pool");
    assert_eq!(app["sv_active"], "1", "{app:?}");
    assert_eq!(app["pool_mode"], "transaction");
    let stats = rows(&admin, "SHOW STATS").await;
    let xacts: u64 = stats.iter().find(|r| r["database"] == "app").unwrap()["total_xact_count"]
        .parse()
        .unwrap();
    assert!(xacts >= 1, "{stats:?}");
    let dbs = rows(&admin, "SHOW DATABASES").await;
    let db = dbs.iter().find(|r| r["name"] == "app").unwrap();
    assert_eq!(
        format!("{}:{}", db["host"], db["port"]),
        server_addr(&primary_url())
    );
    assert_eq!(db["pool_size"], "4");
    let servers = rows(&admin, "SHOW SERVERS").await;
    assert!(
        servers
            .iter()
            .any(|r| r["state"] == "active" && r["remote_pid"] == pid.to_string()),
        "the held server connection (pid {pid}): {servers:?}"
    );
    let clients = rows(&admin, "SHOW CLIENTS").await;
    assert!(clients
        .iter()
        .any(|r| r["database"] == "app" && r["user"] == "app" && r["type"] == "C"));
    let lists = rows(&admin, "SHOW LISTS").await;
    assert!(lists
        .iter()
        .any(|r| r["list"] == "databases" && r["items"] == "1"));
    let config = rows(&admin, "SHOW CONFIG").await;
    assert!(config.iter().any(|r| r["key"] == "max_client_conn"));
    assert!(rows(&admin, "SHOW VERSION").await[0]["version"].contains("PgBouncer"));
    // The pgswitch console keeps its own columns.
    let own = connect(&proxy.url_as("app", "app-secret", "pgswitch"))
        .await
        .unwrap();
    assert_eq!(columns(&own, "SHOW POOLS").await[0], "pool");
    c.batch_execute("COMMIT").await.unwrap();
    proxy.stop().await;
}
