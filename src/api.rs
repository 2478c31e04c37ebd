//! The sidecar's own HTTP API under `/api/model-performance/`: health now; statistics,
//! recommendation and the rest read the store through `stats` and `recommend`. Nothing
//! here is on the proxy's path, and nothing imports this module.

pub mod health;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::routing::get;

use crate::proxy::ProxyState;
use crate::recorder::Recorder;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The recorder, for counters and manual writes.
    pub recorder: Recorder,
    /// The proxy's state, for its upstream client.
    pub proxy: ProxyState,
    /// The store's file, for read connections.
    pub db_path: Arc<PathBuf>,
    /// When the sidecar started.
    pub started: Instant,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/model-performance/health", get(health::health))
        .with_state(state)
}
