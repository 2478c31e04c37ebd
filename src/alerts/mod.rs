//! Monitoring and alerts: ollameter watches each model on its own and says when one
//! degrades.
//!
//! Committed records reach the alerts through the recorder's post-commit hook
//! ([`AlertsHook`], called on the writer thread right after the history is updated, in
//! commit order, and for quality scores given later): it only turns each record into an
//! [`engine::Observation`] and `try_send`s it into a bounded channel, so the writer never
//! waits. The alert task owns the [`engine::Engine`] (the change detectors, per
//! [`engine::AlertKey`]), turns its transitions into [`Alert`]s, stores them through the
//! store interface (`store::insert_any`/`update_any` over the writer's `RecordStore`, on the writer thread;
//! SQLite or PostgreSQL), publishes them to the [`Alerts`] board that the API, dashboard
//! and `/metrics` read, and hands them to the webhooks ([`webhook`]). It also resolves the
//! alerts of models that got no call for `idle_resolve_s`. Thresholds and measured
//! detection delays and false-alarm rates: docs/alerts.md.
//!
//! - [`config`]: `[alerts]` and `[[alerts.webhooks]]`.
//! - [`detector`]: the change detectors (robust CUSUM, Bernoulli CUSUMs), pure.
//! - [`engine`]: per model and kind, detectors and the firing/resolved lifecycle, pure.
//! - [`store`]: the `alerts` table (SQLite, and [`store::pg`] for a shared PostgreSQL).
//! - [`webhook`]: payloads (json, alertmanager, slack) and the senders.
//! - [`text`]: `ollameter alerts`' tables.
//!
//! For routing: [`Alerts::is_critical`] says whether a model has a firing alert of
//! severity `critical`; `auto` routing and aliases skip such a model until it resolves
//! (`crate::routing::alert_veto`).

pub mod config;
pub mod detector;
pub mod engine;
pub mod store;
pub mod text;
pub mod webhook;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use crate::history::History;
use crate::record::Record;
use crate::recorder::{Recorder, StoreListener};
use config::AlertsConfig;
use engine::{
    ALL_MODELS, AlertKey, AlertKind, Engine, Evidence, Observation, Severity, Transition,
};
use webhook::Notifier;

/// Resolved alerts the board (and `GET /alerts`) keeps.
pub const RESOLVED_SHOWN: usize = 100;
/// Observations waiting for the alert task; more are dropped and counted. At thousands of
/// records a second this is over a second of slack; the task takes microseconds each.
pub const OBSERVATION_QUEUE: usize = 16_384;
/// Models whose last call time the alert task keeps (as many as the detectors watch).
const MAX_TRACKED: usize = crate::metrics::MAX_MODELS;
/// How often the alert task looks at the recorder's dropped-records counter and for
/// models without calls.
const DROPPED_CHECK: Duration = Duration::from_secs(5);

/// Whether an alert is firing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

impl AlertState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert, as the API, the store and the webhooks show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// Its id in the store.
    pub id: i64,
    /// The model (`*` for alerts about ollameter itself).
    pub model: String,
    /// With several upstreams, the host (its name) where the model degraded; `null` with
    /// one upstream and for alerts about ollameter itself.
    #[serde(default)]
    pub host: Option<String>,
    /// What went wrong.
    pub kind: AlertKind,
    /// How bad (the highest reached while firing).
    pub severity: Severity,
    /// Firing or resolved.
    pub state: AlertState,
    /// When it started firing.
    pub started_at: DateTime<Utc>,
    /// When it resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// One line a person reads.
    pub summary: String,
    /// The numbers when it fired (or became critical).
    pub evidence: Evidence,
    /// The numbers when it resolved.
    pub resolved_evidence: Option<Evidence>,
    /// Why it resolved, when not a plain recovery.
    pub note: Option<String>,
}

/// `GET /alerts`' answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    /// Firing alerts, oldest first.
    pub active: Vec<Alert>,
    /// The last resolved ones (at most 100), newest first.
    pub resolved: Vec<Alert>,
}

#[derive(Debug, Default)]
struct Board {
    active: Vec<Alert>,
    resolved: VecDeque<Alert>,
}

/// The alerts of a running sidecar: what is firing, what resolved lately, counters.
pub struct Alerts {
    config: AlertsConfig,
    board: RwLock<Board>,
    observations_dropped: AtomicU64,
    notifier: Option<Notifier>,
}

impl Alerts {
    /// A board with no alert and no webhook (tests, or alerts switched off).
    pub fn empty(config: AlertsConfig) -> Alerts {
        Alerts {
            config,
            board: RwLock::new(Board::default()),
            observations_dropped: AtomicU64::new(0),
            notifier: None,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Board> {
        self.board
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Board> {
        self.board
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `model` has a firing alert of severity `critical` (on any host): the
    /// question `auto` routing and aliases ask before choosing a model (skip it while
    /// true).
    pub fn is_critical(&self, model: &str) -> bool {
        self.read()
            .active
            .iter()
            .any(|a| a.model == model && a.severity == Severity::Critical)
    }

    /// The firing critical alerts of `model` (what a routing decision cites as its reason).
    pub fn critical_alerts(&self, model: &str) -> Vec<Alert> {
        self.read()
            .active
            .iter()
            .filter(|a| a.model == model && a.severity == Severity::Critical)
            .cloned()
            .collect()
    }

    /// Firing alerts and the last resolved ones, optionally of one model and state.
    pub fn list(&self, model: Option<&str>, state: Option<AlertState>) -> AlertList {
        self.list_of(model, None, state)
    }

    /// Firing alerts and the last resolved ones, optionally of one model, one host and
    /// one state.
    pub fn list_of(
        &self,
        model: Option<&str>,
        host: Option<&str>,
        state: Option<AlertState>,
    ) -> AlertList {
        let board = self.read();
        let keep = |a: &&Alert| {
            model.is_none_or(|m| a.model == m) && host.is_none_or(|h| a.host.as_deref() == Some(h))
        };
        AlertList {
            active: if state == Some(AlertState::Resolved) {
                Vec::new()
            } else {
                board.active.iter().filter(keep).cloned().collect()
            },
            resolved: if state == Some(AlertState::Firing) {
                Vec::new()
            } else {
                board.resolved.iter().filter(keep).cloned().collect()
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AlertsConfig {
        &self.config
    }

    pub(crate) fn publish(&self, alert: &Alert) {
        let mut board = self.write();
        board.active.retain(|a| a.id != alert.id);
        match alert.state {
            AlertState::Firing => board.active.push(alert.clone()),
            AlertState::Resolved => {
                board.resolved.push_front(alert.clone());
                board.resolved.truncate(RESOLVED_SHOWN);
            }
        }
    }

    fn active(&self, key: &AlertKey, kind: AlertKind) -> Option<Alert> {
        self.read()
            .active
            .iter()
            .find(|a| a.model == key.model && a.host == key.host && a.kind == kind)
            .cloned()
    }

    /// The alert metrics in the Prometheus text format:
    /// `ollameter_alert_active{model,kind}` (and `host` for a host's alert; 1 while firing), the webhooks' counters, observations the alert task dropped, and
    /// `ollameter_upstream_up` (whether telemetry's last `GET /api/ps` answered; absent
    /// while unknown) for the upstream-down rule: one series per upstream, labelled with
    /// its `host` name when there are several (`upstreams` gives each one's name, `None`
    /// for the one upstream, and whether it answered).
    pub fn render_metrics(&self, upstreams: &[(Option<&str>, Option<bool>)]) -> String {
        let mut page = String::new();
        if upstreams.iter().any(|(_, up)| up.is_some()) {
            let _ = writeln!(
                page,
                "# HELP ollameter_upstream_up Whether Ollama answered the telemetry sampler's last GET /api/ps (1) or not (0)\n\
                 # TYPE ollameter_upstream_up gauge"
            );
        }
        for (host, up) in upstreams {
            let Some(up) = up else { continue };
            match host {
                Some(host) => {
                    let _ = writeln!(
                        page,
                        "ollameter_upstream_up{{host=\"{}\"}} {}",
                        escape(host),
                        u8::from(*up)
                    );
                }
                None => {
                    let _ = writeln!(page, "ollameter_upstream_up {}", u8::from(*up));
                }
            }
        }
        let _ = writeln!(
            page,
            "# HELP ollameter_alert_active Whether an alert of this model and kind is firing (1)\n\
             # TYPE ollameter_alert_active gauge"
        );
        for a in &self.read().active {
            let host = a
                .host
                .as_deref()
                .map(|h| format!("host=\"{}\",", escape(h)))
                .unwrap_or_default();
            let _ = writeln!(
                page,
                "ollameter_alert_active{{{host}kind=\"{}\",model=\"{}\"}} 1",
                a.kind.as_str(),
                escape(&a.model),
            );
        }
        type Read = fn(&webhook::WebhookStats) -> u64;
        let counters: [(&str, &str, Read); 3] = [
            (
                "ollameter_alert_webhook_sent",
                "Alert notifications a webhook receiver accepted",
                |s| s.sent.load(Ordering::Relaxed),
            ),
            (
                "ollameter_alert_webhook_failures",
                "Webhook tries that failed (connection error, timeout or non-2xx answer)",
                |s| s.failed_attempts.load(Ordering::Relaxed),
            ),
            (
                "ollameter_alert_webhook_dropped",
                "Alert notifications given up: every try failed or the webhook's queue was full",
                |s| s.dropped.load(Ordering::Relaxed),
            ),
        ];
        let hooks = self
            .notifier
            .as_ref()
            .map(Notifier::stats)
            .unwrap_or_default();
        for (name, help, read) in counters {
            let _ = writeln!(page, "# HELP {name} {help}\n# TYPE {name} counter");
            for (hook, format, stats) in &hooks {
                let _ = writeln!(
                    page,
                    "{name}_total{{format=\"{}\",webhook=\"{}\"}} {}",
                    format.as_str(),
                    escape(hook),
                    read(stats)
                );
            }
        }
        let _ = writeln!(
            page,
            "# HELP ollameter_alert_observations_dropped Committed records the alert detectors \
             skipped because their queue was full\n\
             # TYPE ollameter_alert_observations_dropped counter\n\
             ollameter_alert_observations_dropped_total {}",
            self.observations_dropped.load(Ordering::Relaxed)
        );
        page
    }
}

/// Whether the upstream answered, from telemetry's state of its `/api/ps` source (`None`
/// while it has not sampled, or telemetry is off).
pub fn upstream_up(state: &crate::telemetry::SourceState) -> Option<bool> {
    use crate::telemetry::SourceState;
    match state {
        SourceState::Ok => Some(true),
        SourceState::Unavailable(_) => Some(false),
        SourceState::Pending | SourceState::Disabled(_) => None,
    }
}

/// A label value in the text format: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What the hook hands the alert task.
#[derive(Debug)]
enum Message {
    /// A committed call.
    Call(Observation),
    /// A quality score given after the call was recorded.
    LateQuality {
        key: AlertKey,
        at_ms: i64,
        score: f64,
    },
}

/// The recorder's post-commit hook: committed records become observations for the alert
/// task. Never blocks: a full queue drops the observation and counts it.
pub struct AlertsHook {
    tx: mpsc::Sender<Message>,
    alerts: Arc<Alerts>,
    /// Several upstreams: alerts are per model and host.
    per_host: bool,
}

impl StoreListener for AlertsHook {
    fn committed(&self, records: &[Record]) {
        for r in records {
            if self
                .tx
                .try_send(Message::Call(Observation::of(r, self.per_host)))
                .is_err()
            {
                self.alerts
                    .observations_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn retained(&self, _cutoff_ms: i64, _max_per_model: u64) {}

    // A cleared model keeps its baseline until new calls replace it.
    fn model_deleted(&self, _model: &str) {}

    // A score given after the call (the feedback route) is what the quality detector
    // mostly sees: it goes to that detector alone, at the time it arrived.
    fn quality_set(&self, record: &Record, quality: f64) {
        let message = Message::LateQuality {
            key: AlertKey {
                model: record.model.clone(),
                host: if self.per_host {
                    record.host.clone()
                } else {
                    None
                },
            },
            at_ms: Utc::now().timestamp_millis(),
            score: quality,
        };
        if self.tx.try_send(message).is_err() {
            self.alerts
                .observations_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    // Like a clear: the detectors keep a bounded number of keys of their own.
    fn models_evicted(&self, _models: &[String]) {}
}

/// Alerts being set up: the board and the hook exist (the recorder needs the hook), the
/// task starts once the recorder does.
pub struct Prepared {
    /// The board.
    pub alerts: Arc<Alerts>,
    /// The hook to give the recorder.
    pub hook: Arc<AlertsHook>,
    rx: mpsc::Receiver<Message>,
    engine: Engine,
}

/// The running alert task.
pub struct AlertsTask {
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    alerts: Arc<Alerts>,
}

impl AlertsTask {
    /// Stops the alert task and the webhook senders.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(n) = &self.alerts.notifier {
            n.shutdown();
        }
    }
}

/// Loads the stored alerts, warms the detectors' baselines from the history, and starts
/// the webhook senders (on the current runtime). With `per_host` (several upstreams),
/// detectors and alerts are per model and host.
///
/// On a shared store (PostgreSQL) every instance reads the same alerts.
pub async fn prepare(
    config: AlertsConfig,
    location: &crate::store::StoreLocation,
    history: &History,
    per_host: bool,
) -> Result<Prepared, crate::store::StoreError> {
    let location = location.clone();
    let loaded = tokio::task::spawn_blocking(move || match &location {
        crate::store::StoreLocation::Sqlite(path) => {
            let mut store = crate::store::Store::open(path)?;
            store::load_any(&mut store, RESOLVED_SHOWN)
        }
        // A shared store may be down at start (the recorder spills until it is back):
        // alerts then start empty, and those fired meanwhile are adopted when they fire.
        crate::store::StoreLocation::Postgres(_) => Ok(location
            .open_reader()
            .and_then(|mut store| store::load_any(store.as_mut(), RESOLVED_SHOWN))
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored alerts not read: starting without them");
                (Vec::new(), Vec::new())
            })),
    })
    .await
    .map_err(|e| {
        crate::store::StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    })??;
    let (active, resolved) = loaded;
    let mut engine = Engine::new(config.clone());
    if config.enabled {
        warm(&mut engine, &config, history, per_host);
    }
    for a in &active {
        engine.restore(
            &AlertKey::new(a.model.clone(), a.host.clone()),
            a.kind,
            a.severity,
            a.started_at.timestamp_millis(),
        );
    }
    let notifier = Notifier::start(&config);
    let alerts = Arc::new(Alerts {
        config,
        board: RwLock::new(Board {
            active,
            resolved: resolved.into(),
        }),
        observations_dropped: AtomicU64::new(0),
        notifier: Some(notifier),
    });
    let (tx, rx) = mpsc::channel(OBSERVATION_QUEUE);
    Ok(Prepared {
        hook: Arc::new(AlertsHook {
            tx,
            alerts: alerts.clone(),
            per_host,
        }),
        alerts,
        rx,
        engine,
    })
}

/// Feeds each model's newest calls (each model's on each host, with `per_host`) to its
/// detectors' baselines (no alert is raised).
fn warm(engine: &mut Engine, config: &AlertsConfig, history: &History, per_host: bool) {
    let take = config.reference_window + config.recent_window;
    let host_names = history.host_names_by_id();
    let host_of = |id: u8| -> Option<String> {
        let index = usize::from(id).checked_sub(1)?;
        host_names.get(index).cloned()
    };
    history.with_all(|models| {
        for (model, samples) in models {
            // Per host: the newest `take` of each host's calls.
            let mut by_host: HashMap<u8, Vec<&crate::stats::Sample>> = HashMap::new();
            for s in samples {
                by_host
                    .entry(if per_host { s.host } else { 0 })
                    .or_default()
                    .push(s);
            }
            for (host, samples) in by_host {
                let from = samples.len().saturating_sub(take);
                let host = host_of(host);
                for s in &samples[from..] {
                    let known = |v: f32| (!v.is_nan()).then_some(f64::from(v));
                    engine.warm(&Observation {
                        key: AlertKey {
                            model: model.clone(),
                            host: host.clone(),
                        },
                        timestamp_ms: s.timestamp_ms,
                        success: s.success,
                        processing_time_ms: f64::from(s.processing_time_ms),
                        ttft_ms: known(s.ttft_ms),
                        tokens_per_second: known(s.tokens_per_second),
                        load_duration_ms: known(s.load_duration_ms),
                        quality_score: known(s.quality_score),
                        gpu_used_free_mb: None,
                    });
                }
            }
        }
    });
}

impl Prepared {
    /// Starts the alert task; it stores alerts through `recorder`.
    pub fn start(self, recorder: Recorder) -> AlertsTask {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let alerts = self.alerts.clone();
        let task = tokio::spawn(run(self, recorder, shutdown_rx));
        AlertsTask {
            shutdown,
            task: Some(task),
            alerts,
        }
    }
}

async fn run(prepared: Prepared, recorder: Recorder, mut shutdown: watch::Receiver<bool>) {
    let Prepared {
        alerts,
        mut rx,
        mut engine,
        ..
    } = prepared;
    let enabled = alerts.config.enabled;
    let idle_ms = alerts.config.idle_resolve.as_millis() as i64;
    // When each model's last call reached the task (wall clock: imported records may be
    // old), for resolving the alerts of models nobody calls any more.
    let started_ms = Utc::now().timestamp_millis();
    let mut last_call: HashMap<AlertKey, i64> = HashMap::new();
    let mut tick = tokio::time::interval(DROPPED_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(256);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 256) => {
                if n == 0 {
                    return;
                }
                for message in batch.drain(..) {
                    if !enabled {
                        continue;
                    }
                    let transitions = match message {
                        Message::Call(obs) => {
                            if last_call.len() < MAX_TRACKED || last_call.contains_key(&obs.key) {
                                last_call.insert(obs.key.clone(), Utc::now().timestamp_millis());
                            }
                            engine.observe(&obs)
                        }
                        Message::LateQuality { key, at_ms, score } => {
                            engine.observe_late_quality(&key, at_ms, score)
                        }
                    };
                    for t in transitions {
                        apply(&alerts, &recorder, t).await;
                    }
                }
            }
            _ = tick.tick() => {
                if enabled {
                    let dropped = recorder.stats().dropped.load(Ordering::Relaxed);
                    let now_ms = Utc::now().timestamp_millis();
                    for t in engine.check_dropped(now_ms, dropped) {
                        apply(&alerts, &recorder, t).await;
                    }
                    if idle_ms > 0 {
                        for key in engine.firing_keys() {
                            let last = last_call.get(&key).copied().unwrap_or(started_ms);
                            if now_ms - last >= idle_ms {
                                let idle_s = alerts.config.idle_resolve.as_secs();
                                for t in engine.resolve_idle(&key, now_ms, idle_s) {
                                    apply(&alerts, &recorder, t).await;
                                }
                            }
                        }
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Stores a transition, publishes it and notifies.
async fn apply(alerts: &Arc<Alerts>, recorder: &Recorder, transition: Transition) {
    let alert = match transition {
        Transition::Firing {
            key,
            kind,
            severity,
            started_ms,
            evidence,
            escalated,
        } => {
            let existing = if escalated {
                alerts.active(&key, kind)
            } else {
                None
            };
            let summary = summary(kind, &evidence);
            match existing {
                Some(mut a) => {
                    a.severity = severity;
                    a.summary = summary;
                    a.evidence = evidence;
                    a
                }
                None => Alert {
                    id: 0,
                    model: key.model,
                    host: key.host,
                    kind,
                    severity,
                    state: AlertState::Firing,
                    started_at: time(started_ms),
                    resolved_at: None,
                    summary,
                    evidence,
                    resolved_evidence: None,
                    note: None,
                },
            }
        }
        Transition::Resolved {
            key,
            kind,
            at_ms,
            evidence,
            note,
        } => {
            let Some(mut a) = alerts.active(&key, kind) else {
                return;
            };
            a.state = AlertState::Resolved;
            a.resolved_at = Some(time(at_ms));
            a.summary = match &note {
                // Resolved for want of calls: there are no numbers to show.
                Some(note) if evidence.recent_samples == 0 && kind != AlertKind::RecordsDropped => {
                    format!("resolved: {note}")
                }
                _ => format!("resolved: {}", summary(kind, &evidence)),
            };
            a.resolved_evidence = Some(evidence);
            a.note = note;
            a
        }
    };
    let Some((alert, changed)) = persist(recorder, alert).await else {
        return;
    };
    match alert.state {
        AlertState::Firing => tracing::warn!(
            model = %alert.model, host = alert.host.as_deref().unwrap_or(""),
            kind = alert.kind.as_str(), severity = alert.severity.as_str(),
            summary = %alert.summary, "alert firing"
        ),
        AlertState::Resolved => tracing::info!(
            model = %alert.model, host = alert.host.as_deref().unwrap_or(""),
            kind = alert.kind.as_str(), summary = %alert.summary, "alert resolved"
        ),
    }
    alerts.publish(&alert);
    if !changed {
        return;
    }
    if let Some(n) = &alerts.notifier {
        n.notify(&Arc::new(alert));
    }
}

/// Writes the alert through the store interface on the writer thread; retries briefly
/// when the recorder's queue is full. Returns it with its id and whether this write
/// changed the stored alert (on a shared store another instance may have stored or
/// resolved the same one first: then it is shown, and that instance notifies), or `None`
/// when the store would not take it (logged).
async fn persist(recorder: &Recorder, mut alert: Alert) -> Option<(Alert, bool)> {
    for attempt in 0..20u32 {
        let copy = alert.clone();
        let result = recorder
            .write_unmirrored(move |store| {
                if copy.id == 0 {
                    store::insert_any(store, &copy)
                } else {
                    store::update_any(store, &copy).map(|changed| (copy.id, changed))
                }
            })
            .await;
        match result {
            Ok((id, changed)) => {
                alert.id = id;
                return Some((alert, changed));
            }
            Err(crate::recorder::SubmitError::QueueFull) => {
                tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "alert not stored");
                return None;
            }
        }
    }
    tracing::error!("alert not stored: the recorder queue stayed full");
    None
}

/// One line about the change.
pub fn summary(kind: AlertKind, e: &Evidence) -> String {
    let ratio = |now: f64, base: f64| if base > 0.0 { now / base } else { f64::NAN };
    match kind {
        AlertKind::LatencyP50 | AlertKind::LatencyP95 | AlertKind::Ttft | AlertKind::LoadTime => {
            format!(
                "{} rose from {:.0} to {:.0} ({:.1}x)",
                e.metric,
                e.baseline,
                e.current,
                ratio(e.current, e.baseline)
            )
        }
        AlertKind::TokensPerSecond => format!(
            "{} fell from {:.1} to {:.1} ({:.1}x)",
            e.metric,
            e.baseline,
            e.current,
            ratio(e.current, e.baseline)
        ),
        AlertKind::SuccessRate => format!(
            "success rate fell from {:.1} % to {:.1} %",
            e.baseline * 100.0,
            e.current * 100.0
        ),
        AlertKind::Quality => format!(
            "{} fell from {:.2} to {:.2}",
            e.metric, e.baseline, e.current
        ),
        AlertKind::GpuMemory => format!(
            "{:.1} % of GPU memory free (alert below {:.1} %)",
            e.current * 100.0,
            e.baseline * 100.0
        ),
        AlertKind::RecordsDropped => {
            format!("{} records dropped ({} in all)", e.current, e.statistic)
        }
    }
}

/// The model name of alerts about ollameter itself.
pub const SELF_MODEL: &str = ALL_MODELS;

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(model: &str, severity: Severity, state: AlertState) -> Alert {
        Alert {
            id: 1,
            model: model.into(),
            host: None,
            kind: AlertKind::LatencyP50,
            severity,
            state,
            started_at: Utc::now(),
            resolved_at: None,
            summary: String::new(),
            evidence: Evidence {
                metric: "median processing_time_ms".into(),
                baseline: 1.0,
                current: 2.0,
                baseline_samples: 100,
                recent_samples: 20,
                statistic: 9.0,
                threshold: 8.0,
            },
            resolved_evidence: None,
            note: None,
        }
    }

    #[test]
    fn is_critical_sees_only_firing_critical_alerts_of_that_model() {
        let alerts = Alerts::empty(AlertsConfig::default());
        assert!(!alerts.is_critical("a"));
        let mut warning = alert("a", Severity::Warning, AlertState::Firing);
        warning.id = 1;
        alerts.publish(&warning);
        assert!(!alerts.is_critical("a"), "a warning does not steer routing");
        let mut critical = alert("a", Severity::Critical, AlertState::Firing);
        critical.id = 1;
        alerts.publish(&critical);
        assert!(alerts.is_critical("a"), "escalated to critical");
        assert!(!alerts.is_critical("b"));
        assert_eq!(alerts.critical_alerts("a").len(), 1);
        let mut resolved = critical.clone();
        resolved.state = AlertState::Resolved;
        alerts.publish(&resolved);
        assert!(!alerts.is_critical("a"), "resolved: routable again");
        let list = alerts.list(Some("a"), None);
        assert!(list.active.is_empty());
        assert_eq!(list.resolved.len(), 1);
        assert!(alerts.list(Some("b"), None).resolved.is_empty());
        assert!(
            alerts
                .list(None, Some(AlertState::Firing))
                .resolved
                .is_empty()
        );
    }

    #[test]
    fn the_metrics_show_firing_alerts() {
        let alerts = Alerts::empty(AlertsConfig::default());
        alerts.publish(&alert("we\"ird", Severity::Critical, AlertState::Firing));
        let page = alerts.render_metrics(&[(None, Some(false))]);
        assert!(page.contains("ollameter_upstream_up 0"), "{page}");
        let page =
            alerts.render_metrics(&[(Some("gpu0"), Some(true)), (Some("gpu1"), Some(false))]);
        assert!(
            page.contains("ollameter_upstream_up{host=\"gpu0\"} 1\n"),
            "{page}"
        );
        assert!(
            page.contains("ollameter_upstream_up{host=\"gpu1\"} 0\n"),
            "{page}"
        );
        assert_eq!(
            page.matches("# TYPE ollameter_upstream_up").count(),
            1,
            "{page}"
        );
        assert!(
            page.contains("ollameter_alert_active{kind=\"latency_p50\",model=\"we\\\"ird\"} 1"),
            "{page}"
        );
        let mut on_host = alert("m", Severity::Warning, AlertState::Firing);
        on_host.id = 2;
        on_host.host = Some("gpu1".into());
        alerts.publish(&on_host);
        let page = alerts.render_metrics(&[(None, None)]);
        assert!(
            page.contains(
                "ollameter_alert_active{host=\"gpu1\",kind=\"latency_p50\",model=\"m\"} 1"
            ),
            "{page}"
        );
        assert_eq!(
            alerts.list_of(Some("m"), Some("gpu1"), None).active.len(),
            1
        );
        assert!(
            alerts
                .list_of(Some("m"), Some("gpu0"), None)
                .active
                .is_empty()
        );
    }
}
