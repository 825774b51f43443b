//! The forwarder's side of named prepared statements (see `prepared`):
//! rewriting the client's messages, replies pgswitch makes itself, the
//! per-connection cap, and the metrics.

use bytes::BytesMut;

use super::send::Outgoing;
use super::{Filled, Forwarder, Link, Replay, SessionError};
use crate::metrics::Metrics;
use crate::pool::ServerConn;
use crate::prepared::{self, ClientStatements, Rewriter, Undo};
use crate::protocol::frame::{whole_messages, HEADER_LEN};
use crate::session::ledger::{Fate, Kind};
use crate::sqltext::Text;

/// What goes to the server for one read of client bytes, when some of its
/// messages were rewritten.
#[derive(Default)]
pub(super) struct Rewritten {
    /// What the message being rewritten becomes (filled by the Rewriter).
    pub made: BytesMut,
    /// `None` while every message so far goes out as the client sent it.
    out: Option<BytesMut>,
    /// Start of the client bytes not yet copied to `out`.
    from: usize,
}

impl Rewritten {
    /// The message at `pos..pos + n` of `client` is replaced by `made`.
    pub fn replace(&mut self, client: &[u8], pos: usize, n: usize) {
        // Room for the whole read and what is made for it, usually: one
        // allocation per rewritten read rather than a few as it grows.
        let room = client.len() + self.made.len() + 64;
        let out = self
            .out
            .get_or_insert_with(|| BytesMut::with_capacity(room));
        out.extend_from_slice(&client[self.from..pos]);
        out.extend_from_slice(&self.made);
        self.made.clear();
        self.from = pos + n;
    }

    /// What to send instead of `client` (all of this read's bytes), or
    /// `None` when it goes as it is.
    pub fn finish(self, client: &[u8]) -> Option<BytesMut> {
        let mut out = self.out?;
        out.extend_from_slice(&client[self.from..]);
        Some(out)
    }
}

/// A rewriter over the client's statements and the link's server;
/// `client_cap` is `max_client_prepared_statements`.
pub(super) fn rewriter<'b>(
    shared: &'b crate::shared::Shared,
    client: &'b mut ClientStatements,
    link: &'b mut Link,
    client_cap: usize,
    rerun: bool,
) -> Rewriter<'b> {
    Rewriter {
        client,
        server: &mut link.server.statements,
        status: link.last_status,
        ledger: &mut link.ledger,
        interner: &shared.statements,
        client_cap,
        rerun,
        parsed: 0,
        reused: 0,
        wiped: false,
        sql_prepared: false,
    }
}

/// Adds what a rewriter did to the metrics.
pub(super) fn count(metrics: &Metrics, rw: &Rewriter) {
    if rw.parsed > 0 {
        metrics.prepared_parses.inc_by(rw.parsed);
    }
    if rw.reused > 0 {
        metrics.prepared_reused.inc_by(rw.reused);
    }
}

/// Applies bookkeeping for messages the server skipped after an error.
pub(super) fn undo(
    undo: Vec<Undo>,
    client: &mut Option<Box<ClientStatements>>,
    server: &mut ServerConn,
    metrics: &Metrics,
) {
    if undo.is_empty() {
        return;
    }
    let client = client.get_or_insert_with(Box::default);
    let before = (client.len(), client.bytes());
    prepared::undo(undo, client, &mut server.statements);
    gauge(metrics, before, client);
}

/// Moves the client-statement gauges by what changed since `before`.
pub(super) fn gauge(metrics: &Metrics, before: (usize, usize), client: &ClientStatements) {
    // Most messages change nothing: no atomic writes then.
    let (n, bytes) = (client.len(), client.bytes());
    if (n, bytes) != before {
        metrics.prepared_statements.add(n as i64 - before.0 as i64);
        metrics.prepared_bytes.add(bytes as i64 - before.1 as i64);
    }
}

/// True when the batch in `buf` (whole messages) binds a named statement
/// and the client will learn the result's shape afresh: it parses the
/// statement in the same batch, or asks for a description. Only then may
/// a stale plan be replaced behind its back (see `Forwarder::replan`); a
/// client binding a statement it described long ago must get the error,
/// as from Postgres.
pub(super) fn replannable(buf: &[u8]) -> bool {
    let named = |body: &[u8]| body.first().is_some_and(|&c| c != 0);
    let (mut binds, mut learns) = (false, false);
    for (tag, body) in whole_messages(buf) {
        match tag {
            b'B' => {
                let portal_end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                binds |= body.get(portal_end + 1..).is_some_and(named);
            }
            b'P' => learns |= named(body),
            b'D' => learns = true,
            _ => {}
        }
    }
    binds && learns
}

/// The client's statement a Bind body names, if known.
pub(super) fn bound<'b>(
    client: Option<&'b ClientStatements>,
    body: Option<&[u8]>,
) -> Option<&'b crate::prepared::Statement> {
    let body = body?;
    let portal_end = body.iter().position(|&b| b == 0)?;
    let rest = &body[portal_end + 1..];
    let name = &rest[..rest.iter().position(|&b| b == 0)?];
    if name.is_empty() {
        return None;
    }
    client?.get(name).map(|s| &**s)
}

impl Forwarder<'_> {
    /// Writes the client's rewritten messages (maybe none: all answered
    /// here), then the replies pgswitch makes that nothing owed stands
    /// before (a Parse the server had, a Close of a client's name).
    /// Returns the request to re-run on the primary if a replica died
    /// under it (see `replay`).
    pub(super) async fn send_rewritten(&mut self) -> Result<Option<bytes::Bytes>, SessionError> {
        let Some(link) = self.link.as_mut() else {
            return Ok(None);
        };
        let out = link.rewritten.take().unwrap_or_default();
        if !out.is_empty() {
            let next = match link.server.write_now(&out) {
                // (With TLS, done once the encrypted bytes have left too.)
                Ok(n) if n == out.len() && !link.server.pending_output() => Filled::Nothing,
                // The server would not read until its output was taken.
                Ok(n) => Box::pin(self.send_rest(Outgoing::Owned(out), n)).await?,
                Err(e) => match link.replay.take_sent() {
                    Some(request) => Filled::Rerun(request),
                    None => Filled::Lost(Box::new(e)),
                },
            };
            match next {
                Filled::Rerun(request) => return Ok(Some(request)),
                Filled::Lost(e) => {
                    Box::pin(self.server_lost(*e)).await?;
                    return Ok(None);
                }
                _ => {}
            }
            if self.link.is_none() {
                return Ok(None);
            }
        }
        let Some(link) = self.link.as_mut() else {
            return Ok(None);
        };
        // Held while the safety net may still re-run the request: then the
        // client must have seen nothing of the first try.
        if !matches!(link.replay, Replay::Sent(_)) {
            self.send_due_replies().await?;
        }
        Ok(None)
    }

    /// The server said a statement's cached plan no longer fits the schema
    /// and nothing reached the client: drop every statement on the
    /// connection and run the request again, once, with its statements
    /// parsed afresh.
    pub(super) async fn replan(&mut self, request: bytes::Bytes) -> Result<(), SessionError> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        tracing::info!(pool = %self.pool.name, id = self.login.registration.slot.pid, "a prepared statement's plan went stale; parsing it again and retrying");
        self.shared.metrics.prepared_replans.inc();
        link.replay = Replay::Off;
        // The first try is over, through its ReadyForQuery.
        link.ledger = Default::default();
        link.server.statements.clear();
        let mut out = BytesMut::new();
        crate::protocol::messages::query(&mut out, "DEALLOCATE ALL");
        link.ledger.sent(Kind::Sync, Fate::Swallow, None);
        link.server.mark_busy();
        out.extend_from_slice(&self.rewrite_request(&request));
        if let Some(link) = self.link.as_mut() {
            link.server.write(&out).await?;
        }
        Ok(())
    }

    /// Sends the replies pgswitch makes that nothing owed stands before.
    async fn send_due_replies(&mut self) -> Result<(), SessionError> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        let mut made = Vec::new();
        let mut skipped = Vec::new();
        link.ledger.due(&mut made, &mut skipped);
        undo(
            skipped,
            &mut self.statements,
            &mut link.server,
            &self.shared.metrics,
        );
        if made.is_empty() {
            return Ok(());
        }
        self.client
            .send(&made)
            .await
            .map_err(SessionError::ClientGone)
    }

    /// `max_client_prepared_statements`, as the rewriter takes it.
    #[inline]
    pub(super) fn client_statement_cap(&mut self) -> usize {
        self.config
            .get(&self.shared.config)
            .general
            .max_client_prepared_statements
    }

    /// The client's request, rewritten for a new server connection (the
    /// replica safety net's re-run on the primary).
    pub(super) fn rewrite_request(&mut self, request: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        let cap = self.client_statement_cap();
        let Some(link) = self.link.as_mut() else {
            out.extend_from_slice(request);
            return out;
        };
        if !self.track {
            for (tag, body) in whole_messages(request) {
                link.ledger.sent_as_is(tag, Some(body));
                link.ledger.client(tag);
            }
            out.extend_from_slice(request);
            return out;
        }
        let statements = self.statements.get_or_insert_with(Box::default);
        let mut rw = rewriter(self.shared, statements, link, cap, true);
        let mut pos = 0;
        for (tag, body) in whole_messages(request) {
            let len = HEADER_LEN + body.len();
            if rw.message(tag, Some(body), Text::of_request(tag, body), &mut out) {
                out.extend_from_slice(&request[pos..pos + len]);
            }
            rw.ledger.client(tag);
            pos += len;
        }
        count(&self.shared.metrics, &rw);
        out
    }

    /// Between transactions: closes the least recently used statements
    /// over `max_prepared_statements` on the connection, in one round trip.
    pub(super) async fn trim_statements(&mut self, link: &mut Link) {
        let general = &self.config.get(&self.shared.config).general;
        let (cap, timeout) = (
            general.max_prepared_statements,
            general.server_reset_timeout,
        );
        let evicted = link.server.statements.over_cap(cap.max(1));
        if evicted.is_empty() {
            return;
        }
        let mut msgs = BytesMut::new();
        for s in &evicted {
            close_statement(&mut msgs, s.name_z());
        }
        msgs.extend_from_slice(&[b'S', 0, 0, 0, 4]);
        self.shared
            .metrics
            .prepared_evictions
            .inc_by(evicted.len() as u64);
        if let Err(e) = link.server.exchange(&msgs, timeout).await {
            self.log_event(
                &link.server.addr,
                "closing prepared statements failed; discarding server connection",
                &e,
            );
            link.server.mark_broken();
        }
    }
}

impl Forwarder<'_> {
    /// A server problem met on the way, logged as `incidents` says.
    fn log_event(
        &self,
        server: &dyn std::fmt::Display,
        what: &'static str,
        e: &dyn std::fmt::Display,
    ) {
        let repeat = self.shared.config.load().general.log_repeat_interval;
        self.shared.incidents.event(server, what, e, repeat);
    }
}

/// Appends Close (statement) for a NUL-terminated name.
fn close_statement(out: &mut BytesMut, name_z: &[u8]) {
    use bytes::BufMut;
    out.put_u8(b'C');
    out.put_u32((4 + 1 + name_z.len()) as u32);
    out.put_u8(b'S');
    out.put_slice(name_z);
}

impl Forwarder<'_> {
    /// Whether [`end_turn`](Self::end_turn) has anything to do: most turns
    /// leave no SQL-level statement, no wipe and no excess behind, and
    /// skip it (and its boxed future).
    pub(super) fn turn_left_work(&mut self, link: &Link) -> bool {
        let cap = self
            .config
            .get(&self.shared.config)
            .general
            .max_prepared_statements;
        link.sql_prepared || link.wiped || link.server.statements.len() > cap
    }

    /// The end of a turn with statement tracking: the client's SQL-level
    /// statements are checked against the server (a failed PREPARE is
    /// forgotten) and dropped from it, a connection the client wiped is
    /// made sure to be empty, and the connection's cap is applied.
    pub(super) async fn end_turn(&mut self, link: &mut Link) {
        let timeout = self
            .config
            .get(&self.shared.config)
            .general
            .server_reset_timeout;
        if link.sql_prepared && !link.wiped {
            let sql = "SELECT name FROM pg_prepared_statements WHERE from_sql";
            let names = match link.server.query_column(sql, timeout).await {
                Ok(names) => names,
                Err(e) => {
                    self.log_event(
                        &link.server.addr,
                        "could not list prepared statements; discarding server connection",
                        &e,
                    );
                    link.server.mark_broken();
                    return;
                }
            };
            let client = self.statements.get_or_insert_with(Box::default);
            let before = (client.len(), client.bytes());
            client.keep_sql(&names);
            gauge(&self.shared.metrics, before, client);
            // Client-chosen names must not outlive the turn; the shared
            // statements stay.
            if !names.is_empty() {
                let drop: Vec<String> = names
                    .iter()
                    .map(|n| format!("DEALLOCATE {}", prepared::sql::quote_ident(n)))
                    .collect();
                if let Err(e) = link.server.run(&drop.join(";"), timeout).await {
                    self.log_event(
                        &link.server.addr,
                        "DEALLOCATE failed; discarding server connection",
                        &e,
                    );
                    link.server.mark_broken();
                    return;
                }
            }
            link.sql_prepared = false;
        }
        if link.wiped {
            // A failed DEALLOCATE ALL (or a stale plan) must not leave
            // statements we think are gone, or the reverse.
            if let Err(e) = link.server.run("DEALLOCATE ALL", timeout).await {
                self.log_event(
                    &link.server.addr,
                    "DEALLOCATE ALL failed; discarding server connection",
                    &e,
                );
                link.server.mark_broken();
                return;
            }
            link.server.statements.clear();
            link.sql_prepared = false;
            link.wiped = false;
        }
        let cap = self
            .config
            .get(&self.shared.config)
            .general
            .max_prepared_statements;
        if link.server.statements.len() > cap {
            self.trim_statements(link).await;
        }
    }

    /// Puts the client's SQL-level `PREPARE`s on a server connection it
    /// takes; one that fails now (its table dropped, say) is forgotten,
    /// with a warning. Returns whether there were any.
    pub(super) async fn replay_sql_statements(
        &mut self,
        server: &mut ServerConn,
    ) -> Result<bool, SessionError> {
        let Some(client) = self.statements.as_mut().filter(|c| !c.sql().is_empty()) else {
            return Ok(false);
        };
        let timeout = self
            .config
            .get(&self.shared.config)
            .general
            .server_reset_timeout;
        let all: Vec<&str> = client.sql().iter().map(|(_, t)| t.as_str()).collect();
        if Box::pin(server.run(&all.join(";\n"), timeout))
            .await
            .is_ok()
        {
            return Ok(true);
        }
        // One failed, so none ran: one at a time, keeping those that work.
        let before = (client.len(), client.bytes());
        let mut kept = Vec::new();
        for (name, text) in client.sql().to_vec() {
            match Box::pin(server.run(&text, timeout)).await {
                Ok(()) => kept.push(name),
                Err(e) if server.state() == crate::pool::ConnState::Ready(b'I') => {
                    let what =
                        "a prepared statement could not be recreated; its client no longer has it";
                    let repeat = self
                        .config
                        .get(&self.shared.config)
                        .general
                        .log_repeat_interval;
                    self.shared.incidents.event(&server.addr, what, &e, repeat);
                }
                Err(e) => return Err(e.into()),
            }
        }
        client.keep_sql(&kept);
        gauge(&self.shared.metrics, before, client);
        Ok(true)
    }
}
