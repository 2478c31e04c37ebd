//! The proxy benchmark of issues 6 and 12: what ollameter costs its users, next to a
//! plain nginx and a bare hyper proxy (the floor of ollameter's async stack), against a
//! fast fake Ollama, in one run.
//!
//! Run: `cargo bench --bench proxy` (about 6 minutes; `-- --quick` for a 40-second smoke
//! run, `-- --smoke` for the few seconds the test suite runs, `-- --runs N` for another
//! number of runs, `-- --ollameter PATH` to measure another build, `-- --no-bare` to skip
//! the bare hyper proxy, `-- --otel` to also measure an ollameter exporting a GenAI span
//! per call over OTLP/HTTP to a sink in the fake, `-- --upstreams N` to also measure
//! ollameter in front of N fake Ollamas choosing a host per call (the added cost of the
//! choice is in the targets), `-- --serve SECONDS` to hold the fake, ollameter, nginx and the
//! bare proxy up for profiling). It needs Debian's `wrk` and `nginx` (`apt-get install -y
//! wrk nginx`); without them it falls back to its own load client and skips nginx, and
//! says so. The ollameter binary measured is the one Cargo builds for the bench (release
//! profile); the bare proxy (benches/proxy/bareproxy, its own package) is built by the
//! bench with Cargo into target/bareproxy. docs/benchmarks.md explains the method and
//! records the numbers.

#[path = "proxy/harness/mod.rs"]
mod harness;

use std::process::ExitCode;

use harness::children::find_program;
use harness::scenarios::{self, Plan, Report, RunResult, Way};
use harness::stats::median;

const MIB: f64 = 1024.0 * 1024.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    // `--ollameter PATH` measures another build (e.g. an older commit's) instead of the
    // one Cargo built for the bench.
    let bin = args
        .iter()
        .position(|a| a == "--ollameter")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || std::path::PathBuf::from(env!("CARGO_BIN_EXE_ollameter")),
            std::path::PathBuf::from,
        );
    let bin = bin.as_path();
    harness::children::stop_children_on_signal();
    if let Some(seconds) = args
        .iter()
        .position(|a| a == "--serve")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
    {
        return serve(bin, std::time::Duration::from_secs(seconds));
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets without `--bench`: the minutes of
        // the benchmark do not belong there (tests/bench_smoke.rs runs its scenarios
        // briefly).
        println!("ollameter proxy benchmark: run it with `cargo bench --bench proxy`");
        return ExitCode::SUCCESS;
    }
    let wrk = find_program("wrk");
    let nginx = find_program("nginx");
    if wrk.is_none() {
        eprintln!("wrk not found (apt-get install -y wrk): closed-loop load from the Rust client");
    }
    if nginx.is_none() {
        eprintln!("nginx not found (apt-get install -y nginx): the nginx way is skipped");
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    let bare = if smoke || args.iter().any(|a| a == "--no-bare") {
        None
    } else {
        build_bare()
    };
    let mut plan = if smoke {
        Plan::smoke()
    } else if quick {
        Plan::quick(wrk, nginx, bare)
    } else {
        Plan::full(wrk, nginx, bare)
    };
    if let Some(runs) = runs {
        plan.runs = runs;
    }
    plan.otel = args.iter().any(|a| a == "--otel");
    // `--upstreams N`: also ollameter in front of N fake Ollamas, choosing a host per call.
    if let Some(n) = args
        .iter()
        .position(|a| a == "--upstreams")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
    {
        plan.upstreams = n;
    }
    println!("# ollameter proxy benchmark");
    println!();
    println!("- machine: {}", machine());
    println!("- load before: {}", load_average());
    println!(
        "- closed-loop load: {}",
        match &plan.wrk {
            Some(wrk) => format!("{} -t1", wrk.display()),
            None => "the benchmark's Rust client".to_string(),
        }
    );
    println!(
        "- runs: {} (tables: median, with min-max across runs)",
        plan.runs
    );
    let started = std::time::Instant::now();
    let report = match scenarios::run(&plan, bin, &|line| eprintln!("{line}")) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("- load after: {}", load_average());
    println!("- took {:.0} s", started.elapsed().as_secs_f64());
    println!();
    print_tables(&plan, &report);
    ExitCode::SUCCESS
}

/// Builds the bare hyper proxy, or says why that way is skipped.
fn build_bare() -> Option<std::path::PathBuf> {
    eprintln!("building the bare hyper proxy (benches/proxy/bareproxy)");
    match harness::children::Bare::build() {
        Ok(bin) => Some(bin),
        Err(e) => {
            eprintln!("{e}: the bare hyper way is skipped");
            None
        }
    }
}

/// `--serve SECONDS`: starts the fake Ollama, ollameter and nginx as the benchmark does,
/// prints their addresses and holds them, for profiling one of them under a load of your
/// choice (docs/benchmarks.md shows how).
fn serve(bin: &std::path::Path, hold: std::time::Duration) -> ExitCode {
    let fake = harness::upstream::FakeOllama::start(std::time::Instant::now());
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ollameter = match harness::children::Ollameter::start(bin, fake.addr, dir.path()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("fake Ollama: http://{}/api/generate", fake.addr);
    println!(
        "ollameter:   http://{}/api/generate (pid {})",
        ollameter.addr,
        ollameter.pid()
    );
    let nginx = find_program("nginx")
        .and_then(|nginx| harness::children::Nginx::start(&nginx, fake.addr, dir.path()).ok());
    if let Some(nginx) = &nginx {
        println!("nginx:       http://{}/api/generate", nginx.addr);
    }
    let bare = build_bare().and_then(|bin| harness::children::Bare::start(&bin, fake.addr).ok());
    if let Some(bare) = &bare {
        println!("bare hyper:  http://{}/api/generate", bare.addr);
    }
    println!("holding them for {} s", hold.as_secs());
    std::thread::sleep(hold);
    ExitCode::SUCCESS
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `median (min-max)` of a figure across runs, or just the figure for one run.
fn cell(values: &[f64], decimals: usize) -> String {
    let m = median(values);
    if values.len() < 2 {
        return format!("{m:.decimals$}");
    }
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{m:.decimals$} ({lo:.decimals$}-{hi:.decimals$})")
}

/// A figure per run, where the run has it.
fn per_run(report: &Report, f: impl Fn(&RunResult) -> Option<f64>) -> Vec<f64> {
    report.runs.iter().filter_map(f).collect()
}

fn print_tables(plan: &Plan, report: &Report) {
    let ways = plan.ways();

    println!("## 1. Non-streaming POST /api/generate, closed loop");
    println!();
    println!(
        "| concurrency | way | p50 µs | p99 µs | p99.9 µs | req/s | added p50 µs | added p99 µs | proxy CPU µs/call |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &c in &plan.concurrency {
        for &way in &ways {
            let get = |f: fn(&harness::load::Closed) -> f64| {
                per_run(report, |r| r.closed(way, c).map(|x| f(&x)))
            };
            let added = |f: fn(&harness::load::Closed) -> f64| {
                per_run(report, |r| {
                    Some(f(&r.closed(way, c)?) - f(&r.closed(Way::Direct, c)?))
                })
            };
            let (a50, a99) = if way == Way::Direct {
                ("".to_string(), "".to_string())
            } else {
                (cell(&added(|x| x.p50_us), 0), cell(&added(|x| x.p99_us), 0))
            };
            let cpu = per_run(report, |r| r.cpu_per_call(way, c));
            println!(
                "| {c} | {} | {} | {} | {} | {} | {a50} | {a99} | {} |",
                way.name(),
                cell(&get(|x| x.p50_us), 0),
                cell(&get(|x| x.p99_us), 0),
                cell(&get(|x| x.p999_us), 0),
                cell(&get(|x| x.rps()), 0),
                if cpu.is_empty() {
                    String::new()
                } else {
                    cell(&cpu, 1)
                },
            );
        }
    }
    println!();

    println!(
        "## 2. Streaming generate: {} lines {} µs apart ({} streams, {} at once, plus {} short streams for the first chunk)",
        plan.stream_chunks,
        plan.stream_interval_us,
        plan.streams,
        plan.stream_concurrency,
        plan.ttft_probes
    );
    println!();
    println!(
        "| way | first chunk µs | added µs | chunk delay p50 µs | p99 µs | max µs | added p50 µs | added p99 µs | added max µs | chunks timed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &way in &ways {
        let get = |f: fn(&scenarios::StreamStats) -> f64| {
            per_run(report, |r| r.stream(way).map(|x| f(&x)))
        };
        let added = |f: fn(&scenarios::StreamStats) -> f64| {
            per_run(report, |r| {
                Some(f(&r.stream(way)?) - f(&r.stream(Way::Direct)?))
            })
        };
        let blank = way == Way::Direct;
        let a = |f: fn(&scenarios::StreamStats) -> f64| {
            if blank {
                String::new()
            } else {
                cell(&added(f), 0)
            }
        };
        let chunks: usize = report
            .runs
            .iter()
            .filter_map(|r| r.stream(way))
            .map(|s| s.chunks)
            .sum();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {chunks} |",
            way.name(),
            cell(&get(|x| x.ttft_us), 0),
            a(|x| x.ttft_us),
            cell(&get(|x| x.chunk_p50_us), 0),
            cell(&get(|x| x.chunk_p99_us), 0),
            cell(&get(|x| x.chunk_max_us), 0),
            a(|x| x.chunk_p50_us),
            a(|x| x.chunk_p99_us),
            a(|x| x.chunk_max_us),
        );
    }
    println!();

    println!(
        "## 3. A {:.0} MiB request body, {} sequential requests",
        plan.big_body_bytes as f64 / MIB,
        plan.big_body_requests
    );
    println!();
    println!("| way | median ms | added ms |");
    println!("|---|---|---|");
    for &way in &ways {
        let ms = per_run(report, |r| r.big_body(way).map(|us| us / 1e3));
        let added = per_run(report, |r| {
            Some((r.big_body(way)? - r.big_body(Way::Direct)?) / 1e3)
        });
        println!(
            "| {} | {} | {} |",
            way.name(),
            cell(&ms, 2),
            if way == Way::Direct {
                String::new()
            } else {
                cell(&added, 2)
            }
        );
    }
    let before = per_run(report, |r| Some(r.ollameter_before_big_kib as f64 / 1024.0));
    let peak = per_run(report, |r| Some(r.ollameter_big_peak_kib as f64 / 1024.0));
    let above = per_run(report, |r| {
        Some((r.ollameter_big_peak_kib as f64 - r.ollameter_before_big_kib as f64) / 1024.0)
    });
    println!();
    println!(
        "ollameter RSS: {} MiB before, peak {} MiB, peak above it {} MiB ({:.1} times the body)",
        cell(&before, 1),
        cell(&peak, 1),
        cell(&above, 1),
        median(&above) * MIB / plan.big_body_bytes as f64
    );
    println!();

    if let Some(rec) = &report.recording {
        println!(
            "## 4. Recording under load: {} requests/s for {} s through ollameter",
            plan.record_rate,
            plan.record.as_secs_f64()
        );
        println!();
        println!(
            "| sent | served | failed | skipped | achieved req/s | records written | dropped | write rate records/s | commits | store busy | store capacity records/s | p50 µs | p99 µs |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        let secs = plan.record.as_secs_f64();
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {:.0} | {} | {:.1}% | {:.0} | {:.0} | {:.0} |",
            rec.load.sent,
            rec.load.ok,
            rec.load.failed,
            rec.load.skipped,
            rec.load.ok as f64 / secs,
            rec.written,
            rec.dropped,
            rec.written as f64 / secs,
            rec.commits,
            rec.commit_seconds / secs * 100.0,
            if rec.commit_seconds > 0.0 {
                rec.written as f64 / rec.commit_seconds
            } else {
                0.0
            },
            rec.load.p50_us,
            rec.load.p99_us,
        );
        println!();
        println!(
            "queue drained {:.2} s after the load ended",
            rec.drain_seconds
        );
        println!();
    }

    let top = plan.concurrency.iter().copied().max().unwrap_or(1);
    println!("## 5. Memory");
    println!();
    println!("| process | idle MiB | under concurrency {top} MiB |");
    println!("|---|---|---|");
    println!(
        "| ollameter | {} | {} (peak) |",
        cell(
            &per_run(report, |r| Some(r.ollameter_idle_kib as f64 / 1024.0)),
            1
        ),
        cell(
            &per_run(report, |r| Some(
                r.ollameter_loaded_peak_kib as f64 / 1024.0
            )),
            1
        ),
    );
    if plan.nginx.is_some() {
        println!(
            "| nginx (master + workers) | {} | {} (after) |",
            cell(
                &per_run(report, |r| Some(r.nginx_idle_kib as f64 / 1024.0)),
                1
            ),
            cell(
                &per_run(report, |r| Some(r.nginx_loaded_kib as f64 / 1024.0)),
                1
            ),
        );
    }
    println!();
    if plan.otel {
        print_otel(plan, report);
    }
    print_targets(plan, report);
}

/// `--otel`: what exporting a span per call costs: the exporting ollameter's closed-loop
/// latency minus the plain one's, in the same run, and what became of the spans.
fn print_otel(plan: &Plan, report: &Report) {
    println!("## 6. OTLP span export (issue 20): export on minus export off");
    println!();
    println!(
        "| concurrency | p50 off µs | p50 on µs | added p50 µs | added p99 µs | CPU µs/call added |"
    );
    println!("|---|---|---|---|---|---|");
    for &c in &plan.concurrency {
        let of = |way: Way, f: fn(&harness::load::Closed) -> f64| {
            per_run(report, |r| r.closed(way, c).map(|x| f(&x)))
        };
        let diff = |f: fn(&harness::load::Closed) -> f64| {
            per_run(report, |r| {
                Some(f(&r.closed(Way::OllameterOtel, c)?) - f(&r.closed(Way::Ollameter, c)?))
            })
        };
        let cpu = per_run(report, |r| {
            Some(r.cpu_per_call(Way::OllameterOtel, c)? - r.cpu_per_call(Way::Ollameter, c)?)
        });
        println!(
            "| {c} | {} | {} | {} | {} | {} |",
            cell(&of(Way::Ollameter, |x| x.p50_us), 0),
            cell(&of(Way::OllameterOtel, |x| x.p50_us), 0),
            cell(&diff(|x| x.p50_us), 1),
            cell(&diff(|x| x.p99_us), 1),
            cell(&cpu, 2),
        );
    }
    println!();
    for (i, run) in report.runs.iter().enumerate() {
        if let Some((exported, dropped)) = run.otel_spans {
            println!(
                "run {}: {exported:.0} spans exported, {dropped:.0} dropped",
                i + 1
            );
        }
    }
    println!();
}

fn print_targets(plan: &Plan, report: &Report) {
    println!("## Targets");
    println!();
    println!("| target | measured (median of runs) | met |");
    println!("|---|---|---|");
    let verdict = |ok: bool| if ok { "yes" } else { "no" };
    let added = |way: Way, c: usize, f: fn(&harness::load::Closed) -> f64| {
        median(&per_run(report, |r| {
            Some(f(&r.closed(way, c)?) - f(&r.closed(Way::Direct, c)?))
        }))
    };
    let has_nginx = plan.nginx.is_some();
    if plan.otel {
        for &c in &plan.concurrency {
            let d = median(&per_run(report, |r| {
                Some(r.closed(Way::OllameterOtel, c)?.p50_us - r.closed(Way::Ollameter, c)?.p50_us)
            }));
            println!(
                "| c{c} p50 with OTLP export on vs off <= 10 µs | {d:.1} µs | {} |",
                verdict(d <= 10.0)
            );
        }
    }
    if plan.concurrency.contains(&16) {
        let o = added(Way::Ollameter, 16, |x| x.p50_us);
        if has_nginx {
            let n = added(Way::Nginx, 16, |x| x.p50_us);
            println!(
                "| c16 added p50 <= nginx's + 50 µs | ollameter {o:.0} µs, nginx {n:.0} µs | {} |",
                verdict(o <= n + 50.0)
            );
        }
        let p99 = added(Way::Ollameter, 16, |x| x.p99_us);
        println!(
            "| c16 added p99 <= 1 ms | {p99:.0} µs | {} |",
            verdict(p99 <= 1000.0)
        );
    }
    if has_nginx && plan.concurrency.contains(&64) {
        let ratio = median(&per_run(report, |r| {
            Some(r.closed(Way::Ollameter, 64)?.rps() / r.closed(Way::Nginx, 64)?.rps())
        }));
        println!(
            "| c64 throughput >= 90% of nginx's | {:.0}% | {} |",
            ratio * 100.0,
            verdict(ratio >= 0.9)
        );
        let cpu = |way: Way| median(&per_run(report, |r| r.cpu_per_call(way, 64)));
        let (o, n) = (cpu(Way::Ollameter), cpu(Way::Nginx));
        println!(
            "| c64 CPU per call <= 1.5x nginx's | ollameter {o:.1} µs, nginx {n:.1} µs ({:.2}x) | {} |",
            o / n,
            verdict(o <= 1.5 * n)
        );
        if plan.bare.is_some() {
            let b = cpu(Way::Bare);
            let ratio = median(&per_run(report, |r| {
                Some(r.closed(Way::Bare, 64)?.rps() / r.closed(Way::Nginx, 64)?.rps())
            }));
            println!(
                "| (floor) bare hyper at c64: throughput vs nginx, CPU per call | {:.0}%, {b:.1} µs ({:.2}x nginx's) | |",
                ratio * 100.0,
                b / n
            );
        }
    }
    if plan.upstreams >= 2 {
        for &c in &plan.concurrency {
            let choice = median(&per_run(report, |r| {
                Some(r.closed(Way::Fleet, c)?.p50_us - r.closed(Way::Ollameter, c)?.p50_us)
            }));
            println!(
                "| c{c}: choosing among {} upstreams adds <= 20 µs at p50 over one | {choice:.1} µs | {} |",
                plan.upstreams,
                verdict(choice <= 20.0)
            );
        }
    }
    let stream_added = |f: fn(&scenarios::StreamStats) -> f64| {
        median(&per_run(report, |r| {
            Some(f(&r.stream(Way::Ollameter)?) - f(&r.stream(Way::Direct)?))
        }))
    };
    let p99 = stream_added(|x| x.chunk_p99_us);
    println!(
        "| stream chunk added p99 <= 1 ms | {p99:.0} µs | {} |",
        verdict(p99 <= 1000.0)
    );
    let ttft = stream_added(|x| x.ttft_us);
    println!(
        "| first chunk added <= 0.5 ms | {ttft:.0} µs | {} |",
        verdict(ttft <= 500.0)
    );
    let above = median(&per_run(report, |r| {
        Some(r.ollameter_big_peak_kib as f64 * 1024.0 - r.ollameter_before_big_kib as f64 * 1024.0)
    }));
    println!(
        "| {:.0} MiB body: peak RSS above idle <= 3x body | {:.1} MiB ({:.1}x) | {} |",
        plan.big_body_bytes as f64 / MIB,
        above / MIB,
        above / plan.big_body_bytes as f64,
        verdict(above <= 3.0 * plan.big_body_bytes as f64)
    );
    if let Some(rec) = &report.recording {
        println!(
            "| zero dropped at {} req/s | {} written of {} served, {} dropped | {} |",
            plan.record_rate,
            rec.written,
            rec.load.ok,
            rec.dropped,
            verdict(rec.dropped == 0 && rec.written == rec.load.ok)
        );
    }
    let idle = median(&per_run(report, |r| {
        Some(r.ollameter_idle_kib as f64 * 1024.0)
    }));
    println!(
        "| idle RSS <= 30 MB | {:.1} MB | {} |",
        idle / 1e6,
        verdict(idle <= 30e6)
    );
}
