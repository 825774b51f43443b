//! SQL-level prepared statements in a client's Query or Parse text:
//! `PREPARE name AS ...`, `DEALLOCATE [PREPARE] name | ALL`, and
//! `DISCARD ALL` (which deallocates everything too).

use crate::sqltext::Text;
use sqlparser::ast::{DiscardObject, Ident, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// One statement about prepared statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PREPARE name ...`, with the text that recreates it.
    Prepare { name: String, text: String },
    /// `DEALLOCATE name`.
    Deallocate(String),
    /// `DEALLOCATE ALL` or `DISCARD ALL`.
    DeallocateAll,
}

/// The commands in `sql`, in order (the session scans the text once and
/// calls `commands_of`).
#[cfg(test)]
fn commands(sql: &str) -> Vec<Command> {
    commands_of(Text::new(sql))
}

/// The commands in a text already scanned for its words, in order;
/// empty (and cheap) for almost every statement, which names none of
/// the keywords.
pub fn commands_of(text: Text<'_>) -> Vec<Command> {
    if !text.words.prepared {
        return Vec::new();
    }
    let sql = text.sql;
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Vec::new();
    };
    let single = statements.len() == 1;
    statements
        .into_iter()
        .filter_map(|st| match &st {
            Statement::Prepare { name, .. } => Some(Command::Prepare {
                name: folded(name),
                // The client's own words when it is alone; otherwise
                // sqlparser's rendering of this one statement.
                text: if single {
                    sql.trim().trim_end_matches(';').to_owned()
                } else {
                    st.to_string()
                },
            }),
            Statement::Deallocate { name, .. }
                if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") =>
            {
                Some(Command::DeallocateAll)
            }
            Statement::Deallocate { name, .. } => Some(Command::Deallocate(folded(name))),
            Statement::Discard {
                object_type: DiscardObject::ALL,
            } => Some(Command::DeallocateAll),
            _ => None,
        })
        .collect()
}

/// A name as Postgres stores it: unquoted names are lower-cased.
fn folded(name: &Ident) -> String {
    match name.quote_style {
        Some(_) => name.value.clone(),
        None => name.value.to_lowercase(),
    }
}

/// ASCII case-insensitive substring search, without allocating.
/// `name` quoted as an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_prepare_and_deallocate() {
        assert_eq!(
            commands("PREPARE Q1 (int) AS SELECT $1;"),
            vec![Command::Prepare {
                name: "q1".into(),
                text: "PREPARE Q1 (int) AS SELECT $1".into()
            }]
        );
        assert_eq!(
            commands("deallocate prepare \"Q1\""),
            vec![Command::Deallocate("Q1".into())]
        );
        assert_eq!(commands("DEALLOCATE ALL"), vec![Command::DeallocateAll]);
        assert_eq!(commands("discard all"), vec![Command::DeallocateAll]);
        assert_eq!(
            commands("DEALLOCATE \"all\""),
            vec![Command::Deallocate("all".into())]
        );
        let both = commands("PREPARE a AS SELECT 1; DEALLOCATE a");
        assert!(
            matches!(&both[0], Command::Prepare { name, text } if name == "a" && text.starts_with("PREPARE a AS SELECT 1"))
        );
        assert_eq!(both[1], Command::Deallocate("a".into()));
    }

    #[test]
    fn other_statements_name_none() {
        assert!(commands("SELECT 1").is_empty());
        assert!(commands("SELECT 'prepare me'").is_empty());
        assert!(commands("DISCARD PLANS").is_empty());
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
