//! `GET /api/model-performance/health`: is the upstream reachable, is the store taking
//! writes, how deep is the queue, how many records were written and dropped.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::ApiState;

/// The health answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the upstream or the store is failing.
    #[schema(value_type = String, pattern = "^(ok|degraded)$")]
    pub status: &'static str,
    /// The upstream's base URL.
    pub upstream: String,
    /// What the upstream is: `ollama` or `openai` (any OpenAI-compatible server),
    /// configured (`upstream.kind`) or detected; `null` while it cannot be told.
    pub upstream_kind: Option<crate::upstream::UpstreamKind>,
    /// Whether the upstream answered its kind's probe with 2xx: Ollama `GET /api/version`;
    /// an OpenAI-compatible server `GET /health`, or `GET /v1/models` where it has none.
    pub upstream_reachable: bool,
    /// Why not, when it did not.
    pub upstream_error: Option<String>,
    /// Whether the last write to the store succeeded.
    pub store_writable: bool,
    /// The store's last error, while failing.
    pub store_error: Option<String>,
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
    let probe = state
        .proxy
        .kind()
        .probe(state.proxy.client(), state.proxy.upstream())
        .await;
    let upstream_reachable = probe.error.is_none();
    let upstream_error = probe.error;
    let stats = state.recorder.stats();
    let store_writable = !stats.store_failing();
    Json(Health {
        status: if upstream_reachable && store_writable {
            "ok"
        } else {
            "degraded"
        },
        upstream: state.proxy.upstream().to_string(),
        upstream_kind: probe.kind,
        upstream_reachable,
        upstream_error,
        store_writable,
        store_error: stats.last_error(),
        queue_depth: state.recorder.queue_depth(),
        records_written: stats.written.load(Ordering::Relaxed),
        records_dropped: stats.dropped.load(Ordering::Relaxed),
        uptime_s: state.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
    })
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
        upstream_kind: state.proxy.kind().get(),
        snapshot: state.proxy.telemetry().snapshot(),
    })
}

/// The `/system` answer: the upstream's kind beside the telemetry snapshot.
#[derive(Debug, Serialize)]
pub struct System {
    /// `ollama` or `openai`, configured or detected; `null` while not known.
    pub upstream_kind: Option<crate::upstream::UpstreamKind>,
    /// What the telemetry sampler sees.
    #[serde(flatten)]
    pub snapshot: crate::telemetry::SystemSnapshot,
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
    let stats = state.recorder.stats();
    let snapshot = crate::metrics::RecorderSnapshot {
        written: stats.written.load(Ordering::Relaxed),
        dropped: stats.dropped.load(Ordering::Relaxed),
        queue_depth: state.recorder.queue_depth() as u64,
        commits: stats.commits.load(Ordering::Relaxed),
        commit_seconds_total: stats.commit_us_total.load(Ordering::Relaxed) as f64 / 1e6,
        last_commit_seconds: stats.last_commit_us.load(Ordering::Relaxed) as f64 / 1e6,
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        state.proxy.metrics().render(&snapshot),
    )
}
