//! Encoders: one generation event to one chunk of each wire format (NDJSON, OpenAI SSE,
//! Anthropic events, Responses events).

use super::*;

#[derive(Serialize)]
pub(super) struct GenerateChunk<'a> {
    pub(super) model: &'a str,
    pub(super) created_at: String,
    pub(super) response: &'a str,
    pub(super) done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) done_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) context: Vec<u64>,
    #[serde(flatten)]
    pub(super) metrics: Metrics,
}

#[derive(Serialize)]
pub(super) struct ChatChunk<'a> {
    pub(super) model: &'a str,
    pub(super) created_at: String,
    pub(super) message: AssistantMessage<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) done_reason: Option<&'a str>,
    pub(super) done: bool,
    #[serde(flatten)]
    pub(super) metrics: Metrics,
}

#[derive(Serialize)]
pub(super) struct AssistantMessage<'a> {
    pub(super) role: &'static str,
    pub(super) content: &'a str,
}

impl AssistantMessage<'_> {
    pub(super) fn new(content: &str) -> AssistantMessage<'_> {
        AssistantMessage {
            role: "assistant",
            content,
        }
    }
}

#[derive(Clone, Copy, Serialize)]
pub(super) struct Usage {
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) total_tokens: u64,
}

impl Usage {
    pub(super) fn of(metrics: &Metrics) -> Usage {
        Usage {
            prompt_tokens: metrics.prompt_eval_count,
            completion_tokens: metrics.eval_count,
            total_tokens: metrics.prompt_eval_count + metrics.eval_count,
        }
    }

    pub(super) fn zero() -> Usage {
        Usage::of(&Metrics::default())
    }
}

#[derive(Serialize)]
pub(super) struct ChatCompletion<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) system_fingerprint: &'static str,
    pub(super) choices: Vec<ChatChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<Usage>,
}

#[derive(Serialize)]
pub(super) struct ChatChoice<'a> {
    pub(super) index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) message: Option<AssistantMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) delta: Option<AssistantMessage<'a>>,
    pub(super) finish_reason: Option<&'a str>,
}

/// A `/v1/completions` reply.
#[derive(Serialize)]
pub(super) struct Completion<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) system_fingerprint: &'static str,
    pub(super) choices: Vec<CompletionChoice<'a>>,
    pub(super) usage: Usage,
}

/// A `/v1/completions` chunk: `choices` before `model`, as Ollama writes it.
#[derive(Serialize)]
pub(super) struct CompletionChunk<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) choices: Vec<CompletionChoice<'a>>,
    pub(super) model: &'a str,
    pub(super) system_fingerprint: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<Usage>,
}

#[derive(Serialize)]
pub(super) struct CompletionChoice<'a> {
    pub(super) text: &'a str,
    pub(super) index: u32,
    pub(super) finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum AnthropicEvent<'a> {
    MessageStart {
        message: AnthropicMessage<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: TextBlock<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: TextDelta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: StopDelta,
        usage: OutputUsage,
    },
    MessageStop,
}

impl AnthropicEvent<'_> {
    pub(super) fn name(&self) -> &'static str {
        match self {
            AnthropicEvent::MessageStart { .. } => "message_start",
            AnthropicEvent::ContentBlockStart { .. } => "content_block_start",
            AnthropicEvent::ContentBlockDelta { .. } => "content_block_delta",
            AnthropicEvent::ContentBlockStop { .. } => "content_block_stop",
            AnthropicEvent::MessageDelta { .. } => "message_delta",
            AnthropicEvent::MessageStop => "message_stop",
        }
    }
}

#[derive(Serialize)]
pub(super) struct AnthropicMessage<'a> {
    pub(super) id: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) role: &'static str,
    pub(super) model: &'a str,
    pub(super) content: Option<Vec<TextBlock<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) stop_reason: Option<&'static str>,
    pub(super) usage: AnthropicUsage,
}

#[derive(Serialize)]
pub(super) struct TextBlock<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) text: &'a str,
}

#[derive(Serialize)]
pub(super) struct TextDelta<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) text: &'a str,
}

#[derive(Serialize)]
pub(super) struct StopDelta {
    pub(super) stop_reason: &'static str,
}

#[derive(Serialize)]
pub(super) struct OutputUsage {
    pub(super) output_tokens: u64,
}

#[derive(Serialize)]
pub(super) struct AnthropicUsage {
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
}

/// Ollama's mapping of `done_reason` to Anthropic's `stop_reason`.
pub(super) fn stop_reason(done_reason: &str) -> &'static str {
    match done_reason {
        "stop" => "end_turn",
        "length" => "max_tokens",
        _ => "stop_sequence",
    }
}

#[derive(Serialize)]
#[serde(tag = "type")]
pub(super) enum ResponsesEvent<'a> {
    #[serde(rename = "response.created")]
    Created {
        sequence_number: u64,
        response: ResponseObject<'a>,
    },
    #[serde(rename = "response.output_item.added")]
    ItemAdded {
        sequence_number: u64,
        output_index: u32,
        item: OutputItem<'a>,
    },
    #[serde(rename = "response.content_part.added")]
    PartAdded {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        part: OutputText<'a>,
    },
    #[serde(rename = "response.output_text.delta")]
    TextDelta {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        delta: &'a str,
    },
    #[serde(rename = "response.output_text.done")]
    TextDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        text: &'a str,
    },
    #[serde(rename = "response.content_part.done")]
    PartDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        part: OutputText<'a>,
    },
    #[serde(rename = "response.output_item.done")]
    ItemDone {
        sequence_number: u64,
        output_index: u32,
        item: OutputItem<'a>,
    },
    #[serde(rename = "response.completed")]
    Completed {
        sequence_number: u64,
        response: ResponseObject<'a>,
    },
}

impl ResponsesEvent<'_> {
    pub(super) fn name(&self) -> &'static str {
        match self {
            ResponsesEvent::Created { .. } => "response.created",
            ResponsesEvent::ItemAdded { .. } => "response.output_item.added",
            ResponsesEvent::PartAdded { .. } => "response.content_part.added",
            ResponsesEvent::TextDelta { .. } => "response.output_text.delta",
            ResponsesEvent::TextDone { .. } => "response.output_text.done",
            ResponsesEvent::PartDone { .. } => "response.content_part.done",
            ResponsesEvent::ItemDone { .. } => "response.output_item.done",
            ResponsesEvent::Completed { .. } => "response.completed",
        }
    }
}

#[derive(Serialize)]
pub(super) struct ResponseObject<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created_at: u64,
    pub(super) status: &'static str,
    pub(super) model: &'a str,
    pub(super) output: Vec<OutputItem<'a>>,
    pub(super) usage: Option<ResponseUsage>,
}

#[derive(Serialize)]
pub(super) struct OutputItem<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) id: &'a str,
    pub(super) status: &'static str,
    pub(super) role: &'static str,
    pub(super) content: Vec<OutputText<'a>>,
}

#[derive(Serialize)]
pub(super) struct OutputText<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) text: &'a str,
    pub(super) annotations: [(); 0],
}

impl OutputText<'_> {
    pub(super) fn new(text: &str) -> OutputText<'_> {
        OutputText {
            kind: "output_text",
            text,
            annotations: [],
        }
    }
}

#[derive(Serialize)]
pub(super) struct ResponseUsage {
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) total_tokens: u64,
}

/// Writes one generation in one wire format, keeping what that format needs between chunks.
pub(super) struct Encoder {
    pub(super) api: Api,
    pub(super) model: String,
    /// `chatcmpl-N`, `cmpl-N`, `msg_<hex>` or `resp_N` (none for the native shapes).
    pub(super) id: String,
    /// The Responses output item's id.
    pub(super) item_id: String,
    pub(super) include_usage: bool,
    pub(super) prompt_eval_count: u64,
    pub(super) created: u64,
    pub(super) started: bool,
    pub(super) sequence: u64,
    pub(super) text: String,
}

impl Encoder {
    pub(super) fn new(
        api: Api,
        request: &GenRequest,
        serial: u64,
        prompt_eval_count: u64,
    ) -> Encoder {
        let id = match api {
            Api::OpenAiChat => format!("chatcmpl-{}", serial % 999),
            Api::OpenAiCompletion => format!("cmpl-{}", serial % 999),
            Api::Anthropic => hex_id("msg", serial),
            Api::Responses => format!("resp_{}", serial % 999_999),
            Api::Generate | Api::Chat => String::new(),
        };
        Encoder {
            api,
            model: request.model.clone(),
            id,
            item_id: format!("msg_{}", (serial + 1) % 999_999),
            include_usage: request.include_usage,
            prompt_eval_count,
            created: unix_now(),
            started: false,
            sequence: 0,
            text: String::new(),
        }
    }

    /// One streamed chunk; empty when this format writes nothing for the event.
    pub(super) fn encode(&mut self, event: &Event) -> Bytes {
        let mut out = Vec::new();
        match self.api {
            Api::Generate => self.generate_chunk(event, &mut out),
            Api::Chat => self.chat_chunk(event, &mut out),
            Api::OpenAiChat => self.openai_chat_chunk(event, &mut out),
            Api::OpenAiCompletion => self.openai_completion_chunk(event, &mut out),
            Api::Anthropic => self.anthropic_chunk(event, &mut out),
            Api::Responses => self.responses_chunk(event, &mut out),
        }
        Bytes::from(out)
    }

    pub(super) fn generate_chunk(&self, event: &Event, out: &mut Vec<u8>) {
        let chunk = match event {
            Event::Token(token) => GenerateChunk {
                model: &self.model,
                created_at: rfc3339(SystemTime::now()),
                response: token,
                done: false,
                done_reason: None,
                context: Vec::new(),
                metrics: Metrics::default(),
            },
            Event::Done(done) => GenerateChunk {
                model: &self.model,
                created_at: rfc3339(SystemTime::now()),
                response: "",
                done: true,
                done_reason: Some(done.done_reason),
                context: done.context.clone(),
                metrics: done.metrics,
            },
            Event::Error(message) => return ndjson(out, &json!({ "error": message })),
            Event::Hangup => return,
        };
        ndjson(out, &chunk);
    }

    pub(super) fn chat_chunk(&self, event: &Event, out: &mut Vec<u8>) {
        let chunk = match event {
            Event::Token(token) => ChatChunk {
                model: &self.model,
                created_at: rfc3339(SystemTime::now()),
                message: AssistantMessage::new(token),
                done_reason: None,
                done: false,
                metrics: Metrics::default(),
            },
            Event::Done(done) => ChatChunk {
                model: &self.model,
                created_at: rfc3339(SystemTime::now()),
                message: AssistantMessage::new(""),
                done_reason: Some(done.done_reason),
                done: true,
                metrics: done.metrics,
            },
            Event::Error(message) => return ndjson(out, &json!({ "error": message })),
            Event::Hangup => return,
        };
        ndjson(out, &chunk);
    }

    pub(super) fn chat_completion<'a>(
        &'a self,
        choices: Vec<ChatChoice<'a>>,
        usage: Option<Usage>,
    ) -> ChatCompletion<'a> {
        ChatCompletion {
            id: &self.id,
            object: "chat.completion.chunk",
            created: unix_now(),
            model: &self.model,
            system_fingerprint: "fp_ollama",
            choices,
            usage,
        }
    }

    /// Ollama's ChatWriter: a chunk per native chunk, the last with `finish_reason`, then the
    /// usage chunk if asked for and `[DONE]`, all in one write. A native error line comes out
    /// as an empty delta, and the stream ends without `[DONE]`.
    pub(super) fn openai_chat_chunk(&self, event: &Event, out: &mut Vec<u8>) {
        let delta = |content, finish_reason| ChatChoice {
            index: 0,
            message: None,
            delta: Some(AssistantMessage::new(content)),
            finish_reason,
        };
        match event {
            Event::Token(token) => {
                sse_data(out, &self.chat_completion(vec![delta(token, None)], None))
            }
            Event::Error(_) => sse_data(out, &self.chat_completion(vec![delta("", None)], None)),
            Event::Done(done) => {
                let last = vec![delta("", Some(done.done_reason))];
                sse_data(out, &self.chat_completion(last, None));
                if self.include_usage {
                    let usage = Some(Usage::of(&done.metrics));
                    sse_data(out, &self.chat_completion(Vec::new(), usage));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Event::Hangup => {}
        }
    }

    pub(super) fn completion_chunk<'a>(
        &'a self,
        choices: Vec<CompletionChoice<'a>>,
        usage: Option<Usage>,
    ) -> CompletionChunk<'a> {
        CompletionChunk {
            id: &self.id,
            object: "text_completion",
            created: unix_now(),
            choices,
            model: &self.model,
            system_fingerprint: "fp_ollama",
            usage,
        }
    }

    /// Ollama's CompleteWriter; with `include_usage` every chunk carries a zero `usage`
    /// until the usage chunk, as Ollama's do.
    pub(super) fn openai_completion_chunk(&self, event: &Event, out: &mut Vec<u8>) {
        let zero = self.include_usage.then(Usage::zero);
        let choice = |text, finish_reason| CompletionChoice {
            text,
            index: 0,
            finish_reason,
        };
        match event {
            Event::Token(token) => {
                sse_data(out, &self.completion_chunk(vec![choice(token, None)], zero))
            }
            Event::Error(_) => sse_data(out, &self.completion_chunk(vec![choice("", None)], zero)),
            Event::Done(done) => {
                let last = vec![choice("", Some(done.done_reason))];
                sse_data(out, &self.completion_chunk(last, zero));
                if self.include_usage {
                    let usage = Some(Usage::of(&done.metrics));
                    sse_data(out, &self.completion_chunk(Vec::new(), usage));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Event::Hangup => {}
        }
    }

    /// Ollama's Anthropic StreamConverter: `message_start` (with the prompt's
    /// `input_tokens`) and `content_block_start` before the first text, a delta per token,
    /// then `content_block_stop`, `message_delta` (stop reason, `output_tokens`) and
    /// `message_stop`. A native error line adds nothing: the stream just ends.
    pub(super) fn anthropic_chunk(&mut self, event: &Event, out: &mut Vec<u8>) {
        let first = !std::mem::replace(&mut self.started, true);
        if first && !matches!(event, Event::Hangup) {
            let start = AnthropicEvent::MessageStart {
                message: AnthropicMessage {
                    id: &self.id,
                    kind: "message",
                    role: "assistant",
                    model: &self.model,
                    content: Some(Vec::new()),
                    stop_reason: None,
                    usage: AnthropicUsage {
                        input_tokens: self.prompt_eval_count,
                        output_tokens: 0,
                    },
                },
            };
            sse_event(out, start.name(), &start);
        }
        match event {
            Event::Token(token) => {
                if self.text.is_empty() {
                    let block = AnthropicEvent::ContentBlockStart {
                        index: 0,
                        content_block: TextBlock {
                            kind: "text",
                            text: "",
                        },
                    };
                    sse_event(out, block.name(), &block);
                }
                self.text.push_str(token);
                let delta = AnthropicEvent::ContentBlockDelta {
                    index: 0,
                    delta: TextDelta {
                        kind: "text_delta",
                        text: token,
                    },
                };
                sse_event(out, delta.name(), &delta);
            }
            Event::Done(done) => {
                if !self.text.is_empty() {
                    let stop = AnthropicEvent::ContentBlockStop { index: 0 };
                    sse_event(out, stop.name(), &stop);
                }
                let delta = AnthropicEvent::MessageDelta {
                    delta: StopDelta {
                        stop_reason: stop_reason(done.done_reason),
                    },
                    usage: OutputUsage {
                        output_tokens: done.metrics.eval_count,
                    },
                };
                sse_event(out, delta.name(), &delta);
                sse_event(out, "message_stop", &AnthropicEvent::MessageStop);
            }
            Event::Error(_) | Event::Hangup => {}
        }
    }

    pub(super) fn response_object(
        &self,
        status: &'static str,
        done: Option<&Final>,
    ) -> ResponseObject<'_> {
        ResponseObject {
            id: &self.id,
            object: "response",
            created_at: self.created,
            status,
            model: &self.model,
            output: done
                .map(|_| vec![self.output_item("completed")])
                .unwrap_or_default(),
            usage: done.map(|done| ResponseUsage {
                input_tokens: done.metrics.prompt_eval_count,
                output_tokens: done.metrics.eval_count,
                total_tokens: done.metrics.prompt_eval_count + done.metrics.eval_count,
            }),
        }
    }

    pub(super) fn output_item(&self, status: &'static str) -> OutputItem<'_> {
        let content = if status == "completed" {
            vec![OutputText::new(&self.text)]
        } else {
            Vec::new()
        };
        OutputItem {
            kind: "message",
            id: &self.item_id,
            status,
            role: "assistant",
            content,
        }
    }

    /// The OpenAI Responses stream: created, output item and content part added before the
    /// first text, a delta per token, then the done events and `response.completed` with
    /// usage. A native error line adds nothing: the stream just ends.
    pub(super) fn responses_chunk(&mut self, event: &Event, out: &mut Vec<u8>) {
        if matches!(event, Event::Hangup) {
            return;
        }
        if !std::mem::replace(&mut self.started, true) {
            self.responses_preamble(out);
        }
        match event {
            Event::Token(token) => {
                let seq = self.next_sequence(1);
                self.text.push_str(token);
                let delta = ResponsesEvent::TextDelta {
                    sequence_number: seq,
                    item_id: &self.item_id,
                    output_index: 0,
                    content_index: 0,
                    delta: token,
                };
                sse_event(out, delta.name(), &delta);
            }
            Event::Done(done) => {
                let seq = self.next_sequence(4);
                let events = [
                    ResponsesEvent::TextDone {
                        sequence_number: seq,
                        item_id: &self.item_id,
                        output_index: 0,
                        content_index: 0,
                        text: &self.text,
                    },
                    ResponsesEvent::PartDone {
                        sequence_number: seq + 1,
                        item_id: &self.item_id,
                        output_index: 0,
                        content_index: 0,
                        part: OutputText::new(&self.text),
                    },
                    ResponsesEvent::ItemDone {
                        sequence_number: seq + 2,
                        output_index: 0,
                        item: self.output_item("completed"),
                    },
                    ResponsesEvent::Completed {
                        sequence_number: seq + 3,
                        response: self.response_object("completed", Some(done)),
                    },
                ];
                events.iter().for_each(|e| sse_event(out, e.name(), e));
            }
            Event::Error(_) | Event::Hangup => {}
        }
    }

    pub(super) fn responses_preamble(&mut self, out: &mut Vec<u8>) {
        let seq = self.next_sequence(3);
        let events = [
            ResponsesEvent::Created {
                sequence_number: seq,
                response: self.response_object("in_progress", None),
            },
            ResponsesEvent::ItemAdded {
                sequence_number: seq + 1,
                output_index: 0,
                item: self.output_item("in_progress"),
            },
            ResponsesEvent::PartAdded {
                sequence_number: seq + 2,
                item_id: &self.item_id,
                output_index: 0,
                content_index: 0,
                part: OutputText::new(""),
            },
        ];
        events.iter().for_each(|e| sse_event(out, e.name(), e));
    }

    pub(super) fn next_sequence(&mut self, count: u64) -> u64 {
        let first = self.sequence;
        self.sequence += count;
        first
    }

    /// The single reply of a non-streaming request.
    pub(super) fn complete(mut self, text: &str, done: &Final) -> Response {
        let created_at = rfc3339(SystemTime::now());
        let finish_reason = Some(done.done_reason);
        match self.api {
            Api::Generate => gin_json(
                StatusCode::OK,
                &GenerateChunk {
                    model: &self.model,
                    created_at,
                    response: text,
                    done: true,
                    done_reason: finish_reason,
                    context: done.context.clone(),
                    metrics: done.metrics,
                },
            ),
            Api::Chat => gin_json(
                StatusCode::OK,
                &ChatChunk {
                    model: &self.model,
                    created_at,
                    message: AssistantMessage::new(text),
                    done_reason: finish_reason,
                    done: true,
                    metrics: done.metrics,
                },
            ),
            Api::OpenAiChat => {
                let choice = ChatChoice {
                    index: 0,
                    message: Some(AssistantMessage::new(text)),
                    delta: None,
                    finish_reason,
                };
                let reply = ChatCompletion {
                    object: "chat.completion",
                    ..self.chat_completion(vec![choice], Some(Usage::of(&done.metrics)))
                };
                encoder_json(StatusCode::OK, &reply)
            }
            Api::OpenAiCompletion => {
                let choice = CompletionChoice {
                    text,
                    index: 0,
                    finish_reason,
                };
                let reply = Completion {
                    id: &self.id,
                    object: "text_completion",
                    created: self.created,
                    model: &self.model,
                    system_fingerprint: "fp_ollama",
                    choices: vec![choice],
                    usage: Usage::of(&done.metrics),
                };
                encoder_json(StatusCode::OK, &reply)
            }
            Api::Anthropic => {
                let content = (!text.is_empty()).then(|| vec![TextBlock { kind: "text", text }]);
                let reply = AnthropicMessage {
                    id: &self.id,
                    kind: "message",
                    role: "assistant",
                    model: &self.model,
                    content,
                    stop_reason: Some(stop_reason(done.done_reason)),
                    usage: AnthropicUsage {
                        input_tokens: done.metrics.prompt_eval_count,
                        output_tokens: done.metrics.eval_count,
                    },
                };
                encoder_json(StatusCode::OK, &reply)
            }
            Api::Responses => {
                self.text = text.to_owned();
                encoder_json(
                    StatusCode::OK,
                    &self.response_object("completed", Some(done)),
                )
            }
        }
    }
}

pub(super) fn ndjson(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(&go_json(value));
    out.push(b'\n');
}

pub(super) fn sse_data(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&go_json(value));
    out.extend_from_slice(b"\n\n");
}

pub(super) fn sse_event(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\n");
    sse_data(out, value);
}
