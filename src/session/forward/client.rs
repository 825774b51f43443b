//! Reading from the client: one non-blocking read into a buffer that
//! grows with the traffic, and the drain's grace for a client that may be
//! about to send.

use bytes::BytesMut;

/// How long a drain waits for an idle client that may be about to send
/// (one that just logged in, or just got its answer) before closing it.
/// A request already on its way is then served rather than cut off: a
/// client that connects per transaction (serverless functions, `pgbench
/// -C`) loses nothing to a restart.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Whether the client sends something (or leaves) within `DRAIN_GRACE`.
pub(super) async fn grace(client: &crate::net::Stream) -> bool {
    matches!(
        tokio::time::timeout(DRAIN_GRACE, client.readable()).await,
        Ok(Ok(()))
    )
}

/// Smallest and largest read buffer of a session. Small reads come from
/// the allocator's per-thread cache; a read that fills the buffer doubles the
/// next one, so COPY and big queries move in large chunks.
pub(super) const MIN_READ: usize = 1024;
const MAX_READ: usize = 64 * 1024;

/// One non-blocking read into `buf`, growing it only when it is short.
pub(super) fn read_some(
    client: &mut crate::net::Stream,
    buf: &mut BytesMut,
    read_size: &mut usize,
) -> std::io::Result<Option<usize>> {
    if buf.capacity() - buf.len() < *read_size / 2 {
        buf.reserve(*read_size);
    }
    let spare = buf.capacity() - buf.len();
    match client.try_read_buf(buf) {
        Ok(n) => {
            if n == spare {
                *read_size = (*read_size * 2).min(MAX_READ);
            }
            Ok(Some(n))
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}
