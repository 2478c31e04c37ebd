//! The transparent reverse proxy: every method and path goes to an upstream (the one
//! configured, or with several the host the fleet chooses), bodies stream both ways, and inference calls are metered on the way
//! (`meter`), without ever making the client wait on ollameter's own parts.
//!
//! Sub-modules:
//! - `pipeline`: the handler, one call as named phases (classify, read the body, open the
//!   record, resolve, forward, respond); routing and fallback plug in there.
//! - `classify`: which calls are inference, what their bodies say.
//! - `upstream`: an upstream server and the pooled hyper client that reaches it.
//! - `hosts`: the routes that are not inference with several upstreams: model lists
//!   answered as their union, `/api/show` to a host that has the model, management calls
//!   to the pinned or first host.
//! - `forward`: headers across the proxy, reading a request body, the answer's head.
//! - `meter`: the record of one call and the body wrapper that watches the answer.
//! - `error`: the proxy's own error answers.

pub mod classify;
pub mod error;
pub mod forward;
mod hosts;
pub mod meter;
pub mod pipeline;
pub mod upstream;

pub use pipeline::handle;

use std::sync::Arc;

use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::quality::QualityRules;
use crate::recorder::Recorder;
use crate::telemetry::Telemetry;
use meter::{DecodeLimits, Sinks};
use upstream::Upstream;

/// The response header that names the record of an instrumented call.
pub const RECORD_ID_HEADER: &str = "x-ollameter-record-id";

/// Everything the proxy handler needs; cheap to clone.
#[derive(Clone)]
pub struct ProxyState {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// One client per upstream, in the fleet's order.
    upstreams: Vec<Upstream>,
    /// The upstreams' health, inventory and the choice of a host.
    fleet: Fleet,
    /// For the health check's probe (with its own timeout), not for proxied calls.
    probe_client: reqwest::Client,
    /// The upstream's kind (configured or detected).
    kind: crate::upstream::Kind,
    sinks: Sinks,
    operation_header: axum::http::HeaderName,
    /// Virtual model names, fallbacks and exploration.
    router: crate::routing::ModelRouter,
    max_body_bytes: u64,
    limits: DecodeLimits,
}

/// Settings of the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The first upstream's base URL without a trailing slash, e.g.
    /// `http://127.0.0.1:11434`.
    pub upstream: String,
    /// Every upstream, in order (the first is `upstream`); one for a single Ollama.
    pub upstreams: Vec<crate::fleet::UpstreamConfig>,
    /// How several upstreams are probed and ejected.
    pub health: crate::fleet::HealthConfig,
    /// TCP connect timeout; there is no response timeout (model loads take minutes).
    pub connect_timeout: std::time::Duration,
    /// What the first upstream is, or whether to detect it (`upstream.kind`).
    pub kind: crate::upstream::KindSetting,
    /// Header naming the operation (validated by the configuration).
    pub operation_header: axum::http::HeaderName,
    /// Largest request body read on instrumented routes.
    pub max_body_bytes: u64,
    /// Answer text kept for quality rules.
    pub quality_capture_bytes: u64,
    /// Largest JSON answer parsed.
    pub max_parse_bytes: u64,
    /// The quality rules, compiled once by the configuration.
    pub quality: Arc<QualityRules>,
}

impl ProxyState {
    /// Builds a client per upstream of `fleet` and the shared state.
    pub fn new(
        config: &ProxyConfig,
        fleet: Fleet,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        router: crate::routing::ModelRouter,
        otel: crate::otel::Otel,
    ) -> Result<ProxyState, String> {
        let upstreams = fleet
            .hosts()
            .iter()
            .map(|h| Upstream::new(h.url(), config.connect_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let telemetry: Telemetry = fleet.first().telemetry().clone();
        let kind = fleet.first().kind().clone();
        let probe_client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ProxyState {
            inner: Arc::new(Inner {
                upstreams,
                fleet,
                probe_client,
                kind,
                sinks: Sinks {
                    recorder,
                    quality: config.quality.clone(),
                    telemetry,
                    metrics,
                    otel,
                },
                operation_header: config.operation_header.clone(),
                router,
                max_body_bytes: config.max_body_bytes,
                limits: DecodeLimits {
                    capture_bytes: usize::try_from(config.quality_capture_bytes)
                        .unwrap_or(usize::MAX),
                    parse_bytes: usize::try_from(config.max_parse_bytes).unwrap_or(usize::MAX),
                },
            }),
        })
    }

    /// The upstream's kind (configured or detected), shared with the health check.
    pub fn kind(&self) -> &crate::upstream::Kind {
        &self.inner.kind
    }

    /// A client for the health check's probe of the upstream.
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.probe_client
    }

    /// The upstreams.
    pub fn fleet(&self) -> &Fleet {
        &self.inner.fleet
    }
}
