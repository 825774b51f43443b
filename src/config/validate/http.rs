//! The serverless front's settings (`http_listen` and its limits).

use std::time::Duration;

use super::Checker;
use crate::config::file::GeneralFile;
use crate::config::{HttpFront, Overrides};

/// `http_listen` (the flag beats the file) and its limits; `tls`: the
/// client certificate is set and `client_tls` is not `disable`, so the
/// front speaks HTTPS.
pub(super) fn front(
    c: &mut Checker,
    g: &GeneralFile,
    ov: &Overrides,
    tls: bool,
) -> Option<HttpFront> {
    let text = ov
        .http_listen
        .clone()
        .or_else(|| g.http_listen.clone())
        .filter(|a| !a.is_empty())?;
    let Some(listen) = std::net::ToSocketAddrs::to_socket_addrs(text.as_str())
        .ok()
        .and_then(|mut addrs| addrs.next())
    else {
        c.problem(
            "pgswitch.http_listen",
            format!("'{text}' is not an address:port"),
            "use e.g. 127.0.0.1:8432, or remove it to turn the serverless front off",
        );
        return None;
    };
    let allow_plain = g.http_allow_plain.unwrap_or(false);
    if !tls && !allow_plain && !listen.ip().is_loopback() {
        c.problem(
            "pgswitch.http_listen",
            format!("{listen} is beyond loopback, and without TLS every request would carry its password in clear"),
            "set tls_cert_file and tls_key_file (the front then speaks HTTPS), or http_allow_plain = true behind a proxy that ends TLS",
        );
    }
    let mut bytes = |key: &str, value: Option<usize>| match value {
        Some(0) => {
            c.problem(
                &format!("pgswitch.{key}"),
                "must be above 0",
                "use a size in bytes, e.g. 10485760 (10 MiB, the default)",
            );
            DEFAULT_LIMIT
        }
        Some(n) => n,
        None => DEFAULT_LIMIT,
    };
    let max_request_bytes = bytes("http_max_request_bytes", g.http_max_request_bytes);
    let max_response_bytes = bytes("http_max_response_bytes", g.http_max_response_bytes);
    let read_timeout = super::positive(
        c,
        "http_read_timeout",
        g.http_read_timeout,
        Duration::from_secs(10),
    );
    let query_timeout = super::positive(
        c,
        "http_query_timeout",
        g.http_query_timeout,
        Duration::from_secs(60),
    );
    Some(HttpFront {
        listen,
        max_request_bytes,
        max_response_bytes,
        read_timeout,
        query_timeout,
        allow_plain,
        cors_origin: g.http_cors_origin.clone().unwrap_or_else(|| "*".into()),
    })
}

/// Request and response limit (as Neon's proxy: 10 MiB).
const DEFAULT_LIMIT: usize = 10 << 20;
