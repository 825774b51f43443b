//! A request that could not get a server connection (none free in time, or
//! the server unreachable). Its messages are read and dropped, and the client
//! gets what Postgres sends after an error: one ErrorResponse, then
//! ReadyForQuery at the end of the request (Query, FunctionCall or Sync;
//! "the backend will ... discard frontend messages until a Sync"). The client
//! stays connected and can retry.

use bytes::BytesMut;

use super::SessionError;
use crate::protocol::messages::{self, Severity};

pub struct Refusal {
    /// The error to report; `None` once sent.
    error: Option<SessionError>,
    /// The request's last message has been seen.
    finished: bool,
    /// The transaction status its ReadyForQuery reports: 'I', or 'E' in a
    /// transaction that failed (the client must end it).
    status: u8,
}

impl Refusal {
    pub fn new(error: SessionError) -> Self {
        Refusal {
            error: Some(error),
            finished: false,
            status: b'I',
        }
    }

    /// The rest of a request whose error the client already has: its
    /// messages are dropped up to the Sync, answered with ReadyForQuery
    /// `status`.
    pub fn until_sync(status: u8) -> Self {
        Refusal {
            error: None,
            finished: false,
            status,
        }
    }

    /// The rest of a message already answered (its body is skipped).
    pub fn rest_of_message() -> Self {
        Refusal {
            error: None,
            finished: true,
            status: b'I',
        }
    }

    /// A request inside a transaction that failed when its server went
    /// away: 25P02 until the client ends the transaction, as in Postgres.
    pub fn aborted() -> Self {
        Refusal {
            error: Some(SessionError::TransactionAborted),
            finished: false,
            status: b'E',
        }
    }

    /// Errors after which the client may simply try again.
    pub fn applies_to(e: &SessionError) -> bool {
        matches!(
            e,
            SessionError::Checkout(_)
                | SessionError::Route(_)
                | SessionError::PrimaryInRecovery(_)
                | SessionError::NoReplica(_)
        )
    }

    /// Replies owed for a client message with this tag, appended to `out`.
    pub fn on_message(&mut self, tag: u8, out: &mut BytesMut) {
        if matches!(tag, b'H' | b'd' | b'c' | b'f') {
            return; // Flush and COPY data carry no reply.
        }
        if let Some(e) = self.error.take() {
            messages::error_response(out, Severity::Error, e.sqlstate(), &e.to_string(), e.hint());
        }
        if matches!(tag, b'Q' | b'F' | b'S') {
            messages::ready_for_query(out, self.status);
            self.finished = true;
        }
    }

    /// The request's last message has been seen (the caller still has to
    /// skip the rest of its body).
    pub fn finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::CheckoutError;
    use crate::protocol::frame::whole_messages;

    fn refusal() -> Refusal {
        let e = CheckoutError::WaitTimeout {
            pool: "db/u".into(),
            size: 1,
            waited: std::time::Duration::from_secs(1),
        };
        Refusal::new(SessionError::Checkout(e))
    }

    fn tags(out: &BytesMut) -> Vec<u8> {
        whole_messages(out).map(|(t, _)| t).collect()
    }

    #[test]
    fn simple_query_gets_error_and_ready() {
        let mut r = refusal();
        let mut out = BytesMut::new();
        r.on_message(b'Q', &mut out);
        assert_eq!(tags(&out), b"EZ");
        assert!(r.finished());
    }

    #[test]
    fn pipeline_gets_one_error_then_ready_at_sync() {
        let mut r = refusal();
        let mut out = BytesMut::new();
        for t in *b"PBDEH" {
            r.on_message(t, &mut out);
        }
        assert_eq!(tags(&out), b"E");
        assert!(!r.finished());
        r.on_message(b'S', &mut out);
        assert_eq!(tags(&out), b"EZ");
        assert!(r.finished());
    }
}
