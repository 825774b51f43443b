//! The serverless front (`http_listen`), for edge runtimes that cannot open
//! a TCP socket and short-lived functions that should not pay a login per
//! call. It speaks Neon's protocols, so `@neondatabase/serverless` works
//! unchanged in front of any Postgres:
//!
//! - [`sql`]: `POST /sql`, SQL over HTTP (one statement, or a batch as one
//!   transaction, per request), with causal reads across requests through
//!   the `Pgswitch-Lsn` header;
//! - [`ws`]: `GET /v2`, the wire protocol in WebSocket binary frames;
//! - `OPTIONS`: the CORS preflight.
//!
//! Both hand their client to the session code through a socket pair
//! (`session::run_local`; [`wire`] is the HTTP side's client), so login,
//! pools, routing and transaction pooling are the TCP clients' own. With
//! the client certificate set (and `client_tls` not `disable`) the front
//! speaks HTTPS only.

mod result;
pub mod sql;
mod values;
mod wire;
mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ClientTlsMode;
use crate::shared::Shared;

/// An answer before it becomes a hyper response.
pub struct Answer {
    status: StatusCode,
    body: Option<serde_json::Value>,
    headers: Vec<(HeaderName, String)>,
    /// The `Pgswitch-Lsn` to send back.
    lsn: Option<String>,
}

impl Answer {
    fn new(status: StatusCode, body: serde_json::Value) -> Answer {
        Answer {
            status,
            body: Some(body),
            headers: Vec::new(),
            lsn: None,
        }
    }

    fn empty(status: StatusCode) -> Answer {
        Answer {
            status,
            body: None,
            headers: Vec::new(),
            lsn: None,
        }
    }

    fn message(status: StatusCode, message: &str) -> Answer {
        Answer::new(status, serde_json::json!({ "message": message }))
    }
}

fn json_response(answer: Answer, cors_origin: &str) -> Response<Full<Bytes>> {
    let body = match &answer.body {
        Some(v) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        None => Bytes::new(),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = answer.status;
    let h = r.headers_mut();
    if answer.body.is_some() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(origin) = HeaderValue::from_str(cors_origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Pgswitch-Lsn"),
    );
    for (name, value) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    if let Some(lsn) = answer.lsn.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(HeaderName::from_static(sql::LSN_HEADER), lsn);
    }
    r
}

/// Accepts until `stop`; connections run on `tracker` (the drain waits
/// for them as for TCP clients).
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "serverless front: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let (shared, tasks) = (shared.clone(), tracker.clone());
        tracker.spawn(async move { connection(shared, tasks, tcp, peer).await });
    }
}

/// One HTTP connection (keep-alive: many requests), over TLS when the
/// client certificate is set.
async fn connection(shared: Arc<Shared>, tasks: TaskTracker, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let (front, tls) = {
        let g = &shared.config.load().general;
        let tls = g
            .tls
            .clone()
            .filter(|_| g.client_tls != ClientTlsMode::Disable);
        (g.http.clone(), tls)
    };
    let Some(front) = front else { return };
    let timeout = front.read_timeout;
    match tls {
        Some(tls) => match tokio::time::timeout(timeout, tls.http.accept(tcp)).await {
            Ok(Ok(stream)) => http(shared, tasks, TokioIo::new(stream), peer, timeout).await,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "serverless front: TLS handshake failed")
            }
            Err(_) => tracing::debug!(%peer, "serverless front: TLS handshake timed out"),
        },
        None => http(shared, tasks, TokioIo::new(tcp), peer, timeout).await,
    }
}

/// Serves HTTP/1.1 requests on one connection until the client closes it,
/// or, at shutdown, until the request in hand is answered.
async fn http<I>(
    shared: Arc<Shared>,
    tasks: TaskTracker,
    io: I,
    peer: SocketAddr,
    timeout: std::time::Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (stop, hard_stop) = (shared.shutdown.clone(), shared.hard_shutdown.clone());
    let service = hyper::service::service_fn(move |req| {
        let (shared, tasks) = (shared.clone(), tasks.clone());
        async move { Ok::<_, Infallible>(respond(&shared, &tasks, req, peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            // A client that does not take its answer is cut off when
            // shutdown_timeout ends.
            tokio::select! {
                r = conn => r,
                _ = hard_stop.cancelled() => Ok(()),
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "serverless front: connection ended");
    }
}

async fn respond(
    shared: &Arc<Shared>,
    tasks: &TaskTracker,
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let Some(front) = shared.config.load().general.http.clone() else {
        return json_response(Answer::empty(StatusCode::SERVICE_UNAVAILABLE), "*");
    };
    let endpoint = match (req.method(), req.uri().path()) {
        (&Method::OPTIONS, _) => "options",
        (_, "/sql") => "sql",
        (_, "/v2") => "v2",
        _ => "other",
    };
    let answer = match (req.method(), req.uri().path()) {
        (&Method::OPTIONS, _) => preflight(&req),
        (&Method::POST, "/sql") => sql::handle(shared, tasks, &front, req, peer).await,
        (&Method::GET, "/v2") if !origin_allowed(&req, &front.cors_origin) => Answer::message(
            StatusCode::FORBIDDEN,
            "this origin may not open a WebSocket here (http_cors_origin)",
        ),
        (&Method::GET, "/v2") => ws::upgrade(shared, tasks, req, peer),
        (_, "/sql") => Answer::message(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST /sql with a JSON body",
        ),
        (_, path) => Answer::message(
            StatusCode::NOT_FOUND,
            &format!(
                "no such endpoint {path}: use POST /sql (SQL over HTTP) or GET /v2 (WebSocket)"
            ),
        ),
    };
    shared
        .metrics
        .http_requests
        .with_label_values(&[endpoint, answer.status.as_str()])
        .inc();
    json_response(answer, &front.cors_origin)
}

/// Browsers apply no CORS to WebSockets, but send `Origin`: a page from
/// another origin than `http_cors_origin` may not open one. (Clients
/// that are not browsers send none.)
fn origin_allowed(req: &hyper::Request<Incoming>, allowed: &str) -> bool {
    match req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    {
        None => true,
        Some(_) if allowed == "*" => true,
        Some(origin) => origin.eq_ignore_ascii_case(allowed),
    }
}

/// The CORS preflight: any Neon header, the LSN header, POST and GET.
fn preflight(req: &hyper::Request<Incoming>) -> Answer {
    let asked = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let allowed = "Neon-Connection-String, Neon-Raw-Text-Output, Neon-Array-Mode, \
                   Neon-Batch-Isolation-Level, Neon-Batch-Read-Only, Neon-Batch-Deferrable, \
                   Pgswitch-Lsn, Content-Type, Authorization";
    let mut answer = Answer::empty(StatusCode::NO_CONTENT);
    answer.headers.push((
        header::ACCESS_CONTROL_ALLOW_METHODS,
        "GET, POST, OPTIONS".into(),
    ));
    answer.headers.push((
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        if asked.is_empty() {
            allowed.into()
        } else {
            asked.into()
        },
    ));
    answer
        .headers
        .push((header::ACCESS_CONTROL_MAX_AGE, "86400".into()));
    answer
}
