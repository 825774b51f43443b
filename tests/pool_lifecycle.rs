//! Server connections over time: min_idle warm-up before any client,
//! server_idle_timeout closing idle ones, and pools closed at shutdown.
//! Uses the cluster's md5 user, whose backends no other test in this binary
//! creates, so they can be counted on the server.

mod common;

use std::time::Duration;

use common::*;

fn md5_config(extra: &str) -> pgswitch::config::Config {
    let url = md5_url();
    config_from_toml(&format!(
        r#"
        [pgswitch]
        listen = "127.0.0.1:0"
        pool_mode = "transaction"
        pool_size = 3
        {extra}
        [[databases]]
        name = "app"
        primary = "{url}"
        [[users]]
        name = "app_md5"
        password = "md5-secret"
        auth = "md5"
        "#
    ))
}

async fn md5_backends() -> i64 {
    let su = superuser().await;
    su.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_md5'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

async fn backends_become(n: i64) -> bool {
    eventually(Duration::from_secs(15), || async {
        md5_backends().await == n
    })
    .await
}

#[tokio::test]
async fn warm_up_idle_timeout_and_close() {
    assert!(backends_become(0).await, "leftover app_md5 backends");
    // min_idle: connections open before any client arrives.
    let proxy = Proxy::start(md5_config("min_idle = 2")).await;
    assert!(
        backends_become(2).await,
        "min_idle = 2 did not warm the pool"
    );
    // Shutdown closes them.
    proxy.stop().await;
    assert!(
        backends_become(0).await,
        "pool connections outlived shutdown"
    );

    // server_idle_timeout: a used connection is closed once idle that long.
    let proxy = Proxy::start(md5_config("server_idle_timeout = \"1s\"")).await;
    let c = connect(&proxy.url_as("app_md5", "md5-secret", "app"))
        .await
        .unwrap();
    c.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(md5_backends().await, 1);
    assert!(
        backends_become(0).await,
        "idle server connection was not closed"
    );
    // ...and the client is served again by a new one.
    c.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(md5_backends().await, 1);
    drop(c);
    proxy.stop().await;
}
