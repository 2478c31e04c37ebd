//! The benchmark routes: `POST /benchmark` starts a run inside the sidecar (the options of
//! `ollameter bench` as a JSON body), `GET /benchmark/{id}` reports its progress and
//! results, `DELETE /benchmark/{id}` stops it. One run at a time: a second start is 409.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::params::PathText;
use crate::bench::engine::{Models, Plan, Stop};
use crate::bench::prompts::{self, Images, PromptSpec};
use crate::bench::runs::{RunStatus, StartError};

/// Most runs per prompt.
pub const MAX_RUNS: u32 = 1000;
/// Most calls in flight.
pub const MAX_CONCURRENCY: u32 = 64;
/// Most prompts in one body.
pub const MAX_PROMPTS: usize = 1000;

/// `POST /benchmark`'s body: the options of `ollameter bench`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BenchRequest {
    /// The models to measure; give this or `installed`.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 500)]
    pub models: Option<Vec<String>>,
    /// Every installed model that can generate.
    #[serde(default)]
    pub installed: Option<bool>,
    /// With `installed`, embedding models too.
    #[serde(default)]
    pub embed: Option<bool>,
    /// The prompts, each as one line of a prompt file, except that `images` are base64 data
    /// (the sidecar reads no files for a caller); give this or `suite`.
    #[serde(default)]
    #[schema(min_items = 1, max_items = 1000)]
    pub prompts: Option<Vec<PromptSpec>>,
    /// A built-in suite: `default` (also used when neither `prompts` nor `suite` is given).
    #[serde(default)]
    #[schema(pattern = "^default$")]
    pub suite: Option<String>,
    /// Measured calls per prompt and model (1 to 1000; default 5).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000)]
    pub runs: Option<u32>,
    /// Calls in flight at once (1 to 64; default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 64)]
    pub concurrency: Option<u32>,
    /// One unmeasured load call per model first, recorded as operation `load`.
    #[serde(default)]
    pub warmup: Option<bool>,
    /// Ollama's `keep_alive` for every call (`"10m"`, `-1`, ...).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub keep_alive: Option<Value>,
}

/// Reads and validates the body into a plan.
pub fn plan_from_body(body: &[u8]) -> Result<Plan, ApiError> {
    let request: BenchRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("body: {e} (see the OpenAPI document)")))?;
    let models = match (request.models, request.installed.unwrap_or(false)) {
        (Some(_), true) => {
            return Err(ApiError::bad(
                "models: give either a list of models or \"installed\": true, not both",
            ));
        }
        (Some(list), false) => {
            let names: Vec<String> = list
                .iter()
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect();
            if names.is_empty() || names.len() != list.len() {
                return Err(ApiError::bad(
                    "models: a list of model names like [\"llama3.2:3b\"], none blank",
                ));
            }
            if names.len() > 500 {
                return Err(ApiError::bad("models: at most 500 models"));
            }
            Models::Named(names)
        }
        (None, true) => Models::Installed,
        (None, false) => {
            return Err(ApiError::bad(
                "models: name the models ([\"llama3.2:3b\"]) or set \"installed\": true",
            ));
        }
    };
    let prompts = match (request.prompts, request.suite) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad("prompts: give prompts or a suite, not both"));
        }
        (Some(specs), None) => {
            if specs.len() > MAX_PROMPTS {
                return Err(ApiError::bad(format!(
                    "prompts: at most {MAX_PROMPTS} prompts"
                )));
            }
            prompts::from_specs(specs, &Images::Base64).map_err(|e| ApiError::bad(e.to_string()))?
        }
        (None, suite) => prompts::suite(suite.as_deref().unwrap_or("default"))
            .map_err(|e| ApiError::bad(format!("suite: {e}")))?,
    };
    let runs = request.runs.unwrap_or(5);
    if !(1..=MAX_RUNS).contains(&runs) {
        return Err(ApiError::bad(format!("runs: from 1 to {MAX_RUNS}")));
    }
    let concurrency = request.concurrency.unwrap_or(1);
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(ApiError::bad(format!(
            "concurrency: from 1 to {MAX_CONCURRENCY}"
        )));
    }
    let keep_alive = match request.keep_alive {
        None | Some(Value::Null) => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "keep_alive: a duration like \"10m\" or seconds like -1, got {other}"
            )));
        }
    };
    Ok(Plan {
        models,
        embed: request.embed.unwrap_or(false),
        prompts,
        runs,
        concurrency,
        warmup: request.warmup.unwrap_or(false),
        keep_alive,
    })
}

/// `POST /benchmark`: starts a run.
#[utoipa::path(
    post,
    path = "/api/model-performance/benchmark",
    tag = "benchmark",
    request_body = BenchRequest,
    responses(
        (status = 202, description = "Started; follow it at /benchmark/{id}", body = RunStatus),
        (status = 400, description = "A bad body, the field named", body = ErrorBody),
        (status = 409, description = "Another run is active", body = ErrorBody),
        (status = 503, description = "The sidecar is starting or stopping", body = ErrorBody),
    )
)]
pub async fn start(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<(StatusCode, Json<RunStatus>), ApiError> {
    let plan = plan_from_body(&body)?;
    match state.bench.start(plan) {
        Ok(run) => Ok((StatusCode::ACCEPTED, Json(run.status()))),
        Err(e @ StartError::Busy(_)) => Err(ApiError::Conflict(e.to_string())),
        Err(e @ StartError::NotReady) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// `GET /benchmark/{id}`: a run's progress and results.
#[utoipa::path(
    get,
    path = "/api/model-performance/benchmark/{id}",
    tag = "benchmark",
    params(("id" = String, Path, description = "The run's id, from the start's answer")),
    responses(
        (status = 200, description = "Progress, and the results so far", body = RunStatus),
        (status = 404, description = "No such run (the last 20 are kept)", body = ErrorBody),
    )
)]
pub async fn status(
    State(state): State<ApiState>,
    PathText(id): PathText,
) -> Result<Json<RunStatus>, ApiError> {
    match state.bench.get(&id) {
        Some(run) => Ok(Json(run.status())),
        None => Err(not_found(&id)),
    }
}

/// `DELETE /benchmark/{id}`: stops a run; the calls in flight finish, what was measured is
/// kept.
#[utoipa::path(
    delete,
    path = "/api/model-performance/benchmark/{id}",
    tag = "benchmark",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "Stopping (or already ended): its status", body = RunStatus),
        (status = 404, description = "No such run", body = ErrorBody),
    )
)]
pub async fn stop(
    State(state): State<ApiState>,
    PathText(id): PathText,
) -> Result<Json<RunStatus>, ApiError> {
    match state.bench.get(&id) {
        Some(run) => {
            run.stop(Stop::Finish);
            Ok(Json(run.status()))
        }
        None => Err(not_found(&id)),
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no benchmark run {id:?}; POST /api/model-performance/benchmark starts one"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(body: &str) -> String {
        match plan_from_body(body.as_bytes()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{body}: expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn bodies_are_validated_naming_the_field() {
        let plan =
            plan_from_body(br#"{"models": ["a", "b"], "runs": 2, "warmup": true}"#).expect("valid");
        assert_eq!(plan.models, Models::Named(vec!["a".into(), "b".into()]));
        assert_eq!((plan.runs, plan.concurrency, plan.warmup), (2, 1, true));
        assert_eq!(plan.prompts.len(), 4, "the default suite");
        assert!(bad("{}").starts_with("models:"));
        assert!(bad(r#"{"models": ["a"], "installed": true}"#).starts_with("models:"));
        assert!(bad(r#"{"models": ["a"], "runs": 0}"#).starts_with("runs:"));
        assert!(bad(r#"{"models": ["a"], "concurrency": 65}"#).starts_with("concurrency:"));
        assert!(bad(r#"{"models": ["a"], "suite": "x"}"#).starts_with("suite:"));
        assert!(bad(r#"{"models": ["a"], "runz": 3}"#).contains("runz"));
        assert!(
            bad(r#"{"installed": true, "prompts": [{"prompt": "x", "images": ["a.png"]}]}"#)
                .starts_with("prompts[0]: images[0]")
        );
        assert!(bad(r#"{"installed": true, "keep_alive": {}}"#).starts_with("keep_alive:"));
    }
}
