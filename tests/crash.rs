//! The real binary under load, killed with SIGKILL: the store stays consistent and keeps
//! every record committed before the kill; loss is bounded by the flush interval. And
//! what the binary logs and stores carries no secrets and no prompts.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fake_ollama::{FakeConfig, FakeOllama};
use ollameter::store::Store;
use serde_json::json;

/// The flush interval the binary runs with here.
const FLUSH_MS: u64 = 50;

struct Sidecar {
    child: Child,
    url: String,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn start(upstream: &str, db: &std::path::Path, rust_log: &str) -> Sidecar {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ollameter"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            upstream,
            "--db",
        ])
        .arg(db)
        .env("OLLAMETER_RECORDER_FLUSH_INTERVAL_MS", FLUSH_MS.to_string())
        .env("OLLAMETER_TELEMETRY_ENABLED", "false")
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::piped())
        .spawn()
        .expect("ollameter starts");
    let sidecar = Sidecar {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for _ in 0..500 {
        if let Ok(r) = http
            .get(format!("{}/api/model-performance/health", sidecar.url))
            .send()
            .await
            && r.status().is_success()
        {
            return sidecar;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the sidecar did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_keeps_every_committed_record_and_a_sound_file() {
    let fake = FakeOllama::start_with(FakeConfig {
        tokens: 2,
        chunk_gap: Duration::from_millis(1),
        ..FakeConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.db");
    let mut sidecar = start(&fake.url(), &db, "warn").await;
    let done: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut workers = Vec::new();
    for w in 0..4 {
        let url = sidecar.url.clone();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().no_proxy().build().expect("client");
            let mut i = 0;
            while Instant::now() < stop_at + Duration::from_millis(500) {
                i += 1;
                let sent = http
                    .post(format!("{url}/api/generate"))
                    .json(&json!({"model": "llama3.2", "prompt": format!("w{w} {i}"), "stream": false}))
                    .send()
                    .await;
                let Ok(resp) = sent else { break };
                let id = resp.headers().get("x-ollameter-record-id").map(|v| v.to_str().expect("ascii").to_string());
                if resp.bytes().await.is_err() {
                    break;
                }
                if let Some(id) = id {
                    done.lock().expect("lock").push((id, Instant::now()));
                }
            }
        }));
    }
    tokio::time::sleep_until(stop_at.into()).await;
    sidecar.child.kill().expect("SIGKILL");
    let killed_at = Instant::now();
    sidecar.child.wait().expect("reaped");
    for w in workers {
        w.await.expect("worker");
    }
    let store = Store::open(&db).expect("the store opens after a crash");
    assert!(
        store.integrity_ok().expect("check"),
        "PRAGMA integrity_check"
    );
    let stored: std::collections::HashSet<String> = store
        .records(None)
        .expect("records")
        .into_iter()
        .map(|r| r.id)
        .collect();
    let done = done.lock().expect("lock").clone();
    // A record is queued when its answer ends and committed within the flush interval
    // plus one commit; allow that bound, doubled for a busy 2-core machine.
    let bound = Duration::from_millis(2 * FLUSH_MS + 200);
    let must_have: Vec<&String> = done
        .iter()
        .filter(|(_, at)| *at + bound < killed_at)
        .map(|(id, _)| id)
        .collect();
    let missing: Vec<&&String> = must_have
        .iter()
        .filter(|id| !stored.contains(**id))
        .collect();
    println!(
        "served {} calls, {} stored, {} completed more than {:?} before the kill: {} missing",
        done.len(),
        stored.len(),
        must_have.len(),
        bound,
        missing.len()
    );
    assert!(
        must_have.len() > 50,
        "the load ran: {} calls",
        must_have.len()
    );
    assert!(missing.is_empty(), "committed records lost: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_store_carry_no_tokens_and_no_prompts() {
    let fake = FakeOllama::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("secrets.db");
    let mut sidecar = start(&fake.url(), &db, "debug").await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = http
        .post(format!("{}/api/chat", sidecar.url))
        .bearer_auth("TOPSECRET-TOKEN-42")
        .json(&json!({"model": "llama3.2", "stream": false,
                      "messages": [{"role": "user", "content": "PROMPT-SECRET-99 rate this"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let answer = resp.text().await.expect("text");
    assert!(answer.contains("tok0"), "the model's answer: {answer}");
    let pid = sidecar.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let output = std::mem::replace(
        &mut sidecar.child,
        Command::new("true").spawn().expect("true"),
    )
    .wait_with_output()
    .expect("exits");
    assert!(output.status.success(), "SIGTERM is a clean stop");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("inference call"),
        "the per-call line is logged: {log}"
    );
    for secret in ["TOPSECRET-TOKEN-42", "PROMPT-SECRET-99", "tok0 tok1"] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
    let mut bytes = std::fs::read(&db).expect("db");
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("llama3.2"), "the record is in the file");
    for secret in ["TOPSECRET-TOKEN-42", "PROMPT-SECRET-99", "tok0 tok1"] {
        assert!(!text.contains(secret), "{secret} stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_one_object_per_call() {
    let fake = FakeOllama::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ollameter"))
        .args([
            "serve",
            "--log-format",
            "json",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &fake.url(),
            "--db",
        ])
        .arg(dir.path().join("j.db"))
        .env("OLLAMETER_TELEMETRY_ENABLED", "false")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut id = None;
    for _ in 0..500 {
        if let Ok(r) = http
            .post(format!("{url}/api/embed"))
            .json(&json!({"model": "nomic-embed-text", "input": "a"}))
            .send()
            .await
        {
            id = r
                .headers()
                .get("x-ollameter-record-id")
                .map(|v| v.to_str().expect("ascii").to_string());
            r.bytes().await.expect("body");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let id = id.expect("a call went through");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let output = std::mem::replace(&mut child, Command::new("true").spawn().expect("true"))
        .wait_with_output()
        .expect("exit");
    let log = String::from_utf8_lossy(&output.stderr);
    let calls: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every line is JSON"))
        .filter(|v| v["fields"]["message"] == "inference call")
        .collect();
    assert_eq!(calls.len(), 1, "{log}");
    assert_eq!(calls[0]["fields"]["record_id"], id.as_str());
    assert_eq!(calls[0]["fields"]["endpoint"], "/api/embed");
    assert_eq!(calls[0]["fields"]["status"], 200);
}
