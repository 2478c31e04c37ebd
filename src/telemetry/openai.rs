//! An OpenAI-compatible server's own view of what it serves, through the [`OpenAiApi`]
//! trait: `GET /v1/models` (the served models; llama.cpp adds `meta.n_ctx` and the file
//! size) and llama.cpp's `GET /props` (model path, context size, slots, build). Servers
//! without `/props` (vLLM, LM Studio, SGLang) answer 404, which is not an error.
//! [`HttpOpenAi`] asks the real upstream; [`FakeOpenAi`] answers tests from memory.

use serde::Serialize;
use serde_json::Value;

use super::ollama::{ApiFuture, OLLAMA_API_TIMEOUT};
use crate::text::error_chain;

/// What telemetry asks an OpenAI-compatible server.
pub trait OpenAiApi: Send + Sync {
    /// `GET /v1/models`: the models it serves.
    fn models(&self) -> ApiFuture<'_, Vec<ServedModel>>;
    /// `GET /props` (llama.cpp): `None` where the server has no such route.
    fn props(&self) -> ApiFuture<'_, Option<ServerProps>>;
}

/// One model from `/v1/models`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServedModel {
    /// The name clients use (`id`).
    pub id: String,
    /// llama.cpp's `meta.n_ctx`: the context size of one slot.
    pub context_length: Option<u64>,
    /// llama.cpp's `meta.size`: the weights' size in bytes.
    pub size_bytes: Option<u64>,
    /// vLLM's `max_model_len`.
    pub max_model_len: Option<u64>,
}

/// What llama.cpp's `/props` says about the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerProps {
    /// The weights file (`--model`).
    pub model_path: Option<String>,
    /// The model's name as the server gives it (`--alias`, else the file's).
    pub model_alias: Option<String>,
    /// `default_generation_settings.n_ctx`: the context size of one slot.
    pub n_ctx: Option<u64>,
    /// `total_slots`: how many requests it runs at once (`-np`).
    pub total_slots: Option<u64>,
    /// `build_info`, e.g. `b6123-abcdef0`.
    pub build_info: Option<String>,
}

fn u64_at(value: &Value, path: &[&str]) -> Option<u64> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_u64)
}

fn str_at(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The models in a `/v1/models` answer (`{"data": [{"id": ...}, ...]}`); entries without
/// an `id` are skipped.
pub fn parse_models(body: &[u8]) -> Result<Vec<ServedModel>, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("GET /v1/models answered something that is not JSON: {e}"))?;
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or("GET /v1/models answered without a `data` list")?;
    Ok(data
        .iter()
        .filter_map(|m| {
            Some(ServedModel {
                id: str_at(m, "id")?,
                context_length: u64_at(m, &["meta", "n_ctx"]),
                size_bytes: u64_at(m, &["meta", "size"]),
                max_model_len: u64_at(m, &["max_model_len"]),
            })
        })
        .collect())
}

/// The facts in a llama.cpp `/props` answer; `None` when it is not one (no object).
pub fn parse_props(body: &[u8]) -> Option<ServerProps> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.as_object()?;
    Some(ServerProps {
        model_path: str_at(&value, "model_path"),
        model_alias: str_at(&value, "model_alias"),
        n_ctx: u64_at(&value, &["default_generation_settings", "n_ctx"])
            .or_else(|| u64_at(&value, &["n_ctx"])),
        total_slots: u64_at(&value, &["total_slots"]),
        build_info: str_at(&value, "build_info"),
    })
}

/// The real upstream, over the telemetry's HTTP client.
pub struct HttpOpenAi {
    client: reqwest::Client,
    base: String,
}

impl HttpOpenAi {
    /// Asks the server at `upstream` (e.g. `http://127.0.0.1:8080`, a path prefix kept).
    pub fn new(client: reqwest::Client, upstream: &str) -> HttpOpenAi {
        HttpOpenAi {
            client,
            base: upstream.trim_end_matches('/').to_owned(),
        }
    }

    async fn get(&self, path: &str) -> Result<(u16, bytes::Bytes), String> {
        let failed = |e: String| format!("GET {path} failed: {e}");
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .timeout(OLLAMA_API_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        Ok((status, body))
    }
}

fn status_error(path: &str, status: u16, body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    let hint = if status == 401 || status == 403 {
        " (the server wants an API key, which telemetry does not send)"
    } else {
        ""
    };
    format!("GET {path} failed: HTTP {status}{hint}: {text}")
}

impl OpenAiApi for HttpOpenAi {
    fn models(&self) -> ApiFuture<'_, Vec<ServedModel>> {
        Box::pin(async move {
            let (status, body) = self.get("/v1/models").await?;
            if !(200..300).contains(&status) {
                return Err(status_error("/v1/models", status, &body));
            }
            parse_models(&body)
        })
    }

    fn props(&self) -> ApiFuture<'_, Option<ServerProps>> {
        Box::pin(async move {
            let (status, body) = self.get("/props").await?;
            match status {
                200..=299 => Ok(parse_props(&body)),
                404 | 405 | 501 => Ok(None),
                _ => Err(status_error("/props", status, &body)),
            }
        })
    }
}

/// The test double of an OpenAI-compatible server's API (tests, and `test-support`).
#[cfg(any(test, feature = "test-support"))]
mod fake {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    #[derive(Default)]
    struct FakeState {
        models: Option<Result<Vec<ServedModel>, String>>,
        props: Option<ServerProps>,
        props_calls: usize,
    }

    /// A server answered from memory; clones share the answers.
    #[derive(Clone, Default)]
    pub struct FakeOpenAi {
        state: Arc<Mutex<FakeState>>,
    }

    impl FakeOpenAi {
        /// No models, no `/props`.
        pub fn new() -> FakeOpenAi {
            FakeOpenAi::default()
        }

        fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
            f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
        }

        /// Sets the `/v1/models` answer.
        pub fn set_models(&self, answer: Result<Vec<ServedModel>, String>) {
            self.with(|s| s.models = Some(answer));
        }

        /// Sets the `/props` answer (`None`: 404).
        pub fn set_props(&self, props: Option<ServerProps>) {
            self.with(|s| s.props = props);
        }

        /// How many times `/props` was asked.
        pub fn props_calls(&self) -> usize {
            self.with(|s| s.props_calls)
        }
    }

    impl OpenAiApi for FakeOpenAi {
        fn models(&self) -> ApiFuture<'_, Vec<ServedModel>> {
            let answer = self.with(|s| s.models.clone().unwrap_or_else(|| Ok(Vec::new())));
            Box::pin(async move { answer })
        }

        fn props(&self) -> ApiFuture<'_, Option<ServerProps>> {
            let answer = self.with(|s| {
                s.props_calls += 1;
                s.props.clone()
            });
            Box::pin(async move { Ok(answer) })
        }
    }
}
#[cfg(any(test, feature = "test-support"))]
pub use fake::FakeOpenAi;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llama_cpp_and_vllm_model_lists() {
        // llama.cpp (trimmed from a real answer): an Ollama-shaped `models` beside `data`.
        let llama = br#"{"models":[{"name":"m.gguf","model":"m.gguf"}],"object":"list",
            "data":[{"id":"SmolLM2-135M-Instruct","object":"model","owned_by":"llamacpp",
            "meta":{"vocab_type":2,"n_vocab":49152,"n_ctx":2048,"n_ctx_train":8192,
            "n_embd":576,"n_params":134515008,"size":90846464}}]}"#;
        assert_eq!(
            parse_models(llama),
            Ok(vec![ServedModel {
                id: "SmolLM2-135M-Instruct".into(),
                context_length: Some(2048),
                size_bytes: Some(90_846_464),
                max_model_len: None,
            }])
        );
        let vllm = br#"{"object":"list","data":[{"id":"Qwen/Qwen2.5-1.5B","object":"model",
            "max_model_len":32768},{"object":"model"}]}"#;
        let models = parse_models(vllm).expect("vllm");
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].max_model_len, Some(32768));
        let err = parse_models(b"{}").expect_err("no data");
        assert!(err.contains("`data`"), "{err}");
        assert!(parse_models(b"<html>").is_err());
    }

    #[test]
    fn reads_llama_cpp_props() {
        let body = br#"{"default_generation_settings":{"n_ctx":2048,"params":{}},
            "total_slots":4,"model_alias":"smol","model_path":"/m/smol.gguf",
            "build_info":"b1-abc","chat_template":"..."}"#;
        assert_eq!(
            parse_props(body),
            Some(ServerProps {
                model_path: Some("/m/smol.gguf".into()),
                model_alias: Some("smol".into()),
                n_ctx: Some(2048),
                total_slots: Some(4),
                build_info: Some("b1-abc".into()),
            })
        );
        assert_eq!(parse_props(b"[1]"), None);
        assert_eq!(parse_props(b"not json"), None);
    }
}
