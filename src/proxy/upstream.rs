//! The upstream: one Ollama server, reached through hyper's pooled HTTP/1.1 client.
//!
//! A plain hyper client (hyper-util's, with its own keep-alive pool) rather than a
//! general-purpose one: the proxy already holds the request's parts, so a call is one URI
//! built from the upstream's and the request's own path, the client's headers moved as
//! they are, and the body handed over without a wrapper. There is no response timeout
//! (model loads take minutes); connecting has one. The client never sends a request twice
//! on its own, except one that never left for a kept-alive connection the upstream had
//! just closed (hyper-util's "canceled" retry: nothing reached the upstream).

use std::time::Duration;

use axum::body::Body;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{HeaderMap, Method, Request, Uri, Version};
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::text::error_chain;

/// How long an idle kept-alive connection to the upstream stays in the pool. Ollama's Go
/// server closes idle connections itself after a while; a shorter wait here spares the
/// pool a connection that will fail at reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A request body on its way upstream: a body read whole (an instrumented call, which can
/// be sent again to another upstream) or the client's own stream (forward-only routes,
/// unbounded: blob uploads are gigabytes).
pub type UpstreamBody = Either<Full<Bytes>, Body>;

/// A whole request body, ready to send (and to send again: `Bytes` clones share).
pub fn whole(body: Bytes) -> UpstreamBody {
    Either::Left(Full::new(body))
}

/// The client's body, streamed through as it arrives.
pub fn streamed(body: Body) -> UpstreamBody {
    Either::Right(body)
}

/// Why a request got no answer from the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// Connecting took longer than the connect timeout (answered 504).
    ConnectTimeout(String),
    /// Anything else before the answer's head: refused, reset, closed (answered 502).
    Unreachable(String),
}

impl UpstreamError {
    /// What went wrong, causes included, on one line.
    pub fn detail(&self) -> &str {
        match self {
            UpstreamError::ConnectTimeout(d) | UpstreamError::Unreachable(d) => d,
        }
    }

    /// Sorts a client error by its cause: a timed-out connect anywhere in the chain is a
    /// timeout, everything else makes the upstream unreachable.
    pub fn from_error(e: &(dyn std::error::Error + 'static)) -> UpstreamError {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut timed_out = false;
        while let Some(c) = cause {
            if c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            {
                timed_out = true;
                break;
            }
            cause = c.source();
        }
        let detail = error_chain(e);
        if timed_out {
            UpstreamError::ConnectTimeout(detail)
        } else {
            UpstreamError::Unreachable(detail)
        }
    }
}

/// One upstream Ollama server and the pooled connections to it.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, UpstreamBody>,
    /// As configured, `http://host:port[/prefix]` without a trailing slash: for messages.
    base: String,
    scheme: Scheme,
    authority: Authority,
    /// A path the upstream is mounted under (`/ollama`), or empty.
    prefix: String,
}

impl Upstream {
    /// A client for the upstream at `base` (`http://host:port`, optionally with a path
    /// prefix, no trailing slash: the configuration's form).
    pub fn new(base: &str, connect_timeout: Duration) -> Result<Upstream, String> {
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("upstream {base:?} is not a URL: {e}"))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(format!("upstream {base:?} needs a scheme and a host"));
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Upstream {
            client,
            base: base.trim_end_matches('/').to_string(),
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The upstream as configured, for messages and the health check.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The upstream's URI for a request's path and query: dot segments resolved (as a
    /// URL parser does: `/../api/x` and `/%2e%2e/api/x` become `/api/x`), under the
    /// upstream's path prefix.
    fn uri(&self, path_and_query: &PathAndQuery) -> Result<Uri, UpstreamError> {
        let path = path_and_query.path();
        let path_and_query = if self.prefix.is_empty() && !has_dot_segment(path) {
            path_and_query.clone()
        } else {
            let mut target = self.prefix.clone();
            push_resolved(&mut target, path);
            if let Some(query) = path_and_query.query() {
                target.push('?');
                target.push_str(query);
            }
            PathAndQuery::try_from(target)
                .map_err(|e| UpstreamError::Unreachable(format!("bad upstream path: {e}")))?
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| UpstreamError::Unreachable(format!("bad upstream URI: {e}")))
    }

    /// Sends one request and waits for the head of the answer; its body streams after.
    /// `headers` go as given (hop-by-hop ones already removed); the client sets `Host`
    /// to the upstream's.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &PathAndQuery,
        headers: HeaderMap,
        body: UpstreamBody,
    ) -> Result<hyper::Response<Incoming>, UpstreamError> {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = self.uri(path_and_query)?;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        self.client
            .request(request)
            .await
            .map_err(|e| UpstreamError::from_error(&e))
    }
}

/// A `.` or `..` segment, plain or percent-encoded.
fn dot_kind(segment: &str) -> Option<bool> {
    match segment.to_ascii_lowercase().as_str() {
        "." | "%2e" => Some(false),
        ".." | ".%2e" | "%2e." | "%2e%2e" => Some(true),
        _ => None,
    }
}

/// Whether a path has a segment that [`push_resolved`] would change (the common case is
/// no: then the path goes as it came, without a copy).
fn has_dot_segment(path: &str) -> bool {
    (path.contains("/.") || path.contains("/%2")) && path.split('/').any(|s| dot_kind(s).is_some())
}

/// Appends `path` to `out` with its dot segments resolved (RFC 3986 section 5.2.4, as
/// the WHATWG URL parser also treats `%2e` as a dot): a path can never climb above the
/// root, or above the upstream's prefix.
fn push_resolved(out: &mut String, path: &str) {
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split('/').skip(1).peekable();
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match dot_kind(segment) {
            Some(up) => {
                if up {
                    segments.pop();
                }
                if last {
                    // `/a/b/..` is `/a/`: the directory, with its slash.
                    segments.push("");
                }
            }
            None => segments.push(segment),
        }
    }
    if segments.is_empty() {
        out.push('/');
    }
    for segment in segments {
        out.push('/');
        out.push_str(segment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(std::io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_timed_out_connect_anywhere_in_the_chain_is_a_timeout() {
        let slow = Wrapper(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "deadline has elapsed",
        ));
        assert_eq!(
            UpstreamError::from_error(&slow),
            UpstreamError::ConnectTimeout("client error (Connect): deadline has elapsed".into())
        );
        let refused = Wrapper(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert!(matches!(
            UpstreamError::from_error(&refused),
            UpstreamError::Unreachable(_)
        ));
    }

    #[test]
    fn the_upstream_uri_keeps_the_path_prefix_and_the_query() {
        let plain = Upstream::new("http://127.0.0.1:11434", Duration::from_secs(1)).expect("ok");
        let pq = PathAndQuery::from_static("/api/tags?x=1");
        assert_eq!(
            plain.uri(&pq).expect("uri").to_string(),
            "http://127.0.0.1:11434/api/tags?x=1"
        );
        let mounted = Upstream::new("http://ollama:80/ollama", Duration::from_secs(1)).expect("ok");
        assert_eq!(
            mounted.uri(&pq).expect("uri").to_string(),
            "http://ollama:80/ollama/api/tags?x=1"
        );
        assert!(Upstream::new("not a url", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn dot_segments_never_climb_out_of_the_upstream() {
        let plain = Upstream::new("http://127.0.0.1:11434", Duration::from_secs(1)).expect("ok");
        let mounted = Upstream::new("http://ollama:80/ollama", Duration::from_secs(1)).expect("ok");
        let cases = [
            ("/../../api/version", "/api/version"),
            ("/%2e%2e/api/version", "/api/version"),
            ("/%2E./api/./tags?q=/../x", "/api/tags?q=/../x"),
            ("/api/tags/..", "/api/"),
            ("/..", "/"),
            ("/api/.hidden/x", "/api/.hidden/x"),
        ];
        for (path, expected) in cases {
            let pq = PathAndQuery::try_from(path).expect("path");
            assert_eq!(
                plain
                    .uri(&pq)
                    .expect("uri")
                    .path_and_query()
                    .expect("pq")
                    .as_str(),
                expected,
                "{path}"
            );
            assert_eq!(
                mounted
                    .uri(&pq)
                    .expect("uri")
                    .path_and_query()
                    .expect("pq")
                    .as_str(),
                format!("/ollama{expected}"),
                "{path}"
            );
        }
    }
}
