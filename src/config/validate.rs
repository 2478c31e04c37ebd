//! Validation: the raw shape checked and turned into typed values, every problem listed
//! at once and named by its key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderName;

use super::*;
use crate::quality::QualityRules;
use crate::upstream::KindSetting;

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
    let upstream_kind = match raw.upstream.kind.as_deref().map(KindSetting::parse) {
        None => KindSetting::Auto,
        Some(Ok(kind)) => kind,
        Some(Err(e)) => {
            problems.push(format!("upstream.kind: {e}"));
            KindSetting::Auto
        }
    };
    let upstreams = upstream_list(&raw, upstream_kind, listen, &mut problems);
    let upstream = upstreams.first().map(|u| u.url.clone());
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
    let max_models = positive("store.max_models", raw.store.max_models, DEFAULT_MAX_MODELS);
    let max_age_days = positive(
        "store.max_age_days",
        raw.store.max_age_days,
        DEFAULT_MAX_AGE_DAYS,
    );
    let probe_interval_ms = positive(
        "upstream.probe_interval_ms",
        raw.upstream.probe_interval_ms,
        crate::fleet::DEFAULT_PROBE_INTERVAL_MS,
    );
    let eject_after_failures = positive(
        "upstream.eject_after_failures",
        raw.upstream.eject_after_failures,
        u64::from(crate::fleet::DEFAULT_EJECT_AFTER_FAILURES),
    );
    let eject_ms = positive(
        "upstream.eject_ms",
        raw.upstream.eject_ms,
        crate::fleet::DEFAULT_EJECT_MS,
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
    let operation_header_text = raw
        .proxy
        .operation_header
        .clone()
        .unwrap_or_else(|| DEFAULT_OPERATION_HEADER.into());
    let operation_header = match HeaderName::from_bytes(operation_header_text.as_bytes()) {
        Ok(name) => Some(name),
        Err(_) => {
            problems.push(format!(
                "proxy.operation_header: {operation_header_text:?} is not a header name"
            ));
            None
        }
    };
    let quality = match QualityRules::new(&raw.quality.rules) {
        Ok(rules) => Some(Arc::new(rules)),
        Err(rule_problems) => {
            problems.extend(rule_problems);
            None
        }
    };
    let log_format = match raw.log.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            problems.push(format!("log.format: {other:?} is not one of text, json"));
            LogFormat::Text
        }
    };
    let log_color = match raw.log.color.as_deref() {
        None => LogColor::Auto,
        Some(text) => LogColor::parse(text).unwrap_or_else(|| {
            problems.push(format!(
                "log.color: {text:?} is not one of auto, always, never"
            ));
            LogColor::Auto
        }),
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
    let store = store::validate(&raw.store, &mut problems);
    let mut routing = crate::routing::config::validate(raw.routing.clone(), &mut problems);
    let cost = crate::analytics::cost::validate(&raw.cost, &mut problems);
    routing.cost = std::sync::Arc::new(cost.clone());
    let alerts = crate::alerts::config::validate(&raw.alerts)
        .map_err(|more| problems.extend(more))
        .ok();
    let otel = crate::otel::config::validate(&raw.otel, &mut problems);
    let (
        Some(listen),
        Some(api_listen),
        Some(upstream),
        Some(operation_header),
        Some(quality),
        true,
    ) = (
        listen,
        api_listen.map_or(Some(None), |a| a.map(Some)),
        upstream,
        operation_header,
        quality,
        problems.is_empty(),
    )
    else {
        return Err(ConfigError(problems));
    };
    let telemetry_enabled = raw.telemetry.enabled.unwrap_or(true);
    let protect_writes = raw.api.protect_writes.unwrap_or(false);
    let shown = |token: &Option<String>| token.as_ref().map(|_| "(set)".to_string());
    let effective = RawConfig {
        server: RawServer {
            listen: Some(listen.to_string()),
            api_listen: api_listen.map(|a| a.to_string()),
            header_read_timeout_ms: Some(header_read_timeout_ms),
            max_connections: Some(max_connections),
            max_header_bytes: Some(max_header_bytes),
        },
        upstream: RawUpstream {
            url: (upstreams.len() == 1 && raw.upstreams.is_empty()).then(|| upstream.clone()),
            connect_timeout_ms: Some(connect_timeout_ms),
            kind: Some(upstream_kind.as_str().to_owned()),
            probe_interval_ms: Some(probe_interval_ms),
            eject_after_failures: Some(eject_after_failures),
            eject_ms: Some(eject_ms),
        },
        upstreams: if upstreams.len() == 1 && raw.upstreams.is_empty() {
            Vec::new()
        } else {
            upstreams
                .iter()
                .map(|u| RawUpstreamEntry {
                    name: Some(u.name.clone()),
                    url: Some(u.url.clone()),
                    kind: Some(u.kind.as_str().to_owned()),
                })
                .collect()
        },
        proxy: RawProxy {
            max_body_bytes: Some(max_body_bytes),
            operation_header: Some(operation_header_text),
            max_parse_bytes: Some(max_parse_bytes),
            quality_capture_bytes: Some(quality_capture_bytes),
        },
        store: RawStore {
            path: Some(crate::store::postgres::redact(&db_path.to_string_lossy())),
            max_records_per_model: Some(max_records_per_model),
            max_models: Some(max_models),
            max_age_days: Some(max_age_days),
            retention_interval_s: Some(retention_interval_s),
            instance: Some(store.instance.clone()),
            spill_capacity: Some(store.spill_capacity as u64),
            follow_interval_ms: Some(store.follow_interval.as_millis() as u64),
        },
        recorder: RawRecorder {
            queue_capacity: Some(queue_capacity),
            batch_size: Some(batch_size),
            flush_interval_ms: Some(flush_interval_ms),
        },
        quality: raw.quality.clone(),
        log: RawLog {
            level: Some(log_level.clone()),
            format: Some(
                match log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .into(),
            ),
            color: Some(
                match log_color {
                    LogColor::Auto => "auto",
                    LogColor::Always => "always",
                    LogColor::Never => "never",
                }
                .into(),
            ),
        },
        telemetry: RawTelemetry {
            enabled: Some(telemetry_enabled),
            interval_ms: Some(telemetry_interval_ms),
            server_pids: Some(raw.telemetry.server_pids.clone().unwrap_or_default()),
            process_names: Some(raw.telemetry.process_names.clone().unwrap_or_default()),
        },
        api: RawApi {
            admin_token: shown(&raw.api.admin_token),
            read_token: shown(&raw.api.read_token),
            protect_writes: Some(protect_writes),
        },
        routing: crate::routing::config::RawRouting {
            explore: Some(routing.explore),
            max_attempts: Some(routing.max_attempts),
            ..raw.routing.clone()
        },
        alerts: crate::alerts::config::effective(&raw.alerts),
        cost: raw.cost.clone(),
        otel: crate::otel::config::effective(&raw.otel, &otel),
    };
    let connect_timeout = Duration::from_millis(connect_timeout_ms);
    Ok(Config {
        server: ServerConfig {
            listen,
            api_listen,
            header_read_timeout: Duration::from_millis(header_read_timeout_ms),
            max_connections: max_connections as usize,
            max_header_bytes: max_header_bytes as usize,
        },
        proxy: ProxyConfig {
            upstream: upstream.clone(),
            upstreams: upstreams.clone(),
            health: crate::fleet::HealthConfig {
                probe_interval: Duration::from_millis(probe_interval_ms),
                eject_after_failures: u32::try_from(eject_after_failures).unwrap_or(u32::MAX),
                eject_for: Duration::from_millis(eject_ms),
            },
            connect_timeout,
            kind: upstreams.first().map_or(upstream_kind, |u| u.kind),
            operation_header,
            max_body_bytes,
            quality_capture_bytes,
            max_parse_bytes,
            quality,
        },
        store: StoreConfig { path: db_path },
        recorder: RecorderConfig {
            queue_capacity: queue_capacity as usize,
            batch_size: batch_size as usize,
            flush_interval: Duration::from_millis(flush_interval_ms),
            max_records_per_model,
            max_age: Duration::from_secs(max_age_days.saturating_mul(86_400)),
            retention_interval: Duration::from_secs(retention_interval_s),
            instance: store.instance,
            spill_capacity: store.spill_capacity,
            follow_interval: store.follow_interval,
            max_models: usize::try_from(max_models).unwrap_or(usize::MAX),
        },
        telemetry: TelemetryConfig {
            interval: Duration::from_millis(telemetry_interval_ms),
            upstream,
            server_pids: raw.telemetry.server_pids.unwrap_or_default(),
            process_names: raw.telemetry.process_names.unwrap_or_default(),
            enabled: telemetry_enabled,
        },
        access: Access {
            admin_token: raw.api.admin_token,
            read_token: raw.api.read_token,
            protect_writes,
        },
        log: LogConfig {
            level: log_level,
            format: log_format,
            color: log_color,
        },
        routing,
        alerts: alerts.unwrap_or_default(),
        cost,
        otel,
        effective,
    })
}

/// The upstreams: `[[upstreams]]`, else `upstream.url` (one URL, or several separated by
/// commas), else Ollama's default address. Names default to `host:port`; every problem
/// (a bad URL, a name used twice or unfit for a header, a loop back to ollameter's own
/// listen address) is listed, named by its key.
fn upstream_list(
    raw: &RawConfig,
    default_kind: KindSetting,
    listen: Option<SocketAddr>,
    problems: &mut Vec<String>,
) -> Vec<crate::fleet::UpstreamConfig> {
    // (key of the URL, key of the name, URL, name, kind)
    let mut given: Vec<(String, String, String, Option<String>, KindSetting)> = Vec::new();
    if raw.upstreams.is_empty() {
        let text = raw.upstream.url.as_deref().unwrap_or(DEFAULT_UPSTREAM);
        for part in text.split(',') {
            given.push((
                "upstream.url".into(),
                "upstream.url".into(),
                part.trim().to_owned(),
                None,
                default_kind,
            ));
        }
    } else {
        if raw.upstream.url.is_some() {
            problems.push(
                "upstream.url: set either upstream.url or [[upstreams]], not both (list every \
                 upstream under [[upstreams]])"
                    .into(),
            );
        }
        for (i, entry) in raw.upstreams.iter().enumerate() {
            let kind = match entry.kind.as_deref().map(KindSetting::parse) {
                None => default_kind,
                Some(Ok(kind)) => kind,
                Some(Err(e)) => {
                    problems.push(format!("upstreams[{i}].kind: {e}"));
                    default_kind
                }
            };
            let Some(url) = entry.url.clone() else {
                problems.push(format!(
                    "upstreams[{i}].url: missing; each upstream needs its URL, e.g. \
                     url = \"http://gpu-box-1:11434\""
                ));
                continue;
            };
            given.push((
                format!("upstreams[{i}].url"),
                format!("upstreams[{i}].name"),
                url,
                entry.name.clone(),
                kind,
            ));
        }
    }
    let mut out: Vec<crate::fleet::UpstreamConfig> = Vec::new();
    for (url_key, name_key, url, name, kind) in given {
        let url = match normalise_upstream(&url) {
            Ok(url) => url,
            Err(e) => {
                problems.push(format!("{url_key}: {e}"));
                continue;
            }
        };
        if let Some(listen) = listen
            && upstream_is_self(&url, listen)
        {
            problems.push(format!(
                "{url_key}: {url} is ollameter's own listen address {listen}; \
                 point it at Ollama (usually http://127.0.0.1:11434)"
            ));
        }
        let name = name.unwrap_or_else(|| upstream_authority(&url).to_owned());
        let fit = !name.is_empty()
            && name.chars().count() <= crate::fleet::MAX_NAME_CHARS
            && name.chars().all(|c| c.is_ascii_graphic() && c != ',');
        if !fit {
            problems.push(format!(
                "{name_key}: {name:?} is not a usable name: use 1 to {} visible ASCII \
                 characters without commas or spaces, e.g. gpu0",
                crate::fleet::MAX_NAME_CHARS
            ));
            continue;
        }
        if out.iter().any(|u| u.name == name) {
            problems.push(format!(
                "{name_key}: the name {name:?} is used by two upstreams; names must be \
                 unique (give each [[upstreams]] entry its own name)"
            ));
            continue;
        }
        out.push(crate::fleet::UpstreamConfig { name, url, kind });
    }
    if out.len() > crate::fleet::MAX_UPSTREAMS {
        problems.push(format!(
            "upstreams: {} upstreams given; one ollameter fronts at most {} (run another \
             ollameter for the rest)",
            out.len(),
            crate::fleet::MAX_UPSTREAMS
        ));
    }
    out
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
                "[store]\nmax_models = 0",
                "store.max_models: must be above 0",
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
                "[log]\ncolor = \"yes\"",
                "log.color: \"yes\" is not one of auto, always, never",
            ),
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

    fn load_text(text: &str, env: &[(&str, &str)], flags: &Overrides) -> Result<Config, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(Some(&path), &env, flags).map_err(|e| e.to_string())
    }

    #[test]
    fn several_upstreams_from_a_list_a_flag_or_named_entries() {
        let c = load_text(
            "",
            &[("OLLAMETER_UPSTREAM", "http://a:1, http://b:2/")],
            &Overrides::default(),
        )
        .expect("valid");
        let names: Vec<(&str, &str)> = c
            .proxy
            .upstreams
            .iter()
            .map(|u| (u.name.as_str(), u.url.as_str()))
            .collect();
        assert_eq!(names, [("a:1", "http://a:1"), ("b:2", "http://b:2")]);
        assert_eq!(c.proxy.upstream, "http://a:1");
        let text = "[upstream]\nkind = \"ollama\"\n\
                    [[upstreams]]\nname = \"gpu0\"\nurl = \"http://gpu-box-1:11434\"\n\
                    [[upstreams]]\nurl = \"http://gpu-box-2:11434\"\nkind = \"openai\"\n";
        let c = load_text(text, &[], &Overrides::default()).expect("valid");
        let got: Vec<(&str, &str)> = c
            .proxy
            .upstreams
            .iter()
            .map(|u| (u.name.as_str(), u.kind.as_str()))
            .collect();
        assert_eq!(got, [("gpu0", "ollama"), ("gpu-box-2:11434", "openai")]);
        // The effective configuration lists them, and reads back the same.
        let shown = c.to_toml().expect("toml");
        assert!(shown.contains("[[upstreams]]"), "{shown}");
        let again = load_text(&shown, &[], &Overrides::default()).expect("round trip");
        assert_eq!(again.proxy.upstreams, c.proxy.upstreams);
        // A flag (or the environment) replaces the file's list, as for any key.
        let flags = Overrides {
            upstream: Some("http://c:3".into()),
            ..Overrides::default()
        };
        let c = load_text(text, &[], &flags).expect("valid");
        assert_eq!(c.proxy.upstreams.len(), 1);
        assert_eq!(c.proxy.upstream, "http://c:3");
        // One upstream stays as it was: no [[upstreams]] in the effective file.
        let one = load_text("", &[], &Overrides::default()).expect("valid");
        assert!(!one.to_toml().expect("toml").contains("[[upstreams]]"));
    }

    #[test]
    fn bad_upstream_lists_are_refused_with_every_problem_named() {
        let cases: &[(&str, &[&str])] = &[
            (
                "[[upstreams]]\nname = \"gpu\"\nurl = \"http://a:1\"\n\
                 [[upstreams]]\nname = \"gpu\"\nurl = \"http://b:1\"\n",
                &["upstreams[1].name: the name \"gpu\" is used by two upstreams"],
            ),
            (
                "[upstream]\nurl = \"http://a:1,http://a:1\"\n",
                &["upstream.url: the name \"a:1\" is used by two upstreams"],
            ),
            (
                "[[upstreams]]\nurl = \"https://a:1\"\n[[upstreams]]\nname = \"b\"\n",
                &[
                    "upstreams[0].url: \"https://a:1\" must start with http://",
                    "upstreams[1].url: missing",
                ],
            ),
            (
                "[server]\nlisten = \"127.0.0.1:11435\"\n\
                 [[upstreams]]\nurl = \"http://a:1\"\n\
                 [[upstreams]]\nurl = \"http://127.0.0.1:11435\"\n",
                &["upstreams[1].url: http://127.0.0.1:11435 is ollameter's own listen address"],
            ),
            (
                "[[upstreams]]\nname = \"gpu 0\"\nurl = \"http://a:1\"\n",
                &["upstreams[0].name: \"gpu 0\" is not a usable name"],
            ),
            (
                "[upstream]\nurl = \"http://a:1\"\n[[upstreams]]\nurl = \"http://b:1\"\n",
                &["set either upstream.url or [[upstreams]]"],
            ),
            (
                "[[upstreams]]\nurl = \"http://a:1\"\nkind = \"vllm\"\n",
                &["upstreams[0].kind: \"vllm\" is not one of auto, ollama, openai"],
            ),
            (
                "[[upstreams]]\nurl = \"http://a:1\"\nport = 3\n",
                &["unknown field `port`"],
            ),
            (
                "[upstream]\neject_ms = 0\n",
                &["upstream.eject_ms: must be above 0"],
            ),
            (
                "[upstream]\nurl = \"http://a:1,\"\n",
                &["upstream.url: \"\" must start with http://"],
            ),
        ];
        for (text, needles) in cases {
            let err = load_text(text, &[], &Overrides::default()).expect_err(text);
            for needle in *needles {
                assert!(err.contains(needle), "{text}: {needle} missing from {err}");
            }
        }
        let many: Vec<String> = (0..17).map(|i| format!("http://h{i}:1")).collect();
        let text = format!("[upstream]\nurl = \"{}\"\n", many.join(","));
        let err = load_text(&text, &[], &Overrides::default()).expect_err("17 upstreams");
        assert!(
            err.contains("17 upstreams given; one ollameter fronts at most 16"),
            "{err}"
        );
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
