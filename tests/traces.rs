//! OTLP traces: one span per transaction, sent to an OTLP/HTTP collector
//! (a stub in this process that decodes what it receives), parented to
//! the application's span by a sqlcommenter `traceparent` comment.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// What the stub collector received.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    resources: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

impl Collector {
    /// Serves OTLP/HTTP on a free loopback port; returns its base URL.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let me = me.clone();
                        async move { me.receive(req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    async fn receive(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
        assert_eq!(req.uri().path(), "/v1/traces");
        assert_eq!(
            req.headers()["content-type"].to_str().unwrap(),
            "application/x-protobuf"
        );
        let body = req.into_body().collect().await?.to_bytes();
        let export = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
        for rs in export.resource_spans {
            let resource = rs
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            self.resources.lock().unwrap().push(resource);
            for ss in rs.scope_spans {
                self.spans.lock().unwrap().extend(ss.spans);
            }
        }
        Ok(hyper::Response::new(Full::new(Bytes::new())))
    }

    /// The span of trace `trace_id` (hex), once it has arrived.
    async fn span(&self, trace_id: &str) -> Span {
        let mut found = None;
        let arrived = eventually(Duration::from_secs(20), || {
            let spans = self.spans.lock().unwrap();
            found = spans.iter().find(|s| hex(&s.trace_id) == trace_id).cloned();
            std::future::ready(found.is_some())
        })
        .await;
        assert!(arrived, "no span of trace {trace_id} arrived");
        found.unwrap()
    }

    /// Every span received so far.
    fn all(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

fn attributes(
    kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh W3C trace id and span id, as an application's tracer makes them.
fn ids(n: u8) -> (String, String) {
    let salt = std::process::id();
    (
        format!("{salt:08x}{n:02x}{:022x}", 0xabcdef_u64),
        format!("{:014x}{n:02x}", 0x1234_u64),
    )
}

fn comment(trace: &str, span: &str, flags: &str) -> String {
    format!("/*application='shop',traceparent='00-{trace}-{span}-{flags}'*/")
}

#[tokio::test]
async fn one_span_per_transaction_parented_by_sqlcommenter() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let settings = format!(
        "pool_mode = \"transaction\"\npool_size = 2\notlp_endpoint = \"{endpoint}\"\ninstance_id = 9"
    );
    let proxy = Proxy::start(cluster_config(&settings, &replica_urls())).await;
    let c = proxy.client().await;
    let replicas: Vec<i32> = (0..2).map(replica_port).collect();
    let in_rotation = eventually(Duration::from_secs(15), || async {
        let port: i32 = first_row(&c, "SELECT inet_server_port()").await[0]
            .parse()
            .unwrap();
        replicas.contains(&port)
    })
    .await;
    assert!(in_rotation, "no read reached a replica");

    // A single read, simple protocol, comment at the end (sqlcommenter's
    // place): a replica serves it.
    let (t1, s1) = ids(1);
    c.batch_execute(&format!(
        "SELECT g FROM generate_series(1, 3) g {}",
        comment(&t1, &s1, "01")
    ))
    .await
    .unwrap();
    // An unsampled parent: no span for it.
    let (t0, s0) = ids(0);
    c.batch_execute(&format!("SELECT 1 {}", comment(&t0, &s0, "00")))
        .await
        .unwrap();
    // A transaction with a failing statement: one span, on the primary,
    // with the first error's SQLSTATE.
    let (t2, s2) = ids(2);
    c.batch_execute(&format!(
        "BEGIN {}; SELECT generate_series(1, 4)",
        comment(&t2, &s2, "01")
    ))
    .await
    .unwrap();
    let e = c.batch_execute("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e), "22012");
    c.batch_execute("ROLLBACK").await.unwrap();
    // The extended protocol: the comment rides in the Parse.
    let (t3, s3) = ids(3);
    let n: i32 = c
        .query_one(
            &format!("SELECT $1::int + 1 {}", comment(&t3, &s3, "01")),
            &[&41],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 42);
    // Without a comment: a trace of its own (otlp_sample_ratio 1.0).
    c.batch_execute("SELECT generate_series(1, 7)")
        .await
        .unwrap();

    let read = collector.span(&t1).await;
    assert_eq!(hex(&read.parent_span_id), s1, "child of the app's span");
    assert_eq!(read.name, "transaction app");
    assert_eq!(read.kind, 3, "SPAN_KIND_CLIENT");
    assert!(read.end_time_unix_nano >= read.start_time_unix_nano);
    let a = attributes(&read.attributes);
    assert_eq!(a["pgswitch.pool"], "app/app");
    assert_eq!(a["pgswitch.route"], "replica", "{a:?}");
    assert!(!a["pgswitch.route_reason"].is_empty(), "{a:?}");
    assert_eq!(a["db.system.name"], "postgresql");
    assert_eq!(a["db.namespace"], "app");
    assert_eq!(a["db.response.returned_rows"], "3");
    assert_eq!(a["server.address"], "127.0.0.1");
    let port: i32 = a["server.port"].parse().unwrap();
    assert!(replicas.contains(&port), "{a:?}");
    for key in ["pgswitch.wait_seconds", "pgswitch.server_seconds"] {
        let secs: f64 = a[key].parse().unwrap();
        assert!(secs >= 0.0, "{key}: {a:?}");
    }
    assert!(!a.contains_key("db.response.status_code"), "{a:?}");

    let tx = collector.span(&t2).await;
    assert_eq!(hex(&tx.parent_span_id), s2);
    let a = attributes(&tx.attributes);
    assert_eq!(a["pgswitch.route"], "primary");
    assert_eq!(a["server.port"], primary_port().to_string());
    assert_eq!(a["db.response.status_code"], "22012");
    assert_eq!(a["db.response.returned_rows"], "4", "SELECT 4");
    let status = tx.status.expect("status");
    assert_eq!(status.code, 2, "STATUS_CODE_ERROR");
    assert!(status.message.contains("22012"), "{}", status.message);

    // Its Bind names the statement whose text carries the comment: the
    // execution's span joins the trace too (as does the prepare's).
    let executed = eventually(Duration::from_secs(20), || {
        let spans = collector.all();
        std::future::ready(spans.iter().any(|s| {
            hex(&s.trace_id) == t3
                && hex(&s.parent_span_id) == s3
                && attributes(&s.attributes)["db.response.returned_rows"] == "1"
        }))
    })
    .await;
    assert!(
        executed,
        "no span for the execution of the prepared statement"
    );

    // The comment-less transaction starts a trace of its own. Spans go out
    // in order, so by then the unsampled one would have too.
    let own = eventually(Duration::from_secs(20), || {
        let spans = collector.all();
        std::future::ready(spans.iter().any(|s| {
            s.parent_span_id.is_empty()
                && attributes(&s.attributes)["db.response.returned_rows"] == "7"
        }))
    })
    .await;
    assert!(own, "no span for the transaction without a traceparent");
    let spans = collector.all();
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) != t0),
        "unsampled parent exported"
    );
    let resource = collector.resources.lock().unwrap()[0].clone();
    assert_eq!(resource["service.name"], "pgswitch");
    assert_eq!(resource["service.instance.id"], "9");

    drop(c);
    proxy.stop().await;
}
