//! Operating pgswitch from the outside.
//!
//! - [`http`]: `/metrics` (Prometheus), `/healthz` and `/readyz` on
//!   `metrics_listen`.
//! - [`gauges`]: gauges read from pools and the replica monitor at scrape
//!   time (counters are kept live by the sessions).
//! - [`readiness`]: whether pgswitch should receive traffic.

pub mod gauges;
pub mod http;
pub mod readiness;
pub mod traces;
