//! The replica safety net: a Query routed to a replica that the replica
//! rejects as a write (SQLSTATE 25006, read_only_sql_transaction) before
//! sending anything else is run again on the primary. The replica did
//! nothing, and the client has seen nothing yet, so the retry is invisible.

use bytes::Bytes;

use crate::protocol::frame::{peek_header, whole_messages, HEADER_LEN};
use crate::protocol::messages::BackendError;

/// Where a replica-routed request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Not retryable (not routed to a replica, or more than one message).
    Off,
    /// This Query is about to be sent to the replica.
    Armed(Bytes),
    /// Sent; its first reply decides.
    Sent(Bytes),
}

/// What the replica's first reply says.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    NeedMore,
    /// Refused as a write: the first `len` bytes (error through
    /// ReadyForQuery) are to be dropped and the Query re-run on the primary.
    Refused {
        len: usize,
    },
    /// Anything else: forward as usual.
    Proceed,
}

/// Looks at the replica's reply so far. A RowDescription (and notices or
/// parameter reports) may come before the error, since Postgres describes
/// the result before running the statement; no row may.
pub fn verdict(buf: &[u8]) -> Verdict {
    let mut pos = 0;
    loop {
        let Ok(Some((tag, len))) = peek_header(&buf[pos..]) else {
            return Verdict::NeedMore;
        };
        match tag {
            b'T' | b'N' | b'S' => {
                if buf.len() < pos + HEADER_LEN + len {
                    return Verdict::NeedMore;
                }
                pos += HEADER_LEN + len;
            }
            b'E' => {
                let Some(body) = buf.get(pos + HEADER_LEN..pos + HEADER_LEN + len) else {
                    return Verdict::NeedMore;
                };
                if BackendError::parse(body).code != "25006" {
                    return Verdict::Proceed;
                }
                // The reply to a failed simple Query ends with ReadyForQuery.
                let mut end = 0;
                for (t, b) in whole_messages(buf) {
                    end += HEADER_LEN + b.len();
                    if t == b'Z' {
                        return Verdict::Refused { len: end };
                    }
                }
                return Verdict::NeedMore;
            }
            _ => return Verdict::Proceed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{self, Severity};
    use bytes::BytesMut;

    fn reply(code: &str) -> BytesMut {
        let mut b = BytesMut::new();
        messages::error_response(
            &mut b,
            Severity::Error,
            code,
            "cannot execute nextval() in a read-only transaction",
            None,
        );
        messages::ready_for_query(&mut b, b'I');
        b
    }

    #[test]
    fn read_only_error_is_retried() {
        let r = reply("25006");
        assert_eq!(verdict(&r), Verdict::Refused { len: r.len() });
        assert_eq!(verdict(&r[..r.len() - 1]), Verdict::NeedMore);
        assert_eq!(verdict(&r[..3]), Verdict::NeedMore);
    }

    #[test]
    fn row_description_may_come_first() {
        let mut b = BytesMut::new();
        b.extend_from_slice(b"T\0\0\0\x06\0\0");
        assert_eq!(verdict(&b), Verdict::NeedMore);
        let r = reply("25006");
        b.extend_from_slice(&r);
        assert_eq!(verdict(&b), Verdict::Refused { len: b.len() });
        let mut rows = BytesMut::from(&b"T\0\0\0\x06\0\0"[..]);
        rows.extend_from_slice(b"D\0\0\0\x06\0\0");
        assert_eq!(verdict(&rows), Verdict::Proceed);
    }

    #[test]
    fn other_replies_are_forwarded() {
        assert_eq!(verdict(&reply("42P01")), Verdict::Proceed);
        let mut b = BytesMut::new();
        messages::command_complete(&mut b, "SELECT 1");
        assert_eq!(verdict(&b), Verdict::Proceed);
    }
}
