//! Hygiene under sloppy traffic (issue 23), measured.
//!
//! 1. Views at scale (in process, release build): a store with 1,000 real models (100
//!    records each), then `/dashboard` (default `limit`, 50 models, and `limit=1000`) and
//!    `/statistics`: median and p95 time over repeated calls, and the size of the answer.
//! 2. A flood of unknown names against the release binary: `ollameter serve` in front of
//!    the fake Ollama (which answers 404 for models it does not have), rounds of 10,000
//!    calls each naming a different model; its resident memory from /proc after each
//!    round, and the size of `/statistics` and `/dashboard` at the end.
//!
//! Run: `cargo build --release && cargo bench --bench hygiene` (`-- --rounds N` for more
//! flood rounds; default 3). docs/benchmarks.md and docs/reliability.md record the numbers.

#[path = "../tests/common/fake_ollama/mod.rs"]
mod fake_ollama;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use fake_ollama::{FakeConfig, FakeOllama};
use futures_util::StreamExt;
use ollameter::app;
use ollameter::config::{self, Overrides};
use ollameter::record::Record;
use ollameter::recorder::{self, RecorderConfig};
use serde_json::json;

struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(name: &str, default: usize) -> usize {
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

fn record(i: usize, model: usize, now_ms: i64) -> Record {
    let mut r = Record::new(
        format!("views-{model}-{i}"),
        Utc.timestamp_millis_opt(now_ms - (i as i64) * 60_000)
            .single()
            .unwrap_or_default(),
        format!("model-{model:04}:{}b", 1 + model % 9),
        "chat".into(),
        "/api/chat".into(),
    );
    r.success = !i.is_multiple_of(20);
    r.processing_time_ms = 100.0 + (model % 50) as f64 * 7.0 + (i % 13) as f64;
    r.ttft_ms = Some(30.0 + (i % 7) as f64);
    r.tokens_per_second = Some(20.0 + (model % 30) as f64);
    r.output_tokens = Some(100);
    r
}

fn summary(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(times[times.len() / 2]),
        ms(times[(times.len() * 95 / 100).min(times.len() - 1)]),
    )
}

fn views(runtime: &tokio::runtime::Runtime, models: usize, per_model: usize, calls: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("views.db");
    let now_ms = Utc::now().timestamp_millis();
    runtime.block_on(async {
        let (rec, task) = recorder::start(
            &ollameter::store::StoreLocation::Sqlite(db.clone()),
            RecorderConfig {
                queue_capacity: 100_000,
                batch_size: 512,
                flush_interval: Duration::from_millis(200),
                max_records_per_model: u64::MAX,
                max_age: Duration::from_secs(3650 * 86_400),
                retention_interval: Duration::from_secs(86_400),
                max_models: usize::MAX,
                instance: "bench".into(),
                spill_capacity: 0,
                follow_interval: Duration::from_secs(3600),
            },
            None,
        )
        .expect("recorder");
        for m in 0..models {
            let batch: Vec<Record> = (0..per_model).map(|i| record(i, m, now_ms)).collect();
            rec.submit_and_wait(batch).await.expect("stored");
        }
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
    });
    let flags = Overrides {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some("http://127.0.0.1:9".into()),
        db: Some(db.display().to_string()),
        ..Overrides::default()
    };
    let mut config = config::load(None, &[], &flags).expect("config");
    config.telemetry.enabled = false;
    runtime.block_on(async {
        let running = app::start(config).await.expect("start");
        let base = format!("http://{}", running.api_addr);
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        for (name, path) in [
            ("dashboard (default limit: 50 models)", "/dashboard".to_string()),
            (
                "dashboard (limit=1000: every model)",
                "/dashboard?limit=1000".to_string(),
            ),
            (
                "statistics (default limit: 50 models)",
                "/api/model-performance/statistics".to_string(),
            ),
            (
                "statistics (limit=1000)",
                "/api/model-performance/statistics?limit=1000".to_string(),
            ),
        ] {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..calls {
                let t = Instant::now();
                let resp = http.get(format!("{base}{path}")).send().await.expect("send");
                assert!(resp.status().is_success(), "{path}: {}", resp.status());
                bytes = resp.bytes().await.expect("body").len();
                times.push(t.elapsed());
            }
            let (p50, p95) = summary(times);
            println!(
                "{name}, {models} models: median {p50:.1} ms, p95 {p95:.1} ms over {calls} calls, {:.0} KB",
                bytes as f64 / 1024.0
            );
        }
        running.shutdown().await;
    });
}

fn flood(runtime: &tokio::runtime::Runtime, rounds: usize, per_round: usize) {
    let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/ollameter");
    if !binary.exists() {
        println!("flood: skipped, build the release binary first: cargo build --release");
        return;
    }
    runtime.block_on(async move {
        let fake = FakeOllama::start_with(FakeConfig {
            strict_models: true,
            chunk_gap: Duration::ZERO,
            ..FakeConfig::default()
        })
        .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let sidecar = Sidecar(
            Command::new(&binary)
                .args([
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--upstream",
                    &fake.url(),
                    "--db",
                ])
                .arg(dir.path().join("flood.db"))
                .env("RUST_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .expect("ollameter starts"),
        );
        let pid = sidecar.0.id();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        for _ in 0..500 {
            if http
                .get(format!("{url}/api/model-performance/health"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..50 {
            let r = http
                .post(format!("{url}/api/generate"))
                .json(&json!({"model": "llama3.2", "prompt": "hi", "stream": false}))
                .send()
                .await
                .expect("send");
            let _ = r.bytes().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!("flood: RSS after 50 good calls: {:.1} MiB", rss_mb(pid));
        let started = Instant::now();
        for round in 0..rounds {
            futures_util::stream::iter(0..per_round)
                .map(|i| {
                    let (http, url) = (http.clone(), url.clone());
                    async move {
                        let model = format!("junk-{round}-{i:05}-{:x}", i * 2_654_435_761);
                        let (path, body) = if i.is_multiple_of(2) {
                            ("/api/generate", json!({"model": model, "prompt": "hi"}))
                        } else {
                            (
                                "/v1/chat/completions",
                                json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
                            )
                        };
                        if let Ok(r) = http.post(format!("{url}{path}")).json(&body).send().await {
                            let _ = r.bytes().await;
                        }
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<()>>()
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            println!(
                "flood: RSS after {} distinct unknown names: {:.1} MiB",
                (round + 1) * per_round,
                rss_mb(pid)
            );
        }
        println!(
            "flood: {} calls in {:.1} s",
            rounds * per_round,
            started.elapsed().as_secs_f64()
        );
        for path in [
            "/api/model-performance/statistics",
            "/api/model-performance/statistics?include_unknown=true&limit=10000",
            "/dashboard",
        ] {
            let t = Instant::now();
            let body = http
                .get(format!("{url}{path}"))
                .send()
                .await
                .expect("send")
                .bytes()
                .await
                .expect("body");
            println!(
                "flood: {path}: {:.1} KB in {:.1} ms",
                body.len() as f64 / 1024.0,
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        let metrics = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("text");
        if let Some(line) = metrics
            .lines()
            .find(|l| l.starts_with("ollameter_models_evicted_total "))
        {
            println!("flood: {line}");
        }
        drop(sidecar);
    });
}

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench` (in debug mode): a
    // small smoke run of the views, no flood.
    let measuring = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if measuring {
        views(&runtime, arg("--models", 1_000), 100, arg("--calls", 20));
        flood(&runtime, arg("--rounds", 3), 10_000);
    } else {
        views(&runtime, 60, 5, 2);
    }
}
