//! Writing a client's requests to its server without ever blocking the
//! other direction. A server whose output is full stops reading its input,
//! so a client that pipelines more than the sockets hold (libpq pipeline
//! mode, psycopg `pipeline()`, asyncpg `executemany`, postgres.js) would
//! deadlock a pooler that waits for the server to read before reading it.
//! `ServerConn::write_reading` reads the server's output while it waits;
//! once `SEND_CAP` bytes of it are held, they are passed on to the client
//! (`on_server_bytes`) before writing goes on. The common case, a request
//! the socket takes at once, costs nothing more.

use bytes::BytesMut;

use super::{Filled, Forwarder, SessionError};

/// Server output held while a write waits, before it is passed on. Above
/// the largest message held back whole (`scan::HOLD_MAX`), so that passing
/// on always makes room.
pub(super) const SEND_CAP: usize = 2 << 20;

/// What is being written: the client's own bytes (`cbuf[..end]`), or
/// bytes pgswitch rewrote.
pub(super) enum Outgoing {
    Client(usize),
    Owned(BytesMut),
}

impl Forwarder<'_> {
    /// Writes the rest of `out` from `off`, passing server output on to the
    /// client whenever the server will not read. What follows: nothing, a
    /// re-run of the request, or the server lost (see `recover`).
    pub(super) async fn send_rest(
        &mut self,
        out: Outgoing,
        mut off: usize,
    ) -> Result<Filled, SessionError> {
        let Some(key) = self.link.as_ref().map(|l| l.server.key) else {
            return Ok(Filled::Nothing);
        };
        loop {
            let held = self.link.as_ref().map_or(0, |l| l.server.buf.len());
            self.on_server_bytes().await?;
            let Some(link) = self.link.as_mut() else {
                // The server went away; its client has been answered.
                return Ok(Filled::Nothing);
            };
            if link.server.key != key {
                // The request was re-run elsewhere, whole.
                return Ok(Filled::Nothing);
            }
            // Nothing could be passed on (the client's side is full, or a
            // message is still incomplete): wait for room to write only.
            let read = link.server.buf.len() < held || held < SEND_CAP;
            let bytes = match &out {
                Outgoing::Client(end) => &self.cbuf[off..*end],
                Outgoing::Owned(b) => &b[off..],
            };
            match link.server.write_reading(bytes, SEND_CAP, read).await {
                Ok(n) if n == bytes.len() && !link.server.pending_output() => {
                    // Output read while writing is no longer signalled by
                    // the socket: pass it on now.
                    if !link.server.buf.is_empty() {
                        self.on_server_bytes().await?;
                    }
                    return Ok(Filled::Nothing);
                }
                Ok(n) => off += n,
                Err(e) => {
                    return Ok(match link.replay.take_sent() {
                        Some(request) => Filled::Rerun(request),
                        None => Filled::Lost(Box::new(e)),
                    })
                }
            }
        }
    }
}
