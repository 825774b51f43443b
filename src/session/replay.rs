//! The replica safety net. A request routed to a replica is kept until
//! the replica's first real answer; if, before any row, the replica
//! - rejects it as a write (SQLSTATE 25006, read_only_sql_transaction), or
//! - goes away (a FATAL error such as an administrator shutdown, or the
//!   connection closing),
//!
//! the same request runs again on the primary. The replica did nothing and
//! the client has seen nothing yet, so the retry is invisible.
//!
//! The same net catches a named prepared statement whose plan went stale
//! under a schema change ("cached plan must not change result type",
//! 0A000) outside an explicit transaction: the statements are parsed
//! afresh and the request runs once more on the same server. Requests
//! qualify when they are whole and alone at the start of a transaction: one
//! simple Query, or one extended-protocol batch (Parse/Bind/Describe/
//! Execute/Flush) ending in its Sync.

use bytes::Bytes;

use crate::protocol::frame::{peek_header, whole_messages, HEADER_LEN};
use crate::protocol::messages::BackendError;

/// Where a replica-routed request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Not retryable (not routed to a replica, or not a whole request).
    Off,
    /// This request is about to be sent to the replica.
    Armed(Bytes),
    /// Sent; its first replies decide.
    Sent(Bytes),
}

impl Replay {
    /// The request sent, if armed and sent; the net is off afterwards.
    pub fn take_sent(&mut self) -> Option<Bytes> {
        match std::mem::replace(self, Replay::Off) {
            Replay::Sent(request) => Some(request),
            _ => None,
        }
    }
}

/// The safety net for `request`, the client's buffered bytes at the start
/// of a replica-routed transaction: armed only for one whole request.
pub fn arm(request: &[u8]) -> Replay {
    let mut len = 0;
    let mut ends = 0;
    let mut last = 0;
    for (tag, body) in whole_messages(request) {
        if !matches!(tag, b'Q' | b'P' | b'B' | b'D' | b'E' | b'H' | b'S') {
            return Replay::Off;
        }
        if matches!(tag, b'Q' | b'S') {
            ends += 1;
        }
        last = tag;
        len += HEADER_LEN + body.len();
    }
    if len == request.len() && ends == 1 && matches!(last, b'Q' | b'S') {
        Replay::Armed(Bytes::copy_from_slice(request))
    } else {
        Replay::Off
    }
}

/// What the replica's first replies say.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    NeedMore,
    /// Refused as a write: the first `len` bytes (through ReadyForQuery)
    /// are to be dropped and the request re-run on the primary. The replica
    /// connection is idle and fine.
    Refused {
        len: usize,
    },
    /// The replica is going away: re-run on the primary, drop the
    /// connection.
    Lost,
    /// A prepared statement's cached plan no longer fits the schema
    /// (0A000): the first `len` bytes (through ReadyForQuery) are to be
    /// dropped and the request re-run with its statements parsed afresh.
    Stale {
        len: usize,
    },
    /// Anything else: forward as usual.
    Proceed,
}

/// Looks at the server's reply so far. Replies that only acknowledge or
/// describe (ParseComplete, BindComplete, ParameterDescription, NoData,
/// RowDescription, notices, parameter reports) may come before the error;
/// no row may. On a replica (`hold`), a reply that has begun is still held
/// while it is small, until its ReadyForQuery: a replica that dies before
/// the end (a FATAL after the first rows, as a shutdown sends) has then
/// still sent the client nothing, and the read runs again elsewhere.
pub fn verdict(buf: &[u8], hold: bool) -> Verdict {
    let mut pos = 0;
    loop {
        let Ok(Some((tag, len))) = peek_header(&buf[pos..]) else {
            return Verdict::NeedMore;
        };
        match tag {
            b'1' | b'2' | b't' | b'n' | b'T' | b'N' | b'S' => {
                if buf.len() < pos + HEADER_LEN + len {
                    return Verdict::NeedMore;
                }
                pos += HEADER_LEN + len;
            }
            b'E' => {
                let Some(body) = buf.get(pos + HEADER_LEN..pos + HEADER_LEN + len) else {
                    return Verdict::NeedMore;
                };
                let e = BackendError::parse(body);
                if matches!(e.severity.as_str(), "FATAL" | "PANIC")
                    || e.code.starts_with("57P")
                    || e.code.starts_with("08")
                {
                    return Verdict::Lost;
                }
                let stale = e.code == "0A000" && e.message.starts_with("cached plan");
                if e.code != "25006" && !stale {
                    return Verdict::Proceed;
                }
                // The reply to a failed request ends with ReadyForQuery.
                let mut end = 0;
                for (t, b) in whole_messages(buf) {
                    end += HEADER_LEN + b.len();
                    if t == b'Z' {
                        return match stale {
                            true => Verdict::Stale { len: end },
                            false => Verdict::Refused { len: end },
                        };
                    }
                }
                return Verdict::NeedMore;
            }
            _ if hold => return held(buf, pos),
            _ => return Verdict::Proceed,
        }
    }
}

/// Most of a replica's reply held back until its end (see `verdict`).
const HOLD_REPLY: usize = 64 * 1024;

/// The rest of a reply that has begun (from `pos`): `NeedMore` until its
/// ReadyForQuery, `Lost` if the server goes away first; `Proceed` at the
/// end, or once the reply is too large to hold.
fn held(buf: &[u8], mut pos: usize) -> Verdict {
    if buf.len() > HOLD_REPLY {
        return Verdict::Proceed;
    }
    loop {
        let Ok(Some((tag, len))) = peek_header(&buf[pos..]) else {
            return Verdict::NeedMore;
        };
        let Some(body) = buf.get(pos + HEADER_LEN..pos + HEADER_LEN + len) else {
            return Verdict::NeedMore;
        };
        match tag {
            b'Z' => return Verdict::Proceed,
            // The server itself going away, not an error a query reports
            // (08xxx from dblink or postgres_fdw is the query's).
            b'E' => {
                let e = BackendError::parse(body);
                if matches!(e.severity.as_str(), "FATAL" | "PANIC") || e.code.starts_with("57P") {
                    return Verdict::Lost;
                }
            }
            _ => {}
        }
        pos += HEADER_LEN + len;
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
        assert_eq!(verdict(&r, false), Verdict::Refused { len: r.len() });
        assert_eq!(verdict(&r[..r.len() - 1], false), Verdict::NeedMore);
        assert_eq!(verdict(&r[..3], false), Verdict::NeedMore);
    }

    #[test]
    fn a_replica_reply_is_held_until_its_end() {
        let mut rows = BytesMut::from(&b"T\0\0\0\x06\0\0"[..]);
        rows.extend_from_slice(b"D\0\0\0\x06\0\0");
        assert_eq!(verdict(&rows, true), Verdict::NeedMore);
        // The server went away after the first rows: nothing reached the
        // client, the read runs again.
        let mut lost = rows.clone();
        let mut fatal = BytesMut::new();
        messages::error_response(
            &mut fatal,
            Severity::Fatal,
            "57P01",
            "terminating connection",
            None,
        );
        lost.extend_from_slice(&fatal);
        assert_eq!(verdict(&lost, true), Verdict::Lost);
        let mut done = rows.clone();
        messages::command_complete(&mut done, "SELECT 1");
        messages::ready_for_query(&mut done, b'I');
        assert_eq!(verdict(&done, true), Verdict::Proceed);
        // Too large to hold: it streams.
        let mut big = rows.clone();
        for _ in 0..70 {
            big.extend_from_slice(b"D\0\0\x04\0");
            big.extend_from_slice(&[0u8; 1020]);
        }
        assert_eq!(verdict(&big, true), Verdict::Proceed);
    }

    #[test]
    fn row_description_may_come_first() {
        let mut b = BytesMut::new();
        b.extend_from_slice(b"T\0\0\0\x06\0\0");
        assert_eq!(verdict(&b, false), Verdict::NeedMore);
        let r = reply("25006");
        b.extend_from_slice(&r);
        assert_eq!(verdict(&b, false), Verdict::Refused { len: b.len() });
        let mut rows = BytesMut::from(&b"T\0\0\0\x06\0\0"[..]);
        rows.extend_from_slice(b"D\0\0\0\x06\0\0");
        assert_eq!(verdict(&rows, false), Verdict::Proceed);
    }

    #[test]
    fn extended_replies_may_come_first() {
        let mut b = BytesMut::new();
        b.extend_from_slice(b"1\0\0\0\x04"); // ParseComplete
        b.extend_from_slice(b"2\0\0\0\x04"); // BindComplete
        b.extend_from_slice(b"n\0\0\0\x04"); // NoData
        assert_eq!(verdict(&b, false), Verdict::NeedMore);
        b.extend_from_slice(&reply("25006"));
        assert_eq!(verdict(&b, false), Verdict::Refused { len: b.len() });
    }

    #[test]
    fn a_stale_plan_is_re_planned() {
        let mut b = BytesMut::new();
        b.extend_from_slice(b"2\0\0\0\x04"); // BindComplete
        messages::error_response(
            &mut b,
            Severity::Error,
            "0A000",
            "cached plan must not change result type",
            None,
        );
        messages::ready_for_query(&mut b, b'I');
        assert_eq!(verdict(&b, false), Verdict::Stale { len: b.len() });
        let mut other = BytesMut::new();
        messages::error_response(&mut other, Severity::Error, "0A000", "other", None);
        assert_eq!(verdict(&other, false), Verdict::Proceed);
    }

    #[test]
    fn a_server_going_away_is_lost() {
        let mut b = BytesMut::new();
        messages::error_response(
            &mut b,
            Severity::Fatal,
            "57P01",
            "terminating connection due to administrator command",
            None,
        );
        assert_eq!(verdict(&b, false), Verdict::Lost);
        assert_eq!(verdict(&reply("57P01"), false), Verdict::Lost);
    }

    #[test]
    fn only_one_whole_request_is_armed() {
        let mut q = BytesMut::new();
        messages::query(&mut q, "SELECT 1");
        assert!(matches!(arm(&q), Replay::Armed(_)));
        assert_eq!(arm(&q[..q.len() - 1]), Replay::Off, "incomplete");
        let mut two = q.clone();
        two.extend_from_slice(&q);
        assert_eq!(arm(&two), Replay::Off, "two requests");
        let mut ext = BytesMut::new();
        postgres_protocol::message::frontend::parse("", "SELECT 1", [], &mut ext).unwrap();
        ext.extend_from_slice(b"S\0\0\0\x04");
        assert!(matches!(arm(&ext), Replay::Armed(_)));
        assert_eq!(arm(&ext[..ext.len() - 5]), Replay::Off, "no Sync yet");
        let mut copy = BytesMut::new();
        copy.extend_from_slice(b"d\0\0\0\x05x");
        copy.extend_from_slice(&q);
        assert_eq!(arm(&copy), Replay::Off, "not a plain request");
    }

    #[test]
    fn other_replies_are_forwarded() {
        assert_eq!(verdict(&reply("42P01"), false), Verdict::Proceed);
        let mut b = BytesMut::new();
        messages::command_complete(&mut b, "SELECT 1");
        assert_eq!(verdict(&b, false), Verdict::Proceed);
    }
}
