//! pgswitch: a PostgreSQL connection pooler and read/write router that
//! speaks the wire protocol on both sides.
//!
//! # Layout
//! - [`cli`]: clap definitions (run, check-config, version).
//! - [`config`]: TOML model, validation with every problem listed, overrides.
//! - [`app`]: listener, shared state, maintenance, shutdown.
//! - [`protocol`]: sans-IO frame splitting, startup packets, message builders.
//! - [`auth`]: server-side SCRAM-SHA-256 and md5 for clients.
//! - [`session`]: one task per client: login, the forwarding state machine,
//!   cancel keys.
//! - [`router`]: pure SQL -> route classification.
//! - [`pool`]: pools per (database, user) and server, backend connections,
//!   parameter sync, the release door, replica health and choice.
//! - [`net`]: plain or TLS streams, TLS settings, SSLRequest towards servers.
//! - [`metrics`]: the Prometheus registry and its typed handles.
//! - [`ops`]: `/metrics`, `/healthz` and `/readyz` over HTTP.
//! - [`admin`]: the admin console (database `pgswitch`).
//! - [`serverless`]: SQL over HTTP and the wire protocol over WebSocket,
//!   as Neon's driver speaks them (`http_listen`).
//! - [`reload`]: SIGHUP / RELOAD: re-read, validate, swap, resize.
//! - [`sqltext`]: a statement's text, checked and scanned once for the
//!   words the session-state rules and the prepared-statement rewriter need.
//! - [`stats`]: per-query statistics by fingerprint.
//! - [`incidents`]: server problems logged at start, in summaries, at end.
//! - [`import`]: `import-pgbouncer`, a PgBouncer config as pgswitch's TOML.
//!
//! The life of a query is told in `docs/architecture.md`.
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod import;
pub mod incidents;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod pool;
pub mod prepared;
pub mod protocol;
pub mod reload;
pub mod router;
pub mod serverless;
pub mod session;
pub mod shared;
pub mod sqltext;
pub mod stats;
