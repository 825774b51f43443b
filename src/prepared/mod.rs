//! Named prepared statements in transaction and statement modes.
//!
//! A client's statements must follow it from one server connection to the
//! next. Each client keeps its own names ([`ClientStatements`]); each
//! names a [`Statement`] shared by every client that prepared the same
//! text with the same parameter types, under one pooler-wide name. Each
//! server connection knows which statements it has ([`ServerStatements`]).
//! The [`Rewriter`] turns a client's messages into the server's (renaming,
//! parsing a missing statement first), and the connection's ledger
//! (`session::ledger`) lines the replies up so the client sees exactly the
//! replies to its own messages; [`Undo`] is what to give back when the
//! server never acted on a message.

mod client;
mod interner;
mod replies;
mod rewrite;
mod server;
pub mod sql;
pub(crate) mod statement;
mod undo;

pub use client::ClientStatements;
pub use interner::Interner;
pub use replies::Replies;
pub use rewrite::{client_error, note_unread, Rewriter};
pub use server::ServerStatements;
pub use statement::{Statement, PREFIX};
pub use undo::{undo, Undo};
