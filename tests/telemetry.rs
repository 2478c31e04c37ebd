//! Telemetry end to end: a stand-in runner process holding a known amount of memory, the
//! fake Ollama naming its blob, and the record of a call to that model.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fake_ollama::{FakeConfig, FakeModel, FakeOllama};
use common::harness::TestApp;
use serde_json::{Value, json};

/// Kills the stand-in when the test ends, however it ends.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident memory of a process in MiB, from the kernel.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// Starts a process whose command line looks like Ollama's runner (`llama-server --model
/// <blob> --port N`) and which holds about 200 MiB, touched so it is resident.
fn start_runner(dir: &std::path::Path, blob: &str) -> Runner {
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3");
    let python = String::from_utf8(python.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    let exe = dir.join("llama-server");
    std::os::unix::fs::symlink(&python, &exe).expect("symlink");
    let code = "import sys, time\nb = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('ready', flush=True)\ntime.sleep(600)";
    let mut child = Command::new(&exe)
        .args(["-c", code, "--model", blob, "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("stand-in runner starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    assert_eq!(line.trim(), "ready");
    Runner(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_records_the_memory_of_its_models_runner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blob = format!("{}/blobs/sha256-{}", dir.path().display(), "ab".repeat(32));
    let runner = start_runner(dir.path(), &blob);
    let model = FakeModel {
        blob_path: blob.clone(),
        loaded: true,
        ..FakeModel::new("photo-rater:latest")
    };
    let fake = FakeOllama::start_with(FakeConfig {
        models: vec![model],
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start_with(&fake.url(), |c| {
        c.telemetry.enabled = true;
        c.telemetry.interval = Duration::from_millis(50);
    })
    .await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    // Wait until the sampler has mapped the runner to its model.
    let mut system = Value::Null;
    for _ in 0..200 {
        system = http
            .get(format!("{}/api/model-performance/system", app.url))
            .send()
            .await
            .expect("system")
            .json()
            .await
            .expect("json");
        if system.to_string().contains(&runner.0.id().to_string())
            && system["loaded_models"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| !m["runner_pid"].is_null()))
        {
            break;
        }
        app.running()
            .telemetry
            .wait_for_ticks(app.running().telemetry.ticks() + 1)
            .await;
    }
    assert!(
        system.to_string().contains(&runner.0.id().to_string()),
        "runner not found: {system:#}"
    );
    let resp = http
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "photo-rater", "prompt": "rate this", "stream": false}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");
    let truth = rss_mb(runner.0.id());
    let records = app.wait_records(1).await;
    let record = records
        .iter()
        .find(|r| r.model == "photo-rater")
        .expect("record");
    let measured = record.ollama_rss_mb.expect("ollama_rss_mb is known");
    assert!(
        (measured - truth).abs() <= 0.1 * truth,
        "recorded {measured:.1} MiB, the runner holds {truth:.1} MiB"
    );
    let peak = record.ollama_rss_peak_mb.expect("peak");
    assert!(peak >= measured);
    assert!(record.vram_mb.is_some(), "size_vram from /api/ps");
    // No GPU here: the GPU fields stay empty and /system says why.
    assert_eq!(record.gpu_memory_mb, None);
    let nvml = &system["sampler"]["sources"]["nvml"];
    assert_eq!(nvml["state"], "unavailable", "{system:#}");
    assert!(!nvml["reason"].as_str().unwrap_or("").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn recommend_excludes_a_model_that_does_not_fit_the_vram_and_says_why() {
    // The fake reports the big model loaded with 30 GB in VRAM; the small one with 2 GB.
    let big = FakeModel {
        size_vram_bytes: 30 << 30,
        size_bytes: 20 << 30,
        ..FakeModel::new("big:70b")
    };
    let small = FakeModel {
        size_vram_bytes: 2 << 30,
        ..FakeModel::new("small:3b")
    };
    let fake = FakeOllama::start_with(FakeConfig {
        models: vec![big, small],
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start_with(&fake.url(), |c| {
        c.telemetry.enabled = true;
        c.telemetry.interval = Duration::from_millis(50);
    })
    .await;
    let telemetry = app.running().telemetry.clone();
    telemetry.wait_for_ticks(3).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for model in ["big:70b", "small:3b"] {
        for _ in 0..10 {
            let body = json!({"model_name": model, "operation": "rate", "processing_time_ms": 100, "success": true});
            let resp = http
                .post(format!("{}/api/model-performance/record", app.url))
                .json(&body)
                .send()
                .await
                .expect("record");
            assert_eq!(resp.status(), 201);
        }
    }
    let rec: Value = http
        .get(format!(
            "{}/api/model-performance/recommend?available_vram_gb=16",
            app.url
        ))
        .send()
        .await
        .expect("recommend")
        .json()
        .await
        .expect("json");
    assert_eq!(rec["recommended_model"], "small:3b", "{rec:#}");
    let big = rec["excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .find(|e| e["model"] == "big:70b")
        .expect("big excluded");
    let reason = big["reason"].as_str().expect("reason");
    assert!(
        reason.contains("VRAM") && reason.contains("measured"),
        "{reason}"
    );
    app.stop().await;
}
