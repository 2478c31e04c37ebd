//! The OpenAPI document against the API it describes: it lists exactly the routes the
//! router serves, every status it documents really happens, and schemathesis, fuzzing from
//! the document, finds no server error and no answer outside it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, Utc};
use common::fake_ollama::FakeOllama;
use common::harness::TestApp;
use ollameter::api::openapi::PENDING_ROUTES;
use serde_json::{Value, json};

const BASE: &str = "/api/model-performance";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn document(app: &TestApp) -> Value {
    let resp = client()
        .get(format!("{}{BASE}/openapi.json", app.url))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.expect("the document is JSON");
    assert!(
        doc["openapi"].as_str().expect("openapi").starts_with("3."),
        "{}",
        doc["openapi"]
    );
    doc
}

/// Every (METHOD, path) the document describes, with its operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&&**method) {
                out.insert((method.to_uppercase(), path.clone()), op);
            }
        }
    }
    out
}

/// `{*model}` (axum's catch-all) is `{model}` in OpenAPI.
fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

#[tokio::test]
async fn the_document_lists_every_served_route_and_each_documented_status_happens() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let doc = document(&app).await;
    let documented = operations(&doc);

    // Every route the router serves is documented, with its path parameters.
    let served: BTreeSet<(String, String)> = ollameter::api::served_routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), openapi_path(&path)))
        .collect();
    for route in &served {
        let op = documented
            .get(route)
            .unwrap_or_else(|| panic!("{route:?} is served but not in the OpenAPI document"));
        for name in route
            .1
            .split('{')
            .skip(1)
            .filter_map(|s| s.split('}').next())
        {
            let params = op["parameters"].as_array().expect("parameters");
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true),
                "{route:?}: path parameter {name} is not documented"
            );
        }
    }
    // And nothing else, but the routes still to come.
    for route in documented.keys() {
        let pending = PENDING_ROUTES.contains(&(route.0.as_str(), route.1.as_str()));
        assert!(
            served.contains(route) || pending,
            "{route:?} is documented but not served"
        );
    }

    // Each operation documents one 2xx and real statuses; errors have the one error shape.
    for (route, op) in &documented {
        let responses = op["responses"].as_object().expect("responses");
        let statuses: Vec<u16> = responses
            .keys()
            .map(|k| {
                k.parse()
                    .unwrap_or_else(|_| panic!("{route:?}: status {k}"))
            })
            .collect();
        for s in &statuses {
            let code = reqwest::StatusCode::from_u16(*s).expect("a status");
            assert!(code.canonical_reason().is_some(), "{route:?}: status {s}");
        }
        assert_eq!(
            statuses.iter().filter(|s| (200..300).contains(*s)).count(),
            1,
            "{route:?}: {statuses:?}"
        );
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{route:?} {status}"
                );
            }
        }
    }

    // Each documented status happens: one request per (route, status). 503 (the recorder
    // busy or stopping) cannot be provoked from outside and is left out.
    let http = client();
    // `/metrics` lives outside the API's prefix; everything else under it.
    let url = |path: &str| {
        if path == "/metrics" {
            format!("{}{path}", app.url)
        } else {
            format!("{}{BASE}{path}", app.url)
        }
    };
    let record = json!({"model_name": "hf.co/org/model:Q4_K_M", "operation": "chat",
                        "processing_time_ms": 120.5, "quality_score": 4});
    let created: Value = http
        .post(url("/record"))
        .json(&record)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let model = "hf.co/org/model:Q4_K_M";
    // A benchmark run that fails at once (its one model is not installed), so that the
    // next start is not a conflict.
    let failed: Value = http
        .post(url("/benchmark"))
        .json(&json!({"models": ["never-installed"]}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let run = failed["id"].as_str().expect("run id").to_string();
    for _ in 0..500 {
        let s: Value = http
            .get(url(&format!("/benchmark/{run}")))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        if s["state"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let long_run = json!({"models": ["llama3.2:latest"], "runs": 1000});
    let cases: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("GET", "/health".into(), None, 200),
        ("POST", "/record".into(), Some(record.clone()), 201),
        (
            "POST",
            "/record".into(),
            Some(json!({"model_name": "m"})),
            400,
        ),
        ("POST", "/import".into(), Some(json!([record])), 200),
        ("POST", "/import".into(), Some(json!(42)), 400),
        (
            "POST",
            format!("/records/{id}/quality"),
            Some(json!({"quality_score": 3})),
            200,
        ),
        (
            "POST",
            format!("/records/{id}/quality"),
            Some(json!({"quality_score": 9})),
            400,
        ),
        (
            "POST",
            "/records/no-such-id/quality".into(),
            Some(json!({"quality_score": 3})),
            404,
        ),
        ("GET", "/statistics".into(), None, 200),
        ("GET", "/statistics?duration_hours=0".into(), None, 400),
        ("GET", format!("/statistics/{model}"), None, 200),
        (
            "GET",
            format!("/statistics/{model}?duration_hours=x"),
            None,
            400,
        ),
        ("GET", "/statistics/never-seen".into(), None, 404),
        (
            "POST",
            "/compare".into(),
            Some(json!({"models": [model]})),
            200,
        ),
        ("POST", "/compare".into(), Some(json!({"models": []})), 400),
        ("GET", "/recommend".into(), None, 200),
        ("GET", "/recommend?priority=cheap".into(), None, 400),
        ("GET", "/predict?output_tokens=5".into(), None, 200),
        ("GET", "/predict?output_tokens=x".into(), None, 400),
        (
            "GET",
            "/predict?model=never-seen&output_tokens=5".into(),
            None,
            404,
        ),
        (
            "GET",
            format!("/predict?model={model}&output_tokens=5"),
            None,
            422,
        ),
        ("GET", "/routing".into(), None, 200),
        ("GET", format!("/trend/{model}"), None, 200),
        ("GET", format!("/trend/{model}?metric=vibes"), None, 400),
        ("GET", "/trend/never-seen".into(), None, 404),
        ("GET", "/insights".into(), None, 200),
        ("GET", "/insights?duration_hours=-1".into(), None, 400),
        ("GET", "/alerts?state=firing".into(), None, 200),
        ("GET", "/alerts?state=open".into(), None, 400),
        ("GET", "/export".into(), None, 200),
        ("GET", "/export?format=xml".into(), None, 400),
        ("GET", "/openapi.json".into(), None, 200),
        ("GET", "/system".into(), None, 200),
        ("GET", "/metrics".into(), None, 200),
        ("POST", "/clear-old".into(), Some(json!({"days": 0})), 400),
        ("POST", "/clear-old".into(), Some(json!({"days": 30})), 200),
        ("DELETE", format!("/clear/{model}"), None, 200),
        ("GET", format!("/benchmark/{run}"), None, 200),
        ("GET", "/benchmark/no-such-run".into(), None, 404),
        ("DELETE", format!("/benchmark/{run}"), None, 200),
        ("DELETE", "/benchmark/no-such-run".into(), None, 404),
        ("POST", "/benchmark".into(), Some(json!({"runs": 2})), 400),
        ("POST", "/benchmark".into(), Some(long_run.clone()), 202),
        ("POST", "/benchmark".into(), Some(long_run), 409),
    ];
    let mut happened = BTreeSet::new();
    for (method, path, body, expected) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = http.request(method.clone(), url(&path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let resp = request.send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        assert_eq!(status, expected, "{method} {path}: {text}");
        // The route the request matched, in the document's spelling.
        let route = ollameter::api::served_routes()
            .into_iter()
            .map(|(m, p)| (m.to_string(), openapi_path(&p)))
            .find(|(m, p)| {
                let full = if path == "/metrics" {
                    path.clone()
                } else {
                    format!("{BASE}{path}")
                };
                *m == method.as_str() && matches(p, &full)
            })
            .unwrap_or_else(|| panic!("{method} {path}: no route"));
        happened.insert((route.0, route.1, status.to_string()));
    }
    for ((method, path), op) in &documented {
        if PENDING_ROUTES.contains(&(method.as_str(), path.as_str())) {
            continue;
        }
        for status in op["responses"].as_object().expect("responses").keys() {
            if status == "503" {
                continue;
            }
            assert!(
                happened.contains(&(method.clone(), path.clone(), status.clone())),
                "{method} {path} documents {status}, and no case here shows it: add one"
            );
        }
    }
    app.stop().await;
}

/// Whether a concrete request path matches a documented path; a `{param}` takes the rest of
/// the path when it is last (model names contain `/`), else one segment.
fn matches(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    for (i, segment) in t.iter().enumerate() {
        let is_param = segment.starts_with('{');
        match p.get(i) {
            None => return false,
            Some(_) if is_param && i == t.len() - 1 => return true,
            Some(_) if is_param => {}
            Some(actual) if actual == segment => {}
            Some(_) => return false,
        }
    }
    t.len() == p.len()
}

/// Seeds a spread of data for schemathesis to read: models whose names carry `/` and `:`,
/// failures, quality scores, memory figures, a model that slows down over the last hours
/// (trend and insights have something to say), one with too few operations to be
/// recommended, and a sub-millisecond record (the edge that once broke `/compare`).
async fn seed(app: &TestApp) {
    let http = client();
    let url = format!("{}{BASE}/record", app.url);
    let models = [
        ("llama3.1:8b-instruct", 900.0, Some(4.2), Some(6144.0)),
        ("hf.co/org/model:Q4_K_M", 400.0, Some(3.6), Some(3072.0)),
        ("qwen2.5:0.5b", 90.0, None, None),
    ];
    for (model, time_ms, quality, vram) in models {
        for i in 0..12u32 {
            let minutes_ago = i64::from(i) * 25;
            let body = json!({
                "model_name": model,
                "operation": if i % 2 == 0 { "chat" } else { "photo_evaluation" },
                "processing_time_ms": time_ms * (1.0 + f64::from(12 - i) / 10.0),
                "ttft_ms": time_ms / 4.0,
                "quality_score": quality,
                "success": i % 5 != 4,
                "vram_mb": vram,
                "gpu_memory_mb": vram,
                "ollama_rss_mb": 512.0,
                "output_tokens": 40 + i,
                "timestamp": (Utc::now() - ChronoDuration::minutes(minutes_ago)).to_rfc3339(),
            });
            let resp = http.post(&url).json(&body).send().await.expect("send");
            assert_eq!(
                resp.status(),
                201,
                "{}",
                resp.text().await.unwrap_or_default()
            );
        }
    }
    for body in [
        json!({"model_name": "tiny:1b", "operation": "chat", "processing_time_ms": 12}),
        json!({"model_name": "tiny:1b", "operation": "chat", "processing_time_ms": 1e-300,
               "tokens_generated": 5}),
    ] {
        let resp = http.post(&url).json(&body).send().await.expect("send");
        assert_eq!(resp.status(), 201);
    }
    // And one call through the proxy, so a proxied record is there too.
    let resp = http
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": "llama3.2", "prompt": "hi", "stream": false}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("body");
    app.wait_records(3 * 12 + 3).await;
}

/// Runs `schemathesis run` over the document with `args`; panics with its output when it
/// found anything.
async fn schemathesis(app: &TestApp, args: &[&str]) {
    let schema = format!("{}{BASE}/openapi.json", app.url);
    let mut command = std::process::Command::new("python3");
    // Through the interpreter scripts/test installs into, whatever is on PATH.
    command
        .args([
            "-c",
            "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
            "run",
            &schema,
            "--url",
            &app.url,
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
            "--seed",
            "20261127",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
        ])
        .args(args)
        .env("NO_PROXY", "*")
        .env("PYTHONIOENCODING", "utf-8");
    // Routes documented ahead of their handlers are not there to test yet.
    for (_, path) in PENDING_ROUTES {
        command.args(["--exclude-path", path]);
    }
    // Its reports and caches go to a directory of their own, not the repository.
    let dir = tempfile::tempdir().expect("tempdir");
    command.current_dir(dir.path());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains("No module named"),
        "schemathesis is not installed (scripts/test installs tests/python/requirements.txt):\n{text}"
    );
    assert!(output.status.success(), "schemathesis failed:\n{text}");
    eprintln!("{text}");
}

/// Schemathesis generates requests from the document (valid and invalid ones) and checks
/// every answer: no 5xx, a documented status, the documented content type and schema.
/// Bounded: a few dozen examples per operation with a fixed seed, about half a minute here.
/// The destructive routes run in a second pass, so they cannot empty the store while the
/// read routes are being tested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    seed(&app).await;
    let started = Instant::now();
    let clear_model = format!("{BASE}/clear/{{model}}");
    let clear_old = format!("{BASE}/clear-old");
    let benchmark = format!("{BASE}/benchmark");
    let benchmark_run = format!("{BASE}/benchmark/{{id}}");
    schemathesis(
        &app,
        &[
            "--max-examples",
            "60",
            "--exclude-path",
            &clear_model,
            "--exclude-path",
            &clear_old,
            "--exclude-path",
            &benchmark,
            "--exclude-path",
            &benchmark_run,
        ],
    )
    .await;
    // The benchmark routes on their own: a run one of them starts makes calls through the
    // proxy until the sidecar stops, and must not load the machine under the other routes.
    schemathesis(
        &app,
        &[
            "--max-examples",
            "30",
            "--include-path",
            &benchmark,
            "--include-path",
            &benchmark_run,
        ],
    )
    .await;
    schemathesis(
        &app,
        &[
            "--max-examples",
            "30",
            "--include-path",
            &clear_model,
            "--include-path",
            &clear_old,
        ],
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "schemathesis took {:?}; keep it bounded",
        started.elapsed()
    );
    app.stop().await;
}
