//! The admin console with PgBouncer 1.24's tables (database `pgbouncer`),
//! so that tools that read PgBouncer's console (prometheus-community's
//! pgbouncer_exporter, Datadog's PgBouncer check) work unchanged: the same
//! columns, in the same order, with the same types (PgBouncer's
//! `src/admin.c` and `src/stats.c`).
//!
//! pgswitch's figures fill them where they exist. A pool is a (database,
//! user) pool set with its replicas' pools summed in. What pgswitch does
//! not have (cancel-request states, server logins in progress, per-second
//! averages, parse and bind counts, local addresses) is 0 or empty, as
//! PgBouncer shows an idle instance.

use std::time::{Duration, Instant, SystemTime};

use super::command::{AdminError, Show};
use super::table::{Table, INT4, NUMERIC, TEXT};
use crate::pool::{Pool, PoolSet};
use crate::shared::Shared;

pub fn table(shared: &Shared, what: &Show) -> Result<Table, AdminError> {
    Ok(match what {
        Show::Pools => pools(shared),
        Show::Stats => stats(shared),
        Show::StatsTotals => totals(shared, false),
        Show::StatsAverages => totals(shared, true),
        Show::Databases => databases(shared),
        Show::Clients => clients(shared),
        Show::Servers => servers(shared),
        Show::Lists => lists(shared),
        Show::Config => config(shared),
        Show::Version => {
            let mut t = Table::new(&["version"]);
            t.row([concat!(
                "PgBouncer 1.24.1 compatible console (pgswitch ",
                env!("CARGO_PKG_VERSION"),
                ")"
            )]);
            t
        }
        // The rest are pgswitch's own.
        other => super::show::table(shared, other)?,
    })
}

fn sets(shared: &Shared) -> Vec<std::sync::Arc<PoolSet>> {
    let mut sets = shared.pools.all();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    sets
}

/// The primary's pool and the replicas'.
fn server_pools(set: &PoolSet) -> impl Iterator<Item = &Pool> {
    std::iter::once(&set.primary).chain(set.replicas.iter().flat_map(|r| r.pools()))
}

fn n(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

fn pools(shared: &Shared) -> Table {
    let mut t = Table::typed(&[
        ("database", TEXT),
        ("user", TEXT),
        ("cl_active", INT4),
        ("cl_waiting", INT4),
        ("cl_active_cancel_req", INT4),
        ("cl_waiting_cancel_req", INT4),
        ("sv_active", INT4),
        ("sv_active_cancel", INT4),
        ("sv_being_canceled", INT4),
        ("sv_idle", INT4),
        ("sv_used", INT4),
        ("sv_tested", INT4),
        ("sv_login", INT4),
        ("maxwait", INT4),
        ("maxwait_us", INT4),
        ("pool_mode", TEXT),
        ("load_balance_hosts", TEXT),
    ]);
    let clients = shared.cancels.clients();
    let config = shared.config.load();
    for set in sets(shared) {
        let (mut waiting, mut active) = (0, 0);
        for c in clients.iter().filter(|c| *c.pool == *set.name) {
            match c.waiting.load(std::sync::atomic::Ordering::Relaxed) {
                true => waiting += 1,
                false => active += 1,
            }
        }
        let (mut busy, mut idle) = (0, 0);
        for p in server_pools(&set) {
            let s = p.status();
            busy += s.size.saturating_sub(s.available);
            idle += s.available;
        }
        let mode = config
            .database(&set.database)
            .map_or(config.general.pool_mode, |d| config.pool_mode(d));
        t.row_opt(vec![
            n(&set.database),
            n(&set.user),
            n(active),
            n(waiting),
            n(0),
            n(0),
            n(busy),
            n(0),
            n(0),
            n(idle),
            n(0),
            n(0),
            n(0),
            n(0),
            n(0),
            n(mode),
            None,
        ]);
    }
    t
}

/// Per database: counts and times summed over its users' pools.
struct Totals {
    transactions: u64,
    queries: u64,
    received: u64,
    sent: u64,
    xact_us: u64,
    wait_us: u64,
}

fn per_database(shared: &Shared) -> Vec<(String, Totals)> {
    let mut out: Vec<(String, Totals)> = Vec::new();
    for set in sets(shared) {
        let s = &set.stats;
        let us = |h: &prometheus::Histogram| (h.get_sample_sum() * 1e6) as u64;
        let add = Totals {
            transactions: s.transactions.get(),
            queries: s.requests.get(),
            received: s.bytes_in.get(),
            sent: s.bytes_out.get(),
            xact_us: us(&s.transaction_seconds),
            wait_us: us(&s.wait_seconds),
        };
        match out.iter_mut().find(|(d, _)| *d == set.database) {
            Some((_, t)) => {
                t.transactions += add.transactions;
                t.queries += add.queries;
                t.received += add.received;
                t.sent += add.sent;
                t.xact_us += add.xact_us;
                t.wait_us += add.wait_us;
            }
            None => out.push((set.database.clone(), add)),
        }
    }
    out
}

/// The eleven figures of SHOW STATS_TOTALS, in its order.
fn eleven(t: &Totals) -> [u64; 11] {
    // A transaction is a server assignment in transaction mode, and its
    // time is the closest pgswitch has to PgBouncer's query time.
    [
        t.transactions,
        t.transactions,
        t.queries,
        t.received,
        t.sent,
        t.xact_us,
        t.xact_us,
        t.wait_us,
        0,
        0,
        0,
    ]
}

fn stats(shared: &Shared) -> Table {
    let mut columns = vec![("database", TEXT)];
    for name in [
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
    ] {
        columns.push((name, NUMERIC));
    }
    let mut t = Table::typed(&columns);
    for (db, totals) in per_database(shared) {
        let mut row = vec![n(db)];
        row.extend(eleven(&totals).iter().map(n));
        row.extend(std::iter::repeat_n(n(0), 11));
        t.row_opt(row);
    }
    t
}

/// SHOW STATS_TOTALS, or SHOW STATS_AVERAGES (per-second averages, which
/// pgswitch does not keep: 0).
fn totals(shared: &Shared, averages: bool) -> Table {
    // The same names, but for the last three of the averages.
    let last: [&'static str; 3] = match averages {
        false => ["client_parse_count", "server_parse_count", "bind_count"],
        true => [
            "avg_client_parse_count",
            "avg_server_parse_count",
            "avg_bind_count",
        ],
    };
    let mut columns = vec![("database", TEXT)];
    for name in [
        "server_assignment_count",
        "xact_count",
        "query_count",
        "bytes_received",
        "bytes_sent",
        "xact_time",
        "query_time",
        "wait_time",
    ]
    .into_iter()
    .chain(last)
    {
        columns.push((name, NUMERIC));
    }
    let mut t = Table::typed(&columns);
    for (db, totals) in per_database(shared) {
        let mut row = vec![n(db)];
        match averages {
            false => row.extend(eleven(&totals).iter().map(n)),
            true => row.extend(std::iter::repeat_n(n(0), 11)),
        }
        t.row_opt(row);
    }
    t
}

fn databases(shared: &Shared) -> Table {
    let mut t = Table::typed(&[
        ("name", TEXT),
        ("host", TEXT),
        ("port", INT4),
        ("database", TEXT),
        ("force_user", TEXT),
        ("pool_size", INT4),
        ("min_pool_size", INT4),
        ("reserve_pool_size", INT4),
        ("server_lifetime", INT4),
        ("pool_mode", TEXT),
        ("load_balance_hosts", TEXT),
        ("max_connections", INT4),
        ("current_connections", INT4),
        ("max_client_connections", INT4),
        ("current_client_connections", INT4),
        ("paused", INT4),
        ("disabled", INT4),
    ]);
    let config = shared.config.load();
    let g = &config.general;
    let all = sets(shared);
    let clients = shared.cancels.clients();
    for db in &config.databases {
        let servers: usize = all
            .iter()
            .filter(|s| s.database == db.name)
            .flat_map(|s| server_pools(s).map(|p| p.status().size).collect::<Vec<_>>())
            .sum();
        let prefix = format!("{}/", db.name);
        let connected = clients
            .iter()
            .filter(|c| c.pool.starts_with(&prefix))
            .count();
        // This instance's max_server_connections share of the primary.
        let share = shared
            .pools
            .limits
            .get(&db.name, &crate::pool::limit::server_key(&db.primary));
        t.row_opt(vec![
            n(&db.name),
            n(&db.primary.host),
            n(db.primary.port),
            n(db.primary.dbname.as_deref().unwrap_or(&db.name)),
            None,
            n(db.pool_size.unwrap_or(g.pool_size)),
            n(g.min_idle),
            n(0),
            n(g.server_lifetime.map_or(0, |d| d.as_secs())),
            n(config.pool_mode(db)),
            None,
            n(share.as_ref().map_or(0, |s| s.mine())),
            n(servers),
            n(0),
            n(connected),
            n(u8::from(shared.pause.is_paused(&db.name))),
            n(0),
        ]);
    }
    t
}

/// The 21 columns of SHOW CLIENTS and SHOW SERVERS.
fn sockets() -> Table {
    Table::typed(&[
        ("type", TEXT),
        ("user", TEXT),
        ("database", TEXT),
        ("replication", TEXT),
        ("state", TEXT),
        ("addr", TEXT),
        ("port", INT4),
        ("local_addr", TEXT),
        ("local_port", INT4),
        ("connect_time", TEXT),
        ("request_time", TEXT),
        ("wait", INT4),
        ("wait_us", INT4),
        ("close_needed", INT4),
        ("ptr", TEXT),
        ("link", TEXT),
        ("remote_pid", INT4),
        ("tls", TEXT),
        ("application_name", TEXT),
        ("prepared_statements", INT4),
        ("id", INT4),
    ])
}

/// A wall-clock time as PgBouncer prints it (UTC): `YYYY-MM-DD HH:MM:SS`.
fn wall(at: Instant) -> String {
    let then = SystemTime::now() - at.elapsed();
    let secs = then
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn clients(shared: &Shared) -> Table {
    let mut t = sockets();
    for c in shared.cancels.clients() {
        let (database, user) = c.pool.split_once('/').unwrap_or((&c.pool, ""));
        let waiting = c.waiting.load(std::sync::atomic::Ordering::Relaxed);
        let server = c.current();
        t.row_opt(vec![
            n("C"),
            n(user),
            n(database),
            n("none"),
            n(if waiting { "waiting" } else { "active" }),
            n(c.peer.ip()),
            n(c.peer.port()),
            n(""),
            n(0),
            n(wall(c.since)),
            n(wall(c.since)),
            n(0),
            n(0),
            n(0),
            n(format!("{:x}", c.pid)),
            n(server.map_or(String::new(), |s| format!("{:x}", s.1 .0))),
            n(0),
            n(""),
            n(""),
            n(0),
            n(c.pid),
        ]);
    }
    t
}

fn servers(shared: &Shared) -> Table {
    let mut t = sockets();
    let lent = super::show::lent(shared);
    for set in sets(shared) {
        for pool in server_pools(&set) {
            let addr = &pool.manager().target.addr;
            let addr_text = addr.to_string();
            let row = |state: &str, pid: i32, link: String, since: Instant| {
                vec![
                    n("S"),
                    n(&set.user),
                    n(&set.database),
                    n("none"),
                    n(state),
                    n(&addr.host),
                    n(addr.port),
                    n(""),
                    n(0),
                    n(wall(since)),
                    n(wall(since)),
                    n(0),
                    n(0),
                    n(0),
                    n(format!("{pid:x}")),
                    n(link),
                    n(pid),
                    n(""),
                    n(""),
                    n(0),
                    n(pid),
                ]
            };
            for (client, (server, key)) in &lent {
                if *client.pool == *set.name && server.to_string() == addr_text {
                    t.row_opt(row(
                        "active",
                        key.0,
                        format!("{:x}", client.pid),
                        client.since,
                    ));
                }
            }
            pool.retain(|conn, metrics| {
                let since = Instant::now() - metrics.age();
                t.row_opt(row("idle", conn.key.0, String::new(), since));
                true
            });
        }
    }
    t
}

fn lists(shared: &Shared) -> Table {
    let mut t = Table::typed(&[("list", TEXT), ("items", INT4)]);
    let config = shared.config.load();
    let all = sets(shared);
    let servers: usize = all
        .iter()
        .flat_map(|s| server_pools(s).map(|p| p.status().size).collect::<Vec<_>>())
        .sum();
    let idle: usize = all
        .iter()
        .flat_map(|s| {
            server_pools(s)
                .map(|p| p.status().available)
                .collect::<Vec<_>>()
        })
        .sum();
    let rows: [(&str, usize); 14] = [
        ("databases", config.databases.len()),
        ("users", config.users.len()),
        ("peers", config.general.peers.len()),
        ("pools", all.len()),
        ("peer_pools", 0),
        ("free_clients", 0),
        ("used_clients", shared.cancels.clients().len()),
        ("login_clients", 0),
        ("free_servers", idle),
        ("used_servers", servers.saturating_sub(idle)),
        ("dns_names", 0),
        ("dns_zones", 0),
        ("dns_queries", 0),
        ("dns_pending", 0),
    ];
    for (list, items) in rows {
        t.row([list.to_owned(), items.to_string()]);
    }
    t
}

fn config(shared: &Shared) -> Table {
    let mut t = Table::new(&["key", "value", "default", "changeable"]);
    let config = shared.config.load();
    let g = &config.general;
    let secs = |d: Option<Duration>| d.map_or(0, |d| d.as_secs()).to_string();
    let rows: Vec<(&str, String, &str, &str)> = vec![
        ("listen_addr", g.listen.ip().to_string(), "", "no"),
        ("listen_port", g.listen.port().to_string(), "6432", "no"),
        ("pool_mode", g.pool_mode.to_string(), "session", "yes"),
        ("default_pool_size", g.pool_size.to_string(), "20", "yes"),
        ("min_pool_size", g.min_idle.to_string(), "0", "yes"),
        (
            "max_client_conn",
            g.max_client_conn.to_string(),
            "100",
            "yes",
        ),
        (
            "max_db_connections",
            g.max_server_connections.to_string(),
            "0",
            "yes",
        ),
        ("max_user_connections", "0".into(), "0", "yes"),
        ("server_lifetime", secs(g.server_lifetime), "3600", "yes"),
        (
            "server_idle_timeout",
            secs(g.server_idle_timeout),
            "600",
            "yes",
        ),
        (
            "query_wait_timeout",
            g.query_wait_timeout.as_secs().to_string(),
            "120",
            "yes",
        ),
        (
            "client_idle_timeout",
            secs(g.client_idle_timeout),
            "0",
            "yes",
        ),
        (
            "idle_transaction_timeout",
            secs(g.idle_transaction_timeout),
            "0",
            "yes",
        ),
        (
            "max_prepared_statements",
            g.max_prepared_statements.to_string(),
            "200",
            "yes",
        ),
        ("peer_id", g.instance_id.to_string(), "0", "no"),
        (
            "so_reuseport",
            u8::from(g.reuse_port).to_string(),
            "0",
            "no",
        ),
    ];
    for (k, v, d, c) in rows {
        t.row([k.to_owned(), v, d.to_owned(), c.to_owned()]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_format() {
        let s = wall(Instant::now());
        assert_eq!(s.len(), 19, "{s}");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], " ");
        assert!(s.starts_with("20"), "{s}");
    }
}
