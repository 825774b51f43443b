//! The `pgswitch` binary as an operator runs it: flags and env vars,
//! `check-config`, refusing unsafe listen addresses, logs without secrets,
//! and SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_pgswitch");

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pgswitch(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for var in [
        "PGSWITCH_PRIMARY",
        "PGSWITCH_REPLICAS",
        "PGSWITCH_LISTEN",
        "PGSWITCH_POOL_MODE",
        "PGSWITCH_POOL_SIZE",
        "PGSWITCH_CONFIG",
        "PGSWITCH_WORKERS",
        "PGSWITCH_METRICS_LISTEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.spawn().expect("start the pgswitch binary")
}

async fn accepts(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Sends SIGTERM and returns (exit status success, stderr).
async fn terminate(mut child: Child) -> (bool, String) {
    let pid = child.id().expect("running") as i32;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    (status.success(), err)
}

#[tokio::test]
async fn flags_beat_env_and_sigterm_stops_cleanly() {
    let (flag_port, env_port) = (free_port(), free_port());
    let flag_listen = format!("127.0.0.1:{flag_port}");
    let env_listen = format!("127.0.0.1:{env_port}");
    let child = pgswitch(
        &["--listen", &flag_listen, "--pool-mode", "transaction"],
        &[
            ("PGSWITCH_PRIMARY", &primary_url()),
            ("PGSWITCH_LISTEN", &env_listen),
            ("PGSWITCH_POOL_MODE", "bogus"),
        ],
    );
    assert!(
        eventually(Duration::from_secs(20), || accepts(flag_port)).await,
        "the --listen flag must win"
    );
    assert!(
        !accepts(env_port).await,
        "PGSWITCH_LISTEN must lose to --listen"
    );
    // The env var supplied the primary, the client logs in with its user.
    let c = connect(&format!("postgres://app:app-secret@{flag_listen}/app"))
        .await
        .unwrap();
    c.query_one("SELECT 1", &[]).await.unwrap();
    // A wrong password is refused, and no password ends up in the log.
    let e = connect(&format!("postgres://app:wrong-pw-1234@{flag_listen}/app"))
        .await
        .expect_err("wrong password");
    assert_eq!(sqlstate(&e), "28P01");
    drop(c);
    let (ok, log) = terminate(child).await;
    assert!(ok, "exit status after SIGTERM: {log}");
    assert!(log.contains("open_files"), "the fd limit is logged: {log}");
    assert!(log.contains("shutdown complete"), "{log}");
    for secret in ["app-secret", "wrong-pw-1234"] {
        assert!(!log.contains(secret), "a password was logged:\n{log}");
    }
}

#[tokio::test]
async fn env_vars_alone_configure_it() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = pgswitch(
        &[],
        &[
            ("PGSWITCH_PRIMARY", &primary_url()),
            ("PGSWITCH_LISTEN", &listen),
            ("PGSWITCH_POOL_SIZE", "1"),
            ("PGSWITCH_POOL_MODE", "transaction"),
        ],
    );
    assert!(eventually(Duration::from_secs(20), || accepts(port)).await);
    let url = format!("postgres://app:app-secret@{listen}/app");
    let (a, b) = (connect(&url).await.unwrap(), connect(&url).await.unwrap());
    // PGSWITCH_POOL_SIZE=1 in transaction mode: both share one server.
    assert_eq!(backend_pid(&a).await, backend_pid(&b).await);
    drop((a, b));
    let (ok, log) = terminate(child).await;
    assert!(ok, "{log}");
}

#[tokio::test]
async fn refuses_passwordless_url_on_a_public_address() {
    let out = Command::new(BIN)
        .args([
            "--primary",
            &format!("postgres://app@{}/app", server_addr(&primary_url())),
            "--listen",
            "0.0.0.0:0",
        ])
        .env_remove("PGSWITCH_CONFIG")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pgswitch.listen") && err.contains("not loopback") && err.contains("password"),
        "{err}"
    );
}

#[tokio::test]
async fn check_config_lists_every_problem() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/pgswitch.example.toml");
    let out = Command::new(BIN)
        .args(["check-config", example])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::env::temp_dir().join(format!("pgswitch-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[pgswitch]\npool_size = 0\nmin_idle = 5\n[[databases]]\nname = \"d\"\nprimary = \"mysql://x\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "pgswitch.pool_size",
        "pgswitch.min_idle",
        "databases[0].primary",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    assert!(
        err.lines()
            .all(|l| l.starts_with(bad.to_str().unwrap()) && l.contains("fix:")),
        "{err}"
    );
}

#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("pgswitch-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pgswitch.toml");
    let write = |size: usize| {
        std::fs::write(
            &path,
            format!(
                "[pgswitch]\nlisten = \"127.0.0.1:{port}\"\npool_mode = \"transaction\"\npool_size = {size}\n\
                 admin_users = [\"app\"]\n[[databases]]\nname = \"app\"\nprimary = \"{}\"\n\
                 [[users]]\nname = \"app\"\npassword = \"app-secret\"\n",
                primary_url()
            ),
        )
        .unwrap()
    };
    write(2);
    let child = pgswitch(&["--config", path.to_str().unwrap()], &[]);
    assert!(eventually(Duration::from_secs(20), || accepts(port)).await);
    let admin = connect(&format!(
        "postgres://app:app-secret@127.0.0.1:{port}/pgswitch"
    ))
    .await
    .unwrap();
    let pool_size = || async {
        let rows = admin.simple_query("SHOW POOLS").await.unwrap();
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get("pool_size").map(str::to_owned),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(pool_size().await, "2");
    write(7);
    let pid = child.id().expect("running") as i32;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let resized = eventually(Duration::from_secs(10), || async {
        pool_size().await == "7"
    })
    .await;
    assert!(resized, "SIGHUP did not apply pool_size = 7");
    drop(admin);
    let (ok, log) = terminate(child).await;
    assert!(ok, "{log}");
    assert!(log.contains("resized to 7"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
