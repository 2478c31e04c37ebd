//! Which requests are inference calls, and what their bodies say (model, stream flag).

use axum::http::Method;
use serde::Deserialize;

use crate::decode::Api;

/// The inference API of a request, or `None` for routes that are only forwarded.
pub fn classify(method: &Method, path: &str) -> Option<Api> {
    if method != Method::POST {
        return None;
    }
    Some(match path {
        "/api/generate" => Api::Generate,
        "/api/chat" => Api::Chat,
        "/api/embed" => Api::Embed,
        "/api/embeddings" => Api::Embeddings,
        "/v1/chat/completions" => Api::OpenAiChat,
        "/v1/completions" => Api::OpenAiCompletions,
        "/v1/embeddings" => Api::OpenAiEmbeddings,
        "/v1/messages" => Api::AnthropicMessages,
        "/v1/responses" => Api::OpenAiResponses,
        _ => return None,
    })
}

/// The operation a call counts as when the client names none: the kind of work, so the
/// same work on the native and the OpenAI-compatible routes is compared together.
pub fn default_operation(api: Api) -> &'static str {
    match api {
        Api::Generate | Api::OpenAiCompletions => "generate",
        Api::Chat | Api::OpenAiChat | Api::AnthropicMessages | Api::OpenAiResponses => "chat",
        Api::Embed | Api::Embeddings | Api::OpenAiEmbeddings => "embed",
    }
}

/// Whether the API answers in the OpenAI/Anthropic error shape rather than Ollama's.
pub fn is_openai_shape(api: Option<Api>, path: &str) -> bool {
    match api {
        Some(api) => !matches!(
            api,
            Api::Generate | Api::Chat | Api::Embed | Api::Embeddings
        ),
        None => path.starts_with("/v1/"),
    }
}

/// What the proxy reads from an instrumented request body. Unknown fields (prompts,
/// images) are skipped by serde without being kept.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RequestFacts {
    /// The `model` field; empty when absent or not a string.
    pub model: String,
    /// Whether the answer will be streamed, by the API's default when the body says nothing.
    pub stream: bool,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    model: Option<serde_json::Value>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
}

/// Reads model and stream from a request body. Never fails: a body that is not JSON is
/// still forwarded, and Ollama answers it with its own 400.
pub fn request_facts(api: Api, body: &[u8]) -> RequestFacts {
    // Native routes stream unless told not to; the OpenAI-compatible ones are the reverse.
    let default_stream = matches!(api, Api::Generate | Api::Chat);
    let streams = !matches!(api, Api::Embed | Api::Embeddings | Api::OpenAiEmbeddings);
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => RequestFacts {
            model: match b.model {
                Some(serde_json::Value::String(m)) => m,
                _ => String::new(),
            },
            stream: streams
                && match b.stream {
                    Some(serde_json::Value::Bool(s)) => s,
                    _ => default_stream,
                },
        },
        Err(_) => RequestFacts {
            model: String::new(),
            stream: streams && default_stream,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_post_on_inference_paths_is_instrumented() {
        assert_eq!(classify(&Method::POST, "/api/chat"), Some(Api::Chat));
        assert_eq!(
            classify(&Method::POST, "/v1/responses"),
            Some(Api::OpenAiResponses)
        );
        assert_eq!(classify(&Method::GET, "/api/chat"), None);
        assert_eq!(classify(&Method::POST, "/api/pull"), None);
        assert_eq!(classify(&Method::POST, "/api/chat/"), None);
    }

    #[test]
    fn stream_defaults_differ_by_api() {
        let native = request_facts(Api::Generate, br#"{"model":"llama3.2","prompt":"hi"}"#);
        assert_eq!(
            native,
            RequestFacts {
                model: "llama3.2".into(),
                stream: true
            }
        );
        let off = request_facts(Api::Chat, br#"{"model":"m","stream":false}"#);
        assert!(!off.stream);
        let openai = request_facts(Api::OpenAiChat, br#"{"model":"m"}"#);
        assert!(!openai.stream);
        let on = request_facts(Api::OpenAiChat, br#"{"model":"m","stream":true}"#);
        assert!(on.stream);
        let embed = request_facts(Api::Embed, br#"{"model":"m","stream":true}"#);
        assert!(!embed.stream, "embeddings never stream");
    }

    #[test]
    fn odd_bodies_never_fail() {
        assert_eq!(request_facts(Api::Chat, b"not json").model, "");
        assert_eq!(request_facts(Api::Chat, br#"{"model":42}"#).model, "");
        assert_eq!(request_facts(Api::Chat, br#"[1,2]"#).model, "");
    }
}
