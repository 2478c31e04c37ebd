//! Model routing end to end: virtual names through the official Python clients, fallback
//! before the first byte (and never after), explicit fallback chains, exploration of new
//! models, and the answers to names that cannot be served.

mod common;

use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use common::fake_ollama::{FakeConfig, FakeModel, FakeOllama};
use common::harness::TestApp;
use ollameter::config::Config;
use ollameter::recommend::Priority;
use ollameter::record::{Record, RouteReason};
use ollameter::routing::config::{Alias, RoutingConfig};
use serde_json::{Value, json};

const BASE: &str = "/api/model-performance";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// `n` successful records of `model` under `operation`, each `ms` long, scored `quality`,
/// with a VRAM figure when given, spread over the last hour.
fn history(
    model: &str,
    operation: &str,
    endpoint: &str,
    n: usize,
    ms: f64,
    quality: Option<f64>,
    vram_mb: Option<f64>,
) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "model_name": model,
                "operation": operation,
                "endpoint": endpoint,
                "processing_time_ms": ms + i as f64 * 0.01,
                "success": true,
                "quality_score": quality,
                "vram_mb": vram_mb,
                "timestamp": (Utc::now() - ChronoDuration::minutes(50 - i as i64)).to_rfc3339(),
            })
        })
        .collect()
}

fn alias(priority: Priority, candidates: &[&str]) -> Alias {
    Alias {
        candidates: Some(candidates.iter().map(|c| c.to_string()).collect()),
        ..Alias::auto(priority)
    }
}

fn routing(config: &mut Config, explore: f64, aliases: Vec<(&str, Alias)>) {
    config.routing = RoutingConfig {
        explore,
        aliases: aliases
            .into_iter()
            .map(|(n, a)| (n.to_string(), a))
            .collect(),
        ..RoutingConfig::default()
    };
}

async fn chat(app: &TestApp, model: &str, stream: bool) -> (u16, Option<String>, String) {
    let resp = http()
        .post(format!("{}/api/chat", app.url))
        .json(&json!({"model": model, "stream": stream,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat");
    let status = resp.status().as_u16();
    let routed = resp
        .headers()
        .get("x-ollameter-model")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, routed, resp.text().await.expect("body"))
}

/// Inference requests the fake received (telemetry's `/api/ps` and `/api/tags` aside).
fn inference_requests(fake: &FakeOllama) -> usize {
    fake.state
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/chat") || r.path.starts_with("/v1/"))
        .count()
}

fn of(records: &[Record], requested: &str) -> Vec<Record> {
    let mut out: Vec<Record> = records
        .iter()
        .filter(|r| r.requested_model.as_deref() == Some(requested))
        .cloned()
        .collect();
    out.sort_by_key(|r| (r.timestamp, r.attempt));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_run_the_model_the_recommendation_names() {
    let fake = FakeOllama::start_with(FakeConfig {
        models: vec![
            FakeModel::new("fast:1b"),
            FakeModel::new("good:7b"),
            FakeModel::new("slow:7b"),
            // Loaded at 40 GiB of VRAM: telemetry measures it from `/api/ps`.
            FakeModel {
                size_bytes: 40 << 30,
                size_vram_bytes: 40 << 30,
                ..FakeModel::new("huge:70b")
            },
            FakeModel {
                capabilities: vec!["embedding".into()],
                loaded: false,
                ..FakeModel::new("nomic-embed-text:latest")
            },
        ],
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start_with(&fake.url(), |c| {
        // Telemetry reads `/api/tags` (the installed models and their capabilities) and
        // `/api/ps` (each loaded model's VRAM).
        c.telemetry.enabled = true;
        routing(
            c,
            0.0,
            vec![(
                "photo",
                Alias {
                    operation: Some("photo_evaluation".into()),
                    max_vram_mb: Some(8.0 * 1024.0),
                    ..alias(Priority::Quality, &["good:7b", "slow:7b", "huge:70b"])
                },
            )],
        );
    })
    .await;
    app.running().telemetry.wait_for_ticks(1).await;
    let mut seed = Vec::new();
    seed.extend(history(
        "fast:1b",
        "chat",
        "/api/chat",
        12,
        50.0,
        Some(3.0),
        None,
    ));
    seed.extend(history(
        "good:7b",
        "chat",
        "/api/chat",
        12,
        900.0,
        Some(4.8),
        None,
    ));
    seed.extend(history(
        "slow:7b",
        "chat",
        "/api/chat",
        12,
        3000.0,
        Some(2.0),
        None,
    ));
    // For photos the slow model scores best; the huge one better still, but needs 40 GB.
    let photo = "photo_evaluation";
    seed.extend(history(
        "good:7b",
        photo,
        "/api/generate",
        12,
        900.0,
        Some(4.0),
        None,
    ));
    seed.extend(history(
        "slow:7b",
        photo,
        "/api/generate",
        12,
        3000.0,
        Some(4.9),
        None,
    ));
    seed.extend(history(
        "huge:70b",
        photo,
        "/api/generate",
        12,
        5000.0,
        Some(5.0),
        Some(40_960.0),
    ));
    app.import(&seed).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/routing.py");
    let proxy = app.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(proxy)
            .env("NO_PROXY", "*")
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "the client script failed (are the packages in tests/python/requirements.txt installed? \
         scripts/test installs them):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).expect("json result");
    assert_eq!(got["chat_speed"], "fast:1b", "{got:#}");
    assert_eq!(got["chat_speed_stream"], json!(["fast:1b"]), "{got:#}");
    assert_eq!(got["openai_quality_header"], "good:7b", "{got:#}");
    assert_eq!(got["openai_quality_model"], "good:7b", "{got:#}");
    assert_eq!(got["openai_quality_stream_header"], "good:7b", "{got:#}");
    assert_eq!(
        got["openai_quality_stream_models"],
        json!(["good:7b"]),
        "{got:#}"
    );
    assert_eq!(
        got["generate_photo"], "slow:7b",
        "the alias's own operation and VRAM budget decide: {got:#}"
    );
    assert_eq!(
        got["embed_auto"], "nomic-embed-text:latest",
        "an embedding call only ever goes to an embedding model: {got:#}"
    );
    assert_eq!(got["ollama_unknown"]["status"], 400, "{got:#}");
    let text = got["ollama_unknown"]["error"].as_str().expect("message");
    assert!(
        text.contains("auto:fast") && text.contains("auto:speed"),
        "{text}"
    );
    assert_eq!(got["openai_unknown"]["status"], 400, "{got:#}");
    assert!(
        got["openai_unknown"]["body"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("auto:quality")),
        "the OpenAI shape: {got:#}"
    );

    // One policy: what ran is what GET /recommend names for the same question.
    let routing: Value = http()
        .get(format!("{}{BASE}/routing", app.url))
        .send()
        .await
        .expect("routing")
        .json()
        .await
        .expect("json");
    let speed = routing["aliases"]
        .as_array()
        .expect("aliases")
        .iter()
        .find(|a| a["name"] == "auto:speed")
        .expect("auto:speed");
    let current = speed["current"]
        .as_array()
        .expect("current")
        .iter()
        .find(|c| c["operation"] == "chat")
        .expect("the chat resolution");
    let candidates: Vec<&str> = current["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !candidates.contains(&"nomic-embed-text:latest"),
        "{current:#}"
    );
    let recommend: Value = http()
        .get(format!(
            "{}{BASE}/recommend?priority=speed&operation=chat&available_models={}",
            app.url,
            candidates.join(",")
        ))
        .send()
        .await
        .expect("recommend")
        .json()
        .await
        .expect("json");
    assert_eq!(recommend["recommended_model"], "fast:1b");
    assert_eq!(current["model"], recommend["recommended_model"]);
    assert_eq!(current["reason"], "recommended");
    let photo_view = routing["aliases"]
        .as_array()
        .expect("aliases")
        .iter()
        .find(|a| a["name"] == "photo")
        .expect("photo");
    let excluded = photo_view["current"][0]["excluded"].to_string();
    assert!(
        excluded.contains("huge:70b") && excluded.contains("VRAM"),
        "{photo_view:#}"
    );
    assert_eq!(
        photo_view["last_hour"][0]["model"], "slow:7b",
        "{photo_view:#}"
    );

    let records = app.wait_records(72 + 9).await;
    let speed_records = of(&records, "auto:speed");
    assert_eq!(speed_records.len(), 2, "{speed_records:#?}");
    for r in &speed_records {
        assert_eq!(r.model, "fast:1b");
        assert_eq!(r.route_reason, Some(RouteReason::Recommended));
        assert_eq!(r.attempt, 1);
        assert!(r.success);
    }
    let embed = of(&records, "auto");
    assert_eq!(embed.len(), 1);
    assert_eq!(
        embed[0].route_reason,
        Some(RouteReason::Explore),
        "nothing measured yet: the only candidate is being measured"
    );
    assert!(
        records.iter().all(|r| !r.model.starts_with("auto")),
        "a record's model is always the one that ran"
    );
    let metrics = http()
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            r#"ollameter_routing_decisions_total{alias="auto:speed",model="fast:1b",reason="recommended"} 2"#
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_fails_before_its_first_byte_falls_back_to_the_next() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| {
        routing(
            c,
            0.0,
            vec![
                ("flaky", alias(Priority::Speed, &["crash:7b", "fast:1b"])),
                ("gone", alias(Priority::Speed, &["missing:7b", "fast:1b"])),
                (
                    "midway",
                    alias(Priority::Speed, &["fail-midstream:7b", "fast:1b"]),
                ),
            ],
        );
    })
    .await;
    let mut seed = Vec::new();
    for model in ["crash:7b", "missing:7b", "fail-midstream:7b"] {
        seed.extend(history(model, "chat", "/api/chat", 12, 10.0, None, None));
    }
    seed.extend(history(
        "fast:1b",
        "chat",
        "/api/chat",
        12,
        50.0,
        None,
        None,
    ));
    app.import(&seed).await;

    // 500 before the first byte: the client gets fast:1b's answer.
    let (status, routed, body) = chat(&app, "flaky", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(routed.as_deref(), Some("fast:1b"));
    let answer: Value = serde_json::from_str(&body).expect("one JSON answer");
    assert_eq!(answer["model"], "fast:1b");
    assert_eq!(answer["done"], true);
    // 404 model not found, streaming: the same, and the stream is the next model's.
    let (status, routed, body) = chat(&app, "gone", true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(routed.as_deref(), Some("fast:1b"));
    assert!(
        body.lines().all(|l| l.contains(r#""model":"fast:1b""#)),
        "{body}"
    );

    let records = app.wait_records(48 + 4).await;
    for (name, failed, status) in [("flaky", "crash:7b", 500), ("gone", "missing:7b", 404)] {
        let attempts = of(&records, name);
        assert_eq!(attempts.len(), 2, "{name}: {attempts:#?}");
        assert_eq!(attempts[0].model, failed);
        assert_eq!(attempts[0].attempt, 1);
        assert!(!attempts[0].success);
        assert_eq!(attempts[0].http_status, Some(status));
        assert_eq!(attempts[0].route_reason, Some(RouteReason::Recommended));
        assert_eq!(attempts[1].model, "fast:1b");
        assert_eq!(attempts[1].attempt, 2);
        assert!(attempts[1].success);
        assert_eq!(attempts[1].route_reason, Some(RouteReason::Fallback));
    }

    // A failure after the first byte: the client has part of an answer; never retried.
    let before = inference_requests(&fake);
    let (status, routed, body) = chat(&app, "midway", true).await;
    assert_eq!(status, 200);
    assert_eq!(routed.as_deref(), Some("fail-midstream:7b"));
    assert!(body.contains("error"), "{body}");
    assert_eq!(
        inference_requests(&fake) - before,
        1,
        "one request upstream"
    );
    let records = app.wait_records(48 + 5).await;
    let midway = of(&records, "midway");
    assert_eq!(midway.len(), 1, "{midway:#?}");
    assert!(!midway[0].success);
    assert_eq!(midway[0].attempt, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_models_follow_their_fallback_chain() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| {
        c.routing
            .fallbacks
            .insert("crash:1b".into(), vec!["busy:1b".into(), "fast:1b".into()]);
    })
    .await;
    let (status, routed, body) = chat(&app, "crash:1b", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(routed.as_deref(), Some("fast:1b"));
    let records = app.wait_records(3).await;
    let chain = of(&records, "crash:1b");
    let seen: Vec<(&str, u32, Option<RouteReason>, bool)> = chain
        .iter()
        .map(|r| (r.model.as_str(), r.attempt, r.route_reason, r.success))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("crash:1b", 1, Some(RouteReason::Explicit), false),
            ("busy:1b", 2, Some(RouteReason::Fallback), false),
            ("fast:1b", 3, Some(RouteReason::Fallback), true),
        ]
    );
    // A model without a chain is forwarded as sent: its failure is the client's answer.
    let (status, routed, _) = chat(&app, "crash:2b", false).await;
    assert_eq!(status, 500);
    assert_eq!(routed, None, "an unrouted call names no model");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_candidates_get_the_exploration_share_until_measured() {
    let fake = FakeOllama::start().await;
    let explore = 0.25;
    let app = TestApp::start_with(&fake.url(), |c| {
        // The imported history's 1 ms calls make the fake's real ones look like a latency
        // regression: the alert it raises (critical) would keep fast:1b out of routing,
        // as `routing::resolve::tests::a_model_with_a_firing_critical_alert_is_skipped_by_auto`
        // shows; here the share alone is measured.
        c.alerts.enabled = false;
        routing(
            c,
            explore,
            vec![
                (
                    "steady",
                    Alias {
                        min_operations: 1_000,
                        ..alias(Priority::Speed, &["fast:1b", "newbie:1b"])
                    },
                ),
                (
                    "learning",
                    Alias {
                        min_operations: 3,
                        ..alias(Priority::Speed, &["fast:1b", "rookie:1b"])
                    },
                ),
            ],
        );
    })
    .await;
    app.import(&history(
        "fast:1b",
        "chat",
        "/api/chat",
        1_000,
        1.0,
        None,
        None,
    ))
    .await;

    // Share: newbie stays unmeasured (1,000 operations needed) for all 200 calls.
    let calls = 200;
    let mut explored = 0;
    for _ in 0..calls {
        let (status, routed, _) = chat(&app, "steady", false).await;
        assert_eq!(status, 200);
        if routed.as_deref() == Some("newbie:1b") {
            explored += 1;
        }
    }
    // 50 expected; the binomial standard deviation is 6.1: 4 of them either way.
    assert!(
        (25..=75).contains(&explored),
        "{explored} of {calls} explored at {explore}"
    );

    // Until measured: rookie runs until it has 3 operations, then only fast:1b (faster).
    let mut rookie = 0;
    while rookie < 3 {
        let (_, routed, _) = chat(&app, "learning", false).await;
        rookie += usize::from(routed.as_deref() == Some("rookie:1b"));
    }
    app.wait_records(1_000 + calls + 3).await;
    // The resolution may be up to a second old: past that, rookie is measured.
    tokio::time::sleep(ollameter::routing::cache::MAX_AGE + Duration::from_millis(100)).await;
    for _ in 0..20 {
        let (_, routed, _) = chat(&app, "learning", false).await;
        assert_eq!(
            routed.as_deref(),
            Some("fast:1b"),
            "rookie is measured and slower"
        );
    }
    let records = app.records().await;
    let explored_records: Vec<&Record> = records
        .iter()
        .filter(|r| r.route_reason == Some(RouteReason::Explore))
        .collect();
    assert!(
        explored_records
            .iter()
            .all(|r| r.model == "newbie:1b" || r.model == "rookie:1b")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_cannot_be_served_are_refused_in_the_routes_shape() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| {
        routing(
            c,
            0.1,
            vec![(
                "small",
                Alias {
                    max_vram_mb: Some(1024.0),
                    ..alias(Priority::Balanced, &["big:13b", "bigger:70b"])
                },
            )],
        );
    })
    .await;
    let mut seed = history(
        "big:13b",
        "chat",
        "/api/chat",
        12,
        10.0,
        None,
        Some(9_000.0),
    );
    seed.extend(history(
        "bigger:70b",
        "chat",
        "/api/chat",
        12,
        10.0,
        None,
        Some(40_000.0),
    ));
    app.import(&seed).await;

    let (status, _, body) = chat(&app, "small", false).await;
    assert_eq!(status, 503, "{body}");
    let error: Value = serde_json::from_str(&body).expect("json");
    let text = error["error"].as_str().expect("Ollama's shape");
    for needle in ["\"small\"", "big:13b", "bigger:70b", "VRAM"] {
        assert!(text.contains(needle), "{needle} missing: {text}");
    }
    let resp = http()
        .post(format!("{}/v1/chat/completions", app.url))
        .json(&json!({"model": "auto:cheapest", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.expect("json");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .expect("message")
            .contains("auto:reliable")
    );
    assert_eq!(inference_requests(&fake), 0, "nothing reached Ollama");
    app.stop().await;
}
