//! What exporting a span per call adds to the call (issue 20), with the collector up,
//! down and hung: four ollameter processes in front of the same fast fake Ollama take the
//! same calls in alternating blocks, so that any drift of the machine hits every way
//! alike:
//!
//! - `off`: export off (the default);
//! - `off-2`: a second ollameter with export off, the control: what it "adds" over `off`
//!   is the noise of the method (two processes, placed and scheduled differently);
//! - `up`: spans exported over OTLP/HTTP to a sink that accepts each export at once;
//! - `down`: exporting to a loopback port nobody listens on (every export is refused);
//! - `hung`: exporting to a collector that accepts connections and never answers (every
//!   export waits out the exporter's timeout while the queue fills and drops).
//!
//! Every way runs the release binary with its defaults (a span for every call, queue
//! 2,048, batches of 512). Latency is taken by a client in this process, one call at a
//! time (`c1`: a core to spare, so what the proxy does on the call's path shows) and with
//! 8 calls in flight (`c8`: the two cores of the host saturated, so CPU shows as queueing).
//! CPU per call is each process's own, from `/proc`, over its blocks. The spans exported,
//! dropped and failed come from each ollameter's `/metrics` at the end.
//!
//! Run: `cargo bench --bench otel_path` (`-- --calls N` per way and concurrency, default
//! 20,000; `-- --block N`, default 500). docs/benchmarks.md records the numbers.

#[path = "proxy/harness/mod.rs"]
#[allow(
    dead_code,
    reason = "the proxy benchmark's harness is shared; this bench uses part of it"
)]
mod harness;

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::children::{Ollameter, free_port};
use harness::load::{SMALL_BODY, client, sequential};
use harness::scenarios::metric_sums;
use harness::stats::percentile;
use harness::upstream::FakeOllama;

/// The ways, in the order they take their blocks.
const WAYS: [&str; 5] = ["off", "off-2", "up", "down", "hung"];

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A collector that accepts connections and never reads or answers: the connections are
/// held open until the process exits.
fn hung_collector() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hung collector");
    let addr = listener.local_addr().expect("hung collector address");
    std::thread::Builder::new()
        .name("hung-collector".into())
        .spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        })
        .expect("spawn the hung collector");
    addr
}

/// One way's measurements at one concurrency.
#[derive(Default)]
struct Sample {
    latencies_us: Vec<f64>,
    cpu_seconds: f64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "ollameter span-export path benchmark: run it with `cargo bench --bench otel_path`"
        );
        return ExitCode::SUCCESS;
    }
    let calls = arg(&args, "--calls", 20_000);
    let block = arg(&args, "--block", 500).max(1);
    harness::children::stop_children_on_signal();
    let Ok(dir) = tempfile::tempdir() else {
        eprintln!("no temporary directory");
        return ExitCode::FAILURE;
    };
    let fake = FakeOllama::start(Instant::now());
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ollameter"));
    let hung = hung_collector();
    let down = free_port();
    let endpoints = [
        None,
        None,
        Some(format!("http://{}/v1/traces", fake.addr)),
        Some(format!("http://127.0.0.1:{down}/v1/traces")),
        Some(format!("http://{hung}/v1/traces")),
    ];
    let mut sidecars = Vec::new();
    for (way, endpoint) in WAYS.iter().zip(&endpoints) {
        let started = match endpoint {
            None => Ollameter::start_many(bin, &[fake.addr], dir.path(), way),
            Some(url) => {
                Ollameter::start_exporting(bin, fake.addr, dir.path(), &format!("otel-{way}"), url)
            }
        };
        match started {
            Ok(s) => sidecars.push(s),
            Err(e) => {
                eprintln!("{way}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
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
    println!("# span export on the call's path (issue 20)\n");
    println!(
        "- {calls} calls per way and concurrency, in alternating blocks of {block}; load before: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let body = Bytes::from_static(SMALL_BODY.as_bytes());
    let urls: Vec<String> = sidecars
        .iter()
        .map(|s| format!("http://{}/api/generate", s.addr))
        .collect();
    let started = Instant::now();
    let results: Vec<(usize, Vec<Sample>)> = runtime.block_on(async {
        let http = client();
        // Warm-up: connections, the allocator, the exporters' first batches.
        for url in &urls {
            sequential(&http, url, &body, 2_000).await;
        }
        let mut results = Vec::new();
        for concurrency in [1usize, 8] {
            let mut samples: Vec<Sample> = WAYS.iter().map(|_| Sample::default()).collect();
            while samples[0].latencies_us.len() < calls {
                for (i, url) in urls.iter().enumerate() {
                    let cpu = sidecars[i].cpu_seconds();
                    let per_task = block.div_ceil(concurrency);
                    let tasks: Vec<_> = (0..concurrency)
                        .map(|_| {
                            let (http, url, body) = (http.clone(), url.clone(), body.clone());
                            tokio::spawn(
                                async move { sequential(&http, &url, &body, per_task).await },
                            )
                        })
                        .collect();
                    for task in tasks {
                        samples[i]
                            .latencies_us
                            .extend(task.await.expect("a load task"));
                    }
                    samples[i].cpu_seconds += sidecars[i].cpu_seconds() - cpu;
                }
            }
            results.push((concurrency, samples));
        }
        results
    });
    println!("- took {:.0} s\n", started.elapsed().as_secs_f64());
    // "added" is over the mean of the two export-off processes (`off`, `off-2`): the
    // baseline is then no single process's luck of placement, and `off-2`'s own figure
    // shows how far two identical processes lie apart.
    println!(
        "| concurrency | way | p50 µs | p90 µs | p99 µs | added p50 µs | added p99 µs | CPU µs/call | CPU added |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (concurrency, samples) in &results {
        let cpu = |s: &Sample| s.cpu_seconds * 1e6 / s.latencies_us.len() as f64;
        let p = |s: &Sample, q: f64| percentile(&s.latencies_us, q);
        let off = |f: &dyn Fn(&Sample) -> f64| (f(&samples[0]) + f(&samples[1])) / 2.0;
        let (p50, p99, cpu_off) = (off(&|s| p(s, 50.0)), off(&|s| p(s, 99.0)), off(&cpu));
        for (way, s) in WAYS.iter().zip(samples) {
            println!(
                "| {concurrency} | {way} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                p(s, 50.0),
                p(s, 90.0),
                p(s, 99.0),
                p(s, 50.0) - p50,
                p(s, 99.0) - p99,
                cpu(s),
                cpu(s) - cpu_off,
            );
        }
    }
    // What became of the spans: the last batch leaves after the 5 s schedule delay.
    std::thread::sleep(Duration::from_secs(6));
    // Every call was answered 2xx: the client panics on any other answer.
    println!("\n| way | spans exported | dropped | failed exports |");
    println!("|---|---|---|---|");
    for (i, way) in WAYS.iter().enumerate().skip(2) {
        let sums = runtime.block_on(metric_sums(
            &client(),
            sidecars[i].addr,
            &[
                "ollameter_otel_spans_exported_total",
                "ollameter_otel_spans_dropped_total",
                "ollameter_otel_export_failures_total",
            ],
        ));
        match sums {
            Ok(sums) => println!(
                "| {way} | {:.0} | {:.0} | {:.0} |",
                sums[0], sums[1], sums[2]
            ),
            Err(e) => println!("| {way} | /metrics: {e} | | |"),
        }
    }
    ExitCode::SUCCESS
}
