//! Records written by hand (`POST /record`) or imported (`POST /import`, `ollameter
//! import`): validated field by field from JSON objects in the export's own format or the
//! earlier Python system's (`model_name`, `tokens_generated`, `memory_usage_mb`, ...), and
//! from CSV rows with the export's header. Every problem names its field.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::record::{ErrorKind, FIELD_NAMES, Record, RouteReason, Source, TimingSource};

/// Longest model name accepted, in characters (Ollama's own names are far shorter).
const MAX_NAME_LEN: usize = 256;
/// Longest processing time accepted: 30 days in milliseconds; anything above is a unit
/// mistake, not a measurement.
const MAX_TIME_MS: f64 = 30.0 * 86_400_000.0;
/// Highest throughput accepted, in tokens per second: far above any model's generation
/// speed, so anything above is a unit or timing mistake.
const MAX_TOKENS_PER_SECOND: f64 = 1e7;

/// One record as `POST /record` and `POST /import` read it: the export's fields, plus the
/// earlier system's names as aliases. Documentation of what [`record_from_json`] accepts;
/// `null` counts as absent everywhere. The bounds here are the ones it enforces.
#[derive(ToSchema)]
pub struct RecordInput {
    /// A unique id (at most 128 characters); a UUIDv7 is made when absent. An id already
    /// stored is skipped by an import.
    #[schema(min_length = 1, max_length = 128)]
    pub id: Option<String>,
    /// When the call happened: RFC 3339 (`2026-01-31T12:00:00Z`; without a zone it is taken
    /// as UTC) or Unix seconds. Now when absent.
    pub timestamp: Option<TimestampInput>,
    /// The model (`model` is accepted as an alias).
    #[schema(min_length = 1, max_length = 256)]
    pub model_name: String,
    /// What the call was for (`photo_evaluation`, `chat`, ...).
    #[schema(min_length = 1, max_length = 256)]
    pub operation: String,
    /// Wall time of the call in ms (0 to 30 days).
    #[schema(minimum = 0.0, maximum = 2_592_000_000.0)]
    pub processing_time_ms: f64,
    /// Whether the call succeeded; true when absent.
    pub success: Option<bool>,
    /// Quality of the answer, 1 to 5.
    #[schema(minimum = 1.0, maximum = 5.0)]
    pub quality_score: Option<f64>,
    /// The request path, e.g. `/api/chat`.
    pub endpoint: Option<String>,
    /// Where the record came from; `manual` for `POST /record` and `import` for an import
    /// when absent (an export's value is kept).
    pub source: Option<Source>,
    /// Whether the answer was streamed.
    pub stream: Option<bool>,
    /// True when the token counts were estimated.
    pub tokens_estimated: Option<bool>,
    /// The HTTP status the client received.
    #[schema(minimum = 100, maximum = 599)]
    pub http_status: Option<u16>,
    /// Why the call failed; only on a record with `success: false`.
    pub error_kind: Option<ErrorKind>,
    /// The error text (`error` is accepted as an alias).
    pub error_message: Option<String>,
    /// Ollama's `done_reason`.
    pub done_reason: Option<String>,
    /// Time to first token in ms.
    #[schema(minimum = 0.0, maximum = 2_592_000_000.0)]
    pub ttft_ms: Option<f64>,
    /// Ollama's `total_duration` in ms.
    #[schema(minimum = 0.0, maximum = 2_592_000_000.0)]
    pub total_duration_ms: Option<f64>,
    /// Ollama's `load_duration` in ms.
    #[schema(minimum = 0.0, maximum = 2_592_000_000.0)]
    pub load_duration_ms: Option<f64>,
    /// Ollama's `prompt_eval_duration` in ms.
    #[schema(minimum = 0.0, maximum = 2_592_000_000.0)]
    pub prompt_eval_duration_ms: Option<f64>,
    /// Ollama's `eval_duration` in ms.
    #[schema(minimum = 0.0, maximum = 2_592_000_000.0)]
    pub eval_duration_ms: Option<f64>,
    /// Prompt tokens.
    #[schema(minimum = 0, maximum = 4_294_967_295_u64)]
    pub prompt_tokens: Option<u64>,
    /// Generated tokens.
    #[schema(minimum = 0, maximum = 4_294_967_295_u64)]
    pub output_tokens: Option<u64>,
    /// The earlier system's name for `output_tokens`.
    #[schema(minimum = 0, maximum = 4_294_967_295_u64)]
    pub tokens_generated: Option<u64>,
    /// Generation throughput; derived from `output_tokens` and `processing_time_ms` when absent.
    #[schema(minimum = 0.0, maximum = 10_000_000.0)]
    pub tokens_per_second: Option<f64>,
    /// Prompt throughput.
    #[schema(minimum = 0.0, maximum = 1_000_000_000.0)]
    pub prompt_tokens_per_second: Option<f64>,
    /// Bytes of the request body.
    #[schema(minimum = 0)]
    pub request_bytes: Option<u64>,
    /// Bytes of the response body.
    #[schema(minimum = 0)]
    pub response_bytes: Option<u64>,
    /// RSS of the runner plus the Ollama server in MiB (`memory_mb` is accepted as an alias).
    #[schema(minimum = 0.0, maximum = 1_000_000_000.0)]
    pub ollama_rss_mb: Option<f64>,
    /// The earlier system's name for `ollama_rss_mb`.
    #[schema(minimum = 0.0, maximum = 1_000_000_000.0)]
    pub memory_usage_mb: Option<f64>,
    /// GPU memory of the runner in MiB.
    #[schema(minimum = 0.0, maximum = 1_000_000_000.0)]
    pub gpu_memory_mb: Option<f64>,
    /// The model's `size_vram` in MiB.
    #[schema(minimum = 0.0, maximum = 1_000_000_000.0)]
    pub vram_mb: Option<f64>,
    /// Who measured the speeds: `server` or `proxy`.
    pub timing_source: Option<TimingSource>,
    /// The model name the client sent when the proxy routed the call (`auto:quality`,
    /// an alias).
    #[schema(min_length = 1, max_length = 256)]
    pub requested_model: Option<String>,
    /// Why the call ran on `model_name`.
    pub route_reason: Option<RouteReason>,
    /// Which attempt of the call this was, 1 when absent.
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub attempt: Option<u32>,
    /// Energy the call used, joules.
    #[schema(minimum = 0.0, maximum = 1_000_000_000_000.0)]
    pub energy_j: Option<f64>,
    /// How `energy_j` was measured (`gpu_counter`, `gpu_power`, `cpu_rapl`, joined by `+`).
    #[schema(min_length = 1, max_length = 64)]
    pub energy_source: Option<String>,
    /// The upstream host that served the call (its `[[upstreams]]` name).
    #[schema(min_length = 1, max_length = 1024)]
    pub host: Option<String>,
}

/// A record's time as [`record_from_json`] reads it.
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
pub enum TimestampInput {
    /// RFC 3339, or ISO 8601 without a zone (taken as UTC).
    Text(String),
    /// Unix seconds, 0 up to the year 9999.
    UnixSeconds(f64),
}

/// The JSON documents `POST /import` reads: a list of records; one record; `{"records":
/// [...]}`; or the earlier system's file, `{"records": {"model": [records]}}` or
/// `{"model": [records]}` (a record without a model name takes the key's).
pub struct ImportJson;

impl PartialSchema for ImportJson {
    fn schema() -> RefOr<Schema> {
        let record = || RefOr::Ref(Ref::from_schema_name(RecordInput::name()));
        let list = || ArrayBuilder::new().items(record());
        let by_model = || {
            ObjectBuilder::new()
                .additional_properties(Some(list()))
                .description(Some("model name -> its records"))
                .build()
        };
        let records = Schema::AnyOf(AnyOfBuilder::new().item(list()).item(by_model()).build());
        AnyOfBuilder::new()
            .item(list())
            .item(record())
            .item(
                ObjectBuilder::new()
                    .property("records", records)
                    .required("records")
                    .build(),
            )
            .item(by_model())
            .description(Some(
                "a list of records, one record, {\"records\": ...}, or the earlier system's \
                 {\"model\": [records]}",
            ))
            .into()
    }
}

impl ToSchema for ImportJson {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((RecordInput::name().into_owned(), RecordInput::schema()));
        <RecordInput as ToSchema>::schemas(schemas);
    }
}

/// Reads one record from a JSON object, as `source`, stamped `now` when it has no timestamp.
pub fn record_from_json(
    value: &Value,
    source: Source,
    now: DateTime<Utc>,
) -> Result<Record, String> {
    let Value::Object(obj) = value else {
        return Err(format!(
            "a record must be a JSON object, got {}",
            kind(value)
        ));
    };
    let f = Fields(obj);
    let model = f.name(&["model", "model_name"], "model_name")?;
    let operation = f.name(&["operation"], "operation")?;
    let processing_time_ms = f
        .number(&["processing_time_ms"], 0.0, MAX_TIME_MS)?
        .ok_or("processing_time_ms: required (milliseconds, a number of 0 or more)")?;
    let id = match f.get(&["id"]) {
        None => uuid::Uuid::now_v7().to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 128 => {
            s.trim().to_string()
        }
        Some(other) => {
            return Err(format!(
                "id: must be a non-empty string of at most 128 characters, got {}",
                show(other)
            ));
        }
    };
    let timestamp = match f.get(&["timestamp"]) {
        None => now,
        Some(v) => parse_timestamp(v)?,
    };
    let mut r = Record::new(
        id,
        timestamp,
        model,
        operation,
        f.string(&["endpoint"])?.unwrap_or_default(),
    );
    // An export names each record's origin; keep it so export then import round-trips.
    r.source = match f.string(&["source"])? {
        Some(name) => Source::parse(&name).ok_or_else(|| {
            format!("source: {name:?} is not one of proxy, manual, import, benchmark")
        })?,
        None => source,
    };
    // An export also names the instance that stored each record; the recorder stamps
    // this one's name on records without it.
    r.instance = f.string(&["instance"])?.unwrap_or_default();
    r.processing_time_ms = processing_time_ms;
    r.success = f.boolean(&["success"])?.unwrap_or(true);
    r.stream = f.boolean(&["stream"])?.unwrap_or(false);
    r.tokens_estimated = f.boolean(&["tokens_estimated"])?.unwrap_or(false);
    r.quality_score = f.number(&["quality_score"], 1.0, 5.0)?;
    r.http_status = f.integer(&["http_status"], 100, 599)?.map(|v| v as u16);
    r.error_kind = match f.string(&["error_kind"])? {
        None => None,
        Some(name) => Some(ErrorKind::parse(&name).ok_or_else(|| {
            format!(
                "error_kind: {name:?} is not a known kind ({})",
                ErrorKind::names()
            )
        })?),
    };
    r.error_message = f.string(&["error_message", "error"])?;
    r.done_reason = f.string(&["done_reason"])?;
    let ms = |names: &[&str]| f.number(names, 0.0, MAX_TIME_MS);
    r.ttft_ms = ms(&["ttft_ms"])?;
    r.total_duration_ms = ms(&["total_duration_ms"])?;
    r.load_duration_ms = ms(&["load_duration_ms"])?;
    r.prompt_eval_duration_ms = ms(&["prompt_eval_duration_ms"])?;
    r.eval_duration_ms = ms(&["eval_duration_ms"])?;
    r.prompt_tokens = f.integer(&["prompt_tokens"], 0, u32::MAX as u64)?;
    r.output_tokens = f.integer(&["output_tokens", "tokens_generated"], 0, u32::MAX as u64)?;
    r.tokens_per_second = f.number(&["tokens_per_second"], 0.0, MAX_TOKENS_PER_SECOND)?;
    r.prompt_tokens_per_second = f.number(&["prompt_tokens_per_second"], 0.0, 1e9)?;
    r.request_bytes = f
        .integer(&["request_bytes"], 0, u64::MAX >> 1)?
        .unwrap_or(0);
    r.response_bytes = f
        .integer(&["response_bytes"], 0, u64::MAX >> 1)?
        .unwrap_or(0);
    r.ollama_rss_mb = f.number(&["ollama_rss_mb", "memory_usage_mb", "memory_mb"], 0.0, 1e9)?;
    r.gpu_memory_mb = f.number(&["gpu_memory_mb"], 0.0, 1e9)?;
    r.vram_mb = f.number(&["vram_mb"], 0.0, 1e9)?;
    r.ollama_rss_peak_mb = f.number(&["ollama_rss_peak_mb"], 0.0, 1e9)?;
    r.gpu_memory_peak_mb = f.number(&["gpu_memory_peak_mb"], 0.0, 1e9)?;
    r.gpu_free_mb = f.number(&["gpu_free_mb"], 0.0, 1e9)?;
    r.timing_source = match f.string(&["timing_source"])? {
        None => None,
        Some(name) => Some(
            TimingSource::parse(&name)
                .ok_or_else(|| format!("timing_source: {name:?} is not one of server, proxy"))?,
        ),
    };
    r.requested_model = match f.get(&["requested_model"]) {
        None => None,
        Some(_) => Some(f.name(&["requested_model"], "requested_model")?),
    };
    r.route_reason = match f.string(&["route_reason"])? {
        None => None,
        Some(name) => Some(RouteReason::parse(&name).ok_or_else(|| {
            format!("route_reason: {name:?} is not one of recommended, explore, fallback, explicit")
        })?),
    };
    r.attempt = f
        .integer(&["attempt"], 1, u64::from(u32::MAX))?
        .map_or(1, |a| a as u32);
    r.energy_j = f.number(&["energy_j"], 0.0, 1e12)?;
    r.energy_source = f.string(&["energy_source"])?;
    r.host = f.string(&["host"])?;
    if r.tokens_per_second.is_none()
        && let Some(tokens) = r.output_tokens
        && r.processing_time_ms > 0.0
    {
        // The earlier system's throughput: tokens over the whole call. A sub-millisecond
        // time makes an absurd (even infinite) figure that no import would take back and
        // that the statistics cannot serve: then throughput stays unknown.
        let tps = tokens as f64 / (r.processing_time_ms / 1e3);
        r.tokens_per_second = (tps <= MAX_TOKENS_PER_SECOND).then_some(tps);
    }
    if r.success && r.error_kind.is_some() {
        return Err("error_kind: set on a record with success true; drop one of them".into());
    }
    Ok(r)
}

/// Turns one CSV row with the export's header into the JSON object `record_from_json` reads.
pub fn csv_row_to_json(
    header: &csv::StringRecord,
    row: &csv::StringRecord,
) -> Result<Value, String> {
    if row.len() != header.len() {
        return Err(format!(
            "has {} fields, the header has {}",
            row.len(),
            header.len()
        ));
    }
    let mut obj = Map::new();
    for (name, raw) in header.iter().zip(row.iter()) {
        let name = name.trim();
        if !FIELD_NAMES.contains(&name)
            && name != "model_name"
            && name != "tokens_generated"
            && name != "memory_usage_mb"
        {
            continue;
        }
        let value = if raw.is_empty() {
            Value::Null
        } else if matches!(name, "stream" | "success" | "tokens_estimated") {
            match raw.to_ascii_lowercase().as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(format!("{name}: {raw:?} is not true or false")),
            }
        } else if is_numeric(name) {
            match raw.parse::<f64>() {
                Ok(n) if n.fract() == 0.0 && n.abs() < 9e15 => Value::from(n as i64),
                Ok(n) => serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{name}: {raw:?} is not a finite number"))?,
                Err(_) => return Err(format!("{name}: {raw:?} is not a number")),
            }
        } else {
            Value::String(raw.to_string())
        };
        obj.insert(name.to_string(), value);
    }
    Ok(Value::Object(obj))
}

fn is_numeric(name: &str) -> bool {
    name.ends_with("_ms")
        || name.ends_with("_mb")
        || name.ends_with("_tokens")
        || name.ends_with("_bytes")
        || name.ends_with("_per_second")
        || matches!(
            name,
            "http_status" | "quality_score" | "tokens_generated" | "attempt" | "energy_j"
        )
}

fn parse_timestamp(v: &Value) -> Result<DateTime<Utc>, String> {
    match v {
        Value::String(s) => {
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(t.with_timezone(&Utc));
            }
            // The earlier system wrote `datetime.now().isoformat()`: no zone; taken as UTC.
            for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
                    return Ok(t.and_utc());
                }
            }
            Err(format!(
                "timestamp: {s:?} is not an RFC 3339 time like 2026-01-31T12:00:00Z"
            ))
        }
        Value::Number(n) => {
            let secs = n
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 253_402_300_800.0);
            secs.and_then(|s| DateTime::from_timestamp_millis((s * 1e3) as i64))
                .ok_or_else(|| format!("timestamp: {n} is not Unix seconds between 1970 and 9999"))
        }
        other => Err(format!(
            "timestamp: expected an RFC 3339 string or Unix seconds, got {}",
            show(other)
        )),
    }
}

struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    /// The first of `names` present and not null.
    fn get(&self, names: &[&str]) -> Option<&Value> {
        names
            .iter()
            .find_map(|n| self.0.get(*n).filter(|v| !v.is_null()))
    }

    fn which(&self, names: &[&str]) -> String {
        names
            .iter()
            .find(|n| self.0.get(**n).is_some_and(|v| !v.is_null()))
            .unwrap_or(&names[0])
            .to_string()
    }

    fn name(&self, names: &[&str], shown: &str) -> Result<String, String> {
        match self.get(names) {
            Some(Value::String(s))
                if !s.trim().is_empty()
                    && s.chars().count() <= MAX_NAME_LEN
                    && !s.chars().any(char::is_control) =>
            {
                Ok(s.trim().to_string())
            }
            Some(other) => Err(format!(
                "{shown}: must be a non-empty string of at most {MAX_NAME_LEN} characters without control characters, got {}",
                show(other)
            )),
            None => Err(format!("{shown}: required")),
        }
    }

    fn string(&self, names: &[&str]) -> Result<Option<String>, String> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.chars().take(1024).collect())),
            Some(other) => Err(format!(
                "{}: expected a string, got {}",
                self.which(names),
                show(other)
            )),
        }
    }

    fn boolean(&self, names: &[&str]) -> Result<Option<bool>, String> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!(
                "{}: expected true or false, got {}",
                self.which(names),
                show(other)
            )),
        }
    }

    fn number(&self, names: &[&str], min: f64, max: f64) -> Result<Option<f64>, String> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(v) if v.is_finite() && v >= min && v <= max => Ok(Some(v)),
                _ => Err(format!(
                    "{}: {n} is outside {min} to {max}",
                    self.which(names)
                )),
            },
            Some(other) => Err(format!(
                "{}: expected a number from {min} to {max}, got {}",
                self.which(names),
                show(other)
            )),
        }
    }

    fn integer(&self, names: &[&str], min: u64, max: u64) -> Result<Option<u64>, String> {
        match self.get(names) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                    .map(|f| f as u64)
            }) {
                Some(v) if v >= min && v <= max => Ok(Some(v)),
                _ => Err(format!(
                    "{}: {n} is not a whole number from {min} to {max}",
                    self.which(names)
                )),
            },
            Some(other) => Err(format!(
                "{}: expected a whole number, got {}",
                self.which(names),
                show(other)
            )),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{:?}", s.chars().take(40).collect::<String>()),
        Value::Number(n) => n.to_string(),
        other => kind(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> Result<Record, String> {
        record_from_json(&v, Source::Manual, Utc::now())
    }

    #[test]
    fn the_earlier_systems_records_are_read() {
        let r = read(
            json!({"model_name": "llama3.1:8b-instruct", "operation": "photo_evaluation",
            "processing_time_ms": 1234.56, "quality_score": 4.2, "success": true,
            "timestamp": "2025-11-09T10:11:12.123456", "tokens_generated": 100,
            "memory_usage_mb": 5120.5}),
        )
        .expect("valid");
        assert_eq!(r.model, "llama3.1:8b-instruct");
        assert_eq!(r.output_tokens, Some(100));
        assert_eq!(r.ollama_rss_mb, Some(5120.5));
        assert_eq!(r.timestamp.to_rfc3339(), "2025-11-09T10:11:12.123456+00:00");
        let tps = r.tokens_per_second.expect("derived");
        assert!((tps - 100.0 / 1.23456).abs() < 1e-9);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (
                json!({"operation": "x", "processing_time_ms": 1}),
                "model_name: required",
            ),
            (
                json!({"model_name": "", "operation": "x", "processing_time_ms": 1}),
                "model_name",
            ),
            (
                json!({"model_name": "m", "operation": "x", "processing_time_ms": -1}),
                "processing_time_ms",
            ),
            (
                json!({"model_name": "m", "operation": "x", "processing_time_ms": "fast"}),
                "processing_time_ms",
            ),
            (
                json!({"model_name": "m", "operation": "x", "processing_time_ms": 1e308}),
                "processing_time_ms",
            ),
            (
                json!({"model_name": "m", "operation": "x", "processing_time_ms": 1, "quality_score": 6}),
                "quality_score",
            ),
            (
                json!({"model_name": "m", "operation": "x", "processing_time_ms": 1, "quality_score": 0.5}),
                "quality_score",
            ),
            (
                json!({"model_name": "m", "operation": "x", "processing_time_ms": 1, "success": "yes"}),
                "success",
            ),
            (
                json!({"model_name": "m", "operation": "x", "processing_time_ms": 1, "timestamp": "yesterday"}),
                "timestamp",
            ),
            (
                json!({"model_name": "m", "operation": "x", "processing_time_ms": 1, "tokens_generated": 1.5}),
                "tokens_generated",
            ),
            (
                json!({"model_name": "m", "processing_time_ms": 1}),
                "operation",
            ),
            (json!([1, 2]), "JSON object"),
        ];
        for (input, needle) in cases {
            let err = read(input.clone()).expect_err("invalid");
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn throughput_is_derived_only_when_it_is_a_figure_an_import_takes_back() {
        let r = read(
            json!({"model_name": "m", "operation": "x", "processing_time_ms": 1e-300,
                            "tokens_generated": 5}),
        )
        .expect("valid");
        assert_eq!(r.tokens_per_second, None);
        // What the export writes, the import reads.
        let back = read(serde_json::to_value(&r).expect("json")).expect("round trip");
        assert_eq!(back, r);
        let r = read(
            json!({"model_name": "m", "operation": "x", "processing_time_ms": 2000,
                            "tokens_generated": 100}),
        )
        .expect("valid");
        assert_eq!(r.tokens_per_second, Some(50.0));
    }

    #[test]
    fn csv_rows_follow_the_header() {
        let header = csv::StringRecord::from(vec![
            "id",
            "model",
            "operation",
            "processing_time_ms",
            "success",
            "quality_score",
            "stream",
        ]);
        let row = csv::StringRecord::from(vec!["a", "m:7b", "chat", "12.5", "true", "", "false"]);
        let v = csv_row_to_json(&header, &row).expect("row");
        let r = record_from_json(&v, Source::Import, Utc::now()).expect("record");
        assert_eq!(
            (r.id.as_str(), r.processing_time_ms, r.quality_score),
            ("a", 12.5, None)
        );
        let bad = csv::StringRecord::from(vec!["a", "m", "chat", "slow", "true", "", "false"]);
        assert!(
            csv_row_to_json(&header, &bad)
                .expect_err("bad")
                .contains("processing_time_ms")
        );
    }
}
