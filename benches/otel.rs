//! What one exported span costs in CPU (issue 20): spans of a realistic streamed chat
//! record go through the exporter's queue and thread to an OTLP/HTTP receiver in a child
//! process (so that its work is not counted), in full batches of 512. Measured per span,
//! from the kernel's per-thread CPU time (this thread's CPU clock; the exporter thread's
//! `/proc/self/task/*/schedstat`, read while it sleeps, so up to date):
//!
//! - `push`: the proxy's side, on the thread that finishes calls (copy the record, put it
//!   in the bounded queue);
//! - `exporter`: the exporter's thread (build or encode the span, batch, send over HTTP,
//!   read the answer);
//! - `encode`: the current encoder alone, on this thread, no queue and no sending.
//!
//! Two exporter paths take turns: `sdk`, the path before (the OpenTelemetry SDK's
//! `SpanData` and the `opentelemetry-otlp` exporter, kept in `otel/baseline.rs`), and
//! `direct`, ollameter's own encoder and exporter thread (`ollameter::otel::export`).
//!
//! Run: `cargo bench --bench otel` (`-- --spans N` per run, `-- --runs N`).
//! docs/benchmarks.md records the numbers.

/// The allocator the ollameter binary uses (`src/main.rs`): span building and encoding
/// allocate, so the figures depend on it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "otel/baseline.rs"]
mod baseline;

use std::io::{BufRead, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ollameter::otel::export;
use ollameter::otel::span::{Batch, Server, Servers};
use ollameter::otel::{CallTrace, OtelConfig};
use ollameter::record::{Record, RouteReason};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// Spans per export request (the default `max_export_batch_size`).
const BATCH: usize = 512;
/// The bounded queue (the default `max_queue_size`).
const QUEUE: usize = 2_048;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--receiver") {
        receiver();
        return ExitCode::SUCCESS;
    }
    let number = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    // Whole batches only, so that no span waits for the schedule delay.
    let spans = number("--spans", 51_200).div_ceil(BATCH) * BATCH;
    let runs = number("--runs", 3);
    let mut child = match spawn_receiver() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start the OTLP receiver: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("http://{}/v1/traces", child.1);
    println!("OTLP/HTTP receiver at {url}; {spans} spans per run, {runs} runs per path");
    // Warm up both paths (connections, allocator, page faults).
    sdk(&url, BATCH * 8);
    direct(&url, BATCH * 8);
    let mut rows: Vec<(&str, Cost)> = Vec::new();
    for run in 1..=runs {
        let before = sdk(&url, spans);
        println!("run {run} sdk:    {before}");
        rows.push(("sdk", before));
        let after = direct(&url, spans);
        println!("run {run} direct: {after}");
        rows.push(("direct", after));
    }
    let encode = encode_only(spans);
    println!("encode only (direct encoder, this thread): {encode:.2} µs/span");
    for parent in [false, true] {
        let us = request_path(&url, spans, parent);
        println!(
            "request path, {} caller traceparent (start_call, traceparent header, finish): {us:.2} µs/call",
            if parent { "with a" } else { "without a" }
        );
    }
    println!();
    println!("| path | push µs/span | exporter thread µs/span |");
    println!("|---|---|---|");
    for path in ["sdk", "direct"] {
        let of = |f: fn(&Cost) -> f64| {
            median(
                rows.iter()
                    .filter(|(p, _)| *p == path)
                    .map(|(_, c)| f(c))
                    .collect(),
            )
        };
        println!(
            "| {path} | {:.2} | {:.2} |",
            of(|c| c.push_us),
            of(|c| c.exporter_us)
        );
    }
    let _ = child.0.kill();
    let _ = child.0.wait();
    ExitCode::SUCCESS
}

/// CPU per span of one run.
struct Cost {
    push_us: f64,
    exporter_us: f64,
    wall: Duration,
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "push {:.2} µs/span, exporter thread {:.2} µs/span ({:.2} s)",
            self.push_us,
            self.exporter_us,
            self.wall.as_secs_f64()
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// This thread's CPU time so far, ns (`CLOCK_THREAD_CPUTIME_ID`: exact, where the
/// kernel's `schedstat` is only brought up to date at context switches and ticks).
fn thread_cpu_ns() -> u64 {
    u64::try_from(cpu_time::ThreadTime::now().as_duration().as_nanos()).unwrap_or(u64::MAX)
}

/// The CPU time of this process's thread named `name`, ns.
fn named_thread_cpu_ns(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| schedstat(&t.path().join("schedstat").to_string_lossy()))
        .sum()
}

fn schedstat(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// A streamed chat as the proxy records it, with every field a span carries.
fn record(i: usize) -> Record {
    let mut r = Record::new(
        uuid::Uuid::now_v7().to_string(),
        chrono::Utc::now(),
        "llama3.2:3b".into(),
        "chat".into(),
        "/api/chat".into(),
    );
    r.stream = true;
    r.success = true;
    r.http_status = Some(200);
    r.processing_time_ms = 1234.5 + i as f64;
    r.ttft_ms = Some(210.25);
    r.total_duration_ms = Some(1200.0);
    r.load_duration_ms = Some(12.5);
    r.prompt_tokens = Some(42);
    r.output_tokens = Some(180);
    r.tokens_per_second = Some(61.7);
    r.prompt_tokens_per_second = Some(900.1);
    r.done_reason = Some("stop".into());
    r.request_bytes = 300;
    r.response_bytes = 40_000;
    r.quality_score = Some(0.8);
    r.ollama_rss_mb = Some(512.0);
    r.gpu_memory_mb = Some(2900.0);
    r.vram_mb = Some(2800.0);
    r.gpu_memory_peak_mb = Some(3000.0);
    r.ollama_rss_peak_mb = Some(530.0);
    r.gpu_free_mb = Some(20_000.0);
    r.requested_model = Some("auto".into());
    r.route_reason = Some(RouteReason::Recommended);
    r.host = Some("gpu0".into());
    r
}

/// A call joined to a caller's sampled trace.
fn trace(i: usize) -> CallTrace {
    CallTrace {
        span_context: SpanContext::new(
            TraceId::from_bytes((i as u128 + 1).to_be_bytes()),
            SpanId::from_bytes((i as u64 + 1).to_be_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from_bytes(0x00f0_67aa_0ba9_02b7u64.to_be_bytes()),
        provider: "ollama",
    }
}

/// The current path: the exporter's queue and thread.
fn direct(url: &str, spans: usize) -> Cost {
    let config = OtelConfig {
        enabled: true,
        traces_endpoint: url.to_string(),
        max_queue_size: QUEUE,
        max_export_batch_size: BATCH,
        ..OtelConfig::default()
    };
    let (queue, task) = export::start(&config, Servers::new([("gpu0", "http://127.0.0.1:11434")]))
        .expect("the exporter starts");
    let stats = queue.stats();
    let prepared: Vec<(CallTrace, Record)> = (0..spans).map(|i| (trace(i), record(i))).collect();
    let exporter_before = named_thread_cpu_ns("otel-exporter");
    let started = Instant::now();
    // Pushed in runs as long as the queue has room, the CPU clock read around each run
    // (reading it costs more than a push).
    let push_ns = push_all(
        &prepared,
        || stats.queue_depth() as usize,
        |t, r| {
            // What `Otel::finish` does on the proxy's thread.
            queue.push(t, r);
        },
    );
    while stats.exported.load(Ordering::Relaxed) + dropped(&stats) < spans as u64 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let wall = started.elapsed();
    // Once the thread is back asleep its CPU time is up to date.
    std::thread::sleep(Duration::from_millis(60));
    let exporter_ns = named_thread_cpu_ns("otel-exporter") - exporter_before;
    assert_eq!(dropped(&stats), 0, "no span may be dropped");
    drop(queue);
    task.shutdown();
    Cost {
        push_us: push_ns as f64 / 1e3 / spans as f64,
        exporter_us: exporter_ns as f64 / 1e3 / spans as f64,
        wall,
    }
}

/// Pushes every call with `push`, in runs that fit the queue (whose depth `depth` tells),
/// waiting for room between runs; returns the CPU time of the runs, ns.
fn push_all(
    calls: &[(CallTrace, Record)],
    depth: impl Fn() -> usize,
    push: impl Fn(&CallTrace, &Record),
) -> u64 {
    let mut cpu = 0;
    let mut left = calls;
    while !left.is_empty() {
        let room = (QUEUE - 1).saturating_sub(depth()).min(left.len());
        if room < BATCH.min(left.len()) {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let (now, rest) = left.split_at(room);
        let before = thread_cpu_ns();
        for (t, r) in now {
            push(t, r);
        }
        cpu += thread_cpu_ns() - before;
        left = rest;
    }
    cpu
}

fn dropped(stats: &export::OtelStats) -> u64 {
    stats.dropped_queue_full.load(Ordering::Relaxed)
        + stats.dropped_export_failed.load(Ordering::Relaxed)
}

/// The path before: the same queue, then a `SpanData` per span and the
/// `opentelemetry-otlp` exporter on a thread of the same name and shape.
fn sdk(url: &str, spans: usize) -> Cost {
    let (sender, receiver) = crossbeam_channel::bounded::<Box<(CallTrace, Record)>>(QUEUE);
    let url = url.to_string();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sent_by_thread = sent.clone();
    let thread = std::thread::Builder::new()
        .name("otel-exporter".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let exporter = runtime.block_on(async { baseline::exporter(&url) });
            let server = Server::of_url("http://127.0.0.1:11434");
            let scope = baseline::scope();
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                match receiver.try_recv() {
                    Ok(call) => {
                        batch.push(baseline::span_data(&call.0, &call.1, &server, &scope));
                        if batch.len() == BATCH {
                            baseline::export(&runtime, &exporter, std::mem::take(&mut batch));
                            sent_by_thread.fetch_add(BATCH, Ordering::Relaxed);
                            batch = Vec::with_capacity(BATCH);
                        }
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                }
            }
        })
        .expect("thread");
    let prepared: Vec<(CallTrace, Record)> = (0..spans).map(|i| (trace(i), record(i))).collect();
    let exporter_before = named_thread_cpu_ns("otel-exporter");
    let started = Instant::now();
    let push_ns = push_all(
        &prepared,
        || sender.len(),
        |t, r| {
            sender
                .try_send(Box::new((t.clone(), r.clone())))
                .expect("room in the queue");
        },
    );
    while sent.load(Ordering::Relaxed) < spans {
        std::thread::sleep(Duration::from_millis(1));
    }
    let wall = started.elapsed();
    std::thread::sleep(Duration::from_millis(60));
    let exporter_ns = named_thread_cpu_ns("otel-exporter") - exporter_before;
    drop(sender);
    thread.join().expect("the baseline thread");
    Cost {
        push_us: push_ns as f64 / 1e3 / spans as f64,
        exporter_us: exporter_ns as f64 / 1e3 / spans as f64,
        wall,
    }
}

/// The current encoder alone: µs of CPU per span on this thread.
fn encode_only(spans: usize) -> f64 {
    let prepared: Vec<(CallTrace, Record)> = (0..spans).map(|i| (trace(i), record(i))).collect();
    let resource = [opentelemetry::KeyValue::new("service.name", "ollameter")];
    let mut batch = Batch::new(resource.iter().map(|kv| (kv.key.as_str(), &kv.value)));
    let server = Server::of_url("http://127.0.0.1:11434");
    let mut bytes = 0;
    let before = thread_cpu_ns();
    for (t, r) in &prepared {
        batch.push(t, r, &server);
        if batch.len() == BATCH {
            bytes += std::hint::black_box(batch.request()).len();
        }
    }
    let ns = thread_cpu_ns() - before;
    assert!(bytes > 0);
    ns as f64 / 1e3 / spans as f64
}

/// Everything export adds on the proxy's thread for one call, µs of CPU: the trace
/// context of the request (`Otel::start_call`: the caller's `traceparent`, if `parent`,
/// the ids, the sampling decision), the `traceparent` header for the upstream, and at the
/// end [`ollameter::otel::Otel::finish`] (the record copied into the queue). The queue is
/// drained by a thread that drops what it takes; nothing is exported.
fn request_path(url: &str, calls: usize, parent: bool) -> f64 {
    use axum::http::{HeaderMap, HeaderValue};
    let config = OtelConfig {
        enabled: true,
        // The receiver takes every export (a refused one would make the exporter pause
        // while this waits for room in the queue); the queue is what matters here.
        traces_endpoint: url.into(),
        max_queue_size: QUEUE,
        max_export_batch_size: BATCH,
        ..OtelConfig::default()
    };
    let (otel, task) = ollameter::otel::Otel::start(&config, [("gpu0", "http://127.0.0.1:11434")])
        .expect("starts");
    let stats = otel.stats().expect("on");
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("user-agent", HeaderValue::from_static("ollama-python/0.6"));
    if parent {
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
    }
    let records: Vec<Record> = (0..calls).map(record).collect();
    let mut cpu = 0;
    let mut left = records.as_slice();
    while !left.is_empty() {
        let room = (QUEUE - 1)
            .saturating_sub(stats.queue_depth() as usize)
            .min(left.len());
        if room < BATCH.min(left.len()) {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let (now, rest) = left.split_at(room);
        let before = thread_cpu_ns();
        for r in now {
            let trace = otel.start_call(&headers, "ollama").expect("on");
            std::hint::black_box(trace.traceparent());
            otel.finish(&trace, r);
        }
        cpu += thread_cpu_ns() - before;
        left = rest;
    }
    drop(otel);
    task.shutdown();
    cpu as f64 / 1e3 / calls as f64
}

/// Starts this benchmark again as the receiver; returns it and its address.
fn spawn_receiver() -> std::io::Result<(Child, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--receiver")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or(std::io::ErrorKind::BrokenPipe)?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    Ok((child, line.trim().to_string()))
}

/// An OTLP/HTTP receiver: reads each export whole and answers 200 with an empty
/// `ExportTraceServiceResponse`, as a collector does. Prints its address, then serves
/// until killed.
fn receiver() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        println!("{addr}");
        let _ = std::io::stdout().flush();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(|body: bytes::Bytes| async move {
                std::hint::black_box(body.len());
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }),
        );
        axum::serve(listener, app).await.expect("serve");
    });
}
