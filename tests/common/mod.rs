//! Test harness: starts pgswitch in-process on a free loopback port, in front
//! of the real cluster from `scripts/cluster.sh` (found through env vars with
//! the script's defaults).
#![allow(dead_code)]

pub mod http;
pub mod logs;
pub mod outage;
pub mod raw;
pub mod tls;

#[allow(unused_imports)]
pub use outage::{assert_ended_cleanly, port_of, Node, ReadLoad, Restart, StopMode, OUTAGE};

use std::net::SocketAddr;
use std::time::Duration;

use pgswitch::app::App;
use pgswitch::config::{Config, Overrides, PoolMode};
use tokio::task::JoinHandle;

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `app` user (SCRAM), database `app`, on the primary.
pub fn primary_url() -> String {
    env_or(
        "PGSWITCH_TEST_PRIMARY",
        "postgres://app:app-secret@127.0.0.1:15432/app",
    )
}

/// Superuser, for inspecting the server (pg_stat_activity, terminate).
pub fn superuser_url() -> String {
    env_or(
        "PGSWITCH_TEST_SUPERUSER",
        "postgres://postgres@127.0.0.1:15432/app",
    )
}

pub fn replica_urls() -> Vec<String> {
    vec![
        env_or(
            "PGSWITCH_TEST_REPLICA1",
            "postgres://app:app-secret@127.0.0.1:15433/app",
        ),
        env_or(
            "PGSWITCH_TEST_REPLICA2",
            "postgres://app:app-secret@127.0.0.1:15434/app",
        ),
    ]
}

/// A config for `--primary` with the given mode, listening on a free port.
pub fn config(mode: PoolMode, pool_size: usize) -> Config {
    let ov = Overrides {
        primary: Some(primary_url()),
        listen: Some("127.0.0.1:0".into()),
        pool_mode: Some(mode),
        pool_size: Some(pool_size),
        ..Default::default()
    };
    Config::load(None, &ov).expect("test config")
}

pub struct Proxy {
    pub addr: SocketAddr,
    /// The `/metrics` endpoint, when the config has `metrics_listen`.
    pub metrics_addr: Option<SocketAddr>,
    /// The serverless front, when the config has `http_listen`.
    pub http_addr: Option<SocketAddr>,
    pub shared: std::sync::Arc<pgswitch::shared::Shared>,
    pub shutdown: pgswitch::shared::StopHandle,
    pub task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(config: Config) -> Proxy {
        let app = App::bind(config).await.expect("bind");
        let addr = app.local_addr().expect("addr");
        let metrics_addr = app.metrics_addr();
        let http_addr = app.http_addr();
        let shutdown = app.shutdown_token();
        let shared = app.shared();
        let task = tokio::spawn(app.run());
        Proxy {
            addr,
            metrics_addr,
            http_addr,
            shared,
            shutdown,
            task,
        }
    }

    pub async fn mode(mode: PoolMode, pool_size: usize) -> Proxy {
        Proxy::start(config(mode, pool_size)).await
    }

    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@{}:{}/{db}",
            self.addr.ip(),
            self.addr.port()
        )
    }

    pub fn url(&self) -> String {
        self.url_as("app", "app-secret", "app")
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url())
            .await
            .expect("connect through pgswitch")
    }

    /// Waits (up to 10 s) for pgswitch to stop by itself; `why` names what
    /// should have stopped it.
    pub async fn ends(self, why: &str) {
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap_or_else(|_| panic!("pgswitch still running 10 s after {why}"))
            .expect("pgswitch task panicked");
    }

    /// Graceful shutdown; waits for every task to end.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("pgswitch did not stop within 60s")
            .expect("pgswitch task panicked");
    }
}

pub async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

pub async fn superuser() -> tokio_postgres::Client {
    connect(&superuser_url())
        .await
        .expect("superuser connection to the primary")
}

/// SQLSTATE of a tokio-postgres error, or "" if it has none.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

/// Message of a server-reported error.
pub fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

/// Polls `cond` every 20ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server backend pid serving this client right now.
pub async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pg_backend_pid")
        .get(0)
}

/// True inside a transaction block: a simple Query outside one runs in its
/// own implicit transaction, where now() equals statement_timestamp().
pub async fn in_transaction(c: &tokio_postgres::Client) -> bool {
    first_row(c, "SELECT (now() <> statement_timestamp())::text").await[0] == "true"
}

/// A config with a trust user `postgres` (the cluster's superuser, trusted on
/// loopback) plus the SCRAM `app` user, from TOML `extra` lines added to the
/// [pgswitch] table.
pub fn trust_config(mode: PoolMode, pool_size: usize, extra: &str) -> Config {
    let toml = format!(
        r#"
        [pgswitch]
        listen = "127.0.0.1:0"
        pool_mode = "{mode}"
        pool_size = {pool_size}
        {extra}
        [[databases]]
        name = "app"
        primary = "{primary}"
        [[users]]
        name = "postgres"
        auth = "trust"
        [[users]]
        name = "app"
        password = "app-secret"
        "#,
        primary = primary_url(),
    );
    config_from_toml(&toml)
}

/// Writes `toml` to a unique temp file and loads it like `--config`.
/// A config file for the cluster's `app` database (user `app`) with these
/// replicas, pgswitch on a free port, and `settings` (TOML lines) under
/// `[pgswitch]`.
pub fn cluster_toml(settings: &str, replicas: &[String]) -> String {
    format!(
        "[pgswitch]\nlisten = \"127.0.0.1:0\"\n{settings}\n\
         [[databases]]\nname = \"app\"\nprimary = \"{primary}\"\nreplicas = {replicas:?}\n\
         [[users]]\nname = \"app\"\npassword = \"app-secret\"\n",
        primary = primary_url(),
    )
}

/// [`cluster_toml`], loaded.
pub fn cluster_config(settings: &str, replicas: &[String]) -> Config {
    config_from_toml(&cluster_toml(settings, replicas))
}

/// The rows of a simple query as column -> text maps (NULL as "").
pub async fn rows(
    c: &tokio_postgres::Client,
    sql: &str,
) -> Vec<std::collections::BTreeMap<String, String>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                r.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_owned(), r.get(i).unwrap_or("").to_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

pub fn config_from_toml(toml: &str) -> Config {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("pgswitch-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("cfg-{}.toml", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, toml).expect("write config");
    Config::load(Some(&path), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Connects and returns the client plus a receiver for the connection's
/// final error (e.g. a FATAL sent by pgswitch while the client is idle).
pub async fn connect_watched(
    url: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::oneshot::Receiver<Option<tokio_postgres::Error>>,
) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(conn.await.err());
    });
    (client, rx)
}

/// Polls until the server backend `pid` is idle (outside any transaction) or
/// gone, for up to 10 s; false if it stays in a transaction or query.
pub async fn backend_settles(pid: i32) -> bool {
    let su = superuser().await;
    eventually(Duration::from_secs(10), || async {
        let row = su
            .query_opt("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap();
        row.is_none_or(|r| r.get::<_, Option<String>>(0).as_deref() == Some("idle"))
    })
    .await
}

/// Replica 2 with replay paused and about 1.5 MB of new WAL on the primary
/// that it has not replayed. `resume` undoes both; so does dropping it
/// (also while a failing test unwinds), so the cluster stays usable for the
/// tests after it.
pub struct LaggingReplica {
    table: String,
    resumed: bool,
}

/// The superuser on the server of `url` (its host, port and database).
fn superuser_on(url: &str) -> String {
    let su = superuser_url();
    let user = su.rsplit_once('@').map_or(su.as_str(), |(u, _)| u);
    let server = url.rsplit_once('@').map_or(url, |(_, s)| s);
    format!("{user}@{server}")
}

impl LaggingReplica {
    pub async fn start(tag: &str) -> LaggingReplica {
        let replica = connect(&superuser_on(&replica_urls()[1]))
            .await
            .expect("replica 2 as the superuser");
        let table = format!("{tag}_{}", std::process::id());
        // The guard exists before the pause, so that nothing after it can
        // leave replay paused.
        let lag = LaggingReplica {
            table,
            resumed: false,
        };
        replica
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .expect("pause replay");
        superuser()
            .await
            .batch_execute(&format!("CREATE TABLE {} AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 5000) g", lag.table))
            .await
            .expect("write WAL");
        lag
    }

    pub async fn resume(mut self) {
        // On failure, dropping `self` while panicking tries once more.
        undo_lag(&self.table).await.expect("resume replay");
        self.resumed = true;
    }
}

/// Resumes replay on replica 2 and drops the table that made the lag.
async fn undo_lag(table: &str) -> Result<(), tokio_postgres::Error> {
    connect(&superuser_on(&replica_urls()[1]))
        .await?
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await?;
    connect(&superuser_url())
        .await?
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
        .await
}

impl Drop for LaggingReplica {
    fn drop(&mut self) {
        if self.resumed {
            return;
        }
        // Drop can't await, and the test's runtime may be the one running
        // this: undo on a thread with a runtime of its own.
        let table = std::mem::take(&mut self.table);
        let undone = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(undo_lag(&table))
                .map_err(|e| e.to_string())
        })
        .join();
        match undone {
            Ok(Ok(())) => {}
            Ok(Err(e)) if !std::thread::panicking() => panic!("resume replay on replica 2: {e}"),
            Err(_) if !std::thread::panicking() => panic!("resume replay on replica 2 panicked"),
            _ => eprintln!(
                "could not resume replay on replica 2: run SELECT pg_wal_replay_resume() there"
            ),
        }
    }
}

/// The first row of a simple query's result, every column as text
/// (NULL as ""); panics if the query fails or returns no row.
pub async fn first_row(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// SQLSTATE of the error a watched connection (`connect_watched`) ended
/// with; `None` if it ended cleanly. Fails the test after 10 s.
pub async fn ended_with(
    done: tokio::sync::oneshot::Receiver<Option<tokio_postgres::Error>>,
    what: &str,
) -> Option<String> {
    let end = tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .unwrap_or_else(|_| panic!("{what}: the connection did not end within 10 s"))
        .expect("connection task");
    end.map(|e| sqlstate(&e))
}

/// A plain HTTP/1.0 GET: (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: pgswitch\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut raw))
        .await
        .expect("the response must not hang")
        .expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (status, body.to_owned())
}

/// Parses the Prometheus text format: every sample line as (series, value);
/// panics on a line that is not a comment or a sample.
pub fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in: {line}"));
        out.insert(series.to_owned(), value);
    }
    out
}

/// The primary's port, from its URL (`PGSWITCH_TEST_PRIMARY`), as
/// `inet_server_port()` reports it.
pub fn primary_port() -> i32 {
    port_of(&primary_url()).into()
}

/// Replica `i`'s port (0: replica 1), from its URL.
pub fn replica_port(i: usize) -> i32 {
    port_of(&replica_urls()[i]).into()
}

/// `host:port` of a `postgres://` URL, the way pgswitch names a server
/// (SHOW POOLS, metrics labels, error messages).
pub fn server_addr(url: &str) -> String {
    let after_user = url.rsplit('@').next().unwrap_or(url);
    let after_scheme = after_user.rsplit("://").next().unwrap_or(after_user);
    let end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    after_scheme[..end].to_owned()
}

/// The cluster's md5 user (`app_md5`) on the primary.
pub fn md5_url() -> String {
    std::env::var("PGSWITCH_TEST_MD5").unwrap_or_else(|_| {
        format!(
            "postgres://app_md5:md5-secret@{}/app",
            server_addr(&primary_url())
        )
    })
}

/// A config for the cluster with read routing on (`extra` adds to
/// `[pgswitch]`).
pub fn routing_config(mode: &str, extra: &str) -> pgswitch::config::Config {
    routing_config_with(mode, extra, &replica_urls())
}

pub fn routing_config_with(
    mode: &str,
    extra: &str,
    replicas: &[String],
) -> pgswitch::config::Config {
    cluster_config(
        &format!(
            "pool_mode = \"{mode}\"\npool_size = 4\nhealth_check_interval = \"50ms\"\n{extra}"
        ),
        replicas,
    )
}

/// The port of the server that ran `sql` (which must return it as int).
pub async fn port_that_ran(c: &tokio_postgres::Client, sql: &str) -> i32 {
    first_row(c, sql).await[0]
        .parse()
        .unwrap_or_else(|e| panic!("{sql}: no port: {e}"))
}

/// Whether reads reach a replica within 15 s (its first probes done).
pub async fn reads_reach_a_replica(c: &tokio_postgres::Client) -> bool {
    eventually(Duration::from_secs(15), || async {
        port_that_ran(c, "SELECT inet_server_port()").await != primary_port()
    })
    .await
}

/// The metrics pgswitch exports now.
pub fn metrics(proxy: &Proxy) -> String {
    proxy.shared.metrics.render()
}

/// The value of one exported sample (a metric name with its labels), or 0.
pub fn sample(proxy: &Proxy, series: &str) -> u64 {
    metrics(proxy)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}
