//! `max_server_connections`: how many connections this instance may open to
//! each server of a database, over all the database's (user) pools. The
//! instances behind one Service share the setting by dividing it: each gets
//! `max_server_connections / instances` (rounded down, at least 1), where
//! `instances` is configured or counted from the peers (see
//! `crate::net::peers`).
//!
//! A pool that needs a new connection while its server is at the share
//! closes an idle connection of another pool of the same server, or waits
//! (up to `query_wait_timeout`) for one to come back: a connection released
//! while someone waits is closed instead of kept idle ([`Permit::wanted`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::slots::WeakPool;

/// The share of one server of one database.
pub struct Limit {
    /// `database` at `host:port`, for messages.
    pub name: String,
    sem: Semaphore,
    share: Mutex<Share>,
    /// Creators waiting for a permit.
    waiting: AtomicUsize,
    /// Permits in use.
    used: AtomicUsize,
    /// The pools that take from this share, whose idle connections may be
    /// closed to make room.
    pools: Mutex<Vec<WeakPool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Share {
    total: usize,
    instances: usize,
    /// What this instance may open: `total / instances`, at least 1.
    mine: usize,
    /// Permits to forget as they come back, after the share shrank below
    /// what was in use.
    owed: usize,
}

/// The share was in use for the whole wait.
#[derive(Debug, Clone, thiserror::Error)]
#[error("timed out after {waited:?}: {name} is at its max_server_connections ({mine} for this instance: {total} shared by {instances} instance(s)), and no connection came free")]
pub struct AtLimit {
    pub name: String,
    pub mine: usize,
    pub total: usize,
    pub instances: usize,
    pub waited: Duration,
}

/// One connection's place in the share, given back when the connection is
/// dropped.
pub struct Permit(Arc<Limit>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::Relaxed);
        let mut share = self.0.share.lock().unwrap_or_else(|p| p.into_inner());
        match share.owed {
            0 => self.0.sem.add_permits(1),
            _ => share.owed -= 1,
        }
    }
}

impl Permit {
    /// Someone waits for a connection to this server: one coming back
    /// should be closed rather than kept idle.
    pub fn wanted(&self) -> bool {
        self.0.waiting.load(Ordering::Relaxed) > 0
    }
}

/// How a server is named in the shares: `host:port`.
pub fn server_key(addr: &crate::config::ServerAddr) -> String {
    format!("{}:{}", addr.host, addr.port)
}

fn mine(total: usize, instances: usize) -> usize {
    (total / instances.max(1)).max(1)
}

impl Limit {
    fn new(name: String, total: usize, instances: usize) -> Limit {
        let mine = mine(total, instances);
        Limit {
            name,
            sem: Semaphore::new(mine),
            share: Mutex::new(Share {
                total,
                instances,
                mine,
                owed: 0,
            }),
            waiting: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
            pools: Mutex::default(),
        }
    }

    /// This instance's share now.
    pub fn mine(&self) -> usize {
        self.share.lock().unwrap_or_else(|p| p.into_inner()).mine
    }

    /// Connections open under this share.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Applies a new total or instance count.
    fn resize(&self, total: usize, instances: usize) {
        let mut share = self.share.lock().unwrap_or_else(|p| p.into_inner());
        let new = mine(total, instances);
        if new > share.mine {
            let grow = new - share.mine;
            let repaid = grow.min(share.owed);
            share.owed -= repaid;
            self.sem.add_permits(grow - repaid);
        } else {
            let shrink = share.mine - new;
            let forgotten = self.sem.forget_permits(shrink);
            share.owed += shrink - forgotten;
        }
        *share = Share {
            total,
            instances,
            mine: new,
            owed: share.owed,
        };
    }

    /// Registers a pool that takes from this share, so that others can
    /// close its idle connections.
    pub fn add_pool(&self, pool: WeakPool) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|p| p.upgrade().is_some());
        pools.push(pool);
    }

    /// A place for a new connection: at once if the share has room, else
    /// after closing an idle connection of another pool, else when one
    /// comes back within `wait`.
    pub async fn acquire(self: &Arc<Self>, wait: Duration) -> Result<Permit, AtLimit> {
        let granted = || {
            self.used.fetch_add(1, Ordering::Relaxed);
            Permit(self.clone())
        };
        if let Ok(p) = self.sem.try_acquire() {
            p.forget();
            return Ok(granted());
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.close_an_idle_one();
        let got = tokio::time::timeout(wait, self.sem.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        match got {
            Ok(Ok(p)) => {
                p.forget();
                Ok(granted())
            }
            _ => {
                let share = *self.share.lock().unwrap_or_else(|p| p.into_inner());
                Err(AtLimit {
                    name: self.name.clone(),
                    mine: share.mine,
                    total: share.total,
                    instances: share.instances,
                    waited: wait,
                })
            }
        }
    }

    /// Closes one idle connection of any pool of this server (its permit
    /// comes back as it drops).
    fn close_an_idle_one(&self) {
        let pools: Vec<_> = {
            let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            pools.iter().filter_map(WeakPool::upgrade).collect()
        };
        for pool in pools {
            if pool.status().available == 0 {
                continue;
            }
            let mut closed = false;
            pool.retain(|_, _| {
                let keep = closed;
                closed = true;
                keep
            });
            if closed {
                return;
            }
        }
    }
}

/// Every share of this process, by (database, server).
#[derive(Default)]
pub struct Limits {
    shares: Mutex<HashMap<(String, String), Arc<Limit>>>,
    /// Instances counted from the peers (0: not counted yet, so 1).
    counted: AtomicUsize,
}

impl Limits {
    /// The share of `server` (its `host:port/db` identity) of `database`
    /// for a new pool, `None` without a limit.
    pub fn share(
        &self,
        database: &str,
        server: &str,
        total: usize,
        configured: Option<usize>,
    ) -> Option<Arc<Limit>> {
        if total == 0 {
            return None;
        }
        let instances = self.instances(configured);
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        let limit = shares
            .entry((database.to_owned(), server.to_owned()))
            .or_insert_with(|| {
                Arc::new(Limit::new(
                    format!("database {database} at {server}"),
                    total,
                    instances,
                ))
            });
        limit.resize(total, instances);
        Some(limit.clone())
    }

    fn instances(&self, configured: Option<usize>) -> usize {
        configured.unwrap_or_else(|| self.counted.load(Ordering::Relaxed).max(1))
    }

    /// Applies a new config (totals and `instances`); shares of databases
    /// it no longer limits are dropped (their pools keep theirs until they
    /// are rebuilt).
    pub fn reload(&self, cfg: &crate::config::Config) {
        let instances = self.instances(cfg.general.instances);
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        shares.retain(|(db, _), limit| {
            let total = cfg
                .database(db)
                .map_or(0, |d| cfg.max_server_connections(d));
            if total > 0 {
                limit.resize(total, instances);
            }
            total > 0
        });
    }

    /// The number of instances counted from the peers changed.
    pub fn set_counted(&self, n: usize, cfg: &crate::config::Config) {
        self.counted.store(n, Ordering::Relaxed);
        self.reload(cfg);
    }

    /// (name, this instance's share, in use) of every share.
    pub fn list(&self) -> Vec<(String, usize, usize)> {
        let shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = shares
            .values()
            .map(|l| (l.name.clone(), l.mine(), l.used()))
            .collect();
        out.sort();
        out
    }

    /// The share of `database` on `server`, if limited.
    pub fn get(&self, database: &str, server: &str) -> Option<Arc<Limit>> {
        let shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        shares
            .get(&(database.to_owned(), server.to_owned()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_divide_and_round_down_to_at_least_one() {
        assert_eq!(mine(100, 3), 33);
        assert_eq!(mine(10, 1), 10);
        assert_eq!(mine(2, 5), 1);
        assert_eq!(mine(7, 0), 7);
    }

    #[tokio::test]
    async fn a_shrunk_share_takes_back_permits_as_they_return() {
        let limit = Arc::new(Limit::new("db".into(), 4, 1));
        let wait = Duration::from_millis(1);
        let held: Vec<_> = futures_util::future::try_join_all((0..4).map(|_| limit.acquire(wait)))
            .await
            .unwrap();
        assert!(limit.acquire(wait).await.is_err(), "4 of 4 in use");
        limit.resize(4, 2);
        assert_eq!(limit.mine(), 2);
        let mut held = held;
        let kept = held.pop();
        drop(held);
        // 3 came back but 2 of them were owed: 1 still in use, 1 free.
        let one = limit.acquire(wait).await.expect("one place free");
        let e = limit.acquire(wait).await.err().expect("share of 2 full");
        assert_eq!((e.mine, e.total, e.instances), (2, 4, 2));
        drop(one);
        limit.resize(4, 1);
        let again: Vec<_> = futures_util::future::try_join_all((0..3).map(|_| limit.acquire(wait)))
            .await
            .expect("grown back to 4, 1 in use");
        assert_eq!(limit.used(), 4);
        drop(again);
        assert_eq!(limit.used(), 1);
        drop(kept);
        assert_eq!(limit.used(), 0);
    }
}
