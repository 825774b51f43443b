//! The one socket helper the protocol layer needs (the rest of `protocol`
//! is sans-IO).

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Marks `stream` as drained after a read that returned less than the buffer
/// could hold, so the next wait goes to epoll instead of costing a `recv`
/// that would only say EAGAIN. Tokio clears readiness only if no new event
/// arrived since it was observed, so no wakeup can be lost.
pub fn drained(stream: &TcpStream) {
    let _ = stream.try_io(Interest::READABLE, || {
        Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
    });
}
