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

/// `cmd` connected to pgswitch as app@app, then `args`.
async fn through(proxy: &Proxy, cmd: &str, args: &[&str]) -> (bool, String) {
    let port = proxy.addr.port().to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-U", "app"];
    all.extend_from_slice(args);
    if cmd == "psql" {
        all.extend_from_slice(&["-X", "-d", "app"]);
    } else {
        all.extend_from_slice(&["-n", "-j", "2", "app"]);
    }
    run(cmd, &all).await
}

#[tokio::test]
async fn psql_through_pgswitch() {
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let proxy = Proxy::mode(mode, 2).await;
        let sql = [
            "-c",
            "SELECT 40 + 2",
            "-c",
            "SELECT string_agg(x::text, ',') FROM generate_series(1,3) x",
        ];
        let (ok, out) = through(
            &proxy,
            "psql",
            &[&["-A", "-t", "-v", "ON_ERROR_STOP=1"][..], &sql].concat(),
        )
        .await;
        assert!(ok, "{mode}: {out}");
        assert_eq!(out.lines().collect::<Vec<_>>(), ["42", "1,2,3"], "{mode}");
        // An error is reported as psql shows a direct server's.
        let (ok, out) = through(&proxy, "psql", &["-c", "SELECT 1/0"]).await;
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
        for protocol in ["simple", "extended", "prepared"] {
            // (-M prepared in transaction mode, with a thread per client:
            // tests/clients.rs.)
            if mode == PoolMode::Transaction && protocol == "prepared" {
                continue;
            }
            let args = ["-c", "8", "-t", "100", "-M", protocol, "-f", &script];
            let (ok, out) = through(&proxy, "pgbench", &args).await;
            assert!(ok, "{mode} -M {protocol}: {out}");
            assert!(
                out.contains("number of transactions actually processed: 800/800"),
                "{mode} -M {protocol}: {out}"
            );
            assert!(
                out.contains("number of failed transactions: 0 "),
                "{mode} -M {protocol}: {out}"
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
    let script = script.to_string_lossy().into_owned();
    let (ok, out) = through(
        &proxy,
        "pgbench",
        &["-C", "-c", "8", "-t", "50", "-f", &script],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("number of transactions actually processed: 400/400"),
        "{out}"
    );
    proxy.stop().await;
}
