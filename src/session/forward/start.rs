//! The start of a request with no server attached: attach one, or answer
//! the request here (refusal, `SET pgswitch.route`).

use bytes::{Buf, BytesMut};

use super::{Flow, Forwarder, Item, Next, Refusal, SessionError};
use crate::protocol::frame::peek_header;

impl Forwarder<'_> {
    /// With no server attached: attach one for the request at the front of
    /// the buffer, or answer it here (refusal, `SET pgswitch.route`).
    /// `Some(flow)` when there is nothing to forward now.
    pub(super) async fn start_request(&mut self) -> Result<Option<Flow>, SessionError> {
        while self.link.is_none() {
            if self.refusal.is_none() {
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
                    let attached = match self.next_target() {
                        Ok(None) => return Ok(Some(Flow::Continue)),
                        Ok(Some(Next::Server(which, may_write))) => {
                            self.attach((which, may_write)).await
                        }
                        Ok(Some(Next::Read)) => match self.choose_reader().await {
                            Ok(which) => self.attach((which, false)).await,
                            Err(e) => Err(e),
                        },
                        Ok(Some(Next::SetRoute(hint, len))) => {
                            self.set_route(hint, len).await?;
                            if self.cbuf.is_empty() {
                                return Ok(Some(Flow::Continue));
                            }
                            continue;
                        }
                        Ok(Some(Next::SetMinLsn(lsn, len))) => {
                            self.set_min_lsn(lsn, len).await?;
                            if self.cbuf.is_empty() {
                                return Ok(Some(Flow::Continue));
                            }
                            continue;
                        }
                        Ok(Some(Next::DeferBegin(len))) => {
                            self.defer_begin(len).await?;
                            if self.cbuf.is_empty() {
                                return Ok(Some(Flow::Continue));
                            }
                            continue;
                        }
                        Err(e) => Err(e),
                    };
                    match attached {
                        Ok(()) => return Ok(None),
                        Err(e) if Refusal::applies_to(&e) => {
                            let repeat = self.shared.config.load().general.log_repeat_interval;
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
                        }
                        Err(e) => return Err(e),
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

    /// A RELOAD replaced this client's pool: take the new one, if its
    /// database and user are still configured (else keep the old pool,
    /// which still works, until the client leaves).
    fn move_pool(&mut self) {
        let config = self.shared.config.load();
        let Some(db) = config.database(&self.pool.database) else {
            return;
        };
        match config.user(&self.pool.user) {
            Some(user) => self.pool = self.shared.pools.get(&config, db, user),
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
