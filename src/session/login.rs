//! The client's side of connection start, after any TLS (see `tls`): the
//! startup packet, protocol negotiation and password authentication
//! (SCRAM-SHA-256, with channel binding over TLS, md5 or trust), then the
//! greeting that ends in ReadyForQuery.

use bytes::{Buf, BytesMut};
use rand::RngCore;
use tokio::io::AsyncReadExt;

use super::SessionError;
use crate::auth::scram::{Binding, ScramError, ScramServer};
use crate::auth::{ct_eq, md5_expected, ScramVerifier};
use crate::config::ClientAuth;
use crate::net::Stream;
use crate::pool::ParamSet;
use crate::protocol::frame::{peek_header, HEADER_LEN};
use crate::protocol::messages;
use crate::protocol::startup::{self, StartupMessage, StartupPacket};

/// Cap for auth messages: a SCRAM exchange is a few hundred bytes.
const MAX_AUTH_MESSAGE: usize = 8 * 1024;

/// What a new connection asked for.
pub enum Opening {
    Startup(StartupMessage),
    /// `forwarded`: from a peer pgswitch, for this instance's clients only.
    Cancel {
        pid: i32,
        secret: Vec<u8>,
        forwarded: bool,
    },
}

async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> Result<(), SessionError> {
    buf.reserve(1024);
    match stream.read_buf(buf).await {
        Ok(0) => Err(SessionError::ClientGone(
            std::io::ErrorKind::UnexpectedEof.into(),
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(SessionError::ClientGone(e)),
    }
}

async fn send(stream: &mut Stream, bytes: &[u8]) -> Result<(), SessionError> {
    stream.send(bytes).await.map_err(SessionError::ClientGone)
}

/// Reads packets until a StartupMessage or CancelRequest. TLS was settled
/// before (`tls::negotiate`): a further SSLRequest, or a GSSENCRequest, is
/// answered 'N'.
pub async fn read_opening(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<Opening, SessionError> {
    loop {
        match startup::parse(buf)? {
            Some(StartupPacket::SslRequest | StartupPacket::GssEncRequest) => {
                send(stream, b"N").await?
            }
            Some(StartupPacket::CancelRequest {
                pid,
                secret,
                forwarded,
            }) => {
                return Ok(Opening::Cancel {
                    pid,
                    secret,
                    forwarded,
                })
            }
            Some(StartupPacket::Startup(m)) => return Ok(Opening::Startup(m)),
            None => read_more(stream, buf).await?,
        }
    }
}

/// Answers a 3.x (x > 0) request or `_pq_.` options: we speak 3.0.
pub async fn negotiate(stream: &mut Stream, m: &StartupMessage) -> Result<(), SessionError> {
    let unsupported: Vec<String> = m
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if m.minor == 0 && unsupported.is_empty() {
        return Ok(());
    }
    let mut out = BytesMut::new();
    messages::negotiate_protocol_version(&mut out, unsupported);
    send(stream, &out).await
}

/// Reads one PasswordMessage-family ('p') body.
async fn read_password_message(
    stream: &mut Stream,
    buf: &mut BytesMut,
) -> Result<BytesMut, SessionError> {
    loop {
        if let Some((tag, len)) = peek_header(buf)? {
            if tag != b'p' {
                return Err(SessionError::Protocol(format!(
                    "expected a password message, got message type '{}'",
                    char::from(tag)
                )));
            }
            if len > MAX_AUTH_MESSAGE {
                return Err(SessionError::Protocol("password message too long".into()));
            }
            if buf.len() >= HEADER_LEN + len {
                buf.advance(HEADER_LEN);
                return Ok(buf.split_to(len));
            }
        }
        read_more(stream, buf).await?;
    }
}

/// Runs the exchange the user's auth method calls for. An unknown user
/// (`auth` = None) goes through a SCRAM exchange that cannot succeed, so the
/// reply reveals nothing about which users exist. `binding`: the
/// `tls-server-end-point` hash of the certificate a TLS client was given.
pub async fn authenticate(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    auth: Option<&ClientAuth>,
    binding: Option<&[u8]>,
) -> Result<Option<[u8; 32]>, SessionError> {
    let fail = || {
        if auth.is_some() {
            SessionError::Auth(user.to_owned())
        } else {
            SessionError::NoUser
        }
    };
    let mut out = BytesMut::new();
    match auth {
        Some(ClientAuth::Trust) => {}
        Some(ClientAuth::Md5 { hash }) => {
            let mut salt = [0u8; 4];
            rand::thread_rng().fill_bytes(&mut salt);
            messages::auth_md5(&mut out, salt);
            send(stream, &out).await?;
            let body = read_password_message(stream, buf).await?;
            let given = body.strip_suffix(b"\0").unwrap_or(&body);
            if !ct_eq(given, md5_expected(hash, salt).as_bytes()) {
                return Err(fail());
            }
        }
        Some(ClientAuth::Scram(v)) => {
            let key = scram(stream, buf, v, binding)
                .await
                .map_err(|e| e.unwrap_or_else(fail))?;
            return Ok(Some(key));
        }
        None => {
            let v = ScramVerifier::dummy(user);
            scram(stream, buf, &v, binding)
                .await
                .map_err(|e| e.unwrap_or_else(fail))?;
            return Err(fail());
        }
    }
    Ok(None)
}

/// Asks for the password in clear (AuthenticationCleartextPassword), as
/// Neon's proxy does on its WebSocket (always inside TLS, or on loopback):
/// `@neondatabase/serverless` sends it without waiting to be asked. The
/// check is `Passwords`'s: the ClientKey of a SCRAM role, as `authenticate`.
pub async fn authenticate_cleartext(
    stream: &mut Stream,
    buf: &mut BytesMut,
    user: &str,
    auth: Option<&ClientAuth>,
    passwords: &crate::auth::password::Passwords,
    ttl: std::time::Duration,
) -> Result<Option<[u8; 32]>, SessionError> {
    // A browser page may reach the front (CORS, WebSockets): a user that
    // needs no password is no user there.
    if matches!(auth, Some(ClientAuth::Trust)) {
        return Err(SessionError::PasswordRequired(user.to_owned()));
    }
    let mut out = BytesMut::new();
    messages::auth_cleartext(&mut out);
    send(stream, &out).await?;
    let body = read_password_message(stream, buf).await?;
    let given = body.strip_suffix(b"\0").unwrap_or(&body);
    let given = std::str::from_utf8(given)
        .map_err(|_| SessionError::Protocol("the password is not UTF-8".into()))?;
    passwords
        .check(auth, user, given, ttl)
        .await
        .map_err(|_| match auth {
            Some(_) => SessionError::Auth(user.to_owned()),
            None => SessionError::NoUser,
        })
}

/// SCRAM-SHA-256; returns the ClientKey the client proved. `Err(None)`
/// means "wrong password".
async fn scram(
    stream: &mut Stream,
    buf: &mut BytesMut,
    v: &ScramVerifier,
    binding: Option<&[u8]>,
) -> Result<[u8; 32], Option<SessionError>> {
    let mut out = BytesMut::new();
    messages::auth_sasl(&mut out, binding.is_some());
    send(stream, &out).await?;
    let first = read_password_message(stream, buf).await?;
    let (plus, data) = sasl_initial_data(&first)
        .ok_or_else(|| SessionError::Protocol("malformed SASLInitialResponse".into()))?;
    let binding = match binding {
        Some(data) => Binding::Offered { plus, data },
        None if plus => {
            return Err(Some(SessionError::Protocol(
                "SCRAM-SHA-256-PLUS was not offered (the connection is not TLS)".into(),
            )))
        }
        None => Binding::Unavailable,
    };
    let (server, server_first) = ScramServer::start(v, data, binding).map_err(scram_error)?;
    out.clear();
    messages::auth_sasl_continue(&mut out, server_first.into_bytes());
    send(stream, &out).await?;
    let last = read_password_message(stream, buf).await?;
    let (server_final, client_key) = server.finish(v, &last).map_err(scram_error)?;
    out.clear();
    messages::auth_sasl_final(&mut out, server_final.into_bytes());
    send(stream, &out).await?;
    Ok(client_key)
}

fn scram_error(e: ScramError) -> Option<SessionError> {
    match e {
        ScramError::BadProof => None,
        other => Some(SessionError::Protocol(other.to_string())),
    }
}

/// SASLInitialResponse: mechanism\0, i32 length (-1 = none), data.
/// Returns whether the mechanism is SCRAM-SHA-256-PLUS, and the data.
fn sasl_initial_data(body: &[u8]) -> Option<(bool, &[u8])> {
    let end = body.iter().position(|&b| b == 0)?;
    let plus = match &body[..end] {
        b"SCRAM-SHA-256" => false,
        b"SCRAM-SHA-256-PLUS" => true,
        _ => return None,
    };
    let rest = &body[end + 1..];
    let len = i32::from_be_bytes(rest.get(0..4)?.try_into().ok()?);
    let data = &rest[4..];
    (len >= 0 && len as usize == data.len()).then_some((plus, data))
}

/// AuthenticationOk, every ParameterStatus, BackendKeyData, ReadyForQuery.
pub async fn greet(
    stream: &mut Stream,
    client: &ParamSet,
    server: &ParamSet,
    pid: i32,
    secret: i32,
) -> Result<(), SessionError> {
    let mut out = BytesMut::with_capacity(512);
    messages::auth_ok(&mut out);
    for (k, v) in client.iter().chain(server.untracked()) {
        messages::parameter_status(&mut out, k, v);
    }
    messages::backend_key_data(&mut out, pid, secret);
    messages::ready_for_query(&mut out, b'I');
    send(stream, &out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_layout() {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&3i32.to_be_bytes());
        body.extend_from_slice(b"abc");
        assert_eq!(sasl_initial_data(&body), Some((false, &b"abc"[..])));
        body.push(b'x');
        assert_eq!(sasl_initial_data(&body), None);
        assert_eq!(sasl_initial_data(b"PLAIN\0\0\0\0\0"), None);
    }
}
