//! What model routing adds to a call (issue 13): the same non-streaming generate through
//! the ollameter binary, once with an explicit model and once with `"model": "auto:speed"`,
//! over a store of 1,000,000 records (100 models of 10,000 each, the default retention), in
//! alternating blocks so that any drift of the machine hits both alike.
//!
//! Run: `cargo bench --bench routing` (`-- --records N`, `-- --calls N` per way). Uses the
//! proxy benchmark's fake Ollama and process harness. docs/benchmarks.md records the
//! numbers.

#[path = "proxy/harness/mod.rs"]
#[allow(
    dead_code,
    reason = "the proxy benchmark's harness is shared; this bench uses part of it"
)]
mod harness;

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use chrono::{Duration as ChronoDuration, Utc};
use harness::children::Ollameter;
use harness::load::{client, sequential};
use harness::stats::percentile;
use harness::upstream::FakeOllama;
use ollameter::record::Record;
use ollameter::store::Store;

/// Models in the store: 10,000 records each is the default retention per model.
const MODELS: usize = 100;
/// Calls per block before switching ways.
const BLOCK: usize = 500;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `n` records of `MODELS` models, spread over the last 30 days, each model with its
/// own typical speed.
fn seed(path: &std::path::Path, n: usize) -> Result<(), String> {
    let mut store = Store::open(path).map_err(|e| e.to_string())?;
    let now = Utc::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let model = i % MODELS;
        let mut r = Record::new(
            format!("seed-{i}"),
            now - ChronoDuration::seconds((n - i) as i64 * 2_592_000 / n as i64),
            format!("m{model:03}:1b"),
            "generate".into(),
            "/api/generate".into(),
        );
        r.success = i % 50 != 0;
        r.processing_time_ms = 100.0 + model as f64 * 7.0 + (i % 97) as f64;
        r.quality_score = Some(1.0 + (model % 5) as f64);
        batch.push(r);
        if batch.len() == batch.capacity() {
            store.insert_batch(&batch).map_err(|e| e.to_string())?;
            batch.clear();
        }
    }
    store.insert_batch(&batch).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("ollameter routing benchmark: run it with `cargo bench --bench routing`");
        return ExitCode::SUCCESS;
    }
    let records = arg(&args, "--records", 1_000_000);
    let calls = arg(&args, "--calls", 20_000);
    harness::children::stop_children_on_signal();
    let Ok(dir) = tempfile::tempdir() else {
        eprintln!("no temporary directory");
        return ExitCode::FAILURE;
    };
    let started = Instant::now();
    if let Err(e) = seed(&dir.path().join("ollameter.db"), records) {
        eprintln!("seeding the store: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "# routing benchmark\n\n- store: {records} records of {MODELS} models, written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let fake = FakeOllama::start(Instant::now());
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ollameter"));
    let started = Instant::now();
    let sidecar = match Ollameter::start(bin, fake.addr, dir.path()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "- ollameter up (history loaded) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("http://{}/api/generate", sidecar.addr);
    let explicit = Bytes::from_static(br#"{"model":"m000:1b","prompt":"hi","stream":false}"#);
    let auto = Bytes::from_static(br#"{"model":"auto:speed","prompt":"hi","stream":false}"#);
    let (plain, routed) = runtime.block_on(async {
        let http = client();
        // Warm-up: connections, the first resolution, the allocator.
        sequential(&http, &url, &explicit, 1_000).await;
        sequential(&http, &url, &auto, 1_000).await;
        let (mut plain, mut routed) = (Vec::new(), Vec::new());
        while plain.len() < calls {
            plain.extend(sequential(&http, &url, &explicit, BLOCK).await);
            routed.extend(sequential(&http, &url, &auto, BLOCK).await);
        }
        (plain, routed)
    });
    println!(
        "- calls: {} per way, one at a time, in blocks of {BLOCK}\n",
        plain.len()
    );
    println!("| way | p50 µs | p90 µs | p99 µs |");
    println!("|---|---|---|---|");
    for (name, v) in [("explicit model", &plain), ("auto:speed", &routed)] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            percentile(v, 50.0),
            percentile(v, 90.0),
            percentile(v, 99.0)
        );
    }
    println!(
        "\nadded by resolution at p50: {:.1} µs",
        percentile(&routed, 50.0) - percentile(&plain, 50.0)
    );
    ExitCode::SUCCESS
}
