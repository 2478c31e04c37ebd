//! Sloppy and hostile traffic (issue 23): calls that name models Ollama does not have are
//! recorded as `model_not_found` but do not flood the views, `store.max_models` bounds the
//! names kept (failing names go first, then the least recently used), and every list is
//! cut to a `limit` that says what it left out.

mod common;

use std::time::Duration;

use common::fake_ollama::{FakeConfig, FakeOllama};
use common::harness::TestApp;
use futures_util::StreamExt;
use ollameter::record::ErrorKind;
use serde_json::{Value, json};

const BASE: &str = "/api/model-performance";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

async fn get_text(c: &reqwest::Client, url: String) -> (u16, String) {
    let resp = c.get(url).send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("text"))
}

async fn get_json(c: &reqwest::Client, url: String) -> (u16, Value) {
    let (status, text) = get_text(c, url).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, value)
}

/// A generation through the proxy: natively, or on the OpenAI-compatible route.
async fn call(c: &reqwest::Client, app: &str, model: &str, openai: bool) -> u16 {
    let request = if openai {
        c.post(format!("{app}/v1/chat/completions"))
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
    } else {
        c.post(format!("{app}/api/generate"))
            .json(&json!({"model": model, "prompt": "hi", "stream": false}))
    };
    let resp = request.send().await.expect("send");
    let status = resp.status().as_u16();
    let _ = resp.bytes().await;
    status
}

/// Waits until the sampler has read Ollama's installed models.
async fn wait_installed(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.running().telemetry.installed_models().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sampler never read /api/tags"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_unknown_names_stay_out_of_the_views() {
    let fake = FakeOllama::start_with(FakeConfig {
        strict_models: true,
        chunk_gap: Duration::ZERO,
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start_with(&fake.url(), |c| {
        c.telemetry.enabled = true;
        c.telemetry.interval = Duration::from_millis(50);
    })
    .await;
    wait_installed(&app).await;
    let c = http();
    let url = app.url.clone();

    for i in 0..20 {
        assert_eq!(call(&c, &url, "llama3.2", i % 2 == 0).await, 200);
    }
    // A client loops over names Ollama does not have, half of them on the OpenAI route;
    // one looks like SQL.
    let statuses: Vec<u16> = futures_util::stream::iter(0..10_000)
        .map(|i| {
            let c = c.clone();
            let url = url.clone();
            async move {
                let name = if i == 0 {
                    "x'); DROP TABLE records; --".to_string()
                } else {
                    format!("generated-{i:05}-zq")
                };
                call(&c, &url, &name, i % 2 == 1).await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 404), "Ollama's answer passes");
    // Then a typo, the most frequent mistake of all, on both routes.
    for i in 0..12 {
        assert_eq!(call(&c, &url, "lama3.2", i % 2 == 0).await, 404);
    }
    app.running().recorder.flush().await;

    let typo: Vec<_> = app
        .records()
        .await
        .into_iter()
        .filter(|r| r.model == "lama3.2")
        .collect();
    assert_eq!(typo.len(), 12);
    for r in &typo {
        assert_eq!(r.error_kind, Some(ErrorKind::ModelNotFound), "{r:?}");
        assert_eq!(r.http_status, Some(404));
    }

    // Statistics list the real model only, and say what they hid.
    let (status, text) = get_text(&c, format!("{url}{BASE}/statistics")).await;
    assert_eq!(status, 200);
    assert!(text.len() < 10_000, "{} bytes", text.len());
    let stats: Value = serde_json::from_str(&text).expect("json");
    let names: Vec<&String> = stats["models"]
        .as_object()
        .expect("models")
        .keys()
        .collect();
    assert_eq!(names, ["llama3.2"]);
    let hidden = stats["unknown_models_hidden"].as_u64().expect("hidden");
    assert!(
        hidden > 100,
        "the unknown names still held are counted: {hidden}"
    );
    assert_eq!(stats["models_left_out"], 0);

    // Asked for, the unknown names appear, as many as the store still holds: never more
    // than store.max_models (1,000 by default) names in all.
    let (_, all) = get_json(
        &c,
        format!("{url}{BASE}/statistics?include_unknown=true&limit=10000"),
    )
    .await;
    let all = all["models"].as_object().expect("models");
    assert!(
        all.contains_key("lama3.2"),
        "the latest unknown name is kept"
    );
    assert!(
        all.contains_key("llama3.2"),
        "a model that works is never evicted first"
    );
    assert!(all.keys().any(|k| k.starts_with("generated-")));
    assert!(all.len() <= 1_000, "{} models", all.len());
    assert_eq!(all.len() as u64, hidden + 1);
    let (_, cut) = get_json(
        &c,
        format!("{url}{BASE}/statistics?include_unknown=true&limit=5"),
    )
    .await;
    assert_eq!(cut["models"].as_object().expect("models").len(), 5);
    assert_eq!(cut["models_left_out"].as_u64(), Some(hidden + 1 - 5));
    assert!(
        cut["models"]["lama3.2"].is_object(),
        "the busiest unknown name (12 calls) is among the first"
    );

    // The dashboard shows the real model and stays small.
    let (status, page) = get_text(&c, format!("{url}/dashboard")).await;
    assert_eq!(status, 200);
    assert!(page.len() < 300_000, "{} bytes", page.len());
    if let Some(at) = page.find("generated-") {
        panic!(
            "no junk name on the page: {}",
            &page[at.saturating_sub(300)..(at + 100).min(page.len())]
        );
    }
    assert!(page.contains("llama3.2"));
    assert!(page.contains("unknown model names hidden"));
    let (_, with_unknown) = get_text(&c, format!("{url}/dashboard?include_unknown=true")).await;
    assert!(with_unknown.contains("generated-"));

    // Insights report the typo once, with the model meant.
    let (_, insights) = get_json(&c, format!("{url}{BASE}/insights")).await;
    let list = insights["insights"].as_array().expect("insights");
    let about_typo: Vec<&Value> = list.iter().filter(|i| i["model"] == "lama3.2").collect();
    assert_eq!(about_typo.len(), 1, "{list:?}");
    assert_eq!(about_typo[0]["kind"], "unknown_model");
    assert_eq!(
        about_typo[0]["message"],
        "12 calls asked for `lama3.2`, which Ollama does not have; did you mean `llama3.2:latest`?"
    );
    assert!(
        list.len() <= 10,
        "one line counts the rest: {} insights",
        list.len()
    );
    assert!(
        list.iter().all(|i| !i["model"]
            .as_str()
            .is_some_and(|m| m.starts_with("generated-"))),
        "junk names are not reported one by one"
    );

    // The recommendation never considers them.
    let (_, rec) = get_json(
        &c,
        format!("{url}{BASE}/recommend?min_operations=1&priority=speed"),
    )
    .await;
    assert_eq!(rec["recommended_model"], "llama3.2", "{rec}");
    let text = rec.to_string();
    assert!(
        !text.contains("generated-") && !text.contains("\"lama3.2\""),
        "{text}"
    );
    let (_, named) = get_json(
        &c,
        format!("{url}{BASE}/recommend?min_operations=1&available_models=lama3.2,llama3.2"),
    )
    .await;
    assert_eq!(named["recommended_model"], "llama3.2");
    let excluded = named["excluded"].as_array().expect("excluded");
    assert!(
        excluded
            .iter()
            .any(|e| e["model"] == "lama3.2" && e["kinds"][0] == "no_successful_operations"),
        "{named}"
    );

    // Compare answers a named unknown model apart unless asked.
    let compare = c
        .post(format!("{url}{BASE}/compare"))
        .json(&json!({"models": ["llama3.2", "lama3.2"]}))
        .send()
        .await
        .expect("send")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(compare["unknown"], json!(["lama3.2"]));
    assert!(compare["models"]["lama3.2"].is_null());

    // The bound held, and the evictions are counted.
    let (_, metrics) = get_text(&c, format!("{url}/metrics")).await;
    let evicted: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ollameter_models_evicted_total "))
        .expect("the eviction counter")
        .parse()
        .expect("number");
    let distinct = 10_000 + 1 + 1;
    assert!(
        evicted >= (distinct - 1_000) as f64,
        "{evicted} models evicted"
    );
    app.stop().await;
}

/// Writes records by hand (the writer evicts on every commit, whatever the source).
async fn seed(c: &reqwest::Client, url: &str, model: &str, success: bool, minutes_ago: i64) {
    let ts = (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc3339();
    let resp = c
        .post(format!("{url}{BASE}/record"))
        .json(
            &json!({"model_name": model, "operation": "chat", "processing_time_ms": 10.0,
                      "success": success, "timestamp": ts}),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn max_models_evicts_failing_names_first_then_the_least_recently_used() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| {
        c.recorder.max_models = 3;
    })
    .await;
    let c = http();
    let url = app.url.clone();
    seed(&c, &url, "old-good", true, 50).await;
    seed(&c, &url, "typo", false, 1).await;
    seed(&c, &url, "mid-good", true, 30).await;
    seed(&c, &url, "new-good", true, 10).await;
    let models = |records: Vec<ollameter::record::Record>| {
        let mut names: Vec<String> = records.into_iter().map(|r| r.model).collect();
        names.sort();
        names.dedup();
        names
    };
    assert_eq!(
        models(app.records().await),
        ["mid-good", "new-good", "old-good"],
        "the name that never worked goes first, though its call is the newest"
    );
    seed(&c, &url, "newer-good", true, 5).await;
    assert_eq!(
        models(app.records().await),
        ["mid-good", "new-good", "newer-good"],
        "then the least recently used"
    );
    let (_, stats) = get_json(
        &c,
        format!("{url}{BASE}/statistics?include_unknown=true&duration_hours=24"),
    )
    .await;
    let listed: Vec<&String> = stats["models"]
        .as_object()
        .expect("models")
        .keys()
        .collect();
    assert_eq!(
        listed,
        ["mid-good", "new-good", "newer-good"],
        "the history forgot them too"
    );
    let (_, metrics) = get_text(&c, format!("{url}/metrics")).await;
    assert!(
        metrics.contains("\nollameter_models_evicted_total 2\n"),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn lists_take_a_limit_and_say_how_many_they_left_out() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let c = http();
    let url = app.url.clone();
    for (i, model) in ["a", "b", "c", "d"].iter().enumerate() {
        for _ in 0..=i {
            seed(&c, &url, model, true, 1).await;
        }
    }
    let (_, stats) = get_json(&c, format!("{url}{BASE}/statistics?limit=2")).await;
    let listed: Vec<&String> = stats["models"]
        .as_object()
        .expect("models")
        .keys()
        .collect();
    assert_eq!(listed, ["c", "d"], "the busiest two");
    assert_eq!(stats["models_left_out"], 2);
    assert_eq!(stats["unknown_models_hidden"], 0);
    for bad in ["limit=0", "limit=x", "limit=10001", "include_unknown=maybe"] {
        let (status, body) = get_json(&c, format!("{url}{BASE}/statistics?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        let name = bad.split('=').next().expect("name");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(name)),
            "{body}"
        );
    }
    let (status, page) = get_text(&c, format!("{url}/dashboard?limit=1")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("3 more not shown"),
        "the page says what it cut"
    );
    let (status, _) = get_text(&c, format!("{url}/dashboard?limit=0")).await;
    assert_eq!(status, 400);
    app.stop().await;
}
