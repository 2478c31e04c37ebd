//! ollameter in front of a REAL llama.cpp `llama-server` (SmolLM2-135M), with nothing
//! configured but the upstream URL: health and `/system` say `openai`, the official
//! `openai` client gets its answers through the proxy, the records carry the server's own
//! usage and `timings`, its memory is charged to the model, its errors pass unchanged and
//! are recorded as failed, concurrent streams are each recorded, and a client that goes
//! away stops the server's generation.
//!
//! The server and the model come from `../shared/tools/llama-server.sh` (built once,
//! cached outside the checkout), which `scripts/test` runs and whose `LLAMA_SERVER` and
//! `LLAMA_MODEL` it exports. Without `LLAMA_SERVER` every test here prints why and skips.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::harness::TestApp;
use futures_util::StreamExt;
use ollameter::record::{ErrorKind, Record, TimingSource};
use serde_json::{Value, json};

/// One llama-server at a time: each test starts its own, and several at once on a small
/// machine would only slow each other down.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a model load may take before the test gives up (it only bounds a broken run;
/// SmolLM2-135M loads in about a second).
const LOAD_PATIENCE: Duration = Duration::from_secs(120);

/// A bound on polls of state that a healthy run reaches at once.
const PATIENCE: Duration = Duration::from_secs(20);

/// A bound on the wait for records after the calls returned: a healthy run has them
/// within milliseconds (a record is queued before the client sees the end of its answer,
/// or as soon as the client leaves); this only bounds a broken run on a loaded machine.
const RECORD_PATIENCE: Duration = Duration::from_secs(60);

/// A running `llama-server`, killed on drop.
struct LlamaServer {
    child: Child,
    url: String,
    pid: u32,
    model_path: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LlamaServer {
    /// Starts the server on a free port and waits for its `/health`; `None` (with the
    /// reason printed) when `LLAMA_SERVER` is not set.
    async fn start() -> Option<LlamaServer> {
        let Ok(server) = std::env::var("LLAMA_SERVER") else {
            eprintln!(
                "SKIPPED: LLAMA_SERVER is not set. Run `eval \"$(../shared/tools/llama-server.sh)\"` \
                 (or bash scripts/test, which does) to test against a real llama.cpp server."
            );
            return None;
        };
        let model = std::env::var("LLAMA_MODEL").expect("LLAMA_MODEL is set beside LLAMA_SERVER");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("llama-server.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&server)
            .args(["--model", &model, "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            // One thread: SmolLM2-135M needs no more, and llama.cpp's threads spin-wait on
            // each other at every step, so on a busy two-core machine two threads run many
            // times slower than one (seconds per token against tens of tokens a second).
            .args(["-np", "4", "-c", "8192", "--threads", "1"])
            .args(["--metrics", "--slots"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {server}: {e}"));
        let pid = child.id();
        let mut s = LlamaServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            pid,
            model_path: model,
            log,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + LOAD_PATIENCE;
        loop {
            if let Ok(r) = client.get(format!("{}/health", s.url)).send().await
                && r.status().is_success()
            {
                return Some(s);
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("llama-server exited ({status}):\n{}", s.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "llama-server not healthy after {LOAD_PATIENCE:?}:\n{}",
                s.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The server's resident memory now, MiB, as the kernel reports it.
    fn vm_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("the server's /proc status");
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        kb / 1024.0
    }
}

/// The sidecar in front of `server` with its defaults (the kind detected, telemetry on),
/// the sampler ticking fast so that records carry memory soon.
async fn sidecar(server: &LlamaServer) -> TestApp {
    log_warnings();
    TestApp::start_with(&server.url, |c| {
        c.telemetry.enabled = true;
        c.telemetry.interval = Duration::from_millis(100);
    })
    .await
}

/// ollameter's warnings and errors (a store write that failed, an upstream that broke)
/// go to the test's output, so a failing test shows them beside its assertion.
fn log_warnings() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("ollameter=warn"))
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .expect("JSON")
}

/// Polls `/system` until `ready` holds for it.
async fn system_when(app: &TestApp, ready: impl Fn(&Value) -> bool) -> Value {
    let url = format!("{}/api/model-performance/system", app.url);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let system = get_json(&url).await;
        if ready(&system) {
            return system;
        }
        assert!(
            Instant::now() < deadline,
            "/system never got there: {system:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn within(actual: f64, expected: f64, fraction: f64) -> bool {
    (actual - expected).abs() <= fraction * expected.abs()
}

/// Charged memory is the server's VmRSS within 10 %.
fn assert_rss(record: &Record, server: &LlamaServer) {
    let rss = record
        .ollama_rss_mb
        .unwrap_or_else(|| panic!("no memory on {}: {record:#?}", record.operation));
    let vm = server.vm_rss_mb();
    assert!(
        within(rss, vm, 0.10),
        "{}: ollama_rss_mb {rss} vs VmRSS {vm}",
        record.operation
    );
}

fn by_operation<'a>(records: &'a [Record], op: &str) -> &'a Record {
    records
        .iter()
        .find(|r| r.operation == op)
        .unwrap_or_else(|| panic!("no record for {op}: {records:#?}"))
}

/// The server's `timings`, in a body or the stream's last chunk that has them.
fn timings(answer: &Value) -> Value {
    match answer {
        Value::Array(chunks) => chunks
            .iter()
            .rev()
            .find_map(|c| c.get("timings").cloned())
            .expect("a chunk with timings"),
        body => body.get("timings").cloned().expect("timings"),
    }
}

/// The record's speed and counts are the server's: tokens/s within 1 % of
/// `predicted_per_second`, output tokens equal to `predicted_n`.
fn assert_server_timings(record: &Record, answer: &Value) {
    let t = timings(answer);
    assert_eq!(
        record.timing_source,
        Some(TimingSource::Server),
        "{record:#?}"
    );
    let server_tps = t["predicted_per_second"]
        .as_f64()
        .expect("predicted_per_second");
    let tps = record.tokens_per_second.expect("tokens_per_second");
    assert!(
        within(tps, server_tps, 0.01),
        "{}: {tps} tokens/s vs the server's {server_tps}",
        record.operation
    );
    assert_eq!(
        record.output_tokens,
        t["predicted_n"].as_u64(),
        "{}",
        record.operation
    );
    assert!(!record.tokens_estimated, "{}", record.operation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_system_say_openai_and_charge_the_servers_memory_to_its_model() {
    let _serial = SERIAL.lock().await;
    let Some(server) = LlamaServer::start().await else {
        return;
    };
    let app = sidecar(&server).await;
    let health = get_json(&format!("{}/api/model-performance/health", app.url)).await;
    assert_eq!(health["status"], "ok", "{health:#}");
    assert_eq!(health["upstream_kind"], "openai");
    assert_eq!(health["upstream_reachable"], true);

    let system = system_when(&app, |s| {
        s["upstream_server"]["rss_mb"].is_number() && s["upstream_server"]["props"].is_object()
    })
    .await;
    assert_eq!(system["upstream_kind"], "openai");
    let us = &system["upstream_server"];
    assert_eq!(us["pids"], json!([server.pid]), "{system:#}");
    let props = &us["props"];
    assert_eq!(props["model_path"], server.model_path.as_str());
    assert_eq!(props["total_slots"], 4);
    assert_eq!(props["n_ctx"], 2048, "8192 over 4 slots");
    let sources = &system["sampler"]["sources"];
    assert_eq!(sources["openai_api"]["state"], "ok", "{sources:#}");
    assert_eq!(sources["processes"]["state"], "ok", "{sources:#}");
    assert_eq!(sources["ollama_api"]["state"], "disabled");
    let loaded = system["loaded_models"].as_array().expect("loaded models");
    assert_eq!(loaded.len(), 1, "{system:#}");
    assert_eq!(loaded[0]["context_length"], 2048);
    let rss = loaded[0]["runner_rss_mb"].as_f64().expect("rss");
    assert!(within(rss, server.vm_rss_mb(), 0.10), "{rss} vs VmRSS");
    let runners = system["processes"]["runners"].as_array().expect("runners");
    assert_eq!(runners[0]["pid"], server.pid);
    assert_eq!(runners[0]["model_path"], server.model_path.as_str());
    // Nothing the user must act on: every source answered.
    assert_eq!(system["notes"], json!([]), "{system:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_client_through_ollameter_gets_records_with_the_servers_usage_and_timings() {
    let _serial = SERIAL.lock().await;
    let Some(server) = LlamaServer::start().await else {
        return;
    };
    let app = sidecar(&server).await;
    // Telemetry has found the server before the calls, so each record carries memory.
    system_when(&app, |s| s["upstream_server"]["rss_mb"].is_number()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/llama_openai.py");
    let (direct, proxy) = (server.url.clone(), app.url.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
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
        "the openai client script failed (scripts/test installs tests/python/requirements.txt):\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log_tail()
    );
    let got: Value = serde_json::from_slice(&output.stdout).expect("json result");
    let operations = [
        "chat_stream_usage",
        "chat_stream",
        "chat",
        "completion",
        "completion_stream",
        "responses",
        "responses_stream",
        "bad_request",
    ];
    let records = app.wait_for_operations(&operations, RECORD_PATIENCE).await;
    assert_eq!(
        records.len(),
        operations.len(),
        "one record per call: {records:#?}"
    );

    // Usage equals the server's, speed is the server's.
    let stream_usage = got["chat_stream_usage"].as_array().expect("chunks");
    let usage = stream_usage
        .iter()
        .find_map(|c| c["usage"].as_object().cloned())
        .expect("a usage chunk");
    let r = by_operation(&records, "chat_stream_usage");
    assert!(r.success && r.stream, "{r:#?}");
    assert_eq!(r.prompt_tokens, usage["prompt_tokens"].as_u64());
    assert_eq!(r.output_tokens, usage["completion_tokens"].as_u64());
    assert!(r.ttft_ms.is_some());
    assert_server_timings(r, &got["chat_stream_usage"]);

    // Without include_usage the stream's last chunk still carries the server's timings:
    // exact counts, not an estimate.
    let r = by_operation(&records, "chat_stream");
    assert_server_timings(r, &got["chat_stream"]);

    for op in ["chat", "completion"] {
        let r = by_operation(&records, op);
        let usage = &got[op]["usage"];
        assert!(r.success && !r.stream, "{r:#?}");
        assert_eq!(r.prompt_tokens, usage["prompt_tokens"].as_u64(), "{op}");
        assert_eq!(r.output_tokens, usage["completion_tokens"].as_u64(), "{op}");
        assert_server_timings(r, &got[op]);
    }
    let r = by_operation(&records, "completion_stream");
    assert_eq!(r.endpoint, "/v1/completions");
    assert_server_timings(r, &got["completion_stream"]);

    let r = by_operation(&records, "responses");
    let usage = &got["responses"]["usage"];
    assert!(r.success, "{r:#?}");
    assert_eq!(r.endpoint, "/v1/responses");
    assert_eq!(r.prompt_tokens, usage["input_tokens"].as_u64());
    assert_eq!(r.output_tokens, usage["output_tokens"].as_u64());
    // llama.cpp puts no timings in a non-streamed /v1/responses answer (and a body has no
    // chunks to time): the speed is unknown there, never made up.
    assert_eq!(
        (r.tokens_per_second, r.timing_source),
        (None, None),
        "{r:#?}"
    );
    let events = got["responses_stream"].as_array().expect("events");
    let usage = events
        .iter()
        .find_map(|e| e["response"]["usage"].as_object().cloned())
        .expect("response.completed usage");
    let r = by_operation(&records, "responses_stream");
    assert_eq!(r.prompt_tokens, usage["input_tokens"].as_u64());
    assert_server_timings(r, &got["responses_stream"]);

    // The server's own 400 reaches the client unchanged and is recorded as failed.
    let (direct, proxied) = (&got["bad_request_direct"], &got["bad_request_proxy"]);
    assert_eq!(direct["status"], 400, "{direct:#}");
    assert_eq!(proxied, direct);
    let r = by_operation(&records, "bad_request");
    assert!(!r.success);
    assert_eq!(r.http_status, Some(400));
    assert_eq!(r.error_kind, Some(ErrorKind::UpstreamError), "{r:#?}");

    // Every successful call carries the server's memory: its VmRSS within 10 %.
    for r in records.iter().filter(|r| r.success) {
        assert_rss(r, &server);
        assert_eq!(r.model, "smollm2");
    }
}

/// Reads an SSE body: each `data:` line's JSON.
fn sse_events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_messages_plain_and_streamed_are_recorded_with_the_servers_counts() {
    let _serial = SERIAL.lock().await;
    let Some(server) = LlamaServer::start().await else {
        return;
    };
    let app = sidecar(&server).await;
    let client = reqwest::Client::new();
    let body = |stream: bool| {
        json!({
            "model": "smollm2", "max_tokens": 24, "stream": stream, "temperature": 0,
            "messages": [{"role": "user", "content": "Name three fruits."}]
        })
    };
    let plain: Value = client
        .post(format!("{}/v1/messages", app.url))
        .header("x-operation", "messages")
        .json(&body(false))
        .send()
        .await
        .expect("messages")
        .json()
        .await
        .expect("JSON");
    let streamed = client
        .post(format!("{}/v1/messages", app.url))
        .header("x-operation", "messages_stream")
        .json(&body(true))
        .send()
        .await
        .expect("messages stream")
        .text()
        .await
        .expect("SSE");
    let events = sse_events(&streamed);
    let input = events
        .iter()
        .find_map(|e| e["message"]["usage"]["input_tokens"].as_u64())
        .expect("message_start usage");
    let output = events
        .iter()
        .rev()
        .find_map(|e| (e["type"] == "message_delta").then(|| e["usage"]["output_tokens"].as_u64()))
        .flatten()
        .expect("message_delta usage");
    let records = app
        .wait_for_operations(&["messages", "messages_stream"], RECORD_PATIENCE)
        .await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let r = by_operation(&records, "messages");
    assert!(r.success && !r.stream, "{r:#?}");
    assert_eq!(
        r.prompt_tokens,
        plain["usage"]["input_tokens"].as_u64(),
        "{plain:#}"
    );
    assert_eq!(r.output_tokens, plain["usage"]["output_tokens"].as_u64());
    let r = by_operation(&records, "messages_stream");
    assert!(r.success && r.stream, "{r:#?}");
    assert_eq!(
        (r.prompt_tokens, r.output_tokens),
        (Some(input), Some(output))
    );
    assert!(r.ttft_ms.is_some());
}

/// A streamed chat completion through the proxy, tagged `op`.
async fn stream_chat(
    client: &reqwest::Client,
    url: &str,
    op: &str,
    extra: Value,
) -> reqwest::Response {
    let mut body = json!({
        "model": "smollm2", "stream": true, "max_tokens": 32, "temperature": 0,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": format!("Count to ten ({op}).")}]
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let response = client
        .post(format!("{url}/v1/chat/completions"))
        .header("x-operation", op)
        .json(&body)
        .send()
        .await
        .expect("stream starts");
    assert_eq!(response.status(), 200);
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_streams_are_each_recorded_with_their_own_usage() {
    let _serial = SERIAL.lock().await;
    let Some(server) = LlamaServer::start().await else {
        return;
    };
    let app = sidecar(&server).await;
    let client = reqwest::Client::new();
    let calls = (0..4).map(|i| {
        let (client, url) = (client.clone(), app.url.clone());
        async move {
            let op = format!("concurrent_{i}");
            let text = stream_chat(&client, &url, &op, json!({}))
                .await
                .text()
                .await
                .expect("body");
            let usage = sse_events(&text)
                .into_iter()
                .find_map(|c| c.get("usage").filter(|u| u.is_object()).cloned())
                .expect("usage chunk");
            (op, usage)
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    let operations: Vec<String> = answers.iter().map(|(op, _)| op.clone()).collect();
    let operations: Vec<&str> = operations.iter().map(String::as_str).collect();
    let records = app.wait_for_operations(&operations, RECORD_PATIENCE).await;
    assert_eq!(records.len(), 4, "{records:#?}");
    for (op, usage) in answers {
        let r = by_operation(&records, &op);
        assert!(r.success, "{r:#?}");
        assert_eq!(r.prompt_tokens, usage["prompt_tokens"].as_u64(), "{op}");
        assert_eq!(r.output_tokens, usage["completion_tokens"].as_u64(), "{op}");
        assert_eq!(r.timing_source, Some(TimingSource::Server));
    }
}

/// The slots llama.cpp is generating on, from its `/slots`.
async fn processing_slots(server: &LlamaServer) -> Vec<Value> {
    get_json(&format!("{}/slots", server.url))
        .await
        .as_array()
        .expect("slots")
        .iter()
        .filter(|s| s["is_processing"] == true)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_the_servers_generation() {
    let _serial = SERIAL.lock().await;
    let Some(server) = LlamaServer::start().await else {
        return;
    };
    let app = sidecar(&server).await;
    let client = reqwest::Client::new();
    // 2,000 tokens (a slot holds 2,048) with the end-of-text token ignored: the server
    // would generate them all if nobody told it the client left.
    let max_tokens: u32 = 2000;
    let response = stream_chat(
        &client,
        &app.url,
        "cancelled",
        json!({"max_tokens": max_tokens, "ignore_eos": true}),
    )
    .await;
    let mut body = response.bytes_stream();
    let mut chunks = 0;
    while chunks < 5 {
        body.next().await.expect("a chunk").expect("bytes");
        chunks += 1;
    }
    let decoded = |slot: &Value| slot["next_token"][0]["n_decoded"].as_u64().unwrap_or(0);
    let generating = processing_slots(&server).await;
    assert_eq!(generating.len(), 1, "generating");
    let mut most = decoded(&generating[0]);
    drop(body);
    let cancelled = Instant::now();
    let deadline = cancelled + PATIENCE;
    // Watch the slot until it stops: had the server not been told, the count would climb
    // toward max_tokens (or the wait would run out) before it did.
    loop {
        let slots = processing_slots(&server).await;
        let Some(slot) = slots.first() else { break };
        most = most.max(decoded(slot));
        assert!(
            Instant::now() < deadline,
            "still generating {PATIENCE:?} after the client left ({most} tokens)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // How soon depends on the machine (the server notices when it next writes a token);
    // the proof that it stopped is the count, not a clock.
    eprintln!(
        "llama-server stopped generating {:?} after the client went away, at {most} tokens",
        cancelled.elapsed()
    );
    assert!(
        most < u64::from(max_tokens) / 2,
        "the server generated {most} of {max_tokens} tokens"
    );
    let records = app
        .wait_for_operations(&["cancelled"], RECORD_PATIENCE)
        .await;
    let r = by_operation(&records, "cancelled");
    assert!(!r.success);
    assert_eq!(r.error_kind, Some(ErrorKind::ClientCancelled), "{r:#?}");
}
