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
