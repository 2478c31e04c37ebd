//! Embeddings: `/api/embed`, `/api/embeddings` and `/v1/embeddings`.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EmbedApi {
    /// `/api/embed`.
    Embed,
    /// `/api/embeddings`.
    Legacy,
    /// `/v1/embeddings`.
    OpenAi,
}

#[derive(Serialize)]
pub(super) struct EmbedReply<'a> {
    pub(super) model: &'a str,
    pub(super) embeddings: Vec<Vec<f32>>,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) prompt_eval_count: u64,
}

#[derive(Serialize)]
pub(super) struct EmbeddingList<'a> {
    pub(super) object: &'static str,
    pub(super) data: Vec<EmbeddingItem>,
    pub(super) model: &'a str,
    pub(super) usage: EmbeddingUsage,
}

#[derive(Serialize)]
pub(super) struct EmbeddingItem {
    pub(super) object: &'static str,
    pub(super) embedding: Vec<f32>,
    pub(super) index: usize,
}

#[derive(Serialize)]
pub(super) struct EmbeddingUsage {
    pub(super) prompt_tokens: u64,
    pub(super) total_tokens: u64,
}

/// `/api/embed`, `/api/embeddings` and `/v1/embeddings`: after `header_delay`, one
/// [`fake_embedding`] per input; `missing`, `busy` and `crash` fail as for generation.
pub(super) async fn embed(app: App, api: EmbedApi, body: Bytes) -> Response {
    let started_at = Instant::now();
    let error = |status: StatusCode, message: &str| match api {
        EmbedApi::OpenAi => openai_error(status, message),
        _ => native_error(status, message),
    };
    let value = match parse_body(&body, api != EmbedApi::OpenAi) {
        Ok(value) => value,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let field = if api == EmbedApi::Legacy {
        "prompt"
    } else {
        "input"
    };
    let inputs: Vec<String> = match (api, value.get(field)) {
        (EmbedApi::OpenAi, None | Some(Value::Null)) => {
            return error(StatusCode::BAD_REQUEST, "invalid input");
        }
        (EmbedApi::OpenAi, Some(Value::Array(items))) if items.is_empty() => {
            return error(StatusCode::BAD_REQUEST, "invalid input");
        }
        (EmbedApi::OpenAi, Some(Value::String(s))) => vec![s.clone()],
        (_, None | Some(Value::Null)) => Vec::new(),
        (_, Some(Value::String(s))) if s.is_empty() => Vec::new(),
        (_, Some(Value::String(s))) => vec![s.clone()],
        (_, Some(Value::Array(items))) => {
            match items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect()
            {
                Some(strings) => strings,
                None => return error(StatusCode::BAD_REQUEST, "invalid input type"),
            }
        }
        (_, Some(_)) => return error(StatusCode::BAD_REQUEST, "invalid input type"),
    };
    if model.is_empty() {
        return error(StatusCode::BAD_REQUEST, "model is required");
    }
    let scenario = Scenario::of(&app.config, &model);
    match scenario {
        Scenario::NotFound => {
            return error(StatusCode::NOT_FOUND, &format!("model '{model}' not found"));
        }
        Scenario::Busy => return error(StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE),
        _ => {}
    }
    if inputs.is_empty() {
        // Ollama answers an empty input at once, without loading anything.
        return match api {
            EmbedApi::Legacy => gin_json(StatusCode::OK, &json!({ "embedding": [] })),
            _ => gin_json(
                StatusCode::OK,
                &EmbedReply {
                    model: &model,
                    embeddings: Vec::new(),
                    total_duration: 0,
                    load_duration: 0,
                    prompt_eval_count: 0,
                },
            ),
        };
    }
    let mut guard = StreamGuard::start(&app.state);
    sleep(app.config.header_delay).await;
    let loaded_at = Instant::now();
    if scenario == Scenario::Crash {
        guard.finish();
        return error(StatusCode::INTERNAL_SERVER_ERROR, CRASH_MESSAGE);
    }
    let prompt_eval_count: u64 = inputs.iter().map(|i| word_count(i).max(1)).sum();
    let embeddings: Vec<Vec<f32>> = inputs.iter().map(|i| fake_embedding(i)).collect();
    guard.finish();
    match api {
        EmbedApi::Embed => gin_json(
            StatusCode::OK,
            &EmbedReply {
                model: &model,
                embeddings,
                total_duration: nanos(started_at.elapsed()),
                load_duration: nanos(loaded_at - started_at),
                prompt_eval_count,
            },
        ),
        EmbedApi::Legacy => {
            let embedding: Vec<f64> = embeddings[0].iter().map(|&x| f64::from(x)).collect();
            gin_json(StatusCode::OK, &json!({ "embedding": embedding }))
        }
        EmbedApi::OpenAi => encoder_json(
            StatusCode::OK,
            &EmbeddingList {
                object: "list",
                data: embeddings
                    .into_iter()
                    .enumerate()
                    .map(|(index, embedding)| EmbeddingItem {
                        object: "embedding",
                        embedding,
                        index,
                    })
                    .collect(),
                model: &model,
                usage: EmbeddingUsage {
                    prompt_tokens: prompt_eval_count,
                    total_tokens: prompt_eval_count,
                },
            },
        ),
    }
}
