//! OpenTelemetry export end to end: the real app in front of the fake Ollama, sending its
//! spans to a test OTLP receiver that decodes them with the official protobuf definitions
//! (the `opentelemetry-proto` crate), over HTTP/protobuf and over gRPC.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::fake_ollama::{FakeConfig, FakeOllama};
use common::harness::TestApp;
use ollameter::config::{self, Overrides};
use ollameter::record::Record;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// What a test receiver got.
#[derive(Default)]
struct Received {
    /// Every export request, decoded.
    requests: Mutex<Vec<ExportTraceServiceRequest>>,
    /// The raw bodies (HTTP only).
    bodies: Mutex<Vec<Bytes>>,
    /// Export requests that arrived (answered or not).
    arrived: AtomicUsize,
    arrival: Notify,
}

impl Received {
    fn spans(&self) -> Vec<Span> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect()
    }

    fn service_names(&self) -> HashSet<String> {
        self.requests
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|r| &r.resource_spans)
            .filter_map(|rs| rs.resource.as_ref())
            .filter_map(|res| string_attr(&res.attributes, "service.name"))
            .collect()
    }

    async fn wait_spans(&self, n: usize) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let spans = self.spans();
            if spans.len() >= n || tokio::time::Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// How the HTTP receiver answers.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// 200 with an empty `ExportTraceServiceResponse`, as a collector does.
    Accept,
    /// Never answers: a collector that hangs.
    Hang,
}

/// An OTLP/HTTP receiver on `127.0.0.1:0` at `/v1/traces`.
async fn http_receiver(behaviour: Behaviour) -> (String, Arc<Received>) {
    let received = Arc::new(Received::default());
    let state = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                state.arrived.fetch_add(1, Ordering::SeqCst);
                state.arrival.notify_waiters();
                if behaviour == Behaviour::Hang {
                    std::future::pending::<()>().await;
                }
                assert_eq!(
                    headers["content-type"], "application/x-protobuf",
                    "OTLP/HTTP with protobuf bodies"
                );
                let request =
                    ExportTraceServiceRequest::decode(body.clone()).expect("a valid OTLP body");
                state.requests.lock().expect("lock").push(request);
                state.bodies.lock().expect("lock").push(body);
                (
                    StatusCode::OK,
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("receiver serves");
    });
    (format!("http://{addr}"), received)
}

/// An OTLP/gRPC receiver, the collector's trace service.
struct GrpcReceiver(Arc<Received>);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.arrived.fetch_add(1, Ordering::SeqCst);
        self.0
            .requests
            .lock()
            .expect("lock")
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_receiver() -> (String, Arc<Received>) {
    let received = Arc::new(Received::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = TraceServiceServer::new(GrpcReceiver(received.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .expect("gRPC receiver serves");
    });
    (format!("http://{addr}"), received)
}

/// A loopback address nobody listens on.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr")
}

/// The sidecar in front of `upstream`, configured by the standard OpenTelemetry
/// variables in `env` (as the process environment would give them).
async fn start_app(upstream: &str, env: &[(&str, &str)]) -> TestApp {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let loaded = config::load(None, &env, &Overrides::default()).expect("valid OTEL_* settings");
    assert!(loaded.otel.enabled, "an endpoint turns export on");
    TestApp::start_with(upstream, move |c| c.otel = loaded.otel).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string_attr(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Any::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

fn text(span: &Span, key: &str) -> String {
    match attr(span, key) {
        Some(Any::StringValue(s)) => s.clone(),
        other => panic!("{key} is not a string on {}: {other:?}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attr(span, key) {
        Some(Any::IntValue(v)) => *v,
        other => panic!("{key} is not an int on {}: {other:?}", span.name),
    }
}

fn float(span: &Span, key: &str) -> f64 {
    match attr(span, key) {
        Some(Any::DoubleValue(v)) => *v,
        other => panic!("{key} is not a double on {}: {other:?}", span.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `traceparent` header's trace id, span id and flags.
fn parse_traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

fn unix_nanos(record: &Record) -> u64 {
    u64::try_from(record.timestamp.timestamp_nanos_opt().expect("in range")).expect("after 1970")
}

/// A `/metrics` sample's value (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let page = client()
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("number"))
}

async fn wait_metric(app: &TestApp, series: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = metric(app, series).await;
        if v >= at_least || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_one_genai_span_joined_to_the_callers_trace() {
    let fake = FakeOllama::start_with(FakeConfig {
        strict_models: true,
        ..FakeConfig::default()
    })
    .await;
    let (collector, received) = http_receiver(Behaviour::Accept).await;
    let app = start_app(
        &fake.url(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_SERVICE_NAME", "ollameter-under-test"),
        ],
    )
    .await;
    let c = client();
    let secret = "SECRET-PROMPT-never-exported";

    // A generate joined to the caller's trace.
    let generate = c
        .post(format!("{}/api/generate", app.url))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .json(&json!({"model": "llama3.2", "prompt": secret, "stream": false}))
        .send()
        .await
        .expect("generate");
    assert_eq!(generate.status(), 200);
    let generate_id = generate.headers()["x-ollameter-record-id"]
        .to_str()
        .expect("id")
        .to_string();
    let answer: Value = generate.json().await.expect("json");
    let answer_text = answer["response"].as_str().expect("response").to_string();
    assert!(answer_text.len() > 8, "{answer_text}");

    // A streamed chat that starts its own trace.
    let chat = c
        .post(format!("{}/api/chat", app.url))
        .json(&json!({"model": "llama3.2", "messages": [{"role": "user", "content": secret}]}))
        .send()
        .await
        .expect("chat");
    assert_eq!(chat.status(), 200);
    chat.bytes().await.expect("stream");

    // An embedding, and a call for a model Ollama does not have.
    let embed = c
        .post(format!("{}/api/embed", app.url))
        .json(&json!({"model": "nomic-embed-text", "input": secret}))
        .send()
        .await
        .expect("embed");
    assert_eq!(embed.status(), 200);
    embed.bytes().await.expect("body");
    let missing = c
        .post(format!("{}/api/chat", app.url))
        .json(&json!({"model": "nope", "messages": [], "stream": false}))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), 404);
    missing.bytes().await.expect("body");

    let records = app.wait_records(4).await;
    assert_eq!(records.len(), 4);
    let spans = received.wait_spans(4).await;
    // Give a stray fifth span the time to show up before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let spans_now = received.spans();
    assert_eq!(spans_now.len(), 4, "one span per call: {spans:#?}");
    assert_eq!(
        received.service_names(),
        HashSet::from(["ollameter-under-test".to_string()])
    );
    let by_record: HashMap<String, &Span> = spans_now
        .iter()
        .map(|s| (text(s, "ollameter.record_id"), s))
        .collect();
    let span_of = |r: &Record| -> &Span { by_record.get(&r.id).expect("a span per record") };
    let record_of = |endpoint: &str, model: &str| -> &Record {
        records
            .iter()
            .find(|r| r.endpoint == endpoint && r.model == model)
            .expect("record")
    };
    let upstream_requests = fake.state.requests();
    let forwarded = |path: &str, model: &str| -> HeaderMap {
        upstream_requests
            .iter()
            .find(|r| r.path == path && r.json()["model"] == model)
            .expect("the fake got the call")
            .headers
            .clone()
    };

    for span in &spans_now {
        assert_eq!(span.kind, SpanKind::Client as i32, "{}", span.name);
        assert_eq!(text(span, "gen_ai.provider.name"), "ollama");
        assert_eq!(text(span, "server.address"), "127.0.0.1");
        assert_eq!(int(span, "server.port"), i64::from(fake.addr.port()));
        // Timing: the record's own start and duration.
        let record = records
            .iter()
            .find(|r| r.id == text(span, "ollameter.record_id"))
            .expect("record");
        // The store keeps the start to the millisecond; the span has it to the nanosecond.
        let stored = unix_nanos(record);
        assert!(
            (stored..stored + 1_000_000).contains(&span.start_time_unix_nano),
            "{}: starts at {} against {stored}",
            span.name,
            span.start_time_unix_nano
        );
        let duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6;
        assert!(
            (duration_ms - record.processing_time_ms).abs() < 0.001,
            "{}: {duration_ms} ms against {} ms",
            span.name,
            record.processing_time_ms
        );
        // The upstream got a traceparent naming this very span.
        let headers = forwarded(&record.endpoint, &record.model);
        let (trace, parent, flags) =
            parse_traceparent(headers["traceparent"].to_str().expect("ascii"));
        assert_eq!(trace, hex(&span.trace_id), "{}", span.name);
        assert_eq!(parent, hex(&span.span_id), "{}", span.name);
        assert_eq!(flags, "01");
    }

    // The generate: the caller's trace, its span as the parent.
    let r = record_of("/api/generate", "llama3.2");
    assert_eq!(r.id, generate_id);
    let s = span_of(r);
    assert_eq!(s.name, "text_completion llama3.2");
    assert_eq!(hex(&s.trace_id), CLIENT_TRACE);
    assert_eq!(hex(&s.parent_span_id), CLIENT_SPAN);
    assert_eq!(s.trace_state, "vendor=abc");
    assert_eq!(
        forwarded("/api/generate", "llama3.2")["tracestate"],
        "vendor=abc",
        "the caller's tracestate goes upstream as it came"
    );
    assert_eq!(
        s.status.as_ref().map_or(0, |st| st.code),
        SpanStatus::Unset as i32
    );
    assert_eq!(text(s, "gen_ai.operation.name"), "text_completion");
    assert_eq!(text(s, "gen_ai.request.model"), "llama3.2");
    assert_eq!(text(s, "gen_ai.response.model"), "llama3.2");
    assert!(attr(s, "gen_ai.request.stream").is_none(), "not streamed");
    assert_eq!(
        int(s, "gen_ai.usage.input_tokens"),
        r.prompt_tokens.expect("tokens") as i64
    );
    assert_eq!(
        int(s, "gen_ai.usage.output_tokens"),
        r.output_tokens.expect("tokens") as i64
    );
    match attr(s, "gen_ai.response.finish_reasons") {
        Some(Any::ArrayValue(a)) => assert_eq!(
            a.values
                .iter()
                .map(|v| format!("{:?}", v.value))
                .collect::<Vec<_>>(),
            vec![format!(
                "{:?}",
                Some(Any::StringValue(
                    r.done_reason.clone().expect("done_reason")
                ))
            )]
        ),
        other => panic!("finish reasons: {other:?}"),
    }
    assert_eq!(text(s, "ollameter.operation"), "generate");
    assert!(float(s, "ollameter.tokens_per_second") > 0.0);

    // The streamed chat: a trace of its own, time to first chunk and its event.
    let r = record_of("/api/chat", "llama3.2");
    let s = span_of(r);
    assert_eq!(s.name, "chat llama3.2");
    assert!(s.parent_span_id.is_empty(), "a root span");
    assert_ne!(hex(&s.trace_id), CLIENT_TRACE);
    assert!(matches!(
        attr(s, "gen_ai.request.stream"),
        Some(Any::BoolValue(true))
    ));
    let ttft_s = r.ttft_ms.expect("ttft") / 1e3;
    assert!((float(s, "gen_ai.response.time_to_first_chunk") - ttft_s).abs() < 1e-9);
    assert_eq!(s.events.len(), 1);
    assert_eq!(s.events[0].name, "ollameter.first_token");
    let event_ms = (s.events[0].time_unix_nano - s.start_time_unix_nano) as f64 / 1e6;
    assert!((event_ms - r.ttft_ms.expect("ttft")).abs() < 0.001);

    // The embedding.
    let r = record_of("/api/embed", "nomic-embed-text");
    let s = span_of(r);
    assert_eq!(s.name, "embeddings nomic-embed-text");
    assert_eq!(
        int(s, "gen_ai.usage.input_tokens"),
        r.prompt_tokens.expect("tokens") as i64
    );

    // The failure: an error status and type, no message text.
    let r = record_of("/api/chat", "nope");
    let s = span_of(r);
    let status = s.status.as_ref().expect("status");
    assert_eq!(status.code, SpanStatus::Error as i32);
    assert_eq!(status.message, "model_not_found (HTTP 404)");
    assert_eq!(text(s, "error.type"), "model_not_found");
    assert_eq!(int(s, "http.response.status_code"), 404);

    // Never a prompt or an answer in what was exported.
    for body in received.bodies.lock().expect("lock").iter() {
        let raw = String::from_utf8_lossy(body);
        assert!(!raw.contains(secret), "the prompt was exported");
        assert!(!raw.contains(&answer_text), "the answer was exported");
    }
    assert_eq!(
        metric(&app, "ollameter_otel_spans_exported_total").await,
        4.0
    );
    assert_eq!(
        metric(
            &app,
            "ollameter_otel_spans_dropped_total{reason=\"queue_full\"}"
        )
        .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_dropped_spans_never_a_call() {
    let fake = FakeOllama::start().await;
    let down = closed_port().await;
    let app = start_app(
        &fake.url(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{down}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ],
    )
    .await;
    for i in 0..5 {
        generate(&app, i).await;
    }
    assert_eq!(app.wait_records(5).await.len(), 5);
    let failed = "ollameter_otel_spans_dropped_total{reason=\"export_failed\"}";
    assert_eq!(wait_metric(&app, failed, 5.0).await, 5.0);
    assert_eq!(
        metric(&app, "ollameter_otel_spans_exported_total").await,
        0.0
    );
    assert!(metric(&app, "ollameter_otel_export_failures_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_export_the_exporter_pauses_and_spans_drop_at_the_full_queue() {
    let fake = FakeOllama::start().await;
    let down = closed_port().await;
    let app = start_app(
        &fake.url(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{down}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "2"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ],
    )
    .await;
    let failures = "ollameter_otel_export_failures_total";
    generate(&app, 0).await;
    assert_eq!(wait_metric(&app, failures, 1.0).await, 1.0);
    // The exporter now leaves the queue alone for a second: of five more calls, two
    // spans wait in the queue and three are dropped there, none encoded and sent to
    // fail (without the pause each would be its own failed export).
    for i in 1..=5 {
        generate(&app, i).await;
    }
    let full = "ollameter_otel_spans_dropped_total{reason=\"queue_full\"}";
    assert_eq!(wait_metric(&app, full, 3.0).await, 3.0);
    assert_eq!(metric(&app, "ollameter_otel_queue_depth").await, 2.0);
    assert_eq!(metric(&app, failures).await, 1.0);
    assert_eq!(app.wait_records(6).await.len(), 6);
    // After the pause (and a longer one after the next failure) the two queued spans are
    // tried, and counted when they fail.
    let failed = "ollameter_otel_spans_dropped_total{reason=\"export_failed\"}";
    assert_eq!(wait_metric(&app, failed, 3.0).await, 3.0);
    assert_eq!(metric(&app, failures).await, 3.0);
    assert_eq!(metric(&app, "ollameter_otel_queue_depth").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_hangs_fills_the_bounded_queue_and_calls_go_on() {
    let fake = FakeOllama::start().await;
    let (collector, received) = http_receiver(Behaviour::Hang).await;
    let app = start_app(
        &fake.url(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "2"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "30000"),
        ],
    )
    .await;
    // The first span's export reaches the collector, which never answers.
    let arrived = received.arrival.notified();
    generate(&app, 0).await;
    tokio::time::timeout(Duration::from_secs(10), arrived)
        .await
        .expect("the first export reached the collector");
    assert_eq!(received.arrived.load(Ordering::SeqCst), 1);
    // Six more calls while that export hangs: two spans wait in the queue, four are
    // dropped; every call is answered as usual.
    for i in 1..=6 {
        generate(&app, i).await;
    }
    assert_eq!(app.wait_records(7).await.len(), 7);
    let full = "ollameter_otel_spans_dropped_total{reason=\"queue_full\"}";
    assert_eq!(wait_metric(&app, full, 4.0).await, 4.0);
    assert_eq!(metric(&app, "ollameter_otel_queue_depth").await, 2.0);
    assert_eq!(received.arrived.load(Ordering::SeqCst), 1, "still hanging");
}

/// One non-streamed generate (prompt `p{i}`) through the sidecar, answered in full.
async fn generate(app: &TestApp, i: usize) {
    let resp = client()
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "llama3.2", "prompt": format!("p{i}"), "stream": false}))
        .send()
        .await
        .expect("the call is answered");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["done"], true);
}

/// Non-streamed generates of one token, each with `traceparent` (if any); returns the
/// `traceparent` each call's upstream request carried.
async fn calls(app: &TestApp, fake: &FakeOllama, parents: &[Option<String>]) -> Vec<String> {
    let c = client();
    let before = fake.state.requests().len();
    for parent in parents {
        let mut request = c
            .post(format!("{}/api/generate", app.url))
            .json(&json!({"model": "llama3.2", "prompt": "x", "stream": false, "options": {"num_predict": 1}}));
        if let Some(parent) = parent {
            request = request.header("traceparent", parent);
        }
        let resp = request.send().await.expect("call");
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("body");
    }
    fake.state.requests()[before..]
        .iter()
        .filter(|r| r.path == "/api/generate")
        .map(|r| r.header("traceparent").expect("a traceparent").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampling_ratio_is_honoured_and_the_upstream_hears_the_decision() {
    let fake = FakeOllama::start_with(FakeConfig {
        chunk_gap: Duration::ZERO,
        ..FakeConfig::default()
    })
    .await;
    let (collector, received) = http_receiver(Behaviour::Accept).await;
    let app = start_app(
        &fake.url(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ],
    )
    .await;
    let n = 400;
    let forwarded = calls(&app, &fake, &vec![None; n]).await;
    assert_eq!(forwarded.len(), n);
    let sampled: HashSet<String> = forwarded
        .iter()
        .map(|h| parse_traceparent(h))
        .filter(|(_, _, flags)| flags == "01")
        .map(|(_, span, _)| span)
        .collect();
    // Binomial(400, 0.25): mean 100, sd 8.7; 60..140 is over four and a half sd.
    assert!(
        (60..=140).contains(&sampled.len()),
        "{} of {n} sampled at 0.25",
        sampled.len()
    );
    assert_eq!(app.wait_records(n).await.len(), n);
    let spans = received.wait_spans(sampled.len()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let exported: HashSet<String> = received.spans().iter().map(|s| hex(&s.span_id)).collect();
    assert_eq!(spans.len(), sampled.len());
    assert_eq!(
        exported, sampled,
        "exactly the calls sampled, as the upstream was told"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_based_sampling_follows_the_caller() {
    let fake = FakeOllama::start_with(FakeConfig {
        chunk_gap: Duration::ZERO,
        ..FakeConfig::default()
    })
    .await;
    let (collector, received) = http_receiver(Behaviour::Accept).await;
    let app = start_app(
        &fake.url(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    )
    .await;
    let parent = |i: usize, flags: &str| Some(format!("00-{:032x}-{:016x}-{flags}", i + 1, i + 1));
    let mut parents: Vec<Option<String>> = (0..10).map(|i| parent(i, "01")).collect();
    parents.extend((10..20).map(|i| parent(i, "00")));
    parents.extend((0..10).map(|_| None));
    let forwarded = calls(&app, &fake, &parents).await;
    let flags: Vec<String> = forwarded.iter().map(|h| parse_traceparent(h).2).collect();
    assert_eq!(
        flags[..10],
        vec!["01".to_string(); 10][..],
        "sampled callers"
    );
    assert_eq!(flags[10..], vec!["00".to_string(); 20][..], "the rest");
    assert_eq!(app.wait_records(30).await.len(), 30);
    received.wait_spans(10).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let spans = received.spans();
    assert_eq!(spans.len(), 10);
    let traces: HashSet<String> = spans.iter().map(|s| hex(&s.trace_id)).collect();
    let expected: HashSet<String> = (0..10).map(|i| format!("{:032x}", i + 1)).collect();
    assert_eq!(traces, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_over_grpc_when_asked() {
    let fake = FakeOllama::start().await;
    let (collector, received) = grpc_receiver().await;
    let app = start_app(
        &fake.url(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
        ],
    )
    .await;
    let c = client();
    for model in ["llama3.2", "qwen3:8b"] {
        let resp = c
            .post(format!("{}/api/chat", app.url))
            .json(&json!({"model": model, "messages": [], "stream": false}))
            .send()
            .await
            .expect("chat");
        assert_eq!(resp.status(), 200);
        resp.bytes().await.expect("body");
    }
    let spans = received.wait_spans(2).await;
    let names: HashSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, HashSet::from(["chat llama3.2", "chat qwen3:8b"]));
    assert_eq!(
        received.service_names(),
        HashSet::from(["ollameter".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_changes_on_the_wire() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let resp = client()
        .post(format!("{}/api/generate", app.url))
        .header("traceparent", &parent)
        .json(&json!({"model": "llama3.2", "prompt": "x", "stream": false}))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");
    let forwarded = fake
        .state
        .last_request_to("/api/generate")
        .expect("forwarded");
    assert_eq!(
        forwarded.header("traceparent"),
        Some(parent.as_str()),
        "the client's header passes through untouched"
    );
    let page = client()
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(!page.contains("ollameter_otel_"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fallback_attempt_is_a_span_under_the_callers_span() {
    let fake = FakeOllama::start().await;
    let (collector, received) = http_receiver(Behaviour::Accept).await;
    let env: Vec<(String, String)> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "20"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let otel = config::load(None, &env, &Overrides::default())
        .expect("valid")
        .otel;
    let app = TestApp::start_with(&fake.url(), move |c| {
        c.otel = otel;
        // `crash:1b` answers 500 and `busy:1b` 503 in the fake; `fast:1b` answers.
        c.routing
            .fallbacks
            .insert("crash:1b".into(), vec!["busy:1b".into(), "fast:1b".into()]);
    })
    .await;
    let resp = client()
        .post(format!("{}/api/chat", app.url))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&json!({"model": "crash:1b", "messages": [], "stream": false}))
        .send()
        .await
        .expect("chat");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");
    assert_eq!(app.wait_records(3).await.len(), 3);
    let spans = received.wait_spans(3).await;
    let mut seen: Vec<(i64, String, String, bool)> = spans
        .iter()
        .map(|s| {
            assert_eq!(hex(&s.trace_id), CLIENT_TRACE);
            assert_eq!(hex(&s.parent_span_id), CLIENT_SPAN);
            assert_eq!(text(s, "ollameter.requested_model"), "crash:1b");
            let failed = s
                .status
                .as_ref()
                .is_some_and(|st| st.code == SpanStatus::Error as i32);
            (
                int(s, "ollameter.attempt"),
                s.name.clone(),
                text(s, "ollameter.route_reason"),
                failed,
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (1, "chat crash:1b".into(), "explicit".into(), true),
            (2, "chat busy:1b".into(), "fallback".into(), true),
            (3, "chat fast:1b".into(), "fallback".into(), false),
        ]
    );
    // Each attempt told the upstream its own span.
    let parents: HashSet<String> = fake
        .state
        .requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .map(|r| parse_traceparent(r.header("traceparent").expect("traceparent")).1)
        .collect();
    let ids: HashSet<String> = spans.iter().map(|s| hex(&s.span_id)).collect();
    assert_eq!(parents, ids);
}

/// An Ollama and an OpenAI-compatible server behind one ollameter (two fakes; the second
/// configured as `kind = "openai"`): each call's span names the upstream that served it
/// (`server.address`, `server.port`, `ollameter.host`) and its kind
/// (`gen_ai.provider.name`), and so do the current GenAI metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_span_names_the_upstream_that_served_it_and_its_kind() {
    use ollameter::upstream::{KindSetting, UpstreamKind};
    let ollama = FakeOllama::start().await;
    let compatible = FakeOllama::start().await;
    let (collector, received) = http_receiver(Behaviour::Accept).await;
    let env: Vec<(String, String)> = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "20"),
        (
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            "gen_ai_latest_experimental",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let otel = config::load(None, &env, &Overrides::default())
        .expect("valid")
        .otel;
    let upstreams = format!("{},{}", ollama.url(), compatible.url());
    let app = TestApp::start_with(&upstreams, move |c| {
        c.otel = otel;
        c.proxy.upstreams[0].name = "gpu0".into();
        c.proxy.upstreams[1].name = "llama".into();
        c.proxy.upstreams[1].kind = KindSetting::Fixed(UpstreamKind::OpenAi);
    })
    .await;
    let c = client();
    for (host, path, body) in [
        (
            "gpu0",
            "/api/chat",
            json!({"model": "llama3.2", "messages": [], "stream": false}),
        ),
        (
            "llama",
            "/v1/chat/completions",
            json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "llama",
            "/v1/chat/completions",
            json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": true}),
        ),
    ] {
        let resp = c
            .post(format!("{}{path}", app.url))
            .header("x-ollameter-upstream", host)
            .json(&body)
            .send()
            .await
            .expect("call");
        assert_eq!(resp.status(), 200, "{host} {path}");
        assert_eq!(resp.headers()["x-ollameter-upstream"], host);
        resp.bytes().await.expect("body");
    }
    assert_eq!(app.wait_records(3).await.len(), 3);
    let spans = received.wait_spans(3).await;
    assert_eq!(spans.len(), 3);
    let mut seen: Vec<(String, String, String, i64)> = spans
        .iter()
        .map(|s| {
            (
                text(s, "ollameter.host"),
                text(s, "gen_ai.provider.name"),
                text(s, "server.address"),
                int(s, "server.port"),
            )
        })
        .collect();
    seen.sort();
    let port = |f: &FakeOllama| i64::from(f.addr.port());
    assert_eq!(
        seen,
        vec![
            (
                "gpu0".into(),
                "ollama".into(),
                "127.0.0.1".into(),
                port(&ollama)
            ),
            (
                "llama".into(),
                "openai_compatible".into(),
                "127.0.0.1".into(),
                port(&compatible)
            ),
            (
                "llama".into(),
                "openai_compatible".into(),
                "127.0.0.1".into(),
                port(&compatible)
            ),
        ]
    );
    // The current GenAI metrics follow the same kinds.
    let duration = "gen_ai_client_inference_duration_seconds_count";
    assert_eq!(
        metric(
            &app,
            &format!(
                "{duration}{{gen_ai_provider_name=\"ollama\",gen_ai_operation_name=\"chat\",gen_ai_request_model=\"llama3.2\"}}"
            )
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &app,
            &format!(
                "{duration}{{gen_ai_provider_name=\"openai_compatible\",gen_ai_operation_name=\"chat\",gen_ai_request_model=\"llama3.2\"}}"
            )
        )
        .await,
        2.0
    );
}
