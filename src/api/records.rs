//! The write routes: a record by hand, imports, a quality score for a stored record, and
//! clean-up. Writes go through the recorder's single writer and are acknowledged only
//! after they are committed; the writer also updates the in-memory history, so no handler
//! touches it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use chrono::{Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::import::{Rejection, parse_import, sniff};
use super::input::{ImportJson, RecordInput, record_from_json};
use super::params::{Params, PathText, json_object, required_number};
use crate::record::{Record, Source};

/// Records per commit during an import: large enough to be quick, small enough that one
/// transaction does not hold the writer for long.
const IMPORT_CHUNK: usize = 5_000;
/// Rejected rows listed in an import's answer; the rest are counted.
const MAX_LISTED_REJECTIONS: usize = 1_000;

/// `POST /record`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recorded {
    /// Always `recorded`.
    #[schema(value_type = String, example = "recorded")]
    pub status: &'static str,
    /// The stored record's id (for `POST /records/{id}/quality`).
    pub id: String,
    /// The model it was recorded for.
    pub model_name: String,
}

/// `POST /record`: one record of work that did not pass through the proxy.
#[utoipa::path(
    post,
    path = "/api/model-performance/record",
    tag = "records",
    request_body = RecordInput,
    responses(
        (status = 201, description = "Stored: acknowledged after it is committed", body = Recorded),
        (status = 400, description = "A bad field, named", body = ErrorBody),
        (status = 503, description = "The recorder is busy or stopping; try again", body = ErrorBody),
    )
)]
pub async fn record(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Recorded>), ApiError> {
    let obj = json_object(&body)?;
    let record = record_from_json(&Value::Object(obj), Source::Manual, Utc::now())
        .map_err(ApiError::BadRequest)?;
    let id = record.id.clone();
    let model = record.model.clone();
    state.recorder.submit_and_wait(vec![record]).await?;
    Ok((
        StatusCode::CREATED,
        Json(Recorded {
            status: "recorded",
            id,
            model_name: model,
        }),
    ))
}

/// An import's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// Records stored.
    pub imported: usize,
    /// Records whose id was already stored (an export imported twice).
    pub skipped_existing: usize,
    /// Rows refused.
    pub rejected_count: usize,
    /// The first refused rows, each with where and why.
    pub rejected: Vec<Rejection>,
    /// The format read: `json`, `ndjson` or `csv`.
    #[schema(example = "json")]
    pub format: String,
}

/// `POST /import`'s query parameters (documentation; read through [`Params`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// The body's format; guessed from `Content-Type` and the body when absent.
    #[param(inline)]
    pub format: Option<ImportFormat>,
}

/// A format `POST /import` reads.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ImportFormat {
    /// A JSON document: a list of records, `{"records": [...]}`, or the earlier system's file.
    Json,
    /// One JSON record per line.
    Ndjson,
    /// The export's CSV, header first.
    Csv,
}

/// `POST /import`: NDJSON, JSON or CSV in the export's format, or the earlier system's
/// JSON file. Invalid rows are reported; valid ones kept.
#[utoipa::path(
    post,
    path = "/api/model-performance/import",
    tag = "records",
    params(ImportQuery),
    request_body(
        description = "Records in the export's format (JSON, NDJSON or CSV with the export's \
                       header) or the earlier system's JSON file",
        content(
            (ImportJson = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )
    ),
    responses(
        (status = 200, description = "What was stored, skipped and refused (by line or index)",
         body = ImportReport),
        (status = 400, description = "A body that holds no records: not JSON, or a CSV without \
                                      the export's header", body = ErrorBody),
        (status = 503, description = "The recorder is busy or stopping; try again", body = ErrorBody),
    )
)]
pub async fn import(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Params,
    body: Bytes,
) -> Result<Json<ImportReport>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = match params.text("format") {
        Some(f @ ("json" | "ndjson" | "csv")) => f.to_string(),
        Some(other) => {
            return Err(ApiError::bad(format!(
                "format: {other:?} is not one of json, ndjson, csv"
            )));
        }
        None => sniff(content_type, &body).to_string(),
    };
    let (records, rejected, format) =
        tokio::task::spawn_blocking(move || parse_import(&format, &body))
            .await?
            .map_err(ApiError::BadRequest)?;
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let location = state.store.clone();
    let existing = tokio::task::spawn_blocking(move || {
        let mut reader = location.open_reader()?;
        reader.existing_ids(&ids.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await??;
    let parsed = records.len();
    let mut seen = std::collections::HashSet::new();
    let fresh: Vec<Record> = records
        .into_iter()
        .filter(|r| !existing.contains(&r.id) && seen.insert(r.id.clone()))
        .collect();
    let skipped_existing = parsed - fresh.len();
    let mut imported = 0;
    let mut fresh = fresh;
    while !fresh.is_empty() {
        let rest = fresh.split_off(fresh.len().min(IMPORT_CHUNK));
        imported += state.recorder.submit_and_wait(fresh).await?;
        fresh = rest;
    }
    let rejected_count = rejected.len();
    Ok(Json(ImportReport {
        imported,
        skipped_existing,
        rejected_count,
        rejected: rejected.into_iter().take(MAX_LISTED_REJECTIONS).collect(),
        format: format.to_string(),
    }))
}

/// `POST /records/{id}/quality`'s body.
#[derive(Debug, ToSchema)]
pub struct QualityRequest {
    /// The score, 1 to 5.
    #[schema(minimum = 1.0, maximum = 5.0)]
    pub quality_score: f64,
}

/// `POST /records/{id}/quality`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct QualitySet {
    /// The record.
    pub id: String,
    /// Its model.
    pub model: String,
    /// The score now stored.
    pub quality_score: f64,
}

/// `POST /records/{id}/quality {quality_score}`: scores a stored record.
#[utoipa::path(
    post,
    path = "/api/model-performance/records/{id}/quality",
    tag = "records",
    params(("id" = String, Path,
            description = "The record's id: the `X-Ollameter-Record-Id` header of a proxied answer, \
                           or the `id` that `POST /record` returned")),
    request_body = QualityRequest,
    responses(
        (status = 200, description = "Scored; the statistics use it from now on", body = QualitySet),
        (status = 400, description = "A bad body, the field named", body = ErrorBody),
        (status = 404, description = "No record with this id", body = ErrorBody),
        (status = 503, description = "The recorder is busy or stopping; try again", body = ErrorBody),
    )
)]
pub async fn set_quality(
    State(state): State<ApiState>,
    PathText(id): PathText,
    body: Bytes,
) -> Result<Json<QualitySet>, ApiError> {
    let obj = json_object(&body)?;
    let quality = required_number(&obj, "quality_score", "a number from 1 to 5", |q| {
        (1.0..=5.0).contains(&q)
    })?;
    match state.recorder.set_quality(id.clone(), quality).await? {
        Some(record) => Ok(Json(QualitySet {
            id,
            model: record.model,
            quality_score: quality,
        })),
        None => Err(ApiError::NotFound(format!(
            "no record with id {id:?}; use the X-Ollameter-Record-Id of a proxied answer"
        ))),
    }
}

/// `DELETE /clear/{model}`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cleared {
    /// The model.
    pub model: String,
    /// How many of its records were deleted (0 for a model without records).
    pub deleted: u64,
}

/// `DELETE /clear/{model}`: deletes a model's records.
#[utoipa::path(
    delete,
    path = "/api/model-performance/clear/{model}",
    tag = "admin",
    params(("model" = String, Path, min_length = 1,
            description = "The model's name as requests spell it. Names contain `/` and `:` \
                           (`hf.co/org/model:Q4_K_M`): the route takes the rest of the path, \
                           slashes included.")),
    responses(
        (status = 200, description = "Deleted; how many", body = Cleared),
        (status = 503, description = "The recorder is busy or stopping; try again", body = ErrorBody),
    )
)]
pub async fn clear_model(
    State(state): State<ApiState>,
    PathText(model): PathText,
) -> Result<Json<Cleared>, ApiError> {
    let deleted = state.recorder.delete_model(model.clone()).await?;
    Ok(Json(Cleared { model, deleted }))
}

/// `POST /clear-old`'s body.
#[derive(Debug, ToSchema)]
pub struct ClearOldRequest {
    /// Records older than this many days are deleted (above 0, at most 36500).
    #[schema(exclusive_minimum = 0.0, maximum = 36_500.0)]
    pub days: f64,
}

/// `POST /clear-old`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClearedOld {
    /// How many records were deleted.
    pub deleted: u64,
    /// Records before this instant were deleted (RFC 3339).
    #[schema(format = DateTime)]
    pub cutoff: String,
    /// The days asked for.
    pub days: f64,
}

/// `POST /clear-old {days}`: deletes records older than that many days.
#[utoipa::path(
    post,
    path = "/api/model-performance/clear-old",
    tag = "admin",
    request_body = ClearOldRequest,
    responses(
        (status = 200, description = "Deleted; how many, and the cutoff", body = ClearedOld),
        (status = 400, description = "A bad body, the field named", body = ErrorBody),
        (status = 503, description = "The recorder is busy or stopping; try again", body = ErrorBody),
    )
)]
pub async fn clear_old(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<ClearedOld>, ApiError> {
    let obj = json_object(&body)?;
    let days = required_number(
        &obj,
        "days",
        "a number of days above 0 (at most 36500)",
        |d| d.is_finite() && d > 0.0 && d <= 36_500.0,
    )?;
    let cutoff = Utc::now() - ChronoDuration::milliseconds((days * 86_400_000.0) as i64);
    let deleted = state.recorder.delete_before(cutoff).await?;
    Ok(Json(ClearedOld {
        deleted,
        cutoff: cutoff.to_rfc3339(),
        days,
    }))
}
