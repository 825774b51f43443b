//! The read/write router: pure functions from SQL text (and the client's
//! session context) to a [`Route`] with the [`Reason`] for it. Nothing here
//! touches a socket; the session asks, the router answers.
//!
//! - [`classify`]: statement text -> context-free [`Decision`] (sqlparser,
//!   PostgreSQL dialect). Anything it cannot prove read-only goes to the
//!   primary.
//! - `rewrite`: a second chance for PostgreSQL syntax sqlparser lacks
//!   (`GROUP BY DISTINCT`, `ROWS FROM`, ...), rewritten for classification.
//! - [`functions`]: which function calls are safe on a replica, and which
//!   views may write; `builtins` holds its reviewed lists of built-ins.
//! - [`hints`]: `/* pgswitch:primary */` comments and `SET pgswitch.route`.
//! - [`cache`]: an LRU of decisions keyed by statement shape.
//! - [`catalog`]: function volatility and writing views from the primary's
//!   catalog.
//! - [`database`]: the [`Router`] of one database (its cache and catalog),
//!   shared by all its pools.
//!
//! The session (`session/forward/routing.rs`) asks at the start of each
//! transaction and combines the answer with its own context: pool mode,
//! `SET pgswitch.route`, read-your-writes and replica health.

mod builtins;
pub mod cache;
pub mod catalog;
pub mod classify;
pub mod database;
pub mod functions;
pub mod hints;
mod rewrite;

pub use cache::RouteCache;
pub use classify::classify;
pub use database::Router;
pub use functions::FunctionPolicy;
pub use hints::{RouteHint, RouterError};

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Primary,
    Replica,
    /// Either: transaction control and session statements follow the
    /// connection the client already has.
    Any,
}

/// Why the router chose a route; counted in metrics and shown by
/// `SHOW ROUTE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A read-only statement.
    Read,
    /// A statement that writes or changes the database.
    Write(&'static str),
    /// `SELECT ... FOR UPDATE/SHARE` somewhere in the query.
    RowLock,
    /// A data-modifying statement inside a WITH clause.
    WritableCte,
    /// `SELECT ... INTO new_table`.
    SelectInto,
    /// A function that may write, or whose volatility is unknown.
    Function(String),
    /// A view whose definition may write (learned from the catalog).
    View(String),
    /// A read that calls a function only a standby runs
    /// (`pg_is_wal_replay_paused()`): a primary would fail it with 55000.
    StandbyOnly(String),
    /// sqlparser could not parse it: never guess.
    Unparsed,
    /// Session state (SET, PREPARE, LISTEN, ...): stays on the client's
    /// connection.
    SessionState,
    /// BEGIN/COMMIT/ROLLBACK/SAVEPOINT.
    TransactionControl,
    /// `BEGIN` of a read-write transaction (where it runs depends on
    /// `transaction_routing`).
    Begin,
    /// `BEGIN READ ONLY` / `START TRANSACTION READ ONLY`.
    ReadOnlyTransaction,
    /// A `/* pgswitch:... */` comment.
    Hint,
    /// `SET pgswitch.route = ...` (handled by the session, not the server).
    RouteSetting(RouteHint),
    /// `SET pgswitch.route` to a value that is not a route.
    InvalidRouteSetting(String),
    /// `SET pgswitch.min_lsn = 'X/Y'`: reads must see the primary's WAL up
    /// to here (causal reads, handled by the session).
    MinLsnSetting(u64),
    /// `SET pgswitch.min_lsn` to a value that is not a WAL position.
    InvalidMinLsn(String),
}

impl Reason {
    /// A fixed label per kind of reason, for metrics.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// Every reason's label, in `index` order.
    pub const LABELS: [&'static str; 18] = [
        "read",
        "write",
        "row_lock",
        "writable_cte",
        "select_into",
        "function",
        "view",
        "standby_only",
        "unparsed",
        "session_state",
        "transaction_control",
        "begin",
        "read_only_transaction",
        "hint",
        "route_setting",
        "invalid_route_setting",
        "min_lsn_setting",
        "invalid_min_lsn",
    ];

    /// The reason's place in `LABELS`.
    pub fn index(&self) -> usize {
        match self {
            Reason::Read => 0,
            Reason::Write(_) => 1,
            Reason::RowLock => 2,
            Reason::WritableCte => 3,
            Reason::SelectInto => 4,
            Reason::Function(_) => 5,
            Reason::View(_) => 6,
            Reason::StandbyOnly(_) => 7,
            Reason::Unparsed => 8,
            Reason::SessionState => 9,
            Reason::TransactionControl => 10,
            Reason::Begin => 11,
            Reason::ReadOnlyTransaction => 12,
            Reason::Hint => 13,
            Reason::RouteSetting(_) => 14,
            Reason::InvalidRouteSetting(_) => 15,
            Reason::MinLsnSetting(_) => 16,
            Reason::InvalidMinLsn(_) => 17,
        }
    }
}

/// A route and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub route: Route,
    pub reason: Reason,
}

impl Decision {
    pub fn primary(reason: Reason) -> Self {
        Decision {
            route: Route::Primary,
            reason,
        }
    }

    pub fn replica(reason: Reason) -> Self {
        Decision {
            route: Route::Replica,
            reason,
        }
    }

    pub fn any(reason: Reason) -> Self {
        Decision {
            route: Route::Any,
            reason,
        }
    }
}

/// Routes one statement string (possibly several statements): a leading
/// hint comment wins, then the classification. Errors are client errors
/// (an unknown hint value).
pub fn route(sql: &str, functions: &FunctionPolicy) -> Result<Decision, RouterError> {
    if let Some(hint) = hints::leading_hint(sql)? {
        let route = match hint {
            RouteHint::Primary => Route::Primary,
            RouteHint::Replica => Route::Replica,
            RouteHint::Auto => return Ok(classify(sql, functions)),
        };
        return Ok(Decision {
            route,
            reason: Reason::Hint,
        });
    }
    let d = classify(sql, functions);
    match d.reason {
        Reason::InvalidRouteSetting(value) => return Err(RouterError::UnknownHint(value)),
        Reason::InvalidMinLsn(value) => return Err(RouterError::BadLsn(value)),
        _ => {}
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
