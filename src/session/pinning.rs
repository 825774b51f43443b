//! Session state that cannot follow a client from one server connection to
//! the next in transaction and statement modes: `LISTEN`, temporary
//! tables, session-level advisory locks and `WITH HOLD` cursors. A client
//! that creates any of them is pinned to its server connection for the
//! rest of its session (as in session mode), and that connection is wiped
//! with `DISCARD ALL` when the client leaves. Detection is by text, cheap
//! enough for every statement; a false positive only costs pooling for that
//! one client.

/// The feature in `sql` that needs a pinned connection, if any.
pub fn pins(sql: &str) -> Option<&'static str> {
    for part in sql.split(';') {
        let mut words = part.split_ascii_whitespace();
        let first = words.next().unwrap_or_default();
        if first.eq_ignore_ascii_case("listen") {
            return Some("LISTEN");
        }
        if first.eq_ignore_ascii_case("declare") && contains_ci(part, "with hold") {
            return Some("a WITH HOLD cursor");
        }
        if first.eq_ignore_ascii_case("create") {
            let mut next = words.next().unwrap_or_default();
            if next.eq_ignore_ascii_case("global") || next.eq_ignore_ascii_case("local") {
                next = words.next().unwrap_or_default();
            }
            if next.eq_ignore_ascii_case("temp") || next.eq_ignore_ascii_case("temporary") {
                return Some("a temporary table");
            }
        }
    }
    // Session-level advisory locks (the _xact_ ones end with the
    // transaction). One pass for the common word first.
    if !contains_ci(sql, "advisory_") {
        return None;
    }
    for f in [
        "pg_advisory_lock(",
        "pg_advisory_lock_shared(",
        "pg_try_advisory_lock(",
        "pg_try_advisory_lock_shared(",
    ] {
        if contains_ci(sql, f) {
            return Some("a session advisory lock");
        }
    }
    None
}

/// ASCII case-insensitive substring search, without allocating.
fn contains_ci(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_that_pin() {
        assert_eq!(pins("LISTEN jobs"), Some("LISTEN"));
        assert_eq!(pins("select 1; listen jobs"), Some("LISTEN"));
        assert_eq!(
            pins("CREATE TEMP TABLE t (a int)"),
            Some("a temporary table")
        );
        assert_eq!(
            pins("create local temporary table t (a int)"),
            Some("a temporary table")
        );
        assert_eq!(
            pins("SELECT pg_advisory_lock(42)"),
            Some("a session advisory lock")
        );
        assert_eq!(
            pins("select PG_TRY_ADVISORY_LOCK(1)"),
            Some("a session advisory lock")
        );
        assert_eq!(
            pins("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
            Some("a WITH HOLD cursor")
        );
        assert_eq!(pins("SELECT pg_advisory_xact_lock(42)"), None);
        assert_eq!(pins("CREATE TABLE t (a int)"), None);
        assert_eq!(pins("DECLARE c CURSOR FOR SELECT 1"), None);
        assert_eq!(pins("SELECT 'listen'"), None);
        assert_eq!(pins("NOTIFY jobs"), None);
    }
}
