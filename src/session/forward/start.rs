//! The start of a request with no server attached: attach one, or answer
//! the request here (refusal, `SET pgswitch.route`).

use bytes::{Buf, BytesMut};

use super::{Flow, Forwarder, Item, Next, Refusal, SessionError};
use crate::protocol::frame::peek_header;

/// A routing decision made (see `Forwarder::next_target`), or why none
/// could be.
pub(super) type Decided = Result<Option<Next>, SessionError>;

impl Forwarder<'_> {
    /// With no server attached: attach one for the request at the front of
    /// the buffer, or answer it here (refusal, `SET pgswitch.route`).
    /// `Some(flow)` when there is nothing to forward now. `first` is what
    /// `start_now` decided, if it got that far.
    pub(super) async fn start_request(
        &mut self,
        mut first: Option<Decided>,
    ) -> Result<Option<Flow>, SessionError> {
        while self.link.is_none() {
            if let Some(next) = first.take() {
                match self.attach_to(next).await? {
                    Some(flow) => return Ok(Some(flow)),
                    None if self.link.is_some() => return Ok(None),
                    None => {}
                }
            } else if self.refusal.is_none() {
                match peek_header(&self.cbuf)? {
                    None => return Ok(Some(Flow::Continue)),
                    Some((b'X', _)) => return Ok(Some(Flow::Terminate)),
                    // COPY data after the COPY failed (its server went
                    // away): dropped, as Postgres drops it.
                    Some((b'd' | b'c' | b'f', _)) => {
                        self.refusal = Some(Box::new(Refusal::rest_of_message()));
                    }
                    Some((_, len)) if self.route.as_ref().is_some_and(|r| r.aborted) => {
                        if self.cbuf.len() < 5 + len {
                            return Ok(Some(Flow::Continue)); // Its text decides.
                        }
                        if self.ends_transaction() {
                            self.route_state().aborted = false;
                        } else {
                            self.refusal = Some(Box::new(Refusal::aborted()));
                        }
                    }
                    Some(_) => {}
                }
                if self.refusal.is_none() {
                    if self.pool.is_retired() {
                        self.move_pool();
                    }
                    if self.shared.pause.is_paused(&self.pool.database) {
                        self.wait_while_paused().await?;
                    }
                    let next = self.next_target();
                    match self.attach_to(next).await? {
                        Some(flow) => return Ok(Some(flow)),
                        None if self.link.is_some() => return Ok(None),
                        None => {}
                    }
                }
            }
            match self.refuse().await? {
                Flow::Continue if self.refusal.is_none() && !self.cbuf.is_empty() => continue,
                flow => return Ok(Some(flow)),
            }
        }
        Ok(None)
    }

    /// The start of a request as a straight line, when it can be: a
    /// request that goes to a server whose idle connection is free now
    /// (see `attach_now`), with no future and no wait. `Err` carries what
    /// was decided on the way (if routing ran) for `start_request`.
    pub(super) fn start_now(&mut self) -> Result<(), Option<Decided>> {
        let plain = self.refusal.is_none()
            && !self.pool.is_retired()
            && self.route.as_ref().is_none_or(|r| !r.aborted)
            && matches!(peek_header(&self.cbuf), Ok(Some((t, _))) if !matches!(t, b'X' | b'd' | b'c' | b'f'))
            && !self.shared.pause.is_paused(&self.pool.database);
        if !plain {
            return Err(None);
        }
        let (which, may_write) = match self.next_target() {
            Ok(Some(Next::Server(which, may_write))) => (which, may_write),
            // Waiting for a replica to catch up takes the full start.
            Ok(Some(Next::Read)) => {
                let may_wait = self.may_wait_for_replica();
                match self.pick_reader(may_wait) {
                    Some(Ok(which)) => (which, false),
                    Some(Err(e)) => return Err(Some(Err(e))),
                    None => return Err(Some(Ok(Some(Next::Read)))),
                }
            }
            other => return Err(Some(other)),
        };
        match self.attach_now(which, may_write) {
            true => Ok(()),
            false => Err(Some(Ok(Some(Next::Server(which, may_write))))),
        }
    }

    /// Acts on a routing decision: attaches a server (leaving `self.link`
    /// set), answers a setting here, or arms a refusal. `Some(flow)` when
    /// there is nothing more to do now.
    async fn attach_to(&mut self, next: Decided) -> Result<Option<Flow>, SessionError> {
        let attached = match next {
            Ok(None) => return Ok(Some(Flow::Continue)),
            Ok(Some(Next::Server(which, may_write))) => self.attach((which, may_write)).await,
            Ok(Some(Next::Read)) => match self.choose_reader().await {
                Ok(which) => self.attach((which, false)).await,
                Err(e) => Err(e),
            },
            Ok(Some(Next::SetRoute(hint, len))) => {
                self.set_route(hint, len).await?;
                return Ok(self.cbuf.is_empty().then_some(Flow::Continue));
            }
            Ok(Some(Next::SetMinLsn(lsn, len))) => {
                self.set_min_lsn(lsn, len).await?;
                return Ok(self.cbuf.is_empty().then_some(Flow::Continue));
            }
            Ok(Some(Next::DeferBegin(len))) => {
                self.defer_begin(len).await?;
                return Ok(self.cbuf.is_empty().then_some(Flow::Continue));
            }
            Err(e) => Err(e),
        };
        match attached {
            Ok(()) => Ok(None),
            Err(e) if Refusal::applies_to(&e) => {
                let repeat = self
                    .config
                    .get(&self.shared.config)
                    .general
                    .log_repeat_interval;
                let what = "requests refused (no server connection could be had)";
                self.shared
                    .incidents
                    .report(&self.pool.name, what, &e, repeat);
                self.shared
                    .metrics
                    .requests_refused
                    .with_label_values(&[e.sqlstate()])
                    .inc();
                // The transaction the client opened never reached a
                // server; the refusal's ReadyForQuery ('I') says so.
                if let Some(r) = self.route.as_mut() {
                    r.deferred_begin = None;
                }
                self.refusal = Some(Box::new(Refusal::new(e)));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// A RELOAD replaced this client's pool: take the new one, if its
    /// database and user are still configured (else keep the old pool,
    /// which still works, until the client leaves).
    fn move_pool(&mut self) {
        let config = self.config.get(&self.shared.config);
        let Some(db) = config.database(&self.pool.database) else {
            return;
        };
        match config.user(&self.pool.user) {
            Some(user) => self.pool = self.shared.pools.get(config, db, user),
            // A user looked up with auth_query: the pool its latest login
            // made, or a RELOAD rebuilt.
            None => {
                if let Some(p) = self.shared.pools.current(&db.name, &self.pool.user) {
                    self.pool = p;
                }
            }
        }
    }

    /// PAUSE: the request waits (counted as waiting) until RESUME; a
    /// shutdown ends the wait.
    async fn wait_while_paused(&mut self) -> Result<(), SessionError> {
        let _waiting =
            super::link::Waiting::start(&self.shared.metrics.clients_waiting, self.slot());
        // Waiting here, the client holds no server: a shutdown ends it as
        // it ends idle clients.
        tokio::select! {
            _ = self.shared.pause.wait(&self.pool.database) => Ok(()),
            _ = self.shared.shutdown.cancelled() => Err(SessionError::Shutdown),
        }
    }

    /// Reads and drops the messages of a request that got no server,
    /// answering as Postgres does after an error (see `Refusal`).
    async fn refuse(&mut self) -> Result<Flow, SessionError> {
        let Some(refusal) = self.refusal.as_mut() else {
            return Ok(Flow::Continue);
        };
        let mut out = BytesMut::new();
        let mut pos = 0;
        let mut flow = Flow::Continue;
        while let Some((item, n)) = self.csplit.next(&self.cbuf[pos..], |_| false)? {
            pos += n;
            if let Item::Header { tag, .. } = item {
                if tag == b'X' {
                    flow = Flow::Terminate;
                    break;
                }
                refusal.on_message(tag, &mut out);
            }
            if refusal.finished() && self.csplit.at_boundary() {
                self.refusal = None;
                break;
            }
        }
        self.cbuf.advance(pos);
        if !out.is_empty() {
            self.client
                .send(&out)
                .await
                .map_err(SessionError::ClientGone)?;
        }
        Ok(flow)
    }
}
