//! The file's shape: every key optional, unknown keys rejected; and the list of every key.

use serde::{Deserialize, Serialize};

use crate::quality::QualityRuleConfig;

/// The file's shape: every key optional, unknown keys rejected.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`
    #[serde(default)]
    pub server: RawServer,
    /// `[upstream]`
    #[serde(default)]
    pub upstream: RawUpstream,
    /// `[[upstreams]]`: several upstreams, each with a name (instead of `upstream.url`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<RawUpstreamEntry>,
    /// `[proxy]`
    #[serde(default)]
    pub proxy: RawProxy,
    /// `[store]`
    #[serde(default)]
    pub store: RawStore,
    /// `[recorder]`
    #[serde(default)]
    pub recorder: RawRecorder,
    /// `[quality]`
    #[serde(default)]
    pub quality: RawQuality,
    /// `[log]`
    #[serde(default)]
    pub log: RawLog,
    /// `[telemetry]`
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// `[api]`
    #[serde(default)]
    pub api: RawApi,
    /// `[routing]`
    #[serde(default)]
    pub routing: crate::routing::config::RawRouting,
    /// `[alerts]`
    #[serde(default)]
    pub alerts: crate::alerts::config::RawAlerts,
    /// `[cost]`
    #[serde(default)]
    pub cost: crate::analytics::cost::RawCost,
    /// `[otel]`
    #[serde(default)]
    pub otel: crate::otel::config::RawOtel,
}

/// `[telemetry]`: the memory and GPU sampler.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// Whether to sample at all.
    pub enabled: Option<bool>,
    /// Time between samples.
    pub interval_ms: Option<u64>,
    /// PIDs of the Ollama server, when it cannot be found by name.
    pub server_pids: Option<Vec<u32>>,
    /// Extra process names to treat as Ollama's server.
    pub process_names: Option<Vec<String>>,
}

/// `[server]`: where the sidecar listens.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Proxy (and API, unless `api_listen` is set) address.
    pub listen: Option<String>,
    /// Optional separate address for the API.
    pub api_listen: Option<String>,
    /// Deadline for a client to send a request's headers.
    pub header_read_timeout_ms: Option<u64>,
    /// Connections served at once.
    pub max_connections: Option<u64>,
    /// Largest request head (request line and headers).
    pub max_header_bytes: Option<u64>,
}

/// `[api]`: who may use the sidecar's own API.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// Bearer token for destructive routes (and manual writes when protected).
    pub admin_token: Option<String>,
    /// Bearer token for reads; unset keeps reads open.
    pub read_token: Option<String>,
    /// Whether `POST /record` and `POST /import` need the admin token too.
    pub protect_writes: Option<bool>,
}

/// `[upstream]`: the Ollama server.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Base URL of Ollama.
    pub url: Option<String>,
    /// TCP connect timeout.
    pub connect_timeout_ms: Option<u64>,
    /// `auto`, `ollama` or `openai`.
    pub kind: Option<String>,
    /// With several upstreams: time between two health probes of each.
    pub probe_interval_ms: Option<u64>,
    /// With several upstreams: failed calls in a row that eject a host.
    pub eject_after_failures: Option<u64>,
    /// With several upstreams: how long an ejected host rests before a trial call.
    pub eject_ms: Option<u64>,
}

/// One `[[upstreams]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamEntry {
    /// Its name in records, headers and labels; default `host:port`.
    pub name: Option<String>,
    /// Its base URL.
    pub url: Option<String>,
    /// `auto`, `ollama` or `openai`; default `upstream.kind`.
    pub kind: Option<String>,
}

/// `[proxy]`: how requests are read and measured.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// Largest request body on instrumented routes.
    pub max_body_bytes: Option<u64>,
    /// Header naming the operation.
    pub operation_header: Option<String>,
    /// Largest non-streamed JSON answer parsed for metrics.
    pub max_parse_bytes: Option<u64>,
    /// Answer text kept for quality rules.
    pub quality_capture_bytes: Option<u64>,
}

/// `[store]`: the SQLite file and retention.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// Path of the database file.
    pub path: Option<String>,
    /// Newest records kept per model.
    pub max_records_per_model: Option<u64>,
    /// Distinct model names kept.
    pub max_models: Option<u64>,
    /// Records older than this are deleted.
    pub max_age_days: Option<u64>,
    /// How often retention runs.
    pub retention_interval_s: Option<u64>,
    /// This instance's name in a shared store (default: the host name).
    pub instance: Option<String>,
    /// Records held through a shared store's outage beyond the queue.
    pub spill_capacity: Option<u64>,
    /// How often the history looks for other instances' changes.
    pub follow_interval_ms: Option<u64>,
}

/// `[recorder]`: the queue between the proxy and the store.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRecorder {
    /// Records held in memory at most; more are dropped and counted.
    pub queue_capacity: Option<u64>,
    /// Records per transaction at most.
    pub batch_size: Option<u64>,
    /// Longest wait before a record is committed.
    pub flush_interval_ms: Option<u64>,
}

/// `[quality]`: rules reading a score from answers.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawQuality {
    /// The rules, first match wins.
    #[serde(default)]
    pub rules: Vec<QualityRuleConfig>,
}

/// `[log]`: logging.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `tracing` filter, e.g. `info` or `ollameter=debug`; `RUST_LOG` wins when set.
    pub level: Option<String>,
    /// `text` or `json`.
    pub format: Option<String>,
    /// `auto`, `always` or `never`: ANSI colours in the text log.
    pub color: Option<String>,
}

/// Every key that can be set, as `section.key`: the environment variable is
/// `OLLAMETER_SECTION_KEY`.
pub const KEYS: &[&str] = &[
    "server.listen",
    "server.api_listen",
    "upstream.url",
    "upstream.connect_timeout_ms",
    "upstream.kind",
    "upstream.probe_interval_ms",
    "upstream.eject_after_failures",
    "upstream.eject_ms",
    "proxy.max_body_bytes",
    "proxy.operation_header",
    "proxy.max_parse_bytes",
    "proxy.quality_capture_bytes",
    "store.path",
    "store.max_records_per_model",
    "store.max_models",
    "store.max_age_days",
    "store.retention_interval_s",
    "store.instance",
    "store.spill_capacity",
    "store.follow_interval_ms",
    "recorder.queue_capacity",
    "recorder.batch_size",
    "recorder.flush_interval_ms",
    "log.level",
    "log.format",
    "log.color",
    "telemetry.enabled",
    "telemetry.interval_ms",
    "server.header_read_timeout_ms",
    "server.max_connections",
    "server.max_header_bytes",
    "api.admin_token",
    "api.read_token",
    "api.protect_writes",
    "routing.explore",
    "routing.max_attempts",
    "cost.price_per_kwh",
    "cost.gpu_hour_price",
    "cost.currency",
];
