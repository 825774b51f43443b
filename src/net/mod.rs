//! Connections under the protocol: [`stream::Stream`] (plain TCP or TLS
//! over it), [`tls`] settings, and the SSLRequest that opens TLS towards a
//! server; [`peers`]: the other instances.

pub mod client;
pub mod peers;
pub mod stream;
pub mod tls;

use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use stream::Stream;
use tls::ServerTls;

/// SSLRequest: length 8, code 80877103.
pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Why TLS towards a server could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server does not support SSL, but sslmode={0} asks for it")]
    Unsupported(&'static str),
    #[error("SSL handshake failed: {0}")]
    Handshake(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Asks the server for TLS (SSLRequest) and runs the handshake. A server
/// that answers 'N' leaves the connection plain, which is an error only if
/// the mode requires TLS.
pub async fn start_tls(
    mut tcp: TcpStream,
    host: &str,
    tls: &ServerTls,
) -> Result<Stream, TlsError> {
    let Some(config) = tls.config.clone() else {
        return Ok(Stream::Plain(tcp));
    };
    tcp.write_all(&SSL_REQUEST).await?;
    let answer = tcp.read_u8().await?;
    match answer {
        b'S' => {}
        b'N' if tls.options.mode.requires_tls() => {
            return Err(TlsError::Unsupported(tls::mode_name(tls.options.mode)))
        }
        b'N' => return Ok(Stream::Plain(tcp)),
        other => {
            return Err(TlsError::Handshake(format!(
                "server answered the SSLRequest with '{}'",
                char::from(other).escape_default()
            )))
        }
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| TlsError::Handshake(format!("'{host}' is not a valid server name")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| TlsError::Handshake(tls::describe(&e)))?;
    let (tcp, conn) = stream.into_inner();
    Ok(Stream::tls(tcp, conn))
}
