//! Users the config does not list, looked up on a database's primary with
//! `auth_query` as `auth_user` (PgBouncer's auth_query). What comes back is
//! the role's stored verifier: pgswitch checks the client against it and
//! never needs the password (see `ServerSecret` for the server side).
//! Verifiers are kept for `auth_cache_ttl`; a login that fails against a
//! kept one forgets it, so the next login reads it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ScramVerifier;
use crate::config::{AuthLookup, ClientAuth, Database};

/// A role's `rolpassword`, as far as pgswitch can use it.
#[derive(Clone)]
pub enum Stored {
    Scram(ScramVerifier),
    /// `md5(password || user)` as hex, without the "md5" prefix.
    Md5(String),
}

impl Stored {
    /// `None` for a NULL password or one pgswitch cannot check (plain
    /// text), which logs nobody in.
    pub fn parse(rolpassword: &str) -> Option<Stored> {
        if let Some(v) = ScramVerifier::parse(rolpassword) {
            return Some(Stored::Scram(v));
        }
        let hash = rolpassword.strip_prefix("md5")?;
        (hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Stored::Md5(hash.to_ascii_lowercase()))
    }

    pub fn client_auth(&self) -> ClientAuth {
        match self {
            Stored::Scram(v) => ClientAuth::Scram(v.clone()),
            Stored::Md5(hash) => ClientAuth::Md5 { hash: hash.clone() },
        }
    }
}

/// What a lookup found, and whether it came from the cache.
pub struct Found {
    pub stored: Option<Stored>,
    pub cached: bool,
}

/// Kept verifiers by (database, user), with when they were read.
type Cache = HashMap<(String, String), (Option<Stored>, Instant)>;

/// Most verifiers kept; past it the cache starts afresh.
const CACHE_MAX: usize = 10_000;

#[derive(Default)]
pub struct Lookups {
    /// One connection per database, reused.
    clients: Mutex<HashMap<String, Arc<tokio_postgres::Client>>>,
    /// Held while a lookup connection is being opened.
    connecting: tokio::sync::Mutex<()>,
    cache: Mutex<Cache>,
}

impl Lookups {
    /// The stored verifier of `user` for database `db` (kept ones first).
    pub async fn find(
        &self,
        db: &Database,
        auth: &AuthLookup,
        user: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Found, String> {
        // Postgres names are at most 63 bytes: a longer one is no role
        // (and would make the query fail on its `name` parameter).
        if user.len() > 63 {
            return Ok(Found {
                stored: None,
                cached: false,
            });
        }
        let key = (db.name.clone(), user.to_owned());
        if let Some((stored, at)) = self.cache().get(&key) {
            if at.elapsed() < ttl {
                return Ok(Found {
                    stored: stored.clone(),
                    cached: true,
                });
            }
        }
        // A connection kept from an earlier lookup may have died: one retry
        // on a fresh one.
        let mut last = String::new();
        for _ in 0..2 {
            let client = self.client(db, auth, timeout).await?;
            let row = tokio::time::timeout(timeout, client.query_opt(&auth.query, &[&user])).await;
            match row {
                Ok(Ok(row)) => {
                    let shaped = row.map(|r| {
                        let name = r.try_get::<_, String>(0)?;
                        Ok::<_, tokio_postgres::Error>((name, r.try_get::<_, Option<String>>(1)?))
                    });
                    let password = match shaped {
                        None => None,
                        // A row about another role must not check this one.
                        Some(Ok((name, _))) if name != user => {
                            return Err(format!(
                                "auth_query returned role '{name}' when asked for another"
                            ))
                        }
                        Some(Ok((_, p))) => p,
                        Some(Err(e)) => {
                            return Err(format!(
                            "auth_query must return the name and the stored password as text: {e}"
                        ))
                        }
                    };
                    let stored = password.and_then(|p| Stored::parse(&p));
                    let mut cache = self.cache();
                    // Bounded: every name tried leaves an entry.
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(key, (stored.clone(), Instant::now()));
                    return Ok(Found {
                        stored,
                        cached: false,
                    });
                }
                // The server's answer (a wrong query, a name it refuses):
                // the connection is fine, and trying again would not help.
                Ok(Err(e)) if e.as_db_error().is_some() => {
                    return Err(crate::net::client::describe(&e))
                }
                Ok(Err(e)) => last = crate::net::client::describe(&e),
                Err(_) => last = format!("auth_query did not answer within {timeout:?}"),
            }
            self.clients_map().remove(&db.name);
        }
        Err(last)
    }

    /// Forgets every kept verifier and connection (RELOAD: auth_user, its
    /// password or the primary may have changed).
    pub fn clear(&self) {
        self.cache().clear();
        self.clients_map().clear();
    }

    /// Forgets a kept verifier (a login failed against it).
    pub fn forget(&self, db: &str, user: &str) {
        self.cache().remove(&(db.to_owned(), user.to_owned()));
    }

    async fn client(
        &self,
        db: &Database,
        auth: &AuthLookup,
        timeout: Duration,
    ) -> Result<Arc<tokio_postgres::Client>, String> {
        if let Some(c) = self.clients_map().get(&db.name).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        // One login at a time: a burst of new clients after a start or a
        // RELOAD waits for it rather than opening one connection each.
        let _one = self.connecting.lock().await;
        if let Some(c) = self.clients_map().get(&db.name).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let dbname = db.primary.dbname.clone().unwrap_or_else(|| db.name.clone());
        let login = (
            auth.user.as_str(),
            auth.password.as_deref(),
            dbname.as_str(),
        );
        let client = crate::net::client::connect(&db.primary, login, "pgswitch-auth", timeout)
            .await
            .map_err(|e| format!("auth_user '{}' could not log in: {e}", auth.user))?;
        let client = Arc::new(client);
        self.clients_map().insert(db.name.clone(), client.clone());
        Ok(client)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn clients_map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio_postgres::Client>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_passwords_pgswitch_can_use() {
        let scram = postgres_protocol::password::scram_sha_256(b"pw");
        assert!(matches!(Stored::parse(&scram), Some(Stored::Scram(_))));
        let md5 = postgres_protocol::password::md5(b"pw", "u");
        match Stored::parse(&md5) {
            Some(Stored::Md5(h)) => assert_eq!(format!("md5{h}"), md5),
            _ => panic!("md5 verifier not read"),
        }
        assert!(Stored::parse("plain text").is_none());
        assert!(Stored::parse("md5xyz").is_none());
    }
}
