//! TLS on both sides (issue 11), against the real cluster, whose servers
//! have `ssl = on` and a role (`app_tls`) that `pg_hba.conf` admits only
//! over TLS, as managed services do:
//! - towards servers: sslmode verify-full/require/disable with the
//!   cluster's CA, in session and transaction modes, reads routed to
//!   replicas over TLS; the wrong CA and a name mismatch fail with the cause
//!   in the client's message; SNI is sent (and not with sslsni=0);
//! - towards clients: SSLRequest and direct TLS (ALPN), psql with
//!   verify-full, channel binding, `client_tls = require` refusing plain
//!   clients, and a certificate swapped by RELOAD while TLS clients stay.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::tls::*;
use common::*;

/// The cluster URL of `node` for `user`, with `options` (`k=v&...`).
fn server_url(port: i32, (user, password): (&str, &str), options: &str) -> String {
    format!("postgres://{user}:{password}@127.0.0.1:{port}/app?{options}")
}

fn verify_full(ca: &Path) -> String {
    format!("sslmode=verify-full&sslrootcert={}", ca.display())
}

/// A config file for database `app` with these server URLs and one user.
fn tls_config(
    settings: &str,
    primary: &str,
    replicas: &[String],
    (user, password): (&str, &str),
) -> pgswitch::config::Config {
    config_from_toml(&format!(
        "[pgswitch]\nlisten = \"127.0.0.1:0\"\n{settings}\n\
         [[databases]]\nname = \"app\"\nprimary = \"{primary}\"\nreplicas = {replicas:?}\n\
         [[users]]\nname = \"{user}\"\npassword = \"{password}\"\n"
    ))
}

/// Whether the server session under `c` runs over TLS, and whether it is a
/// standby.
async fn server_side(c: &tokio_postgres::Client) -> (bool, bool) {
    let row = c
        .query_one(
            "SELECT ssl, pg_is_in_recovery() FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_connections_use_tls_in_both_modes_and_reads_reach_replicas_over_it() {
    let ca = cluster_ca();
    let replicas: Vec<String> = [1, 2]
        .map(|i| server_url(replica_port(i - 1), TLS_USER, &verify_full(&ca)))
        .to_vec();
    let primary = server_url(primary_port(), TLS_USER, &verify_full(&ca));
    for mode in ["session", "transaction"] {
        let settings = format!("pool_mode = \"{mode}\"\nconsistency = \"eventual\"");
        let proxy = Proxy::start(tls_config(&settings, &primary, &replicas, TLS_USER)).await;
        let c = connect(&proxy.url_as(TLS_USER.0, TLS_USER.1, "app"))
            .await
            .unwrap_or_else(|e| panic!("{mode}: the hostssl-only role logs in: {e}"));
        // The client itself is plain; what pgswitch opened is TLS.
        assert_eq!(
            first_row(&c, "SELECT current_user").await,
            ["app_tls"],
            "{mode}"
        );
        if mode == "transaction" {
            // A read goes to a replica (once the monitor has found them
            // in rotation), and every session of the role there is TLS.
            let within = std::time::Duration::from_secs(10);
            let read = "SELECT inet_server_port(), pg_is_in_recovery()";
            let on_replica = || async {
                let row = c.query_one(read, &[]).await.unwrap();
                row.get::<_, bool>(1).then(|| row.get::<_, i32>(0))
            };
            assert!(
                eventually(within, || async { on_replica().await.is_some() }).await,
                "{mode}: no read reached a replica"
            );
            let port = on_replica().await.unwrap_or(replica_port(0));
            let su = connect(&format!("postgres://postgres@127.0.0.1:{port}/app"))
                .await
                .unwrap();
            let tls_sessions = "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s \
                JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'app_tls'";
            let row = su.query_one(tls_sessions, &[]).await.unwrap();
            let (n, all): (i64, Option<bool>) = (row.get(0), row.get(1));
            assert!(
                n > 0 && all == Some(true),
                "{mode}: replica sessions {n}, all TLS {all:?}"
            );
            c.batch_execute("BEGIN").await.unwrap();
            let (ssl, standby) = server_side(&c).await;
            assert!(
                ssl && !standby,
                "{mode}: transaction on the primary over TLS"
            );
            c.batch_execute("COMMIT").await.unwrap();
        } else {
            let (ssl, standby) = server_side(&c).await;
            assert!(ssl && !standby, "{mode}: session on the primary over TLS");
        }
        drop(c);
        proxy.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostssl_only_role_needs_tls_in_the_server_url() {
    let port = primary_port();
    for (options, works) in [
        ("sslmode=disable", false),
        ("sslmode=require", true),
        // libpq's default.
        ("", true),
        ("sslmode=allow", true),
        // SCRAM-SHA-256-PLUS towards the server, bound to its certificate.
        ("sslmode=require&channel_binding=require", true),
        ("sslmode=disable&channel_binding=require", false),
    ] {
        let primary = server_url(port, TLS_USER, options);
        let settings = "pool_mode = \"transaction\"";
        let proxy = Proxy::start(tls_config(settings, &primary, &[], TLS_USER)).await;
        let url = proxy.url_as(TLS_USER.0, TLS_USER.1, "app");
        let got = match connect(&url).await {
            Ok(c) => c.simple_query("SELECT 1").await.map(drop),
            Err(e) => Err(e),
        };
        match (got, works) {
            (Ok(()), true) => {}
            (Err(e), false) => {
                let m = message(&e);
                assert!(
                    ["08006", "08P01"].contains(&sqlstate(&e).as_str()),
                    "{options}: {m}"
                );
                let cause = ["pg_hba.conf", "channel_binding=require"];
                assert!(
                    cause.iter().any(|c| m.contains(c)) && m.contains(&format!("127.0.0.1:{port}")),
                    "{options}: the server's refusal and the server are named: {m}"
                );
            }
            (got, _) => panic!("{options}: expected works = {works}, got {got:?}"),
        }
        proxy.stop().await;
    }
}

/// What a client sees when pgswitch cannot get a server with this primary
/// URL: its SQLSTATE and message.
async fn failure_with(primary: &str) -> (String, String) {
    let settings = "pool_mode = \"transaction\"";
    let proxy = Proxy::start(tls_config(settings, primary, &[], TLS_USER)).await;
    let url = proxy.url_as(TLS_USER.0, TLS_USER.1, "app");
    let e = match connect(&url).await {
        Ok(c) => c.simple_query("SELECT 1").await.expect_err("no server"),
        Err(e) => e,
    };
    proxy.stop().await;
    (sqlstate(&e), message(&e))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_ca_and_a_name_mismatch_fail_with_the_cause() {
    let dir = temp_dir("wrong-ca");
    let other = write(
        &dir,
        "other-ca.crt",
        &TestCa::new("not the cluster's CA").pem(),
    );
    let port = primary_port();
    let (code, m) = failure_with(&server_url(port, TLS_USER, &verify_full(&other))).await;
    assert_eq!(code, "08006", "{m}");
    assert!(m.contains("unknown issuer"), "{m}");
    assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}");
    // The certificate names localhost and 127.0.0.1; connect to 127.0.0.1
    // under another name.
    let ca = cluster_ca();
    let mismatch = format!(
        "host=db.invalid hostaddr=127.0.0.1 port={port} user={} password={} dbname=app sslmode=verify-full sslrootcert={}",
        TLS_USER.0,
        TLS_USER.1,
        ca.display()
    );
    let (code, m) = failure_with(&mismatch).await;
    assert_eq!(code, "08006", "{m}");
    assert!(m.contains("name mismatch"), "{m}");
    // verify-ca checks the chain only: the same name passes.
    let verify_ca = mismatch.replace("verify-full", "verify-ca");
    let settings = "pool_mode = \"transaction\"";
    let proxy = Proxy::start(tls_config(settings, &verify_ca, &[], TLS_USER)).await;
    let c = connect(&proxy.url_as(TLS_USER.0, TLS_USER.1, "app"))
        .await
        .unwrap();
    assert_eq!(server_side(&c).await, (true, false));
    drop(c);
    proxy.stop().await;
}

/// What a fake server saw of one connection's TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    sni: Option<String>,
    /// pgswitch presented a client certificate (the fake asks for one when
    /// it trusts a client CA).
    client_cert: bool,
}

/// A server that answers SSLRequest with `answer`; with 'S' it runs a TLS
/// handshake with `cert` (asking for a client certificate signed by
/// `client_ca`, if any), records what it saw, and closes.
async fn fake_server(
    answer: u8,
    cert: (String, String),
    client_ca: Option<&TestCa>,
) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    use rustls::pki_types::pem::PemObject;
    let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.0.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(ca.roots()),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut request = [0u8; 8];
            if tcp.read_exact(&mut request).await.is_err()
                || tcp.write_all(&[answer]).await.is_err()
            {
                continue;
            }
            if answer != b'S' {
                continue;
            }
            if let Ok(s) = acceptor.accept(tcp).await {
                let conn = s.get_ref().1;
                record.lock().unwrap().push(Seen {
                    sni: conn.server_name().map(str::to_owned),
                    client_cert: conn.peer_certificates().is_some(),
                });
            }
        }
    });
    (port, seen)
}

/// The server URL of a fake server named `sni.test`, with `options`.
fn fake_url(port: u16, options: &str) -> String {
    format!("host=sni.test hostaddr=127.0.0.1 port={port} user=u password=p dbname=app {options}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_name_is_sent_as_sni_unless_sslsni_is_off() {
    let ca = TestCa::new("sni test CA");
    let (port, seen) = fake_server(b'S', ca.leaf(&["sni.test"]), None).await;
    for (sni, want) in [("1", Some("sni.test")), ("0", None)] {
        let before = seen.lock().unwrap().len();
        let (code, _) =
            failure_with(&fake_url(port, &format!("sslmode=require sslsni={sni}"))).await;
        assert_eq!(code, "08006");
        let got = seen.lock().unwrap().get(before).map(|s| s.sni.clone());
        assert_eq!(got, Some(want.map(str::to_owned)), "sslsni={sni}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslcert_and_sslkey_are_presented_to_the_server() {
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let (port, seen) = fake_server(b'S', server_ca.leaf(&["sni.test"]), Some(&client_ca)).await;
    let dir = temp_dir("client-cert");
    let (cert, key) = client_ca.leaf(&["pgswitch"]);
    let options = format!(
        "sslmode=require sslcert={} sslkey={}",
        write(&dir, "client.crt", &cert).display(),
        write(&dir, "client.key", &key).display()
    );
    failure_with(&fake_url(port, &options)).await;
    failure_with(&fake_url(port, "sslmode=require")).await;
    let seen: Vec<bool> = seen.lock().unwrap().iter().map(|s| s.client_cert).collect();
    assert_eq!(
        seen,
        [true, false],
        "a certificate with sslcert, none without"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_tls_and_an_expired_certificate_are_named() {
    // The server answers the SSLRequest with 'N'.
    let ca = TestCa::new("expiry CA");
    let (port, _) = fake_server(b'N', ca.leaf(&["sni.test"]), None).await;
    let (code, m) = failure_with(&fake_url(port, "sslmode=require")).await;
    assert_eq!(code, "08006", "{m}");
    assert!(m.contains("server does not support SSL"), "{m}");
    // A certificate that expired.
    let expired = ca.leaf_with(&["sni.test"], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let (port, _) = fake_server(b'S', expired, None).await;
    let dir = temp_dir("expired");
    let root = write(&dir, "ca.crt", &ca.pem());
    let options = format!("sslmode=verify-full sslrootcert={}", root.display());
    let (code, m) = failure_with(&fake_url(port, &options)).await;
    assert_eq!(code, "08006", "{m}");
    assert!(m.contains("expired"), "{m}");
}

/// pgswitch with a certificate for 127.0.0.1 and localhost, signed by a
/// CA of the test's, and `settings`.
struct ClientSide {
    ca: TestCa,
    dir: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl ClientSide {
    fn new(tag: &str) -> ClientSide {
        let ca = TestCa::new("pgswitch test CA");
        let dir = temp_dir(tag);
        let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
        let cert = write(&dir, "pgswitch.crt", &cert);
        let key = write(&dir, "pgswitch.key", &key);
        ClientSide { ca, dir, cert, key }
    }

    fn settings(&self, extra: &str) -> String {
        format!(
            "pool_mode = \"transaction\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n{extra}",
            self.cert.display(),
            self.key.display()
        )
    }

    fn ca_file(&self) -> std::path::PathBuf {
        write(&self.dir, "ca.crt", &self.ca.pem())
    }
}

fn tls_url(proxy: &Proxy, options: &str) -> String {
    format!("{}?{options}", proxy.url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_use_tls_with_channel_binding_and_plain_ones_are_refused_when_required() {
    let side = ClientSide::new("clients");
    let settings = side.settings("client_tls = \"require\"");
    let proxy = Proxy::start(cluster_config(&settings, &replica_urls())).await;
    // A plain client: refused with 28000 before any password.
    let e = connect(&proxy.url()).await.expect_err("plain client");
    assert_eq!(sqlstate(&e), "28000", "{e}");
    assert!(message(&e).contains("requires TLS"), "{}", message(&e));
    // tokio-postgres over rustls, verifying pgswitch's certificate, with
    // channel binding required (SCRAM-SHA-256-PLUS).
    let config = client_config(&side.ca.pem(), false);
    let url = tls_url(&proxy, "sslmode=require&channel_binding=require");
    let c = connect_tls(&url, config.clone()).await.expect("TLS client");
    assert_eq!(first_row(&c, "SELECT 1").await, ["1"]);
    // Direct TLS (PostgreSQL 17): no SSLRequest, ALPN "postgresql".
    let direct = tls_url(&proxy, "sslmode=require&sslnegotiation=direct");
    let d = connect_tls(&direct, client_config(&side.ca.pem(), true))
        .await
        .expect("direct TLS client");
    assert_eq!(first_row(&d, "SELECT 2").await, ["2"]);
    // ... without ALPN it is not taken for Postgres.
    assert!(connect_tls(&direct, config).await.is_err());
    // psql (libpq) checking the certificate and the host name.
    let psql = std::process::Command::new("psql")
        .args([
            &format!(
                "host=127.0.0.1 port={} user=app dbname=app sslmode=verify-full sslrootcert={} channel_binding=require",
                proxy.addr.port(),
                side.ca_file().display()
            ),
            "-XAtc",
            "SELECT 40 + 2",
        ])
        .env("PGPASSWORD", "app-secret")
        .output()
        .expect("run psql");
    assert!(
        psql.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&psql.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&psql.stdout).trim(), "42");
    drop((c, d));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_clients_still_work_when_tls_is_allowed() {
    let side = ClientSide::new("allow");
    let proxy = Proxy::start(cluster_config(&side.settings(""), &[])).await;
    let c = proxy.client().await;
    assert_eq!(first_row(&c, "SELECT 1").await, ["1"]);
    let t = connect_tls(
        &tls_url(&proxy, "sslmode=require"),
        client_config(&side.ca.pem(), false),
    )
    .await
    .expect("TLS client");
    assert_eq!(first_row(&t, "SELECT 1").await, ["1"]);
    drop((c, t));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_certificate_and_keeps_tls_clients() {
    let side = ClientSide::new("reload");
    let proxy = Proxy::start(cluster_config(&side.settings(""), &[])).await;
    let url = tls_url(&proxy, "sslmode=require");
    let old_ca = side.ca.pem();
    let before = connect_tls(&url, client_config(&old_ca, false))
        .await
        .expect("TLS client before the swap");
    // A broken new certificate: the reload fails, the old one stays.
    std::fs::write(&side.cert, "not a certificate").unwrap();
    let e = pgswitch::reload::reload(&proxy.shared).expect_err("a broken certificate");
    assert!(e.to_string().contains("tls_cert_file"), "{e}");
    connect_tls(&url, client_config(&old_ca, false))
        .await
        .expect("the old certificate is still served");
    // A certificate from another CA.
    let new_ca = TestCa::new("the next CA");
    let (cert, key) = new_ca.leaf(&["localhost", "127.0.0.1"]);
    std::fs::write(&side.cert, cert).unwrap();
    std::fs::write(&side.key, key).unwrap();
    pgswitch::reload::reload(&proxy.shared).expect("reload");
    assert_eq!(first_row(&before, "SELECT 1").await, ["1"], "kept");
    let after = connect_tls(&url, client_config(&new_ca.pem(), false))
        .await
        .expect("the new certificate is served");
    assert_eq!(first_row(&after, "SELECT 1").await, ["1"]);
    assert!(
        connect_tls(&url, client_config(&old_ca, false))
            .await
            .is_err(),
        "the old CA no longer verifies it"
    );
    drop((before, after));
    proxy.stop().await;
}

#[test]
fn tls_settings_errors_name_the_key_and_the_fix() {
    let dir = temp_dir("config");
    let key = write(&dir, "k.pem", "garbage");
    let toml = format!(
        "[pgswitch]\ntls_cert_file = \"{}/missing.crt\"\ntls_key_file = \"{}\"\n\
         [[databases]]\nname = \"app\"\nprimary = \"{}\"\n[[users]]\nname = \"app\"\npassword = \"x\"\n",
        dir.display(),
        key.display(),
        primary_url()
    );
    let path = write(&dir, "c.toml", &toml);
    let e = pgswitch::config::Config::load(Some(&path), &Default::default())
        .expect_err("missing certificate")
        .to_string();
    assert!(
        e.contains("pgswitch.tls_cert_file") && e.contains("missing.crt"),
        "{e}"
    );
    let toml = "[pgswitch]\nclient_tls = \"require\"\n[[databases]]\nname = \"app\"\nprimary = \"postgres://a@h/app\"\n";
    let path = write(&dir, "d.toml", toml);
    let e = pgswitch::config::Config::load(Some(&path), &Default::default())
        .expect_err("require without a certificate")
        .to_string();
    assert!(
        e.contains("pgswitch.client_tls") && e.contains("tls_cert_file"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rebuilds_pools_whose_ca_file_changed() {
    let dir = temp_dir("ca-reload");
    let ca = write(&dir, "ca.crt", &TestCa::new("the wrong CA").pem());
    let primary = server_url(primary_port(), TLS_USER, &verify_full(&ca));
    let settings = "pool_mode = \"transaction\"";
    let proxy = Proxy::start(tls_config(settings, &primary, &[], TLS_USER)).await;
    let url = proxy.url_as(TLS_USER.0, TLS_USER.1, "app");
    let e = match connect(&url).await {
        Ok(c) => c.simple_query("SELECT 1").await.expect_err("wrong CA"),
        Err(e) => e,
    };
    assert!(message(&e).contains("unknown issuer"), "{}", message(&e));
    // The operator puts the right CA in the same file and reloads.
    std::fs::copy(cluster_ca(), &ca).unwrap();
    let notes = pgswitch::reload::reload(&proxy.shared).expect("reload");
    let c = connect(&url).await.expect("connect after the reload");
    assert_eq!(
        server_side(&c).await,
        (true, false),
        "served over TLS after the reload ({notes:?})"
    );
    drop(c);
    proxy.stop().await;
}

/// Sends an 8-byte negotiation request and returns the one-byte answer.
async fn negotiate(stream: &mut tokio::net::TcpStream, code: [u8; 4]) -> u8 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = vec![0, 0, 0, 8];
    request.extend_from_slice(&code);
    stream.write_all(&request).await.unwrap();
    stream.read_u8().await.unwrap()
}

const SSL: [u8; 4] = [0x04, 0xd2, 0x16, 0x2f];
const GSSENC: [u8; 4] = [0x04, 0xd2, 0x16, 0x30];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gss_encryption_is_refused_and_ssl_offered_only_with_a_certificate() {
    let side = ClientSide::new("negotiate");
    let with_cert = Proxy::start(cluster_config(&side.settings(""), &[])).await;
    let mut s = tokio::net::TcpStream::connect(with_cert.addr)
        .await
        .unwrap();
    // As libpq with gssencmode=prefer: GSSENCRequest first, then SSLRequest.
    assert_eq!(negotiate(&mut s, GSSENC).await, b'N');
    assert_eq!(negotiate(&mut s, SSL).await, b'S');
    with_cert.stop().await;
    let plain = Proxy::start(cluster_config("pool_mode = \"transaction\"", &[])).await;
    let mut s = tokio::net::TcpStream::connect(plain.addr).await.unwrap();
    assert_eq!(negotiate(&mut s, SSL).await, b'N');
    assert_eq!(negotiate(&mut s, GSSENC).await, b'N');
    // ... and the client goes on in plain text.
    drop(s);
    let c = plain.client().await;
    assert_eq!(first_row(&c, "SELECT 1").await, ["1"]);
    drop(c);
    plain.stop().await;
}

/// A plain server that reads the startup packet and answers with `first`;
/// if `then` is given, it reads pgswitch's next message and answers with
/// `then`. It never checks anything: an impostor.
async fn impostor(first: Vec<u8>, then: Option<Vec<u8>>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (first, then) = (first.clone(), then.clone());
            tokio::spawn(async move {
                let len = tcp.read_i32().await.ok()? as usize;
                let mut rest = vec![0u8; len.checked_sub(4)?];
                tcp.read_exact(&mut rest).await.ok()?;
                tcp.write_all(&first).await.ok()?;
                if let Some(then) = then {
                    let _tag = tcp.read_u8().await.ok()?;
                    let len = tcp.read_i32().await.ok()? as usize;
                    let mut body = vec![0u8; len.checked_sub(4)?];
                    tcp.read_exact(&mut body).await.ok()?;
                    tcp.write_all(&then).await.ok()?;
                }
                // Hold the connection until pgswitch drops it.
                let mut sink = [0u8; 64];
                while tcp.read(&mut sink).await.ok()? > 0 {}
                Some(())
            });
        }
    });
    port
}

fn wire(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_skips_authentication_is_not_trusted() {
    let ready = [wire(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]), wire(b'Z', b"I")].concat();
    let auth_ok = wire(b'R', &0i32.to_be_bytes());
    let mut sasl = 10i32.to_be_bytes().to_vec();
    sasl.extend_from_slice(b"SCRAM-SHA-256\0\0");
    let cases = [
        // Straight to ReadyForQuery, no authentication at all.
        ("no authentication", ready.clone(), None),
        // A SCRAM exchange cut short by AuthenticationOk: the server never
        // proved it knows the password.
        (
            "AuthenticationOk mid-SCRAM",
            wire(b'R', &sasl),
            Some([auth_ok, ready].concat()),
        ),
    ];
    for (what, first, then) in cases {
        let port = impostor(first, then).await;
        let url = format!("postgres://u:p@127.0.0.1:{port}/app?sslmode=disable");
        // Taken for a server, it would get the client's query and never
        // answer it.
        let within = std::time::Duration::from_secs(30);
        let (code, m) = tokio::time::timeout(within, failure_with(&url))
            .await
            .unwrap_or_else(|_| panic!("{what}: the impostor was taken for a server"));
        assert!(
            ["08P01", "08006"].contains(&code.as_str()),
            "{what}: {code} {m}"
        );
        assert!(
            m.contains("before authenticating") || m.contains("before the SCRAM exchange ended"),
            "{what}: {m}"
        );
    }
}
