//! The body of the API bench, shared by `cargo bench --bench api` (SQLite) and
//! `cargo bench --bench pg` (PostgreSQL): ingest through the recorder, start the sidecar
//! over that store, time `/recommend` and `/statistics`.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use ollameter::app;
use ollameter::config::{self, Overrides};
use ollameter::record::Record;
use ollameter::recorder::{self, RecorderConfig};
use ollameter::store::StoreLocation;

/// A numeric `--name N` argument.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic spread of realistic values (no RNG crate needed).
pub fn record(i: usize, models: usize, now_ms: i64, span_ms: i64) -> Record {
    let m = i % models;
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let jitter = (h >> 40) as f64 / (1u64 << 24) as f64;
    let ts = now_ms - span_ms + (i as i64 * span_ms / 1_000_000).min(span_ms);
    let mut r = Record::new(
        format!("bench-{i}"),
        Utc.timestamp_millis_opt(ts).single().unwrap_or_default(),
        format!("model-{m:02}:{}b", 1 + m % 9),
        if i.is_multiple_of(3) {
            "photo_evaluation".into()
        } else {
            "chat".into()
        },
        "/api/chat".into(),
    );
    r.success = !h.is_multiple_of(50);
    r.stream = true;
    r.processing_time_ms = 200.0 + 40.0 * m as f64 + 300.0 * jitter;
    r.ttft_ms = Some(50.0 + 10.0 * jitter);
    r.output_tokens = Some(100 + (h % 200));
    r.prompt_tokens = Some(30);
    r.tokens_per_second = Some(20.0 + 60.0 * jitter);
    r.prompt_tokens_per_second = Some(500.0);
    r.quality_score = if h.is_multiple_of(4) {
        Some(1.0 + 4.0 * jitter)
    } else {
        None
    };
    r.ollama_rss_mb = Some(2000.0 + 100.0 * m as f64);
    r.vram_mb = Some(1500.0 + 200.0 * m as f64);
    r.load_duration_ms = Some(5.0);
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

/// Runs the bench against `db` (a SQLite path or a PostgreSQL URL) in `runtime`.
pub fn run(runtime: &tokio::runtime::Runtime, db: &str) {
    // `cargo test --all-targets` runs bench targets without `--bench` (and in debug mode):
    // there, a small smoke run that checks the bench still works, not the measurement.
    let measuring = std::env::args().any(|a| a == "--bench");
    let total = arg("--records", if measuring { 1_000_000 } else { 20_000 });
    let models = arg("--models", 50);
    let calls = arg("--calls", if measuring { 50 } else { 3 });
    let location = StoreLocation::parse(db).expect("store location");
    let now_ms = Utc::now().timestamp_millis();
    let span_ms = 7 * 86_400_000;

    // 1. Ingest through the recorder's writer, in acknowledged chunks.
    let started = Instant::now();
    runtime.block_on(async {
        let (rec, task) = recorder::start(
            &location,
            RecorderConfig {
                queue_capacity: 100_000,
                batch_size: 512,
                flush_interval: Duration::from_millis(200),
                max_records_per_model: u64::MAX,
                max_age: Duration::from_secs(3650 * 86_400),
                max_models: usize::MAX,
                retention_interval: Duration::from_secs(86_400),
                instance: "bench".into(),
                spill_capacity: 0,
                follow_interval: Duration::from_secs(3600),
            },
            None,
        )
        .expect("recorder");
        let chunk = 10_000;
        let mut i = 0;
        while i < total {
            let batch: Vec<Record> = (i..(i + chunk).min(total))
                .map(|j| record(j, models, now_ms, span_ms))
                .collect();
            i += batch.len();
            rec.submit_and_wait(batch).await.expect("stored");
        }
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
    });
    let ingest = started.elapsed();
    println!(
        "ingest: {total} records in {:.2} s = {:.0} records/s (record generation included)",
        ingest.as_secs_f64(),
        total as f64 / ingest.as_secs_f64()
    );

    // 2. Start the sidecar over that store: the history loads at start.
    let flags = Overrides {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some("http://127.0.0.1:9".into()),
        db: Some(db.to_string()),
        ..Overrides::default()
    };
    let mut config = config::load(None, &[], &flags).expect("config");
    config.telemetry.enabled = false;
    config.recorder.max_records_per_model = u64::MAX / 2;
    runtime.block_on(async {
        let started = Instant::now();
        let running = app::start(config).await.expect("start");
        println!(
            "start-up with {total} records (history load): {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let base = format!("http://{}/api/model-performance", running.api_addr);
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        if location.is_shared() {
            // A shared store's history is read by the writer after start: wait for all.
            loop {
                let all: serde_json::Value = http
                    .get(format!("{base}/statistics"))
                    .send()
                    .await
                    .expect("send")
                    .json()
                    .await
                    .expect("json");
                let held: u64 = all["models"]
                    .as_object()
                    .map(|m| {
                        m.values()
                            .filter_map(|s| s["total_operations"].as_u64())
                            .sum()
                    })
                    .unwrap_or(0);
                if held >= total as u64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!(
                "history of {total} records read from the shared store: {:.2} s after start",
                started.elapsed().as_secs_f64()
            );
        }
        let measure = |path: String| {
            let http = http.clone();
            async move {
                let mut times = Vec::new();
                for _ in 0..calls {
                    let t = Instant::now();
                    let resp = http.get(&path).send().await.expect("send");
                    assert!(resp.status().is_success(), "{path}: {}", resp.status());
                    resp.bytes().await.expect("body");
                    times.push(t.elapsed());
                }
                summary(times)
            }
        };
        for (name, path) in [
            (
                "recommend (all models, balanced)",
                format!("{base}/recommend"),
            ),
            (
                "recommend (speed, last 24 h)",
                format!("{base}/recommend?priority=speed&duration_hours=24"),
            ),
            (
                "statistics/{model}",
                format!("{base}/statistics/model-07:8b"),
            ),
            (
                "statistics/{model} (last 24 h, one operation)",
                format!("{base}/statistics/model-07:8b?duration_hours=24&operation=chat"),
            ),
            ("statistics (all models)", format!("{base}/statistics")),
        ] {
            let (p50, p95) = measure(path).await;
            println!("{name}: median {p50:.2} ms, p95 {p95:.2} ms over {calls} calls");
        }
        running.shutdown().await;
    });
}
