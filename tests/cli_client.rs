//! The client commands against a running sidecar: readable tables, `--json`, and an
//! export imported into another sidecar.

mod common;

use common::fake_ollama::FakeOllama;
use common::harness::TestApp;
use serde_json::{Value, json};

async fn ollameter(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
            .args(&args)
            .env_remove("OLLAMETER_SERVER")
            .output()
            .expect("runs");
        (
            out.status.success(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_print_tables_json_and_move_records() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for (model, time) in [("hf.co/org/rater:Q4_K_M", 900.0), ("llama3.2:3b", 300.0)] {
        for i in 0..12 {
            let body = json!({"model_name": model, "operation": "photo_evaluation",
                              "processing_time_ms": time + i as f64, "quality_score": 4, "success": true});
            let resp = http
                .post(format!("{}/api/model-performance/record", app.url))
                .json(&body)
                .send()
                .await
                .expect("record");
            assert_eq!(resp.status(), 201);
        }
    }
    let server = app.url.clone();
    let (ok, out, err) = ollameter(args(&["stats", "--server", &server])).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("hf.co/org/rater:Q4_K_M") && out.contains("llama3.2:3b"),
        "{out}"
    );
    assert!(out.contains("905.5"), "p50 of 900..911: {out}");

    let (ok, out, err) = ollameter(args(&[
        "stats",
        "hf.co/org/rater:Q4_K_M",
        "--json",
        "--server",
        &server,
    ]))
    .await;
    assert!(ok, "{err}");
    let stats: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(stats["total_operations"], 12);

    let (ok, out, err) = ollameter(args(&[
        "recommend",
        "--priority",
        "speed",
        "--server",
        &server,
    ]))
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("recommended (speed): llama3.2:3b"), "{out}");

    let (ok, out, _) = ollameter(args(&[
        "compare",
        "llama3.2:3b",
        "hf.co/org/rater:Q4_K_M",
        "--server",
        &server,
    ]))
    .await;
    assert!(ok);
    assert!(out.contains("fastest"), "{out}");

    let (ok, out, _) = ollameter(args(&[
        "trend",
        "llama3.2:3b",
        "--hours",
        "2",
        "--server",
        &server,
    ]))
    .await;
    assert!(ok);
    assert!(out.contains("llama3.2:3b processing_time"), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("records.csv");
    let file_arg = file.display().to_string();
    let (ok, _, err) = ollameter(args(&[
        "export", "--format", "csv", "--out", &file_arg, "--server", &server,
    ]))
    .await;
    assert!(ok, "{err}");
    let other = TestApp::start(&fake.url()).await;
    let (ok, out, err) = ollameter(args(&["import", &file_arg, "--server", &other.url])).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("imported 24 records"), "{out}");
    assert_eq!(other.records().await.len(), 24);

    let (ok, _, err) = ollameter(args(&[
        "recommend",
        "--priority",
        "fastest",
        "--server",
        &server,
    ]))
    .await;
    assert!(!ok);
    assert!(err.contains("priority"), "{err}");
    let (ok, _, err) = ollameter(args(&["stats", "--server", "http://127.0.0.1:9"])).await;
    assert!(!ok);
    assert!(err.contains("cannot reach ollameter"), "{err}");
    other.stop().await;
    app.stop().await;
}

/// Records `count` calls of `model` served by `host`, each taking `time` ms (plus `i`);
/// every `fail_every`-th one failed (never when 0).
async fn record_on_host(
    http: &reqwest::Client,
    app: &TestApp,
    model: &str,
    host: &str,
    time: f64,
    count: usize,
    fail_every: usize,
) {
    for i in 0..count {
        let success = fail_every == 0 || i % fail_every != 0;
        let body = json!({"model_name": model, "operation": "generate", "host": host,
                          "processing_time_ms": time + i as f64, "quality_score": 4,
                          "success": success});
        let resp = http
            .post(format!("{}/api/model-performance/record", app.url))
            .json(&body)
            .send()
            .await
            .expect("record");
        assert_eq!(
            resp.status(),
            201,
            "{}",
            resp.text().await.unwrap_or_default()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_commands_take_a_host_filter() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    // `m` runs on both boxes, slow on gpu1 and failing there half the time; `n` only on
    // gpu1, faster than `m` anywhere.
    record_on_host(&http, &app, "m:1b", "gpu0", 300.0, 12, 0).await;
    record_on_host(&http, &app, "m:1b", "gpu1", 900.0, 12, 2).await;
    record_on_host(&http, &app, "n:1b", "gpu1", 50.0, 12, 0).await;
    let server = app.url.clone();
    let json_of = |ok: bool, out: &str, err: &str| -> Value {
        assert!(ok, "{err}");
        serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };

    // stats: every model, then one model, of one host.
    let (ok, out, err) = ollameter(args(&["stats", "--host", "gpu0", "--server", &server])).await;
    assert!(ok, "{err}");
    assert!(out.contains("m:1b") && !out.contains("n:1b"), "{out}");
    let (ok, out, err) = ollameter(args(&[
        "stats", "m:1b", "--host", "gpu1", "--json", "--server", &server,
    ]))
    .await;
    let stats = json_of(ok, &out, &err);
    assert_eq!(stats["total_operations"], 12, "{stats}");
    let (ok, out, err) = ollameter(args(&["stats", "m:1b", "--json", "--server", &server])).await;
    assert_eq!(json_of(ok, &out, &err)["total_operations"], 24);

    // compare: on gpu0, `n` has no data.
    let (ok, out, err) = ollameter(args(&[
        "compare", "m:1b", "n:1b", "--host", "gpu0", "--json", "--server", &server,
    ]))
    .await;
    let compared = json_of(ok, &out, &err).to_string();
    let (ok, out, err) = ollameter(args(&[
        "compare", "m:1b", "n:1b", "--json", "--server", &server,
    ]))
    .await;
    let everywhere = json_of(ok, &out, &err).to_string();
    assert_ne!(
        compared, everywhere,
        "the host filter changes the comparison"
    );

    // recommend: `n` is the fastest overall, but gpu0 has only `m`.
    let (ok, out, err) = ollameter(args(&[
        "recommend",
        "--priority",
        "speed",
        "--json",
        "--server",
        &server,
    ]))
    .await;
    assert_eq!(json_of(ok, &out, &err)["recommended_model"], "n:1b");
    let (ok, out, err) = ollameter(args(&[
        "recommend",
        "--priority",
        "speed",
        "--host",
        "gpu0",
        "--json",
        "--server",
        &server,
    ]))
    .await;
    assert_eq!(json_of(ok, &out, &err)["recommended_model"], "m:1b");

    // trend: the calls of one host only.
    let count_in = |trend: &Value| -> u64 {
        trend["buckets"]
            .as_array()
            .map(|b| b.iter().filter_map(|b| b["count"].as_u64()).sum())
            .unwrap_or(0)
    };
    let (ok, out, err) = ollameter(args(&[
        "trend", "m:1b", "--host", "gpu0", "--json", "--server", &server,
    ]))
    .await;
    let trend = json_of(ok, &out, &err);
    assert_eq!(count_in(&trend), 12, "{trend}");

    // insights: the failures of `m` are gpu1's.
    let low_success = |answer: &Value| {
        answer["insights"].as_array().is_some_and(|list| {
            list.iter()
                .any(|i| i["kind"] == "low_success_rate" && i["model"] == "m:1b")
        })
    };
    let (ok, out, err) = ollameter(args(&[
        "insights", "--host", "gpu1", "--json", "--server", &server,
    ]))
    .await;
    let on_gpu1 = json_of(ok, &out, &err);
    assert!(low_success(&on_gpu1), "{on_gpu1}");
    let (ok, out, err) = ollameter(args(&[
        "insights", "--host", "gpu0", "--json", "--server", &server,
    ]))
    .await;
    let on_gpu0 = json_of(ok, &out, &err);
    assert!(!low_success(&on_gpu0), "{on_gpu0}");
    let (ok, out, err) =
        ollameter(args(&["insights", "--host", "gpu1", "--server", &server])).await;
    assert!(ok, "{err}");
    assert!(out.contains("m:1b"), "a readable table: {out}");

    // export: gpu1's records only, each naming it.
    let (ok, out, err) = ollameter(args(&[
        "export", "--format", "ndjson", "--host", "gpu1", "--server", &server,
    ]))
    .await;
    assert!(ok, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect();
    assert_eq!(lines.len(), 24);
    assert!(lines.iter().all(|r| r["host"] == "gpu1"), "{out}");

    // A host given empty is refused before asking the server.
    let (ok, _, err) = ollameter(args(&["stats", "--host", " ", "--server", &server])).await;
    assert!(!ok);
    assert!(err.contains("--host"), "{err}");
}
