//! The state every session, the admin console, the operations endpoints
//! and RELOAD share: below all of them (they import it; it imports none of
//! them), built once by `app::App::bind`.

use std::sync::atomic::AtomicUsize;
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
    pub config: ArcSwap<Config>,
    pub pools: Pools,
    pub cancels: CancelRegistry,
    /// Client connections past their startup packet, against max_client_conn.
    pub clients: AtomicUsize,
    /// Graceful: stop accepting; sessions end at their next idle point.
    pub shutdown: CancellationToken,
    /// Forced: sessions end now.
    pub hard_shutdown: CancellationToken,
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
            config: ArcSwap::from_pointee(config),
            clients: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            hard_shutdown: CancellationToken::new(),
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
