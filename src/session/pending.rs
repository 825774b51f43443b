//! Which replies a server connection still owes, from the message tags that
//! pass through. This is what decides when a connection is "quiet" and may
//! change hands in transaction mode.
//!
//! Postgres sends one ReadyForQuery per Query, Sync and FunctionCall, with
//! one exception quoted from the protocol docs (COPY): "The backend will
//! ignore Flush and Sync messages received during copy-in mode." Clients
//! that pipeline (tokio-postgres sends Bind/Execute/Sync before the copy
//! data, then CopyDone/Sync) send a Sync that gets no reply; we discount it
//! when the server's CopyInResponse shows the Execute started a COPY. An
//! error ends copy-in mode ("any subsequent CopyData, CopyDone, or CopyFail
//! messages issued by the frontend will simply be dropped"): Syncs are
//! answered again from there. `prepared::Expect`, the ledger of each reply
//! when named statements are tracked, follows the same rules.

/// Reply bookkeeping for one server connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pending {
    /// ReadyForQuery replies still due.
    owed: u32,
    /// Extended-protocol messages sent since the last Sync.
    unsynced: bool,
    /// The server is in copy-in mode (CopyInResponse seen, no CopyDone or
    /// CopyFail sent since).
    copy_in: bool,
    /// Syncs sent after the latest Execute/Query and before any CopyDone or
    /// CopyFail: ignored by the server if that request turns out to be a COPY.
    syncs_after_exec: u32,
    copy_ended: bool,
    /// Syncs were written off at the latest CopyInResponse and the COPY
    /// has not ended yet. If it fails, they may have been read after the
    /// failure, and answered: the server reports CopyInResponse before it
    /// reads anything (a BEFORE STATEMENT trigger, for one, may fail it
    /// there), so `unsure` follows.
    written_off: bool,
    /// A Sync went out in copy-in mode: the server ignores it, unless the
    /// COPY failed before the server read it, and then it answers it.
    /// Which of the two cannot be told, so the replies owed are no longer
    /// known: the connection never becomes quiet again (it stays with its
    /// client, and is closed rather than pooled when the client leaves).
    unsure: bool,
}

impl Pending {
    /// A message the client sent to the server.
    pub fn client(&mut self, tag: u8) {
        match tag {
            b'Q' | b'F' => {
                self.owed += 1;
                self.syncs_after_exec = 0;
                self.copy_ended = false;
            }
            b'E' => {
                self.unsynced = true;
                self.syncs_after_exec = 0;
                self.copy_ended = false;
            }
            // Ignored by the server, unless the COPY has just failed.
            b'S' if self.copy_in => self.unsure = true,
            b'S' => {
                self.owed += 1;
                self.unsynced = false;
                if !self.copy_ended {
                    self.syncs_after_exec += 1;
                }
            }
            b'P' | b'B' | b'D' | b'C' | b'H' => self.unsynced = true,
            b'c' | b'f' => {
                self.copy_in = false;
                self.copy_ended = true;
            }
            _ => {} // CopyData and the rest carry no reply of their own.
        }
    }

    /// A message the server sent; `ready` is the ReadyForQuery status byte.
    pub fn server(&mut self, tag: u8) {
        match tag {
            b'Z' => self.owed = self.owed.saturating_sub(1),
            // An error in copy-in mode ends it.
            b'E' => {
                self.copy_in = false;
                self.unsure |= std::mem::take(&mut self.written_off);
            }
            // The COPY (the first to end after CopyInResponse) is done.
            b'C' => self.written_off = false,
            b'G' => {
                self.owed = self.owed.saturating_sub(self.syncs_after_exec);
                self.written_off = self.syncs_after_exec > 0;
                self.syncs_after_exec = 0;
                self.copy_in = !self.copy_ended;
            }
            _ => {}
        }
    }

    /// ReadyForQuery replies still due.
    pub fn owed(&self) -> u32 {
        self.owed
    }

    /// Extended-protocol messages sent and no Sync after them yet.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Every request answered.
    pub fn quiet(&self) -> bool {
        self.owed == 0 && !self.unsynced && !self.copy_in && !self.unsure
    }

    /// A Sync went out in copy-in mode, and the replies owed are no longer
    /// known (see the field).
    pub fn unsure(&self) -> bool {
        self.unsure
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client: &[u8], server: &[u8]) -> Pending {
        let mut p = Pending::default();
        client.iter().for_each(|&t| p.client(t));
        server.iter().for_each(|&t| p.server(t));
        p
    }

    #[test]
    fn simple_query_cycle() {
        let mut p = run(b"Q", b"");
        assert!(!p.quiet());
        p.server(b'T');
        p.server(b'Z');
        assert!(p.quiet());
    }

    #[test]
    fn pipeline_needs_every_sync_answered() {
        let mut p = run(b"PBESBES", b"Z");
        assert!(!p.quiet());
        p.server(b'Z');
        assert!(p.quiet());
        let p = run(b"PBEH", b"");
        assert!(!p.quiet(), "Flush without Sync keeps the connection");
    }

    #[test]
    fn extended_copy_with_early_sync() {
        // tokio-postgres: Bind, Execute, Sync, [CopyInResponse], data, CopyDone, Sync.
        let mut p = run(b"BES", b"");
        p.server(b'G');
        assert!(!p.quiet(), "in copy-in mode");
        for t in *b"ddcS" {
            p.client(t);
        }
        assert!(!p.quiet());
        p.server(b'C');
        p.server(b'Z');
        assert!(p.quiet());
    }

    #[test]
    fn simple_copy() {
        let mut p = run(b"Q", b"G");
        for t in *b"ddc" {
            p.client(t);
        }
        p.server(b'C');
        p.server(b'Z');
        assert!(p.quiet());
    }

    #[test]
    fn an_error_ends_copy_in() {
        // Simple COPY: the error and ReadyForQuery end it; the client's
        // CopyDone that follows is dropped by the server.
        let mut p = run(b"Q", b"GE");
        p.server(b'Z');
        assert!(p.quiet());
        p.client(b'c');
        assert!(p.quiet());
        // A Sync sent after the error is answered.
        let mut p = run(b"Q", b"GE");
        for t in *b"SQ" {
            p.client(t);
        }
        for _ in 0..2 {
            p.server(b'Z');
            assert!(!p.quiet(), "the last Query is still owed");
        }
        p.server(b'Z');
        assert!(p.quiet());
    }

    #[test]
    fn a_failed_copy_makes_its_written_off_syncs_unsure() {
        // Extended COPY, everything sent at once; the COPY fails right
        // after CopyInResponse, before reading anything (a BEFORE
        // STATEMENT trigger): the first Sync is answered after all.
        let mut p = run(b"BESdcS", b"GE");
        assert!(p.unsure());
        for t in *b"ZZ" {
            p.server(t);
            assert!(!p.quiet());
        }
        // A COPY that completes read its written-off Sync in copy-in mode.
        let mut p = run(b"BES", b"G");
        for t in *b"dcS" {
            p.client(t);
        }
        for t in *b"CZ" {
            p.server(t);
        }
        assert!(p.quiet());
        assert!(!p.unsure());
    }

    #[test]
    fn a_sync_in_copy_in_mode_keeps_the_connection_for_good() {
        // Whether the server answers it depends on whether the data before
        // it failed the COPY, which pgswitch cannot know.
        let mut p = run(b"Q", b"G");
        for t in *b"dSc" {
            p.client(t);
        }
        assert!(p.unsure());
        for t in *b"EZ" {
            p.server(t);
        }
        assert!(!p.quiet());
        p.client(b'Q');
        for t in *b"ZZ" {
            p.server(t);
        }
        assert!(!p.quiet(), "never quiet again");
    }

    #[test]
    fn copy_fully_pipelined_before_copy_in_response() {
        // Everything sent before the server answers: the final Sync counts.
        let mut p = run(b"BESdcS", b"G");
        assert!(!p.quiet());
        p.server(b'Z');
        assert!(p.quiet());
    }
}
