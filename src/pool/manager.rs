//! deadpool manager: creates backend connections and decides, on every
//! checkout, whether a pooled one may be handed out again.

use std::sync::Mutex;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};

use super::conn::{ConnState, ServerConn, ServerError, Target};
use super::params::ParamSet;

pub struct Manager {
    pub target: Target,
    pub lifetime: Option<Duration>,
    /// The database's `max_server_connections` share of this server, and
    /// how long to wait for a place in it.
    pub limit: Option<(std::sync::Arc<super::limit::Limit>, Duration)>,
    /// Parameters reported by the first connection: what a client is told at
    /// login, before it has a server of its own.
    pub first_params: Mutex<Option<std::sync::Arc<ParamSet>>>,
}

impl Manager {
    pub fn new(
        target: Target,
        lifetime: Option<Duration>,
        limit: Option<(std::sync::Arc<super::limit::Limit>, Duration)>,
    ) -> Self {
        Manager {
            target,
            lifetime,
            limit,
            first_params: Mutex::new(None),
        }
    }
}

impl managed::Manager for Manager {
    type Type = ServerConn;
    type Error = ServerError;

    async fn create(&self) -> Result<ServerConn, ServerError> {
        let permit = match &self.limit {
            Some((limit, wait)) => Some(Box::pin(limit.acquire(*wait)).await?),
            None => None,
        };
        // Boxed: a login's state is large and rare, and would otherwise be
        // part of every checkout's future.
        let mut conn = Box::pin(ServerConn::connect(&self.target)).await?;
        conn.permit = permit;
        if let Ok(mut p) = self.first_params.lock() {
            if p.is_none() {
                *p = Some(std::sync::Arc::new(conn.params.clone()));
            }
        }
        Ok(conn)
    }

    /// Only an idle ('I'), live connection within its lifetime goes out again.
    /// Dirty connections are cleaned at release (see `pool::release`), so
    /// anything else here is discarded.
    async fn recycle(
        &self,
        conn: &mut ServerConn,
        metrics: &Metrics,
    ) -> RecycleResult<ServerError> {
        if conn.state != ConnState::Ready(b'I') {
            return Err(RecycleError::message("connection was not returned idle"));
        }
        if self.lifetime.is_some_and(|l| metrics.age() > l) {
            return Err(RecycleError::message("server_lifetime reached"));
        }
        if conn.is_dead() {
            return Err(RecycleError::message("server closed the connection"));
        }
        Ok(())
    }
}
