//! The startup packet parser (`protocol::startup::parse`) on arbitrary
//! bytes, fed whole and in growing prefixes as reads would deliver them:
//! "need more" consumes nothing, a packet consumes exactly its length
//! (within `MAX_STARTUP_LEN`), the answer does not depend on how the bytes
//! arrived, and what it returns is well formed. Packets are parsed one after
//! another (an SSLRequest, then the StartupMessage).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgswitch::protocol::startup::{parse, StartupError, StartupPacket, MAX_STARTUP_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let whole = packets(stream);
    // The same bytes in reads of `step` bytes.
    let step = usize::from(step % 32) + 1;
    let mut buf = BytesMut::new();
    let mut streamed = Vec::new();
    let mut fed = 0;
    while fed < stream.len() {
        let end = (fed + step).min(stream.len());
        buf.extend_from_slice(&stream[fed..end]);
        fed = end;
        match drain(&mut buf, &mut streamed) {
            Ok(()) => {}
            Err(e) => {
                streamed.push(Err(e));
                break;
            }
        }
    }
    assert_eq!(whole, streamed, "the chunking changed the answer");
});

type Parsed = Result<StartupPacket, StartupError>;

/// Every packet at the start of `stream`, up to the first error.
fn packets(stream: &[u8]) -> Vec<Parsed> {
    let mut buf = BytesMut::from(stream);
    let mut out = Vec::new();
    if let Err(e) = drain(&mut buf, &mut out) {
        out.push(Err(e));
    }
    out
}

/// Parses packets off the front of `buf` until more bytes are needed.
fn drain(buf: &mut BytesMut, out: &mut Vec<Parsed>) -> Result<(), StartupError> {
    loop {
        let before = buf.clone();
        match parse(buf)? {
            None => {
                assert_eq!(*buf, before, "\"need more\" consumed bytes");
                assert!(before.len() < MAX_STARTUP_LEN);
                return Ok(());
            }
            Some(p) => {
                let used = before.len() - buf.len();
                let declared = i32::from_be_bytes([before[0], before[1], before[2], before[3]]);
                assert_eq!(used as i64, i64::from(declared));
                assert!((8..=MAX_STARTUP_LEN).contains(&used));
                check(&p);
                out.push(Ok(p));
            }
        }
    }
}

fn check(p: &StartupPacket) {
    match p {
        StartupPacket::CancelRequest { secret, .. } => {
            assert!(
                (4..=256).contains(&secret.len()),
                "key of {} bytes",
                secret.len()
            );
        }
        StartupPacket::Startup(m) => {
            for (name, value) in &m.params {
                assert!(!name.is_empty());
                assert!(!name.contains('\0') && !value.contains('\0'));
                assert!(m.param(name).is_some());
            }
        }
        StartupPacket::SslRequest | StartupPacket::GssEncRequest => {}
    }
}
