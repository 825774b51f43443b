//! Server health and replica lag, watched from the side: one probe
//! connection per server (tokio-postgres), polled at a fixed interval. A
//! replica is in rotation when it answers, is still in recovery (not
//! promoted), and has replayed the primary's WAL to within `max_lag_bytes`.
//! The latest snapshot is published on a `watch` channel for the router.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ServerAddr;

/// What the monitor knows about one replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    pub addr: Arc<ServerAddr>,
    pub in_rotation: bool,
    /// Why it is (not) in rotation, for logs and the admin console.
    pub why: String,
    pub replay_lsn: Option<u64>,
    pub lag_bytes: Option<u64>,
    /// Age of the oldest WAL the replica has not replayed (zero when it has
    /// replayed everything the primary had written at the last check).
    pub lag_time: Option<Duration>,
}

/// One round of checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The primary's current WAL position; `None` if it did not answer.
    pub primary_lsn: Option<u64>,
    /// When that position was asked for (read-your-writes compares it with
    /// a client's last write).
    pub primary_at: Option<std::time::Instant>,
    /// The primary reports it is in recovery: writes must not go there.
    pub primary_in_recovery: bool,
    /// Why the primary did not answer, if it did not.
    pub primary_error: Option<String>,
    pub replicas: Vec<ReplicaStatus>,
}

/// Settings of the monitor.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub primary: ServerAddr,
    pub replicas: Vec<ServerAddr>,
    /// (user, password, database) for the probe connections.
    pub login: (String, Option<String>, String),
    pub interval: Duration,
    pub connect_timeout: Duration,
    pub max_lag_bytes: u64,
    pub max_lag_time: Option<Duration>,
}

/// The primary's recent WAL positions, to tell how old a replica's lag is:
/// a replica at position `r` has been missing WAL since the first sample
/// past `r`. Works on an idle primary too, unlike replay timestamps.
#[derive(Debug, Default)]
struct WalHistory {
    samples: std::collections::VecDeque<(Instant, u64)>,
}

/// Samples kept: about 17 minutes at the default 250 ms interval.
const HISTORY: usize = 4096;

impl WalHistory {
    fn record(&mut self, at: Instant, lsn: u64) {
        if self.samples.back().is_some_and(|&(_, last)| last == lsn) {
            return; // Only advances matter.
        }
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back((at, lsn));
    }

    /// How long WAL past `replay` has existed, as of `now`.
    fn lag(&self, replay: u64, now: Instant) -> Duration {
        match self.samples.iter().find(|&&(_, lsn)| lsn > replay) {
            Some(&(at, _)) => now.saturating_duration_since(at),
            None => Duration::ZERO,
        }
    }
}

/// Parses a `pg_lsn` text (`16/B374D848`) into a byte position.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// A probe connection that reconnects on the next round after a failure.
struct Probe {
    addr: Arc<ServerAddr>,
    client: Option<tokio_postgres::Client>,
}

impl Probe {
    async fn query(
        &mut self,
        cfg: &MonitorConfig,
        sql: &str,
    ) -> Result<tokio_postgres::Row, String> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(self.connect(cfg).await?);
        }
        let Some(client) = self.client.as_ref() else {
            return Err("not connected".into());
        };
        let r = tokio::time::timeout(cfg.connect_timeout, client.query_one(sql, &[])).await;
        match r {
            Ok(Ok(row)) => Ok(row),
            Ok(Err(e)) => {
                self.client = None;
                Err(crate::net::client::describe(&e))
            }
            Err(_) => {
                self.client = None;
                Err(format!("no answer within {:?}", cfg.connect_timeout))
            }
        }
    }

    async fn connect(&self, cfg: &MonitorConfig) -> Result<tokio_postgres::Client, String> {
        let login = (
            cfg.login.0.as_str(),
            cfg.login.1.as_deref(),
            cfg.login.2.as_str(),
        );
        let timeout = cfg.connect_timeout;
        crate::net::client::connect(&self.addr, login, "pgswitch-monitor", timeout).await
    }
}

/// Runs the monitor until `stop`; the receiver always holds the latest
/// snapshot.
pub fn spawn(
    cfg: MonitorConfig,
    stop: CancellationToken,
) -> (watch::Receiver<Snapshot>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Snapshot::default());
    let task = tokio::spawn(async move {
        let mut primary = Probe {
            addr: Arc::new(cfg.primary.clone()),
            client: None,
        };
        let mut replicas: Vec<Probe> = cfg
            .replicas
            .iter()
            .map(|a| Probe {
                addr: Arc::new(a.clone()),
                client: None,
            })
            .collect();
        let mut history = WalHistory::default();
        let mut tick = tokio::time::interval(cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let snapshot = round(&cfg, &mut primary, &mut replicas, &mut history).await;
            log_changes(&cfg.primary, &tx.borrow(), &snapshot);
            tx.send_replace(snapshot);
        }
    });
    (rx, task)
}

/// Logs what changed since the last round (not every round: a primary in
/// recovery or a replica out of rotation is reported once, and again when
/// it recovers).
fn log_changes(primary: &ServerAddr, prev: &Snapshot, next: &Snapshot) {
    match (&prev.primary_error, &next.primary_error) {
        (None, Some(e)) => {
            tracing::warn!(server = %primary, error = %e, "primary health check failed")
        }
        (Some(_), None) => tracing::info!(server = %primary, "primary answers health checks again"),
        _ => {}
    }
    match (prev.primary_in_recovery, next.primary_in_recovery) {
        (false, true) => {
            tracing::error!(server = %primary, "the primary reports it is in recovery (demoted?); writes are refused")
        }
        (true, false) => {
            tracing::info!(server = %primary, "the primary is out of recovery; writes are accepted again")
        }
        _ => {}
    }
    for r in &next.replicas {
        let before = prev.replicas.iter().find(|p| p.addr == r.addr);
        // The first round starts from nothing: report only replicas out.
        let was_in = before.is_none_or(|p| p.in_rotation);
        match (was_in, r.in_rotation) {
            (true, false) => {
                tracing::warn!(replica = %r.addr, why = %r.why, "replica out of rotation")
            }
            (false, true) => tracing::info!(replica = %r.addr, "replica back in rotation"),
            _ => {}
        }
    }
}

async fn round(
    cfg: &MonitorConfig,
    primary: &mut Probe,
    replicas: &mut [Probe],
    history: &mut WalHistory,
) -> Snapshot {
    let mut snap = Snapshot::default();
    let asked = Instant::now();
    match primary
        .query(
            cfg,
            // The insert position covers every commit record already
            // written, even with synchronous_commit = off (the write
            // position may still be behind it). It fails during recovery,
            // and a demoted primary must still say that it is in recovery.
            "SELECT pg_is_in_recovery(), (CASE WHEN pg_is_in_recovery() \
             THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END)::text",
        )
        .await
    {
        Ok(row) => {
            snap.primary_in_recovery = row.get(0);
            snap.primary_lsn = parse_lsn(row.get(1));
            snap.primary_at = Some(asked);
            if let Some(lsn) = snap.primary_lsn {
                history.record(asked, lsn);
            }
        }
        Err(e) => snap.primary_error = Some(e),
    }
    for probe in replicas.iter_mut() {
        let status = match probe
            .query(
                cfg,
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text",
            )
            .await
        {
            Err(e) => ReplicaStatus {
                addr: probe.addr.clone(),
                in_rotation: false,
                why: format!("unreachable: {e}"),
                replay_lsn: None,
                lag_bytes: None,
                lag_time: None,
            },
            Ok(row) => {
                let in_recovery: bool = row.get(0);
                let replay = row.get::<_, Option<&str>>(1).and_then(parse_lsn);
                let lag = match (snap.primary_lsn, replay) {
                    (Some(p), Some(r)) => Some(p.saturating_sub(r)),
                    _ => None,
                };
                let lag_time = match (snap.primary_lsn, replay) {
                    (Some(_), Some(r)) => Some(history.lag(r, Instant::now())),
                    _ => None,
                };
                let too_old = lag_time.filter(|t| cfg.max_lag_time.is_some_and(|max| *t > max));
                let (in_rotation, why) = match (in_recovery, lag) {
                    (false, _) => (false, "not in recovery (promoted?)".to_owned()),
                    (true, Some(l)) if l > cfg.max_lag_bytes => (
                        false,
                        format!(
                            "lagging {l} bytes behind (max_replica_lag_bytes {})",
                            cfg.max_lag_bytes
                        ),
                    ),
                    (true, Some(_)) if too_old.is_some() => (
                        false,
                        format!(
                            "lagging {:?} behind (max_replica_lag {:?})",
                            too_old.unwrap_or_default(),
                            cfg.max_lag_time.unwrap_or_default()
                        ),
                    ),
                    (true, Some(_)) => (true, "healthy".to_owned()),
                    (true, None) => (false, "lag unknown (primary did not answer)".to_owned()),
                };
                ReplicaStatus {
                    addr: probe.addr.clone(),
                    in_rotation,
                    why,
                    replay_lsn: replay,
                    lag_bytes: lag,
                    lag_time,
                }
            }
        };
        snap.replicas.push(status);
    }
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(parse_lsn("1/xyz"), None);
    }

    #[test]
    fn lag_time_is_the_age_of_the_oldest_unreplayed_wal() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut h = WalHistory::default();
        h.record(t0, 100);
        h.record(t0 + s(1), 100); // no advance: not recorded
        h.record(t0 + s(2), 200);
        h.record(t0 + s(3), 300);
        let now = t0 + s(5);
        assert_eq!(h.lag(300, now), Duration::ZERO, "caught up");
        assert_eq!(h.lag(250, now), s(2), "missing WAL written at t0+3");
        assert_eq!(h.lag(150, now), s(3), "missing WAL written at t0+2");
        assert_eq!(h.lag(50, now), s(5), "behind the whole history");
    }
}
