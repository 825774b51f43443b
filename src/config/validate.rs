//! Turns the file model plus overrides into a [`Config`], collecting every
//! problem instead of stopping at the first.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::file::{FileConfig, ReplicaFile, UserFile};
use super::{
    AuthMethod, ClientAuth, Config, Consistency, Database, General, LoadBalancing, Overrides,
    PoolMode, PrimaryReads, Replica, Routing, ServerAddr, TransactionRouting, User,
};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub key: String,
    pub message: String,
    pub fix: String,
}

impl Problem {
    pub fn new(file: &str, key: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem {
            file: file.to_owned(),
            key: key.to_owned(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {} (fix: {})",
            self.file, self.key, self.message, self.fix
        )
    }
}

/// Every problem found; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn one(p: Problem) -> Self {
        Problems(vec![p])
    }
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

struct Checker {
    file: String,
    problems: Vec<Problem>,
}

impl Checker {
    fn problem(&mut self, key: &str, message: impl Into<String>, fix: impl Into<String>) {
        let p = Problem::new(&self.file, key, message, fix);
        self.problems.push(p);
    }
}

/// A duration that must be above zero (`default` when not set).
fn positive(c: &mut Checker, key: &str, value: Option<Duration>, default: Duration) -> Duration {
    let d = value.unwrap_or(default);
    if d.is_zero() {
        c.problem(
            &format!("pgswitch.{key}"),
            "must be above zero",
            format!("remove it to use {default:?}, or set e.g. \"5s\""),
        );
    }
    d
}

/// Zero means "off" for optional timeouts.
fn nonzero(d: Option<Duration>, default: Option<Duration>) -> Option<Duration> {
    match d {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => default,
    }
}

pub fn build(file: FileConfig, ov: &Overrides, path: Option<&Path>) -> Result<Config, Problems> {
    let source = if path.is_some() {
        "config file"
    } else {
        "command line"
    };
    let mut c = Checker {
        file: path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| source.to_owned()),
        problems: Vec::new(),
    };
    let general = general(&mut c, &file, ov);
    let (databases, url_user) = databases(&mut c, &file, ov);
    let url_admin = url_user.as_ref().map(|(name, _)| name.clone());
    let users = users(&mut c, &file.users, url_user);
    let mut databases = databases;
    access::auth_lookups(&mut c, &file, ov, &users, &mut databases);
    let mut general = general;
    general.admin_users = match &file.pgswitch.admin_users {
        Some(names) => {
            for (i, name) in names.iter().enumerate() {
                if !users.iter().any(|u| &u.name == name) {
                    c.problem(
                        &format!("pgswitch.admin_users[{i}]"),
                        format!("'{name}' is not a configured user"),
                        "add it under [[users]], or remove it from admin_users",
                    );
                }
            }
            names.clone()
        }
        // Without a list, the --primary URL's user administers.
        None => url_admin.into_iter().collect(),
    };
    if let Some(name) = &file.pgswitch.monitor_user {
        if !users.iter().any(|u| &u.name == name) {
            c.problem(
                "pgswitch.monitor_user",
                format!("'{name}' is not a configured user"),
                "add it under [[users]] (its server login is used), or remove monitor_user",
            );
        }
        general.monitor_user = Some(name.clone());
    }
    if databases.is_empty() {
        c.problem(
            "databases",
            "no database is configured",
            "pass --primary postgres://USER:PASS@HOST:PORT/DB or add a [[databases]] table",
        );
    }
    if !general.listen.ip().is_loopback() {
        for u in users.iter().filter(|u| matches!(u.auth, ClientAuth::Trust)) {
            c.problem(
                "pgswitch.listen",
                format!("listening on {} (not loopback) while user '{}' needs no password", general.listen, u.name),
                "give the user a password ([[users]] password = ..., or a password in the --primary URL), or listen on 127.0.0.1",
            );
        }
    }
    if c.problems.is_empty() {
        Ok(Config {
            general,
            databases,
            users,
            source: path.map(Path::to_path_buf),
            overrides: ov.clone(),
        })
    } else {
        Err(Problems(c.problems))
    }
}

fn general(c: &mut Checker, file: &FileConfig, ov: &Overrides) -> General {
    let g = &file.pgswitch;
    let listen_text = ov
        .listen
        .clone()
        .or_else(|| g.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:6432".into());
    // Host names (localhost:6432) resolve to their first address.
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(listen_text.as_str())
        .ok()
        .and_then(|mut addrs| addrs.next());
    let listen = resolved.unwrap_or_else(|| {
        c.problem(
            "pgswitch.listen",
            format!("'{listen_text}' is not an address:port"),
            "use e.g. 127.0.0.1:6432 or 0.0.0.0:6432",
        );
        SocketAddr::from(([127, 0, 0, 1], 6432))
    });
    let pool_size = ov.pool_size.or(g.pool_size).unwrap_or(20);
    if pool_size == 0 {
        c.problem(
            "pgswitch.pool_size",
            "must be at least 1",
            "set pool_size = 20 or another positive number",
        );
    }
    let min_idle = g.min_idle.unwrap_or(0);
    if min_idle > pool_size {
        c.problem(
            "pgswitch.min_idle",
            format!("{min_idle} is larger than pool_size {pool_size}"),
            "lower min_idle or raise pool_size",
        );
    }
    let max_message_bytes = g.max_message_bytes.unwrap_or(64 << 20);
    if !(1024..=(1 << 30)).contains(&max_message_bytes) {
        c.problem(
            "pgswitch.max_message_bytes",
            format!("{max_message_bytes} is outside 1024..=1073741824"),
            "use a value between 1 KiB and 1 GiB (Postgres's own cap)",
        );
    }
    let five = Duration::from_secs(5);
    let server_reset_timeout = positive(c, "server_reset_timeout", g.server_reset_timeout, five);
    let connect_timeout = positive(c, "connect_timeout", g.connect_timeout, five);
    let log_repeat_interval = positive(
        c,
        "log_repeat_interval",
        g.log_repeat_interval,
        Duration::from_secs(60),
    );
    let health_check_interval = positive(
        c,
        "health_check_interval",
        g.health_check_interval,
        Duration::from_millis(250),
    );
    let metrics_listen = ov
        .metrics_listen
        .clone()
        .or_else(|| g.metrics_listen.clone())
        .filter(|a| !a.is_empty())
        .and_then(|text| {
            let addr = std::net::ToSocketAddrs::to_socket_addrs(text.as_str())
                .ok()
                .and_then(|mut addrs| addrs.next());
            if addr.is_none() {
                c.problem(
                    "pgswitch.metrics_listen",
                    format!("'{text}' is not an address:port"),
                    "use e.g. 127.0.0.1:9930, or remove it to serve no metrics",
                );
            }
            addr
        });
    let (client_tls, tls) = access::client_tls(c, g, ov);
    let http = http::front(
        c,
        g,
        ov,
        tls.is_some() && client_tls != super::ClientTlsMode::Disable,
    );
    let (instance_id, peers) = peers::peers(c, g, ov);
    let instances = peers::instances(c, g);
    let otlp = otlp::otlp(c, g, ov);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    General {
        listen,
        workers: match ov.workers.or(g.workers) {
            // Auto: on small machines pgswitch shares cores with its clients
            // and servers, where one thread costs the least CPU per query.
            Some(0) | None if cores <= 4 => 1,
            Some(0) | None => cores / 2,
            Some(n) => n,
        },
        pool_mode: ov.pool_mode.or(g.pool_mode).unwrap_or(PoolMode::Session),
        pool_size,
        min_idle,
        max_client_conn: g.max_client_conn.unwrap_or(10_000),
        max_message_bytes,
        connect_timeout,
        query_wait_timeout: nonzero(g.query_wait_timeout, Some(Duration::from_secs(30)))
            .unwrap_or(Duration::from_secs(3600 * 24)),
        server_idle_timeout: nonzero(g.server_idle_timeout, Some(Duration::from_secs(600))),
        server_lifetime: nonzero(g.server_lifetime, Some(Duration::from_secs(3600))),
        server_reset_timeout,
        client_idle_timeout: nonzero(g.client_idle_timeout, None),
        idle_transaction_timeout: nonzero(g.idle_transaction_timeout, None),
        shutdown_timeout: g.shutdown_timeout.unwrap_or(Duration::from_secs(30)),
        routing: Routing {
            enabled: g.read_routing.unwrap_or(true),
            consistency: g.consistency.unwrap_or(Consistency::ReadYourWrites),
            transaction_routing: g.transaction_routing.unwrap_or(TransactionRouting::Primary),
            primary_reads: g.primary_reads.unwrap_or(PrimaryReads::Fallback),
            load_balancing: g.load_balancing.unwrap_or(LoadBalancing::LeastOutstanding),
            max_replica_lag_bytes: g.max_replica_lag_bytes.unwrap_or(16 << 20),
            // A replica a second behind is stale for an app's reads.
            max_replica_lag: nonzero(
                ov.max_replica_lag.or(g.max_replica_lag),
                Some(Duration::from_secs(1)),
            ),
            read_your_writes_timeout: g.read_your_writes_timeout.unwrap_or(Duration::ZERO),
            read_only_functions: read_only_functions(c, g.read_only_functions.as_deref()),
            health_check_interval,
        },
        metrics_listen,
        admin_users: Vec::new(),
        monitor_user: None,
        query_stats_size: g.query_stats_size.unwrap_or(1000),
        max_prepared_statements: g.max_prepared_statements.unwrap_or(200),
        max_client_prepared_statements: g.max_client_prepared_statements.unwrap_or(1000),
        session_state: g.session_state.unwrap_or(super::SessionState::Pin),
        slow_query_threshold: nonzero(g.slow_query_threshold, None),
        log_repeat_interval,
        auth_cache_ttl: g.auth_cache_ttl.unwrap_or(Duration::from_secs(60)),
        client_tls,
        tls,
        http,
        instance_id,
        peers,
        reuse_port: ov.reuse_port.or(g.reuse_port).unwrap_or(false),
        instances,
        max_server_connections: g.max_server_connections.unwrap_or(0),
        otlp,
    }
}

/// Function names as written (`name` or `schema.name`), lower-cased as
/// Postgres folds unquoted names.
fn read_only_functions(c: &mut Checker, names: Option<&[String]>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, name) in names.unwrap_or_default().iter().enumerate() {
        let ok = !name.is_empty()
            && name.split('.').count() <= 2
            && name.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|ch| ch.is_alphanumeric() || ch == '_')
            });
        if ok {
            out.push(name.to_lowercase());
        } else {
            c.problem(
                &format!("pgswitch.read_only_functions[{i}]"),
                format!("'{name}' is not a function name"),
                "write the bare name (\"my_report\") or schema and name (\"app.my_report\"), without parentheses",
            );
        }
    }
    out
}

/// Databases from the file plus the one named by `--primary`; also returns
/// the (user, password) of the `--primary` URL, which becomes a client user.
fn databases(
    c: &mut Checker,
    file: &FileConfig,
    ov: &Overrides,
) -> (Vec<Database>, Option<(String, Option<String>)>) {
    let mut out = Vec::new();
    for (i, d) in file.databases.iter().enumerate() {
        let key = format!("databases[{i}]");
        let primary = parse_url(c, &format!("{key}.primary"), &d.primary);
        let replicas = d
            .replicas
            .iter()
            .enumerate()
            .filter_map(|(j, r)| replica(c, &format!("{key}.replicas[{j}]"), r))
            .collect();
        if d.replicas.len() > MAX_REPLICAS {
            c.problem(
                &format!("{key}.replicas"),
                format!(
                    "{} replicas listed; at most {MAX_REPLICAS} are supported",
                    d.replicas.len()
                ),
                "list fewer replicas, or split them across databases",
            );
        }
        if d.pool_size == Some(0) {
            c.problem(
                &format!("{key}.pool_size"),
                "must be at least 1",
                "remove it to use pgswitch.pool_size, or set a positive number",
            );
        }
        if out.iter().any(|o: &Database| o.name == d.name) {
            c.problem(
                &format!("{key}.name"),
                format!("database '{}' is listed twice", d.name),
                "give each [[databases]] entry a unique name",
            );
        }
        if let Some(primary) = primary {
            out.push(Database {
                name: d.name.clone(),
                primary,
                replicas,
                pool_size: d.pool_size,
                pool_mode: d.pool_mode,
                max_server_connections: d.max_server_connections,
                auth: None,
            });
        }
    }
    let mut url_user = None;
    if let Some(url) = &ov.primary {
        let replicas = ov
            .replicas
            .iter()
            .filter_map(|r| parse_url(c, "--replica", r))
            .map(|addr| Replica { addr, weight: 1 })
            .collect::<Vec<_>>();
        if replicas.len() > MAX_REPLICAS {
            c.problem(
                "--replica",
                format!(
                    "{} replicas given; at most {MAX_REPLICAS} are supported",
                    replicas.len()
                ),
                "give fewer replicas",
            );
        }
        if let Some(primary) = parse_url(c, "--primary", url) {
            let Some(user) = primary.user.clone() else {
                c.problem(
                    "--primary",
                    "the URL names no user",
                    "use postgres://USER:PASSWORD@HOST:PORT/DB",
                );
                return (out, None);
            };
            let name = primary.dbname.clone().unwrap_or_else(|| user.clone());
            url_user = Some((user, primary.password.clone()));
            out.retain(|d| d.name != name);
            out.push(Database {
                name,
                primary,
                replicas,
                pool_size: None,
                pool_mode: None,
                max_server_connections: None,
                auth: None,
            });
        }
    } else if !ov.replicas.is_empty() {
        c.problem(
            "--replica",
            "replicas were given without --primary",
            "add --primary URL, or list replicas under [[databases]] in the file",
        );
    }
    (out, url_user)
}

/// Replicas per database (each has a bit in the set of replicas a read
/// already tried).
pub const MAX_REPLICAS: usize = 64;

fn replica(c: &mut Checker, key: &str, r: &ReplicaFile) -> Option<Replica> {
    let (url, weight) = match r {
        ReplicaFile::Url(url) => (url, 1),
        ReplicaFile::Weighted { url, weight } => (url, *weight),
    };
    if weight == 0 {
        c.problem(
            &format!("{key}.weight"),
            "must be at least 1",
            "give the replica a positive weight, or remove it from the list",
        );
    }
    let addr = parse_url(c, key, url)?;
    Some(Replica { addr, weight })
}

fn parse_url(c: &mut Checker, key: &str, url: &str) -> Option<ServerAddr> {
    ServerAddr::parse(url)
        .map_err(|e| c.problem(key, e.problem, e.fix))
        .ok()
}

fn users(
    c: &mut Checker,
    file_users: &[UserFile],
    url_user: Option<(String, Option<String>)>,
) -> Vec<User> {
    let mut out: Vec<User> = Vec::new();
    for (i, u) in file_users.iter().enumerate() {
        let key = format!("users[{i}]");
        if out.iter().any(|o| o.name == u.name) {
            c.problem(
                &format!("{key}.name"),
                format!("user '{}' is listed twice", u.name),
                "give each [[users]] entry a unique name",
            );
            continue;
        }
        let method = u.auth.unwrap_or(if u.password.is_some() {
            AuthMethod::ScramSha256
        } else {
            AuthMethod::Trust
        });
        let Some(auth) = access::client_auth(c, &key, &u.name, method, u.password.as_deref())
        else {
            continue;
        };
        let plain = u.password.as_deref().filter(|p| !access::is_hashed(p));
        if u.pool_size == Some(0) {
            c.problem(
                &format!("{key}.pool_size"),
                "must be at least 1",
                "remove it or set a positive number",
            );
        }
        out.push(User {
            name: u.name.clone(),
            auth,
            server_user: u.server_user.clone().unwrap_or_else(|| u.name.clone()),
            server_password: u
                .server_password
                .clone()
                .or_else(|| plain.map(str::to_owned)),
            server_secret: None,
            pool_size: u.pool_size,
        });
    }
    if let Some((name, password)) = url_user {
        if !out.iter().any(|u| u.name == name) {
            let method = if password.is_some() {
                AuthMethod::ScramSha256
            } else {
                AuthMethod::Trust
            };
            if let Some(auth) =
                access::client_auth(c, "--primary", &name, method, password.as_deref())
            {
                out.push(User {
                    server_user: name.clone(),
                    name,
                    auth,
                    server_password: password,
                    server_secret: None,
                    pool_size: None,
                });
            }
        }
    }
    out
}

mod access;
mod http;
mod otlp;
mod peers;

#[cfg(test)]
mod tests;
