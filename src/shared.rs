//! The state every session, the admin console, the operations endpoints
//! and RELOAD share: below all of them (they import it; it imports none of
//! them), built once by `app::App::bind`.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pool::pause::PauseControl;
use crate::pool::Pools;
use crate::session::cancel::CancelRegistry;
use crate::stats::QueryStats;

/// State every session shares.
pub struct Shared {
    /// The running configuration; RELOAD swaps it (see `reload`).
    pub config: CurrentConfig,
    pub pools: Pools,
    pub cancels: CancelRegistry,
    /// Client connections past their startup packet, against max_client_conn.
    pub clients: AtomicUsize,
    /// Graceful: stop accepting; sessions end at their next idle point.
    /// Cancelled by `stop`.
    pub shutdown: CancellationToken,
    /// Forced: sessions end now. Cancelled by `stop_now`.
    pub hard_shutdown: CancellationToken,
    /// Which of the two has begun, readable without a lock (a token's own
    /// check takes its lock, which every session would share): set before
    /// the token is cancelled, so a session its cancellation wakes sees it.
    stopping: AtomicU8,
    /// Notified (all waiters) after `stopping` changes (see
    /// `session::forward::stop`).
    pub stop_changed: tokio::sync::Notify,
    pub metrics: Arc<Metrics>,
    /// PAUSE / RESUME from the admin console.
    pub pause: PauseControl,
    /// Per-query statistics.
    pub queries: QueryStats,
    /// Named prepared statements, one copy each for every client.
    pub statements: crate::prepared::Interner,
    /// Server problems, logged at start, in summaries and at the end.
    pub incidents: Arc<crate::incidents::Incidents>,
    /// Users looked up with `auth_query`.
    pub lookups: crate::auth::lookup::Lookups,
    /// Clear-text passwords that passed (the serverless front).
    pub passwords: crate::auth::password::Passwords,
    /// The OTLP span exporter (`otlp_endpoint`), if on.
    pub traces: Option<Arc<crate::ops::traces::Traces>>,
}

impl Shared {
    /// The state for `config`, with no pools open yet.
    pub fn new(config: Config, traces: Option<Arc<crate::ops::traces::Traces>>) -> Shared {
        let metrics = Arc::new(Metrics::new());
        Shared {
            pools: Pools::new(metrics.clone()),
            cancels: CancelRegistry::new(config.general.instance_id),
            queries: QueryStats::new(config.general.query_stats_size, config.general.workers),
            config: CurrentConfig::new(config),
            clients: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            hard_shutdown: CancellationToken::new(),
            stopping: AtomicU8::new(Stopping::No as u8),
            stop_changed: tokio::sync::Notify::new(),
            pause: PauseControl::default(),
            statements: crate::prepared::Interner::new(metrics.prepared_bytes.clone()),
            incidents: Default::default(),
            lookups: Default::default(),
            passwords: Default::default(),
            traces,
            metrics,
        }
    }
}

/// Which shutdown has begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stopping {
    No = 0,
    /// A drain: no new clients, idle ones are closed.
    Graceful = 1,
    /// Everyone is closed.
    Hard = 2,
}

impl Shared {
    /// Begins a graceful shutdown.
    pub fn stop(&self) {
        self.stopping
            .fetch_max(Stopping::Graceful as u8, Ordering::SeqCst);
        self.stop_changed.notify_waiters();
        self.shutdown.cancel();
    }

    /// Closes every session now (the graceful shutdown has begun too).
    pub fn stop_now(&self) {
        self.stopping.store(Stopping::Hard as u8, Ordering::SeqCst);
        self.stop_changed.notify_waiters();
        self.shutdown.cancel();
        self.hard_shutdown.cancel();
    }

    /// Which shutdown has begun: one atomic load.
    pub fn stopping(&self) -> Stopping {
        match self.stopping.load(Ordering::Acquire) {
            0 => Stopping::No,
            1 => Stopping::Graceful,
            _ => Stopping::Hard,
        }
    }
}

/// Begins a graceful shutdown of one `App` from outside it (signals,
/// tests).
#[derive(Clone)]
pub struct StopHandle(pub(crate) Arc<Shared>);

impl StopHandle {
    pub fn cancel(&self) {
        self.0.stop();
    }
}

/// The running configuration: an `ArcSwap`, and the address of what it
/// holds for `ConfigCache`'s check.
pub struct CurrentConfig {
    swap: ArcSwap<Config>,
    at: AtomicUsize,
}

impl CurrentConfig {
    fn new(config: Config) -> CurrentConfig {
        let config = Arc::new(config);
        CurrentConfig {
            at: AtomicUsize::new(Arc::as_ptr(&config) as usize),
            swap: ArcSwap::new(config),
        }
    }

    /// For a moment's use (see `ArcSwap::load`).
    pub fn load(&self) -> arc_swap::Guard<Arc<Config>> {
        self.swap.load()
    }

    pub fn load_full(&self) -> Arc<Config> {
        self.swap.load_full()
    }

    /// RELOAD's swap.
    pub fn store(&self, config: Arc<Config>) {
        let at = Arc::as_ptr(&config) as usize;
        self.swap.store(config);
        self.at.store(at, Ordering::Release);
    }
}

/// A session's copy of the running configuration, read again only after
/// a RELOAD swapped it: one atomic load, where `ArcSwap::load` costs some
/// 50 instructions and the hot path asks several times per transaction.
/// (Only the address is compared: the copy held keeps its own address
/// from being reused.)
pub struct ConfigCache(Arc<Config>);

impl ConfigCache {
    pub fn new(current: &CurrentConfig) -> ConfigCache {
        ConfigCache(current.load_full())
    }

    #[inline]
    pub fn get(&mut self, current: &CurrentConfig) -> &Config {
        if current.at.load(Ordering::Acquire) != Arc::as_ptr(&self.0) as usize {
            self.0 = current.load_full();
        }
        &self.0
    }
}
