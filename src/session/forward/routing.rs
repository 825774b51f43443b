//! Routing at the start of a transaction: where it runs, the session's
//! `SET pgswitch.route`, and the replica safety net's re-run on the primary.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::{ConnState, Forwarder, PoolMode, SessionError, Which};
use crate::protocol::frame::{peek_header, HEADER_LEN};
use crate::protocol::messages;
use crate::router::{Reason, Route, RouteHint};

/// First statements longer than this are not parsed for routing: primary.
const MAX_ROUTED_SQL: usize = 64 * 1024;

/// Where the next transaction goes.
pub(super) enum Next {
    /// This server; `true` if it may write (read-your-writes).
    Server(Which, bool),
    /// A `SET pgswitch.route` Query of the given length, answered locally.
    SetRoute(RouteHint, usize),
}

impl Forwarder<'_> {
    /// Where the transaction starting with the next client message runs:
    /// `(server, may_write)`, or `None` while that message is still
    /// arriving. Reads go to a replica only with read routing on, outside
    /// session mode, when the router proves the first statement read-only
    /// and a replica has caught up with this client's last write.
    pub(super) fn next_target(&mut self) -> Result<Option<Next>, SessionError> {
        let primary = |may_write| Ok(Some(Next::Server(Which::Primary, may_write)));
        let replicas = match &self.pool.replicas {
            Some(r) if self.mode != PoolMode::Session => r,
            _ => return primary(true),
        };
        let Some((tag, len)) = peek_header(&self.cbuf)? else {
            return Ok(None);
        };
        if !matches!(tag, b'Q' | b'P') || len > MAX_ROUTED_SQL {
            return primary(true);
        }
        let Some(body) = self.cbuf.get(HEADER_LEN..HEADER_LEN + len) else {
            return Ok(None);
        };
        // Query: sql\0. Parse: name\0 sql\0 types.
        let mut parts = body.split(|&b| b == 0);
        if tag == b'P' && parts.next().is_some_and(|name| !name.is_empty()) {
            // A named statement outlives this transaction; its Bind may come
            // in a later one, which must find it: primary, as before routing
            // (transaction-mode prepared statements are their own issue).
            return primary(false);
        }
        let Some(sql) = parts.next().and_then(|s| std::str::from_utf8(s).ok()) else {
            return primary(true);
        };
        let decision = replicas.route(sql).map_err(SessionError::Route)?;
        if let (Reason::RouteSetting(hint), b'Q') = (&decision.reason, tag) {
            return Ok(Some(Next::SetRoute(*hint, HEADER_LEN + len)));
        }
        let route = match (self.route_hint, decision.route) {
            (_, Route::Any) => Route::Any,
            (RouteHint::Primary, _) => Route::Primary,
            (RouteHint::Replica, _) => Route::Replica,
            (RouteHint::Auto, r) => r,
        };
        let writes = decision.route == Route::Primary;
        Ok(Some(match route {
            Route::Replica => match replicas.pick(&mut self.fence) {
                Some(i) => Next::Server(Which::Replica(i), false),
                None => Next::Server(Which::Primary, writes),
            },
            Route::Any => Next::Server(Which::Primary, false),
            Route::Primary => Next::Server(Which::Primary, writes),
        }))
    }

    /// `SET pgswitch.route = ...` as a Query of its own: pgswitch's setting,
    /// answered here as a server would answer a SET.
    pub(super) async fn set_route(
        &mut self,
        hint: RouteHint,
        len: usize,
    ) -> Result<(), SessionError> {
        self.route_hint = hint;
        self.cbuf.advance(len);
        let mut out = BytesMut::new();
        messages::command_complete(&mut out, "SET");
        messages::ready_for_query(&mut out, b'I');
        self.client
            .write_all(&out)
            .await
            .map_err(SessionError::ClientGone)
    }

    /// The replica refused the Query as a write (25006) before answering
    /// anything else: give the replica connection back (idle, it did
    /// nothing) and run the same Query on the primary.
    pub(super) async fn rerun_on_primary(&mut self, query: Bytes) -> Result<(), SessionError> {
        if let Some(mut link) = self.link.take() {
            self.slot().detach();
            link.server.state = ConnState::Ready(b'I');
        }
        tracing::info!(pool = %self.pool.name, "a replica refused a statement as a write (25006); running it on the primary");
        self.attach((Which::Primary, true)).await?;
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        link.pending.client(b'Q');
        link.server.state = ConnState::Busy;
        link.server.write(&query).await?;
        Ok(())
    }
}
