//! The official `ollama` and `openai` Python clients work through the proxy exactly as
//! they do against Ollama, and the records carry the counts the clients saw.

mod common;

use common::fake_ollama::FakeOllama;
use common::harness::TestApp;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_get_the_same_answers_through_the_proxy() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/clients.py");
    let (direct, proxy) = (fake.url(), app.url.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(direct)
            .arg(proxy)
            .env("NO_PROXY", "*")
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "the client script failed (are the packages in tests/python/requirements.txt installed? \
         scripts/test installs them):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).expect("json result");
    let scenarios = result["scenarios"].as_object().expect("scenarios");
    assert!(scenarios.len() >= 9, "{scenarios:?}");
    for (name, equal) in scenarios {
        assert_eq!(
            equal,
            &Value::Bool(true),
            "{name}: direct and proxied answers differ"
        );
    }
    let raw = &result["raw_proxy"];
    // 9 inference calls per run through the proxy: generate x2, chat x2, embed, openai x3,
    // and the missing model.
    let records = app.wait_records(9).await;
    assert_eq!(records.len(), 9, "{records:#?}");

    let generated = &raw["generate"];
    let r = records
        .iter()
        .find(|r| r.endpoint == "/api/generate" && !r.stream)
        .expect("generate");
    assert_eq!(r.output_tokens, generated["eval_count"].as_u64());
    assert_eq!(r.prompt_tokens, generated["prompt_eval_count"].as_u64());
    let tps = generated["eval_count"].as_f64().expect("count")
        / generated["eval_duration"].as_f64().expect("ns")
        * 1e9;
    assert!((r.tokens_per_second.expect("tps") - tps).abs() < 1e-6 * tps);

    let chunks = raw["chat_stream"].as_array().expect("chunks");
    let last = chunks.last().expect("final chunk");
    let r = records
        .iter()
        .find(|r| r.endpoint == "/api/chat" && r.stream)
        .expect("chat stream");
    assert_eq!(r.output_tokens, last["eval_count"].as_u64());
    assert!(r.ttft_ms.is_some());

    let usage = raw["openai_chat_stream"]
        .as_array()
        .expect("chunks")
        .iter()
        .find_map(|c| c["usage"].as_object().cloned())
        .expect("usage chunk");
    let r = records
        .iter()
        .find(|r| r.endpoint == "/v1/chat/completions" && r.stream && !r.tokens_estimated)
        .expect("openai stream with usage");
    assert_eq!(r.output_tokens, usage["completion_tokens"].as_u64());
    assert_eq!(r.prompt_tokens, usage["prompt_tokens"].as_u64());

    let missing = records
        .iter()
        .find(|r| r.model == "no-such-model")
        .expect("missing model");
    assert!(!missing.success);
    assert_eq!(
        missing.http_status,
        raw["missing_model"]["status"].as_u64().map(|s| s as u16)
    );
    app.stop().await;
}
