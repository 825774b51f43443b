//! Configuration: the TOML file model ([`file`]), command-line/env overrides
//! ([`Overrides`]), and the validated [`Config`] the rest of pgswitch reads.
//!
//! Precedence: flags beat env vars (clap reads both), which beat the file.
//! `validate` reports every problem at once, each with its file, key and fix.

mod file;
mod server_url;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use file::FileConfig;
pub use server_url::{ServerAddr, UrlError};
pub use validate::{Problem, Problems};

use crate::auth::ScramVerifier;

/// How long a client keeps a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// For the client's whole session.
    Session,
    /// Until the end of each transaction.
    Transaction,
    /// Until the end of each statement; transaction blocks are refused.
    Statement,
}

impl std::fmt::Display for PoolMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        })
    }
}

/// Read consistency for routed reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// A client's reads see its own committed writes (replicas that have
    /// not replayed them are skipped for that client).
    ReadYourWrites,
    /// Any replica in rotation, even one that has not yet replayed the
    /// client's last write.
    Eventual,
    /// Every statement on the primary; replicas are only monitored.
    PrimaryOnly,
}

/// Where an explicit transaction (`BEGIN` without `READ ONLY`) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionRouting {
    /// On the primary, for its whole life.
    Primary,
    /// Where its first statement would go on its own.
    FirstStatement,
}

/// Whether the primary serves reads too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryReads {
    /// Never: with no replica in rotation a read fails.
    Never,
    /// Only when no replica can serve the read.
    Fallback,
    /// Always: the primary is one more member of the rotation.
    Always,
}

/// Transaction and statement modes: what happens to a client that creates
/// session state a shared connection cannot carry (LISTEN, a temporary
/// table, a session advisory lock, a WITH HOLD cursor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// It keeps its server connection for the rest of its session.
    Pin,
    /// The statement fails (0A000) naming the feature and this setting.
    Refuse,
}

/// How a read picks among the servers in rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    /// The server with the fewest connections in use, relative to its
    /// weight.
    LeastOutstanding,
    /// In turn, each server as often as its weight.
    RoundRobin,
}

/// Whether clients may, or must, use TLS to pgswitch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientTlsMode {
    /// SSLRequest is answered 'N': plain only.
    Disable,
    /// TLS for clients that ask for it, plain for the others.
    Allow,
    /// Plain clients are refused (28000), as `hostssl` refuses them.
    Require,
}

impl std::fmt::Display for ClientTlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientTlsMode::Disable => "disable",
            ClientTlsMode::Allow => "allow",
            ClientTlsMode::Require => "require",
        })
    }
}

/// Read/write routing settings.
#[derive(Debug, Clone)]
pub struct Routing {
    /// Send reads to replicas (transaction and statement modes).
    pub enabled: bool,
    /// What a client's reads may miss of its own writes.
    pub consistency: Consistency,
    pub transaction_routing: TransactionRouting,
    pub primary_reads: PrimaryReads,
    pub load_balancing: LoadBalancing,
    /// A replica further behind the primary than this leaves rotation.
    pub max_replica_lag_bytes: u64,
    /// ... or whose oldest unreplayed WAL is older than this.
    pub max_replica_lag: Option<Duration>,
    /// How long a read waits for a replica to replay the client's last
    /// write before it goes to the primary.
    pub read_your_writes_timeout: Duration,
    /// Volatile functions declared safe on a replica.
    pub read_only_functions: Vec<String>,
    /// How often servers are probed for health and lag.
    pub health_check_interval: Duration,
}

/// A replica server and its share of reads.
#[derive(Debug, Clone)]
pub struct Replica {
    pub addr: ServerAddr,
    pub weight: u32,
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum AuthMethod {
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "trust")]
    Trust,
}

/// Settings that apply to the whole process.
#[derive(Debug, Clone)]
pub struct General {
    pub listen: SocketAddr,
    /// Runtime worker threads; 1 runs everything on one thread.
    pub workers: usize,
    pub pool_mode: PoolMode,
    pub pool_size: usize,
    pub min_idle: usize,
    pub max_client_conn: usize,
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    pub query_wait_timeout: Duration,
    pub server_idle_timeout: Option<Duration>,
    pub server_lifetime: Option<Duration>,
    pub server_reset_timeout: Duration,
    pub client_idle_timeout: Option<Duration>,
    pub idle_transaction_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
    pub routing: Routing,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Users who may open the admin console (database `pgswitch`).
    pub admin_users: Vec<String>,
    /// The user whose server login the health monitor and the catalog
    /// reader use (one each per database and server, whatever the number
    /// of users); `None`: the `--primary` URL's user, else the first user.
    pub monitor_user: Option<String>,
    /// Fingerprints kept by the per-query statistics (0: off).
    pub query_stats_size: usize,
    /// Pooler-wide prepared statements kept per server connection in
    /// transaction and statement modes (0: named statements pass through
    /// untracked).
    pub max_prepared_statements: usize,
    /// Named prepared statements one client may have.
    pub max_client_prepared_statements: usize,
    /// Pin or refuse clients that create session state.
    pub session_state: SessionState,
    /// Statements at least this slow are logged (`None`: off).
    pub slow_query_threshold: Option<Duration>,
    /// While a server problem lasts, at most one summary line per this
    /// (see `incidents`).
    pub log_repeat_interval: Duration,
    /// How long a verifier looked up with `auth_query` is reused.
    pub auth_cache_ttl: Duration,
    /// TLS towards clients.
    pub client_tls: ClientTlsMode,
    /// The certificate presented to clients, read at load (and reload).
    pub tls: Option<std::sync::Arc<crate::net::tls::ClientTls>>,
    /// The serverless front (`http_listen`); `None`: off.
    pub http: Option<HttpFront>,
    /// This instance's id among its peers (0-127), in every cancel key it
    /// issues (see `session::cancel`).
    pub instance_id: u8,
    /// Other instances (`host:port`; a name may resolve to several) that a
    /// CancelRequest for a client this instance does not have goes to.
    pub peers: Vec<String>,
    /// Listen with SO_REUSEPORT, so that a new process can take over the
    /// port while this one drains (zero-downtime restart).
    pub reuse_port: bool,
    /// How many instances share `max_server_connections`: the configured
    /// number, else (`None`) this one and the other addresses its peers
    /// resolve to (see `pool::limit`).
    pub instances: Option<usize>,
    /// The default of `Database::max_server_connections` (0: no limit).
    pub max_server_connections: usize,
    /// OTLP trace export (`otlp_endpoint`); `None`: off.
    pub otlp: Option<Otlp>,
}

/// Where transactions' spans go (see `ops::traces`).
#[derive(Debug, Clone, PartialEq)]
pub struct Otlp {
    /// The collector's OTLP/HTTP address, e.g. `http://127.0.0.1:4318`.
    pub endpoint: String,
    /// Share of transactions without a `traceparent` that are traced.
    pub sample_ratio: f64,
}

/// The serverless front: SQL over HTTP (`POST /sql`) and the wire protocol
/// over WebSocket (`GET /v2`), as Neon's driver speaks them (see
/// `crate::serverless`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFront {
    pub listen: SocketAddr,
    /// Larger request bodies get 413.
    pub max_request_bytes: usize,
    /// Larger results get 507.
    pub max_response_bytes: usize,
    /// Time allowed for a request's headers and body to arrive.
    pub read_timeout: Duration,
    /// Time allowed for a request's statements (then 57014, cancelled).
    pub query_timeout: Duration,
    /// Plain HTTP beyond loopback (behind a proxy that ends TLS).
    pub allow_plain: bool,
    /// `Access-Control-Allow-Origin` of every answer.
    pub cors_origin: String,
}

/// A database clients can name, and the servers behind it.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub primary: ServerAddr,
    pub replicas: Vec<Replica>,
    pub pool_size: Option<usize>,
    pub pool_mode: Option<PoolMode>,
    /// Connections to each of its servers that all instances together may
    /// open, over all users' pools (`None`: the global setting).
    pub max_server_connections: Option<usize>,
    /// Where users not in the config are looked up (`auth_user`).
    pub auth: Option<AuthLookup>,
}

/// `auth_user` and `auth_query`: the login that looks users up on the
/// primary, and the query (one parameter: the user name; columns: name,
/// `rolpassword`).
#[derive(Clone)]
pub struct AuthLookup {
    pub user: String,
    pub password: Option<String>,
    pub query: String,
}

impl std::fmt::Debug for AuthLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthLookup({}, {:?})", self.user, self.query)
    }
}

/// The default `auth_query`: what a superuser `auth_user` can read.
pub const DEFAULT_AUTH_QUERY: &str =
    "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1 AND rolcanlogin";

/// What a client must present, precomputed at load time so that a connection
/// storm costs no key derivation.
#[derive(Clone)]
pub enum ClientAuth {
    Trust,
    Scram(ScramVerifier),
    /// `md5(password || user)` as hex, without the "md5" prefix.
    Md5 {
        hash: String,
    },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, not even derived ones.
        f.write_str(match self {
            ClientAuth::Trust => "trust",
            ClientAuth::Scram(_) => "scram-sha-256",
            ClientAuth::Md5 { .. } => "md5",
        })
    }
}

/// A user clients can log in as, and how pgswitch logs in to servers for it.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub auth: ClientAuth,
    pub server_user: String,
    pub server_password: Option<String>,
    /// Users looked up with `auth_query` (never in the file): what logs in
    /// to servers for them.
    pub server_secret: Option<crate::auth::ServerSecret>,
    pub pool_size: Option<usize>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub general: General,
    pub databases: Vec<Database>,
    pub users: Vec<User>,
    /// The file it came from, if any (for messages and RELOAD).
    pub source: Option<PathBuf>,
    /// The flags and env vars applied over the file (RELOAD applies them
    /// again).
    pub overrides: Overrides,
}

impl Config {
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.name == name)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Pool mode for a database (its own, else the global one).
    pub fn pool_mode(&self, db: &Database) -> PoolMode {
        db.pool_mode.unwrap_or(self.general.pool_mode)
    }

    /// Pool size for a (database, user): the user's, else the database's,
    /// else the global one.
    pub fn pool_size(&self, db: &Database, user: &User) -> usize {
        user.pool_size
            .or(db.pool_size)
            .unwrap_or(self.general.pool_size)
    }

    /// Connections to each server of `db` that all instances together may
    /// open (0: no limit).
    pub fn max_server_connections(&self, db: &Database) -> usize {
        db.max_server_connections
            .unwrap_or(self.general.max_server_connections)
    }

    /// Loads `path` (if any), applies `overrides`, validates.
    /// Reads the same file again with the same overrides.
    pub fn reread(&self) -> Result<Config, Problems> {
        Config::load(self.source.as_deref(), &self.overrides)
    }

    pub fn load(path: Option<&std::path::Path>, overrides: &Overrides) -> Result<Config, Problems> {
        let file = match path {
            Some(p) => FileConfig::read(p)?,
            None => FileConfig::default(),
        };
        validate::build(file, overrides, path)
    }
}

/// Values from flags or env vars, which beat the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub primary: Option<String>,
    pub replicas: Vec<String>,
    pub listen: Option<String>,
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<usize>,
    pub workers: Option<usize>,
    pub metrics_listen: Option<String>,
    pub max_replica_lag: Option<Duration>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_tls: Option<ClientTlsMode>,
    pub auth_user: Option<String>,
    pub http_listen: Option<String>,
    pub instance_id: Option<u8>,
    pub peers: Vec<String>,
    pub reuse_port: Option<bool>,
    pub otlp_endpoint: Option<String>,
}
