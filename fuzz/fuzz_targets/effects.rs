//! The session-state rules (`session::effects::effects`, over the session
//! lexer) on arbitrary text. Checked, as issue 10 asks of the detection:
//! - comments and whitespace before a statement change nothing;
//! - a statement after another one is seen as if alone (every statement of
//!   a multi-statement Query is looked at);
//! - the text of a named prepared statement pins whenever the same text
//!   would pin or change settings as a Query;
//! - the pre-scan for trigger words never hides an effect: the result is
//!   the same as lexing every text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgswitch::session::effects::{effects, lexed};

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let fx = effects(&sql, false);
    assert_eq!(lexed(&sql, false), fx, "the pre-scan hid an effect of {sql:?}");
    for prefixed in [
        format!("/* a comment */ {sql}"),
        format!("-- a comment\n{sql}"),
        format!(" \r\n\t{sql}"),
        format!("SELECT 1;{sql}"),
    ] {
        assert_eq!(effects(&prefixed, false), fx, "{prefixed:?} vs {sql:?}");
    }
    let named = effects(&sql, true);
    if fx.pin.is_some() || fx.change.is_some() {
        assert!(named.pin.is_some(), "named statement {sql:?} does not pin");
    }
    assert_eq!(named.change, fx.change);
});
