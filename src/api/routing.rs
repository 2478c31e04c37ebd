//! `GET /routing`: what model routing does now: the virtual names, their candidates, the
//! current choice of each with its reason, and where their calls ran in the last hour.

use axum::Json;
use axum::extract::State;

use super::ApiState;
use super::error::ApiError;
use crate::routing::RoutingSnapshot;

/// `GET /routing`.
#[utoipa::path(
    get,
    path = "/api/model-performance/routing",
    tag = "statistics",
    responses(
        (status = 200, description = "The virtual names (built in, then configured), each with \
                                      its candidates, current choice and last hour of calls, \
                                      and the explicit fallback chains", body = RoutingSnapshot),
    )
)]
pub async fn routing(State(state): State<ApiState>) -> Result<Json<RoutingSnapshot>, ApiError> {
    let router = state.routing.clone();
    let snapshot = tokio::task::spawn_blocking(move || router.snapshot()).await?;
    Ok(Json(snapshot))
}
