//! Decoder tests over realistic bodies (shapes from `shared/ollama-api.md` and the public
//! API references). Every fixture goes through [`decode`], which also checks that every
//! two-chunk split and a byte-by-byte feed give the same facts and content-event total.

use super::*;

const CAPTURE: usize = 1 << 20;
const JSON_LIMIT: usize = 1 << 20;

/// Feeds `chunks` in order; returns the facts and the sum of what `feed` returned.
fn run_with(decoder: Decoder, chunks: &[&[u8]]) -> (ResponseFacts, u64) {
    let mut decoder = decoder;
    let mut events = 0;
    for chunk in chunks {
        events += decoder.feed(chunk);
    }
    (decoder.finish(), events)
}

fn run(api: Api, format: Format, capture: usize, chunks: &[&[u8]]) -> (ResponseFacts, u64) {
    run_with(Decoder::new(api, format, capture, JSON_LIMIT), chunks)
}

/// Asserts that every split of `body` gives the same result as one chunk, and returns it.
fn decode_split_checked(api: Api, format: Format, capture: usize, body: &[u8]) -> ResponseFacts {
    let (whole, whole_events) = run(api, format, capture, &[body]);
    for cut in 0..=body.len() {
        let (a, b) = body.split_at(cut);
        let (facts, events) = run(api, format, capture, &[a, b]);
        assert_eq!(facts, whole, "{api:?}/{format:?} split at byte {cut}");
        assert_eq!(
            events, whole_events,
            "{api:?}/{format:?} events, split at byte {cut}"
        );
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    let (facts, events) = run(api, format, capture, &bytes);
    assert_eq!(facts, whole, "{api:?}/{format:?} byte by byte");
    assert_eq!(
        events, whole_events,
        "{api:?}/{format:?} events, byte by byte"
    );
    if format != Format::Json {
        assert_eq!(whole_events, whole.content_events, "feed() returns add up");
    }
    whole
}

fn decode(api: Api, format: Format, body: &str) -> ResponseFacts {
    decode_split_checked(api, format, CAPTURE, body.as_bytes())
}

/// Lines joined with `\n` and terminated, as Ollama writes them.
fn ndjson(lines: &[&str]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// `data:` events, as OpenAI-compatible routes write them.
fn sse_data(events: &[&str]) -> String {
    events
        .iter()
        .map(|data| format!("data: {data}\n\n"))
        .collect()
}

/// `event:`/`data:` pairs, as the Anthropic and Responses routes write them.
fn sse_typed(events: &[(&str, &str)]) -> String {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Fixtures

const GENERATE_FINAL: &str = r#"{"model":"llama3.2","created_at":"2026-08-21T17:15:24.307521Z","response":"","done":true,"done_reason":"stop","context":[128006,9125,882],"total_duration":1162761250,"load_duration":101397084,"prompt_eval_count":26,"prompt_eval_duration":13074791,"eval_count":18,"eval_duration":52479709}"#;

fn generate_stream() -> String {
    ndjson(&[
        r#"{"model":"llama3.2","created_at":"2026-08-21T17:15:24.097767Z","response":"The","done":false}"#,
        r#"{"model":"llama3.2","created_at":"2026-08-21T17:15:24.110112Z","response":" sky","done":false}"#,
        r#"{"model":"llama3.2","created_at":"2026-08-21T17:15:24.122401Z","response":" is blue.","done":false}"#,
        GENERATE_FINAL,
    ])
}

fn chat_stream() -> String {
    ndjson(&[
        r#"{"model":"qwen3","created_at":"2026-08-21T17:15:24.1Z","message":{"role":"assistant","content":"","thinking":"The user"},"done":false}"#,
        r#"{"model":"qwen3","created_at":"2026-08-21T17:15:24.2Z","message":{"role":"assistant","content":"","thinking":" greets me."},"done":false}"#,
        r#"{"model":"qwen3","created_at":"2026-08-21T17:15:24.3Z","message":{"role":"assistant","content":"Hello"},"done":false}"#,
        r#"{"model":"qwen3","created_at":"2026-08-21T17:15:24.4Z","message":{"role":"assistant","content":"! ☀️"},"done":false}"#,
        r#"{"model":"qwen3","created_at":"2026-08-21T17:15:24.5Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},"done":false}"#,
        r#"{"model":"qwen3","created_at":"2026-08-21T17:15:24.6Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":2000000000,"load_duration":1000000,"prompt_eval_count":12,"prompt_eval_duration":3000000,"eval_count":9,"eval_duration":90000000}"#,
    ])
}

fn chunk(delta: &str, finish: &str) -> String {
    format!(
        r#"{{"id":"chatcmpl-412","object":"chat.completion.chunk","created":1755796524,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
    )
}

fn openai_chat_stream(include_usage: bool) -> String {
    let mut events = vec![
        chunk(r#"{"role":"assistant","content":"The"}"#, "null"),
        chunk(r#"{"role":"assistant","content":" sky"}"#, "null"),
        chunk(r#"{"role":"assistant","content":" is blue."}"#, "null"),
        chunk(r#"{"role":"assistant","content":""}"#, r#""stop""#),
    ];
    if include_usage {
        events.push(
            r#"{"id":"chatcmpl-412","object":"chat.completion.chunk","created":1755796524,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":26,"completion_tokens":4,"total_tokens":30}}"#
                .to_owned(),
        );
    }
    events.push("[DONE]".to_owned());
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    sse_data(&refs)
}

fn anthropic_stream() -> String {
    sse_typed(&[
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"llama3.2","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Greet back."}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type": "ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hello"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" there!"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":1}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ])
}

fn responses_stream() -> String {
    sse_typed(&[
        (
            "response.created",
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1755796524,"status":"in_progress","model":"llama3.2","output":[],"usage":null}}"#,
        ),
        (
            "response.in_progress",
            r#"{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1","object":"response","status":"in_progress","output":[]}}"#,
        ),
        (
            "response.reasoning_summary_text.delta",
            r#"{"type":"response.reasoning_summary_text.delta","sequence_number":2,"item_id":"rs_1","output_index":0,"summary_index":0,"delta":"Short answer."}"#,
        ),
        (
            "response.output_item.added",
            r#"{"type":"response.output_item.added","sequence_number":3,"output_index":1,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
        ),
        (
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":1,"content_index":0,"delta":"Hi"}"#,
        ),
        (
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1","output_index":1,"content_index":0,"delta":" you."}"#,
        ),
        (
            "response.output_text.done",
            r#"{"type":"response.output_text.done","sequence_number":6,"item_id":"msg_1","output_index":1,"content_index":0,"text":"Hi you."}"#,
        ),
        (
            "response.completed",
            r#"{"type":"response.completed","sequence_number":7,"response":{"id":"resp_1","object":"response","status":"completed","error":null,"output":[{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi you.","annotations":[]}]}],"usage":{"input_tokens":11,"output_tokens":7,"total_tokens":18}}}"#,
        ),
    ])
}

// ---------------------------------------------------------------------------------------
// Format

#[test]
fn format_follows_the_content_type() {
    let cases = [
        (Some("application/x-ndjson"), Format::Ndjson),
        (Some("text/event-stream"), Format::Sse),
        (Some("text/event-stream; charset=utf-8"), Format::Sse),
        (Some("application/json"), Format::Json),
        (Some("application/json; charset=utf-8"), Format::Json),
        (Some("Application/JSON ;charset=UTF-8"), Format::Json),
        (Some("text/plain; charset=utf-8"), Format::Other),
        (Some("application/jsonl"), Format::Other),
        (Some(""), Format::Other),
        (None, Format::Other),
    ];
    for (ct, expected) in cases {
        assert_eq!(Format::from_content_type(ct), expected, "{ct:?}");
    }
}

#[test]
fn other_format_is_never_parsed() {
    let body = generate_stream();
    let (facts, events) = run(Api::Generate, Format::Other, CAPTURE, &[body.as_bytes()]);
    assert_eq!(facts, ResponseFacts::default());
    assert_eq!(events, 0);
}

// ---------------------------------------------------------------------------------------
// Native NDJSON

#[test]
fn generate_stream_gives_metrics_text_and_events() {
    let facts = decode(Api::Generate, Format::Ndjson, &generate_stream());
    assert_eq!(
        facts,
        ResponseFacts {
            completed: true,
            done_reason: Some("stop".into()),
            total_duration_ns: Some(1_162_761_250),
            load_duration_ns: Some(101_397_084),
            prompt_eval_count: Some(26),
            prompt_eval_duration_ns: Some(13_074_791),
            eval_count: Some(18),
            eval_duration_ns: Some(52_479_709),
            content_events: 3,
            text: "The sky is blue.".into(),
            ..ResponseFacts::default()
        }
    );
    let tokens_per_second = facts.eval_tokens_per_second().expect("speed");
    assert!((tokens_per_second - 18.0 / 52_479_709.0 * 1e9).abs() < 1e-9);
    assert!(
        (tokens_per_second - 342.99).abs() < 0.01,
        "{tokens_per_second}"
    );
}

#[test]
fn feed_reports_content_events_as_lines_complete() {
    let body = generate_stream();
    let lines: Vec<&str> = body.split_inclusive('\n').collect();
    let mut decoder = Decoder::new(Api::Generate, Format::Ndjson, CAPTURE, JSON_LIMIT);
    let first = lines[0].as_bytes();
    assert_eq!(
        decoder.feed(&first[..10]),
        0,
        "half a line is not an event yet"
    );
    assert_eq!(decoder.feed(&first[10..]), 1);
    assert_eq!(
        decoder.feed(format!("{}{}", lines[1], lines[2]).as_bytes()),
        2
    );
    assert_eq!(
        decoder.feed(lines[3].as_bytes()),
        0,
        "the final line has no content"
    );
    assert!(decoder.finish().completed);
}

#[test]
fn chat_stream_counts_thinking_and_tool_calls_but_captures_only_content() {
    let facts = decode(Api::Chat, Format::Ndjson, &chat_stream());
    assert!(facts.completed);
    assert_eq!(facts.content_events, 5);
    assert_eq!(facts.text, "Hello! ☀️");
    assert_eq!(facts.eval_count, Some(9));
    assert_eq!(facts.eval_tokens_per_second(), Some(100.0));
    assert_eq!(facts.prompt_eval_count, Some(12));
    assert_eq!(facts.done_reason.as_deref(), Some("stop"));
    assert_eq!(facts.parse_errors, 0);
}

#[test]
fn generate_thinking_counts_as_content() {
    let body = ndjson(&[
        r#"{"model":"qwen3","response":"","thinking":"Hmm","done":false}"#,
        r#"{"model":"qwen3","response":"Yes","done":false}"#,
    ]);
    let facts = decode(Api::Generate, Format::Ndjson, &body);
    assert_eq!(facts.content_events, 2);
    assert_eq!(facts.text, "Yes");
}

#[test]
fn a_mid_stream_error_fails_the_call() {
    let body = ndjson(&[
        r#"{"model":"llama3.2","created_at":"2026-08-21T17:15:24.097767Z","response":"Once","done":false}"#,
        r#"{"error":"an error was encountered while running the model: unexpected EOF"}"#,
    ]);
    let facts = decode(Api::Generate, Format::Ndjson, &body);
    assert!(!facts.completed);
    assert_eq!(
        facts.error_message.as_deref(),
        Some("an error was encountered while running the model: unexpected EOF")
    );
    assert_eq!(facts.content_events, 1);
    assert_eq!(facts.text, "Once");
    assert_eq!(facts.eval_count, None);
    assert_eq!(facts.parse_errors, 0);
}

#[test]
fn a_stream_cut_before_done_is_not_completed() {
    let body = generate_stream();
    let cut = body.find(GENERATE_FINAL).expect("final line");
    let facts = decode(Api::Generate, Format::Ndjson, &body[..cut]);
    assert!(!facts.completed);
    assert_eq!(facts.error_message, None);
    assert_eq!(facts.content_events, 3);
    assert_eq!(facts.eval_count, None);
    assert!(
        !facts.tokens_estimated,
        "native streams are never estimated"
    );
}

#[test]
fn a_final_line_without_newline_is_parsed_at_finish() {
    let body = generate_stream();
    let facts = decode(Api::Generate, Format::Ndjson, body.trim_end());
    assert!(facts.completed);
    assert_eq!(facts.eval_count, Some(18));
}

#[test]
fn blank_lines_and_crlf_are_harmless() {
    let body = format!("\n{}\r\n\r\n  \n", GENERATE_FINAL);
    let facts = decode(Api::Generate, Format::Ndjson, &body);
    assert!(facts.completed);
    assert_eq!(facts.parse_errors, 0);
}

#[test]
fn a_bad_line_costs_one_parse_error_and_the_stream_goes_on() {
    let body = ndjson(&[
        r#"{"response":"a","done":false}"#,
        r#"{"response":"b","done":fal"#,
        "not json at all",
        r#"[1,2,3]"#,
        GENERATE_FINAL,
    ]);
    let facts = decode(Api::Generate, Format::Ndjson, &body);
    assert!(facts.completed);
    assert_eq!(facts.parse_errors, 3);
    let first = facts.first_parse_error.as_deref().expect("first error");
    assert!(first.starts_with("invalid JSON: "), "{first}");
    assert_eq!(facts.text, "a");
    assert_eq!(facts.eval_count, Some(18));
}

#[test]
fn an_empty_native_stream_says_nothing() {
    let facts = decode(Api::Chat, Format::Ndjson, "");
    assert_eq!(facts, ResponseFacts::default());
}

// ---------------------------------------------------------------------------------------
// Native JSON

#[test]
fn generate_json_body() {
    let body = GENERATE_FINAL.replace(r#""response":"""#, r#""response":"The sky is blue.""#);
    let facts = decode(Api::Generate, Format::Json, &body);
    assert!(facts.completed);
    assert_eq!(facts.content_events, 1);
    assert_eq!(facts.text, "The sky is blue.");
    assert_eq!(facts.eval_count, Some(18));
    assert_eq!(facts.eval_duration_ns, Some(52_479_709));
    assert_eq!(facts.total_duration_ns, Some(1_162_761_250));
}

#[test]
fn chat_json_body() {
    let body = r#"{"model":"llama3.2","created_at":"2026-08-21T17:15:24Z","message":{"role":"assistant","content":"Paris.","thinking":"Capital of France."},"done":true,"done_reason":"stop","total_duration":5000,"eval_count":2,"eval_duration":1000}"#;
    let facts = decode(Api::Chat, Format::Json, body);
    assert!(facts.completed);
    assert_eq!(facts.content_events, 1);
    assert_eq!(facts.text, "Paris.");
    assert_eq!(facts.eval_tokens_per_second(), Some(2e6));
}

#[test]
fn embed_json_body_has_no_eval_fields() {
    let body = r#"{"model":"all-minilm","embeddings":[[0.010071029,-0.0017594862,0.05007221],[-0.0098027075,0.06042469,0.025447936]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}"#;
    let facts = decode(Api::Embed, Format::Json, body);
    assert_eq!(
        facts,
        ResponseFacts {
            completed: true,
            total_duration_ns: Some(14_143_917),
            load_duration_ns: Some(1_019_500),
            prompt_eval_count: Some(8),
            ..ResponseFacts::default()
        }
    );
}

#[test]
fn legacy_embeddings_body_says_only_success() {
    let body = r#"{"embedding":[0.5670403838157654,0.009260174818336964,0.23178744316101074]}"#;
    let facts = decode(Api::Embeddings, Format::Json, body);
    assert_eq!(
        facts,
        ResponseFacts {
            completed: true,
            ..ResponseFacts::default()
        }
    );
}

#[test]
fn a_large_embedding_body_parses_without_trouble() {
    let vector: Vec<String> = (0..200_000).map(|i| format!("{}.{i}", i % 7)).collect();
    let body = format!(
        r#"{{"model":"nomic-embed-text","embeddings":[[{}]],"total_duration":9,"prompt_eval_count":3}}"#,
        vector.join(",")
    );
    assert!(body.len() > 1_000_000);
    let mut decoder = Decoder::new(Api::Embed, Format::Json, 0, 8 << 20);
    for piece in body.as_bytes().chunks(65_536) {
        decoder.feed(piece);
    }
    let facts = decoder.finish();
    assert!(facts.completed);
    assert_eq!(facts.prompt_eval_count, Some(3));
}

#[test]
fn native_json_error_bodies() {
    for (body, message) in [
        (
            r#"{"error":"model 'nope' not found"}"#,
            "model 'nope' not found",
        ),
        (
            r#"{"error":"server busy, please try again.  maximum pending requests exceeded"}"#,
            "server busy, please try again.  maximum pending requests exceeded",
        ),
        (
            r#"{"error":"llama runner process has terminated: exit status 2"}"#,
            "llama runner process has terminated: exit status 2",
        ),
    ] {
        for api in [Api::Generate, Api::Chat, Api::Embed, Api::Embeddings] {
            let facts = decode(api, Format::Json, body);
            assert_eq!(facts.error_message.as_deref(), Some(message), "{api:?}");
            assert!(!facts.completed, "an error body is not a completed call");
            assert_eq!(facts.parse_errors, 0);
        }
    }
}

#[test]
fn a_json_body_over_the_limit_is_reported_not_parsed() {
    let body = GENERATE_FINAL.as_bytes();
    let limit = body.len() - 1;
    let decoder = Decoder::new(Api::Generate, Format::Json, CAPTURE, limit);
    let (facts, _) = run_with(decoder, &[&body[..100], &body[100..]]);
    assert!(!facts.completed);
    assert_eq!(facts.parse_errors, 1);
    let expected = format!("response body over {limit} bytes, not parsed");
    assert_eq!(facts.first_parse_error, Some(expected));
    assert_eq!(facts.eval_count, None);

    let decoder = Decoder::new(Api::Generate, Format::Json, CAPTURE, body.len());
    assert!(
        run_with(decoder, &[body]).0.completed,
        "exactly at the limit is fine"
    );
}

#[test]
fn empty_and_truncated_json_bodies_are_parse_errors() {
    for body in [
        "",
        "   ",
        r#"{"done":true,"eval_count":1"#,
        "null",
        "\"text\"",
        "12",
    ] {
        let facts = decode(Api::Generate, Format::Json, body);
        assert!(!facts.completed, "{body:?}");
        assert_eq!(facts.parse_errors, 1, "{body:?}");
        assert!(facts.first_parse_error.is_some());
    }
}

#[test]
fn a_json_body_feeds_no_events_until_finish() {
    let body = GENERATE_FINAL.replace(r#""response":"""#, r#""response":"x""#);
    let (facts, events) = run(Api::Generate, Format::Json, CAPTURE, &[body.as_bytes()]);
    assert_eq!(events, 0);
    assert_eq!(facts.content_events, 1);
}

// ---------------------------------------------------------------------------------------
// OpenAI

#[test]
fn openai_chat_stream_without_usage_estimates_tokens() {
    let facts = decode(Api::OpenAiChat, Format::Sse, &openai_chat_stream(false));
    assert_eq!(
        facts,
        ResponseFacts {
            completed: true,
            done_reason: Some("stop".into()),
            eval_count: Some(3),
            content_events: 3,
            tokens_estimated: true,
            text: "The sky is blue.".into(),
            ..ResponseFacts::default()
        }
    );
}

#[test]
fn openai_chat_stream_with_usage_reports_it() {
    let facts = decode(Api::OpenAiChat, Format::Sse, &openai_chat_stream(true));
    assert!(facts.completed);
    assert!(!facts.tokens_estimated);
    assert_eq!(facts.prompt_eval_count, Some(26));
    assert_eq!(facts.eval_count, Some(4));
    assert_eq!(facts.content_events, 3);
    assert_eq!(facts.done_reason.as_deref(), Some("stop"));
    assert_eq!(facts.parse_errors, 0);
}

#[test]
fn openai_reasoning_and_tool_calls_are_content_without_text() {
    let body = sse_data(&[
        &chunk(
            r#"{"role":"assistant","content":"","reasoning":"Think"}"#,
            "null",
        ),
        &chunk(
            r#"{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","index":0,"type":"function","function":{"name":"f","arguments":"{}"}}]}"#,
            "null",
        ),
        &chunk(r#"{"role":"assistant","content":""}"#, r#""tool_calls""#),
        "[DONE]",
    ]);
    let facts = decode(Api::OpenAiChat, Format::Sse, &body);
    assert_eq!(facts.content_events, 2);
    assert_eq!(facts.text, "");
    assert_eq!(facts.done_reason.as_deref(), Some("tool_calls"));
    assert!(facts.tokens_estimated);
    assert_eq!(facts.eval_count, Some(2));
}

#[test]
fn openai_completions_stream() {
    let body = sse_data(&[
        r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"text":"Once","index":0,"finish_reason":null}]}"#,
        r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"text":" upon","index":0,"finish_reason":"length"}]}"#,
        r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"llama3.2","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        "[DONE]",
    ]);
    let facts = decode(Api::OpenAiCompletions, Format::Sse, &body);
    assert!(facts.completed);
    assert_eq!(facts.text, "Once upon");
    assert_eq!(facts.content_events, 2);
    assert_eq!(facts.done_reason.as_deref(), Some("length"));
    assert_eq!(
        (facts.prompt_eval_count, facts.eval_count),
        (Some(3), Some(2))
    );
    assert!(!facts.tokens_estimated);
}

#[test]
fn an_openai_stream_without_done_is_not_completed_but_still_estimated() {
    let body = openai_chat_stream(false);
    let body = body.trim_end_matches("data: [DONE]\n\n");
    let facts = decode(Api::OpenAiChat, Format::Sse, body);
    assert!(!facts.completed);
    assert_eq!(facts.eval_count, Some(3));
    assert!(facts.tokens_estimated);
}

#[test]
fn an_openai_mid_stream_error_fails_the_call() {
    let body = sse_data(&[
        &chunk(r#"{"role":"assistant","content":"Hi"}"#, "null"),
        r#"{"error":{"message":"an error was encountered while running the model","type":"api_error","param":null,"code":null}}"#,
    ]);
    let facts = decode(Api::OpenAiChat, Format::Sse, &body);
    assert!(!facts.completed);
    assert_eq!(
        facts.error_message.as_deref(),
        Some("an error was encountered while running the model")
    );
    assert_eq!(facts.content_events, 1);
}

#[test]
fn an_error_then_done_is_still_not_completed() {
    let body = sse_data(&[r#"{"error":{"message":"boom"}}"#, "[DONE]"]);
    let facts = decode(Api::OpenAiChat, Format::Sse, &body);
    assert!(!facts.completed);
    assert_eq!(facts.error_message.as_deref(), Some("boom"));
}

#[test]
fn openai_sse_with_crlf_and_comments_and_no_final_blank_line() {
    let body = format!(
        ": ping\r\ndata: {}\r\n\r\ndata: [DONE]",
        chunk(r#"{"content":"ok"}"#, r#""stop""#)
    );
    let facts = decode(Api::OpenAiChat, Format::Sse, &body);
    assert!(facts.completed);
    assert_eq!(facts.text, "ok");
}

#[test]
fn openai_chat_json_body() {
    let body = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1755796524,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":3,"total_tokens":29}}"#;
    let facts = decode(Api::OpenAiChat, Format::Json, body);
    assert_eq!(
        facts,
        ResponseFacts {
            completed: true,
            done_reason: Some("stop".into()),
            prompt_eval_count: Some(26),
            eval_count: Some(3),
            content_events: 1,
            text: "Hi there".into(),
            ..ResponseFacts::default()
        }
    );
}

#[test]
fn openai_completions_json_body() {
    let body = r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"llama3.2","choices":[{"text":"42","index":0,"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8}}"#;
    let facts = decode(Api::OpenAiCompletions, Format::Json, body);
    assert!(facts.completed);
    assert_eq!(facts.text, "42");
    assert_eq!(facts.eval_count, Some(1));
    assert!(!facts.tokens_estimated, "bodies are never estimated");
}

#[test]
fn openai_json_body_without_usage_is_not_estimated() {
    let body = r#"{"choices":[{"index":0,"message":{"content":"x"},"finish_reason":"stop"}]}"#;
    let facts = decode(Api::OpenAiChat, Format::Json, body);
    assert_eq!(facts.eval_count, None);
    assert!(!facts.tokens_estimated);
}

#[test]
fn openai_embeddings_json_body() {
    let body = r#"{"object":"list","data":[{"object":"embedding","embedding":[0.010071029,-0.0017594862],"index":0}],"model":"all-minilm","usage":{"prompt_tokens":5,"total_tokens":5}}"#;
    let facts = decode(Api::OpenAiEmbeddings, Format::Json, body);
    assert!(facts.completed);
    assert_eq!(facts.prompt_eval_count, Some(5));
    assert_eq!(facts.eval_count, None);
    assert_eq!(facts.content_events, 0);
}

#[test]
fn openai_json_error_body() {
    let body = r#"{"error":{"message":"model \"nope\" not found, try pulling it first","type":"api_error","param":null,"code":null}}"#;
    for api in [
        Api::OpenAiChat,
        Api::OpenAiCompletions,
        Api::OpenAiEmbeddings,
    ] {
        let facts = decode(api, Format::Json, body);
        assert_eq!(
            facts.error_message.as_deref(),
            Some("model \"nope\" not found, try pulling it first")
        );
        assert!(!facts.completed);
        assert_eq!(facts.eval_count, None);
    }
}

#[test]
fn a_done_marker_outside_openai_is_tolerated() {
    let mut body = anthropic_stream();
    body.push_str("data: [DONE]\n\n");
    let facts = decode(Api::AnthropicMessages, Format::Sse, &body);
    assert_eq!(facts.parse_errors, 0);
    assert!(facts.completed);
}

// ---------------------------------------------------------------------------------------
// Anthropic

#[test]
fn anthropic_stream_gives_usage_stop_reason_and_text() {
    let facts = decode(Api::AnthropicMessages, Format::Sse, &anthropic_stream());
    assert_eq!(
        facts,
        ResponseFacts {
            completed: true,
            done_reason: Some("end_turn".into()),
            prompt_eval_count: Some(25),
            eval_count: Some(15),
            content_events: 3,
            text: "Hello there!".into(),
            ..ResponseFacts::default()
        }
    );
}

#[test]
fn anthropic_tool_input_deltas_are_content() {
    let body = sse_typed(&[
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ]);
    let facts = decode(Api::AnthropicMessages, Format::Sse, &body);
    assert_eq!(facts.content_events, 2);
    assert_eq!(facts.text, "");
    assert!(facts.completed);
    assert!(!facts.tokens_estimated);
}

#[test]
fn anthropic_error_event_fails_the_call() {
    let mut body = anthropic_stream();
    let cut = body.find("event: message_delta").expect("message_delta");
    body.truncate(cut);
    body.push_str(&sse_typed(&[(
        "error",
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
    )]));
    let facts = decode(Api::AnthropicMessages, Format::Sse, &body);
    assert!(!facts.completed);
    assert_eq!(facts.error_message.as_deref(), Some("Overloaded"));
    assert_eq!(facts.text, "Hello there!");
    assert_eq!(facts.eval_count, Some(1), "from message_start");
}

#[test]
fn anthropic_event_name_is_used_when_data_has_no_type() {
    let body = "event: content_block_delta\ndata: {\"delta\":{\"text\":\"x\"}}\n\n\
                event: message_stop\ndata: {}\n\n";
    let facts = decode(Api::AnthropicMessages, Format::Sse, body);
    assert_eq!(facts.text, "x");
    assert!(facts.completed);
}

#[test]
fn anthropic_json_body() {
    let body = r#"{"id":"msg_01","type":"message","role":"assistant","model":"llama3.2","content":[{"type":"thinking","thinking":"Easy.","signature":""},{"type":"text","text":"Paris"},{"type":"text","text":" is the capital."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":6}}"#;
    let facts = decode(Api::AnthropicMessages, Format::Json, body);
    assert_eq!(
        facts,
        ResponseFacts {
            completed: true,
            done_reason: Some("end_turn".into()),
            prompt_eval_count: Some(12),
            eval_count: Some(6),
            content_events: 1,
            text: "Paris is the capital.".into(),
            ..ResponseFacts::default()
        }
    );
}

#[test]
fn anthropic_json_error_body() {
    let body =
        r#"{"type":"error","error":{"type":"not_found_error","message":"model 'nope' not found"}}"#;
    let facts = decode(Api::AnthropicMessages, Format::Json, body);
    assert_eq!(
        facts.error_message.as_deref(),
        Some("model 'nope' not found")
    );
    assert!(!facts.completed);
}

// ---------------------------------------------------------------------------------------
// Responses

#[test]
fn responses_stream_gives_usage_status_and_text() {
    let facts = decode(Api::OpenAiResponses, Format::Sse, &responses_stream());
    assert_eq!(
        facts,
        ResponseFacts {
            completed: true,
            done_reason: Some("completed".into()),
            prompt_eval_count: Some(11),
            eval_count: Some(7),
            content_events: 3,
            text: "Hi you.".into(),
            ..ResponseFacts::default()
        }
    );
}

#[test]
fn responses_stream_without_completed_is_not_completed() {
    let body = responses_stream();
    let cut = body
        .find("event: response.completed")
        .expect("completed event");
    let facts = decode(Api::OpenAiResponses, Format::Sse, &body[..cut]);
    assert!(!facts.completed);
    assert_eq!(facts.eval_count, None);
    assert!(!facts.tokens_estimated);
    assert_eq!(facts.done_reason, None, "in_progress is not a done reason");
}

#[test]
fn responses_incomplete_is_a_natural_end() {
    let body = sse_typed(&[(
        "response.incomplete",
        r#"{"type":"response.incomplete","response":{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":3,"output_tokens":64}}}"#,
    )]);
    let facts = decode(Api::OpenAiResponses, Format::Sse, &body);
    assert!(facts.completed);
    assert_eq!(facts.done_reason.as_deref(), Some("incomplete"));
    assert_eq!(facts.eval_count, Some(64));
}

#[test]
fn responses_failed_and_error_events_fail_the_call() {
    let failed = sse_typed(&[(
        "response.failed",
        r#"{"type":"response.failed","sequence_number":3,"response":{"id":"resp_1","object":"response","status":"failed","error":{"code":"server_error","message":"The model crashed."},"output":[]}}"#,
    )]);
    let facts = decode(Api::OpenAiResponses, Format::Sse, &failed);
    assert!(!facts.completed);
    assert_eq!(facts.error_message.as_deref(), Some("The model crashed."));
    assert_eq!(facts.done_reason.as_deref(), Some("failed"));

    let bare = sse_typed(&[(
        "response.failed",
        r#"{"type":"response.failed","response":{}}"#,
    )]);
    let facts = decode(Api::OpenAiResponses, Format::Sse, &bare);
    assert_eq!(facts.error_message.as_deref(), Some("response failed"));

    let error = sse_typed(&[(
        "error",
        r#"{"type":"error","code":"ERR_SOMETHING","message":"Something went wrong","param":null,"sequence_number":1}"#,
    )]);
    let facts = decode(Api::OpenAiResponses, Format::Sse, &error);
    assert!(!facts.completed);
    assert_eq!(facts.error_message.as_deref(), Some("Something went wrong"));
}

#[test]
fn responses_json_body() {
    let body = r#"{"id":"resp_1","object":"response","created_at":1755796524,"status":"completed","error":null,"incomplete_details":null,"model":"llama3.2","output":[{"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"Simple."}]},{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Four.","annotations":[]}]}],"usage":{"input_tokens":9,"input_tokens_details":{"cached_tokens":0},"output_tokens":3,"output_tokens_details":{"reasoning_tokens":1},"total_tokens":12}}"#;
    let facts = decode(Api::OpenAiResponses, Format::Json, body);
    assert_eq!(
        facts,
        ResponseFacts {
            completed: true,
            done_reason: Some("completed".into()),
            prompt_eval_count: Some(9),
            eval_count: Some(3),
            content_events: 1,
            text: "Four.".into(),
            ..ResponseFacts::default()
        }
    );
}

#[test]
fn responses_json_failed_and_error_bodies() {
    let failed = r#"{"id":"resp_1","object":"response","status":"failed","error":{"code":"server_error","message":"oom"},"output":[]}"#;
    let facts = decode(Api::OpenAiResponses, Format::Json, failed);
    assert!(!facts.completed);
    assert_eq!(facts.error_message.as_deref(), Some("oom"));

    let error = r#"{"error":{"message":"model 'x' not found","type":"api_error","param":null,"code":null}}"#;
    let facts = decode(Api::OpenAiResponses, Format::Json, error);
    assert!(!facts.completed);
    assert_eq!(facts.error_message.as_deref(), Some("model 'x' not found"));
}

// ---------------------------------------------------------------------------------------
// Capture limit

#[test]
fn capture_stops_at_the_limit_on_a_char_boundary() {
    let body = ndjson(&[
        r#"{"response":"ab","done":false}"#,
        r#"{"response":"cé","done":false}"#,
        r#"{"response":"f","done":false}"#,
    ]);
    // "abcé" is 5 bytes; a limit of 4 would split the é.
    let facts = decode_split_checked(Api::Generate, Format::Ndjson, 4, body.as_bytes());
    assert_eq!(facts.text, "abc");
    assert!(facts.text_truncated);
    assert_eq!(facts.content_events, 3);

    let facts = decode_split_checked(Api::Generate, Format::Ndjson, 6, body.as_bytes());
    assert_eq!(facts.text, "abcéf");
    assert!(
        !facts.text_truncated,
        "exactly at the limit is not truncated"
    );

    let facts = decode_split_checked(Api::Generate, Format::Ndjson, 5, body.as_bytes());
    assert_eq!(facts.text, "abcé");
    assert!(facts.text_truncated);
}

#[test]
fn capture_limit_zero_keeps_nothing() {
    let facts = decode_split_checked(Api::Chat, Format::Ndjson, 0, chat_stream().as_bytes());
    assert_eq!(facts.text, "");
    assert!(!facts.text_truncated);
    assert_eq!(facts.content_events, 5);
}

#[test]
fn capture_limit_applies_to_every_api() {
    let cases = [
        (
            Api::OpenAiChat,
            Format::Sse,
            openai_chat_stream(true),
            "The sky",
        ),
        (
            Api::AnthropicMessages,
            Format::Sse,
            anthropic_stream(),
            "Hello t",
        ),
        (
            Api::OpenAiResponses,
            Format::Sse,
            responses_stream(),
            "Hi you.",
        ),
        (Api::Generate, Format::Ndjson, generate_stream(), "The sky"),
    ];
    for (api, format, body, expected) in cases {
        let facts = decode_split_checked(api, format, 7, body.as_bytes());
        assert_eq!(facts.text, expected, "{api:?}");
        assert_eq!(facts.text_truncated, expected != "Hi you.", "{api:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Untrusted input

#[test]
fn wrong_types_cost_a_parse_error_but_keep_the_rest() {
    let body = ndjson(&[
        r#"{"response":"x","done":true,"done_reason":"stop","eval_count":-5,"eval_duration":"fast","total_duration":1e30,"load_duration":7.5,"prompt_eval_count":26.0,"prompt_eval_duration":18446744073709551615}"#,
    ]);
    let facts = decode(Api::Generate, Format::Ndjson, &body);
    assert!(facts.completed);
    assert_eq!(facts.done_reason.as_deref(), Some("stop"));
    assert_eq!(facts.text, "x");
    assert_eq!(facts.eval_count, None);
    assert_eq!(facts.eval_duration_ns, None);
    assert_eq!(facts.total_duration_ns, None);
    assert_eq!(facts.load_duration_ns, None);
    assert_eq!(
        facts.prompt_eval_count,
        Some(26),
        "an integral float is its integer"
    );
    assert_eq!(facts.prompt_eval_duration_ns, Some(u64::MAX));
    assert_eq!(facts.parse_errors, 1, "one object, one parse error");
    let first = facts.first_parse_error.expect("first error");
    assert!(first.contains("non-negative integer"), "{first}");
}

#[test]
fn huge_numbers_are_refused() {
    let body = r#"{"done":true,"eval_count":18446744073709551616,"eval_duration":99999999999999999999999999}"#;
    let facts = decode(Api::Generate, Format::Json, body);
    assert_eq!((facts.eval_count, facts.eval_duration_ns), (None, None));
    assert_eq!(facts.parse_errors, 1);
    assert!(facts.completed);
}

#[test]
fn null_fields_read_as_absent() {
    let body = r#"{"done":null,"done_reason":null,"eval_count":null,"response":null,"error":null,"message":null}"#;
    let facts = decode(Api::Chat, Format::Json, body);
    assert_eq!(facts.parse_errors, 0);
    assert_eq!(facts.error_message, None);
    assert!(facts.completed);
}

#[test]
fn wrong_nested_shapes_are_parse_errors() {
    let cases = [
        (Api::Chat, r#"{"message":"hi","done":true}"#),
        (Api::OpenAiChat, r#"{"choices":{"0":{}}}"#),
        (Api::OpenAiChat, r#"{"choices":[{"delta":"text"}]}"#),
        (
            Api::AnthropicMessages,
            r#"{"type":"message","content":"text"}"#,
        ),
        (
            Api::OpenAiResponses,
            r#"{"status":"completed","output":{}}"#,
        ),
    ];
    for (api, body) in cases {
        let facts = decode(api, Format::Json, body);
        assert_eq!(facts.parse_errors, 1, "{body}");
        assert!(!facts.completed, "{body}");
        let first = facts.first_parse_error.expect("first error");
        assert!(first.starts_with("unexpected shape: "), "{first}");
    }
}

#[test]
fn odd_error_fields() {
    let cases = [
        (r#"{"error":""}"#, Some("error without a message"), 0),
        (r#"{"error":{}}"#, Some("error without a message"), 0),
        (
            r#"{"error":{"type":"overloaded_error"}}"#,
            Some("overloaded_error"),
            0,
        ),
        (
            r#"{"error":{"code":500}}"#,
            Some("error without a message"),
            0,
        ),
        (r#"{"error":false}"#, None, 0),
        (r#"{"error":42}"#, None, 1),
        (r#"{"error":[1]}"#, None, 1),
    ];
    for (body, message, parse_errors) in cases {
        let facts = decode(Api::Generate, Format::Json, body);
        assert_eq!(facts.error_message.as_deref(), message, "{body}");
        assert_eq!(facts.parse_errors, parse_errors, "{body}");
    }
}

#[test]
fn invalid_utf8_is_a_parse_error() {
    let mut body = br#"{"response":"caf"#.to_vec();
    body.extend_from_slice(b"\xE9\xff");
    body.extend_from_slice(b"\",\"done\":false}\n");
    body.extend_from_slice(GENERATE_FINAL.as_bytes());
    body.push(b'\n');
    let facts = decode_split_checked(Api::Generate, Format::Ndjson, CAPTURE, &body);
    assert_eq!(facts.parse_errors, 1);
    assert!(facts.completed);
    assert_eq!(facts.text, "");
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    // Skipped values are walked without recursion, so nesting there is harmless and
    // accepted; where a value is read, serde_json's recursion limit refuses it.
    let bodies = [
        format!(r#"{{"context":{nested},"done":true}}"#),
        format!(r#"{{"response":{nested}}}"#),
        format!(r#"{{"message":{{"thinking":{objects}}}}}"#),
        format!(r#"{{"error":{objects}}}"#),
        format!(r#"{{"unknown":{objects}}}"#),
        format!(r#"{{"choices":[{{"delta":{objects}}}]}}"#),
        objects.clone(),
    ];
    for &api in ALL_APIS {
        for body in &bodies {
            let (facts, _) = run(api, Format::Json, 0, &[body.as_bytes()]);
            assert!(facts.parse_errors <= 1, "{api:?} {}", &body[..20]);
        }
        let (facts, _) = run(api, Format::Json, 0, &[nested.as_bytes()]);
        assert_eq!(facts.parse_errors, 1);
        let unclosed = "[".repeat(depth);
        let (facts, _) = run(api, Format::Ndjson, 0, &[unclosed.as_bytes()]);
        assert_eq!(facts.parse_errors, 1);
    }
}

#[test]
fn long_messages_are_clipped() {
    let long = "x".repeat(10_000);
    let body = format!(r#"{{"message":"{long}"}}"#);
    let (facts, _) = run(Api::Chat, Format::Json, 0, &[body.as_bytes()]);
    let first = facts.first_parse_error.expect("first error");
    assert!(
        first.len() <= MAX_ERROR_MESSAGE_BYTES + '…'.len_utf8(),
        "{}",
        first.len()
    );
    assert!(first.ends_with('…'));
}

#[test]
fn an_oversize_line_is_one_parse_error() {
    let long = format!(r#"{{"response":"{}","done":false}}"#, "y".repeat(400));
    let body = ndjson(&[r#"{"response":"a","done":false}"#, &long, GENERATE_FINAL]);
    let decoder = || Decoder::with_frame_limit(Api::Generate, Format::Ndjson, CAPTURE, 0, 300);
    let (whole, _) = run_with(decoder(), &[body.as_bytes()]);
    assert_eq!(whole.parse_errors, 1);
    assert_eq!(
        whole.first_parse_error.as_deref(),
        Some("line over 300 bytes, not parsed")
    );
    assert!(whole.completed);
    assert_eq!(whole.text, "a");
    for cut in 0..=body.len() {
        let (a, b) = body.as_bytes().split_at(cut);
        assert_eq!(run_with(decoder(), &[a, b]).0, whole, "cut at {cut}");
    }
}

#[test]
fn an_oversize_event_is_one_parse_error() {
    let long = chunk(&format!(r#"{{"content":"{}"}}"#, "z".repeat(400)), "null");
    let body = sse_data(&[&chunk(r#"{"content":"a"}"#, "null"), &long, "[DONE]"]);
    let decoder = || Decoder::with_frame_limit(Api::OpenAiChat, Format::Sse, CAPTURE, 0, 400);
    let (whole, _) = run_with(decoder(), &[body.as_bytes()]);
    assert_eq!(whole.parse_errors, 1);
    assert_eq!(
        whole.first_parse_error.as_deref(),
        Some("event over 400 bytes, not parsed")
    );
    assert!(whole.completed);
    for cut in 0..=body.len() {
        let (a, b) = body.as_bytes().split_at(cut);
        assert_eq!(run_with(decoder(), &[a, b]).0, whole, "cut at {cut}");
    }
}

#[test]
fn the_default_line_cap_holds_against_an_endless_line() {
    let mut decoder = Decoder::new(Api::Generate, Format::Ndjson, CAPTURE, JSON_LIMIT);
    let piece = vec![b'x'; 1 << 20];
    for _ in 0..17 {
        decoder.feed(&piece);
    }
    if let Framer::Ndjson(lines) = &decoder.framer {
        assert_eq!(
            lines.buffered_bytes(),
            0,
            "the buffer was dropped when it passed the cap"
        );
    }
    decoder.feed(b"\n");
    decoder.feed(GENERATE_FINAL.as_bytes());
    let facts = decoder.finish();
    assert_eq!(facts.parse_errors, 1);
    assert!(facts.completed);
}

// ---------------------------------------------------------------------------------------
// Fuzz-ish: random and mutated input in random splits never panics and never depends on
// the split.

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const ALL_APIS: &[Api] = Api::ALL;

/// Pieces that steer random input into the parsers' interesting paths.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "\n",
    "\r",
    "\r\n",
    "\n\n",
    " ",
    "data: ",
    "data:",
    "event: ",
    ": c",
    "[DONE]",
    "\"done\":true",
    "\"done\":false",
    "\"response\":\"tok\"",
    "\"message\":{\"content\":\"hi\"}",
    "\"thinking\":\"t\"",
    "\"tool_calls\":[1]",
    "\"eval_count\":",
    "\"eval_duration\":",
    "18",
    "-1",
    "1e400",
    "0.5",
    "null",
    "true",
    "\"error\":",
    "{\"message\":\"m\"}",
    "\"choices\":[",
    "\"delta\":{\"content\":\"d\"}",
    "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}",
    "\"type\":\"message_stop\"",
    "\"type\":\"content_block_delta\"",
    "\"type\":\"response.completed\"",
    "\"type\":\"response.output_text.delta\"",
    "\"delta\":\"x\"",
    "\"text\":\"é\"",
    "\u{FEFF}",
    "\u{1F600}",
    "\\u00e9",
    "\\",
];

/// Random bytes, a random run of tokens, or a fixture with a few bytes changed.
fn random_body(rng: &mut Rng, fixture: &str) -> Vec<u8> {
    match rng.below(4) {
        0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        1 => {
            let mut body = String::new();
            for _ in 0..rng.below(60) {
                body.push_str(TOKENS[rng.below(TOKENS.len())]);
            }
            body.into_bytes()
        }
        _ => {
            let mut body = fixture.as_bytes().to_vec();
            for _ in 0..rng.below(4) {
                let at = rng.below(body.len() + 1);
                match rng.below(4) {
                    0 if at < body.len() => body[at] = rng.next() as u8,
                    1 => body.insert(at, TOKENS[rng.below(TOKENS.len())].as_bytes()[0]),
                    2 if at < body.len() => {
                        body.remove(at);
                    }
                    _ => body.truncate(at.max(body.len() / 2)),
                }
            }
            body
        }
    }
}

fn random_split<'a>(rng: &mut Rng, body: &'a [u8]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(1 + rng.below(rest.len().min(40)));
        if rng.below(8) == 0 {
            pieces.push(&[][..]);
        }
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[test]
fn random_input_in_random_splits_never_panics_or_depends_on_the_split() {
    let chat_json = r#"{"message":{"content":"x"},"done":true,"eval_count":1}"#;
    let native_error = ndjson(&[r#"{"response":"a","done":false}"#, r#"{"error":"boom"}"#]);
    let openai_error = sse_data(&[r#"{"error":{"message":"boom"}}"#, "[DONE]"]);
    let fixtures = [
        (Api::Generate, Format::Ndjson, native_error),
        (Api::OpenAiCompletions, Format::Sse, openai_error),
        (Api::Generate, Format::Ndjson, generate_stream()),
        (Api::Chat, Format::Ndjson, chat_stream()),
        (Api::Chat, Format::Json, chat_json.to_owned()),
        (Api::Generate, Format::Json, GENERATE_FINAL.to_owned()),
        (Api::OpenAiChat, Format::Sse, openai_chat_stream(true)),
        (Api::OpenAiChat, Format::Sse, openai_chat_stream(false)),
        (Api::AnthropicMessages, Format::Sse, anthropic_stream()),
        (Api::OpenAiResponses, Format::Sse, responses_stream()),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..4_000 {
        let &(mut api, mut format, ref fixture) = &fixtures[rng.below(fixtures.len())];
        let body = random_body(&mut rng, fixture);
        // Mostly the fixture's own API and format, so the shapes get exercised; sometimes
        // any, so mismatches do too.
        if rng.below(5) == 0 {
            api = ALL_APIS[rng.below(ALL_APIS.len())];
            format = [Format::Ndjson, Format::Sse, Format::Json, Format::Other][rng.below(4)];
        }
        let capture = rng.below(12);
        let frame_limit = [16, 256, MAX_FRAME_BYTES, MAX_FRAME_BYTES][rng.below(4)];
        let json_limit = [8, 128, JSON_LIMIT, JSON_LIMIT][rng.below(4)];
        let decoder = || Decoder::with_frame_limit(api, format, capture, json_limit, frame_limit);
        let (whole, whole_events) = run_with(decoder(), &[body.as_slice()]);
        let (split, split_events) = run_with(decoder(), &random_split(&mut rng, &body));
        assert_eq!(split, whole, "round {round}: {api:?}/{format:?} {body:?}");
        assert_eq!(split_events, whole_events, "round {round}");
        assert!(whole.text.len() <= capture, "round {round}");
        assert!(
            !(whole.completed && whole.error_message.is_some()),
            "round {round}"
        );
    }
}

// llama.cpp's `timings`

/// A llama.cpp chat stream: its last content chunk carries `timings`; no usage unless asked.
fn llama_chat_stream(include_usage: bool) -> String {
    let timings = r#""timings":{"cache_n":0,"prompt_n":12,"prompt_ms":8.5,"prompt_per_token_ms":0.708,"prompt_per_second":1411.76,"predicted_n":3,"predicted_ms":20.0,"predicted_per_token_ms":6.667,"predicted_per_second":150.0}"#;
    let mut events = vec![
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1764510000,"id":"chatcmpl-x","model":"smollm2","object":"chat.completion.chunk"}"#.to_owned(),
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hi"}}],"created":1764510000,"id":"chatcmpl-x","model":"smollm2","object":"chat.completion.chunk"}"#.to_owned(),
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":" there"}}],"created":1764510000,"id":"chatcmpl-x","model":"smollm2","object":"chat.completion.chunk"}"#.to_owned(),
        format!(
            r#"{{"choices":[{{"finish_reason":"stop","index":0,"delta":{{}}}}],"created":1764510000,"id":"chatcmpl-x","model":"smollm2","object":"chat.completion.chunk",{timings}}}"#
        ),
    ];
    if include_usage {
        events.push(r#"{"choices":[],"created":1764510000,"id":"chatcmpl-x","model":"smollm2","object":"chat.completion.chunk","usage":{"completion_tokens":3,"prompt_tokens":12,"total_tokens":15}}"#.to_owned());
    }
    events.push("[DONE]".to_owned());
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    sse_data(&refs)
}

#[test]
fn llama_cpp_stream_timings_count_tokens_exactly_without_usage() {
    let facts = decode(Api::OpenAiChat, Format::Sse, &llama_chat_stream(false));
    assert!(facts.completed);
    assert_eq!(
        facts.eval_count,
        Some(3),
        "predicted_n, not the 2 content chunks"
    );
    assert!(!facts.tokens_estimated);
    assert_eq!(
        facts.server_timings,
        Some(ServerTimings {
            prompt_n: Some(12),
            prompt_ms: Some(8.5),
            prompt_per_second: Some(1411.76),
            predicted_n: Some(3),
            predicted_ms: Some(20.0),
            predicted_per_second: Some(150.0),
        })
    );
    assert_eq!(facts.parse_errors, 0);
}

#[test]
fn llama_cpp_stream_with_usage_keeps_usage_and_timings() {
    let facts = decode(Api::OpenAiChat, Format::Sse, &llama_chat_stream(true));
    assert_eq!(
        (facts.prompt_eval_count, facts.eval_count),
        (Some(12), Some(3))
    );
    let t = facts.server_timings.expect("timings");
    assert_eq!(t.tokens_per_second(), Some(150.0));
    assert_eq!(t.prompt_tokens_per_second(), Some(1411.76));
}

#[test]
fn llama_cpp_body_timings_are_read() {
    let body = r#"{"choices":[{"finish_reason":"length","index":0,"text":" one two"}],"created":1764510000,"model":"smollm2","object":"text_completion","usage":{"completion_tokens":8,"prompt_tokens":5,"total_tokens":13},"id":"cmpl-1","timings":{"prompt_n":5,"prompt_ms":4.0,"predicted_n":8,"predicted_ms":40.0}}"#;
    let facts = decode(Api::OpenAiCompletions, Format::Json, body);
    assert!(facts.completed);
    assert_eq!(facts.eval_count, Some(8));
    let t = facts.server_timings.expect("timings");
    // No *_per_second fields: computed from counts and milliseconds.
    assert_eq!(t.tokens_per_second(), Some(200.0));
    assert_eq!(t.prompt_tokens_per_second(), Some(1250.0));
}

#[test]
fn malformed_timings_cost_one_parse_error_and_keep_the_rest() {
    let body = r#"{"choices":[{"finish_reason":"stop","index":0,"message":{"role":"assistant","content":"ok"}}],"usage":{"completion_tokens":1,"prompt_tokens":2},"timings":{"prompt_n":-1,"prompt_ms":"slow","predicted_n":1,"predicted_ms":5.0}}"#;
    let facts = decode(Api::OpenAiChat, Format::Json, body);
    assert_eq!(facts.parse_errors, 1);
    assert!(facts.completed);
    assert_eq!(facts.text, "ok");
    let t = facts.server_timings.expect("timings");
    assert_eq!((t.prompt_n, t.prompt_ms), (None, None));
    assert_eq!(t.tokens_per_second(), Some(200.0));
    assert_eq!(t.prompt_tokens_per_second(), None);
}

/// llama.cpp's streamed `/v1/responses` (trimmed from a real answer): the timings sit beside
/// `response` on the terminal event.
#[test]
fn llama_cpp_responses_stream_timings_are_read() {
    let completed = r#"{"type":"response.completed","response":{"id":"resp_3","object":"response","status":"completed","model":"smol","output":[{"type":"message","status":"completed","id":"msg_T","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"A cat"}],"role":"assistant"}],"usage":{"input_tokens":34,"output_tokens":8,"total_tokens":42,"input_tokens_details":{"cached_tokens":33}}},"timings":{"cache_n":33,"prompt_n":1,"prompt_ms":75.576,"prompt_per_token_ms":75.576,"prompt_per_second":13.231713771567694,"predicted_n":8,"predicted_ms":1490.698,"predicted_per_token_ms":212.95685714285716,"predicted_per_second":4.695786805912398}}"#;
    let delta = r#"{"type":"response.output_text.delta","delta":"A cat","item_id":"msg_T","output_index":0,"content_index":0}"#;
    let body = format!(
        "event: response.output_text.delta\ndata: {delta}\n\nevent: response.completed\ndata: {completed}\n\n"
    );
    let facts = decode(Api::OpenAiResponses, Format::Sse, &body);
    assert!(facts.completed);
    assert_eq!(
        (facts.prompt_eval_count, facts.eval_count),
        (Some(34), Some(8))
    );
    let t = facts.server_timings.expect("timings");
    assert_eq!(t.tokens_per_second(), Some(4.695786805912398));
    assert_eq!(t.prompt_n, Some(1));
    assert_eq!(facts.parse_errors, 0);
}
