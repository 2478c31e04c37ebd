//! OpenAI shapes, as Ollama's compatibility routes send them: chat and completions
//! stream chunks (`choices[0].delta` / `choices[0].text`) and bodies
//! (`choices[0].message` / `choices[0].text`), embeddings bodies, `usage`, and the
//! `{"error":{"message":...}}` object, and llama.cpp's `timings`. The `[DONE]` terminator is handled by the caller,
//! as it is not JSON.

use serde::Deserialize;

use super::lenient::{ErrorField, Lenient, Present};
use super::{Collector, parse};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OpenAiObject {
    error: ErrorField,
    choices: Option<Vec<Choice>>,
    /// In a stream only with `stream_options.include_usage`, on a last chunk whose
    /// `choices` is empty; always in a body.
    usage: Option<Usage>,
    /// llama.cpp's server-side timings: in a body, and on a stream's last chunk.
    timings: Option<super::timings::Timings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Choice {
    /// Chat stream chunk.
    delta: Option<Message>,
    /// Chat body.
    message: Option<Message>,
    /// Completions, streamed or not.
    text: Lenient<String>,
    finish_reason: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message {
    content: Lenient<String>,
    /// Ollama's name for a thinking model's reasoning.
    reasoning: Present,
    /// The name other OpenAI-compatible servers use for the same.
    reasoning_content: Present,
    tool_calls: Present,
    refusal: Present,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Usage {
    prompt_tokens: Lenient<u64>,
    completion_tokens: Lenient<u64>,
}

pub(super) fn apply(bytes: &[u8], c: &mut Collector) -> Result<(), String> {
    let object: OpenAiObject = parse(bytes)?;
    c.error("error", object.error);

    // Ollama never sends more than one choice (`n` is not supported); the first is the answer.
    if let Some(choice) = object
        .choices
        .and_then(|choices| choices.into_iter().next())
    {
        let mut text = c.take_text("choices[0].text", choice.text);
        let mut has_content = text.is_some();
        for (name, message) in [
            ("choices[0].delta.content", choice.delta),
            ("choices[0].message.content", choice.message),
        ] {
            let Some(message) = message else { continue };
            let content = c.take_text(name, message.content);
            has_content |= content.is_some()
                || message.reasoning.0
                || message.reasoning_content.0
                || message.tool_calls.0
                || message.refusal.0;
            text = text.or(content);
        }
        if has_content {
            c.content_event();
        }
        if let Some(text) = text {
            c.capture(&text);
        }
        c.set_done_reason("choices[0].finish_reason", choice.finish_reason);
    }

    if let Some(usage) = object.usage {
        c.set("usage.prompt_tokens", usage.prompt_tokens, |f| {
            &mut f.prompt_eval_count
        });
        c.set("usage.completion_tokens", usage.completion_tokens, |f| {
            &mut f.eval_count
        });
    }
    if let Some(timings) = object.timings {
        super::timings::apply(timings, c);
    }
    Ok(())
}
