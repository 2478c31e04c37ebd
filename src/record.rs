//! The record of one inference call: the one type shared by the proxy, the recorder, the
//! store, the statistics and the export. Field names are the same everywhere (store
//! columns, API JSON, CSV header, docs).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strum::VariantArray;

/// Why a call failed. Stored and served as its snake_case name. Every kind is listed once,
/// in [`ErrorKind::ALL`] (derived), for parsing, messages, metrics and tests.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Ollama answered with an error status before the first chunk (4xx/5xx).
    UpstreamError,
    /// The stream started (status 200) and then carried an error object, or ended
    /// without its final `done` object.
    MidstreamError,
    /// The upstream could not be reached (connection refused, DNS, reset before headers).
    UpstreamUnreachable,
    /// Connecting to the upstream took longer than the connect timeout.
    Timeout,
    /// The client went away before the answer was complete.
    ClientCancelled,
    /// The upstream connection broke in the middle of the answer.
    UpstreamDisconnected,
    /// Ollama answered 404 "model not found" (natively or in the OpenAI shape): the
    /// request named a model that is not installed.
    ModelNotFound,
}

impl ErrorKind {
    /// Every kind, derived from the enum itself (so a new kind cannot be left out).
    pub const ALL: &[ErrorKind] = <ErrorKind as VariantArray>::VARIANTS;

    /// The snake_case name used in the store, the API and the export.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UpstreamError => "upstream_error",
            ErrorKind::MidstreamError => "midstream_error",
            ErrorKind::UpstreamUnreachable => "upstream_unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ClientCancelled => "client_cancelled",
            ErrorKind::UpstreamDisconnected => "upstream_disconnected",
            ErrorKind::ModelNotFound => "model_not_found",
        }
    }

    /// Parses the snake_case name; `None` for anything else.
    pub fn parse(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// Every name, comma-separated, for messages that list the valid ones.
    pub fn names() -> String {
        let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        names.join(", ")
    }

    /// The kind of a call the upstream answered with an error `status` and `message`:
    /// [`ErrorKind::ModelNotFound`] for Ollama's 404 about the model (`model "x" not found,
    /// try pulling it first` natively, the same text in `error.message` on `/v1/*`),
    /// [`ErrorKind::UpstreamError`] for anything else (a 404 for an unknown path says
    /// `404 page not found` and names no model).
    pub fn of_upstream_answer(status: u16, message: &str) -> ErrorKind {
        let lower = message.to_ascii_lowercase();
        if status == 404 && lower.contains("model") && lower.contains("not found") {
            ErrorKind::ModelNotFound
        } else {
            ErrorKind::UpstreamError
        }
    }
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Measured by the proxy on a call it forwarded.
    #[default]
    Proxy,
    /// Written through `POST /api/model-performance/record`.
    Manual,
    /// Loaded by `POST /api/model-performance/import` or `ollameter import`.
    Import,
    /// Measured by the proxy on a call that `ollameter bench` (or the benchmark route)
    /// made, marked with the [`SOURCE_HEADER`] header.
    Benchmark,
}

/// Who measured a record's speeds and durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimingSource {
    /// The upstream reported them: Ollama's `eval_duration` and friends, or llama.cpp's
    /// `timings` object.
    Server,
    /// The proxy measured them (an OpenAI-compatible server that reports no timings):
    /// generation speed between the first and the last content chunk.
    Proxy,
}

impl TimingSource {
    /// The snake_case name used in the store, the API and the export.
    pub fn as_str(self) -> &'static str {
        match self {
            TimingSource::Server => "server",
            TimingSource::Proxy => "proxy",
        }
    }

    /// Parses the snake_case name; `None` for anything else.
    pub fn parse(name: &str) -> Option<TimingSource> {
        match name {
            "server" => Some(TimingSource::Server),
            "proxy" => Some(TimingSource::Proxy),
            _ => None,
        }
    }
}

/// The request header by which a client marks a proxied call's source; only
/// `benchmark` is accepted (see [`Source::from_header`]).
pub const SOURCE_HEADER: &str = "x-ollameter-source";

impl Source {
    /// The snake_case name used in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Proxy => "proxy",
            Source::Manual => "manual",
            Source::Import => "import",
            Source::Benchmark => "benchmark",
        }
    }

    /// Every source, in the order the API lists them.
    pub const ALL: [Source; 4] = [
        Source::Proxy,
        Source::Manual,
        Source::Import,
        Source::Benchmark,
    ];

    /// The source a proxied call's [`SOURCE_HEADER`] names: only `benchmark` (a proxied
    /// call cannot claim to be manual or imported); anything else leaves it `proxy`.
    pub fn from_header(value: &[u8]) -> Source {
        if value.eq_ignore_ascii_case(b"benchmark") {
            Source::Benchmark
        } else {
            Source::Proxy
        }
    }

    /// Parses the snake_case name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Source> {
        match name {
            "proxy" => Some(Source::Proxy),
            "manual" => Some(Source::Manual),
            "import" => Some(Source::Import),
            "benchmark" => Some(Source::Benchmark),
            _ => None,
        }
    }
}

/// Why a call ran on the model it ran on. Stored and served as its lowercase name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RouteReason {
    /// The client named this model itself (`"model": "llama3.2:3b"`).
    Explicit,
    /// A virtual name (`auto`, `auto:speed`, an alias) resolved to the recommended model.
    Recommended,
    /// A virtual name sent this call to a candidate still being measured (exploration).
    Explore,
    /// An earlier attempt of the same call failed before answering; this is the next model.
    Fallback,
}

impl RouteReason {
    /// Every reason, in the order documents list them.
    pub const ALL: [RouteReason; 4] = [
        RouteReason::Recommended,
        RouteReason::Explore,
        RouteReason::Fallback,
        RouteReason::Explicit,
    ];

    /// The name used in the store, the API, the export and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteReason::Explicit => "explicit",
            RouteReason::Recommended => "recommended",
            RouteReason::Explore => "explore",
            RouteReason::Fallback => "fallback",
        }
    }

    /// Parses the name; `None` for anything else.
    pub fn parse(name: &str) -> Option<RouteReason> {
        RouteReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// The kind of work a call asks of a model: a model that embeds cannot chat, and the
/// reverse, so routing never mixes them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// Generate, chat, completions, messages, responses.
    Generation,
    /// Embeddings.
    Embedding,
}

impl CallKind {
    /// The kind of a call by its endpoint path (`/api/embed`, `/v1/embeddings`, ...).
    pub fn of_endpoint(endpoint: &str) -> CallKind {
        match endpoint {
            "/api/embed" | "/api/embeddings" | "/v1/embeddings" => CallKind::Embedding,
            _ => CallKind::Generation,
        }
    }

    /// The kind an installed model serves by its `/api/tags` capabilities; `None` when
    /// they say neither.
    pub fn of_capabilities(capabilities: &[String]) -> Option<CallKind> {
        if capabilities.iter().any(|c| c == "completion") {
            Some(CallKind::Generation)
        } else if capabilities.iter().any(|c| c == "embedding") {
            Some(CallKind::Embedding)
        } else {
            None
        }
    }

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Generation => "generation",
            CallKind::Embedding => "embedding",
        }
    }

    /// A bit of a set of kinds.
    pub fn bit(self) -> u8 {
        match self {
            CallKind::Generation => 1,
            CallKind::Embedding => 2,
        }
    }
}

/// The OpenTelemetry GenAI `gen_ai.operation.name` of a call by its endpoint: `chat` for
/// the chat, messages and responses routes, `text_completion` for generate and
/// completions, `embeddings` for the embedding routes (the conventions' well-known
/// values). The client's own operation name (`X-Operation`) stays in `operation`.
pub fn gen_ai_operation_name(endpoint: &str) -> &'static str {
    match endpoint {
        "/api/generate" | "/v1/completions" => "text_completion",
        "/api/embed" | "/api/embeddings" | "/v1/embeddings" => "embeddings",
        _ => "chat",
    }
}

/// The attempt number of a call that was tried once: every record is at least that.
fn first_attempt() -> u32 {
    1
}

/// One inference call, measured. Durations are milliseconds (`f64`, so sub-millisecond
/// precision survives), token counts are plain counts, memory is MiB ("MB" in names, as
/// the earlier system called it). `None` means unknown, never zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    /// UUIDv7, or the client's `X-Request-Id` when it sent one.
    pub id: String,
    /// When the proxy received the request (UTC).
    pub timestamp: DateTime<Utc>,
    /// The `model` of the request body (empty when the body named none).
    pub model: String,
    /// From the operation header (default `X-Operation`), else the endpoint's kind
    /// (`generate`, `chat`, `embed`, ...).
    pub operation: String,
    /// The request path, e.g. `/api/chat`.
    pub endpoint: String,
    /// Whether the answer was streamed (NDJSON or SSE).
    pub stream: bool,
    /// True only when the upstream answered 2xx and the body completed without an error.
    pub success: bool,
    /// The status the client received; `None` when no response was produced.
    pub http_status: Option<u16>,
    /// Why the call failed; `None` on success.
    pub error_kind: Option<ErrorKind>,
    /// The error text (upstream's message or the proxy's own), truncated.
    pub error_message: Option<String>,
    /// Wall time at the proxy, from request received to last byte sent.
    pub processing_time_ms: f64,
    /// Wall time from request received to the first chunk carrying generated content.
    pub ttft_ms: Option<f64>,
    /// Ollama's `total_duration`.
    pub total_duration_ms: Option<f64>,
    /// Ollama's `load_duration` (queueing plus model load).
    pub load_duration_ms: Option<f64>,
    /// Ollama's `prompt_eval_duration`.
    pub prompt_eval_duration_ms: Option<f64>,
    /// Ollama's `eval_duration`.
    pub eval_duration_ms: Option<f64>,
    /// Ollama's `prompt_eval_count`, or the OpenAI/Anthropic usage input tokens.
    pub prompt_tokens: Option<u64>,
    /// Ollama's `eval_count`, or the usage output tokens.
    pub output_tokens: Option<u64>,
    /// True when the token counts were estimated from content chunks because the
    /// stream carried no usage.
    pub tokens_estimated: bool,
    /// `eval_count / eval_duration` in tokens per second.
    pub tokens_per_second: Option<f64>,
    /// `prompt_eval_count / prompt_eval_duration` in tokens per second.
    pub prompt_tokens_per_second: Option<f64>,
    /// Ollama's `done_reason` or the OpenAI `finish_reason`.
    pub done_reason: Option<String>,
    /// Bytes of the request body.
    pub request_bytes: u64,
    /// Bytes of the response body passed to the client.
    pub response_bytes: u64,
    /// Quality of the answer on the 1 to 5 scale, when a rule could read it.
    pub quality_score: Option<f64>,
    /// RSS of the model's runner plus the Ollama server, in MiB.
    pub ollama_rss_mb: Option<f64>,
    /// GPU memory used by the model's runner (NVML), in MiB.
    pub gpu_memory_mb: Option<f64>,
    /// The model's `size_vram` from `/api/ps`, in MiB.
    pub vram_mb: Option<f64>,
    /// The largest `ollama_rss_mb` sampled while the call ran.
    #[serde(default)]
    pub ollama_rss_peak_mb: Option<f64>,
    /// The largest `gpu_memory_mb` sampled while the call ran.
    #[serde(default)]
    pub gpu_memory_peak_mb: Option<f64>,
    /// Free GPU memory over all devices at the end of the call, in MiB.
    #[serde(default)]
    pub gpu_free_mb: Option<f64>,
    /// Where the record came from.
    #[serde(default)]
    pub source: Source,
    /// Who measured `tokens_per_second` and the durations: `server` (the upstream's own
    /// timings) or `proxy` (measured at the proxy); `None` when no speed is known.
    #[serde(default)]
    pub timing_source: Option<TimingSource>,
    /// The `model` the client sent, when the proxy routed it (`auto:quality`, an alias
    /// such as `photo`, or the explicit name itself); `model` is the one that ran.
    #[serde(default)]
    pub requested_model: Option<String>,
    /// Why the call ran on `model`; `None` on records from before routing existed and on
    /// records written by hand without one.
    #[serde(default)]
    pub route_reason: Option<RouteReason>,
    /// 1 for the first try of a call, 2 for the first fallback, and so on: each attempt is
    /// its own record, sharing `requested_model`.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The ollameter instance that stored it (`store.instance`, by default the host
    /// name); stamped by the recorder when empty. Empty for records stored before
    /// instances were tracked.
    #[serde(default)]
    pub instance: String,
    /// Energy the call used, joules: its share of the GPU energy (NVML's energy counter,
    /// else power × time) while it ran, shared with the calls running at the same time,
    /// plus its share of the CPU package energy (RAPL) where readable. `None` when neither
    /// could be read (`/statistics` says why), never 0.
    #[serde(default)]
    pub energy_j: Option<f64>,
    /// How `energy_j` was measured: `gpu_counter`, `gpu_power` and/or `cpu_rapl`, joined by
    /// `+`; `None` with `energy_j`.
    #[serde(default)]
    pub energy_source: Option<String>,
    /// The upstream that served the call, by its name (`[[upstreams]]` `name`, by
    /// default `host:port`); `None` on records from before several upstreams existed and
    /// on records written by hand without one.
    #[serde(default)]
    pub host: Option<String>,
}

impl Record {
    /// A record with every measurement unknown, for the proxy and tests to fill in.
    pub fn new(
        id: String,
        timestamp: DateTime<Utc>,
        model: String,
        operation: String,
        endpoint: String,
    ) -> Record {
        Record {
            id,
            timestamp,
            model,
            operation,
            endpoint,
            stream: false,
            success: false,
            http_status: None,
            error_kind: None,
            error_message: None,
            processing_time_ms: 0.0,
            ttft_ms: None,
            total_duration_ms: None,
            load_duration_ms: None,
            prompt_eval_duration_ms: None,
            eval_duration_ms: None,
            prompt_tokens: None,
            output_tokens: None,
            tokens_estimated: false,
            tokens_per_second: None,
            prompt_tokens_per_second: None,
            done_reason: None,
            request_bytes: 0,
            response_bytes: 0,
            quality_score: None,
            ollama_rss_mb: None,
            gpu_memory_mb: None,
            vram_mb: None,
            ollama_rss_peak_mb: None,
            gpu_memory_peak_mb: None,
            gpu_free_mb: None,
            source: Source::Proxy,
            timing_source: None,
            requested_model: None,
            route_reason: None,
            attempt: 1,
            instance: String::new(),
            energy_j: None,
            energy_source: None,
            host: None,
        }
    }
}

/// The record's field names in store/export order: the CSV header and the column list.
pub const FIELD_NAMES: &[&str] = &[
    "id",
    "timestamp",
    "model",
    "operation",
    "endpoint",
    "stream",
    "success",
    "http_status",
    "error_kind",
    "error_message",
    "processing_time_ms",
    "ttft_ms",
    "total_duration_ms",
    "load_duration_ms",
    "prompt_eval_duration_ms",
    "eval_duration_ms",
    "prompt_tokens",
    "output_tokens",
    "tokens_estimated",
    "tokens_per_second",
    "prompt_tokens_per_second",
    "done_reason",
    "request_bytes",
    "response_bytes",
    "quality_score",
    "ollama_rss_mb",
    "gpu_memory_mb",
    "vram_mb",
    "ollama_rss_peak_mb",
    "gpu_memory_peak_mb",
    "gpu_free_mb",
    "source",
    "timing_source",
    "requested_model",
    "route_reason",
    "attempt",
    "instance",
    "energy_j",
    "energy_source",
    "host",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_match_serialized_keys() {
        let r = Record::new(
            "a".into(),
            Utc::now(),
            "m".into(),
            "chat".into(),
            "/api/chat".into(),
        );
        let v = serde_json::to_value(&r).expect("serializes");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted_fields: Vec<&str> = FIELD_NAMES.to_vec();
        sorted_fields.sort_unstable();
        let mut sorted_keys = keys.clone();
        sorted_keys.sort_unstable();
        assert_eq!(sorted_fields, sorted_keys);
    }

    #[test]
    fn error_kind_names_round_trip() {
        for &k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).expect("serializes");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(ErrorKind::parse("nope"), None);
        for t in [TimingSource::Server, TimingSource::Proxy] {
            assert_eq!(TimingSource::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).expect("serializes");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert_eq!(TimingSource::parse("client"), None);
        assert_eq!(
            ErrorKind::parse("model_not_found"),
            Some(ErrorKind::ModelNotFound)
        );
    }

    #[test]
    fn a_404_about_the_model_is_model_not_found_and_nothing_else_is() {
        for message in [
            "model \"lama3.2\" not found, try pulling it first",
            "model 'x' not found",
        ] {
            assert_eq!(
                ErrorKind::of_upstream_answer(404, message),
                ErrorKind::ModelNotFound
            );
        }
        assert_eq!(
            ErrorKind::of_upstream_answer(404, "404 page not found"),
            ErrorKind::UpstreamError
        );
        assert_eq!(
            ErrorKind::of_upstream_answer(400, "model 'x' not found"),
            ErrorKind::UpstreamError
        );
        assert_eq!(
            ErrorKind::of_upstream_answer(500, "runner crashed"),
            ErrorKind::UpstreamError
        );
    }

    #[test]
    fn sources_round_trip_and_the_header_accepts_only_benchmark() {
        for s in Source::ALL {
            assert_eq!(Source::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).expect("serializes");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(Source::from_header(b"benchmark"), Source::Benchmark);
        assert_eq!(Source::from_header(b"Benchmark"), Source::Benchmark);
        for other in [&b"manual"[..], b"import", b"proxy", b"", b"bench"] {
            assert_eq!(Source::from_header(other), Source::Proxy);
        }
    }
}
