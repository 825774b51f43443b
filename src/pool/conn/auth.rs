//! pgswitch's own authentication to a server: trust, cleartext, md5 (with
//! a password, or a looked-up md5 verifier) and SCRAM-SHA-256 (with a
//! password via postgres-protocol, or keys a client proved), with channel
//! binding over TLS; and the order the exchange must keep, so that a
//! server that skips it is not taken as logged in.

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;

use super::{ServerConn, ServerError, Target};
use crate::net::tls::ChannelBinding as TlsBinding;

/// Where pgswitch's own login to a server stands.
#[derive(Default)]
pub(super) struct AuthState {
    pub(super) sasl: Option<Sasl>,
    /// The server's SCRAM signature was checked.
    pub(super) sasl_done: bool,
    /// The exchange is bound to the TLS channel (SCRAM-SHA-256-PLUS).
    pub(super) bound: bool,
    /// AuthenticationOk came, after what it must follow.
    pub(super) ok: bool,
}

/// A SASL exchange towards a server, with the password or with keys a
/// client proved.
pub(crate) enum Sasl {
    Password(ScramSha256),
    Keys(crate::auth::scram::KeyClient),
}

/// Channel binding towards a server: bound (the certificate's hash), able
/// but not offered (TLS), or not possible.
pub(crate) enum Bind {
    Plus(Vec<u8>),
    Could,
    No,
}

impl ServerConn {
    /// The SASL mechanism and channel binding to answer a server's
    /// AuthenticationSASL with (`data`: the mechanisms it offers): with
    /// TLS, SCRAM-SHA-256-PLUS over `tls-server-end-point` when offered.
    fn channel_binding(
        &self,
        t: &Target,
        data: &[u8],
    ) -> Result<(&'static str, Bind), ServerError> {
        let plus = data.split(|&b| b == 0).any(|m| m == b"SCRAM-SHA-256-PLUS");
        let want = t.addr.tls.options.channel_binding;
        let cert = self
            .stream
            .tls_conn()
            .and_then(|c| c.peer_certificates())
            .and_then(|certs| certs.first());
        match (cert, plus, want) {
            (Some(cert), true, TlsBinding::Prefer | TlsBinding::Require) => {
                let hash = crate::net::tls::end_point_hash(cert);
                Ok(("SCRAM-SHA-256-PLUS", Bind::Plus(hash)))
            }
            (_, _, TlsBinding::Require) => Err(self.proto(
                "channel_binding=require, but the server offers no SCRAM-SHA-256-PLUS over TLS"
                    .into(),
            )),
            // On TLS and able to bind, but the server did not offer it.
            (Some(_), false, TlsBinding::Prefer) => Ok(("SCRAM-SHA-256", Bind::Could)),
            _ => Ok(("SCRAM-SHA-256", Bind::No)),
        }
    }

    pub(super) async fn auth_step(
        &mut self,
        t: &Target,
        body: &[u8],
        state: &mut AuthState,
    ) -> Result<(), ServerError> {
        let scram = &mut state.sasl;
        let code = body
            .get(0..4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(-1);
        let data = body.get(4..).unwrap_or_default();
        let password = || {
            t.password
                .as_deref()
                .ok_or_else(|| ServerError::NoPassword {
                    addr: t.addr.to_string(),
                    user: t.user.clone(),
                })
        };
        let mut out = BytesMut::new();
        let binding_required = t.addr.tls.options.channel_binding == TlsBinding::Require;
        if binding_required && scram.is_none() && matches!(code, 0 | 3 | 5) {
            return Err(self.proto(
                "channel_binding=require, but the server did not ask for SCRAM authentication"
                    .into(),
            ));
        }
        match code {
            0 => {
                // After SASL, only once the server proved itself (its
                // signature checked); bound, if channel binding is required.
                if scram.is_some() && !state.sasl_done {
                    return Err(
                        self.proto("AuthenticationOk before the SCRAM exchange ended".into())
                    );
                }
                if binding_required && !state.bound {
                    return Err(self
                        .proto("channel_binding=require, but the exchange was not bound".into()));
                }
                state.ok = true;
                return Ok(());
            }
            3 => frontend::password_message(password()?.as_bytes(), &mut out),
            5 => {
                let salt: [u8; 4] = data
                    .get(0..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| self.proto("short md5 salt".into()))?;
                // A looked-up md5 verifier answers as the password would.
                let hash = match (&t.password, &t.secret) {
                    (None, Some(crate::auth::ServerSecret::Md5 { hash })) => {
                        crate::auth::md5_expected(hash, salt)
                    }
                    _ => postgres_protocol::authentication::md5_hash(
                        t.user.as_bytes(),
                        password()?.as_bytes(),
                        salt,
                    ),
                };
                frontend::password_message(hash.as_bytes(), &mut out)
            }
            10 => {
                let (mechanism, bind) = self.channel_binding(t, data)?;
                state.bound = matches!(bind, Bind::Plus(_));
                let (s, first) = match (&t.password, &t.secret) {
                    (None, Some(crate::auth::ServerSecret::Scram(keys))) => {
                        let (cb, could) = match bind {
                            Bind::Plus(data) => (Some(data), true),
                            Bind::Could => (None, true),
                            Bind::No => (None, false),
                        };
                        let c = crate::auth::scram::KeyClient::new(keys.clone(), cb, could);
                        let first = c.first();
                        (Sasl::Keys(c), first)
                    }
                    _ => {
                        let binding = match bind {
                            Bind::Plus(data) => ChannelBinding::tls_server_end_point(data),
                            Bind::Could => ChannelBinding::unrequested(),
                            Bind::No => ChannelBinding::unsupported(),
                        };
                        let c = ScramSha256::new(password()?.as_bytes(), binding);
                        let first = c.message().to_vec();
                        (Sasl::Password(c), first)
                    }
                };
                *scram = Some(s);
                frontend::sasl_initial_response(mechanism, &first, &mut out)
            }
            11 => {
                let next = match scram.as_mut() {
                    None => return Err(self.proto("SASL continue without SASL start".into())),
                    Some(Sasl::Password(s)) => s
                        .update(data)
                        .map(|()| s.message().to_vec())
                        .map_err(|e| e.to_string()),
                    Some(Sasl::Keys(c)) => c.update(data).map_err(|e| e.to_string()),
                };
                let next = next.map_err(|e| self.proto(e))?;
                frontend::sasl_response(&next, &mut out)
            }
            12 => {
                let checked = match scram.as_mut() {
                    None => return Err(self.proto("SASL final without SASL start".into())),
                    Some(Sasl::Password(s)) => s.finish(data).map_err(|e| e.to_string()),
                    Some(Sasl::Keys(c)) => c.finish(data).map_err(|e| e.to_string()),
                };
                checked.map_err(|e| self.proto(format!("server SCRAM signature: {e}")))?;
                state.sasl_done = true;
                return Ok(());
            }
            other => return Err(self.proto(format!("unsupported authentication request {other}"))),
        }
        .map_err(|e| self.proto(e.to_string()))?;
        self.write(&out).await
    }
}
