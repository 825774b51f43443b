//! Statement text -> [`Decision`], before any session context. Parsed with
//! sqlparser's PostgreSQL dialect; the AST is walked for everything that can
//! hide a write inside a read: row locks and writable CTEs at any depth,
//! `SELECT INTO`, and every function call. What the walk cannot prove
//! read-only goes to the primary.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, Expr, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor,
    TransactionAccessMode, TransactionIsolationLevel, TransactionMode, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::hints::RouteHint;
use super::{Decision, FunctionPolicy, Reason, Route};

/// Classifies a query string; several statements go to the primary if any
/// one must.
pub fn classify(sql: &str, functions: &FunctionPolicy) -> Decision {
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        if is_table_command(sql) {
            return Decision::replica(Reason::Read);
        }
        return Decision::primary(Reason::Unparsed);
    };
    let mut combined: Option<Decision> = None;
    for statement in &statements {
        let d = statement_decision(statement, functions);
        combined = Some(match combined {
            None => d,
            Some(prev) => combine(prev, d),
        });
    }
    // An empty query (only comments or semicolons) needs no particular server.
    combined.unwrap_or(Decision::any(Reason::SessionState))
}

/// `TABLE name`, Postgres's short form of `SELECT * FROM name`, which
/// sqlparser does not parse.
fn is_table_command(sql: &str) -> bool {
    let mut words = sql.trim().trim_end_matches(';').split_whitespace();
    let name_ok = |n: &str| {
        n.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '"'))
    };
    matches!((words.next(), words.next(), words.next()), (Some(t), Some(n), None) if t.eq_ignore_ascii_case("table") && name_ok(n))
}

/// Primary beats replica beats any.
fn combine(a: Decision, b: Decision) -> Decision {
    let rank = |d: &Decision| match d.route {
        Route::Primary => 2,
        Route::Replica => 1,
        Route::Any => 0,
    };
    if rank(&b) > rank(&a) {
        b
    } else {
        a
    }
}

fn statement_decision(statement: &Statement, functions: &FunctionPolicy) -> Decision {
    match statement {
        Statement::Query(_) => read_unless_hidden_write(statement, functions),
        Statement::Explain {
            analyze,
            statement: inner,
            ..
        } => {
            let d = statement_decision(inner, functions);
            // Plain EXPLAIN runs nothing; EXPLAIN ANALYZE runs the statement.
            if *analyze || d.route == Route::Primary {
                d
            } else {
                Decision::replica(Reason::Read)
            }
        }
        Statement::Copy {
            source: CopySource::Query(_),
            to: true,
            ..
        } => read_unless_hidden_write(statement, functions),
        Statement::Copy { to: true, .. } => Decision::replica(Reason::Read),
        Statement::Copy { .. } => Decision::primary(Reason::Write("COPY FROM")),
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. } => Decision::replica(Reason::Read),
        Statement::StartTransaction { modes, .. } => match transaction_modes(modes) {
            (_, true) => Decision::primary(Reason::TransactionControl),
            (true, false) => Decision::replica(Reason::ReadOnlyTransaction),
            (false, false) => Decision::primary(Reason::Begin),
        },
        Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => Decision::any(Reason::TransactionControl),
        Statement::Set(set) => set_decision(set),
        Statement::Reset(_) | Statement::Discard { .. } | Statement::Deallocate { .. } => {
            Decision::any(Reason::SessionState)
        }
        // PREPARE of a read can run anywhere the client's session is; of a
        // write, the statement decides. EXECUTE needs the session's
        // prepared statement, which the session layer tracks.
        Statement::Prepare {
            statement: inner, ..
        } => match statement_decision(inner, functions) {
            d if d.route == Route::Primary => d,
            _ => Decision::any(Reason::SessionState),
        },
        Statement::Execute { .. } => Decision::primary(Reason::SessionState),
        Statement::Insert(_) => Decision::primary(Reason::Write("INSERT")),
        Statement::Update { .. } => Decision::primary(Reason::Write("UPDATE")),
        Statement::Delete(_) => Decision::primary(Reason::Write("DELETE")),
        Statement::Merge { .. } => Decision::primary(Reason::Write("MERGE")),
        Statement::Truncate { .. } => Decision::primary(Reason::Write("TRUNCATE")),
        Statement::Lock { .. } | Statement::LockTables { .. } => {
            Decision::primary(Reason::Write("LOCK"))
        }
        Statement::LISTEN { .. } | Statement::UNLISTEN { .. } | Statement::NOTIFY { .. } => {
            Decision::primary(Reason::Write("LISTEN/NOTIFY"))
        }
        Statement::Call(_) => Decision::primary(Reason::Write("CALL")),
        _ => Decision::primary(Reason::Write("DDL or other")),
    }
}

/// `SET pgswitch.route = ...` is pgswitch's own; any other SET is session
/// state.
/// (read only, serializable) of a transaction's modes. A hot standby
/// refuses SERIALIZABLE ("cannot use serializable mode in a hot standby"),
/// so such a transaction stays on the primary however it starts.
fn transaction_modes(modes: &[TransactionMode]) -> (bool, bool) {
    let read_only = modes.iter().any(|m| {
        matches!(
            m,
            TransactionMode::AccessMode(TransactionAccessMode::ReadOnly)
        )
    });
    let serializable = modes.iter().any(|m| {
        matches!(
            m,
            TransactionMode::IsolationLevel(TransactionIsolationLevel::Serializable)
        )
    });
    (read_only, serializable)
}

fn set_decision(set: &sqlparser::ast::Set) -> Decision {
    // `SET TRANSACTION READ ONLY` as a transaction's first statement (after
    // a BEGIN held back by `transaction_routing = first_statement`) makes it
    // a read-only transaction.
    if let sqlparser::ast::Set::SetTransaction { modes, .. } = set {
        return match transaction_modes(modes) {
            (true, false) => Decision::replica(Reason::ReadOnlyTransaction),
            _ => Decision::any(Reason::TransactionControl),
        };
    }
    if let sqlparser::ast::Set::SingleAssignment {
        variable, values, ..
    } = set
    {
        if name_parts(variable)
            .join(".")
            .eq_ignore_ascii_case("pgswitch.route")
        {
            let value = values.first().map(|v| v.to_string()).unwrap_or_default();
            return match RouteHint::parse(&value) {
                Ok(hint) => Decision::any(Reason::RouteSetting(hint)),
                Err(_) => Decision::primary(Reason::InvalidRouteSetting(value)),
            };
        }
    }
    Decision::any(Reason::SessionState)
}

/// A query is a read unless the walk finds a write inside it.
fn read_unless_hidden_write(statement: &Statement, functions: &FunctionPolicy) -> Decision {
    let mut walk = Walk { functions };
    match statement.visit(&mut walk) {
        ControlFlow::Break(reason) => Decision::primary(reason),
        ControlFlow::Continue(()) => Decision::replica(Reason::Read),
    }
}

struct Walk<'a> {
    functions: &'a FunctionPolicy,
}

impl Walk<'_> {
    fn call(&self, name: &ObjectName) -> ControlFlow<Reason> {
        let parts = name_parts(name);
        if self.functions.read_safe(&parts) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(Reason::Function(parts.join(".")))
        }
    }
}

impl Visitor for Walk<'_> {
    type Break = Reason;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Reason> {
        if !query.locks.is_empty() {
            return ControlFlow::Break(Reason::RowLock);
        }
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                if writes(&cte.query.body) {
                    return ControlFlow::Break(Reason::WritableCte);
                }
            }
        }
        if writes(&query.body) {
            return ControlFlow::Break(Reason::WritableCte);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Reason> {
        if select.into.is_some() {
            return ControlFlow::Break(Reason::SelectInto);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Reason> {
        match expr {
            Expr::Function(f) => self.call(&f.name),
            _ => ControlFlow::Continue(()),
        }
    }

    /// Set-returning functions in FROM (`SELECT * FROM f(...)`) are calls
    /// too.
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Reason> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.call(name),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// Data-modifying set expressions (INSERT/UPDATE/DELETE/MERGE in a CTE or
/// a subquery), looking through parentheses and set operations.
fn writes(body: &SetExpr) -> bool {
    match body {
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => true,
        SetExpr::Query(q) => writes(&q.body),
        SetExpr::SetOperation { left, right, .. } => writes(left) || writes(right),
        _ => false,
    }
}

fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            ObjectNamePart::Function(f) => f.name.value.clone(),
        })
        .collect()
}
