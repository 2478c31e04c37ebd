//! A call's own workload for `auto`: the `X-Ollameter-Max-Latency-Ms`,
//! `X-Ollameter-Prompt-Tokens` and `X-Ollameter-Expected-Output-Tokens` headers (and the
//! body's output limit) steer the choice by each model's latency fit, a budget nothing
//! meets is refused in the route's shape, bad values get 400, and the headers never reach
//! Ollama.

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::fake_ollama::{FakeConfig, FakeModel, FakeOllama};
use common::harness::TestApp;
use ollameter::record::RouteReason;
use serde_json::{Value, json};

const BASE: &str = "/api/model-performance";
const LATENCY: &str = "X-Ollameter-Max-Latency-Ms";
const PROMPT: &str = "X-Ollameter-Prompt-Tokens";
const OUTPUT: &str = "X-Ollameter-Expected-Output-Tokens";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// `n` successful chat calls of `model` taking exactly
/// `base + per_prompt·prompt + per_output·output` ms, with varied sizes, scored `quality`.
fn calls(
    model: &str,
    n: u64,
    (base, per_prompt, per_output): (f64, f64, f64),
    quality: f64,
) -> Vec<Value> {
    let start = Utc::now() - ChronoDuration::minutes(50);
    (0..n)
        .map(|i| {
            let (p, o) = (20 + (i * 37) % 600, 5 + (i * 53) % 400);
            json!({
                "model_name": model,
                "operation": "chat",
                "endpoint": "/api/chat",
                "timestamp": (start + ChronoDuration::seconds(i as i64)).to_rfc3339(),
                "processing_time_ms": base + per_prompt * p as f64 + per_output * o as f64,
                "prompt_tokens": p,
                "output_tokens": o,
                "quality_score": quality,
                "success": true,
            })
        })
        .collect()
}

/// What a routed call got: status, the model it ran on, `X-Ollameter-Over-Budget`, body.
struct Answer {
    status: u16,
    model: Option<String>,
    over_budget: Option<String>,
    body: Value,
}

async fn call(app: &TestApp, path: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
    let mut request = http().post(format!("{}{path}", app.url)).json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let resp = request.send().await.expect("send");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (model, over_budget) = (
        header("x-ollameter-model"),
        header("x-ollameter-over-budget"),
    );
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    Answer {
        status,
        model,
        over_budget,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn chat(model: &str) -> Value {
    json!({"model": model, "stream": false, "messages": [{"role": "user", "content": "hi"}]})
}

/// Two models: `fast:1b` (50 ms + 2 ms per output token, quality 3) and `slow:7b` (100 ms +
/// 20 ms per output token, quality 4.8): `auto:quality` runs the slow one unless the call's
/// budget rules it out.
async fn two_models() -> (FakeOllama, TestApp) {
    let fake = FakeOllama::start_with(FakeConfig {
        models: vec![FakeModel::new("fast:1b"), FakeModel::new("slow:7b")],
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start_with(&fake.url(), |c| c.routing.explore = 0.0).await;
    let mut seed = calls("fast:1b", 40, (50.0, 0.1, 2.0), 3.0);
    seed.extend(calls("slow:7b", 40, (100.0, 0.5, 20.0), 4.8));
    app.import(&seed).await;
    (fake, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_budget_leaves_out_the_model_predicted_over_it() {
    let (fake, app) = two_models().await;

    let plain = call(&app, "/api/chat", chat("auto:quality"), &[]).await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    assert_eq!(
        plain.model.as_deref(),
        Some("slow:7b"),
        "no budget: quality"
    );
    assert_eq!(plain.over_budget, None);

    // 500 output tokens: slow:7b takes 100 + 0.5·300 + 20·500 = 10,250 ms, fast:1b
    // about 1.1 s; a 2 s budget leaves only the fast one.
    let tight = call(
        &app,
        "/api/chat",
        chat("auto:quality"),
        &[(LATENCY, "2000"), (OUTPUT, "500"), (PROMPT, "300")],
    )
    .await;
    assert_eq!(tight.status, 200, "{}", tight.body);
    assert_eq!(tight.model.as_deref(), Some("fast:1b"));
    let why = tight
        .over_budget
        .expect("the answer says what the budget left out");
    assert!(
        why.starts_with("slow:7b: predicted 10.2 s")
            && why.contains("for 300 prompt and 500 output tokens")
            && why.contains("max latency of 2.0 s")
            && !why.contains("fast:1b"),
        "{why}"
    );

    // A short answer fits the slow model too: the budget is checked for this call's size.
    let short = call(
        &app,
        "/api/chat",
        chat("auto:quality"),
        &[(LATENCY, "2000"), (OUTPUT, "20")],
    )
    .await;
    assert_eq!(short.model.as_deref(), Some("slow:7b"), "{}", short.body);
    assert_eq!(short.over_budget, None);

    // OpenAI's route: the body's max_tokens stands in for the expected output.
    let openai = |max_tokens: u64| {
        json!({"model": "auto:quality", "max_tokens": max_tokens,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    let long = call(
        &app,
        "/v1/chat/completions",
        openai(500),
        &[(LATENCY, "2000")],
    )
    .await;
    assert_eq!(long.status, 200, "{}", long.body);
    assert_eq!(long.model.as_deref(), Some("fast:1b"));
    assert_eq!(
        long.body["model"], "fast:1b",
        "the body names the model that ran"
    );
    let brief = call(
        &app,
        "/v1/chat/completions",
        openai(20),
        &[(LATENCY, "2000")],
    )
    .await;
    assert_eq!(brief.model.as_deref(), Some("slow:7b"), "{}", brief.body);
    // Ollama's route: options.num_predict.
    let mut native = chat("auto:quality");
    native["options"] = json!({"num_predict": 500});
    let capped = call(&app, "/api/chat", native, &[(LATENCY, "2000")]).await;
    assert_eq!(capped.model.as_deref(), Some("fast:1b"), "{}", capped.body);

    let records = app.wait_records(80 + 6).await;
    let routed: Vec<_> = records
        .iter()
        .filter(|r| r.requested_model.as_deref() == Some("auto:quality"))
        .collect();
    assert_eq!(routed.len(), 6, "one attempt each: {routed:#?}");
    assert!(
        routed
            .iter()
            .all(|r| r.route_reason == Some(RouteReason::Recommended) && r.attempt == 1)
    );
    assert_headers_stayed_home(&fake);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_speed_ranking_follows_the_calls_size() {
    // Lines that cross: steady:7b has a 2 s start and 1 ms per token; quick:1b starts in
    // 100 ms and takes 10 ms per token. Up to ~210 output tokens quick:1b is faster.
    let fake = FakeOllama::start_with(FakeConfig {
        models: vec![FakeModel::new("steady:7b"), FakeModel::new("quick:1b")],
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start_with(&fake.url(), |c| c.routing.explore = 0.0).await;
    let mut seed = calls("steady:7b", 40, (2000.0, 0.0, 1.0), 4.0);
    seed.extend(calls("quick:1b", 40, (100.0, 0.0, 10.0), 4.0));
    app.import(&seed).await;

    let short = call(&app, "/api/chat", chat("auto:speed"), &[(OUTPUT, "20")]).await;
    assert_eq!(short.model.as_deref(), Some("quick:1b"), "{}", short.body);
    let long = call(&app, "/api/chat", chat("auto:speed"), &[(OUTPUT, "2000")]).await;
    assert_eq!(long.model.as_deref(), Some("steady:7b"), "{}", long.body);
    // What /recommend answers for the same call.
    let recommend: Value = http()
        .get(format!(
            "{}{BASE}/recommend?priority=speed&operation=chat&expected_output_tokens=2000",
            app.url
        ))
        .send()
        .await
        .expect("recommend")
        .json()
        .await
        .expect("json");
    assert_eq!(recommend["recommended_model"], "steady:7b", "{recommend}");
    assert_headers_stayed_home(&fake);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_nothing_meets_is_refused_with_each_prediction() {
    let (fake, app) = two_models().await;
    let headers = [(LATENCY, "100"), (OUTPUT, "500")];
    let native = call(&app, "/api/chat", chat("auto"), &headers).await;
    assert_eq!(native.status, 503, "{}", native.body);
    let text = native.body["error"].as_str().expect("Ollama's shape");
    for needle in [
        "no model can serve \"auto\" now",
        "within the call's budget of 100 ms (raise X-Ollameter-Max-Latency-Ms, ask for fewer \
         output tokens, or run a faster model)",
        "fast:1b (predicted 1.",
        "slow:7b (predicted 10.",
    ] {
        assert!(text.contains(needle), "{needle} missing: {text}");
    }
    let openai = call(
        &app,
        "/v1/chat/completions",
        json!({"model": "auto:speed", "messages": [{"role": "user", "content": "hi"}]}),
        &headers,
    )
    .await;
    assert_eq!(openai.status, 503, "{}", openai.body);
    assert_eq!(openai.body["error"]["type"], "api_error");
    assert!(
        openai.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("slow:7b (predicted")),
        "{}",
        openai.body
    );
    let inference = fake
        .state
        .requests()
        .iter()
        .filter(|r| r.path == "/api/chat" || r.path.starts_with("/v1/"))
        .count();
    assert_eq!(inference, 0, "nothing reached Ollama");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_workload_headers_get_400_saying_what_they_take() {
    let (fake, app) = two_models().await;
    for (headers, needle) in [
        (
            vec![(LATENCY, "soon")],
            "X-Ollameter-Max-Latency-Ms: \"soon\"",
        ),
        (vec![(LATENCY, "0"), (OUTPUT, "5")], "above 0"),
        (vec![(OUTPUT, "many")], "X-Ollameter-Expected-Output-Tokens"),
        (
            vec![(PROMPT, "-3"), (OUTPUT, "5")],
            "X-Ollameter-Prompt-Tokens",
        ),
        // A budget with no output count anywhere (no header, no body limit).
        (
            vec![(LATENCY, "2000")],
            "send X-Ollameter-Expected-Output-Tokens",
        ),
    ] {
        let native = call(&app, "/api/chat", chat("auto"), &headers).await;
        assert_eq!(native.status, 400, "{headers:?}: {}", native.body);
        let text = native.body["error"].as_str().expect("Ollama's shape");
        assert!(text.contains(needle), "{needle}: {text}");
        let openai = call(
            &app,
            "/v1/chat/completions",
            json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
            &headers,
        )
        .await;
        assert_eq!(openai.status, 400, "{headers:?}: {}", openai.body);
        assert_eq!(openai.body["error"]["type"], "invalid_request_error");
    }
    assert_eq!(
        fake.state
            .requests()
            .iter()
            .filter(|r| r.path == "/api/chat" || r.path.starts_with("/v1/"))
            .count(),
        0,
        "nothing reached Ollama"
    );
    // An explicit model ignores a valid workload; the headers are still ollameter's own.
    let explicit = call(
        &app,
        "/api/chat",
        chat("slow:7b"),
        &[(LATENCY, "1"), (OUTPUT, "500")],
    )
    .await;
    assert_eq!(explicit.status, 200, "{}", explicit.body);
    assert_eq!(explicit.over_budget, None);
    assert_headers_stayed_home(&fake);
    app.stop().await;
}

/// No request that reached the fake Ollama carries a workload header.
fn assert_headers_stayed_home(fake: &FakeOllama) {
    let requests = fake.state.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.path == "/api/chat" || r.path.starts_with("/v1/")),
        "some call went through"
    );
    for r in &requests {
        for name in [LATENCY, PROMPT, OUTPUT] {
            assert!(
                r.header(&name.to_ascii_lowercase()).is_none(),
                "{name} reached Ollama on {}",
                r.path
            );
        }
    }
}

/// `ollameter recommend` with a call's size and budget: the same question as the headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recommend_command_takes_the_calls_size_and_budget() {
    let (_fake, app) = two_models().await;
    let run = |extra: &[&str]| {
        let mut args: Vec<String> = ["recommend", "--priority", "quality", "--server", &app.url]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
                .args(&args)
                .env_remove("OLLAMETER_SERVER")
                .output()
                .expect("runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let (ok, out, err) = run(&[]).await.expect("join");
    assert!(ok, "{err}");
    assert!(out.contains("recommended (quality): slow:7b"), "{out}");
    let (ok, out, err) = run(&[
        "--output-tokens",
        "500",
        "--prompt-tokens",
        "300",
        "--max-latency-ms",
        "2000",
    ])
    .await
    .expect("join");
    assert!(ok, "{err}");
    assert!(out.contains("recommended (quality): fast:1b"), "{out}");
    assert!(
        out.contains("slow:7b") && out.contains("predicted 10.2 s"),
        "the exclusion and its prediction: {out}"
    );
    let (ok, _, err) = run(&["--max-latency-ms", "2000"]).await.expect("join");
    assert!(!ok);
    assert!(err.contains("expected_output_tokens"), "{err}");
    app.stop().await;
}

/// An alias with its own typical call and budget (config), and a call that overrides the
/// size: the alias's budget is then checked for the call's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_budget_holds_and_a_call_can_change_its_size() {
    use ollameter::recommend::Priority;
    use ollameter::routing::config::Alias;
    let fake = FakeOllama::start_with(FakeConfig {
        models: vec![FakeModel::new("fast:1b"), FakeModel::new("slow:7b")],
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start_with(&fake.url(), |c| {
        c.routing.explore = 0.0;
        c.routing.aliases.insert(
            "answer".into(),
            Alias {
                expected_output_tokens: Some(500),
                max_latency_ms: Some(2000.0),
                ..Alias::auto(Priority::Quality)
            },
        );
    })
    .await;
    let mut seed = calls("fast:1b", 40, (50.0, 0.1, 2.0), 3.0);
    seed.extend(calls("slow:7b", 40, (100.0, 0.5, 20.0), 4.8));
    app.import(&seed).await;

    let configured = call(&app, "/api/chat", chat("answer"), &[]).await;
    assert_eq!(
        configured.model.as_deref(),
        Some("fast:1b"),
        "{}",
        configured.body
    );
    let routing: Value = http()
        .get(format!("{}{BASE}/routing", app.url))
        .send()
        .await
        .expect("routing")
        .json()
        .await
        .expect("json");
    let view = routing["aliases"]
        .as_array()
        .expect("aliases")
        .iter()
        .find(|a| a["name"] == "answer")
        .expect("the alias")
        .to_string();
    assert!(
        view.contains("slow:7b") && view.contains("is over max_latency_ms 2.0 s"),
        "{view}"
    );
    let short = call(&app, "/api/chat", chat("answer"), &[(OUTPUT, "20")]).await;
    assert_eq!(
        short.model.as_deref(),
        Some("slow:7b"),
        "20 tokens fit the alias's 2 s: {}",
        short.body
    );
    let tighter = call(
        &app,
        "/api/chat",
        chat("answer"),
        &[(LATENCY, "200"), (OUTPUT, "20")],
    )
    .await;
    assert_eq!(
        tighter.model.as_deref(),
        Some("fast:1b"),
        "{}",
        tighter.body
    );
    assert!(
        tighter
            .over_budget
            .is_some_and(|w| w.contains("slow:7b") && w.contains("max latency of 200 ms")),
        "the call's own budget wins over the alias's"
    );
    assert_headers_stayed_home(&fake);
    app.stop().await;
}
