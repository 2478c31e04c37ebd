//! Prometheus metrics for `GET /metrics`: what the proxy measured, in the shape of the
//! OpenTelemetry GenAI semantic conventions, and ollameter's own health (HTTP requests,
//! the recorder queue, the store, the proxy's added latency).
//!
//! The metrics are kept by the official Rust client (`prometheus-client`) and rendered in
//! the Prometheus text exposition format 0.0.4 ([`CONTENT_TYPE`]), which every Prometheus
//! and `promtool check metrics` read. OpenTelemetry names become Prometheus names the
//! usual way: dots become underscores, the unit is appended (`_seconds`), counters end in
//! `_total`. `gen_ai.client.token.usage` has the unit `{token}`, an annotation rather than
//! a unit, so it gets no suffix: `gen_ai_client_token_usage`.
//!
//! Observing is a hash-map lookup and an atomic or mutex-guarded bucket update per
//! series; label values are interned (`Arc<str>`), so a call allocates nothing once its
//! model and operation have been seen. Model and operation names come from clients, so
//! each has a cap on distinct values ([`MAX_MODELS`], [`MAX_OPERATIONS`]) beyond which
//! calls are counted under `other`: a client looping over random model names must not
//! grow the scrape (and Prometheus's memory) without bound. Each call's series also
//! carries `host`, the upstream that served it (capped by [`MAX_HOSTS`]).
//!
//! Which GenAI names are exposed is [`GenAiMetricNames`]: the v1.36 conventions' names
//! above (the default, what earlier versions exposed), the current ones, or both. The
//! current conventions split the client metrics by kind of call and token direction:
//! `gen_ai_client_inference_duration_seconds`,
//! `gen_ai_client_inference_time_to_first_chunk_seconds` and
//! `gen_ai_client_inference_time_per_output_chunk_seconds` (streamed calls),
//! `gen_ai_client_inference_usage_{input,output}_tokens_total` (counters, by
//! `gen_ai_token_modality`, `unknown` for Ollama), the per-call distributions
//! `gen_ai_client_inference_operation_{input,output}_tokens`, and for embeddings
//! `gen_ai_client_embeddings_duration_seconds` and
//! `gen_ai_client_embeddings_operation_input_tokens`; all carry `gen_ai_provider_name`
//! (`ollama`, or `openai_compatible` for calls an OpenAI-compatible upstream served),
//! `gen_ai_operation_name` (`chat`, `text_completion`, `embeddings`) and
//! `gen_ai_request_model`, and the durations `error_type` on failures.
//!
//! The recorder's counters are not kept here: they live in `RecorderStats`, and
//! [`Metrics::render`] reads them from a [`RecorderSnapshot`] taken by the caller.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder, prometheus_text};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::otel::{GenAiMetricNames, OtelStats};
use crate::record::{ErrorKind, Record, RouteReason, Source, gen_ai_operation_name};
pub use crate::recorder::RecorderSnapshot;
use crate::upstream::Kind;

/// The `Content-Type` of [`Metrics::render`]'s output: the Prometheus text exposition
/// format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Distinct model names that get their own label value; later ones count as `other`.
/// 200 is far more models than one Ollama host serves, yet keeps the worst case (every
/// model on every operation and status, four histograms of ~16 buckets) to a scrape
/// Prometheus handles easily.
pub const MAX_MODELS: usize = 200;

/// Distinct operation names that get their own label value; later ones count as `other`.
/// Operations are the endpoint kinds (`generate`, `chat`, `embed`) plus whatever clients
/// put in the operation header, a handful in practice.
pub const MAX_OPERATIONS: usize = 20;

/// Distinct upstream host names that get their own label value; later ones count as
/// `other`. Hosts come from the configuration (a few servers), so this is never reached
/// in practice; it bounds the series whatever happens.
pub const MAX_HOSTS: usize = 32;

/// Longest model or operation name kept as a label value, in bytes; longer ones count as
/// `other`. Real model names are well under 100 bytes; a request body can say anything.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;

/// The label value for calls beyond a cap.
pub const OTHER: &str = "other";

/// The label value for calls whose request named no model (or operation).
pub const UNKNOWN: &str = "unknown";

/// `gen_ai.client.operation.duration` buckets, seconds: the GenAI conventions' advice.
const OPERATION_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// `gen_ai.server.time_to_first_token` buckets, seconds: the GenAI conventions' advice.
const TIME_TO_FIRST_TOKEN_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// `gen_ai.server.time_per_output_token` buckets, seconds: the GenAI conventions' advice.
const TIME_PER_OUTPUT_TOKEN_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];

/// `gen_ai.client.token.usage` buckets, tokens: the GenAI conventions' advice (powers of 4).
const TOKEN_USAGE_BUCKETS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Proxy overhead buckets, seconds, 10 µs to 100 ms: the proxy should add tens of
/// microseconds; anything past a few milliseconds is a problem worth seeing.
const PROXY_ADDED_LATENCY_BUCKETS: [f64; 13] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];

/// Methods some route answers. Anything else is a scanner's invention and never reaches
/// a real endpoint, so it is not credited to one.
const KNOWN_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

/// Paths that are their own endpoint class: Ollama's native API, its OpenAI/Anthropic
/// compatibility routes, the sidecar's `/metrics`, and every class of
/// [`PREFIX_ENDPOINTS`] (so that each class maps to itself).
const EXACT_ENDPOINTS: [&str; 24] = [
    "/",
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/embeddings",
    "/api/tags",
    "/api/ps",
    "/api/show",
    "/api/pull",
    "/api/push",
    "/api/create",
    "/api/copy",
    "/api/delete",
    "/api/version",
    "/api/blobs",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/models",
    "/v1/messages",
    "/v1/responses",
    "/metrics",
    "/api/model-performance",
    "/dashboard",
];

/// Paths whose tail is an id (a digest, a model name, a record id): the class is the
/// prefix, so ids never become label values.
const PREFIX_ENDPOINTS: [(&str, &str); 3] = [
    ("/api/blobs/", "/api/blobs"),
    ("/v1/models/", "/v1/models"),
    ("/api/model-performance/", "/api/model-performance"),
];

/// Labels of one inference call. `Arc<str>` so that building the key for a known model
/// is a reference-count increment, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    gen_ai_request_model: Arc<str>,
    gen_ai_operation_name: Arc<str>,
    /// `ok` or the error kind's name.
    status: &'static str,
    /// The upstream that served the call (its configured name).
    host: Arc<str>,
}

/// [`CallLabels`] plus the token type (`input` or `output`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TokenLabels {
    gen_ai_request_model: Arc<str>,
    gen_ai_operation_name: Arc<str>,
    status: &'static str,
    host: Arc<str>,
    gen_ai_token_type: &'static str,
}

/// Labels of the current GenAI metrics: the provider (the kind of the upstream that
/// served the call), the conventions' operation name and the model, and on durations the
/// error's type (absent on success, as the conventions ask).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LatestLabels {
    provider: &'static str,
    operation: &'static str,
    model: Arc<str>,
    error_type: Option<&'static str>,
}

impl EncodeLabelSet for LatestLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("gen_ai_provider_name", self.provider).encode(encoder.encode_label())?;
        ("gen_ai_operation_name", self.operation).encode(encoder.encode_label())?;
        ("gen_ai_request_model", &*self.model).encode(encoder.encode_label())?;
        if let Some(error_type) = self.error_type {
            ("error_type", error_type).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// [`LatestLabels`] of the token counters, which also carry the tokens' modality.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct UsageLabels {
    call: LatestLabels,
    modality: &'static str,
}

impl EncodeLabelSet for UsageLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.call.encode(encoder)?;
        ("gen_ai_token_modality", self.modality).encode(encoder.encode_label())
    }
}

/// Buckets of the current conventions' durations, time to first chunk and time per
/// output chunk, seconds: the conventions' advice.
const INFERENCE_DURATION_BUCKETS: [f64; 14] = OPERATION_DURATION_BUCKETS;

/// The current GenAI metrics (`gen_ai_latest_experimental`).
#[derive(Debug)]
struct Latest {
    inference_duration: HistogramFamily<LatestLabels>,
    time_to_first_chunk: HistogramFamily<LatestLabels>,
    time_per_output_chunk: HistogramFamily<LatestLabels>,
    usage_input_tokens: Family<UsageLabels, Counter>,
    usage_output_tokens: Family<UsageLabels, Counter>,
    operation_input_tokens: HistogramFamily<LatestLabels>,
    operation_output_tokens: HistogramFamily<LatestLabels>,
    embeddings_duration: HistogramFamily<LatestLabels>,
    embeddings_input_tokens: HistogramFamily<LatestLabels>,
}

impl Latest {
    fn new() -> Latest {
        let seconds = || -> HistogramFamily<LatestLabels> {
            Family::new_with_constructor(|| Histogram::new(INFERENCE_DURATION_BUCKETS))
        };
        let tokens = || -> HistogramFamily<LatestLabels> {
            Family::new_with_constructor(|| Histogram::new(TOKEN_USAGE_BUCKETS))
        };
        Latest {
            inference_duration: seconds(),
            time_to_first_chunk: seconds(),
            time_per_output_chunk: seconds(),
            usage_input_tokens: Family::default(),
            usage_output_tokens: Family::default(),
            operation_input_tokens: tokens(),
            operation_output_tokens: tokens(),
            embeddings_duration: seconds(),
            embeddings_input_tokens: tokens(),
        }
    }

    fn register(&self, gen_ai: &mut Registry) {
        gen_ai.register_with_unit(
            "gen_ai_client_inference_duration",
            "GenAI client inference duration (gen_ai.client.inference.duration): wall time at \
             the proxy from request received to last byte sent",
            Unit::Seconds,
            self.inference_duration.clone(),
        );
        gen_ai.register_with_unit(
            "gen_ai_client_inference_time_to_first_chunk",
            "Time to the first chunk of a streamed answer \
             (gen_ai.client.inference.time_to_first_chunk), from request received",
            Unit::Seconds,
            self.time_to_first_chunk.clone(),
        );
        gen_ai.register_with_unit(
            "gen_ai_client_inference_time_per_output_chunk",
            "Time between content chunks of a streamed answer after the first \
             (gen_ai.client.inference.time_per_output_chunk)",
            Unit::Seconds,
            self.time_per_output_chunk.clone(),
        );
        gen_ai.register(
            "gen_ai_client_inference_usage_input_tokens",
            "Input (prompt) tokens used, in tokens (gen_ai.client.inference.usage.input_tokens)",
            self.usage_input_tokens.clone(),
        );
        gen_ai.register(
            "gen_ai_client_inference_usage_output_tokens",
            "Output (generated) tokens used, in tokens \
             (gen_ai.client.inference.usage.output_tokens)",
            self.usage_output_tokens.clone(),
        );
        gen_ai.register(
            "gen_ai_client_inference_operation_input_tokens",
            "Input tokens per inference call, in tokens \
             (gen_ai.client.inference.operation.input_tokens)",
            self.operation_input_tokens.clone(),
        );
        gen_ai.register(
            "gen_ai_client_inference_operation_output_tokens",
            "Output tokens per inference call, in tokens \
             (gen_ai.client.inference.operation.output_tokens)",
            self.operation_output_tokens.clone(),
        );
        gen_ai.register_with_unit(
            "gen_ai_client_embeddings_duration",
            "GenAI client embeddings duration (gen_ai.client.embeddings.duration)",
            Unit::Seconds,
            self.embeddings_duration.clone(),
        );
        gen_ai.register(
            "gen_ai_client_embeddings_operation_input_tokens",
            "Input tokens per embeddings call, in tokens \
             (gen_ai.client.embeddings.operation.input_tokens)",
            self.embeddings_input_tokens.clone(),
        );
    }
}

/// The histogram of the gaps between content chunks of one streamed call, resolved once
/// when its answer starts so that each chunk costs one observation.
#[derive(Debug, Clone)]
pub struct ChunkGaps(Histogram);

impl ChunkGaps {
    /// Counts the time between two content chunks.
    pub fn observe(&self, gap: std::time::Duration) {
        self.0.observe(gap.as_secs_f64());
    }
}

/// Labels of one HTTP request to the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    /// An endpoint class from [`endpoint_class`], never a raw path.
    endpoint: &'static str,
    /// The HTTP status code sent to the client.
    status: u16,
}

/// Labels of one routing decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RoutingLabels {
    /// The name the client sent: `auto...`, an alias, or a model with a fallback chain
    /// (all bounded by the configuration; unknown `auto:` names are refused before).
    alias: Arc<str>,
    /// The model the attempt ran on.
    model: Arc<str>,
    /// `recommended`, `explore`, `fallback` or `explicit`.
    reason: &'static str,
}

/// A histogram family whose constructor is a plain function, so the type can be named.
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The metrics of one running sidecar. Share it in an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    models: BoundedLabels,
    operations: BoundedLabels,
    hosts: BoundedLabels,
    operation_duration: HistogramFamily<CallLabels>,
    time_to_first_token: HistogramFamily<CallLabels>,
    time_per_output_token: HistogramFamily<CallLabels>,
    token_usage: HistogramFamily<TokenLabels>,
    inference_calls: Family<CallLabels, Counter>,
    http_requests: Family<RequestLabels, Counter>,
    proxy_added_latency: Histogram,
    routing_decisions: Family<RoutingLabels, Counter>,
    aliases: BoundedLabels,
    names: GenAiMetricNames,
    latest: Latest,
    otel: OnceLock<Arc<OtelStats>>,
    /// Each upstream's name and kind, the first first: the provider of a call's current
    /// GenAI series.
    upstreams: OnceLock<Vec<(String, Kind)>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty metrics with the v1.36 GenAI names, every series registered; a series appears
    /// in the output once something was observed on it.
    pub fn new() -> Metrics {
        Metrics::with_names(GenAiMetricNames::Legacy)
    }

    /// Empty metrics with the GenAI names `names` asks for.
    pub fn with_names(names: GenAiMetricNames) -> Metrics {
        let operation_duration: HistogramFamily<CallLabels> =
            Family::new_with_constructor(|| Histogram::new(OPERATION_DURATION_BUCKETS));
        let time_to_first_token: HistogramFamily<CallLabels> =
            Family::new_with_constructor(|| Histogram::new(TIME_TO_FIRST_TOKEN_BUCKETS));
        let time_per_output_token: HistogramFamily<CallLabels> =
            Family::new_with_constructor(|| Histogram::new(TIME_PER_OUTPUT_TOKEN_BUCKETS));
        let token_usage: HistogramFamily<TokenLabels> =
            Family::new_with_constructor(|| Histogram::new(TOKEN_USAGE_BUCKETS));
        let inference_calls = Family::<CallLabels, Counter>::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        let proxy_added_latency = Histogram::new(PROXY_ADDED_LATENCY_BUCKETS);
        let routing_decisions = Family::<RoutingLabels, Counter>::default();

        let mut registry = Registry::default();
        // The current GenAI metrics carry `gen_ai_provider_name` per series (it follows
        // the kind of the upstream that served the call); the v1.36 ones carry
        // `gen_ai_system="ollama"`, the same on every series, as a constant label of
        // their sub-registry.
        let latest = Latest::new();
        if names.latest() {
            latest.register(&mut registry);
        }
        let mut unregistered = Registry::default();
        let gen_ai = if names.legacy() {
            registry
                .sub_registry_with_label((Cow::Borrowed("gen_ai_system"), Cow::Borrowed("ollama")))
        } else {
            // Kept but never rendered: the old names are off.
            &mut unregistered
        };
        gen_ai.register_with_unit(
            "gen_ai_client_operation_duration",
            "GenAI operation duration (gen_ai.client.operation.duration): wall time at the \
             proxy from request received to last byte sent",
            Unit::Seconds,
            operation_duration.clone(),
        );
        gen_ai.register_with_unit(
            "gen_ai_server_time_to_first_token",
            "Time to generate the first token (gen_ai.server.time_to_first_token), measured \
             at the proxy from request received to the first chunk carrying content",
            Unit::Seconds,
            time_to_first_token.clone(),
        );
        gen_ai.register_with_unit(
            "gen_ai_server_time_per_output_token",
            "Time per output token after the first (gen_ai.server.time_per_output_token), \
             from Ollama's eval_count and eval_duration",
            Unit::Seconds,
            time_per_output_token.clone(),
        );
        gen_ai.register(
            "gen_ai_client_token_usage",
            "Tokens used per call, in tokens (gen_ai.client.token.usage), by \
             gen_ai_token_type input (prompt) or output (generated)",
            token_usage.clone(),
        );
        registry.register(
            "ollameter_inference_calls",
            "Inference calls measured by the proxy, by model, operation and status",
            inference_calls.clone(),
        );
        registry.register(
            "ollameter_http_requests",
            "HTTP requests answered by ollameter (proxied or its own API), by endpoint \
             class and HTTP status",
            http_requests.clone(),
        );
        registry.register_with_unit(
            "ollameter_proxy_added_latency",
            "Latency the proxy added to a call: total time minus time waiting on the upstream",
            Unit::Seconds,
            proxy_added_latency.clone(),
        );
        registry.register(
            "ollameter_routing_decisions",
            "Attempts sent by model routing, by the virtual name (alias) the client sent, \
             the model that ran and the reason (recommended, explore, fallback, explicit)",
            routing_decisions.clone(),
        );

        Metrics {
            registry,
            models: BoundedLabels::new(MAX_MODELS),
            operations: BoundedLabels::new(MAX_OPERATIONS),
            hosts: BoundedLabels::new(MAX_HOSTS),
            operation_duration,
            time_to_first_token,
            time_per_output_token,
            token_usage,
            inference_calls,
            http_requests,
            proxy_added_latency,
            routing_decisions,
            aliases: BoundedLabels::new(MAX_MODELS),
            names,
            latest,
            otel: OnceLock::new(),
            upstreams: OnceLock::new(),
        }
    }

    /// Shows the span exporter's counters in [`Metrics::render`] from now on.
    pub fn attach_otel(&self, stats: Arc<OtelStats>) {
        let _ = self.otel.set(stats);
    }

    /// Labels the current GenAI series of each call with the kind of the upstream that
    /// served it (`upstreams` as `(name, kind)`, the first first; records that name no
    /// upstream count as the first's). Without it, every call is Ollama's.
    pub fn attach_upstreams<'a>(&self, upstreams: impl IntoIterator<Item = (&'a str, &'a Kind)>) {
        let _ = self.upstreams.set(
            upstreams
                .into_iter()
                .map(|(name, kind)| (name.to_owned(), kind.clone()))
                .collect(),
        );
    }

    /// `gen_ai.provider.name` of a call served by the upstream named `host`: one of two
    /// values, so the label stays bounded.
    fn provider(&self, host: Option<&str>) -> &'static str {
        let Some(upstreams) = self.upstreams.get() else {
            return crate::otel::PROVIDER_OLLAMA;
        };
        // A handful of upstreams: a scan is cheaper than hashing the name.
        let kind = host
            .and_then(|h| upstreams.iter().find(|(name, _)| name == h))
            .or(upstreams.first())
            .and_then(|(_, kind)| kind.get());
        crate::otel::provider_name(kind)
    }

    /// The histogram that counts the gaps between content chunks of a streamed call of
    /// `model` on `endpoint`, served by the upstream named `host`; `None` unless the
    /// current GenAI names are on.
    pub fn chunk_gaps(&self, model: &str, endpoint: &str, host: Option<&str>) -> Option<ChunkGaps> {
        if !self.names.latest() {
            return None;
        }
        let labels = LatestLabels {
            provider: self.provider(host),
            operation: gen_ai_operation_name(endpoint),
            model: self.models.get(model),
            error_type: None,
        };
        Some(ChunkGaps(
            self.latest
                .time_per_output_chunk
                .get_or_create(&labels)
                .clone(),
        ))
    }

    /// Counts one routing decision: an attempt of a call for `alias` sent to `model`.
    pub fn observe_routing(&self, alias: &str, model: &str, reason: RouteReason) {
        let labels = RoutingLabels {
            alias: self.aliases.get(alias),
            model: self.models.get(model),
            reason: reason.as_str(),
        };
        self.routing_decisions.get_or_create(&labels).inc();
    }

    /// Counts one finished inference call into the GenAI histograms and the calls
    /// counter. Call it once per record the proxy produced, when the record is final.
    ///
    /// Records not measured by the proxy (manual writes, imports) are ignored: they
    /// describe calls made at other times, and counting them now would make every rate
    /// lie.
    pub fn observe_record(&self, record: &Record) {
        if record.source != Source::Proxy {
            return;
        }
        // A model Ollama does not have must not take one of the capped label values:
        // a client looping over junk names would leave none for the real models.
        let model = if record.error_kind == Some(ErrorKind::ModelNotFound) {
            self.models.get_if_known(&record.model)
        } else {
            self.models.get(&record.model)
        };
        if self.names.latest() {
            self.observe_latest(record, model.clone());
        }
        let labels = CallLabels {
            gen_ai_request_model: model,
            gen_ai_operation_name: self.operations.get(&record.operation),
            status: status_of(record),
            host: self.hosts.get(record.host.as_deref().unwrap_or("")),
        };
        self.inference_calls.get_or_create(&labels).inc();
        if !self.names.legacy() {
            return;
        }
        if let Some(seconds) = ms_to_seconds(record.processing_time_ms) {
            self.operation_duration
                .get_or_create(&labels)
                .observe(seconds);
        }
        if let Some(seconds) = record.ttft_ms.and_then(ms_to_seconds) {
            self.time_to_first_token
                .get_or_create(&labels)
                .observe(seconds);
        }
        if let Some(tokens_per_second) = record
            .tokens_per_second
            .filter(|tps| tps.is_finite() && *tps > 0.0)
        {
            self.time_per_output_token
                .get_or_create(&labels)
                .observe(1.0 / tokens_per_second);
        }
        let tokens = [
            (record.prompt_tokens, "input"),
            (record.output_tokens, "output"),
        ];
        for (count, token_type) in tokens {
            let Some(count) = count else { continue };
            let token_labels = TokenLabels {
                gen_ai_request_model: labels.gen_ai_request_model.clone(),
                gen_ai_operation_name: labels.gen_ai_operation_name.clone(),
                status: labels.status,
                host: labels.host.clone(),
                gen_ai_token_type: token_type,
            };
            // Token counts are far below 2^53, so the conversion is exact.
            self.token_usage
                .get_or_create(&token_labels)
                .observe(count as f64);
        }
    }

    /// The current conventions' view of one finished call.
    fn observe_latest(&self, record: &Record, model: Arc<str>) {
        let operation = gen_ai_operation_name(&record.endpoint);
        let labels = LatestLabels {
            provider: self.provider(record.host.as_deref()),
            operation,
            model,
            error_type: None,
        };
        let failed = LatestLabels {
            error_type: (!record.success)
                .then(|| record.error_kind.map_or("_OTHER", ErrorKind::as_str)),
            ..labels.clone()
        };
        let latest = &self.latest;
        let embeddings = operation == "embeddings";
        if let Some(seconds) = ms_to_seconds(record.processing_time_ms) {
            let family = if embeddings {
                &latest.embeddings_duration
            } else {
                &latest.inference_duration
            };
            family.get_or_create(&failed).observe(seconds);
        }
        if embeddings {
            if let Some(tokens) = record.prompt_tokens {
                latest
                    .embeddings_input_tokens
                    .get_or_create(&labels)
                    .observe(tokens as f64);
            }
            return;
        }
        if record.stream
            && let Some(seconds) = record.ttft_ms.and_then(ms_to_seconds)
        {
            latest
                .time_to_first_chunk
                .get_or_create(&labels)
                .observe(seconds);
        }
        // The counters take every call, 0 when no usage came back (the conventions ask
        // for that, under the `unknown` modality, which is also Ollama's: it does not
        // split usage by modality).
        let usage = UsageLabels {
            call: labels.clone(),
            modality: "unknown",
        };
        latest
            .usage_input_tokens
            .get_or_create(&usage)
            .inc_by(record.prompt_tokens.unwrap_or(0));
        latest
            .usage_output_tokens
            .get_or_create(&usage)
            .inc_by(record.output_tokens.unwrap_or(0));
        if let Some(tokens) = record.prompt_tokens {
            latest
                .operation_input_tokens
                .get_or_create(&labels)
                .observe(tokens as f64);
        }
        if let Some(tokens) = record.output_tokens {
            latest
                .operation_output_tokens
                .get_or_create(&labels)
                .observe(tokens as f64);
        }
    }

    /// Counts one HTTP request answered by the sidecar. `endpoint` should be a class from
    /// [`endpoint_class`]; a raw path is classified here, so that whatever the caller
    /// passes, only the fixed set of classes becomes a label value.
    pub fn observe_request(&self, endpoint: &str, status: u16) {
        let labels = RequestLabels {
            endpoint: path_class(endpoint),
            status,
        };
        self.http_requests.get_or_create(&labels).inc();
    }

    /// Records the latency the proxy itself added to one call, seconds: the total time
    /// minus the time spent waiting on the upstream. A slightly negative value (two
    /// clocks read at different moments) counts as zero; NaN and infinities are ignored.
    pub fn observe_proxy_overhead(&self, seconds: f64) {
        if let Some(seconds) = non_negative(seconds) {
            self.proxy_added_latency.observe(seconds);
        }
    }

    /// The page for `GET /metrics`, in the Prometheus text format ([`CONTENT_TYPE`]).
    ///
    /// The recorder's figures are exposed as:
    /// - `ollameter_records_written_total`, `ollameter_records_dropped_total` (counters),
    /// - `ollameter_models_evicted_total` (counter: models deleted to stay within
    ///   `store.max_models`),
    /// - `ollameter_recorder_queue_depth` (gauge),
    /// - store write latency as two counters, `ollameter_store_commits_total` and
    ///   `ollameter_store_commit_seconds_total` (the mean commit time over a window is
    ///   `rate(..._commit_seconds_total) / rate(..._commits_total)`), and the gauge
    ///   `ollameter_store_last_commit_seconds`. Counters rather than a histogram because
    ///   the recorder already keeps exactly these totals, so the writer thread needs no
    ///   handle on the metrics.
    pub fn render(&self, recorder: &RecorderSnapshot) -> String {
        let mut store = Registry::default();
        store.register(
            "ollameter_records_written",
            "Records committed to the store",
            ConstCounter::new(recorder.written),
        );
        store.register(
            "ollameter_records_dropped",
            "Records lost because the recorder queue was full or the store refused a batch",
            ConstCounter::new(recorder.dropped),
        );
        store.register(
            "ollameter_models_evicted",
            "Model names whose records were deleted to stay within store.max_models (names \
             without a successful call first, then the least recently used)",
            ConstCounter::new(recorder.models_evicted),
        );
        store.register(
            "ollameter_recorder_queue_depth",
            "Records waiting in the recorder queue",
            ConstGauge::new(recorder.queue_depth),
        );
        store.register(
            "ollameter_store_commits",
            "Store commits (batches of records)",
            ConstCounter::new(recorder.commits),
        );
        store.register_with_unit(
            "ollameter_store_commit",
            "Time spent committing batches to the store",
            Unit::Seconds,
            ConstCounter::new(recorder.commit_seconds_total.max(0.0)),
        );
        store.register_with_unit(
            "ollameter_store_last_commit",
            "Duration of the most recent store commit",
            Unit::Seconds,
            ConstGauge::new(recorder.last_commit_seconds.max(0.0)),
        );

        if let Some(otel) = self.otel.get() {
            use std::sync::atomic::Ordering::Relaxed;
            store.register(
                "ollameter_otel_spans_exported",
                "GenAI spans the OTLP collector accepted",
                ConstCounter::new(otel.exported.load(Relaxed)),
            );
            let dropped = Family::<[(&'static str, &'static str); 1], Counter>::default();
            dropped
                .get_or_create(&[("reason", "queue_full")])
                .inc_by(otel.dropped_queue_full.load(Relaxed));
            dropped
                .get_or_create(&[("reason", "export_failed")])
                .inc_by(otel.dropped_export_failed.load(Relaxed));
            store.register(
                "ollameter_otel_spans_dropped",
                "GenAI spans lost: the export queue was full (queue_full), or the collector \
                 refused, failed or did not answer in time (export_failed)",
                dropped,
            );
            store.register(
                "ollameter_otel_export_failures",
                "OTLP exports that failed or timed out",
                ConstCounter::new(otel.failed_exports.load(Relaxed)),
            );
            store.register(
                "ollameter_otel_queue_depth",
                "GenAI spans waiting to be exported",
                ConstGauge::new(otel.queue_depth()),
            );
        }
        let mut page = String::with_capacity(16 * 1024);
        // The 0.0.4 text format has no end marker, so two registries concatenate into one
        // valid page.
        for registry in [&self.registry, &store] {
            // Writing into a String cannot fail; were the library ever to report an error,
            // a partial page beats a panic on the scrape path.
            if let Err(error) = prometheus_text::encode(&mut page, registry) {
                tracing::warn!(%error, "encoding metrics failed");
            }
        }
        page
    }
}

/// The label value of a record's outcome: `ok`, or the error kind's snake_case name.
fn status_of(record: &Record) -> &'static str {
    match (record.success, record.error_kind) {
        (true, _) => "ok",
        (false, Some(kind)) => kind.as_str(),
        // A failure with no kind should not happen; keep it visible rather than as `ok`.
        (false, None) => "error",
    }
}

/// Milliseconds to seconds, dropping values no histogram should see.
fn ms_to_seconds(ms: f64) -> Option<f64> {
    non_negative(ms).map(|ms| ms / 1000.0)
}

/// `None` for NaN and infinities, zero for negatives.
fn non_negative(value: f64) -> Option<f64> {
    value.is_finite().then_some(value.max(0.0))
}

/// The low-cardinality endpoint class of a request, for `ollameter_http_requests_total`:
/// Ollama's and the compatibility API's routes map to themselves, routes ending in an id
/// map to their prefix (`/api/blobs/sha256-...` -> `/api/blobs`, `/v1/models/llama3.2`
/// -> `/v1/models`), the sidecar's own API to `/api/model-performance`, and everything
/// else, including unknown methods, to `other`. The query string is ignored.
pub fn endpoint_class(method: &str, path: &str) -> &'static str {
    if !KNOWN_METHODS.contains(&method) {
        return OTHER;
    }
    path_class(path)
}

/// [`endpoint_class`] without the method check. Idempotent: a class maps to itself.
fn path_class(path: &str) -> &'static str {
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    if let Some(class) = EXACT_ENDPOINTS.iter().find(|known| **known == path) {
        return class;
    }
    PREFIX_ENDPOINTS
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix) && path.len() > prefix.len())
        .map_or(OTHER, |(_, class)| class)
}

/// A set of label values that stops growing at a cap. Values are interned so that a
/// known value costs a read lock and a hash lookup, not an allocation. The locks are held
/// only around the lookup, never across an await.
#[derive(Debug)]
struct BoundedLabels {
    cap: usize,
    known: RwLock<HashSet<Arc<str>>>,
    other: Arc<str>,
    unknown: Arc<str>,
}

impl BoundedLabels {
    fn new(cap: usize) -> BoundedLabels {
        BoundedLabels {
            cap,
            known: RwLock::new(HashSet::new()),
            other: Arc::from(OTHER),
            unknown: Arc::from(UNKNOWN),
        }
    }

    /// The label value for `value` if it already has its own, else `other` (`unknown`
    /// when empty): never takes a new slot.
    fn get_if_known(&self, value: &str) -> Arc<str> {
        if value.is_empty() {
            return self.unknown.clone();
        }
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        known
            .get(value)
            .cloned()
            .unwrap_or_else(|| self.other.clone())
    }

    /// The label value for `value`: itself while under the cap (first come, first
    /// served), `unknown` when empty, `other` when too long or past the cap.
    fn get(&self, value: &str) -> Arc<str> {
        if value.is_empty() {
            return self.unknown.clone();
        }
        if value.len() > MAX_LABEL_VALUE_BYTES {
            return self.other.clone();
        }
        // A panic elsewhere while holding the lock leaves the set intact (inserts are
        // atomic), so a poisoned lock is still safe to use.
        {
            let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(interned) = known.get(value) {
                return interned.clone();
            }
            if known.len() >= self.cap {
                return self.other.clone();
            }
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have inserted it, or filled the set, between the two locks.
        if let Some(interned) = known.get(value) {
            return interned.clone();
        }
        if known.len() >= self.cap {
            return self.other.clone();
        }
        let interned: Arc<str> = Arc::from(value);
        known.insert(interned.clone());
        interned
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;

    use super::*;
    use crate::record::ErrorKind;

    /// One sample line of the text format.
    #[derive(Debug, Clone, PartialEq)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// Parses every sample line of a page, checking that the page is well formed on the
    /// way: each line is a comment or `name{labels} value`.
    fn parse(page: &str) -> Vec<Sample> {
        let mut samples = Vec::new();
        for line in page.lines() {
            if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment: {line}");
            let (series, value) = line.rsplit_once(' ').expect("a value after the series");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                other => other.parse().expect("a numeric value"),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels end with }");
                    (name, parse_labels(body))
                }
                None => (series, BTreeMap::new()),
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        samples
    }

    /// Parses `k="v",k2="v2"`, undoing the format's escapes.
    fn parse_labels(body: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("key=\"");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next().expect("a closing quote");
                match c {
                    '\\' => match chars.next().expect("an escaped char").1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    other => value.push(other),
                }
            };
            labels.insert(key.to_owned(), value);
            rest = after[end + 1..].trim_start_matches(',');
        }
        labels
    }

    /// The one sample named `name` whose labels include all of `want`.
    fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.name == name && matches(s, want))
            .collect();
        assert_eq!(found.len(), 1, "one {name} with {want:?}: {found:#?}");
        found[0].value
    }

    /// The sum of every sample named `name` whose labels include all of `want`.
    fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
        samples
            .iter()
            .filter(|s| s.name == name && matches(s, want))
            .map(|s| s.value)
            .sum()
    }

    fn matches(sample: &Sample, want: &[(&str, &str)]) -> bool {
        want.iter()
            .all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(*v))
    }

    fn record(model: &str, operation: &str) -> Record {
        let mut r = Record::new(
            "id".into(),
            Utc::now(),
            model.into(),
            operation.into(),
            "/api/generate".into(),
        );
        r.success = true;
        r.http_status = Some(200);
        r
    }

    fn ok_record(model: &str, processing_ms: f64, ttft_ms: f64, tps: f64) -> Record {
        let mut r = record(model, "generate");
        r.processing_time_ms = processing_ms;
        r.ttft_ms = Some(ttft_ms);
        r.tokens_per_second = Some(tps);
        r.prompt_tokens = Some(10);
        r.output_tokens = Some(100);
        r
    }

    fn failed(model: &str, kind: ErrorKind) -> Record {
        let mut r = record(model, "chat");
        r.success = false;
        r.error_kind = Some(kind);
        r.processing_time_ms = 50.0;
        r
    }

    fn render(metrics: &Metrics) -> Vec<Sample> {
        parse(&metrics.render(&RecorderSnapshot::default()))
    }

    #[test]
    fn calls_are_counted_by_model_operation_and_status() {
        let metrics = Metrics::new();
        metrics.observe_record(&ok_record("llama3.2", 100.0, 20.0, 50.0));
        metrics.observe_record(&ok_record("llama3.2", 300.0, 40.0, 25.0));
        metrics.observe_record(&failed("llama3.2", ErrorKind::ClientCancelled));
        metrics.observe_record(&failed("qwen3:8b", ErrorKind::UpstreamError));
        let s = render(&metrics);

        let calls = "ollameter_inference_calls_total";
        let llama_ok = [
            ("gen_ai_request_model", "llama3.2"),
            ("gen_ai_operation_name", "generate"),
            ("status", "ok"),
        ];
        assert_eq!(value(&s, calls, &llama_ok), 2.0);
        let cancelled = [
            ("gen_ai_request_model", "llama3.2"),
            ("gen_ai_operation_name", "chat"),
            ("status", "client_cancelled"),
        ];
        assert_eq!(value(&s, calls, &cancelled), 1.0);
        let qwen = [
            ("gen_ai_request_model", "qwen3:8b"),
            ("status", "upstream_error"),
        ];
        assert_eq!(value(&s, calls, &qwen), 1.0);
        assert_eq!(sum(&s, calls, &[]), 4.0);
        // The calls counter has exactly the documented labels.
        for sample in s.iter().filter(|x| x.name == calls) {
            let keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                [
                    "gen_ai_operation_name",
                    "gen_ai_request_model",
                    "host",
                    "status"
                ]
            );
        }
    }

    #[test]
    fn durations_are_histograms_in_seconds_with_the_conventions_buckets() {
        let metrics = Metrics::new();
        metrics.observe_record(&ok_record("llama3.2", 100.0, 20.0, 50.0));
        metrics.observe_record(&ok_record("llama3.2", 300.0, 40.0, 25.0));
        metrics.observe_record(&failed("llama3.2", ErrorKind::ClientCancelled));
        let s = render(&metrics);

        let ok = [
            ("gen_ai_request_model", "llama3.2"),
            ("status", "ok"),
            ("gen_ai_system", "ollama"),
        ];
        let duration = "gen_ai_client_operation_duration_seconds";
        assert_eq!(value(&s, &format!("{duration}_count"), &ok), 2.0);
        let total = value(&s, &format!("{duration}_sum"), &ok);
        assert!((total - 0.4).abs() < 1e-9, "{total}");
        // 0.1 s and 0.3 s: cumulative buckets.
        let bucket = format!("{duration}_bucket");
        let le = |bound: &str| {
            let mut want = ok.to_vec();
            want.push(("le", bound));
            value(&s, &bucket, &want)
        };
        assert_eq!(le("0.08"), 0.0);
        assert_eq!(le("0.16"), 1.0);
        assert_eq!(le("0.32"), 2.0);
        assert_eq!(le("81.92"), 2.0);
        assert_eq!(le("+Inf"), 2.0);
        let bounds: Vec<&str> = s
            .iter()
            .filter(|x| x.name == bucket && matches(x, &ok))
            .map(|x| x.labels["le"].as_str())
            .collect();
        assert_eq!(bounds.len(), OPERATION_DURATION_BUCKETS.len() + 1);

        let ttft = "gen_ai_server_time_to_first_token_seconds";
        assert_eq!(value(&s, &format!("{ttft}_count"), &ok), 2.0);
        let ttft_sum = value(&s, &format!("{ttft}_sum"), &ok);
        assert!((ttft_sum - 0.06).abs() < 1e-9, "{ttft_sum}");
        // The cancelled call had no first token: no TTFT series for it.
        let cancelled = [("status", "client_cancelled")];
        assert_eq!(sum(&s, &format!("{ttft}_count"), &cancelled), 0.0);
        assert_eq!(
            value(&s, &format!("{duration}_count"), &cancelled),
            1.0,
            "every call has a duration"
        );

        let tpot = "gen_ai_server_time_per_output_token_seconds";
        assert_eq!(value(&s, &format!("{tpot}_count"), &ok), 2.0);
        let tpot_sum = value(&s, &format!("{tpot}_sum"), &ok);
        assert!(
            (tpot_sum - (1.0 / 50.0 + 1.0 / 25.0)).abs() < 1e-9,
            "{tpot_sum}"
        );
    }

    #[test]
    fn tokens_are_split_into_input_and_output() {
        let metrics = Metrics::new();
        metrics.observe_record(&ok_record("llama3.2", 100.0, 20.0, 50.0));
        metrics.observe_record(&ok_record("llama3.2", 300.0, 40.0, 25.0));
        let mut embed = record("nomic-embed-text", "embed");
        embed.prompt_tokens = Some(7);
        metrics.observe_record(&embed);
        let s = render(&metrics);

        let usage = "gen_ai_client_token_usage";
        let input = [
            ("gen_ai_request_model", "llama3.2"),
            ("gen_ai_token_type", "input"),
        ];
        let output = [
            ("gen_ai_request_model", "llama3.2"),
            ("gen_ai_token_type", "output"),
        ];
        assert_eq!(value(&s, &format!("{usage}_sum"), &input), 20.0);
        assert_eq!(value(&s, &format!("{usage}_count"), &input), 2.0);
        assert_eq!(value(&s, &format!("{usage}_sum"), &output), 200.0);
        let mut in_16 = input.to_vec();
        in_16.push(("le", "16"));
        assert_eq!(value(&s, &format!("{usage}_bucket"), &in_16), 2.0);
        let mut out_64 = output.to_vec();
        out_64.push(("le", "64"));
        assert_eq!(value(&s, &format!("{usage}_bucket"), &out_64), 0.0);

        let embed_input = [
            ("gen_ai_request_model", "nomic-embed-text"),
            ("gen_ai_token_type", "input"),
        ];
        assert_eq!(value(&s, &format!("{usage}_sum"), &embed_input), 7.0);
        let embed_output = [
            ("gen_ai_request_model", "nomic-embed-text"),
            ("gen_ai_token_type", "output"),
        ];
        assert_eq!(sum(&s, &format!("{usage}_count"), &embed_output), 0.0);
        // No unit suffix: `{token}` is an annotation.
        assert!(
            !s.iter()
                .any(|x| x.name.starts_with("gen_ai_client_token_usage_tokens"))
        );
    }

    #[test]
    fn distinct_models_are_capped_and_the_rest_count_as_other() {
        let metrics = Metrics::new();
        for i in 0..MAX_MODELS + 5 {
            metrics.observe_record(&ok_record(&format!("model-{i}"), 10.0, 1.0, 10.0));
        }
        // A model seen before the cap keeps its label after it.
        metrics.observe_record(&ok_record("model-0", 10.0, 1.0, 10.0));
        let s = render(&metrics);

        let calls: Vec<&Sample> = s
            .iter()
            .filter(|x| x.name == "ollameter_inference_calls_total")
            .collect();
        assert_eq!(calls.len(), MAX_MODELS + 1, "{MAX_MODELS} models and other");
        let calls_of = |model: &str| {
            value(
                &s,
                "ollameter_inference_calls_total",
                &[("gen_ai_request_model", model)],
            )
        };
        assert_eq!(calls_of(OTHER), 5.0);
        assert_eq!(calls_of("model-0"), 2.0);
        assert_eq!(calls_of(&format!("model-{}", MAX_MODELS - 1)), 1.0);
        assert!(!s.iter().any(|x| {
            x.labels.get("gen_ai_request_model").map(String::as_str)
                == Some(&format!("model-{MAX_MODELS}"))
        }));
    }

    #[test]
    fn models_ollama_does_not_have_take_no_label_slot() {
        let metrics = Metrics::new();
        metrics.observe_record(&ok_record("llama3.2", 10.0, 1.0, 10.0));
        for i in 0..MAX_MODELS * 2 {
            metrics.observe_record(&failed(&format!("junk-{i}"), ErrorKind::ModelNotFound));
        }
        metrics.observe_record(&failed("llama3.2", ErrorKind::ModelNotFound));
        metrics.observe_record(&ok_record("qwen3:8b", 10.0, 1.0, 10.0));
        let s = render(&metrics);
        let calls_of = |model: &str| {
            sum(
                &s,
                "ollameter_inference_calls_total",
                &[("gen_ai_request_model", model)],
            )
        };
        assert_eq!(
            calls_of(OTHER),
            (MAX_MODELS * 2) as f64,
            "counted, as other"
        );
        assert_eq!(
            calls_of("qwen3:8b"),
            1.0,
            "a real model still gets its label"
        );
        assert_eq!(
            calls_of("llama3.2"),
            2.0,
            "a labelled model keeps its label"
        );
    }

    #[test]
    fn operations_are_capped_and_odd_names_are_bounded() {
        let metrics = Metrics::new();
        for i in 0..MAX_OPERATIONS + 3 {
            metrics.observe_record(&record("llama3.2", &format!("op-{i}")));
        }
        metrics.observe_record(&record("", "generate"));
        metrics.observe_record(&record(&"x".repeat(MAX_LABEL_VALUE_BYTES + 1), "generate"));
        let s = render(&metrics);

        let calls = "ollameter_inference_calls_total";
        let llama_other = [
            ("gen_ai_request_model", "llama3.2"),
            ("gen_ai_operation_name", OTHER),
        ];
        assert_eq!(value(&s, calls, &llama_other), 3.0);
        // `generate` came after the operation cap was reached, so it is `other` too.
        let unnamed = [
            ("gen_ai_request_model", UNKNOWN),
            ("gen_ai_operation_name", OTHER),
        ];
        assert_eq!(value(&s, calls, &unnamed), 1.0);
        assert_eq!(value(&s, calls, &[("gen_ai_request_model", OTHER)]), 1.0);
        let operations: HashSet<&str> = s
            .iter()
            .filter(|x| x.name == calls)
            .map(|x| x.labels["gen_ai_operation_name"].as_str())
            .collect();
        assert_eq!(operations.len(), MAX_OPERATIONS + 1);
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new();
        let model = "we\"ird\\model\nname";
        metrics.observe_record(&ok_record(model, 10.0, 1.0, 10.0));
        let page = metrics.render(&RecorderSnapshot::default());
        assert!(
            page.contains(r#"gen_ai_request_model="we\"ird\\model\nname""#),
            "{page}"
        );
        let s = parse(&page);
        assert_eq!(
            value(
                &s,
                "ollameter_inference_calls_total",
                &[("gen_ai_request_model", model)]
            ),
            1.0
        );
    }

    #[test]
    fn records_not_measured_by_the_proxy_are_ignored() {
        let metrics = Metrics::new();
        let mut imported = ok_record("llama3.2", 10.0, 1.0, 10.0);
        imported.source = Source::Import;
        metrics.observe_record(&imported);
        let mut manual = imported.clone();
        manual.source = Source::Manual;
        metrics.observe_record(&manual);
        let s = render(&metrics);
        assert!(!s.iter().any(|x| x.name.starts_with("gen_ai_")), "{s:#?}");
        assert_eq!(sum(&s, "ollameter_inference_calls_total", &[]), 0.0);
    }

    #[test]
    fn unknown_or_invalid_measurements_are_not_observed() {
        let metrics = Metrics::new();
        let mut r = ok_record("llama3.2", f64::NAN, f64::INFINITY, 0.0);
        r.prompt_tokens = None;
        r.output_tokens = None;
        metrics.observe_record(&r);
        let s = render(&metrics);
        assert_eq!(sum(&s, "ollameter_inference_calls_total", &[]), 1.0);
        for name in [
            "gen_ai_client_operation_duration_seconds_count",
            "gen_ai_server_time_to_first_token_seconds_count",
            "gen_ai_server_time_per_output_token_seconds_count",
            "gen_ai_client_token_usage_count",
        ] {
            assert_eq!(sum(&s, name, &[]), 0.0, "{name}");
        }
    }

    #[test]
    fn http_requests_are_counted_by_endpoint_class_and_status() {
        let metrics = Metrics::new();
        metrics.observe_request(endpoint_class("POST", "/api/generate"), 200);
        metrics.observe_request(endpoint_class("POST", "/api/generate"), 200);
        metrics.observe_request(endpoint_class("GET", "/api/model-performance/health"), 200);
        metrics.observe_request(endpoint_class("GET", "/wp-admin/x.php"), 404);
        // A raw path is classified rather than becoming a label value.
        metrics.observe_request("/api/blobs/sha256-0123abcd", 201);
        let s = render(&metrics);
        let requests = "ollameter_http_requests_total";
        let of = |endpoint: &str, status: &str| {
            value(&s, requests, &[("endpoint", endpoint), ("status", status)])
        };
        assert_eq!(of("/api/generate", "200"), 2.0);
        assert_eq!(of("/api/model-performance", "200"), 1.0);
        assert_eq!(of("other", "404"), 1.0);
        assert_eq!(of("/api/blobs", "201"), 1.0);
        assert_eq!(s.iter().filter(|x| x.name == requests).count(), 4);
    }

    #[test]
    fn endpoint_classes_are_a_fixed_set() {
        let cases = [
            ("POST", "/api/generate", "/api/generate"),
            ("POST", "/api/chat", "/api/chat"),
            ("POST", "/v1/chat/completions", "/v1/chat/completions"),
            ("GET", "/api/tags", "/api/tags"),
            ("GET", "/api/ps", "/api/ps"),
            ("POST", "/api/show", "/api/show"),
            ("POST", "/api/pull", "/api/pull"),
            ("DELETE", "/api/delete", "/api/delete"),
            ("HEAD", "/", "/"),
            ("GET", "/v1/models/hf.co/org/model:Q4_K_M", "/v1/models"),
            ("HEAD", "/api/blobs/sha256-abc", "/api/blobs"),
            (
                "GET",
                "/api/model-performance/statistics/llama3.2",
                "/api/model-performance",
            ),
            (
                "GET",
                "/api/model-performance/export?format=csv",
                "/api/model-performance",
            ),
            ("GET", "/metrics", "/metrics"),
            ("GET", "/dashboard?hours=6", "/dashboard"),
            ("POST", "/api/generate?x=1", "/api/generate"),
            ("POST", "/api/chat/", "other"),
            ("POST", "/api/blobs/", "other"),
            ("GET", "/api/model-performancex", "other"),
            ("GET", "/etc/passwd", "other"),
            ("BREW", "/api/generate", "other"),
        ];
        for (method, path, class) in cases {
            assert_eq!(endpoint_class(method, path), class, "{method} {path}");
            // Classes are fixed points, so observe_request can re-classify safely.
            assert_eq!(path_class(class), class);
        }
    }

    #[test]
    fn proxy_overhead_is_a_histogram_of_fine_buckets() {
        let metrics = Metrics::new();
        metrics.observe_proxy_overhead(0.000_02);
        metrics.observe_proxy_overhead(0.003);
        metrics.observe_proxy_overhead(-0.000_001);
        metrics.observe_proxy_overhead(f64::NAN);
        let s = render(&metrics);
        let name = "ollameter_proxy_added_latency_seconds";
        assert_eq!(value(&s, &format!("{name}_count"), &[]), 3.0);
        assert_eq!(
            value(&s, &format!("{name}_bucket"), &[("le", "1e-05")]),
            1.0
        );
        assert_eq!(
            value(&s, &format!("{name}_bucket"), &[("le", "2.5e-05")]),
            2.0
        );
        assert_eq!(
            value(&s, &format!("{name}_bucket"), &[("le", "0.0025")]),
            2.0
        );
        assert_eq!(
            value(&s, &format!("{name}_bucket"), &[("le", "0.005")]),
            3.0
        );
        assert_eq!(value(&s, &format!("{name}_bucket"), &[("le", "0.1")]), 3.0);
    }

    #[test]
    fn the_recorder_snapshot_is_rendered() {
        let metrics = Metrics::new();
        let snapshot = RecorderSnapshot {
            written: 120,
            dropped: 3,
            queue_depth: 7,
            commits: 4,
            commit_seconds_total: 0.02,
            last_commit_seconds: 0.004,
            models_evicted: 9,
        };
        let page = metrics.render(&snapshot);
        assert!(
            page.contains("# TYPE ollameter_recorder_queue_depth gauge\n"),
            "{page}"
        );
        assert!(
            page.contains("# TYPE ollameter_records_dropped_total counter\n"),
            "{page}"
        );
        let s = parse(&page);
        assert_eq!(value(&s, "ollameter_records_written_total", &[]), 120.0);
        assert_eq!(value(&s, "ollameter_records_dropped_total", &[]), 3.0);
        assert_eq!(value(&s, "ollameter_recorder_queue_depth", &[]), 7.0);
        assert_eq!(value(&s, "ollameter_store_commits_total", &[]), 4.0);
        assert_eq!(value(&s, "ollameter_store_commit_seconds_total", &[]), 0.02);
        assert_eq!(value(&s, "ollameter_store_last_commit_seconds", &[]), 0.004);
        assert_eq!(value(&s, "ollameter_models_evicted_total", &[]), 9.0);
    }

    #[test]
    fn every_help_and_type_line_belongs_to_a_rendered_family() {
        let metrics = Metrics::new();
        metrics.observe_record(&ok_record("llama3.2", 100.0, 20.0, 50.0));
        metrics.observe_request("/api/generate", 200);
        metrics.observe_proxy_overhead(0.0001);
        let page = metrics.render(&RecorderSnapshot::default());
        let types: Vec<(&str, &str)> = page
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split_once(' ').expect("name and type"))
            .collect();
        let expected = [
            ("ollameter_inference_calls_total", "counter"),
            ("ollameter_http_requests_total", "counter"),
            ("ollameter_proxy_added_latency_seconds", "histogram"),
            ("gen_ai_client_operation_duration_seconds", "histogram"),
            ("gen_ai_server_time_to_first_token_seconds", "histogram"),
            ("gen_ai_server_time_per_output_token_seconds", "histogram"),
            ("gen_ai_client_token_usage", "histogram"),
            ("ollameter_records_written_total", "counter"),
            ("ollameter_records_dropped_total", "counter"),
            ("ollameter_models_evicted_total", "counter"),
            ("ollameter_recorder_queue_depth", "gauge"),
            ("ollameter_store_commits_total", "counter"),
            ("ollameter_store_commit_seconds_total", "counter"),
            ("ollameter_store_last_commit_seconds", "gauge"),
        ];
        for pair in expected {
            assert!(types.contains(&pair), "{pair:?} in {types:?}");
        }
        assert_eq!(types.len(), expected.len(), "{types:?}");
        let samples = parse(&page);
        for (family, _) in types {
            assert!(
                samples.iter().any(|s| s.name.starts_with(family)),
                "{family} has samples"
            );
        }
    }

    #[test]
    fn the_current_genai_names_follow_the_conventions() {
        let metrics = Metrics::with_names(GenAiMetricNames::Latest);
        let mut chat = ok_record("llama3.2", 2000.0, 300.0, 50.0);
        chat.endpoint = "/api/chat".into();
        chat.operation = "photo_evaluation".into();
        chat.stream = true;
        metrics.observe_record(&chat);
        // Non-streamed generate: no time to first chunk.
        metrics.observe_record(&ok_record("llama3.2", 1000.0, 900.0, 50.0));
        let mut failed = failed("llama3.2", ErrorKind::UpstreamDisconnected);
        failed.endpoint = "/api/chat".into();
        metrics.observe_record(&failed);
        let mut embed = record("nomic-embed-text", "embed");
        embed.endpoint = "/api/embed".into();
        embed.processing_time_ms = 40.0;
        embed.prompt_tokens = Some(7);
        metrics.observe_record(&embed);
        let gaps = metrics
            .chunk_gaps("llama3.2", "/api/chat", None)
            .expect("on with the current names");
        gaps.observe(std::time::Duration::from_millis(15));
        gaps.observe(std::time::Duration::from_millis(25));
        let s = render(&metrics);

        let duration = "gen_ai_client_inference_duration_seconds";
        let chat_ok = [
            ("gen_ai_operation_name", "chat"),
            ("gen_ai_request_model", "llama3.2"),
            ("gen_ai_provider_name", "ollama"),
        ];
        // The successful chat (2 s) and the failed one (50 ms).
        assert!((sum(&s, &format!("{duration}_sum"), &chat_ok) - 2.05).abs() < 1e-9);
        assert!(
            s.iter()
                .filter(|x| x.name == format!("{duration}_sum"))
                .all(|x| x.labels.get("error_type").is_none_or(|e| !e.is_empty())),
            "no empty error_type on successes"
        );
        let mut chat_failed = chat_ok.to_vec();
        chat_failed.push(("error_type", "upstream_disconnected"));
        assert_eq!(value(&s, &format!("{duration}_count"), &chat_failed), 1.0);
        let completion = [("gen_ai_operation_name", "text_completion")];
        assert_eq!(value(&s, &format!("{duration}_sum"), &completion), 1.0);
        let ttft = "gen_ai_client_inference_time_to_first_chunk_seconds_count";
        assert_eq!(sum(&s, ttft, &[]), 1.0, "streamed calls only");
        assert_eq!(
            value(
                &s,
                "gen_ai_client_inference_time_per_output_chunk_seconds_sum",
                &chat_ok[..2]
            ),
            0.04
        );
        let input = "gen_ai_client_inference_usage_input_tokens_total";
        assert_eq!(
            value(
                &s,
                input,
                &[
                    ("gen_ai_operation_name", "chat"),
                    ("gen_ai_token_modality", "unknown")
                ]
            ),
            10.0,
            "the failed chat counts 0 tokens"
        );
        assert_eq!(
            value(
                &s,
                "gen_ai_client_inference_usage_output_tokens_total",
                &completion
            ),
            100.0
        );
        assert_eq!(
            value(
                &s,
                "gen_ai_client_inference_operation_output_tokens_count",
                &completion
            ),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "gen_ai_client_embeddings_duration_seconds_sum",
                &[("gen_ai_operation_name", "embeddings")]
            ),
            0.04
        );
        assert_eq!(
            value(
                &s,
                "gen_ai_client_embeddings_operation_input_tokens_sum",
                &[]
            ),
            7.0
        );
        assert_eq!(
            sum(&s, input, &[("gen_ai_operation_name", "embeddings")]),
            0.0
        );
        assert!(
            !s.iter()
                .any(|x| x.name.starts_with("gen_ai_client_operation"))
        );
        assert!(
            !s.iter()
                .any(|x| x.name.starts_with("gen_ai_client_token_usage"))
        );
        // ollameter's own counter keeps the client's operation names.
        assert_eq!(
            value(
                &s,
                "ollameter_inference_calls_total",
                &[("gen_ai_operation_name", "photo_evaluation")]
            ),
            1.0
        );
        assert!(
            Metrics::new()
                .chunk_gaps("llama3.2", "/api/chat", None)
                .is_none()
        );
    }

    #[test]
    fn the_current_genai_provider_follows_the_kind_of_the_upstream_that_served() {
        use crate::upstream::{KindSetting, UpstreamKind};
        let metrics = Metrics::with_names(GenAiMetricNames::Latest);
        let ollama = Kind::new(KindSetting::Fixed(UpstreamKind::Ollama));
        let llama = Kind::new(KindSetting::Fixed(UpstreamKind::OpenAi));
        let unknown = Kind::new(KindSetting::Auto);
        metrics.attach_upstreams([("gpu0", &ollama), ("llama", &llama), ("new", &unknown)]);
        for (host, n) in [
            (Some("gpu0"), 1),
            (Some("llama"), 2),
            (Some("new"), 4),
            (None, 8),
        ] {
            for _ in 0..n {
                let mut r = ok_record("m", 1000.0, 100.0, 10.0);
                r.host = host.map(str::to_string);
                metrics.observe_record(&r);
            }
        }
        let gaps = metrics
            .chunk_gaps("m", "/api/chat", Some("llama"))
            .expect("latest");
        gaps.observe(std::time::Duration::from_millis(10));
        let s = render(&metrics);
        let calls = "gen_ai_client_inference_duration_seconds_count";
        // An upstream of unknown kind counts as Ollama, as do records naming no upstream
        // (the first's kind).
        assert_eq!(
            value(&s, calls, &[("gen_ai_provider_name", "ollama")]),
            13.0
        );
        assert_eq!(
            value(&s, calls, &[("gen_ai_provider_name", "openai_compatible")]),
            2.0
        );
        assert_eq!(
            value(
                &s,
                "gen_ai_client_inference_time_per_output_chunk_seconds_count",
                &[("gen_ai_provider_name", "openai_compatible")]
            ),
            1.0
        );
        // Without upstreams attached every call is Ollama's.
        let plain = Metrics::with_names(GenAiMetricNames::Latest);
        plain.observe_record(&ok_record("m", 1000.0, 100.0, 10.0));
        assert_eq!(
            value(
                &render(&plain),
                calls,
                &[("gen_ai_provider_name", "ollama")]
            ),
            1.0
        );
    }

    #[test]
    fn the_content_type_is_the_libraries_text_format() {
        assert_eq!(CONTENT_TYPE, prometheus_text::CONTENT_TYPE);
    }

    #[test]
    fn metrics_can_be_shared_across_threads() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Metrics>();
        let metrics = Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let metrics = metrics.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        let model = format!("m{}", (t * 250 + i) % 7);
                        metrics.observe_record(&ok_record(&model, 10.0, 1.0, 10.0));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("observer thread");
        }
        let s = render(&metrics);
        assert_eq!(sum(&s, "ollameter_inference_calls_total", &[]), 1000.0);
    }
}
