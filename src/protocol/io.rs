//! The one socket helper the protocol layer needs (the rest of `protocol`
//! is sans-IO).

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Reads what `stream` holds into `buf` without waiting, as
/// `TcpStream::try_read_buf` does (`WouldBlock` when there is nothing).
/// A read that returns less than the buffer could hold drained the socket,
/// so its readiness is cleared: the next wait goes to epoll instead of
/// costing a `recv` that would only say EAGAIN.
///
/// The clearing is keyed to the readiness observed *before* the read:
/// tokio clears it only if no new event arrived since, so bytes that come
/// in after the read still wake the next wait. (Observing it after the
/// read, as an earlier version did, could swallow that event and leave a
/// session waiting forever for bytes already in its socket.)
pub fn read_buf(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let spare = buf.capacity() - buf.len();
    let mut short = 0;
    let outer = stream.try_io(Interest::READABLE, || match stream.try_read_buf(buf) {
        Ok(n) if n > 0 && n < spare => {
            short = n;
            // Reported as WouldBlock so that `try_io` clears the readiness
            // it observed before this read.
            Err(std::io::ErrorKind::WouldBlock.into())
        }
        other => other,
    });
    match outer {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && short > 0 => Ok(short),
        other => other,
    }
}
