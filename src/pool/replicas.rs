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

/// The primary's bit among `pick`'s candidates (replicas take the bits
/// below it).
const PRIMARY_BIT: usize = 63;

/// The set bits of `mask`, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = mask.trailing_zeros() as usize;
        mask &= mask.wrapping_sub(1);
        (i < 64).then_some(i)
    })
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
        // The candidates, a bit each (a read must not allocate): replica
        // `i` is bit `i`, the primary the last bit.
        let mut candidates = 0u64;
        for (i, r) in snap.replicas.iter().enumerate().take(PRIMARY_BIT) {
            if i >= self.pools.len() {
                break;
            }
            if !r.in_rotation || tried & (1 << i) != 0 {
                continue;
            }
            rotation += 1;
            let caught_up = need.is_none_or(|n| r.replay_lsn.is_some_and(|lsn| lsn >= n));
            if caught_up && !fenced_out {
                candidates |= 1 << i;
            }
        }
        drop(snap);
        if self.primary_reads == PrimaryReads::Always {
            candidates |= 1 << PRIMARY_BIT;
        }
        if candidates == 0 {
            return if rotation > 0 {
                Pick::Behind
            } else {
                Pick::NoReplica
            };
        }
        // (which, weight) of candidate bit `i`.
        let weight = |i: usize| match i {
            PRIMARY_BIT => 1,
            i => u64::from(self.weights[i]),
        };
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let chosen = match self.balancing {
            LoadBalancing::RoundRobin => {
                let total: u64 = bits(candidates).map(weight).sum();
                let mut slot = turn as u64 % total.max(1);
                bits(candidates)
                    .find(|&i| {
                        let hit = slot < weight(i);
                        slot = slot.saturating_sub(weight(i));
                        hit
                    })
                    .unwrap_or(candidates.trailing_zeros() as usize)
            }
            LoadBalancing::LeastOutstanding => {
                // Fewest in use per unit of weight; ties go round in turn so
                // that a quiet system still spreads its reads.
                let busy = |i: usize| match i {
                    PRIMARY_BIT => primary.in_use() as u64,
                    i => self.pools[i].in_use() as u64,
                };
                let n = candidates.count_ones() as usize;
                bits(candidates)
                    .chain(bits(candidates))
                    .skip(turn % n)
                    .take(n)
                    .map(|i| (i, busy(i), weight(i)))
                    .min_by(|a, b| (a.1 * b.2).cmp(&(b.1 * a.2)))
                    .map_or(0, |c| c.0)
            }
        };
        Pick::Server(match chosen {
            PRIMARY_BIT => Which::Primary,
            i => Which::Replica(i),
        })
    }

    pub fn close(&self) {
        for p in &self.pools {
            p.close();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bits_are_the_set_bits_lowest_first() {
        assert_eq!(super::bits(0).count(), 0);
        let got: Vec<usize> = super::bits(0b1011 | 1 << 63).collect();
        assert_eq!(got, [0, 1, 3, 63]);
    }
}
