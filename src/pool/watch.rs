//! The health monitor and the function catalog of one database's servers,
//! shared by every (database, user) pool of it: one probe connection per
//! server and one catalog reader for the database, however many users the
//! config lists. They log in as the database's monitor user (`login`) and
//! stop when the last pool using them is gone (or at shutdown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::health::{self, MonitorConfig, Snapshot};
use crate::config::{Replica, Routing, ServerAddr};
use crate::router::{catalog, FunctionPolicy, Router};

/// How often the function catalog is re-read from the primary.
const CATALOG_REFRESH: Duration = Duration::from_secs(60);
/// How long after DDL went through the proxy the catalog is re-read.
const AFTER_DDL: Duration = Duration::from_secs(1);

/// (user, password, database) the monitor and catalog reader log in with.
pub type Login = (String, Option<String>, String);

pub struct Watch {
    pub(super) health: watch::Receiver<Snapshot>,
    /// The database's router, whose catalog this watch reads.
    pub(super) router: Arc<Router>,
    stop: CancellationToken,
}

impl Watch {
    /// Starts the monitor of `primary` and `replicas` and the catalog
    /// reader of `primary`.
    fn start(
        primary: &ServerAddr,
        replicas: &[Replica],
        login: Login,
        connect_timeout: Duration,
        r: &Routing,
    ) -> Watch {
        let stop = CancellationToken::new();
        let cfg = MonitorConfig {
            primary: primary.clone(),
            replicas: replicas.iter().map(|r| r.addr.clone()).collect(),
            login: login.clone(),
            interval: r.health_check_interval,
            connect_timeout,
            max_lag_bytes: r.max_replica_lag_bytes,
            max_lag_time: r.max_replica_lag,
        };
        let (health, _task) = health::spawn(cfg, stop.clone());
        let router = Router::new(&r.read_only_functions);
        tokio::spawn(refresh_catalog(
            primary.clone(),
            login,
            r.read_only_functions.clone(),
            router.clone(),
            stop.clone(),
        ));
        Watch {
            health,
            router,
            stop,
        }
    }
}

impl Drop for Watch {
    /// The last pool of the database let go (e.g. replaced by a RELOAD).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The running watches, one per database and server set.
#[derive(Default)]
pub struct Watches {
    running: Mutex<HashMap<String, Weak<Watch>>>,
}

impl Watches {
    /// The watch of `primary` and `replicas` as `login` sees them under
    /// these settings: the running one, or a new one.
    pub fn get(
        &self,
        primary: &ServerAddr,
        replicas: &[Replica],
        login: Login,
        connect_timeout: Duration,
        r: &Routing,
    ) -> Arc<Watch> {
        // Everything it was started from (kept in memory only: it holds a
        // password).
        let replicas_key: Vec<_> = replicas
            .iter()
            .map(|r| (r.addr.identity(), r.weight))
            .collect();
        let key = format!(
            "{:?}",
            (primary.identity(), replicas_key, &login, connect_timeout, r)
        );
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|_, w| w.strong_count() > 0);
        if let Some(w) = running.get(&key).and_then(Weak::upgrade) {
            return w;
        }
        let w = Arc::new(Watch::start(primary, replicas, login, connect_timeout, r));
        running.insert(key, Arc::downgrade(&w));
        w
    }

    /// Shutdown: every watch stops now.
    pub fn close(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for w in running.values().filter_map(Weak::upgrade) {
            w.router.clear();
            w.stop.cancel();
        }
    }
}

/// Loads function volatility from the primary now and every
/// `CATALOG_REFRESH`; until the first load, unknown functions go to the
/// primary.
async fn refresh_catalog(
    addr: ServerAddr,
    login: Login,
    read_only: Vec<String>,
    router: Arc<Router>,
    stop: CancellationToken,
) {
    loop {
        let user = (login.0.as_str(), login.1.as_deref(), login.2.as_str());
        let timeout = Duration::from_secs(5);
        match crate::net::client::connect(&addr, user, "pgswitch-catalog", timeout).await {
            Ok(client) => {
                let mut policy = FunctionPolicy::new(read_only.iter().cloned());
                match catalog::load(&client, &mut policy).await {
                    Ok(n) => {
                        router.set_functions(policy);
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
            _ = router.catalog_change() => {
                // The DDL was seen before it ran: give it time to commit.
                tokio::select! {
                    _ = tokio::time::sleep(AFTER_DDL) => {}
                    _ = stop.cancelled() => return,
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}
