//! Sans-IO wire layer: frame splitting, startup packets, and lazy views of the
//! few messages pgswitch inspects. Nothing here touches a socket, so every rule
//! is unit-tested on byte slices.
//!
//! - [`frame`]: walks a stream of tagged messages, forwarding bodies it does not
//!   need without copying them, and enforcing per-message size caps from the
//!   header alone.
//! - [`startup`]: the untagged first packet (StartupMessage, SSLRequest,
//!   GSSENCRequest, CancelRequest).
//! - [`messages`]: builders for the backend messages pgswitch writes itself
//!   (errors, auth, ParameterStatus) and parsers for the ones it reads.

pub mod frame;
pub mod io;
pub mod messages;
pub mod startup;

pub use frame::{FrameError, Item, Splitter};

#[cfg(test)]
mod garbage_tests {
    //! Hostile input never panics or loops: random bytes (fixed seed, so a
    //! failure reproduces) through every parser that sees peer data.
    use bytes::BytesMut;
    use rand::{Rng, SeedableRng};

    use super::{frame, messages, startup, Splitter};

    fn inputs() -> impl Iterator<Item = Vec<u8>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        (0..20_000).map(move |i| {
            let len = rng.gen_range(0..64);
            let mut v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Half the cases start with a plausible length, to get past the
            // first check.
            if i % 2 == 0 && v.len() >= 4 {
                let n = (v.len() as i32).to_be_bytes();
                v[..4].copy_from_slice(&n);
            }
            v
        })
    }

    #[test]
    fn parsers_survive_random_bytes() {
        for input in inputs() {
            let _ = startup::parse(&mut BytesMut::from(&input[..]));
            let _ = messages::BackendError::parse(&input);
            let _ = messages::parse_parameter_status(&input);
            let _ = messages::parse_backend_key_data(&input);
            let _ = frame::whole_messages(&input).count();
            let mut split = Splitter::new(1 << 20);
            let mut pos = 0;
            while let Ok(Some((_, n))) = split.next(&input[pos..], |t| t == b'Z') {
                assert!(n > 0, "the splitter must always make progress");
                pos += n;
            }
            assert!(pos <= input.len());
        }
    }
}
