//! Latency prediction, workload-aware recommendation and the efficient priority, end to
//! end through the API: records written by `POST /record`, answers read back.

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::fake_ollama::FakeOllama;
use common::harness::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BASE: &str = "/api/model-performance";

struct Api {
    app: TestApp,
    http: reqwest::Client,
}

impl Api {
    async fn start() -> (Api, FakeOllama) {
        let fake = FakeOllama::start().await;
        let app = TestApp::start(&fake.url()).await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        (Api { app, http }, fake)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{BASE}{path}", self.app.running().api_addr)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self.http.get(self.url(path)).send().await.expect("send");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `n` calls of `model` taking `base + per_prompt·p + per_output·o` ms (exactly), with
    /// varied sizes, each scored `quality` and, when given, spending `joules_per_token` J
    /// per output token.
    async fn seed(
        &self,
        model: &str,
        n: u64,
        (base, per_prompt, per_output): (f64, f64, f64),
        quality: f64,
        joules_per_token: Option<f64>,
    ) {
        let start = Utc::now() - ChronoDuration::minutes(30);
        for i in 0..n {
            let (p, o) = (20 + (i * 37) % 600, 5 + (i * 53) % 400);
            let mut body = json!({
                "model_name": model,
                "operation": "chat",
                "timestamp": (start + ChronoDuration::seconds(i as i64)).to_rfc3339(),
                "processing_time_ms": base + per_prompt * p as f64 + per_output * o as f64,
                "prompt_tokens": p,
                "output_tokens": o,
                "load_duration_ms": 4.0,
                "quality_score": quality,
                "success": true,
            });
            if let Some(j) = joules_per_token {
                body["energy_j"] = json!(j * o as f64);
            }
            let resp = self
                .http
                .post(self.url("/record"))
                .json(&body)
                .send()
                .await
                .expect("send");
            assert_eq!(
                resp.status(),
                201,
                "{}",
                resp.text().await.unwrap_or_default()
            );
        }
    }
}

#[tokio::test]
async fn predict_answers_the_time_with_an_interval_or_says_what_is_missing() {
    let (api, _fake) = Api::start().await;
    api.seed("fast:1b", 40, (100.0, 0.5, 10.0), 3.5, None).await;
    api.seed("new:7b", 4, (100.0, 0.5, 10.0), 3.5, None).await;

    let (status, p) = api
        .get("/predict?model=fast:1b&prompt_tokens=200&output_tokens=500")
        .await;
    assert_eq!(status, 200, "{p}");
    // 100 + 0.5·200 + 10·500 = 5,200 ms.
    let predicted = p["predicted_ms"].as_f64().expect("number");
    assert!((predicted - 5200.0).abs() < 5.0, "{p}");
    assert!(p["low_ms"].as_f64() <= Some(predicted) && p["high_ms"].as_f64() >= Some(predicted));
    assert_eq!(p["fit"]["warm_calls"], 40);

    // Every model at once: what "500 output tokens on each model" asks.
    let (status, all) = api.get("/predict?output_tokens=500").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["predictions"][0]["model"], "fast:1b");
    assert_eq!(all["not_predicted"][0]["model"], "new:7b");

    let (status, e) = api.get("/predict?model=ghost&output_tokens=5").await;
    assert_eq!(status, 404, "{e}");
    let (status, e) = api.get("/predict?model=new:7b&output_tokens=5").await;
    assert_eq!(status, 422, "{e}");
    assert!(
        e["error"]
            .as_str()
            .expect("message")
            .contains("at least 10"),
        "{e}"
    );
    let (status, e) = api
        .get("/predict?model=fast:1b&output_tokens=5&cold=true")
        .await;
    assert_eq!(status, 422, "no cold start measured: {e}");
    for (query, field) in [
        ("model=fast:1b", "output_tokens"),
        ("model=fast:1b&output_tokens=-1", "output_tokens"),
        (
            "model=fast:1b&output_tokens=5&prompt_tokens=x",
            "prompt_tokens",
        ),
        ("model=fast:1b&output_tokens=5&cold=maybe", "cold"),
    ] {
        let (status, e) = api.get(&format!("/predict?{query}")).await;
        assert_eq!(status, 400, "{query}: {e}");
        assert!(e["error"].as_str().expect("message").contains(field), "{e}");
    }
}

#[tokio::test]
async fn max_latency_excludes_the_models_predicted_over_it_and_efficient_picks_the_cheapest() {
    let (api, _fake) = Api::start().await;
    // At 500 output tokens: quick 2.6 s, slow 10.2 s; cheap uses least energy per token but
    // scores under the quality floor; thrifty is the cheapest above it.
    api.seed("quick", 30, (100.0, 0.0, 5.0), 4.0, Some(2.0))
        .await;
    api.seed("slow", 30, (200.0, 0.0, 20.0), 4.5, Some(3.0))
        .await;
    api.seed("cheap", 30, (150.0, 0.0, 8.0), 2.0, Some(0.2))
        .await;
    api.seed("thrifty", 30, (150.0, 0.0, 8.0), 3.6, Some(0.5))
        .await;

    let (status, rec) = api
        .get("/recommend?priority=quality&expected_output_tokens=500&prompt_tokens=100&max_latency_ms=5000")
        .await;
    assert_eq!(status, 200, "{rec}");
    let excluded = rec["excluded"].as_array().expect("list");
    let slow = excluded
        .iter()
        .find(|e| e["model"] == "slow")
        .expect("slow is excluded");
    assert_eq!(slow["kinds"], json!(["over_latency_budget"]));
    let reason = slow["reason"].as_str().expect("reason");
    assert!(
        reason.contains("predicted 10.2 s") && reason.contains("max_latency_ms 5.0 s"),
        "{reason}"
    );
    assert!(excluded.iter().all(|e| e["model"] != "quick"), "{rec}");
    assert_ne!(rec["recommended_model"], "slow");

    let (status, rec) = api.get("/recommend?priority=efficient").await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["recommended_model"], "thrifty", "{rec}");
    let cheap = rec["excluded"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["model"] == "cheap")
        .expect("cheap is below the floor");
    assert_eq!(cheap["kinds"], json!(["below_quality_floor"]));
    // Lowering the floor lets the cheapest win.
    let (_, rec) = api
        .get("/recommend?priority=efficient&min_quality=1.5")
        .await;
    assert_eq!(rec["recommended_model"], "cheap", "{rec}");

    // Joules per output token in the statistics.
    let (_, stats) = api.get("/statistics/thrifty").await;
    assert_eq!(
        stats["efficiency"]["joules_per_output_token"], 0.5,
        "{stats}"
    );

    for (query, field) in [
        ("max_latency_ms=2000", "expected_output_tokens"),
        ("prompt_tokens=10", "expected_output_tokens"),
        ("expected_output_tokens=-5", "expected_output_tokens"),
        (
            "expected_output_tokens=5&max_latency_ms=0",
            "max_latency_ms",
        ),
        ("priority=efficient&min_quality=7", "min_quality"),
    ] {
        let (status, e) = api.get(&format!("/recommend?{query}")).await;
        assert_eq!(status, 400, "{query}: {e}");
        assert!(
            e["error"].as_str().expect("message").contains(field),
            "{query}: {e}"
        );
    }
}

#[tokio::test]
async fn the_predict_command_prints_each_model_fastest_first() {
    let (api, _fake) = Api::start().await;
    api.seed("fast:1b", 20, (100.0, 0.0, 2.0), 3.5, None).await;
    api.seed("slow:70b", 20, (100.0, 0.0, 20.0), 3.5, None)
        .await;
    let server = format!("http://{}", api.app.running().api_addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
            .args(["predict", "--output-tokens", "500", "--server", &server])
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fast = text.find("fast:1b").expect("fast listed");
    let slow = text.find("slow:70b").expect("slow listed");
    assert!(fast < slow, "fastest first:\n{text}");
    // 100 + 2·500 = 1.1 s; 100 + 20·500 = 10.1 s.
    assert!(text.contains("1.10 s") || text.contains("1.1 s"), "{text}");
    assert!(text.contains("10.1 s"), "{text}");
}

#[tokio::test]
async fn the_dashboard_draws_the_fitted_lines_and_shows_energy_per_token() {
    let (api, _fake) = Api::start().await;
    api.seed("fast:1b", 20, (100.0, 0.0, 2.0), 3.5, Some(0.25))
        .await;
    api.seed("few:3b", 3, (100.0, 0.0, 2.0), 3.5, None).await;
    let url = format!("http://{}/dashboard", api.app.running().api_addr);
    let page = api
        .http
        .get(url)
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("id=\"chart-prediction\""),
        "the panel is drawn"
    );
    // The chart's description names the fitted model's line, not the one without a fit.
    let desc_at = page.find("chart-prediction-desc").expect("description");
    let desc = &page[desc_at..desc_at + 400];
    assert!(
        desc.contains("fast:1b: 100 ms plus 2.00 ms per output token"),
        "{desc}"
    );
    assert!(!desc.contains("few:3b"), "{desc}");
    assert!(
        page.contains("J / output token") && page.contains("0.250"),
        "energy column"
    );
}

#[tokio::test]
async fn the_stats_command_shows_joules_and_cost_per_output_token() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| c.cost.price_per_kwh = Some(360.0)).await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let api = Api { app, http };
    api.seed("thrifty:3b", 12, (150.0, 0.0, 8.0), 3.6, Some(0.5))
        .await;
    let server = format!("http://{}", api.app.running().api_addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
            .args(["stats", "--server", &server])
            .env_remove("OLLAMETER_SERVER")
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("J/out tok") && text.contains("cost/1k tok"),
        "{text}"
    );
    // 0.5 J per token; at 360 per kWh, 1,000 tokens (500 J) cost 0.05.
    assert!(text.contains("0.500") && text.contains("0.0500"), "{text}");
}

#[tokio::test]
async fn predict_answers_for_one_host_when_asked() {
    let (api, _fake) = Api::start().await;
    // The same model on two boxes: gpu0 at 10 ms per output token, gpu1 at 20 ms.
    for (host, per_output, first) in [("gpu0", 10.0, 0_u64), ("gpu1", 20.0, 100)] {
        for i in first..first + 20 {
            let o = 5 + (i * 53) % 400;
            let resp = api
                .http
                .post(api.url("/record"))
                .json(&json!({
                    "model_name": "llama3.2:3b",
                    "operation": "chat",
                    "host": host,
                    "processing_time_ms": 100.0 + per_output * o as f64,
                    "prompt_tokens": 50,
                    "output_tokens": o,
                    "success": true,
                }))
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 201);
        }
    }
    let q = "/predict?model=llama3.2:3b&prompt_tokens=50&output_tokens=500";
    let (status, one) = api.get(&format!("{q}&host=gpu1")).await;
    assert_eq!(status, 200, "{one}");
    // 100 + 20·500 = 10.1 s on gpu1; 5.1 s on gpu0.
    assert!(
        (one["predicted_ms"].as_f64().expect("ms") - 10_100.0).abs() < 20.0,
        "{one}"
    );
    assert_eq!(one["host"], "gpu1");
    let (_, zero) = api.get(&format!("{q}&host=gpu0")).await;
    assert!(
        (zero["predicted_ms"].as_f64().expect("ms") - 5_100.0).abs() < 20.0,
        "{zero}"
    );
    let (status, e) = api.get(&format!("{q}&host=gpu9")).await;
    assert_eq!(status, 404, "{e}");
    assert!(
        e["error"]
            .as_str()
            .expect("message")
            .contains("host \"gpu9\""),
        "{e}"
    );
    let (status, all) = api
        .get("/predict?output_tokens=500&prompt_tokens=50&host=gpu0")
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["predictions"][0]["host"], "gpu0");
    let server = format!("http://{}", api.app.running().api_addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
            .args(["predict", "--output-tokens", "500", "--prompt-tokens", "50"])
            .args(["--host", "gpu1", "--server", &server])
            .env_remove("OLLAMETER_SERVER")
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("10.1 s"), "gpu1's time: {text}");
}
