//! `GET /predict`: how long a call of so many tokens will take on a model, from the
//! model's robust latency fit ([`crate::analytics`]).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use utoipa::IntoParams;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::params::Params;
use crate::analytics::{self, FitKey, PredictAll, PredictAnswer, PredictError};

/// Most tokens asked about: ten million, far beyond any context window.
const MAX_TOKENS: u64 = 10_000_000;

/// `/predict`'s query parameters (documentation; read through [`Params`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PredictQuery {
    /// The model; without it, every model with records.
    pub model: Option<String>,
    /// Output tokens of the call (required).
    #[param(minimum = 0, maximum = 10_000_000)]
    pub output_tokens: u64,
    /// Prompt tokens of the call; the model's median prompt when absent.
    #[param(minimum = 0, maximum = 10_000_000)]
    pub prompt_tokens: Option<u64>,
    /// Whether the call starts cold (the model is loaded first); `false` when absent.
    pub cold: Option<bool>,
    /// Only the calls served by this upstream host (its name): the time on that box.
    /// Every host's calls when absent.
    pub host: Option<String>,
}

/// `/predict`'s answer: one model's prediction, or every model's without `model`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PredictResponse {
    /// With `model`.
    One(Box<PredictAnswer>),
    /// Without `model`.
    All(PredictAll),
}

/// A flag's value: `true`/`false`/`1`/`0`.
fn flag(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match params.text(name) {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(ApiError::bad(format!(
            "{name}: {other:?} must be true or false"
        ))),
    }
}

/// `GET /predict`.
#[utoipa::path(
    get,
    path = "/api/model-performance/predict",
    tag = "statistics",
    params(PredictQuery),
    responses(
        (status = 200, description = "The predicted processing time with its 80% interval \
                                      (p10 to p90 of the fit's residuals), and the fit; \
                                      without `model`, one per model", body = PredictResponse),
        (status = 400, description = "A bad query parameter, named", body = ErrorBody),
        (status = 404, description = "No calls of the model are recorded (on `host`, when \
                                      given)", body = ErrorBody),
        (status = 422, description = "Too few calls to fit (the message says how many are \
                                      needed), or a cold start asked for and none measured",
         body = ErrorBody),
    )
)]
pub async fn predict(State(state): State<ApiState>, params: Params) -> Result<Response, ApiError> {
    let output_tokens = params
        .whole("output_tokens", 0, MAX_TOKENS)?
        .ok_or_else(|| {
            ApiError::bad("output_tokens: required (the number of tokens the call will generate)")
        })?;
    let prompt_tokens = params.whole("prompt_tokens", 0, MAX_TOKENS)?;
    let cold = flag(&params, "cold")?.unwrap_or(false);
    let model = params.text("model").map(str::to_owned);
    let host = params.text("host").map(str::to_owned);
    let history = state.history.clone();
    let answer = tokio::task::spawn_blocking(move || match model {
        Some(model) => analytics::predict(
            &history,
            &FitKey { model, host },
            prompt_tokens,
            output_tokens,
            cold,
        )
        .map(|p| Json(PredictResponse::One(Box::new(p))).into_response()),
        None => {
            let all: PredictAll = analytics::predict_all(
                &history,
                &history.models(),
                host.as_deref(),
                prompt_tokens,
                output_tokens,
                cold,
            );
            Ok(Json(PredictResponse::All(all)).into_response())
        }
    })
    .await?;
    answer.map_err(|e| match e {
        PredictError::UnknownModel { .. } | PredictError::NotOnHost { .. } => {
            ApiError::NotFound(e.to_string())
        }
        PredictError::TooFew { .. } | PredictError::NoColdStart { .. } => {
            ApiError::Unprocessable(e.to_string())
        }
    })
}
