//! Outages for the tests that stop servers (`scripts/cluster.sh stop|start
//! NODE`), and a read load that notes which server answered each read and
//! every failure. Servers are found by their URLs' ports (the cluster's
//! environment), never by fixed numbers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{connect_watched, eventually, Proxy};

/// The port of a `postgres://` URL.
pub fn port_of(url: &str) -> u16 {
    let host = url.rsplit('@').next().unwrap_or(url);
    let port = host.split(['/', '?']).next().unwrap_or(host);
    port.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432)
}

#[derive(Clone, Copy, Debug)]
pub enum Node {
    Primary,
    Replica1,
    Replica2,
}

impl Node {
    fn name(self) -> &'static str {
        match self {
            Node::Primary => "primary",
            Node::Replica1 => "replica1",
            Node::Replica2 => "replica2",
        }
    }
}

/// `pg_ctl -m fast` (clients told, clean shutdown) or `-m immediate`
/// (SIGQUIT: backends exit at once, as in a crash).
#[derive(Clone, Copy, Debug)]
pub enum StopMode {
    Fast,
    Immediate,
}

pub async fn cluster(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .await
        .expect("run scripts/cluster.sh");
    assert!(
        out.status.success(),
        "cluster.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stopped node, started again when dropped (also when a test fails
/// midway), so that later tests find the cluster whole.
pub struct Restart(Node);

impl Restart {
    pub async fn stop(node: Node, mode: StopMode) -> Restart {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        cluster(&["stop", node.name(), mode]).await;
        Restart(node)
    }
}

impl Drop for Restart {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");
        let ok = std::process::Command::new("bash")
            .args([script, "start", self.0.name()])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok && !std::thread::panicking() {
            panic!("could not start {} again", self.0.name());
        }
    }
}

/// After the client was dropped: its connection ended without an error
/// (pgswitch never closed it first).
pub async fn assert_ended_cleanly(
    closed: tokio::sync::oneshot::Receiver<Option<tokio_postgres::Error>>,
) {
    let end = tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("closed")
        .unwrap();
    assert!(
        end.is_none(),
        "the client connection ended with an error: {end:?}"
    );
}

/// One outage at a time within a test binary.
pub static OUTAGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Clients reading `SELECT inet_server_port()` in a loop, half in the
/// simple protocol, half in the extended one, each on its own connection.
pub struct ReadLoad {
    stop: CancellationToken,
    served: Arc<Mutex<BTreeMap<u16, u64>>>,
    clients: Vec<JoinHandle<Vec<String>>>,
}

impl ReadLoad {
    pub async fn start(proxy: &Proxy, n: usize) -> ReadLoad {
        let stop = CancellationToken::new();
        let served = Arc::new(Mutex::new(BTreeMap::<u16, u64>::new()));
        let mut clients = Vec::new();
        for i in 0..n {
            let (c, closed) = connect_watched(&proxy.url()).await;
            let (stop, served) = (stop.clone(), served.clone());
            clients.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.is_cancelled() {
                    let port = if i % 2 == 0 {
                        c.simple_query("SELECT inet_server_port()")
                            .await
                            .map(|m| match m.get(1) {
                                Some(tokio_postgres::SimpleQueryMessage::Row(r)) => {
                                    r.get(0).unwrap_or("0").parse().unwrap_or(0)
                                }
                                _ => 0,
                            })
                    } else {
                        c.query_typed("SELECT inet_server_port()", &[])
                            .await
                            .map(|r| r[0].get::<_, i32>(0) as u16)
                    };
                    match port {
                        Ok(p) => *served.lock().unwrap().entry(p).or_default() += 1,
                        Err(e) => {
                            // The SQLSTATE and message, not just "db error".
                            let what = match e.as_db_error() {
                                Some(d) => format!("{} {}", d.code().code(), d.message()),
                                None => e.to_string(),
                            };
                            failures.push(format!("client {i}: {what}"));
                            break;
                        }
                    }
                }
                drop(c);
                if let Some(e) = closed.await.ok().flatten() {
                    failures.push(format!("client {i} lost its connection: {e}"));
                }
                failures
            }));
        }
        ReadLoad {
            stop,
            served,
            clients,
        }
    }

    pub fn served_by(&self, port: u16) -> u64 {
        self.served.lock().unwrap().get(&port).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.served.lock().unwrap().values().sum()
    }

    /// Whether `port` serves more reads from now on (within 30 s).
    pub async fn grows(&self, port: u16) -> bool {
        let before = self.served_by(port);
        eventually(Duration::from_secs(30), || async {
            self.served_by(port) > before
        })
        .await
    }

    /// Whether `n` more reads are served (within 30 s).
    pub async fn serves(&self, n: u64) -> bool {
        let before = self.total();
        eventually(Duration::from_secs(30), || async {
            self.total() >= before + n
        })
        .await
    }

    pub fn by_port(&self) -> BTreeMap<u16, u64> {
        self.served.lock().unwrap().clone()
    }

    /// Stops the clients; every failed read and lost connection.
    pub async fn finish(self) -> Vec<String> {
        self.stop.cancel();
        let mut failures = Vec::new();
        for c in self.clients {
            failures.extend(c.await.unwrap());
        }
        failures
    }
}
