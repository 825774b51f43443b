//! Walking the bytes of one read, message by message, with no I/O: what
//! each client message means (statistics, settings, pinning, named
//! statements rewritten) and what each server reply means (end of a turn,
//! parameters, errors, rows, replies changed for named statements). The
//! session state machine in `mod.rs` then writes what these return.

use bytes::BytesMut;

use super::requests::track_request;
use super::statements::{self, Rewritten};
use super::{Flow, Forwarder, Link, SessionError};
use crate::config::{PoolMode, SessionState};
use crate::pool::Which;
use crate::prepared::Replies;
use crate::protocol::frame::{peek_header, Item, HEADER_LEN};
use crate::session::ledger::Ledger;

/// Queries longer than this are not held back whole to be scanned for
/// SQL-level prepared statements.
const MAX_WHOLE_QUERY: usize = 1 << 20;
/// Server messages up to this size reach the client whole (see `lost`).
const HOLD_MAX: usize = 1 << 20;
use crate::protocol::messages;
use crate::session::effects::{effects, effects_of, Effects};
use crate::sqltext::Text;

impl Forwarder<'_> {
    /// Walks the client's complete messages at hand: statistics, settings,
    /// pinning and reply bookkeeping noted, named statements rewritten.
    /// Returns how many bytes were walked and whether the client
    /// terminated; what the server gets instead of those bytes, if
    /// anything changed, is left in `link.rewritten`.
    pub(super) fn scan_client(&mut self) -> Result<(usize, Flow), SessionError> {
        // The link and the read buffer are out of `self` while they are
        // walked, so that the steps below can take `self` too (moves of a
        // box and a buffer handle).
        let Some(mut link) = self.link.take() else {
            return Ok((0, Flow::Continue));
        };
        let cbuf = std::mem::take(&mut self.cbuf);
        let walked = self.walk_client(&mut link, &cbuf);
        self.cbuf = cbuf;
        self.link = Some(link);
        walked
    }

    fn walk_client(
        &mut self,
        link: &mut Link,
        cbuf: &BytesMut,
    ) -> Result<(usize, Flow), SessionError> {
        let track = self.track;
        let mut rewritten = Rewritten::default();
        let mut pos = 0;
        let mut flow = Flow::Continue;
        loop {
            // Queries are looked at whole for PREPARE and DEALLOCATE, unless
            // huge (a bulk INSERT streams through as before).
            let huge = self.csplit.at_boundary()
                && matches!(peek_header(&cbuf[pos..]), Ok(Some((b'Q', len))) if len > MAX_WHOLE_QUERY);
            // Outside session mode every Query and Parse is read whole for
            // what it does to the session (see `effects`).
            let pooled = self.mode != PoolMode::Session;
            let want = |t| match t {
                b'Q' => pooled || (track && !huge),
                b'P' | b'F' => pooled || track,
                b'B' | b'D' | b'C' => track,
                _ => false,
            };
            let Some((item, n)) = self.csplit.next(&cbuf[pos..], want)? else {
                break;
            };
            let (tag, body, whole) = match item {
                Item::Header { tag, body_len } => {
                    let body = cbuf.get(pos + HEADER_LEN..pos + HEADER_LEN + body_len);
                    (tag, body, false)
                }
                Item::Whole { tag, body } => (tag, Some(body), true),
                Item::Body => {
                    pos += n;
                    continue;
                }
            };
            // Terminate is ours to handle; the server connection lives on.
            if tag == b'X' {
                flow = Flow::Terminate;
                break;
            }
            link.traced(self.shared.traces.is_some(), tag, body);
            if tag == b'B' && track {
                self.note_bound(link, body);
            }
            // The statement text, checked as UTF-8 and scanned for words
            // once for the statistics, the session-state rules and the
            // rewriter; in session mode with no rewriter, for the
            // statistics alone, which need no words.
            let text = body.and_then(|b| match pooled || track {
                true => Text::of_request(tag, b),
                false => Text::of_request_unscanned(tag, b),
            });
            // A statement refused instead of pinning (`session_state`).
            let refused = match tag {
                b'Q' | b'S' | b'F' | b'P' => self.note_request(link, tag, body, text),
                _ => None,
            };
            if track {
                let whole = whole.then_some((body, text));
                let sent = self.rewrite(link, tag, whole, refused, &mut rewritten.made);
                if !sent {
                    rewritten.replace(cbuf, pos, n);
                }
            } else {
                link.ledger.sent_as_is(tag, body);
            }
            link.started.get_or_insert_with(std::time::Instant::now);
            // Only the request's first segment (up to its Sync or Query)
            // was routed: whatever runs after it in the same turn may write.
            if matches!(tag, b'E' | b'F' | b'Q') && link.segment_ended {
                link.may_write = true;
            }
            link.segment_ended |= matches!(tag, b'S' | b'Q');
            link.ledger.client(tag);
            link.server.mark_busy();
            pos += n;
        }
        link.rewritten = rewritten.finish(&cbuf[..pos]);
        if link.ledger.unsure() && self.mode != PoolMode::Session {
            self.pin("a request during COPY FROM STDIN, whose replies cannot be counted");
        }
        Ok((pos, flow))
    }

    /// A Bind of a named statement, maybe prepared in an earlier batch:
    /// its text for the trace and the statistics, the settings it changes.
    fn note_bound(&self, link: &mut Link, body: Option<&[u8]>) {
        let Some(s) = statements::bound(self.statements.as_deref(), body) else {
            return;
        };
        if let Some(span) = link.trace.as_mut() {
            span.statement(s.text().as_bytes());
        }
        if let (Some(change), false) = (&s.change, self.mode == PoolMode::Session) {
            let c = link.change.get_or_insert_with(Box::default);
            c.merge((**change).clone());
        }
        if self.shared.queries.enabled() && link.parsed.is_none() {
            let reason = self.route.as_ref().map_or("", |r| r.reason);
            let key = s.fingerprint;
            link.parsed = Some(self.shared.queries.begin_keyed(key, s.text(), reason));
        }
    }

    /// A Query, Sync, FunctionCall or Parse: counted, timed, and (outside
    /// session mode) read for what it does to the session, which may pin
    /// the client. Returns the feature when `session_state = "refuse"`
    /// refuses the statement instead.
    fn note_request(
        &mut self,
        link: &mut Link,
        tag: u8,
        body: Option<&[u8]>,
        text: Option<Text<'_>>,
    ) -> Option<&'static str> {
        if tag != b'P' {
            self.pool.stats.requests.inc();
        }
        // One clock read for the request and, first in a transaction, for
        // its start (a Parse starts nothing).
        let now = (tag != b'P' || link.started.is_none()).then(std::time::Instant::now);
        if let Some(now) = now {
            link.started.get_or_insert(now);
        }
        if self.shared.queries.enabled() {
            let reason = self.route.as_ref().map_or("", |r| r.reason);
            let text = text.map(|t| t.sql);
            track_request(&self.shared.queries, link, tag, text, reason, now);
        }
        if self.mode == PoolMode::Session || tag == b'S' {
            return None;
        }
        let fx = session_effects(tag, body, text, self.track);
        if let Some(change) = fx.change {
            link.change.get_or_insert_with(Box::default).merge(change);
        }
        let feature = fx.pin?;
        let general = &self.config.get(&self.shared.config).general;
        if general.session_state == SessionState::Refuse && self.track {
            return Some(feature);
        }
        self.pin(feature);
        None
    }

    /// From now on the client keeps its server connection, as in session
    /// mode, because of `feature`.
    #[cold]
    #[inline(never)]
    fn pin(&mut self, feature: &'static str) {
        if self.mode == PoolMode::Session {
            return;
        }
        tracing::info!(pool = %self.pool.name, id = self.login.registration.slot.pid, feature, "client pinned to its server connection");
        self.mode = PoolMode::Session;
        self.shared.metrics.pinned_clients.inc();
        self.slot()
            .pinned
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// One client message through the named-statement rewriter (`whole`:
    /// its body and statement text, when read whole), or its refusal.
    /// Returns true when the message goes to the server as it is;
    /// otherwise what goes instead is in `made`.
    fn rewrite(
        &mut self,
        link: &mut Link,
        tag: u8,
        whole: Option<(Option<&[u8]>, Option<Text<'_>>)>,
        refused: Option<&'static str>,
        made: &mut BytesMut,
    ) -> bool {
        // Execute, Sync and the like change no statement: their replies
        // are noted, with no rewriter.
        if refused.is_none() && crate::prepared::note_unread(&mut link.ledger, tag) {
            return true;
        }
        let cap = self.client_statement_cap();
        let statements = self.statements.get_or_insert_with(Box::default);
        let before = (statements.len(), statements.bytes());
        let mut rw = statements::rewriter(self.shared, statements, link, cap, false);
        let sent = match refused {
            Some(feature) => {
                self.shared
                    .metrics
                    .requests_refused
                    .with_label_values(&["0A000"])
                    .inc();
                rw.refuse_feature(tag, feature, self.mode, made)
            }
            None => {
                let (body, text) = whole.unwrap_or_default();
                rw.message(tag, body, text, made)
            }
        };
        statements::count(&self.shared.metrics, &rw);
        let (wiped, sql_prepared) = (rw.wiped, rw.sql_prepared);
        link.wiped |= wiped;
        link.sql_prepared |= sql_prepared;
        statements::gauge(&self.shared.metrics, before, statements);
        sent
    }

    /// Walks the server bytes at hand up to the end of the client's turn:
    /// replies noted (ReadyForQuery, ParameterStatus, errors, rows), and
    /// changed where named statements call for it. Returns how many bytes
    /// were walked, whether statement mode refuses a transaction block
    /// (its ReadyForQuery not included); what the client gets instead of
    /// those bytes, if anything changed, is left in `link.rewritten`.
    pub(super) fn scan_server(&mut self) -> Result<(usize, bool), SessionError> {
        // Out of `self` while it is walked (see `scan_client`).
        let Some(mut link) = self.link.take() else {
            return Ok((0, false));
        };
        let walked = self.walk_server(&mut link);
        self.link = Some(link);
        walked
    }

    fn walk_server(&mut self, link: &mut Link) -> Result<(usize, bool), SessionError> {
        // The read buffer is out of the link while it is walked, so that
        // the steps below can take the link (a move of a buffer handle).
        let buf = std::mem::take(&mut link.server.buf);
        let walked = self.walk_replies(link, &buf);
        link.server.buf = buf;
        let (pos, refused_block, mut replies) = walked?;
        link.rewritten = self.finish_replies(&mut replies, link, pos);
        Ok((pos, refused_block))
    }

    /// Walks `buf`, the server's bytes at hand (see `walk_server`).
    fn walk_replies(
        &mut self,
        link: &mut Link,
        buf: &[u8],
    ) -> Result<(usize, bool, Replies), SessionError> {
        let mut pos = 0;
        let mut refused_block = false;
        // Replies noted in the ledger, and changed on the way where named
        // statements call for it (see `prepared`).
        let mut replies = Replies::default();
        // Row counts come from CommandComplete, read whole while traced.
        let whole_c = link.trace.is_some();
        loop {
            if link.split.at_boundary() && held_back(&buf[pos..]) {
                break;
            }
            let step = link.split.next(&buf[pos..], |t| {
                matches!(t, b'Z' | b'S' | b'E') || (whole_c && t == b'C')
            });
            let (item, n) = match step {
                Ok(Some(step)) => step,
                Ok(None) => break,
                Err(e) => {
                    link.server.mark_broken();
                    return Err(SessionError::Protocol(format!(
                        "server {} sent {e}",
                        link.server.addr
                    )));
                }
            };
            if let Item::Whole { tag: b'E', body } = item {
                let e = messages::BackendError::parse(body);
                if matches!(e.severity.as_str(), "FATAL" | "PANIC") {
                    // The server is going away: held back (see `lost`).
                    link.fatal = Some(Box::new(e));
                    break;
                }
            }
            let client = self.statements.as_deref();
            pass_reply(&mut replies, &mut link.ledger, client, buf, item, (pos, n));
            match self.note_reply(link, item) {
                Ready::Continue => {}
                Ready::RefuseBlock => {
                    // Swallow this ReadyForQuery; answer after the rollback.
                    refused_block = true;
                    break;
                }
                Ready::TurnEnds => {
                    // Whatever the server sent after it (e.g. a FATAL as it
                    // shuts down) is not this client's: it stays with the
                    // connection.
                    pos += n;
                    break;
                }
            }
            pos += n;
        }
        Ok((pos, refused_block, replies))
    }

    /// One server message (or the start of one) noted: the end of a
    /// statement, parameters, errors, rows.
    fn note_reply(&mut self, link: &mut Link, item: Item<'_>) -> Ready {
        match item {
            Item::Whole { tag: b'Z', body } => {
                let status = body.first().copied().unwrap_or(b'I');
                return self.on_ready(link, status);
            }
            Item::Whole { tag: b'S', body } => {
                if let Some((k, v)) = messages::parse_parameter_status(body) {
                    if self.params.get(k) != Some(v) {
                        std::sync::Arc::make_mut(&mut self.params).set(k, v);
                    }
                    link.server.params.set(k, v);
                }
            }
            Item::Whole { tag: b'E', body } => {
                if let Some(r) = link.running.oldest_mut() {
                    r.error = true;
                }
                if let Some((_, code)) = messages::error_fields(body).find(|(f, _)| *f == b'C') {
                    self.pool.stats.server_error(code);
                    if let Some(span) = link.trace.as_mut() {
                        span.error(code);
                    }
                    // A plan gone stale under a schema change: parse
                    // every statement afresh on this connection.
                    link.wiped |= code == "0A000" && self.track;
                }
            }
            Item::Whole { tag: b'C', body } => {
                if let Some(span) = link.trace.as_mut() {
                    span.completed(body);
                }
            }
            Item::Header { tag: b'D', .. } => {
                if let Some(r) = link.running.oldest_mut() {
                    r.rows += 1;
                }
            }
            _ => {}
        }
        Ready::Continue
    }

    /// The end of a read's walk: what the client gets instead of the
    /// bytes walked, if anything changed, and the bookkeeping of messages
    /// the server skipped undone.
    fn finish_replies(&mut self, r: &mut Replies, link: &mut Link, pos: usize) -> Option<BytesMut> {
        let out = r.finish(&mut link.ledger, &link.server.buf, pos);
        let undo = std::mem::take(&mut r.undo);
        statements::undo(
            undo,
            &mut self.statements,
            &mut link.server,
            &self.shared.metrics,
        );
        out
    }

    /// ReadyForQuery (`status`): the end of a statement, and maybe of the
    /// transaction and of the client's turn.
    fn on_ready(&mut self, link: &mut Link, status: u8) -> Ready {
        link.last_status = status;
        // One clock read for the statement's and the transaction's end.
        let now = std::time::Instant::now();
        if let Some(r) = link.running.pop() {
            let slow = self
                .config
                .get(&self.shared.config)
                .general
                .slow_query_threshold;
            let replica = matches!(link.which, Which::Replica(_));
            if let Some((took, text)) = self.shared.queries.end(&r, replica, slow, now) {
                tracing::warn!(pool = %self.pool.name, server = %link.server.addr, ms = took.as_millis() as u64, fingerprint = %text, "slow statement");
            }
        }
        let quiet = link.ledger.quiet();
        if quiet && status == b'I' {
            // The server answered: any outage of it is over (one atomic
            // load when none is open).
            self.shared.incidents.resolve(&link.server.addr);
            let ended = Ended {
                started: link.started.take(),
                at: now,
                span: link.trace.take(),
                which: link.which,
                reason: self.route.as_ref().map_or("", |r| r.reason),
            };
            ended.count(&self.pool, self.shared.traces.as_deref(), &link.server.addr);
        }
        match quiet {
            true => link.server.mark_ready(status),
            false => link.server.mark_busy(),
        }
        let pooled = matches!(self.mode, PoolMode::Transaction | PoolMode::Statement);
        match (quiet, status) {
            (true, b'I') if pooled => Ready::TurnEnds,
            (true, b'I') => Ready::Continue,
            (true, _) if self.mode == PoolMode::Statement => Ready::RefuseBlock,
            _ => Ready::Continue,
        }
    }
}

/// What a Query's, Parse's or FunctionCall's text does to the session
/// (`text`: the statement, when it is UTF-8). Texts that are not UTF-8
/// (another client_encoding) are read with the bytes that are not
/// replaced: every keyword that matters is ASCII. With named statements
/// tracked (`track`), a named one's settings are read back after each turn
/// that binds it; otherwise it pins.
fn session_effects(tag: u8, body: Option<&[u8]>, text: Option<Text<'_>>, track: bool) -> Effects {
    let Some(body) = body else {
        return Effects::default();
    };
    let (named, raw) = match tag {
        b'P' => {
            let name_end = body.iter().position(|&c| c == 0).unwrap_or(body.len());
            (
                name_end > 0 && !track,
                body.get(name_end + 1..).unwrap_or_default(),
            )
        }
        b'Q' => (false, body),
        b'F' => {
            // FunctionCall by OID: set_config and the session advisory locks.
            let oid = body
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let pins = oid.is_some_and(|o| o == 2078 || (2880..=2889).contains(&o));
            return Effects {
                change: None,
                pin: pins.then_some("a FunctionCall that changes the session"),
            };
        }
        _ => return Effects::default(),
    };
    if let Some(text) = text {
        return effects_of(text, named);
    }
    let raw = &raw[..raw.iter().position(|&c| c == 0).unwrap_or(raw.len())];
    effects(&String::from_utf8_lossy(raw), named)
}

/// What a ReadyForQuery means for the walk of the server's bytes.
/// The client gets whole messages only, so that an error can follow if
/// the server goes away (see `lost`): true when the message starting
/// `rest` is not all here yet. A message larger than `HOLD_MAX` streams
/// through.
fn held_back(rest: &[u8]) -> bool {
    match peek_header(rest) {
        Ok(Some((_, len))) => rest.len() < HEADER_LEN + len && len <= HOLD_MAX,
        _ => false,
    }
}

/// A server message at `at` in `buf` on its way to the client through the
/// reply ledger: most answer a plain turn and need nothing
/// (`Replies::plain`). Inline: it runs for every server message.
#[inline(always)]
fn pass_reply(
    r: &mut Replies,
    ledger: &mut Ledger,
    client: Option<&crate::prepared::ClientStatements>,
    buf: &[u8],
    item: Item<'_>,
    at: (usize, usize),
) {
    match item {
        Item::Whole { tag, .. } | Item::Header { tag, .. } if r.plain(ledger, tag) => {}
        Item::Whole { tag, body } => r.message(ledger, client, buf, at, tag, Some(body)),
        Item::Header { tag, .. } => r.message(ledger, client, buf, at, tag, None),
        Item::Body => r.body(buf, at),
    }
}

enum Ready {
    Continue,
    /// Statement mode: a transaction block began; it is refused.
    RefuseBlock,
    /// Transaction or statement mode: the client's turn ends here.
    TurnEnds,
}

/// A transaction that just ended (ReadyForQuery 'I' with nothing owed).
struct Ended {
    started: Option<std::time::Instant>,
    /// When it ended.
    at: std::time::Instant,
    span: Option<Box<crate::ops::traces::TxSpan>>,
    which: Which,
    /// The router's reason for it ("" when it did not decide).
    reason: &'static str,
}

impl Ended {
    /// Its pool metrics, and its span when traces are on.
    fn count(
        self,
        pool: &crate::pool::PoolSet,
        traces: Option<&crate::ops::traces::Traces>,
        server: &crate::config::ServerAddr,
    ) {
        if let Some(t) = self.started {
            pool.stats.transactions.inc();
            let stats = &pool.stats;
            stats
                .transaction_seconds
                .observe(self.at.saturating_duration_since(t).as_secs_f64());
        }
        if let (Some(span), Some(traces)) = (self.span, traces) {
            let place = crate::ops::traces::Place {
                pool: &pool.name,
                database: &pool.database,
                user: &pool.user,
                route: match self.which {
                    Which::Primary => "primary",
                    Which::Replica(_) => "replica",
                },
                reason: self.reason,
                server,
            };
            traces.finish(&span, &place);
        }
    }
}
