//! Who may call what. Reads are open unless `api.read_token` is set. Destructive routes
//! (`DELETE /clear/...`, `POST /clear-old`) — and manual writes when `api.protect_writes`
//! is on — need `Authorization: Bearer <api.admin_token>` when a token is set, and are
//! accepted from loopback clients only when none is. Tokens are compared in constant
//! time. `/health` stays open for container health checks.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The configured credentials.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Token for destructive routes and protected writes.
    pub admin_token: Option<String>,
    /// Token for reads.
    pub read_token: Option<String>,
    /// Whether `POST /record`, `/import` and `/records/{id}/quality` need the admin token.
    pub protect_writes: bool,
}

#[derive(Debug, PartialEq)]
enum Kind {
    Open,
    Read,
    Write,
    Destructive,
}

fn kind(method: &Method, path: &str) -> Kind {
    let api = path.strip_prefix("/api/model-performance");
    match (method, api) {
        (_, Some("/health")) => Kind::Open,
        (&Method::DELETE, Some(p)) if p.starts_with("/clear/") => Kind::Destructive,
        (&Method::POST, Some("/clear-old")) => Kind::Destructive,
        (&Method::POST, Some("/record" | "/import")) => Kind::Write,
        (&Method::POST, Some(p)) if p.starts_with("/records/") => Kind::Write,
        (&Method::POST | &Method::DELETE, Some(p)) if p.starts_with("/benchmark") => Kind::Write,
        _ => Kind::Read,
    }
}

fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn matches(given: Option<&str>, token: &str) -> bool {
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes())))
}

/// The middleware.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let admin = |request: &Request| -> Result<(), ApiError> {
        match &access.admin_token {
            Some(token) if matches(bearer(request), token) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized(
                "this route deletes or writes data: send Authorization: Bearer <api.admin_token>"
                    .into(),
            )),
            None if crate::serve::peer(request).is_some_and(|p| p.ip().is_loopback()) => Ok(()),
            None => Err(ApiError::Forbidden(
                "this route deletes or writes data and is open to loopback clients only; \
                 set api.admin_token to allow remote clients with a token"
                    .into(),
            )),
        }
    };
    let verdict = match kind(request.method(), request.uri().path()) {
        Kind::Open => Ok(()),
        Kind::Destructive => admin(&request),
        Kind::Write if access.protect_writes => admin(&request),
        Kind::Read | Kind::Write => match &access.read_token {
            None => Ok(()),
            Some(read) => {
                let given = bearer(&request);
                let admin_ok = access
                    .admin_token
                    .as_deref()
                    .is_some_and(|a| matches(given, a));
                if matches(given, read) || admin_ok {
                    Ok(())
                } else {
                    Err(ApiError::Unauthorized(
                        "send Authorization: Bearer <api.read_token> to read this API".into(),
                    ))
                }
            }
        },
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified() {
        assert_eq!(
            kind(&Method::DELETE, "/api/model-performance/clear/a/b:c"),
            Kind::Destructive
        );
        assert_eq!(
            kind(&Method::POST, "/api/model-performance/clear-old"),
            Kind::Destructive
        );
        assert_eq!(
            kind(&Method::POST, "/api/model-performance/record"),
            Kind::Write
        );
        assert_eq!(
            kind(&Method::POST, "/api/model-performance/records/x/quality"),
            Kind::Write
        );
        assert_eq!(
            kind(&Method::GET, "/api/model-performance/recommend"),
            Kind::Read
        );
        assert_eq!(
            kind(&Method::GET, "/api/model-performance/health"),
            Kind::Open
        );
        assert_eq!(kind(&Method::GET, "/metrics"), Kind::Read);
    }

    #[test]
    fn tokens_must_match_exactly() {
        assert!(matches(Some("abc"), "abc"));
        assert!(!matches(Some("abd"), "abc"));
        assert!(!matches(Some("ab"), "abc"));
        assert!(!matches(None, "abc"));
    }
}
