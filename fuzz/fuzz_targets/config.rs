//! The config loader (`config::Config::load`: read, TOML into the file
//! model, validate) on arbitrary bytes written to a file, as
//! `pgswitch check-config FILE` and a reload read it. Checked: a rejected
//! file comes with at least one problem, each naming the file and a key;
//! in an accepted one, names are unique and every pool has a size.
//!
//! Files whose `listen` or `metrics_listen` is not an IP address are only
//! parsed, not validated: validation resolves host names, and a fuzzer
//! must not send DNS queries.
#![no_main]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgswitch::config::{Config, FileConfig, Overrides};

/// One file per fuzzing process, rewritten for every input.
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir();
        dir.join(format!("pgswitch-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(file) = toml::from_str::<FileConfig>(text) {
            let g = &file.pgswitch;
            // `to_socket_addrs` looks up the host of any `host:port` with a
            // valid port that is not an IP address.
            let resolves = |a: &Option<String>| {
                a.as_deref().is_some_and(|s| {
                    s.parse::<SocketAddr>().is_err()
                        && s.rsplit_once(':')
                            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                })
            };
            if resolves(&g.listen) || resolves(&g.metrics_listen) {
                return;
            }
        }
    }
    let path = path();
    std::fs::write(path, data).expect("cannot write the config file");
    let loaded = Config::load(Some(path), &Overrides::default());
    let _ = std::fs::remove_file(path);
    match loaded {
        Ok(c) => {
            for d in &c.databases {
                assert!(std::ptr::eq(c.database(&d.name).unwrap(), d), "{}", d.name);
                for u in &c.users {
                    assert!(c.pool_size(d, u) >= 1);
                }
            }
            for u in &c.users {
                assert!(std::ptr::eq(c.user(&u.name).unwrap(), u), "{}", u.name);
            }
        }
        Err(problems) => {
            assert!(!problems.0.is_empty(), "rejected without a problem");
            let file = path.display().to_string();
            for p in &problems.0 {
                assert_eq!(p.file, file);
                assert!(!p.key.is_empty() && !p.message.is_empty(), "{p:?}");
            }
            let _ = problems.to_string();
        }
    }
});
