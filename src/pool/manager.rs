//! What a pool knows of its server: how to make a connection, and whether
//! an idle one may be lent out again.

use std::sync::Mutex;
use std::time::Duration;

use super::conn::{ConnState, ServerConn, ServerError, Target};
use super::params::ParamSet;
use super::slots::Metrics;

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

impl Manager {
    /// A new connection, within the database's `max_server_connections`
    /// share if it has one.
    pub async fn create(&self) -> Result<ServerConn, ServerError> {
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

    /// Whether an idle connection may be lent out again: within its
    /// lifetime when it came back (no clock read per checkout; the
    /// once-a-second maintenance closes idle ones that outlive it) and
    /// still open. Only clean idle connections are pooled at all (see
    /// `slots::Server`).
    pub fn reusable(&self, conn: &mut ServerConn, metrics: &Metrics) -> bool {
        conn.state == ConnState::Ready(b'I')
            && self
                .lifetime
                .is_none_or(|l| metrics.age_when_returned() <= l)
            && !conn.is_dead()
    }
}
