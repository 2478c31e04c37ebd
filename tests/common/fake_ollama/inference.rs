//! Inference: generate, chat and the compatibility routes; the plan of tokens, pacing and
//! how a stream ends.

use super::*;

/// The shape an inference request came in and its reply goes out in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Api {
    Generate,
    Chat,
    OpenAiChat,
    OpenAiCompletion,
    Anthropic,
    Responses,
}

impl Api {
    pub(super) fn is_native(self) -> bool {
        matches!(self, Api::Generate | Api::Chat)
    }

    pub(super) fn error(self, state: &FakeState, status: StatusCode, message: &str) -> Response {
        match self {
            Api::Generate | Api::Chat => native_error(status, message),
            Api::OpenAiChat | Api::OpenAiCompletion | Api::Responses => {
                openai_error(status, message)
            }
            Api::Anthropic => anthropic_error(status, message, hex_id("req", state.next_id())),
        }
    }
}

/// How many tokens a request asks for.
#[derive(Clone, Copy, Debug)]
pub(super) enum Limit {
    /// [`FakeConfig::tokens`].
    Default,
    /// Native `options.num_predict`: exactly this many (0 allowed), `done_reason` `stop`.
    Exact(usize),
    /// `max_tokens` and the like: at most this many; fewer than the default gives
    /// `done_reason` `length`.
    AtMost(usize),
}

/// An inference request, reduced to what steers the fake.
#[derive(Debug)]
pub(super) struct GenRequest {
    pub(super) model: String,
    pub(super) stream: bool,
    pub(super) limit: Limit,
    /// Every piece of prompt text (system, prompt, message contents), space-joined.
    pub(super) prompt: String,
    /// Native only: no prompt (generate) or no messages (chat), so Ollama only loads the
    /// model and answers `done_reason` `load` (or `unload` with `keep_alive: 0`).
    pub(super) load_only: bool,
    pub(super) unload: bool,
    pub(super) include_usage: bool,
}

impl GenRequest {
    pub(super) fn parse(api: Api, body: &[u8]) -> Result<GenRequest, String> {
        let value = parse_body(body, api.is_native())?;
        let str_of = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or("");
        let token_cap = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_u64)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let model = str_of("model").to_owned();
        let stream = value
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(api.is_native());
        let mut prompt = String::new();
        let text_fields: &[&str] = match api {
            Api::Generate => &["system", "prompt", "suffix"],
            Api::Chat | Api::OpenAiChat => &["messages"],
            Api::OpenAiCompletion => &["prompt"],
            Api::Anthropic => &["system", "messages"],
            Api::Responses => &["instructions", "input"],
        };
        for field in text_fields {
            if let Some(v) = value.get(*field) {
                collect_text(v, &mut prompt);
            }
        }
        let messages = value
            .get("messages")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let max_tokens = value.get("max_tokens").and_then(Value::as_i64).unwrap_or(0);
        match api {
            Api::OpenAiChat if messages == 0 => {
                return Err("[] is too short - 'messages'".into());
            }
            Api::Anthropic if model.is_empty() => return Err("model is required".into()),
            Api::Anthropic if max_tokens <= 0 => {
                return Err("max_tokens is required and must be positive".into());
            }
            Api::Anthropic if messages == 0 => return Err("messages is required".into()),
            _ if model.is_empty() => return Err("model is required".into()),
            _ => {}
        }
        let limit = match api {
            Api::Generate | Api::Chat => {
                match value
                    .pointer("/options/num_predict")
                    .and_then(Value::as_i64)
                {
                    Some(n) if n >= 0 => Limit::Exact(usize::try_from(n).unwrap_or(usize::MAX)),
                    _ => Limit::Default,
                }
            }
            Api::OpenAiChat => {
                at_most(token_cap("max_completion_tokens").or_else(|| token_cap("max_tokens")))
            }
            Api::OpenAiCompletion | Api::Anthropic => at_most(token_cap("max_tokens")),
            Api::Responses => at_most(token_cap("max_output_tokens")),
        };
        let images = value
            .get("images")
            .and_then(Value::as_array)
            .is_some_and(|i| !i.is_empty());
        let load_only = match api {
            Api::Generate => str_of("prompt").is_empty() && !images,
            Api::Chat => messages == 0,
            _ => false,
        };
        Ok(GenRequest {
            model,
            stream,
            limit,
            prompt,
            load_only,
            unload: value.get("keep_alive").is_some_and(is_zero_duration),
            include_usage: value
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

pub(super) fn at_most(max_tokens: Option<usize>) -> Limit {
    max_tokens.map_or(Limit::Default, Limit::AtMost)
}

/// The body as a JSON object, or the message Ollama gives for it.
pub(super) fn parse_body(body: &[u8], native: bool) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(if native {
            "missing request body"
        } else {
            "EOF"
        }
        .into());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("json: cannot unmarshal non-object into Go value of request type".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Appends every string in `value`: strings themselves, arrays, and an object's `content`
/// and `text` (messages, content parts, Responses input items).
pub(super) fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(s);
        }
        Value::Array(items) => items.iter().for_each(|item| collect_text(item, out)),
        Value::Object(map) => {
            for key in ["content", "text"] {
                if let Some(v) = map.get(key) {
                    collect_text(v, out);
                }
            }
        }
        _ => {}
    }
}

/// `keep_alive` of zero: `0`, `"0"`, `"0s"`, `"0m"`.
pub(super) fn is_zero_duration(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => {
            let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            digits.parse::<f64>().is_ok_and(|d| d == 0.0)
        }
        _ => false,
    }
}

/// The prompt's token count as the fake sees it: its words.
pub(super) fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The tokens the fake generates for `prompt`: the `SCORE=<n>` answer in four pieces, else
/// `count` words.
pub(super) fn plan_tokens(prompt: &str, count: usize) -> Vec<String> {
    if let Some(score) = find_score(prompt) {
        return vec![
            r#"{"score": "#.to_owned(),
            score.to_owned(),
            r#", "reason": "#.to_owned(),
            r#""ok"}"#.to_owned(),
        ];
    }
    (0..count).map(word_token).collect()
}

/// Token `i` of the default answer `tok0 tok1 tok2 ...`.
pub(super) fn word_token(i: usize) -> String {
    if i == 0 {
        "tok0".to_owned()
    } else {
        format!(" tok{i}")
    }
}

/// `<n>` of the first `SCORE=<n>` in the prompt.
pub(super) fn find_score(prompt: &str) -> Option<&str> {
    let rest = &prompt[prompt.find("SCORE=")? + "SCORE=".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|n| !n.is_empty())
}

/// The tokens and the `done_reason` for a request. A `SCORE=<n>` answer ignores the limit.
pub(super) fn plan(config: &FakeConfig, request: &GenRequest) -> (Vec<String>, &'static str) {
    let (count, reason) = match request.limit {
        Limit::Default => (config.tokens, "stop"),
        Limit::Exact(n) => (n, "stop"),
        Limit::AtMost(n) if n < config.tokens => (n, "length"),
        Limit::AtMost(_) => (config.tokens, "stop"),
    };
    let reason = if find_score(&request.prompt).is_some() {
        "stop"
    } else {
        reason
    };
    (plan_tokens(&request.prompt, count), reason)
}

/// Counts one unit of work as started, and as cancelled if dropped before it is ended.
pub(super) struct StreamGuard {
    pub(super) state: Arc<FakeState>,
    pub(super) ended: bool,
}

impl StreamGuard {
    pub(super) fn start(state: &Arc<FakeState>) -> StreamGuard {
        state.bump(&state.streams_started);
        StreamGuard {
            state: state.clone(),
            ended: false,
        }
    }

    pub(super) fn finish(&mut self) {
        if !std::mem::replace(&mut self.ended, true) {
            self.state.bump(&self.state.streams_completed);
        }
    }

    pub(super) fn abort(&mut self) {
        if !std::mem::replace(&mut self.ended, true) {
            self.state.bump(&self.state.streams_aborted);
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.state.bump(&self.state.streams_cancelled);
        }
    }
}

/// Paces a stream: `chunk_gap` between chunks, then the gate if any.
pub(super) struct Pacer {
    pub(super) gap: Duration,
    pub(super) gate: Option<Arc<Gate>>,
    pub(super) first: bool,
}

impl Pacer {
    pub(super) fn new(gap: Duration, gate: Option<Arc<Gate>>) -> Pacer {
        Pacer {
            gap,
            gate,
            first: true,
        }
    }

    pub(super) async fn pace(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            sleep(self.gap).await;
        }
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
    }

    pub(super) fn sent(&self, state: &FakeState) {
        state.bump(&state.chunks_sent);
        if let Some(gate) = &self.gate {
            gate.record();
        }
    }
}

pub(super) async fn sleep(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

pub(super) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// What a generation produces, in native terms; each becomes one chunk of any shape.
#[derive(Debug)]
pub(super) enum Event {
    Token(String),
    Done(Final),
    Error(&'static str),
    Hangup,
}

#[derive(Debug)]
pub(super) struct Final {
    pub(super) done_reason: &'static str,
    pub(super) metrics: Metrics,
    pub(super) context: Vec<u64>,
}

/// Ollama's `Metrics`: nanoseconds and counts, each omitted when zero.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(super) struct Metrics {
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) prompt_eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) prompt_eval_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub(super) eval_duration: u64,
}

pub(super) fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a generation ends.
#[derive(Clone, Copy, Debug)]
pub(super) enum Ending {
    Done,
    ErrorAfter(usize),
    HangupAfter(usize),
}

/// One generation in progress: yields its events in time, measuring itself.
pub(super) struct Generation {
    pub(super) tokens: Vec<String>,
    pub(super) next: usize,
    pub(super) finished: bool,
    pub(super) ending: Ending,
    pub(super) done_reason: &'static str,
    pub(super) with_metrics: bool,
    pub(super) context: bool,
    pub(super) prompt_eval_count: u64,
    pub(super) started_at: Instant,
    pub(super) loaded_at: Instant,
    pub(super) prompted_at: Instant,
    pub(super) pacer: Pacer,
}

impl Generation {
    pub(super) async fn next_event(&mut self) -> Option<Event> {
        if self.finished {
            return None;
        }
        self.pacer.pace().await;
        let i = self.next;
        self.next += 1;
        match self.ending {
            Ending::ErrorAfter(k) if i == k => {
                self.finished = true;
                return Some(Event::Error(MIDSTREAM_MESSAGE));
            }
            Ending::HangupAfter(k) if i == k => {
                self.finished = true;
                return Some(Event::Hangup);
            }
            _ => {}
        }
        if let Some(token) = self.tokens.get(i) {
            return Some(Event::Token(token.clone()));
        }
        self.finished = true;
        Some(Event::Done(self.finish()))
    }

    pub(super) fn finish(&self) -> Final {
        let now = Instant::now();
        let eval_count = self.tokens.len() as u64;
        if !self.with_metrics {
            return Final {
                done_reason: self.done_reason,
                metrics: Metrics::default(),
                context: Vec::new(),
            };
        }
        let metrics = Metrics {
            total_duration: nanos(now - self.started_at),
            load_duration: nanos(self.loaded_at - self.started_at),
            prompt_eval_count: self.prompt_eval_count,
            prompt_eval_duration: if self.prompt_eval_count > 0 {
                nanos(self.prompted_at - self.loaded_at)
            } else {
                0
            },
            eval_count,
            eval_duration: if eval_count > 0 {
                nanos(now - self.prompted_at)
            } else {
                0
            },
        };
        let context = if self.context {
            (0..self.prompt_eval_count + eval_count)
                .map(|i| 128_000 + i)
                .collect()
        } else {
            Vec::new()
        };
        Final {
            done_reason: self.done_reason,
            metrics,
            context,
        }
    }
}

/// Generate, chat, and the OpenAI, Anthropic and Responses routes.
pub(super) async fn generation(app: App, api: Api, body: Bytes) -> Response {
    let started_at = Instant::now();
    let request = match GenRequest::parse(api, &body) {
        Ok(request) => request,
        Err(message) => return api.error(&app.state, StatusCode::BAD_REQUEST, &message),
    };
    let scenario = Scenario::of(&app.config, &request.model);
    match scenario {
        Scenario::NotFound => {
            let message = format!("model '{}' not found", request.model);
            return api.error(&app.state, StatusCode::NOT_FOUND, &message);
        }
        Scenario::Busy => {
            return api.error(&app.state, StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE);
        }
        _ => {}
    }
    let mut guard = StreamGuard::start(&app.state);
    sleep(app.config.header_delay).await;
    if scenario == Scenario::Crash {
        guard.finish();
        return api.error(&app.state, StatusCode::INTERNAL_SERVER_ERROR, CRASH_MESSAGE);
    }
    let loaded_at = Instant::now();
    if request.load_only {
        guard.finish();
        return load_reply(api, &request);
    }
    let prompt_eval_count = word_count(&request.prompt);
    let (tokens, done_reason) = plan(&app.config, &request);
    let ending = match scenario {
        Scenario::FailMidstream => Ending::ErrorAfter(FAIL_AFTER_TOKENS.min(tokens.len())),
        Scenario::Hangup => Ending::HangupAfter(HANGUP_AFTER_TOKENS.min(tokens.len())),
        _ => Ending::Done,
    };
    let gate = if request.stream {
        app.config.gate.clone()
    } else {
        None
    };
    let generation = Generation {
        tokens,
        next: 0,
        finished: false,
        ending,
        done_reason,
        with_metrics: scenario != Scenario::NoMetrics,
        context: api == Api::Generate,
        prompt_eval_count,
        started_at,
        loaded_at,
        prompted_at: Instant::now(),
        pacer: Pacer::new(app.config.chunk_gap, gate),
    };
    let encoder = Encoder::new(api, &request, app.state.next_id(), prompt_eval_count);
    if request.stream {
        stream_reply(api, generation, encoder, guard, app.state.clone())
    } else {
        collect_reply(api, generation, encoder, guard, &app.state).await
    }
}

/// The native answer to a request that only loads (or unloads) the model.
pub(super) fn load_reply(api: Api, request: &GenRequest) -> Response {
    let done_reason = Some(if request.unload { "unload" } else { "load" });
    let created_at = rfc3339(SystemTime::now());
    match api {
        Api::Chat => gin_json(
            StatusCode::OK,
            &ChatChunk {
                model: &request.model,
                created_at,
                message: AssistantMessage::new(""),
                done_reason,
                done: true,
                metrics: Metrics::default(),
            },
        ),
        _ => gin_json(
            StatusCode::OK,
            &GenerateChunk {
                model: &request.model,
                created_at,
                response: "",
                done: true,
                done_reason,
                context: Vec::new(),
                metrics: Metrics::default(),
            },
        ),
    }
}

pub(super) fn stream_reply(
    api: Api,
    generation: Generation,
    encoder: Encoder,
    guard: StreamGuard,
    state: Arc<FakeState>,
) -> Response {
    let chunks = futures_util::stream::unfold(
        (generation, encoder, guard, state),
        |(mut generation, mut encoder, mut guard, state)| async move {
            let event = generation.next_event().await?;
            let bytes = match &event {
                Event::Hangup => {
                    guard.abort();
                    let error = io::Error::new(io::ErrorKind::ConnectionAborted, "hangup");
                    return Some((Err(error), (generation, encoder, guard, state)));
                }
                Event::Token(_) => encoder.encode(&event),
                Event::Done(_) | Event::Error(_) => {
                    guard.finish();
                    encoder.encode(&event)
                }
            };
            // A compatibility stream may have nothing to say for an error: it just ends.
            if bytes.is_empty() {
                return None;
            }
            generation.pacer.sent(&state);
            Some((
                Ok::<_, io::Error>(bytes),
                (generation, encoder, guard, state),
            ))
        },
    );
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    let content_type = if api.is_native() {
        "application/x-ndjson"
    } else {
        "text/event-stream"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if matches!(api, Api::Anthropic | Api::Responses) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    response
}

pub(super) async fn collect_reply(
    api: Api,
    mut generation: Generation,
    encoder: Encoder,
    mut guard: StreamGuard,
    state: &FakeState,
) -> Response {
    let mut text = String::new();
    loop {
        match generation.next_event().await {
            Some(Event::Token(token)) => text.push_str(&token),
            Some(Event::Done(done)) => {
                guard.finish();
                return encoder.complete(&text, &done);
            }
            Some(Event::Error(message)) => {
                guard.finish();
                return api.error(state, StatusCode::INTERNAL_SERVER_ERROR, message);
            }
            Some(Event::Hangup) | None => {
                guard.abort();
                let content_type = if api.is_native() {
                    "application/json; charset=utf-8"
                } else {
                    "application/json"
                };
                return hangup_reply(content_type);
            }
        }
    }
}
