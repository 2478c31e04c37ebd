//! Configuration: a raw serde shape read from defaults, the TOML file, the environment
//! and the flags (in that order of precedence), then validated into typed values with
//! every problem reported at once, each named by its path (`recorder.flush_interval_ms`).
//!
//! - `raw`: the file's shape (every key optional, unknown keys rejected) and [`KEYS`].
//! - `load`: defaults < file < environment < flags, merged into the raw shape.
//! - `validate`: the raw shape checked and turned into [`Config`].
//!
//! This file holds the defaults (each with why that number) and the validated [`Config`]:
//! one typed section per part ([`ProxyConfig`], [`RecorderConfig`], [`TelemetryConfig`],
//! [`Access`], ...), each the type that part takes, so nothing is split up again later.

mod load;
mod raw;
pub mod store;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use crate::api::auth::Access;
use crate::logging::LogColor;
pub use crate::proxy::ProxyConfig;
pub use crate::recorder::RecorderConfig;
pub use crate::telemetry::TelemetryConfig;

pub use load::{Overrides, env_name, load};
pub use raw::{
    KEYS, RawApi, RawConfig, RawLog, RawProxy, RawQuality, RawRecorder, RawServer, RawStore,
    RawTelemetry, RawUpstream, RawUpstreamEntry,
};
pub use validate::{upstream_authority, validate};

/// Where the sidecar listens by default: Ollama's port plus one, loopback only, so that a
/// fresh install exposes nothing to the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:11435";
/// Ollama's own default address.
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:11434";
/// The store's file, relative to the working directory.
pub const DEFAULT_DB: &str = "ollameter.db";
/// Several base64 photos in one request fit well under this; anything larger is a mistake.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Connecting to a local Ollama takes microseconds; 5 s covers a remote one on a slow
/// network without letting a dead host hold a request for long.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// The header a client sets to name its operation (e.g. `photo_evaluation`).
pub const DEFAULT_OPERATION_HEADER: &str = "X-Operation";
/// A non-streamed JSON answer (embeddings of a large batch) is buffered up to this to be
/// parsed; larger answers pass through unparsed and the record says so.
pub const DEFAULT_MAX_PARSE_BYTES: u64 = 64 * 1024 * 1024;
/// The answer text kept for quality rules: a scored answer is short; this bounds memory.
pub const DEFAULT_QUALITY_CAPTURE_BYTES: u64 = 1024 * 1024;
/// At about 2,000 calls/s this is five seconds of headroom if the disk stalls.
pub const DEFAULT_QUEUE_CAPACITY: u64 = 10_000;
/// Rows per transaction: 64 rows commit in about 0.2 ms. Larger transactions hold a core
/// long enough to delay proxied calls on a small machine (on 2 cores, 512 rows put the
/// p99 of a lone client's calls at 0.9 ms against 0.4 ms with 64), and 64 rows still
/// commit over 200,000 records/s (docs/benchmarks.md).
pub const DEFAULT_BATCH_SIZE: u64 = 64;
/// The longest a record waits in memory before it is committed: bounds what a crash loses.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 200;
/// Per model: enough history for stable percentiles and trends (the earlier system kept 1,000).
pub const DEFAULT_MAX_RECORDS_PER_MODEL: u64 = 10_000;
/// Distinct model names the history keeps: far more than one Ollama host serves (a few
/// dozen), few enough that every view of them stays small and fast (docs/benchmarks.md),
/// and a bound on memory under any stream of names a client sends.
pub const DEFAULT_MAX_MODELS: u64 = 1_000;
/// A quarter of history, for trends across model updates.
pub const DEFAULT_MAX_AGE_DAYS: u64 = 90;
/// Memory moves on the scale of seconds (a model loads, a context grows); sampling each
/// second catches a call's peak without measurable cost.
pub const DEFAULT_TELEMETRY_INTERVAL_MS: u64 = 1_000;
/// A client has this long to send a request's headers: far more than any real client
/// needs, short enough that slow-loris connections do not pile up.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 30_000;
/// Connections per listener at once: well above what one Ollama serves in parallel, low
/// enough to stay inside the default 1,024 file descriptors with the upstream side.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 512;
/// Largest request head: 64 KiB holds any real client's headers; larger gets 431.
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Retention is cheap with the indexes; every five minutes keeps the store near its bounds.
pub const DEFAULT_RETENTION_INTERVAL_S: u64 = 300;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The validated configuration: one typed section for each part, which `app` passes to
/// that part as it is.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen and the limits of each connection.
    pub server: ServerConfig,
    /// The data plane: upstream, body limits, the operation header, quality rules.
    pub proxy: ProxyConfig,
    /// The SQLite file.
    pub store: StoreConfig,
    /// The queue, the batches and retention.
    pub recorder: RecorderConfig,
    /// The memory and GPU sampler.
    pub telemetry: TelemetryConfig,
    /// Who may call what on the API.
    pub access: Access,
    /// Logging.
    pub log: LogConfig,
    /// Model routing: virtual names, fallbacks, exploration.
    pub routing: crate::routing::config::RoutingConfig,
    /// `[alerts]`: change detectors and webhooks.
    pub alerts: crate::alerts::config::AlertsConfig,
    /// `[cost]`: energy and GPU-hour prices, and paid APIs to compare with.
    pub cost: crate::analytics::cost::CostConfig,
    /// `[otel]`: span export over OTLP and the GenAI metric names.
    pub otel: crate::otel::OtelConfig,
    /// Every key with its effective value, in the file's shape (tokens shown as `(set)`),
    /// for `ollameter config check`.
    effective: RawConfig,
}

impl Config {
    /// The effective configuration as TOML in the file's shape: every key with the value
    /// in force (defaults filled in), tokens shown as `(set)`, never their value.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(&self.effective)
    }
}

/// `[server]`: where the sidecar listens and how long a connection may take.
#[derive(Debug, Clone, Copy)]
pub struct ServerConfig {
    /// Proxy listen address (and the API's, unless `api_listen` is set).
    pub listen: SocketAddr,
    /// API listen address; `None` serves the API on `listen`.
    pub api_listen: Option<SocketAddr>,
    /// Deadline for a request's headers.
    pub header_read_timeout: Duration,
    /// Connections served at once per listener.
    pub max_connections: usize,
    /// Largest request head.
    pub max_header_bytes: usize,
}

/// `[store]`: where the records are kept. Its retention and shared-store settings
/// (instance name, spill, following) are the recorder's, which applies them.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Database file, or a PostgreSQL URL (`postgres://...`), checked by `validate`.
    pub path: PathBuf,
}

/// `[log]`: what is logged and how.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `tracing` filter (`RUST_LOG` wins when set).
    pub level: String,
    /// Line format.
    pub format: LogFormat,
    /// When the text log uses ANSI colours.
    pub color: LogColor,
}

/// Configuration problems, every one of them, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);
