//! The `/metrics` page passes `promtool check metrics`: Prometheus's own parser and
//! linter (naming, units, suffixes, help text). promtool comes from Debian's
//! `prometheus` package; without it this test fails rather than passing unchecked.

use std::io::Write;
use std::process::{Command, Stdio};

use chrono::Utc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ollameter::metrics::{Metrics, RecorderSnapshot, endpoint_class};
use ollameter::otel::{GenAiMetricNames, OtelStats};
use ollameter::record::{ErrorKind, Record, Source};

/// The promtool to run: `$PROMTOOL`, else `promtool` on the `PATH`.
fn promtool() -> String {
    std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned())
}

/// Runs `promtool check metrics` on `page` (stdin); returns its exit success and output.
fn check_metrics(page: &str) -> (bool, String) {
    let program = promtool();
    let mut child = Command::new(&program)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run `{program}` ({error}): install Debian's `prometheus` package \
                 (`apt-get install -y prometheus`), which provides promtool, or set PROMTOOL"
            )
        });
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(page.as_bytes())
        .expect("write the page to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn record(model: &str, operation: &str, endpoint: &str) -> Record {
    let mut r = Record::new(
        "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        Utc::now(),
        model.into(),
        operation.into(),
        endpoint.into(),
    );
    r.success = true;
    r.http_status = Some(200);
    r.processing_time_ms = 850.0;
    r.ttft_ms = Some(120.0);
    r.tokens_per_second = Some(42.5);
    r.prompt_tokens = Some(26);
    r.output_tokens = Some(300);
    r
}

/// Metrics with every kind of series filled, including awkward label values.
fn busy_metrics() -> Metrics {
    busy_metrics_named(GenAiMetricNames::Legacy)
}

/// [`busy_metrics`] with the GenAI names `names` asks for and the span exporter's
/// counters.
fn busy_metrics_named(names: GenAiMetricNames) -> Metrics {
    let metrics = Metrics::with_names(names);
    let otel = Arc::new(OtelStats::default());
    otel.exported.store(120, Ordering::Relaxed);
    otel.dropped_queue_full.store(3, Ordering::Relaxed);
    otel.dropped_export_failed.store(512, Ordering::Relaxed);
    otel.failed_exports.store(1, Ordering::Relaxed);
    metrics.attach_otel(otel);
    let mut stream = record("llama3.2:latest", "chat", "/api/chat");
    stream.stream = true;
    metrics.observe_record(&stream);
    if let Some(gaps) = metrics.chunk_gaps("llama3.2:latest", "/api/chat", None) {
        gaps.observe(std::time::Duration::from_millis(30));
    }
    metrics.observe_record(&record("llama3.2:latest", "generate", "/api/generate"));
    metrics.observe_record(&record("qwen3:8b", "chat", "/v1/chat/completions"));
    metrics.observe_record(&record("hf.co/org/model:Q4_K_M", "photo-eval", "/api/chat"));
    metrics.observe_record(&record("we\"ird\\na\nme", "généré", "/api/generate"));
    metrics.observe_record(&record("", "", "/api/generate"));
    let mut embed = record("nomic-embed-text", "embed", "/api/embed");
    embed.ttft_ms = None;
    embed.tokens_per_second = None;
    embed.output_tokens = None;
    metrics.observe_record(&embed);
    for &kind in ErrorKind::ALL {
        let mut failed = record("llama3.2:latest", "chat", "/api/chat");
        failed.success = false;
        failed.error_kind = Some(kind);
        metrics.observe_record(&failed);
    }
    let mut imported = record("imported-model", "generate", "/api/generate");
    imported.source = Source::Import;
    metrics.observe_record(&imported);

    for (method, path, status) in [
        ("POST", "/api/generate", 200),
        ("POST", "/v1/chat/completions", 200),
        ("GET", "/api/tags", 200),
        ("HEAD", "/api/blobs/sha256-0123", 404),
        ("GET", "/api/model-performance/statistics", 200),
        ("GET", "/metrics", 200),
        ("GET", "/nope", 404),
    ] {
        metrics.observe_request(endpoint_class(method, path), status);
    }
    for seconds in [0.000_012, 0.000_3, 0.004, 0.2] {
        metrics.observe_proxy_overhead(seconds);
    }
    metrics
}

#[test]
fn a_busy_page_passes_promtool() {
    let page = busy_metrics().render(&RecorderSnapshot {
        written: 1_000,
        dropped: 2,
        queue_depth: 5,
        commits: 40,
        commit_seconds_total: 0.37,
        last_commit_seconds: 0.008,
        models_evicted: 3,
    });
    assert!(page.contains("gen_ai_client_operation_duration_seconds_bucket"));
    let (ok, output) = check_metrics(&page);
    assert!(
        ok,
        "promtool check metrics failed:\n{output}\n--- page ---\n{page}"
    );
    assert!(
        output.trim().is_empty(),
        "promtool reported problems:\n{output}"
    );
}

#[test]
fn a_fresh_page_passes_promtool() {
    let page = Metrics::new().render(&RecorderSnapshot::default());
    let (ok, output) = check_metrics(&page);
    assert!(
        ok,
        "promtool check metrics failed:\n{output}\n--- page ---\n{page}"
    );
    assert!(
        output.trim().is_empty(),
        "promtool reported problems:\n{output}"
    );
}

#[test]
fn the_current_and_both_sets_of_genai_names_pass_promtool() {
    for (names, present, absent) in [
        (
            GenAiMetricNames::Latest,
            &[
                "gen_ai_client_inference_duration_seconds_bucket",
                "gen_ai_client_inference_time_to_first_chunk_seconds_bucket",
                "gen_ai_client_inference_time_per_output_chunk_seconds_bucket",
                "gen_ai_client_inference_usage_input_tokens_total",
                "gen_ai_client_inference_usage_output_tokens_total",
                "gen_ai_client_inference_operation_input_tokens_bucket",
                "gen_ai_client_inference_operation_output_tokens_bucket",
                "gen_ai_client_embeddings_duration_seconds_bucket",
                "gen_ai_client_embeddings_operation_input_tokens_bucket",
                "ollameter_otel_spans_dropped_total{reason=\"queue_full\"} 3",
            ][..],
            &[
                "gen_ai_client_operation_duration",
                "gen_ai_client_token_usage",
            ][..],
        ),
        (
            GenAiMetricNames::Both,
            &[
                "gen_ai_client_inference_duration_seconds_bucket",
                "gen_ai_client_operation_duration_seconds_bucket",
                "gen_ai_client_token_usage_bucket",
            ][..],
            &[][..],
        ),
        (
            GenAiMetricNames::Legacy,
            &["gen_ai_client_operation_duration_seconds_bucket"][..],
            &["gen_ai_client_inference", "gen_ai_client_embeddings"][..],
        ),
    ] {
        let page = busy_metrics_named(names).render(&RecorderSnapshot::default());
        for name in present {
            assert!(page.contains(name), "{names:?}: {name} missing:\n{page}");
        }
        for name in absent {
            assert!(!page.contains(name), "{names:?}: {name} present:\n{page}");
        }
        let (ok, output) = check_metrics(&page);
        assert!(
            ok,
            "{names:?}: promtool check metrics failed:\n{output}\n--- page ---\n{page}"
        );
        assert!(
            output.trim().is_empty(),
            "{names:?}: promtool reported problems:\n{output}"
        );
    }
}
