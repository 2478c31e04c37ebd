//! The dashboard end to end: the page over a sidecar filled with records (well-formed, the
//! store's numbers in it, every name escaped, charts that parse as SVG), its empty states,
//! its 400 page, `ollameter report`, and a real browser (Debian's `chromium`) rendering it
//! without console errors and taking a screenshot.
//!
//! Set `OLLAMETER_DASHBOARD_SCREENSHOT=docs/dashboard.png` to keep the browser test's
//! screenshot (that is how the README's picture is made).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use common::fake_ollama::FakeOllama;
use common::harness::TestApp;
use serde_json::{Value, json};

const SCRIPT_MODEL: &str = "<script>alert(1)</script>";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Imports records through the API.
/// One record `minutes_ago` in the past.
fn record(model: &str, operation: &str, time_ms: f64, minutes_ago: i64) -> Value {
    let ts = (Utc::now() - ChronoDuration::minutes(minutes_ago)).to_rfc3339();
    json!({"model_name": model, "operation": operation, "processing_time_ms": time_ms,
           "quality_score": 4.0, "success": true, "timestamp": ts, "tokens_generated": 50})
}

/// Two models with 11 calls each (p50 305 ms and 905 ms), one of another operation, and a
/// model named like a script with too few calls to be recommended.
async fn seeded() -> (TestApp, FakeOllama) {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let mut records = Vec::new();
    for i in 0..11 {
        records.push(record(
            "llama3.2:3b",
            "photo_evaluation",
            300.0 + i as f64,
            30 + i,
        ));
        records.push(record(
            "qwen2.5:7b",
            "photo_evaluation",
            900.0 + i as f64,
            40 + i,
        ));
    }
    records.push(record("qwen2.5:7b", "summary", 5000.0, 5));
    for i in 0..3 {
        records.push(record(SCRIPT_MODEL, "photo_evaluation", 100.0, 10 + i));
    }
    app.import(&records).await;
    (app, fake)
}

async fn get(app: &TestApp, path_and_query: &str) -> (u16, String, String) {
    let resp = http()
        .get(format!("{}{path_and_query}", app.url))
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, resp.text().await.expect("body"))
}

/// Elements HTML writes without a closing tag.
const VOID: [&str; 6] = ["meta", "link", "input", "br", "img", "hr"];

/// Checks that every tag is closed, in order: the page is well-formed as far as a browser
/// would need no error recovery. maud escapes `<` and `>` in text and attributes, and the
/// stylesheet has neither, so a tag is everything from `<` to the next `>`.
fn assert_well_formed(page: &str) {
    let mut open: Vec<String> = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find('<') {
        let end = rest[start..]
            .find('>')
            .map(|e| start + e)
            .unwrap_or_else(|| panic!("unclosed tag at {}", &rest[start..]));
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.ends_with('/') {
            continue;
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(closing) = tag.strip_prefix('/') {
            let closing = closing.trim().to_ascii_lowercase();
            let top = open
                .pop()
                .unwrap_or_else(|| panic!("</{closing}> closes nothing"));
            assert_eq!(top, closing, "</{closing}> closes <{top}>");
        } else if !VOID.contains(&name.as_str()) {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "never closed: {open:?}");
}

/// Every `<svg>...</svg>` of the page, each parsed as XML.
fn charts(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").expect("svg closed") + start + "</svg>".len();
        let svg = &rest[start..end];
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
        let root = doc.root_element();
        assert_eq!(root.attribute("role"), Some("img"));
        assert!(
            root.children().any(|n| n.has_tag_name("title")),
            "a chart without a <title>"
        );
        out.push(svg.to_string());
        rest = &rest[end..];
    }
    out
}

/// The table row of a model.
fn row<'a>(page: &'a str, model: &str) -> &'a str {
    let marker = format!("data-model=\"{model}\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {model}"));
    let end = page[start..].find("</tr>").expect("row ends") + start;
    &page[start..end]
}

#[tokio::test]
async fn the_page_shows_the_stores_numbers_charts_and_recommendation() {
    let (app, _fake) = seeded().await;
    let (status, content_type, page) = get(&app, "/dashboard").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert_well_formed(&page);

    // The model named like a script is text, never markup.
    assert!(!page.contains("<script"), "unescaped script");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    // The numbers of the store: 11 calls each, p50 305 and 905 ms; the summary call of
    // qwen counts too (12 operations).
    let llama = row(&page, "llama3.2:3b");
    assert!(llama.contains("data-value=\"11\""), "{llama}");
    assert!(llama.contains("data-value=\"305\""), "{llama}");
    assert!(llama.contains("305 ms"), "{llama}");
    let qwen = row(&page, "qwen2.5:7b");
    assert!(qwen.contains("data-value=\"12\""), "{qwen}");
    // Balanced, speed and reliable all pick the faster, equally reliable llama.
    assert!(llama.contains("badge balanced"), "{llama}");
    assert!(llama.contains("badge speed"), "{llama}");
    // Too few operations: excluded, with the reason.
    assert!(
        page.contains("3 operations, fewer than the 10 required"),
        "{page}"
    );
    // Each recommendation says how sure it is.
    assert!(page.contains("likely the best</p>"), "{page}");

    // Four comparison charts and the trend, each valid SVG with its figures.
    let svgs = charts(&page);
    let ids: Vec<&str> = [
        "chart-processing-time",
        "chart-tokens-per-second",
        "chart-quality",
        "chart-success-rate",
        "chart-trend",
    ]
    .into_iter()
    .filter(|id| svgs.iter().any(|s| s.contains(&format!("id=\"{id}\""))))
    .collect();
    assert_eq!(ids.len(), 5, "charts: {ids:?}");
    let time = svgs
        .iter()
        .find(|s| s.contains("id=\"chart-processing-time\""))
        .expect("time chart");
    assert!(time.contains("llama3.2:3b: p50 (median) 305 ms"), "{time}");
    assert!(time.contains("&lt;script&gt;"), "escaped in the chart too");
    // qwen's 5 s summary call puts the p95 axis in seconds.
    assert!(
        time.contains("processing time of successful calls (s)"),
        "{time}"
    );
    // The trend is of the recommended model by default.
    assert!(page.contains("Trend: processing time of <span class=\"model-name\">llama3.2:3b"));
    // It reloads itself, keeping its URL, and links a standalone copy.
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
    assert!(page.contains("standalone=1"));
    app.stop().await;
}

#[tokio::test]
async fn filters_in_the_url_choose_the_view() {
    let (app, _fake) = seeded().await;
    let (status, _, page) = get(
        &app,
        "/dashboard?hours=6&operation=summary&model=qwen2.5:7b&metric=ttft&refresh=0",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_well_formed(&page);
    // Only qwen has a summary call.
    assert!(page.contains("data-model=\"qwen2.5:7b\""));
    assert!(!page.contains("data-model=\"llama3.2:3b\""));
    assert!(row(&page, "qwen2.5:7b").contains("5.00 s"));
    assert!(page.contains("Trend: time to first token of"));
    assert!(!page.contains("http-equiv=\"refresh\""), "refresh=0");
    // The form shows the chosen filters.
    assert!(
        page.contains("<option value=\"summary\" selected>"),
        "{page}"
    );
    assert!(page.contains("<option value=\"6\" selected>"), "{page}");

    // A window with no operations says how to widen it.
    let (_, _, page) = get(&app, "/dashboard?operation=nothing-like-this").await;
    assert!(page.contains("No operations in this view"), "{page}");
    assert!(page.contains("Show the last 90 days"));
    app.stop().await;
}

#[tokio::test]
async fn an_empty_store_says_where_to_point_the_app() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let (status, _, page) = get(&app, "/dashboard").await;
    assert_eq!(status, 200);
    assert_well_formed(&page);
    let host = app.url.trim_start_matches("http://");
    assert!(page.contains("No data yet"), "{page}");
    assert!(
        page.contains(&format!("export OLLAMA_HOST=http://{host}")),
        "{page}"
    );
    assert!(page.contains("GPU memory"));
    app.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_a_400_page_that_names_them() {
    let (app, _fake) = seeded().await;
    for (query, expected) in [
        (
            "hours=abc",
            "hours: &quot;abc&quot; must be a number of hours",
        ),
        ("hours=0", "hours:"),
        ("metric=latency", "metric: unknown &quot;latency&quot;"),
        ("refresh=2", "refresh:"),
        ("hour=6", "unknown parameter hour"),
        (
            "hours=87600&bucket_minutes=1",
            "bucket_minutes: 5256001 buckets requested",
        ),
        (
            "model=%3Cscript%3E&metric=%3Cb%3E",
            "metric: unknown &quot;&lt;b&gt;&quot;",
        ),
    ] {
        let (status, content_type, page) = get(&app, &format!("/dashboard?{query}")).await;
        assert_eq!(status, 400, "{query}: {page}");
        assert_eq!(content_type, "text/html; charset=utf-8");
        assert!(page.contains(expected), "{query}: {page}");
        assert!(!page.contains("<b>"), "{query}");
        assert_well_formed(&page);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_writes_one_self_contained_file() {
    let (app, _fake) = seeded().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report.html");
    let server = app.url.clone();
    let file = out.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
            .args(["report", "--server", &server, "--hours", "48", "--out"])
            .arg(&file)
            .env_remove("OLLAMETER_SERVER")
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("wrote the dashboard"), "{stdout}");
    let page = std::fs::read_to_string(&out).expect("report written");
    assert_well_formed(&page);
    assert_eq!(charts(&page).len(), 5);
    assert!(page.contains("Last 48 hours"));
    assert!(row(&page, "llama3.2:3b").contains("305 ms"));
    // Self-contained and still: nothing to fetch, nothing to run, no reload, no form.
    for absent in [
        "<script",
        "http-equiv=\"refresh\"",
        "<form",
        "stylesheet",
        "src=",
        "href=\"/",
        "href=\"?",
    ] {
        assert!(!page.contains(absent), "{absent} in the report");
    }

    // A bad parameter fails with the page's message.
    let server = app.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
            .args(["report", "--server", &server, "--metric", "latency"])
            .env_remove("OLLAMETER_SERVER")
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("400: metric: unknown \"latency\""),
        "{stderr}"
    );
    app.stop().await;
}

/// `n` calls of `model` taking `base + per_prompt·p + per_output·o` ms, give or take up to
/// 6% (a fixed pattern, so the fit has an interval), over varied sizes (p from 20 to 619
/// prompt tokens, o from 5 to 404 output tokens), spending `joules_per_token` J per output
/// token when given.
fn timed_calls(
    model: &str,
    n: u64,
    (base, per_prompt, per_output): (f64, f64, f64),
    joules_per_token: Option<f64>,
) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let (p, o) = (20 + (i * 37) % 600, 5 + (i * 53) % 400);
            let ts = (Utc::now() - ChronoDuration::minutes(90) + ChronoDuration::seconds(i as i64))
                .to_rfc3339();
            let mut r = json!({
                "model_name": model, "operation": "chat", "timestamp": ts, "success": true,
                "processing_time_ms": (base + per_prompt * p as f64 + per_output * o as f64)
                    * (1.0 + 0.03 * ((i % 5) as f64 - 2.0)),
                "prompt_tokens": p, "output_tokens": o, "load_duration_ms": 4.0,
                "quality_score": 4.0,
            });
            if let Some(j) = joules_per_token {
                r["energy_j"] = json!(j * o as f64);
            }
            r
        })
        .collect()
}

/// A sidecar that prices energy at 360 per kWh (0.1 per kJ, so figures are round) with a
/// fast model (about 1.2 s for 500 output tokens, 0.2 J per token), a slow one (about
/// 4.6 s, no energy measured) and one with too few calls to fit.
async fn two_speeds() -> (TestApp, FakeOllama) {
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| c.cost.price_per_kwh = Some(360.0)).await;
    let mut records = timed_calls("fast:1b", 40, (100.0, 0.5, 2.0), Some(0.2));
    records.extend(timed_calls("slow:7b", 40, (300.0, 1.0, 8.0), None));
    records.extend(timed_calls("new:3b", 4, (100.0, 0.5, 2.0), None));
    app.import(&records).await;
    (app, fake)
}

/// The call table's row of `model`.
fn call_row<'a>(page: &'a str, model: &str) -> &'a str {
    let marker = format!("data-predicted-for=\"{model}\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no call row for {model}"));
    let end = page[start..].find("</tr>").expect("row ends") + start;
    &page[start..end]
}

/// The number in `attribute="..."` of `html`.
fn attribute(html: &str, attribute: &str) -> f64 {
    let marker = format!("{attribute}=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {attribute} in {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("quoted") + start;
    html[start..end]
        .parse()
        .unwrap_or_else(|e| panic!("{attribute}: {e}"))
}

#[tokio::test]
async fn the_call_question_shows_who_meets_the_budget_with_predicts_numbers() {
    let (app, _fake) = two_speeds().await;
    let (status, _, page) = get(&app, "/dashboard?output_tokens=500&max_latency_ms=2000").await;
    assert_eq!(status, 200, "{page}");
    assert_well_formed(&page);
    assert!(
        page.contains("A call of 500 output tokens (each model&#39;s median prompt), within 2.0 s")
            || page
                .contains("A call of 500 output tokens (each model's median prompt), within 2.0 s"),
        "{page}"
    );
    assert!(
        page.contains("1 of 3 predicted to meet 2.0 s: </strong>fast:1b"),
        "{page}"
    );

    // Each predicted time, and its interval, is exactly what /predict answers.
    for model in ["fast:1b", "slow:7b"] {
        let row = call_row(&page, model);
        let answer: Value = http()
            .get(format!(
                "{}/api/model-performance/predict?model={model}&output_tokens=500",
                app.url
            ))
            .send()
            .await
            .expect("predict")
            .json()
            .await
            .expect("json");
        assert_eq!(
            attribute(row, "data-value"),
            answer["predicted_ms"].as_f64().expect("predicted"),
            "{model}: {row}"
        );
        assert_eq!(
            attribute(row, "data-low"),
            answer["low_ms"].as_f64().expect("low")
        );
        assert_eq!(
            attribute(row, "data-high"),
            answer["high_ms"].as_f64().expect("high")
        );
    }
    let fast = call_row(&page, "fast:1b");
    let fast_ms = attribute(fast, "data-value");
    // 100 + 0.5 × 267 (its median prompt) + 2 × 500 ms.
    assert!((fast_ms - 1233.0).abs() < 60.0, "{fast}");
    assert!(
        attribute(fast, "data-low") < fast_ms && fast_ms < attribute(fast, "data-high"),
        "an interval around it: {fast}"
    );
    assert!(fast.contains("data-budget=\"meets\""), "{fast}");
    // 0.2 J per token; 200 J per 1,000 tokens at 0.1 per kJ.
    assert!(fast.contains("0.200 J"), "{fast}");
    assert!(fast.contains("0.0200 USD"), "{fast}");

    // The slow one is over, its prediction the reason, in /recommend's words.
    let slow = call_row(&page, "slow:7b");
    let slow_ms = attribute(slow, "data-value");
    // 300 + 267 + 8 × 500 ms.
    assert!((slow_ms - 4567.0).abs() < 200.0, "{slow}");
    assert!(slow.contains("data-budget=\"over\""), "{slow}");
    assert!(
        slow.contains(&format!(
            "predicted {:.1} s (80% interval",
            slow_ms / 1000.0
        )),
        "{slow}"
    );
    assert!(slow.contains("is over max_latency_ms 2.0 s"), "{slow}");
    let recommend: Value = http()
        .get(format!(
            "{}/api/model-performance/recommend?expected_output_tokens=500&max_latency_ms=2000",
            app.url
        ))
        .send()
        .await
        .expect("recommend")
        .json()
        .await
        .expect("json");
    let over = recommend["excluded"]
        .as_array()
        .expect("excluded")
        .iter()
        .find(|e| e["model"] == "slow:7b")
        .expect("slow excluded by /recommend too");
    let reason = over["reason"].as_str().expect("reason");
    let prediction = reason.split(" for ").next().expect("the prediction first");
    assert!(slow.contains(prediction), "{prediction} / {slow}");
    // No energy measured: unknown, and why, below the table.
    assert!(slow.contains("data-unknown=\"energy\""), "{slow}");
    assert!(slow.contains("data-unknown=\"cost\""), "{slow}");
    assert!(page.contains("Energy unknown: no operation in the window carries an energy"));
    assert!(page.contains("Cost unknown: energy is priced ([cost] price_per_kwh) and its energy"));

    // Too few calls: no prediction, with /predict's reason.
    let new = call_row(&page, "new:3b");
    assert!(new.contains("no prediction"), "{new}");
    assert!(new.contains("at least 10"), "{new}");

    // The form shows what was asked and keeps the view; the view's links keep the question.
    assert!(page.contains("name=\"output_tokens\""), "{page}");
    assert!(page.contains("value=\"2000\""), "{page}");
    assert!(
        page.contains("<input type=\"hidden\" name=\"hours\" value=\"24\">"),
        "{page}"
    );
    assert!(
        page.contains("output_tokens=500&amp;max_latency_ms=2000"),
        "{page}"
    );
    assert!(page.contains("/api/model-performance/predict?output_tokens=500"));

    // Without a budget: the times, no verdict; a cold start none was measured for is
    // /predict's reason again.
    let (status, _, page) = get(
        &app,
        "/dashboard?output_tokens=500&prompt_tokens=100&hours=6",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_well_formed(&page);
    assert!(!page.contains("data-budget="), "no budget, no verdict");
    assert!(
        call_row(&page, "fast:1b").contains(">100<"),
        "the given prompt"
    );
    let (_, _, page) = get(&app, "/dashboard?output_tokens=500&cold=true").await;
    assert!(
        call_row(&page, "fast:1b").contains("no cold start"),
        "{page}"
    );
    // Not asked: no table.
    let (_, _, page) = get(&app, "/dashboard").await;
    assert!(!page.contains("data-predicted-for"));
    assert!(page.contains("value=\"500\""), "the form offers 500 tokens");
    app.stop().await;
}

#[tokio::test]
async fn a_bad_call_question_is_a_400_with_the_dashboard_and_the_message_by_the_form() {
    let (app, _fake) = two_speeds().await;
    for (query, expected) in [
        (
            "output_tokens=lots&max_latency_ms=0",
            "output_tokens: &quot;lots&quot; must be a whole number of tokens from 0 to 10000000; \
             max_latency_ms: &quot;0&quot; must be a number of milliseconds above 0",
        ),
        (
            "max_latency_ms=2000&hours=6",
            "output_tokens: required with prompt_tokens, max_latency_ms or cold",
        ),
        (
            "output_tokens=5&cold=maybe",
            "cold: &quot;maybe&quot; must be true or false",
        ),
    ] {
        let (status, content_type, page) = get(&app, &format!("/dashboard?{query}")).await;
        assert_eq!(status, 400, "{query}: {page}");
        assert_eq!(content_type, "text/html; charset=utf-8");
        assert_well_formed(&page);
        assert!(page.contains(expected), "{query}: {page}");
        // The rest of the dashboard is there, and the form right above the message.
        assert!(page.contains("data-model=\"fast:1b\""), "{query}");
        let form = page
            .find("<form class=\"question\"")
            .expect("the question's form");
        let message = page.find("<p class=\"message\">").expect("the message");
        assert!(form < message, "{query}");
        assert!(!page.contains("data-predicted-for"), "{query}: no answer");
        assert!(
            !page.contains("http-equiv=\"refresh\""),
            "no reload over the typing"
        );
    }
    // What was typed is shown back; the view's filters stay.
    let (_, _, page) = get(&app, "/dashboard?output_tokens=lots&hours=6").await;
    assert!(page.contains("value=\"lots\""), "{page}");
    assert!(page.contains("<option value=\"6\" selected>"), "{page}");
    // A bad value of any other parameter is still the plain 400 page.
    let (status, _, page) = get(&app, "/dashboard?output_tokens=500&hours=0").await;
    assert_eq!(status, 400);
    assert!(
        page.contains("The dashboard cannot show this view"),
        "{page}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_answers_the_call_question_too() {
    let (app, _fake) = two_speeds().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report.html");
    let run = |args: Vec<String>| {
        let server = app.url.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
                .arg("report")
                .args(["--server", &server])
                .args(args)
                .env_remove("OLLAMETER_SERVER")
                .output()
                .expect("runs")
        })
    };
    let output = run(vec![
        "--output-tokens".into(),
        "500".into(),
        "--max-latency-ms".into(),
        "2000".into(),
        "--out".into(),
        out.display().to_string(),
    ])
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page = std::fs::read_to_string(&out).expect("report written");
    assert_well_formed(&page);
    assert!(call_row(&page, "fast:1b").contains("data-budget=\"meets\""));
    assert!(call_row(&page, "slow:7b").contains("data-budget=\"over\""));
    for absent in ["<form", "href=\"/", "href=\"?", "http-equiv=\"refresh\""] {
        assert!(!page.contains(absent), "{absent} in the report");
    }
    // A bad value fails with the page's message.
    let output = run(vec![
        "--output-tokens".into(),
        "500".into(),
        "--max-latency-ms".into(),
        "0".into(),
    ])
    .await
    .expect("join");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("400: max_latency_ms: \"0\" must be a number of milliseconds"),
        "{stderr}"
    );
    app.stop().await;
}

/// Debian's `chromium`, or the binary `CHROMIUM` names. Missing, the test fails: a
/// dashboard no browser has rendered is not tested.
fn chromium() -> PathBuf {
    let named = std::env::var_os("CHROMIUM").map(PathBuf::from);
    let on_path = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    };
    named
        .or_else(on_path)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "this test needs a real browser: install Debian's chromium \
                 (apt-get install -y chromium) or set CHROMIUM to its path"
            )
        })
}

/// Runs headless chromium on `url` with `extra` arguments; returns stdout and stderr.
async fn run_chromium(profile: &Path, url: &str, extra: &[&str]) -> (String, String) {
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium finishes within 2 minutes")
        .expect("chromium runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "chromium failed: {stderr}");
    (stdout, stderr)
}

/// A day of calls to four models with different speeds, qualities and failure rates, the
/// second getting slower in the last hours: enough for every view to have something.
fn a_busy_day() -> Vec<Value> {
    let models = [
        ("llama3.2:3b", 420.0, 62.0, 4.1, 100),
        ("qwen2.5:7b", 950.0, 38.0, 4.4, 40),
        (
            "hf.co/bartowski/Mistral-Small-24B-Instruct-GGUF:Q4_K_M",
            2600.0,
            14.0,
            4.6,
            12,
        ),
        ("gemma3:1b", 240.0, 95.0, 3.2, 6),
    ];
    // A fixed pseudo-random sequence, so the picture is the same on every run.
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut records = Vec::new();
    for (model, time_ms, tps, quality, fail_one_in) in models {
        for i in 0..90 {
            let minutes_ago = (i * 1430 / 90) as i64 + (next() * 10.0) as i64;
            let slower = if model == "qwen2.5:7b" && minutes_ago < 300 {
                1.7
            } else {
                1.0
            };
            let jitter = 0.7 + 0.6 * next();
            let ts = (Utc::now() - ChronoDuration::minutes(minutes_ago)).to_rfc3339();
            records.push(json!({
                "model_name": model,
                "operation": if i % 3 == 0 { "summary" } else { "photo_evaluation" },
                "processing_time_ms": time_ms * jitter * slower,
                "ttft_ms": time_ms * 0.18 * jitter,
                "tokens_per_second": tps * (0.9 + 0.2 * next()),
                "quality_score": (quality + next() - 0.5_f64).clamp(1.0, 5.0),
                "success": i % fail_one_in != 7,
                "timestamp": ts,
                "tokens_generated": 120,
                "ollama_rss_mb": 2800.0 + 400.0 * next(),
            }));
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_renders_the_dashboard_without_console_errors() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    app.import(&a_busy_day()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("{}/dashboard", app.url);

    // The DOM as the browser built it, and everything it logged: a script error, a CSP
    // violation or a failed load would be a CONSOLE line.
    // The call question asked, so its form, message-free answer and table render too.
    let asked = format!("{url}?output_tokens=500&max_latency_ms=2000");
    let (dom, log) = run_chromium(&dir.path().join("profile-dom"), &asked, &["--dump-dom"]).await;
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    for id in [
        "chart-processing-time",
        "chart-tokens-per-second",
        "chart-quality",
        "chart-success-rate",
        "chart-trend",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    assert!(dom.contains("llama3.2:3b"));
    assert!(dom.contains("Recommendation"));
    assert!(
        dom.contains("A call of 500 output tokens"),
        "the call question's answer"
    );
    assert!(dom.contains("data-predicted-for=\"llama3.2:3b\""));

    // A screenshot: a real PNG of the requested size with more than a blank page in it.
    let shot = dir.path().join("dashboard.png");
    let (_, log) = run_chromium(
        &dir.path().join("profile-shot"),
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1800",
        ],
    )
    .await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {log}"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!((width, height), (1400, 1800));
    // A blank 1400x1800 page compresses to a few kB; charts and tables do not.
    assert!(png.len() > 60_000, "screenshot is only {} bytes", png.len());
    if let Some(keep) = std::env::var_os("OLLAMETER_DASHBOARD_SCREENSHOT") {
        let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join(keep);
        std::fs::copy(&shot, &keep).expect("keep the screenshot");
    }
    app.stop().await;
}
