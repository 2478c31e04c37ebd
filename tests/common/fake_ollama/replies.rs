//! Response shapes shared by the handlers: Go-style JSON, and the native, OpenAI and
//! Anthropic errors.

use super::*;

/// JSON as Go's `encoding/json` writes it: HTML-sensitive characters and the JavaScript
/// line separators escaped (they can only occur inside strings, so a plain replace is safe).
pub(super) fn go_json(value: &impl Serialize) -> Vec<u8> {
    let text = serde_json::to_string(value).expect("fake replies serialize");
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text.into_bytes();
    }
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into_bytes()
}

/// gin's `c.JSON`: `application/json; charset=utf-8`, no trailing newline.
pub(super) fn gin_json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = go_json(value);
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Go's `json.NewEncoder(w).Encode`, as Ollama's compatibility middlewares write:
/// `application/json` and a trailing newline.
pub(super) fn encoder_json(status: StatusCode, value: &impl Serialize) -> Response {
    let mut body = go_json(value);
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(super) fn native_error(status: StatusCode, message: &str) -> Response {
    gin_json(status, &json!({ "error": message }))
}

pub(super) fn not_found_model(model: &str) -> Response {
    native_error(StatusCode::NOT_FOUND, &format!("model '{model}' not found"))
}

#[derive(Serialize)]
pub(super) struct OpenAiError<'a> {
    pub(super) error: OpenAiErrorBody<'a>,
}

#[derive(Serialize)]
pub(super) struct OpenAiErrorBody<'a> {
    pub(super) message: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) param: Option<()>,
    pub(super) code: Option<()>,
}

/// The OpenAI middleware's error: a 400 it raises itself is `invalid_request_error`; an
/// error from the native handler keeps its status but is typed `api_error` (Ollama wraps it
/// as a 500).
pub(super) fn openai_error(status: StatusCode, message: &str) -> Response {
    let kind = if status == StatusCode::BAD_REQUEST {
        "invalid_request_error"
    } else {
        "api_error"
    };
    let error = OpenAiErrorBody {
        message,
        kind,
        param: None,
        code: None,
    };
    encoder_json(status, &OpenAiError { error })
}

#[derive(Serialize)]
pub(super) struct AnthropicError<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) error: AnthropicErrorBody<'a>,
    pub(super) request_id: String,
}

#[derive(Serialize)]
pub(super) struct AnthropicErrorBody<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) message: &'a str,
}

/// The Anthropic middleware's error; handler errors come out as `api_error`, as in Ollama.
pub(super) fn anthropic_error(status: StatusCode, message: &str, request_id: String) -> Response {
    let kind = if status == StatusCode::BAD_REQUEST {
        "invalid_request_error"
    } else {
        "api_error"
    };
    let error = AnthropicError {
        kind: "error",
        error: AnthropicErrorBody { kind, message },
        request_id,
    };
    encoder_json(status, &error)
}

/// A response whose body fails at once: hyper drops the connection mid-response.
pub(super) fn hangup_reply(content_type: &'static str) -> Response {
    let failure = futures_util::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the fake Ollama hung up",
        ))
    });
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(failure),
    )
        .into_response()
}
