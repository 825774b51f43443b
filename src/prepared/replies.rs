//! The server's replies on their way to the client, with the changes the
//! connection's [`Ledger`] calls for: replies to messages pgswitch added
//! are dropped, refusals replaced, replies pgswitch makes put in their
//! place, and pooler-wide statement names in errors turned back into the
//! client's.
//! Bytes that need no change are copied in runs, or not at all: when
//! nothing changes, the caller forwards its buffer as it is.

use bytes::BytesMut;

use super::{client_error, ClientStatements, Undo};
use crate::session::ledger::{Action, Ledger};

/// Client output being assembled from one read of server bytes.
#[derive(Default)]
pub struct Replies {
    /// `None` while every byte so far goes out unchanged.
    out: Option<BytesMut>,
    /// Start of the bytes not yet copied to `out`.
    from: usize,
    /// Dropping the rest of a dropped message's body.
    dropping: bool,
    /// Bookkeeping to undo for messages the server skipped.
    pub undo: Vec<Undo>,
    made: Vec<u8>,
}

impl Replies {
    /// A message answering the plain run at the front of the ledger (see
    /// [`Ledger::plain_reply`]): it goes out as it is. False when
    /// [`Replies::message`] must see it.
    #[inline]
    pub fn plain(&mut self, ledger: &mut Ledger, tag: u8) -> bool {
        // Nothing is made or dropped while a plain reply is owed: any
        // body still being dropped belonged to the message before.
        let plain = ledger.plain_reply(tag);
        if plain {
            self.dropping = false;
        }
        plain
    }

    /// The message starting at `pos` in `buf`, `n` bytes of it here (all of
    /// it when `body` is given).
    pub fn message(
        &mut self,
        ledger: &mut Ledger,
        client: Option<&ClientStatements>,
        buf: &[u8],
        (pos, n): (usize, usize),
        tag: u8,
        body: Option<&[u8]>,
    ) {
        self.dropping = false;
        ledger.due(&mut self.made, &mut self.undo);
        let action = ledger.received(tag, &mut self.undo);
        let renamed = match (&action, tag, body, client) {
            (Action::Forward, b'E', Some(body), Some(c)) => client_error(body, None, c),
            (Action::Rename(name, hash), b'E', Some(body), Some(c)) => {
                client_error(body, Some((name, *hash)), c)
            }
            _ => None,
        };
        let forward = matches!(action, Action::Forward | Action::Rename(..));
        if self.made.is_empty() && forward && renamed.is_none() {
            return;
        }
        let made = std::mem::take(&mut self.made);
        let out = self.flush(buf, pos);
        out.extend_from_slice(&made);
        match action {
            Action::Forward | Action::Rename(..) => match renamed {
                Some(r) => out.extend_from_slice(&r),
                None => out.extend_from_slice(&buf[pos..pos + n]),
            },
            Action::Drop => self.dropping = body.is_none(),
            Action::Replace(e) => out.extend_from_slice(&e),
        }
        self.from = pos + n;
    }

    /// Body bytes of the message before, at `pos`.
    pub fn body(&mut self, buf: &[u8], (pos, n): (usize, usize)) {
        if self.dropping {
            self.flush(buf, pos);
            self.from = pos + n;
        }
    }

    /// Copies the unchanged run before `pos` into the output.
    fn flush(&mut self, buf: &[u8], pos: usize) -> &mut BytesMut {
        let out = self.out.get_or_insert_with(BytesMut::new);
        if self.from < pos {
            out.extend_from_slice(&buf[self.from..pos]);
        }
        self.from = pos;
        out
    }

    /// The end of this read, at `pos`: what the client gets instead of
    /// `buf[..pos]`, or `None` when that goes out unchanged. Replies
    /// pgswitch makes that are now due (nothing owed before them) go last.
    pub fn finish(&mut self, ledger: &mut Ledger, buf: &[u8], pos: usize) -> Option<BytesMut> {
        if self.from > pos {
            // The caller stopped before the last message it showed us (a
            // ReadyForQuery it answers itself), which was copied unchanged.
            if let Some(out) = self.out.as_mut() {
                out.truncate(out.len().saturating_sub(self.from - pos));
            }
            self.from = pos;
        }
        ledger.due(&mut self.made, &mut self.undo);
        if !self.made.is_empty() {
            let made = std::mem::take(&mut self.made);
            self.flush(buf, pos).extend_from_slice(&made);
        }
        let mut out = self.out.take()?;
        if self.from < pos {
            out.extend_from_slice(&buf[self.from..pos]);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{Item, Splitter};
    use crate::session::ledger::{Fate, Kind};

    /// Runs `buf` through `Replies` as the forwarder does.
    fn filter(ledger: &mut Ledger, buf: &[u8]) -> Vec<u8> {
        let mut r = Replies::default();
        let mut split = Splitter::new(1 << 20);
        let mut pos = 0;
        while let Some((item, n)) = split.next(&buf[pos..], |t| t == b'E').unwrap() {
            match item {
                Item::Whole { tag, .. } | Item::Header { tag, .. } if r.plain(ledger, tag) => {}
                Item::Whole { tag, body } => {
                    r.message(ledger, None, buf, (pos, n), tag, Some(body))
                }
                Item::Header { tag, .. } => r.message(ledger, None, buf, (pos, n), tag, None),
                Item::Body => r.body(buf, (pos, n)),
            }
            pos += n;
        }
        match r.finish(ledger, buf, pos) {
            Some(out) => out.to_vec(),
            None => buf[..pos].to_vec(),
        }
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn unchanged_replies_are_not_copied() {
        let mut e = Ledger::default();
        e.sent(Kind::Sync, Fate::Forward, None);
        let buf = [msg(b'C', b"SELECT 1\0"), msg(b'Z', b"I")].concat();
        let mut r = Replies::default();
        r.message(&mut e, None, &buf, (0, 14), b'C', None);
        r.message(&mut e, None, &buf, (14, 6), b'Z', None);
        assert!(r.finish(&mut e, &buf, buf.len()).is_none());
    }

    #[test]
    fn plain_turns_take_the_short_way() {
        let mut e = Ledger::default();
        for kind in [Kind::Parse, Kind::Bind, Kind::Execute, Kind::Sync] {
            e.sent(kind, Fate::Forward, None);
        }
        let mut r = Replies::default();
        for tag in *b"12DCNZ" {
            assert!(r.plain(&mut e, tag), "{}", tag as char);
        }
        assert!(e.is_empty());
        // An error, a COPY and replies to named messages go the long way.
        e.sent(Kind::Sync, Fate::Forward, None);
        assert!(!r.plain(&mut e, b'E'));
        assert!(!r.plain(&mut e, b'G'));
        let mut e = Ledger::default();
        e.sent(Kind::Bind, Fate::Named(b"s1".as_slice().into(), 7), None);
        assert!(!r.plain(&mut e, b'2'));
    }

    #[test]
    fn dropped_added_and_replaced_replies() {
        let mut e = Ledger::default();
        e.emit(b'1', None); // a client Parse the server had
        e.sent(Kind::Parse, Fate::Swallow, None); // added ahead of the Bind
        e.sent(Kind::Bind, Fate::Forward, None);
        e.sent(Kind::Execute, Fate::Forward, None);
        e.emit(b'3', None); // a client Close
        e.sent(Kind::Sync, Fate::Forward, None);
        let rows = [msg(b'D', b"\0\x01\0\0\0\x011"), msg(b'C', b"SELECT 1\0")].concat();
        let buf = [
            msg(b'1', b""),
            msg(b'2', b""),
            rows.clone(),
            msg(b'Z', b"I"),
        ]
        .concat();
        let out = filter(&mut e, &buf);
        let want = [
            msg(b'1', b""),
            msg(b'2', b""),
            rows,
            msg(b'3', b""),
            msg(b'Z', b"I"),
        ]
        .concat();
        assert_eq!(out, want);
        assert!(e.is_empty());
    }

    #[test]
    fn replies_made_here_go_out_when_nothing_is_owed_before_them() {
        let mut e = Ledger::default();
        e.sent(Kind::Bind, Fate::Forward, None);
        e.emit(b'1', None);
        let buf = msg(b'2', b"");
        let out = filter(&mut e, &buf);
        assert_eq!(out, [msg(b'2', b""), msg(b'1', b"")].concat());
    }

    #[test]
    fn refusal_error_replaces_the_servers() {
        let mut e = Ledger::default();
        let ours = msg(b'E', b"SERROR\0C42P05\0\0");
        e.sent(Kind::Bind, Fate::Replace(ours.clone().into()), None);
        e.sent(Kind::Sync, Fate::Forward, None);
        let buf = [msg(b'E', b"SERROR\0C26000\0\0"), msg(b'Z', b"I")].concat();
        assert_eq!(filter(&mut e, &buf), [ours, msg(b'Z', b"I")].concat());
    }
}
