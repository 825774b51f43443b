//! Health monitoring that does not grow with the number of users: with 30
//! users configured for one database with two replicas, pgswitch keeps one
//! monitor connection per server (and one catalog reader on the primary),
//! not one per (database, user) pool. Its own test binary, so that no other
//! pgswitch in the process has monitors of its own.

mod common;

use common::*;

async fn connections(url: &str, application: &str) -> i64 {
    let su = connect(url).await.unwrap();
    su.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        &[&application],
    )
    .await
    .unwrap()
    .get(0)
}

/// The superuser on the server behind `url` (same host and port).
fn superuser_on(url: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{}/postgres", port_of(url))
}

#[tokio::test]
async fn one_monitor_per_server_whatever_the_number_of_users() {
    let mut toml = cluster_toml(
        "pool_mode = \"transaction\"\nhealth_check_interval = \"50ms\"",
        &replica_urls(),
    );
    for i in 0..30 {
        toml.push_str(&format!(
            "[[users]]\nname = \"tenant{i}\"\npassword = \"t{i}\"\nserver_user = \"app\"\nserver_password = \"app-secret\"\n"
        ));
    }
    let proxy = Proxy::start(config_from_toml(&toml)).await;
    let sets = proxy.shared.pools.all();
    assert_eq!(
        sets.len(),
        31,
        "every (database, user) pool is prepared at start"
    );
    // Two full rounds: every probe has connected.
    for _ in 0..2 {
        let r = sets[0].replicas.as_ref().expect("routing is on");
        r.next_round().await;
    }
    let servers = [
        ("primary", superuser_on(&primary_url())),
        ("replica 1", superuser_on(&replica_urls()[0])),
        ("replica 2", superuser_on(&replica_urls()[1])),
    ];
    for (name, url) in &servers {
        // Polled: the backends of an earlier test binary's monitors may
        // still be on their way out.
        let one = eventually(std::time::Duration::from_secs(10), || async {
            connections(url, "pgswitch-monitor").await == 1
        })
        .await;
        let n = connections(url, "pgswitch-monitor").await;
        assert!(one, "{n} monitor connections on the {name}, not 1");
    }
    let catalog = connections(&servers[0].1, "pgswitch-catalog").await;
    assert!(catalog <= 1, "{catalog} catalog readers on the primary");
    // A client of one tenant is served, and reads still reach replicas.
    let c = connect(&proxy.url_as("tenant7", "t7", "app"))
        .await
        .unwrap();
    let routed = eventually(std::time::Duration::from_secs(10), || async {
        first_row(&c, "SELECT pg_is_in_recovery()").await == ["t"]
    })
    .await;
    assert!(routed, "reads go to a replica");
    drop(c);
    proxy.stop().await;
}
