//! The router (`router::route`, through `RouteCache` as the session calls
//! it) on arbitrary SQL text. Checked:
//! - the cache answers what the router answers, on a miss and on a hit;
//! - a route comes with a reason that allows it (nothing unparsed or
//!   writing goes anywhere but the primary);
//! - two texts with the same cache key (the fingerprint: literals as `?`)
//!   route alike, as `router/cache.rs` promises; the second text is the
//!   first with its digits changed, which changes numeric literals only.
//!   A pair where sqlparser rejects one text only is let through: then the
//!   difference is in a malformed literal (`0Ox` against `1Ox`: sqlparser
//!   reads `0x`, `0o` and `0b` as radix prefixes, the fingerprint reads any
//!   digit-led word as a number), the rest of the statement is the same
//!   (same key) and one that parses is what routes it, so whichever decision
//!   the cache keeps is a safe one.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pgswitch::router::{route, FunctionPolicy, Reason, Route, RouteCache};
use pgswitch::stats::fingerprint;

/// A catalog like the one in `router/tests.rs`.
fn policy() -> &'static FunctionPolicy {
    static POLICY: OnceLock<FunctionPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let mut p = FunctionPolicy::new(["reporting.safe_total".to_owned()]);
        p.load_catalog([
            ("public", "my_stable", 's'),
            ("public", "my_writer", 'v'),
            ("pg_catalog", "pg_database_size", 'v'),
            ("pg_catalog", "random", 'v'),
            ("pg_catalog", "pg_is_wal_replay_paused", 'v'),
            ("pg_catalog", "setseed", 'v'),
            ("public", "uuid_generate_v4", 'v'),
        ]);
        p.load_views([("public", "audited_v")]);
        p
    })
}

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let p = policy();
    let direct = route(&sql, p);
    let cache = RouteCache::new(4);
    assert_eq!(cache.route(&sql, p), direct, "cache miss differs");
    assert_eq!(cache.route(&sql, p), direct, "cache hit differs");
    let Ok(d) = direct else {
        return;
    };
    match (&d.reason, d.route) {
        (
            Reason::Unparsed
            | Reason::Write(_)
            | Reason::RowLock
            | Reason::WritableCte
            | Reason::SelectInto
            | Reason::Function(_)
            | Reason::View(_),
            r,
        ) => assert_eq!(r, Route::Primary, "{:?} for {sql:?}", d.reason),
        (Reason::Read | Reason::StandbyOnly(_), r) => assert_eq!(r, Route::Replica),
        _ => {}
    }
    let _ = d.reason.label();

    // Same fingerprint, same route.
    let other: String = sql
        .chars()
        .map(|c| match c {
            '0'..='8' => char::from(c as u8 + 1),
            '9' => '1',
            c => c,
        })
        .collect();
    // Texts that mention pgswitch are keyed by their exact text.
    let ours = sql.to_ascii_lowercase().contains("pgswitch");
    if !ours && other != sql && fingerprint::key(&other) == fingerprint::key(&sql) {
        let o = route(&other, p).expect("no hint error without a hint");
        if o.reason != Reason::Unparsed && d.reason != Reason::Unparsed {
            assert_eq!(
                o.route, d.route,
                "same cache key, different routes: {sql:?} ({d:?}) vs {other:?} ({o:?})"
            );
        }
    }
});
