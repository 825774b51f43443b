//! The HTTP front's own wire client: it talks to a session
//! (`session::run_local`) on the other end of a socket pair, so an HTTP
//! request gets the login, pools, routing and transaction pooling of any
//! wire client. Dropping it closes its end: a session left mid-request
//! cancels the query on the server (see `pool::release`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::app::Shared;
use crate::protocol::frame::{peek_header, HEADER_LEN};

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
}

pub struct Wire {
    stream: UnixStream,
    buf: BytesMut,
}

impl Wire {
    /// Starts a session for `peer` and logs in as `user` to `database`
    /// (the password in clear, as the WebSocket clients send it), with
    /// `then` (the requests) in the same write. Returns once the login is
    /// answered; the requests' replies follow.
    pub async fn login(
        shared: &Arc<Shared>,
        peer: SocketAddr,
        user: &str,
        password: &str,
        database: &str,
        then: &[u8],
    ) -> Result<Wire, WireError> {
        let (ours, theirs) = UnixStream::pair()?;
        let session_shared = shared.clone();
        tokio::spawn(async move { crate::session::run_local(&session_shared, theirs, peer).await });
        let mut wire = Wire {
            stream: ours,
            buf: BytesMut::with_capacity(4096),
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", user), ("database", database)], &mut out)?;
        frontend::password_message(password.as_bytes(), &mut out)?;
        out.extend_from_slice(then);
        wire.write(&out).await?;
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

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next message; an error if the session went away.
    pub async fn next(&mut self) -> Result<Message, WireError> {
        loop {
            if let Some((tag, len)) = peek_header(&self.buf).map_err(|_| WireError::Malformed)? {
                if self.buf.len() >= HEADER_LEN + len {
                    self.buf.advance(HEADER_LEN);
                    let body = self.buf.split_to(len);
                    return Ok(Message { tag, body });
                }
                self.buf.reserve(HEADER_LEN + len - self.buf.len());
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    /// Says goodbye (the session then hands its server back at once).
    pub async fn close(mut self) {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        let _ = self.write(&out).await;
    }
}
