//! What a client's request says, for the per-query statistics.

use super::Link;

/// The statement text of a Query (`sql\0`) or Parse (`name\0 sql\0 ...`)
/// body, when the whole body is at hand.
pub(super) fn request_text(tag: u8, body: Option<&[u8]>) -> Option<&str> {
    let b = body?;
    let b = match tag {
        b'P' => &b[b.iter().position(|&c| c == 0)? + 1..],
        b'Q' => b,
        _ => return None,
    };
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    std::str::from_utf8(&b[..end]).ok()
}

/// Notes a client request for the per-query statistics: a Query starts one
/// with its text (`text`, see `request_text`); a Parse remembers its text
/// until the Sync that runs it; a Sync or FunctionCall starts one.
pub(super) fn track_request(
    stats: &crate::stats::QueryStats,
    link: &mut Link,
    tag: u8,
    text: Option<&str>,
    reason: &'static str,
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
        start: std::time::Instant::now(),
        rows: 0,
        error: false,
    });
}
