//! `GET /dashboard`: gathers a [`View`] from the running sidecar with the same functions
//! the JSON routes answer with (statistics, the recommendation for each priority, a trend,
//! insights, the telemetry snapshot) and renders it with [`crate::dashboard`]. A bad query
//! parameter is a 400 page that says which and why; a bad value of the prediction panel's
//! call question is a 400 too, but with the whole dashboard and the message next to that
//! form, so what was typed can be corrected there.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::ApiState;
use super::listing::{self, ListParams};
use super::query::{RecommendRequest, Window, recommendation};
use crate::dashboard::{self, Filters, View};
use crate::recommend::Priority;
use crate::stats::{self, InsightParams, ModelStatistics, TrendParams};

/// The host named in the "point your app here" hint when the request has no `Host`.
const FALLBACK_HOST: &str = "127.0.0.1:11435";

/// What the page may load: nothing but its own inline styles and the empty favicon. The
/// page has no script; this keeps it that way even if a value slipped through escaping.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The dashboard handler.
pub async fn dashboard(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(e) => return page(StatusCode::BAD_REQUEST, bad(&format!("query string: {e}"))),
    };
    let (filters, bad_question) = match Filters::parse_page(&pairs) {
        Ok(parsed) => parsed,
        Err(message) => return page(StatusCode::BAD_REQUEST, bad(&message)),
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(FALLBACK_HOST)
        .to_string();
    let dropped = state.recorder.snapshot().dropped;
    match tokio::task::spawn_blocking(move || gather(&state, filters, host, dropped)).await {
        Ok(Ok(mut view)) => {
            let status = if bad_question.is_some() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            view.bad_question = bad_question;
            page(status, dashboard::render(&view))
        }
        Ok(Err(message)) => page(StatusCode::BAD_REQUEST, bad(&message)),
        Err(e) => {
            tracing::error!(error = %e, "dashboard failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                dashboard::render_error("internal error; see the sidecar's log"),
            )
        }
    }
}

fn bad(message: &str) -> String {
    dashboard::render_error(message)
}

fn page(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
        ],
        body,
    )
        .into_response()
}

/// Everything the page shows; blocking (it reads the history under its lock). An error is
/// a parameter the figures cannot be computed with (too many trend buckets).
fn gather(state: &ApiState, filters: Filters, host: String, dropped: u64) -> Result<View, String> {
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let window = || Window {
        hours: Some(filters.hours),
        operation: filters.operation.clone(),
        source: None,
        host: filters.host.clone(),
    };
    let list = ListParams {
        include_unknown: filters.include_unknown,
        limit: filters.limit,
    };
    let listed = match window().filter(state) {
        Some(filter) => listing::statistics(state, &window(), &filter, list),
        None => listing::Listed::default(),
    };
    let statistics: Vec<ModelStatistics> = listed
        .models
        .into_iter()
        .map(|s| super::query::priced(state, s))
        .collect();
    let predictions = prediction_lines(state, &statistics);
    let shown: Option<Vec<String>> = if statistics.is_empty() {
        None
    } else {
        Some(statistics.iter().map(|s| s.model.clone()).collect())
    };
    // The call question, answered by `/predict`'s own function for the listed models.
    let call_predictions = filters.question.map(|q| {
        crate::analytics::predict_all(
            &state.history,
            shown.as_deref().unwrap_or_default(),
            filters.host.as_deref(),
            q.prompt_tokens,
            q.output_tokens,
            q.cold,
        )
    });
    let recommendations: Vec<_> = Priority::ALL
        .into_iter()
        .map(|priority| {
            recommendation(
                state,
                RecommendRequest {
                    priority,
                    window: window(),
                    min_operations: filters.min_operations,
                    available_vram_mb: None,
                    // The models the page lists (the busiest `limit`): the recommendation
                    // among what the page shows, and at 1,000 models four recommendations
                    // over every one of them would cost the page 400 ms.
                    models: shown.clone(),
                    workload: None,
                    min_quality: crate::recommend::DEFAULT_MIN_QUALITY,
                },
            )
        })
        .collect();
    let models_with_records = if filters.include_unknown {
        state.history.models()
    } else {
        listing::known_models(state)
    };
    let recommended = recommendations
        .iter()
        .find(|r| r.priority == Priority::Balanced)
        .and_then(|r| r.recommended_model.clone());
    let trend_model = filters
        .model
        .clone()
        .or(recommended)
        .or_else(|| {
            statistics
                .iter()
                .max_by_key(|s| s.total_operations)
                .map(|s| s.model.clone())
        })
        .or_else(|| models_with_records.first().cloned());
    let trend = match &trend_model {
        Some(model) => {
            let params = TrendParams {
                metric: filters.metric,
                now_ms,
                hours: filters.hours,
                bucket_minutes: filters.trend_bucket_minutes(),
                // An operation never seen matches nothing, as in `/trend`.
                operation: filters
                    .operation
                    .as_ref()
                    .map(|name| state.history.operation_id(name).unwrap_or(u32::MAX)),
                host: filters
                    .host
                    .as_deref()
                    .map(|h| state.history.host_filter(h)),
            };
            match state
                .history
                .with_model(model, |s| stats::trend(model, s, &params))
            {
                Some(Ok(t)) => Some(t),
                Some(Err(e)) => return Err(e.to_string()),
                None => None,
            }
        }
        None => None,
    };
    let telemetry = &state.telemetry;
    let insight_params = InsightParams {
        now_ms,
        duration_hours: filters.hours,
        gpu_total_mb: telemetry.gpu_total_mb(),
        dropped_records: dropped,
        host: filters
            .host
            .as_deref()
            .map(|h| state.history.host_filter(h)),
    };
    let insights = listing::insights(state, &insight_params, filters.include_unknown);
    Ok(View {
        filters,
        generated_at: now,
        host,
        models_with_records,
        operations: state.history.operations(),
        hosts: state.history.hosts(),
        statistics,
        models_left_out: listed.left_out,
        unknown_models_hidden: listed.unknown_hidden,
        recommendations,
        trend_model,
        trend,
        insights,
        system: telemetry.snapshot(),
        routing: Some(state.routing.snapshot()),
        alerts: state.alerts.list(None, None),
        version: env!("CARGO_PKG_VERSION"),
        latest_benchmark: state.bench.latest().map(|run| {
            let status = run.status();
            crate::dashboard::BenchmarkLink {
                id: status.id,
                state: serde_json::to_value(status.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                done_calls: status.report.done_calls,
                total_calls: status.report.total_calls,
            }
        }),
        predictions,
        call_predictions,
        bad_question: None,
        priced_in: (state.cost.price_per_kwh.is_some() || state.cost.gpu_hour_price.is_some())
            .then(|| state.cost.currency.clone()),
    })
}

/// Calls drawn per model in the prediction panel: enough to see the spread, few enough
/// that the page stays light.
const PANEL_CALLS: usize = 150;

/// The fitted line and newest warm calls of each listed model that has a fit.
fn prediction_lines(
    state: &ApiState,
    statistics: &[ModelStatistics],
) -> Vec<crate::dashboard::charts::PredictionLine> {
    use crate::analytics::{self, FitKey};
    statistics
        .iter()
        .filter_map(|s| {
            let fit = analytics::fit_for(&state.history, &FitKey::model(s.model.clone())).ok()?;
            let calls = state
                .history
                .with_model(&s.model, |samples| {
                    let points = analytics::points(samples);
                    points
                        .iter()
                        .rev()
                        .filter(|p| !p.cold)
                        .take(PANEL_CALLS)
                        .map(|p| (p.output_tokens, p.time_ms))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            Some(crate::dashboard::charts::PredictionLine {
                model: s.model.clone(),
                at_zero_ms: fit.warm_line(fit.median_prompt_tokens as f64, 0.0),
                ms_per_output_token: fit.ms_per_output_token,
                calls,
            })
        })
        .collect()
}
