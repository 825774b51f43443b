//! Client authentication, server side of the exchange: SCRAM-SHA-256
//! ([`scram`]) and md5. Backend (pgswitch-as-client) auth lives in
//! `pool::conn`, using postgres-protocol.

pub mod lookup;
pub mod password;
pub mod scram;

pub use scram::ScramVerifier;

/// What logs in to a server as a user looked up with `auth_query`, whose
/// password pgswitch never sees: the keys its client proved (SCRAM), or its
/// md5 verifier.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerSecret {
    Scram(scram::ScramKeys),
    Md5 { hash: String },
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerSecret::Scram(k) => k.fmt(f),
            ServerSecret::Md5 { hash } => {
                // A digest of the hash: enough to tell two apart.
                let d = <sha2::Sha256 as sha2::Digest>::digest(hash.as_bytes());
                write!(f, "Md5({:02x}{:02x}{:02x}{:02x})", d[0], d[1], d[2], d[3])
            }
        }
    }
}

use md5::{Digest, Md5};

/// The answer a client must send to an md5 challenge: `"md5" ||
/// md5(hash || salt)`, where `hash` is `md5(password || user)` in hex.
pub fn md5_expected(hash_hex: &str, salt: [u8; 4]) -> String {
    let mut h = Md5::new();
    h.update(hash_hex.as_bytes());
    h.update(salt);
    let digest = h.finalize();
    let mut out = String::with_capacity(35);
    out.push_str("md5");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Constant-time comparison, so a wrong password takes as long as a right one.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_postgres_protocol() {
        let salt = [1, 2, 3, 4];
        let hash = postgres_protocol::password::md5(b"secret", "alice");
        let client = postgres_protocol::authentication::md5_hash(b"alice", b"secret", salt);
        assert_eq!(md5_expected(&hash[3..], salt), client);
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
