//! What a client's statement text does to its server session, in
//! transaction and statement modes, where the next transaction may run on
//! another server connection and this one serves other clients:
//!
//! - **Settings that can follow the client** (`SET`, `RESET`, `DISCARD ALL`,
//!   `set_config(name, value, false)` with a constant name) are a
//!   [`Change`]: read back at the end of the turn, applied again on the next
//!   connection, and reset before anyone else gets this one (`settings`).
//! - **State that cannot follow it** pins the client to its server
//!   connection for the rest of its session (as in session mode), and that
//!   connection is wiped with `DISCARD ALL` when the client leaves:
//!   `LISTEN`, temporary tables and other objects (`CREATE TEMP ...`,
//!   `SELECT ... INTO TEMP`, anything in `pg_temp`), session advisory locks,
//!   `WITH HOLD` cursors, `SET ROLE` and `SET SESSION AUTHORIZATION` (which
//!   `RESET ALL` leaves alone), `LOAD`, `set_config` with a name or scope
//!   known only at run time, a prepared statement that changes settings when
//!   executed later, a `DO` block that may do any of these, and turning
//!   `standard_conforming_strings` off (which would change how this very
//!   lexer must read later texts).
//!
//! Every statement of a multi-statement text is looked at, through comments
//! and whitespace, in any case. When in doubt the rule pins: a false
//! positive only costs pooling for that one client; a miss would show one
//! client's session to another.

use super::lexer::{Lexer, Statement, Token};
use super::settings::Change;
use crate::sqltext::Text;

/// What a statement text does to the session.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Settings to read back (and carry) at the end of the turn.
    pub change: Option<Change>,
    /// The feature that needs the client pinned, for the log and for a
    /// refusal message.
    pub pin: Option<&'static str>,
}

impl Effects {
    fn pin(&mut self, feature: &'static str) {
        self.pin.get_or_insert(feature);
    }

    fn change(&mut self, names: &[&str], reset_all: bool) {
        let change = Change {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            reset_all,
        };
        self.change
            .get_or_insert_with(Change::default)
            .merge(change);
    }
}

/// What `sql` does to the session. `named` is set for the text of a named
/// prepared statement (a Parse with a name): it runs again later, in turns
/// where no text passes by, so settings it changes cannot be tracked.
pub fn effects(sql: &str, named: bool) -> Effects {
    effects_of(Text::new(sql), named)
}

/// `effects` of a text already scanned for its words: one without any of
/// `sqltext::SESSION_TRIGGERS` (most statements) skips the lexer.
pub fn effects_of(text: Text<'_>, named: bool) -> Effects {
    if !text.words.session {
        return Effects::default();
    }
    lexed(text.sql, named)
}

/// `effects` without the pre-scan for trigger words: every statement
/// lexed. Public for the fuzz target, which checks that the two agree.
pub fn lexed(sql: &str, named: bool) -> Effects {
    let mut fx = Effects::default();
    let mut lexer = Lexer::new(sql);
    while let Some(st) = lexer.starting() {
        lexer = statement(st, &mut fx);
    }
    if named && fx.change.is_some() {
        fx.pin("a prepared statement that changes settings");
    }
    fx
}

/// One statement's effects; returns the text after it.
fn statement<'a>(st: Statement<'a>, fx: &mut Effects) -> Lexer<'a> {
    let mut words = st.clone();
    let Some(Token::Word(first)) = words.next() else {
        // `(SELECT ...)` and the like: only the calls matter.
        return calls(st, fx);
    };
    let is = |k: &str| first.eq_ignore_ascii_case(k);
    if is("prepare") {
        // `PREPARE p AS ...`: what the statement does happens at each
        // EXECUTE, in later turns.
        let mut inner = Effects::default();
        let rest = calls(words, &mut inner);
        if inner.change.is_some() {
            fx.pin("a prepared statement that changes settings");
        }
        if let Some(p) = inner.pin {
            fx.pin(p);
        }
        return rest;
    }
    if is("do") {
        // A DO block's body is PL/pgSQL (or another language): any word
        // that may touch the session pins.
        let touches = |t: Token<'_>| matches!(t, Token::Str(body) if body_may_touch_session(body));
        if words.any(touches) {
            fx.pin("a DO block that may change session state");
        }
        return words.finish();
    }
    if is("listen") {
        fx.pin("LISTEN");
    } else if is("load") {
        fx.pin("LOAD");
    } else if is("set") {
        set(words, fx);
    } else if is("reset") {
        reset(words, fx);
    } else if is("discard") {
        if words.next().is_some_and(|t| t.is("all")) {
            fx.change(&[], true);
        }
    } else if is("declare") {
        let mut prev = Token::End;
        for t in words {
            if prev.is("with") && t.is("hold") {
                fx.pin("a WITH HOLD cursor");
            }
            prev = t;
        }
    } else if is("create") {
        create(words, fx);
    } else if is("explain") {
        explained(words, fx);
    }
    calls(st, fx)
}

/// `EXPLAIN [ ( options ) ] [ ANALYZE ] [ VERBOSE ] statement`: with
/// ANALYZE the statement runs, and `CREATE [TEMP] TABLE ... AS` is one it
/// may run. (Without ANALYZE nothing is created; pinning then costs only
/// pooling.)
fn explained(mut words: Statement<'_>, fx: &mut Effects) {
    loop {
        let mut ahead = words.clone();
        match ahead.next() {
            Some(Token::Punct(b'(')) => {
                let mut depth = 0usize;
                for t in words.by_ref() {
                    match t {
                        Token::Punct(b'(') => depth += 1,
                        Token::Punct(b')') if depth <= 1 => break,
                        Token::Punct(b')') => depth -= 1,
                        _ => {}
                    }
                }
            }
            Some(t) if t.is("analyze") || t.is("analyse") || t.is("verbose") => {
                words = ahead;
            }
            Some(t) if t.is("create") => return create(ahead, fx),
            _ => return,
        }
    }
}

/// `SET ...` after the `SET`.
fn set(mut words: Statement<'_>, fx: &mut Effects) {
    let mut w = match words.next() {
        Some(Token::Word(w) | Token::Quoted(w)) => w.to_ascii_lowercase(),
        _ => return,
    };
    if w == "local" {
        return; // Ends with the transaction.
    }
    if w == "session" {
        match words.next() {
            Some(t) if t.is("authorization") => return fx.pin("SET SESSION AUTHORIZATION"),
            Some(t) if t.is("characteristics") => {
                return fx.change(
                    &[
                        "default_transaction_isolation",
                        "default_transaction_read_only",
                        "default_transaction_deferrable",
                    ],
                    false,
                )
            }
            Some(Token::Word(next) | Token::Quoted(next)) => w = next.to_ascii_lowercase(),
            _ => return,
        }
    }
    match w.as_str() {
        "role" => fx.pin("SET ROLE"),
        "transaction" | "constraints" => {} // This transaction only.
        "time" => fx.change(&["timezone"], false),
        "names" => fx.change(&["client_encoding"], false),
        "schema" => fx.change(&["search_path"], false),
        "xml" => fx.change(&["xmloption"], false),
        _ => {
            let name = dotted_name(&w, &mut words);
            if name == "pgswitch.route" {
                return; // pgswitch's own, see `routing`.
            }
            if name == "standard_conforming_strings" {
                return fx.pin("standard_conforming_strings");
            }
            fx.change(&[name.as_str()], false);
        }
    }
}

/// `RESET ...` after the `RESET`.
fn reset(mut words: Statement<'_>, fx: &mut Effects) {
    let w = match words.next() {
        Some(Token::Word(w) | Token::Quoted(w)) => w.to_ascii_lowercase(),
        _ => return,
    };
    match w.as_str() {
        "all" => fx.change(&[], true),
        // Only undo what pinned the client already.
        "role" | "session" => {}
        "time" => fx.change(&["timezone"], false),
        _ => {
            let name = dotted_name(&w, &mut words);
            fx.change(&[name.as_str()], false);
        }
    }
}

/// A setting name that may be `prefix.name`.
fn dotted_name(first: &str, words: &mut Statement<'_>) -> String {
    let mut name = first.to_owned();
    let mut rest = words.clone();
    while rest.next() == Some(Token::Punct(b'.')) {
        match rest.next() {
            Some(Token::Word(w) | Token::Quoted(w)) => {
                name.push('.');
                name.push_str(&w.to_ascii_lowercase());
                *words = rest.clone();
            }
            _ => break,
        }
    }
    name
}

/// `CREATE ...` after the `CREATE`.
fn create(words: Statement<'_>, fx: &mut Effects) {
    let mut head = words.clone();
    let mut next = head.next();
    if next.is_some_and(|t| t.is("or")) {
        head.next(); // REPLACE
        next = head.next();
    }
    if next.is_some_and(|t| t.is("global") || t.is("local")) {
        next = head.next();
    }
    if next.is_some_and(|t| t.is("temp") || t.is("temporary")) {
        let what = match head.find(|t| !t.is("unlogged") && !t.is("recursive")) {
            Some(t) if t.is("view") => "a temporary view",
            Some(t) if t.is("sequence") => "a temporary sequence",
            _ => "a temporary table",
        };
        return fx.pin(what);
    }
    // Any object made in the session's own temporary schema.
    if words.clone().any(|t| t.is("pg_temp")) {
        fx.pin("a temporary object");
    }
}

/// Anywhere in a statement: function calls that change the session, and
/// `SELECT ... INTO TEMP`. Returns the text after the statement.
fn calls<'a>(st: Statement<'a>, fx: &mut Effects) -> Lexer<'a> {
    let first = st.clone().next();
    let dml = first.is_some_and(|t| t.is("insert") || t.is("merge"));
    let mut tokens = st;
    // The two tokens before this one, for `U&"..."`.
    let mut before = [Token::End, Token::End];
    while let Some(t) = tokens.next() {
        let escaped =
            matches!(before, [Token::Word(u), Token::Punct(b'&')] if u.eq_ignore_ascii_case("u"));
        before = [before[1], t];
        // A quoted name calls the same function (`"set_config"(...)`).
        let (w, quoted) = match t {
            Token::Word(w) => (w, false),
            Token::Quoted(w) => (w, true),
            _ => continue,
        };
        // Looked ahead only for a name that matters.
        let called = || tokens.clone().next() == Some(Token::Punct(b'('));
        let uescape = || tokens.clone().next().is_some_and(|t| t.is("uescape"));
        if quoted && escaped && (called() || uescape()) {
            // `U&"\0073et_config"(...)`: the name is not what it reads.
            fx.pin("a function called by a Unicode-escaped name");
        } else if w.eq_ignore_ascii_case("set_config") && called() {
            set_config(tokens.clone(), fx);
        } else if w.eq_ignore_ascii_case("setseed") && called() {
            fx.pin("setseed");
        } else if w.len() >= 16 && is_session_lock(w) && called() {
            fx.pin("a session advisory lock");
        } else if !quoted && w.eq_ignore_ascii_case("into") && !dml && into_temp(tokens.clone()) {
            fx.pin("a temporary table");
        }
    }
    tokens.finish()
}

fn is_session_lock(w: &str) -> bool {
    [
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
    ]
    .iter()
    .any(|f| w.eq_ignore_ascii_case(f))
}

/// After `INTO`: `[LOCAL|GLOBAL] TEMP|TEMPORARY [UNLOGGED] [TABLE] name`.
/// (`INSERT INTO temp VALUES ...` names a table called temp.)
fn into_temp(mut t: Statement<'_>) -> bool {
    let mut next = t.next();
    if next.is_some_and(|w| w.is("local") || w.is("global")) {
        next = t.next();
    }
    if !next.is_some_and(|w| w.is("temp") || w.is("temporary")) {
        return false;
    }
    match t.next() {
        Some(Token::Quoted(_)) => true,
        Some(w @ Token::Word(_)) => !["values", "select", "default", "as", "overriding", "using"]
            .iter()
            .any(|k| w.is(k)),
        _ => false,
    }
}

/// `set_config(name, value, is_local)` after the name: tracked when the
/// name is a constant and the scope is session (a constant false); pins
/// when either is known only at run time.
fn set_config(mut t: Statement<'_>, fx: &mut Effects) {
    t.next(); // (
    let mut args: [Vec<Token<'_>>; 3] = Default::default();
    let (mut arg, mut depth) = (0, 0usize);
    for tok in t {
        match tok {
            Token::Punct(b'(' | b'[') => depth += 1,
            Token::Punct(b')' | b']') if depth == 0 => break,
            Token::Punct(b')' | b']') => depth -= 1,
            Token::Punct(b',') if depth == 0 => {
                arg += 1;
                continue;
            }
            _ => {}
        }
        if let Some(a) = args.get_mut(arg) {
            a.push(tok);
        }
    }
    let scope = match args[2].as_slice() {
        [Token::Word(w) | Token::Str(w)] => boolean(w),
        _ => None,
    };
    match (args[0].as_slice(), scope) {
        (_, Some(true)) => {} // is_local: ends with the transaction.
        ([Token::Str(name)], Some(false)) if !name.contains('\'') => {
            let name = name.to_ascii_lowercase();
            if name == "standard_conforming_strings" {
                fx.pin("standard_conforming_strings");
            } else if name == "role" || name == "session_authorization" {
                fx.pin("SET ROLE");
            } else if name != "pgswitch.route" {
                fx.change(&[name.as_str()], false);
            }
        }
        _ => fx.pin("set_config with a name or scope known only when it runs"),
    }
}

/// A boolean constant as Postgres reads one.
fn boolean(w: &str) -> Option<bool> {
    let w = w.to_ascii_lowercase();
    match w.as_str() {
        "true" | "t" | "on" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "off" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Whether a `DO` body mentions anything that may change the session.
/// Words inside its own string literals hide behind `EXECUTE`, which pins.
fn body_may_touch_session(body: &str) -> bool {
    const WORDS: [&str; 12] = [
        "set",
        "reset",
        "discard",
        "listen",
        "load",
        "temp",
        "temporary",
        "pg_temp",
        "set_config",
        "hold",
        "execute",
        "prepare",
    ];
    Lexer::new(body).any(|t| match t {
        Token::Word(w) => WORDS.iter().any(|k| w.eq_ignore_ascii_case(k)) || is_session_lock(w),
        _ => false,
    })
}

#[cfg(test)]
mod tests;
