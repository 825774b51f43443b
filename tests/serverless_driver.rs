//! `@neondatabase/serverless` 1.2.0's own use of the serverless front:
//! `tests/clients/neon_test.js` (its `neon()`, `transaction()`, `Pool` and
//! `Client`) run against pgswitch in front of the primary, over http,
//! https, ws and wss.

mod common;

use std::path::PathBuf;

use common::http::front;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/neon_test.js")
}

/// Runs one part of neon_test.js against a fresh pgswitch (over TLS with
/// `secure`); panics with its output unless it reports 0 errors.
async fn neon(part: &str, secure: bool) -> String {
    let mut settings = String::new();
    let mut ca_file = None;
    if secure {
        let ca = common::tls::TestCa::new("serverless test CA");
        let dir = common::tls::temp_dir("serverless");
        let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
        let cert = common::tls::write(&dir, "pgswitch.crt", &cert);
        let key = common::tls::write(&dir, "pgswitch.key", &key);
        ca_file = Some(common::tls::write(&dir, "ca.crt", &ca.pem()));
        settings = format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
            cert.display(),
            key.display()
        );
    }
    let (proxy, addr) = front(&settings).await;
    let mut command = tokio::process::Command::new("node");
    if let Some(ca) = &ca_file {
        command.env("NODE_EXTRA_CA_CERTS", ca);
    }
    let out = command
        .arg(script())
        .env(
            "PGSWITCH_NEON_DSN",
            format!("postgres://app:app-secret@127.0.0.1:{}/app", addr.port()),
        )
        .env("PGSWITCH_NEON_SECURE", if secure { "1" } else { "0" })
        .env("PGSWITCH_NEON_PART", part)
        .env("PGSWITCH_CLIENT_TIMEOUT", "120")
        .kill_on_drop(true)
        .output()
        .await
        .expect("run node (scripts/client-deps.sh installs the driver)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "neon_test.js {part} failed:\n{text}");
    assert!(text.contains(" 0 errors"), "neon_test.js {part}:\n{text}");
    proxy.stop().await;
    text
}

#[tokio::test]
async fn neon_driver_over_http() {
    neon("http", false).await;
}

#[tokio::test]
async fn neon_driver_over_https() {
    neon("http", true).await;
}

#[tokio::test]
async fn neon_driver_pool_over_websocket() {
    neon("ws", false).await;
}

#[tokio::test]
async fn neon_driver_pool_over_secure_websocket() {
    neon("ws", true).await;
}

#[tokio::test]
async fn neon_driver_200_concurrent_queries_over_10_server_connections() {
    neon("concurrent", false).await;
}
