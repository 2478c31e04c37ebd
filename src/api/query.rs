//! The read routes: statistics, compare, recommend, trend and insights. Each handler
//! parses and validates its input, runs a pure function from `stats` or `recommend` over
//! the in-memory history on a blocking thread, and maps the answer.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};

use super::ApiState;
use super::error::ApiError;
use super::params::{Params, hours_value, json_object};
use crate::recommend::{
    self, Candidate, Comparison, DEFAULT_MIN_OPERATIONS, Excluded, ExclusionKind, Priority,
    RecommendParams, Recommendation, VramNeed,
};
use crate::stats::{self, Filter, ModelStatistics, TrendMetric, TrendParams};
use crate::telemetry::VramSource as TelemetryVramSource;

/// Most models one compare or recommend call may name.
const MAX_MODELS: usize = 500;
/// Default window of trends and insights: a day.
const DEFAULT_RECENT_HOURS: f64 = 24.0;
/// Default trend bucket: an hour.
const DEFAULT_BUCKET_MINUTES: u64 = 60;

/// The window and operation a query covers.
pub(crate) struct Window {
    /// Only the last this many hours; all of the history without.
    pub(crate) hours: Option<f64>,
    /// Only this operation.
    pub(crate) operation: Option<String>,
}

impl Window {
    fn from_params(p: &Params) -> Result<Window, ApiError> {
        Ok(Window {
            hours: p.hours("duration_hours")?,
            operation: p.text("operation").map(str::to_string),
        })
    }

    /// The filter over the history; `None` when the operation has never been seen (so
    /// nothing can match).
    pub(crate) fn filter(&self, state: &ApiState) -> Option<Filter> {
        let operation = match &self.operation {
            Some(name) => Some(state.history.operation_id(name)?),
            None => None,
        };
        let since_ms = self
            .hours
            .map(|h| Utc::now().timestamp_millis() - (h * 3_600_000.0) as i64);
        Some(Filter {
            since_ms,
            until_ms: None,
            operation,
        })
    }
}

/// `GET /statistics/{model}`: one model's statistics; 404 for a model with no records.
pub async fn model_statistics(
    State(state): State<ApiState>,
    Path(model): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let window = Window::from_params(&params)?;
    if !state.history.has_model(&model) {
        return Err(ApiError::NotFound(format!(
            "no records for model {model:?}; GET /api/model-performance/statistics lists the models with data"
        )));
    }
    let stats = tokio::task::spawn_blocking(move || {
        let filter = window.filter(&state)?;
        state
            .history
            .with_model(&model, |s| stats::model_statistics(&model, s, &filter))
            .flatten()
    })
    .await?;
    Ok(Json(match stats {
        Some(s) => serde_json::to_value(s).map_err(|e| ApiError::Internal(e.to_string()))?,
        None => {
            json!({"total_operations": 0, "message": "no operations of this model in the window"})
        }
    }))
}

/// The statistics answer for several models.
#[derive(Serialize)]
struct AllStatistics {
    duration_hours: Option<f64>,
    operation: Option<String>,
    models: std::collections::BTreeMap<String, ModelStatistics>,
}

/// `GET /statistics`: every model's statistics.
pub async fn all_statistics(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let window = Window::from_params(&params)?;
    let answer = tokio::task::spawn_blocking(move || {
        let models = match window.filter(&state) {
            Some(filter) => state.history.with_all(|all| {
                all.iter()
                    .filter_map(|(name, s)| {
                        stats::model_statistics(name, s, &filter).map(|st| (name.clone(), st))
                    })
                    .collect()
            }),
            None => Default::default(),
        };
        AllStatistics {
            duration_hours: window.hours,
            operation: window.operation,
            models,
        }
    })
    .await?;
    serde_json::to_value(answer)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `POST /compare {models, duration_hours, operation}`.
pub async fn compare(State(state): State<ApiState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let obj = json_object(&body)?;
    let models = model_list(obj.get("models"), "models")?.ok_or_else(|| {
        ApiError::bad(
            "models: required, a list of model names like [\"llama3.2:3b\", \"qwen2.5:7b\"]",
        )
    })?;
    if models.is_empty() {
        return Err(ApiError::bad("models: name at least one model"));
    }
    let hours = match obj.get("duration_hours") {
        None | Some(Value::Null) => None,
        Some(v) => Some(hours_value("duration_hours", v)?),
    };
    let operation = match obj.get("operation") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "operation: expected a non-empty string, got {other}"
            )));
        }
    };
    let window = Window { hours, operation };
    let (comparison, missing) = tokio::task::spawn_blocking(move || {
        let filter = window.filter(&state);
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for model in &models {
            let s = filter.as_ref().and_then(|f| {
                state
                    .history
                    .with_model(model, |s| stats::model_statistics(model, s, f))
                    .flatten()
            });
            match s {
                Some(s) => found.push(s),
                None => missing.push(model.clone()),
            }
        }
        (recommend::compare(found), missing)
    })
    .await?;
    let mut value = serde_json::to_value::<&Comparison>(&comparison)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    value["missing"] = json!(missing);
    Ok(Json(value))
}

/// `GET /recommend`: the best model for a priority among those that qualify.
pub async fn recommend(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<Recommendation>, ApiError> {
    let priority = match params.text("priority") {
        None => Priority::Balanced,
        Some(p) => p
            .parse::<Priority>()
            .map_err(|e| ApiError::bad(e.to_string()))?,
    };
    let window = Window::from_params(&params)?;
    let min_operations = params
        .whole("min_operations", 1, 1_000_000)?
        .unwrap_or(DEFAULT_MIN_OPERATIONS);
    let available_vram_mb = params
        .positive("available_vram_gb", 100_000.0)?
        .map(|gb| gb * 1024.0);
    let requested = params.text("available_models").map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    });
    if let Some(list) = &requested
        && list.len() > MAX_MODELS
    {
        return Err(ApiError::bad(format!(
            "available_models: at most {MAX_MODELS} models"
        )));
    }
    let query = RecommendQuery {
        priority,
        window,
        min_operations,
        available_vram_mb,
        models: requested,
    };
    let answer = tokio::task::spawn_blocking(move || recommendation(&state, query)).await?;
    Ok(Json(answer))
}

/// What a recommendation is asked for, validated.
pub(crate) struct RecommendQuery {
    /// What to optimise.
    pub(crate) priority: Priority,
    /// The window and operation.
    pub(crate) window: Window,
    /// Fewest operations a model needs.
    pub(crate) min_operations: u64,
    /// The caller's VRAM budget in MiB; without it, what the GPU has free.
    pub(crate) available_vram_mb: Option<f64>,
    /// Only these models; every model with records without.
    pub(crate) models: Option<Vec<String>>,
}

/// The recommendation over the history and the telemetry, as `/recommend` answers it; the
/// dashboard shows the same. Blocking: it reads the history under its lock.
pub(crate) fn recommendation(state: &ApiState, query: RecommendQuery) -> Recommendation {
    let RecommendQuery {
        priority,
        window,
        min_operations,
        available_vram_mb,
        models,
    } = query;
    let models = models.unwrap_or_else(|| state.history.models());
    let filter = window.filter(state);
    let mut candidates = Vec::new();
    let mut missing = Vec::new();
    state.history.with_all(|all| {
        for model in &models {
            let summary = filter.as_ref().and_then(|f| {
                all.get(model)
                    .and_then(|s| stats::model_summary(model, s, f))
            });
            match summary {
                Some(summary) => candidates.push(Candidate {
                    vram_need: VramNeed::from_records(&summary),
                    summary,
                }),
                None => missing.push(model.clone()),
            }
        }
    });
    let telemetry = state.proxy.telemetry();
    for candidate in &mut candidates {
        // Telemetry's figure (measured by Ollama or NVML, or estimated from the model's
        // size) beats what the records carry.
        if let Some(need) = telemetry.vram_need(&candidate.summary.model) {
            candidate.vram_need = Some(VramNeed {
                mb: need.mb,
                source: match need.source {
                    TelemetryVramSource::Measured => recommend::VramSource::Measured,
                    TelemetryVramSource::Estimate => recommend::VramSource::Estimate,
                },
            });
        }
    }
    let params = RecommendParams {
        priority,
        min_operations,
        available_vram_mb,
        window_hours: window.hours,
    };
    let mut answer = if available_vram_mb.is_some() {
        recommend::recommend(&candidates, &params)
    } else {
        recommend_with_free_vram(&candidates, &params, telemetry)
    };
    for model in missing {
        answer.excluded.push(Excluded {
            model,
            kinds: vec![ExclusionKind::NoOperations],
            reason: "no operations recorded in the window".into(),
        });
    }
    if answer.recommended_model.is_none() && candidates.is_empty() {
        answer.reason = if models.is_empty() {
            "no model has any records yet: point your app at ollameter and make some calls".into()
        } else {
            "none of the models has operations in the window".into()
        };
    }
    answer
}

/// Without a budget from the caller: each candidate may use the GPU's free memory plus
/// what it holds itself right now (its own VRAM is freed when it is reloaded). Without
/// telemetry of the GPU there is no budget at all.
fn recommend_with_free_vram(
    candidates: &[Candidate],
    params: &RecommendParams,
    telemetry: &crate::telemetry::Telemetry,
) -> Recommendation {
    let Some(free) = telemetry.free_vram_mb() else {
        return recommend::recommend(candidates, params);
    };
    let mut fitting = Vec::new();
    let mut too_big = Vec::new();
    for c in candidates {
        let held = telemetry.held_vram_mb(&c.summary.model).unwrap_or(0.0);
        match c.vram_need {
            Some(need) if need.mb > free + held => too_big.push(Excluded {
                model: c.summary.model.clone(),
                kinds: vec![ExclusionKind::NeedsMoreVram],
                reason: format!(
                    "needs {:.1} GB of VRAM ({}), {:.1} GB available: {:.1} GB free on the GPU plus {:.1} GB it holds now",
                    need.mb / 1024.0,
                    need.source.describe(),
                    (free + held) / 1024.0,
                    free / 1024.0,
                    held / 1024.0
                ),
            }),
            _ => fitting.push(c.clone()),
        }
    }
    let mut answer = recommend::recommend(&fitting, params);
    answer.vram.available_mb = Some(free);
    answer.excluded.extend(too_big);
    answer
}

/// `GET /trend/{model}`: a metric over time, bucketed, with its direction.
pub async fn trend(
    State(state): State<ApiState>,
    Path(model): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let metric = match params.text("metric") {
        None => TrendMetric::ProcessingTime,
        Some(m) => m
            .parse::<TrendMetric>()
            .map_err(|e| ApiError::bad(e.to_string()))?,
    };
    let hours = params.hours("hours")?.unwrap_or(DEFAULT_RECENT_HOURS);
    let bucket_minutes = params
        .whole("bucket_minutes", 1, 525_600)?
        .or(params.whole("bucket_size_minutes", 1, 525_600)?)
        .unwrap_or(DEFAULT_BUCKET_MINUTES) as u32;
    let operation = params.text("operation").map(str::to_string);
    if !state.history.has_model(&model) {
        return Err(ApiError::NotFound(format!(
            "no records for model {model:?}"
        )));
    }
    let name = model.clone();
    let result = tokio::task::spawn_blocking(move || {
        let model = name;
        let operation = match &operation {
            Some(name) => Some(state.history.operation_id(name).unwrap_or(u32::MAX)),
            None => None,
        };
        let params = TrendParams {
            metric,
            now_ms: Utc::now().timestamp_millis(),
            hours,
            bucket_minutes,
            operation,
        };
        state
            .history
            .with_model(&model, |s| stats::trend(&model, s, &params))
    })
    .await?;
    match result {
        Some(Ok(t)) => serde_json::to_value(t)
            .map(Json)
            .map_err(|e| ApiError::Internal(e.to_string())),
        Some(Err(e)) => Err(ApiError::bad(e.to_string())),
        None => Err(ApiError::NotFound(format!(
            "no records for model {model:?}"
        ))),
    }
}

/// `GET /insights`: warnings a person can act on.
pub async fn insights(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let hours = params
        .hours("duration_hours")?
        .unwrap_or(DEFAULT_RECENT_HOURS);
    let dropped = state.recorder.stats().dropped.load(Ordering::Relaxed);
    let list = tokio::task::spawn_blocking(move || {
        let params = stats::InsightParams {
            now_ms: Utc::now().timestamp_millis(),
            duration_hours: hours,
            gpu_total_mb: state.proxy.telemetry().gpu_total_mb(),
            dropped_records: dropped,
        };
        state.history.with_all(|all| {
            stats::insights(
                all.iter().map(|(name, s)| (name.as_str(), s.as_slice())),
                &params,
            )
        })
    })
    .await?;
    Ok(Json(json!({"duration_hours": hours, "insights": list})))
}

/// A list of model names from JSON, validated.
fn model_list(value: Option<&Value>, name: &str) -> Result<Option<Vec<String>>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            if items.len() > MAX_MODELS {
                return Err(ApiError::bad(format!(
                    "{name}: at most {MAX_MODELS} models"
                )));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                    other => Err(ApiError::bad(format!(
                        "{name}[{i}]: expected a model name, got {other}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
        Some(other) => Err(ApiError::bad(format!(
            "{name}: expected a list of model names, got {other}"
        ))),
    }
}
