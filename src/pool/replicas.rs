//! The replica side of a `PoolSet`: one pool per replica, the health
//! monitor, and the choice of replica for a read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::health::Snapshot;
use super::watch::Watch;
use super::{Pool, Which};
use crate::config::{LoadBalancing, PrimaryReads, Replica, Routing};

/// What a client's next read must see of its own writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fence {
    /// Nothing (no write yet, or eventual consistency).
    #[default]
    None,
    /// A write ended at this moment; its WAL position is not known yet.
    After(Instant),
    /// The replica must have replayed up to here.
    Lsn(u64),
}

/// The server for a read, as far as the replicas are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// This server (a replica, or the primary with `primary_reads = always`).
    Server(Which),
    /// Replicas are in rotation, but none has replayed the client's last
    /// write yet.
    Behind,
    /// No replica is in rotation (or every one was tried).
    NoReplica,
}

pub struct Replicas {
    pools: Vec<Pool>,
    weights: Vec<u32>,
    balancing: LoadBalancing,
    primary_reads: PrimaryReads,
    /// Round-robin position (and the tie-breaker of least-outstanding).
    turn: AtomicUsize,
    /// The database's health monitor and catalog, shared with its other
    /// pools (see `watch`).
    watch: Arc<Watch>,
}

impl Replicas {
    /// The replica side of a pool, on the database's shared `watch`.
    pub fn new(pools: Vec<Pool>, replicas: &[Replica], r: &Routing, watch: Arc<Watch>) -> Self {
        Replicas {
            pools,
            weights: replicas.iter().map(|r| r.weight.max(1)).collect(),
            balancing: r.load_balancing,
            primary_reads: r.primary_reads,
            turn: AtomicUsize::new(0),
            watch,
        }
    }

    /// The database's router (shared by its pools).
    pub fn router(&self) -> &Arc<crate::router::Router> {
        &self.watch.router
    }

    pub fn pool(&self, i: usize) -> Option<&Pool> {
        self.pools.get(i)
    }

    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The latest health snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.watch.health.borrow().clone()
    }

    /// The primary reports it is in recovery: writes must not go there.
    pub fn primary_in_recovery(&self) -> bool {
        self.watch.health.borrow().primary_in_recovery
    }

    /// Resolves at the monitor's next round.
    pub async fn next_round(&self) {
        let mut rx = self.watch.health.clone();
        rx.borrow_and_update();
        let _ = rx.changed().await;
    }

    /// The server for a read: among the replicas in rotation that have
    /// replayed the client's last write (and not in `tried`, a bit per
    /// replica), the least busy for its weight or the next in turn. With
    /// `primary_reads = always` the primary competes too.
    pub fn pick(&self, fence: &mut Fence, primary: &Pool, tried: u64) -> Pick {
        let snap = self.watch.health.borrow();
        // Read-your-writes: the first primary WAL position read after the
        // client's write covers it; from then on that position is the fence.
        let mut fenced_out = false;
        if let Fence::After(w) = *fence {
            match (snap.primary_at, snap.primary_lsn) {
                (Some(at), Some(lsn)) if at > w => *fence = Fence::Lsn(lsn),
                _ => fenced_out = true,
            }
        }
        let need = match *fence {
            Fence::Lsn(n) => Some(n),
            _ => None,
        };
        let mut rotation = 0;
        // On the stack for up to 8 (a read must not allocate).
        let mut candidates: smallvec::SmallVec<[(Which, &Pool, u32); 8]> = Default::default();
        for (i, r) in snap.replicas.iter().enumerate() {
            let Some(pool) = self.pools.get(i) else { break };
            if !r.in_rotation || tried & (1 << i) != 0 {
                continue;
            }
            rotation += 1;
            let caught_up = need.is_none_or(|n| r.replay_lsn.is_some_and(|lsn| lsn >= n));
            if caught_up && !fenced_out {
                candidates.push((Which::Replica(i), pool, self.weights[i]));
            }
        }
        if self.primary_reads == PrimaryReads::Always {
            candidates.push((Which::Primary, primary, 1));
        }
        if candidates.is_empty() {
            return if rotation > 0 {
                Pick::Behind
            } else {
                Pick::NoReplica
            };
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let chosen = match self.balancing {
            LoadBalancing::RoundRobin => {
                let total: u64 = candidates.iter().map(|c| u64::from(c.2)).sum();
                let mut slot = turn as u64 % total.max(1);
                candidates
                    .iter()
                    .find(|c| {
                        let hit = slot < u64::from(c.2);
                        slot = slot.saturating_sub(u64::from(c.2));
                        hit
                    })
                    .unwrap_or(&candidates[0])
            }
            LoadBalancing::LeastOutstanding => {
                // Fewest in use per unit of weight; ties go round in turn so
                // that a quiet system still spreads its reads.
                let busy = |c: &(Which, &Pool, u32)| c.1.in_use() as u64;
                let len = candidates.len();
                (0..len)
                    .map(|k| &candidates[(turn + k) % len])
                    .min_by(|a, b| (busy(a) * u64::from(b.2)).cmp(&(busy(b) * u64::from(a.2))))
                    .unwrap_or(&candidates[0])
            }
        };
        Pick::Server(chosen.0)
    }

    pub fn close(&self) {
        for p in &self.pools {
            p.close();
        }
    }
}
