//! Statement text -> [`Decision`], before any session context. Parsed with
//! sqlparser's PostgreSQL dialect (with a second chance for syntax it
//! lacks, see `rewrite.rs`); the AST is walked for everything that can hide
//! a write inside a read: row locks and writable CTEs at any depth,
//! `SELECT INTO`, every function call, and views that may write. What the
//! walk cannot prove read-only goes to the primary.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, Expr, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor,
    TransactionAccessMode, TransactionIsolationLevel, TransactionMode, UtilityOption, Value, Visit,
    Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::builtins::SYNTAX_CALLS;
use super::hints::RouteHint;
use super::{rewrite, Decision, FunctionPolicy, Reason, Route};

/// Classifies a query string; several statements go to the primary if any
/// one must.
pub fn classify(sql: &str, functions: &FunctionPolicy) -> Decision {
    let dialect = PostgreSqlDialect {};
    let parsed = Parser::parse_sql(&dialect, sql).or_else(|e| match rewrite::rewrite(sql) {
        Some(tokens) => Parser::new(&dialect)
            .with_tokens_with_locations(tokens)
            .parse_statements(),
        None => Err(e),
    });
    let Ok(statements) = parsed else {
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

/// Primary beats replica beats any; among reads, one that needs a standby
/// says so.
fn combine(a: Decision, b: Decision) -> Decision {
    let rank = |d: &Decision| match (d.route, &d.reason) {
        (Route::Primary, _) => 3,
        (Route::Replica, Reason::StandbyOnly(_)) => 2,
        (Route::Replica, _) => 1,
        (Route::Any, _) => 0,
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
            options,
            statement: inner,
            ..
        } => {
            // EXPLAIN ANALYZE runs the statement, so it goes where the
            // statement goes; so does EXPLAIN EXECUTE, whose prepared
            // statement lives in the client's session. Any other EXPLAIN
            // only plans: a standby plans writes too (it refuses only to
            // run them), so it is a read whatever it explains.
            if *analyze
                || analyze_option(options.as_deref())
                || matches!(**inner, Statement::Execute { .. })
            {
                statement_decision(inner, functions)
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

/// True if an `EXPLAIN (...)` option list turns ANALYZE on. PostgreSQL
/// takes a bare `ANALYZE` as true and accepts `true`/`false`, `on`/`off`
/// and `1`/`0` (the last option wins). Only the words `false` and `off`
/// count as off here: the route cache folds numbers and strings into one
/// key (`stats::fingerprint`), so `ANALYZE 0` must route as `ANALYZE 1`
/// does.
fn analyze_option(options: Option<&[UtilityOption]>) -> bool {
    let off = |arg: &Expr| match arg {
        Expr::Value(v) => matches!(v.value, Value::Boolean(false)),
        Expr::Identifier(i) => {
            i.value.eq_ignore_ascii_case("false") || i.value.eq_ignore_ascii_case("off")
        }
        _ => false,
    };
    options
        .unwrap_or_default()
        .iter()
        .any(|o| o.name.value.eq_ignore_ascii_case("analyze") && !o.arg.as_ref().is_some_and(off))
}

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

/// `SET pgswitch.route = ...` is pgswitch's own; any other SET is session
/// state.
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
        let name = name_parts(variable).join(".");
        if name.eq_ignore_ascii_case("pgswitch.min_lsn") {
            let value = values.first().map(|v| v.to_string()).unwrap_or_default();
            let text = value.trim_matches(|c| c == '\'' || c == '"');
            return match crate::pool::health::parse_lsn(text) {
                Some(lsn) => Decision::any(Reason::MinLsnSetting(lsn)),
                None => Decision::primary(Reason::InvalidMinLsn(value)),
            };
        }
        if name.eq_ignore_ascii_case("pgswitch.route") {
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
    let mut walk = Walk {
        functions,
        standby_only: None,
    };
    match statement.visit(&mut walk) {
        ControlFlow::Break(reason) => Decision::primary(reason),
        ControlFlow::Continue(()) => match walk.standby_only {
            Some(name) => Decision::replica(Reason::StandbyOnly(name)),
            None => Decision::replica(Reason::Read),
        },
    }
}

struct Walk<'a> {
    functions: &'a FunctionPolicy,
    /// A call only a standby runs, if the walk saw one.
    standby_only: Option<String>,
}

impl Walk<'_> {
    fn call(&mut self, name: &ObjectName) -> ControlFlow<Reason> {
        if syntax_call(name) {
            return ControlFlow::Continue(());
        }
        let parts = name_parts(name);
        if !self.functions.read_safe(&parts) {
            return ControlFlow::Break(Reason::Function(parts.join(".")));
        }
        if self.standby_only.is_none() && self.functions.standby_only(&parts) {
            self.standby_only = Some(parts.join("."));
        }
        ControlFlow::Continue(())
    }
}

/// SQL syntax that sqlparser presents as a function call (`ARRAY(SELECT
/// ...)`, `ROW(...)`, ...): an unquoted one-part name from the list. The
/// walk goes on into its arguments (the subquery of `ARRAY(...)`).
/// Quoted, the name is a user's function (`"row"(1)`).
fn syntax_call(name: &ObjectName) -> bool {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(i)] => {
            i.quote_style.is_none() && SYNTAX_CALLS.contains(&i.value.to_lowercase().as_str())
        }
        _ => false,
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
        // `... UNION TABLE v`: sqlparser keeps the name as plain text,
        // which the relation visit below does not see.
        for parts in table_commands(&query.body) {
            if self.functions.view_writes(&parts) {
                return ControlFlow::Break(Reason::View(parts.join(".")));
            }
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

    /// A view runs its definition: one that may write (learned from the
    /// catalog) makes the query a write.
    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Reason> {
        let parts = name_parts(relation);
        if self.functions.view_writes(&parts) {
            return ControlFlow::Break(Reason::View(parts.join(".")));
        }
        ControlFlow::Continue(())
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

/// The names of the `TABLE name` commands among a query's set operations
/// (nested queries are visited on their own).
fn table_commands(body: &SetExpr) -> Vec<Vec<String>> {
    match body {
        SetExpr::Table(t) => vec![t
            .schema_name
            .iter()
            .chain(&t.table_name)
            .map(|i| i.value.clone())
            .collect()],
        SetExpr::SetOperation { left, right, .. } => {
            let mut names = table_commands(left);
            names.extend(table_commands(right));
            names
        }
        _ => Vec::new(),
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
