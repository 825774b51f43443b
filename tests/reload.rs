//! RELOAD from the admin console: pool sizes and servers change while
//! clients stay connected; an invalid file changes nothing; settings that
//! need a restart say so. (SIGHUP is tested on the binary in `binary.rs`.)

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use tokio_postgres::{AsyncMessage, SimpleQueryMessage};

/// A config file of its own per test, rewritten between reloads.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pgswitch-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        ConfigFile(dir.join(format!("{tag}.toml")))
    }

    fn write(&self, pool_size: usize, replicas: &[String], extra: &str) {
        let settings = format!(
            "pool_mode = \"transaction\"\npool_size = {pool_size}\nquery_wait_timeout = \"2s\"\n\
             health_check_interval = \"50ms\"\nconsistency = \"eventual\"\nadmin_users = [\"app\"]\n{extra}"
        );
        std::fs::write(&self.0, cluster_toml(&settings, replicas)).unwrap();
    }

    fn load(&self) -> pgswitch::config::Config {
        pgswitch::config::Config::load(Some(&self.0), &Default::default()).unwrap()
    }
}

/// Runs RELOAD; returns the notices it sent, or the error.
async fn reload(url: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    let (client, mut conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(Ok(m)) = stream.next().await {
            if let AsyncMessage::Notice(n) = m {
                let _ = tx.send(n.message().to_owned());
            }
        }
    });
    let result = client.simple_query("RELOAD").await;
    drop(client);
    let _ = driver.await;
    let mut notes = Vec::new();
    while let Ok(n) = rx.try_recv() {
        notes.push(n);
    }
    result.map(|_| notes)
}

async fn port(c: &tokio_postgres::Client) -> String {
    first_row(c, "SELECT inet_server_port()").await[0].clone()
}

async fn pool_size(admin: &tokio_postgres::Client) -> String {
    admin
        .simple_query("SHOW POOLS")
        .await
        .unwrap()
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) if r.get("role") == Some("primary") => {
                r.get("pool_size").map(str::to_owned)
            }
            _ => None,
        })
        .unwrap()
}

#[tokio::test]
async fn reload_resizes_pools_with_clients_connected() {
    let file = ConfigFile::new("resize");
    file.write(2, &[], "");
    let proxy = Proxy::start(file.load()).await;
    let admin_url = proxy.url_as("app", "app-secret", "pgswitch");
    let admin = connect(&admin_url).await.unwrap();
    let (keeper, keeper_closed) = connect_watched(&proxy.url()).await;
    keeper.simple_query("SELECT 1").await.unwrap();
    assert_eq!(pool_size(&admin).await, "2");

    file.write(5, &[], "");
    let notes = reload(&admin_url).await.unwrap();
    assert!(
        notes.iter().any(|n| n.contains("resized to 5")),
        "{notes:?}"
    );
    assert_eq!(pool_size(&admin).await, "5");
    // Five transactions at once now each get a server (with 2 the third
    // would wait and fail after query_wait_timeout).
    let mut open = Vec::new();
    for _ in 0..5 {
        let c = proxy.client().await;
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        open.push(c);
    }
    let pids: std::collections::BTreeSet<i32> =
        futures_util::future::join_all(open.iter().map(backend_pid))
            .await
            .into_iter()
            .collect();
    assert_eq!(pids.len(), 5);
    drop(open);
    // The client connected before the reload was never dropped.
    keeper.simple_query("SELECT 1").await.unwrap();
    drop(keeper);
    let end = tokio::time::timeout(Duration::from_secs(10), keeper_closed)
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none(), "{end:?}");
    proxy.stop().await;
}

/// A primary pool's (active, idle) server connections, from SHOW POOLS.
async fn pool_counts(admin: &tokio_postgres::Client) -> (usize, usize) {
    let rows = admin.simple_query("SHOW POOLS").await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) if r.get("role") == Some("primary") => {
                let n = |c: &str| r.get(c).unwrap().parse::<usize>().unwrap();
                Some((n("active"), n("idle")))
            }
            _ => None,
        })
        .unwrap()
}

#[tokio::test]
async fn reload_shrinks_a_pool_whose_connections_are_lent_out() {
    let file = ConfigFile::new("shrink");
    file.write(4, &[], "");
    let proxy = Proxy::start(file.load()).await;
    let admin_url = proxy.url_as("app", "app-secret", "pgswitch");
    let admin = connect(&admin_url).await.unwrap();
    // Four transactions hold the pool's four connections.
    let mut open = Vec::new();
    for _ in 0..4 {
        let c = proxy.client().await;
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        open.push(c);
    }
    assert_eq!(pool_counts(&admin).await, (4, 0));

    file.write(2, &[], "");
    let notes = reload(&admin_url).await.unwrap();
    assert!(
        notes.iter().any(|n| n.contains("resized to 2")),
        "{notes:?}"
    );
    // The lent connections finish their transactions undisturbed; the two
    // beyond the new size are closed as they come back.
    for c in &open {
        c.batch_execute("COMMIT").await.unwrap();
    }
    let shrunk = eventually(Duration::from_secs(5), || async {
        pool_counts(&admin).await == (0, 2)
    })
    .await;
    assert!(shrunk, "{:?}", pool_counts(&admin).await);
    // Two places now: a third transaction waits and times out.
    for c in &open[..2] {
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
    }
    let e = open[2].batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "53300", "{e}");
    for c in &open[..2] {
        c.batch_execute("COMMIT").await.unwrap();
    }
    // (A place comes back just after the COMMIT's reply.)
    let served = eventually(Duration::from_secs(5), || async {
        open[2].batch_execute("SELECT 1").await.is_ok()
    })
    .await;
    assert!(served);
    drop(open);
    proxy.stop().await;
}

#[tokio::test]
async fn invalid_reload_keeps_the_running_config() {
    let file = ConfigFile::new("invalid");
    file.write(3, &[], "");
    let proxy = Proxy::start(file.load()).await;
    let admin_url = proxy.url_as("app", "app-secret", "pgswitch");
    let admin = connect(&admin_url).await.unwrap();
    let c = proxy.client().await;
    std::fs::write(
        &file.0,
        "[pgswitch]\npool_size = 0\n[[databases]]\nname = \"app\"\nprimary = \"mysql://x\"\n",
    )
    .unwrap();
    let e = reload(&admin_url).await.unwrap_err();
    assert_eq!(sqlstate(&e), "F0000", "{e}");
    let msg = message(&e);
    assert!(
        msg.contains("pgswitch.pool_size") && msg.contains("running one is kept"),
        "{msg}"
    );
    assert_eq!(pool_size(&admin).await, "3");
    c.simple_query("SELECT 1").await.unwrap();
    // A restart-only setting is reported, not applied.
    file.write(3, &[], "workers = 3");
    let notes = reload(&admin_url).await.unwrap();
    assert!(
        notes.iter().any(|n| n.contains("needs a restart")),
        "{notes:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn reload_adds_replicas_and_connected_clients_use_them() {
    let file = ConfigFile::new("replicas");
    file.write(4, &[], "");
    let proxy = Proxy::start(file.load()).await;
    let admin_url = proxy.url_as("app", "app-secret", "pgswitch");
    let c = proxy.client().await;
    for _ in 0..5 {
        assert_eq!(
            port(&c).await,
            primary_port().to_string(),
            "no replicas yet"
        );
    }
    file.write(4, &replica_urls(), "");
    let notes = reload(&admin_url).await.unwrap();
    assert!(notes.iter().any(|n| n.contains("rebuilt")), "{notes:?}");
    // The same client connection now reads from the replicas.
    let on_replica = eventually(Duration::from_secs(15), || async {
        port(&c).await != primary_port().to_string()
    })
    .await;
    assert!(
        on_replica,
        "the connected client should move to the new pool"
    );
    proxy.stop().await;
}
