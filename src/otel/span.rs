//! The span of one finished call, built from its record (pure): a CLIENT span named
//! `{gen_ai.operation.name} {gen_ai.request.model}` with the GenAI conventions'
//! attributes, ollameter's own under `ollameter.*`, an event at the first token, and an
//! error status with `error.type` when the call failed. Never a prompt or answer text, and
//! never the upstream's error text either (only its kind and status).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Event, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::CallTrace;
use crate::record::{ErrorKind, Record, gen_ai_operation_name};

/// The name of the event at the first chunk carrying generated content.
pub const FIRST_TOKEN_EVENT: &str = "ollameter.first_token";

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

/// The instrumentation scope of every span.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("ollameter")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The span of a finished call.
pub fn span_data(
    trace: &CallTrace,
    record: &Record,
    server: &Server,
    scope: &InstrumentationScope,
) -> SpanData {
    let operation = gen_ai_operation_name(&record.endpoint);
    let start_time: SystemTime = record.timestamp.into();
    let end_time = start_time + seconds(record.processing_time_ms / 1e3);
    let mut attributes = Vec::with_capacity(32);
    let mut put = |key: &'static str, value: Value| attributes.push(KeyValue::new(key, value));
    put("gen_ai.operation.name", operation.into());
    put("gen_ai.provider.name", trace.provider.into());
    if !record.model.is_empty() {
        put("gen_ai.request.model", record.model.clone().into());
        if record.success {
            // Ollama answers with the model it was asked for.
            put("gen_ai.response.model", record.model.clone().into());
        }
    }
    put("server.address", server.address.clone().into());
    put("server.port", i64::from(server.port).into());
    if record.stream {
        put("gen_ai.request.stream", true.into());
    }
    if let Some(tokens) = record.prompt_tokens {
        put("gen_ai.usage.input_tokens", int(tokens));
    }
    if let Some(tokens) = record.output_tokens {
        put("gen_ai.usage.output_tokens", int(tokens));
    }
    if operation != "embeddings" {
        // The conventions ask for `error` where a finish reason was expected but the
        // generation ended abnormally.
        let reason = match (&record.done_reason, record.success) {
            (Some(reason), true) => Some(reason.clone()),
            (_, false) => Some("error".to_string()),
            (None, true) => None,
        };
        if let Some(reason) = reason {
            put(
                "gen_ai.response.finish_reasons",
                Value::Array(Array::String(vec![StringValue::from(reason)])),
            );
        }
    }
    if let Some(ttft_ms) = record.ttft_ms {
        put(
            "gen_ai.response.time_to_first_chunk",
            (ttft_ms / 1e3).into(),
        );
    }
    if let Some(status) = record.http_status {
        put("http.response.status_code", i64::from(status).into());
    }
    if let Some(kind) = record.error_kind {
        put("error.type", kind.as_str().into());
    }
    put("ollameter.record_id", record.id.clone().into());
    put("ollameter.operation", record.operation.clone().into());
    put("ollameter.endpoint", record.endpoint.clone().into());
    put("ollameter.source", record.source.as_str().into());
    if let Some(requested) = &record.requested_model {
        put("ollameter.requested_model", requested.clone().into());
    }
    if let Some(reason) = record.route_reason {
        put("ollameter.route_reason", reason.as_str().into());
    }
    put("ollameter.attempt", i64::from(record.attempt).into());
    put(
        "ollameter.host",
        format!("{}:{}", server.address, server.port).into(),
    );
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
            put(key, v.into());
        }
    }
    if record.tokens_estimated {
        put("ollameter.tokens_estimated", true.into());
    }
    let mut events = SpanEvents::default();
    if let Some(ttft_ms) = record.ttft_ms {
        events.events.push(Event::new(
            FIRST_TOKEN_EVENT,
            start_time + seconds(ttft_ms / 1e3),
            vec![KeyValue::new(
                "gen_ai.response.time_to_first_chunk",
                ttft_ms / 1e3,
            )],
            0,
        ));
    }
    let status = if record.success {
        // Instrumentation leaves a success unset (the conventions' Recording Errors).
        Status::Unset
    } else {
        Status::Error {
            description: Cow::Owned(error_description(record)),
        }
    };
    let model = if record.model.is_empty() {
        String::new()
    } else {
        format!(" {}", record.model)
    };
    SpanData {
        span_context: trace.span_context.clone(),
        parent_span_id: trace.parent_span_id,
        parent_span_is_remote: trace.parent_span_id != opentelemetry::trace::SpanId::INVALID,
        span_kind: SpanKind::Client,
        name: Cow::Owned(format!("{operation}{model}")),
        start_time,
        end_time,
        attributes,
        dropped_attributes_count: 0,
        events,
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

/// The status description of a failed call: its kind and HTTP status, never the
/// upstream's message (which could quote the request).
fn error_description(record: &Record) -> String {
    let kind = record.error_kind.map_or("error", ErrorKind::as_str);
    match record.http_status {
        Some(status) => format!("{kind} (HTTP {status})"),
        None => kind.to_string(),
    }
}

fn int(count: u64) -> Value {
    i64::try_from(count).unwrap_or(i64::MAX).into()
}

fn seconds(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RouteReason;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    fn trace(parent: SpanId) -> CallTrace {
        CallTrace {
            span_context: SpanContext::new(
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("hex"),
                SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: parent,
            provider: "ollama",
        }
    }

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn chat() -> Record {
        let mut r = Record::new(
            "rec-1".into(),
            "2026-01-02T03:04:05Z".parse().expect("time"),
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
        r
    }

    #[test]
    fn a_streamed_chat_is_a_client_span_with_the_genai_attributes() {
        let server = Server::of_url("http://ollama:11434");
        let parent = SpanId::from_hex("b7ad6b7169203331").expect("hex");
        let span = span_data(&trace(parent), &chat(), &server, &scope());
        assert_eq!(span.name, "chat llama3.2");
        assert_eq!(span.span_kind, SpanKind::Client);
        assert_eq!(span.parent_span_id, parent);
        assert!(span.parent_span_is_remote);
        assert_eq!(span.status, Status::Unset);
        let start: SystemTime = chat().timestamp.into();
        assert_eq!(span.start_time, start);
        assert_eq!(
            span.end_time.duration_since(start).expect("after"),
            Duration::from_millis(1500)
        );
        assert_eq!(attr(&span, "gen_ai.operation.name"), Some(&"chat".into()));
        assert_eq!(attr(&span, "gen_ai.provider.name"), Some(&"ollama".into()));
        assert_eq!(
            attr(&span, "gen_ai.request.model"),
            Some(&"llama3.2".into())
        );
        assert_eq!(
            attr(&span, "gen_ai.response.model"),
            Some(&"llama3.2".into())
        );
        assert_eq!(attr(&span, "gen_ai.request.stream"), Some(&true.into()));
        assert_eq!(
            attr(&span, "gen_ai.usage.input_tokens"),
            Some(&12i64.into())
        );
        assert_eq!(
            attr(&span, "gen_ai.usage.output_tokens"),
            Some(&80i64.into())
        );
        assert_eq!(
            attr(&span, "gen_ai.response.time_to_first_chunk"),
            Some(&0.25.into())
        );
        assert_eq!(attr(&span, "server.address"), Some(&"ollama".into()));
        assert_eq!(attr(&span, "server.port"), Some(&11434i64.into()));
        assert_eq!(attr(&span, "ollameter.record_id"), Some(&"rec-1".into()));
        assert_eq!(
            attr(&span, "ollameter.operation"),
            Some(&"photo_evaluation".into())
        );
        assert_eq!(
            attr(&span, "ollameter.tokens_per_second"),
            Some(&42.5.into())
        );
        assert_eq!(
            attr(&span, "ollameter.route_reason"),
            Some(&"recommended".into())
        );
        assert!(attr(&span, "error.type").is_none());
        assert_eq!(span.events.len(), 1);
        assert_eq!(span.events[0].name, FIRST_TOKEN_EVENT);
        assert_eq!(
            span.events[0]
                .timestamp
                .duration_since(start)
                .expect("after"),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn a_failed_call_has_an_error_status_and_type_but_no_message() {
        let mut r = chat();
        r.success = false;
        r.http_status = Some(404);
        r.error_kind = Some(ErrorKind::ModelNotFound);
        r.error_message = Some("model \"secret prompt\" not found".into());
        r.ttft_ms = None;
        let span = span_data(
            &trace(SpanId::INVALID),
            &r,
            &Server::of_url("http://10.0.0.2:8080"),
            &scope(),
        );
        assert!(!span.parent_span_is_remote);
        assert_eq!(
            span.status,
            Status::error("model_not_found (HTTP 404)".to_string())
        );
        assert_eq!(attr(&span, "error.type"), Some(&"model_not_found".into()));
        assert!(attr(&span, "gen_ai.response.model").is_none());
        assert!(span.events.is_empty());
        let all = format!("{span:?}");
        assert!(!all.contains("secret prompt"), "{all}");
    }

    #[test]
    fn embeddings_and_unnamed_models() {
        let mut r = Record::new(
            "e".into(),
            chrono::Utc::now(),
            String::new(),
            "embed".into(),
            "/v1/embeddings".into(),
        );
        r.success = true;
        let span = span_data(
            &trace(SpanId::INVALID),
            &r,
            &Server::of_url("http://localhost"),
            &scope(),
        );
        assert_eq!(span.name, "embeddings");
        assert!(attr(&span, "gen_ai.request.model").is_none());
        assert!(attr(&span, "gen_ai.response.finish_reasons").is_none());
        assert!(attr(&span, "gen_ai.request.stream").is_none());
        assert_eq!(attr(&span, "server.port"), Some(&80i64.into()));
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
}
