//! A connection to a client or a server: plain TCP, or TLS over it.
//!
//! The forwarding path is readiness-based (wait until a socket is readable,
//! then read what it holds without waiting; write what the socket takes
//! now), so TLS is run here on rustls's sans-IO connection rather than
//! through an `AsyncRead` wrapper: `read_buf`, `try_write` and
//! `poll_read_ready` mean the same for both kinds, and the plain kind costs
//! nothing more than the socket calls it always made.
//!
//! Two things are particular to TLS:
//! - plaintext may wait inside rustls after a read that filled the
//!   caller's buffer, with nothing left in the socket to signal it, so
//!   `poll_read_ready` reports ready while that may be so;
//! - encrypted bytes may wait for room in the socket after `try_write`
//!   took their plaintext (`pending_output`); writers that must see their
//!   bytes leave use `send` (write and flush), and the forwarder's own
//!   writes wait until `pending_output` is false.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Plain TCP, or TLS over TCP (boxed: rustls's state is large, and most
/// connections on a trusted network are plain), or one end of a socket
/// pair inside pgswitch: the serverless front (`crate::serverless`) hands
/// its WebSocket and HTTP clients to the session code through one (boxed,
/// so that the enum stays the size of a TCP socket for every session).
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
    Local(Box<UnixStream>),
}

/// TLS on a TCP socket, driven by readiness.
pub struct TlsStream {
    tcp: TcpStream,
    conn: rustls::Connection,
    /// Plaintext may be waiting in `conn` (the last read filled the buffer).
    buffered: bool,
    /// close_notify was sent.
    closing: bool,
}

/// Most plaintext read at once from a TLS stream.
const READ_CHUNK: usize = 16 * 1024;

/// What a wait for readiness found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
}

impl From<TcpStream> for Stream {
    fn from(tcp: TcpStream) -> Self {
        Stream::Plain(tcp)
    }
}

impl Stream {
    /// TLS over `tcp`, after a completed handshake.
    pub fn tls(tcp: TcpStream, conn: impl Into<rustls::Connection>) -> Stream {
        Stream::Tls(Box::new(TlsStream {
            tcp,
            conn: conn.into(),
            buffered: true,
            closing: false,
        }))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The rustls connection, for channel binding and the negotiated ALPN.
    pub fn tls_conn(&self) -> Option<&rustls::Connection> {
        match self {
            Stream::Plain(_) | Stream::Local(_) => None,
            Stream::Tls(t) => Some(&t.conn),
        }
    }

    /// Ready when a read may find bytes (or the end).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(s) => s.poll_read_ready(cx),
            Stream::Local(s) => s.poll_read_ready(cx),
            Stream::Tls(t) if t.buffered => Poll::Ready(Ok(())),
            Stream::Tls(t) => t.tcp.poll_read_ready(cx),
        }
    }

    /// Reads what is at hand into `buf` without waiting: `Ok(0)` at the
    /// end of the stream, `WouldBlock` when there is nothing.
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => crate::protocol::io::read_buf(s, buf),
            Stream::Local(s) => s.try_read_buf(buf),
            Stream::Tls(t) => t.read_buf(buf),
        }
    }

    /// Writes as much of `bytes` as the socket takes now; `WouldBlock` if
    /// none. With TLS, encrypted bytes may still wait (`pending_output`).
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.try_write(bytes),
            Stream::Local(s) => s.try_write(bytes),
            Stream::Tls(t) => t.try_write(bytes),
        }
    }

    /// Bytes taken by `try_write` that have not reached the socket yet.
    pub fn pending_output(&self) -> bool {
        match self {
            Stream::Plain(_) | Stream::Local(_) => false,
            Stream::Tls(t) => t.conn.wants_write(),
        }
    }

    /// Passes pending output to the socket as far as it takes it now.
    pub fn try_flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) | Stream::Local(_) => Ok(()),
            Stream::Tls(t) => t.flush_tls(),
        }
    }

    /// Waits until the stream is readable (if `read`) or writable.
    pub async fn ready(&self, read: bool) -> io::Result<Ready> {
        std::future::poll_fn(|cx| {
            let mut r = Ready::default();
            if read {
                match self.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => r.readable = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            let writable = match self {
                Stream::Plain(s) => s.poll_write_ready(cx),
                Stream::Tls(t) => t.tcp.poll_write_ready(cx),
                Stream::Local(s) => s.poll_write_ready(cx),
            };
            match writable {
                Poll::Ready(Ok(())) => r.writable = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            match r.readable || r.writable {
                true => Poll::Ready(Ok(r)),
                false => Poll::Pending,
            }
        })
        .await
    }

    /// Waits until a read may find bytes.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    /// Writes all of `bytes` and waits until they have reached the socket.
    /// (A hand-made future no larger than `write_all`'s: it sits in every
    /// session's state.)
    pub fn send<'a>(
        &'a mut self,
        bytes: &'a [u8],
    ) -> impl std::future::Future<Output = io::Result<()>> + 'a {
        let mut off = 0;
        std::future::poll_fn(move |cx| {
            while off < bytes.len() {
                match ready!(Pin::new(&mut *self).poll_write(cx, &bytes[off..]))? {
                    0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    n => off += n,
                }
            }
            Pin::new(&mut *self).poll_flush(cx)
        })
    }
}

impl TlsStream {
    fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            // How much plaintext rustls holds, so that only that much of
            // the buffer is zeroed before rustls copies into it.
            let state = match self.conn.process_new_packets() {
                Ok(state) => state,
                Err(e) => {
                    // Tell the peer why before giving up.
                    let _ = self.flush_tls();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            };
            let ready = state.plaintext_bytes_to_read();
            if ready > 0 {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(READ_CHUNK);
                }
                let start = buf.len();
                let take = ready.min(buf.capacity() - start);
                buf.resize(start + take, 0);
                let got = self.conn.reader().read(&mut buf[start..]);
                buf.truncate(start + *got.as_ref().unwrap_or(&0));
                let n = got?;
                self.buffered = n < ready;
                return Ok(n);
            }
            if state.peer_has_closed() {
                self.buffered = false;
                return Ok(0);
            }
            // Handshake messages after the handshake (tickets, key
            // updates) may ask for an answer.
            self.flush_tls()?;
            match self.conn.read_tls(&mut SyncIo(&self.tcp)) {
                // The socket's end without close_notify: the protocol's own
                // framing tells a cut message, so treat it as the end.
                Ok(0) => {
                    self.buffered = false;
                    return Ok(0);
                }
                Ok(_) => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.buffered = false;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Reads plaintext into `dst`: what rustls holds, else what decrypting
    /// the socket's bytes yields. `Ok(0)` at the end of the stream.
    fn read_plain(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(dst) {
                Ok(n) => {
                    // Ok(0): the peer closed with close_notify.
                    self.buffered = n > 0 && n == dst.len();
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: the protocol's own framing
                // tells a cut message, so treat it as the end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut SyncIo(&self.tcp)) {
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        // Tell the peer why before giving up.
                        let _ = self.flush_tls();
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    // Handshake messages after the handshake (tickets, key
                    // updates) may ask for an answer.
                    self.flush_tls()?;
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.buffered = false;
                    }
                    return Err(e);
                }
            }
        }
    }

    fn try_write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.flush_tls()?;
        if self.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.conn.writer().write(bytes)?;
        self.flush_tls()?;
        match n {
            0 if !bytes.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut SyncIo(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The socket as blocking-style `Read`/`Write` for rustls, that says
/// `WouldBlock` (and clears tokio's readiness) instead of blocking.
struct SyncIo<'a>(&'a TcpStream);

impl Read for SyncIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for SyncIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let t = match this {
            Stream::Plain(s) => return Pin::new(s).poll_read(cx, out),
            Stream::Local(s) => return Pin::new(&mut **s).poll_read(cx, out),
            Stream::Tls(t) => t,
        };
        loop {
            match t.read_plain(out.initialize_unfilled()) {
                Ok(n) => {
                    out.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(t.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let t = match this {
            Stream::Plain(s) => return Pin::new(s).poll_write(cx, bytes),
            Stream::Local(s) => return Pin::new(&mut **s).poll_write(cx, bytes),
            Stream::Tls(t) => t,
        };
        loop {
            match t.try_write(bytes) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(t.tcp.poll_write_ready(cx))?;
                }
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let t = match this {
            Stream::Plain(s) => return Pin::new(s).poll_flush(cx),
            Stream::Local(s) => return Pin::new(&mut **s).poll_flush(cx),
            Stream::Tls(t) => t,
        };
        loop {
            t.flush_tls()?;
            if !t.conn.wants_write() {
                return Poll::Ready(Ok(()));
            }
            ready!(t.tcp.poll_write_ready(cx))?;
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Stream::Tls(t) = this {
            if !t.closing {
                // Once: close_notify, then what it takes to flush it.
                t.conn.send_close_notify();
                t.closing = true;
            }
            loop {
                t.flush_tls()?;
                if !t.conn.wants_write() {
                    break;
                }
                ready!(t.tcp.poll_write_ready(cx))?;
            }
            return Pin::new(&mut t.tcp).poll_shutdown(cx);
        }
        match this {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Local(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Stream::Tls(_) => Poll::Ready(Ok(())),
        }
    }
}
