//! TEMPORARY STUB: replaced by the real decoders.
#![allow(missing_docs, unused)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api { Generate, Chat, Embed, Embeddings, OpenAiChat, OpenAiCompletions, OpenAiEmbeddings, AnthropicMessages, OpenAiResponses }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format { Ndjson, Sse, Json, Other }
impl Format { pub fn from_content_type(ct: Option<&str>) -> Format { match ct { Some(c) if c.starts_with("application/x-ndjson") => Format::Ndjson, Some(c) if c.starts_with("text/event-stream") => Format::Sse, Some(c) if c.starts_with("application/json") => Format::Json, _ => Format::Other } } }
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseFacts { pub completed: bool, pub done_reason: Option<String>, pub error_message: Option<String>, pub total_duration_ns: Option<u64>, pub load_duration_ns: Option<u64>, pub prompt_eval_count: Option<u64>, pub prompt_eval_duration_ns: Option<u64>, pub eval_count: Option<u64>, pub eval_duration_ns: Option<u64>, pub content_events: u64, pub tokens_estimated: bool, pub parse_errors: u64, pub first_parse_error: Option<String>, pub text: String, pub text_truncated: bool }
pub struct Decoder;
impl Decoder { pub fn new(api: Api, format: Format, capture_limit: usize, json_limit: usize) -> Decoder { Decoder } pub fn feed(&mut self, chunk: &[u8]) -> u64 { 0 } pub fn finish(self) -> ResponseFacts { ResponseFacts { completed: true, ..Default::default() } } }
