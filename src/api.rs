//! The sidecar's own HTTP API under `/api/model-performance/`: health, statistics,
//! comparison, recommendation, trends, insights, export, import and clean-up. Handlers
//! validate input, call the pure functions of `stats` and `recommend` over the in-memory
//! `history`, and map the answers. Nothing here is on the proxy's path, and nothing
//! imports this module.
//!
//! Sub-modules: `error` (the one error type and its statuses), `params` (query and body
//! parsing), `input` (records written by hand or imported), `query` (read routes),
//! `records` (write routes), `export`, `health`, and `dashboard` (`GET /dashboard`, the
//! HTML page over the same figures).

pub mod dashboard;
pub mod error;
pub mod export;
pub mod health;
pub mod input;
pub mod params;
pub mod query;
pub mod records;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

use crate::history::History;
use crate::proxy::ProxyState;
use crate::recorder::Recorder;

/// Largest body the API reads (an import of a few hundred thousand records).
pub const MAX_API_BODY_BYTES: usize = 256 * 1024 * 1024;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The recorder, for counters and writes.
    pub recorder: Recorder,
    /// The proxy's state, for its upstream client.
    pub proxy: ProxyState,
    /// The store's file, for read connections.
    pub db_path: Arc<PathBuf>,
    /// The in-memory history the statistics read.
    pub history: Arc<History>,
    /// When the sidecar started.
    pub started: Instant,
}

/// The API's routes. Model names contain `/` (`hf.co/org/model:Q4_K_M`), so routes that
/// take one use a catch-all segment.
pub fn router(state: ApiState) -> Router {
    let base = "/api/model-performance";
    Router::new()
        .route(&format!("{base}/health"), get(health::health))
        .route(&format!("{base}/system"), get(health::system))
        .route("/metrics", get(health::metrics))
        .route("/dashboard", get(dashboard::dashboard))
        .route(&format!("{base}/record"), post(records::record))
        .route(&format!("{base}/import"), post(records::import))
        .route(
            &format!("{base}/records/{{id}}/quality"),
            post(records::set_quality),
        )
        .route(&format!("{base}/statistics"), get(query::all_statistics))
        .route(
            &format!("{base}/statistics/{{*model}}"),
            get(query::model_statistics),
        )
        .route(&format!("{base}/compare"), post(query::compare))
        .route(&format!("{base}/recommend"), get(query::recommend))
        .route(&format!("{base}/trend/{{*model}}"), get(query::trend))
        .route(&format!("{base}/insights"), get(query::insights))
        .route(&format!("{base}/export"), get(export::export))
        .route(
            &format!("{base}/clear/{{*model}}"),
            delete(records::clear_model),
        )
        .route(&format!("{base}/clear-old"), post(records::clear_old))
        .layer(DefaultBodyLimit::max(MAX_API_BODY_BYTES))
        .with_state(state)
}
