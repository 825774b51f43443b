//! Prometheus metrics: one registry per running pgswitch, with typed
//! handles registered once at start. Names follow Prometheus conventions:
//! `pgswitch_` prefix, base units, `_total` for counters.

use prometheus::{IntCounterVec, Opts, Registry};

use crate::router::{Decision, Route};

/// Every metric pgswitch keeps, and the registry that exports them.
pub struct Metrics {
    pub registry: Registry,
    /// Router verdicts at the start of a transaction, by route and reason.
    pub route_decisions: IntCounterVec,
    /// Reads the router sent to a replica that the primary served, by cause.
    pub read_fallbacks: IntCounterVec,
    /// Requests a replica failed before answering (refused as a write, or
    /// went away), re-run on the primary, by cause.
    pub replica_reruns: IntCounterVec,
    /// Requests refused before reaching a server, by cause.
    pub requests_refused: IntCounterVec,
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
        let route_decisions = counter_vec(
            &registry,
            "pgswitch_route_decisions_total",
            "Router verdicts for the first statement of a transaction, by route (primary, replica, any) and reason.",
            &["route", "reason"],
        );
        let read_fallbacks = counter_vec(
            &registry,
            "pgswitch_read_fallbacks_total",
            "Reads routed to a replica that the primary served instead, by cause.",
            &["cause"],
        );
        let requests_refused = counter_vec(
            &registry,
            "pgswitch_requests_refused_total",
            "Requests answered with an error before reaching any server, by SQLSTATE.",
            &["sqlstate"],
        );
        let replica_reruns = counter_vec(
            &registry,
            "pgswitch_replica_reruns_total",
            "Requests a replica failed before answering and pgswitch re-ran on the primary, by cause (read_only: SQLSTATE 25006; replica_lost: the replica went away).",
            &["cause"],
        );
        Metrics {
            registry,
            route_decisions,
            read_fallbacks,
            replica_reruns,
            requests_refused,
        }
    }

    pub fn decision(&self, d: &Decision) {
        let route = match d.route {
            Route::Primary => "primary",
            Route::Replica => "replica",
            Route::Any => "any",
        };
        self.route_decisions
            .with_label_values(&[route, d.reason.label()])
            .inc();
    }

    pub fn fallback(&self, cause: Fallback) {
        self.read_fallbacks
            .with_label_values(&[cause.label()])
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
fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    register(registry, Box::new(c.clone()));
    c
}

fn register(registry: &Registry, c: Box<dyn prometheus::core::Collector>) {
    registry
        .register(c)
        .unwrap_or_else(|e| panic!("metric registration: {e}"));
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
        let text = m.render();
        for line in [
            "pgswitch_route_decisions_total{reason=\"read\",route=\"replica\"} 1",
            "pgswitch_route_decisions_total{reason=\"unparsed\",route=\"primary\"} 1",
            "pgswitch_read_fallbacks_total{cause=\"read_your_writes\"} 1",
            "pgswitch_replica_reruns_total{cause=\"read_only\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
    }
}
