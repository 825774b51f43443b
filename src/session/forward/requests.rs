//! What a client's request says, for the per-query statistics.

use super::Link;

/// Notes a client request for the per-query statistics: a Query starts one
/// with its text (`text`, see `sqltext::Text::of_request`); a Parse remembers its text
/// until the Sync that runs it; a Sync or FunctionCall starts one. `now`
/// is the clock read for it, if the caller made one.
pub(super) fn track_request(
    stats: &crate::stats::QueryStats,
    link: &mut Link,
    tag: u8,
    text: Option<&str>,
    reason: &'static str,
    now: Option<std::time::Instant>,
) {
    use crate::stats::{Running, FUNCTION_CALL, PREPARED, TOO_LARGE};
    let key = match tag {
        b'P' => {
            link.parsed = Some(stats.begin(text.unwrap_or(TOO_LARGE), reason));
            return;
        }
        b'Q' => stats.begin(text.unwrap_or(TOO_LARGE), reason),
        b'S' => match link.parsed.take() {
            Some(k) => k,
            None => stats.begin(PREPARED, reason),
        },
        _ => stats.begin(FUNCTION_CALL, reason),
    };
    link.running.push(Running {
        key,
        start: now.unwrap_or_else(std::time::Instant::now),
        rows: 0,
        error: false,
    });
}
