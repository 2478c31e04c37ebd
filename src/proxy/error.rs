//! The one place where the proxy's own failures become HTTP answers, in the shape the
//! client of that route expects: `{"error":"..."}` on Ollama's native routes, the
//! OpenAI shape on `/v1/*`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A JSON error answer in the route's own shape.
pub fn error_response(status: StatusCode, openai_shape: bool, message: &str) -> Response {
    let body = if openai_shape {
        let kind = if status.is_client_error() {
            "invalid_request_error"
        } else {
            "api_error"
        };
        json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
    } else {
        json!({ "error": message })
    };
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn shapes_follow_the_route() {
        let native = error_response(StatusCode::BAD_GATEWAY, false, "down");
        assert_eq!(native.status(), 502);
        let body = native.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], br#"{"error":"down"}"#);
        let openai = error_response(StatusCode::GATEWAY_TIMEOUT, true, "slow");
        let body = openai.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"]["message"], "slow");
        assert_eq!(v["error"]["type"], "api_error");
    }
}
