//! One proxied call as a pipeline of named phases (in the spirit of pingora's request
//! phases). Each phase is a small function with a plain input and output, so the handler
//! reads top to bottom:
//!
//! 1. [`classify`]: the request's head as it will go upstream (hop-by-hop headers
//!    removed, in place), its error shape, and whether it is an inference call.
//!    Anything else is forwarded as a stream ([`forward_only`]) and never buffered.
//! 2. [`read_body`]: an inference call's body, whole and within the limit (413 above it).
//! 3. [`open_record`]: the meter, which owns the call's record from here on (id, model,
//!    operation, stream flag) and finishes it however the call ends.
//! 4. [`resolve`]: where the call goes and the exact bytes it sends: the host the fleet
//!    ranks first for the model (after model resolution: `"auto"`, aliases; or the host
//!    the client pinned) and the body for that model.
//! 5. [`forward`]: one attempt, one upstream: sends the head and body, returns the head of
//!    the answer. Nothing has reached the client yet, so a failed attempt can be resolved
//!    again and forwarded elsewhere with the same or a rewritten body (`Bytes` clones share
//!    the buffer): that is where fallback slots in, between phases 5 and 6.
//! 6. [`respond`]: the answer streams to the client through the meter, which watches each
//!    chunk and finishes the record at the end of the body (or on a failure before it).
//!
//! Metering stays off the byte path: a chunk is passed on as it came, a copy of its
//! bytes is only read by the decoder, and the record leaves through the recorder's queue.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use chrono::Utc;
use hyper::body::Incoming;
use tokio_util::task::AbortOnDropHandle;

use super::classify::RequestFacts;
use super::classify::{
    classify as classify_route, default_operation, is_openai_shape, request_facts,
};
use super::error::error_response;
use super::forward::{self, ReadBodyError};
use super::meter::{Meter, MeteredBody, Sinks};
use super::upstream::{self, Upstream, UpstreamError};
use super::{Inner, ProxyState, RECORD_ID_HEADER};
use crate::decode::Api;
use crate::fleet::{Host, Pin, UPSTREAM_HEADER};
use crate::record::{CallKind, ErrorKind, Record, RouteReason};
use crate::routing::{self, Attempt, MODEL_HEADER, Plan};
use http_body_util::BodyExt;

/// Longest client-chosen value kept from a header (`X-Request-Id`, the operation).
const MAX_HEADER_VALUE_CHARS: usize = 128;

/// The proxy's handler: forwards any request, metering the inference calls.
pub async fn handle(State(state): State<ProxyState>, request: Request) -> Response {
    let started = Instant::now();
    let proxy = &*state.inner;
    let (mut head, route, body) = match classify(request) {
        Ok(classified) => classified,
        Err(answer) => return answer,
    };
    let pin = match pin(proxy, &mut head) {
        Ok(pin) => pin,
        Err(answer) => return answer,
    };
    // The call's own workload for `auto` (ollameter's headers: never forwarded).
    let workload = match routing::workload::take(&mut head.headers) {
        Ok(workload) => workload,
        Err(message) => {
            return error_response(StatusCode::BAD_REQUEST, head.openai_shape, &message);
        }
    };
    let Route::Inference(api) = route else {
        return super::hosts::other_route(proxy, head, body, pin).await;
    };
    let body = match read_body(proxy, &head, body).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let facts = request_facts(api, &body);
    let plan = match plan(proxy, &head, api, &facts.model, workload, &body).await {
        Ok(plan) => plan,
        Err(answer) => return answer,
    };
    attempts(proxy, head, api, facts, body, started, plan, pin).await
}

/// Phase 1b: the host the client pins with `X-Ollameter-Upstream` (400 naming the hosts
/// when it is none of them). The header is ollameter's own: it never goes upstream.
#[expect(
    clippy::result_large_err,
    reason = "a phase either passes the call on or answers it; the answer is returned at once"
)]
fn pin(proxy: &Inner, head: &mut Head) -> Result<Pin, Response> {
    if !head.headers.contains_key(UPSTREAM_HEADER) {
        return Ok(Pin::None);
    }
    let pin = proxy
        .fleet
        .pin(&head.headers)
        .map_err(|message| error_response(StatusCode::BAD_REQUEST, head.openai_shape, &message))?;
    head.headers.remove(UPSTREAM_HEADER);
    Ok(pin)
}

/// How long a failed attempt's error answer may take to be read (it is a short JSON
/// object) before the next model is tried anyway.
const FAILED_ATTEMPT_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Phase 3b, routing: the models to try for a virtual name (`auto`, an alias) or a model
/// with a fallback chain; `None` to forward the call as sent; the route's 400 or 503 when
/// the name cannot be served.
async fn plan(
    proxy: &Inner,
    head: &Head,
    api: Api,
    requested: &str,
    workload: Option<routing::workload::CallWorkload>,
    body: &[u8],
) -> Result<Option<Plan>, Response> {
    if !proxy.router.routes(requested) {
        return Ok(None);
    }
    let operation = head
        .short_header(&proxy.operation_header)
        .unwrap_or(default_operation(api));
    let kind = CallKind::of_endpoint(head.path());
    proxy
        .router
        .plan(requested, kind, operation, workload, body)
        .await
        .map_err(|e| {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            error_response(status, head.openai_shape, &e.message())
        })
}

/// Phases 4 to 6, once per attempt: each model of the plan (the call's own model without
/// one) on each host the fleet ranks for it (the pinned host only, when pinned; the one
/// upstream when there is one), each attempt with its own record, until one answers or
/// `routing.max_attempts` attempts were made. An attempt that fails before any byte
/// reached the client (no answer, 5xx, 404 model not found) moves on: to the next host
/// for the model, then to the next model. A routed call's body names the attempt's model
/// (`Content-Length` fixed) and its answer names the model in `X-Ollameter-Model`.
#[expect(
    clippy::too_many_arguments,
    reason = "the phases' outputs, each distinct and named"
)]
async fn attempts(
    proxy: &Inner,
    head: Head,
    api: Api,
    facts: RequestFacts,
    body: Bytes,
    started: Instant,
    plan: Option<Plan>,
    pin: Pin,
) -> Response {
    let stream = facts.stream;
    let explicit;
    let (requested, tries): (&str, &[Attempt]) = match &plan {
        Some(plan) => (&plan.requested, &plan.attempts),
        None => {
            explicit = [Attempt {
                model: facts.model,
                reason: RouteReason::Explicit,
            }];
            (&explicit[0].model, &explicit)
        }
    };
    let routed = plan.is_some();
    let max_attempts = usize::try_from(proxy.router.config().max_attempts)
        .unwrap_or(usize::MAX)
        .max(1);
    let multi = proxy.fleet.is_multi();
    // With one upstream there is nothing to choose: no list is built.
    let mut hosts = crate::fleet::HostOrder::default();
    let single = [0_usize];
    let mut made = 0_usize;
    for (i, attempt) in tries.iter().enumerate() {
        let (body, head) = if routed {
            let body =
                routing::body::with_model(&body, &attempt.model).unwrap_or_else(|| body.clone());
            let mut head = head.clone();
            head.headers.insert(
                axum::http::header::CONTENT_LENGTH,
                HeaderValue::from(body.len()),
            );
            (body, std::borrow::Cow::Owned(head))
        } else {
            (body.clone(), std::borrow::Cow::Borrowed(&head))
        };
        // The model's key is needed only to choose among several hosts.
        let key = if multi {
            crate::fleet::ModelId::of(&attempt.model)
        } else {
            crate::fleet::ModelId::default()
        };
        let order: &[usize] = match pin {
            Pin::Host(index) => {
                hosts.clear();
                hosts.push(index);
                &hosts
            }
            Pin::None if multi => {
                proxy.fleet.order(key, &mut hosts);
                &hosts
            }
            Pin::None => &single,
        };
        if routed {
            proxy.router.note(requested, attempt);
        }
        for (h, &index) in order.iter().enumerate() {
            made += 1;
            let last = made >= max_attempts || (i + 1 == tries.len() && h + 1 == order.len());
            let host = &proxy.fleet.hosts()[index];
            let route = RouteFields {
                requested: requested.to_owned(),
                reason: attempt.reason,
                attempt: u32::try_from(made).unwrap_or(u32::MAX),
            };
            // Each attempt's time is its own: a fallback's record measures its try only.
            let attempt_started = if made == 1 { started } else { Instant::now() };
            let facts = RequestFacts {
                model: attempt.model.clone(),
                stream,
            };
            let mut meter = open_record(
                proxy,
                &head,
                api,
                facts,
                body.len(),
                attempt_started,
                route,
                host,
            );
            if multi {
                meter.hold(host.track(key));
            }
            let target = resolve(proxy, &head, body.clone(), index, &meter);
            meter.upstream_sent();
            let answer = forward(&head, &target).await;
            let outcome = answer
                .as_ref()
                .map(|a| a.status())
                .map_err(|e| e.detail().to_owned());
            let host_failed = proxy.fleet.record_outcome(host, outcome);
            let failed_before_answering = host_failed
                || answer
                    .as_ref()
                    .is_ok_and(|a| a.status() == StatusCode::NOT_FOUND);
            let mut answered = respond(proxy, &head, answer, meter, index);
            if failed_before_answering && !last {
                // Nothing has reached the client: the meter finishes this attempt's record
                // from the error answer's own (short) body, and the next try runs.
                tracing::info!(
                    requested = %requested,
                    model = %attempt.model,
                    upstream = %host.name(),
                    status = answered.status().as_u16(),
                    "falling back to the next host or model"
                );
                let drained = answered.into_body().collect();
                let _ = tokio::time::timeout(FAILED_ATTEMPT_DRAIN, drained).await;
                continue;
            }
            if routed && let Ok(model) = HeaderValue::from_str(&attempt.model) {
                answered.headers_mut().insert(MODEL_HEADER, model);
            }
            if let Some(over) = plan.as_ref().and_then(Plan::over_budget_header) {
                let name = routing::workload::OVER_BUDGET_HEADER;
                answered.headers_mut().insert(name, over);
            }
            return answered;
        }
        if made >= max_attempts {
            break;
        }
    }
    error_response(
        StatusCode::BAD_GATEWAY,
        head.openai_shape,
        "ollameter: no model to try",
    )
}

/// What routing says about one attempt, for its record.
pub(crate) struct RouteFields {
    /// The model name the client sent.
    pub(crate) requested: String,
    /// Why this attempt runs on its model.
    pub(crate) reason: RouteReason,
    /// 1 for the first try.
    pub(crate) attempt: u32,
}

/// What a request is to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An inference call of this API: metered and recorded.
    Inference(Api),
    /// Anything else: streamed through both ways, not recorded.
    ForwardOnly,
}

/// The request's head as it goes upstream, and how the proxy's own errors are shaped.
#[derive(Debug, Clone)]
pub struct Head {
    /// The client's method.
    pub method: Method,
    /// The client's path and query (never its authority: an absolute-form URI naming
    /// another host cannot take the proxy away from its upstream).
    pub path_and_query: PathAndQuery,
    /// The client's end-to-end headers (hop-by-hop and `Host` removed).
    pub headers: HeaderMap,
    /// Errors in the OpenAI/Anthropic shape rather than Ollama's.
    pub openai_shape: bool,
}

impl Head {
    /// The request path.
    pub fn path(&self) -> &str {
        self.path_and_query.path()
    }

    /// A client header's value, trimmed, when it is short, printable and not empty.
    fn short_header(&self, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= MAX_HEADER_VALUE_CHARS)
    }
}

/// Phase 1: the request's head, its route and its (unread) body; a 400 when it has no
/// usable path.
#[expect(
    clippy::result_large_err,
    reason = "a phase either passes the call on or answers it; the answer is returned at once"
)]
pub fn classify(request: Request) -> Result<(Head, Route, Body), Response> {
    let (parts, body) = request.into_parts();
    let Some(path_and_query) = parts.uri.path_and_query().cloned() else {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            false,
            "request has no path",
        ));
    };
    let path = path_and_query.path();
    if !path.starts_with('/') {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            false,
            "request path must start with /",
        ));
    }
    let api = classify_route(&parts.method, path);
    let openai_shape = is_openai_shape(api, path);
    let route = api.map_or(Route::ForwardOnly, Route::Inference);
    let head = Head {
        method: parts.method,
        path_and_query,
        headers: forward::request_headers(parts.headers),
        openai_shape,
    };
    Ok((head, route, body))
}

/// A request that is not an inference call, to the upstream at `index`: both bodies
/// stream through untouched, with no size limit (blob uploads are gigabytes), and nothing
/// is recorded. The answer names the upstream.
pub(crate) async fn forward_only(proxy: &Inner, head: Head, body: Body, index: usize) -> Response {
    let upstream = &proxy.upstreams[index];
    let host = &proxy.fleet.hosts()[index];
    let sent = upstream
        .send(
            head.method,
            &head.path_and_query,
            head.headers,
            upstream::streamed(body),
        )
        .await;
    let mut response = match sent {
        Ok(answer) => forward::response(answer, Body::new),
        Err(e) => {
            proxy.fleet.record_outcome(host, Err(e.detail().to_owned()));
            unreachable_response(upstream, &e, head.openai_shape).0
        }
    };
    response
        .headers_mut()
        .insert(UPSTREAM_HEADER, host.header().clone());
    response
}

/// Phase 2: an inference call's body, whole: 413 over `proxy.max_body_bytes` (told by
/// `Content-Length` before reading, or counted while reading), 400 when the client's
/// upload fails.
///
/// The body is read by a task of its own (aborted if the call is dropped). Read here, in
/// the connection's task, the body's first poll wakes hyper's connection driver, which is
/// the same task: tokio then requeues the task as a yield and wakes the other worker
/// thread to steal it, a cross-thread hand-off per call (a third of the CPU per call at
/// concurrency 1, docs/benchmarks.md). Between two tasks the wake-ups stay on this thread.
pub(crate) async fn read_body(proxy: &Inner, head: &Head, body: Body) -> Result<Bytes, Response> {
    let declared = forward::content_length(&head.headers);
    if declared.is_some_and(|len| len > proxy.max_body_bytes) {
        return Err(too_large(proxy.max_body_bytes, head.openai_shape));
    }
    let limit = usize::try_from(proxy.max_body_bytes).unwrap_or(usize::MAX);
    let read = AbortOnDropHandle::new(tokio::spawn(forward::read_body(body, declared, limit)));
    let read = match read.await {
        Ok(read) => read,
        Err(e) => Err(ReadBodyError::Read(axum::Error::new(e))),
    };
    read.map_err(|e| match e {
        ReadBodyError::TooLarge => too_large(proxy.max_body_bytes, head.openai_shape),
        ReadBodyError::Read(e) => error_response(
            StatusCode::BAD_REQUEST,
            head.openai_shape,
            &format!("could not read the request body: {e}"),
        ),
    })
}

/// Phase 3: the call's record, opened as the request arrived at `started`: its id (the
/// client's `X-Request-Id` or a new UUIDv7), model and stream flag from the body, and
/// operation (the client's header or the API's kind of work).
#[expect(
    clippy::too_many_arguments,
    reason = "the phases' outputs, each distinct and named"
)]
pub(crate) fn open_record(
    proxy: &Inner,
    head: &Head,
    api: Api,
    facts: RequestFacts,
    body_len: usize,
    started: Instant,
    route: RouteFields,
    host: &Host,
) -> Meter {
    let explicit_operation = head.short_header(&proxy.operation_header);
    let operation_explicit = explicit_operation.is_some();
    let operation = explicit_operation
        .unwrap_or(default_operation(api))
        .to_string();
    let id = head
        .short_header("x-request-id")
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string);
    let mut record = Record::new(
        id,
        Utc::now(),
        facts.model,
        operation,
        head.path().to_string(),
    );
    record.stream = facts.stream;
    record.request_bytes = body_len as u64;
    record.requested_model = Some(route.requested);
    record.route_reason = Some(route.reason);
    record.attempt = route.attempt;
    record.host = Some(host.name().to_owned());
    if let Some(source) = head.headers.get(crate::record::SOURCE_HEADER) {
        // ollameter's own benchmark marks its calls.
        record.source = crate::record::Source::from_header(source.as_bytes());
    }
    let trace = proxy.sinks.otel.enabled().then(|| {
        let provider = crate::otel::provider_name(host.kind().get());
        proxy.sinks.otel.start_call(&head.headers, provider)
    });
    let sinks = if host.index() == 0 {
        proxy.sinks.clone()
    } else {
        // Each host's models are measured by its own telemetry.
        Sinks {
            telemetry: host.telemetry().clone(),
            ..proxy.sinks.clone()
        }
    };
    let mut meter = Meter::new(record, sinks, started, api, operation_explicit);
    meter.set_trace(trace.flatten());
    meter
}

/// Where one attempt goes and the exact bytes it sends.
pub struct Target<'a> {
    /// The upstream server.
    pub upstream: &'a Upstream,
    /// The request body (the client's, or one rewritten for another model).
    pub body: Bytes,
    /// The W3C `traceparent` naming this attempt's span, replacing the client's, when
    /// spans are exported.
    pub traceparent: Option<HeaderValue>,
}

/// Phase 4: the upstream, body and trace context of one attempt: the host the fleet
/// chose (`index`), the body for the attempt's model, the attempt's span.
pub(crate) fn resolve<'a>(
    proxy: &'a Inner,
    _head: &Head,
    body: Bytes,
    index: usize,
    meter: &Meter,
) -> Target<'a> {
    Target {
        upstream: &proxy.upstreams[index],
        body,
        traceparent: meter.traceparent(),
    }
}

/// Phase 5: one attempt: the head and `target`'s body to `target`'s upstream, until the
/// answer's head arrives. The head is kept, so the call can be forwarded again.
pub async fn forward(
    head: &Head,
    target: &Target<'_>,
) -> Result<hyper::Response<Incoming>, UpstreamError> {
    let mut headers = head.headers.clone();
    if let Some(traceparent) = &target.traceparent {
        headers.insert(crate::otel::TRACEPARENT, traceparent.clone());
    }
    target
        .upstream
        .send(
            head.method.clone(),
            &head.path_and_query,
            headers,
            upstream::whole(target.body.clone()),
        )
        .await
}

/// Phase 6: the client's answer. The upstream's answer streams through the meter, which
/// finishes the record at its end; without one, a 502/504 in the route's shape, and the
/// record says why. Either way the answer names its record and the upstream at `index`.
pub(crate) fn respond(
    proxy: &Inner,
    head: &Head,
    answer: Result<hyper::Response<Incoming>, UpstreamError>,
    mut meter: Meter,
    index: usize,
) -> Response {
    let record_id = HeaderValue::from_str(meter.id()).ok();
    let mut response = match answer {
        Ok(answer) => {
            let content_type = answer
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            meter.response_started(answer.status().as_u16(), content_type, proxy.limits);
            forward::response(answer, move |body| Body::new(MeteredBody::new(body, meter)))
        }
        Err(e) => {
            let (response, kind, message) =
                unreachable_response(&proxy.upstreams[index], &e, head.openai_shape);
            meter.fail(kind, response.status().as_u16(), message);
            response
        }
    };
    if let Some(id) = record_id {
        response.headers_mut().insert(RECORD_ID_HEADER, id);
    }
    response
        .headers_mut()
        .insert(UPSTREAM_HEADER, proxy.fleet.hosts()[index].header().clone());
    response
}

pub(crate) fn too_large(limit: u64, openai_shape: bool) -> Response {
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
/// naming the upstream; with the record's error kind and message.
pub(crate) fn unreachable_response(
    upstream: &Upstream,
    e: &UpstreamError,
    openai_shape: bool,
) -> (Response, ErrorKind, String) {
    let base = upstream.base();
    let detail = e.detail();
    let (status, kind, message) = match e {
        UpstreamError::ConnectTimeout(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Timeout,
            format!("ollameter: timed out connecting to the Ollama upstream {base}: {detail}"),
        ),
        UpstreamError::Unreachable(_) => (
            StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamUnreachable,
            format!("ollameter: cannot reach the Ollama upstream {base}: {detail}"),
        ),
    };
    tracing::warn!(upstream = %base, error = %detail, "upstream unreachable");
    (
        error_response(status, openai_shape, &message),
        kind,
        message,
    )
}
