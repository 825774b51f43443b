//! The pool of one server: `max_size` places (a semaphore, fair to
//! waiters), idle connections most recently used first, and [`Server`],
//! the guard that lends a connection out and is the only way back in.
//!
//! The common checkout is a straight line with no future of its own: take
//! a place, pop the newest idle connection, check it. The connection lives
//! in a box, so lending and returning it moves a pointer, not the
//! connection.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, TryAcquireError};

use super::conn::{ConnState, ServerConn, ServerError};
use super::manager::Manager;

/// When a connection was made and when it last came back.
#[derive(Debug, Clone, Copy)]
pub struct Metrics {
    created: Instant,
    returned: Instant,
}

impl Metrics {
    fn new() -> Self {
        let now = Instant::now();
        Metrics {
            created: now,
            returned: now,
        }
    }

    /// How long the connection has been open.
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    /// How old it was when it last came back.
    pub fn age_when_returned(&self) -> Duration {
        self.returned.saturating_duration_since(self.created)
    }

    /// How long it has been idle (since it came back).
    pub fn last_used(&self) -> Duration {
        self.returned.elapsed()
    }
}

/// A pooled connection and its times, boxed as one.
struct Pooled {
    conn: ServerConn,
    metrics: Metrics,
}

/// A pool's counts now.
#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub max_size: usize,
    /// Connections open, lent out or idle.
    pub size: usize,
    /// Idle connections.
    pub available: usize,
    /// Checkouts waiting for a place.
    pub waiting: usize,
}

#[derive(Debug)]
pub enum GetError {
    /// No place came free within the wait timeout.
    WaitTimeout,
    /// Making a new connection took longer than the create timeout.
    CreateTimeout,
    Backend(ServerError),
    Closed,
}

struct Slots {
    /// Oldest first; checkouts pop the newest. Boxed on purpose: lending
    /// a connection out moves the pointer, not the connection.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<Pooled>>,
    /// Open connections (idle, lent out, or being made).
    size: usize,
    max_size: usize,
    /// Places to take out of use as they come back, after a shrink below
    /// what was lent out.
    owed: usize,
}

struct Inner {
    manager: Manager,
    /// Free places: `max_size` minus what is lent out or being made.
    places: Semaphore,
    slots: Mutex<Slots>,
    /// Checkouts waiting for a place.
    waiting: AtomicUsize,
    /// `Slots::max_size`, readable without the lock (see `in_use`).
    max_size: AtomicUsize,
    wait: Duration,
    create: Duration,
    closed: AtomicBool,
}

/// A handle to one server's pool (cheap to clone).
#[derive(Clone)]
pub struct Pool(Arc<Inner>);

/// A pool that does not keep its connections alive.
#[derive(Clone)]
pub struct WeakPool(Weak<Inner>);

impl WeakPool {
    pub fn upgrade(&self) -> Option<Pool> {
        self.0.upgrade().map(Pool)
    }
}

impl Pool {
    /// Waits at most `wait` for a place and `create` for a new connection.
    pub fn new(manager: Manager, max_size: usize, wait: Duration, create: Duration) -> Pool {
        Pool(Arc::new(Inner {
            manager,
            places: Semaphore::new(max_size),
            slots: Mutex::new(Slots {
                idle: Vec::with_capacity(max_size),
                size: 0,
                max_size,
                owed: 0,
            }),
            waiting: AtomicUsize::new(0),
            max_size: AtomicUsize::new(max_size),
            wait,
            create,
            closed: AtomicBool::new(false),
        }))
    }

    pub fn manager(&self) -> &Manager {
        &self.0.manager
    }

    pub fn weak(&self) -> WeakPool {
        WeakPool(Arc::downgrade(&self.0))
    }

    pub fn status(&self) -> Status {
        let s = self.0.lock();
        Status {
            max_size: s.max_size,
            size: s.size,
            available: s.idle.len(),
            waiting: self.0.waiting.load(Ordering::Relaxed),
        }
    }

    /// Places taken (connections lent out or being made), without the
    /// pool's lock: what a read's choice of replica weighs, every read.
    /// Close to exact; exact does not matter there.
    pub fn in_use(&self) -> usize {
        let max = self.0.max_size.load(Ordering::Relaxed);
        max.saturating_sub(self.0.places.available_permits())
    }

    /// A connection: an idle one if there is one that is still good, else
    /// a new one.
    pub async fn get(&self) -> Result<Server, GetError> {
        let place = match self.0.places.try_acquire() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Err(GetError::Closed),
            Err(TryAcquireError::NoPermits) => {
                let _waiting = Waiting::start(&self.0.waiting);
                match tokio::time::timeout(self.0.wait, self.0.places.acquire()).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(GetError::Closed),
                    Err(_) => return Err(GetError::WaitTimeout),
                }
            }
        };
        place.forget();
        let place = Place::new(&self.0);
        match self.take_idle() {
            Some(pooled) => Ok(place.lend(pooled)),
            // Rare and large: boxed so that it is not part of every
            // checkout's future.
            None => Box::pin(self.create(place)).await,
        }
    }

    /// An idle connection if one is free and fit for use now, without
    /// waiting or connecting.
    pub fn try_get(&self) -> Option<Server> {
        let place = self.0.places.try_acquire().ok()?;
        place.forget();
        let place = Place::new(&self.0);
        self.take_idle().map(|pooled| place.lend(pooled))
    }

    /// The newest idle connection still fit for use; the others on the
    /// way are closed.
    fn take_idle(&self) -> Option<Box<Pooled>> {
        loop {
            let mut pooled = self.0.lock().idle.pop()?;
            if self.0.manager.reusable(&mut pooled.conn, &pooled.metrics) {
                return Some(pooled);
            }
            self.0.lock().size -= 1;
        }
    }

    async fn create(&self, mut place: Place<'_>) -> Result<Server, GetError> {
        place.count();
        match tokio::time::timeout(self.0.create, self.0.manager.create()).await {
            Ok(Ok(conn)) => Ok(place.lend(Box::new(Pooled {
                conn,
                metrics: Metrics::new(),
            }))),
            Ok(Err(e)) => Err(GetError::Backend(e)),
            Err(_) => Err(GetError::CreateTimeout),
        }
    }

    /// Closes the idle connections for which `keep` says false.
    pub fn retain(&self, mut keep: impl FnMut(&ServerConn, Metrics) -> bool) {
        let gone: Vec<_> = {
            let mut s = self.0.lock();
            let (kept, gone) = std::mem::take(&mut s.idle)
                .into_iter()
                .partition(|p| keep(&p.conn, p.metrics));
            s.idle = kept;
            s.size -= gone.len();
            gone
        };
        drop(gone);
    }

    /// A new size. Shrinking closes idle connections beyond it at once,
    /// and lent-out ones beyond it as they come back.
    pub fn resize(&self, max_size: usize) {
        let gone: Vec<_> = {
            let mut s = self.0.lock();
            let old = std::mem::replace(&mut s.max_size, max_size);
            self.0.max_size.store(max_size, Ordering::Relaxed);
            if max_size >= old {
                let mut more = max_size - old;
                let paid = more.min(s.owed);
                s.owed -= paid;
                more -= paid;
                self.0.places.add_permits(more);
                return;
            }
            let fewer = old - max_size;
            s.owed += fewer - self.0.places.forget_permits(fewer);
            let over = s.size.saturating_sub(max_size).min(s.idle.len());
            s.size -= over;
            s.idle.drain(..over).collect()
        };
        drop(gone);
    }

    /// No more checkouts; idle connections are closed, lent ones as they
    /// come back.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::Relaxed);
        self.0.places.close();
        self.retain(|_, _| false);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place comes back: free again, or taken out of use after a shrink.
    fn free_place(&self, s: &mut Slots) {
        match s.owed {
            0 => self.places.add_permits(1),
            _ => s.owed -= 1,
        }
    }
}

/// A checkout counted as waiting for a place until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A place taken from the pool and not yet lent with a connection: given
/// back (with the connection it counted, if any) if the checkout fails or
/// is abandoned.
struct Place<'a> {
    inner: Option<&'a Arc<Inner>>,
    /// A connection is being made for it (counted in `size`).
    counted: bool,
}

impl<'a> Place<'a> {
    fn new(inner: &'a Arc<Inner>) -> Self {
        Place {
            inner: Some(inner),
            counted: false,
        }
    }

    fn count(&mut self) {
        if let Some(inner) = self.inner {
            inner.lock().size += 1;
            self.counted = true;
        }
    }

    fn lend(mut self, pooled: Box<Pooled>) -> Server {
        let pool = self.inner.take().map(Arc::clone);
        Server {
            pooled: Some(pooled),
            pool: pool.unwrap_or_else(|| unreachable!("a place is lent once")),
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let mut s = inner.lock();
            if self.counted {
                s.size -= 1;
            }
            inner.free_place(&mut s);
        }
    }
}

/// A server connection lent to one client. Dropping it is the only way
/// back into the pool: a connection that is idle (`Ready('I')`), has
/// nothing unread, is not wanted by another pool (see
/// `limit::Permit::wanted`) and whose pool is still open goes back; any
/// other is closed.
pub struct Server {
    pooled: Option<Box<Pooled>>,
    pool: Arc<Inner>,
}

impl Server {
    /// Closes the connection instead of pooling it.
    pub fn discard(mut self) {
        self.state = ConnState::Broken;
    }

    /// When it was made and last came back.
    pub fn metrics(&self) -> Metrics {
        self.pooled().metrics
    }

    fn pooled(&self) -> &Pooled {
        self.pooled
            .as_deref()
            .unwrap_or_else(|| unreachable!("a server is lent until dropped"))
    }
}

impl Deref for Server {
    type Target = ServerConn;

    fn deref(&self) -> &ServerConn {
        &self.pooled().conn
    }
}

impl DerefMut for Server {
    fn deref_mut(&mut self) -> &mut ServerConn {
        match self.pooled.as_deref_mut() {
            Some(p) => &mut p.conn,
            None => unreachable!("a server is lent until dropped"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(mut pooled) = self.pooled.take() else {
            return;
        };
        let c = &pooled.conn;
        let clean = c.state == ConnState::Ready(b'I') && c.buf.is_empty() && !c.wanted_elsewhere();
        if clean {
            pooled.metrics.returned = Instant::now();
        }
        let inner = &self.pool;
        let mut s = inner.lock();
        let back = clean && s.owed == 0 && !inner.closed.load(Ordering::Relaxed);
        let gone = match back {
            true => {
                s.idle.push(pooled);
                None
            }
            false => {
                s.size -= 1;
                Some(pooled)
            }
        };
        inner.free_place(&mut s);
        drop(s);
        drop(gone);
    }
}
