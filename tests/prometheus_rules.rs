//! `config/prometheus/ollameter-alerts.yml` passes `promtool check rules`, and its unit
//! tests (`ollameter-alerts.test.yml`) pass `promtool test rules`. promtool comes from
//! Debian's `prometheus` package; without it this test fails rather than passing unchecked.
//! Also: every metric the rules read is one ollameter exports.

use std::process::Command;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/prometheus");

fn promtool(args: &[&str]) -> (bool, String) {
    let program = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let out = Command::new(&program)
        .args(args)
        .current_dir(DIR)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{program}` ({e}): install Debian's `prometheus` package \
                 (`apt-get install -y prometheus`), which provides promtool, or set PROMTOOL"
            )
        });
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_rules_pass_promtool_check() {
    let (ok, out) = promtool(&["check", "rules", "ollameter-alerts.yml"]);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_rules_pass_their_unit_tests() {
    let (ok, out) = promtool(&["test", "rules", "ollameter-alerts.test.yml"]);
    assert!(ok, "{out}");
}

#[test]
fn the_rules_read_only_metrics_ollameter_exports() {
    let rules = std::fs::read_to_string(format!("{DIR}/ollameter-alerts.yml")).expect("read");
    for metric in [
        "ollameter_inference_calls_total",
        "gen_ai_client_operation_duration_seconds_bucket",
        "ollameter_records_dropped_total",
        "ollameter_upstream_up",
        "ollameter_alert_active",
    ] {
        assert!(rules.contains(metric), "{metric} not used");
    }
    // The names as exported: the registry's page and the alerts' page.
    let metrics = ollameter::metrics::Metrics::new();
    let mut r = ollameter::record::Record::new(
        "x".into(),
        chrono::Utc::now(),
        "m".into(),
        "chat".into(),
        "/api/chat".into(),
    );
    r.success = true;
    r.processing_time_ms = 10.0;
    metrics.observe_record(&r);
    let mut page = metrics.render(&ollameter::metrics::RecorderSnapshot::default());
    page.push_str(
        &ollameter::alerts::Alerts::empty(Default::default()).render_metrics(&[(None, Some(true))]),
    );
    for name in [
        "ollameter_inference_calls_total{",
        "gen_ai_client_operation_duration_seconds_bucket{",
        "ollameter_records_dropped_total ",
        "ollameter_upstream_up 1",
        "# TYPE ollameter_alert_active gauge",
    ] {
        assert!(page.contains(name), "{name} missing from /metrics:\n{page}");
    }
}
