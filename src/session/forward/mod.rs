//! The session state machine: forwards frames between one client and the
//! server connection it holds, attaching a server at the first message of a
//! transaction (or session) and releasing it when the pool mode says so.
//!
//! Transaction state comes only from ReadyForQuery. A server connection may
//! change hands only when it is "quiet": every request answered, as the
//! link's [`Ledger`] of replies owed says.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, BytesMut};

use super::cancel::ClientSlot;
use super::ledger::Ledger;
use super::refusal::Refusal;
use super::replay::{self, Replay, Verdict};
use super::settings::{Change, Settings};
use super::SessionError;
use super::{LoggedIn, Session};
use crate::config::PoolMode;
use crate::pool::replicas::Fence;
use crate::pool::{ConnState, ParamSet, PoolSet, Server, Which};
use crate::prepared::ClientStatements;
use crate::protocol::frame::{Item, Splitter};
use crate::router::RouteHint;
use crate::shared::Shared;

/// A server connection held by the client, and where the exchange stands.
struct Link {
    server: Server,
    /// The server's role, and whether its transaction may have written
    /// (for read-your-writes).
    which: Which,
    may_write: bool,
    /// A Sync or Query went out on this link: later statements were not
    /// routed, so they count as writes.
    segment_ended: bool,
    /// The replica safety net for this request.
    replay: Replay,
    split: Splitter,
    /// The replies the server owes, and what the client gets of them.
    ledger: Ledger,
    /// When the running transaction's first message arrived (metrics).
    started: Option<std::time::Instant>,
    /// How long the client waited for this connection (for the first
    /// transaction's span), and that span while traces are on.
    waited: std::time::Duration,
    trace: Option<Box<crate::ops::traces::TxSpan>>,
    /// Requests in flight, for per-query statistics (one per ReadyForQuery
    /// owed), and the fingerprint of an unnamed Parse waiting for its Sync.
    running: crate::stats::InFlight,
    parsed: Option<u64>,
    /// Settings the client changed on this connection (read back at the
    /// end of its turn), and whether its earlier settings were put on it.
    change: Option<Box<Change>>,
    applied: bool,
    /// Bytes rewritten on their way (either way), while they are written.
    rewritten: Option<BytesMut>,
    /// The client deallocated the connection's statements this turn, or
    /// SQL-level statements are on it (see `statements::end_turn`).
    wiped: bool,
    sql_prepared: bool,
    /// The transaction status of the latest ReadyForQuery (or at attach).
    last_status: u8,
    /// A FATAL error the server sent (it is going away), held back from
    /// the client (see `lost`).
    fatal: Option<Box<crate::protocol::messages::BackendError>>,
}

impl Link {
    /// A transaction starts (or goes on) with this message: its span, if
    /// traces are on, notes its text.
    fn traced(&mut self, on: bool, tag: u8, body: Option<&[u8]>) {
        if !on {
            return;
        }
        let waited = std::mem::take(&mut self.waited);
        let span = self
            .trace
            .get_or_insert_with(|| crate::ops::traces::TxSpan::begin(waited));
        if let (b'Q' | b'P', Some(body)) = (tag, body) {
            span.statement(body);
        }
    }

    /// Every request answered: the connection may change hands.
    fn quiet(&self) -> bool {
        self.ledger.quiet() && self.split.at_boundary()
    }

    fn status(&self) -> Option<u8> {
        match self.server.state() {
            ConnState::Ready(s) if self.quiet() => Some(s),
            _ => None,
        }
    }
}

/// A session's routing and settings state (see `routing`, `settings`),
/// allocated only when it has any.
#[derive(Default)]
struct RouteState {
    /// `SET pgswitch.route`.
    hint: RouteHint,
    /// What this client's reads must see of its own writes on the primary.
    fence: Fence,
    /// A `BEGIN` answered here, waiting for the server its first statement
    /// chooses (`transaction_routing = first_statement`).
    deferred_begin: Option<Box<str>>,
    /// The router's reason for the transaction running now (statistics).
    reason: &'static str,
    /// Session settings to carry from one server connection to the next.
    settings: Settings,
    /// The server under the client's transaction went away: statements get
    /// 25P02 until the client ends it (see `lost`).
    aborted: bool,
}

/// What the client is doing, for timers and shutdown.
enum Phase {
    /// Between transactions: no server, or a server at 'I' (session mode).
    Idle,
    /// Inside a transaction block, waiting for the client.
    IdleInTransaction,
    /// A request is running.
    Active,
}

mod client;
mod link;
mod lost;
mod requests;
mod routing;
mod scan;
mod send;
mod start;
mod statement_mode;
mod statements;
mod stop;

use stop::{Stopping, Stops};

use client::{grace, read_some, MIN_READ};
use routing::Next;

pub struct Forwarder<'a> {
    shared: &'a Shared,
    client: &'a mut crate::net::Stream,
    cbuf: BytesMut,
    csplit: Splitter,
    /// Tracked parameters as the client was told them; shared with other
    /// clients told the same until one changes (`Arc::make_mut`).
    params: Arc<ParamSet>,
    pool: Arc<PoolSet>,
    mode: PoolMode,
    /// The client's cancel key and its max_client_conn slot.
    login: LoggedIn<'a>,
    /// Boxed: only sessions holding a server pay for it.
    link: Option<Box<Link>>,
    /// A request being refused (no server could be had for it).
    refusal: Option<Box<Refusal>>,
    /// Routing state, allocated once the session has any (most sessions
    /// never do, and idle ones stay small).
    route: Option<Box<RouteState>>,
    /// Size of the next read buffer (see `read_some`).
    read_size: usize,
    /// Named prepared statements are tracked (transaction and statement
    /// modes; `max_prepared_statements` above 0), and this client's.
    track: bool,
    statements: Option<Box<ClientStatements>>,
    /// The running configuration, as the hot path reads it.
    config: crate::shared::ConfigCache,
}

impl<'a> Forwarder<'a> {
    pub fn new(
        shared: &'a Shared,
        client: &'a mut crate::net::Stream,
        session: Session<'a>,
    ) -> Self {
        let Session {
            buf,
            settings,
            params,
            pool,
            mode,
            login,
        } = session;
        let track =
            mode != PoolMode::Session && shared.config.load().general.max_prepared_statements > 0;
        Forwarder {
            shared,
            client,
            // Whatever the login left unread; an idle client holds no buffer.
            cbuf: if buf.is_empty() { BytesMut::new() } else { buf },
            csplit: Splitter::new(shared.config.load().general.max_message_bytes),
            params,
            pool,
            mode,
            login,
            link: None,
            refusal: None,
            route: settings.map(|s| {
                Box::new(RouteState {
                    settings: *s,
                    ..RouteState::default()
                })
            }),
            read_size: MIN_READ,
            track,
            statements: None,
            config: crate::shared::ConfigCache::new(&shared.config),
        }
    }

    fn route_state(&mut self) -> &mut RouteState {
        self.route.get_or_insert_with(Box::default)
    }

    fn fence(&self) -> Fence {
        self.route.as_ref().map_or(Fence::None, |r| r.fence)
    }

    fn begin_deferred(&self) -> bool {
        self.route
            .as_ref()
            .is_some_and(|r| r.deferred_begin.is_some())
    }

    fn slot(&self) -> &ClientSlot {
        &self.login.registration.slot
    }

    /// Runs until the client terminates or an error ends the session; always
    /// hands the server connection back through `pool::release`. Takes
    /// `&mut self` rather than `self`: an async fn keeps its arguments apart
    /// from its locals, so a `self` argument would be held twice in every
    /// idle session's state (it was, 248 bytes of it).
    pub async fn run(&mut self) -> Result<(), Box<SessionError>> {
        // Boxed so that the result, alive across the release below, costs
        // the session's state 8 bytes rather than a whole error.
        let result = self.pump().await.map_err(Box::new);
        // Pinned: the one record of it is the slot's (SHOW CLIENTS reads
        // it too); the mode says how the session goes on.
        if self
            .slot()
            .pinned
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.shared.metrics.pinned_clients.dec();
        }
        if let Some(s) = self.statements.take() {
            statements::gauge(
                &self.shared.metrics,
                (s.len(), s.bytes()),
                &Default::default(),
            );
        }
        if let Some(release) = self.final_release() {
            release.await;
        }
        result
    }

    fn phase(&self) -> Phase {
        match &self.link {
            None if self.begin_deferred() => Phase::IdleInTransaction,
            None => Phase::Idle,
            Some(l) => match l.status() {
                Some(b'I') => Phase::Idle,
                Some(_) => Phase::IdleInTransaction,
                None => Phase::Active,
            },
        }
    }

    async fn pump(&mut self) -> Result<(), SessionError> {
        let shared = self.shared;
        // Registered once for the whole session rather than on every turn
        // of the loop.
        let stops = Stops::new(shared);
        tokio::pin!(stops);
        // Requests sent along with the login, before it was answered (as
        // Neon's driver pipelines its first query behind the password):
        // no readiness event will announce them again.
        // (Boxed: rare, and it should not widen every session's state.)
        if !self.cbuf.is_empty() && Box::pin(self.on_client_bytes()).await? == Flow::Terminate {
            return Ok(());
        }
        // A drain closes idle clients; once per session, a client gets a
        // moment to send what it may be sending right now (see `grace`).
        let mut graced = false;
        loop {
            let phase = self.phase();
            let mut timer = self
                .wait_limit(&phase)
                .map(|d| Box::pin(tokio::time::sleep(d)));
            let graceful = matches!(phase, Phase::Idle);
            let (client, link) = (&*self.client, &self.link);
            // One wait for everything, polling readiness directly: no
            // per-wait futures, so an idle session's state stays small.
            // A client's request goes before a drain's stop: what it sent
            // is served, not cut off.
            let wake = std::future::poll_fn(|cx| {
                let stopping = stops.as_mut().poll(cx, shared);
                if stopping == Stopping::Hard {
                    return Poll::Ready(Wake::Stop);
                }
                if timer
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready())
                {
                    return Poll::Ready(Wake::Timeout);
                }
                if let Poll::Ready(r) = client.poll_read_ready(cx) {
                    return Poll::Ready(Wake::Client(r));
                }
                if graceful && stopping == Stopping::Graceful {
                    return Poll::Ready(Wake::Stop);
                }
                match link {
                    Some(l) if l.server.stream.poll_read_ready(cx).is_ready() => {
                        Poll::Ready(Wake::Server)
                    }
                    _ => Poll::Pending,
                }
            })
            .await;
            match wake {
                Wake::Stop if graced || shared.stopping() == Stopping::Hard => {
                    return Err(SessionError::Shutdown)
                }
                Wake::Stop => {
                    graced = true;
                    // Boxed: rare, and it should not widen every session's state.
                    if !Box::pin(grace(&*self.client)).await {
                        return Err(SessionError::Shutdown);
                    }
                    // It sent something: serve it (the next wait finds it).
                    continue;
                }
                Wake::Timeout if matches!(phase, Phase::IdleInTransaction) => {
                    return Err(SessionError::IdleInTransaction)
                }
                Wake::Timeout => return Err(SessionError::IdleTimeout),
                Wake::Client(Err(e)) => return Err(SessionError::ClientGone(e)),
                Wake::Client(Ok(())) => {
                    if self.read_client()? && self.on_client_bytes().await? == Flow::Terminate {
                        return Ok(());
                    }
                }
                Wake::Server => {
                    // Decided before any await, so that no error value
                    // widens the loop's state.
                    match self.fill_server() {
                        Filled::Bytes => self.on_server_bytes().await?,
                        Filled::Nothing => {}
                        // Boxed, and the match holds nothing across it.
                        failed => Box::pin(self.recover(failed)).await?,
                    }
                }
            }
            // Wait for readability first and only then take a buffer, so an
            // idle client holds no read buffer at all.
            if self.cbuf.is_empty() && matches!(self.phase(), Phase::Idle) {
                self.cbuf = BytesMut::new();
            }
        }
    }

    /// How long the client may wait in this phase before it is closed.
    /// Read on every turn (a cheap load), so a RELOAD applies to connected
    /// clients too.
    #[inline]
    fn wait_limit(&mut self, phase: &Phase) -> Option<std::time::Duration> {
        let g = &self.config.get(&self.shared.config).general;
        match phase {
            Phase::Idle => g.client_idle_timeout,
            Phase::IdleInTransaction => g.idle_transaction_timeout,
            Phase::Active => None,
        }
    }

    /// One read of the client's socket: true when bytes came.
    #[inline]
    fn read_client(&mut self) -> Result<bool, SessionError> {
        match read_some(&mut *self.client, &mut self.cbuf, &mut self.read_size) {
            Ok(None) => Ok(false),
            Ok(Some(0)) => Err(SessionError::ClientGone(
                std::io::ErrorKind::UnexpectedEof.into(),
            )),
            Ok(Some(n)) => {
                self.pool.stats.bytes_in.inc_by(n as u64);
                Ok(true)
            }
            Err(e) => Err(SessionError::ClientGone(e)),
        }
    }

    /// One read of the server's socket, and what it means.
    #[inline]
    fn fill_server(&mut self) -> Filled {
        let Some(link) = self.link.as_mut() else {
            return Filled::Nothing;
        };
        match link.server.try_fill() {
            Ok(Some(_)) => Filled::Bytes,
            Ok(None) => Filled::Nothing,
            // A replica that closes before answering a request it could
            // not have run costs the client nothing.
            Err(e) => match std::mem::replace(&mut link.replay, Replay::Off) {
                Replay::Sent(request) => Filled::Rerun(request),
                _ => Filled::Lost(Box::new(e)),
            },
        }
    }

    /// Forwards every complete message header (and the body bytes that came
    /// with it) to the server, attaching one first if needed. With
    /// statement tracking on, named statements are rewritten on the way
    /// (see `crate::prepared`).
    async fn on_client_bytes(&mut self) -> Result<Flow, SessionError> {
        if self.link.is_none() {
            // Boxed: the full start of a request (waits, refusals,
            // settings) is large and should not widen every idle session's
            // state.
            let start = match self.start_now() {
                Ok(()) => None,
                Err(decided) => Some(Box::pin(self.start_request(decided))),
            };
            if let Some(start) = start {
                if let Some(flow) = start.await? {
                    return Ok(flow);
                }
            }
        }
        let (pos, flow) = self.scan_client()?;
        let Some(link) = self.link.as_mut() else {
            return Ok(flow);
        };
        if pos == 0 {
            return Ok(flow);
        }
        // The armed Query goes out exactly as saved; anything more sent on
        // this link makes the request unrepeatable.
        link.replay = match std::mem::replace(&mut link.replay, Replay::Off) {
            Replay::Armed(q) if q[..] == self.cbuf[..pos] => Replay::Sent(q),
            _ => Replay::Off,
        };
        let next = if link.rewritten.is_some() {
            // Boxed: it should not widen every session's state.
            match Box::pin(self.send_rewritten()).await? {
                Some(request) => Filled::Rerun(request),
                None => Filled::Nothing,
            }
        } else {
            // Matched at once: a named result would keep its room in the
            // session's state across the await below.
            match link.server.write_now(&self.cbuf[..pos]) {
                // (With TLS, done once the encrypted bytes have left too.)
                Ok(n) if n == pos && !link.server.pending_output() => Filled::Nothing,
                Ok(n) => Filled::Partly(n),
                // A replica that died under an armed request: the request
                // never ran, so it can run on the primary instead.
                Err(e) => match link.replay.take_sent() {
                    Some(request) => Filled::Rerun(request),
                    None => Filled::Lost(Box::new(e)),
                },
            }
        };
        let next = match next {
            // The server would not read until its output was taken.
            Filled::Partly(n) => Box::pin(self.send_rest(send::Outgoing::Client(pos), n)).await?,
            other => other,
        };
        self.cbuf.advance(pos);
        if !matches!(next, Filled::Nothing) {
            Box::pin(self.recover(next)).await?;
        }
        Ok(flow)
    }

    /// A server that went away under a request: run it elsewhere if the
    /// safety net holds it, else answer the client (see `lost`).
    async fn recover(&mut self, failed: Filled) -> Result<(), SessionError> {
        match failed {
            Filled::Rerun(request) => self.rerun_on_primary(request, true).await,
            Filled::Lost(e) => self.server_lost(*e).await,
            Filled::Bytes | Filled::Nothing | Filled::Partly(_) => Ok(()),
        }
    }

    /// Forwards server output to the client, noting ReadyForQuery and
    /// ParameterStatus on the way, then releases the server if the pool mode
    /// says this is the end of its turn.
    async fn on_server_bytes(&mut self) -> Result<(), SessionError> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        if let Replay::Sent(query) = &link.replay {
            // The primary has no one to hand a refused request to.
            let on_replica = matches!(link.which, Which::Replica(_));
            match replay::verdict(&link.server.buf, on_replica) {
                Verdict::NeedMore => return Ok(()),
                Verdict::Refused { len } if on_replica => {
                    let query = query.clone();
                    link.server.consume(len);
                    return Box::pin(self.rerun_on_primary(query, false)).await;
                }
                Verdict::Lost if on_replica => {
                    let query = query.clone();
                    return Box::pin(self.rerun_on_primary(query, true)).await;
                }
                Verdict::Stale { len } => {
                    let query = query.clone();
                    link.server.consume(len);
                    return Box::pin(self.replan(query)).await;
                }
                _ => link.replay = Replay::Off,
            }
        }
        let (pos, refused_block) = self.scan_server()?;
        let pooled = matches!(self.mode, PoolMode::Transaction | PoolMode::Statement);
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        let conn: &mut crate::pool::ServerConn = &mut link.server;
        if let Some(out) = link.rewritten.as_deref() {
            self.client
                .send(out)
                .await
                .map_err(SessionError::ClientGone)?;
            self.pool.stats.bytes_out.inc_by(out.len() as u64);
            link.rewritten = None;
            link.server.consume(pos);
        } else if pos > 0 {
            self.client
                .send(&conn.buf[..pos])
                .await
                .map_err(SessionError::ClientGone)?;
            conn.consume(pos);
            self.pool.stats.bytes_out.inc_by(pos as u64);
        }
        if let Some(fatal) = link.fatal.take() {
            let addr = link.server.addr.to_string();
            let e = crate::pool::ServerError::Query {
                addr,
                error: *fatal,
            };
            return Box::pin(self.server_lost(e)).await;
        }
        if refused_block {
            return Box::pin(self.refuse_transaction_block()).await;
        }
        if pooled && link.status() == Some(b'I') && self.csplit.at_boundary() {
            self.detach().await;
        }
        Ok(())
    }
}

/// What woke the session up.
enum Wake {
    Stop,
    Timeout,
    Client(std::io::Result<()>),
    Server,
}

/// What a read from the server brought.
enum Filled {
    Bytes,
    Nothing,
    /// The server went away under a request the safety net holds.
    Rerun(bytes::Bytes),
    /// The server went away (see `lost`).
    Lost(Box<crate::pool::ServerError>),
    /// Written up to here; the server stopped reading (see `send`).
    Partly(usize),
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Terminate,
}

#[cfg(test)]
mod tests;
