//! The soak: ollameter (the release binary, as users run it) in front of the fake Ollama
//! under mixed streaming load for a while, sampling its resident memory and open file
//! descriptors from /proc. Flat lines mean nothing leaks.
//!
//! Run: `cargo build --release && cargo bench --bench soak -- --minutes 10` (default 10;
//! `--minutes 1` for a quick look). Not part of CI.

#[path = "../tests/common/fake_ollama/mod.rs"]
mod fake_ollama;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fake_ollama::{FakeConfig, FakeOllama};
use futures_util::StreamExt;
use serde_json::json;

struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets without `--bench`: a soak of
        // minutes does not belong there.
        println!("ollameter soak: run it with `cargo build --release && cargo bench --bench soak`");
        return;
    }
    let minutes = arg("--minutes", 10.0);
    let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/ollameter");
    assert!(
        binary.exists(),
        "build the release binary first: cargo build --release"
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let fake = FakeOllama::start_with(FakeConfig {
            chunk_gap: Duration::from_millis(2),
            tokens: 64,
            ..FakeConfig::default()
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let sidecar = Sidecar(
            Command::new(&binary)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--upstream", &fake.url(), "--db"])
                .arg(dir.path().join("soak.db"))
                .env("RUST_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .expect("ollameter starts"),
        );
        let pid = sidecar.0.id();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        for _ in 0..500 {
            if http.get(format!("{url}/api/model-performance/health")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let end = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
        let calls = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for w in 0..8u64 {
            let (http, url, calls) = (http.clone(), url.clone(), calls.clone());
            workers.push(tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < end {
                    i += 1;
                    match (w + i) % 5 {
                        // Native stream, read to the end.
                        0 | 1 => {
                            if let Ok(r) = http.post(format!("{url}/api/chat"))
                                .json(&json!({"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}))
                                .send().await
                            {
                                let _ = r.bytes().await;
                            }
                        }
                        // OpenAI stream with usage.
                        2 => {
                            if let Ok(r) = http.post(format!("{url}/v1/chat/completions"))
                                .json(&json!({"model": "llama3.2", "stream": true, "stream_options": {"include_usage": true},
                                              "messages": [{"role": "user", "content": "hi"}]}))
                                .send().await
                            {
                                let _ = r.bytes().await;
                            }
                        }
                        // A client that leaves after the first chunk.
                        3 => {
                            if let Ok(r) = http.post(format!("{url}/api/generate"))
                                .json(&json!({"model": "llama3.2", "prompt": "x"}))
                                .send().await
                            {
                                let mut s = r.bytes_stream();
                                let _ = s.next().await;
                            }
                        }
                        // Non-streamed embeddings.
                        _ => {
                            if let Ok(r) = http.post(format!("{url}/api/embed"))
                                .json(&json!({"model": "nomic-embed-text", "input": ["a", "b"]}))
                                .send().await
                            {
                                let _ = r.bytes().await;
                            }
                        }
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let started = Instant::now();
        let mut samples = Vec::new();
        let step = Duration::from_secs_f64((minutes * 60.0 / 20.0).max(1.0));
        while Instant::now() < end {
            tokio::time::sleep(step).await;
            let s = (started.elapsed().as_secs(), rss_mb(pid), open_fds(pid), calls.load(Ordering::Relaxed));
            println!("t={:>4}s rss={:.1} MiB fds={} calls={}", s.0, s.1, s.2, s.3);
            samples.push(s);
        }
        for w in workers {
            let _ = w.await;
        }
        let health: serde_json::Value = http
            .get(format!("{url}/api/model-performance/health"))
            .send().await.expect("health").json().await.expect("json");
        // Skip the first sample (warm-up) when judging flatness.
        let steady = &samples[samples.len().min(1)..];
        let rss: Vec<f64> = steady.iter().map(|s| s.1).collect();
        let fds: Vec<usize> = steady.iter().map(|s| s.2).collect();
        println!(
            "soak {minutes} min: {} calls; RSS after warm-up {:.1}..{:.1} MiB (last {:.1}); open fds {}..{} (last {}); records written {}, dropped {}",
            calls.load(Ordering::Relaxed),
            rss.iter().cloned().fold(f64::INFINITY, f64::min),
            rss.iter().cloned().fold(0.0, f64::max),
            rss.last().copied().unwrap_or(f64::NAN),
            fds.iter().min().copied().unwrap_or(0),
            fds.iter().max().copied().unwrap_or(0),
            fds.last().copied().unwrap_or(0),
            health["records_written"],
            health["records_dropped"],
        );
        drop(sidecar);
    });
}
