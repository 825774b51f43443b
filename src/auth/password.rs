//! Clear-text passwords, as the serverless front receives them (in an HTTP
//! request's connection string, or in a WebSocket client's
//! PasswordMessage), checked against a user's client authentication.
//!
//! A SCRAM verifier costs its PBKDF2 rounds (4096 by default) per check,
//! which a stateless HTTP request cannot afford every time: a password that
//! passed is remembered, as a keyed hash together with the ClientKey it
//! yielded, for `auth_cache_ttl`. A changed verifier (RELOAD, or a new
//! `auth_query` answer) changes the key, so it never matches an old entry.
//! Failures are not remembered. The rounds run off the runtime's workers,
//! so that other clients are not held up by them, and at most one check
//! per CPU runs at once: a flood of wrong passwords queues instead of
//! taking every core.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::{ct_eq, ScramVerifier};
use crate::config::ClientAuth;

/// Most passwords remembered; past it the cache starts afresh.
const CACHE_MAX: usize = 10_000;

/// Most PBKDF2 rounds checked for a clear-text password (Postgres's
/// default is 4096).
const MAX_ROUNDS: u32 = 100_000;

/// Why a password was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused;

pub struct Passwords {
    /// Keys the cache's hashes, drawn once per process.
    secret: [u8; 32],
    /// Keyed hash of (user, password, verifier) -> the ClientKey it proved
    /// (SCRAM roles), and when it passed.
    passed: Mutex<Passed>,
    /// One full check per CPU at a time (a permit lives as long as its
    /// check, also when the login that asked gave up).
    rounds: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Keyed hash -> (ClientKey, when it passed).
type Passed = HashMap<[u8; 32], (Option<[u8; 32]>, Instant)>;

impl Default for Passwords {
    fn default() -> Self {
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Passwords {
            secret,
            passed: Mutex::default(),
            rounds: std::sync::Arc::new(tokio::sync::Semaphore::new(cpus)),
        }
    }
}

impl Passwords {
    /// Checks `password` for `user` (`auth` is `None` for a user nobody
    /// knows: the check then takes as long as a real one, and fails).
    /// Returns the ClientKey of a SCRAM role, for pgswitch's own login to
    /// the server as a user looked up with `auth_query`.
    pub async fn check(
        &self,
        auth: Option<&ClientAuth>,
        user: &str,
        password: &str,
        ttl: Duration,
    ) -> Result<Option<[u8; 32]>, Refused> {
        let verifier = match auth {
            Some(ClientAuth::Trust) => return Ok(None),
            Some(ClientAuth::Md5 { hash }) => {
                let mut h = <md5::Md5 as md5::Digest>::new();
                md5::Digest::update(&mut h, password.as_bytes());
                md5::Digest::update(&mut h, user.as_bytes());
                let given = hex(&md5::Digest::finalize(h));
                return match ct_eq(given.as_bytes(), hash.as_bytes()) {
                    true => Ok(None),
                    false => Err(Refused),
                };
            }
            Some(ClientAuth::Scram(v)) => v.clone(),
            None => ScramVerifier::dummy(user),
        };
        let key = self.key(user, password, &verifier);
        if auth.is_some() {
            if let Some(client_key) = self.remembered(&key, ttl) {
                return Ok(client_key);
            }
        }
        // A verifier stored with more rounds than anyone uses would make
        // every wrong password cost that much here (a client pays them
        // itself over TCP).
        if verifier.iterations > MAX_ROUNDS {
            return Err(Refused);
        }
        let password = password.to_owned();
        let Ok(turn) = self.rounds.clone().acquire_owned().await else {
            return Err(Refused);
        };
        let proved = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            verifier.check_password(&password)
        })
        .await
        .ok()
        .flatten();
        match (auth, proved) {
            (Some(_), Some(client_key)) => {
                let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
                if passed.len() >= CACHE_MAX {
                    passed.clear();
                }
                passed.insert(key, (Some(client_key), Instant::now()));
                Ok(Some(client_key))
            }
            _ => Err(Refused),
        }
    }

    /// Forgets every password (RELOAD).
    pub fn clear(&self) {
        self.passed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn remembered(&self, key: &[u8; 32], ttl: Duration) -> Option<Option<[u8; 32]>> {
        let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        match passed.get(key) {
            Some((client_key, at)) if at.elapsed() < ttl => Some(*client_key),
            Some(_) => {
                passed.remove(key);
                None
            }
            None => None,
        }
    }

    fn key(&self, user: &str, password: &str, v: &ScramVerifier) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return [0u8; 32];
        };
        for part in [user.as_bytes(), password.as_bytes(), &v.salt, &v.stored_key] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&v.iterations.to_be_bytes());
        mac.finalize().into_bytes().into()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn scram_md5_trust_and_unknown_users() {
        let p = Passwords::default();
        let scram = ClientAuth::Scram(ScramVerifier::from_password("pw"));
        assert!(matches!(
            p.check(Some(&scram), "u", "pw", TTL).await,
            Ok(Some(_))
        ));
        // Remembered: the same answer from the cache.
        assert!(matches!(
            p.check(Some(&scram), "u", "pw", TTL).await,
            Ok(Some(_))
        ));
        assert_eq!(p.check(Some(&scram), "u", "pw2", TTL).await, Err(Refused));
        let md5 = ClientAuth::Md5 {
            hash: hex(&<md5::Md5 as md5::Digest>::digest(b"pwu")),
        };
        assert_eq!(p.check(Some(&md5), "u", "pw", TTL).await, Ok(None));
        assert_eq!(p.check(Some(&md5), "u", "px", TTL).await, Err(Refused));
        assert_eq!(
            p.check(Some(&ClientAuth::Trust), "u", "", TTL).await,
            Ok(None)
        );
        assert_eq!(p.check(None, "nobody", "pw", TTL).await, Err(Refused));
        let mut heavy = ScramVerifier::from_password("pw");
        heavy.iterations = MAX_ROUNDS + 1;
        let heavy = ClientAuth::Scram(heavy);
        assert_eq!(
            p.check(Some(&heavy), "u", "pw", TTL).await,
            Err(Refused),
            "too many rounds to check"
        );
    }

    #[tokio::test]
    async fn a_new_verifier_does_not_match_a_remembered_password() {
        let p = Passwords::default();
        let old = ClientAuth::Scram(ScramVerifier::from_password("pw"));
        assert!(p.check(Some(&old), "u", "pw", TTL).await.is_ok());
        let new = ClientAuth::Scram(ScramVerifier::from_password("other"));
        assert_eq!(p.check(Some(&new), "u", "pw", TTL).await, Err(Refused));
        // Expired: checked again (and still right).
        assert!(p.check(Some(&old), "u", "pw", Duration::ZERO).await.is_ok());
    }
}
