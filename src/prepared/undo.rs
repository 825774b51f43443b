//! Bookkeeping undone when the server never acted on a message: an error
//! made it skip the message, or the connection went away first. The
//! ledger (`session::ledger`) hands these back in order; they are applied
//! last first.

use std::sync::Arc;

use super::{ClientStatements, ServerStatements, Statement};

/// Bookkeeping to undo when a message never took effect on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    /// The client's Parse of this name did not happen.
    ClientForget(Box<[u8]>),
    /// The client's Close of this name did not happen.
    ClientRestore(Box<[u8]>, Arc<Statement>),
    /// The server did not prepare this statement.
    ServerForget(u64),
    /// The client's Parse of this name, sent on to the server, did not
    /// happen.
    Parsed(Box<[u8]>, u64),
    /// The server did not close this statement.
    ServerRestore(Arc<Statement>),
    /// A client's `DEALLOCATE name` failed: the name is back, and the
    /// connection still has the statement if it had it before.
    Deallocated(Box<[u8]>, Arc<Statement>, bool),
}

/// Applies bookkeeping for messages the server never acted on, last first.
pub fn undo(undo: Vec<Undo>, client: &mut ClientStatements, server: &mut ServerStatements) {
    for u in undo.into_iter().rev() {
        tracing::trace!(undo = ?u, "undo");
        match u {
            Undo::ClientForget(name) => {
                client.remove(&name);
            }
            Undo::ClientRestore(name, stmt) => client.insert(&name, stmt),
            Undo::ServerForget(hash) => server.forget(hash),
            Undo::Parsed(name, hash) => {
                client.remove(&name);
                server.forget(hash);
            }
            Undo::ServerRestore(stmt) => server.restore(stmt),
            Undo::Deallocated(name, stmt, cached) => {
                if cached {
                    server.restore(stmt.clone());
                }
                client.insert(&name, stmt);
            }
        }
    }
}
