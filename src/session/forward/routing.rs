//! Routing at the start of a transaction: where it runs, the choice of
//! replica for a read, `transaction_routing = first_statement`, the
//! session's `SET pgswitch.route`, and the replica safety net's re-run on
//! the primary.

use bytes::{Buf, Bytes, BytesMut};

use super::{Forwarder, PoolMode, Refusal, SessionError, Which};
use crate::config::{Consistency, PrimaryReads, TransactionRouting};
use crate::metrics::Fallback;
use crate::pool::replicas::{Fence, Pick};
use crate::protocol::frame::{peek_header, whole_messages, HEADER_LEN};
use crate::protocol::messages::{self, Severity};
use crate::router::{Reason, Route, RouteHint};

/// First statements longer than this are not parsed for routing: primary.
const MAX_ROUTED_SQL: usize = 64 * 1024;

/// Where the next transaction goes.
pub(super) enum Next {
    /// This server; `true` if it may write (read-your-writes).
    Server(Which, bool),
    /// A read: a replica if one qualifies (see `choose_reader`).
    Read,
    /// A `SET pgswitch.route` Query of the given length, answered locally.
    SetRoute(RouteHint, usize),
    /// A `SET pgswitch.min_lsn` Query of the given length, answered locally.
    SetMinLsn(u64, usize),
    /// A lone `BEGIN` Query of the given length with `transaction_routing =
    /// first_statement`: answered here, sent ahead of the next statement to
    /// wherever that statement goes.
    DeferBegin(usize),
}

/// Whether the batch at hand reaches its Sync without running anything
/// (no Query, Execute or FunctionCall: Parse, Describe, Close, Flush only),
/// so that it writes nothing. Without the whole batch at hand, assume it
/// runs something.
fn runs_nothing(cbuf: &[u8]) -> bool {
    whole_messages(cbuf)
        .map(|(t, _)| t)
        .find(|t| matches!(t, b'E' | b'F' | b'Q' | b'S'))
        == Some(b'S')
}

/// `body.split(|&b| b == 0)`, found with memchr.
fn split_nul(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let b = rest?;
        let end = memchr::memchr(0, b);
        rest = end.map(|e| &b[e + 1..]);
        Some(&b[..end.unwrap_or(b.len())])
    })
}

impl Forwarder<'_> {
    /// Where the transaction starting with the next client message runs,
    /// or `None` while that message is still arriving. Reads go to a
    /// replica only with read routing on, outside session mode, when the
    /// router proves the first statement read-only.
    pub(super) fn next_target(&mut self) -> Result<Option<Next>, SessionError> {
        let routing = &self.config.get(&self.shared.config).general.routing;
        let primary = |may_write| Ok(Some(Next::Server(Which::Primary, may_write)));
        let router = match &self.pool.router {
            Some(r)
                if self.mode != PoolMode::Session
                    && routing.consistency != Consistency::PrimaryOnly =>
            {
                r
            }
            _ => return primary(true),
        };
        let Some((tag, len)) = peek_header(&self.cbuf)? else {
            return Ok(None);
        };
        if !matches!(tag, b'Q' | b'P' | b'B') || len > MAX_ROUTED_SQL {
            // E.g. a driver's Close and Sync after a statement it dropped.
            return self.write_target(!runs_nothing(&self.cbuf));
        }
        let Some(body) = self.cbuf.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        // Query: sql\0. Parse: name\0 sql\0 types. Bind: portal\0 name\0 ...
        let mut parts = split_nul(body);
        // (Checked as UTF-8 by the router, on a cache miss.)
        let sql = match tag {
            // The server refuses a Query with anything after its text's
            // NUL (08P01), wherever it runs: no need to look for an
            // earlier one.
            b'Q' => body.strip_suffix(&[0]),
            // A client's named statement, prepared in an earlier batch:
            // its text decides, wherever it will be parsed.
            b'B' if self.track => super::statements::bound(self.statements.as_deref(), Some(body))
                .map(|s| s.text().as_bytes()),
            b'B' => None,
            b'P' if parts.next().is_some_and(|name| !name.is_empty()) && !self.track => {
                // Untracked, a named statement must stay where its Binds
                // will find it: the primary.
                return self.write_target(false);
            }
            _ => parts.next(),
        };
        let decision = match sql.map(|sql| router.route_bytes(sql)) {
            Some(Ok(Some(decision))) => decision,
            Some(Err(e)) => return Err(SessionError::Route(e)),
            // No text, or not UTF-8.
            _ => return self.write_target(true),
        };
        self.shared.metrics.decision(&decision);
        if self.shared.queries.enabled() {
            // The field itself: `replicas` still borrows `self.pool`.
            self.route.get_or_insert_with(Box::default).reason = decision.reason.label();
        }
        match (&decision.reason, tag) {
            (Reason::RouteSetting(hint), b'Q') => {
                return Ok(Some(Next::SetRoute(*hint, HEADER_LEN + len)))
            }
            (Reason::MinLsnSetting(lsn), b'Q') => {
                return Ok(Some(Next::SetMinLsn(*lsn, HEADER_LEN + len)))
            }
            // A prepared one would reach the server, which would take it
            // for a setting of its own and raise no fence: refused.
            (Reason::MinLsnSetting(_), _) => {
                return Err(SessionError::Route(
                    crate::router::RouterError::MinLsnPrepared,
                ))
            }
            // DDL may have changed a function's volatility.
            (Reason::Write("DDL or other") | Reason::Unparsed, _) => router.catalog_changed(),
            _ => {}
        }
        let hint = self.route.as_ref().map_or(RouteHint::Auto, |r| r.hint);
        let route = match (hint, decision.route) {
            (_, Route::Any) => Route::Any,
            (RouteHint::Primary, _) => Route::Primary,
            (RouteHint::Replica, _) => Route::Replica,
            (RouteHint::Auto, r) => r,
        };
        let lone_query = tag == b'Q' && self.cbuf.len() == HEADER_LEN + len;
        if decision.reason == Reason::Begin
            && routing.transaction_routing == TransactionRouting::FirstStatement
            && self.mode == PoolMode::Transaction
            && hint == RouteHint::Auto
            && lone_query
            && !self.begin_deferred()
        {
            return Ok(Some(Next::DeferBegin(HEADER_LEN + len)));
        }
        match route {
            Route::Replica => Ok(Some(Next::Read)),
            Route::Any => primary(false),
            Route::Primary => {
                // A Parse (and Describe) that nothing executes before its
                // Sync writes nothing: it must not hold the client's reads
                // back.
                let parse_only = tag == b'P' && runs_nothing(&self.cbuf);
                self.write_target(decision.route == Route::Primary && !parse_only)
            }
        }
    }

    /// The primary, for a transaction that may write; refused while the
    /// primary reports it is in recovery, so that no write lands on (or
    /// fails confusingly at) a demoted server.
    fn write_target(&self, may_write: bool) -> Result<Option<Next>, SessionError> {
        if let Some(r) = &self.pool.replicas {
            if r.primary_in_recovery() {
                let addr = self.pool.primary.manager().target.addr.to_string();
                let repeat = self.shared.config.load().general.log_repeat_interval;
                let what = "refusing writes: the primary reports it is in recovery";
                let e = "pg_is_in_recovery() is true";
                self.shared.incidents.report(&addr, what, &e, repeat);
                return Err(SessionError::PrimaryInRecovery(addr));
            }
        }
        Ok(Some(Next::Server(Which::Primary, may_write)))
    }

    /// The server for a read: a replica that qualifies (in rotation, caught
    /// up with this client's writes), waiting up to
    /// `read_your_writes_timeout` for one to catch up; else the primary,
    /// unless `primary_reads = never` and no replica is in rotation.
    pub(super) async fn choose_reader(&mut self) -> Result<Which, SessionError> {
        let wait = self
            .shared
            .config
            .load()
            .general
            .routing
            .read_your_writes_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(r) = self.pick_reader(tokio::time::Instant::now() < deadline) {
                return r;
            }
            let Some(replicas) = self.pool.replicas.as_ref() else {
                return Ok(Which::Primary);
            };
            tokio::select! {
                _ = replicas.next_round() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.shared.hard_shutdown.cancelled() => return Err(SessionError::Shutdown),
            }
        }
    }

    /// Whether a read may wait for a replica to replay the client's last
    /// write (`read_your_writes_timeout` above zero).
    pub(super) fn may_wait_for_replica(&mut self) -> bool {
        let routing = &self.config.get(&self.shared.config).general.routing;
        !routing.read_your_writes_timeout.is_zero()
    }

    /// One look at the replicas for a read (see `choose_reader`): `None`
    /// when the replica to use is behind this client's writes and
    /// `may_wait` says to wait for it.
    pub(super) fn pick_reader(&mut self, may_wait: bool) -> Option<Result<Which, SessionError>> {
        let Some(replicas) = self.pool.replicas.as_ref() else {
            return Some(Ok(Which::Primary));
        };
        let mut fence = self.fence();
        let pick = replicas.pick(&mut fence, &self.pool.primary, 0);
        if fence != self.fence() {
            // The field itself: `replicas` still borrows `self.pool`.
            self.route.get_or_insert_with(Box::default).fence = fence;
        }
        match pick {
            Pick::Server(which) => Some(Ok(which)),
            Pick::Behind if may_wait => None,
            // Correctness first: the primary has the client's writes.
            Pick::Behind => {
                self.shared.metrics.fallback(Fallback::Behind);
                Some(Ok(Which::Primary))
            }
            Pick::NoReplica
                if self
                    .config
                    .get(&self.shared.config)
                    .general
                    .routing
                    .primary_reads
                    == PrimaryReads::Never =>
            {
                Some(Err(SessionError::NoReplica("none in rotation")))
            }
            Pick::NoReplica => {
                self.shared.metrics.fallback(Fallback::NoReplica);
                Some(Ok(Which::Primary))
            }
        }
    }

    /// A lone `BEGIN` under `transaction_routing = first_statement`: answer
    /// it as the server would and keep it for the server the next statement
    /// chooses.
    pub(super) async fn defer_begin(&mut self, len: usize) -> Result<(), SessionError> {
        let query = self.cbuf.split_to(len);
        let sql = query
            .get(HEADER_LEN..len.saturating_sub(1))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("BEGIN");
        self.route_state().deferred_begin = Some(sql.into());
        self.answer_here("BEGIN", b'T').await
    }

    /// `SET pgswitch.route = ...` as a Query of its own: pgswitch's setting,
    /// answered here as a server would answer a SET.
    pub(super) async fn set_route(
        &mut self,
        hint: RouteHint,
        len: usize,
    ) -> Result<(), SessionError> {
        self.route_state().hint = hint;
        self.cbuf.advance(len);
        let status = if self.begin_deferred() { b'T' } else { b'I' };
        self.answer_here("SET", status).await
    }

    /// `SET pgswitch.min_lsn = '...'` as a Query of its own: the client's
    /// reads must see the primary's WAL up to there (a position it got
    /// from another connection, instance or HTTP request: causal reads).
    /// It joins the client's own read-your-writes fence.
    pub(super) async fn set_min_lsn(&mut self, lsn: u64, len: usize) -> Result<(), SessionError> {
        let r = self.route_state();
        r.fence = match r.fence {
            Fence::None => Fence::Lsn(lsn),
            Fence::Lsn(n) => Fence::Lsn(n.max(lsn)),
            // A write whose position is not known yet: the primary's
            // position read after now covers both.
            Fence::After(_) => Fence::After(std::time::Instant::now()),
        };
        self.cbuf.advance(len);
        let status = if self.begin_deferred() { b'T' } else { b'I' };
        self.answer_here("SET", status).await
    }

    /// A Query pgswitch answers itself: CommandComplete, ReadyForQuery.
    async fn answer_here(&mut self, tag: &str, status: u8) -> Result<(), SessionError> {
        let mut out = BytesMut::new();
        messages::command_complete(&mut out, tag);
        messages::ready_for_query(&mut out, status);
        self.client
            .send(&out)
            .await
            .map_err(SessionError::ClientGone)
    }

    /// The replica refused the request as a write (25006), or went away,
    /// before answering anything else: give the replica connection back
    /// (idle, it did nothing) or drop it (`lost`), and run the same request
    /// on the primary.
    pub(super) async fn rerun_on_primary(
        &mut self,
        request: Bytes,
        lost: bool,
    ) -> Result<(), SessionError> {
        let repeat = self
            .config
            .get(&self.shared.config)
            .general
            .log_repeat_interval;
        if let Some(mut link) = self.link.take() {
            self.slot().detach();
            match lost {
                true => link.server.mark_broken(),
                false => link.server.mark_ready(b'I'),
            }
            let addr = &link.server.addr;
            if lost {
                let what = "a replica went away under reads; they ran again on the primary";
                self.shared
                    .incidents
                    .report(addr, what, &"connection lost", repeat);
            } else {
                let what =
                    "a replica refused reads as writes (25006); they ran again on the primary";
                let why = "a function or view that writes, seen as a read";
                self.shared
                    .incidents
                    .event(&self.pool.name, what, &why, repeat);
            }
        }
        let cause = if lost { "replica_lost" } else { "read_only" };
        let may_write = !lost; // a lost read is still a read
        self.shared
            .metrics
            .replica_reruns
            .with_label_values(&[cause])
            .inc();
        match self.attach((Which::Primary, may_write)).await {
            Ok(()) => {}
            Err(e) if Refusal::applies_to(&e) => {
                // The request was whole and is consumed: answer it now.
                let mut out = BytesMut::new();
                messages::error_response(
                    &mut out,
                    Severity::Error,
                    e.sqlstate(),
                    &e.to_string(),
                    e.hint(),
                );
                messages::ready_for_query(&mut out, b'I');
                return self
                    .client
                    .send(&out)
                    .await
                    .map_err(SessionError::ClientGone);
            }
            Err(e) => return Err(e),
        }
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        link.started = Some(std::time::Instant::now());
        for (tag, body) in whole_messages(&request) {
            link.traced(self.shared.traces.is_some(), tag, Some(body));
        }
        link.server.mark_busy();
        let out = self.rewrite_request(&request);
        if let Some(link) = self.link.as_mut() {
            if let Err(e) = link.server.write(&out).await {
                return Box::pin(self.server_lost(e)).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn split_nul_splits_as_split_does() {
        for b in [&b""[..], b"a", b"a\0", b"\0", b"a\0b\0", b"a\0\0b", b"\0\0"] {
            let ours: Vec<_> = super::split_nul(b).collect();
            let std: Vec<_> = b.split(|&c| c == 0).collect();
            assert_eq!(ours, std, "{b:?}");
        }
    }
}
