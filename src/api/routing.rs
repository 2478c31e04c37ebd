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
    description = "What a call naming `auto`, `auto:PRIORITY` or an alias runs on now. A \
                   proxied call may also say its own workload in request headers, removed \
                   before it goes upstream: `X-Ollameter-Max-Latency-Ms` (candidates \
                   predicted slower for the call are left out, and named with their \
                   prediction in the answer's `X-Ollameter-Over-Budget`; 503 when none is \
                   left), `X-Ollameter-Expected-Output-Tokens` (the body's \
                   `max_completion_tokens`, `max_tokens`, `max_output_tokens` or \
                   `options.num_predict` when absent) and `X-Ollameter-Prompt-Tokens`; a bad \
                   value is a 400 naming the header. The choices shown here are those \
                   without a per-call workload.",
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
