//! `ollameter bench` and the benchmark routes against the real sidecar in front of the
//! fake Ollama: the records a run makes (source `benchmark`), the grades, the printed table
//! and recommendation, Ctrl-C on the real binary, bad input, and the API's runs.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::fake_ollama::{FakeConfig, FakeModel, FakeOllama, Gate};
use common::harness::TestApp;
use ollameter::record::{Record, Source};
use serde_json::{Value, json};

/// Two generating models and one embedding model; anything else is 404.
fn two_models() -> FakeConfig {
    let mut config = FakeConfig {
        strict_models: true,
        ..FakeConfig::default()
    };
    config.models = vec![
        FakeModel::new("alpha:latest"),
        FakeModel::new("beta:7b"),
        config.models[1].clone(),
    ];
    config
}

async fn ollameter(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_ollameter"))
            .args(&args)
            .env_remove("OLLAMETER_SERVER")
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const PHOTO: &[u8] = &[0x89, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0, 0, 13];

/// Four prompts: a photo graded right (5), one graded wrong (1), a chat passing one of two
/// checks (3), and one not graded under its own operation.
fn prompt_file(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("photo.png"), PHOTO).expect("image");
    let lines = [
        json!({"name": "photo", "prompt": "Rate this photo SCORE=4", "images": ["photo.png"],
               "expect_json": {"pointer": "/score", "value": 4}}),
        json!({"name": "wrong", "prompt": "Rate SCORE=2", "expect_json": {"pointer": "/score", "value": 5}}),
        json!({"name": "chat", "messages": [{"role": "user", "content": "hello"}],
               "options": {"num_predict": 3}, "expect": "tok0 tok1 tok2", "expect_regex": "^nope$"}),
        json!({"name": "plain", "prompt": "say something", "operation": "smalltalk"}),
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    let path = dir.join("prompts.jsonl");
    std::fs::write(&path, text.join("\n") + "\n").expect("prompts");
    path
}

async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(url)
        .send()
        .await
        .expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn of_model<'a>(records: &'a [Record], model: &str) -> Vec<&'a Record> {
    records.iter().filter(|r| r.model == model).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_records_every_call_grades_prints_the_table_and_recommends() {
    let fake = FakeOllama::start_with(two_models()).await;
    let app = TestApp::start(&fake.url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let prompts = prompt_file(dir.path());
    let (code, out, err) = ollameter(args(&[
        "bench",
        "--models",
        "alpha,beta:7b,ghost",
        "--prompts",
        prompts.to_str().expect("utf-8"),
        "--runs",
        "3",
        "--warmup",
        "--concurrency",
        "2",
        "--server",
        &app.url,
    ]))
    .await;
    assert_eq!(code, 0, "{out}\n{err}");

    // 2 models x 4 prompts x 3 runs, plus one warm-up per model; nothing for `ghost`.
    let records = app.wait_records(26).await;
    assert_eq!(records.len(), 26, "{records:#?}");
    assert!(records.iter().all(|r| r.source == Source::Benchmark));
    assert!(records.iter().all(|r| r.success), "{records:#?}");
    assert!(of_model(&records, "ghost").is_empty());
    for model in ["alpha", "beta:7b"] {
        let mine = of_model(&records, model);
        assert_eq!(mine.len(), 13, "{model}");
        let warmups: Vec<_> = mine.iter().filter(|r| r.operation == "load").collect();
        assert_eq!(warmups.len(), 1, "one warm-up per model, marked as a load");
        assert_eq!(warmups[0].quality_score, None);
        let mut grades: Vec<String> = mine
            .iter()
            .filter(|r| r.operation != "load")
            .map(|r| format!("{}:{:?}", r.operation, r.quality_score))
            .collect();
        grades.sort();
        assert_eq!(
            grades,
            [
                "chat:Some(3.0)",
                "chat:Some(3.0)",
                "chat:Some(3.0)",
                "generate:Some(1.0)",
                "generate:Some(1.0)",
                "generate:Some(1.0)",
                "generate:Some(5.0)",
                "generate:Some(5.0)",
                "generate:Some(5.0)",
                "smalltalk:None",
                "smalltalk:None",
                "smalltalk:None",
            ],
            "{model}"
        );
    }
    // The photo went to Ollama as base64, and every call was marked.
    let photo = base64::engine::general_purpose::STANDARD.encode(PHOTO);
    let sent = fake.state.requests();
    let with_images = sent
        .iter()
        .filter(|r| r.path == "/api/generate" && r.json()["images"] == json!([photo]))
        .count();
    assert_eq!(with_images, 6, "the photo prompt, 3 runs x 2 models");

    // The table, the skipped model and the recommendation.
    for needle in [
        "alpha",
        "beta:7b",
        "warm p50 ms",
        "100.0%",
        "3.00 (9 graded)",
        "skipped ghost: not installed",
        "recommended (speed): ",
        "recommended (quality): ",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}\n{err}");
    }

    // The recommendation over benchmark records works with the default min_operations.
    let (status, rec) = get(&format!(
        "{}/api/model-performance/recommend?priority=balanced&source=benchmark",
        app.url
    ))
    .await;
    assert_eq!(status, 200);
    assert!(rec["recommended_model"].is_string(), "{rec}");
    let (_, none) = get(&format!(
        "{}/api/model-performance/recommend?source=manual",
        app.url
    ))
    .await;
    assert!(none["recommended_model"].is_null(), "{none}");
    let (status, bad) = get(&format!(
        "{}/api/model-performance/recommend?source=bogus",
        app.url
    ))
    .await;
    assert_eq!(status, 400);
    assert!(
        bad["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("source:") && e.contains("benchmark")),
        "{bad}"
    );
    let (_, stats) = get(&format!(
        "{}/api/model-performance/statistics?source=benchmark",
        app.url
    ))
    .await;
    assert_eq!(stats["models"]["alpha"]["total_operations"], 13, "{stats}");
    let (_, stats) = get(&format!(
        "{}/api/model-performance/statistics?source=proxy",
        app.url
    ))
    .await;
    assert_eq!(stats["models"], json!({}), "{stats}");

    // --json, the built-in suite, and --installed leaving the embedding model out.
    let (code, out, err) = ollameter(args(&[
        "bench",
        "--installed",
        "--runs",
        "1",
        "--json",
        "--server",
        &app.url,
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    let names: Vec<&str> = report["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["model"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["alpha:latest", "beta:7b"]);
    assert_eq!(
        report["models"][0]["calls"], 4,
        "the default suite's 4 prompts"
    );
    assert_eq!(report["skipped"][0]["model"], "nomic-embed-text:latest");
    assert_eq!(report["stopped"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_keeps_what_was_measured_and_prints_a_partial_table() {
    let fake = FakeOllama::start_with(FakeConfig {
        chunk_gap: Duration::from_millis(40),
        ..two_models()
    })
    .await;
    let app = TestApp::start(&fake.url()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"count\", \"options\": {\"num_predict\": 4}}\n",
    )
    .expect("prompts");
    let child = Command::new(env!("CARGO_BIN_EXE_ollameter"))
        .args([
            "bench",
            "--models",
            "alpha",
            "--prompts",
            prompts.to_str().expect("utf-8"),
            "--runs",
            "200",
            "--server",
            &app.url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let pid = child.id().to_string();
    // Let a few calls finish, then interrupt.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.records().await.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no records");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");

    // Every call made was measured to its end: no cancelled record, none lost.
    let records = app.records().await;
    assert!(
        records.len() >= 3 && records.len() < 200,
        "{}",
        records.len()
    );
    assert!(
        records
            .iter()
            .all(|r| r.success && r.source == Source::Benchmark)
    );
    let summary = format!("stopped: {} of 200 calls made", records.len());
    assert!(stdout.contains(&summary), "{summary}:\n{stdout}");
    assert!(stdout.contains("alpha"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_message_a_person_can_act_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.jsonl");
    let (code, _, err) = ollameter(args(&[
        "bench",
        "--models",
        "alpha",
        "--prompts",
        missing.to_str().expect("utf-8"),
    ]))
    .await;
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read the prompt file") && err.contains("nope.jsonl"),
        "{err}"
    );

    let broken = dir.path().join("broken.jsonl");
    std::fs::write(
        &broken,
        "{\"prompt\": \"ok\"}\n{\"prompt\": \"missing quote}\n",
    )
    .expect("w");
    let (code, _, err) = ollameter(args(&[
        "bench",
        "--models",
        "alpha",
        "--prompts",
        broken.to_str().expect("utf-8"),
    ]))
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("broken.jsonl line 2:"), "{err}");

    let (code, _, err) = ollameter(args(&[
        "bench",
        "--models",
        "alpha",
        "--server",
        "http://127.0.0.1:1",
    ]))
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot reach ollameter at http://127.0.0.1:1"),
        "{err}"
    );

    let fake = FakeOllama::start_with(two_models()).await;
    let app = TestApp::start(&fake.url()).await;
    let (code, _, err) =
        ollameter(args(&["bench", "--models", "ghost", "--server", &app.url])).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("no model to measure: ghost: not installed in Ollama"),
        "{err}"
    );
    assert!(app.records().await.is_empty());
    // Ollama itself down behind the sidecar.
    fake.stop();
    let (code, _, err) =
        ollameter(args(&["bench", "--models", "alpha", "--server", &app.url])).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach Ollama"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_runs_one_benchmark_at_a_time_with_progress() {
    let gate = Gate::new();
    let fake = FakeOllama::start_with(FakeConfig {
        gate: Some(gate.clone()),
        ..two_models()
    })
    .await;
    let app = TestApp::start(&fake.url()).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let base = format!("{}/api/model-performance/benchmark", app.url);
    let body = json!({"models": ["alpha"], "runs": 20,
                      "prompts": [{"prompt": "hi", "options": {"num_predict": 2}, "expect": "tok0 tok1"}]});
    let resp = http.post(&base).json(&body).send().await.expect("start");
    assert_eq!(resp.status(), 202);
    let started: Value = resp.json().await.expect("json");
    let id = started["id"].as_str().expect("id").to_string();
    assert_eq!(started["state"], "running");

    let resp = http.post(&base).json(&body).send().await.expect("second");
    assert_eq!(resp.status(), 409);
    let conflict: Value = resp.json().await.expect("json");
    assert!(
        conflict["error"].as_str().is_some_and(|e| e.contains(&id)),
        "{conflict}"
    );

    // The first call is held by the gate: the run is in progress.
    assert!(fake.state.wait_started(1, Duration::from_secs(10)).await);
    let (status, progress) = get(&format!("{base}/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(progress["state"], "running");
    assert_eq!(progress["current_model"], "alpha");
    assert_eq!(progress["report"]["total_calls"], 20);
    assert_eq!(progress["report"]["done_calls"], 0);

    // The dashboard links it.
    let page = http
        .get(format!("{}/dashboard", app.url))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains(&format!("/api/model-performance/benchmark/{id}")),
        "{page}"
    );

    // Let three calls through, then stop: the call in flight finishes, no new one starts.
    gate.release(3 * 3);
    assert!(fake.state.wait_completed(3, Duration::from_secs(10)).await);
    let resp = http
        .delete(format!("{base}/{id}"))
        .send()
        .await
        .expect("stop");
    assert_eq!(resp.status(), 200);
    gate.release(1000);
    let mut state = Value::Null;
    for _ in 0..500 {
        let (_, s) = get(&format!("{base}/{id}")).await;
        if s["state"] != "running" && s["state"] != "stopping" {
            state = s;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state["state"], "stopped", "{state}");
    let records = app.wait_records(3).await;
    let done = state["report"]["done_calls"].as_u64().expect("done");
    assert_eq!(records.len() as u64, done, "{state}");
    assert!((3..20).contains(&done), "{state}");
    assert_eq!(state["report"]["models"][0]["calls"], done);
    assert_eq!(state["report"]["models"][0]["quality_avg"], 5.0, "{state}");
    assert!(
        records.iter().all(|r| r.quality_score == Some(5.0)),
        "{records:#?}"
    );

    // Stopped, so a new run may start; it runs to the end.
    let body = json!({"models": ["alpha"], "runs": 2, "prompts": [{"prompt": "hi"}]});
    let resp = http.post(&base).json(&body).send().await.expect("start");
    assert_eq!(resp.status(), 202);
    let next: Value = resp.json().await.expect("json");
    let next_id = next["id"].as_str().expect("id");
    let mut state = Value::Null;
    for _ in 0..500 {
        let (_, s) = get(&format!("{base}/{next_id}")).await;
        if s["state"] == "finished" {
            state = s;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state["report"]["done_calls"], 2, "{state}");
    assert!(
        state["report"]["recommendations"]["speed"].is_object(),
        "{state}"
    );

    let (status, _) = get(&format!("{base}/no-such-run")).await;
    assert_eq!(status, 404);
    let resp = http
        .post(&base)
        .json(&json!({"models": ["alpha"], "runs": 0}))
        .send()
        .await
        .expect("bad");
    assert_eq!(resp.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quality_rule_scores_in_the_proxy_and_the_example_file_runs() {
    let fake = FakeOllama::start_with(two_models()).await;
    let app = TestApp::start_with(&fake.url(), |config| {
        let rules = [ollameter::quality::QualityRuleConfig {
            operation: Some("grammar_rating".into()),
            json_pointer: Some("/score".into()),
            ..Default::default()
        }];
        config.proxy.quality = std::sync::Arc::new(
            ollameter::quality::QualityRules::new(&rules).expect("valid rules"),
        );
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let prompts = dir.path().join("rule.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"Rate SCORE=4\", \"quality_rule\": \"grammar_rating\"}\n{\"prompt\": \"no score here\", \"quality_rule\": \"grammar_rating\"}\n",
    )
    .expect("prompts");
    let (code, out, err) = ollameter(args(&[
        "bench",
        "--models",
        "alpha",
        "--prompts",
        prompts.to_str().expect("utf-8"),
        "--runs",
        "2",
        "--json",
        "--server",
        &app.url,
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    let alpha = &report["models"][0];
    assert_eq!(alpha["graded"], 2, "{report}");
    assert_eq!(alpha["quality_avg"], 4.0, "{report}");
    assert!(
        alpha["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("no configured rule for operation \"grammar_rating\"")),
        "{report}"
    );
    let records = app.records().await;
    assert!(records.iter().all(|r| r.operation == "grammar_rating"));
    let mut scores: Vec<Option<f64>> = records.iter().map(|r| r.quality_score).collect();
    scores.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    assert_eq!(scores, [None, None, Some(4.0), Some(4.0)]);

    // The shipped example, images included, runs as it is.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/bench-prompts.example.jsonl"
    );
    let (code, out, err) = ollameter(args(&[
        "bench",
        "--models",
        "beta:7b",
        "--prompts",
        example,
        "--runs",
        "1",
        "--json",
        "--server",
        &app.url,
    ]))
    .await;
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(report["models"][0]["calls"], 6, "{report}");
    assert_eq!(report["models"][0]["succeeded"], 6, "{report}");
}
