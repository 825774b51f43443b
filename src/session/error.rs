//! Everything that can end or fail a client session, who is at fault, and
//! the one conversion to the wire (SQLSTATE, severity, message, hint).

use crate::pool::{CheckoutError, ServerError};
use crate::protocol::startup::StartupError;
use crate::protocol::FrameError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client went away or its socket failed: nobody to tell.
    #[error("client connection lost: {0}")]
    ClientGone(std::io::Error),
    #[error("{0}")]
    Startup(#[from] StartupError),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("password authentication failed for user \"{0}\"")]
    Auth(String),
    #[error("database \"{0}\" does not exist")]
    NoDatabase(String),
    #[error("no such user, or no password given")]
    NoUser,
    #[error("sorry, too many clients already (max_client_conn = {0})")]
    TooManyClients(usize),
    #[error("{0}")]
    Checkout(#[from] CheckoutError),
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("terminating connection due to idle-session timeout")]
    IdleTimeout,
    #[error("terminating connection due to idle-in-transaction timeout")]
    IdleInTransaction,
    #[error("terminating connection due to administrator command (pgswitch is shutting down)")]
    Shutdown,
    #[error("timed out waiting for the startup and authentication exchange")]
    LoginTimeout,
    #[error("{0}")]
    Route(#[from] crate::router::RouterError),
    #[error("cannot run a write: the primary {0} reports that it is in recovery (a standby)")]
    PrimaryInRecovery(String),
    #[error("no replica can serve this read ({0}) and primary_reads = never")]
    NoReplica(&'static str),
    #[error("user \"{0}\" may not open the pgswitch admin console")]
    NotAdmin(String),
    /// A server connection failed under a request that had started to
    /// answer (or could not be run elsewhere); the client stays.
    #[error("{cause}; {}", if *.in_transaction { "the transaction was rolled back" } else { "the request may not have completed" })]
    ServerLost {
        cause: ServerError,
        in_transaction: bool,
    },
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    TransactionAborted,
    #[error("connection without TLS refused: pgswitch requires TLS (client_tls = require)")]
    TlsRequired,
    #[error("could not look up the user: {0}")]
    Lookup(String),
    #[error("user \"{0}\" logs in without a password, which the serverless front (HTTP, WebSocket) does not allow")]
    PasswordRequired(String),
}

impl SessionError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SessionError::ClientGone(_) => "08006",
            SessionError::Startup(StartupError::UnsupportedProtocol(..)) => "0A000",
            SessionError::Startup(_) | SessionError::Protocol(_) => "08P01",
            SessionError::Frame(FrameError::TooLarge { .. }) => "54000",
            SessionError::Frame(_) => "08P01",
            SessionError::Auth(_) | SessionError::NoUser => "28P01",
            SessionError::NoDatabase(_) => "3D000",
            SessionError::TooManyClients(_) => "53300",
            SessionError::Checkout(CheckoutError::WaitTimeout { .. })
            | SessionError::Checkout(CheckoutError::AtLimit(_)) => "53300",
            SessionError::Checkout(CheckoutError::Server(e)) | SessionError::Server(e) => {
                server_sqlstate(e)
            }
            SessionError::Checkout(CheckoutError::Closed(_)) => "57P01",
            SessionError::IdleTimeout => "57P05",
            SessionError::IdleInTransaction => "25P03",
            SessionError::Shutdown => "57P01",
            SessionError::LoginTimeout => "08006",
            SessionError::Route(_) => "22023",
            SessionError::PrimaryInRecovery(_) => "25006",
            SessionError::NoReplica(_) => "57P03",
            SessionError::NotAdmin(_) => "42501",
            SessionError::ServerLost { .. } => "08006",
            SessionError::TransactionAborted => "25P02",
            SessionError::TlsRequired | SessionError::PasswordRequired(_) => "28000",
            SessionError::Lookup(_) => "08006",
        }
    }

    pub fn hint(&self) -> Option<&'static str> {
        match self {
            SessionError::Frame(FrameError::TooLarge { .. }) => {
                Some("send a smaller message, or raise max_message_bytes in the pgswitch config")
            }
            SessionError::TooManyClients(_) => Some("raise max_client_conn in the pgswitch config, or close idle clients"),
            SessionError::Checkout(CheckoutError::WaitTimeout { .. }) => {
                Some("all server connections stayed busy; raise pool_size or query_wait_timeout, or look for long transactions")
            }
            SessionError::Checkout(CheckoutError::AtLimit(_)) => {
                Some("the database's server connections stayed busy; raise max_server_connections (or lower instances), or look for long transactions")
            }
            SessionError::Checkout(CheckoutError::Server(_)) | SessionError::Server(_) => {
                Some("check that the server is up and reachable from pgswitch; retry the transaction")
            }
            SessionError::PrimaryInRecovery(_) => Some("pgswitch refuses writes until that server is promoted, or until the config names the new primary; reads still work"),
            SessionError::NotAdmin(_) => Some("list the user in admin_users in the pgswitch config"),
            SessionError::NoReplica(_) => Some("retry when a replica is back in rotation, or set primary_reads = \"fallback\" to let the primary serve reads"),
            SessionError::ServerLost { in_transaction: false, .. } => Some("you are still connected: retry the request; pgswitch takes another server connection"),
            SessionError::ServerLost { in_transaction: true, .. } => Some("you are still connected: run ROLLBACK, then retry the transaction"),
            SessionError::TransactionAborted => Some("the server under this transaction went away; run ROLLBACK"),
            SessionError::TlsRequired => Some("connect with sslmode=require (or verify-full with pgswitch's CA)"),
            SessionError::Lookup(_) => Some("check auth_user, its password and auth_query in the pgswitch config, and that the primary is up"),
            SessionError::PasswordRequired(_) => Some("give the user a password (auth = \"scram-sha-256\" or \"md5\"): any web page could reach the front otherwise"),
            _ => None,
        }
    }

    /// True when the client should hear about it.
    pub fn reportable(&self) -> bool {
        !matches!(self, SessionError::ClientGone(_))
    }

    /// The text a client sees. Unknown users read exactly like a wrong
    /// password, as in Postgres, so user names do not leak.
    pub fn client_message(&self, user: &str) -> String {
        match self {
            SessionError::NoUser => SessionError::Auth(user.to_owned()).to_string(),
            other => other.to_string(),
        }
    }
}

fn server_sqlstate(e: &ServerError) -> &'static str {
    match e {
        // The server's own verdict on our login, e.g. 28P01 or 3D000, would
        // mislead the client (it is our config that is wrong), so report it
        // as a connection failure with the server's message.
        ServerError::Connect { .. }
        | ServerError::ConnectTimeout { .. }
        | ServerError::Rejected { .. } => "08006",
        ServerError::NoPassword { .. } => "08006",
        ServerError::Protocol(..) => "08P01",
        ServerError::Io { .. } | ServerError::Timeout { .. } | ServerError::Tls { .. } => "08006",
        ServerError::Query { .. } => "08006",
        ServerError::AtLimit(_) => "53300",
    }
}
