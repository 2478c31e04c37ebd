//! Anthropic Messages shapes (`/v1/messages`): the stream's `message_start`,
//! `content_block_start`, `content_block_delta`, `message_delta`, `message_stop` and
//! `error` events, and the non-streaming `message` body. One struct reads them all; the
//! data's `type` says which it is, falling back on the SSE `event:` name.

use serde::Deserialize;

use super::lenient::{ErrorField, Lenient, Present};
use super::{Collector, Origin, parse};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AnthropicObject {
    #[serde(rename = "type")]
    kind: Lenient<String>,
    error: ErrorField,
    /// `message_start`.
    message: Option<Message>,
    /// `content_block_start`.
    content_block: Option<Block>,
    /// `content_block_delta` (text, thinking, tool input) and `message_delta` (stop reason).
    delta: Option<Delta>,
    /// `message_delta`'s running totals, and a body's usage.
    usage: Option<Usage>,
    /// A body's content blocks.
    content: Option<Vec<Block>>,
    /// A body's stop reason.
    stop_reason: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Message {
    content: Option<Vec<Block>>,
    stop_reason: Lenient<String>,
    usage: Option<Usage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Block {
    #[serde(rename = "type")]
    kind: Lenient<String>,
    text: Lenient<String>,
    thinking: Present,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Delta {
    text: Lenient<String>,
    thinking: Present,
    /// A tool call's arguments, streamed.
    partial_json: Present,
    stop_reason: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Usage {
    input_tokens: Lenient<u64>,
    output_tokens: Lenient<u64>,
}

pub(super) fn apply(origin: Origin<'_>, bytes: &[u8], c: &mut Collector) -> Result<(), String> {
    let object: AnthropicObject = parse(bytes)?;
    c.error("error", object.error);

    let kind = c.take("type", object.kind);
    let kind = match (&kind, origin) {
        (Some(kind), _) => kind.as_str(),
        (None, Origin::Event(Some(name))) => name,
        (None, _) => "message",
    };
    match kind {
        "message" => {
            let message = Message {
                content: object.content,
                stop_reason: object.stop_reason,
                usage: object.usage,
            };
            apply_message(message, c);
        }
        "message_start" => {
            if let Some(message) = object.message {
                apply_message(message, c);
            }
        }
        "content_block_start" => {
            if let Some(block) = object.content_block
                && apply_block(block, c)
            {
                c.content_event();
            }
        }
        "content_block_delta" => {
            if let Some(delta) = object.delta {
                let text = c.take_text("delta.text", delta.text);
                if text.is_some() || delta.thinking.0 || delta.partial_json.0 {
                    c.content_event();
                }
                if let Some(text) = text {
                    c.capture(&text);
                }
            }
        }
        "message_delta" => {
            if let Some(delta) = object.delta {
                c.set_done_reason("delta.stop_reason", delta.stop_reason);
            }
            if let Some(usage) = object.usage {
                apply_usage(usage, c);
            }
        }
        "message_stop" => c.saw_end = true,
        // `ping`, `content_block_stop`, `error` (read above) and types added later.
        _ => {}
    }
    Ok(())
}

/// A whole message: a body, or the opening one of a stream (whose content is empty).
fn apply_message(message: Message, c: &mut Collector) {
    let mut has_content = false;
    for block in message.content.into_iter().flatten() {
        has_content |= apply_block(block, c);
    }
    if has_content {
        c.content_event();
    }
    c.set_done_reason("stop_reason", message.stop_reason);
    if let Some(usage) = message.usage {
        apply_usage(usage, c);
    }
}

/// Captures a text block's text; says whether the block carried content.
fn apply_block(block: Block, c: &mut Collector) -> bool {
    let kind = c.take("content.type", block.kind);
    match kind.as_deref() {
        Some("text") | None => match c.take_text("content.text", block.text) {
            Some(text) => {
                c.capture(&text);
                true
            }
            None => false,
        },
        Some("thinking") => block.thinking.0,
        Some("tool_use" | "server_tool_use") => true,
        Some(_) => false,
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
