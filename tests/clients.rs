//! Real client libraries through pgswitch in transaction mode, with fewer
//! server connections (4) than client connections (20, or 32 for pgbench),
//! so that every client's named prepared statements land on server
//! connections that have never seen them. The scripts in `tests/clients/`
//! check every result themselves and exit non-zero on any error; their
//! libraries come from `scripts/client-deps.sh` (which `scripts/test.sh`
//! runs first).

mod common;

use std::path::{Path, PathBuf};

use common::*;

const SERVERS: usize = 4;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn transaction_mode() -> pgswitch::config::Config {
    cluster_config(
        &format!("pool_mode = \"transaction\"\npool_size = {SERVERS}"),
        &[],
    )
}

/// Runs `program script` against a fresh pgswitch; panics with the output
/// unless it succeeds. Returns the output and how many statement Parses
/// pgswitch answered from a server connection's cache (proof that
/// statements really were shared and moved).
async fn run_script(program: &Path, script: &str) -> (String, u64) {
    run(program, script, None).await
}

/// The same over TLS (`client_tls = require`): `options` are the DSN's
/// TLS options for that library; `NODE_EXTRA_CA_CERTS` and the CA file
/// `{ca}` in them name pgswitch's test CA.
async fn run_script_tls(program: &Path, script: &str, options: &str) -> (String, u64) {
    run(program, script, Some(options)).await
}

async fn run(program: &Path, script: &str, tls: Option<&str>) -> (String, u64) {
    assert!(
        program.exists() || program.components().count() == 1,
        "{} is missing: run scripts/client-deps.sh to install the client libraries",
        program.display()
    );
    let mut config = transaction_mode();
    let mut dsn_options = String::new();
    let mut ca_file = None;
    if let Some(options) = tls {
        let ca = common::tls::TestCa::new("clients test CA");
        let dir = common::tls::temp_dir("clients");
        let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
        let cert = common::tls::write(&dir, "pgswitch.crt", &cert);
        let key = common::tls::write(&dir, "pgswitch.key", &key);
        let ca_path = common::tls::write(&dir, "ca.crt", &ca.pem());
        config = cluster_config(
            &format!(
                "pool_mode = \"transaction\"\npool_size = {SERVERS}\nclient_tls = \"require\"\n\
                 tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
                cert.display(),
                key.display()
            ),
            &[],
        );
        dsn_options = format!(
            "?{}",
            options.replace("{ca}", &ca_path.display().to_string())
        );
        ca_file = Some(ca_path);
    }
    let proxy = Proxy::start(config).await;
    let mut command = tokio::process::Command::new(program);
    if let Some(ca) = &ca_file {
        command.env("NODE_EXTRA_CA_CERTS", ca);
    }
    let out = command
        .arg(repo().join("tests/clients").join(script))
        .env(
            "PGSWITCH_CLIENT_DSN",
            format!("{}{dsn_options}", proxy.url()),
        )
        .env("PGSWITCH_CLIENT_CONNS", "20")
        .env("PGSWITCH_CLIENT_TIMEOUT", "120")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{text}");
    assert!(text.contains(" 0 errors"), "{script}:\n{text}");
    let reused = proxy.shared.metrics.prepared_reused.get();
    proxy.stop().await;
    (text, reused)
}

fn python() -> PathBuf {
    repo().join(".clients/venv/bin/python")
}

#[tokio::test]
async fn asyncpg_with_its_statement_cache() {
    let (out, reused) = run_script(&python(), "asyncpg_test.py").await;
    assert!(out.contains("asyncpg: 20 connections"), "{out}");
    assert!(reused > 0, "no statement was shared: {out}");
}

#[tokio::test]
async fn psycopg_preparing_every_statement() {
    let (out, reused) = run_script(&python(), "psycopg_test.py").await;
    assert!(out.contains("psycopg: 20 connections"), "{out}");
    assert!(reused > 0, "no statement was shared: {out}");
}

#[tokio::test]
async fn node_postgres_named_queries() {
    let (out, reused) = run_script(Path::new("node"), "node_pg_test.js").await;
    assert!(out.contains("node-pg: 20 connections"), "{out}");
    assert!(reused > 0, "no statement was shared: {out}");
}

#[tokio::test]
async fn postgres_js_defaults() {
    let (out, _) = run_script(Path::new("node"), "postgres_js_test.js").await;
    // Its statement names are random per connection and it parses each
    // once per connection: sharing is not guaranteed, correctness is.
    assert!(out.contains("postgres.js: 20 connections"), "{out}");
}

#[tokio::test]
async fn asyncpg_over_tls() {
    let (out, _) = run_script_tls(&python(), "asyncpg_test.py", "sslmode=require").await;
    assert!(out.contains("asyncpg: 20 connections"), "{out}");
}

#[tokio::test]
async fn psycopg_over_tls_verifying_the_certificate() {
    let options = "sslmode=verify-full&sslrootcert={ca}";
    let (out, _) = run_script_tls(&python(), "psycopg_test.py", options).await;
    assert!(out.contains("psycopg: 20 connections"), "{out}");
}

#[tokio::test]
async fn node_postgres_over_tls_verifying_the_certificate() {
    let program = Path::new("node");
    let (out, _) = run_script_tls(program, "node_pg_test.js", "sslmode=verify-full").await;
    assert!(out.contains("node-pg: 20 connections"), "{out}");
}

#[tokio::test]
async fn postgres_js_over_tls() {
    let program = Path::new("node");
    let (out, _) = run_script_tls(program, "postgres_js_test.js", "sslmode=require").await;
    assert!(out.contains("postgres.js: 20 connections"), "{out}");
}

/// pgbench -M prepared: 32 clients, each on its own thread (a thread with
/// several clients would block inside one client's synchronous prepare
/// while another holds a server connection in a transaction, as it would
/// with any pooler).
#[tokio::test]
async fn pgbench_prepared_32_clients() {
    let dir = std::env::temp_dir().join(format!("pgswitch-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("prepared.sql");
    std::fs::write(
        &script,
        "\\set v random(1, 1000)\n\
         SELECT :v::int * 2;\n\
         BEGIN;\n\
         SELECT :v::int + 1;\n\
         SELECT count(*) FROM generate_series(1, :v % 7 + 1);\n\
         COMMIT;\n",
    )
    .unwrap();
    let proxy = Proxy::start(transaction_mode()).await;
    let port = proxy.addr.port().to_string();
    let out = tokio::process::Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "app", "-n"])
        .args(["-c", "32", "-j", "32", "-t", "50", "-M", "prepared"])
        .arg("-f")
        .arg(&script)
        .arg("app")
        .env("PGPASSWORD", "app-secret")
        .kill_on_drop(true)
        .output()
        .await
        .expect("cannot run pgbench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("number of transactions actually processed: 1600/1600"),
        "{text}"
    );
    assert!(text.contains("number of failed transactions: 0 "), "{text}");
    let metrics = &proxy.shared.metrics;
    // 5 statements (BEGIN and COMMIT too), each parsed at most once per
    // server connection, and every other client's Parse answered from the
    // connections' caches.
    let (parsed, reused) = (metrics.prepared_parses.get(), metrics.prepared_reused.get());
    assert!(parsed <= 5 * SERVERS as u64, "{parsed} parses");
    assert!(
        reused >= (32 - SERVERS as u64) * 5,
        "{reused} Parses answered from the cache"
    );
    proxy.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
