//! Reading an import body (`POST /import`, `ollameter import`): the format guessed when
//! none is named, and NDJSON, a JSON document (a list, `{"records": [...]}` or the earlier
//! system's file) or the export's CSV turned into records, each refused row kept with
//! where and why. Pure: bytes in, records out; the handler in `records` stores them.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::input::{csv_row_to_json, record_from_json};
use crate::record::{Record, Source};

/// One row an import refused.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    /// Where: `line 7` (NDJSON, CSV) or `records[3]` (JSON).
    pub at: String,
    /// Why, naming the field.
    pub error: String,
}

/// The format of an import body that names none: from `Content-Type`, else from its first
/// byte (`[` JSON, `{` JSON or NDJSON, anything else CSV).
pub fn sniff(content_type: &str, body: &[u8]) -> &'static str {
    let ct = content_type.to_ascii_lowercase();
    if ct.starts_with("text/csv") {
        return "csv";
    }
    if ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl") {
        return "ndjson";
    }
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&body[..0], |i| &body[i..]);
    match start.first() {
        Some(b'[') => "json",
        Some(b'{') => {
            // One object is a JSON document; several objects on lines are NDJSON.
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
                "json"
            } else {
                "ndjson"
            }
        }
        _ => "csv",
    }
}

/// The records read, the rows refused, and the format read.
pub type Parsed = (Vec<Record>, Vec<Rejection>, &'static str);

/// Reads an import body in `format` (`json`, `ndjson`, `csv`): each row becomes a record or a
/// rejection naming where and why. A body that holds no records at all is an error.
pub fn parse_import(format: &str, body: &[u8]) -> Result<Parsed, String> {
    let now = Utc::now();
    let mut records = Vec::new();
    let mut rejected = Vec::new();
    let mut take = |at: String, value: Result<Value, String>| match value
        .and_then(|v| record_from_json(&v, Source::Import, now))
    {
        Ok(r) => records.push(r),
        Err(error) => rejected.push(Rejection { at, error }),
    };
    let format = match format {
        "ndjson" => {
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                take(
                    format!("line {}", i + 1),
                    serde_json::from_slice(line).map_err(|e| format!("not valid JSON: {e}")),
                );
            }
            "ndjson"
        }
        "csv" => {
            let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(body);
            let header = reader
                .headers()
                .map_err(|e| format!("CSV header: {e}"))?
                .clone();
            if !header.iter().any(|h| h == "model" || h == "model_name") {
                return Err(
                    "CSV header: needs the export's columns (model, operation, processing_time_ms, ...)"
                        .into(),
                );
            }
            for (i, row) in reader.records().enumerate() {
                // Line numbers count the header as line 1.
                let at = format!("line {}", i + 2);
                match row {
                    Ok(row) => take(at, csv_row_to_json(&header, &row)),
                    Err(e) => take(at, Err(e.to_string())),
                }
            }
            "csv"
        }
        _ => {
            let doc: Value = serde_json::from_slice(body)
                .map_err(|e| format!("request body: not valid JSON: {e}"))?;
            let mut rows = Vec::new();
            collect_json_records(&doc, "records".to_string(), &mut rows)?;
            for (at, row) in rows {
                take(at, Ok(row));
            }
            "json"
        }
    };
    Ok((records, rejected, format))
}

/// Finds the records in a JSON document: a list of records; `{"records": ...}`; or the
/// earlier system's file, an object of model name -> list of records (the model name is
/// filled in from the key when a record lacks it).
fn collect_json_records(
    doc: &Value,
    path: String,
    out: &mut Vec<(String, Value)>,
) -> Result<(), String> {
    match doc {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                out.push((format!("{path}[{i}]"), item.clone()));
            }
            Ok(())
        }
        Value::Object(map) if map.contains_key("records") => {
            collect_json_records(&map["records"], "records".into(), out)
        }
        Value::Object(map) if map.contains_key("model_name") || map.contains_key("model") => {
            out.push((path, doc.clone()));
            Ok(())
        }
        Value::Object(map) => {
            let mut any = false;
            for (model, value) in map {
                if let Value::Array(items) = value {
                    any = true;
                    for (i, item) in items.iter().enumerate() {
                        let mut item = item.clone();
                        if let Value::Object(o) = &mut item
                            && !o.contains_key("model_name")
                            && !o.contains_key("model")
                        {
                            o.insert("model_name".into(), Value::String(model.clone()));
                        }
                        out.push((format!("{path}.{model}[{i}]"), item));
                    }
                }
            }
            if any {
                Ok(())
            } else {
                Err("request body: no records found: expected a list of records, {\"records\": [...]}, or {\"model\": [records]}".into())
            }
        }
        _ => Err("request body: expected a list of records or an object holding them".into()),
    }
}
