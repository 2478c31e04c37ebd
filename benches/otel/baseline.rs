//! The span export path ollameter used before it encoded spans itself (up to commit
//! 9febc29): a `SpanData` per span built with the OpenTelemetry SDK's types, sent with the
//! `opentelemetry-otlp` exporter (which converts each to the generated protobuf structs
//! and encodes them with `prost`). Kept only as the benchmark's baseline; the span is the
//! same one, attribute for attribute.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use ollameter::otel::CallTrace;
use ollameter::otel::span::Server;
use ollameter::record::{ErrorKind, Record, gen_ai_operation_name};
use opentelemetry::trace::{Event, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};

const FIRST_TOKEN_EVENT: &str = "ollameter.first_token";

/// The instrumentation scope of every span.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("ollameter")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The exporter the old path used, to `url` (OTLP/HTTP, protobuf).
pub fn exporter(url: &str) -> opentelemetry_otlp::SpanExporter {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(Duration::from_secs(10))
        .with_headers(std::collections::HashMap::new())
        .build()
        .expect("the OTLP exporter builds");
    let resource = Resource::builder()
        .with_service_name("ollameter")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    exporter.set_resource(&resource);
    exporter
}

/// Sends `batch` the way the old exporter thread did.
pub fn export(
    runtime: &tokio::runtime::Runtime,
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: Vec<SpanData>,
) {
    runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(10), exporter.export(batch)).await
        })
        .expect("in time")
        .expect("exported");
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
