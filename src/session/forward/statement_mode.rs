//! Statement pool mode's one rule of its own: a statement that leaves a
//! transaction open is rolled back and refused, instead of pinning the
//! server connection.

use bytes::BytesMut;

use super::{Forwarder, SessionError};
use crate::protocol::frame::peek_header;
use crate::protocol::messages::{self, Severity};

impl Forwarder<'_> {
    /// Statement mode: a statement left a transaction open. Roll it back on
    /// the server and tell the client, instead of pinning the server.
    pub(super) async fn refuse_transaction_block(&mut self) -> Result<(), SessionError> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        let conn: &mut crate::pool::ServerConn = &mut link.server;
        let skip = peek_header(&conn.buf)?.map_or(0, |(_, len)| 5 + len);
        let skip = skip.min(conn.buf.len());
        conn.consume(skip);
        let timeout = self
            .config
            .get(&self.shared.config)
            .general
            .server_reset_timeout;
        link.server.run("ROLLBACK", timeout).await?;
        let mut out = BytesMut::new();
        messages::error_response(
            &mut out,
            Severity::Error,
            "25P01",
            "transaction blocks are not allowed in statement pool mode; the transaction was rolled back",
            Some("run each statement on its own, or use pool_mode = transaction for this database"),
        );
        messages::ready_for_query(&mut out, b'I');
        self.client
            .send(&out)
            .await
            .map_err(SessionError::ClientGone)?;
        self.detach().await;
        Ok(())
    }
}
