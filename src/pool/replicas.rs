//! The replica side of a `PoolSet`: one pool per replica, the health
//! monitor, and the choice of replica for a read.

use std::time::Instant;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::health::{self, MonitorConfig, Snapshot};
use super::{Pool, Target};
use crate::config::{General, ServerAddr};
use crate::router::{catalog, Decision, FunctionPolicy, RouteCache, RouterError};

/// How often the function catalog is re-read from the primary.
const CATALOG_REFRESH: Duration = Duration::from_secs(60);

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

pub struct Replicas {
    pools: Vec<Pool>,
    health: watch::Receiver<Snapshot>,
    stop: CancellationToken,
    functions: Arc<RwLock<FunctionPolicy>>,
    cache: Arc<RouteCache>,
}

impl Replicas {
    /// Starts the monitor for the primary and these replicas, logging in as
    /// the pool's own server user.
    pub fn start(pools: Vec<Pool>, primary: &Target, addrs: &[ServerAddr], g: &General) -> Self {
        let stop = CancellationToken::new();
        let cfg = MonitorConfig {
            primary: primary.addr.clone(),
            replicas: addrs.to_vec(),
            login: (
                primary.user.clone(),
                primary.password.clone(),
                primary.database.clone(),
            ),
            interval: g.health_check_interval,
            connect_timeout: g.connect_timeout,
            max_lag_bytes: g.max_replica_lag_bytes,
        };
        let login = cfg.login.clone();
        let (health, _task) = health::spawn(cfg, stop.clone());
        let functions = Arc::new(RwLock::new(FunctionPolicy::new([])));
        let cache = Arc::new(RouteCache::new(10_000));
        tokio::spawn(refresh_catalog(
            primary.addr.clone(),
            login,
            functions.clone(),
            cache.clone(),
            stop.clone(),
        ));
        Replicas {
            pools,
            health,
            stop,
            functions,
            cache,
        }
    }

    /// The routing decision for a statement (cached by text).
    pub fn route(&self, sql: &str) -> Result<Decision, RouterError> {
        let functions = self.functions.read().unwrap_or_else(|p| p.into_inner());
        self.cache.route(sql, &functions)
    }

    pub fn pool(&self, i: usize) -> Option<&Pool> {
        self.pools.get(i)
    }

    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The replica for a read: in rotation, past the client's write
    /// fence, and with the fewest connections in use. `None` means "use the
    /// primary".
    pub fn pick(&self, fence: &mut Fence) -> Option<usize> {
        let snap = self.health.borrow();
        // Read-your-writes: the first primary WAL position read after the
        // client's write covers it; from then on that position is the fence.
        if let Fence::After(w) = *fence {
            match (snap.primary_at, snap.primary_lsn) {
                (Some(at), Some(lsn)) if at > w => *fence = Fence::Lsn(lsn),
                _ => return None,
            }
        }
        let need = match *fence {
            Fence::Lsn(n) => Some(n),
            _ => None,
        };
        snap.replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| r.in_rotation)
            .filter(|(_, r)| need.is_none_or(|n| r.replay_lsn.is_some_and(|lsn| lsn >= n)))
            .filter_map(|(i, _)| self.pools.get(i).map(|p| (i, p.status())))
            .min_by_key(|(_, s)| s.size - s.available)
            .map(|(i, _)| i)
    }

    pub fn close(&self) {
        self.cache.clear();
        self.stop.cancel();
        for p in &self.pools {
            p.close();
        }
    }
}

/// Loads function volatility from the primary now and every
/// `CATALOG_REFRESH`; until the first load, unknown functions go to the
/// primary.
async fn refresh_catalog(
    addr: ServerAddr,
    login: (String, Option<String>, String),
    functions: Arc<RwLock<FunctionPolicy>>,
    cache: Arc<RouteCache>,
    stop: CancellationToken,
) {
    loop {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&addr.host)
            .port(addr.port)
            .user(&login.0)
            .dbname(&login.2);
        pg.application_name("pgswitch-catalog")
            .connect_timeout(Duration::from_secs(5));
        if let Some(p) = &login.1 {
            pg.password(p);
        }
        match pg.connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let mut policy = FunctionPolicy::new([]);
                match catalog::load(&client, &mut policy).await {
                    Ok(n) => {
                        *functions.write().unwrap_or_else(|p| p.into_inner()) = policy;
                        cache.clear();
                        tracing::debug!(server = %addr, functions = n, "function catalog loaded");
                    }
                    Err(e) => {
                        tracing::warn!(server = %addr, error = %e, "could not read the function catalog")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(server = %addr, error = %e, "could not read the function catalog")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(CATALOG_REFRESH) => {}
            _ = stop.cancelled() => return,
        }
    }
}
