//! Many clients on one process: 5,000 idle clients plus a storm of
//! connect/query/disconnect cycles, all served by a small pool.

mod common;

use common::raw::{self, read_until};
use common::*;
use pgswitch::config::PoolMode;
use tokio::io::AsyncWriteExt;

const IDLE: usize = 5_000;
const STORM: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_idle_clients_and_a_connection_storm() {
    // Both ends of every connection live in this process.
    let limit = pgswitch::app::raise_nofile_limit().unwrap();
    assert!(
        limit as usize > 2 * IDLE + 500,
        "open-file hard limit {limit} is too low for this test"
    );
    let proxy = Proxy::start(trust_config(
        PoolMode::Transaction,
        4,
        "max_client_conn = 6000",
    ))
    .await;
    let mut idle = Vec::with_capacity(IDLE);
    for chunk in 0..IDLE / 250 {
        let logins: Vec<_> = (0..250)
            .map(|_| raw::login(proxy.addr, "postgres", "app"))
            .collect();
        idle.extend(futures_util::future::join_all(logins).await);
        assert_eq!(idle.len(), (chunk + 1) * 250);
    }
    // The storm: short-lived clients, 50 at a time, each one query.
    let mut done = 0;
    for _ in 0..STORM / 50 {
        let wave: Vec<_> = (0..50)
            .map(|i| async move {
                let mut s = raw::login(proxy.addr, "postgres", "app").await;
                s.write_all(&raw::query(&format!("SELECT {i}")))
                    .await
                    .unwrap();
                let msgs = read_until(&mut s, b'Z').await;
                assert!(
                    msgs.iter().any(|m| m.0 == b'D'),
                    "no row: {:?}",
                    raw::error_code(&msgs)
                );
                s.write_all(&[b'X', 0, 0, 0, 4]).await.unwrap();
            })
            .collect();
        futures_util::future::join_all(wave).await;
        done += 50;
    }
    assert_eq!(done, STORM);
    // Every idle client is still there and answers.
    for (i, s) in idle.iter_mut().enumerate().step_by(97) {
        s.write_all(&raw::query(&format!("SELECT {i}")))
            .await
            .unwrap();
        let msgs = read_until(s, b'Z').await;
        assert!(msgs.iter().any(|m| m.0 == b'D'), "idle client {i} lost");
    }
    drop(idle);
    proxy.stop().await;
}
