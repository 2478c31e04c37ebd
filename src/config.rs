//! Configuration: a raw serde shape read from defaults, the TOML file, the environment
//! and the flags (in that order of precedence), then validated into typed values with
//! every problem reported at once, each named by its path (`recorder.flush_interval_ms`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::quality::{QualityRuleConfig, QualityRules};

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
}

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

fn ser_db<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
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

/// Values given on the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--api-listen`
    pub api_listen: Option<String>,
    /// `--upstream`
    pub upstream: Option<String>,
    /// `--db`
    pub db: Option<String>,
    /// `--log-format`
    pub log_format: Option<String>,
}

/// Every key that can be set, as `section.key`: the environment variable is
/// `OLLAMETER_SECTION_KEY`.
pub const KEYS: &[&str] = &[
    "server.listen",
    "server.api_listen",
    "upstream.url",
    "upstream.connect_timeout_ms",
    "proxy.max_body_bytes",
    "proxy.operation_header",
    "proxy.max_parse_bytes",
    "proxy.quality_capture_bytes",
    "store.path",
    "store.max_records_per_model",
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
    "telemetry.enabled",
    "telemetry.interval_ms",
    "server.header_read_timeout_ms",
    "server.max_connections",
    "server.max_header_bytes",
    "api.admin_token",
    "api.read_token",
    "api.protect_writes",
];

/// Short environment names for the main settings, matching the flags.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("OLLAMETER_LISTEN", "server.listen"),
    ("OLLAMETER_API_LISTEN", "server.api_listen"),
    ("OLLAMETER_UPSTREAM", "upstream.url"),
    ("OLLAMETER_DB", "store.path"),
    ("OLLAMETER_LOG_FORMAT", "log.format"),
];

/// The environment variable for a `section.key`.
pub fn env_name(key: &str) -> String {
    format!("OLLAMETER_{}", key.replace('.', "_").to_uppercase())
}

/// Loads the configuration: defaults < file < environment < flags.
///
/// `env` is passed in (not read from the process) so tests can drive it.
pub fn load(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &Overrides,
) -> Result<Config, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(vec![format!("config file {}: {e}", path.display())]))?;
            text.parse::<toml::Table>().map_err(|e| {
                ConfigError(vec![format!(
                    "config file {}: {}",
                    path.display(),
                    e.message()
                )])
            })?
        }
        None => toml::Table::new(),
    };
    let mut problems = Vec::new();
    for (name, value) in env {
        let key = if let Some((_, key)) = ENV_ALIASES.iter().find(|(alias, _)| alias == name) {
            Some(*key)
        } else {
            KEYS.iter().copied().find(|k| env_name(k) == *name)
        };
        if let Some(key) = key {
            set_key(&mut table, key, env_value(value));
        } else if name.starts_with("OLLAMETER_") && name != "OLLAMETER_CONFIG" {
            problems.push(format!(
                "environment variable {name} is not a known setting"
            ));
        }
    }
    let flag_values = [
        ("server.listen", &flags.listen),
        ("server.api_listen", &flags.api_listen),
        ("upstream.url", &flags.upstream),
        ("store.path", &flags.db),
        ("log.format", &flags.log_format),
    ];
    for (key, value) in flag_values {
        if let Some(value) = value {
            set_key(&mut table, key, toml::Value::String(value.clone()));
        }
    }
    let raw: RawConfig = match RawConfig::deserialize(toml::Value::Table(table)) {
        Ok(raw) => raw,
        Err(e) => {
            problems.push(e.message().trim().to_string());
            return Err(ConfigError(problems));
        }
    };
    match validate(raw) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError(problems)),
        Err(ConfigError(more)) => {
            problems.extend(more);
            Err(ConfigError(problems))
        }
    }
}

/// An environment value as TOML when it parses as a number or boolean, else a string.
fn env_value(value: &str) -> toml::Value {
    if let Ok(v) = value.parse::<i64>() {
        return toml::Value::Integer(v);
    }
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value.to_string()),
    }
}

fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) {
    let (section, leaf) = key.split_once('.').unwrap_or(("", key));
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    if let toml::Value::Table(t) = entry {
        t.insert(leaf.to_string(), value);
    }
}

/// Turns the raw shape into typed values, listing every problem.
pub fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut addr = |key: &str, value: &str| -> Option<SocketAddr> {
        match value.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                problems.push(format!(
                    "{key}: {value:?} is not an address like 127.0.0.1:11435 or 0.0.0.0:11435"
                ));
                None
            }
        }
    };
    let listen = addr(
        "server.listen",
        raw.server.listen.as_deref().unwrap_or(DEFAULT_LISTEN),
    );
    let api_listen = raw
        .server
        .api_listen
        .as_deref()
        .map(|v| addr("server.api_listen", v));
    let upstream = raw
        .upstream
        .url
        .clone()
        .unwrap_or_else(|| DEFAULT_UPSTREAM.to_string());
    let upstream = match normalise_upstream(&upstream) {
        Ok(u) => Some(u),
        Err(e) => {
            problems.push(format!("upstream.url: {e}"));
            None
        }
    };
    let mut positive = |key: &str, value: Option<u64>, default: u64| -> u64 {
        let v = value.unwrap_or(default);
        if v == 0 {
            problems.push(format!("{key}: must be above 0"));
        }
        v
    };
    let connect_timeout_ms = positive(
        "upstream.connect_timeout_ms",
        raw.upstream.connect_timeout_ms,
        DEFAULT_CONNECT_TIMEOUT_MS,
    );
    let max_body_bytes = positive(
        "proxy.max_body_bytes",
        raw.proxy.max_body_bytes,
        DEFAULT_MAX_BODY_BYTES,
    );
    let max_parse_bytes = positive(
        "proxy.max_parse_bytes",
        raw.proxy.max_parse_bytes,
        DEFAULT_MAX_PARSE_BYTES,
    );
    let max_records_per_model = positive(
        "store.max_records_per_model",
        raw.store.max_records_per_model,
        DEFAULT_MAX_RECORDS_PER_MODEL,
    );
    let max_age_days = positive(
        "store.max_age_days",
        raw.store.max_age_days,
        DEFAULT_MAX_AGE_DAYS,
    );
    let retention_interval_s = positive(
        "store.retention_interval_s",
        raw.store.retention_interval_s,
        DEFAULT_RETENTION_INTERVAL_S,
    );
    let queue_capacity = positive(
        "recorder.queue_capacity",
        raw.recorder.queue_capacity,
        DEFAULT_QUEUE_CAPACITY,
    );
    let batch_size = positive(
        "recorder.batch_size",
        raw.recorder.batch_size,
        DEFAULT_BATCH_SIZE,
    );
    let flush_interval_ms = positive(
        "recorder.flush_interval_ms",
        raw.recorder.flush_interval_ms,
        DEFAULT_FLUSH_INTERVAL_MS,
    );
    let telemetry_interval_ms = positive(
        "telemetry.interval_ms",
        raw.telemetry.interval_ms,
        DEFAULT_TELEMETRY_INTERVAL_MS,
    );
    let header_read_timeout_ms = positive(
        "server.header_read_timeout_ms",
        raw.server.header_read_timeout_ms,
        DEFAULT_HEADER_READ_TIMEOUT_MS,
    );
    let max_connections = positive(
        "server.max_connections",
        raw.server.max_connections,
        DEFAULT_MAX_CONNECTIONS,
    );
    let max_header_bytes = positive(
        "server.max_header_bytes",
        raw.server.max_header_bytes,
        DEFAULT_MAX_HEADER_BYTES,
    );
    for (key, token) in [
        ("api.admin_token", &raw.api.admin_token),
        ("api.read_token", &raw.api.read_token),
    ] {
        if let Some(t) = token
            && (t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            problems.push(format!(
                "{key}: use at least 16 characters without spaces (e.g. `openssl rand -hex 24`)"
            ));
        }
    }
    let quality_capture_bytes = raw
        .proxy
        .quality_capture_bytes
        .unwrap_or(DEFAULT_QUALITY_CAPTURE_BYTES);
    let operation_header = raw
        .proxy
        .operation_header
        .clone()
        .unwrap_or_else(|| DEFAULT_OPERATION_HEADER.into());
    if axum::http::HeaderName::from_bytes(operation_header.as_bytes()).is_err() {
        problems.push(format!(
            "proxy.operation_header: {operation_header:?} is not a header name"
        ));
    }
    if let Err(rule_problems) = QualityRules::new(&raw.quality.rules) {
        problems.extend(rule_problems);
    }
    let log_format = match raw.log.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            problems.push(format!("log.format: {other:?} is not one of text, json"));
            LogFormat::Text
        }
    };
    let log_level = raw.log.level.clone().unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        problems.push(format!(
            "log.level: {log_level:?} is not a tracing filter like info or ollameter=debug"
        ));
    }
    let db_path = PathBuf::from(raw.store.path.clone().unwrap_or_else(|| DEFAULT_DB.into()));
    if db_path.as_os_str().is_empty() {
        problems.push("store.path: must not be empty".into());
    }
    let store = crate::store::settings::validate(&raw.store, &mut problems);
    if let (Some(listen), Some(upstream)) = (listen, upstream.as_deref())
        && upstream_is_self(upstream, listen)
    {
        problems.push(format!(
            "upstream.url: {upstream} is ollameter's own listen address {listen}; \
             point it at Ollama (usually http://127.0.0.1:11434)"
        ));
    }
    match (listen, api_listen, upstream) {
        (Some(listen), api_listen, Some(upstream))
            if problems.is_empty() && api_listen.is_none_or(|a| a.is_some()) =>
        {
            Ok(Config {
                listen,
                api_listen: api_listen.flatten(),
                upstream,
                connect_timeout: Duration::from_millis(connect_timeout_ms),
                max_body_bytes,
                operation_header,
                max_parse_bytes,
                quality_capture_bytes,
                db_path,
                store,
                max_records_per_model,
                max_age_days,
                retention_interval: Duration::from_secs(retention_interval_s),
                queue_capacity: queue_capacity as usize,
                batch_size: batch_size as usize,
                flush_interval: Duration::from_millis(flush_interval_ms),
                quality_rules: raw.quality.rules,
                log_level,
                log_format,
                telemetry_enabled: raw.telemetry.enabled.unwrap_or(true),
                telemetry_interval: Duration::from_millis(telemetry_interval_ms),
                telemetry_server_pids: raw.telemetry.server_pids.unwrap_or_default(),
                telemetry_process_names: raw.telemetry.process_names.unwrap_or_default(),
                header_read_timeout: Duration::from_millis(header_read_timeout_ms),
                max_connections: max_connections as usize,
                max_header_bytes: max_header_bytes as usize,
                admin_token: raw.api.admin_token,
                read_token: raw.api.read_token,
                protect_writes: raw.api.protect_writes.unwrap_or(false),
            })
        }
        _ => Err(ConfigError(problems)),
    }
}

/// Checks the upstream URL and returns it without a trailing slash.
fn normalise_upstream(url: &str) -> Result<String, String> {
    let Some(rest) = url.trim().strip_prefix("http://") else {
        return Err(format!(
            "{url:?} must start with http:// (Ollama serves plain HTTP; put TLS in front of both)"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if authority.contains('@') {
        return Err(format!("{url:?}: credentials in the URL are not supported"));
    }
    if rest.contains(['?', '#']) {
        return Err(format!("{url:?}: no query or fragment allowed"));
    }
    Ok(format!("http://{rest}"))
}

/// The upstream's `host:port`.
pub fn upstream_authority(upstream: &str) -> &str {
    let rest = upstream.strip_prefix("http://").unwrap_or(upstream);
    rest.split('/').next().unwrap_or(rest)
}

/// True when the upstream would resolve to the sidecar itself: a loop.
fn upstream_is_self(upstream: &str, listen: SocketAddr) -> bool {
    if listen.port() == 0 {
        return false;
    }
    let authority = upstream_authority(upstream);
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    use std::net::ToSocketAddrs;
    let Ok(addrs) = with_port.to_socket_addrs() else {
        return false;
    };
    addrs.into_iter().any(|a| {
        a.port() == listen.port()
            && (a.ip() == listen.ip()
                || (listen.ip().is_unspecified()
                    && (a.ip().is_loopback() || a.ip().is_unspecified())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = load(None, &[], &Overrides::default()).expect("defaults");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.upstream, DEFAULT_UPSTREAM);
        assert_eq!(c.flush_interval, Duration::from_millis(200));
        assert_eq!(c.max_body_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:1000\"\n[recorder]\nbatch_size = 7\nflush_interval_ms = 9\n[store]\npath = \"file.db\"\n",
        )
        .expect("write");
        let e = env(&[
            ("OLLAMETER_LISTEN", "127.0.0.1:2000"),
            ("OLLAMETER_RECORDER_BATCH_SIZE", "8"),
            ("OLLAMETER_DB", "env.db"),
        ]);
        let flags = Overrides {
            db: Some("flag.db".into()),
            ..Overrides::default()
        };
        let c = load(Some(&path), &e, &flags).expect("valid");
        assert_eq!(c.listen.port(), 2000, "env beats file");
        assert_eq!(c.batch_size, 8, "env beats file");
        assert_eq!(
            c.flush_interval,
            Duration::from_millis(9),
            "file beats default"
        );
        assert_eq!(c.db_path, PathBuf::from("flag.db"), "flag beats env");
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"nowhere\"\n[recorder]\nbatch_size = 0\n[log]\nformat = \"xml\"\n",
        )
        .expect("write");
        let e = env(&[("OLLAMETER_UPSTREAM", "https://x")]);
        let err = load(Some(&path), &e, &Overrides::default()).expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "server.listen",
            "recorder.batch_size",
            "log.format",
            "upstream.url",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[store]\npaht = \"x.db\"\n").expect("write");
        let err = load(Some(&path), &[], &Overrides::default()).expect_err("unknown key");
        assert!(err.to_string().contains("paht"), "{err}");
        let err = load(
            None,
            &env(&[("OLLAMETER_NOPE", "1")]),
            &Overrides::default(),
        )
        .expect_err("unknown env");
        assert!(err.to_string().contains("OLLAMETER_NOPE"), "{err}");
    }

    #[test]
    fn refuses_to_proxy_to_itself() {
        let flags = Overrides {
            listen: Some("127.0.0.1:11435".into()),
            upstream: Some("http://127.0.0.1:11435".into()),
            ..Overrides::default()
        };
        let err = load(None, &[], &flags).expect_err("loop");
        assert!(err.to_string().contains("own listen address"), "{err}");
        let flags = Overrides {
            listen: Some("0.0.0.0:11435".into()),
            upstream: Some("http://localhost:11435/".into()),
            ..Overrides::default()
        };
        assert!(load(None, &[], &flags).is_err());
    }

    #[test]
    fn each_rejection_names_its_key_and_says_what_is_wanted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases: &[(&str, &str)] = &[
            (
                "[server]\nlisten = \"x\"",
                "server.listen: \"x\" is not an address",
            ),
            (
                "[server]\napi_listen = \"y\"",
                "server.api_listen: \"y\" is not an address",
            ),
            (
                "[server]\nheader_read_timeout_ms = 0",
                "server.header_read_timeout_ms: must be above 0",
            ),
            (
                "[server]\nmax_connections = 0",
                "server.max_connections: must be above 0",
            ),
            (
                "[server]\nmax_header_bytes = 0",
                "server.max_header_bytes: must be above 0",
            ),
            (
                "[upstream]\nurl = \"https://o:1\"",
                "upstream.url: \"https://o:1\" must start with http://",
            ),
            ("[upstream]\nurl = \"http://\"", "has no host"),
            (
                "[upstream]\nurl = \"http://u:p@o:1\"",
                "credentials in the URL",
            ),
            (
                "[upstream]\nurl = \"http://o:1/?q\"",
                "no query or fragment",
            ),
            (
                "[upstream]\nconnect_timeout_ms = 0",
                "upstream.connect_timeout_ms: must be above 0",
            ),
            (
                "[proxy]\nmax_body_bytes = 0",
                "proxy.max_body_bytes: must be above 0",
            ),
            (
                "[proxy]\nmax_parse_bytes = 0",
                "proxy.max_parse_bytes: must be above 0",
            ),
            (
                "[proxy]\noperation_header = \"bad header\"",
                "proxy.operation_header",
            ),
            ("[store]\npath = \"\"", "store.path: must not be empty"),
            (
                "[store]\nmax_records_per_model = 0",
                "store.max_records_per_model: must be above 0",
            ),
            (
                "[store]\nmax_age_days = 0",
                "store.max_age_days: must be above 0",
            ),
            (
                "[store]\nretention_interval_s = 0",
                "store.retention_interval_s: must be above 0",
            ),
            (
                "[recorder]\nqueue_capacity = 0",
                "recorder.queue_capacity: must be above 0",
            ),
            (
                "[recorder]\nbatch_size = 0",
                "recorder.batch_size: must be above 0",
            ),
            (
                "[recorder]\nflush_interval_ms = 0",
                "recorder.flush_interval_ms: must be above 0",
            ),
            (
                "[telemetry]\ninterval_ms = 0",
                "telemetry.interval_ms: must be above 0",
            ),
            (
                "[log]\nformat = \"xml\"",
                "log.format: \"xml\" is not one of text, json",
            ),
            ("[log]\nlevel = \"[[\"", "log.level"),
            (
                "[api]\nadmin_token = \"short\"",
                "api.admin_token: use at least 16 characters",
            ),
            (
                "[api]\nread_token = \"has spaces in it ok\"",
                "api.read_token: use at least 16 characters",
            ),
            ("[[quality.rules]]\nscale_min = 1", "quality.rules[0]"),
            ("[store]\nmax_age_days = \"ninety\"", "invalid type"),
            ("[nope]\nx = 1", "unknown field `nope`"),
        ];
        for (i, (text, needle)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("c{i}.toml"));
            std::fs::write(&path, text).expect("write");
            let err = load(Some(&path), &[], &Overrides::default()).expect_err(text);
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn upstream_is_normalised() {
        assert_eq!(
            normalise_upstream("http://h:1/").as_deref(),
            Ok("http://h:1")
        );
        assert!(normalise_upstream("ftp://h").is_err());
        assert_eq!(upstream_authority("http://h:1/prefix"), "h:1");
    }
}
