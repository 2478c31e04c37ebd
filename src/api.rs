//! The sidecar's own HTTP API under `/api/model-performance/`: health, statistics,
//! comparison, recommendation, trends, insights, export, import and clean-up. Handlers
//! validate input, call the pure functions of `stats` and `recommend` over the in-memory
//! `history`, and map the answers. Nothing here is on the proxy's path, and nothing
//! imports this module.
//!
//! Sub-modules: `error` (the one error type and its statuses), `params` (query and body
//! parsing), `input` (records written by hand or imported), `import` (reading an import
//! body: NDJSON, JSON or CSV into records), `query` (read routes), `listing` (what every
//! list of models obeys: unknown names left out, a `limit`),
//! `records` (write routes), `export`, `health`, `openapi` (the OpenAPI document, generated
//! from the handlers' attributes), `auth` (who may call what), `bench` (benchmark runs
//! inside the sidecar), and `dashboard` (`GET /dashboard`, the HTML page over the same
//! figures).

pub mod alerts;
pub mod auth;
pub mod bench;
pub mod dashboard;
pub mod error;
pub mod export;
pub mod health;
pub mod import;
pub mod input;
pub mod listing;
pub mod openapi;
pub mod params;
pub mod predict;
pub mod query;
pub mod records;
pub mod routing;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post};

use crate::history::History;
use crate::metrics::Metrics;
use crate::recorder::Recorder;
use crate::telemetry::Telemetry;

/// Largest body the API reads (an import of a few hundred thousand records).
pub const MAX_API_BODY_BYTES: usize = 256 * 1024 * 1024;

/// What the API handlers share: the read side (history, store file, telemetry, metrics),
/// the recorder for writes, and a probe of the upstream. Nothing of the data plane.
#[derive(Clone)]
pub struct ApiState {
    /// The recorder, for counters and writes.
    pub recorder: Recorder,
    /// Asks the upstream whether it answers (`/health`).
    pub upstream: health::UpstreamProbe,
    /// The telemetry sampler's handle (snapshot, GPU size, VRAM needs).
    pub telemetry: Telemetry,
    /// The upstreams, for `/system` and `/health` (their health and inventory).
    pub fleet: crate::fleet::Fleet,
    /// The Prometheus metrics the proxy records into, rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Where the store is, for read connections (export, import's duplicate check).
    pub store: Arc<crate::store::StoreLocation>,
    /// The in-memory history the statistics read.
    pub history: Arc<History>,
    /// When the sidecar started.
    pub started: Instant,
    /// Who may call what.
    pub access: Arc<auth::Access>,
    /// Model routing, for its endpoint.
    pub routing: crate::routing::ModelRouter,
    /// Listeners that stopped serving, for `/health`.
    pub server_failures: health::ServerFailures,
    /// The alerts board.
    pub alerts: Arc<crate::alerts::Alerts>,
    /// The benchmark runs inside the sidecar.
    pub bench: Arc<crate::bench::BenchRuns>,
    /// `[cost]`: prices for the statistics' cost figures.
    pub cost: Arc<crate::analytics::cost::CostConfig>,
}

/// The prefix of every API route.
pub const BASE: &str = "/api/model-performance";

/// The API's routes. Model names contain `/` (`hf.co/org/model:Q4_K_M`), so routes that
/// take one use a catch-all segment.
pub fn router(state: ApiState) -> Router {
    routes()
        .router
        // The HTML page is not part of the JSON API's document.
        .route("/dashboard", get(dashboard::dashboard))
        .layer(DefaultBodyLimit::max(MAX_API_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.access.clone(),
            auth::guard,
        ))
        .with_state(state)
}

/// Every (method, path) the API serves, paths in axum's syntax (`{*model}` for a
/// catch-all). The OpenAPI test compares it with the document, so a route added without
/// documentation fails it.
pub fn served_routes() -> Vec<(Method, String)> {
    routes().served
}

/// The routes, each added through [`Routes`] so that [`served_routes`] knows it.
fn routes() -> Routes {
    Routes::default()
        .get("/health", health::health)
        .get("/system", health::system)
        .unprefixed_get("/metrics", health::metrics)
        .post("/record", records::record)
        .post("/import", records::import)
        .post("/records/{id}/quality", records::set_quality)
        .get("/statistics", query::all_statistics)
        .get("/statistics/{*model}", query::model_statistics)
        .post("/compare", query::compare)
        .get("/recommend", query::recommend)
        .get("/predict", predict::predict)
        .get("/routing", routing::routing)
        .get("/trend/{*model}", query::trend)
        .get("/insights", query::insights)
        .get("/alerts", alerts::alerts)
        .get("/export", export::export)
        .delete("/clear/{*model}", records::clear_model)
        .post("/clear-old", records::clear_old)
        .get("/openapi.json", openapi::openapi_json)
        .post("/benchmark", bench::start)
        .get("/benchmark/{id}", bench::status)
        .delete("/benchmark/{id}", bench::stop)
}

/// A router that remembers what it serves.
#[derive(Default)]
struct Routes {
    router: Router<ApiState>,
    served: Vec<(Method, String)>,
}

impl Routes {
    fn add(mut self, method: Method, path: &str, route: MethodRouter<ApiState>) -> Routes {
        let path = format!("{BASE}{path}");
        self.router = self.router.route(&path, route);
        self.served.push((method, path));
        self
    }

    /// A route outside the API's prefix (`/metrics`, where Prometheus looks by default).
    fn unprefixed_get<H: Handler<T, ApiState>, T: 'static>(
        mut self,
        path: &str,
        handler: H,
    ) -> Routes {
        self.router = self.router.route(path, get(handler));
        self.served.push((Method::GET, path.to_string()));
        self
    }

    fn get<H: Handler<T, ApiState>, T: 'static>(self, path: &str, handler: H) -> Routes {
        self.add(Method::GET, path, get(handler))
    }

    fn post<H: Handler<T, ApiState>, T: 'static>(self, path: &str, handler: H) -> Routes {
        self.add(Method::POST, path, post(handler))
    }

    fn delete<H: Handler<T, ApiState>, T: 'static>(self, path: &str, handler: H) -> Routes {
        self.add(Method::DELETE, path, delete(handler))
    }
}
