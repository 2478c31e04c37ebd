//! The span of one finished call, encoded from its record straight into an OTLP export
//! request (protobuf, [`super::wire`]): a CLIENT span named
//! `{gen_ai.operation.name} {gen_ai.request.model}` with the GenAI conventions'
//! attributes, ollameter's own under `ollameter.*`, an event at the first token, and an
//! error status with `error.type` when the call failed. Never a prompt or answer text, and
//! never the upstream's error text either (only its kind and status).
//!
//! [`Batch`] collects encoded spans; [`Batch::request`] wraps them in one
//! `ExportTraceServiceRequest` with the service's resource and ollameter's
//! instrumentation scope, both encoded once at start.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::SpanId;
use opentelemetry::{Array, Value};

use super::CallTrace;
use super::wire;
use crate::record::{ErrorKind, Record, gen_ai_operation_name};

/// The name of the event at the first chunk carrying generated content.
pub const FIRST_TOKEN_EVENT: &str = "ollameter.first_token";

/// `Span.kind` CLIENT.
const SPAN_KIND_CLIENT: u64 = 3;
/// `Status.code` ERROR.
const STATUS_CODE_ERROR: u64 = 2;
/// `SpanFlags`: the flags say whether the parent is remote, and it is.
const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
const CONTEXT_IS_REMOTE: u32 = 0x200;

// Field numbers of the OTLP messages (opentelemetry/proto/trace/v1/trace.proto,
// common/v1/common.proto, collector/trace/v1/trace_service.proto).
mod field {
    pub const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub const RESOURCE_ATTRIBUTES: u32 = 1;
    pub const SCOPE_SPANS_SCOPE: u32 = 1;
    pub const SCOPE_SPANS_SPANS: u32 = 2;
    pub const SCOPE_NAME: u32 = 1;
    pub const SCOPE_VERSION: u32 = 2;
    pub const SPAN_TRACE_ID: u32 = 1;
    pub const SPAN_SPAN_ID: u32 = 2;
    pub const SPAN_TRACE_STATE: u32 = 3;
    pub const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub const SPAN_NAME: u32 = 5;
    pub const SPAN_KIND: u32 = 6;
    pub const SPAN_START: u32 = 7;
    pub const SPAN_END: u32 = 8;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const SPAN_EVENTS: u32 = 11;
    pub const SPAN_STATUS: u32 = 15;
    pub const SPAN_FLAGS: u32 = 16;
    pub const EVENT_TIME: u32 = 1;
    pub const EVENT_NAME: u32 = 2;
    pub const EVENT_ATTRIBUTES: u32 = 3;
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;
    pub const KEY_VALUE_KEY: u32 = 1;
    pub const KEY_VALUE_VALUE: u32 = 2;
    pub const ANY_STRING: u32 = 1;
    pub const ANY_BOOL: u32 = 2;
    pub const ANY_INT: u32 = 3;
    pub const ANY_DOUBLE: u32 = 4;
    pub const ANY_ARRAY: u32 = 5;
    pub const ARRAY_VALUES: u32 = 1;
}

/// The upstream as `server.address` and `server.port` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Host name or address.
    pub address: String,
    /// TCP port.
    pub port: u16,
}

impl Server {
    /// The host and port of an `http://host:port` URL (port 80 when none is given).
    pub fn of_url(url: &str) -> Server {
        let rest = url.trim().strip_prefix("http://").unwrap_or(url);
        let authority = rest.split('/').next().unwrap_or("");
        let (address, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                match port.parse::<u16>() {
                    Ok(p) => (host, p),
                    Err(_) => (authority, 80),
                }
            }
            _ => (authority, 80),
        };
        Server {
            address: address
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        }
    }
}

/// Every upstream's [`Server`] by its name (the records' `host`).
#[derive(Debug, Clone)]
pub struct Servers {
    by_name: HashMap<String, Server>,
    first: Server,
}

impl Servers {
    /// The upstreams as `(name, url)`, the first one first (it serves records that name
    /// no host).
    pub fn new<'a>(upstreams: impl IntoIterator<Item = (&'a str, &'a str)>) -> Servers {
        let mut by_name = HashMap::new();
        let mut first = None;
        for (name, url) in upstreams {
            let server = Server::of_url(url);
            first.get_or_insert_with(|| server.clone());
            by_name.entry(name.to_string()).or_insert(server);
        }
        Servers {
            by_name,
            first: first.unwrap_or_else(|| Server::of_url("")),
        }
    }

    /// The upstream a record names, or the first.
    pub fn of(&self, host: Option<&str>) -> &Server {
        host.and_then(|h| self.by_name.get(h))
            .unwrap_or(&self.first)
    }
}

/// Spans being gathered into one export request.
#[derive(Debug)]
pub struct Batch {
    /// `resource` and `scope` fields, encoded once.
    resource: Vec<u8>,
    scope: Vec<u8>,
    /// The `spans` fields of the scope's `ScopeSpans`, one per span.
    spans: Vec<u8>,
    len: usize,
}

impl Batch {
    /// An empty batch for spans of `resource` (the service's attributes), from
    /// ollameter's instrumentation scope.
    pub fn new<'a>(resource: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Batch {
        let mut encoded_resource = Vec::new();
        for (key, value) in resource {
            attribute(
                &mut encoded_resource,
                field::RESOURCE_ATTRIBUTES,
                key,
                value,
            );
        }
        let mut scope = Vec::new();
        wire::string(&mut scope, field::SCOPE_NAME, "ollameter");
        wire::string(&mut scope, field::SCOPE_VERSION, env!("CARGO_PKG_VERSION"));
        Batch {
            resource: encoded_resource,
            scope,
            spans: Vec::new(),
            len: 0,
        }
    }

    /// Spans in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no span.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the span of a finished call to `server`.
    pub fn push(&mut self, trace: &CallTrace, record: &Record, server: &Server) {
        encode(&mut self.spans, trace, record, server);
        self.len += 1;
    }

    /// The `ExportTraceServiceRequest` of the spans gathered, leaving the batch empty.
    pub fn request(&mut self) -> Vec<u8> {
        let mut scope_spans = Vec::with_capacity(8);
        wire::bytes(&mut scope_spans, field::SCOPE_SPANS_SCOPE, &self.scope);
        let scope_spans_len = scope_spans.len() + self.spans.len();
        let mut resource_spans = Vec::with_capacity(self.resource.len() + 16);
        wire::bytes(
            &mut resource_spans,
            field::RESOURCE_SPANS_RESOURCE,
            &self.resource,
        );
        let mut body = Vec::with_capacity(resource_spans.len() + scope_spans_len + 32);
        let resource_spans_len =
            resource_spans.len() + 1 + wire::varint_len(scope_spans_len as u64) + scope_spans_len;
        // ExportTraceServiceRequest { resource_spans: [ResourceSpans { resource,
        // scope_spans: [ScopeSpans { scope, spans }] }] }, lengths first.
        body.push(((field::REQUEST_RESOURCE_SPANS << 3) | 2) as u8);
        wire::varint(&mut body, resource_spans_len as u64);
        body.extend_from_slice(&resource_spans);
        body.push(((field::RESOURCE_SPANS_SCOPE_SPANS << 3) | 2) as u8);
        wire::varint(&mut body, scope_spans_len as u64);
        body.extend_from_slice(&scope_spans);
        body.extend_from_slice(&self.spans);
        self.spans.clear();
        self.len = 0;
        body
    }
}

/// Appends the span of a finished call to `server` as a `ScopeSpans.spans` field.
pub fn encode(buf: &mut Vec<u8>, trace: &CallTrace, record: &Record, server: &Server) {
    use field::*;
    let span = wire::begin(buf, SCOPE_SPANS_SPANS, 2);
    let context = &trace.span_context;
    wire::bytes(buf, SPAN_TRACE_ID, &context.trace_id().to_bytes());
    wire::bytes(buf, SPAN_SPAN_ID, &context.span_id().to_bytes());
    let state = context.trace_state().header();
    if !state.is_empty() {
        wire::string(buf, SPAN_TRACE_STATE, &state);
    }
    let remote_parent = trace.parent_span_id != SpanId::INVALID;
    if remote_parent {
        wire::bytes(buf, SPAN_PARENT_SPAN_ID, &trace.parent_span_id.to_bytes());
    }
    let operation = gen_ai_operation_name(&record.endpoint);
    let name = wire::begin(buf, SPAN_NAME, 1);
    buf.extend_from_slice(operation.as_bytes());
    if !record.model.is_empty() {
        buf.push(b' ');
        buf.extend_from_slice(record.model.as_bytes());
    }
    wire::end(buf, name);
    wire::uint(buf, SPAN_KIND, SPAN_KIND_CLIENT);
    let start = nanos(record);
    wire::fixed64(buf, SPAN_START, start);
    wire::fixed64(
        buf,
        SPAN_END,
        start.saturating_add(duration_nanos(record.processing_time_ms)),
    );

    let a = SPAN_ATTRIBUTES;
    string(buf, a, "gen_ai.operation.name", operation);
    string(buf, a, "gen_ai.provider.name", trace.provider);
    if !record.model.is_empty() {
        string(buf, a, "gen_ai.request.model", &record.model);
        if record.success {
            // Ollama answers with the model it was asked for.
            string(buf, a, "gen_ai.response.model", &record.model);
        }
    }
    string(buf, a, "server.address", &server.address);
    int(buf, a, "server.port", i64::from(server.port));
    if record.stream {
        boolean(buf, a, "gen_ai.request.stream", true);
    }
    if let Some(tokens) = record.prompt_tokens {
        int(buf, a, "gen_ai.usage.input_tokens", count(tokens));
    }
    if let Some(tokens) = record.output_tokens {
        int(buf, a, "gen_ai.usage.output_tokens", count(tokens));
    }
    if operation != "embeddings" {
        // The conventions ask for `error` where a finish reason was expected but the
        // generation ended abnormally.
        let reason = match (&record.done_reason, record.success) {
            (Some(reason), true) => Some(reason.as_str()),
            (_, false) => Some("error"),
            (None, true) => None,
        };
        if let Some(reason) = reason {
            string_list(buf, a, "gen_ai.response.finish_reasons", reason);
        }
    }
    if let Some(ttft_ms) = record.ttft_ms {
        double(buf, a, "gen_ai.response.time_to_first_chunk", ttft_ms / 1e3);
    }
    if let Some(status) = record.http_status {
        int(buf, a, "http.response.status_code", i64::from(status));
    }
    if let Some(kind) = record.error_kind {
        string(buf, a, "error.type", kind.as_str());
    }
    string(buf, a, "ollameter.record_id", &record.id);
    string(buf, a, "ollameter.operation", &record.operation);
    string(buf, a, "ollameter.endpoint", &record.endpoint);
    string(buf, a, "ollameter.source", record.source.as_str());
    if let Some(requested) = &record.requested_model {
        string(buf, a, "ollameter.requested_model", requested);
    }
    if let Some(reason) = record.route_reason {
        string(buf, a, "ollameter.route_reason", reason.as_str());
    }
    int(buf, a, "ollameter.attempt", i64::from(record.attempt));
    match &record.host {
        Some(host) => string(buf, a, "ollameter.host", host),
        None => {
            let host = format!("{}:{}", server.address, server.port);
            string(buf, a, "ollameter.host", &host);
        }
    }
    let numbers = [
        ("ollameter.tokens_per_second", record.tokens_per_second),
        (
            "ollameter.prompt_tokens_per_second",
            record.prompt_tokens_per_second,
        ),
        ("ollameter.load_duration_ms", record.load_duration_ms),
        ("ollameter.quality_score", record.quality_score),
        ("ollameter.vram_mb", record.vram_mb),
        ("ollameter.gpu_memory_mb", record.gpu_memory_mb),
        ("ollameter.gpu_memory_peak_mb", record.gpu_memory_peak_mb),
        ("ollameter.ollama_rss_mb", record.ollama_rss_mb),
        ("ollameter.ollama_rss_peak_mb", record.ollama_rss_peak_mb),
        ("ollameter.gpu_free_mb", record.gpu_free_mb),
    ];
    for (key, value) in numbers {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            double(buf, a, key, v);
        }
    }
    if record.tokens_estimated {
        boolean(buf, a, "ollameter.tokens_estimated", true);
    }

    if let Some(ttft_ms) = record.ttft_ms {
        let event = wire::begin(buf, SPAN_EVENTS, 1);
        wire::fixed64(
            buf,
            EVENT_TIME,
            start.saturating_add(duration_nanos(ttft_ms)),
        );
        wire::string(buf, EVENT_NAME, FIRST_TOKEN_EVENT);
        double(
            buf,
            EVENT_ATTRIBUTES,
            "gen_ai.response.time_to_first_chunk",
            ttft_ms / 1e3,
        );
        wire::end(buf, event);
    }
    // Instrumentation leaves a success unset (the conventions' Recording Errors): no
    // status field at all, which reads as UNSET.
    if !record.success {
        let status = wire::begin(buf, SPAN_STATUS, 1);
        let message = wire::begin(buf, STATUS_MESSAGE, 1);
        error_description(buf, record);
        wire::end(buf, message);
        wire::uint(buf, STATUS_CODE, STATUS_CODE_ERROR);
        wire::end(buf, status);
    }
    let mut flags = u32::from(context.trace_flags().to_u8()) | CONTEXT_HAS_IS_REMOTE;
    if remote_parent {
        flags |= CONTEXT_IS_REMOTE;
    }
    wire::fixed32(buf, SPAN_FLAGS, flags);
    wire::end(buf, span);
}

/// The status description of a failed call: its kind and HTTP status, never the
/// upstream's message (which could quote the request).
fn error_description(buf: &mut Vec<u8>, record: &Record) {
    let kind = record.error_kind.map_or("error", ErrorKind::as_str);
    buf.extend_from_slice(kind.as_bytes());
    if let Some(status) = record.http_status {
        buf.extend_from_slice(b" (HTTP ");
        buf.extend_from_slice(status.to_string().as_bytes());
        buf.push(b')');
    }
}

/// A `KeyValue` field `field` whose value `write` encodes as `AnyValue` fields.
fn key_value(buf: &mut Vec<u8>, field: u32, key: &str, write: impl FnOnce(&mut Vec<u8>)) {
    let kv = wire::begin(buf, field, 1);
    wire::string(buf, field::KEY_VALUE_KEY, key);
    let value = wire::begin(buf, field::KEY_VALUE_VALUE, 1);
    write(buf);
    wire::end(buf, value);
    wire::end(buf, kv);
}

fn string(buf: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    key_value(buf, field, key, |b| {
        wire::string(b, field::ANY_STRING, value)
    });
}

fn int(buf: &mut Vec<u8>, field: u32, key: &str, value: i64) {
    key_value(buf, field, key, |b| wire::int64(b, field::ANY_INT, value));
}

fn double(buf: &mut Vec<u8>, field: u32, key: &str, value: f64) {
    key_value(buf, field, key, |b| {
        wire::double(b, field::ANY_DOUBLE, value)
    });
}

fn boolean(buf: &mut Vec<u8>, field: u32, key: &str, value: bool) {
    key_value(buf, field, key, |b| {
        wire::boolean(b, field::ANY_BOOL, value)
    });
}

/// A list of one string.
fn string_list(buf: &mut Vec<u8>, field: u32, key: &str, value: &str) {
    key_value(buf, field, key, |b| {
        let array = wire::begin(b, field::ANY_ARRAY, 1);
        let item = wire::begin(b, field::ARRAY_VALUES, 1);
        wire::string(b, field::ANY_STRING, value);
        wire::end(b, item);
        wire::end(b, array);
    });
}

/// Any OpenTelemetry attribute (the resource's, which come from the configuration and
/// `OTEL_RESOURCE_ATTRIBUTES`).
fn attribute(buf: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    fn list<T>(buf: &mut Vec<u8>, items: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
        let array = wire::begin(buf, field::ANY_ARRAY, 1);
        for item in items {
            let any = wire::begin(buf, field::ARRAY_VALUES, 1);
            write(buf, item);
            wire::end(buf, any);
        }
        wire::end(buf, array);
    }
    key_value(buf, field, key, |b| match value {
        Value::Bool(v) => wire::boolean(b, field::ANY_BOOL, *v),
        Value::I64(v) => wire::int64(b, field::ANY_INT, *v),
        Value::F64(v) => wire::double(b, field::ANY_DOUBLE, *v),
        Value::String(v) => wire::string(b, field::ANY_STRING, v.as_str()),
        Value::Array(Array::Bool(v)) => list(b, v, |b, x| wire::boolean(b, field::ANY_BOOL, *x)),
        Value::Array(Array::I64(v)) => list(b, v, |b, x| wire::int64(b, field::ANY_INT, *x)),
        Value::Array(Array::F64(v)) => list(b, v, |b, x| wire::double(b, field::ANY_DOUBLE, *x)),
        Value::Array(Array::String(v)) => list(b, v, |b, x| {
            wire::string(b, field::ANY_STRING, x.as_str());
        }),
        // Kinds added to the API later: as text.
        other => wire::string(b, field::ANY_STRING, &other.to_string()),
    });
}

fn count(tokens: u64) -> i64 {
    i64::try_from(tokens).unwrap_or(i64::MAX)
}

/// The record's start, in nanoseconds since the Unix epoch (0 before 1970 or after 2262).
fn nanos(record: &Record) -> u64 {
    record
        .timestamp
        .timestamp_nanos_opt()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// `ms` milliseconds in nanoseconds (0 when not a positive finite number; at most
/// `u64::MAX`, some 584 years).
fn duration_nanos(ms: f64) -> u64 {
    let s = ms / 1e3;
    if s.is_finite() && s > 0.0 {
        Duration::try_from_secs_f64(s).map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        })
    } else {
        // Zero, negative, NaN or infinite.
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RouteReason;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use prost::Message;

    fn trace(parent: SpanId, provider: &'static str) -> CallTrace {
        CallTrace {
            span_context: SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex"),
                SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
                TraceFlags::SAMPLED,
                false,
                TraceState::from_key_value([("vendor", "x")]).expect("state"),
            ),
            parent_span_id: parent,
            provider,
        }
    }

    /// The spans of one request holding `records`, decoded with the official definitions.
    fn roundtrip(calls: &[(&CallTrace, &Record, &Server)]) -> ExportTraceServiceRequest {
        let resource = [KeyValue::new("service.name", "svc")];
        let mut batch = Batch::new(resource.iter().map(|kv| (kv.key.as_str(), &kv.value)));
        for (trace, record, server) in calls {
            batch.push(trace, record, server);
        }
        assert_eq!(batch.len(), calls.len());
        let body = batch.request();
        assert!(batch.is_empty());
        ExportTraceServiceRequest::decode(body.as_slice()).expect("a valid OTLP request")
    }

    fn one(trace: &CallTrace, record: &Record, server: &Server) -> Span {
        let request = roundtrip(&[(trace, record, server)]);
        let spans: Vec<Span> = request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect();
        assert_eq!(spans.len(), 1);
        spans.into_iter().next().expect("one")
    }

    fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
        let found: Vec<_> = span.attributes.iter().filter(|kv| kv.key == key).collect();
        assert!(found.len() <= 1, "{key} twice");
        found
            .first()
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn s(v: &str) -> Any {
        Any::StringValue(v.into())
    }

    fn chat() -> Record {
        let mut r = Record::new(
            "rec-1".into(),
            "2026-01-02T03:04:05.123456789Z".parse().expect("time"),
            "llama3.2".into(),
            "photo_evaluation".into(),
            "/api/chat".into(),
        );
        r.stream = true;
        r.success = true;
        r.http_status = Some(200);
        r.processing_time_ms = 1500.0;
        r.ttft_ms = Some(250.0);
        r.prompt_tokens = Some(12);
        r.output_tokens = Some(80);
        r.done_reason = Some("stop".into());
        r.tokens_per_second = Some(42.5);
        r.requested_model = Some("auto".into());
        r.route_reason = Some(RouteReason::Recommended);
        r.host = Some("gpu1".into());
        r
    }

    #[test]
    fn a_streamed_chat_is_a_client_span_with_the_genai_attributes() {
        let server = Server::of_url("http://ollama:11434");
        let parent = SpanId::from_hex("b7ad6b7169203331").expect("hex");
        let record = chat();
        let request = roundtrip(&[(&trace(parent, "ollama"), &record, &server)]);
        assert_eq!(request.resource_spans.len(), 1);
        let rs = &request.resource_spans[0];
        let resource = rs.resource.as_ref().expect("resource");
        assert_eq!(resource.attributes[0].key, "service.name");
        let scope = rs.scope_spans[0].scope.as_ref().expect("scope");
        assert_eq!(scope.name, "ollameter");
        assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
        let span = &rs.scope_spans[0].spans[0];
        assert_eq!(span.name, "chat llama3.2");
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(hex(&span.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(hex(&span.span_id), "00f067aa0ba902b7");
        assert_eq!(hex(&span.parent_span_id), "b7ad6b7169203331");
        assert_eq!(span.trace_state, "vendor=x");
        // Sampled, with a remote parent.
        assert_eq!(span.flags, 0x01 | 0x100 | 0x200);
        assert!(span.status.is_none(), "success leaves the status unset");
        let start =
            u64::try_from(record.timestamp.timestamp_nanos_opt().expect("ns")).expect("after 1970");
        assert_eq!(span.start_time_unix_nano, start);
        assert_eq!(span.end_time_unix_nano - start, 1_500_000_000);
        assert_eq!(attr(span, "gen_ai.operation.name"), Some(&s("chat")));
        assert_eq!(attr(span, "gen_ai.provider.name"), Some(&s("ollama")));
        assert_eq!(attr(span, "gen_ai.request.model"), Some(&s("llama3.2")));
        assert_eq!(attr(span, "gen_ai.response.model"), Some(&s("llama3.2")));
        assert_eq!(
            attr(span, "gen_ai.request.stream"),
            Some(&Any::BoolValue(true))
        );
        assert_eq!(
            attr(span, "gen_ai.usage.input_tokens"),
            Some(&Any::IntValue(12))
        );
        assert_eq!(
            attr(span, "gen_ai.usage.output_tokens"),
            Some(&Any::IntValue(80))
        );
        match attr(span, "gen_ai.response.finish_reasons") {
            Some(Any::ArrayValue(a)) => {
                let values: Vec<_> = a.values.iter().map(|v| v.value.clone()).collect();
                assert_eq!(values, vec![Some(s("stop"))]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            attr(span, "gen_ai.response.time_to_first_chunk"),
            Some(&Any::DoubleValue(0.25))
        );
        assert_eq!(attr(span, "server.address"), Some(&s("ollama")));
        assert_eq!(attr(span, "server.port"), Some(&Any::IntValue(11434)));
        assert_eq!(
            attr(span, "http.response.status_code"),
            Some(&Any::IntValue(200))
        );
        assert_eq!(attr(span, "ollameter.record_id"), Some(&s("rec-1")));
        assert_eq!(
            attr(span, "ollameter.operation"),
            Some(&s("photo_evaluation"))
        );
        assert_eq!(attr(span, "ollameter.endpoint"), Some(&s("/api/chat")));
        assert_eq!(attr(span, "ollameter.source"), Some(&s("proxy")));
        assert_eq!(attr(span, "ollameter.requested_model"), Some(&s("auto")));
        assert_eq!(attr(span, "ollameter.attempt"), Some(&Any::IntValue(1)));
        assert_eq!(attr(span, "ollameter.host"), Some(&s("gpu1")));
        assert_eq!(
            attr(span, "ollameter.tokens_per_second"),
            Some(&Any::DoubleValue(42.5))
        );
        assert_eq!(
            attr(span, "ollameter.route_reason"),
            Some(&s("recommended"))
        );
        assert!(attr(span, "error.type").is_none());
        assert!(attr(span, "ollameter.vram_mb").is_none(), "unknown: absent");
        assert_eq!(span.events.len(), 1);
        let event = &span.events[0];
        assert_eq!(event.name, FIRST_TOKEN_EVENT);
        assert_eq!(event.time_unix_nano - start, 250_000_000);
        assert_eq!(event.attributes.len(), 1);
    }

    #[test]
    fn a_failed_call_has_an_error_status_and_type_but_no_message() {
        let mut r = chat();
        r.success = false;
        r.http_status = Some(404);
        r.error_kind = Some(ErrorKind::ModelNotFound);
        r.error_message = Some("model \"secret prompt\" not found".into());
        r.ttft_ms = None;
        r.host = None;
        let server = Server::of_url("http://10.0.0.2:8080");
        let t = trace(SpanId::INVALID, "openai_compatible");
        let span = one(&t, &r, &server);
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.flags, 0x01 | 0x100, "no remote parent");
        let status = span.status.as_ref().expect("status");
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "model_not_found (HTTP 404)");
        assert_eq!(attr(&span, "error.type"), Some(&s("model_not_found")));
        assert_eq!(
            attr(&span, "gen_ai.provider.name"),
            Some(&s("openai_compatible"))
        );
        assert!(attr(&span, "gen_ai.response.model").is_none());
        match attr(&span, "gen_ai.response.finish_reasons") {
            Some(Any::ArrayValue(a)) => assert_eq!(a.values.len(), 1),
            other => panic!("{other:?}"),
        }
        // No host on the record: the upstream's address stands for it.
        assert_eq!(attr(&span, "ollameter.host"), Some(&s("10.0.0.2:8080")));
        assert!(span.events.is_empty());
        let mut raw = Vec::new();
        encode(&mut raw, &t, &r, &server);
        assert!(!String::from_utf8_lossy(&raw).contains("secret prompt"));
    }

    #[test]
    fn embeddings_unnamed_models_and_long_values() {
        let mut r = Record::new(
            "e".into(),
            chrono::Utc::now(),
            String::new(),
            "embed".into(),
            "/v1/embeddings".into(),
        );
        r.success = true;
        // Values whose lengths need two-byte varints, at every level of nesting.
        r.operation = "o".repeat(300);
        r.requested_model = Some("m".repeat(20_000));
        r.processing_time_ms = f64::NAN;
        let span = one(
            &trace(SpanId::INVALID, "ollama"),
            &r,
            &Server::of_url("http://localhost"),
        );
        assert_eq!(span.name, "embeddings");
        assert!(attr(&span, "gen_ai.request.model").is_none());
        assert!(attr(&span, "gen_ai.response.finish_reasons").is_none());
        assert!(attr(&span, "gen_ai.request.stream").is_none());
        assert_eq!(attr(&span, "server.port"), Some(&Any::IntValue(80)));
        assert_eq!(attr(&span, "ollameter.operation"), Some(&s(&r.operation)));
        assert_eq!(
            attr(&span, "ollameter.requested_model"),
            Some(&s(&"m".repeat(20_000)))
        );
        assert_eq!(span.end_time_unix_nano, span.start_time_unix_nano);
    }

    #[test]
    fn many_spans_share_one_resource_and_scope_and_the_batch_is_reusable() {
        let server = Server::of_url("http://a:1");
        let t = trace(SpanId::INVALID, "ollama");
        let records: Vec<Record> = (0..300)
            .map(|i| {
                let mut r = chat();
                r.id = format!("r{i}");
                r
            })
            .collect();
        let calls: Vec<_> = records.iter().map(|r| (&t, r, &server)).collect();
        let request = roundtrip(&calls);
        assert_eq!(request.resource_spans.len(), 1);
        assert_eq!(request.resource_spans[0].scope_spans.len(), 1);
        let ids: Vec<String> = request.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| match attr(s, "ollameter.record_id") {
                Some(Any::StringValue(id)) => id.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, (0..300).map(|i| format!("r{i}")).collect::<Vec<_>>());
    }

    #[test]
    fn each_record_gets_the_address_of_the_upstream_it_names() {
        let servers = Servers::new([
            ("gpu0", "http://10.0.0.1:11434"),
            ("gpu1", "http://10.0.0.2:8080/"),
        ]);
        assert_eq!(
            servers.of(Some("gpu1")),
            &Server::of_url("http://10.0.0.2:8080")
        );
        assert_eq!(servers.of(Some("gpu0")).address, "10.0.0.1");
        assert_eq!(servers.of(None).address, "10.0.0.1", "the first");
        assert_eq!(servers.of(Some("gone")).address, "10.0.0.1");
    }

    #[test]
    fn server_of_url() {
        assert_eq!(
            Server::of_url("http://127.0.0.1:11434"),
            Server {
                address: "127.0.0.1".into(),
                port: 11434
            }
        );
        assert_eq!(
            Server::of_url("http://[::1]:8080/base"),
            Server {
                address: "::1".into(),
                port: 8080
            }
        );
        assert_eq!(Server::of_url("http://ollama").port, 80);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
