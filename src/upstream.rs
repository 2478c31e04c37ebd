//! What kind of server the upstream is, and how to ask it whether it is up.
//!
//! Two kinds: `ollama` (answers `GET /api/version`) and `openai`, any OpenAI-compatible
//! server (llama.cpp's `llama-server`, vLLM, SGLang, LM Studio: answers `GET /v1/models`).
//! The kind is either fixed by configuration (`upstream.kind`) or detected: at start, and
//! again whenever a health probe finds the upstream down and then back (a reconnect may be
//! a different server on the same port). The kind is a value per upstream, not global
//! state, so several upstreams can each carry their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::text::error_chain;

/// How long one probe request waits.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The kind of server behind an upstream URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamKind {
    /// Ollama: its native `/api/*` routes and its OpenAI-compatible `/v1/*` ones.
    Ollama,
    /// An OpenAI-compatible server without Ollama's API.
    #[serde(rename = "openai")]
    OpenAi,
}

impl UpstreamKind {
    /// The name used in configuration and in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Ollama => "ollama",
            UpstreamKind::OpenAi => "openai",
        }
    }
}

/// `upstream.kind`: detect it, or take it as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindSetting {
    /// Detected at start and on reconnect.
    #[default]
    Auto,
    /// Fixed by configuration; never probed for.
    Fixed(UpstreamKind),
}

impl Serialize for KindSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl KindSetting {
    /// `auto`, `ollama` or `openai`.
    pub fn as_str(self) -> &'static str {
        match self {
            KindSetting::Auto => "auto",
            KindSetting::Fixed(kind) => kind.as_str(),
        }
    }

    /// Parses `auto`, `ollama` or `openai`.
    pub fn parse(name: &str) -> Result<KindSetting, String> {
        match name {
            "auto" => Ok(KindSetting::Auto),
            "ollama" => Ok(KindSetting::Fixed(UpstreamKind::Ollama)),
            "openai" => Ok(KindSetting::Fixed(UpstreamKind::OpenAi)),
            other => Err(format!(
                "{other:?} is not one of auto, ollama, openai (openai: any OpenAI-compatible \
                 server such as llama.cpp's llama-server, vLLM or LM Studio)"
            )),
        }
    }
}

/// One upstream's kind: the setting and, in auto mode, what detection found last.
/// Cheap to clone; clones share the detected value.
#[derive(Debug, Clone)]
pub struct Kind {
    setting: KindSetting,
    /// 0 unknown, 1 ollama, 2 openai.
    detected: Arc<AtomicU8>,
}

impl Kind {
    /// A kind with nothing detected yet.
    pub fn new(setting: KindSetting) -> Kind {
        Kind {
            setting,
            detected: Arc::new(AtomicU8::new(0)),
        }
    }

    /// The setting this kind was made with.
    pub fn setting(&self) -> KindSetting {
        self.setting
    }

    /// The configured kind, else the last detected one; `None` while unknown.
    pub fn get(&self) -> Option<UpstreamKind> {
        match self.setting {
            KindSetting::Fixed(kind) => Some(kind),
            KindSetting::Auto => match self.detected.load(Ordering::Relaxed) {
                1 => Some(UpstreamKind::Ollama),
                2 => Some(UpstreamKind::OpenAi),
                _ => None,
            },
        }
    }

    /// Whether the upstream is known to be Ollama. Unknown counts as Ollama, so that
    /// Ollama-only telemetry keeps trying until detection says otherwise.
    pub fn is_ollama(&self) -> bool {
        self.get() != Some(UpstreamKind::OpenAi)
    }

    fn set_detected(&self, kind: Option<UpstreamKind>) {
        let v = match kind {
            None => 0,
            Some(UpstreamKind::Ollama) => 1,
            Some(UpstreamKind::OpenAi) => 2,
        };
        self.detected.store(v, Ordering::Relaxed);
    }

    /// Detects the kind when it is not known (auto mode): `GET /api/version` answering
    /// Ollama's `{"version":...}` means Ollama; else `GET /v1/models` answering 2xx means
    /// an OpenAI-compatible server. Returns the kind, or why none could be told.
    pub async fn ensure(
        &self,
        client: &reqwest::Client,
        base: &str,
    ) -> Result<UpstreamKind, String> {
        if let Some(kind) = self.get() {
            return Ok(kind);
        }
        let kind = detect(client, base).await?;
        self.set_detected(Some(kind));
        tracing::info!(
            upstream = base,
            kind = kind.as_str(),
            "upstream kind detected"
        );
        Ok(kind)
    }

    /// Checks that the upstream answers as its kind expects: Ollama `GET /api/version`;
    /// OpenAI-compatible `GET /health`, or `GET /v1/models` where `/health` does not
    /// exist (404/405). A failed probe forgets a detected kind, so the next probe after a
    /// reconnect detects it afresh.
    pub async fn probe(&self, client: &reqwest::Client, base: &str) -> Probe {
        let kind = match self.ensure(client, base).await {
            Ok(kind) => kind,
            Err(error) => {
                return Probe {
                    kind: None,
                    error: Some(error),
                };
            }
        };
        let result = match kind {
            UpstreamKind::Ollama => get_ok(client, base, "/api/version").await.map(drop),
            UpstreamKind::OpenAi => match get_ok(client, base, "/health").await {
                Ok(_) => Ok(()),
                Err(GetError::Status(404 | 405, _)) => {
                    get_ok(client, base, "/v1/models").await.map(drop)
                }
                Err(e) => Err(e),
            },
        };
        let error = result.err().map(|e| e.to_string());
        if error.is_some() && self.setting == KindSetting::Auto {
            self.set_detected(None);
        }
        Probe {
            kind: Some(kind),
            error,
        }
    }
}

/// What one health probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The kind the probe used (configured or detected); `None` when it could not be told.
    pub kind: Option<UpstreamKind>,
    /// Why the upstream is not healthy; `None` when it is.
    pub error: Option<String>,
}

/// Tells the kind of the server at `base`.
pub async fn detect(client: &reqwest::Client, base: &str) -> Result<UpstreamKind, String> {
    let ollama = match get_ok(client, base, "/api/version").await {
        Ok(body) => {
            let version = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("version").map(|v| v.is_string()));
            if version == Some(true) {
                return Ok(UpstreamKind::Ollama);
            }
            "GET /api/version answered without Ollama's version".to_owned()
        }
        Err(e) => e.to_string(),
    };
    match get_ok(client, base, "/v1/models").await {
        Ok(_) => Ok(UpstreamKind::OpenAi),
        Err(e) => Err(format!(
            "neither Ollama nor an OpenAI-compatible server: {ollama}; {e}"
        )),
    }
}

#[derive(Debug)]
enum GetError {
    Status(u16, String),
    Transport(String),
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetError::Status(_, text) | GetError::Transport(text) => f.write_str(text),
        }
    }
}

async fn get_ok(
    client: &reqwest::Client,
    base: &str,
    path: &str,
) -> Result<bytes::Bytes, GetError> {
    let response = client
        .get(format!("{base}{path}"))
        .timeout(PROBE_TIMEOUT)
        .send()
        .await
        .map_err(|e| GetError::Transport(format!("GET {path}: {}", error_chain(&e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(GetError::Status(
            status.as_u16(),
            format!("GET {path} answered {status}"),
        ));
    }
    response
        .bytes()
        .await
        .map_err(|e| GetError::Transport(format!("GET {path}: {}", error_chain(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    fn ollama() -> Router {
        Router::new().route("/api/version", get(|| async { r#"{"version":"0.12.0"}"# }))
    }

    fn openai(with_health: bool) -> Router {
        let r = Router::new().route("/v1/models", get(|| async { r#"{"data":[]}"# }));
        if with_health {
            r.route("/health", get(|| async { r#"{"status":"ok"}"# }))
        } else {
            r
        }
    }

    #[tokio::test]
    async fn detects_ollama_and_openai_compatible_servers() {
        let client = reqwest::Client::new();
        let o = serve(ollama()).await;
        let v = serve(openai(false)).await;
        assert_eq!(detect(&client, &o).await, Ok(UpstreamKind::Ollama));
        assert_eq!(detect(&client, &v).await, Ok(UpstreamKind::OpenAi));
        let none = serve(Router::new()).await;
        let err = detect(&client, &none).await.expect_err("neither");
        assert!(
            err.contains("/api/version") && err.contains("/v1/models"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_api_version_without_ollamas_shape_is_not_ollama() {
        // llama.cpp-like servers may answer unknown paths with 200 HTML or other JSON.
        let odd = Router::new()
            .route("/api/version", get(|| async { "<html>hi</html>" }))
            .route("/v1/models", get(|| async { r#"{"data":[]}"# }));
        let base = serve(odd).await;
        assert_eq!(
            detect(&reqwest::Client::new(), &base).await,
            Ok(UpstreamKind::OpenAi)
        );
    }

    #[tokio::test]
    async fn probes_use_health_then_models_for_openai() {
        let client = reqwest::Client::new();
        for with_health in [true, false] {
            let base = serve(openai(with_health)).await;
            let kind = Kind::new(KindSetting::Auto);
            let p = kind.probe(&client, &base).await;
            assert_eq!(
                p,
                Probe {
                    kind: Some(UpstreamKind::OpenAi),
                    error: None
                }
            );
        }
        // A /health that says the server is loading is not healthy.
        let loading = Router::new()
            .route("/v1/models", get(|| async { "{}" }))
            .route(
                "/health",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "loading") }),
            );
        let base = serve(loading).await;
        let p = Kind::new(KindSetting::Fixed(UpstreamKind::OpenAi))
            .probe(&client, &base)
            .await;
        assert!(p.error.expect("unhealthy").contains("503"));
    }

    #[tokio::test]
    async fn a_failed_probe_forgets_the_detected_kind_so_a_reconnect_detects_again() {
        let client = reqwest::Client::new();
        let base = serve(ollama()).await;
        let kind = Kind::new(KindSetting::Auto);
        assert_eq!(kind.ensure(&client, &base).await, Ok(UpstreamKind::Ollama));
        // Another server behind the same URL: the Ollama probe fails, the kind is forgotten.
        let other = serve(openai(true)).await;
        let p = kind.probe(&client, &other).await;
        assert!(p.error.is_some());
        assert_eq!(kind.get(), None);
        assert_eq!(
            kind.probe(&client, &other).await.kind,
            Some(UpstreamKind::OpenAi)
        );
        // A configured kind is never forgotten or probed for.
        let fixed = Kind::new(KindSetting::Fixed(UpstreamKind::Ollama));
        let p = fixed.probe(&client, &other).await;
        assert_eq!(p.kind, Some(UpstreamKind::Ollama));
        assert!(p.error.is_some());
        assert_eq!(fixed.get(), Some(UpstreamKind::Ollama));
    }

    #[test]
    fn settings_parse_with_an_actionable_message() {
        assert_eq!(KindSetting::parse("auto"), Ok(KindSetting::Auto));
        assert_eq!(
            KindSetting::parse("openai"),
            Ok(KindSetting::Fixed(UpstreamKind::OpenAi))
        );
        let err = KindSetting::parse("vllm").expect_err("unknown");
        assert!(err.contains("auto, ollama, openai"), "{err}");
    }
}
