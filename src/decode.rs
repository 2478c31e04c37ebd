//! Incremental decoding of inference response bodies into [`ResponseFacts`].
//!
//! The proxy passes every upstream chunk to the client unchanged and feeds a copy to a
//! [`Decoder`]; at the end of the body [`Decoder::finish`] says what the body held: whether
//! it reached its natural end, the error it carried, Ollama's timings and token counts, how
//! many chunks carried generated content, and (up to a limit) the answer text.
//!
//! The work is split in two layers so that each can be reasoned about alone:
//! - framing, which cuts bytes into objects whatever the chunk boundaries: `ndjson` (lines),
//!   `sse` (server-sent events per the WHATWG rules) and `json` (one bounded body);
//! - shapes, which read one JSON object of one API family: `native` (Ollama's own routes),
//!   `openai`, `anthropic` and `responses`. `lenient` holds the field types that let one
//!   malformed field cost a parse error without losing the rest of its object.
//!
//! Nothing here trusts the input: malformed bytes are counted as parse errors, every buffer
//! has a cap, and no input makes the decoder panic.

mod anthropic;
mod json;
mod lenient;
mod native;
mod ndjson;
mod openai;
mod responses;
mod sse;
#[cfg(test)]
mod tests;
mod timings;

use lenient::{ErrorField, Lenient, Scalar};

/// Most bytes of one NDJSON line or one SSE event that are buffered for parsing. Ollama's
/// chunks are small; the largest is a generate final object whose `context` token array
/// runs to about a megabyte for a 128k context, so 16 MiB leaves ample room while keeping
/// a broken upstream from growing the buffer without end.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Longest parse-error message kept: serde quotes offending input in its messages, and a
/// record has no use for megabytes of it.
const MAX_PARSE_ERROR_BYTES: usize = 256;

/// Longest upstream error message kept. Ollama's runner errors can quote a few lines of
/// llama.cpp or CUDA output, which is worth keeping; a hostile upstream's megabyte is not.
const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// Which inference API the request was made on (chosen by the proxy from method+path).
/// Every one is listed in [`Api::ALL`] (derived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray)]
pub enum Api {
    /// `POST /api/generate`.
    Generate,
    /// `POST /api/chat`.
    Chat,
    /// `POST /api/embed`.
    Embed,
    /// `POST /api/embeddings` (legacy: the body holds nothing but the vector).
    Embeddings,
    /// `POST /v1/chat/completions`.
    OpenAiChat,
    /// `POST /v1/completions`.
    OpenAiCompletions,
    /// `POST /v1/embeddings`.
    OpenAiEmbeddings,
    /// `POST /v1/messages`.
    AnthropicMessages,
    /// `POST /v1/responses`.
    OpenAiResponses,
}

/// The families of object shapes; the APIs within one family share their shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Native,
    OpenAi,
    Anthropic,
    Responses,
}

impl Api {
    /// Every API, derived from the enum itself (so a new one cannot be left out).
    pub const ALL: &[Api] = <Api as strum::VariantArray>::VARIANTS;

    fn family(self) -> Family {
        match self {
            Api::Generate | Api::Chat | Api::Embed | Api::Embeddings => Family::Native,
            Api::OpenAiChat | Api::OpenAiCompletions | Api::OpenAiEmbeddings => Family::OpenAi,
            Api::AnthropicMessages => Family::Anthropic,
            Api::OpenAiResponses => Family::Responses,
        }
    }
}

/// Body framing, chosen from the response Content-Type (never from the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-ndjson`: one JSON object per `\n`-terminated line.
    Ndjson,
    /// `text/event-stream`: server-sent events.
    Sse,
    /// `application/json`: one JSON object.
    Json,
    /// Anything else, or no Content-Type: never parsed.
    Other,
}

impl Format {
    /// Picks the framing from a Content-Type header value. Parameters such as `charset` and
    /// the case of the media type do not matter.
    pub fn from_content_type(ct: Option<&str>) -> Format {
        let Some(ct) = ct else {
            return Format::Other;
        };
        let media_type = ct.split(';').next().unwrap_or_default().trim();
        if media_type.eq_ignore_ascii_case("application/x-ndjson") {
            Format::Ndjson
        } else if media_type.eq_ignore_ascii_case("text/event-stream") {
            Format::Sse
        } else if media_type.eq_ignore_ascii_case("application/json") {
            Format::Json
        } else {
            Format::Other
        }
    }
}

/// What one response body said about its call. Counts and durations are `None` where the
/// body did not carry them: Ollama omits zero fields, so absence means unknown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseFacts {
    /// The body reached its natural end (native `"done":true`; OpenAI `data: [DONE]`;
    /// Responses `response.completed` or `response.incomplete`; Anthropic `message_stop`;
    /// a complete JSON body) and carried no error. `completed && error_message.is_none()`
    /// therefore never needs spelling out: a body with an error is never completed.
    pub completed: bool,
    /// Why generation stopped: native `done_reason`, OpenAI `finish_reason`, Anthropic
    /// `stop_reason`, Responses `status`.
    pub done_reason: Option<String>,
    /// The first error object the body carried, mid-stream ones included.
    pub error_message: Option<String>,
    /// Ollama's `total_duration`.
    pub total_duration_ns: Option<u64>,
    /// Ollama's `load_duration`: queueing plus model load.
    pub load_duration_ns: Option<u64>,
    /// Prompt tokens (native `prompt_eval_count`, OpenAI `prompt_tokens`, Anthropic and
    /// Responses `input_tokens`).
    pub prompt_eval_count: Option<u64>,
    /// Ollama's `prompt_eval_duration`.
    pub prompt_eval_duration_ns: Option<u64>,
    /// Generated tokens (native `eval_count`, OpenAI `completion_tokens`, Anthropic and
    /// Responses `output_tokens`), or the estimate described at `tokens_estimated`.
    pub eval_count: Option<u64>,
    /// Ollama's `eval_duration`.
    pub eval_duration_ns: Option<u64>,
    /// Chunks, events or bodies that carried generated content: answer text, thinking or
    /// tool calls. Each counts once however many of those it held.
    pub content_events: u64,
    /// `eval_count` was set to `content_events` because an OpenAI chat or completions
    /// stream carried no usage (the request lacked `stream_options.include_usage`). Ollama
    /// sends one token per chunk, so the estimate is close but not exact.
    pub tokens_estimated: bool,
    /// Lines, events or bodies that were not valid JSON or not the expected shape. An
    /// object with one malformed field counts once and still gives its other fields.
    pub parse_errors: u64,
    /// What was wrong with the first of `parse_errors`, cut to a few hundred bytes.
    pub first_parse_error: Option<String>,
    /// The answer text (not thinking, not tool calls), up to the decoder's capture limit
    /// and cut at a char boundary.
    pub text: String,
    /// Answer text was dropped because it passed the capture limit. Always false when
    /// capture is off (limit 0).
    pub text_truncated: bool,
    /// llama.cpp's `timings` object (the last one seen), when the server sent one.
    pub server_timings: Option<ServerTimings>,
}

/// The server's own measurements of one call, as llama.cpp's `timings` gives them.
/// Each field is `None` when the object lacked it or held something else.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerTimings {
    /// Prompt tokens evaluated (those not reused from the KV cache).
    pub prompt_n: Option<u64>,
    /// Milliseconds spent evaluating them.
    pub prompt_ms: Option<f64>,
    /// The server's prompt tokens per second.
    pub prompt_per_second: Option<f64>,
    /// Tokens generated.
    pub predicted_n: Option<u64>,
    /// Milliseconds spent generating them.
    pub predicted_ms: Option<f64>,
    /// The server's generated tokens per second.
    pub predicted_per_second: Option<f64>,
}

impl ServerTimings {
    /// Generation speed: the server's `predicted_per_second`, else `predicted_n /
    /// predicted_ms`.
    pub fn tokens_per_second(&self) -> Option<f64> {
        positive(self.predicted_per_second)
            .or_else(|| per_second(self.predicted_n, self.predicted_ms))
    }

    /// Prompt speed: the server's `prompt_per_second`, else `prompt_n / prompt_ms`.
    pub fn prompt_tokens_per_second(&self) -> Option<f64> {
        positive(self.prompt_per_second).or_else(|| per_second(self.prompt_n, self.prompt_ms))
    }
}

fn positive(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && *v > 0.0)
}

fn per_second(n: Option<u64>, ms: Option<f64>) -> Option<f64> {
    match (n, ms) {
        (Some(n), Some(ms)) if n > 0 && ms > 0.0 => Some(n as f64 / ms * 1e3),
        _ => None,
    }
}

impl ResponseFacts {
    /// Generation speed as Ollama defines it: `eval_count / eval_duration * 1e9`. `None`
    /// unless both are known and the duration is not zero.
    pub fn eval_tokens_per_second(&self) -> Option<f64> {
        match (self.eval_count, self.eval_duration_ns) {
            (Some(count), Some(ns)) if ns > 0 => Some(count as f64 / ns as f64 * 1e9),
            _ => None,
        }
    }
}

/// Incremental decoder for one response body. Feed it every chunk in order, then call
/// [`Decoder::finish`]. Any split of the same bytes into chunks gives the same facts.
#[derive(Debug)]
pub struct Decoder {
    api: Api,
    framer: Framer,
    collector: Collector,
}

#[derive(Debug)]
enum Framer {
    Ndjson(ndjson::Lines),
    Sse(sse::Events),
    Json(json::Body),
    Other,
}

impl Decoder {
    /// `capture_limit`: bytes of answer text to keep (0 = keep none). `json_limit`: most
    /// bytes of a [`Format::Json`] body to buffer for parsing; over it, buffering stops and
    /// a parse error "response body over N bytes, not parsed" is reported (the bytes still
    /// pass; only the facts are lost).
    pub fn new(api: Api, format: Format, capture_limit: usize, json_limit: usize) -> Decoder {
        Decoder::with_frame_limit(api, format, capture_limit, json_limit, MAX_FRAME_BYTES)
    }

    /// Like [`Decoder::new`] with the line/event cap chosen, so tests can reach it cheaply.
    fn with_frame_limit(
        api: Api,
        format: Format,
        capture_limit: usize,
        json_limit: usize,
        frame_limit: usize,
    ) -> Decoder {
        let framer = match format {
            Format::Ndjson => Framer::Ndjson(ndjson::Lines::new(frame_limit)),
            Format::Sse => Framer::Sse(sse::Events::new(frame_limit)),
            Format::Json => Framer::Json(json::Body::new(json_limit)),
            Format::Other => Framer::Other,
        };
        Decoder {
            api,
            framer,
            collector: Collector::new(capture_limit),
        }
    }

    /// Feeds the next chunk; returns how many content events completed within this call
    /// (the proxy stamps time-to-first-token when this first returns more than 0). A JSON
    /// body is only parsed at [`Decoder::finish`], so for it this is always 0.
    pub fn feed(&mut self, chunk: &[u8]) -> u64 {
        let before = self.collector.facts.content_events;
        let api = self.api;
        let collector = &mut self.collector;
        match &mut self.framer {
            Framer::Ndjson(lines) => lines.feed(chunk, &mut |line| collector.line(api, line)),
            Framer::Sse(events) => events.feed(chunk, &mut |event| collector.event(api, event)),
            Framer::Json(body) => body.feed(chunk),
            Framer::Other => {}
        }
        self.collector.facts.content_events - before
    }

    /// End of body: flushes a final line or event that lacked its terminator, parses a
    /// buffered JSON body, and returns the facts.
    pub fn finish(mut self) -> ResponseFacts {
        let api = self.api;
        let stream = matches!(self.framer, Framer::Ndjson(_) | Framer::Sse(_));
        let collector = &mut self.collector;
        match &mut self.framer {
            Framer::Ndjson(lines) => lines.finish(&mut |line| collector.line(api, line)),
            Framer::Sse(events) => events.finish(&mut |event| collector.event(api, event)),
            Framer::Json(body) => match body.finish() {
                Ok(bytes) => collector.object(api, Origin::Body, bytes),
                Err(problem) => collector.parse_error(problem),
            },
            Framer::Other => {}
        }
        self.collector.into_facts(api, stream)
    }
}

/// Where an object came from: the same API shapes its stream chunks and its whole
/// bodies differently.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    /// One NDJSON line.
    Line,
    /// One SSE event, with its `event:` type if it had one.
    Event(Option<&'a str>),
    /// A whole JSON body.
    Body,
}

/// Accumulates facts object by object; the shape modules write into it.
#[derive(Debug)]
struct Collector {
    facts: ResponseFacts,
    capture_limit: usize,
    /// The natural end was seen; turned into `completed` at the end, when errors are known.
    saw_end: bool,
    /// The first malformed field of the object being applied, so that one object counts
    /// one parse error however many of its fields were wrong.
    problem: Option<String>,
}

impl Collector {
    fn new(capture_limit: usize) -> Collector {
        Collector {
            facts: ResponseFacts::default(),
            capture_limit,
            saw_end: false,
            problem: None,
        }
    }

    fn line(&mut self, api: Api, line: ndjson::Line<'_>) {
        match line {
            ndjson::Line::Complete(bytes) => self.object(api, Origin::Line, bytes),
            ndjson::Line::Oversize(limit) => {
                self.parse_error(format!("line over {limit} bytes, not parsed"));
            }
        }
    }

    fn event(&mut self, api: Api, event: sse::Event<'_>) {
        match event {
            sse::Event::Complete { name, data } => {
                // `[DONE]` is OpenAI's terminator, not JSON; other families never send it,
                // so from them it is tolerated rather than counted as a parse error.
                if data.trim_ascii() == b"[DONE]" {
                    if api.family() == Family::OpenAi {
                        self.saw_end = true;
                    }
                    return;
                }
                self.object(api, Origin::Event(name), data);
            }
            sse::Event::Oversize(limit) => {
                self.parse_error(format!("event over {limit} bytes, not parsed"));
            }
        }
    }

    /// Applies one JSON object, counting at most one parse error for it.
    fn object(&mut self, api: Api, origin: Origin<'_>, bytes: &[u8]) {
        self.problem = None;
        let result = match bytes.trim_ascii_start().first() {
            None => Err("empty body".to_owned()),
            Some(b'{') => match api.family() {
                Family::Native => native::apply(bytes, self),
                Family::OpenAi => openai::apply(bytes, self),
                Family::Anthropic => anthropic::apply(origin, bytes, self),
                Family::Responses => responses::apply(origin, bytes, self),
            },
            Some(_) => Err("not a JSON object".to_owned()),
        };
        match result {
            Ok(()) => {
                if matches!(origin, Origin::Body) {
                    self.saw_end = true;
                }
                if let Some(problem) = self.problem.take() {
                    self.parse_error(problem);
                }
            }
            Err(problem) => self.parse_error(problem),
        }
    }

    fn parse_error(&mut self, problem: String) {
        self.facts.parse_errors = self.facts.parse_errors.saturating_add(1);
        if self.facts.first_parse_error.is_none() {
            self.facts.first_parse_error = Some(clip(problem, MAX_PARSE_ERROR_BYTES));
        }
    }

    /// The field's value if it had the right type; a wrong type is noted as the object's
    /// problem and reads as absent.
    fn take<T: Scalar>(&mut self, name: &str, value: Lenient<T>) -> Option<T> {
        match value {
            Lenient::Absent => None,
            Lenient::Valid(v) => Some(v),
            Lenient::Invalid => {
                self.note_problem(format!("{name}: expected {}", T::EXPECTED));
                None
            }
        }
    }

    /// Like [`Collector::take`] for strings, with an empty string read as absent (Ollama
    /// omits empty fields; others send `""` for the same thing).
    fn take_text(&mut self, name: &str, value: Lenient<String>) -> Option<String> {
        self.take(name, value).filter(|s| !s.is_empty())
    }

    /// Overwrites a fact with the field's value when it has one: later objects carry the
    /// more complete numbers (Anthropic's `message_delta` after `message_start`).
    fn set<T: Scalar>(
        &mut self,
        name: &str,
        value: Lenient<T>,
        slot: fn(&mut ResponseFacts) -> &mut Option<T>,
    ) {
        if let Some(v) = self.take(name, value) {
            *slot(&mut self.facts) = Some(v);
        }
    }

    fn set_done_reason(&mut self, name: &str, value: Lenient<String>) {
        if let Some(reason) = self.take_text(name, value) {
            self.facts.done_reason = Some(reason);
        }
    }

    fn note_problem(&mut self, problem: String) {
        if self.problem.is_none() {
            self.problem = Some(problem);
        }
    }

    /// Records the error an object carried; the first one is the cause, later ones echo it.
    fn error(&mut self, name: &str, field: ErrorField) {
        match field {
            ErrorField::Absent => {}
            ErrorField::Message(message) => self.error_message(message),
            ErrorField::Invalid => {
                self.note_problem(format!("{name}: expected a string or an error object"));
            }
        }
    }

    fn error_message(&mut self, message: String) {
        if self.facts.error_message.is_none() {
            self.facts.error_message = Some(clip(message, MAX_ERROR_MESSAGE_BYTES));
        }
    }

    /// One object carried generated content.
    fn content_event(&mut self) {
        self.facts.content_events = self.facts.content_events.saturating_add(1);
    }

    /// Keeps answer text up to the capture limit. Once text has been cut nothing more is
    /// kept, so the captured text is always a true prefix of the answer.
    fn capture(&mut self, text: &str) {
        if text.is_empty() || self.capture_limit == 0 || self.facts.text_truncated {
            return;
        }
        let room = self.capture_limit.saturating_sub(self.facts.text.len());
        if text.len() <= room {
            self.facts.text.push_str(text);
        } else {
            self.facts
                .text
                .push_str(&text[..floor_char_boundary(text, room)]);
            self.facts.text_truncated = true;
        }
    }

    fn into_facts(mut self, api: Api, stream: bool) -> ResponseFacts {
        self.facts.completed = self.saw_end && self.facts.error_message.is_none();
        // Only OpenAI streams lack counts by design (JSON bodies always have usage); elsewhere
        // a missing count is a body cut short, and an estimate would hide that. A stream that
        // neither carried content nor ended says nothing worth estimating.
        let estimable = stream && matches!(api, Api::OpenAiChat | Api::OpenAiCompletions);
        // llama.cpp's timings count the generated tokens exactly even when the stream
        // carried no usage; they are the server's count, not an estimate.
        if self.facts.eval_count.is_none()
            && let Some(n) = self
                .facts
                .server_timings
                .as_ref()
                .and_then(|t| t.predicted_n)
        {
            self.facts.eval_count = Some(n);
        }
        let said_something = self.facts.content_events > 0 || self.saw_end;
        if estimable && said_something && self.facts.eval_count.is_none() {
            self.facts.eval_count = Some(self.facts.content_events);
            self.facts.tokens_estimated = true;
        }
        self.facts
    }
}

/// Parses one object of an API's shape, telling syntax errors from shape errors.
fn parse<'de, T: serde::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("unexpected shape: {e}"),
        _ => format!("invalid JSON: {e}"),
    })
}

/// Largest char boundary of `text` at or below `index`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    let mut cut = index;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// Cuts a message to at most `max` bytes plus an ellipsis that marks the cut.
fn clip(mut message: String, max: usize) -> String {
    if message.len() > max {
        let cut = floor_char_boundary(&message, max);
        message.truncate(cut);
        message.push('…');
    }
    message
}
