//! The frame splitter (`protocol::frame`) on arbitrary bytes that arrive in
//! arbitrary chunks, as the session feeds it: every step consumes at least
//! one byte and no more than it was given, a whole message is exactly its
//! header's length, a skipped body is exactly its header's length, and with
//! every body wanted the walk finds the same messages as `whole_messages`.
//! The bodies it hands over go through the parsers of the messages
//! pgswitch reads (ErrorResponse, ParameterStatus, BackendKeyData,
//! DataRow).
//!
//! Input: 4 control bytes (size cap, which bodies are wanted, chunking
//! seed), then the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgswitch::protocol::frame::{peek_header, whole_messages, FrameError, Item, HEADER_LEN};
use pgswitch::protocol::messages;
use pgswitch::protocol::Splitter;

fuzz_target!(|data: &[u8]| {
    let Some((ctl, stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    // Small caps reach TooLarge; the last one is the session's default.
    let max_body = match ctl[0] % 4 {
        0 => usize::from(ctl[0] >> 2),
        1 => 1024,
        2 => 1 << 20,
        _ => 64 << 20,
    };
    let mode = ctl[1] % 4;
    let want = move |tag: u8| match mode {
        0 => true,
        1 => false,
        // What the session reads whole from clients, and from servers.
        2 => matches!(tag, b'Q' | b'P' | b'F' | b'B' | b'D' | b'C'),
        _ => matches!(tag, b'Z' | b'S' | b'E'),
    };
    let mut rng = u16::from_le_bytes([ctl[2], ctl[3]]) as u32 | 1;

    let mut split = Splitter::new(max_body);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut wholes: Vec<(u8, Vec<u8>)> = Vec::new();
    // Body bytes still owed to the last Header item.
    let mut owed = 0usize;
    let mut failed = false;
    'feed: while fed < stream.len() {
        // xorshift: chunks of 1..=16 bytes, now and then 1..=4096.
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let size = if rng % 8 == 0 {
            rng as usize % 4096
        } else {
            rng as usize % 16
        } + 1;
        let end = (fed + size).min(stream.len());
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        loop {
            let step = split.next(&buf, want);
            let (item, n) = match step {
                Ok(Some(s)) => s,
                Ok(None) => {
                    // Only when the buffer cannot hold the next item yet.
                    if owed > 0 {
                        assert!(buf.is_empty(), "body bytes at hand but none taken");
                    } else if let Ok(Some((tag, len))) = peek_header(&buf) {
                        assert!(
                            want(tag) && buf.len() < HEADER_LEN + len,
                            "stalled on {tag}"
                        );
                    } else {
                        assert!(buf.len() < HEADER_LEN);
                    }
                    continue 'feed;
                }
                Err(e) => {
                    assert_eq!(owed, 0, "error in the middle of a body");
                    let (tag, len) = (buf[0], i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]));
                    match e {
                        FrameError::BadLength { tag: t, len: l } => {
                            assert_eq!((t, l), (tag, i64::from(len)));
                            assert!(len < 4);
                        }
                        FrameError::TooLarge {
                            tag: t,
                            len: l,
                            max,
                        } => {
                            assert_eq!((t, l, max), (tag, len as usize - 4, max_body));
                            assert!(l > max);
                        }
                    }
                    let _ = e.to_string();
                    failed = true;
                    break 'feed;
                }
            };
            assert!(n > 0, "the splitter must always make progress");
            assert!(n <= buf.len(), "consumed {n} of {} bytes", buf.len());
            match item {
                Item::Whole { tag, body } => {
                    assert_eq!(owed, 0);
                    assert!(want(tag));
                    assert_eq!(n, HEADER_LEN + body.len());
                    assert_eq!(buf[0], tag);
                    assert!(body.len() <= max_body);
                    parse_body(tag, body);
                    wholes.push((tag, body.to_vec()));
                }
                Item::Header { tag, body_len } => {
                    assert_eq!(owed, 0);
                    assert!(!want(tag));
                    assert_eq!(n, HEADER_LEN);
                    assert_eq!(peek_header(&buf), Ok(Some((tag, body_len))));
                    assert!(body_len <= max_body);
                    owed = body_len;
                }
                Item::Body => {
                    assert!(n <= owed, "took {n} body bytes, {owed} owed");
                    owed -= n;
                }
            }
            assert_eq!(split.at_boundary(), owed == 0);
            buf.drain(..n);
        }
    }
    // With every body wanted and no cap in the way, the streaming walk and
    // the one over a whole buffer agree.
    if mode == 0 && !failed {
        let all: Vec<(u8, Vec<u8>)> = whole_messages(stream)
            .map(|(t, b)| (t, b.to_vec()))
            .collect();
        assert_eq!(wholes, all);
    }
});

/// The parsers for the few messages pgswitch reads, on any body.
fn parse_body(tag: u8, body: &[u8]) {
    match tag {
        b'E' | b'N' => {
            let e = messages::BackendError::parse(body);
            let _ = e.to_string();
            let n = messages::error_fields(body).count();
            assert!(n <= body.len());
        }
        b'S' => {
            if let Some((name, value)) = messages::parse_parameter_status(body) {
                assert!(name.len() + value.len() < body.len());
            }
        }
        b'K' => {
            let _ = messages::parse_backend_key_data(body);
        }
        b'D' => {
            let row = messages::parse_data_row(body);
            assert!(row.len() <= i16::MAX as usize);
        }
        _ => {}
    }
}
