//! The proxy benchmark still works: its scenarios run for a moment against the ollameter
//! binary (no nginx, no wrk, tiny sizes) and produce numbers, and no record is dropped.
//! No timing is asserted: the numbers belong in docs/benchmarks.md, not in a test.

#[path = "../benches/proxy/harness/mod.rs"]
#[allow(
    dead_code,
    reason = "the benchmark's harness is shared; the smoke run uses part of it"
)]
mod harness;

use harness::scenarios::{self, Plan, Way};

#[test]
fn the_proxy_benchmark_runs_and_drops_no_record() {
    // With a fleet of three upstreams too: the choice of a host runs on every call.
    let plan = Plan {
        upstreams: 3,
        otel: true,
        ..Plan::smoke()
    };
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ollameter"));
    let report = scenarios::run(&plan, bin, &|_| {}).expect("the benchmark runs");
    let run = report.runs.first().expect("one run");
    for way in [Way::Direct, Way::Ollameter, Way::OllameterOtel, Way::Fleet] {
        let closed = run.closed(way, 4).expect("closed-loop result");
        assert!(
            closed.requests > 0 && closed.errors == 0,
            "{way:?}: {closed:?}"
        );
        assert!(closed.p50_us > 0.0, "{way:?}: {closed:?}");
        let stream = run.stream(way).expect("stream result");
        assert_eq!(stream.chunks, plan.streams * plan.stream_chunks, "{way:?}");
        assert!(stream.ttft_us > 0.0, "{way:?}: {stream:?}");
        assert!(run.big_body(way).is_some_and(|us| us > 0.0), "{way:?}");
    }
    assert!(run.ollameter_idle_kib > 0, "{run:?}");
    // The exporting ollameter sent a span per call to the fake's OTLP sink.
    let (exported, dropped) = run.otel_spans.expect("spans counted");
    assert!(exported > 0.0, "{run:?}");
    assert_eq!(dropped, 0.0, "{run:?}");
    assert!(run.ollameter_big_peak_kib > 0, "{run:?}");
    let recording = report.recording.expect("recording ran");
    assert!(recording.load.ok > 0, "{recording:?}");
    assert_eq!(recording.load.failed, 0, "{recording:?}");
    assert_eq!(recording.dropped, 0, "{recording:?}");
    assert_eq!(recording.written, recording.load.ok, "{recording:?}");
}
