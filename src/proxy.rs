//! The transparent reverse proxy: every method and path goes to the one configured
//! upstream, bodies stream both ways, and inference calls are metered on the way
//! (`meter`), without ever making the client wait on ollameter's own parts.
//!
//! Sub-modules: `classify` (which calls are inference, what their bodies say),
//! `forward` (headers and the upstream request), `meter` (the record of one call and the
//! body wrapper that watches the answer), `error` (the proxy's own error answers).

pub mod classify;
pub mod error;
pub mod forward;
pub mod meter;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use chrono::Utc;

use crate::metrics::Metrics;
use crate::quality::QualityRules;
use crate::record::{ErrorKind, Record};
use crate::recorder::Recorder;
use crate::telemetry::Telemetry;
use crate::text::error_chain;
use classify::{classify, default_operation, is_openai_shape, request_facts};
use error::error_response;
use meter::{DecodeLimits, Meter, MeteredStream, Sinks};

/// The response header that names the record of an instrumented call.
pub const RECORD_ID_HEADER: &str = "x-ollameter-record-id";

/// Everything the proxy handler needs; cheap to clone.
#[derive(Clone)]
pub struct ProxyState {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    upstream: String,
    sinks: Sinks,
    operation_header: axum::http::HeaderName,
    max_body_bytes: u64,
    limits: DecodeLimits,
}

/// Settings of the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Upstream base URL without a trailing slash, e.g. `http://127.0.0.1:11434`.
    pub upstream: String,
    /// TCP connect timeout; there is no response timeout (model loads take minutes).
    pub connect_timeout: std::time::Duration,
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
    /// Builds the upstream client and the shared state.
    pub fn new(
        config: &ProxyConfig,
        recorder: Recorder,
        telemetry: Telemetry,
        metrics: Arc<Metrics>,
    ) -> Result<ProxyState, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy must not send a request twice on its own: a generate is not
            // idempotent (and this also spares each request the retry layer's copy).
            .retry(reqwest::retry::never())
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .build()?;
        Ok(ProxyState {
            inner: Arc::new(Inner {
                client,
                upstream: config.upstream.clone(),
                sinks: Sinks {
                    recorder,
                    quality: config.quality.clone(),
                    telemetry,
                    metrics,
                },
                operation_header: config.operation_header.clone(),
                max_body_bytes: config.max_body_bytes,
                limits: DecodeLimits {
                    capture_bytes: usize::try_from(config.quality_capture_bytes)
                        .unwrap_or(usize::MAX),
                    parse_bytes: usize::try_from(config.max_parse_bytes).unwrap_or(usize::MAX),
                },
            }),
        })
    }

    /// The upstream client, shared with the health check.
    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }
}

/// The proxy's handler: forwards any request, metering the inference calls.
pub async fn handle(State(state): State<ProxyState>, request: Request) -> Response {
    let started = Instant::now();
    let inner = &state.inner;
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    // Only the path and query of the request are used: an absolute-form URI naming
    // another host can never redirect the proxy away from its one upstream.
    let Some(path_and_query) = parts.uri.path_and_query().map(|p| p.as_str().to_string()) else {
        return error_response(StatusCode::BAD_REQUEST, false, "request has no path");
    };
    if !path_and_query.starts_with('/') {
        return error_response(
            StatusCode::BAD_REQUEST,
            false,
            "request path must start with /",
        );
    }
    let url = format!("{}{}", inner.upstream, path_and_query);
    let api = classify(&parts.method, &path);
    let openai_shape = is_openai_shape(api, &path);
    let headers = forward::request_headers(&parts.headers);

    let Some(api) = api else {
        // Forward only: stream the body through untouched, no limit (blob uploads are GBs).
        let upstream_body = reqwest::Body::wrap_stream(body.into_data_stream());
        let sent = inner
            .client
            .request(parts.method, &url)
            .headers(headers)
            .body(upstream_body)
            .send()
            .await;
        return match sent {
            Ok(resp) => forward::response(resp, Body::from_stream),
            Err(e) => unreachable_response(inner, &e, openai_shape).0,
        };
    };

    // Instrumented: read the body to learn the model and stream flag; forward the very
    // same bytes.
    let declared = forward::content_length(&parts.headers);
    if declared.is_some_and(|len| len > inner.max_body_bytes) {
        return too_large(inner.max_body_bytes, openai_shape);
    }
    let limit = usize::try_from(inner.max_body_bytes).unwrap_or(usize::MAX);
    let bytes = match forward::read_body(body, declared, limit).await {
        Ok(bytes) => bytes,
        Err(forward::ReadBodyError::TooLarge) => {
            return too_large(inner.max_body_bytes, openai_shape);
        }
        Err(forward::ReadBodyError::Read(e)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                openai_shape,
                &format!("could not read the request body: {e}"),
            );
        }
    };
    let facts = request_facts(api, &bytes);
    let explicit_operation = parts
        .headers
        .get(&inner.operation_header)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string);
    let id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string);
    let mut record = Record::new(
        id,
        Utc::now(),
        facts.model,
        explicit_operation
            .clone()
            .unwrap_or_else(|| default_operation(api).to_string()),
        path,
    );
    record.stream = facts.stream;
    record.request_bytes = bytes.len() as u64;
    if let Some(source) = parts.headers.get(crate::record::SOURCE_HEADER) {
        record.source = crate::record::Source::from_header(source.as_bytes());
    }
    let mut meter = Meter::new(
        record,
        inner.sinks.clone(),
        started,
        api,
        explicit_operation.is_some(),
    );
    let record_id = HeaderValue::from_str(meter.id()).ok();

    let sent = inner
        .client
        .post(&url)
        .headers(headers)
        .body(bytes)
        .send()
        .await;
    let mut response = match sent {
        Ok(resp) => {
            let content_type = resp
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            meter.response_started(
                resp.status().as_u16(),
                content_type.as_deref(),
                inner.limits,
            );
            forward::response(resp, move |stream| {
                Body::from_stream(MeteredStream::new(stream, meter))
            })
        }
        Err(e) => {
            let (response, kind, message) = unreachable_response(inner, &e, openai_shape);
            meter.fail(kind, response.status().as_u16(), message);
            response
        }
    };
    if let Some(id) = record_id {
        response.headers_mut().insert(RECORD_ID_HEADER, id);
    }
    response
}

fn too_large(limit: u64, openai_shape: bool) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        openai_shape,
        &format!(
            "request body is over the {limit} byte limit of ollameter (proxy.max_body_bytes); \
             raise it in the configuration if this is intended"
        ),
    )
}

/// The answer when the upstream could not be reached: 504 on a connect timeout, else 502,
/// naming the upstream.
fn unreachable_response(
    inner: &Inner,
    e: &reqwest::Error,
    openai_shape: bool,
) -> (Response, ErrorKind, String) {
    let detail = error_chain(e);
    let (status, kind, message) = if e.is_timeout() {
        (
            StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Timeout,
            format!(
                "ollameter: timed out connecting to the Ollama upstream {}: {detail}",
                inner.upstream
            ),
        )
    } else {
        (
            StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamUnreachable,
            format!(
                "ollameter: cannot reach the Ollama upstream {}: {detail}",
                inner.upstream
            ),
        )
    };
    tracing::warn!(upstream = %inner.upstream, error = %detail, "upstream unreachable");
    (
        error_response(status, openai_shape, &message),
        kind,
        message,
    )
}
