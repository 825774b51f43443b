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

/// `pgswitch import-pgbouncer` on PgBouncer's own sample configuration
/// (from Debian's package, unpacked by scripts/client-deps.sh), then the
/// result served: pgswitch starts from it (with --primary, since the sample
/// configures no database) and answers a query.
#[tokio::test]
async fn import_pgbouncer_on_pgbouncers_own_sample() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = root.join(".clients/pgbouncer/usr/share/doc/pgbouncer/examples");
    let ini = examples.join("pgbouncer.ini");
    assert!(
        ini.exists(),
        "{} is missing: run scripts/client-deps.sh",
        ini.display()
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgswitch"))
        .arg("import-pgbouncer")
        .arg(&ini)
        .arg(examples.join("userlist.txt"))
        .output()
        .await
        .expect("run pgswitch import-pgbouncer");
    let toml = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("without an equivalent"), "{stderr}");
    // Every active [pgbouncer] setting of the sample is mapped or named.
    let text = std::fs::read_to_string(&ini).unwrap();
    let mut in_section = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[pgbouncer]";
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        if !in_section || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let key = key.trim();
        let mapped = matches!(
            key,
            "listen_addr" | "listen_port" | "auth_type" | "auth_file"
        );
        assert!(
            mapped || toml.contains(&format!("#   {key} =")),
            "{key} is neither mapped nor noted:\n{toml}"
        );
    }
    assert!(toml.contains("listen = \"localhost:6432\""), "{toml}");
    // The users of the sample's userlist log in (md5, as its auth_type says).
    assert!(toml.contains("name = \"marko\""), "{toml}");
    let dir = std::env::temp_dir().join(format!("pgswitch-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("imported.toml");
    let served = toml.replace("localhost:6432", "127.0.0.1:0");
    std::fs::write(&path, &served).unwrap();
    let ov = pgswitch::config::Overrides {
        primary: Some(primary_url()),
        ..Default::default()
    };
    let config = pgswitch::config::Config::load(Some(&path), &ov)
        .unwrap_or_else(|e| panic!("{e}\n{served}"));
    assert_eq!(config.users.iter().filter(|u| u.name == "marko").count(), 1);
    let proxy = Proxy::start(config).await;
    let c = proxy.client().await;
    assert_eq!(first_row(&c, "SELECT 40 + 2").await, ["42"]);
    proxy.stop().await;
}
