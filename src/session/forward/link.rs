//! Taking a server connection for the client (`attach`: checkout with
//! replica fallback, parameter sync, the client's settings, a held-back
//! BEGIN, the safety net) and giving it back (`detach` after each turn,
//! `final_release` at the end of the session).

use std::future::Future;
use std::pin::Pin;

use bytes::BytesMut;

use super::{replay, statements, Forwarder, Link, Replay, SessionError};
use crate::config::{Consistency, PoolMode, PrimaryReads};
use crate::metrics::Fallback;
use crate::pool::replicas::{Fence, Pick};
use crate::pool::{self, CheckoutError, ConnState, Release, Which};
use crate::protocol::frame::Splitter;
use crate::protocol::messages;

/// A server connection just taken from the pool (see `checkout_server`).
struct Checkout {
    server: pool::Server,
    /// The parameter sync ran on it.
    synced: bool,
    /// Where it came from (a replica that failed gives way).
    which: Which,
    /// How long the client waited for it.
    waited: std::time::Duration,
}

/// The log line of a connection whose cleanup failed (see `incidents`).
const RESET_FAILED: &str = "reset failed; discarding server connection";

impl Forwarder<'_> {
    /// The server connection's way back at the end of the session; boxed,
    /// so the session's own state does not have to make room for it.
    pub(super) fn final_release(&mut self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let link = self.link.take()?;
        self.slot().detach();
        // A connection that carries this client's settings is wiped.
        let how = match self.mode {
            _ if link.applied || link.change.is_some() => Release::EndSession,
            // Client-named statements on it, or statements we may have
            // lost track of (a DEALLOCATE ALL mid-transaction).
            _ if link.sql_prepared || link.wiped => Release::EndSession,
            PoolMode::Session => Release::EndSession,
            _ => Release::Idle,
        };
        let (timeout, repeat) = {
            let g = &self.config.get(&self.shared.config).general;
            (g.server_reset_timeout, g.log_repeat_interval)
        };
        let incidents = self.shared.incidents.clone();
        Some(Box::pin(async move {
            if let Some(e) = pool::release(link.server, how, timeout).await {
                incidents.event(&e.addr(), RESET_FAILED, &e, repeat);
            }
        }))
    }

    /// Takes a server from the pool and brings it in line with what this
    /// client was told and has set.
    pub(super) async fn attach(
        &mut self,
        (which, may_write): (Which, bool),
    ) -> Result<(), SessionError> {
        let Checkout {
            mut server,
            synced,
            which,
            waited,
        } = self.checkout_server(which).await?;
        if synced {
            self.report_synced(&server).await?;
        }
        let (applied, sql_prepared, begun) = self.prepare_server(&mut server).await?;
        // Inside an explicit transaction on the primary, any later statement
        // may write.
        let may_write = may_write || (begun && which == Which::Primary);
        let mut link = self.link_up(server, which, may_write, waited, begun);
        (link.applied, link.sql_prepared) = (applied, sql_prepared);
        self.link = Some(link);
        Ok(())
    }

    /// The common start of a transaction as a straight line, with no wait
    /// and no future: an idle connection of the chosen server that is
    /// already in line with the client (no parameters to sync, and no
    /// settings, SQL-level PREPAREs or held-back BEGIN to put on it).
    /// False, with nothing changed, when it takes the full `attach`.
    pub(super) fn attach_now(&mut self, which: Which, may_write: bool) -> bool {
        let clean_client = self
            .route
            .as_ref()
            .is_none_or(|r| r.settings.is_empty() && r.deferred_begin.is_none())
            && self.statements.as_ref().is_none_or(|c| c.sql().is_empty());
        if !clean_client || self.shared.stopping() == crate::shared::Stopping::Hard {
            return false;
        }
        let Some(mut server) = self.pool.try_checkout_on(which) else {
            return false;
        };
        if !server.params.in_line_with(&self.params) {
            // Back to the pool; `attach` syncs it.
            return false;
        }
        self.pool.stats.wait_seconds.observe(0.0);
        // Refusals in this pool are over; an outage of the server ends
        // only with a request it answers (`on_ready`): an idle connection
        // may not know yet that its server went away.
        self.shared.incidents.resolve(&self.pool.name);
        let link = self.link_up(server, which, may_write, std::time::Duration::ZERO, false);
        self.link = Some(link);
        true
    }

    /// The link to a server just taken and prepared: the cancel slot points
    /// at it, and the replica safety net is armed if it applies.
    fn link_up(
        &mut self,
        server: pool::Server,
        which: Which,
        may_write: bool,
        waited: std::time::Duration,
        begun: bool,
    ) -> Box<Link> {
        self.slot().attach((server.addr.clone(), server.key));
        // A whole request alone on a replica can be re-run on the primary if
        // the replica refuses it as a write or goes away (see `replay`).
        let replay = match which {
            Which::Replica(_) if !begun => replay::arm(&self.cbuf),
            // A plan that went stale can be made again (see `replay`).
            _ if !begun && self.track && statements::replannable(&self.cbuf) => {
                replay::arm(&self.cbuf)
            }
            _ => Replay::Off,
        };
        Box::new(Link {
            server,
            which,
            may_write,
            segment_ended: false,
            replay,
            split: Splitter::new(usize::MAX >> 1),
            ledger: Default::default(),
            started: None,
            waited,
            trace: None,
            running: Default::default(),
            parsed: None,
            change: None,
            applied: false,
            rewritten: None,
            wiped: false,
            sql_prepared: false,
            last_status: if begun { b'T' } else { b'I' },
            fatal: None,
        })
    }

    /// A server connection from the pool for `which`, a replica that
    /// cannot be reached giving way to the next server; with the parameter
    /// sync run on it (`synced`), the server it came from, and how long the
    /// client waited for it. A forced shutdown ends the wait.
    async fn checkout_server(&mut self, mut which: Which) -> Result<Checkout, SessionError> {
        let mut fence = self.fence();
        let never = self
            .config
            .get(&self.shared.config)
            .general
            .routing
            .primary_reads
            == PrimaryReads::Never;
        let timeout = self
            .config
            .get(&self.shared.config)
            .general
            .server_reset_timeout;
        let checkout = async {
            let mut tried = 0u64;
            loop {
                let r = match self.pool.checkout_on(which).await {
                    // Bring the server's parameters in line with what this
                    // client was told; a server that fails even that is
                    // treated as unreachable.
                    Ok(mut server) => match server.params.sync_sql(&self.params) {
                        None => Ok((server, false)),
                        Some(sql) => match Box::pin(server.run(&sql, timeout)).await {
                            Ok(()) => Ok((server, true)),
                            Err(e) => {
                                server.mark_broken();
                                Err(CheckoutError::Server(e))
                            }
                        },
                    },
                    Err(e) => Err(e),
                };
                let (Err(CheckoutError::Server(e)), Which::Replica(i), Some(replicas)) =
                    (&r, which, &self.pool.replicas)
                else {
                    return r;
                };
                // A replica that can't be reached (down, restarting) costs
                // the read nothing: the next one serves it, else the primary.
                let repeat = self.shared.config.load().general.log_repeat_interval;
                let what = "replica unavailable; its reads go to the next server";
                self.shared.incidents.report(&e.addr(), what, e, repeat);
                tried |= 1 << i;
                which = match replicas.pick(&mut fence, &self.pool.primary, tried) {
                    Pick::Server(w) => w,
                    _ if never => return r,
                    _ => {
                        self.shared.metrics.fallback(Fallback::Unavailable);
                        Which::Primary
                    }
                };
            }
        };
        let waiting = Waiting::start(&self.shared.metrics.clients_waiting, self.slot());
        let checked_out = tokio::select! {
            r = checkout => r,
            _ = self.shared.hard_shutdown.cancelled() => return Err(SessionError::Shutdown),
        };
        // Failed waits (timeouts, unreachable servers) count too.
        let waited = waiting.end();
        self.pool.stats.wait_seconds.observe(waited.as_secs_f64());
        let (server, synced) = checked_out?;
        // Refusals in this pool are over (the server's outage: see
        // `attach_now`).
        self.shared.incidents.resolve(&self.pool.name);
        if fence != Fence::None {
            self.route_state().fence = fence;
        }
        Ok(Checkout {
            server,
            synced,
            which,
            waited,
        })
    }

    /// After a parameter sync: the server may spell a value differently
    /// (e.g. "utf8" -> "UTF8"); tell the client what it now is, as Postgres
    /// would.
    async fn report_synced(&mut self, server: &pool::Server) -> Result<(), SessionError> {
        let mut out = BytesMut::new();
        for name in pool::params::TRACKED {
            if let (Some(want), Some(have)) = (self.params.get(name), server.params.get(name)) {
                if want != have {
                    messages::parameter_status(&mut out, name, have);
                }
            }
        }
        for (name, value) in server.params.iter() {
            if pool::params::TRACKED.contains(&name) && self.params.get(name) != Some(value) {
                std::sync::Arc::make_mut(&mut self.params).set(name, value);
            }
        }
        if !out.is_empty() {
            self.client
                .send(&out)
                .await
                .map_err(SessionError::ClientGone)?;
        }
        Ok(())
    }

    /// The client's own state put on a new server connection: its
    /// settings (`applied`), its SQL-level PREPAREs (`sql_prepared`) and a
    /// held-back BEGIN (`begun`). A server that fails any of these is
    /// treated as unreachable: the request is refused and the client stays
    /// (see `Refusal`).
    async fn prepare_server(
        &mut self,
        server: &mut pool::Server,
    ) -> Result<(bool, bool, bool), SessionError> {
        let timeout = self
            .config
            .get(&self.shared.config)
            .general
            .server_reset_timeout;
        // The client's own settings, from its earlier transactions or its
        // startup options.
        let applied = match self.route.as_ref().and_then(|r| r.settings.apply_sql()) {
            Some(sql) => {
                if let Err(e) = Box::pin(server.run(&sql, timeout)).await {
                    server.mark_broken();
                    return Err(CheckoutError::Server(e).into());
                }
                true
            }
            None => false,
        };
        // The client's SQL-level PREPAREs (see `statements`).
        let sql_prepared = match self.replay_sql_statements(server).await {
            Ok(p) => p,
            Err(SessionError::Server(e)) => {
                server.mark_broken();
                return Err(CheckoutError::Server(e).into());
            }
            Err(e) => return Err(e),
        };
        // After the parameter sync, which must not be undone by a rollback.
        let begun = match self.route.as_ref().and_then(|r| r.deferred_begin.clone()) {
            Some(sql) => {
                if let Err(e) = Box::pin(server.run(&sql, timeout)).await {
                    server.mark_broken();
                    return Err(CheckoutError::Server(e).into());
                }
                if let Some(r) = self.route.as_mut() {
                    r.deferred_begin = None;
                }
                true
            }
            None => false,
        };
        Ok((applied, sql_prepared, begun))
    }

    pub(super) async fn detach(&mut self) {
        if let Some(mut link) = self.link.take() {
            self.slot().detach();
            let fenced = self
                .config
                .get(&self.shared.config)
                .general
                .routing
                .consistency
                == Consistency::ReadYourWrites;
            if fenced
                && link.may_write
                && link.which == Which::Primary
                && self.pool.replicas.is_some()
            {
                self.route_state().fence = Fence::After(std::time::Instant::now());
            }
            if link.applied || link.change.is_some() {
                // Rare: boxed so it doesn't grow every session's state.
                Box::pin(self.settle_settings(&mut link)).await;
            }
            if self.track && self.turn_left_work(&link) {
                Box::pin(self.end_turn(&mut link)).await;
            }
            if link.server.state() == ConnState::Ready(b'I')
                && link.server.buf.is_empty()
                && !link.server.wanted_elsewhere()
            {
                // The common case: clean and idle, so dropping it returns it
                // to the pool (its checkout still checks it is alive).
                return;
            }
            if !link.server.buf.is_empty() {
                // Unsolicited output after the end of the turn, most often
                // a FATAL from a server shutting down: not worth keeping.
                link.server.mark_broken();
            }
            let timeout = self
                .config
                .get(&self.shared.config)
                .general
                .server_reset_timeout;
            // Rare and large: boxed so it doesn't grow every session's state.
            if let Some(e) = Box::pin(pool::release(link.server, Release::Idle, timeout)).await {
                let repeat = self
                    .config
                    .get(&self.shared.config)
                    .general
                    .log_repeat_interval;
                self.shared
                    .incidents
                    .event(&e.addr(), RESET_FAILED, &e, repeat);
            }
        }
    }

    /// The end of a turn that changed or carried the client's settings:
    /// read the changed ones back from the server (so failed and
    /// rolled-back SETs count as the server says), then wipe them off the
    /// connection before anyone else gets it. A connection where that fails
    /// is discarded.
    async fn settle_settings(&mut self, link: &mut Link) {
        let (timeout, repeat) = {
            let g = &self.config.get(&self.shared.config).general;
            (g.server_reset_timeout, g.log_repeat_interval)
        };
        if let Some(change) = link.change.take() {
            if let Some(sql) = change.read_back_sql() {
                match link.server.query_row(&sql, timeout).await {
                    Ok(values) => self.route_state().settings.apply(&change, values),
                    Err(e) => {
                        let what =
                            "could not read back a client's settings; discarding server connection";
                        self.shared
                            .incidents
                            .event(&link.server.addr, what, &e, repeat);
                        link.server.mark_broken();
                        return;
                    }
                }
            } else {
                self.route_state().settings.apply(&change, Vec::new());
            }
        }
        if let Err(e) = link.server.run("RESET ALL", timeout).await {
            let what = RESET_FAILED;
            self.shared
                .incidents
                .event(&link.server.addr, what, &e, repeat);
            link.server.mark_broken();
        }
    }
}

/// A client counted (and shown in SHOW CLIENTS) as waiting for a server
/// connection until `end` or drop (a refused or abandoned wait).
pub(super) struct Waiting<'a> {
    gauge: &'a prometheus::IntGauge,
    slot: &'a crate::session::cancel::ClientSlot,
    since: std::time::Instant,
}

impl<'a> Waiting<'a> {
    pub(super) fn start(
        gauge: &'a prometheus::IntGauge,
        slot: &'a crate::session::cancel::ClientSlot,
    ) -> Self {
        gauge.inc();
        slot.waiting
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Waiting {
            gauge,
            slot,
            since: std::time::Instant::now(),
        }
    }

    fn end(self) -> std::time::Duration {
        self.since.elapsed()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
        self.slot
            .waiting
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}
