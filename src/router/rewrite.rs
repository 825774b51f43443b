//! A second chance for statements sqlparser cannot parse: PostgreSQL syntax
//! it lacks is rewritten, token by token, into syntax it has, and the
//! result is parsed and walked like any statement. The rewritten text is
//! only ever classified, never sent anywhere.
//!
//! Why a rewrite and not a separate "looks like a read" scan: the verdict
//! still comes from the full walk in `classify.rs` (every call, row lock,
//! writable CTE, `INTO`, view), so the rewrite only has to keep what the
//! walk looks at. Each rule removes keywords, column names or constants,
//! which run nothing, or moves function calls to where the walk sees them
//! (`ROWS FROM`), and applies only when the tokens around it have exactly
//! the expected shape. It works on sqlparser's own tokens, so strings,
//! quoted identifiers, dollar quotes and comments are seen exactly as the
//! parser sees them, and nothing is re-tokenized. What still does not parse
//! goes to the primary.
//!
//! | PostgreSQL | parsed as |
//! |---|---|
//! | `x BETWEEN SYMMETRIC a AND b` (and `ASYMMETRIC`) | `x BETWEEN a AND b` |
//! | `GROUP BY DISTINCT ...` (and `ALL`) | `GROUP BY ...` |
//! | `... FOLLOWING EXCLUDE CURRENT ROW)` (`GROUP`, `TIES`, `NO OTHERS`) | `... FOLLOWING)` |
//! | `WITH RECURSIVE t AS (...) SEARCH DEPTH FIRST BY a SET o CYCLE a SET c USING p` | `WITH RECURSIVE t AS (...)` |
//! | `FROM ROWS FROM (f(x) AS (a int), g(y)) WITH ORDINALITY AS r` | `FROM (SELECT f(x), g(y)) AS r` |
//! | `TABLE t` (as a statement, in a set operation or a subquery) | `SELECT * FROM t` |

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

/// sqlparser's tokens of `sql` with the rules above applied, or `None` if
/// no rule applies (or the text does not tokenize).
pub(super) fn rewrite(sql: &str) -> Option<Vec<TokenWithSpan>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let mut e = Edits::new(&tokens);
    for k in 0..e.sig.len() {
        between_symmetric(&mut e, k);
        group_by_distinct(&mut e, k);
        frame_exclusion(&mut e, k);
        search_cycle(&mut e, k);
        rows_from(&mut e, k);
        table_command(&mut e, k);
    }
    e.apply()
}

/// `BETWEEN SYMMETRIC` / `BETWEEN ASYMMETRIC`: drop the second word (both
/// are reserved words in PostgreSQL, never a column).
fn between_symmetric(e: &mut Edits, k: usize) {
    if e.word(k, "between") && (e.word(k + 1, "symmetric") || e.word(k + 1, "asymmetric")) {
        e.drop(k + 1, k + 2);
    }
}

/// `GROUP BY DISTINCT` / `GROUP BY ALL`: drop the quantifier.
fn group_by_distinct(e: &mut Edits, k: usize) {
    if e.word(k, "group")
        && e.word(k + 1, "by")
        && (e.word(k + 2, "distinct") || e.word(k + 2, "all"))
    {
        e.drop(k + 2, k + 3);
    }
}

/// A window frame's exclusion, right after the frame's end and right
/// before the window's closing parenthesis.
fn frame_exclusion(e: &mut Edits, k: usize) -> Option<()> {
    let prev = k.checked_sub(1)?;
    if !(e.word(prev, "preceding") || e.word(prev, "following") || e.word(prev, "row")) {
        return None;
    }
    if !e.word(k, "exclude") {
        return None;
    }
    let len = [
        &["current", "row"][..],
        &["group"],
        &["ties"],
        &["no", "others"],
    ]
    .iter()
    .find(|words| words.iter().enumerate().all(|(i, w)| e.word(k + 1 + i, w)))?
    .len();
    if !matches!(e.tok(k + 1 + len), Some(Token::RParen)) {
        return None;
    }
    e.drop(k, k + 1 + len);
    Some(())
}

/// The `SEARCH` and `CYCLE` clauses after a recursive CTE's closing
/// parenthesis: they name columns and give constants, and run nothing.
fn search_cycle(e: &mut Edits, k: usize) -> Option<()> {
    if !matches!(e.tok(k.checked_sub(1)?), Some(Token::RParen)) {
        return None;
    }
    let mut end = k;
    // SEARCH { DEPTH | BREADTH } FIRST BY col [, ...] SET col
    if e.word(end, "search")
        && (e.word(end + 1, "depth") || e.word(end + 1, "breadth"))
        && e.word(end + 2, "first")
        && e.word(end + 3, "by")
    {
        let after = e.ident_list(end + 4)?;
        if e.word(after, "set") && e.ident(after + 1) {
            end = after + 2;
        }
    }
    // CYCLE col [, ...] SET col [ TO value DEFAULT value ] USING col
    if e.word(end, "cycle") {
        let mut j = e.ident_list(end + 1)?;
        if e.word(j, "set") && e.ident(j + 1) {
            j += 2;
            if e.word(j, "to") {
                j = e.constant(j + 1)?;
                if !e.word(j, "default") {
                    return None;
                }
                j = e.constant(j + 1)?;
            }
            if e.word(j, "using") && e.ident(j + 1) {
                end = j + 2;
            }
        }
    }
    if end > k {
        e.drop(k, end);
    }
    Some(())
}

/// `ROWS FROM (f(...) [AS (column definitions)], ...) [WITH ORDINALITY]`
/// in a FROM list -> `(SELECT f(...), ...)`: the same calls, where the walk
/// checks them. Column definitions are names and types only.
fn rows_from(e: &mut Edits, k: usize) -> Option<()> {
    if !(e.word(k, "rows") && e.word(k + 1, "from") && matches!(e.tok(k + 2), Some(Token::LParen)))
    {
        return None;
    }
    let prev = k.checked_sub(1)?;
    let in_from_list = matches!(e.tok(prev), Some(Token::Comma))
        || e.word(prev, "from")
        || e.word(prev, "join")
        || e.word(prev, "lateral");
    if !in_from_list {
        return None;
    }
    let close = e.matching_paren(k + 2)?;
    let mut coldefs = Vec::new();
    let mut i = k + 3;
    loop {
        // A (possibly qualified) function name and its arguments.
        let mut j = i;
        if !e.ident(j) {
            return None;
        }
        j += 1;
        while matches!(e.tok(j), Some(Token::Period)) && e.ident(j + 1) {
            j += 2;
        }
        if !matches!(e.tok(j), Some(Token::LParen)) {
            return None;
        }
        j = e.matching_paren(j)? + 1;
        if e.word(j, "as") {
            if !matches!(e.tok(j + 1), Some(Token::LParen)) {
                return None;
            }
            let end = e.matching_paren(j + 1)?;
            if !e.column_definitions(j + 2, end) {
                return None;
            }
            coldefs.push((j, end + 1));
            j = end + 1;
        }
        match e.tok(j) {
            Some(Token::Comma) => i = j + 1,
            Some(Token::RParen) if j == close => break,
            _ => return None,
        }
    }
    e.drop(k, k + 2);
    e.insert_after(k + 2, vec![Token::make_keyword("SELECT")]);
    for (from, to) in coldefs {
        e.drop(from, to);
    }
    if e.word(close + 1, "with") && e.word(close + 2, "ordinality") {
        e.drop(close + 1, close + 3);
    }
    Some(())
}

/// `TABLE name` where a query starts (a statement, a subquery, either side
/// of UNION/INTERSECT/EXCEPT, after EXPLAIN) -> `SELECT * FROM name`. Other
/// `TABLE` words (`CREATE TABLE`, `LOCK TABLE`, `INTO TABLE`) follow other
/// words and are left alone.
fn table_command(e: &mut Edits, k: usize) {
    if !e.word(k, "table") || !e.ident(k + 1) || RESERVED.iter().any(|w| e.word(k + 1, w)) {
        return;
    }
    let starts_query = match k.checked_sub(1) {
        None => true,
        Some(prev) => {
            matches!(e.tok(prev), Some(Token::LParen | Token::SemiColon))
                || ["union", "intersect", "except", "all", "distinct", "explain"]
                    .iter()
                    .any(|w| e.word(prev, w))
        }
    };
    if starts_query {
        e.drop(k, k + 1);
        e.insert_after(
            k,
            vec![
                Token::make_keyword("SELECT"),
                Token::Mul,
                Token::make_keyword("FROM"),
            ],
        );
    }
}

/// PostgreSQL's reserved key words (the manual's Appendix C), which name
/// no table unless quoted; sqlparser is laxer (`SELECT * FROM for`).
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "system_user",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// Pending changes to a token list, addressed by position among its
/// significant (non-whitespace) tokens.
struct Edits<'a> {
    tokens: &'a [TokenWithSpan],
    /// Index in `tokens` of each significant token.
    sig: Vec<usize>,
    /// Per token of `tokens`: left out.
    dropped: Vec<bool>,
    /// (index in `tokens`, tokens to insert right after it).
    inserts: Vec<(usize, Vec<Token>)>,
}

impl<'a> Edits<'a> {
    fn new(tokens: &'a [TokenWithSpan]) -> Self {
        let sig = tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
            .map(|(i, _)| i)
            .collect();
        Edits {
            tokens,
            sig,
            dropped: vec![false; tokens.len()],
            inserts: Vec::new(),
        }
    }

    /// The `k`th significant token.
    fn tok(&self, k: usize) -> Option<&Token> {
        self.sig.get(k).map(|&i| &self.tokens[i].token)
    }

    /// The `k`th significant token is the unquoted word `w`.
    fn word(&self, k: usize, w: &str) -> bool {
        matches!(self.tok(k), Some(Token::Word(x)) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
    }

    /// The `k`th significant token is a name (quoted or not).
    fn ident(&self, k: usize) -> bool {
        matches!(self.tok(k), Some(Token::Word(_)))
    }

    /// `name [, name ...]` from `k`; the position after it.
    fn ident_list(&self, k: usize) -> Option<usize> {
        if !self.ident(k) {
            return None;
        }
        let mut j = k + 1;
        while matches!(self.tok(j), Some(Token::Comma)) && self.ident(j + 1) {
            j += 2;
        }
        Some(j)
    }

    /// A constant at `k` (a number, a string, TRUE/FALSE/NULL, or a
    /// negative number); the position after it.
    fn constant(&self, k: usize) -> Option<usize> {
        match self.tok(k)? {
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::NationalStringLiteral(_) => Some(k + 1),
            Token::Minus if matches!(self.tok(k + 1), Some(Token::Number(..))) => Some(k + 2),
            _ if ["true", "false", "null"].iter().any(|w| self.word(k, w)) => Some(k + 1),
            _ => None,
        }
    }

    /// The position of the `)` closing the `(` at `k`.
    fn matching_paren(&self, k: usize) -> Option<usize> {
        let mut depth = 0usize;
        for j in k..self.sig.len() {
            match self.tok(j)? {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(j);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Tokens `from..to` are column definitions: names, type names, array
    /// brackets, and numeric type modifiers in parentheses (`numeric(10,
    /// 2)`), so nothing that could call a function.
    fn column_definitions(&self, from: usize, to: usize) -> bool {
        let mut in_modifier = false;
        (from..to).all(|j| match (in_modifier, self.tok(j)) {
            (false, Some(Token::LParen)) => {
                in_modifier = true;
                true
            }
            (false, Some(Token::Word(_) | Token::Comma | Token::Period))
            | (false, Some(Token::LBracket | Token::RBracket | Token::Number(..))) => true,
            (true, Some(Token::Number(..) | Token::Comma)) => true,
            (true, Some(Token::RParen)) => {
                in_modifier = false;
                true
            }
            _ => false,
        })
    }

    /// Leaves out significant tokens `from..to`.
    fn drop(&mut self, from: usize, to: usize) {
        for k in from..to {
            if let Some(&i) = self.sig.get(k) {
                self.dropped[i] = true;
            }
        }
    }

    /// Inserts `tokens` (spaced) right after the `k`th significant token.
    fn insert_after(&mut self, k: usize, tokens: Vec<Token>) {
        if let Some(&i) = self.sig.get(k) {
            self.inserts.push((i, tokens));
        }
    }

    /// The edited tokens, or `None` if nothing changed.
    fn apply(self) -> Option<Vec<TokenWithSpan>> {
        if self.inserts.is_empty() && !self.dropped.contains(&true) {
            return None;
        }
        let space = || TokenWithSpan::wrap(Token::Whitespace(Whitespace::Space));
        let mut out = Vec::with_capacity(self.tokens.len() + 8);
        for (i, t) in self.tokens.iter().enumerate() {
            if !self.dropped[i] {
                out.push(t.clone());
            }
            for (_, tokens) in self.inserts.iter().filter(|(at, _)| *at == i) {
                for t in tokens {
                    out.push(space());
                    out.push(TokenWithSpan::wrap(t.clone()));
                }
                out.push(space());
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rewritten statement as text (significant tokens, one space
    /// apart), or "-" when nothing was rewritten.
    fn text(sql: &str) -> String {
        match rewrite(sql) {
            None => "-".into(),
            Some(tokens) => tokens
                .iter()
                .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                .map(|t| t.token.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    #[test]
    fn rules() {
        for (sql, want) in [
            (
                "SELECT * FROM t WHERE x BETWEEN SYMMETRIC 5 AND 1",
                "SELECT * FROM t WHERE x BETWEEN 5 AND 1",
            ),
            (
                "SELECT a FROM t GROUP BY DISTINCT ROLLUP(a)",
                "SELECT a FROM t GROUP BY ROLLUP ( a )",
            ),
            (
                "SELECT sum(x) OVER (ROWS BETWEEN 1 PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) FROM t",
                "SELECT sum ( x ) OVER ( ROWS BETWEEN 1 PRECEDING AND CURRENT ROW ) FROM t",
            ),
            (
                "SELECT sum(x) OVER (ROWS UNBOUNDED PRECEDING EXCLUDE NO OTHERS) FROM t",
                "SELECT sum ( x ) OVER ( ROWS UNBOUNDED PRECEDING ) FROM t",
            ),
            (
                "WITH RECURSIVE s(id) AS (SELECT 1) SEARCH BREADTH FIRST BY id, x SET ord CYCLE id SET c TO 'y' DEFAULT 'n' USING p SELECT * FROM s",
                "WITH RECURSIVE s ( id ) AS ( SELECT 1 ) SELECT * FROM s",
            ),
            (
                "WITH RECURSIVE s AS (SELECT 1) CYCLE id SET c USING p, u AS (SELECT 2) SELECT 1",
                "WITH RECURSIVE s AS ( SELECT 1 ) , u AS ( SELECT 2 ) SELECT 1",
            ),
            (
                "SELECT * FROM ROWS FROM (json_to_record(j) AS (a int, b numeric(10, 2)[]), pg_catalog.generate_series(1, 3)) WITH ORDINALITY AS r",
                "SELECT * FROM ( SELECT json_to_record ( j ) , pg_catalog . generate_series ( 1 , 3 ) ) AS r",
            ),
            ("TABLE accounts", "SELECT * FROM accounts"),
            (
                "SELECT 1 UNION ALL TABLE app.t; TABLE \"Odd\"",
                "SELECT 1 UNION ALL SELECT * FROM app . t ; SELECT * FROM \"Odd\"",
            ),
            // Not the expected shape: left alone.
            ("SELECT 1", "-"),
            ("CREATE TABLE t (x int)", "-"),
            ("SELECT 'BETWEEN SYMMETRIC'", "-"),
            ("SELECT * FROM ROWS FROM (f(x) AS (a text DEFAULT nextval('s')))", "-"),
            ("SELECT a, rows FROM (SELECT 1 AS rows) s", "-"),
            ("WITH s AS (SELECT 1) SEARCH DEPTH FIRST BY f(x) SET o SELECT 1", "-"),
            ("SELECT sum(x) OVER (w EXCLUDE TIES) FROM t", "-"),
            ("TABLE FOR UPDATE", "-"),
        ] {
            assert_eq!(text(sql), want, "{sql}");
        }
    }
}
