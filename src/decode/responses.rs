//! OpenAI Responses shapes (`/v1/responses`): the stream's typed events
//! (`response.output_text.delta` and the other `*.delta` events, the terminal
//! `response.completed`, `response.incomplete` and `response.failed`, and `error`), and
//! the non-streaming `response` body; llama.cpp adds its `timings` to the stream's
//! `response.completed` event.

use serde::Deserialize;

use super::lenient::{ErrorField, Lenient, Present};
use super::{Collector, Origin, parse};

/// Said when a response failed without an error object of its own.
const FAILED: &str = "response failed";

/// One stream event. The terminal events repeat the whole response, output included;
/// [`ResponseSummary`] leaves the output out so that it is skipped, not stored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResponsesEvent {
    #[serde(rename = "type")]
    kind: Lenient<String>,
    delta: Lenient<String>,
    /// An `error` event's message.
    message: Lenient<String>,
    error: ErrorField,
    response: Option<ResponseSummary>,
    /// llama.cpp's server-side timings, beside `response` on `response.completed`.
    timings: Option<super::timings::Timings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResponseSummary {
    status: Lenient<String>,
    error: ErrorField,
    usage: Option<Usage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ResponseBody {
    status: Lenient<String>,
    error: ErrorField,
    usage: Option<Usage>,
    output: Option<Vec<OutputItem>>,
    /// llama.cpp's timings, should a body carry them.
    timings: Option<super::timings::Timings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OutputItem {
    #[serde(rename = "type")]
    kind: Lenient<String>,
    /// A message's parts; a reasoning item's reasoning text.
    content: Option<Vec<ContentPart>>,
    /// A reasoning item's summary.
    summary: Present,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: Lenient<String>,
    text: Lenient<String>,
    refusal: Present,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Usage {
    input_tokens: Lenient<u64>,
    output_tokens: Lenient<u64>,
}

pub(super) fn apply(origin: Origin<'_>, bytes: &[u8], c: &mut Collector) -> Result<(), String> {
    match origin {
        Origin::Body => apply_body(parse(bytes)?, c),
        Origin::Event(name) => apply_event(name, parse(bytes)?, c),
        Origin::Line => apply_event(None, parse(bytes)?, c),
    }
    Ok(())
}

fn apply_event(name: Option<&str>, event: ResponsesEvent, c: &mut Collector) {
    c.error("error", event.error);
    if let Some(timings) = event.timings {
        super::timings::apply(timings, c);
    }
    let kind = c.take("type", event.kind);
    let Some(kind) = kind.as_deref().or(name) else {
        return;
    };
    match kind {
        "response.output_text.delta" => {
            if let Some(delta) = c.take_text("delta", event.delta) {
                c.content_event();
                c.capture(&delta);
            }
        }
        // Reasoning, refusals, tool-call arguments: generated, but not the answer text.
        _ if kind.ends_with(".delta") => {
            if matches!(&event.delta, Lenient::Valid(delta) if !delta.is_empty()) {
                c.content_event();
            }
        }
        "response.completed" | "response.incomplete" | "response.failed" => {
            // `incomplete` is a natural end like Ollama's "length": the status says why.
            if kind == "response.failed" {
                let error = event
                    .response
                    .as_ref()
                    .map_or(&ErrorField::Absent, |r| &r.error);
                if matches!(error, ErrorField::Absent) {
                    c.error_message(FAILED.to_owned());
                }
            } else {
                c.saw_end = true;
            }
            if let Some(response) = event.response {
                apply_summary(response, c);
            }
        }
        "error" => {
            let message = c.take_text("message", event.message);
            c.error_message(message.unwrap_or_else(|| "error event without a message".into()));
        }
        _ => {}
    }
}

fn apply_summary(response: ResponseSummary, c: &mut Collector) {
    c.error("response.error", response.error);
    c.set_done_reason("response.status", response.status);
    if let Some(usage) = response.usage {
        apply_usage(usage, c);
    }
}

fn apply_body(body: ResponseBody, c: &mut Collector) {
    c.error("error", body.error);
    if let Some(timings) = body.timings {
        super::timings::apply(timings, c);
    }
    let status = c.take_text("status", body.status);
    if status.as_deref() == Some("failed") {
        c.error_message(FAILED.to_owned());
    }
    if let Some(status) = status {
        c.facts.done_reason = Some(status);
    }
    if let Some(usage) = body.usage {
        apply_usage(usage, c);
    }
    let mut has_content = false;
    for item in body.output.into_iter().flatten() {
        let kind = c.take("output.type", item.kind);
        match kind.as_deref() {
            Some("message") => {
                for part in item.content.into_iter().flatten() {
                    let kind = c.take("output.content.type", part.kind);
                    match kind.as_deref() {
                        Some("output_text") => {
                            if let Some(text) = c.take_text("output.content.text", part.text) {
                                has_content = true;
                                c.capture(&text);
                            }
                        }
                        Some("refusal") => has_content |= part.refusal.0,
                        _ => {}
                    }
                }
            }
            Some("reasoning") => {
                has_content |= item.summary.0 || item.content.is_some_and(|c| !c.is_empty());
            }
            Some("function_call" | "custom_tool_call") => has_content = true,
            _ => {}
        }
    }
    if has_content {
        c.content_event();
    }
}

fn apply_usage(usage: Usage, c: &mut Collector) {
    c.set("usage.input_tokens", usage.input_tokens, |f| {
        &mut f.prompt_eval_count
    });
    c.set("usage.output_tokens", usage.output_tokens, |f| {
        &mut f.eval_count
    });
}
