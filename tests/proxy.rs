//! The proxy end to end: the real app on port 0 in front of the fake Ollama.

mod common;

use std::time::Duration;

use common::fake_ollama::{FakeConfig, FakeOllama};
use common::harness::TestApp;
use futures_util::StreamExt;
use ollameter::record::{ErrorKind, Record};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// The NDJSON lines of a body.
fn lines(body: &[u8]) -> Vec<Value> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("json line"))
        .collect()
}

fn only<'a>(records: &'a [Record], endpoint: &str) -> &'a Record {
    let matching: Vec<&Record> = records.iter().filter(|r| r.endpoint == endpoint).collect();
    assert_eq!(matching.len(), 1, "one record for {endpoint}: {records:#?}");
    matching[0]
}

#[tokio::test]
async fn streamed_generate_passes_through_and_is_recorded_with_ollamas_numbers() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let resp = client()
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "llama3.2", "prompt": "why is the sky blue", "options": {"num_predict": 6}}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let record_id = resp.headers()["x-ollameter-record-id"]
        .to_str()
        .expect("id")
        .to_string();
    let body = resp.bytes().await.expect("body");
    let chunks = lines(&body);
    assert_eq!(chunks.len(), 7, "6 tokens and the final object");
    let last = chunks.last().expect("final");
    assert_eq!(last["done"], true);

    let records = app.wait_records(1).await;
    let r = only(&records, "/api/generate");
    assert_eq!(r.id, record_id);
    assert_eq!(r.model, "llama3.2");
    assert_eq!(r.operation, "generate");
    assert!(r.stream && r.success, "{r:?}");
    assert_eq!(r.http_status, Some(200));
    assert_eq!(r.output_tokens, last["eval_count"].as_u64());
    assert_eq!(r.prompt_tokens, last["prompt_eval_count"].as_u64());
    let eval_ns = last["eval_duration"].as_f64().expect("eval_duration");
    let expected_tps = last["eval_count"].as_f64().expect("eval_count") / eval_ns * 1e9;
    let tps = r.tokens_per_second.expect("tokens/s");
    assert!(
        (tps - expected_tps).abs() < 1e-6 * expected_tps,
        "{tps} vs {expected_tps}"
    );
    assert_eq!(r.eval_duration_ms, Some(eval_ns / 1e6));
    assert_eq!(
        r.total_duration_ms,
        last["total_duration"].as_f64().map(|ns| ns / 1e6)
    );
    assert_eq!(r.done_reason.as_deref(), Some("stop"));
    assert_eq!(r.response_bytes, body.len() as u64);
    let ttft = r.ttft_ms.expect("ttft");
    assert!(
        ttft > 0.0 && ttft <= r.processing_time_ms,
        "{ttft} vs {}",
        r.processing_time_ms
    );
    assert!(!r.tokens_estimated);
    app.stop().await;
}

#[tokio::test]
async fn non_streamed_calls_and_embeddings_are_recorded() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let c = client();
    let chat: Value = c
        .post(format!("{}/api/chat", app.url))
        .header("X-Operation", "photo_evaluation")
        .json(&json!({"model": "llava:7b", "stream": false,
                      "messages": [{"role": "user", "content": "rate"}]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let embed: Value = c
        .post(format!("{}/api/embed", app.url))
        .json(&json!({"model": "nomic-embed-text", "input": ["a", "b"]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let records = app.wait_records(2).await;
    let r = only(&records, "/api/chat");
    assert!(!r.stream && r.success);
    assert_eq!(
        r.operation, "photo_evaluation",
        "the header names the operation"
    );
    assert_eq!(r.output_tokens, chat["eval_count"].as_u64());
    assert_eq!(r.ttft_ms, None, "no first token to time in a single answer");
    let e = only(&records, "/api/embed");
    assert_eq!(e.operation, "embed");
    assert_eq!(e.prompt_tokens, embed["prompt_eval_count"].as_u64());
    assert_eq!(e.output_tokens, None);
    assert!(e.success);
    app.stop().await;
}

#[tokio::test]
async fn the_client_receives_exactly_what_the_upstream_sent() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let c = client();
    // Byte-exact on a deterministic answer, both ways, with an odd path and query.
    let direct = c
        .get(format!("{}/api/tags?x=1&y=%20", fake.url()))
        .send()
        .await
        .expect("direct");
    let proxied = c
        .get(format!("{}/api/tags?x=1&y=%20", app.url))
        .send()
        .await
        .expect("proxied");
    assert_eq!(direct.status(), proxied.status());
    assert_eq!(
        direct.headers()["content-type"],
        proxied.headers()["content-type"]
    );
    assert_eq!(
        direct.bytes().await.expect("b"),
        proxied.bytes().await.expect("b")
    );
    // Unknown routes too: Go's 404 page, passed as it is.
    let nf = c
        .get(format!("{}/nope", app.url))
        .send()
        .await
        .expect("404");
    assert_eq!(nf.status(), 404);
    assert_eq!(nf.text().await.expect("text"), "404 page not found");
    app.stop().await;
}

#[tokio::test]
async fn headers_query_and_body_reach_the_upstream_as_sent_with_its_own_host() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let body: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let resp = client()
        .post(format!("{}/echo?a=1&b=two", app.url))
        .header("Host", "evil.example:9999")
        .header("Authorization", "Bearer secret")
        .header("X-Custom", "kept")
        .header("Connection", "keep-alive, x-hop")
        .header("X-Hop", "dropped")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    // The telemetry sampler polls the fake too: find the proxied request among them.
    let seen = fake
        .state
        .requests()
        .into_iter()
        .find(|r| r.path == "/echo")
        .expect("the upstream saw the request");
    assert_eq!(seen.path, "/echo");
    assert_eq!(seen.query.as_deref(), Some("a=1&b=two"));
    assert_eq!(seen.body, body, "body bytes unchanged");
    let header = |name: &str| {
        seen.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_string())
    };
    assert_eq!(
        header("host"),
        Some(fake.url().trim_start_matches("http://").to_string())
    );
    assert_eq!(header("authorization").as_deref(), Some("Bearer secret"));
    assert_eq!(header("x-custom").as_deref(), Some("kept"));
    assert_eq!(header("x-hop"), None, "named by Connection: hop-by-hop");
    app.stop().await;
}

#[tokio::test]
async fn errors_before_and_during_the_stream_are_failures_with_their_kind() {
    let fake = FakeOllama::start_with(FakeConfig {
        strict_models: true,
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start(&fake.url()).await;
    let c = client();
    let missing = c
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "nope:latest", "prompt": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 404);
    let text = missing.text().await.expect("text");
    assert_eq!(text, r#"{"error":"model 'nope:latest' not found"}"#);

    let mid = c
        .post(format!("{}/api/chat", app.url))
        .json(&json!({"model": "fail-midstream", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(mid.status(), 200, "the status was already sent");
    let mid_body = mid.bytes().await.expect("body");
    let last = lines(&mid_body).pop().expect("lines");
    assert!(last["error"].is_string());

    let hangup = c
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "hangup", "prompt": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(hangup.status(), 200);
    assert!(
        hangup.bytes().await.is_err(),
        "the client sees the broken stream too"
    );

    let records = app.wait_records(3).await;
    let by_model = |m: &str| {
        records
            .iter()
            .find(|r| r.model == m)
            .expect("record")
            .clone()
    };
    let nf = by_model("nope:latest");
    assert!(!nf.success);
    assert_eq!(nf.http_status, Some(404));
    assert_eq!(nf.error_kind, Some(ErrorKind::ModelNotFound));
    assert_eq!(
        nf.error_message.as_deref(),
        Some("model 'nope:latest' not found")
    );
    let m = by_model("fail-midstream");
    assert!(!m.success);
    assert_eq!(m.http_status, Some(200));
    assert_eq!(m.error_kind, Some(ErrorKind::MidstreamError));
    assert_eq!(m.error_message.as_deref(), last["error"].as_str());
    let h = by_model("hangup");
    assert!(!h.success);
    assert_eq!(h.error_kind, Some(ErrorKind::UpstreamDisconnected));
    app.stop().await;
}

#[tokio::test]
async fn chunks_reach_the_client_before_the_upstream_sends_the_next() {
    let gate = common::fake_ollama::Gate::new();
    let fake = FakeOllama::start_with(FakeConfig {
        gate: Some(gate.clone()),
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start(&fake.url()).await;
    let resp = client()
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "llama3.2", "prompt": "x", "options": {"num_predict": 4}}))
        .send()
        .await
        .expect("send");
    let mut stream = resp.bytes_stream();
    let mut received = Vec::new();
    // Release one chunk at a time: the client must hold chunk k while the upstream has
    // not been allowed to send chunk k+1, so nothing can be waiting in a buffer.
    for k in 0..5u64 {
        gate.release(1);
        let mut line = Vec::new();
        while !line.ends_with(b"\n") {
            let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("chunk k arrives while k+1 is held back")
                .expect("not the end")
                .expect("ok");
            line.extend_from_slice(&chunk);
        }
        assert_eq!(gate.sent(), k + 1, "upstream has sent exactly k+1 chunks");
        received.push(line);
    }
    let last: Value = serde_json::from_slice(received.last().expect("last")).expect("json");
    assert_eq!(last["done"], true);
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_closes_the_upstream_and_is_recorded_as_cancelled() {
    let fake = FakeOllama::start_with(FakeConfig {
        chunk_gap: Duration::from_millis(20),
        tokens: 10_000,
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start(&fake.url()).await;
    let resp = client()
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "llama3.2", "prompt": "x"}))
        .send()
        .await
        .expect("send");
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.expect("a chunk").expect("ok");
    assert!(!first.is_empty());
    drop(stream);
    assert!(
        fake.state.wait_cancelled(1, Duration::from_secs(10)).await,
        "the upstream stream was dropped: Ollama stops generating"
    );
    let records = app.wait_records(1).await;
    let r = only(&records, "/api/generate");
    assert!(!r.success);
    assert_eq!(r.error_kind, Some(ErrorKind::ClientCancelled));
    assert!(r.ttft_ms.is_some(), "it got its first token before leaving");
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_during_the_model_load_is_recorded_as_cancelled() {
    let fake = FakeOllama::start_with(FakeConfig {
        header_delay: Duration::from_secs(30),
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start(&fake.url()).await;
    let request = tokio::spawn(
        client()
            .post(format!("{}/api/chat", app.url))
            .json(&json!({"model": "llama3.2", "messages": []}))
            .send(),
    );
    // The client gives up once its call has reached Ollama, long before the "model load"
    // ends: waiting for the fake to have it (not a fixed time) holds on a slow machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !fake.state.requests().iter().any(|r| r.path == "/api/chat") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !request.is_finished(),
        "the answer waits for the model load"
    );
    request.abort();
    assert!(fake.state.wait_cancelled(1, Duration::from_secs(10)).await);
    let records = app.wait_records(1).await;
    assert_eq!(
        only(&records, "/api/chat").error_kind,
        Some(ErrorKind::ClientCancelled)
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_upstream_gives_502_in_the_routes_shape_and_a_record() {
    // A port with nothing behind it: bind, learn the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let upstream = format!("http://127.0.0.1:{port}");
    let app = TestApp::start(&upstream).await;
    let c = client();
    let native = c
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "llama3.2", "prompt": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(native.status(), 502);
    assert!(native.headers().contains_key("x-ollameter-record-id"));
    let body: Value = native.json().await.expect("json");
    let message = body["error"].as_str().expect("native shape");
    assert!(message.contains(&upstream), "names the upstream: {message}");
    let openai = c
        .post(format!("{}/v1/chat/completions", app.url))
        .json(&json!({"model": "llama3.2", "messages": []}))
        .send()
        .await
        .expect("send");
    assert_eq!(openai.status(), 502);
    let body: Value = openai.json().await.expect("json");
    assert!(body["error"]["message"].is_string(), "OpenAI shape: {body}");
    let tags = c
        .get(format!("{}/api/tags", app.url))
        .send()
        .await
        .expect("send");
    assert_eq!(tags.status(), 502);
    let records = app.wait_records(2).await;
    assert_eq!(records.len(), 2, "only inference calls are recorded");
    assert!(
        records
            .iter()
            .all(|r| r.error_kind == Some(ErrorKind::UpstreamUnreachable))
    );
    let health: Value = c
        .get(format!("{}/api/model-performance/health", app.url))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["upstream_reachable"], false);
    assert_eq!(
        health["upstream_kind"],
        Value::Null,
        "nothing to tell the kind from"
    );
    app.stop().await;
}

#[tokio::test]
async fn health_and_system_name_the_detected_ollama_kind() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let c = client();
    let get = |path: &'static str| {
        let c = c.clone();
        let url = format!("{}/api/model-performance/{path}", app.url);
        async move {
            c.get(url)
                .send()
                .await
                .expect("send")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let health = get("health").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["upstream_kind"], "ollama");
    assert_eq!(get("system").await["upstream_kind"], "ollama");
    app.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_and_never_reach_the_upstream() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| c.proxy.max_body_bytes = 1024).await;
    let big = json!({"model": "llava", "prompt": "x", "images": ["A".repeat(4096)]});
    let resp = client()
        .post(format!("{}/api/generate", app.url))
        .json(&big)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("message")
            .contains("max_body_bytes")
    );
    let generates = fake
        .state
        .requests()
        .iter()
        .filter(|r| r.path == "/api/generate")
        .count();
    assert_eq!(
        generates, 0,
        "the oversized body never reached the upstream"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_client_request_id_becomes_the_record_id() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let resp = client()
        .post(format!("{}/api/embed", app.url))
        .header("X-Request-Id", "photo-42")
        .json(&json!({"model": "nomic-embed-text", "input": "a"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.headers()["x-ollameter-record-id"], "photo-42");
    let records = app.wait_records(1).await;
    assert_eq!(records[0].id, "photo-42");
    app.stop().await;
}

#[tokio::test]
async fn shutdown_commits_every_queued_record() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| {
        c.recorder.flush_interval = Duration::from_secs(3600)
    })
    .await;
    let c = client();
    for _ in 0..20 {
        c.post(format!("{}/api/embed", app.url))
            .json(&json!({"model": "nomic-embed-text", "input": "a"}))
            .send()
            .await
            .expect("send")
            .bytes()
            .await
            .expect("body");
    }
    let (db, _dir) = app.stop().await;
    let store = ollameter::store::Store::open_reader(&db).expect("reader");
    assert_eq!(
        store.count().expect("count"),
        20,
        "the hour-long flush interval never fired"
    );
}

#[tokio::test]
async fn openai_streams_without_usage_are_estimated_and_marked() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let c = client();
    for include_usage in [true, false] {
        let mut body = json!({"model": "llama3.2", "stream": true,
                              "messages": [{"role": "user", "content": "hi"}]});
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let text = c
            .post(format!("{}/v1/chat/completions", app.url))
            .json(&body)
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("text");
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
    let records = app.wait_records(2).await;
    assert_eq!(records.len(), 2);
    let (with, without) = (&records[0], &records[1]);
    assert!(with.success && without.success);
    assert!(!with.tokens_estimated);
    assert!(without.tokens_estimated);
    assert_eq!(
        with.output_tokens, without.output_tokens,
        "the estimate counts content chunks"
    );
    assert!(with.prompt_tokens.is_some() && without.prompt_tokens.is_none());
    assert!(
        with.tokens_per_second.is_some(),
        "measured between content chunks"
    );
    app.stop().await;
}

#[tokio::test]
async fn malformed_upstream_output_passes_byte_for_byte_and_the_record_says_so() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that answers any request with a chunked NDJSON body of garbage.
    let garbage: Vec<u8> = b"{\"response\":\"ok\",\"done\":false}\nnot json at all\n\xff\xfe{{{\n{\"done\":true,\"eval_count\":\"many\"}\n".to_vec();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = format!("http://{}", listener.local_addr().expect("addr"));
    let body = garbage.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                for piece in body.chunks(7) {
                    let _ = s
                        .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                        .await;
                    let _ = s.write_all(piece).await;
                    let _ = s.write_all(b"\r\n").await;
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    let app = TestApp::start_with(&upstream, |c| c.telemetry.enabled = false).await;
    let got = client()
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "m", "prompt": "x"}))
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&got[..], &garbage[..], "passthrough unchanged");
    let records = app.wait_records(1).await;
    let message = records[0]
        .error_message
        .clone()
        .expect("the record notes it");
    assert!(
        message.contains("could not be parsed") || message.contains("parse"),
        "{message}"
    );
    app.stop().await;
}

#[tokio::test]
async fn quality_rules_read_the_score_from_the_answer() {
    use ollameter::quality::{QualityRuleConfig, QualityRules};
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| {
        let rules = [
            QualityRuleConfig {
                operation: Some("photo_evaluation".into()),
                json_pointer: Some("/score".into()),
                ..QualityRuleConfig::default()
            },
            QualityRuleConfig {
                operation: Some("ten_point".into()),
                json_pointer: Some("/score".into()),
                scale_min: Some(0.0),
                scale_max: Some(10.0),
                ..QualityRuleConfig::default()
            },
        ];
        c.proxy.quality = std::sync::Arc::new(QualityRules::new(&rules).expect("valid rules"));
    })
    .await;
    let c = client();
    for (operation, prompt, stream) in [
        ("photo_evaluation", "rate this photo SCORE=4", true),
        ("photo_evaluation", "rate this photo SCORE=4.5", false),
        ("ten_point", "rate SCORE=5", true),
        ("photo_evaluation", "rate this photo SCORE=9", true),
        ("chat", "no rule applies SCORE=3", true),
    ] {
        c.post(format!("{}/api/generate", app.url))
            .header("X-Operation", operation)
            .json(&json!({"model": "llava:7b", "prompt": prompt, "stream": stream}))
            .send()
            .await
            .expect("send")
            .bytes()
            .await
            .expect("body");
    }
    let records = app.wait_records(5).await;
    let scores: Vec<Option<f64>> = records.iter().map(|r| r.quality_score).collect();
    // 4 and 4.5 as given; 5 of 10 maps onto 3 of 1..5; 9 is off the 1..5 scale; no rule
    // for chat.
    assert_eq!(scores, vec![Some(4.0), Some(4.5), Some(3.0), None, None]);
    assert!(records.iter().all(|r| r.success));
    app.stop().await;
}

#[tokio::test]
async fn pull_progress_streams_through_unrecorded() {
    let fake = FakeOllama::start_with(FakeConfig {
        chunk_gap: Duration::from_millis(20),
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start_with(&fake.url(), |c| c.telemetry.enabled = false).await;
    let resp = client()
        .post(format!("{}/api/pull", app.url))
        .json(&json!({"model": "llama3.2"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(
        !resp.headers().contains_key("x-ollameter-record-id"),
        "pull is not an inference call"
    );
    let body = resp.bytes().await.expect("body");
    let progress = lines(&body);
    assert_eq!(
        progress.first().expect("first")["status"],
        "pulling manifest"
    );
    assert_eq!(progress.last().expect("last")["status"], "success");
    assert!(app.records().await.is_empty());
    app.stop().await;
}

/// A figure of the Prometheus text at `/metrics`: the value of the line that starts with
/// `series` followed by a space.
async fn metric(c: &reqwest::Client, app: &TestApp, series: &str) -> f64 {
    let text = c
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

#[tokio::test]
async fn the_added_latency_metric_counts_each_call_without_the_upstreams_time() {
    // Every answer waits 300 ms for its "model load": the upstream's time, not ollameter's.
    let fake = FakeOllama::start_with(FakeConfig {
        header_delay: Duration::from_millis(300),
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start(&fake.url()).await;
    let c = client();
    let count = "ollameter_proxy_added_latency_seconds_count";
    assert_eq!(metric(&c, &app, count).await, 0.0, "nothing proxied yet");
    let streamed = c
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "llama3.2", "prompt": "x"}))
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    assert!(lines(&streamed).len() > 1, "a streamed answer");
    c.post(format!("{}/api/chat", app.url))
        .json(&json!({"model": "llama3.2", "stream": false, "messages": []}))
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("body");
    // Not recorded, so not counted either.
    c.get(format!("{}/api/tags", app.url))
        .send()
        .await
        .expect("send");
    // The figures are observed as each answer's body ends, just after the client has it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&c, &app, count).await < 2.0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(metric(&c, &app, count).await, 2.0, "one figure per call");
    let own = metric(&c, &app, "ollameter_proxy_added_latency_seconds_sum").await;
    assert!(own > 0.0, "ollameter's own time is measured: {own}");
    assert!(
        own < 0.3,
        "the upstream's 2 x 300 ms (and the stream's gaps) are not ollameter's: {own} s"
    );
    app.stop().await;
}

/// A raw client: sends a generate's head and part of the body its `Content-Length`
/// announces, then either half-closes (and returns what comes back) or leaves at once.
async fn cut_upload(app: &TestApp, half_close: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let partial = br#"{"model":"llama3.2","prompt":"#;
    let head = "POST /api/generate HTTP/1.1\r\nHost: ollama\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n";
    socket.write_all(head.as_bytes()).await.expect("head");
    socket.write_all(partial).await.expect("part of the body");
    if !half_close {
        return String::new();
    }
    socket.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.expect("answer");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_short_gets_400_and_never_reaches_the_upstream() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let answer = cut_upload(&app, true).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("could not read the request body"),
        "{answer}"
    );
    // A client that leaves mid-upload: its read is dropped with it, and the next call is
    // served as usual.
    cut_upload(&app, false).await;
    let resp = client()
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "llama3.2", "prompt": "x", "stream": false}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");
    let records = app.wait_records(1).await;
    assert_eq!(
        records.len(),
        1,
        "only the whole call is recorded: {records:#?}"
    );
    let generates: Vec<String> = fake
        .state
        .requests()
        .iter()
        .filter(|r| r.path == "/api/generate")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(generates.len(), 1, "{generates:?}");
    assert!(generates[0].contains(r#""prompt":"x""#), "{generates:?}");
    app.stop().await;
}
