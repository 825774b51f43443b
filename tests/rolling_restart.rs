//! Zero-downtime restart: with `reuse_port`, a new pgswitch binds the same
//! port while the old one drains, under pgbench reconnecting for every
//! transaction (`-C`: a client closed between transactions reconnects),
//! and no transaction fails.
//!
//! When a listening socket of a SO_REUSEPORT group closes, Linux drops the
//! connections still in its accept queue unless `net.ipv4.tcp_migrate_req`
//! is 1 (then they move to another socket of the group), as the operations
//! guide says to set it. This test sets it for its run (and puts the old
//! value back), so it has a binary of its own.

mod common;

use std::time::Duration;

use common::*;

const MIGRATE: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// `net.ipv4.tcp_migrate_req = 1` while it lives.
struct MigrateRequests(String);

impl MigrateRequests {
    fn enable() -> MigrateRequests {
        let old =
            std::fs::read_to_string(MIGRATE).expect("Linux 5.14 or later has tcp_migrate_req");
        std::fs::write(MIGRATE, "1")
            .expect("setting net.ipv4.tcp_migrate_req needs root (CI runs as root)");
        MigrateRequests(old)
    }
}

impl Drop for MigrateRequests {
    fn drop(&mut self) {
        let _ = std::fs::write(MIGRATE, self.0.trim());
    }
}

fn transactions(p: &Proxy) -> u64 {
    p.shared.metrics.pool("app/app").transactions.get()
}

#[tokio::test]
async fn a_rolling_restart_under_pgbench_loses_no_transaction() {
    let _migrate = MigrateRequests::enable();
    let settings = "pool_mode = \"transaction\"\npool_size = 8\nreuse_port = true";
    let old = Proxy::start(cluster_config(settings, &[])).await;
    let port = old.addr.port();
    let dir = std::env::temp_dir().join(format!("pgswitch-rolling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("select.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let pgbench = tokio::process::Command::new("pgbench")
        .args(["-n", "-C", "-c", "16", "-j", "2", "-T", "8", "-f"])
        .arg(&script)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "app",
            "app",
        ])
        .env("PGPASSWORD", "app-secret")
        .env("PGSSLMODE", "disable")
        .kill_on_drop(true)
        .output();
    let pgbench = tokio::spawn(pgbench);
    assert!(
        eventually(Duration::from_secs(10), || async {
            transactions(&old) > 200
        })
        .await,
        "pgbench never got going through the old pgswitch"
    );
    // The new one, on the same port.
    let toml = cluster_toml(settings, &[]).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let new = Proxy::start(config_from_toml(&toml)).await;
    assert_eq!(new.addr.port(), port);
    assert!(
        eventually(Duration::from_secs(10), || async {
            transactions(&new) > 50
        })
        .await,
        "the kernel sent no client to the new pgswitch"
    );
    // The old one drains and goes.
    let before = transactions(&old);
    old.stop().await;
    let served = transactions(&new);
    assert!(
        eventually(Duration::from_secs(10), || async {
            transactions(&new) > served + 200
        })
        .await,
        "the new pgswitch did not take over"
    );
    let out = pgbench.await.unwrap().expect("run pgbench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench failed:\n{text}");
    assert!(
        text.contains("number of failed transactions: 0"),
        "transactions failed:\n{text}"
    );
    assert!(!text.contains("aborted"), "clients aborted:\n{text}");
    assert!(before > 200, "{before}");
    new.stop().await;
}
