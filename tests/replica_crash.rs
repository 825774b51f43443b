//! Replicas that crash under load (issue 10, item 2). No client may lose its
//! connection because a server died:
//! - `pg_ctl -m immediate stop` of one replica, then of both at once, under
//!   16 clients reading in simple, extended and prepared-statement protocol,
//!   five times each: no read fails and no client is disconnected;
//! - a replica backend killed with SIGKILL (its postmaster then restarts every
//!   backend of that server): a read whose reply had not started is run
//!   again elsewhere and answered; a read whose reply had started ends in a
//!   clean ERROR 08006 naming the server. The client stays connected.
//!
//! Servers stop with `scripts/cluster.sh stop NODE immediate` (SIGQUIT: each
//! backend sends at most a WARNING notice, 57P01 or 57P02, and exits; there
//! is no FATAL ErrorResponse as with the fast mode of `tests/restart.rs`) and
//! start again through drop guards, so that a failing test leaves the cluster
//! whole. Nothing waits a fixed time: every wait polls a condition, under a
//! bound that only a failure reaches.
//!
//! These tests stop servers, so they run one at a time (`OUTAGE`) in their
//! own test binary; cargo runs test binaries one after another.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::{pin_mut, Stream, StreamExt};
use tokio::sync::oneshot;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, SimpleQueryMessage};
use tokio_util::sync::CancellationToken;

const CLIENTS: usize = 16;
const ROUNDS: usize = 5;
/// What every reading client asks: who answered, and whether it is a standby.
const READ: &str = "SELECT inet_server_port(), pg_is_in_recovery()";
/// Bound for reads to be served while servers are down.
const WITHIN: Duration = Duration::from_secs(30);
/// Bound for a restarted or crashed replica to be back in rotation.
const BACK: Duration = Duration::from_secs(60);

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");

use common::outage::cluster as cluster_sh;

/// Starts nodes again when dropped, also when a test fails midway, so that
/// later tests find the cluster whole. `cluster.sh start` is idempotent: on
/// a running node (one that restarted by itself after a crash) it waits
/// until the node accepts connections and streams from the primary again.
struct Outage(Vec<&'static str>);

impl Outage {
    fn of(nodes: &[&'static str]) -> Outage {
        Outage(nodes.to_vec())
    }

    /// The test started the nodes again itself.
    fn over(mut self) {
        self.0.clear();
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        for node in &self.0 {
            let ok = std::process::Command::new("bash")
                .args([SCRIPT, "start", node])
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok && !std::thread::panicking() {
                panic!("could not start {node} again");
            }
        }
    }
}

/// A node of `scripts/cluster.sh`.
#[derive(Debug, Clone)]
struct Node {
    /// Its name for `cluster.sh stop|start`.
    name: &'static str,
    url: String,
    port: i32,
    /// `host:port`, as pgswitch names the server in its messages.
    addr: String,
}

impl Node {
    fn new(name: &'static str, url: String) -> Node {
        let (host, port) = host_port(&url);
        Node {
            name,
            addr: format!("{host}:{port}"),
            port: i32::from(port),
            url,
        }
    }
}

fn host_port(url: &str) -> (String, u16) {
    let cfg: tokio_postgres::Config = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => panic!("{url}: no TCP host"),
    };
    (host, cfg.get_ports().first().copied().unwrap_or(5432))
}

struct Cluster {
    primary: Node,
    replicas: [Node; 2],
}

impl Cluster {
    /// The servers the test URLs name, which must be those of
    /// `scripts/cluster.sh env`: these tests stop servers by node name. A
    /// mismatch fails the test; it never skips.
    async fn checked() -> Cluster {
        let out = tokio::process::Command::new("bash")
            .args([SCRIPT, "env"])
            .output()
            .await
            .expect("run scripts/cluster.sh env");
        assert!(out.status.success(), "cluster.sh env failed");
        let script: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let [r1, r2] = [0, 1].map(|i| replica_urls()[i].clone());
        let cluster = Cluster {
            primary: Node::new("primary", primary_url()),
            replicas: [Node::new("replica1", r1), Node::new("replica2", r2)],
        };
        for (var, node) in [
            ("PGSWITCH_TEST_PRIMARY", &cluster.primary),
            ("PGSWITCH_TEST_REPLICA1", &cluster.replicas[0]),
            ("PGSWITCH_TEST_REPLICA2", &cluster.replicas[1]),
        ] {
            let theirs = script.get(var).map(String::as_str).map(host_port);
            assert_eq!(
                theirs.as_ref().map(|(h, p)| format!("{h}:{p}")).as_deref(),
                Some(node.addr.as_str()),
                "{var} must name scripts/cluster.sh's {}: these tests stop and start it",
                node.name
            );
        }
        cluster
    }

    fn replica_ports(&self) -> [i32; 2] {
        [self.replicas[0].port, self.replicas[1].port]
    }
}

/// Transaction mode, both replicas, a quick health monitor.
fn crash_config() -> pgswitch::config::Config {
    // The default health_check_interval: requests meet a crashed replica
    // before the monitor takes it out of rotation.
    let settings = "pool_mode = \"transaction\"\npool_size = 8\n\
        connect_timeout = \"1s\"\nconsistency = \"eventual\"";
    cluster_config(settings, &replica_urls())
}

#[derive(Debug, Clone, Copy)]
enum Protocol {
    /// One Query message (`simple_query`).
    Simple,
    /// Parse/Bind/Describe/Execute/Sync of an unnamed statement, in one go
    /// (`query_typed`).
    Extended,
    /// A named statement: Parse/Describe/Sync, then Bind/Execute/Sync, and a
    /// Close/Sync when it is dropped (`query`).
    Prepared,
}

const PROTOCOLS: [Protocol; 3] = [Protocol::Simple, Protocol::Extended, Protocol::Prepared];

/// An error as a line of a report: severity, SQLSTATE and message when the
/// server (or pgswitch) sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {} {}", d.severity(), d.code().code(), d.message()),
        None => format!("{e} (no SQLSTATE)"),
    }
}

/// Runs `sql` (whose first two columns are a port and a boolean) and
/// returns them.
async fn read(c: &Client, protocol: Protocol, sql: &str) -> Result<(i32, bool), String> {
    let typed = |rows: Vec<tokio_postgres::Row>| -> Option<(i32, bool)> {
        let r = rows.first()?;
        Some((r.try_get(0).ok()?, r.try_get(1).ok()?))
    };
    let answer = match protocol {
        Protocol::Simple => c.simple_query(sql).await.map(|msgs| {
            msgs.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((r.get(0)?.parse::<i32>().ok()?, r.get(1)? == "t"))
                }
                _ => None,
            })
        }),
        Protocol::Extended => c.query_typed(sql, &[]).await.map(typed),
        Protocol::Prepared => c.query(sql, &[]).await.map(typed),
    };
    match answer {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(format!("{protocol:?}: no row")),
        Err(e) => Err(format!("{protocol:?}: {}", describe(&e))),
    }
}

/// What each client saw.
struct Report {
    protocol: Protocol,
    failures: Vec<String>,
    /// How its connection ended, if not by its own drop.
    ended: Option<String>,
}

/// Answers counted by epoch (see `Load::next_epoch`) and server port, and
/// replica answers per protocol.
#[derive(Default)]
struct Tally {
    served: BTreeMap<(u64, i32), u64>,
    by_replicas: [u64; 3],
}

/// `CLIENTS` clients reading through pgswitch in turn-about protocols until
/// `finish`.
struct Load {
    stop: CancellationToken,
    /// Each read counts under the epoch current when it was sent: a read
    /// sent after a server stopped can only be answered by another server,
    /// whatever the timing.
    epoch: Arc<AtomicU64>,
    tally: Arc<Mutex<Tally>>,
    clients: Vec<tokio::task::JoinHandle<Report>>,
}

impl Load {
    async fn start(proxy: &Proxy, primary: i32) -> Load {
        let load = Load {
            stop: CancellationToken::new(),
            epoch: Arc::new(AtomicU64::new(0)),
            tally: Arc::default(),
            clients: Vec::new(),
        };
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let (c, closed) = connect_watched(&proxy.url()).await;
            let protocol = PROTOCOLS[i % PROTOCOLS.len()];
            let (stop, epoch, tally) = (load.stop.clone(), load.epoch.clone(), load.tally.clone());
            clients.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.is_cancelled() {
                    let sent_in = epoch.load(Ordering::SeqCst);
                    match read(&c, protocol, READ).await {
                        Ok((port, standby)) if standby == (port != primary) => {
                            let mut t = tally.lock().unwrap();
                            *t.served.entry((sent_in, port)).or_default() += 1;
                            if port != primary {
                                t.by_replicas[protocol as usize] += 1;
                            }
                        }
                        Ok(answer) => failures.push(format!(
                            "{protocol:?}: wrong answer (port, in recovery) = {answer:?}"
                        )),
                        Err(e) => {
                            failures.push(e);
                            if c.is_closed() {
                                break;
                            }
                        }
                    }
                }
                drop(c);
                let ended = ended(closed).await;
                Report {
                    protocol,
                    failures,
                    ended,
                }
            }));
        }
        Load { clients, ..load }
    }

    /// Starts a new epoch and returns it.
    fn next_epoch(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Reads sent in `epoch` that `port` answered.
    fn served(&self, epoch: u64, port: i32) -> u64 {
        let t = self.tally.lock().unwrap();
        t.served.get(&(epoch, port)).copied().unwrap_or(0)
    }

    /// Reads sent in `epoch` that were answered, by any server.
    fn answered(&self, epoch: u64) -> u64 {
        let t = self.tally.lock().unwrap();
        t.served
            .range((epoch, i32::MIN)..=(epoch, i32::MAX))
            .map(|(_, n)| n)
            .sum()
    }

    /// Whether `port` answers a read sent in `epoch`, within `bound`.
    async fn serves(&self, epoch: u64, port: i32, bound: Duration) -> bool {
        eventually(bound, || async { self.served(epoch, port) > 0 }).await
    }

    /// Whether reads sent in `epoch` go on being answered: one per client.
    async fn goes_on(&self, epoch: u64) -> bool {
        eventually(WITHIN, || async { self.answered(epoch) >= CLIENTS as u64 }).await
    }

    /// Stops the clients (each after its read in flight) and returns what
    /// they saw, and the replica answers per protocol.
    async fn finish(self) -> (Vec<Report>, [u64; 3]) {
        self.stop.cancel();
        let mut reports = Vec::new();
        for c in self.clients {
            match tokio::time::timeout(WITHIN, c).await {
                Ok(r) => reports.push(r.expect("client task")),
                Err(_) => panic!("a client's read did not end within {WITHIN:?}"),
            }
        }
        let by_replicas = self.tally.lock().unwrap().by_replicas;
        (reports, by_replicas)
    }
}

/// How a watched connection ended after its client was dropped: `None` if
/// cleanly (the client left), else the error it had ended with before.
async fn ended(closed: oneshot::Receiver<Option<tokio_postgres::Error>>) -> Option<String> {
    match tokio::time::timeout(Duration::from_secs(10), closed).await {
        Ok(Ok(None)) => None,
        Ok(Ok(Some(e))) => Some(describe(&e)),
        Ok(Err(_)) => Some("the connection task went away".into()),
        Err(_) => Some("the connection did not end within 10 s of the client's drop".into()),
    }
}

/// No read failed, no client lost its connection, and every protocol was
/// served by replicas (the outages hit all three).
fn assert_clean(what: &str, (reports, by_replicas): (Vec<Report>, [u64; 3])) {
    let failed: Vec<&String> = reports.iter().flat_map(|r| &r.failures).collect();
    let lost: Vec<String> = reports
        .iter()
        .filter_map(|r| Some(format!("{:?} client: {}", r.protocol, r.ended.as_ref()?)))
        .collect();
    assert!(
        failed.is_empty() && lost.is_empty(),
        "{what}: {} failed reads, {} of {CLIENTS} clients lost\nfailed: {failed:#?}\nlost: {lost:#?}",
        failed.len(),
        lost.len()
    );
    for p in PROTOCOLS {
        assert!(
            by_replicas[p as usize] > 0,
            "{what}: no {p:?} read was served by a replica"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_stops_of_a_replica_under_load_fail_no_read_and_lose_no_client() {
    let _outage = OUTAGE.lock().await;
    let cluster = Cluster::checked().await;
    let proxy = Proxy::start(crash_config()).await;
    let load = Load::start(&proxy, cluster.primary.port).await;
    for round in 1..=ROUNDS {
        let [a, b] = &cluster.replicas;
        let (down, up) = if round % 2 == 1 { (a, b) } else { (b, a) };
        // Reads reach both replicas: the one about to stop has connections
        // in its pool and reads in flight when it goes.
        let before = load.next_epoch();
        for n in [down, up] {
            assert!(
                load.serves(before, n.port, BACK).await,
                "round {round}: {} serves no read",
                n.name
            );
        }
        let outage = Outage::of(&[down.name]);
        cluster_sh(&["stop", down.name, "immediate"]).await;
        let during = load.next_epoch();
        // Reads sent while it is down are answered, and not by it (checked
        // before it starts again, so whatever is still in flight cannot be).
        assert!(
            load.goes_on(during).await,
            "round {round}: reads stopped while {} was down",
            down.name
        );
        assert!(
            load.serves(during, up.port, WITHIN).await,
            "round {round}: {} stopped serving",
            up.name
        );
        assert_eq!(
            load.served(during, down.port),
            0,
            "round {round}: the stopped {} answered",
            down.name
        );
        cluster_sh(&["start", down.name]).await;
        outage.over();
        let after = load.next_epoch();
        assert!(
            load.serves(after, down.port, BACK).await,
            "round {round}: {} did not return to rotation",
            down.name
        );
    }
    assert_clean("one replica stopped (immediate)", load.finish().await);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_stops_of_both_replicas_under_load_fail_no_read_and_lose_no_client() {
    let _outage = OUTAGE.lock().await;
    let cluster = Cluster::checked().await;
    let [a, b] = &cluster.replicas;
    let primary = cluster.primary.port;
    let proxy = Proxy::start(crash_config()).await;
    let load = Load::start(&proxy, primary).await;
    for round in 1..=ROUNDS {
        let before = load.next_epoch();
        for n in [a, b] {
            assert!(
                load.serves(before, n.port, BACK).await,
                "round {round}: {} serves no read",
                n.name
            );
        }
        let outage = Outage::of(&[a.name, b.name]);
        let (stop_a, stop_b) = (["stop", a.name, "immediate"], ["stop", b.name, "immediate"]);
        tokio::join!(cluster_sh(&stop_a), cluster_sh(&stop_b));
        let during = load.next_epoch();
        // The primary serves the reads sent while both are down.
        assert!(
            load.goes_on(during).await,
            "round {round}: reads stopped while both replicas were down"
        );
        assert!(
            load.serves(during, primary, WITHIN).await,
            "round {round}: the primary took no read"
        );
        for n in [a, b] {
            assert_eq!(
                load.served(during, n.port),
                0,
                "round {round}: the stopped {} answered",
                n.name
            );
        }
        let (start_a, start_b) = (["start", a.name], ["start", b.name]);
        tokio::join!(cluster_sh(&start_a), cluster_sh(&start_b));
        outage.over();
        let after = load.next_epoch();
        for n in [a, b] {
            assert!(
                load.serves(after, n.port, BACK).await,
                "round {round}: {} did not return to rotation",
                n.name
            );
        }
    }
    assert_clean("both replicas stopped (immediate)", load.finish().await);
    proxy.stop().await;
}

/// A superuser session on `node`, not through pgswitch.
async fn superuser_on(node: &Node) -> Client {
    let mut cfg: tokio_postgres::Config = node.url.parse().expect("node URL");
    // Trusted on loopback (scripts/cluster.sh); the app password is unused.
    cfg.user("postgres");
    let (client, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("superuser on {}: {e}", node.name));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Polls reads through `probe` until every port in `ports` has answered
/// one: those replicas are in pgswitch's rotation.
async fn all_serve(probe: &Client, ports: &[i32]) -> bool {
    let deadline = tokio::time::Instant::now() + BACK;
    let mut seen = BTreeSet::new();
    while tokio::time::Instant::now() < deadline {
        if let Ok((port, _)) = read(probe, Protocol::Simple, READ).await {
            seen.insert(port);
        }
        if ports.iter().all(|p| seen.contains(p)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The pid of the backend on `su`'s server running the statement that
/// contains `marker` (waiting for a lock, if `waiting`), right now.
async fn backend_now(su: &Client, marker: &str, waiting: bool) -> Option<i32> {
    let sql = "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
        AND position($1 in query) > 0 AND (NOT $2 OR wait_event_type = 'Lock')";
    let rows = su.query(sql, &[&marker, &waiting]).await.ok()?;
    rows.first().map(|r| r.get(0))
}

/// The first of `servers` (superuser sessions) where a backend runs the
/// statement with `marker` (see `backend_now`), and its pid, polled for up
/// to `WITHIN`.
async fn backend_running(servers: &[Client], marker: &str, waiting: bool) -> Option<(usize, i32)> {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        for (at, su) in servers.iter().enumerate() {
            if let Some(pid) = backend_now(su, marker, waiting).await {
                return Some((at, pid));
            }
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills server process `pid` with SIGKILL on the server `su` is connected
/// to: `COPY ... TO PROGRAM` runs `kill` on that server's host, as the OS
/// user that runs Postgres, whoever runs this test. The postmaster then
/// restarts every backend of that server, `su`'s own included, which may
/// end before COPY answers.
async fn sigkill(su: &Client, pid: i32) {
    let sql = format!("COPY (SELECT WHERE false) TO PROGRAM 'kill -9 {pid}'");
    match su.batch_execute(&sql).await {
        Ok(()) => {}
        Err(e) if e.as_db_error().is_none() => {} // its own session went down
        Err(e) if e.code().is_some_and(|c| c.code().starts_with("57P")) => {}
        Err(e) => panic!("kill -9 {pid}: {}", describe(&e)),
    }
}

/// The client's connection is open and serves statements in both
/// protocols.
async fn still_connected(
    c: &Client,
    closed: &mut oneshot::Receiver<Option<tokio_postgres::Error>>,
    what: &str,
) {
    let open =
        |closed: &mut oneshot::Receiver<Option<tokio_postgres::Error>>| match closed.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => Ok(()),
            Ok(end) => Err(format!("{:?}", end.map(|e| describe(&e)))),
            Err(oneshot::error::TryRecvError::Closed) => Err("connection task gone".into()),
        };
    if let Err(end) = open(closed) {
        panic!("{what}: pgswitch closed the client's connection: {end}");
    }
    for protocol in [Protocol::Simple, Protocol::Extended] {
        if let Err(e) = read(c, protocol, READ).await {
            panic!("{what}: the client's next read failed: {e}");
        }
    }
    if let Err(end) = open(closed) {
        panic!("{what}: pgswitch closed the client's connection: {end}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_replica_backend_is_killed_before_answering_runs_elsewhere() {
    let _outage = OUTAGE.lock().await;
    let cluster = Cluster::checked().await;
    let replica_ports = cluster.replica_ports();
    // Whichever replica crashes restarts by itself; this waits for it.
    let _restart = Outage::of(&["replica1", "replica2"]);
    let proxy = Proxy::start(crash_config()).await;
    let probe = proxy.client().await;
    let (c, mut closed) = connect_watched(&proxy.url()).await;
    for (i, protocol) in [Protocol::Simple, Protocol::Extended]
        .into_iter()
        .enumerate()
    {
        let what = format!("{protocol:?} read killed before answering");
        assert!(
            all_serve(&probe, &replica_ports).await,
            "{what}: the replicas are not both in rotation"
        );
        // Each replica holds the lock the read waits for, so wherever it
        // goes, it waits there with no reply started.
        let key = i64::from(std::process::id()) * 10 + i as i64;
        let mut holders = Vec::new();
        for node in &cluster.replicas {
            let su = superuser_on(node).await;
            su.execute("SELECT pg_advisory_lock($1)", &[&key])
                .await
                .expect("take the lock");
            holders.push(su);
        }
        let marker = format!("killed_waiting_{}_{i}", std::process::id());
        let sql = format!(
            "/* pgswitch:replica */ SELECT inet_server_port(), pg_is_in_recovery(), \
             pg_advisory_xact_lock_shared({key}) AS {marker}"
        );
        let answer = read(&c, protocol, &sql);
        tokio::pin!(answer);
        let (at, pid) = tokio::select! {
            a = &mut answer => panic!("{what}: the read ended before it was killed (not on a replica?): {a:?}"),
            found = backend_running(&holders, &marker, true) => {
                found.unwrap_or_else(|| panic!("{what}: no replica backend waits for the lock"))
            }
        };
        let killed = &cluster.replicas[at];
        // Free the lock on the other replica: the read is answered wherever
        // it runs again.
        holders[1 - at]
            .execute("SELECT pg_advisory_unlock($1)", &[&key])
            .await
            .expect("unlock");
        sigkill(&holders[at], pid).await;
        let (port, standby) = tokio::time::timeout(WITHIN, answer)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {WITHIN:?}"))
            .unwrap_or_else(|e| panic!("{what}: the read failed instead of running again: {e}"));
        assert_ne!(port, killed.port, "{what}: answered by the killed server");
        assert_eq!(
            standby,
            port != cluster.primary.port,
            "{what}: a wrong answer"
        );
        still_connected(&c, &mut closed, &what).await;
        drop(holders);
        // Crash recovery over, streaming again.
        cluster_sh(&["start", killed.name]).await;
    }
    drop(c);
    assert_eq!(ended(closed).await, None, "the client was disconnected");
    proxy.stop().await;
}

/// Rows of 1 kB, far more of them than every buffer between a server and
/// this test holds: the server is still sending when it is killed, held
/// back by a client that stops reading after the first row. The series is
/// in the select list, so that it streams (in FROM it would be materialized
/// before the first row).
fn endless_read(marker: &str) -> String {
    format!(
        "/* pgswitch:replica */ SELECT inet_server_port() AS port, repeat('x', 1000) AS {marker}, \
         generate_series(1, 10000000) AS n"
    )
}

/// Kills the backend on the replica at `port` that runs the statement with
/// `marker`; never a primary's.
async fn kill_serving(cluster: &Cluster, port: i32, marker: &str, what: &str) -> Node {
    let Some(node) = cluster.replicas.iter().find(|n| n.port == port) else {
        panic!("{what}: the read ran on port {port}, not on a replica; nothing was killed");
    };
    let su = [superuser_on(node).await];
    let Some((_, pid)) = backend_running(&su, marker, false).await else {
        panic!("{what}: its backend is not in pg_stat_activity");
    };
    sigkill(&su[0], pid).await;
    node.clone()
}

/// Reads the rest of a result.
async fn drain<T>(
    rows: impl Stream<Item = Result<T, tokio_postgres::Error>>,
) -> Result<u64, tokio_postgres::Error> {
    pin_mut!(rows);
    let mut n = 0;
    while let Some(r) = rows.next().await {
        r?;
        n += 1;
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_replica_backend_is_killed_mid_reply_gets_a_clean_error() {
    let _outage = OUTAGE.lock().await;
    let cluster = Cluster::checked().await;
    let replica_ports = cluster.replica_ports();
    let _restart = Outage::of(&["replica1", "replica2"]);
    let proxy = Proxy::start(crash_config()).await;
    let probe = proxy.client().await;
    let (c, mut closed) = connect_watched(&proxy.url()).await;
    for (i, protocol) in [Protocol::Simple, Protocol::Extended]
        .into_iter()
        .enumerate()
    {
        let what = format!("{protocol:?} read killed mid-reply");
        assert!(
            all_serve(&probe, &replica_ports).await,
            "{what}: the replicas are not both in rotation"
        );
        let marker = format!("killed_streaming_{}_{i}", std::process::id());
        let sql = endless_read(&marker);
        // The first row reaches the client; then its server dies.
        let (killed, rest) = match protocol {
            Protocol::Simple => {
                let rows = c.simple_query_raw(&sql).await.expect("send");
                pin_mut!(rows);
                let port = loop {
                    match rows.next().await {
                        Some(Ok(SimpleQueryMessage::Row(r))) => {
                            break r
                                .get(0)
                                .and_then(|p| p.parse::<i32>().ok())
                                .expect("a port")
                        }
                        Some(Ok(_)) => continue,
                        other => panic!("{what}: no first row: {other:?}"),
                    }
                };
                let killed = kill_serving(&cluster, port, &marker, &what).await;
                (killed, tokio::time::timeout(WITHIN, drain(rows)).await)
            }
            _ => {
                let none = std::iter::empty::<(i32, Type)>();
                let rows = c.query_typed_raw(&sql, none).await.expect("send");
                pin_mut!(rows);
                let port: i32 = match rows.next().await {
                    Some(Ok(r)) => r.get(0),
                    other => panic!("{what}: no first row: {other:?}"),
                };
                let killed = kill_serving(&cluster, port, &marker, &what).await;
                (killed, tokio::time::timeout(WITHIN, drain(rows)).await)
            }
        };
        let e = match rest {
            Err(_) => panic!("{what}: the result neither ended nor failed within {WITHIN:?}"),
            Ok(Ok(n)) => panic!("{what}: the result ended normally after {n} more rows"),
            Ok(Err(e)) => e,
        };
        let Some(db) = e.as_db_error() else {
            panic!("{what}: not an ErrorResponse: {e}");
        };
        assert_eq!(
            (db.severity(), db.code().code()),
            ("ERROR", "08006"),
            "{what}: {}",
            describe(&e)
        );
        assert!(
            db.message().contains(&killed.addr),
            "{what}: the error does not name {}: {}",
            killed.addr,
            db.message()
        );
        still_connected(&c, &mut closed, &what).await;
        cluster_sh(&["start", killed.name]).await;
    }
    drop(c);
    assert_eq!(ended(closed).await, None, "the client was disconnected");
    proxy.stop().await;
}

/// A replica backend terminated after it produced its first rows but before
/// the end of its reply: Postgres sends those rows with the FATAL, so the
/// client has seen nothing and the read runs again on another server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_terminated_after_its_first_rows_runs_again_elsewhere() {
    let _outage = OUTAGE.lock().await;
    let cluster = Cluster::checked().await;
    let proxy = Proxy::start(crash_config()).await;
    let probe = proxy.client().await;
    assert!(
        all_serve(&probe, &cluster.replica_ports()).await,
        "the replicas are not both in rotation"
    );
    let (c, mut closed) = connect_watched(&proxy.url()).await;
    let supers = [
        superuser_on(&cluster.replicas[0]).await,
        superuser_on(&cluster.replicas[1]).await,
    ];
    for protocol in [Protocol::Simple, Protocol::Extended] {
        let what = format!("{protocol:?} read terminated after its first rows");
        let marker = format!("first_rows_{}_{protocol:?}", std::process::id());
        // Row 1 at once; row 2 after a long sleep, on a standby only.
        let sql = format!(
            "/* pgswitch:replica */ SELECT inet_server_port(), pg_is_in_recovery() AS {marker} \
             UNION ALL SELECT inet_server_port(), pg_is_in_recovery() \
             FROM pg_sleep(CASE WHEN pg_is_in_recovery() THEN 60 ELSE 0 END)"
        );
        let answer = read(&c, protocol, &sql);
        tokio::pin!(answer);
        let (at, pid) = tokio::select! {
            a = &mut answer => panic!("{what}: ended before it was terminated: {a:?}"),
            found = backend_running(&supers, &marker, false) => {
                found.unwrap_or_else(|| panic!("{what}: no replica backend runs it"))
            }
        };
        let terminated: bool = supers[at]
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(terminated, "{what}: not terminated");
        let (port, standby) = tokio::time::timeout(WITHIN, answer)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer within {WITHIN:?}"))
            .unwrap_or_else(|e| panic!("{what}: the read failed instead of running again: {e}"));
        assert_eq!(
            port, cluster.primary.port,
            "{what}: run again on the primary"
        );
        assert!(!standby, "{what}");
        still_connected(&c, &mut closed, &what).await;
    }
    drop((c, probe));
    assert_eq!(ended(closed).await, None, "the client was disconnected");
    proxy.stop().await;
}
