//! `GET /export`: every record (or one model's, or a window's) as JSON, NDJSON or CSV,
//! streamed from the store as it is read, never built in memory.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;

use super::ApiState;
use super::error::{ApiError, ErrorBody};
use super::params::Params;
use crate::record::{FIELD_NAMES, Record};

/// Bytes gathered before a chunk is sent: large enough for few syscalls, small enough to
/// keep memory flat.
const CHUNK_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Ndjson,
    Csv,
}

/// `/export`'s query parameters (documentation; read through [`Params`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// The format; `json` when absent.
    #[param(inline)]
    pub format: Option<ExportFormat>,
    /// Only this model's records.
    pub model: Option<String>,
    /// Only records of calls served by this upstream host (by name).
    pub host: Option<String>,
    /// Only records of the last this many hours (above 0, at most 87600).
    #[param(exclusive_minimum = 0.0, maximum = 87_600.0)]
    pub duration_hours: Option<f64>,
}

/// A format `/export` writes.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON array of records.
    Json,
    /// One record per line.
    Ndjson,
    /// A header of the record's field names, then one row per record.
    Csv,
}

/// The export handler.
#[utoipa::path(
    get,
    path = "/api/model-performance/export",
    tag = "records",
    params(ExportQuery),
    responses(
        (status = 200, description = "The records, oldest first, streamed as they are read",
         content(
            (Vec<Record> = "application/json"),
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 400, description = "A bad query parameter, named", body = ErrorBody),
    )
)]
pub async fn export(State(state): State<ApiState>, params: Params) -> Result<Response, ApiError> {
    let format = match params.text("format").unwrap_or("json") {
        "json" => Format::Json,
        "ndjson" => Format::Ndjson,
        "csv" => Format::Csv,
        other => {
            return Err(ApiError::bad(format!(
                "format: {other:?} is not one of json, ndjson, csv"
            )));
        }
    };
    let since = params
        .hours("duration_hours")?
        .map(|h| Utc::now() - chrono::Duration::milliseconds((h * 3_600_000.0) as i64));
    let model = params.text("model").map(str::to_string);
    let host = params.text("host").map(str::to_string);
    // Opened here so a store that cannot be read answers with an error status, not a
    // cut stream; on the blocking pool, as connecting to PostgreSQL blocks.
    let location = state.store.clone();
    let mut reader = tokio::task::spawn_blocking(move || location.open_reader()).await??;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = Writer {
            buf: Vec::with_capacity(CHUNK_BYTES),
            tx,
            format,
            first: true,
            open: true,
        };
        out.start();
        let result = reader.each_record(model.as_deref(), since, &mut |r| {
            if host.as_ref().is_some_and(|h| r.host.as_ref() != Some(h)) {
                return true;
            }
            out.record(&r)
        });
        if let Err(e) = result {
            tracing::error!(error = %e, "export stopped");
            let _ = out
                .tx
                .blocking_send(Err(std::io::Error::other(e.to_string())));
            return;
        }
        out.end();
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let (content_type, extension) = match format {
        Format::Json => ("application/json", "json"),
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"ollameter-records.{extension}\""
    )) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

struct Writer {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    format: Format,
    first: bool,
    /// False once the client has gone: stop reading.
    open: bool,
}

impl Writer {
    fn start(&mut self) {
        match self.format {
            Format::Json => self.buf.extend_from_slice(b"["),
            Format::Csv => {
                self.buf.extend_from_slice(FIELD_NAMES.join(",").as_bytes());
                self.buf.extend_from_slice(b"\n");
            }
            Format::Ndjson => {}
        }
    }

    /// Adds a record; false stops the export (the client went away).
    fn record(&mut self, r: &Record) -> bool {
        match self.format {
            Format::Json => {
                self.buf
                    .extend_from_slice(if self.first { b"\n" } else { b",\n" });
                let _ = serde_json::to_writer(&mut self.buf, r);
            }
            Format::Ndjson => {
                let _ = serde_json::to_writer(&mut self.buf, r);
                self.buf.push(b'\n');
            }
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut self.buf);
                let _ = w.serialize(r);
                let _ = w.flush();
            }
        }
        self.first = false;
        if self.buf.len() >= CHUNK_BYTES {
            self.flush();
        }
        self.open
    }

    fn flush(&mut self) {
        if self.buf.is_empty() || !self.open {
            return;
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        if self.tx.blocking_send(Ok(chunk)).is_err() {
            self.open = false;
        }
    }

    fn end(mut self) {
        if self.format == Format::Json {
            self.buf
                .extend_from_slice(if self.first { b"]\n" } else { b"\n]\n" });
        }
        self.flush();
    }
}
