//! The command line. Every flag also reads an environment variable; flags
//! beat env vars, which beat the config file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{ClientTlsMode, Overrides, PoolMode};

#[derive(Debug, Parser)]
#[command(
    name = "pgswitch",
    version,
    about = "PostgreSQL connection pooler and read/write router"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file and list every problem; exits non-zero if any.
    CheckConfig { file: PathBuf },
    /// Print the version.
    Version,
    /// Print a pgswitch.toml equivalent to a PgBouncer configuration, with
    /// a comment on every setting that has no equivalent.
    ImportPgbouncer {
        /// pgbouncer.ini
        ini: PathBuf,
        /// userlist.txt [default: the ini's auth_file, if it can be read]
        userlist: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Primary server URL: postgres://USER:PASS@HOST:PORT/DB. Clients log in
    /// with the same user, password and database name.
    #[arg(long, env = "PGSWITCH_PRIMARY")]
    pub primary: Option<String>,
    /// Replica server URL (repeatable; env: comma-separated).
    #[arg(long = "replica", env = "PGSWITCH_REPLICAS", value_delimiter = ',')]
    pub replicas: Vec<String>,
    /// Address to accept clients on [default: 127.0.0.1:6432].
    #[arg(long, env = "PGSWITCH_LISTEN")]
    pub listen: Option<String>,
    /// How long a client holds a server connection [default: session].
    #[arg(long, env = "PGSWITCH_POOL_MODE", value_enum)]
    pub pool_mode: Option<PoolMode>,
    /// Server connections per (database, user) pool [default: 20].
    #[arg(long, env = "PGSWITCH_POOL_SIZE")]
    pub pool_size: Option<usize>,
    /// Worker threads [default: 0 = auto: 1 up to 4 CPUs, else half the CPUs].
    #[arg(long, env = "PGSWITCH_WORKERS")]
    pub workers: Option<usize>,
    /// Address for /metrics, /healthz and /readyz over HTTP, e.g.
    /// 127.0.0.1:9930 [default: off].
    #[arg(long, env = "PGSWITCH_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Replicas further behind the primary than this are out of rotation
    /// ("500ms", "2s"; "0s" turns the limit off) [default: 1s].
    #[arg(long, env = "PGSWITCH_MAX_REPLICA_LAG", value_parser = humantime::parse_duration)]
    pub max_replica_lag: Option<std::time::Duration>,
    /// Certificate (PEM, with its chain) presented to clients that ask for
    /// TLS [default: none: TLS off].
    #[arg(long, env = "PGSWITCH_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM).
    #[arg(long, env = "PGSWITCH_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Clients and TLS: disable, allow or require [default: allow with a
    /// certificate, else disable].
    #[arg(long, env = "PGSWITCH_CLIENT_TLS", value_enum)]
    pub client_tls: Option<ClientTlsMode>,
    /// Look up users the config does not list on the primary, logging in
    /// as this role with the --primary URL's password (auth_user).
    #[arg(long, env = "PGSWITCH_AUTH_USER")]
    pub auth_user: Option<String>,
    /// Address for the serverless front: SQL over HTTP (POST /sql) and
    /// Postgres over WebSocket (GET /v2), as @neondatabase/serverless
    /// speaks them, e.g. 127.0.0.1:8432 [default: off].
    #[arg(long, env = "PGSWITCH_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// This instance's id among its peers, 0-127, carried in the cancel
    /// keys it issues [default: derived from the host name].
    #[arg(long, env = "PGSWITCH_INSTANCE_ID")]
    pub instance_id: Option<u8>,
    /// Other pgswitch instances (host:port, repeatable; env:
    /// comma-separated) that a cancel request for a client this instance
    /// does not have is passed to. A name may resolve to several addresses
    /// (a headless Service).
    #[arg(long = "peer", env = "PGSWITCH_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Listen with SO_REUSEPORT: a new pgswitch can start on the same port
    /// while this one drains (zero-downtime restart).
    #[arg(long, env = "PGSWITCH_REUSE_PORT")]
    pub reuse_port: Option<bool>,
    /// Export one span per transaction to this OTLP/HTTP collector, e.g.
    /// http://127.0.0.1:4318 [default: off].
    #[arg(long, env = "PGSWITCH_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// TOML config file (see config/pgswitch.example.toml).
    #[arg(long, env = "PGSWITCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "PGSWITCH_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

impl RunArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            primary: self.primary.clone(),
            replicas: self
                .replicas
                .iter()
                .filter(|r| !r.is_empty())
                .cloned()
                .collect(),
            listen: self.listen.clone(),
            pool_mode: self.pool_mode,
            pool_size: self.pool_size,
            workers: self.workers,
            metrics_listen: self.metrics_listen.clone(),
            max_replica_lag: self.max_replica_lag,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            client_tls: self.client_tls,
            auth_user: self.auth_user.clone(),
            http_listen: self.http_listen.clone(),
            instance_id: self.instance_id,
            reuse_port: self.reuse_port,
            otlp_endpoint: self.otlp_endpoint.clone(),
            peers: self
                .peers
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect(),
        }
    }
}
