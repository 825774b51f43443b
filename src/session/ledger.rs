//! The ledger of one server connection: the replies it owes, in order,
//! for the messages sent to it, and from that whether it is "quiet" (every
//! request answered) and may change hands in transaction mode.
//!
//! For each reply it says which to forward, which to drop (a Parse or
//! Close pgswitch added), which to replace (a client message pgswitch
//! refused), and where to put replies pgswitch makes itself (a Parse the
//! connection already had, a Close of a client's name): the client must
//! see exactly the replies its own messages would get from a direct
//! connection. Without named statements to track, every entry is a plain
//! one, forwarded as it is.
//!
//! Fed from two sides: [`Ledger::sent`] for each message that goes to the
//! server (after any rewriting, with pgswitch's own messages), and
//! [`Ledger::client`] for each message as the client sent it (whether it
//! left an extended-protocol exchange open, COPY's end).
//!
//! Protocol facts this follows:
//! - every extended-protocol message gets one final reply (ParseComplete,
//!   BindComplete, CloseComplete, RowDescription or NoData for Describe,
//!   CommandComplete, EmptyQueryResponse or PortalSuspended for Execute);
//!   Sync, Query and FunctionCall end at ReadyForQuery;
//! - after an error the server skips every message up to the next Sync, so
//!   those messages get no reply and whatever they did here is undone;
//! - NoticeResponse, ParameterStatus and NotificationResponse may come at
//!   any time;
//! - COPY: "The backend will ignore Flush and Sync messages received
//!   during copy-in mode." Clients that pipeline (tokio-postgres sends
//!   Bind/Execute/Sync before the data, then CopyDone/Sync) send a Sync
//!   that gets no reply: the Syncs after an Execute or Query that turns
//!   out (at CopyInResponse) to start a COPY FROM STDIN, and before its
//!   CopyDone or CopyFail, are written off. An error ends copy-in mode:
//!   Syncs are answered again from there.
//!
//! Where the count cannot be known, the ledger says so ([`Ledger::unsure`])
//! and is never quiet again: the connection stays with its client and is
//! closed, not pooled, when the client leaves. That happens when the
//! client sends a Sync (or any request) in copy-in mode, which the server
//! ignores unless the data before it has just failed the COPY, and when a
//! COPY whose Syncs were written off fails: the server reports
//! CopyInResponse before it reads anything, so a COPY failing there (a
//! `BEFORE STATEMENT` trigger) reads those Syncs after the failure and
//! answers them.

use std::collections::VecDeque;
use std::sync::Arc;

pub use crate::prepared::Undo;

/// What a message sent to the server will be answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Parse,
    Bind,
    DescribeStatement,
    DescribePortal,
    Execute,
    Close,
    /// Sync, Query and FunctionCall: answered up to ReadyForQuery.
    Sync,
}

impl Kind {
    /// The kind of a client message with this tag sent on as it is (the
    /// body, when read, tells the two Describes apart; both end the same
    /// way). `None` for messages with no reply of their own.
    pub fn of(tag: u8, body: Option<&[u8]>) -> Option<Kind> {
        Some(match tag {
            b'P' => Kind::Parse,
            b'B' => Kind::Bind,
            b'D' if body.and_then(|b| b.first()) == Some(&b'S') => Kind::DescribeStatement,
            b'D' => Kind::DescribePortal,
            b'E' => Kind::Execute,
            b'C' => Kind::Close,
            b'S' | b'Q' | b'F' => Kind::Sync,
            _ => return None,
        })
    }
}

/// What happens to a message's replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Forward,
    /// A message naming the client's statement (the name, then the hash
    /// of the shared statement it stands for, which gives its pooler-wide
    /// name): forwarded, and an error that names the shared statement
    /// names the client's instead. (A hash, not the shared `Arc`: every
    /// client's Bind would write that one reference count.)
    Named(Arc<[u8]>, u64),
    /// Added by pgswitch: success is dropped, an error goes to the client.
    Swallow,
    /// Added by pgswitch ahead of a message that fails the same way if
    /// this does: every reply is dropped.
    Silent,
    /// Stands in for a client message pgswitch refused: it fails on the
    /// server (so the server skips to the Sync, as it would have), and the
    /// client gets this ErrorResponse instead.
    Replace(Box<[u8]>),
}

#[derive(Debug)]
enum Entry {
    Reply {
        kind: Kind,
        fate: Fate,
        undo: Option<Undo>,
    },
    /// A reply pgswitch makes (ParseComplete, CloseComplete) in its turn.
    Emit { tag: u8, undo: Option<Undo> },
    /// The client ended a COPY (CopyDone or CopyFail): no reply of its own.
    CopyEnd,
}

/// What to do with one server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Forward,
    Drop,
    Replace(Box<[u8]>),
    /// Forward this error with the client's name for the statement.
    Rename(Arc<[u8]>, u64),
}

/// How many plain entries are kept inline (see [`Plain`]).
const PLAIN_MAX: usize = 8;

/// Room for entries a queue keeps once it is empty again.
const QUEUE_KEPT: usize = 64;

/// Plain entries (replies forwarded as they are, nothing to undo) at the
/// front of the ledger, kept inline: most turns name no statement, and
/// need neither an allocation nor the general bookkeeping. While any are
/// here, nothing is being skipped and no COPY is under way; an error or a
/// COPY moves them into the queue first ([`Ledger::spill`]).
#[derive(Debug, Clone, Copy)]
struct Plain {
    kinds: [Kind; PLAIN_MAX],
    head: u8,
    len: u8,
}

impl Default for Plain {
    fn default() -> Self {
        Plain {
            kinds: [Kind::Sync; PLAIN_MAX],
            head: 0,
            len: 0,
        }
    }
}

impl Plain {
    fn at(&self, i: usize) -> Kind {
        self.kinds[(self.head as usize + i) % PLAIN_MAX]
    }

    fn push(&mut self, kind: Kind) {
        self.kinds[(self.head as usize + self.len as usize) % PLAIN_MAX] = kind;
        self.len += 1;
    }

    fn pop(&mut self) {
        self.head = ((self.head as usize + 1) % PLAIN_MAX) as u8;
        self.len -= 1;
    }
}

/// Whether `tag` is the last reply to a message of this kind (an error
/// also ends it).
fn ends(kind: Kind, tag: u8) -> bool {
    match kind {
        Kind::Parse => tag == b'1',
        Kind::Bind => tag == b'2',
        Kind::Close => tag == b'3',
        Kind::DescribeStatement | Kind::DescribePortal => matches!(tag, b'T' | b'n'),
        Kind::Execute => matches!(tag, b'C' | b'I' | b's'),
        Kind::Sync => tag == b'Z',
    }
}

/// How the server takes the messages it has not read yet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Each in turn.
    #[default]
    InOrder,
    /// An error was sent: the server skips everything up to the next Sync,
    /// and the ledger drops those entries.
    Skipping,
    /// COPY FROM STDIN (CopyInResponse seen, no CopyDone, CopyFail or
    /// error since): CopyData and Flush are expected, Syncs ignored.
    CopyIn,
}

/// The replies one server connection owes, oldest first: the inline plain
/// run, then the queue.
#[derive(Debug, Default)]
pub struct Ledger {
    plain: Plain,
    queue: VecDeque<Entry>,
    /// ReadyForQuery replies still due: the Sync entries, counted apart so
    /// that [`Ledger::quiet`] is a few compares.
    owed: u32,
    /// The client sent extended-protocol messages and no Sync after them.
    unsynced: bool,
    /// How the server takes what comes next.
    flow: Flow,
    /// Syncs were written off at the latest CopyInResponse and the COPY
    /// has not ended yet: if it fails, they may have been answered after
    /// all, and the count becomes unsure.
    written_off: bool,
    /// The replies owed can no longer be known (see the module docs).
    unsure: bool,
}

impl Ledger {
    /// Every request answered: the connection may change hands.
    pub fn quiet(&self) -> bool {
        self.owed == 0 && !self.unsynced && self.flow != Flow::CopyIn && !self.unsure
    }

    /// ReadyForQuery replies still due.
    pub fn owed(&self) -> u32 {
        self.owed
    }

    /// Extended-protocol messages sent and no Sync after them yet.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// The replies owed are no longer known (see the module docs).
    pub fn unsure(&self) -> bool {
        self.unsure
    }

    /// Nothing owed and nothing pgswitch makes still to come.
    pub fn is_empty(&self) -> bool {
        self.plain.len == 0 && self.queue.is_empty()
    }

    /// Some message sent is still unanswered.
    pub fn replies_owed(&self) -> bool {
        self.plain.len > 0 || self.queue.iter().any(|e| matches!(e, Entry::Reply { .. }))
    }

    /// Moves the plain run into the queue, for the general bookkeeping.
    fn spill(&mut self) {
        while self.plain.len > 0 {
            let kind = self.plain.at(self.plain.len as usize - 1);
            self.plain.len -= 1;
            let entry = Entry::Reply {
                kind,
                fate: Fate::Forward,
                undo: None,
            };
            self.queue.push_front(entry);
        }
        self.plain.head = 0;
    }

    /// The server is gone: nothing still owed will be answered, so none of
    /// it took effect. Everything to undo, to be applied last first; the
    /// ledger is empty again.
    pub fn abandon(&mut self) -> Vec<Undo> {
        self.spill();
        let mut undo = Vec::new();
        for e in self.queue.drain(..) {
            if let Entry::Reply { undo: u, .. } | Entry::Emit { undo: u, .. } = e {
                undo.extend(u);
            }
        }
        *self = Ledger::default();
        undo
    }

    /// A message as the client sent it (before any rewriting): whether it
    /// leaves an extended-protocol exchange open, the end of its COPY, and
    /// requests the server may or may not answer in copy-in mode.
    #[inline]
    pub fn client(&mut self, tag: u8) {
        if self.flow == Flow::CopyIn {
            return self.client_in_copy(tag);
        }
        match tag {
            b'S' => self.unsynced = false,
            b'P' | b'B' | b'E' | b'D' | b'C' | b'H' => self.unsynced = true,
            // Sent before the CopyInResponse (a client that pipelines).
            b'c' | b'f' => self.copy_end(),
            _ => {}
        }
    }

    /// A client message in copy-in mode. CopyData and Flush are what the
    /// mode expects. Any other request fails the COPY with no reply of its
    /// own, or (a Sync) is ignored unless the data before it failed the
    /// COPY: the replies owed are not known any more.
    #[cold]
    fn client_in_copy(&mut self, tag: u8) {
        match tag {
            b'c' | b'f' => self.copy_end(),
            b'd' | b'H' => {}
            _ if Kind::of(tag, None).is_some() => self.unsure = true,
            _ => {}
        }
    }

    /// A message sent to the server.
    #[inline]
    pub fn sent(&mut self, kind: Kind, fate: Fate, undo: Option<Undo>) {
        if kind == Kind::Sync {
            if self.flow == Flow::CopyIn {
                // Ignored, or not: see `client`.
                return;
            }
            self.owed += 1;
        }
        let plain = matches!(fate, Fate::Forward) && undo.is_none();
        if plain
            && self.queue.is_empty()
            && self.flow == Flow::InOrder
            && (self.plain.len as usize) < PLAIN_MAX
        {
            self.plain.push(kind);
            return;
        }
        self.queue.push_back(Entry::Reply { kind, fate, undo });
    }

    /// A client message with this tag sent on as it is, with no named
    /// statement to track.
    #[inline]
    pub fn sent_as_is(&mut self, tag: u8, body: Option<&[u8]>) {
        if let Some(kind) = Kind::of(tag, body) {
            self.sent(kind, Fate::Forward, None);
        }
    }

    /// A reply pgswitch makes itself, after the replies owed so far.
    pub fn emit(&mut self, tag: u8, undo: Option<Undo>) {
        self.queue.push_back(Entry::Emit { tag, undo });
    }

    /// The client sent CopyDone or CopyFail.
    fn copy_end(&mut self) {
        self.end_copy_in();
        self.queue.push_back(Entry::CopyEnd);
    }

    /// Replies pgswitch makes that are due now (nothing owed before them),
    /// appended to `out` as whole messages.
    pub fn due(&mut self, out: &mut Vec<u8>, undo: &mut Vec<Undo>) {
        if self.plain.len > 0 {
            // A plain reply is owed first; nothing is skipped meanwhile.
            return;
        }
        self.settle(undo);
        while let Some(Entry::Emit { .. }) = self.queue.front() {
            if let Some(Entry::Emit { tag, .. }) = self.queue.pop_front() {
                out.extend_from_slice(&[tag, 0, 0, 0, 4]);
            }
            self.settle(undo);
        }
    }

    /// A server message answering the plain run at the front, or one that
    /// may come at any time while it is owed: forwarded as it is, and
    /// nothing is due before it ([`Ledger::due`] makes nothing). The
    /// common case of [`Ledger::received`], inline. False, noting
    /// nothing, when the general way must see it (no plain run, an
    /// error, a COPY).
    #[inline]
    pub fn plain_reply(&mut self, tag: u8) -> bool {
        if self.plain.len == 0 || matches!(tag, b'E' | b'G') {
            return false;
        }
        if !matches!(tag, b'N' | b'S' | b'A') && ends(self.plain.at(0), tag) {
            self.plain.pop();
            if tag == b'Z' {
                self.owed = self.owed.saturating_sub(1);
            }
        }
        true
    }

    /// A message from the server: what to do with it. Bookkeeping to undo
    /// is appended to `undo`, to be applied last first.
    pub fn received(&mut self, tag: u8, undo: &mut Vec<Undo>) -> Action {
        if self.plain_reply(tag) || matches!(tag, b'N' | b'S' | b'A') {
            return Action::Forward;
        }
        match tag {
            b'Z' => self.owed = self.owed.saturating_sub(1),
            // An error ends copy-in mode; Syncs written off may be
            // answered after all.
            b'E' => {
                self.end_copy_in();
                self.unsure |= std::mem::take(&mut self.written_off);
            }
            // The COPY (the first to end after CopyInResponse) is done.
            b'C' => self.written_off = false,
            _ => {}
        }
        // An error skips, a COPY drops Syncs: the general way.
        self.spill();
        self.settle(undo);
        let Some(Entry::Reply { kind, .. }) = self.queue.front() else {
            return Action::Forward;
        };
        let kind = *kind;
        let error = tag == b'E' && kind != Kind::Sync;
        // COPY FROM STDIN, started by an Execute or a Query (a Query's
        // entry is of kind Sync).
        if tag == b'G' && matches!(kind, Kind::Execute | Kind::Sync) {
            self.copy_started();
        }
        let Some(Entry::Reply { fate, .. }) = self.queue.front() else {
            return Action::Forward;
        };
        let last = error || ends(kind, tag);
        // A Query that fails did nothing (pgswitch only tracks one-statement
        // Queries this way).
        let failed_query = tag == b'E' && kind == Kind::Sync;
        let action = match fate {
            Fate::Forward => Action::Forward,
            Fate::Named(name, hash) if tag == b'E' => Action::Rename(name.clone(), *hash),
            Fate::Named(..) => Action::Forward,
            Fate::Swallow if tag == b'E' => Action::Forward,
            Fate::Swallow | Fate::Silent => Action::Drop,
            Fate::Replace(e) if tag == b'E' => Action::Replace(e.clone()),
            // A refused Query still ends in its ReadyForQuery.
            Fate::Replace(_) if tag == b'Z' => Action::Forward,
            Fate::Replace(_) => Action::Drop,
        };
        if failed_query {
            if let Some(Entry::Reply { undo: u, .. }) = self.queue.front_mut() {
                undo.extend(u.take());
            }
        }
        if last {
            if let Some(Entry::Reply { undo: u, .. }) = self.queue.pop_front() {
                if error {
                    undo.extend(u);
                }
            }
            if error {
                self.flow = Flow::Skipping;
                self.settle(undo);
            }
            if self.queue.is_empty() && self.queue.capacity() > QUEUE_KEPT {
                // A deep pipeline is over: its room is not kept for the
                // rest of the session.
                self.queue = VecDeque::new();
            }
        }
        action
    }

    /// Drops what an error made the server skip, and COPY markers.
    fn settle(&mut self, undo: &mut Vec<Undo>) {
        loop {
            match self.queue.front() {
                Some(Entry::CopyEnd) => {}
                Some(Entry::Reply {
                    kind: Kind::Sync, ..
                }) => {
                    // (A Query that started a COPY stands here in copy-in
                    // mode, which goes on.)
                    if self.flow == Flow::Skipping {
                        self.flow = Flow::InOrder;
                    }
                    return;
                }
                Some(_) if self.flow == Flow::Skipping => {}
                _ => return,
            }
            if let Some(Entry::Reply { undo: u, .. } | Entry::Emit { undo: u, .. }) =
                self.queue.pop_front()
            {
                undo.extend(u);
            }
        }
    }

    /// The Execute or Query at the front started a COPY FROM STDIN: the
    /// Syncs sent after it and before the client's CopyDone/CopyFail get
    /// no reply.
    fn copy_started(&mut self) {
        let mut i = 1;
        let mut written_off = 0;
        while i < self.queue.len() {
            match self.queue[i] {
                Entry::CopyEnd => break,
                Entry::Reply {
                    kind: Kind::Sync, ..
                } => {
                    self.queue.remove(i);
                    written_off += 1;
                }
                _ => i += 1,
            }
        }
        self.owed = self.owed.saturating_sub(written_off);
        self.written_off = written_off > 0;
        // Copy-in mode lasts until the client's CopyDone or CopyFail, unless
        // one was sent already.
        if i == self.queue.len() {
            self.flow = Flow::CopyIn;
        }
    }

    /// Copy-in mode, if on, is over (the client ended it, or an error).
    fn end_copy_in(&mut self) {
        if self.flow == Flow::CopyIn {
            self.flow = Flow::InOrder;
        }
    }
}

#[cfg(test)]
mod tests;
