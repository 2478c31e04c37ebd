//! The read routes: statistics, compare, recommend, trend and insights. Each handler
//! parses and validates its input, runs a pure function from `stats` or `recommend` over
//! the in-memory history on a blocking thread, and maps the answer.

use std::borrow::Cow;

use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::listing::{self, LeftOut, ListParams};
use super::params::{Params, PathText, hours_value, json_object};
use crate::recommend::{self, DEFAULT_MIN_OPERATIONS, Priority, Rankings, Recommendation};
use crate::record::Source;
use crate::stats::{
    self, Filter, Insight, ModelStatistics, Sample, Trend, TrendMetric, TrendParams,
};

/// Most models one compare or recommend call may name.
const MAX_MODELS: usize = 500;
/// Default window of trends and insights: a day.
const DEFAULT_RECENT_HOURS: f64 = 24.0;
/// Default trend bucket: an hour.
const DEFAULT_BUCKET_MINUTES: u64 = 60;

/// The query parameters of `/statistics` and `/statistics/{model}` (documentation: the
/// handlers read them through [`Params`] for messages that name the field).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// Only operations of the last this many hours (above 0, at most 87600); all of them
    /// when absent.
    #[param(exclusive_minimum = 0.0, maximum = 87_600.0)]
    pub duration_hours: Option<f64>,
    /// Only operations with this name (`X-Operation`, or the endpoint's kind such as `chat`).
    pub operation: Option<String>,
    /// Only records of this source; every source when absent.
    pub source: Option<Source>,
    /// Only calls served by this upstream host (its name, as records' `host` gives it);
    /// every host when absent.
    pub host: Option<String>,
}

/// The list parameters of `/statistics` and `/insights` (documentation; read through
/// [`ListParams`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// List names that no call ever succeeded with and that Ollama does not have
    /// installed (a client's typos, generated names); `false` when absent.
    pub include_unknown: Option<bool>,
    /// Most models listed, the busiest in the window first (1 to 10000; default 50).
    #[param(minimum = 1, maximum = 10_000)]
    pub limit: Option<u64>,
}

/// The window, operation and source a query covers.
pub(crate) struct Window {
    /// Only the last this many hours; all of the history without.
    pub(crate) hours: Option<f64>,
    /// Only this operation.
    pub(crate) operation: Option<String>,
    /// Only records of this source (`benchmark`, `proxy`, `manual`, `import`).
    pub(crate) source: Option<Source>,
    /// Only calls served by this upstream host (by name).
    pub(crate) host: Option<String>,
}

impl Window {
    fn from_params(p: &Params) -> Result<Window, ApiError> {
        Ok(Window {
            hours: p.hours("duration_hours")?,
            operation: p.text("operation").map(str::to_string),
            source: source_param(p)?,
            host: p.text("host").map(str::to_string),
        })
    }

    /// The interned id of the asked-for host (one never seen matches nothing).
    pub(crate) fn host_id(&self, state: &ApiState) -> Option<u8> {
        self.host.as_deref().map(|h| state.history.host_filter(h))
    }

    /// A model's samples of the asked-for source; the samples themselves without one.
    pub(crate) fn of_source<'a>(&self, samples: &'a [Sample]) -> Cow<'a, [Sample]> {
        match self.source {
            None => Cow::Borrowed(samples),
            Some(source) => Cow::Owned(
                samples
                    .iter()
                    .filter(|s| s.source == source)
                    .copied()
                    .collect(),
            ),
        }
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
            host: self.host_id(state),
        })
    }
}

/// The `source` query parameter: one of the record sources, or absent for all.
fn source_param(p: &Params) -> Result<Option<Source>, ApiError> {
    match p.text("source") {
        None => Ok(None),
        Some(name) => Source::parse(name).map(Some).ok_or_else(|| {
            let names: Vec<&str> = Source::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad(format!(
                "source: {name:?} is not one of {}",
                names.join(", ")
            ))
        }),
    }
}

/// Fills in a model's cost figures from `[cost]`, and says why energy is unknown in the
/// live telemetry's words where it has them.
pub(crate) fn priced(state: &ApiState, mut s: ModelStatistics) -> ModelStatistics {
    crate::analytics::cost::apply(&state.cost, &mut s.efficiency);
    if s.efficiency.joules_per_output_token.is_none() {
        let missing = state.telemetry.energy_missing();
        if !missing.is_empty() {
            s.efficiency.energy_unavailable_reason = Some(format!(
                "{} Now: {}",
                s.efficiency
                    .energy_unavailable_reason
                    .as_deref()
                    .unwrap_or(stats::NO_ENERGY_IN_WINDOW),
                missing.join("; ")
            ));
        }
    }
    s
}

/// `/statistics/{model}`'s answer: the statistics, or a note that the window holds none of
/// the model's operations (the model has records, just not there).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StatisticsAnswer {
    /// The model's statistics over the window.
    Statistics(Box<ModelStatistics>),
    /// No operation of the model in the window.
    Empty(EmptyWindow),
}

/// What `/statistics/{model}` answers when the window holds none of the model's operations.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmptyWindow {
    /// Always 0.
    #[schema(minimum = 0, maximum = 0)]
    pub total_operations: u64,
    /// Why there is nothing to show.
    pub message: String,
}

/// `GET /statistics/{model}`: one model's statistics; 404 for a model with no records.
#[utoipa::path(
    get,
    path = "/api/model-performance/statistics/{model}",
    tag = "statistics",
    params(
        ("model" = String, Path, min_length = 1,
         description = "The model's name as requests spell it. Names contain `/` and `:` \
                        (`hf.co/org/model:Q4_K_M`): the route takes the rest of the path, \
                        slashes included."),
        WindowQuery,
    ),
    responses(
        (status = 200, description = "The model's statistics, or `total_operations: 0` with a \
                                      message when the window holds none of its operations",
         body = StatisticsAnswer),
        (status = 400, description = "A bad query parameter, named", body = ErrorBody),
        (status = 404, description = "No records of this model at all", body = ErrorBody),
    )
)]
pub async fn model_statistics(
    State(state): State<ApiState>,
    PathText(model): PathText,
    params: Params,
) -> Result<Json<StatisticsAnswer>, ApiError> {
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
            .with_model(&model, |s| {
                stats::model_statistics(&model, &window.of_source(s), &filter)
            })
            .flatten()
            .map(|s| (s, state))
    })
    .await?;
    Ok(Json(match stats {
        Some((s, state)) => StatisticsAnswer::Statistics(Box::new(priced(&state, s))),
        None => StatisticsAnswer::Empty(EmptyWindow {
            total_operations: 0,
            message: "no operations of this model in the window".into(),
        }),
    }))
}

/// `/statistics`' answer: the models with operations in the window (the busiest
/// `limit`, unknown names only when asked for).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AllStatistics {
    /// The window asked for; null for all of history.
    pub duration_hours: Option<f64>,
    /// The operation asked for; null for all.
    pub operation: Option<String>,
    /// Each model's statistics, keyed by name.
    pub models: std::collections::BTreeMap<String, ModelStatistics>,
    /// What the list left out.
    #[serde(flatten)]
    pub left_out: LeftOut,
}

/// `GET /statistics`: every model's statistics.
#[utoipa::path(
    get,
    path = "/api/model-performance/statistics",
    tag = "statistics",
    params(WindowQuery, ListQuery),
    responses(
        (status = 200, description = "The models with operations in the window: the busiest \
                                      `limit` of them, unknown names only with \
                                      `include_unknown=true`, and how many were left out",
         body = AllStatistics),
        (status = 400, description = "A bad query parameter, named", body = ErrorBody),
    )
)]
pub async fn all_statistics(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<AllStatistics>, ApiError> {
    let window = Window::from_params(&params)?;
    let list = ListParams::from_params(&params)?;
    let answer = tokio::task::spawn_blocking(move || {
        let listed = match window.filter(&state) {
            Some(filter) => listing::statistics(&state, &window, &filter, list),
            None => listing::Listed::default(),
        };
        AllStatistics {
            duration_hours: window.hours,
            operation: window.operation,
            left_out: LeftOut::from(&listed),
            models: listed
                .models
                .into_iter()
                .map(|s| (s.model.clone(), priced(&state, s)))
                .collect(),
        }
    })
    .await?;
    Ok(Json(answer))
}

/// `POST /compare`'s body.
#[derive(Debug, ToSchema)]
pub struct CompareRequest {
    /// The models to compare (at least one, at most 500).
    #[schema(min_items = 1, max_items = 500)]
    pub models: Vec<ModelName>,
    /// Only operations of the last this many hours (above 0, at most 87600); all when null.
    #[schema(exclusive_minimum = 0.0, maximum = 87_600.0)]
    pub duration_hours: Option<f64>,
    /// Only operations with this name; all when null.
    #[schema(pattern = r"\S")]
    pub operation: Option<String>,
    /// Only calls served by this upstream host (by name); all when null.
    #[schema(pattern = r"\S")]
    pub host: Option<String>,
    /// Compare names that no call ever succeeded with and that Ollama does not have
    /// installed; without, such names are answered in `unknown`. `false` when null.
    pub include_unknown: Option<bool>,
}

/// A model name as a body names it: not blank (surrounding spaces are trimmed).
#[derive(Debug, ToSchema)]
#[schema(pattern = r"\S")]
pub struct ModelName(pub String);

/// `/compare`'s answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompareAnswer {
    /// Each model with operations in the window, keyed by name.
    pub models: std::collections::BTreeMap<String, ModelStatistics>,
    /// The winners.
    pub rankings: Rankings,
    /// The models named that have no operation in the window.
    pub missing: Vec<String>,
    /// The models named that no call ever succeeded with and that Ollama does not have
    /// installed (typos, generated names): not compared unless `include_unknown` is true.
    #[serde(default)]
    pub unknown: Vec<String>,
}

/// `POST /compare {models, duration_hours, operation}`.
#[utoipa::path(
    post,
    path = "/api/model-performance/compare",
    tag = "statistics",
    request_body = CompareRequest,
    responses(
        (status = 200, description = "Each model's statistics and the rankings", body = CompareAnswer),
        (status = 400, description = "A bad body, the field named", body = ErrorBody),
    )
)]
pub async fn compare(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<CompareAnswer>, ApiError> {
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
    let include_unknown = match obj.get("include_unknown") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::bad(format!(
                "include_unknown: expected true or false, got {other}"
            )));
        }
    };
    let host = match obj.get("host") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "host: expected an upstream's name as a non-empty string, got {other}"
            )));
        }
    };
    let window = Window {
        hours,
        operation,
        source: None,
        host,
    };
    let (comparison, missing, unknown) = tokio::task::spawn_blocking(move || {
        let filter = window.filter(&state);
        let mut found = Vec::new();
        let mut missing = Vec::new();
        let unknown = if include_unknown {
            Vec::new()
        } else {
            listing::unknown_among(&state, &models)
        };
        for model in models.iter().filter(|m| !unknown.contains(m)) {
            let s = filter.as_ref().and_then(|f| {
                state
                    .history
                    .with_model(model, |s| {
                        stats::model_statistics(model, s, f).zip(stats::model_summary(model, s, f))
                    })
                    .flatten()
            });
            match s {
                Some(s) => found.push(s),
                None => missing.push(model.clone()),
            }
        }
        let mut comparison = recommend::compare(found);
        comparison.models = std::mem::take(&mut comparison.models)
            .into_iter()
            .map(|(name, s)| (name, priced(&state, s)))
            .collect();
        (comparison, missing, unknown)
    })
    .await?;
    Ok(Json(CompareAnswer {
        models: comparison.models,
        rankings: comparison.rankings,
        missing,
        unknown,
    }))
}

/// `/recommend`'s query parameters (documentation; read through [`Params`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendQuery {
    /// What to optimise; `balanced` when absent.
    pub priority: Option<Priority>,
    /// A comma-separated list of the models to choose from (at most 500); every model with
    /// data when absent.
    pub available_models: Option<String>,
    /// Only operations of the last this many hours (above 0, at most 87600).
    #[param(exclusive_minimum = 0.0, maximum = 87_600.0)]
    pub duration_hours: Option<f64>,
    /// Fewer operations than this excludes a model (1 to 1000000; default 10).
    #[param(minimum = 1, maximum = 1_000_000)]
    pub min_operations: Option<u64>,
    /// Only operations with this name.
    pub operation: Option<String>,
    /// Only records of this source (`benchmark` for what `ollameter bench` measured); every
    /// source when absent.
    pub source: Option<Source>,
    /// Only calls served by this upstream host (by name): what to use on that box.
    pub host: Option<String>,
    /// The VRAM budget in GB (above 0, at most 100000): a model whose known need is larger is
    /// excluded.
    #[param(exclusive_minimum = 0.0, maximum = 100_000.0)]
    pub available_vram_gb: Option<f64>,
    /// Output tokens of the call to choose for: each model's time is predicted for it
    /// (its latency fit), and the speed score uses the prediction.
    #[param(minimum = 0, maximum = 10_000_000)]
    pub expected_output_tokens: Option<u64>,
    /// Prompt tokens of that call; each model's median prompt when absent. Needs
    /// `expected_output_tokens`.
    #[param(minimum = 0, maximum = 10_000_000)]
    pub prompt_tokens: Option<u64>,
    /// Models predicted slower than this for the call are excluded, the prediction given as
    /// the reason. Needs `expected_output_tokens`.
    #[param(exclusive_minimum = 0.0, maximum = 86_400_000.0)]
    pub max_latency_ms: Option<f64>,
    /// The `efficient` priority's quality floor, 1 to 5 (default 3).
    #[param(minimum = 1.0, maximum = 5.0)]
    pub min_quality: Option<f64>,
}

/// `GET /recommend`: the best model for a priority among those that qualify.
#[utoipa::path(
    get,
    path = "/api/model-performance/recommend",
    tag = "statistics",
    params(RecommendQuery),
    responses(
        (status = 200, description = "The recommendation; `recommended_model` is null, with the \
                                      reason, when nothing qualifies", body = Recommendation),
        (status = 400, description = "A bad query parameter, named", body = ErrorBody),
    )
)]
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
    let prompt_tokens = params.whole("prompt_tokens", 0, 10_000_000)?;
    let output_tokens = params.whole("expected_output_tokens", 0, 10_000_000)?;
    let max_latency_ms = params.positive("max_latency_ms", 86_400_000.0)?;
    let workload = match (output_tokens, prompt_tokens, max_latency_ms) {
        (Some(output_tokens), _, _) => Some(crate::policy::Workload {
            prompt_tokens,
            output_tokens,
            max_latency_ms,
        }),
        (None, None, None) => None,
        (None, _, _) => {
            return Err(ApiError::bad(
                "expected_output_tokens: required with prompt_tokens or max_latency_ms (the \
                 size of the call whose time is predicted)",
            ));
        }
    };
    let min_quality = match params.text("min_quality") {
        None => crate::recommend::DEFAULT_MIN_QUALITY,
        Some(v) => match v.parse::<f64>() {
            Ok(q) if (1.0..=5.0).contains(&q) => q,
            _ => {
                return Err(ApiError::bad(format!(
                    "min_quality: {v:?} must be a number from 1 to 5"
                )));
            }
        },
    };
    let query = RecommendRequest {
        priority,
        window,
        min_operations,
        available_vram_mb,
        models: requested,
        workload,
        min_quality,
    };
    let answer = tokio::task::spawn_blocking(move || recommendation(&state, query)).await?;
    Ok(Json(answer))
}

/// What a recommendation is asked for, validated.
pub(crate) struct RecommendRequest {
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
    /// The call to predict each model's time for, and its budget.
    pub(crate) workload: Option<crate::policy::Workload>,
    /// The efficient priority's quality floor.
    pub(crate) min_quality: f64,
}

/// The recommendation over the history and the telemetry, as `/recommend` answers it; the
/// dashboard shows the same. Blocking: it reads the history under its lock.
pub(crate) fn recommendation(state: &ApiState, query: RecommendRequest) -> Recommendation {
    let RecommendRequest {
        priority,
        window,
        min_operations,
        available_vram_mb,
        models,
        workload,
        min_quality,
    } = query;
    let host = window.host_id(state);
    crate::policy::recommendation(
        &state.history,
        &state.telemetry,
        crate::policy::PolicyRequest {
            priority,
            hours: window.hours,
            operation: window.operation,
            source: window.source,
            host,
            min_operations,
            available_vram_mb,
            models,
            workload,
            min_quality,
            cost: state.cost.clone(),
            fits: None,
        },
    )
}

/// `/trend/{model}`'s query parameters (documentation; read through [`Params`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendQuery {
    /// The metric; `processing_time` when absent.
    pub metric: Option<TrendMetric>,
    /// The window's length in hours (above 0, at most 87600; default 24).
    #[param(exclusive_minimum = 0.0, maximum = 87_600.0)]
    pub hours: Option<f64>,
    /// The bucket width in minutes (1 to 525600; default 60). At most 10000 buckets.
    #[param(minimum = 1, maximum = 525_600)]
    pub bucket_minutes: Option<u64>,
    /// The earlier system's name for `bucket_minutes`, read when that is absent.
    #[param(minimum = 1, maximum = 525_600)]
    pub bucket_size_minutes: Option<u64>,
    /// Only operations with this name.
    pub operation: Option<String>,
    /// Only calls served by this upstream host (by name).
    pub host: Option<String>,
}

/// `GET /trend/{model}`: a metric over time, bucketed, with its direction.
#[utoipa::path(
    get,
    path = "/api/model-performance/trend/{model}",
    tag = "statistics",
    params(
        ("model" = String, Path, min_length = 1,
         description = "The model's name as requests spell it. Names contain `/` and `:` \
                        (`hf.co/org/model:Q4_K_M`): the route takes the rest of the path, \
                        slashes included."),
        TrendQuery,
    ),
    responses(
        (status = 200, description = "The buckets, the direction and the slope behind it", body = Trend),
        (status = 400, description = "A bad query parameter, named", body = ErrorBody),
        (status = 404, description = "No records of this model", body = ErrorBody),
    )
)]
pub async fn trend(
    State(state): State<ApiState>,
    PathText(model): PathText,
    params: Params,
) -> Result<Json<Trend>, ApiError> {
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
    let host = params.text("host").map(str::to_string);
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
            host: host.as_deref().map(|h| state.history.host_filter(h)),
        };
        state
            .history
            .with_model(&model, |s| stats::trend(&model, s, &params))
    })
    .await?;
    match result {
        Some(Ok(t)) => Ok(Json(t)),
        Some(Err(e)) => Err(ApiError::bad(e.to_string())),
        None => Err(ApiError::NotFound(format!(
            "no records for model {model:?}"
        ))),
    }
}

/// `/insights`' query parameters (documentation; read through [`Params`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InsightsQuery {
    /// The window in hours (above 0, at most 87600; default 24).
    #[param(exclusive_minimum = 0.0, maximum = 87_600.0)]
    pub duration_hours: Option<f64>,
    /// Apply the per-model rules to names that no call ever succeeded with and that
    /// Ollama does not have installed too; without, they are reported once each (the most
    /// frequent) as `unknown_model` with a "did you mean". `false` when absent.
    pub include_unknown: Option<bool>,
    /// Only calls served by this upstream host (by name).
    pub host: Option<String>,
}

/// `/insights`' answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InsightsAnswer {
    /// The window looked at.
    pub duration_hours: f64,
    /// The warnings, most urgent first.
    pub insights: Vec<Insight>,
}

/// `GET /insights`: warnings a person can act on.
#[utoipa::path(
    get,
    path = "/api/model-performance/insights",
    tag = "statistics",
    params(InsightsQuery),
    responses(
        (status = 200, description = "The warnings", body = InsightsAnswer),
        (status = 400, description = "A bad query parameter, named", body = ErrorBody),
    )
)]
pub async fn insights(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<InsightsAnswer>, ApiError> {
    let hours = params
        .hours("duration_hours")?
        .unwrap_or(DEFAULT_RECENT_HOURS);
    let include_unknown = match params.text("include_unknown") {
        None => false,
        Some(v) => listing::flag("include_unknown", v).map_err(ApiError::bad)?,
    };
    let dropped = state.recorder.snapshot().dropped;
    let host = params.text("host").map(str::to_string);
    let list = tokio::task::spawn_blocking(move || {
        let params = stats::InsightParams {
            now_ms: Utc::now().timestamp_millis(),
            duration_hours: hours,
            gpu_total_mb: state.telemetry.gpu_total_mb(),
            dropped_records: dropped,
            host: host.as_deref().map(|h| state.history.host_filter(h)),
        };
        listing::insights(&state, &params, include_unknown)
    })
    .await?;
    Ok(Json(InsightsAnswer {
        duration_hours: hours,
        insights: list,
    }))
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
