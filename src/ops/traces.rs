//! OTLP traces: one span per transaction (`otlp_endpoint`), exported over
//! OTLP/HTTP (protobuf) by the OpenTelemetry SDK's batch processor.
//!
//! A span covers the transaction from its first message: the wait for a
//! server connection, then its time on the server. It carries the pool,
//! where the router sent it and why, the server, both times, the rows and
//! the first SQLSTATE. When a statement carries a sqlcommenter
//! `traceparent` comment, the span joins the application's trace as a
//! child of the span that sent it (and follows its sampling decision);
//! otherwise it starts a trace of its own, sampled at `otlp_sample_ratio`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

/// How long the exporter gives a collector to answer.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often batched spans are sent.
const EXPORT_EVERY: Duration = Duration::from_secs(1);
/// Spans kept while the collector is slow or away (then dropped).
const QUEUE: usize = 8192;

/// The exporter of a process, when `otlp_endpoint` is set.
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// The application's span, from a `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// What a transaction's span is made of, gathered as it runs (see
/// `session::forward`): allocated only while traces are on.
#[derive(Debug)]
pub struct TxSpan {
    /// When its first message arrived, less the wait for a server.
    pub start: SystemTime,
    pub started: Instant,
    pub waited: Duration,
    pub rows: u64,
    /// The first error's SQLSTATE.
    pub sqlstate: Option<[u8; 5]>,
    pub parent: Option<Parent>,
}

impl TxSpan {
    /// A transaction whose first message arrives now, after waiting
    /// `waited` for its server connection.
    pub fn begin(waited: Duration) -> Box<TxSpan> {
        let now = SystemTime::now();
        Box::new(TxSpan {
            start: now.checked_sub(waited).unwrap_or(now),
            started: Instant::now(),
            waited,
            rows: 0,
            sqlstate: None,
            parent: None,
        })
    }

    /// Notes a statement's text: the first `traceparent` seen becomes the
    /// parent.
    pub fn statement(&mut self, sql: &[u8]) {
        if self.parent.is_none() {
            self.parent = traceparent(sql);
        }
    }

    /// Notes an ErrorResponse's SQLSTATE (the first one counts).
    pub fn error(&mut self, code: &str) {
        if self.sqlstate.is_none() {
            if let Ok(c) = <[u8; 5]>::try_from(code.as_bytes()) {
                self.sqlstate = Some(c);
            }
        }
    }

    /// Notes a CommandComplete tag's row count (`SELECT 3`, `INSERT 0 2`).
    pub fn completed(&mut self, tag: &[u8]) {
        let tag = tag.strip_suffix(b"\0").unwrap_or(tag);
        let last = tag.rsplit(|&b| b == b' ').next().unwrap_or_default();
        if let Some(n) = std::str::from_utf8(last)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            self.rows += n;
        }
    }
}

/// Where a transaction ran, for its span.
pub struct Place<'a> {
    pub pool: &'a str,
    pub database: &'a str,
    pub user: &'a str,
    /// `primary` or `replica`.
    pub route: &'static str,
    /// The router's reason (empty when it did not decide).
    pub reason: &'static str,
    pub server: &'a crate::config::ServerAddr,
}

/// Sends each export from the Tokio runtime: the SDK's batch processor
/// exports from a thread of its own, and hyper's client needs the runtime.
#[derive(Debug)]
struct OnRuntime {
    handle: tokio::runtime::Handle,
    client: opentelemetry_http::hyper::HyperClient,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.handle
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// `otlp_endpoint` with the traces path, as the OTLP spec adds it to
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: `http://collector:4318` becomes
/// `http://collector:4318/v1/traces`; a URL with a path is used as is.
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    let has_path = base
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    match has_path {
        true => base.to_owned(),
        false => format!("{base}/v1/traces"),
    }
}

impl Traces {
    /// Starts the exporter (from within the runtime). `instance` names
    /// this instance in the resource (`service.instance.id`).
    pub fn start(endpoint: &str, sample_ratio: f64, instance: u8) -> Result<Arc<Traces>, String> {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = OnRuntime {
            handle: tokio::runtime::Handle::current(),
            client: opentelemetry_http::hyper::HyperClient::new(connector, EXPORT_TIMEOUT, None),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(endpoint))
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(EXPORT_EVERY)
            .with_max_queue_size(QUEUE)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("pgswitch")
            .with_attributes([
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", i64::from(instance)),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("pgswitch");
        Ok(Arc::new(Traces { provider, tracer }))
    }

    /// Ends a transaction's span now.
    pub fn finish(&self, tx: &TxSpan, place: &Place<'_>) {
        let cx = match tx.parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id),
                SpanId::from_bytes(p.span_id),
                match p.sampled {
                    true => TraceFlags::SAMPLED,
                    false => TraceFlags::default(),
                },
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let on_server = tx.started.elapsed();
        let mut attrs = vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.namespace", place.database.to_owned()),
            KeyValue::new("server.address", place.server.host.clone()),
            KeyValue::new("server.port", i64::from(place.server.port)),
            KeyValue::new("pgswitch.pool", place.pool.to_owned()),
            KeyValue::new("pgswitch.user", place.user.to_owned()),
            KeyValue::new("pgswitch.route", place.route),
            KeyValue::new("pgswitch.wait_seconds", tx.waited.as_secs_f64()),
            KeyValue::new("pgswitch.server_seconds", on_server.as_secs_f64()),
            KeyValue::new("db.response.returned_rows", tx.rows as i64),
        ];
        if !place.reason.is_empty() {
            attrs.push(KeyValue::new("pgswitch.route_reason", place.reason));
        }
        if let Some(code) = tx
            .sqlstate
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
        {
            attrs.push(KeyValue::new("db.response.status_code", code.to_owned()));
        }
        let mut span = self
            .tracer
            .span_builder(format!("transaction {}", place.database))
            .with_kind(SpanKind::Client)
            .with_start_time(tx.start)
            .with_attributes(attrs)
            .start_with_context(&self.tracer, &cx);
        if let Some(code) = tx
            .sqlstate
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
        {
            span.set_status(Status::error(format!("SQLSTATE {code}")));
        }
        span.end_with_timestamp(tx.start + tx.waited + on_server);
    }

    /// Sends what is batched and stops the exporter (blocking: call it
    /// off the runtime's worker threads).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "could not send the last traces");
        }
    }
}

/// The W3C trace context in a sqlcommenter comment:
/// `traceparent='00-<32 hex trace id>-<16 hex span id>-<2 hex flags>'`
/// (the value may be URL-encoded, which leaves these characters alone).
pub fn traceparent(sql: &[u8]) -> Option<Parent> {
    let at = memchr::memmem::find(sql, b"traceparent=")?;
    let rest = &sql[at + "traceparent=".len()..];
    let rest = rest.strip_prefix(b"'").unwrap_or(rest);
    let v = rest.get(..55)?;
    if v[0..3] != *b"00-" || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    let mut flags = [0u8; 1];
    hex(&v[3..35], &mut trace_id)?;
    hex(&v[36..52], &mut span_id)?;
    hex(&v[53..55], &mut flags)?;
    // All-zero ids are invalid (W3C Trace Context).
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
    })
}

fn hex(text: &[u8], out: &mut [u8]) -> Option<()> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlcommenter_traceparent() {
        let sql = b"SELECT 1 /*action='index',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/";
        let p = traceparent(sql).expect("parent");
        assert_eq!(p.trace_id[0], 0x4b);
        assert_eq!(p.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(p.sampled);
        let unsampled =
            b"/*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00'*/ SELECT 1";
        assert!(!traceparent(unsampled).unwrap().sampled);
        for bad in [
            &b"SELECT 1"[..],
            b"/*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7'*/",
            b"/*traceparent='01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/",
            b"/*traceparent='00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'*/",
            b"/*traceparent='00-00000000000000000000000000000000-00f067aa0ba902b7-01'*/",
        ] {
            assert_eq!(traceparent(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn rows_from_command_tags() {
        let mut tx = TxSpan::begin(Duration::ZERO);
        tx.completed(b"SELECT 3\0");
        tx.completed(b"INSERT 0 2\0");
        tx.completed(b"BEGIN\0");
        tx.completed(b"COMMIT\0");
        assert_eq!(tx.rows, 5);
        tx.error("23505");
        tx.error("25P02");
        assert_eq!(tx.sqlstate, Some(*b"23505"));
    }

    #[test]
    fn traces_path() {
        assert_eq!(traces_url("http://otel:4318"), "http://otel:4318/v1/traces");
        assert_eq!(
            traces_url("http://otel:4318/"),
            "http://otel:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://otel:4318/custom/traces"),
            "http://otel:4318/custom/traces"
        );
    }
}
