//! The binary: start-up refusals and `config check`.

use std::process::Command;

fn ollameter() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ollameter"));
    // The tests' own environment must not leak settings in.
    for (k, _) in std::env::vars() {
        if k.starts_with("OLLAMETER_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn serve_refuses_to_proxy_to_itself() {
    let out = ollameter()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:18999",
            "--upstream",
            "http://127.0.0.1:18999",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("own listen address"), "{err}");
}

#[test]
fn config_check_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[recorder]\nbatch_size = 64\n").expect("write");
    let out = ollameter()
        .args(["config", "check", "--config"])
        .arg(&file)
        .env("OLLAMETER_UPSTREAM", "http://ollama:11434")
        .args(["--db", "/data/x.db"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("batch_size = 64"), "{text}");
    assert!(text.contains("url = \"http://ollama:11434\""), "{text}");
    assert!(text.contains("path = \"/data/x.db\""), "{text}");
    assert!(
        text.contains("flush_interval_ms = 200"),
        "defaults shown: {text}"
    );
    // What it prints is the file's own shape: it loads back as a configuration.
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, text.as_bytes()).expect("write");
    let again = ollameter()
        .args(["config", "check", "--config"])
        .arg(&printed)
        .output()
        .expect("runs");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), text);
}

#[test]
fn config_check_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[recorder]\nbatch_size = 0\nflush_interval_ms = 0\n").expect("write");
    let out = ollameter()
        .args(["config", "check", "--config"])
        .arg(&file)
        .env("OLLAMETER_LOG_FORMAT", "yaml")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "recorder.batch_size",
        "recorder.flush_interval_ms",
        "log.format",
    ] {
        assert!(err.contains(key), "{key} missing: {err}");
    }
}

#[test]
fn the_shipped_config_file_is_valid_and_documents_every_key() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ollameter.toml");
    let out = ollameter()
        .args(["config", "check", "--config", file])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(file).expect("read");
    for key in ollameter::config::KEYS
        .iter()
        .chain(ollameter::otel::config::KEYS)
    {
        let (section, leaf) = key.split_once('.').expect("section.key");
        assert!(
            text.contains(&format!("[{section}]")),
            "[{section}] missing"
        );
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{leaf} ="))),
            "{key} is not documented in config/ollameter.toml"
        );
    }
}

#[test]
fn config_check_never_prints_tokens() {
    let out = ollameter()
        .args(["config", "check"])
        .env("OLLAMETER_API_ADMIN_TOKEN", "supersecretadmintoken123")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("supersecretadmintoken123"));
    assert!(text.contains("admin_token = \"(set)\""), "{text}");
}

#[test]
fn config_check_reads_the_standard_otel_variables_and_hides_their_headers() {
    let out = ollameter()
        .args(["config", "check"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=supersecretotlpkey")
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "0.2")
        .env(
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            "gen_ai_latest_experimental",
        )
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("supersecretotlpkey"), "{text}");
    for line in [
        "headers = \"(set)\"",
        "enabled = true",
        "traces_endpoint = \"http://collector:4318/v1/traces\"",
        "sampler = \"parentbased_traceidratio\"",
        "sampler_arg = 0.2",
        "gen_ai_metric_names = \"latest\"",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let bad = ollameter()
        .args(["config", "check"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.honeycomb.io")
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("otel.endpoint"), "{err}");
}
