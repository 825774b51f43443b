//! Smoke runs with the real command-line clients: psql and pgbench, in
//! session and transaction modes, with simple, extended and prepared
//! protocols.

mod common;

use common::*;
use pgswitch::config::PoolMode;

async fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(cmd)
        .args(args)
        .env("PGPASSWORD", "app-secret")
        .env("PGCONNECT_TIMEOUT", "10")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (install postgresql-client)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn psql_through_pgswitch() {
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let proxy = Proxy::mode(mode, 2).await;
        let port = proxy.addr.port().to_string();
        let (ok, out) = run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "app",
                "-d",
                "app",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "SELECT 40 + 2",
                "-c",
                "SELECT string_agg(x::text, ',') FROM generate_series(1,3) x",
            ],
        )
        .await;
        assert!(ok, "{mode}: {out}");
        assert_eq!(out.lines().collect::<Vec<_>>(), ["42", "1,2,3"], "{mode}");
        // An error is reported as psql shows a direct server's.
        let (ok, out) = run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "app",
                "-d",
                "app",
                "-X",
                "-c",
                "SELECT 1/0",
            ],
        )
        .await;
        assert!(!ok);
        assert!(out.contains("division by zero"), "{out}");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn pgbench_through_pgswitch() {
    // A custom script needs no pgbench tables, so runs never collide.
    let dir = std::env::temp_dir().join(format!("pgswitch-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("select.sql");
    std::fs::write(
        &script,
        "\\set v random(1, 1000)\nSELECT :v::int * 2;\nBEGIN;\nSELECT :v;\nCOMMIT;\n",
    )
    .unwrap();
    let script = script.to_string_lossy().into_owned();
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        // Fewer servers than clients in transaction mode, so they really move.
        let proxy = Proxy::mode(mode, if mode == PoolMode::Session { 8 } else { 3 }).await;
        let port = proxy.addr.port().to_string();
        for protocol in ["simple", "extended", "prepared"] {
            if mode == PoolMode::Transaction && protocol == "prepared" {
                continue; // named statements across transactions: a later issue.
            }
            let (ok, out) = run(
                "pgbench",
                &[
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "app",
                    "-n",
                    "-c",
                    "8",
                    "-j",
                    "2",
                    "-t",
                    "100",
                    "-M",
                    protocol,
                    "-f",
                    &script,
                    "app",
                ],
            )
            .await;
            assert!(ok, "{mode} -M {protocol}: {out}");
            assert!(
                out.contains("number of transactions actually processed: 800/800"),
                "{mode} -M {protocol}: {out}"
            );
            assert!(
                !out.contains("number of failed transactions: 1")
                    && out.contains("failed transactions: 0"),
                "{out}"
            );
        }
        proxy.stop().await;
    }
}

#[tokio::test]
async fn pgbench_connection_churn() {
    let dir = std::env::temp_dir().join(format!("pgswitch-pgbench-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("one.sql");
    std::fs::write(&script, "SELECT 1;\n").unwrap();
    let proxy = Proxy::mode(PoolMode::Transaction, 2).await;
    let port = proxy.addr.port().to_string();
    let (ok, out) = run(
        "pgbench",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "app",
            "-n",
            "-C",
            "-c",
            "8",
            "-j",
            "2",
            "-t",
            "50",
            "-f",
            &script.to_string_lossy(),
            "app",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("number of transactions actually processed: 400/400"),
        "{out}"
    );
    proxy.stop().await;
}
