//! Configuration: a raw serde shape read from defaults, the TOML file, the environment
//! and the flags (in that order of precedence), then validated into typed values with
//! every problem reported at once, each named by its path (`recorder.flush_interval_ms`).
//!
//! - `raw`: the file's shape (every key optional, unknown keys rejected) and [`KEYS`].
//! - `load`: defaults < file < environment < flags, merged into the raw shape.
//! - `validate`: the raw shape checked and turned into [`Config`].
//!
//! This file holds the defaults (each with why that number) and the validated types.

mod load;
mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::logging::LogColor;
use crate::quality::QualityRuleConfig;

pub use load::{Overrides, env_name, load};
pub use raw::{
    KEYS, RawApi, RawConfig, RawLog, RawProxy, RawQuality, RawRecorder, RawServer, RawStore,
    RawTelemetry, RawUpstream,
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

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Proxy listen address.
    pub listen: SocketAddr,
    /// API listen address; `None` serves the API on `listen`.
    pub api_listen: Option<SocketAddr>,
    /// Upstream base URL, without a trailing slash.
    pub upstream: String,
    /// Connect timeout to the upstream.
    #[serde(serialize_with = "ser_ms")]
    pub connect_timeout: Duration,
    /// Largest request body read on instrumented routes.
    pub max_body_bytes: u64,
    /// Header naming the operation.
    pub operation_header: String,
    /// Largest JSON answer parsed.
    pub max_parse_bytes: u64,
    /// Answer bytes kept for quality rules.
    pub quality_capture_bytes: u64,
    /// Database file, or a PostgreSQL URL (printed without its password).
    #[serde(serialize_with = "ser_db")]
    pub db_path: PathBuf,
    /// Shared-store settings (instance name, spill, following).
    pub store: crate::store::settings::StoreSettings,
    /// Retention: records per model.
    pub max_records_per_model: u64,
    /// Retention: age in days.
    pub max_age_days: u64,
    /// Retention period.
    #[serde(serialize_with = "ser_s")]
    pub retention_interval: Duration,
    /// Recorder queue capacity.
    pub queue_capacity: usize,
    /// Recorder batch size.
    pub batch_size: usize,
    /// Recorder flush interval.
    #[serde(serialize_with = "ser_ms")]
    pub flush_interval: Duration,
    /// Quality rules as configured (compiled form in `quality`).
    pub quality_rules: Vec<QualityRuleConfig>,
    /// Log filter.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// When the text log uses ANSI colours.
    pub log_color: LogColor,
    /// Whether the telemetry sampler runs.
    pub telemetry_enabled: bool,
    /// Time between telemetry samples.
    #[serde(serialize_with = "ser_ms")]
    pub telemetry_interval: Duration,
    /// Ollama server PIDs given by hand.
    pub telemetry_server_pids: Vec<u32>,
    /// Ollama server process names given by hand.
    pub telemetry_process_names: Vec<String>,
    /// Deadline for a request's headers.
    #[serde(serialize_with = "ser_ms")]
    pub header_read_timeout: Duration,
    /// Connections served at once per listener.
    pub max_connections: usize,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Bearer token for destructive routes; never printed.
    #[serde(serialize_with = "ser_secret")]
    pub admin_token: Option<String>,
    /// Bearer token for reads; never printed.
    #[serde(serialize_with = "ser_secret")]
    pub read_token: Option<String>,
    /// Whether manual writes need the admin token.
    pub protect_writes: bool,
}

fn ser_secret<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("(set)"),
        None => s.serialize_str("(unset)"),
    }
}

fn ser_db<S: serde::Serializer>(p: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::store::postgres::redact(&p.to_string_lossy()))
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

fn ser_s<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// Configuration problems, every one of them, each naming its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);
