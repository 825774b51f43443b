//! tokio-postgres connections to a server (the health monitor and the
//! catalog reader), over the same TLS settings as pooled connections.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_postgres::config::{ChannelBinding as PgBinding, SslMode as PgSslMode};
use tokio_postgres::tls::{ChannelBinding, TlsConnect};

use super::tls::{self, ChannelBinding as Binding, SslMode};
use super::Stream;
use crate::config::ServerAddr;

/// Who to log in as: user, password, database.
pub type Login<'a> = (&'a str, Option<&'a str>, &'a str);

/// Connects and logs in; the connection task runs on its own.
pub async fn connect(
    addr: &ServerAddr,
    (user, password, dbname): Login<'_>,
    application_name: &str,
    timeout: Duration,
) -> Result<tokio_postgres::Client, String> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&addr.host)
        .port(addr.port)
        .user(user)
        .dbname(dbname)
        .application_name(application_name);
    if let Some(p) = password {
        pg.password(p);
    }
    let options = &addr.tls.options;
    pg.ssl_mode(match options.mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Allow | SslMode::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    pg.channel_binding(match options.channel_binding {
        Binding::Disable => PgBinding::Disable,
        Binding::Prefer => PgBinding::Prefer,
        Binding::Require => PgBinding::Require,
    });
    let connect = async {
        let tcp = match addr.hostaddr {
            Some(ip) => TcpStream::connect((ip, addr.port)).await,
            None => TcpStream::connect((addr.host.as_str(), addr.port)).await,
        }
        .map_err(|e| format!("could not connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = Connect {
            config: addr.tls.config.clone(),
            host: addr.host.clone(),
        };
        pg.connect_raw(tcp, tls).await.map_err(|e| describe(&e))
    };
    let (client, conn) = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The server's own message when there is one ("db error" says nothing).
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// The TLS handshake tokio-postgres asks for after the server's 'S'.
struct Connect {
    config: Option<std::sync::Arc<rustls::ClientConfig>>,
    host: String,
}

impl TlsConnect<TcpStream> for Connect {
    type Stream = Stream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Stream>> + Send>>;

    fn connect(self, tcp: TcpStream) -> Self::Future {
        Box::pin(async move {
            let config = self
                .config
                .ok_or_else(|| std::io::Error::other("sslmode=disable"))?;
            let name =
                rustls::pki_types::ServerName::try_from(self.host.clone()).map_err(|_| {
                    std::io::Error::other(format!("'{}' is not a server name", self.host))
                })?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| std::io::Error::other(tls::describe(&e)))?;
            let (tcp, conn) = stream.into_inner();
            Ok(Stream::tls(tcp, conn))
        })
    }
}

impl tokio_postgres::tls::TlsStream for Stream {
    fn channel_binding(&self) -> ChannelBinding {
        let cert = self
            .tls_conn()
            .and_then(|c| c.peer_certificates())
            .and_then(|certs| certs.first());
        match cert {
            Some(cert) => ChannelBinding::tls_server_end_point(tls::end_point_hash(cert)),
            None => ChannelBinding::none(),
        }
    }
}
