//! Prometheus metrics: one registry per running pgswitch, with typed
//! handles registered once at start. Names follow Prometheus conventions:
//! `pgswitch_` prefix, base units, `_total` for counters.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::router::{Decision, Reason, Route};

/// Every metric pgswitch keeps, and the registry that exports them.
pub struct Metrics {
    pub registry: Registry,
    /// Router verdicts at the start of a transaction, by route and reason.
    pub route_decisions: IntCounterVec,
    /// `route_decisions`' counters, looked up once each (by route, then
    /// `Reason::index`): a label lookup hashes and locks on every call.
    decision_counters: [[std::sync::OnceLock<IntCounter>; Reason::LABELS.len()]; 3],
    /// `read_fallbacks`' counters, by `Fallback` (as above).
    fallback_counters: [std::sync::OnceLock<IntCounter>; 3],
    /// Reads the router sent to a replica that the primary served, by cause.
    pub read_fallbacks: IntCounterVec,
    /// Requests a replica failed before answering (refused as a write, or
    /// went away), re-run on the primary, by cause.
    pub replica_reruns: IntCounterVec,
    /// Requests refused before reaching a server, by SQLSTATE.
    pub requests_refused: IntCounterVec,
    /// Requests to the serverless front, by endpoint and HTTP status.
    pub http_requests: IntCounterVec,
    /// Client connections by state, set at scrape time (`ops`), except
    /// `waiting`, kept live by the sessions.
    pub clients: IntGaugeVec,
    pub clients_waiting: IntGauge,
    /// Logins refused for a wrong password or unknown user.
    pub auth_failures: IntCounter,
    /// Clients pinned to a server connection by session state (LISTEN,
    /// temp tables, session advisory locks, WITH HOLD cursors).
    pub pinned_clients: IntGauge,
    /// Named prepared statements tracked for clients, and their memory.
    pub prepared_statements: IntGauge,
    pub prepared_bytes: IntGauge,
    /// Parses sent to servers for tracked statements; client Parses a
    /// server connection already had; statements closed by the LRU.
    pub prepared_parses: IntCounter,
    pub prepared_reused: IntCounter,
    pub prepared_evictions: IntCounter,
    /// Requests re-run after a statement's plan went stale (0A000).
    pub prepared_replans: IntCounter,
    /// Server connections by pool, server and state (scrape time).
    pub server_connections: IntGaugeVec,
    pub pool_size: IntGaugeVec,
    /// Replica health (scrape time).
    pub replica_in_rotation: IntGaugeVec,
    pub replica_lag_bytes: IntGaugeVec,
    pub replica_lag_seconds: prometheus::GaugeVec,
    pub primary_in_recovery: IntGaugeVec,
    transactions: IntCounterVec,
    transaction_seconds: HistogramVec,
    requests: IntCounterVec,
    server_errors: IntCounterVec,
    wait_seconds: HistogramVec,
    client_bytes_in: IntCounterVec,
    client_bytes_out: IntCounterVec,
}

/// The handles of one pool, resolved once so that the forwarding path pays
/// an atomic add, not a label lookup.
#[derive(Clone)]
pub struct PoolMetrics {
    pub transactions: IntCounter,
    pub transaction_seconds: Histogram,
    pub requests: IntCounter,
    pub wait_seconds: Histogram,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    server_errors: IntCounterVec,
    pool: String,
}

impl PoolMetrics {
    /// An ErrorResponse from a server, by SQLSTATE class (`23`, `40`, ...).
    pub fn server_error(&self, sqlstate: &str) {
        let class = sqlstate.get(..2).unwrap_or("??");
        self.server_errors
            .with_label_values(&[self.pool.as_str(), class])
            .inc();
    }
}

/// Why a read that could run on a replica ran on the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// No replica in rotation.
    NoReplica,
    /// Replicas in rotation, none caught up with the client's last write.
    Behind,
    /// The chosen replica could not be reached, nor any other.
    Unavailable,
}

impl Fallback {
    fn label(self) -> &'static str {
        match self {
            Fallback::NoReplica => "no_replica",
            Fallback::Behind => "read_your_writes",
            Fallback::Unavailable => "replica_unavailable",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let route_decisions = counter_vec(
            r,
            "pgswitch_route_decisions_total",
            "Router verdicts for the first statement of a transaction, by route (primary, replica, any) and reason.",
            &["route", "reason"],
        );
        let read_fallbacks = counter_vec(
            r,
            "pgswitch_read_fallbacks_total",
            "Reads routed to a replica that the primary served instead, by cause.",
            &["cause"],
        );
        let requests_refused = counter_vec(
            r,
            "pgswitch_requests_refused_total",
            "Requests answered with an error before reaching any server, by SQLSTATE.",
            &["sqlstate"],
        );
        let http_requests = counter_vec(
            r,
            "pgswitch_http_requests_total",
            "Requests to the serverless front (http_listen), by endpoint (sql, v2, options, other) and HTTP status (a WebSocket that opened counts 101).",
            &["endpoint", "status"],
        );
        let replica_reruns = counter_vec(
            r,
            "pgswitch_replica_reruns_total",
            "Requests a replica failed before answering and pgswitch re-ran on the primary, by cause (read_only: SQLSTATE 25006; replica_lost: the replica went away).",
            &["cause"],
        );
        let clients = gauge_vec(
            r,
            "pgswitch_client_connections",
            "Client connections by state: active (holding a server connection), waiting (for one), idle.",
            &["state"],
        );
        let clients_waiting = clients.with_label_values(&["waiting"]);
        let auth_failures = register(
            r,
            IntCounter::new(
                "pgswitch_auth_failures_total",
                "Client logins refused for a wrong password or an unknown user.",
            ),
        );
        let pinned_clients = register(
            r,
            IntGauge::new(
                "pgswitch_pinned_clients",
                "Clients in transaction or statement mode pinned to one server connection by session state (LISTEN, temporary tables, session advisory locks, WITH HOLD cursors).",
            ),
        );
        let prepared_statements = register(
            r,
            IntGauge::new(
                "pgswitch_prepared_statements",
                "Named prepared statements pgswitch tracks for connected clients (transaction and statement modes).",
            ),
        );
        let prepared_bytes = register(
            r,
            IntGauge::new(
                "pgswitch_prepared_statement_bytes",
                "Memory held by the named prepared statements tracked for connected clients.",
            ),
        );
        let prepared_parses = register(
            r,
            IntCounter::new(
                "pgswitch_prepared_parses_total",
                "Parse messages sent to servers for tracked statements (first use on a server connection).",
            ),
        );
        let prepared_reused = register(
            r,
            IntCounter::new(
                "pgswitch_prepared_reused_total",
                "Client Parse messages answered by pgswitch because the server connection already had the statement.",
            ),
        );
        let prepared_evictions = register(
            r,
            IntCounter::new(
                "pgswitch_prepared_evictions_total",
                "Statements closed on server connections over max_prepared_statements (least recently used first).",
            ),
        );
        let prepared_replans = register(
            r,
            IntCounter::new(
                "pgswitch_prepared_replans_total",
                "Requests run again, with their statements parsed afresh, after the server said a cached plan no longer fits the schema (0A000).",
            ),
        );
        let server_connections = gauge_vec(
            r,
            "pgswitch_server_connections",
            "Server connections by pool, server (primary or replica address) and state (active: lent to a client; idle: in the pool).",
            &["pool", "server", "state"],
        );
        let pool_size = gauge_vec(
            r,
            "pgswitch_pool_max_connections",
            "The most server connections a pool may open per server (pool_size).",
            &["pool"],
        );
        let replica_in_rotation = gauge_vec(
            r,
            "pgswitch_replica_in_rotation",
            "1 while the replica serves reads (reachable, in recovery, within the lag limits), else 0.",
            &["pool", "replica"],
        );
        let replica_lag_bytes = gauge_vec(
            r,
            "pgswitch_replica_lag_bytes",
            "Bytes of WAL the replica has not replayed, at the last health check.",
            &["pool", "replica"],
        );
        let replica_lag_seconds = register(
            r,
            prometheus::GaugeVec::new(
                Opts::new(
                    "pgswitch_replica_lag_seconds",
                    "Age of the oldest WAL the replica has not replayed, at the last health check.",
                ),
                &["pool", "replica"],
            ),
        );
        let primary_in_recovery = gauge_vec(
            r,
            "pgswitch_primary_in_recovery",
            "1 while the configured primary reports it is in recovery (writes are refused).",
            &["pool"],
        );
        let transactions = counter_vec(
            r,
            "pgswitch_transactions_total",
            "Transactions (or lone statements) completed on a server connection, by pool.",
            &["pool"],
        );
        let transaction_seconds = histogram_vec(
            r,
            "pgswitch_transaction_duration_seconds",
            "Time from a transaction's first client message on its server connection (after any wait for one) to its final ReadyForQuery, by pool.",
        );
        let requests = counter_vec(
            r,
            "pgswitch_queries_total",
            "Client requests forwarded (simple Query, extended-protocol Sync, FunctionCall), by pool.",
            &["pool"],
        );
        let server_errors = counter_vec(
            r,
            "pgswitch_server_errors_total",
            "ErrorResponses from servers, by pool and SQLSTATE class (first two characters).",
            &["pool", "class"],
        );
        let wait_seconds = histogram_vec(
            r,
            "pgswitch_server_wait_seconds",
            "Time a request waited for a server connection (including opening one), by pool.",
        );
        let client_bytes_in = counter_vec(
            r,
            "pgswitch_client_received_bytes_total",
            "Bytes received from clients after login, by pool.",
            &["pool"],
        );
        let client_bytes_out = counter_vec(
            r,
            "pgswitch_client_sent_bytes_total",
            "Bytes of server replies sent to clients, by pool.",
            &["pool"],
        );
        Metrics {
            registry,
            route_decisions,
            decision_counters: Default::default(),
            fallback_counters: Default::default(),
            read_fallbacks,
            replica_reruns,
            requests_refused,
            http_requests,
            clients,
            clients_waiting,
            auth_failures,
            pinned_clients,
            prepared_statements,
            prepared_bytes,
            prepared_parses,
            prepared_reused,
            prepared_evictions,
            prepared_replans,
            server_connections,
            pool_size,
            replica_in_rotation,
            replica_lag_bytes,
            replica_lag_seconds,
            primary_in_recovery,
            transactions,
            transaction_seconds,
            requests,
            server_errors,
            wait_seconds,
            client_bytes_in,
            client_bytes_out,
        }
    }

    /// The handles of pool `name` (`database/user`).
    pub fn pool(&self, name: &str) -> PoolMetrics {
        PoolMetrics {
            transactions: self.transactions.with_label_values(&[name]),
            transaction_seconds: self.transaction_seconds.with_label_values(&[name]),
            requests: self.requests.with_label_values(&[name]),
            wait_seconds: self.wait_seconds.with_label_values(&[name]),
            bytes_in: self.client_bytes_in.with_label_values(&[name]),
            bytes_out: self.client_bytes_out.with_label_values(&[name]),
            server_errors: self.server_errors.clone(),
            pool: name.to_owned(),
        }
    }

    pub fn decision(&self, d: &Decision) {
        let (i, route) = match d.route {
            Route::Primary => (0, "primary"),
            Route::Replica => (1, "replica"),
            Route::Any => (2, "any"),
        };
        self.decision_counters[i][d.reason.index()]
            .get_or_init(|| {
                self.route_decisions
                    .with_label_values(&[route, d.reason.label()])
            })
            .inc();
    }

    pub fn fallback(&self, cause: Fallback) {
        self.fallback_counters[cause as usize]
            .get_or_init(|| self.read_fallbacks.with_label_values(&[cause.label()]))
            .inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|e| format!("# metrics encoding failed: {e}\n"))
    }
}

/// Definitions are constants; a failure here is a programming error caught
/// by the first test that starts pgswitch.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    made: prometheus::Result<C>,
) -> C {
    let c = made.unwrap_or_else(|e| panic!("metric definition: {e}"));
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric registration: {e}"));
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

/// Latency buckets from 100 µs to 30 s.
fn histogram_vec(registry: &Registry, name: &str, help: &str) -> HistogramVec {
    let buckets = vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0, 30.0,
    ];
    register(
        registry,
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["pool"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Reason;

    #[test]
    fn counts_show_up_in_the_exposition() {
        let m = Metrics::new();
        m.decision(&Decision::replica(Reason::Read));
        m.decision(&Decision::primary(Reason::Unparsed));
        m.fallback(Fallback::Behind);
        m.replica_reruns.with_label_values(&["read_only"]).inc();
        let pool = m.pool("app/app");
        pool.transactions.inc();
        pool.transaction_seconds.observe(0.002);
        pool.server_error("23505");
        let text = m.render();
        for line in [
            "pgswitch_route_decisions_total{reason=\"read\",route=\"replica\"} 1",
            "pgswitch_route_decisions_total{reason=\"unparsed\",route=\"primary\"} 1",
            "pgswitch_read_fallbacks_total{cause=\"read_your_writes\"} 1",
            "pgswitch_replica_reruns_total{cause=\"read_only\"} 1",
            "pgswitch_transactions_total{pool=\"app/app\"} 1",
            "pgswitch_transaction_duration_seconds_bucket{pool=\"app/app\",le=\"0.0025\"} 1",
            "pgswitch_server_errors_total{class=\"23\",pool=\"app/app\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
    }
}
