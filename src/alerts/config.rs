//! `[alerts]`: the change detectors' thresholds and the webhooks, read as a raw serde
//! shape and validated into [`AlertsConfig`] with every problem named by its key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Detectors run unless turned off: watching costs a few microseconds per record.
pub const DEFAULT_ENABLED: bool = true;
/// Baseline values kept per model and metric: 500 makes the median and MAD steady enough
/// that, with the defaults below, 100,000 calls of stationary log-normal noise raise no
/// alert (tests in `detector.rs`), at 2 KB per metric.
pub const DEFAULT_REFERENCE_WINDOW: u64 = 500;
/// The newest calls kept out of the baseline (and shown as "now" in the evidence): a
/// change must not become its own baseline while it is being detected.
pub const DEFAULT_RECENT_WINDOW: u64 = 20;
/// Baseline values needed before a detector may fire: fewer give a median and MAD too
/// rough to judge a change against.
pub const DEFAULT_MIN_SAMPLES: u64 = 50;
/// CUSUM decision interval, in robust standard deviations: with the drift below, 8 still
/// gave about one false alert per 30,000 calls of log-normal noise; 9 keeps it under one
/// per 100,000 while a 2x latency step is caught in about 15 calls.
pub const DEFAULT_THRESHOLD: f64 = 9.0;
/// CUSUM drift (allowance), in robust standard deviations: shifts smaller than this are
/// ignored; a 2x latency step in noise of log-sd 0.5 is a 1.4 sd shift.
pub const DEFAULT_DRIFT: f64 = 0.75;
/// Decision interval of the rate detectors (success rate, tail of latency), in
/// log-likelihood ratio: at 7 a 99 % success rate still raised about one false alert per
/// 100,000 calls; 8 makes that about one in 400,000, for a few calls more delay.
pub const DEFAULT_RATE_THRESHOLD: f64 = 8.0;
/// Smallest change worth an alert for latency, time to first token, tokens/s and load
/// time (a ratio): a 25 % move on a very steady model is real but not worth a page.
pub const DEFAULT_MIN_RELATIVE_CHANGE: f64 = 0.25;
/// Smallest rise in milliseconds worth an alert for processing time, time to first token
/// and load time, on top of the relative change: a quarter more of a 20-ms call is
/// scheduling noise on a busy host, not a degraded model (and Ollama reports a load time
/// of a few milliseconds on every call to a loaded model).
pub const DEFAULT_MIN_ABSOLUTE_CHANGE_MS: f64 = 50.0;
/// Smallest quality drop worth an alert, in points on the 1-to-5 scale.
pub const DEFAULT_MIN_QUALITY_DROP: f64 = 0.5;
/// The rise in failure rate the success detector is tuned to find (baseline + 0.15).
pub const DEFAULT_SUCCESS_DROP: f64 = 0.15;
/// Calls in a row back near the baseline before a firing alert resolves (hysteresis).
pub const DEFAULT_RESOLVE_AFTER: u64 = 10;
/// After an alert resolves, the same model and kind cannot fire again for this long: a
/// flapping model pages once per cooldown, not every minute.
pub const DEFAULT_COOLDOWN_S: u64 = 600;
/// A firing alert of a model that got no call for this long resolves (0: never): `auto`
/// routing sends no calls to a model it skips, so without this a critical model would
/// stay skipped for good; if it is still degraded it fires again within a few calls.
pub const DEFAULT_IDLE_RESOLVE_S: u64 = 600;
/// An alert still firing after this many calls accepts the new level as the baseline and
/// resolves (a model that became slower for good stops paging; the note says so).
pub const DEFAULT_REBASELINE_AFTER_CALLS: u64 = 2_000;
/// Latency/TTFT/load time doubling (or tokens/s halving) is critical: routing skips it.
pub const DEFAULT_CRITICAL_RATIO: f64 = 2.0;
/// A success rate 15 points below its baseline is critical.
pub const DEFAULT_CRITICAL_SUCCESS_DROP: f64 = 0.15;
/// A quality drop of a full point is critical.
pub const DEFAULT_CRITICAL_QUALITY_DROP: f64 = 1.0;
/// GPU memory is "near capacity" when less than this share of it is free at a call's end.
pub const DEFAULT_GPU_MIN_FREE_RATIO: f64 = 0.05;
/// Notifications waiting per webhook; more are dropped and counted (never waited on).
pub const DEFAULT_WEBHOOK_QUEUE: u64 = 256;
/// Tries per notification (the first one included) before it is given up and counted.
pub const DEFAULT_WEBHOOK_ATTEMPTS: u64 = 5;
/// First retry delay; it doubles on each retry, up to 60 s.
pub const DEFAULT_WEBHOOK_BACKOFF_MS: u64 = 1_000;
/// Longest a receiver may take to answer one try.
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 10_000;

/// Every `[alerts]` key, as `alerts.key` (for the environment and the documentation test).
pub const KEYS: &[&str] = &[
    "alerts.enabled",
    "alerts.reference_window",
    "alerts.recent_window",
    "alerts.min_samples",
    "alerts.threshold",
    "alerts.drift",
    "alerts.rate_threshold",
    "alerts.min_relative_change",
    "alerts.min_absolute_change_ms",
    "alerts.min_quality_drop",
    "alerts.success_drop",
    "alerts.resolve_after",
    "alerts.cooldown_s",
    "alerts.idle_resolve_s",
    "alerts.rebaseline_after_calls",
    "alerts.critical_ratio",
    "alerts.critical_success_drop",
    "alerts.critical_quality_drop",
    "alerts.gpu_min_free_ratio",
    "alerts.webhook_queue",
    "alerts.webhook_attempts",
    "alerts.webhook_backoff_ms",
    "alerts.webhook_timeout_ms",
];

/// `[alerts]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Whether detectors run.
    pub enabled: Option<bool>,
    /// Baseline values per model and metric.
    pub reference_window: Option<u64>,
    /// Newest calls kept out of the baseline.
    pub recent_window: Option<u64>,
    /// Baseline values needed before firing.
    pub min_samples: Option<u64>,
    /// CUSUM decision interval (robust standard deviations).
    pub threshold: Option<f64>,
    /// CUSUM drift (robust standard deviations).
    pub drift: Option<f64>,
    /// Rate detectors' decision interval (log-likelihood ratio).
    pub rate_threshold: Option<f64>,
    /// Smallest ratio change worth an alert.
    pub min_relative_change: Option<f64>,
    /// Smallest rise in milliseconds worth an alert (times).
    pub min_absolute_change_ms: Option<f64>,
    /// Smallest quality drop worth an alert.
    pub min_quality_drop: Option<f64>,
    /// Failure-rate rise the success detector looks for.
    pub success_drop: Option<f64>,
    /// Calls back to normal before resolving.
    pub resolve_after: Option<u64>,
    /// Quiet time after a resolve.
    pub cooldown_s: Option<u64>,
    /// Time without calls after which a model's firing alerts resolve.
    pub idle_resolve_s: Option<u64>,
    /// Calls firing before the new level becomes the baseline.
    pub rebaseline_after_calls: Option<u64>,
    /// Ratio at which a change is critical.
    pub critical_ratio: Option<f64>,
    /// Success-rate drop that is critical.
    pub critical_success_drop: Option<f64>,
    /// Quality drop that is critical.
    pub critical_quality_drop: Option<f64>,
    /// Free GPU memory share below which memory is near capacity.
    pub gpu_min_free_ratio: Option<f64>,
    /// Notifications queued per webhook.
    pub webhook_queue: Option<u64>,
    /// Tries per notification.
    pub webhook_attempts: Option<u64>,
    /// First retry delay.
    pub webhook_backoff_ms: Option<u64>,
    /// Per-try timeout.
    pub webhook_timeout_ms: Option<u64>,
    /// `[[alerts.webhooks]]`
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
}

/// One `[[alerts.webhooks]]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Where to POST.
    pub url: Option<String>,
    /// `json`, `alertmanager` or `slack`.
    pub format: Option<String>,
    /// A name for logs and metrics (the URL may hold a secret, so it is never shown).
    pub name: Option<String>,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// ollameter's own document: `{"status", "alert"}`.
    Json,
    /// The payload of Prometheus Alertmanager's webhook receiver (version 4).
    Alertmanager,
    /// A Slack incoming-webhook message (`{"text": ...}`).
    Slack,
}

impl WebhookFormat {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Alertmanager => "alertmanager",
            WebhookFormat::Slack => "slack",
        }
    }
}

/// A validated webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    /// Where to POST; never printed (Slack URLs are secrets).
    #[serde(serialize_with = "ser_url")]
    pub url: String,
    /// The body's shape.
    pub format: WebhookFormat,
    /// Its name in logs and metrics.
    pub name: String,
}

fn ser_url<S: serde::Serializer>(_: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("(set)")
}

/// The validated `[alerts]` section.
#[derive(Debug, Clone, Serialize)]
pub struct AlertsConfig {
    /// Whether detectors run.
    pub enabled: bool,
    /// Baseline values per model and metric.
    pub reference_window: usize,
    /// Newest calls kept out of the baseline.
    pub recent_window: usize,
    /// Baseline values needed before firing.
    pub min_samples: usize,
    /// CUSUM decision interval.
    pub threshold: f64,
    /// CUSUM drift.
    pub drift: f64,
    /// Rate detectors' decision interval.
    pub rate_threshold: f64,
    /// Smallest ratio change worth an alert.
    pub min_relative_change: f64,
    /// Smallest rise in milliseconds worth an alert (processing time, TTFT, load time).
    pub min_absolute_change_ms: f64,
    /// Smallest quality drop worth an alert.
    pub min_quality_drop: f64,
    /// Failure-rate rise the success detector looks for.
    pub success_drop: f64,
    /// Calls back to normal before resolving.
    pub resolve_after: u64,
    /// Quiet time after a resolve.
    #[serde(serialize_with = "ser_s")]
    pub cooldown: Duration,
    /// Time without calls after which a model's firing alerts resolve (zero: never).
    #[serde(serialize_with = "ser_s")]
    pub idle_resolve: Duration,
    /// Calls firing before the new level becomes the baseline.
    pub rebaseline_after_calls: u64,
    /// Ratio at which a change is critical.
    pub critical_ratio: f64,
    /// Success-rate drop that is critical.
    pub critical_success_drop: f64,
    /// Quality drop that is critical.
    pub critical_quality_drop: f64,
    /// Free GPU memory share below which memory is near capacity.
    pub gpu_min_free_ratio: f64,
    /// Notifications queued per webhook.
    pub webhook_queue: usize,
    /// Tries per notification.
    pub webhook_attempts: u32,
    /// First retry delay.
    #[serde(serialize_with = "ser_ms")]
    pub webhook_backoff: Duration,
    /// Per-try timeout.
    #[serde(serialize_with = "ser_ms")]
    pub webhook_timeout: Duration,
    /// Where notifications go.
    pub webhooks: Vec<Webhook>,
}

fn ser_s<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Default for AlertsConfig {
    fn default() -> AlertsConfig {
        match validate(&RawAlerts::default()) {
            Ok(c) => c,
            // The defaults are valid (a test says so); this arm cannot run.
            Err(_) => unreachable!("the default [alerts] section is valid"),
        }
    }
}

/// `[alerts]` as `ollameter config check` prints it: webhook URLs (which may hold a
/// secret) shown as `(set)`.
pub fn effective(raw: &RawAlerts) -> RawAlerts {
    let mut shown = raw.clone();
    for hook in &mut shown.webhooks {
        if hook.url.is_some() {
            hook.url = Some("(set)".into());
        }
    }
    shown
}

/// Validates `[alerts]`, pushing each problem (named by its key) onto `problems`.
pub fn validate(raw: &RawAlerts) -> Result<AlertsConfig, Vec<String>> {
    let mut problems = Vec::new();
    let mut count = |key: &str, value: Option<u64>, default: u64| -> u64 {
        let v = value.unwrap_or(default);
        if v == 0 {
            problems.push(format!("alerts.{key}: must be above 0"));
        }
        v
    };
    let reference_window = count(
        "reference_window",
        raw.reference_window,
        DEFAULT_REFERENCE_WINDOW,
    );
    let recent_window = count("recent_window", raw.recent_window, DEFAULT_RECENT_WINDOW);
    let min_samples = count("min_samples", raw.min_samples, DEFAULT_MIN_SAMPLES);
    let resolve_after = count("resolve_after", raw.resolve_after, DEFAULT_RESOLVE_AFTER);
    let rebaseline_after_calls = count(
        "rebaseline_after_calls",
        raw.rebaseline_after_calls,
        DEFAULT_REBASELINE_AFTER_CALLS,
    );
    let webhook_queue = count("webhook_queue", raw.webhook_queue, DEFAULT_WEBHOOK_QUEUE);
    let webhook_attempts = count(
        "webhook_attempts",
        raw.webhook_attempts,
        DEFAULT_WEBHOOK_ATTEMPTS,
    );
    let webhook_backoff_ms = count(
        "webhook_backoff_ms",
        raw.webhook_backoff_ms,
        DEFAULT_WEBHOOK_BACKOFF_MS,
    );
    let webhook_timeout_ms = count(
        "webhook_timeout_ms",
        raw.webhook_timeout_ms,
        DEFAULT_WEBHOOK_TIMEOUT_MS,
    );
    if min_samples > reference_window {
        problems.push(format!(
            "alerts.min_samples: {min_samples} is more than alerts.reference_window ({reference_window})"
        ));
    }
    let min_absolute_change_ms = raw
        .min_absolute_change_ms
        .unwrap_or(DEFAULT_MIN_ABSOLUTE_CHANGE_MS);
    if !(min_absolute_change_ms.is_finite() && min_absolute_change_ms >= 0.0) {
        problems.push("alerts.min_absolute_change_ms: must be a number of 0 or more".into());
    }
    let mut positive = |key: &str, value: Option<f64>, default: f64| -> f64 {
        let v = value.unwrap_or(default);
        if !(v.is_finite() && v > 0.0) {
            problems.push(format!("alerts.{key}: must be a number above 0"));
        }
        v
    };
    let threshold = positive("threshold", raw.threshold, DEFAULT_THRESHOLD);
    let drift = positive("drift", raw.drift, DEFAULT_DRIFT);
    let rate_threshold = positive("rate_threshold", raw.rate_threshold, DEFAULT_RATE_THRESHOLD);
    let min_relative_change = positive(
        "min_relative_change",
        raw.min_relative_change,
        DEFAULT_MIN_RELATIVE_CHANGE,
    );
    let min_quality_drop = positive(
        "min_quality_drop",
        raw.min_quality_drop,
        DEFAULT_MIN_QUALITY_DROP,
    );
    let critical_quality_drop = positive(
        "critical_quality_drop",
        raw.critical_quality_drop,
        DEFAULT_CRITICAL_QUALITY_DROP,
    );
    let critical_ratio = positive("critical_ratio", raw.critical_ratio, DEFAULT_CRITICAL_RATIO);
    if critical_ratio.is_finite() && critical_ratio <= 1.0 {
        problems.push("alerts.critical_ratio: must be above 1 (2 means doubled)".into());
    }
    let mut share = |key: &str, value: Option<f64>, default: f64| -> f64 {
        let v = value.unwrap_or(default);
        if !(v.is_finite() && v > 0.0 && v < 1.0) {
            problems.push(format!("alerts.{key}: must be between 0 and 1, e.g. 0.15"));
        }
        v
    };
    let success_drop = share("success_drop", raw.success_drop, DEFAULT_SUCCESS_DROP);
    let critical_success_drop = share(
        "critical_success_drop",
        raw.critical_success_drop,
        DEFAULT_CRITICAL_SUCCESS_DROP,
    );
    let gpu_min_free_ratio = share(
        "gpu_min_free_ratio",
        raw.gpu_min_free_ratio,
        DEFAULT_GPU_MIN_FREE_RATIO,
    );
    let mut webhooks = Vec::new();
    for (i, hook) in raw.webhooks.iter().enumerate() {
        let key = format!("alerts.webhooks[{i}]");
        let format = match hook.format.as_deref().unwrap_or("json") {
            "json" => WebhookFormat::Json,
            "alertmanager" => WebhookFormat::Alertmanager,
            "slack" => WebhookFormat::Slack,
            other => {
                problems.push(format!(
                    "{key}.format: {other:?} is not one of json, alertmanager, slack"
                ));
                WebhookFormat::Json
            }
        };
        let url = hook.url.clone().unwrap_or_default();
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !scheme_ok || reqwest::Url::parse(&url).is_err() {
            problems.push(format!(
                "{key}.url: must be an http:// or https:// URL, e.g. https://hooks.slack.com/services/..."
            ));
        }
        let name = hook
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{i}", format.as_str()));
        if name.is_empty() || name.len() > 64 {
            problems.push(format!("{key}.name: use 1 to 64 characters"));
        }
        webhooks.push(Webhook { url, format, name });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(AlertsConfig {
        enabled: raw.enabled.unwrap_or(DEFAULT_ENABLED),
        reference_window: reference_window as usize,
        recent_window: recent_window as usize,
        min_samples: min_samples as usize,
        threshold,
        drift,
        rate_threshold,
        min_relative_change,
        min_absolute_change_ms,
        min_quality_drop,
        success_drop,
        resolve_after,
        cooldown: Duration::from_secs(raw.cooldown_s.unwrap_or(DEFAULT_COOLDOWN_S)),
        idle_resolve: Duration::from_secs(raw.idle_resolve_s.unwrap_or(DEFAULT_IDLE_RESOLVE_S)),
        rebaseline_after_calls,
        critical_ratio,
        critical_success_drop,
        critical_quality_drop,
        gpu_min_free_ratio,
        webhook_queue: webhook_queue as usize,
        webhook_attempts: u32::try_from(webhook_attempts).unwrap_or(u32::MAX),
        webhook_backoff: Duration::from_millis(webhook_backoff_ms),
        webhook_timeout: Duration::from_millis(webhook_timeout_ms),
        webhooks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_key_is_a_field() {
        let c = AlertsConfig::default();
        assert!(c.enabled);
        assert_eq!(c.reference_window, 500);
        let raw = toml::to_string(&RawAlerts {
            enabled: Some(true),
            ..RawAlerts::default()
        })
        .expect("toml");
        assert!(raw.contains("enabled"));
        for key in KEYS {
            let leaf = key.strip_prefix("alerts.").expect("prefix");
            let text = format!("{leaf} = 1");
            // A known key parses (type errors aside); an unknown one is rejected by name.
            let err = toml::from_str::<RawAlerts>(&text)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_none_or(|e| !e.contains("unknown field")),
                "{key}: {err:?}"
            );
        }
    }

    #[test]
    fn the_shipped_config_file_documents_every_alerts_key() {
        let text = include_str!("../../config/ollameter.toml");
        assert!(text.contains("[alerts]"));
        for key in KEYS
            .iter()
            .map(|k| k.trim_start_matches("alerts."))
            .chain(["url", "format", "name"])
        {
            assert!(
                text.lines()
                    .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ="))),
                "alerts.{key} is not documented in config/ollameter.toml"
            );
        }
        // And the file, as shipped, is valid.
        let table: toml::Table = text.parse().expect("toml");
        let raw: RawAlerts = table["alerts"].clone().try_into().expect("[alerts] parses");
        validate(&raw).expect("[alerts] is valid");
    }

    #[test]
    fn each_problem_names_its_key() {
        let raw: RawAlerts = toml::from_str(
            "reference_window = 10\nmin_samples = 20\nthreshold = -1\ncritical_ratio = 0.5\n\
             success_drop = 1.5\n[[webhooks]]\nurl = \"ftp://x\"\nformat = \"teams\"\n",
        )
        .expect("parses");
        let problems = validate(&raw).expect_err("invalid");
        let text = problems.join("\n");
        for needle in [
            "alerts.min_samples",
            "alerts.threshold",
            "alerts.critical_ratio",
            "alerts.success_drop",
            "alerts.webhooks[0].url",
            "alerts.webhooks[0].format: \"teams\"",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn webhooks_get_a_name_and_hide_their_url() {
        let raw: RawAlerts = toml::from_str(
            "[[webhooks]]\nurl = \"https://hooks.slack.com/services/T/B/secret\"\nformat = \"slack\"\n",
        )
        .expect("parses");
        let c = validate(&raw).expect("valid");
        assert_eq!(c.webhooks[0].name, "slack-0");
        assert_eq!(c.webhooks[0].format, WebhookFormat::Slack);
        let shown = toml::to_string(&c).expect("serialises");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
