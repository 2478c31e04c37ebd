//! Models: tags, ps, show, the OpenAI list, pull/push/create, copy, delete, blobs.

use super::*;

/// The installed model `name` means (`llama3.2` is `llama3.2:latest`).
pub(super) fn find_model<'a>(config: &'a FakeConfig, name: &str) -> Option<&'a FakeModel> {
    let wanted = with_tag(name);
    config.models.iter().find(|m| with_tag(&m.name) == wanted)
}

pub(super) fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

#[derive(Serialize)]
pub(super) struct Details<'a> {
    pub(super) parent_model: &'static str,
    pub(super) format: &'static str,
    pub(super) family: &'a str,
    pub(super) families: [&'a str; 1],
    pub(super) parameter_size: &'a str,
    pub(super) quantization_level: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) context_length: Option<u64>,
}

impl FakeModel {
    pub(super) fn details(&self, with_context: bool) -> Details<'_> {
        Details {
            parent_model: "",
            format: "gguf",
            family: &self.family,
            families: [&self.family],
            parameter_size: &self.parameter_size,
            quantization_level: &self.quantization_level,
            context_length: with_context.then_some(self.context_length),
        }
    }

    /// `general.parameter_count` from `parameter_size` (`3.2B`, `137M`).
    pub(super) fn parameter_count(&self) -> u64 {
        let size = self.parameter_size.trim();
        let (number, scale) = match size.chars().last() {
            Some('B' | 'b') => (&size[..size.len() - 1], 1e9),
            Some('M' | 'm') => (&size[..size.len() - 1], 1e6),
            Some('K' | 'k') => (&size[..size.len() - 1], 1e3),
            _ => (size, 1.0),
        };
        (number.parse::<f64>().unwrap_or(0.0) * scale).round() as u64
    }
}

/// `/api/tags` and `/api/ps`.
#[derive(Serialize)]
pub(super) struct ModelList<T> {
    pub(super) models: Vec<T>,
}

#[derive(Serialize)]
pub(super) struct TagsEntry<'a> {
    pub(super) name: &'a str,
    pub(super) model: &'a str,
    pub(super) modified_at: String,
    pub(super) size: u64,
    pub(super) digest: String,
    pub(super) details: Details<'a>,
    pub(super) capabilities: &'a [String],
}

pub(super) async fn tags(State(app): State<App>) -> Response {
    let models: Vec<TagsEntry> = app
        .config
        .models
        .iter()
        .map(|m| TagsEntry {
            name: &m.name,
            model: &m.name,
            modified_at: rfc3339(UNIX_EPOCH + Duration::from_secs(MODIFIED_AT_UNIX_S)),
            size: m.size_bytes,
            digest: m.digest(),
            details: m.details(true),
            capabilities: &m.capabilities,
        })
        .collect();
    gin_json(StatusCode::OK, &ModelList { models })
}

#[derive(Serialize)]
pub(super) struct PsEntry<'a> {
    pub(super) name: &'a str,
    pub(super) model: &'a str,
    pub(super) size: u64,
    pub(super) digest: String,
    pub(super) details: Details<'a>,
    pub(super) expires_at: String,
    pub(super) size_vram: u64,
    pub(super) context_length: u64,
}

pub(super) async fn ps(State(app): State<App>) -> Response {
    let expires_at = rfc3339(SystemTime::now() + KEEP_ALIVE);
    let models: Vec<PsEntry> = app
        .config
        .models
        .iter()
        .filter(|m| m.loaded)
        .map(|m| PsEntry {
            name: &m.name,
            model: &m.name,
            size: m.size_bytes.max(m.size_vram_bytes),
            digest: m.digest(),
            details: m.details(false),
            expires_at: expires_at.clone(),
            size_vram: m.size_vram_bytes,
            context_length: m.context_length,
        })
        .collect();
    gin_json(StatusCode::OK, &ModelList { models })
}

#[derive(Serialize)]
pub(super) struct ShowReply<'a> {
    pub(super) modelfile: String,
    pub(super) parameters: &'static str,
    pub(super) template: &'static str,
    pub(super) details: Details<'a>,
    pub(super) model_info: Value,
    pub(super) capabilities: &'a [String],
    pub(super) modified_at: String,
}

/// The model a `{"model"}` (or legacy `{"name"}`) body names.
pub(super) fn requested_model(body: &[u8]) -> Result<String, String> {
    let value = parse_body(body, true)?;
    let name = ["model", "name"].iter().find_map(|key| {
        value
            .get(*key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    });
    name.map(str::to_owned)
        .ok_or_else(|| "model is required".to_owned())
}

pub(super) async fn show(State(app): State<App>, body: Bytes) -> Response {
    let name = match requested_model(&body) {
        Ok(name) => name,
        Err(message) => return native_error(StatusCode::BAD_REQUEST, &message),
    };
    let Some(model) = find_model(&app.config, &name) else {
        return not_found_model(&name);
    };
    let modelfile = format!(
        "# Modelfile generated by \"ollama show\"\n\
         # To build a new Modelfile based on this, replace FROM with:\n\
         # FROM {name}\n\n\
         FROM {blob}\n\
         TEMPLATE \"\"\"{{{{ .Prompt }}}}\"\"\"\n\
         PARAMETER stop <|eot_id|>\n",
        name = model.name,
        blob = model.blob_path,
    );
    let arch = &model.family;
    let model_info = json!({
        "general.architecture": arch,
        "general.file_type": 15,
        "general.parameter_count": model.parameter_count(),
        "general.quantization_version": 2,
        format!("{arch}.context_length"): model.context_length,
        format!("{arch}.embedding_length"): 3072,
        format!("{arch}.block_count"): 28,
    });
    gin_json(
        StatusCode::OK,
        &ShowReply {
            modelfile,
            parameters: "stop                           \"<|eot_id|>\"",
            template: "{{ .Prompt }}",
            details: model.details(false),
            model_info,
            capabilities: &model.capabilities,
            modified_at: rfc3339(UNIX_EPOCH + Duration::from_secs(MODIFIED_AT_UNIX_S)),
        },
    )
}

#[derive(Serialize)]
pub(super) struct OpenAiModelList<'a> {
    pub(super) object: &'static str,
    pub(super) data: Option<Vec<OpenAiModel<'a>>>,
}

#[derive(Serialize)]
pub(super) struct OpenAiModel<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) owned_by: &'static str,
}

pub(super) async fn openai_models(State(app): State<App>) -> Response {
    let data: Vec<OpenAiModel> = app
        .config
        .models
        .iter()
        .map(|m| OpenAiModel {
            id: &m.name,
            object: "model",
            created: MODIFIED_AT_UNIX_S,
            owned_by: "library",
        })
        .collect();
    // Go marshals an empty list of models as null.
    let data = (!data.is_empty()).then_some(data);
    encoder_json(
        StatusCode::OK,
        &OpenAiModelList {
            object: "list",
            data,
        },
    )
}

pub(super) async fn openai_model(State(app): State<App>, Path(name): Path<String>) -> Response {
    if find_model(&app.config, &name).is_none() {
        return openai_error(StatusCode::NOT_FOUND, &format!("model '{name}' not found"));
    }
    let model = OpenAiModel {
        id: &name,
        object: "model",
        created: MODIFIED_AT_UNIX_S,
        owned_by: "library",
    };
    encoder_json(StatusCode::OK, &model)
}

/// The progress-streaming model operations.
#[derive(Clone, Copy, Debug)]
pub(super) enum Verb {
    Pull,
    Push,
    Create,
}

#[derive(Serialize)]
pub(super) struct ProgressLine {
    pub(super) status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) digest: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) total: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) completed: u64,
}

impl ProgressLine {
    pub(super) fn status(status: impl Into<String>) -> ProgressLine {
        ProgressLine {
            status: status.into(),
            digest: String::new(),
            total: 0,
            completed: 0,
        }
    }
}

/// `/api/pull|push|create`: NDJSON progress, `tokens` layer updates, `chunk_gap` apart (and
/// through the gate); `{"status":"success"}` alone when `"stream": false`. Pulling `missing`
/// fails after the first line, as pulling an unknown model does.
pub(super) async fn progress(app: App, verb: Verb, body: Bytes) -> Response {
    let name = match requested_model(&body) {
        Ok(name) => name,
        Err(message) => return native_error(StatusCode::BAD_REQUEST, &message),
    };
    let stream = parse_body(&body, true)
        .ok()
        .and_then(|v| v.get("stream").and_then(Value::as_bool))
        .unwrap_or(true);
    let blob = hex_digest("blob", &name);
    let total = find_model(&app.config, &name).map_or(1_000_000_000, |m| m.size_bytes);
    let steps = app.config.tokens as u64;
    let layer = |verb: &str, step: u64| ProgressLine {
        status: format!("{verb} {}", &blob[..12]),
        digest: format!("sha256:{blob}"),
        total,
        completed: total * step / steps.max(1),
    };
    let mut lines = Vec::new();
    let mut failure = None;
    match verb {
        Verb::Pull => {
            lines.push(ProgressLine::status("pulling manifest"));
            if Scenario::of(&app.config, &name) == Scenario::NotFound {
                failure = Some("pull model manifest: file does not exist");
            } else {
                lines.extend((0..=steps).map(|step| layer("pulling", step)));
                lines.push(ProgressLine::status("verifying sha256 digest"));
                lines.push(ProgressLine::status("writing manifest"));
            }
        }
        Verb::Push => {
            lines.push(ProgressLine::status("retrieving manifest"));
            lines.extend((0..=steps).map(|step| layer("pushing", step)));
            lines.push(ProgressLine::status("pushing manifest"));
        }
        Verb::Create => {
            lines.push(ProgressLine::status("gathering model components"));
            lines.push(ProgressLine::status(format!(
                "using existing layer sha256:{blob}"
            )));
            lines.push(ProgressLine::status("writing manifest"));
        }
    }
    if failure.is_none() {
        lines.push(ProgressLine::status("success"));
    }
    let mut chunks: Vec<Bytes> = lines
        .iter()
        .map(|line| {
            let mut out = Vec::new();
            ndjson(&mut out, line);
            Bytes::from(out)
        })
        .collect();
    if let Some(message) = failure {
        let mut out = Vec::new();
        ndjson(&mut out, &json!({ "error": message }));
        chunks.push(Bytes::from(out));
    }

    let mut guard = StreamGuard::start(&app.state);
    if !stream {
        let mut pacer = Pacer::new(app.config.chunk_gap, None);
        for _ in &chunks {
            pacer.pace().await;
        }
        guard.finish();
        return match failure {
            Some(message) => native_error(StatusCode::INTERNAL_SERVER_ERROR, message),
            None => gin_json(StatusCode::OK, &json!({ "status": "success" })),
        };
    }
    let pacer = Pacer::new(app.config.chunk_gap, app.config.gate.clone());
    let state = app.state.clone();
    let body = futures_util::stream::unfold(
        (chunks.into_iter(), pacer, guard, state),
        |(mut chunks, mut pacer, mut guard, state)| async move {
            let chunk = chunks.next()?;
            pacer.pace().await;
            if chunks.as_slice().is_empty() {
                guard.finish();
            }
            pacer.sent(&state);
            Some((Ok::<_, io::Error>(chunk), (chunks, pacer, guard, state)))
        },
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

pub(super) async fn copy(State(app): State<App>, body: Bytes) -> Response {
    let value = match parse_body(&body, true) {
        Ok(value) => value,
        Err(message) => return native_error(StatusCode::BAD_REQUEST, &message),
    };
    let source = value.get("source").and_then(Value::as_str).unwrap_or("");
    if find_model(&app.config, source).is_none() {
        return not_found_model(source);
    }
    StatusCode::OK.into_response()
}

pub(super) async fn delete_model(State(app): State<App>, body: Bytes) -> Response {
    let name = match requested_model(&body) {
        Ok(name) => name,
        Err(message) => return native_error(StatusCode::BAD_REQUEST, &message),
    };
    if find_model(&app.config, &name).is_none() {
        return not_found_model(&name);
    }
    StatusCode::OK.into_response()
}

/// `HEAD /api/blobs/sha256:<hex>`: 200 when an installed model's blob has that digest.
pub(super) async fn blob_exists(State(app): State<App>, Path(digest): Path<String>) -> StatusCode {
    let file = digest.replace(':', "-");
    if app
        .config
        .models
        .iter()
        .any(|m| m.blob_path.ends_with(&file))
    {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

pub(super) async fn create_blob() -> StatusCode {
    StatusCode::CREATED
}
