//! Backend pools: one pool per (database, user) and server, lending out
//! [`Server`]s, whose drop is the single door back in ([`release`] cleans a
//! connection up first).
//!
//! - [`conn`]: one backend connection, its login and our own statements.
//! - [`slots`]: one server's pool, and the [`Server`] guard.
//! - [`manager`]: making a connection, and whether an idle one is reusable.
//! - [`params`]: ParameterStatus tracking and parameter sync.
//! - [`health`]: server health and replica lag.
//! - [`replicas`]: the replica pools, and which server serves a read.
//! - [`pause`]: PAUSE and RESUME.
//! - [`limit`]: `max_server_connections`, shared by a database's pools.

pub mod conn;
pub mod health;
pub mod limit;
pub mod manager;
pub mod params;
pub mod pause;
pub mod replicas;
pub mod slots;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use conn::{ConnState, ServerConn, ServerError, Target};
pub use manager::Manager;
pub use params::ParamSet;
pub use slots::{Pool, Server};

use crate::config::{Config, Database, User};
use crate::metrics::{Metrics, PoolMetrics};

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("timed out after {waited:?} waiting for a server connection in pool {pool} (pool_size {size}, all busy)")]
    WaitTimeout {
        pool: String,
        size: usize,
        waited: Duration,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("pool {0} is closed")]
    Closed(String),
    #[error(transparent)]
    AtLimit(limit::AtLimit),
}

/// The pools of one (database, user): the primary's and, with read
/// routing, one per replica plus the health monitor that says which are in
/// rotation.
pub struct PoolSet {
    /// `database/user`, for messages and metrics (shared with the
    /// cancel slots of its clients).
    pub name: Arc<str>,
    /// The database and user clients named.
    pub database: String,
    pub user: String,
    /// Everything but the size that this pool was built from; a RELOAD that
    /// changes it builds a new pool.
    spec: String,
    /// Replaced by a RELOAD: sessions move to the new pool at their next
    /// transaction.
    retired: std::sync::atomic::AtomicBool,
    /// A user looked up with `auth_query` (not in the config): what the
    /// pool was built for, so that a RELOAD can build it again.
    looked_up: Option<Box<User>>,
    pub primary: Pool,
    pub replicas: Option<replicas::Replicas>,
    /// The database's router (one per database, shared by its pools);
    /// `None` without read routing.
    pub router: Option<Arc<crate::router::Router>>,
    /// This pool's metric handles.
    pub stats: PoolMetrics,
    wait_timeout: Duration,
    /// The parameters the last client to log in was told, shared with the
    /// next whose are the same (see `share_params`).
    client_params: Mutex<Option<Arc<ParamSet>>>,
}

/// Which server of a `PoolSet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Primary,
    Replica(usize),
}

impl PoolSet {
    fn new(
        cfg: &Config,
        db: &Database,
        user: &User,
        metrics: &Metrics,
        watches: &watch::Watches,
        limits: &limit::Limits,
    ) -> Self {
        let g = &cfg.general;
        let size = cfg.pool_size(db, user);
        let total = cfg.max_server_connections(db);
        let pool = |addr: &crate::config::ServerAddr, target: Target| {
            let server = limit::server_key(addr);
            let limit = limits.share(&db.name, &server, total, g.instances);
            build_pool(target, cfg, size, limit)
        };
        let target = |addr: &crate::config::ServerAddr| Target {
            addr: addr.clone(),
            user: user.server_user.clone(),
            password: user.server_password.clone().or_else(|| {
                // The --primary URL's own credentials serve its own user
                // (not one looked up, who has keys of its own).
                (db.primary.user.as_deref() == Some(user.server_user.as_str())
                    && user.server_secret.is_none())
                .then(|| db.primary.password.clone())
                .flatten()
            }),
            secret: user.server_secret.clone(),
            database: addr.dbname.clone().unwrap_or_else(|| db.name.clone()),
            connect_timeout: g.connect_timeout,
        };
        let primary_target = target(&db.primary);
        let replicas = (g.routing.enabled && !db.replicas.is_empty()).then(|| {
            let pools = db
                .replicas
                .iter()
                .map(|r| pool(&r.addr, target(&r.addr)))
                .collect();
            let login = monitor_login(cfg, db);
            let timeout = g.connect_timeout;
            let w = watches.get(&db.primary, &db.replicas, login, timeout, &g.routing);
            replicas::Replicas::new(pools, &db.replicas, &g.routing, w)
        });
        let name = format!("{}/{}", db.name, user.name);
        PoolSet {
            stats: metrics.pool(&name),
            name: name.into(),
            database: db.name.clone(),
            user: user.name.clone(),
            spec: spec(cfg, db, user),
            retired: std::sync::atomic::AtomicBool::new(false),
            looked_up: user.server_secret.is_some().then(|| Box::new(user.clone())),
            primary: pool(&db.primary, primary_target),
            router: replicas.as_ref().map(|r| r.router().clone()),
            replicas,
            wait_timeout: g.query_wait_timeout,
            client_params: Default::default(),
        }
    }

    /// `params` as a client keeps them: the copy the previous client got
    /// when they are the same (clients of one application usually are), so
    /// that an idle client costs a pointer, not a copy.
    pub fn share_params(&self, params: ParamSet) -> Arc<ParamSet> {
        let mut last = self.client_params.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some(p) if **p == params => p.clone(),
            _ => last.insert(Arc::new(params)).clone(),
        }
    }

    /// The most connections per server (pool_size; a RELOAD may change it).
    pub fn max_size(&self) -> usize {
        self.primary.status().max_size
    }

    /// Replaced by a RELOAD (see `Pools::reload`).
    pub fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A primary server connection, waiting at most `query_wait_timeout`.
    pub async fn checkout(&self) -> Result<Server, CheckoutError> {
        self.checkout_on(Which::Primary).await
    }

    fn pool(&self, which: Which) -> &Pool {
        match (which, &self.replicas) {
            (Which::Replica(i), Some(r)) => r.pool(i).unwrap_or(&self.primary),
            _ => &self.primary,
        }
    }

    /// An idle connection of the chosen pool, if one is free now.
    pub fn try_checkout_on(&self, which: Which) -> Option<Server> {
        self.pool(which).try_get()
    }

    /// A server connection from the chosen pool.
    pub async fn checkout_on(&self, which: Which) -> Result<Server, CheckoutError> {
        let pool = self.pool(which);
        pool.get().await.map_err(|e| match e {
            slots::GetError::WaitTimeout => CheckoutError::WaitTimeout {
                pool: self.name.to_string(),
                size: self.max_size(),
                waited: self.wait_timeout,
            },
            slots::GetError::CreateTimeout => CheckoutError::Server(ServerError::ConnectTimeout {
                addr: pool.manager().target.addr.to_string(),
                timeout: pool.manager().target.connect_timeout,
            }),
            slots::GetError::Backend(ServerError::AtLimit(e)) => CheckoutError::AtLimit(e),
            slots::GetError::Backend(e) => CheckoutError::Server(e),
            slots::GetError::Closed => CheckoutError::Closed(self.name.to_string()),
        })
    }

    /// Parameters to report to a new client, learned from the first server
    /// connection (made now if there is none yet).
    pub async fn login_params(&self) -> Result<Arc<ParamSet>, CheckoutError> {
        if let Some(p) = self.cached_params() {
            return Ok(p);
        }
        drop(self.checkout().await?);
        Ok(self.cached_params().unwrap_or_default())
    }

    fn cached_params(&self) -> Option<Arc<ParamSet>> {
        self.primary.manager().first_params.lock().ok()?.clone()
    }

    /// Drops idle connections past their idle timeout or lifetime, then tops
    /// the pool up to `min_idle`. Whether it opened connections, or the
    /// warm-up's error.
    async fn maintain(
        &self,
        idle_timeout: Option<Duration>,
        lifetime: Option<Duration>,
        min_idle: usize,
    ) -> Result<bool, CheckoutError> {
        let keep = |m: &slots::Metrics| {
            idle_timeout.is_none_or(|t| m.last_used() < t) && lifetime.is_none_or(|l| m.age() < l)
        };
        self.primary.retain(|_, m| keep(&m));
        for pool in self.replicas.iter().flat_map(|r| r.pools()) {
            pool.retain(|_, m| keep(&m));
        }
        let status = self.primary.status();
        let missing = min_idle
            .saturating_sub(status.size)
            .min(status.max_size - status.size);
        let mut held = Vec::with_capacity(missing);
        for _ in 0..missing {
            match self.checkout().await {
                Ok(s) => held.push(s),
                Err(e) => return Err(e),
            }
        }
        Ok(missing > 0)
    }
}

/// What a pool is built from, except its size, as comparable text (kept in
/// memory only: it holds server passwords).
fn spec(cfg: &Config, db: &Database, user: &User) -> String {
    let g = &cfg.general;
    format!(
        "{:?}",
        (
            (
                db.primary.identity(),
                db.replicas
                    .iter()
                    .map(|r| (r.addr.identity(), r.weight))
                    .collect::<Vec<_>>(),
                &user.server_user,
                &user.server_password,
                &user.server_secret
            ),
            (g.connect_timeout, g.query_wait_timeout, g.server_lifetime),
            &g.routing,
        )
    )
}

/// The server login of a database's health monitor and catalog reader:
/// `monitor_user`'s, else the `--primary` URL's, else the first user's.
fn monitor_login(cfg: &Config, db: &Database) -> watch::Login {
    let database = db.primary.dbname.clone().unwrap_or_else(|| db.name.clone());
    let user = match &cfg.general.monitor_user {
        Some(name) => cfg.user(name),
        None => None,
    };
    let user = user.or_else(|| match &db.primary.user {
        Some(u) => cfg.users.iter().find(|x| &x.server_user == u),
        None => None,
    });
    match user.or(cfg.users.first()) {
        Some(u) => {
            let url_password = (db.primary.user.as_deref() == Some(u.server_user.as_str()))
                .then(|| db.primary.password.clone())
                .flatten();
            let password = u.server_password.clone().or(url_password);
            (u.server_user.clone(), password, database)
        }
        None => (
            db.primary.user.clone().unwrap_or_default(),
            db.primary.password.clone(),
            database,
        ),
    }
}

/// The pool of one server, under its database's `max_server_connections`
/// share if limited.
fn build_pool(target: Target, cfg: &Config, size: usize, limit: Option<Arc<limit::Limit>>) -> Pool {
    let g = &cfg.general;
    // A limited pool's creator may first wait for a place in the share.
    let place = limit
        .as_ref()
        .map_or(Duration::ZERO, |_| g.query_wait_timeout);
    let create = g.connect_timeout + place + Duration::from_millis(100);
    let manager = Manager::new(
        target,
        g.server_lifetime,
        limit.clone().map(|l| (l, g.query_wait_timeout)),
    );
    let pool = Pool::new(manager, size, g.query_wait_timeout, create);
    if let Some(limit) = limit {
        limit.add_pool(pool.weak());
    }
    pool
}

/// Every (database, user) pool, created on first use.
pub struct Pools {
    sets: Mutex<HashMap<(String, String), Arc<PoolSet>>>,
    metrics: Arc<Metrics>,
    /// Health monitors and catalogs, one per database and server set.
    watches: watch::Watches,
    /// `max_server_connections` shares, one per database and server.
    pub limits: limit::Limits,
}

impl Pools {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Pools {
            sets: Mutex::default(),
            metrics,
            watches: watch::Watches::default(),
            limits: limit::Limits::default(),
        }
    }

    pub fn get(&self, cfg: &Config, db: &Database, user: &User) -> Arc<PoolSet> {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        let key = (db.name.clone(), user.name.clone());
        // A looked-up user whose password changed since its pool was made
        // logs in with new keys: a new pool (see `reload` for retiring).
        if user.server_secret.is_some() {
            if let Some(old) = sets.get(&key).filter(|p| p.spec != spec(cfg, db, user)) {
                old.retired
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                sets.remove(&key);
            }
        }
        sets.entry(key)
            .or_insert_with(|| self.build(cfg, db, user))
            .clone()
    }

    /// A new pool of (database, user), on the database's shared watch and
    /// connection limits.
    fn build(&self, cfg: &Config, db: &Database, user: &User) -> Arc<PoolSet> {
        let set = PoolSet::new(cfg, db, user, &self.metrics, &self.watches, &self.limits);
        Arc::new(set)
    }

    /// Applies a new configuration: pools whose (database, user) is gone are
    /// dropped from the map, pools whose servers or settings changed are
    /// rebuilt, and the rest are resized in place. Sessions holding a
    /// dropped or rebuilt pool keep it until their transaction ends (see
    /// `PoolSet::is_retired`). Returns one line per change.
    pub fn reload(&self, cfg: &Config) -> Vec<String> {
        let mut notes = Vec::new();
        self.limits.reload(cfg);
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<_> = sets.keys().cloned().collect();
        for key in keys {
            // A looked-up user stays while its database still looks users
            // up.
            let looked_up = sets.get(&key).and_then(|p| p.looked_up.clone());
            let user = cfg.user(&key.1).or_else(|| {
                let db = cfg.database(&key.0)?;
                db.auth.as_ref().and(looked_up.as_deref())
            });
            let (Some(db), Some(user)) = (cfg.database(&key.0), user) else {
                if let Some(old) = sets.remove(&key) {
                    old.retired
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    notes.push(format!("pool {} removed", old.name));
                }
                continue;
            };
            let Some(old) = sets.get(&key).cloned() else {
                continue;
            };
            let size = cfg.pool_size(db, user);
            if old.spec != spec(cfg, db, user) {
                old.retired
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                sets.insert(key, self.build(cfg, db, user));
                notes.push(format!(
                    "pool {} rebuilt (servers or settings changed)",
                    old.name
                ));
            } else if old.primary.status().max_size != size {
                old.primary.resize(size);
                for p in old.replicas.iter().flat_map(|r| r.pools()) {
                    p.resize(size);
                }
                notes.push(format!("pool {} resized to {size}", old.name));
            }
        }
        drop(sets);
        self.prepare(cfg);
        notes
    }

    /// The pool clients of (database, user) get now, if there is one.
    pub fn current(&self, database: &str, user: &str) -> Option<Arc<PoolSet>> {
        let sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        sets.get(&(database.to_owned(), user.to_owned())).cloned()
    }

    pub fn all(&self) -> Vec<Arc<PoolSet>> {
        self.sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Creates the pools of every configured (database, user) pair, so that
    /// min_idle warm-up starts before the first client.
    pub fn prepare(&self, cfg: &Config) {
        for db in &cfg.databases {
            for user in &cfg.users {
                self.get(cfg, db, user);
            }
        }
    }

    pub async fn maintain(&self, cfg: &Config, incidents: &crate::incidents::Incidents) {
        let g = &cfg.general;
        for set in self.all() {
            let warmed = set
                .maintain(g.server_idle_timeout, g.server_lifetime, g.min_idle)
                .await;
            match warmed {
                Ok(true) => {
                    incidents.resolve(&set.name);
                }
                Ok(false) => {}
                Err(e) => {
                    let what = "min_idle warm-up failed";
                    incidents.report(&set.name, what, &e, g.log_repeat_interval);
                }
            }
        }
    }

    pub fn close(&self) {
        for set in self.all() {
            set.primary.close();
            if let Some(r) = &set.replicas {
                r.close();
            }
        }
        self.watches.close();
    }
}

/// How a client is done with a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// End of a transaction or statement: the connection is idle and keeps
    /// its session state (transaction and statement modes).
    Idle,
    /// End of a client session: wipe session state with `DISCARD ALL`.
    EndSession,
}

/// The one door back into the pool. Rolls back an open transaction, resets
/// session state when asked, and discards the connection if it is broken,
/// mid-request, or the cleanup fails or times out. Returns the cleanup's
/// error, for the caller to log (see `incidents`).
#[must_use]
pub async fn release(mut server: Server, how: Release, timeout: Duration) -> Option<ServerError> {
    let cleanup: &[&str] = match (server.state, how) {
        (ConnState::Ready(b'I'), Release::Idle) => &[],
        (ConnState::Ready(b'I'), Release::EndSession) => &["DISCARD ALL"],
        (ConnState::Ready(_), Release::Idle) => &["ROLLBACK"],
        (ConnState::Ready(_), Release::EndSession) => &["ROLLBACK", "DISCARD ALL"],
        (ConnState::Busy, _) => {
            // The client left mid-request (query, pipeline or COPY). Stop the
            // server's work and drop the connection: closing the socket makes
            // Postgres roll back.
            cancel(&server.addr, server.key).await;
            discard(server);
            return None;
        }
        (ConnState::Broken, _) => {
            discard(server);
            return None;
        }
    };
    if server.wanted_elsewhere() {
        // Another pool of this server waits under max_server_connections:
        // closing this connection (which also rolls back and resets it)
        // gives it the place.
        discard(server);
        return None;
    }
    for sql in cleanup {
        if let Err(e) = server.run(sql, timeout).await {
            discard(server);
            return Some(e);
        }
    }
    if how == Release::EndSession {
        // DISCARD ALL dropped every prepared statement.
        server.statements.clear();
    }
    if server.state != ConnState::Ready(b'I') {
        discard(server);
    }
    None
}

fn discard(server: Server) {
    server.discard();
}

/// Sends a CancelRequest for `key` to the server at `addr` (fire and forget).
pub async fn cancel(addr: &crate::config::ServerAddr, key: (i32, i32)) {
    use tokio::io::AsyncWriteExt;
    let mut buf = bytes::BytesMut::new();
    postgres_protocol::message::frontend::cancel_request(key.0, key.1, &mut buf);
    let connect = async {
        match addr.hostaddr {
            Some(ip) => tokio::net::TcpStream::connect((ip, addr.port)).await,
            None => tokio::net::TcpStream::connect((addr.host.as_str(), addr.port)).await,
        }
    };
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(mut s)) => {
            let _ = s.write_all(&buf).await;
            let _ = s.shutdown().await;
        }
        _ => tracing::warn!(server = %addr, "could not deliver cancel request"),
    }
}
