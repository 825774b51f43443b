//! What a client asks for before its startup packet: TLS through an
//! SSLRequest (answered 'S' when pgswitch has a certificate and
//! `client_tls` is not `disable`, else 'N'), TLS at once (PostgreSQL 17's
//! direct negotiation, ALPN `postgresql`), or nothing. GSSENCRequest is
//! answered 'N'.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::SessionError;
use crate::net::tls::{ClientTls, ALPN};
use crate::net::Stream;

const SSL_REQUEST: i32 = 80877103;
const GSSENC_REQUEST: i32 = 80877104;
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The stream as the client left it (TLS or plain), and the
/// `tls-server-end-point` hash of the certificate it was given. Bytes read
/// past the negotiation stay in `buf`.
pub async fn negotiate(
    mut tcp: TcpStream,
    tls: Option<&ClientTls>,
    buf: &mut BytesMut,
) -> Result<(Stream, Option<Vec<u8>>), SessionError> {
    loop {
        if buf.is_empty() {
            if let Some(tls) = tls {
                let mut first = [0u8; 1];
                let n = tcp
                    .peek(&mut first)
                    .await
                    .map_err(SessionError::ClientGone)?;
                if n == 0 {
                    return Err(gone());
                }
                if first[0] == TLS_HANDSHAKE {
                    return accept(tcp, tls, true).await;
                }
            }
        }
        while buf.len() < 8 {
            buf.reserve(64);
            match tcp.read_buf(buf).await {
                Ok(0) => return Err(gone()),
                Ok(_) => {}
                Err(e) => return Err(SessionError::ClientGone(e)),
            }
        }
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let code = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        match (len, code, tls) {
            (8, SSL_REQUEST, Some(tls)) => {
                buf.advance(8);
                if !buf.is_empty() {
                    // Bytes sent before the handshake would be read as if
                    // they had come encrypted (CVE-2021-23214).
                    return Err(SessionError::Protocol(
                        "received unencrypted data after SSL request".into(),
                    ));
                }
                send(&mut tcp, b"S").await?;
                return accept(tcp, tls, false).await;
            }
            (8, SSL_REQUEST | GSSENC_REQUEST, _) => {
                buf.advance(8);
                send(&mut tcp, b"N").await?;
            }
            _ => return Ok((Stream::Plain(tcp), None)),
        }
    }
}

async fn accept(
    tcp: TcpStream,
    tls: &ClientTls,
    direct: bool,
) -> Result<(Stream, Option<Vec<u8>>), SessionError> {
    let stream = tls
        .acceptor
        .accept(tcp)
        .await
        .map_err(|e| SessionError::Protocol(format!("TLS handshake failed: {e}")))?;
    let (tcp, conn) = stream.into_inner();
    // Direct TLS must name the protocol, so that a TLS connection meant
    // for another service is not taken for Postgres (as PostgreSQL 17).
    if direct && conn.alpn_protocol() != Some(ALPN) {
        return Err(SessionError::Protocol(
            "direct TLS connection without ALPN \"postgresql\"".into(),
        ));
    }
    Ok((Stream::tls(tcp, conn), Some(tls.endpoint.clone())))
}

async fn send(tcp: &mut TcpStream, b: &[u8]) -> Result<(), SessionError> {
    tcp.write_all(b).await.map_err(SessionError::ClientGone)
}

fn gone() -> SessionError {
    SessionError::ClientGone(std::io::ErrorKind::UnexpectedEof.into())
}
