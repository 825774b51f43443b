//! Client messages in, server messages out: a client's names become the
//! pooler-wide names of their statements, a statement the server
//! connection lacks is parsed on it first, and the replies are lined up in
//! the connection's [`Ledger`] so the client gets exactly those of its own
//! messages.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::{ClientStatements, ServerStatements, Statement, Undo, PREFIX};
use crate::protocol::messages::{self, Severity};
use crate::session::ledger::{Fate, Kind, Ledger};
use crate::sqltext::Text;

/// Everything one client message may touch.
pub struct Rewriter<'a> {
    pub client: &'a mut ClientStatements,
    pub server: &'a mut ServerStatements,
    pub ledger: &'a mut Ledger,
    /// The transaction status of the server's latest ReadyForQuery.
    pub status: u8,
    /// The pooler's one copy of each statement.
    pub interner: &'a super::Interner,
    /// `max_client_prepared_statements`.
    pub client_cap: usize,
    /// Re-sending a request on another server (the replica safety net):
    /// the client's Parse already registered its name.
    pub rerun: bool,
    /// Statements parsed on the server, and client Parses answered from
    /// the server's cache (metrics).
    pub parsed: u64,
    pub reused: u64,
    /// The client deallocated everything on the server (`DEALLOCATE ALL`,
    /// `DISCARD ALL`), or sent an SQL-level `PREPARE`.
    pub wiped: bool,
    pub sql_prepared: bool,
}

impl Rewriter<'_> {
    /// Handles one client message (`body` is whole for Parse, Bind,
    /// Describe and Close, else `None`; `text` is the statement text of a
    /// whole Query or Parse, `Text::of_request`). Returns true when the
    /// message goes to the server as it is; otherwise what goes instead
    /// (maybe nothing) has been appended to `out`.
    pub fn message(
        &mut self,
        tag: u8,
        body: Option<&[u8]>,
        text: Option<Text<'_>>,
        out: &mut BytesMut,
    ) -> bool {
        let commands = || text.map(super::sql::commands_of).unwrap_or_default();
        match (tag, body) {
            (b'P', Some(body)) => {
                self.sql_text(commands(), false, out);
                self.parse(body, out)
            }
            (b'Q', Some(_)) => {
                let commands = commands();
                if commands.is_empty() || self.sql_text(commands, true, out) {
                    self.pass(Kind::Sync)
                } else {
                    false
                }
            }
            (b'B', Some(body)) => self.bind(body, out),
            (b'D', Some(body)) => self.describe(body, out),
            (b'C', Some(body)) => self.close(body, out),
            _ => {
                if !note_unread(self.ledger, tag) {
                    // Not read whole (a huge Query) or a FunctionCall.
                    if matches!(tag, b'Q' | b'F') {
                        self.ledger.sent(Kind::Sync, Fate::Forward, None);
                    }
                }
                true
            }
        }
    }

    /// SQL-level statements about prepared statements, in a Query or a
    /// Parse. Returns false when the Query was rewritten into `out`: a
    /// lone `DEALLOCATE` of a protocol-level statement becomes the
    /// `DEALLOCATE` of its pooler-wide statement on this connection, so
    /// the client gets the reply (and transaction status) Postgres gives.
    /// A Parse (`query` false) only records PREPAREs and DEALLOCATE ALL:
    /// its DEALLOCATE runs at a later Execute, and goes to the server as it
    /// is (found by the `prepared` fuzz target: rewriting it here sent a
    /// Query in the middle of the client's extended messages).
    fn sql_text(
        &mut self,
        commands: Vec<super::sql::Command>,
        query: bool,
        out: &mut BytesMut,
    ) -> bool {
        use super::sql::{quote_ident, Command};
        let alone = commands.len() == 1;
        for command in commands {
            match command {
                Command::DeallocateAll => {
                    self.client.clear();
                    self.server.clear();
                    self.wiped = true;
                }
                Command::Prepare { name, text } => {
                    self.client.prepare_sql(&name, &text);
                    self.sql_prepared = true;
                }
                Command::Deallocate(_) if !query => {}
                Command::Deallocate(name) => {
                    if self.client.sql().iter().any(|(n, _)| *n == name) {
                        // On the server for this turn; whether the
                        // DEALLOCATE worked is read back when it ends.
                        self.sql_prepared = true;
                        continue;
                    }
                    let Some(stmt) = self.client.remove(name.as_bytes()) else {
                        continue;
                    };
                    if !alone {
                        continue;
                    }
                    let cached = self.server.touch(&stmt);
                    if !cached {
                        // Parse it here first, and Sync so that a failure
                        // cannot make the server skip the Query (which then
                        // fails the same way and says so).
                        out.extend_from_slice(&stmt.parse);
                        self.ledger.sent(Kind::Parse, Fate::Silent, None);
                        put_message(out, b'S', &[]);
                        self.ledger.sent(Kind::Sync, Fate::Silent, None);
                    }
                    self.server.forget(stmt.hash);
                    let sql = format!("DEALLOCATE {}", quote_ident(stmt.name()));
                    put_message(out, b'Q', &[sql.as_bytes(), b"\0"]);
                    let undo = Undo::Deallocated(name.as_bytes().into(), stmt, cached);
                    self.ledger.sent(Kind::Sync, Fate::Forward, Some(undo));
                    return false;
                }
            }
        }
        true
    }

    fn parse(&mut self, body: &[u8], out: &mut BytesMut) -> bool {
        // Unnamed statements pass as they are, without building anything.
        if body.first().is_none_or(|&b| b == 0) {
            return self.pass(Kind::Parse);
        }
        let Some((name, stmt)) = Statement::from_parse(body) else {
            return self.pass(Kind::Parse);
        };
        let rest = &body[name.len() + 1..];
        let shown = String::from_utf8_lossy(name);
        match self.client.get(name) {
            Some(old) if self.rerun && old.parse == stmt.parse => {}
            Some(_) => {
                // Postgres reports a statement's own errors (syntax, unknown
                // table) before the duplicate name.
                self.parse_aside(rest, Fate::Swallow, None, out);
                self.refuse(
                    out,
                    "42P05",
                    &format!("prepared statement \"{shown}\" already exists"),
                    None,
                );
                return false;
            }
            None if self.client.len() >= self.client_cap => {
                self.refuse(
                    out,
                    "53400",
                    &format!(
                        "cannot prepare statement \"{shown}\": this client already has {} prepared statements",
                        self.client.len()
                    ),
                    Some("close or deallocate statements the client no longer uses, or raise max_client_prepared_statements"),
                );
                return false;
            }
            None => {}
        }
        let stmt = self.interner.intern(stmt);
        let cached = self.server.touch(&stmt);
        tracing::trace!(client_name = %shown, statement = stmt.name(), cached, "Parse");
        self.client.insert(name, stmt.clone());
        if !cached {
            self.put_parse(&stmt, Fate::Forward, Some(name.into()), out);
            return false;
        }
        let undo = Some(Undo::ClientForget(name.into()));
        if self.state_known() {
            self.reused += 1;
            self.ledger.emit(b'1', undo);
        } else {
            // The server may be in a failed transaction, where a Parse
            // fails: it gets the reply the client's Parse would.
            self.parse_aside(rest, Fate::Forward, undo, out);
        }
        false
    }

    /// Parses `rest` (a Parse body after the name) under a name of ours
    /// and closes it again: the server answers as it would the client's
    /// Parse (an error, or ParseComplete), and keeps nothing.
    fn parse_aside(&mut self, rest: &[u8], fate: Fate, undo: Option<Undo>, out: &mut BytesMut) {
        put_message(out, b'P', &[b"pgswitch_aside\0", rest]);
        self.ledger.sent(Kind::Parse, fate, undo);
        put_message(out, b'C', &[b"Spgswitch_aside\0"]);
        self.ledger.sent(Kind::Close, Fate::Swallow, None);
    }

    fn bind(&mut self, body: &[u8], out: &mut BytesMut) -> bool {
        let Some(portal_end) = body.iter().position(|&b| b == 0) else {
            return self.pass(Kind::Bind);
        };
        let rest = &body[portal_end + 1..];
        let Some((client_name, hash)) = self.statement(rest, out) else {
            return self.pass(Kind::Bind);
        };
        let name_len = rest.iter().position(|&b| b == 0).unwrap_or(0);
        let tail = &rest[name_len + 1..];
        let name = Statement::name_z_of(hash);
        put_message(out, b'B', &[&body[..=portal_end], &name, tail]);
        self.ledger
            .sent(Kind::Bind, Fate::Named(client_name, hash), None);
        false
    }

    fn describe(&mut self, body: &[u8], out: &mut BytesMut) -> bool {
        let kind = match body.first() {
            Some(b'S') => Kind::DescribeStatement,
            _ => Kind::DescribePortal,
        };
        let stmt = match kind {
            Kind::DescribeStatement => self.statement(&body[1..], out),
            _ => None,
        };
        let Some((client_name, hash)) = stmt else {
            return self.pass(kind);
        };
        put_message(out, b'D', &[b"S", &Statement::name_z_of(hash)]);
        self.ledger.sent(kind, Fate::Named(client_name, hash), None);
        false
    }

    /// Nothing is owed by the server and it is not in a failed
    /// transaction, so a reply pgswitch makes is the one it would send.
    fn state_known(&self) -> bool {
        self.status != b'E' && !self.ledger.replies_owed()
    }

    fn close(&mut self, body: &[u8], out: &mut BytesMut) -> bool {
        let name = body.get(1..).map_or(&b""[..], until_nul);
        if body.first() != Some(&b'S') || name.is_empty() {
            return self.pass(Kind::Close);
        }
        // Closing a name that does not exist is no error in Postgres either.
        let known = self.state_known();
        let undo = self
            .client
            .remove(name)
            .map(|s| Undo::ClientRestore(name.into(), s));
        if known {
            self.ledger.emit(b'3', undo);
        } else {
            // The server may be in a failed transaction: a Close of a name
            // it lacks gets the reply the client's would.
            put_message(out, b'C', &[b"Spgswitch_none\0"]);
            self.ledger.sent(Kind::Close, Fate::Forward, undo);
        }
        false
    }

    /// The client's statement named at the start of `rest` (`name\0...`),
    /// if it is a named one this client prepared. Unknown names go to the
    /// server as they are, which answers as Postgres does.
    /// The client's statement named at the start of `rest`: its name and
    /// its hash, with its Parse sent ahead (into `out`) unless the
    /// connection has it. The shared statement itself is not cloned: every
    /// client's Bind would write its one reference count.
    fn statement(&mut self, rest: &[u8], out: &mut BytesMut) -> Option<(Arc<[u8]>, u64)> {
        let name = until_nul(rest);
        if name.is_empty() {
            return None;
        }
        let (client_name, stmt) = self.client.entry(name)?;
        let cached = self.server.touch(stmt);
        tracing::trace!(statement = stmt.name(), cached, "statement needed");
        let found = (client_name.clone(), stmt.hash);
        if !cached {
            let stmt = stmt.clone();
            self.put_parse(&stmt, Fate::Swallow, None, out);
        }
        Some(found)
    }

    fn pass(&mut self, kind: Kind) -> bool {
        self.ledger.sent(kind, Fate::Forward, None);
        true
    }

    /// Sends the Parse of `stmt` (after closing a statement whose name it
    /// collides with) and records it on the connection.
    fn put_parse(
        &mut self,
        stmt: &Arc<Statement>,
        fate: Fate,
        client_name: Option<Box<[u8]>>,
        out: &mut BytesMut,
    ) {
        if let Some(old) = self.server.add(stmt.clone()) {
            put_message(out, b'C', &[b"S", old.name_z()]);
            let undo = Some(Undo::ServerRestore(old));
            self.ledger.sent(Kind::Close, Fate::Swallow, undo);
        }
        out.extend_from_slice(&stmt.parse);
        self.parsed += 1;
        let undo = match client_name {
            Some(name) => Undo::Parsed(name, stmt.hash),
            None => Undo::ServerForget(stmt.hash),
        };
        self.ledger.sent(Kind::Parse, fate, Some(undo));
    }

    /// Refuses a Query or Parse whose statement would create session state
    /// (`session_state = "refuse"`): it fails, naming the feature and the
    /// setting, and the transaction aborts as after any error.
    pub fn refuse_feature(
        &mut self,
        tag: u8,
        feature: &str,
        mode: crate::config::PoolMode,
        out: &mut BytesMut,
    ) -> bool {
        let message = format!("{feature} is not supported in {mode} pool mode");
        let hint = "set session_state = \"pin\" to keep such clients on one server connection, or use pool_mode = \"session\" for this database";
        if tag != b'Q' {
            self.refuse(out, "0A000", &message, Some(hint));
            return false;
        }
        let mut error = BytesMut::new();
        messages::error_response(&mut error, Severity::Error, "0A000", &message, Some(hint));
        // A Query sure to fail in its place (no such function), so the
        // server aborts the transaction as Postgres would; its error is
        // replaced by ours.
        put_message(out, b'Q', &[b"SELECT pgswitch.refused()\0"]);
        let fate = Fate::Replace(error.to_vec().into_boxed_slice());
        self.ledger.sent(Kind::Sync, fate, None);
        false
    }

    /// Refuses a client message the way the server would: a message that
    /// is sure to fail goes in its place (so the server skips to the Sync
    /// and aborts the transaction), and its error is replaced by ours.
    fn refuse(&mut self, out: &mut BytesMut, code: &str, message: &str, hint: Option<&str>) {
        let mut error = BytesMut::new();
        messages::error_response(&mut error, Severity::Error, code, message, hint);
        // Bind of a statement that cannot exist (the prefix is ours, the
        // rest no hex digits), with no parameters or result formats.
        put_message(out, b'B', &[b"\0pgswitch_refused\0", &[0; 6]]);
        let fate = Fate::Replace(error.to_vec().into_boxed_slice());
        self.ledger.sent(Kind::Bind, fate, None);
    }
}

/// Notes, in the ledger, a message whose body the rewriter never reads
/// (Execute, Sync; Flush and COPY data owe nothing, and COPY's end is the
/// ledger's own to note, in `Ledger::client`): only its reply is owed.
/// The common case of a plain turn, without a rewriter. Returns false,
/// noting nothing, for the messages the rewriter reads (Parse, Bind,
/// Describe, Close, Query, FunctionCall).
#[inline]
pub fn note_unread(ledger: &mut Ledger, tag: u8) -> bool {
    match tag {
        b'P' | b'B' | b'D' | b'C' | b'Q' | b'F' => return false,
        b'E' => ledger.sent(Kind::Execute, Fate::Forward, None),
        b'S' => ledger.sent(Kind::Sync, Fate::Forward, None),
        _ => {}
    }
    true
}

/// An ErrorResponse (`body`) naming pooler-wide statements, rewritten to
/// name the client's statements instead: `named` is the client's name for
/// the statement the failed message used, if known; other pooler-wide
/// names get one of the client's names for them. The whole message, or
/// `None` when it names none.
pub fn client_error(
    body: &[u8],
    named: Option<(&[u8], u64)>,
    client: &ClientStatements,
) -> Option<BytesMut> {
    let prefix = PREFIX.as_bytes();
    if !body.windows(prefix.len()).any(|w| w == prefix) {
        return None;
    }
    let mut text = String::from_utf8_lossy(body).into_owned();
    let names = named
        .into_iter()
        .chain(client.iter().map(|(n, s)| (n, s.hash)));
    for (name, hash) in names {
        let shared = Statement::name_of(hash);
        text = text.replace(&shared, &String::from_utf8_lossy(name));
    }
    let mut out = BytesMut::new();
    put_message(&mut out, b'E', &[text.as_bytes()]);
    Some(out)
}

fn until_nul(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// Appends a message made of `parts`.
fn put_message(out: &mut BytesMut, tag: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(5 + len);
    out.put_u8(tag);
    out.put_u32((len + 4) as u32);
    for p in parts {
        out.put_slice(p);
    }
}
