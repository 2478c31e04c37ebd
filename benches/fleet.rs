//! What choosing a host costs one call (issue 14), in process: the fleet's per-call path
//! alone, without the proxy around it. Per call: the model's id from the request's
//! name, the ranking of the hosts for it ([`ollameter::fleet::Fleet::order`]), the
//! in-flight count at the chosen host (taken and released), and the call's outcome noted
//! ([`ollameter::fleet::Fleet::record_result`]). Hosts have the model installed and loaded,
//! as in the proxy benchmark's fleet (`cargo bench --bench proxy -- --upstreams 3`).
//!
//! Run: `cargo bench --bench fleet` (a few seconds; `-- --calls N` per way and round).
//! docs/benchmarks.md ("Several upstreams") records the numbers.

use std::hint::black_box;
use std::time::Instant;

use ollameter::fleet::{Fleet, HealthConfig, HostOrder, ModelId, UpstreamConfig};
use ollameter::upstream::{KindSetting, UpstreamKind};

/// Rounds per way; the median is reported.
const ROUNDS: usize = 7;

fn fleet(hosts: usize, models: usize) -> Fleet {
    let upstreams: Vec<UpstreamConfig> = (0..hosts)
        .map(|i| UpstreamConfig {
            name: format!("gpu{i}"),
            url: format!("http://10.0.0.{}:11434", i + 1),
            kind: KindSetting::Fixed(UpstreamKind::Ollama),
        })
        .collect();
    let fleet = Fleet::new(&upstreams, Vec::new(), HealthConfig::default());
    let names: Vec<String> = (0..models).map(|m| format!("model{m}:8b")).collect();
    let installed: Vec<&str> = names.iter().map(String::as_str).collect();
    for host in 0..hosts {
        // Every host has every model; each has a few of them loaded, the asked one too.
        let loaded: Vec<&str> = installed
            .iter()
            .copied()
            .step_by(hosts.max(1) + host % 2)
            .collect();
        fleet.set_inventory(host, &installed, &loaded);
    }
    fleet
}

/// CPU time this thread has run so far, ns (`/proc/thread-self/schedstat`: unlike the
/// wall clock, it does not count the time other processes had the core, so the figures
/// hold on a busy machine); `None` where the kernel does not say.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU nanoseconds per call of the choice path for `model`, over `calls` calls (wall
/// time where CPU time is not available).
fn per_call(fleet: &Fleet, model: &str, calls: usize) -> f64 {
    let mut order = HostOrder::default();
    let cpu = thread_cpu_ns();
    let started = Instant::now();
    for _ in 0..calls {
        let id = ModelId::of(black_box(model));
        fleet.order(id, &mut order);
        let host = &fleet.hosts()[order[0]];
        let guard = host.track(id);
        black_box(&guard);
        fleet.record_result(host, false);
        drop(guard);
    }
    let ns = match (cpu, thread_cpu_ns()) {
        (Some(before), Some(after)) => after.saturating_sub(before) as f64,
        _ => started.elapsed().as_nanos() as f64,
    };
    ns / calls as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("ollameter fleet benchmark: run it with `cargo bench --bench fleet`");
        return;
    }
    let calls = args
        .iter()
        .position(|a| a == "--calls")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let clock = if thread_cpu_ns().is_some() {
        "CPU time"
    } else {
        "wall time"
    };
    println!(
        "# the cost of choosing a host, per call ({clock}; {calls} calls per way and round, \
         median of {ROUNDS} rounds)"
    );
    println!();
    println!("| upstreams | models per host | request's model | ns per call |");
    println!("|---:|---:|---|---:|");
    for (hosts, models) in [(1, 10), (3, 10), (3, 200), (8, 200)] {
        let fleet = fleet(hosts, models);
        for model in ["model0:8b", "Model0:8B", "unknown-model"] {
            let mut rounds = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                rounds.push(per_call(&fleet, model, calls));
            }
            println!("| {hosts} | {models} | `{model}` | {:.0} |", median(rounds));
        }
    }
}
