//! The router, the recording of every request, and Ollama's Host/Origin checks.

use super::*;

#[derive(Clone)]
pub(super) struct App {
    pub(super) config: Arc<FakeConfig>,
    pub(super) state: Arc<FakeState>,
}

pub(super) fn router(app: App) -> Router {
    let infer = |api: Api| move |State(app): State<App>, body: Bytes| generation(app, api, body);
    let embed = |api: EmbedApi| move |State(app): State<App>, body: Bytes| embed(app, api, body);
    let progress =
        |verb: Verb| move |State(app): State<App>, body: Bytes| progress(app, verb, body);
    Router::new()
        .route("/", get(|| async { "Ollama is running" }))
        .route(
            "/api/version",
            get(|| async { gin_json(StatusCode::OK, &json!({"version": VERSION})) }),
        )
        .route("/api/generate", post(infer(Api::Generate)))
        .route("/api/chat", post(infer(Api::Chat)))
        .route("/api/embed", post(embed(EmbedApi::Embed)))
        .route("/api/embeddings", post(embed(EmbedApi::Legacy)))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/pull", post(progress(Verb::Pull)))
        .route("/api/push", post(progress(Verb::Push)))
        .route("/api/create", post(progress(Verb::Create)))
        .route("/api/copy", post(copy))
        .route("/api/delete", delete(delete_model))
        .route("/api/blobs/{digest}", post(create_blob).head(blob_exists))
        .route("/v1/chat/completions", post(infer(Api::OpenAiChat)))
        .route("/v1/completions", post(infer(Api::OpenAiCompletion)))
        .route("/v1/embeddings", post(embed(EmbedApi::OpenAi)))
        .route("/v1/messages", post(infer(Api::Anthropic)))
        .route("/v1/responses", post(infer(Api::Responses)))
        .route("/v1/models", get(openai_models))
        .route("/v1/models/{model}", get(openai_model))
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/slow-headers", any(slow_headers))
        // gin answers an unknown path, and a known path with another method, the same way.
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

pub(super) async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "404 page not found",
    )
        .into_response()
}

/// Records the request as received, then applies Ollama's CORS and Host checks.
pub(super) async fn observe(
    State(app): State<App>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    app.state.record(RecordedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        version: parts.version,
        headers: parts.headers.clone(),
        body: body.clone(),
        connection_id: conn.id,
        peer: conn.peer,
        received_at: Instant::now(),
    });

    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path = parts.uri.path();
    let test_route = path == "/echo" || path.starts_with("/echo/") || path == "/slow-headers";
    if !test_route
        && let Some(origin) = parts.headers.get(header::ORIGIN)
        && !origin_allowed(origin.to_str().unwrap_or(""), &host)
    {
        return StatusCode::FORBIDDEN.into_response();
    }
    match check_host(&host) {
        HostCheck::Refused => return StatusCode::FORBIDDEN.into_response(),
        HostCheck::LocalName if parts.method == Method::OPTIONS => {
            return StatusCode::NO_CONTENT.into_response();
        }
        _ => {}
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum HostCheck {
    Ip,
    LocalName,
    Refused,
}

/// Ollama's `allowedHostsMiddleware` for a server on loopback (the machine-name check left
/// out), except that a bracketed IPv6 literal without a port is accepted.
pub(super) fn check_host(host: &str) -> HostCheck {
    let host = split_host_port(host);
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        let local = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unspecified(),
        };
        return if local {
            HostCheck::Ip
        } else {
            HostCheck::Refused
        };
    }
    let host = host.to_ascii_lowercase();
    let local = host.is_empty()
        || host == "localhost"
        || [".localhost", ".local", ".internal"]
            .iter()
            .any(|tld| host.ends_with(tld));
    if local {
        HostCheck::LocalName
    } else {
        HostCheck::Refused
    }
}

/// Go's `net.SplitHostPort`, falling back to the whole string when it has no port.
pub(super) fn split_host_port(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return match rest.split_once("]:") {
            Some((host, _port)) => host,
            None => hostport,
        };
    }
    match hostport.split_once(':') {
        Some((host, port)) if !port.contains(':') => host,
        _ => hostport,
    }
}

/// gin-contrib/cors with Ollama's default `OLLAMA_ORIGINS`.
pub(super) fn origin_allowed(origin: &str, host: &str) -> bool {
    if origin.is_empty()
        || origin == format!("http://{host}")
        || origin == format!("https://{host}")
    {
        return true;
    }
    let local = ["localhost", "127.0.0.1", "0.0.0.0"].iter().any(|name| {
        ["http", "https"].iter().any(|scheme| {
            let base = format!("{scheme}://{name}");
            origin == base || origin.starts_with(&format!("{base}:"))
        })
    });
    let schemes = [
        "app://",
        "file://",
        "tauri://",
        "vscode-webview://",
        "vscode-file://",
        "chrome-extension://",
        "moz-extension://",
        "safari-web-extension://",
    ];
    local || schemes.iter().any(|scheme| origin.starts_with(scheme))
}
