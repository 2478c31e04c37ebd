//! The routes that are not inference, with several upstreams: what clients see as one
//! Ollama holding every host's models.
//!
//! - `GET /api/tags`, `/api/ps` and `/v1/models`: the union over the hosts that take
//!   calls, each model once, in Ollama's (or OpenAI's) shape.
//! - `POST /api/show` and `GET /v1/models/{model}`: a host that has the model.
//! - Management (`/api/pull`, `/api/push`, `/api/create`, `/api/delete`, `/api/copy`,
//!   `/api/blobs/...`): the host pinned by `X-Ollameter-Upstream`, else the first
//!   upstream; that host's model list is read again soon after.
//! - A pinned request of any kind: the pinned host only, as it is.
//! - Everything else: the first host that takes calls.
//!
//! With one upstream every such request is forwarded as it always was.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

use super::Inner;
use super::error::error_response;
use super::pipeline::{Head, forward_only, read_body, unreachable_response};
use super::upstream;
use crate::fleet::union::{ListShape, merge};
use crate::fleet::{Availability, HostOrder, ModelId, Pin, UPSTREAM_HEADER};

/// Largest model list read from one host for a union (a list of a few hundred models is
/// a few hundred KiB).
const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;

/// Whether a request changes what a host holds (it goes to one host, chosen by name).
fn is_management(method: &Method, path: &str) -> bool {
    matches!(
        path,
        "/api/pull" | "/api/push" | "/api/create" | "/api/delete" | "/api/copy"
    ) || (path.starts_with("/api/blobs/") && (method == Method::POST || method == Method::HEAD))
}

/// Forwards a request that is not an inference call to the host that should answer it.
pub(crate) async fn other_route(proxy: &Inner, head: Head, body: Body, pin: Pin) -> Response {
    let fleet = &proxy.fleet;
    if !fleet.is_multi() {
        return forward_only(proxy, head, body, 0).await;
    }
    let path = head.path();
    let management = is_management(&head.method, path);
    if let Pin::Host(index) = pin {
        if management {
            fleet.hosts()[index].refresh_tags();
        }
        return forward_only(proxy, head, body, index).await;
    }
    if management {
        fleet.first().refresh_tags();
        return forward_only(proxy, head, body, 0).await;
    }
    if head.method == Method::GET
        && let Some(shape) = ListShape::of_path(path)
    {
        return union(proxy, head, shape).await;
    }
    if head.method == Method::POST && path == "/api/show" {
        return show(proxy, head, body).await;
    }
    if head.method == Method::GET
        && let Some(model) = path.strip_prefix("/v1/models/")
        && !model.is_empty()
    {
        let model = percent_decode(model);
        let index = best_host(proxy, &model);
        return forward_only(proxy, head, body, index).await;
    }
    let index = fleet.first_healthy().index();
    forward_only(proxy, head, body, index).await
}

/// A path segment with its `%XX` escapes decoded (a model's `:` may come as `%3A`).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host the fleet ranks first for `model`.
fn best_host(proxy: &Inner, model: &str) -> usize {
    let mut order = HostOrder::default();
    proxy.fleet.order(ModelId::of(model), &mut order);
    order.first().copied().unwrap_or(0)
}

/// `POST /api/show`: to a host that has the model the body names (`model`, or the older
/// `name`).
async fn show(proxy: &Inner, head: Head, body: Body) -> Response {
    let body = match read_body(proxy, &head, body).await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    #[derive(serde::Deserialize)]
    struct Show {
        model: Option<String>,
        name: Option<String>,
    }
    let model = serde_json::from_slice::<Show>(&body)
        .ok()
        .and_then(|s| s.model.or(s.name))
        .unwrap_or_default();
    let index = best_host(proxy, &model);
    forward_only(proxy, head, Body::from(body), index).await
}

/// A model list as the union over the hosts that take calls (each asked at once), in the
/// first answer's content type; the answer names every host that contributed.
async fn union(proxy: &Inner, head: Head, shape: ListShape) -> Response {
    let fleet = &proxy.fleet;
    let up: Vec<usize> = fleet
        .hosts()
        .iter()
        .filter(|h| fleet.availability(h) != Availability::Down)
        .map(|h| h.index())
        .collect();
    let asked = if up.is_empty() {
        (0..fleet.hosts().len()).collect()
    } else {
        up
    };
    let reads = asked.iter().map(|&index| {
        let head = &head;
        async move {
            let sent = proxy.upstreams[index]
                .send(
                    head.method.clone(),
                    &head.path_and_query,
                    head.headers.clone(),
                    upstream::whole(Bytes::new()),
                )
                .await;
            let answer = match sent {
                Ok(answer) => answer,
                Err(e) => {
                    proxy
                        .fleet
                        .record_outcome(&proxy.fleet.hosts()[index], Err(e.detail().to_owned()));
                    return Err(e);
                }
            };
            if !answer.status().is_success() {
                return Ok(None);
            }
            let content_type = answer
                .headers()
                .get(axum::http::header::CONTENT_TYPE)
                .cloned();
            let bytes = Limited::new(answer.into_body(), MAX_LIST_BYTES)
                .collect()
                .await
                .ok()
                .map(|b| b.to_bytes());
            Ok(bytes.map(|b| (index, b, content_type)))
        }
    });
    let answers = futures_util::future::join_all(reads).await;
    let mut bodies: Vec<(usize, Bytes, Option<HeaderValue>)> = Vec::new();
    let mut last_error = None;
    for answer in answers {
        match answer {
            Ok(Some(read)) => bodies.push(read),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
    }
    if bodies.is_empty() {
        return match last_error {
            Some(e) => unreachable_response(&proxy.upstreams[asked[0]], &e, head.openai_shape).0,
            None => error_response(
                StatusCode::BAD_GATEWAY,
                head.openai_shape,
                "ollameter: no upstream answered with its model list",
            ),
        };
    }
    let slices: Vec<&[u8]> = bodies.iter().map(|(_, b, _)| b.as_ref()).collect();
    let merged = match merge(shape, &slices) {
        Ok(merged) => merged,
        Err(message) => {
            return error_response(
                StatusCode::BAD_GATEWAY,
                head.openai_shape,
                &format!("ollameter: {message}"),
            );
        }
    };
    let names: Vec<&str> = bodies
        .iter()
        .map(|(i, _, _)| fleet.hosts()[*i].name())
        .collect();
    let content_type = bodies[0]
        .2
        .clone()
        .unwrap_or_else(|| HeaderValue::from_static("application/json; charset=utf-8"));
    let mut response = Response::new(Body::from(merged));
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, content_type);
    if let Ok(value) = HeaderValue::from_str(&names.join(", ")) {
        response.headers_mut().insert(UPSTREAM_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_calls_are_told_apart() {
        assert!(is_management(&Method::POST, "/api/pull"));
        assert!(is_management(&Method::DELETE, "/api/delete"));
        assert!(is_management(&Method::HEAD, "/api/blobs/sha256:00"));
        assert!(!is_management(&Method::GET, "/api/tags"));
        assert!(!is_management(&Method::POST, "/api/show"));
    }

    #[test]
    fn a_model_in_a_path_is_decoded() {
        assert_eq!(percent_decode("qwen3%3A8b"), "qwen3:8b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("plain"), "plain");
    }
}
