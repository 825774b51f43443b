//! `GET /v2`: the Postgres wire protocol in WebSocket binary frames, as
//! `@neondatabase/serverless`'s `Pool` and `Client` speak it. The frames
//! are copied to and from one end of a socket pair whose other end is an
//! ordinary session (`session::run_local`): login, pooling, routing and
//! prepared statements are the TCP clients' own.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{header, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::Answer;
use crate::shared::Shared;

/// Answers the upgrade (101) and serves the WebSocket once hyper hands
/// the connection over.
pub fn upgrade(
    shared: &Arc<Shared>,
    tasks: &tokio_util::task::TaskTracker,
    mut req: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Answer {
    let h = req.headers();
    let wants = |name: header::HeaderName, value: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(value)))
    };
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let (Some(accept), true, true) = (
        key,
        wants(header::UPGRADE, "websocket"),
        wants(header::CONNECTION, "upgrade"),
    ) else {
        return Answer::message(
            StatusCode::BAD_REQUEST,
            "GET /v2 is a WebSocket carrying the Postgres protocol: send Connection: Upgrade, Upgrade: websocket and Sec-WebSocket-Key",
        );
    };
    let max_frame = shared
        .config
        .load()
        .general
        .max_message_bytes
        .saturating_add(64 << 10);
    let upgrading = hyper::upgrade::on(&mut req);
    let shared = shared.clone();
    // On the drain's tracker: a WebSocket client is a session like any.
    tasks.spawn(async move {
        let upgraded = match upgrading.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_frame))
            .max_frame_size(Some(max_frame));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let (ours, theirs) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "WebSocket client refused: no socket pair");
                return;
            }
        };
        let session = tokio::spawn(crate::session::run_local(shared.clone(), theirs, peer));
        if let Err(e) = bridge(ws, ours, shared.hard_shutdown.clone()).await {
            tracing::debug!(%peer, error = %e, "WebSocket client connection lost");
        }
        let _ = session.await;
    });
    let mut answer = Answer::empty(StatusCode::SWITCHING_PROTOCOLS);
    answer.headers.push((header::UPGRADE, "websocket".into()));
    answer.headers.push((header::CONNECTION, "Upgrade".into()));
    answer.headers.push((header::SEC_WEBSOCKET_ACCEPT, accept));
    answer
}

/// Copies binary frames into the session's socket and its output back as
/// binary frames, each direction on its own (neither waits for the other
/// to be read), until either side ends or `stop` (the end of
/// `shutdown_timeout`).
async fn bridge<S>(
    ws: WebSocketStream<S>,
    local: UnixStream,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), BridgeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut frames) = ws.split();
    let (mut from_session, mut to_session) = local.into_split();
    let inbound = async {
        while let Some(frame) = frames.next().await {
            match frame? {
                Message::Binary(data) => to_session.write_all(&data).await?,
                Message::Text(_) => return Err(BridgeError::Text),
                Message::Close(_) => break,
                // Pings are answered by the library; pongs need nothing.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
        Ok(())
    };
    let outbound = async {
        let mut buf = BytesMut::with_capacity(16 << 10);
        // The session ended (Terminate, or a FATAL it sent) at 0.
        while from_session.read_buf(&mut buf).await? > 0 {
            sink.send(Message::Binary(buf.split().freeze())).await?;
            if buf.capacity() < 4096 {
                buf.reserve(16 << 10);
            }
        }
        let _ = sink.close().await;
        Ok(())
    };
    tokio::select! {
        r = inbound => r,
        r = outbound => r,
        _ = stop.cancelled() => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
enum BridgeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("a text frame: the Postgres protocol travels in binary frames")]
    Text,
}
