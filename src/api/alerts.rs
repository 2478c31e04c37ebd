//! `GET /alerts`: the firing alerts and the last 100 resolved ones, from the alerts board
//! (`crate::alerts`), optionally of one model, one upstream host and one state.

use axum::Json;
use axum::extract::State;
use utoipa::IntoParams;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::params::Params;
use crate::alerts::{AlertList, AlertState};

/// `/alerts`' query parameters (documentation; read through [`Params`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only this model's alerts (`*` for alerts about ollameter itself).
    pub model: Option<String>,
    /// Only the alerts of this upstream host (by name; with several upstreams, alerts are
    /// per model and host).
    pub host: Option<String>,
    /// `firing` or `resolved`; both without.
    #[param(pattern = "^(firing|resolved)$")]
    pub state: Option<String>,
}

/// `GET /alerts`: what is firing now, and what resolved lately.
#[utoipa::path(
    get,
    path = "/api/model-performance/alerts",
    tag = "statistics",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Firing alerts (oldest first) and the last 100 resolved (newest first)", body = AlertList),
        (status = 400, description = "A bad query parameter, named", body = ErrorBody),
    )
)]
pub async fn alerts(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<AlertList>, ApiError> {
    let wanted = match params.text("state") {
        None => None,
        Some("firing") => Some(AlertState::Firing),
        Some("resolved") => Some(AlertState::Resolved),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "state: {other:?} is not one of firing, resolved"
            )));
        }
    };
    Ok(Json(state.alerts.list_of(
        params.text("model"),
        params.text("host"),
        wanted,
    )))
}
