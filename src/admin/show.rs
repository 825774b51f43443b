//! The tables behind `SHOW ...`, read from the live pools, client registry,
//! replica monitor, metrics and config. Nothing here blocks on a server.

use std::time::Instant;

use super::command::{AdminError, Show, HELP};
use super::table::Table;
use crate::pool::{Pool, PoolSet};
use crate::shared::Shared;

pub fn table(shared: &Shared, what: &Show) -> Result<Table, AdminError> {
    Ok(match what {
        Show::Pools => pools(shared),
        Show::Clients => clients(shared),
        Show::Servers => servers(shared),
        Show::Stats => stats(shared),
        Show::Queries => queries(shared),
        Show::Replicas => replicas(shared),
        Show::Config => config(shared),
        Show::Version => {
            let mut t = Table::new(&["version"]);
            t.row([concat!("pgswitch ", env!("CARGO_PKG_VERSION"))]);
            t
        }
        Show::Help => {
            let mut t = Table::new(&["help"]);
            t.row([HELP]);
            t
        }
        Show::Route(sql) => route(shared, sql)?,
        Show::Databases | Show::Lists | Show::StatsTotals | Show::StatsAverages => {
            super::pgbouncer::table(shared, what)?
        }
    })
}

/// Every server pool of every (database, user): primary first, then replicas.
fn each_server(shared: &Shared, mut f: impl FnMut(&PoolSet, &str, &Pool)) {
    let mut sets = shared.pools.all();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    for set in &sets {
        f(set, "primary", &set.primary);
        for pool in set.replicas.iter().flat_map(|r| r.pools()) {
            f(set, "replica", pool);
        }
    }
}

fn pools(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "pool",
        "mode",
        "role",
        "server",
        "pool_size",
        "active",
        "idle",
        "waiting",
        "paused",
    ]);
    each_server(shared, |set, role, pool| {
        let s = pool.status();
        let config = shared.config.load();
        let mode = config
            .database(&set.database)
            .map_or(config.general.pool_mode, |d| config.pool_mode(d));
        t.row([
            set.name.to_string(),
            mode.to_string(),
            role.to_owned(),
            pool.manager().target.addr.to_string(),
            s.max_size.to_string(),
            (s.size - s.available).to_string(),
            s.available.to_string(),
            s.waiting.to_string(),
            if shared.pause.is_paused(&set.database) {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        ]);
    });
    t
}

fn clients(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "id",
        "pool",
        "address",
        "connected_s",
        "state",
        "server",
        "server_pid",
    ]);
    let now = Instant::now();
    for c in shared.cancels.clients() {
        let server = c.current();
        let state = if c.waiting.load(std::sync::atomic::Ordering::Relaxed) {
            "waiting"
        } else if c.pinned.load(std::sync::atomic::Ordering::Relaxed) {
            "pinned"
        } else if server.is_some() {
            "active"
        } else {
            "idle"
        };
        t.row([
            c.pid.to_string(),
            c.pool.to_string(),
            c.peer.to_string(),
            format!("{:.1}", now.duration_since(c.since).as_secs_f64()),
            state.to_owned(),
            server.as_ref().map_or(String::new(), |s| s.0.to_string()),
            server
                .as_ref()
                .map_or(String::new(), |s| s.1 .0.to_string()),
        ]);
    }
    t
}

/// Server connections lent out: each serves the client whose slot names it.
pub(super) fn lent(
    shared: &Shared,
) -> Vec<(
    std::sync::Arc<crate::session::cancel::ClientSlot>,
    crate::session::cancel::ServerKey,
)> {
    shared
        .cancels
        .clients()
        .into_iter()
        .filter_map(|c| c.current().map(|s| (c, s)))
        .collect()
}

fn servers(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "pool",
        "role",
        "server",
        "server_pid",
        "state",
        "client_id",
        "age_s",
        "idle_s",
    ]);
    let lent = lent(shared);
    each_server(shared, |set, role, pool| {
        let addr = pool.manager().target.addr.to_string();
        for (client, (server, key)) in &lent {
            if *client.pool == *set.name && server.to_string() == addr {
                t.row([
                    set.name.to_string(),
                    role.to_owned(),
                    addr.clone(),
                    key.0.to_string(),
                    "active".to_owned(),
                    client.pid.to_string(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
        // In the pool: visited (and kept) one by one.
        pool.retain(|conn, metrics| {
            t.row([
                set.name.to_string(),
                role.to_owned(),
                addr.clone(),
                conn.key.0.to_string(),
                "idle".to_owned(),
                String::new(),
                format!("{:.1}", metrics.age().as_secs_f64()),
                format!("{:.1}", metrics.last_used().as_secs_f64()),
            ]);
            true
        });
    });
    t
}

fn stats(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "pool",
        "transactions",
        "queries",
        "avg_transaction_ms",
        "avg_wait_ms",
        "received_bytes",
        "sent_bytes",
    ]);
    let mut sets = shared.pools.all();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    for set in sets {
        let s = &set.stats;
        let avg_ms = |h: &prometheus::Histogram| match h.get_sample_count() {
            0 => "0.000".to_owned(),
            n => format!("{:.3}", h.get_sample_sum() * 1000.0 / n as f64),
        };
        t.row([
            set.name.to_string(),
            s.transactions.get().to_string(),
            s.requests.get().to_string(),
            avg_ms(&s.transaction_seconds),
            avg_ms(&s.wait_seconds),
            s.bytes_in.get().to_string(),
            s.bytes_out.get().to_string(),
        ]);
    }
    t
}

/// Rows of SHOW QUERIES.
const QUERY_ROWS: usize = 100;

fn queries(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "fingerprint",
        "calls",
        "errors",
        "rows",
        "total_ms",
        "mean_ms",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "replica_share",
        "last_route_reason",
    ]);
    let ms = |d: std::time::Duration| format!("{:.3}", d.as_secs_f64() * 1000.0);
    for e in shared.queries.top(QUERY_ROWS) {
        let calls = e.calls.max(1);
        t.row([
            e.text.clone(),
            e.calls.to_string(),
            e.errors.to_string(),
            e.rows.to_string(),
            ms(e.total),
            ms(e.total.div_f64(calls as f64)),
            ms(e.latency.quantile(0.50)),
            ms(e.latency.quantile(0.95)),
            ms(e.latency.quantile(0.99)),
            ms(e.max),
            format!("{:.2}", e.on_replica as f64 / calls as f64),
            e.last_reason.to_owned(),
        ]);
    }
    t
}

/// The primary and its replicas per pool. `wal_lsn` is the primary's WAL
/// insert position, or what a replica has replayed.
fn replicas(shared: &Shared) -> Table {
    let mut t = Table::new(&[
        "pool",
        "server",
        "role",
        "in_rotation",
        "lag_bytes",
        "lag_s",
        "wal_lsn",
        "status",
    ]);
    let mut sets = shared.pools.all();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    for set in sets {
        let Some(r) = &set.replicas else { continue };
        let snap = r.snapshot();
        let primary_status = match (snap.primary_lsn, snap.primary_in_recovery) {
            (_, true) => "IN RECOVERY: writes are refused",
            (Some(_), false) => "healthy",
            (None, false) => "no answer at the last check",
        };
        t.row([
            set.name.to_string(),
            set.primary.manager().target.addr.to_string(),
            "primary".to_owned(),
            String::new(),
            String::new(),
            String::new(),
            snap.primary_lsn.map_or(String::new(), lsn),
            primary_status.to_owned(),
        ]);
        for rep in &snap.replicas {
            t.row([
                set.name.to_string(),
                rep.addr.to_string(),
                "replica".to_owned(),
                if rep.in_rotation { "yes" } else { "no" }.to_owned(),
                rep.lag_bytes.map_or(String::new(), |b| b.to_string()),
                rep.lag_time
                    .map_or(String::new(), |d| format!("{:.3}", d.as_secs_f64())),
                rep.replay_lsn.map_or(String::new(), lsn),
                rep.why.clone(),
            ]);
        }
    }
    t
}

/// A WAL position as Postgres writes it (`16/B374D848`).
fn lsn(v: u64) -> String {
    format!("{:X}/{:X}", v >> 32, v & 0xFFFF_FFFF)
}

fn config(shared: &Shared) -> Table {
    let c = &shared.config.load_full();
    let g = &c.general;
    let r = &g.routing;
    let mut t = Table::new(&["key", "value"]);
    let opt = |d: Option<std::time::Duration>| d.map_or("off".to_owned(), |d| format!("{d:?}"));
    let rows: Vec<(&str, String)> = vec![
        (
            "config_file",
            c.source
                .as_ref()
                .map_or("(none)".into(), |p| p.display().to_string()),
        ),
        ("listen", g.listen.to_string()),
        (
            "metrics_listen",
            g.metrics_listen.map_or("off".into(), |a| a.to_string()),
        ),
        ("workers", g.workers.to_string()),
        ("pool_mode", g.pool_mode.to_string()),
        ("pool_size", g.pool_size.to_string()),
        ("min_idle", g.min_idle.to_string()),
        ("max_client_conn", g.max_client_conn.to_string()),
        ("max_message_bytes", g.max_message_bytes.to_string()),
        ("connect_timeout", format!("{:?}", g.connect_timeout)),
        ("query_wait_timeout", format!("{:?}", g.query_wait_timeout)),
        ("server_idle_timeout", opt(g.server_idle_timeout)),
        ("server_lifetime", opt(g.server_lifetime)),
        (
            "server_reset_timeout",
            format!("{:?}", g.server_reset_timeout),
        ),
        ("client_idle_timeout", opt(g.client_idle_timeout)),
        ("idle_transaction_timeout", opt(g.idle_transaction_timeout)),
        ("shutdown_timeout", format!("{:?}", g.shutdown_timeout)),
        ("read_routing", r.enabled.to_string()),
        ("consistency", spelled(r.consistency)),
        (
            "read_your_writes_timeout",
            format!("{:?}", r.read_your_writes_timeout),
        ),
        ("transaction_routing", spelled(r.transaction_routing)),
        ("primary_reads", spelled(r.primary_reads)),
        ("load_balancing", spelled(r.load_balancing)),
        ("max_replica_lag_bytes", r.max_replica_lag_bytes.to_string()),
        ("max_replica_lag", opt(r.max_replica_lag)),
        ("read_only_functions", r.read_only_functions.join(", ")),
        (
            "health_check_interval",
            format!("{:?}", r.health_check_interval),
        ),
        ("admin_users", g.admin_users.join(", ")),
        (
            "monitor_user",
            g.monitor_user.clone().unwrap_or_else(|| "(default)".into()),
        ),
        ("query_stats_size", g.query_stats_size.to_string()),
        ("slow_query_threshold", opt(g.slow_query_threshold)),
        (
            "log_repeat_interval",
            format!("{:?}", g.log_repeat_interval),
        ),
        ("auth_cache_ttl", format!("{:?}", g.auth_cache_ttl)),
        ("client_tls", g.client_tls.to_string()),
        (
            "tls_cert_file",
            g.tls
                .as_ref()
                .map_or_else(|| "(none)".into(), |t| t.files.0.display().to_string()),
        ),
        (
            "tls_key_file",
            g.tls
                .as_ref()
                .map_or_else(|| "(none)".into(), |t| t.files.1.display().to_string()),
        ),
        (
            "max_prepared_statements",
            g.max_prepared_statements.to_string(),
        ),
        (
            "max_client_prepared_statements",
            g.max_client_prepared_statements.to_string(),
        ),
        ("session_state", spelled(g.session_state)),
        ("instance_id", g.instance_id.to_string()),
        ("peers", g.peers.join(", ")),
        ("reuse_port", g.reuse_port.to_string()),
        (
            "instances",
            g.instances
                .map_or_else(|| "counted from peers".into(), |n| n.to_string()),
        ),
        (
            "max_server_connections",
            g.max_server_connections.to_string(),
        ),
        (
            "otlp_endpoint",
            g.otlp
                .as_ref()
                .map_or_else(String::new, |o| o.endpoint.clone()),
        ),
        (
            "otlp_sample_ratio",
            g.otlp.as_ref().map_or(1.0, |o| o.sample_ratio).to_string(),
        ),
    ];
    for (k, v) in rows {
        t.row([k.to_owned(), v]);
    }
    // The serverless front's keys, present only while it is on.
    if let Some(h) = &g.http {
        for (k, v) in [
            ("http_listen", h.listen.to_string()),
            ("http_max_request_bytes", h.max_request_bytes.to_string()),
            ("http_max_response_bytes", h.max_response_bytes.to_string()),
            ("http_read_timeout", format!("{:?}", h.read_timeout)),
            ("http_query_timeout", format!("{:?}", h.query_timeout)),
            ("http_allow_plain", h.allow_plain.to_string()),
            ("http_cors_origin", h.cors_origin.clone()),
        ] {
            t.row([k.to_owned(), v]);
        }
    }
    for d in &c.databases {
        let replicas: Vec<String> = d
            .replicas
            .iter()
            .map(|r| format!("{} (weight {})", r.addr, r.weight))
            .collect();
        t.row([
            format!("databases.{}.primary", d.name),
            d.primary.to_string(),
        ]);
        t.row([
            format!("databases.{}.replicas", d.name),
            replicas.join(", "),
        ]);
    }
    t
}

/// An enum as the config file spells it: `ReadYourWrites` ->
/// `read_your_writes`.
fn spelled(v: impl std::fmt::Debug) -> String {
    let mut out = String::new();
    for (i, ch) in format!("{v:?}").chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

fn route(shared: &Shared, sql: &str) -> Result<Table, AdminError> {
    // The first pool (by name) with replicas knows the function catalog;
    // without one, the built-in rules alone.
    let mut sets = shared.pools.all();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    let decision = match sets
        .iter()
        .find_map(|s| s.router.as_ref().map(|r| r.route(sql)))
    {
        Some(d) => d?,
        None => crate::router::route(sql, &crate::router::FunctionPolicy::new([]))?,
    };
    let mut t = Table::new(&["route", "reason", "detail"]);
    let route = match decision.route {
        crate::router::Route::Primary => "primary",
        crate::router::Route::Replica => "replica",
        crate::router::Route::Any => "any",
    };
    t.row([
        route.to_owned(),
        decision.reason.label().to_owned(),
        format!("{:?}", decision.reason),
    ]);
    Ok(t)
}
