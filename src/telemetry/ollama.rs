//! Ollama's own view of its models, through the [`OllamaApi`] trait: `GET /api/ps` (loaded
//! models and their VRAM), `POST /api/show` (the weights blob and the architecture, read
//! once per model) and `GET /api/tags` (installed models). [`HttpOllama`] asks the real
//! upstream; [`FakeOllama`] answers tests from memory.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::text::error_chain;

/// How long one telemetry request to Ollama may take. `/api/ps` and `/api/tags` read
/// memory and the models directory; a server that needs longer is busy loading, and the
/// sampler would rather skip a tick than queue behind it.
pub const OLLAMA_API_TIMEOUT: Duration = Duration::from_secs(5);

/// A boxed future of an Ollama answer or the reason in words it failed.
pub type ApiFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// What telemetry asks Ollama.
pub trait OllamaApi: Send + Sync {
    /// `GET /api/ps`: the loaded models.
    fn ps(&self) -> ApiFuture<'_, Vec<PsModel>>;
    /// `POST /api/show {"model": model}`: the facts telemetry needs about one model.
    fn show(&self, model: String) -> ApiFuture<'_, ShowInfo>;
    /// `GET /api/tags`: the installed models.
    fn tags(&self) -> ApiFuture<'_, Vec<TagModel>>;
}

/// The `details` object of `/api/ps` and `/api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ModelDetails {
    /// e.g. "8.0B".
    #[serde(default)]
    pub parameter_size: Option<String>,
    /// e.g. "Q4_K_M".
    #[serde(default)]
    pub quantization_level: Option<String>,
    /// Some versions put the context length here.
    #[serde(default)]
    pub context_length: Option<u64>,
}

/// One loaded model from `/api/ps`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PsModel {
    /// e.g. "llama3.2:latest".
    #[serde(default)]
    pub name: String,
    /// Usually the same as `name`.
    #[serde(default)]
    pub model: String,
    /// The whole footprint in bytes (weights, KV cache, compute graph), wherever it lives.
    #[serde(default)]
    pub size: Option<u64>,
    /// The part of `size` in VRAM, bytes.
    #[serde(default)]
    pub size_vram: Option<u64>,
    /// The manifest digest: changes when the model is pulled again.
    #[serde(default)]
    pub digest: Option<String>,
    /// The context length the runner was started with.
    #[serde(default)]
    pub context_length: Option<u64>,
    /// When Ollama will unload it (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Family, parameter size, quantisation.
    #[serde(default)]
    pub details: ModelDetails,
}

/// One installed model from `/api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TagModel {
    /// e.g. "llama3.2:latest".
    #[serde(default)]
    pub name: String,
    /// Usually the same as `name`.
    #[serde(default)]
    pub model: String,
    /// Bytes on disk.
    #[serde(default)]
    pub size: Option<u64>,
    /// The manifest digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// The trained context length, where this Ollama reports it here.
    #[serde(default)]
    pub context_length: Option<u64>,
    /// Family, parameter size, quantisation.
    #[serde(default)]
    pub details: ModelDetails,
    /// What the model can do: `completion`, `embedding`, `vision`, `tools`, ... (empty
    /// where this Ollama does not say).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// What telemetry keeps from `/api/show`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShowInfo {
    /// The paths of the modelfile's `FROM` lines; the first is the weights blob, which
    /// equals the runner's `--model`.
    pub from_paths: Vec<String>,
    /// `general.parameter_count`.
    pub parameter_count: Option<f64>,
    /// `<arch>.context_length`: the longest context the model was trained for.
    pub trained_context: Option<u64>,
    /// Bytes of f16 KV cache per token of context, from the architecture's layer and
    /// head counts (see [`kv_bytes_per_token`]).
    pub kv_bytes_per_token: Option<f64>,
}

#[derive(Deserialize)]
struct PsResponse {
    #[serde(default)]
    models: Vec<PsModel>,
}

#[derive(Deserialize)]
struct TagsResponse {
    #[serde(default)]
    models: Vec<TagModel>,
}

#[derive(Deserialize)]
struct ShowResponse {
    #[serde(default)]
    modelfile: String,
    #[serde(default)]
    model_info: Option<serde_json::Map<String, Value>>,
}

/// The paths of a modelfile's `FROM` lines, skipping the comments that `ollama show`
/// writes above them (one of which is itself a `# FROM <name>` hint).
pub fn from_paths(modelfile: &str) -> Vec<String> {
    modelfile
        .lines()
        .map(str::trim)
        .filter_map(|line| {
            let (keyword, rest) = line.split_once(char::is_whitespace)?;
            keyword
                .eq_ignore_ascii_case("FROM")
                .then(|| rest.trim().to_owned())
        })
        .filter(|path| !path.is_empty())
        .collect()
}

fn number(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64)
}

/// Bytes of KV cache per token of context, from GGUF metadata as `/api/show` gives it in
/// `model_info`: `2 (K and V) × Σ over layers (kv heads × head dim) × 2 bytes (f16, the
/// default OLLAMA_KV_CACHE_TYPE)`, where head dim is `<arch>.attention.key_length`, else
/// `embedding_length / head_count`. `head_count_kv` may be one number for every layer or
/// an array with one per layer. `None` when a needed key is missing.
pub fn kv_bytes_per_token(info: &serde_json::Map<String, Value>) -> Option<f64> {
    let arch = info.get("general.architecture")?.as_str()?;
    let key = |k: &str| info.get(&format!("{arch}.{k}"));
    let layers = number(key("block_count"))?;
    let head_dim = number(key("attention.key_length")).or_else(|| {
        let embedding = number(key("embedding_length"))?;
        let heads = number(key("attention.head_count"))?;
        (heads > 0.0).then(|| embedding / heads)
    })?;
    let kv_heads_all_layers = match key("attention.head_count_kv")? {
        Value::Array(per_layer) => per_layer.iter().filter_map(Value::as_f64).sum(),
        v => v.as_f64()? * layers,
    };
    let bytes = 2.0 * kv_heads_all_layers * head_dim * 2.0;
    (bytes > 0.0).then_some(bytes)
}

fn show_info(response: ShowResponse) -> ShowInfo {
    let info = response.model_info.unwrap_or_default();
    let arch = info.get("general.architecture").and_then(Value::as_str);
    ShowInfo {
        from_paths: from_paths(&response.modelfile),
        parameter_count: number(info.get("general.parameter_count")),
        trained_context: arch
            .and_then(|a| info.get(&format!("{a}.context_length")))
            .and_then(Value::as_u64),
        kv_bytes_per_token: kv_bytes_per_token(&info),
    }
}

/// The real upstream, over the proxy's HTTP client.
pub struct HttpOllama {
    client: reqwest::Client,
    base: String,
}

impl HttpOllama {
    /// Asks the Ollama at `upstream` (e.g. `http://127.0.0.1:11434`, a path prefix kept).
    pub fn new(client: reqwest::Client, upstream: &str) -> HttpOllama {
        HttpOllama {
            client,
            base: upstream.trim_end_matches('/').to_owned(),
        }
    }

    async fn call(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Vec<u8>, String> {
        let failed = |e: String| format!("{what} failed: {e}");
        let response = request
            .timeout(OLLAMA_API_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(200).collect();
            return Err(failed(format!("HTTP {status}: {text}")));
        }
        Ok(body.to_vec())
    }
}

impl OllamaApi for HttpOllama {
    fn ps(&self) -> ApiFuture<'_, Vec<PsModel>> {
        Box::pin(async move {
            let body = self
                .call(
                    "GET /api/ps",
                    self.client.get(format!("{}/api/ps", self.base)),
                )
                .await?;
            serde_json::from_slice::<PsResponse>(&body)
                .map(|r| r.models)
                .map_err(|e| format!("GET /api/ps answered something unexpected: {e}"))
        })
    }

    fn show(&self, model: String) -> ApiFuture<'_, ShowInfo> {
        Box::pin(async move {
            let body = serde_json::json!({ "model": model }).to_string();
            let request = self
                .client
                .post(format!("{}/api/show", self.base))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            let body = self.call("POST /api/show", request).await?;
            serde_json::from_slice::<ShowResponse>(&body)
                .map(show_info)
                .map_err(|e| format!("POST /api/show answered something unexpected: {e}"))
        })
    }

    fn tags(&self) -> ApiFuture<'_, Vec<TagModel>> {
        Box::pin(async move {
            let url = format!("{}/api/tags", self.base);
            let body = self.call("GET /api/tags", self.client.get(url)).await?;
            serde_json::from_slice::<TagsResponse>(&body)
                .map(|r| r.models)
                .map_err(|e| format!("GET /api/tags answered something unexpected: {e}"))
        })
    }
}

/// The test double of Ollama's API (tests, and the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
mod fake {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    #[derive(Default)]
    struct FakeState {
        ps: Option<Result<Vec<PsModel>, String>>,
        tags: Option<Result<Vec<TagModel>, String>>,
        shows: HashMap<String, ShowInfo>,
        show_calls: Vec<String>,
    }

    /// An Ollama answered from memory. Clones share the answers, so a test keeps one clone
    /// to change them and to count `/api/show` calls.
    #[derive(Clone, Default)]
    pub struct FakeOllama {
        state: Arc<Mutex<FakeState>>,
    }

    impl FakeOllama {
        /// No models loaded or installed.
        pub fn new() -> FakeOllama {
            FakeOllama::default()
        }

        fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
            f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
        }

        /// Sets the `/api/ps` answer.
        pub fn set_ps(&self, answer: Result<Vec<PsModel>, String>) {
            self.with(|s| s.ps = Some(answer));
        }

        /// Sets the `/api/tags` answer.
        pub fn set_tags(&self, answer: Result<Vec<TagModel>, String>) {
            self.with(|s| s.tags = Some(answer));
        }

        /// Sets the `/api/show` answer for `model`; other models answer 404.
        pub fn set_show(&self, model: &str, info: ShowInfo) {
            self.with(|s| s.shows.insert(model.to_owned(), info));
        }

        /// The models `/api/show` was asked about, in order.
        pub fn show_calls(&self) -> Vec<String> {
            self.with(|s| s.show_calls.clone())
        }
    }

    impl OllamaApi for FakeOllama {
        fn ps(&self) -> ApiFuture<'_, Vec<PsModel>> {
            let answer = self.with(|s| s.ps.clone().unwrap_or_else(|| Ok(Vec::new())));
            Box::pin(async move { answer })
        }

        fn show(&self, model: String) -> ApiFuture<'_, ShowInfo> {
            let answer = self.with(|s| {
                s.show_calls.push(model.clone());
                s.shows.get(&model).cloned().ok_or_else(|| {
                    format!("POST /api/show failed: HTTP 404 Not Found: model '{model}' not found")
                })
            });
            Box::pin(async move { answer })
        }

        fn tags(&self) -> ApiFuture<'_, Vec<TagModel>> {
            let answer = self.with(|s| s.tags.clone().unwrap_or_else(|| Ok(Vec::new())));
            Box::pin(async move { answer })
        }
    }
}
#[cfg(any(test, feature = "test-support"))]
pub use fake::FakeOllama;

#[cfg(test)]
mod tests {
    use super::*;

    const MODELFILE: &str = "# Modelfile generated by \"ollama show\"\n\
        # To build a new Modelfile based on this, replace FROM with:\n\
        # FROM llama3.2:latest\n\n\
        FROM /usr/share/ollama/.ollama/models/blobs/sha256-dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff\n\
        TEMPLATE \"\"\"{{ .Prompt }}\"\"\"\n\
        PARAMETER stop <|eot_id|>\n";

    #[test]
    fn reads_from_lines_and_skips_comments() {
        assert_eq!(
            from_paths(MODELFILE),
            vec![
                "/usr/share/ollama/.ollama/models/blobs/sha256-dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff"
            ]
        );
        assert_eq!(
            from_paths("from /a b/sha256-1\nFROM  /p2 \nFROMAGE x"),
            vec!["/a b/sha256-1", "/p2"]
        );
    }

    #[test]
    fn kv_cache_per_token_from_model_info() {
        // llama3.1:8b: 32 layers × 8 KV heads × head dim 4096/32 = 128, K and V, f16.
        let info = serde_json::json!({
            "general.architecture": "llama",
            "general.parameter_count": 8030261248u64,
            "llama.block_count": 32,
            "llama.attention.head_count": 32,
            "llama.attention.head_count_kv": 8,
            "llama.embedding_length": 4096,
            "llama.context_length": 131072
        });
        let map = info.as_object().expect("object").clone();
        assert_eq!(kv_bytes_per_token(&map), Some(131_072.0));
        let parsed = show_info(ShowResponse {
            modelfile: MODELFILE.into(),
            model_info: Some(map),
        });
        assert_eq!(parsed.trained_context, Some(131_072));
        assert_eq!(parsed.parameter_count, Some(8_030_261_248.0));

        // key_length wins over embedding/heads; per-layer KV heads are summed.
        let info = serde_json::json!({
            "general.architecture": "gemma3",
            "gemma3.block_count": 3,
            "gemma3.attention.key_length": 256,
            "gemma3.attention.head_count_kv": [4, 4, 0]
        });
        assert_eq!(
            kv_bytes_per_token(info.as_object().expect("object")),
            Some(2.0 * 8.0 * 256.0 * 2.0)
        );
        assert_eq!(kv_bytes_per_token(&serde_json::Map::new()), None);
    }

    async fn fake_upstream() -> String {
        use axum::routing::{get, post};
        let app = axum::Router::new()
            .route(
                "/api/ps",
                get(|| async {
                    axum::Json(serde_json::json!({"models": [{
                        "name": "llama3.2:latest", "model": "llama3.2:latest", "size": 3_500_000_000u64,
                        "digest": "a80c4f17acd5", "details": {"parameter_size": "3.2B",
                        "quantization_level": "Q4_K_M"}, "expires_at": "2026-08-21T17:20:24Z",
                        "size_vram": 3_400_000_000u64, "context_length": 4096
                    }]}))
                }),
            )
            .route(
                "/api/show",
                post(|body: axum::Json<Value>| async move {
                    if body["model"] == "llama3.2:latest" {
                        Ok(axum::Json(serde_json::json!({
                            "modelfile": MODELFILE,
                            "model_info": {"general.architecture": "llama", "llama.context_length": 131072}
                        })))
                    } else {
                        Err((axum::http::StatusCode::NOT_FOUND, r#"{"error":"model not found"}"#))
                    }
                }),
            )
            .route(
                "/api/tags",
                get(|| async {
                    axum::Json(serde_json::json!({"models": [{"name": "qwen3:8b", "size": 5_200_000_000u64,
                        "details": {"parameter_size": "8.2B"}}]}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn http_client_reads_the_documented_shapes() {
        let api = HttpOllama::new(reqwest::Client::new(), &fake_upstream().await);
        let ps = api.ps().await.expect("ps");
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].name, "llama3.2:latest");
        assert_eq!(ps[0].size_vram, Some(3_400_000_000));
        assert_eq!(ps[0].context_length, Some(4096));
        let show = api.show("llama3.2:latest".into()).await.expect("show");
        assert!(show.from_paths[0].ends_with(
            "/blobs/sha256-dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff"
        ));
        assert_eq!(show.trained_context, Some(131_072));
        let missing = api.show("nope".into()).await.expect_err("404");
        assert!(
            missing.starts_with("POST /api/show failed: HTTP 404"),
            "{missing}"
        );
        let tags = api.tags().await.expect("tags");
        assert_eq!(tags[0].details.parameter_size.as_deref(), Some("8.2B"));
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_reason_not_a_panic() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let api = HttpOllama::new(reqwest::Client::new(), &format!("http://{addr}"));
        let reason = api.ps().await.expect_err("nothing listens");
        assert!(reason.starts_with("GET /api/ps failed: "), "{reason}");
    }
}
