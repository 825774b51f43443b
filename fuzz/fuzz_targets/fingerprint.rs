//! The fingerprint scanner (`stats::fingerprint`) on arbitrary text.
//! Checked:
//! - `key` is the key of `text` (one scanner feeds both, so "the two
//!   always agree");
//! - `text(sql, max)` is at most `max + 3` bytes: the whole text, or a
//!   prefix cut on a char boundary within 3 bytes of `max`, then `...`;
//! - whitespace and comments before a statement change nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgswitch::stats::fingerprint::{key, key_of_text, text};

fuzz_target!(|data: &[u8]| {
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let sql = String::from_utf8_lossy(rest);
    let k = key(&sql);
    let full = text(&sql, usize::MAX);
    assert_eq!(k, key_of_text(&full), "key and text disagree for {sql:?}: {full:?}");

    let max = usize::from(max);
    let cut = text(&sql, max);
    assert!(cut.len() <= max + 3, "{} bytes for max {max}", cut.len());
    if full.len() <= max {
        assert_eq!(cut, full);
    } else {
        let kept = cut.strip_suffix("...").expect("a cut text ends in ...");
        assert!(full.starts_with(kept));
        assert!(kept.len() <= max && kept.len() + 4 > max);
    }

    assert_eq!(key(&format!(" \n\t{sql}")), k, "leading whitespace");
    assert_eq!(key(&format!("/* c */ {sql}")), k, "leading comment");
    assert_eq!(key(&format!("-- c\n{sql}")), k, "leading line comment");
});
