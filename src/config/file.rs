//! The TOML file as written by an operator. Unknown keys are errors; every
//! field is optional and defaults are applied in `validate`.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{AuthMethod, PoolMode, Problem, Problems};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub pgswitch: GeneralFile,
    #[serde(default)]
    pub databases: Vec<DatabaseFile>,
    #[serde(default)]
    pub users: Vec<UserFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralFile {
    pub listen: Option<String>,
    pub workers: Option<usize>,
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<usize>,
    pub min_idle: Option<usize>,
    pub max_client_conn: Option<usize>,
    pub max_message_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub query_wait_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub server_idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub server_lifetime: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub server_reset_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub client_idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle_transaction_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_timeout: Option<Duration>,
    pub read_routing: Option<bool>,
    pub consistency: Option<super::Consistency>,
    pub transaction_routing: Option<super::TransactionRouting>,
    pub primary_reads: Option<super::PrimaryReads>,
    pub load_balancing: Option<super::LoadBalancing>,
    pub max_replica_lag_bytes: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    pub max_replica_lag: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub read_your_writes_timeout: Option<Duration>,
    pub read_only_functions: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub health_check_interval: Option<Duration>,
    pub metrics_listen: Option<String>,
    pub admin_users: Option<Vec<String>>,
    pub monitor_user: Option<String>,
    pub query_stats_size: Option<usize>,
    pub max_prepared_statements: Option<usize>,
    pub max_client_prepared_statements: Option<usize>,
    pub session_state: Option<super::SessionState>,
    #[serde(default, with = "humantime_serde")]
    pub slow_query_threshold: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub log_repeat_interval: Option<Duration>,
    pub tls_cert_file: Option<std::path::PathBuf>,
    pub tls_key_file: Option<std::path::PathBuf>,
    pub client_tls: Option<super::ClientTlsMode>,
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub auth_cache_ttl: Option<Duration>,
    pub http_listen: Option<String>,
    pub http_max_request_bytes: Option<usize>,
    pub http_max_response_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub http_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub http_query_timeout: Option<Duration>,
    pub http_allow_plain: Option<bool>,
    pub http_cors_origin: Option<String>,
    pub instance_id: Option<u8>,
    pub peers: Option<Vec<String>>,
    pub reuse_port: Option<bool>,
    pub instances: Option<usize>,
    pub max_server_connections: Option<usize>,
    pub otlp_endpoint: Option<String>,
    pub otlp_sample_ratio: Option<f64>,
}

/// A replica: its URL, or `{ url = "...", weight = N }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ReplicaFile {
    Url(String),
    Weighted { url: String, weight: u32 },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    pub name: String,
    pub primary: String,
    #[serde(default)]
    pub replicas: Vec<ReplicaFile>,
    pub pool_size: Option<usize>,
    pub pool_mode: Option<PoolMode>,
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
    pub max_server_connections: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFile {
    pub name: String,
    pub password: Option<String>,
    pub auth: Option<AuthMethod>,
    pub server_user: Option<String>,
    pub server_password: Option<String>,
    pub pool_size: Option<usize>,
}

impl FileConfig {
    /// Reads and parses `path`; a parse error names the file, the key and the
    /// line.
    pub fn read(path: &Path) -> Result<FileConfig, Problems> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems::one(Problem::new(
                &file,
                "-",
                format!("cannot read the file: {e}"),
                "check the file's path and permissions",
            ))
        })?;
        toml::from_str(&text).map_err(|e| {
            let key = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_else(|| "-".into());
            // The TOML parser leaves some messages empty (found by the
            // config fuzz target): never report a problem without words.
            let message = match e.message().trim() {
                "" => "this is not valid TOML".to_owned(),
                m => m.to_owned(),
            };
            Problems::one(Problem::new(
                &file,
                &key,
                message,
                "see config/pgswitch.example.toml for every valid key and its type",
            ))
        })
    }
}
