//! Notifications: each `[[alerts.webhooks]]` has its own bounded queue and its own task
//! that POSTs firing and resolved alerts, retrying with exponential backoff. Nothing here
//! is on the proxy's path: the alert task only `try_send`s into the queues, so a receiver
//! that is down or slow fills its own queue (then notifications are dropped and counted),
//! never anything else. Webhook URLs are never logged (Slack's hold a secret); the
//! configured name stands for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{AlertsConfig, Webhook, WebhookFormat};
use super::{Alert, AlertState};

/// Longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Counters of one webhook, for `/metrics`.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Notifications the receiver accepted (2xx).
    pub sent: AtomicU64,
    /// Tries that failed (connection error, timeout, non-2xx).
    pub failed_attempts: AtomicU64,
    /// Notifications given up: every try failed, or the queue was full.
    pub dropped: AtomicU64,
}

/// One webhook's queue and counters.
struct Target {
    name: String,
    format: WebhookFormat,
    stats: Arc<WebhookStats>,
    tx: mpsc::Sender<Arc<Alert>>,
}

/// The senders of every webhook.
pub struct Notifier {
    targets: Vec<Target>,
    tasks: Vec<JoinHandle<()>>,
}

impl Notifier {
    /// Starts one sender task per webhook (on the current tokio runtime).
    pub fn start(config: &AlertsConfig) -> Notifier {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(config.webhook_timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let mut targets = Vec::new();
        let mut tasks = Vec::new();
        for hook in &config.webhooks {
            let (tx, rx) = mpsc::channel(config.webhook_queue);
            let stats = Arc::new(WebhookStats::default());
            tasks.push(tokio::spawn(send_loop(
                hook.clone(),
                client.clone(),
                rx,
                stats.clone(),
                config.webhook_attempts,
                config.webhook_backoff,
            )));
            targets.push(Target {
                name: hook.name.clone(),
                format: hook.format,
                stats,
                tx,
            });
        }
        Notifier { targets, tasks }
    }

    /// Queues the alert for every webhook without waiting; a full queue drops and counts.
    pub fn notify(&self, alert: &Arc<Alert>) {
        for t in &self.targets {
            if t.tx.try_send(alert.clone()).is_err() {
                t.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(webhook = %t.name, alert = alert.id, "webhook queue full; notification dropped");
            }
        }
    }

    /// `(name, format, counters)` of each webhook.
    pub fn stats(&self) -> Vec<(&str, WebhookFormat, &WebhookStats)> {
        self.targets
            .iter()
            .map(|t| (t.name.as_str(), t.format, t.stats.as_ref()))
            .collect()
    }

    /// Stops the senders (queued notifications are lost; they are logged as dropped).
    pub fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn send_loop(
    hook: Webhook,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<Arc<Alert>>,
    stats: Arc<WebhookStats>,
    attempts: u32,
    backoff: Duration,
) {
    while let Some(alert) = rx.recv().await {
        let body = payload(hook.format, &alert);
        let mut wait = backoff;
        let mut delivered = false;
        for attempt in 1..=attempts {
            let result = client.post(&hook.url).json(&body).send().await;
            let problem = match result {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("the receiver answered {}", r.status())),
                // reqwest's error text can hold the URL: say only what kind of failure.
                Err(e) if e.is_timeout() => Some("timed out".to_string()),
                Err(e) if e.is_connect() => Some("could not connect".to_string()),
                Err(_) => Some("request failed".to_string()),
            };
            match problem {
                None => {
                    delivered = true;
                    stats.sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Some(problem) => {
                    stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(webhook = %hook.name, alert = alert.id, attempt, attempts, %problem, "webhook failed");
                    if attempt < attempts {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        if !delivered {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(webhook = %hook.name, alert = alert.id, attempts, "webhook gave up on a notification");
        }
    }
}

/// The body a webhook of `format` receives for `alert`.
pub fn payload(format: WebhookFormat, alert: &Alert) -> Value {
    match format {
        WebhookFormat::Json => json!({
            "version": 1,
            "source": "ollameter",
            "status": alert.state.as_str(),
            "alert": alert,
        }),
        WebhookFormat::Alertmanager => alertmanager(alert),
        WebhookFormat::Slack => json!({ "text": slack_text(alert) }),
    }
}

/// Alertmanager's webhook receiver payload (version 4), one alert per message.
fn alertmanager(alert: &Alert) -> Value {
    let mut labels = json!({
        "alertname": alert_name(alert),
        "model": alert.model,
        "kind": alert.kind.as_str(),
        "severity": alert.severity.as_str(),
        "service": "ollameter",
    });
    let mut group_labels = json!({ "alertname": alert_name(alert), "model": alert.model });
    let mut group_key = format!(
        "{{}}:{{alertname=\"{}\", model=\"{}\"",
        alert_name(alert),
        alert.model
    );
    // A host's alert carries the host as a label (absent with one upstream).
    if let Some(host) = &alert.host {
        labels["host"] = json!(host);
        group_labels["host"] = json!(host);
        group_key.push_str(&format!(", host=\"{host}\""));
    }
    group_key.push('}');
    let annotations = json!({
        "summary": alert.summary,
        "description": description(alert),
    });
    // Alertmanager's zero time for "not ended".
    let ends_at = alert
        .resolved_at
        .map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |t| t.to_rfc3339());
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": alert.state.as_str(),
        "receiver": "ollameter",
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": alert.state.as_str(),
            "labels": labels,
            "annotations": annotations,
            "startsAt": alert.started_at.to_rfc3339(),
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": format!("{:016x}", fingerprint(alert)),
        }],
    })
}

/// `OllameterLatencyP50` and the like.
fn alert_name(alert: &Alert) -> String {
    let mut name = String::from("Ollameter");
    for part in alert.kind.as_str().split('_') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

/// A stable id of the model, host and kind (FNV-1a), as Alertmanager's fingerprint (an
/// alert without a host keeps the id it had before hosts).
fn fingerprint(alert: &Alert) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let host = alert
        .host
        .as_deref()
        .map(|h| [0].into_iter().chain(h.bytes()));
    for b in alert
        .model
        .bytes()
        .chain([0])
        .chain(alert.kind.as_str().bytes())
        .chain(host.into_iter().flatten())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The evidence in words.
fn description(alert: &Alert) -> String {
    let e = &alert.evidence;
    format!(
        "{}: baseline {:.4} over {} calls, now {:.4} over {} calls (statistic {:.1}, threshold {:.1})",
        e.metric,
        e.baseline,
        e.baseline_samples,
        e.current,
        e.recent_samples,
        e.statistic,
        e.threshold
    )
}

/// The Slack message.
fn slack_text(alert: &Alert) -> String {
    let on = alert
        .host
        .as_deref()
        .map(|h| format!(" on `{h}`"))
        .unwrap_or_default();
    match alert.state {
        AlertState::Firing => format!(
            ":rotating_light: *[FIRING: {}]* `{}`{on} {}: {}\n{}",
            alert.severity.as_str(),
            alert.model,
            alert.kind.as_str(),
            alert.summary,
            description(alert)
        ),
        AlertState::Resolved => format!(
            ":white_check_mark: *[RESOLVED]* `{}`{on} {}: {}{}",
            alert.model,
            alert.kind.as_str(),
            alert.summary,
            alert
                .note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::engine::{AlertKind, Evidence, Severity};
    use chrono::Utc;

    fn alert() -> Alert {
        Alert {
            id: 7,
            model: "llama3.2:latest".into(),
            host: None,
            kind: AlertKind::LatencyP50,
            severity: Severity::Critical,
            state: AlertState::Firing,
            started_at: Utc::now(),
            resolved_at: None,
            summary: "median processing_time_ms rose from 800 to 1,700 (2.1x)".into(),
            evidence: Evidence {
                metric: "median processing_time_ms".into(),
                baseline: 800.0,
                current: 1700.0,
                baseline_samples: 500,
                recent_samples: 20,
                statistic: 9.1,
                threshold: 8.0,
            },
            resolved_evidence: None,
            note: None,
        }
    }

    #[test]
    fn alertmanager_payload_has_the_receivers_shape() {
        let v = payload(WebhookFormat::Alertmanager, &alert());
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        let a = &v["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "OllameterLatencyP50");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(a["fingerprint"].as_str().map(str::len), Some(16));
        let mut resolved = alert();
        resolved.state = AlertState::Resolved;
        resolved.resolved_at = Some(Utc::now());
        let v = payload(WebhookFormat::Alertmanager, &resolved);
        assert_eq!(v["alerts"][0]["status"], "resolved");
        assert_ne!(v["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    }

    #[test]
    fn slack_and_json_payloads() {
        let v = payload(WebhookFormat::Slack, &alert());
        let text = v["text"].as_str().expect("text");
        assert!(
            text.contains("FIRING: critical") && text.contains("llama3.2:latest"),
            "{text}"
        );
        let v = payload(WebhookFormat::Json, &alert());
        assert_eq!(v["status"], "firing");
        assert_eq!(v["alert"]["kind"], "latency_p50");
        assert_eq!(v["alert"]["evidence"]["baseline_samples"], 500);
        assert_eq!(v["alert"]["host"], Value::Null);
    }

    #[test]
    fn a_hosts_alert_names_its_host_in_every_format() {
        let mut on_host = alert();
        on_host.host = Some("gpu1".into());
        let v = payload(WebhookFormat::Json, &on_host);
        assert_eq!(v["alert"]["host"], "gpu1");
        let v = payload(WebhookFormat::Alertmanager, &on_host);
        assert_eq!(v["alerts"][0]["labels"]["host"], "gpu1");
        assert_eq!(v["groupLabels"]["host"], "gpu1");
        assert!(
            v["groupKey"]
                .as_str()
                .is_some_and(|k| k.contains("host=\"gpu1\"")),
            "{v}"
        );
        let without = payload(WebhookFormat::Alertmanager, &alert());
        assert!(without["alerts"][0]["labels"].get("host").is_none());
        assert_ne!(
            v["alerts"][0]["fingerprint"], without["alerts"][0]["fingerprint"],
            "the same model and kind on another host is another alert"
        );
        let v = payload(WebhookFormat::Slack, &on_host);
        let text = v["text"].as_str().expect("text");
        assert!(text.contains("`llama3.2:latest` on `gpu1`"), "{text}");
    }
}
