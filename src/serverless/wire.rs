//! The HTTP front's own wire client: it talks to a session
//! (`session::run_local`) on the other end of a socket pair, so an HTTP
//! request gets the login, pools, routing and transaction pooling of any
//! wire client. Dropping it closes its end: a session left mid-request
//! cancels the query on the server (see `pool::release`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use crate::protocol::frame::{peek_header, HEADER_LEN};
use crate::shared::Shared;

/// One message from the session: its tag and body.
pub struct Message {
    pub tag: u8,
    pub body: BytesMut,
}

/// An error as the server (or pgswitch) sent it: every field by its code.
#[derive(Debug, Default)]
pub struct PgError {
    pub fields: Vec<(u8, String)>,
}

impl PgError {
    pub fn parse(body: &[u8]) -> Self {
        PgError {
            fields: crate::protocol::messages::error_fields(body)
                .map(|(c, v)| (c, v.to_owned()))
                .collect(),
        }
    }

    pub fn field(&self, code: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> &str {
        self.field(b'C').unwrap_or("XX000")
    }
}

/// Why the exchange with the session ended early.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the session ended the connection: {}", .0.field(b'M').unwrap_or("no message"))]
    Fatal(PgError),
    #[error("malformed message from the session")]
    Malformed,
    #[error("a message over the response limit")]
    TooLarge,
}

pub struct Wire {
    stream: UnixStream,
    buf: BytesMut,
    /// Requests not yet taken by the socket: written while replies are
    /// read, so that a large request and a large reply never wait for
    /// each other.
    out: BytesMut,
    /// Largest message accepted from the session (the response limit).
    max_message: usize,
}

impl Wire {
    /// Starts a session for `peer` (on `tasks`, the drain's tracker) and
    /// logs in as `user` to `database` (the password in clear, as the
    /// WebSocket clients send it), with `then` (the requests) right behind
    /// it. Returns once the login is answered; the requests' replies
    /// follow. A message from the session over `max_message` is an error.
    pub async fn login(
        shared: &Arc<Shared>,
        tasks: &tokio_util::task::TaskTracker,
        peer: SocketAddr,
        (user, password, database): (&str, &str, &str),
        then: &[u8],
        max_message: usize,
    ) -> Result<Wire, WireError> {
        let (ours, theirs) = UnixStream::pair()?;
        tasks.spawn(crate::session::run_local(shared.clone(), theirs, peer));
        let mut out = BytesMut::with_capacity(64 + then.len());
        frontend::startup_message([("user", user), ("database", database)], &mut out)?;
        frontend::password_message(password.as_bytes(), &mut out)?;
        out.extend_from_slice(then);
        let mut wire = Wire {
            stream: ours,
            buf: BytesMut::with_capacity(4096),
            out,
            max_message,
        };
        loop {
            let m = wire.next().await?;
            match m.tag {
                b'Z' => return Ok(wire),
                b'E' => return Err(WireError::Fatal(PgError::parse(&m.body))),
                // Authentication requests, ParameterStatus, BackendKeyData,
                // notices.
                _ => {}
            }
        }
    }

    /// Queues more requests (sent while replies are read).
    pub fn send(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// The next message; an error if the session went away. Writes what
    /// is queued meanwhile.
    pub async fn next(&mut self) -> Result<Message, WireError> {
        loop {
            if let Some((tag, len)) = peek_header(&self.buf).map_err(|_| WireError::Malformed)? {
                if len > self.max_message {
                    return Err(WireError::TooLarge);
                }
                if self.buf.len() >= HEADER_LEN + len {
                    self.buf.advance(HEADER_LEN);
                    let body = self.buf.split_to(len);
                    return Ok(Message { tag, body });
                }
                self.buf.reserve(HEADER_LEN + len - self.buf.len());
            } else {
                self.buf.reserve(4096);
            }
            let interest = match self.out.is_empty() {
                true => Interest::READABLE,
                false => Interest::READABLE | Interest::WRITABLE,
            };
            let ready = self.stream.ready(interest).await?;
            if ready.is_writable() && !self.out.is_empty() {
                match self.stream.try_write(&self.out) {
                    Ok(n) => self.out.advance(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // The session stopped reading (it refused the login, or
                    // ended): what it said before is still to be read.
                    Err(_) => self.out.clear(),
                }
            }
            if ready.is_readable() {
                match self.stream.try_read_buf(&mut self.buf) {
                    Ok(0) => {
                        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into())
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// Says goodbye (the session then hands its server back at once).
    pub async fn close(mut self) {
        frontend::terminate(&mut self.out);
        let _ = self.stream.write_all(&self.out).await;
    }
}
