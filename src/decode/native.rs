//! Ollama's own shapes: `/api/generate` and `/api/chat` chunks and final objects,
//! `/api/embed` and legacy `/api/embeddings` bodies, and the `{"error":"..."}` object.
//! One struct reads them all, since their fields do not clash; what is not listed here
//! (`context`, `embeddings`, `embedding`, `model`, ...) is skipped without being stored.

use serde::Deserialize;

use super::lenient::{ErrorField, Lenient, Present};
use super::{Collector, parse};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NativeObject {
    error: ErrorField,
    done: Lenient<bool>,
    done_reason: Lenient<String>,
    /// Generate's answer text.
    response: Lenient<String>,
    /// Generate's thinking, with `"think": true`.
    thinking: Present,
    /// Chat's message.
    message: Option<NativeMessage>,
    total_duration: Lenient<u64>,
    load_duration: Lenient<u64>,
    prompt_eval_count: Lenient<u64>,
    prompt_eval_duration: Lenient<u64>,
    eval_count: Lenient<u64>,
    eval_duration: Lenient<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NativeMessage {
    content: Lenient<String>,
    thinking: Present,
    tool_calls: Present,
}

pub(super) fn apply(bytes: &[u8], c: &mut Collector) -> Result<(), String> {
    let object: NativeObject = parse(bytes)?;
    c.error("error", object.error);

    let response = c.take_text("response", object.response);
    let mut has_content = response.is_some() || object.thinking.0;
    let mut content = None;
    if let Some(message) = object.message {
        content = c.take_text("message.content", message.content);
        has_content |= content.is_some() || message.thinking.0 || message.tool_calls.0;
    }
    if has_content {
        c.content_event();
    }
    for text in [response, content].iter().flatten() {
        c.capture(text);
    }

    if c.take("done", object.done) == Some(true) {
        c.saw_end = true;
    }
    c.set_done_reason("done_reason", object.done_reason);
    c.set("total_duration", object.total_duration, |f| {
        &mut f.total_duration_ns
    });
    c.set("load_duration", object.load_duration, |f| {
        &mut f.load_duration_ns
    });
    c.set("prompt_eval_count", object.prompt_eval_count, |f| {
        &mut f.prompt_eval_count
    });
    c.set("prompt_eval_duration", object.prompt_eval_duration, |f| {
        &mut f.prompt_eval_duration_ns
    });
    c.set("eval_count", object.eval_count, |f| &mut f.eval_count);
    c.set("eval_duration", object.eval_duration, |f| {
        &mut f.eval_duration_ns
    });
    Ok(())
}
