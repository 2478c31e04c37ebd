//! `[otel]`: where spans go (OTLP over HTTP/protobuf or gRPC), how they are batched and
//! sampled, and which GenAI metric names `/metrics` uses. Read from the file, the
//! standard `OTEL_*` variables and `OLLAMETER_OTEL_*` (most specific last), validated
//! into [`OtelConfig`] with every problem named by its key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The OTLP/HTTP traces path appended to a base endpoint (the OTLP specification's).
pub const HTTP_TRACES_PATH: &str = "/v1/traces";
/// Service name when none is given: what a tracing tool lists the spans under.
pub const DEFAULT_SERVICE_NAME: &str = "ollameter";
/// The OTLP exporter's default timeout per export (the specification's 10 s): a collector
/// slower than this loses the batch, never holds anything else up.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Spans waiting for export at most (the specification's batch default): at 2,000 calls
/// a second this is one second of headroom while an export is in flight; more are
/// dropped and counted, never waited for.
pub const DEFAULT_MAX_QUEUE_SIZE: u64 = 2_048;
/// Spans per export request (the specification's default): one OTLP request of a few
/// hundred kilobytes.
pub const DEFAULT_MAX_EXPORT_BATCH_SIZE: u64 = 512;
/// Longest a span waits before its batch is sent (the specification's 5 s).
pub const DEFAULT_SCHEDULE_DELAY_MS: u64 = 5_000;

/// Every `[otel]` key, as `otel.key` (for the environment and the documentation test).
pub const KEYS: &[&str] = &[
    "otel.enabled",
    "otel.endpoint",
    "otel.traces_endpoint",
    "otel.protocol",
    "otel.headers",
    "otel.timeout_ms",
    "otel.service_name",
    "otel.sampler",
    "otel.sampler_arg",
    "otel.max_queue_size",
    "otel.max_export_batch_size",
    "otel.schedule_delay_ms",
    "otel.gen_ai_metric_names",
];

/// The standard OpenTelemetry variables and the key each sets. Where two name the same
/// key, the later (signal-specific) one wins.
pub const ENV: &[(&str, &str)] = &[
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "otel.endpoint"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otel.traces_endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "otel.protocol"),
    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "otel.protocol"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "otel.headers"),
    ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "otel.headers"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "otel.timeout_ms"),
    ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "otel.timeout_ms"),
    ("OTEL_SERVICE_NAME", "otel.service_name"),
    ("OTEL_TRACES_SAMPLER", "otel.sampler"),
    ("OTEL_TRACES_SAMPLER_ARG", "otel.sampler_arg"),
    ("OTEL_BSP_MAX_QUEUE_SIZE", "otel.max_queue_size"),
    (
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "otel.max_export_batch_size",
    ),
    ("OTEL_BSP_SCHEDULE_DELAY", "otel.schedule_delay_ms"),
];

/// The standard variables that turn export off: `OTEL_SDK_DISABLED=true` and
/// `OTEL_TRACES_EXPORTER=none`.
pub fn disabled_by_env(env: &[(String, String)]) -> bool {
    env.iter().any(|(name, value)| {
        (name == "OTEL_SDK_DISABLED" && value.trim().eq_ignore_ascii_case("true"))
            || (name == "OTEL_TRACES_EXPORTER" && value.trim().eq_ignore_ascii_case("none"))
    })
}

/// The GenAI metric names value that `OTEL_SEMCONV_STABILITY_OPT_IN` asks for, if it
/// names the GenAI conventions (`gen_ai_latest_experimental`) among its comma-separated
/// values.
pub fn semconv_opt_in(env: &[(String, String)]) -> Option<&'static str> {
    env.iter()
        .filter(|(name, _)| name == "OTEL_SEMCONV_STABILITY_OPT_IN")
        .flat_map(|(_, value)| value.split(','))
        .any(|v| v.trim() == "gen_ai_latest_experimental")
        .then_some("latest")
}

/// Sets the `[otel]` keys that the standard variables in `env` name, through `set`
/// (typed as the keys are: whole numbers for sizes and milliseconds, a float for the
/// sampler's ratio, text otherwise; a value that does not parse stays text, and the
/// configuration then says which key is wrong).
pub fn apply_env(env: &[(String, String)], set: &mut dyn FnMut(&str, toml::Value)) {
    for (variable, key) in ENV {
        let Some((_, value)) = env.iter().find(|(name, _)| name == variable) else {
            continue;
        };
        let value = value.trim();
        let typed = match *key {
            "otel.sampler_arg" => value
                .parse::<f64>()
                .map_or_else(|_| toml::Value::String(value.into()), toml::Value::Float),
            "otel.timeout_ms"
            | "otel.max_queue_size"
            | "otel.max_export_batch_size"
            | "otel.schedule_delay_ms" => value
                .parse::<i64>()
                .map_or_else(|_| toml::Value::String(value.into()), toml::Value::Integer),
            _ => toml::Value::String(value.into()),
        };
        set(key, typed);
    }
    if disabled_by_env(env) {
        set("otel.enabled", toml::Value::Boolean(false));
    }
    if let Some(names) = semconv_opt_in(env) {
        set(
            "otel.gen_ai_metric_names",
            toml::Value::String(names.into()),
        );
    }
}

/// `[otel]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawOtel {
    /// Export spans; on by default once an endpoint is set.
    pub enabled: Option<bool>,
    /// Base URL of the collector (`/v1/traces` is appended for HTTP).
    pub endpoint: Option<String>,
    /// Full URL for traces, used as is.
    pub traces_endpoint: Option<String>,
    /// `http/protobuf` or `grpc`.
    pub protocol: Option<String>,
    /// `key=value,key2=value2` sent with every export (API keys).
    pub headers: Option<String>,
    /// Longest one export may take.
    pub timeout_ms: Option<u64>,
    /// `service.name` of the spans.
    pub service_name: Option<String>,
    /// `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, ...
    pub sampler: Option<String>,
    /// The ratio of the ratio samplers.
    pub sampler_arg: Option<f64>,
    /// Spans waiting for export at most.
    pub max_queue_size: Option<u64>,
    /// Spans per export request.
    pub max_export_batch_size: Option<u64>,
    /// Longest a span waits before its batch is sent.
    pub schedule_delay_ms: Option<u64>,
    /// `legacy`, `latest` or `both`: the GenAI metric names of `/metrics`.
    pub gen_ai_metric_names: Option<String>,
}

/// How spans leave: OTLP over HTTP with protobuf bodies, or over gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`, the specification's default.
    HttpProtobuf,
    /// `grpc`.
    Grpc,
}

impl Protocol {
    /// The name used in `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Which spans are kept, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerSetting {
    /// Every span.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// A share of the traces, by trace id.
    TraceIdRatio(f64),
    /// The caller's decision when it sent one; else every span.
    ParentBasedAlwaysOn,
    /// The caller's decision when it sent one; else none.
    ParentBasedAlwaysOff,
    /// The caller's decision when it sent one; else a share by trace id.
    ParentBasedTraceIdRatio(f64),
}

impl SamplerSetting {
    /// The `OTEL_TRACES_SAMPLER` name.
    pub fn name(self) -> &'static str {
        match self {
            SamplerSetting::AlwaysOn => "always_on",
            SamplerSetting::AlwaysOff => "always_off",
            SamplerSetting::TraceIdRatio(_) => "traceidratio",
            SamplerSetting::ParentBasedAlwaysOn => "parentbased_always_on",
            SamplerSetting::ParentBasedAlwaysOff => "parentbased_always_off",
            SamplerSetting::ParentBasedTraceIdRatio(_) => "parentbased_traceidratio",
        }
    }

    /// The ratio of a ratio sampler.
    pub fn arg(self) -> Option<f64> {
        match self {
            SamplerSetting::TraceIdRatio(r) | SamplerSetting::ParentBasedTraceIdRatio(r) => Some(r),
            _ => None,
        }
    }
}

/// Which GenAI metric names `/metrics` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GenAiMetricNames {
    /// The names of the conventions up to v1.36 (`gen_ai.client.operation.duration`,
    /// `gen_ai.client.token.usage`, ...): what earlier versions of ollameter exposed.
    #[default]
    Legacy,
    /// The current names (`gen_ai.client.inference.duration`, input and output token
    /// counters, ...) only, as `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`
    /// asks.
    Latest,
    /// Both sets, to move dashboards from one to the other.
    Both,
}

impl GenAiMetricNames {
    /// The configuration's name.
    pub fn as_str(self) -> &'static str {
        match self {
            GenAiMetricNames::Legacy => "legacy",
            GenAiMetricNames::Latest => "latest",
            GenAiMetricNames::Both => "both",
        }
    }

    /// Whether the v1.36 names are exposed.
    pub fn legacy(self) -> bool {
        matches!(self, GenAiMetricNames::Legacy | GenAiMetricNames::Both)
    }

    /// Whether the current names are exposed.
    pub fn latest(self) -> bool {
        matches!(self, GenAiMetricNames::Latest | GenAiMetricNames::Both)
    }
}

/// `[otel]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelConfig {
    /// Whether spans are exported at all.
    pub enabled: bool,
    /// The transport.
    pub protocol: Protocol,
    /// Where traces go: the full URL (HTTP) or the server's address (gRPC).
    pub traces_endpoint: String,
    /// Headers sent with every export.
    pub headers: Vec<(String, String)>,
    /// Longest one export may take.
    pub timeout: Duration,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Which spans are kept.
    pub sampler: SamplerSetting,
    /// Spans waiting for export at most; more are dropped and counted.
    pub max_queue_size: usize,
    /// Spans per export request.
    pub max_export_batch_size: usize,
    /// Longest a span waits before its batch is sent.
    pub schedule_delay: Duration,
    /// The GenAI metric names of `/metrics`.
    pub gen_ai_metric_names: GenAiMetricNames,
}

impl Default for OtelConfig {
    fn default() -> OtelConfig {
        let mut problems = Vec::new();
        validate(&RawOtel::default(), &mut problems)
    }
}

/// Validates `[otel]`, adding each problem (named by its key) to `problems`.
pub fn validate(raw: &RawOtel, problems: &mut Vec<String>) -> OtelConfig {
    let protocol = match raw.protocol.as_deref().map(str::trim) {
        None | Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("grpc") => Protocol::Grpc,
        Some(other) => {
            problems.push(format!(
                "otel.protocol: {other:?} is not one of http/protobuf, grpc \
                 (http/json is not supported; use http/protobuf)"
            ));
            Protocol::HttpProtobuf
        }
    };
    let traces_endpoint = match (&raw.traces_endpoint, &raw.endpoint) {
        (Some(url), _) => checked_url("otel.traces_endpoint", url, problems),
        (None, Some(base)) => {
            let base = checked_url("otel.endpoint", base, problems);
            match protocol {
                Protocol::HttpProtobuf => {
                    format!("{}{HTTP_TRACES_PATH}", base.trim_end_matches('/'))
                }
                Protocol::Grpc => base,
            }
        }
        (None, None) => match protocol {
            Protocol::HttpProtobuf => format!("http://localhost:4318{HTTP_TRACES_PATH}"),
            Protocol::Grpc => "http://localhost:4317".to_string(),
        },
    };
    let configured = raw.endpoint.is_some() || raw.traces_endpoint.is_some();
    let enabled = raw.enabled.unwrap_or(configured);
    let headers = match raw.headers.as_deref().map(parse_headers) {
        None => Vec::new(),
        Some(Ok(headers)) => headers,
        Some(Err(e)) => {
            problems.push(format!("otel.headers: {e}"));
            Vec::new()
        }
    };
    let mut positive = |key: &str, value: Option<u64>, default: u64| -> u64 {
        let v = value.unwrap_or(default);
        if v == 0 {
            problems.push(format!("{key}: must be above 0"));
        }
        v
    };
    let timeout_ms = positive("otel.timeout_ms", raw.timeout_ms, DEFAULT_TIMEOUT_MS);
    let max_queue_size = positive(
        "otel.max_queue_size",
        raw.max_queue_size,
        DEFAULT_MAX_QUEUE_SIZE,
    );
    let max_export_batch_size = positive(
        "otel.max_export_batch_size",
        raw.max_export_batch_size,
        DEFAULT_MAX_EXPORT_BATCH_SIZE,
    );
    let schedule_delay_ms = positive(
        "otel.schedule_delay_ms",
        raw.schedule_delay_ms,
        DEFAULT_SCHEDULE_DELAY_MS,
    );
    if max_export_batch_size > max_queue_size {
        problems.push(format!(
            "otel.max_export_batch_size: {max_export_batch_size} is above otel.max_queue_size \
             {max_queue_size}; a batch is taken from the queue, so make it at most the queue's size"
        ));
    }
    let service_name = raw
        .service_name
        .clone()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
    let sampler = sampler(raw, problems);
    let gen_ai_metric_names = match raw.gen_ai_metric_names.as_deref().map(str::trim) {
        None | Some("legacy") => GenAiMetricNames::Legacy,
        Some("latest") => GenAiMetricNames::Latest,
        Some("both") => GenAiMetricNames::Both,
        Some(other) => {
            problems.push(format!(
                "otel.gen_ai_metric_names: {other:?} is not one of legacy, latest, both"
            ));
            GenAiMetricNames::Legacy
        }
    };
    OtelConfig {
        enabled,
        protocol,
        traces_endpoint,
        headers,
        timeout: Duration::from_millis(timeout_ms),
        service_name,
        sampler,
        max_queue_size: usize::try_from(max_queue_size).unwrap_or(usize::MAX),
        max_export_batch_size: usize::try_from(max_export_batch_size).unwrap_or(usize::MAX),
        schedule_delay: Duration::from_millis(schedule_delay_ms),
        gen_ai_metric_names,
    }
}

/// `[otel]` with every value in force, headers shown as `(set)` (they carry API keys).
pub fn effective(raw: &RawOtel, config: &OtelConfig) -> RawOtel {
    RawOtel {
        enabled: Some(config.enabled),
        endpoint: raw.endpoint.clone(),
        traces_endpoint: Some(config.traces_endpoint.clone()),
        protocol: Some(config.protocol.as_str().to_string()),
        headers: raw.headers.as_ref().map(|_| "(set)".to_string()),
        timeout_ms: Some(millis(config.timeout)),
        service_name: Some(config.service_name.clone()),
        sampler: Some(config.sampler.name().to_string()),
        sampler_arg: config.sampler.arg(),
        max_queue_size: Some(config.max_queue_size as u64),
        max_export_batch_size: Some(config.max_export_batch_size as u64),
        schedule_delay_ms: Some(millis(config.schedule_delay)),
        gen_ai_metric_names: Some(config.gen_ai_metric_names.as_str().to_string()),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn sampler(raw: &RawOtel, problems: &mut Vec<String>) -> SamplerSetting {
    let ratio = match raw.sampler_arg {
        None => 1.0,
        Some(r) if (0.0..=1.0).contains(&r) => r,
        Some(r) => {
            problems.push(format!(
                "otel.sampler_arg: {r} is not a ratio between 0.0 and 1.0 (0.1 keeps one trace in ten)"
            ));
            1.0
        }
    };
    match raw.sampler.as_deref().map(str::trim) {
        None | Some("parentbased_always_on") => SamplerSetting::ParentBasedAlwaysOn,
        Some("always_on") => SamplerSetting::AlwaysOn,
        Some("always_off") => SamplerSetting::AlwaysOff,
        Some("traceidratio") => SamplerSetting::TraceIdRatio(ratio),
        Some("parentbased_always_off") => SamplerSetting::ParentBasedAlwaysOff,
        Some("parentbased_traceidratio") => SamplerSetting::ParentBasedTraceIdRatio(ratio),
        Some(other) => {
            problems.push(format!(
                "otel.sampler: {other:?} is not one of always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
            ));
            SamplerSetting::ParentBasedAlwaysOn
        }
    }
}

/// An endpoint URL: `http://` only (put a collector next to ollameter for TLS to a SaaS
/// backend), with a host.
fn checked_url(key: &str, url: &str, problems: &mut Vec<String>) -> String {
    let url = url.trim();
    match url.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => url.to_string(),
        Some(_) => {
            problems.push(format!("{key}: {url:?} has no host"));
            url.to_string()
        }
        None => {
            problems.push(format!(
                "{key}: {url:?} must start with http:// (ollameter speaks plain OTLP; run an \
                 OpenTelemetry Collector next to it to forward over TLS)"
            ));
            url.to_string()
        }
    }
}

/// Parses `key=value,key2=value2` (the `OTEL_EXPORTER_OTLP_HEADERS` format; values may be
/// percent-encoded).
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "{pair:?} is not key=value (write headers as key=value,key2=value2)"
            ));
        };
        let key = key.trim();
        let value = percent_decode(value.trim());
        if axum::http::HeaderName::from_bytes(key.as_bytes()).is_err() {
            return Err(format!("{key:?} is not a header name"));
        }
        if axum::http::HeaderValue::from_str(&value).is_err() {
            return Err(format!("the value of {key:?} is not a valid header value"));
        }
        headers.push((key.to_string(), value));
    }
    Ok(headers)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawOtel) -> (OtelConfig, Vec<String>) {
        let mut problems = Vec::new();
        let config = validate(&raw, &mut problems);
        (config, problems)
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        let (c, p) = check(RawOtel::default());
        assert!(p.is_empty(), "{p:?}");
        assert!(!c.enabled);
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.sampler, SamplerSetting::ParentBasedAlwaysOn);
        assert_eq!(c.gen_ai_metric_names, GenAiMetricNames::Legacy);
        let (c, p) = check(RawOtel {
            endpoint: Some("http://collector:4318/".into()),
            ..RawOtel::default()
        });
        assert!(p.is_empty(), "{p:?}");
        assert!(c.enabled);
        assert_eq!(c.traces_endpoint, "http://collector:4318/v1/traces");
        let (c, _) = check(RawOtel {
            endpoint: Some("http://collector:4318".into()),
            enabled: Some(false),
            ..RawOtel::default()
        });
        assert!(!c.enabled, "enabled = false wins");
    }

    #[test]
    fn the_traces_endpoint_is_used_as_is_and_grpc_appends_no_path() {
        let (c, _) = check(RawOtel {
            endpoint: Some("http://a:4318".into()),
            traces_endpoint: Some("http://b:9999/custom".into()),
            ..RawOtel::default()
        });
        assert_eq!(c.traces_endpoint, "http://b:9999/custom");
        let (c, p) = check(RawOtel {
            endpoint: Some("http://a:4317".into()),
            protocol: Some("grpc".into()),
            ..RawOtel::default()
        });
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.traces_endpoint, "http://a:4317");
    }

    #[test]
    fn samplers_and_ratios() {
        let (c, p) = check(RawOtel {
            sampler: Some("parentbased_traceidratio".into()),
            sampler_arg: Some(0.25),
            ..RawOtel::default()
        });
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.sampler, SamplerSetting::ParentBasedTraceIdRatio(0.25));
        let (c, _) = check(RawOtel {
            sampler: Some("traceidratio".into()),
            ..RawOtel::default()
        });
        assert_eq!(
            c.sampler,
            SamplerSetting::TraceIdRatio(1.0),
            "arg defaults to 1"
        );
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let (_, p) = check(RawOtel {
            endpoint: Some("https://api.honeycomb.io".into()),
            protocol: Some("http/json".into()),
            headers: Some("x-api-key".into()),
            sampler: Some("sometimes".into()),
            sampler_arg: Some(1.5),
            max_queue_size: Some(0),
            gen_ai_metric_names: Some("newest".into()),
            ..RawOtel::default()
        });
        let text = p.join("\n");
        for key in [
            "otel.endpoint",
            "otel.protocol",
            "otel.headers",
            "otel.sampler:",
            "otel.sampler_arg",
            "otel.max_queue_size",
            "otel.gen_ai_metric_names",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
    }

    #[test]
    fn headers_parse_like_the_standard_variable() {
        assert_eq!(
            parse_headers("x-honeycomb-team=abc, authorization=Basic%20dXNlcg%3D%3D").expect("ok"),
            vec![
                ("x-honeycomb-team".to_string(), "abc".to_string()),
                ("authorization".to_string(), "Basic dXNlcg==".to_string()),
            ]
        );
        assert!(parse_headers("bad header=1").is_err());
        assert!(parse_headers("novalue").is_err());
        assert_eq!(parse_headers("").expect("empty"), vec![]);
    }

    #[test]
    fn the_standard_switches() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(disabled_by_env(&env(&[("OTEL_SDK_DISABLED", "true")])));
        assert!(disabled_by_env(&env(&[("OTEL_TRACES_EXPORTER", "none")])));
        assert!(!disabled_by_env(&env(&[("OTEL_TRACES_EXPORTER", "otlp")])));
        assert_eq!(
            semconv_opt_in(&env(&[(
                "OTEL_SEMCONV_STABILITY_OPT_IN",
                "http, gen_ai_latest_experimental"
            )])),
            Some("latest")
        );
        assert_eq!(
            semconv_opt_in(&env(&[("OTEL_SEMCONV_STABILITY_OPT_IN", "http")])),
            None
        );
    }
}
