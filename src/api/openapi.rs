//! `GET /openapi.json`: the API's OpenAPI 3 document, generated from the handlers'
//! `#[utoipa::path]` attributes and the answer types' `ToSchema` derives, so it cannot drift
//! from the code. `tests/openapi.rs` checks that it lists exactly the routes
//! [`super::served_routes`] serves and runs schemathesis against it.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::{alerts, bench, export, health, predict, query, records, routing};

/// The document. Paths are absolute (`/api/model-performance/...`), so the document holds
/// for the sidecar whether the API shares the proxy's port or has its own.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ollameter",
        description = "Statistics, comparison and recommendation over the inference calls \
                       ollameter measured. Model names contain `/` and `:`; routes that take \
                       one read it from the rest of the path. Errors are `{\"error\": \"...\"}`.",
    ),
    paths(
        health::health,
        records::record,
        records::import,
        records::set_quality,
        query::all_statistics,
        query::model_statistics,
        query::compare,
        query::recommend,
        predict::predict,
        routing::routing,
        query::trend,
        query::insights,
        alerts::alerts,
        export::export,
        records::clear_model,
        records::clear_old,
        openapi_json,
        health::system,
        health::metrics,
        bench::start,
        bench::status,
        bench::stop,
    ),
    tags(
        (name = "meta", description = "The sidecar itself"),
        (name = "records", description = "Writing, importing and exporting records"),
        (name = "statistics", description = "Statistics, comparison, recommendation, trends, insights"),
        (name = "admin", description = "Deleting records"),
        (name = "benchmark", description = "Measuring models on prompts before traffic does"),
    )
)]
pub struct ApiDoc;

/// Documented routes that no router serves: none now. The route test allows exactly these
/// to be missing from [`super::served_routes`]; schemathesis skips them.
pub const PENDING_ROUTES: &[(&str, &str)] = &[];

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"the OpenAPI document: {e}\"}}"))
    });
    &JSON
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/api/model-performance/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object))
)]
pub async fn openapi_json() -> Response {
    let mut response = document().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_is_openapi_3_and_every_reference_resolves() {
        let doc: Value = serde_json::from_str(super::document()).expect("JSON");
        assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r}: not a local schema"));
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{r} does not resolve"
            );
        }
    }
}
