//! Full-duplex forwarding: a client that pipelines far more than socket
//! buffers hold, reading and writing at once (as libpq's pipeline mode,
//! psycopg's `pipeline()`, asyncpg's `executemany` and postgres.js do),
//! must never deadlock with a server that stops reading while its own
//! output is full. 200 MB of requests, each answered with 4 KB, over one
//! connection, in session and transaction modes.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{stream, StreamExt, TryStreamExt};
use pgswitch::config::PoolMode;
use tokio_postgres::types::Type;

/// Bytes of each request's parameter, and of its result.
const SIZE: usize = 4096;
/// Requests in all: SIZE * REQUESTS = 200 MB each way.
const REQUESTS: usize = 200 * 1024 * 1024 / SIZE;
/// Requests in flight at once: 16 MB each way, more than loopback socket
/// buffers hold, so both sides must read while they write.
const IN_FLIGHT: usize = 4096;

async fn pipeline(mode: PoolMode) {
    let proxy = Proxy::mode(mode, 2).await;
    let c = proxy.client().await;
    run_pipeline(&c, &format!("{mode:?}")).await;
    proxy.stop().await;
}

async fn run_pipeline(c: &tokio_postgres::Client, what: &str) {
    let payload = "x".repeat(SIZE);
    let run = stream::iter(0..REQUESTS)
        .map(|i| {
            let payload = &payload;
            async move {
                let rows = c
                    .query_typed("SELECT $1::text", &[(payload, Type::TEXT)])
                    .await?;
                let got: &str = rows[0].get(0);
                assert_eq!(got.len(), SIZE, "request {i}");
                Ok::<_, tokio_postgres::Error>(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_fold(0usize, |n, ()| async move { Ok(n + 1) });
    // A deadlock shows as no progress at all; the bound is far above the
    // time the run takes.
    let done = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("{what}: the pipeline stalled (deadlock)"))
        .unwrap();
    assert_eq!(done, REQUESTS);
    assert_eq!(first_row(c, "SELECT 1").await, ["1"]);
}

/// The same pipeline straight to Postgres: what pgswitch must match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_pipeline_flows_on_a_direct_connection() {
    let c = connect(&primary_url()).await.unwrap();
    run_pipeline(&c, "direct").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_pipeline_flows_in_session_mode() {
    pipeline(PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_pipeline_flows_in_transaction_mode() {
    pipeline(PoolMode::Transaction).await;
}
