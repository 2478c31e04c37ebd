//! `GET /api/model-performance/health`: is the upstream reachable, is the store taking
//! writes, is the writer running, are both listeners serving, how deep is the queue, how
//! many records were written and dropped. Also `/system` and `/metrics`.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::ApiState;

/// Asks the upstream whether it answers, as its kind expects (see
/// [`crate::upstream::Kind::probe`]): all `/health` and `/system` need of the upstream.
#[derive(Clone)]
pub struct UpstreamProbe {
    client: reqwest::Client,
    url: String,
    kind: crate::upstream::Kind,
}

impl UpstreamProbe {
    /// A probe of the upstream at `url` (its base URL, without a trailing slash).
    pub fn new(client: reqwest::Client, url: String, kind: crate::upstream::Kind) -> UpstreamProbe {
        UpstreamProbe { client, url, kind }
    }

    /// The upstream's kind, configured or last detected.
    pub fn kind(&self) -> Option<crate::upstream::UpstreamKind> {
        self.kind.get()
    }

    /// The upstream's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client the probes go through.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Probes the upstream as its kind expects.
    async fn check(&self) -> crate::upstream::Probe {
        self.kind.probe(&self.client, &self.url).await
    }
}

/// Listeners that stopped serving before shutdown, each with why: `app` writes, `/health`
/// reads.
#[derive(Debug, Clone, Default)]
pub struct ServerFailures(Arc<Mutex<Vec<String>>>);

impl ServerFailures {
    /// Notes that a listener stopped: `what` and why.
    pub fn push(&self, failure: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(failure);
    }

    /// Every failure so far.
    pub fn list(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The health answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when an upstream, the store, the writer or a listener is
    /// failing. With several upstreams: `ok` only while every one answers its probe and
    /// none rests after an ejection (a half-open one counts as well: the next call tries
    /// it); `degraded` when any is down (`upstream_reachable` then says whether
    /// at least one still takes calls). The answer is 200 either way: the sidecar serves
    /// (`ollameter healthcheck`, the Docker HEALTHCHECK, only needs that).
    #[schema(value_type = String, pattern = "^(ok|degraded)$")]
    pub status: &'static str,
    /// The upstream's base URL (the first upstream's, with several).
    pub upstream: String,
    /// What the upstream is: `ollama` or `openai` (any OpenAI-compatible server),
    /// configured (`upstream.kind`) or detected; `null` while it cannot be told (the first
    /// upstream's, with several).
    pub upstream_kind: Option<crate::upstream::UpstreamKind>,
    /// Whether the upstream answered its kind's probe with 2xx: Ollama `GET /api/version`;
    /// an OpenAI-compatible server `GET /health`, or `GET /v1/models` where it has none.
    /// With several upstreams: whether at least one takes calls now.
    pub upstream_reachable: bool,
    /// Why not, when it did not; with several upstreams, each failing one as
    /// `name: why`, separated by `; ` (`null` while all are well).
    pub upstream_error: Option<String>,
    /// Whether the last write to the store succeeded.
    pub store_writable: bool,
    /// Why the recorder's writer thread stopped, when it did (a panic): records are no
    /// longer stored until a restart.
    pub writer_error: Option<String>,
    /// Listeners that stopped serving, each with why (a panic in the accept loop).
    pub server_errors: Vec<String>,
    /// The store's last error, while failing.
    pub store_error: Option<String>,
    /// With several upstreams, each one's health, probed for this answer (in
    /// configuration order); absent with one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<crate::fleet::HostHealth>,
    /// Records waiting to be written.
    pub queue_depth: usize,
    /// Records committed since start.
    pub records_written: u64,
    /// Records lost since start (queue full or store failing).
    pub records_dropped: u64,
    /// Seconds since start.
    pub uptime_s: u64,
    /// ollameter's version.
    #[schema(value_type = String)]
    pub version: &'static str,
}

/// The health handler. Always 200: the sidecar answers; `status` says how it is.
#[utoipa::path(
    get,
    path = "/api/model-performance/health",
    tag = "meta",
    responses((status = 200, description = "The sidecar answers; `status` says how it is", body = Health))
)]
pub async fn health(State(state): State<ApiState>) -> Json<Health> {
    let upstream = upstream_health(&state).await;
    let stats = state.recorder.stats();
    let store_writable = !stats.store_failing();
    let writer_error = stats.writer_error();
    let server_errors = state.server_failures.list();
    let snapshot = state.recorder.snapshot();
    let ok =
        upstream.all_well && store_writable && writer_error.is_none() && server_errors.is_empty();
    Json(Health {
        status: if ok { "ok" } else { "degraded" },
        upstream: state.upstream.url().to_string(),
        upstream_kind: upstream.kind,
        upstream_reachable: upstream.reachable,
        upstream_error: upstream.error,
        store_writable,
        writer_error,
        server_errors,
        upstreams: upstream.hosts,
        store_error: stats.last_error(),
        queue_depth: snapshot.queue_depth as usize,
        records_written: snapshot.written,
        records_dropped: snapshot.dropped,
        uptime_s: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// What the health answer says of the upstreams.
struct UpstreamsHealth {
    /// Every upstream answers and takes calls.
    all_well: bool,
    /// The one upstream answers; with several, at least one takes calls.
    reachable: bool,
    /// Why not, per failing upstream.
    error: Option<String>,
    /// The first upstream's kind.
    kind: Option<crate::upstream::UpstreamKind>,
    /// With several, each one.
    hosts: Vec<crate::fleet::HostHealth>,
}

/// Probes the upstream (every one at once, with several) for this answer.
async fn upstream_health(state: &ApiState) -> UpstreamsHealth {
    use crate::fleet::Availability;
    let fleet = &state.fleet;
    if !fleet.is_multi() {
        let probe = state.upstream.check().await;
        return UpstreamsHealth {
            all_well: probe.error.is_none(),
            reachable: probe.error.is_none(),
            error: probe.error,
            kind: probe.kind,
            hosts: Vec::new(),
        };
    }
    let hosts = fleet.health_now(state.upstream.client()).await;
    let failing: Vec<String> = hosts
        .iter()
        .filter_map(|h| {
            // A half-open host that answers its probe is well: the next call tries it.
            let why = if !h.reachable {
                h.probe_error
                    .clone()
                    .unwrap_or_else(|| "does not answer its probe".to_owned())
            } else if h.availability == Availability::Down {
                format!(
                    "ejected after {} failed calls in a row, for {} ms more{}",
                    h.failures_in_a_row,
                    h.ejected_for_ms.unwrap_or(0),
                    h.last_call_error
                        .as_ref()
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default()
                )
            } else {
                return None;
            };
            Some(format!("{}: {why}", h.name))
        })
        .collect();
    UpstreamsHealth {
        all_well: failing.is_empty(),
        reachable: hosts.iter().any(|h| h.availability != Availability::Down),
        error: (!failing.is_empty()).then(|| failing.join("; ")),
        kind: hosts.first().and_then(|h| h.kind),
        hosts,
    }
}

/// `GET /api/model-performance/system`: what the telemetry sampler sees now: GPUs,
/// loaded models with their VRAM, Ollama's processes, and each source's state in words.
#[utoipa::path(
    get,
    path = "/api/model-performance/system",
    tag = "meta",
    responses((status = 200, description = "Host, process and GPU telemetry", body = Object))
)]
pub async fn system(State(state): State<ApiState>) -> Json<System> {
    Json(System {
        upstream_kind: state.upstream.kind(),
        snapshot: state.telemetry.snapshot(),
        hosts: if state.fleet.is_multi() {
            state.fleet.status()
        } else {
            Vec::new()
        },
    })
}

/// The `/system` answer: the upstream's kind beside the telemetry snapshot.
#[derive(Debug, Serialize)]
pub struct System {
    /// `ollama` or `openai`, configured or detected; `null` while not known.
    pub upstream_kind: Option<crate::upstream::UpstreamKind>,
    /// What the telemetry sampler sees (of the first upstream, with several).
    #[serde(flatten)]
    pub snapshot: crate::telemetry::SystemSnapshot,
    /// With several upstreams, every host: its health, installed and loaded models,
    /// calls in flight and its own telemetry; absent with one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<crate::fleet::HostStatus>,
}

/// `GET /metrics`: Prometheus text format: per-model GenAI histograms and ollameter's own
/// counters.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "Prometheus text exposition format",
               body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<ApiState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        {
            let mut page = state.metrics.render(&state.recorder.snapshot());
            // Each upstream's telemetry says whether it answered; one upstream keeps the
            // unlabelled series.
            let up = |telemetry: &crate::telemetry::Telemetry| {
                crate::alerts::upstream_up(telemetry.snapshot().sampler.sources.upstream_api())
            };
            let upstreams: Vec<(Option<&str>, Option<bool>)> = if state.fleet.is_multi() {
                state
                    .fleet
                    .hosts()
                    .iter()
                    .map(|h| (Some(h.name()), up(h.telemetry())))
                    .collect()
            } else {
                vec![(None, up(&state.telemetry))]
            };
            page.push_str(&state.alerts.render_metrics(&upstreams));
            page
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::history::History;
    use crate::record::Record;
    use crate::recorder::{self, CommitHook, RecorderConfig, StoreListener};

    /// A listener whose first commit panics: the writer thread dies with it.
    struct Panics;

    impl StoreListener for Panics {
        fn committed(&self, _: &[Record]) {
            panic!("listener bug");
        }
        fn retained(&self, _: i64, _: u64) {}
        fn model_deleted(&self, _: &str) {}
        fn quality_set(&self, _: &Record, _: f64) {}
        fn models_evicted(&self, _: &[String]) {}
    }

    #[tokio::test]
    async fn a_dead_writer_and_a_stopped_listener_make_health_degraded_and_say_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.db");
        let config = RecorderConfig {
            queue_capacity: 10,
            batch_size: 10,
            flush_interval: Duration::from_millis(1),
            max_records_per_model: 100,
            max_age: Duration::from_secs(86_400),
            retention_interval: Duration::from_secs(3600),
            instance: "test".into(),
            spill_capacity: 0,
            follow_interval: Duration::from_millis(250),
            max_models: 1_000,
        };
        let location = crate::store::StoreLocation::Sqlite(path.clone());
        let (recorder, task) =
            recorder::start(&location, config, Some(Arc::new(Panics) as CommitHook))
                .expect("start");
        let failures = ServerFailures::default();
        let history = Arc::new(History::default());
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let state = ApiState {
            routing: crate::routing::ModelRouter::new(
                crate::routing::config::RoutingConfig::default(),
                history.clone(),
                crate::telemetry::Telemetry::disabled(),
                metrics.clone(),
                None,
            ),
            recorder: recorder.clone(),
            upstream: UpstreamProbe::new(
                reqwest::Client::new(),
                "http://127.0.0.1:9".into(),
                crate::upstream::Kind::new(crate::upstream::KindSetting::Auto),
            ),
            telemetry: crate::telemetry::Telemetry::disabled(),
            fleet: crate::fleet::Fleet::single("http://127.0.0.1:9"),
            metrics,
            store: Arc::new(location),
            history,
            started: Instant::now(),
            access: Arc::default(),
            server_failures: failures.clone(),
            alerts: Arc::new(crate::alerts::Alerts::empty(Default::default())),
            bench: Arc::default(),
            cost: Arc::default(),
        };
        let Json(before) = health(State(state.clone())).await;
        assert_eq!(before.writer_error, None);
        assert!(before.server_errors.is_empty());

        let record = Record::new(
            "r1".into(),
            chrono::Utc::now(),
            "m".into(),
            "chat".into(),
            "/api/chat".into(),
        );
        assert!(recorder.submit_and_wait(vec![record]).await.is_err());
        failures.push("proxy listener stopped: panicked: boom".into());
        let deadline = Instant::now() + Duration::from_secs(10);
        let after = loop {
            let Json(h) = health(State(state.clone())).await;
            if h.writer_error.is_some() || Instant::now() > deadline {
                break h;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(after.status, "degraded");
        let writer = after.writer_error.expect("the writer's panic is shown");
        assert!(writer.contains("listener bug"), "{writer}");
        assert_eq!(
            after.server_errors,
            ["proxy listener stopped: panicked: boom"]
        );
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
    }
}
