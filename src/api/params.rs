//! Query-string and body parsing for the API, with messages that name the field.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use bytes::Bytes;
use serde_json::Value;

use super::error::ApiError;

/// Longest window accepted: ten years, in hours.
const MAX_HOURS: f64 = 87_600.0;

/// The query string as name -> value; a malformed one is a 400.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Params, ApiError> {
        match Query::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Query(map)) => Ok(Params(map)),
            Err(e) => Err(ApiError::bad(format!("query string: {e}"))),
        }
    }
}

/// The one path parameter of a route (a model name, a record id), percent-decoded. One that
/// is not UTF-8 is a 400 in the API's error shape, not axum's plain-text rejection.
pub struct PathText(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<PathText, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(text)) => Ok(PathText(text)),
            Err(e) => Err(ApiError::bad(format!("path: {}", e.body_text()))),
        }
    }
}

impl Params {
    /// A text value, trimmed; empty counts as absent.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A number of hours above 0.
    pub fn hours(&self, name: &str) -> Result<Option<f64>, ApiError> {
        self.text(name)
            .map(|v| hours_value(name, &Value::String(v.into())))
            .transpose()
    }

    /// A positive number (above 0).
    pub fn positive(&self, name: &str, max: f64) -> Result<Option<f64>, ApiError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) => match v.parse::<f64>() {
                Ok(n) if n.is_finite() && n > 0.0 && n <= max => Ok(Some(n)),
                _ => Err(ApiError::bad(format!(
                    "{name}: {v:?} must be a number above 0 and at most {max}"
                ))),
            },
        }
    }

    /// A whole number in a range.
    pub fn whole(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= min && n <= max => Ok(Some(n)),
                _ => Err(ApiError::bad(format!(
                    "{name}: {v:?} must be a whole number from {min} to {max}"
                ))),
            },
        }
    }
}

/// Hours from a JSON value or query text: a finite number above 0, at most ten years.
pub fn hours_value(name: &str, value: &Value) -> Result<f64, ApiError> {
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(h) if h.is_finite() && h > 0.0 && h <= MAX_HOURS => Ok(h),
        _ => Err(ApiError::bad(format!(
            "{name}: must be a number of hours above 0 and at most {MAX_HOURS}, got {value}"
        ))),
    }
}

/// A required number in a JSON body that `accept` takes; otherwise a 400 naming the field,
/// saying what is `wanted`, and showing what came.
pub fn required_number(
    obj: &serde_json::Map<String, Value>,
    name: &str,
    wanted: &str,
    accept: impl Fn(f64) -> bool,
) -> Result<f64, ApiError> {
    obj.get(name)
        .and_then(Value::as_f64)
        .filter(|v| accept(*v))
        .ok_or_else(|| {
            let got = obj
                .get(name)
                .map_or("nothing".to_string(), Value::to_string);
            ApiError::bad(format!("{name}: required, {wanted}, got {got}"))
        })
}

/// The body as a JSON object; anything else is a 400 saying what was expected.
pub fn json_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::bad(format!(
            "request body: expected a JSON object, got {}",
            short(&other)
        ))),
        Err(e) => Err(ApiError::bad(format!("request body: not valid JSON: {e}"))),
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 60 {
        format!("{}...", &text[..text.floor_char_boundary(60)])
    } else {
        text
    }
}
