//! One backend connection: TCP connect (and TLS), startup, and the few
//! statements pgswitch runs itself (parameter sync, reset, rollback). The
//! authentication exchange is in [`auth`].

use std::sync::Arc;
use std::time::Duration;

mod auth;

use bytes::{Buf, BytesMut};
use postgres_protocol::message::frontend;
use tokio::net::TcpStream;

use auth::AuthState;

use super::params::ParamSet;
use crate::config::ServerAddr;
use crate::net::tls::SslMode;
use crate::net::{Stream, TlsError};
use crate::protocol::frame::{peek_header, HEADER_LEN};
use crate::protocol::messages::{self, BackendError};

/// Who to log in as, where.
#[derive(Clone)]
pub struct Target {
    pub addr: ServerAddr,
    pub user: String,
    pub password: Option<String>,
    /// For users looked up with `auth_query`: what logs in without the
    /// password (see `auth::ServerSecret`).
    pub secret: Option<crate::auth::ServerSecret>,
    pub database: String,
    pub connect_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("could not connect to server {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out after {timeout:?} connecting to server {addr}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("server {addr} rejected the login: {error}")]
    Rejected { addr: String, error: BackendError },
    #[error("server {addr} asked for a password but none is configured for user '{user}'")]
    NoPassword { addr: String, user: String },
    #[error("server {addr}: {0}", addr = .1)]
    Protocol(String, String),
    #[error("server {addr} connection lost: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("could not open TLS to server {addr}: {source}")]
    Tls { addr: String, source: TlsError },
    #[error("server {addr} returned an error: {error}")]
    Query { addr: String, error: BackendError },
    #[error("server {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("{0}")]
    AtLimit(#[from] super::limit::AtLimit),
}

impl ServerError {
    /// The server concerned, as `host:port`.
    pub fn addr(&self) -> &str {
        match self {
            ServerError::Connect { addr, .. }
            | ServerError::ConnectTimeout { addr, .. }
            | ServerError::Rejected { addr, .. }
            | ServerError::NoPassword { addr, .. }
            | ServerError::Protocol(_, addr)
            | ServerError::Io { addr, .. }
            | ServerError::Tls { addr, .. }
            | ServerError::Query { addr, .. }
            | ServerError::Timeout { addr, .. } => addr,
            ServerError::AtLimit(e) => &e.name,
        }
    }
}

/// Where a connection stands, as pgswitch last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// ReadyForQuery with this status byte ('I', 'T' or 'E') and nothing
    /// outstanding.
    Ready(u8),
    /// Requests are in flight; the protocol position is unknown.
    Busy,
    /// I/O failed or the stream desynchronised: never reuse.
    Broken,
}

pub struct ServerConn {
    pub stream: Stream,
    /// Bytes read from the server and not yet handled.
    pub buf: BytesMut,
    pub params: ParamSet,
    /// BackendKeyData: (process id, secret key), for cancel requests.
    pub key: (i32, i32),
    pub addr: Arc<ServerAddr>,
    /// Changed through `mark_*` outside the pool (see `state`).
    pub(super) state: ConnState,
    /// Pooler-wide prepared statements this connection has.
    pub statements: crate::prepared::ServerStatements,
    /// Its place in the database's `max_server_connections`, if limited.
    pub permit: Option<super::limit::Permit>,
}

impl ServerConn {
    pub async fn connect(t: &Target) -> Result<ServerConn, ServerError> {
        let addr_s = t.addr.to_string();
        let timeout = t.connect_timeout;
        let timed_out = || ServerError::ConnectTimeout {
            addr: addr_s.clone(),
            timeout,
        };
        let tls = &t.addr.tls;
        // sslmode=allow: plain first, TLS only if the server refuses that.
        let first_plain = matches!(tls.options.mode, SslMode::Allow | SslMode::Disable);
        let attempt = Self::attempt(t, !first_plain);
        let r = tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| timed_out())?;
        match r {
            Err(ServerError::Rejected { error, .. })
                if tls.options.mode == SslMode::Allow && error.code == "28000" =>
            {
                tokio::time::timeout(timeout, Self::attempt(t, true))
                    .await
                    .map_err(|_| timed_out())?
            }
            r => r,
        }
    }

    /// One connection and login, over TLS if `tls` and the URL has TLS
    /// settings.
    async fn attempt(t: &Target, tls: bool) -> Result<ServerConn, ServerError> {
        let addr_s = t.addr.to_string();
        let connected = match t.addr.hostaddr {
            Some(ip) => TcpStream::connect((ip, t.addr.port)).await,
            None => TcpStream::connect((t.addr.host.as_str(), t.addr.port)).await,
        };
        let tcp = connected.map_err(|source| ServerError::Connect {
            addr: addr_s.clone(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        let stream = match tls {
            true => crate::net::start_tls(tcp, &t.addr.host, &t.addr.tls)
                .await
                .map_err(|source| ServerError::Tls {
                    addr: addr_s.clone(),
                    source,
                })?,
            false => Stream::Plain(tcp),
        };
        let mut conn = ServerConn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            params: ParamSet::default(),
            key: (0, 0),
            addr: Arc::new(t.addr.clone()),
            state: ConnState::Busy,
            statements: Default::default(),
            permit: None,
        };
        conn.login(t).await?;
        Ok(conn)
    }

    async fn login(&mut self, t: &Target) -> Result<(), ServerError> {
        let mut out = BytesMut::new();
        let params = [("user", t.user.as_str()), ("database", t.database.as_str())];
        frontend::startup_message(params.iter().copied(), &mut out)
            .map_err(|e| self.proto(e.to_string()))?;
        self.write(&out).await?;
        let mut scram = AuthState::default();
        loop {
            let (tag, body) = self.read_message().await?;
            // Nothing but the authentication exchange before
            // AuthenticationOk: a server (or someone in the middle) that
            // skips it must not be taken as logged in.
            if !scram.ok && !matches!(tag, b'R' | b'E' | b'N' | b'v') {
                return Err(self.proto(format!(
                    "server sent message type '{}' before authenticating pgswitch",
                    char::from(tag).escape_default()
                )));
            }
            match tag {
                b'R' => self.auth_step(t, &body, &mut scram).await?,
                b'E' => {
                    let error = BackendError::parse(&body);
                    return Err(ServerError::Rejected {
                        addr: self.addr.to_string(),
                        error,
                    });
                }
                b'S' => {
                    if let Some((k, v)) = messages::parse_parameter_status(&body) {
                        self.params.set(k, v);
                    }
                }
                b'K' => self.key = messages::parse_backend_key_data(&body).unwrap_or((0, 0)),
                b'Z' => {
                    self.state = ConnState::Ready(body.first().copied().unwrap_or(b'I'));
                    return Ok(());
                }
                _ => {} // NoticeResponse, NegotiateProtocolVersion: nothing to do.
            }
        }
    }

    fn proto(&self, msg: String) -> ServerError {
        ServerError::Protocol(msg, self.addr.to_string())
    }

    fn io(&mut self, source: std::io::Error) -> ServerError {
        self.state = ConnState::Broken;
        ServerError::Io {
            addr: self.addr.to_string(),
            source,
        }
    }

    /// Writes as much of `bytes` as the socket takes now, without waiting.
    /// Where the connection stands, as last seen.
    #[inline]
    pub fn state(&self) -> ConnState {
        self.state
    }

    /// It cannot be trusted any more (I/O failed, the protocol lost its
    /// place, an error pgswitch cannot hand on): closed when released.
    #[inline]
    pub fn mark_broken(&mut self) {
        self.state = ConnState::Broken;
    }

    /// A request went out: its replies are owed.
    #[inline]
    pub fn mark_busy(&mut self) {
        self.state = ConnState::Busy;
    }

    /// ReadyForQuery with `status`, and nothing else owed.
    #[inline]
    pub fn mark_ready(&mut self, status: u8) {
        self.state = ConnState::Ready(status);
    }

    /// The first `n` bytes of `buf` are handled.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n);
    }

    pub fn write_now(&mut self, bytes: &[u8]) -> Result<usize, ServerError> {
        let mut written = 0;
        while written < bytes.len() {
            match self.stream.try_write(&bytes[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(written)
    }

    /// Bytes taken by a write that have not reached the socket yet (TLS).
    pub fn pending_output(&self) -> bool {
        self.stream.pending_output()
    }

    /// Writes as much of `bytes` as the server takes, and while it takes
    /// none, reads what it sends into `buf` (a server blocked on its full
    /// output stops reading its input: waiting for it to read would
    /// deadlock). Returns how much was written: all of it, or less once
    /// `buf` holds `cap` bytes or more, for the caller to pass on first.
    /// With `read` off, only waits for room to write.
    pub async fn write_reading(
        &mut self,
        bytes: &[u8],
        cap: usize,
        read: bool,
    ) -> Result<usize, ServerError> {
        let mut written = 0;
        // With TLS, bytes taken may still wait for the socket: done only
        // once they have left too.
        while written < bytes.len() || self.stream.pending_output() {
            if written < bytes.len() {
                match self.stream.try_write(&bytes[written..]) {
                    Ok(n) => {
                        written += n;
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(self.io(e)),
                }
            } else {
                if let Err(e) = self.stream.try_flush() {
                    return Err(self.io(e));
                }
                if !self.stream.pending_output() {
                    break;
                }
            }
            let reading = read && self.buf.len() < cap;
            if !reading && read {
                return Ok(written);
            }
            let ready = match self.stream.ready(reading).await {
                Ok(r) => r,
                Err(e) => return Err(self.io(e)),
            };
            if reading && ready.readable {
                self.try_fill()?;
            }
        }
        Ok(written)
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ServerError> {
        match self.stream.send(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Reads more bytes into `buf`; EOF is an error (the server went away).
    pub async fn fill(&mut self) -> Result<usize, ServerError> {
        loop {
            if let Err(e) = self.stream.readable().await {
                return Err(self.io(e));
            }
            match self.stream.try_read_buf(&mut self.buf) {
                Ok(0) => return Err(self.io(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(self.io(e)),
            }
        }
    }

    /// Reads what the socket holds without waiting (after a readiness
    /// wake-up); `None` if the wake-up was spurious.
    pub fn try_fill(&mut self) -> Result<Option<usize>, ServerError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        match self.stream.try_read_buf(&mut self.buf) {
            Ok(0) => Err(self.io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    /// One whole message (outside the forwarding path: login and our own
    /// statements, whose replies are small).
    async fn read_message(&mut self) -> Result<(u8, BytesMut), ServerError> {
        loop {
            match peek_header(&self.buf) {
                Err(e) => {
                    self.state = ConnState::Broken;
                    return Err(self.proto(e.to_string()));
                }
                Ok(Some((tag, len))) if self.buf.len() >= HEADER_LEN + len => {
                    self.buf.advance(HEADER_LEN);
                    return Ok((tag, self.buf.split_to(len)));
                }
                Ok(_) => {
                    self.fill().await?;
                }
            }
        }
    }

    /// Runs a statement of pgswitch's own under `timeout`, swallowing its
    /// replies but recording ParameterStatus. The connection is Broken if it
    /// fails to come back to ReadyForQuery in time.
    pub async fn run(&mut self, sql: &str, timeout: Duration) -> Result<(), ServerError> {
        let mut out = BytesMut::new();
        messages::query(&mut out, sql);
        self.exchange(&out, timeout).await
    }

    /// Sends pgswitch's own messages, ending in a Sync or Query, and reads
    /// the replies up to ReadyForQuery; an ErrorResponse is the error.
    pub async fn exchange(&mut self, msgs: &[u8], timeout: Duration) -> Result<(), ServerError> {
        let addr = self.addr.to_string();
        match tokio::time::timeout(timeout, self.exchange_inner(msgs)).await {
            Ok(r) => r.map(drop),
            Err(_) => {
                self.state = ConnState::Broken;
                Err(ServerError::Timeout { addr, timeout })
            }
        }
    }

    /// Runs `sql` (pgswitch's own statement) and returns the text columns
    /// of its first row, if any.
    pub async fn query_row(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<Option<String>>, ServerError> {
        let addr = self.addr.to_string();
        match tokio::time::timeout(timeout, self.run_inner(sql)).await {
            Ok(r) => r.map(|rows| rows.into_iter().next().unwrap_or_default()),
            Err(_) => {
                self.state = ConnState::Broken;
                Err(ServerError::Timeout { addr, timeout })
            }
        }
    }

    /// Runs `sql` (pgswitch's own statement) and returns the first column
    /// of every row.
    pub async fn query_column(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, ServerError> {
        let addr = self.addr.to_string();
        match tokio::time::timeout(timeout, self.run_inner(sql)).await {
            Ok(r) => r.map(|rows| {
                rows.into_iter()
                    .filter_map(|r| r.into_iter().next().flatten())
                    .collect()
            }),
            Err(_) => {
                self.state = ConnState::Broken;
                Err(ServerError::Timeout { addr, timeout })
            }
        }
    }

    async fn run_inner(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ServerError> {
        let mut out = BytesMut::new();
        messages::query(&mut out, sql);
        self.exchange_inner(&out).await
    }

    async fn exchange_inner(
        &mut self,
        msgs: &[u8],
    ) -> Result<Vec<Vec<Option<String>>>, ServerError> {
        self.state = ConnState::Busy;
        self.write(msgs).await?;
        let mut failure = None;
        let mut rows = Vec::new();
        loop {
            let (tag, body) = self.read_message().await?;
            match tag {
                b'D' => rows.push(messages::parse_data_row(&body)),
                b'E' => failure = Some(BackendError::parse(&body)),
                b'S' => {
                    if let Some((k, v)) = messages::parse_parameter_status(&body) {
                        self.params.set(k, v);
                    }
                }
                b'Z' => {
                    self.state = ConnState::Ready(body.first().copied().unwrap_or(b'I'));
                    return match failure {
                        Some(error) => Err(ServerError::Query {
                            addr: self.addr.to_string(),
                            error,
                        }),
                        None => Ok(rows),
                    };
                }
                _ => {}
            }
        }
    }

    /// A pool of the same server waits under `max_server_connections`:
    /// this connection should be closed rather than kept idle.
    pub fn wanted_elsewhere(&self) -> bool {
        self.permit.as_ref().is_some_and(|p| p.wanted())
    }

    /// True if the server closed the socket or sent something unprompted
    /// (Postgres sends a FATAL to idle connections when it shuts down).
    pub fn is_dead(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        // Read into `buf` (what a TLS stream decrypts must go somewhere); a
        // connection that had anything to say is not reused anyway.
        self.buf.reserve(64);
        match self.stream.try_read_buf(&mut self.buf) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        }
    }
}
