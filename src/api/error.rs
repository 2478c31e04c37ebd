//! The API's one error type and its mapping to HTTP: bad input is 400 naming the field,
//! an unknown model 404, a busy recorder 503, and anything internal 500 without details
//! (they go to the log, once).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The body of every error answer: `{"error": "..."}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, naming the field at fault for bad input.
    pub error: String,
}

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong; the message says how to fix it.
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Destructive route without the right credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Not from here: the route is for loopback clients only.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with what is going on (a benchmark already running).
    #[error("{0}")]
    Conflict(String),
    /// The request is understood but cannot be answered from what is measured (too few
    /// calls to fit); the message says what is missing.
    #[error("{0}")]
    Unprocessable(String),
    /// The recorder queue is full or stopping; try again.
    #[error("{0}")]
    Unavailable(String),
    /// Something broke inside ollameter.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming what is wrong.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(message.into())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        match e {
            // A shared store that is down or restarting: the client may try again.
            crate::store::StoreError::Postgres(m) => {
                tracing::warn!(error = %m, "the shared store did not answer an API call");
                ApiError::Unavailable(
                    "the store (PostgreSQL) cannot be reached now; try again shortly".into(),
                )
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::recorder::SubmitError> for ApiError {
    fn from(e: crate::recorder::SubmitError) -> ApiError {
        match e {
            crate::recorder::SubmitError::Store(m) => ApiError::Internal(m),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.clone()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m.clone()),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m.clone()),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "API request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the sidecar's log".to_string(),
                )
            }
        };
        (status, Json(ErrorBody { error: message })).into_response()
    }
}
