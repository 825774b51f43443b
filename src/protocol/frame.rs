//! Frame splitting for tagged protocol messages (everything after startup).
//!
//! A message is `tag: u8, len: i32 (counting itself), body`. The splitter
//! looks at each header once. Bodies the caller needs (`want_body`) are handed
//! over whole; the rest are skipped over as they stream past, so a 500 MB
//! CopyData or DataRow never sits in our memory in one piece.

/// Size of tag plus length field.
pub const HEADER_LEN: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is below 4, which no valid message has.
    #[error("invalid message length {len} for message type '{}'", char::from(*tag))]
    BadLength { tag: u8, len: i64 },
    /// The declared length is over the configured cap for this kind.
    #[error("message type '{}' with a body of {len} bytes exceeds max_message_bytes ({max})", char::from(*tag))]
    TooLarge { tag: u8, len: usize, max: usize },
}

/// One step of the walk over a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A whole message the caller asked to see.
    Whole { tag: u8, body: &'a [u8] },
    /// The header of a message whose body will be skipped as it arrives.
    Header { tag: u8, body_len: usize },
    /// Bytes of a skipped body.
    Body,
}

/// Walks a byte stream message by message; carries the skip state across
/// reads.
#[derive(Debug, Clone)]
pub struct Splitter {
    skip: usize,
    max_body: usize,
}

impl Splitter {
    /// `max_body` caps every message body; checked on the header, before the
    /// body is read.
    pub fn new(max_body: usize) -> Self {
        Splitter { skip: 0, max_body }
    }

    /// True when the stream is at a message boundary.
    pub fn at_boundary(&self) -> bool {
        self.skip == 0
    }

    /// Next item in `buf` and how many bytes it consumed, or `Ok(None)` when
    /// more bytes are needed. Always inlined: it runs once per message, and
    /// as a call it cost the forwarder ~40 instructions per message each
    /// time a change elsewhere tipped the compiler's choice.
    #[inline(always)]
    pub fn next<'a>(
        &mut self,
        buf: &'a [u8],
        want_body: impl Fn(u8) -> bool,
    ) -> Result<Option<(Item<'a>, usize)>, FrameError> {
        if self.skip > 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            let n = self.skip.min(buf.len());
            self.skip -= n;
            return Ok(Some((Item::Body, n)));
        }
        let Some((tag, body_len)) = peek_header(buf)? else {
            return Ok(None);
        };
        if body_len > self.max_body {
            return Err(FrameError::TooLarge {
                tag,
                len: body_len,
                max: self.max_body,
            });
        }
        if want_body(tag) {
            let total = HEADER_LEN + body_len;
            if buf.len() < total {
                return Ok(None);
            }
            return Ok(Some((
                Item::Whole {
                    tag,
                    body: &buf[HEADER_LEN..total],
                },
                total,
            )));
        }
        self.skip = body_len;
        Ok(Some((Item::Header { tag, body_len }, HEADER_LEN)))
    }
}

/// Tag and body length of the message at the start of `buf`, if the header is
/// complete.
pub fn peek_header(buf: &[u8]) -> Result<Option<(u8, usize)>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength {
            tag,
            len: len.into(),
        });
    }
    Ok(Some((tag, len as usize - 4)))
}

/// Splits a buffer that holds only whole messages (a login reply, a reset
/// reply) into (tag, body) pairs. Stops at the first incomplete message.
pub fn whole_messages(buf: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let (tag, body_len) = peek_header(&buf[pos..]).ok()??;
        let end = pos + HEADER_LEN + body_len;
        if end > buf.len() {
            return None;
        }
        let body = &buf[pos + HEADER_LEN..end];
        pos = end;
        Some((tag, body))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn wanted_message_waits_until_whole() {
        let m = msg(b'Z', b"I");
        let mut s = Splitter::new(100);
        assert_eq!(s.next(&m[..5], |_| true).unwrap(), None);
        let (item, n) = s.next(&m, |_| true).unwrap().unwrap();
        assert_eq!(
            item,
            Item::Whole {
                tag: b'Z',
                body: b"I"
            }
        );
        assert_eq!(n, 6);
    }

    #[test]
    fn unwanted_body_is_skipped_across_reads() {
        let m = msg(b'D', &[7u8; 10]);
        let mut s = Splitter::new(100);
        let (item, n) = s.next(&m[..7], |_| false).unwrap().unwrap();
        assert_eq!(
            item,
            Item::Header {
                tag: b'D',
                body_len: 10
            }
        );
        assert_eq!(n, 5);
        assert!(!s.at_boundary());
        assert_eq!(s.next(&m[5..7], |_| false).unwrap(), Some((Item::Body, 2)));
        assert_eq!(s.next(&m[7..], |_| false).unwrap(), Some((Item::Body, 8)));
        assert!(s.at_boundary());
        assert_eq!(s.next(&[], |_| false).unwrap(), None);
    }

    #[test]
    fn oversized_is_rejected_on_header() {
        let mut header = vec![b'Q'];
        header.extend_from_slice(&(1_000_000i32).to_be_bytes());
        let err = Splitter::new(1000).next(&header, |_| true).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { tag: b'Q', .. }));
    }

    #[test]
    fn negative_or_short_length_is_an_error() {
        for len in [-1i32, 0, 3] {
            let mut m = vec![b'Q'];
            m.extend_from_slice(&len.to_be_bytes());
            assert!(matches!(
                Splitter::new(1000).next(&m, |_| true),
                Err(FrameError::BadLength { .. })
            ));
        }
    }

    #[test]
    fn whole_messages_stops_at_partial() {
        let mut buf = msg(b'S', b"a\0b\0");
        buf.extend(msg(b'Z', b"I"));
        buf.extend_from_slice(&msg(b'C', b"SELECT 1\0")[..4]);
        let tags: Vec<u8> = whole_messages(&buf).map(|(t, _)| t).collect();
        assert_eq!(tags, vec![b'S', b'Z']);
    }
}
