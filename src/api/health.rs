//! `GET /api/model-performance/health`: is the upstream reachable, is the store taking
//! writes, how deep is the queue, how many records were written and dropped.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::ApiState;

/// How long the health check waits for Ollama's `GET /`.
const UPSTREAM_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The health answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the upstream or the store is failing.
    #[schema(value_type = String, pattern = "^(ok|degraded)$")]
    pub status: &'static str,
    /// The upstream's base URL.
    pub upstream: String,
    /// Whether `GET /` on the upstream answered 2xx.
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
        .client()
        .get(format!("{}/", state.proxy.upstream()))
        .timeout(UPSTREAM_PROBE_TIMEOUT)
        .send()
        .await;
    let (upstream_reachable, upstream_error) = match probe {
        Ok(r) if r.status().is_success() => (true, None),
        Ok(r) => (false, Some(format!("GET / answered {}", r.status()))),
        Err(e) => (false, Some(crate::proxy::meter::error_chain(&e))),
    };
    let stats = state.recorder.stats();
    let store_writable = !stats.store_failing();
    Json(Health {
        status: if upstream_reachable && store_writable {
            "ok"
        } else {
            "degraded"
        },
        upstream: state.proxy.upstream().to_string(),
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
