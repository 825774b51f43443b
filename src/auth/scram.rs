//! SCRAM-SHA-256 (RFC 5802/7677) as a Postgres server runs it, with
//! SCRAM-SHA-256-PLUS (channel binding `tls-server-end-point`, RFC 5929)
//! for TLS clients. The verifier's keys are derived once at config load, so
//! a login costs two HMACs and a hash rather than 4096 PBKDF2 rounds.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl ScramVerifier {
    /// Parses the format Postgres stores in `pg_authid.rolpassword`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iter, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(ScramVerifier {
            iterations: iter.parse().ok().filter(|&i| i > 0)?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?.try_into().ok()?,
            server_key: B64.decode(server).ok()?.try_into().ok()?,
        })
    }

    /// Derives a verifier from a plain password (random salt, 4096 rounds),
    /// with the same SASLprep normalisation Postgres applies.
    pub fn from_password(password: &str) -> Self {
        let encoded = postgres_protocol::password::scram_sha_256(password.as_bytes());
        // postgres-protocol always produces the well-formed format parsed above.
        Self::parse(&encoded).unwrap_or_else(|| Self::dummy(""))
    }

    /// A verifier nobody can satisfy, used for unknown users so that the
    /// exchange looks the same and reveals nothing. Its salt is the same
    /// for the same name on every attempt, as a real user's is (Postgres's
    /// mock salt): a hash of the name and a secret drawn once per process.
    pub fn dummy(user: &str) -> Self {
        static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let secret = SECRET.get_or_init(|| {
            let mut s = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut s);
            s
        });
        let salt = hmac(secret, user.as_bytes())[..16].to_vec();
        let mut stored_key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut stored_key);
        ScramVerifier {
            iterations: 4096,
            salt,
            stored_key,
            server_key: [0u8; 32],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding negotiation failed: {0}")]
    ChannelBinding(&'static str),
    #[error("password authentication failed")]
    BadProof,
}

/// Channel binding as the exchange runs it.
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// Plain TCP: nothing to bind to, SCRAM-SHA-256 only.
    Unavailable,
    /// TLS, SCRAM-SHA-256-PLUS offered; the client chose `mechanism`
    /// ("SCRAM-SHA-256" or "SCRAM-SHA-256-PLUS"). `data` is the
    /// `tls-server-end-point` hash of pgswitch's certificate.
    Offered { plus: bool, data: &'a [u8] },
}

/// Server state between the two client messages.
pub struct ScramServer {
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// What the client's `c=` attribute must carry: the gs2 header, then
    /// the channel binding data when bound.
    channel: Vec<u8>,
}

impl ScramServer {
    /// Handles client-first-message, returns the server and the
    /// server-first-message to send.
    pub fn start(
        verifier: &ScramVerifier,
        client_first: &[u8],
        binding: Binding<'_>,
    ) -> Result<(Self, String), ScramError> {
        let msg =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: "n,," (no binding), "y,," (the client could bind
        // but thinks the server cannot), "p=type,," (bound).
        let (cb_flag, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let bound = match (cb_flag, binding) {
            ("n", Binding::Unavailable | Binding::Offered { plus: false, .. }) => None,
            ("y", Binding::Unavailable) => None,
            ("y", Binding::Offered { plus: false, .. }) => {
                // The server did offer it: someone removed it on the way.
                return Err(ScramError::ChannelBinding(
                    "the client supports channel binding but thinks the server does not",
                ));
            }
            ("p=tls-server-end-point", Binding::Offered { plus: true, data }) => Some(data),
            (f, _)
                if f.starts_with("p=")
                    && matches!(binding, Binding::Offered { plus: true, .. }) =>
            {
                return Err(ScramError::ChannelBinding(
                    "only tls-server-end-point is supported",
                ));
            }
            (f, _) if f.starts_with("p=") => {
                return Err(ScramError::ChannelBinding(
                    "the client asked for channel binding without choosing SCRAM-SHA-256-PLUS",
                ));
            }
            ("n" | "y", Binding::Offered { plus: true, .. }) => {
                return Err(ScramError::ChannelBinding(
                    "SCRAM-SHA-256-PLUS was chosen without channel binding data",
                ));
            }
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        };
        let (_authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?;
        let mut channel = format!("{cb_flag},{_authzid},").into_bytes();
        if let Some(data) = bound {
            channel.extend_from_slice(data);
        }
        // Postgres ignores the user name here; the startup packet names it.
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no client nonce"))?;
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        let nonce = format!("{client_nonce}{}", B64.encode(raw));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        let server = ScramServer {
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
            channel,
        };
        Ok((server, server_first))
    }

    /// Checks client-final-message; on success returns server-final-message
    /// and the client's ClientKey, recovered from its proof (what logs in
    /// to a server as this user without the password, see [`ScramKeys`]).
    pub fn finish(
        self,
        verifier: &ScramVerifier,
        client_final: &[u8],
    ) -> Result<(String, [u8; 32]), ScramError> {
        let msg =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                channel = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                nonce = Some(v);
            }
        }
        if channel != Some(B64.encode(&self.channel).as_str()) {
            return Err(ScramError::Malformed("channel binding data does not match"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::Malformed("proof has the wrong length"));
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac(&verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let stored = Sha256::digest(&client_key);
        if !super::ct_eq(&stored, &verifier.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&verifier.server_key, auth_message.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(&client_key);
        Ok((format!("v={}", B64.encode(server_signature)), key))
    }
}

/// What logs in to a server as a user whose password pgswitch never saw:
/// the ClientKey a client proved, and the ServerKey of the stored
/// verifier (to check the server's signature). Valid while the server
/// keeps that verifier (its salt and iterations).
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramKeys {
    /// A digest, never the keys: enough to tell two apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = Sha256::digest(self.client_key);
        write!(
            f,
            "ScramKeys({:02x}{:02x}{:02x}{:02x})",
            d[0], d[1], d[2], d[3]
        )
    }
}

/// The client side of SCRAM-SHA-256 from [`ScramKeys`] instead of a
/// password (PgBouncer's SCRAM pass-through): the proof is the ClientKey
/// XOR the ClientSignature, which needs only StoredKey = H(ClientKey).
pub struct KeyClient {
    keys: ScramKeys,
    nonce: String,
    gs2_header: &'static str,
    /// The gs2 header and channel binding data (`c=`).
    channel: Vec<u8>,
    client_first_bare: String,
    auth_message: String,
}

impl KeyClient {
    /// `binding`: the `tls-server-end-point` data when bound
    /// (SCRAM-SHA-256-PLUS), and whether the client could bind at all
    /// (TLS) when not.
    pub fn new(keys: ScramKeys, binding: Option<Vec<u8>>, could_bind: bool) -> KeyClient {
        let mut raw = [0u8; 18];
        rand::thread_rng().fill_bytes(&mut raw);
        let nonce = B64.encode(raw);
        let (gs2_header, data) = match binding {
            Some(data) => ("p=tls-server-end-point,,", data),
            None if could_bind => ("y,,", Vec::new()),
            None => ("n,,", Vec::new()),
        };
        let mut channel = gs2_header.as_bytes().to_vec();
        channel.extend_from_slice(&data);
        KeyClient {
            keys,
            gs2_header,
            client_first_bare: format!("n=,r={nonce}"),
            nonce,
            channel,
            auth_message: String::new(),
        }
    }

    /// client-first-message.
    pub fn first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.client_first_bare).into_bytes()
    }

    /// server-first-message in, client-final-message out.
    pub fn update(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg =
            std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let nonce = msg
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Malformed(
                "the server's nonce does not extend ours",
            ));
        }
        let without_proof = format!("c={},r={nonce}", B64.encode(&self.channel));
        self.auth_message = format!("{},{msg},{without_proof}", self.client_first_bare);
        let stored_key: [u8; 32] = Sha256::digest(self.keys.client_key).into();
        let signature = hmac(&stored_key, self.auth_message.as_bytes());
        let proof: Vec<u8> = self
            .keys
            .client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final-message.
    pub fn finish(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg =
            std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let given = msg
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::Malformed("no server signature"))?;
        let expected = hmac(&self.keys.server_key, self.auth_message.as_bytes());
        match super::ct_eq(&given, &expected) {
            true => Ok(()),
            false => Err(ScramError::BadProof),
        }
    }
}

impl ScramVerifier {
    /// Checks a clear-text password against the verifier, as Postgres does
    /// for `password` authentication of a SCRAM role: SASLprep, PBKDF2 over
    /// the verifier's salt and rounds, then the stored key. Returns the
    /// ClientKey (what a server login as this user needs) when it matches.
    pub fn check_password(&self, password: &str) -> Option<[u8; 32]> {
        // As Postgres: a password SASLprep refuses is used as it is.
        let prepared = stringprep::saslprep(password).unwrap_or(password.into());
        let salted = pbkdf2(prepared.as_bytes(), &self.salt, self.iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        super::ct_eq(&stored, &self.stored_key).then_some(client_key)
    }
}

/// PBKDF2-HMAC-SHA-256 with one 32-byte block (SCRAM's `Hi`, RFC 5802).
/// The keyed state is made once and cloned for each round.
fn pbkdf2(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    let Ok(keyed) = HmacSha256::new_from_slice(password) else {
        return [0u8; 32];
    };
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..rounds {
        let mut mac = keyed.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn exchange(password_on_server: &str, password_of_client: &str) -> Result<(), ScramError> {
        run(
            password_on_server,
            password_of_client,
            ChannelBinding::unsupported(),
            Binding::Unavailable,
        )
    }

    fn run(
        password_on_server: &str,
        password_of_client: &str,
        client_binding: ChannelBinding,
        binding: Binding<'_>,
    ) -> Result<(), ScramError> {
        let verifier = ScramVerifier::from_password(password_on_server);
        let mut client = ScramSha256::new(password_of_client.as_bytes(), client_binding);
        let (server, first) = ScramServer::start(&verifier, client.message(), binding)?;
        client
            .update(first.as_bytes())
            .map_err(|_| ScramError::Malformed("client rejected"))?;
        let (fin, _) = server.finish(&verifier, client.message())?;
        client
            .finish(fin.as_bytes())
            .map_err(|_| ScramError::Malformed("server signature rejected"))
    }

    #[test]
    fn channel_binding_binds_to_the_certificate() {
        let ours = [7u8; 32];
        let plus = Binding::Offered {
            plus: true,
            data: &ours,
        };
        let bound = |data: &[u8]| ChannelBinding::tls_server_end_point(data.to_vec());
        run("pw", "pw", bound(&ours), plus).unwrap();
        // A man in the middle terminates TLS with another certificate.
        assert!(run("pw", "pw", bound(&[8u8; 32]), plus).is_err());
        // PLUS chosen, but no binding sent.
        assert!(matches!(
            run("pw", "pw", ChannelBinding::unsupported(), plus),
            Err(ScramError::ChannelBinding(_))
        ));
        // Plain SCRAM over TLS: fine with "n", a downgrade with "y".
        let offered = Binding::Offered {
            plus: false,
            data: &ours,
        };
        run("pw", "pw", ChannelBinding::unsupported(), offered).unwrap();
        assert!(matches!(
            run("pw", "pw", ChannelBinding::unrequested(), offered),
            Err(ScramError::ChannelBinding(_))
        ));
        // Binding asked for where the server cannot offer it.
        assert!(matches!(
            run("pw", "pw", bound(&ours), Binding::Unavailable),
            Err(ScramError::ChannelBinding(_))
        ));
        // The password still counts.
        assert_eq!(
            run("pw", "guess", bound(&ours), plus),
            Err(ScramError::BadProof)
        );
    }

    /// A client that logs in with the keys another client proved.
    fn pass_through(
        binding: Binding<'_>,
        cb: Option<Vec<u8>>,
        could: bool,
    ) -> Result<(), ScramError> {
        let verifier = ScramVerifier::from_password("s3cret");
        // A real client proves its password; pgswitch keeps its ClientKey.
        let mut client = ScramSha256::new(b"s3cret", ChannelBinding::unsupported());
        let (server, first) =
            ScramServer::start(&verifier, client.message(), Binding::Unavailable)?;
        client.update(first.as_bytes()).unwrap();
        let (_, client_key) = server.finish(&verifier, client.message())?;
        let keys = ScramKeys {
            client_key,
            server_key: verifier.server_key,
        };
        // pgswitch logs in to a server holding the same verifier.
        let mut ours = KeyClient::new(keys, cb, could);
        let (server, first) = ScramServer::start(&verifier, &ours.first(), binding)?;
        let last = ours.update(first.as_bytes())?;
        let (fin, key) = server.finish(&verifier, &last)?;
        assert_eq!(key, client_key);
        ours.finish(fin.as_bytes())
    }

    #[test]
    fn keys_a_client_proved_log_in_without_the_password() {
        pass_through(Binding::Unavailable, None, false).unwrap();
        let data = [9u8; 32];
        let plus = Binding::Offered {
            plus: true,
            data: &data,
        };
        pass_through(plus, Some(data.to_vec()), true).unwrap();
        let plain = Binding::Offered {
            plus: false,
            data: &data,
        };
        pass_through(plain, None, false).unwrap();
        // Bound to another certificate: refused.
        assert!(pass_through(plus, Some(vec![1u8; 32]), true).is_err());
        // Keys of another password: refused by the server.
        let verifier = ScramVerifier::from_password("other");
        let keys = ScramKeys {
            client_key: [3u8; 32],
            server_key: verifier.server_key,
        };
        let mut ours = KeyClient::new(keys, None, false);
        let (server, first) =
            ScramServer::start(&verifier, &ours.first(), Binding::Unavailable).unwrap();
        let last = ours.update(first.as_bytes()).unwrap();
        assert_eq!(
            server.finish(&verifier, &last).err(),
            Some(ScramError::BadProof)
        );
    }

    #[test]
    fn an_unknown_user_gets_the_same_salt_every_time() {
        let (a, b) = (ScramVerifier::dummy("ghost"), ScramVerifier::dummy("ghost"));
        assert_eq!(a.salt, b.salt);
        assert_eq!(a.salt.len(), 16);
        assert_ne!(a.salt, ScramVerifier::dummy("other").salt);
        // ... and nobody logs in with it.
        assert_ne!(a.stored_key, b.stored_key);
    }

    #[test]
    fn right_password_passes_both_ways() {
        exchange("s3cret", "s3cret").unwrap();
    }

    #[test]
    fn clear_text_passwords_check_against_postgres_verifiers() {
        let encoded = postgres_protocol::password::scram_sha_256(b"s3cret");
        let v = ScramVerifier::parse(&encoded).unwrap();
        let key = v.check_password("s3cret").expect("the right password");
        assert_eq!(<Sha256 as Digest>::digest(key)[..], v.stored_key[..]);
        assert_eq!(v.check_password("s3cret "), None);
        assert_eq!(v.check_password(""), None);
        assert_eq!(ScramVerifier::dummy("x").check_password(""), None);
    }

    #[test]
    fn wrong_password_fails() {
        assert_eq!(exchange("s3cret", "guess"), Err(ScramError::BadProof));
    }

    #[test]
    fn parses_postgres_verifier() {
        let v = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let p = ScramVerifier::parse(v).unwrap();
        assert_eq!(p.iterations, 4096);
        assert_eq!(p.salt, b"saltsalt");
        assert!(ScramVerifier::parse("SCRAM-SHA-256$x:y$z").is_none());
    }

    #[test]
    fn garbage_client_messages_are_errors() {
        let v = ScramVerifier::from_password("x");
        let none = Binding::Unavailable;
        assert!(ScramServer::start(&v, b"garbage", none).is_err());
        assert!(matches!(
            ScramServer::start(&v, b"p=tls-server-end-point,,n=,r=abc", none).err(),
            Some(ScramError::ChannelBinding(_))
        ));
        let (s, _) = ScramServer::start(&v, b"n,,n=,r=abc", none).unwrap();
        assert!(s.finish(&v, b"c=biws,r=wrong,p=AAAA").is_err());
    }
}
