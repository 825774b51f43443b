//! A server connection that fails under a request (it closed, reset, or
//! sent a FATAL error: a crash, an immediate shutdown, a killed backend).
//! In transaction and statement modes the client keeps its connection to
//! pgswitch, as if the server had answered with an error:
//!
//! - a request the replica safety net holds (nothing of its reply reached
//!   the client) runs again elsewhere (`routing::rerun_on_primary`);
//! - otherwise every request still owed an answer gets ERROR 08006 naming
//!   the server, then ReadyForQuery; messages of a request not yet ended by
//!   its Sync are dropped up to it, as Postgres does after an error;
//! - a transaction under way is gone: its ReadyForQuery says 'E', and
//!   further statements get 25P02 until the client ends it (ROLLBACK,
//!   COMMIT, END, ABORT), as on a direct connection;
//! - stray COPY data after that is dropped, as Postgres drops it.
//!
//! In session mode, or pinned, the client's server session is gone with its
//! state, so the client is ended as Postgres would end it.
//!
//! The client only ever gets whole messages (`scan_server` holds back a
//! partial one), so an error can always follow what it has; a message too
//! large to hold back that the server leaves half-sent ends the client.

use bytes::BytesMut;

use super::{statements, Forwarder, Refusal, SessionError};
use crate::config::PoolMode;
use crate::pool::{self, Release, ServerError, Which};
use crate::protocol::frame::whole_messages;
use crate::protocol::messages::{self, Severity};
use crate::session::lexer::Lexer;

impl Forwarder<'_> {
    /// The server connection failed with `e`; answer what the client is
    /// owed and keep it (see the module docs).
    pub(super) async fn server_lost(&mut self, e: ServerError) -> Result<(), SessionError> {
        let whole = self.link.as_ref().is_some_and(|l| l.split.at_boundary());
        if self.mode == PoolMode::Session || !whole {
            return Err(e.into());
        }
        let Some(mut link) = self.link.take() else {
            return Err(e.into());
        };
        self.slot().detach();
        link.server.mark_broken();
        let in_transaction = matches!(link.last_status, b'T' | b'E');
        let (owed, unsynced) = (link.ledger.owed(), link.ledger.unsynced());
        // Nothing unanswered took effect, as far as the client knows.
        let undo = link.ledger.abandon();
        statements::undo(
            undo,
            &mut self.statements,
            &mut link.server,
            &self.shared.metrics,
        );
        let (timeout, repeat) = {
            let g = &self.config.get(&self.shared.config).general;
            (g.server_reset_timeout, g.log_repeat_interval)
        };
        if let (Which::Replica(i), Some(r)) = (link.which, &self.pool.replicas) {
            // Its other idle connections are most likely dead too.
            if let Some(p) = r.pool(i) {
                p.retain(|_, _| false);
            }
        }
        let what = "server connection lost under a request; its client got an error";
        self.shared.incidents.report(&e.addr(), what, &e, repeat);
        let _ = pool::release(link.server, Release::Idle, timeout).await;

        let status = if in_transaction { b'E' } else { b'I' };
        let error = SessionError::ServerLost {
            cause: e,
            in_transaction,
        };
        let mut out = BytesMut::new();
        let report = |out: &mut BytesMut| {
            let msg = error.to_string();
            messages::error_response(out, Severity::Error, "08006", &msg, error.hint());
        };
        for _ in 0..owed {
            report(&mut out);
            messages::ready_for_query(&mut out, status);
        }
        if unsynced {
            // Extended messages without their Sync yet: the error now (the
            // client may be waiting on a Flush), ReadyForQuery at the Sync.
            report(&mut out);
            self.refusal = Some(Box::new(Refusal::until_sync(status)));
        } else if !self.csplit.at_boundary() {
            // The rest of a message already answered.
            self.refusal = Some(Box::new(Refusal::rest_of_message()));
        }
        if in_transaction {
            self.route_state().aborted = true;
        }
        self.client
            .send(&out)
            .await
            .map_err(SessionError::ClientGone)
    }

    /// Whether the request at the front of the client's buffer ends a
    /// transaction (ROLLBACK, COMMIT, END, ABORT), by a Query's or Parse's
    /// text, or a named statement's.
    pub(super) fn ends_transaction(&self) -> bool {
        let Some((tag, body)) = whole_messages(&self.cbuf).next() else {
            return false;
        };
        let text = match tag {
            b'Q' => body,
            b'P' => {
                let name_end = body.iter().position(|&c| c == 0).unwrap_or(body.len());
                body.get(name_end + 1..).unwrap_or_default()
            }
            b'B' => match statements::bound(self.statements.as_deref(), Some(body)) {
                Some(s) => s.text().as_bytes(),
                None => return false,
            },
            _ => return false,
        };
        let text = &text[..text.iter().position(|&c| c == 0).unwrap_or(text.len())];
        let Ok(sql) = std::str::from_utf8(text) else {
            return false;
        };
        let first = Lexer::new(sql).statement().and_then(|mut s| s.next());
        first.is_some_and(|t| {
            ["rollback", "commit", "end", "abort"]
                .iter()
                .any(|k| t.is(k))
        })
    }
}
