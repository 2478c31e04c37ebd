//! The statistics API end to end: every route, its bad input, and recommendations that
//! follow the data.

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
        (
            Api {
                app,
                http: reqwest::Client::builder()
                    .no_proxy()
                    .build()
                    .expect("client"),
            },
            fake,
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{BASE}{path}", self.app.url)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self.http.get(self.url(path)).send().await.expect("send");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_raw(path, body.to_string().into_bytes(), "application/json")
            .await
    }

    async fn post_raw(&self, path: &str, body: Vec<u8>, content_type: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("send");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let resp = self.http.delete(self.url(path)).send().await.expect("send");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Records `n` operations of a model by hand, `minutes_ago` in the past.
    async fn seed(
        &self,
        model: &str,
        n: usize,
        time_ms: f64,
        quality: Option<f64>,
        success: bool,
        minutes_ago: i64,
    ) {
        let ts = (Utc::now() - ChronoDuration::minutes(minutes_ago)).to_rfc3339();
        let records: Vec<Value> = (0..n)
            .map(|i| {
                json!({"model_name": model, "operation": "photo_evaluation",
                       "processing_time_ms": time_ms + i as f64 % 3.0, "quality_score": quality,
                       "success": success, "timestamp": ts, "tokens_generated": 50})
            })
            .collect();
        let (status, body) = self.post("/import", &json!(records)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["imported"], n, "{body}");
    }
}

#[tokio::test]
async fn a_manual_record_is_acknowledged_after_it_is_stored_and_counted() {
    let (api, _fake) = Api::start().await;
    let (status, body) = api
        .post("/record", &json!({"model_name": "hf.co/org/model:Q4_K_M", "operation": "photo_evaluation",
                                  "processing_time_ms": 1234.5, "quality_score": 4.2, "success": true}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["id"].is_string());
    // No flush: acknowledged means committed.
    let store = ollameter::store::Store::open_reader(&api.app.db).expect("reader");
    assert_eq!(store.count().expect("count"), 1);
    let (status, stats) = api.get("/statistics/hf.co/org/model:Q4_K_M").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["total_operations"], 1);
    assert_eq!(stats["processing_time_ms"]["p50"], 1234.5);
    assert_eq!(stats["quality"]["avg"], 4.2);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let (api, _fake) = Api::start().await;
    let ok = json!({"model_name": "m", "operation": "op", "processing_time_ms": 10});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = vec![
        (with("quality_score", json!(7)), "quality_score"),
        (with("quality_score", json!(0)), "quality_score"),
        (with("processing_time_ms", json!(-5)), "processing_time_ms"),
        (
            with("processing_time_ms", json!("NaN")),
            "processing_time_ms",
        ),
        (
            with("processing_time_ms", json!(1e308)),
            "processing_time_ms",
        ),
        (with("success", json!("yes")), "success"),
        (with("model_name", json!(42)), "model_name"),
        (with("timestamp", json!("last tuesday")), "timestamp"),
    ];
    for (body, field) in cases {
        let (status, answer) = api.post("/record", &body).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            answer["error"].as_str().expect("message").contains(field),
            "{body}: {answer}"
        );
    }
    let (status, answer) = api
        .post_raw("/record", b"{not json".to_vec(), "application/json")
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .expect("message")
            .contains("not valid JSON")
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let (status, _) = api
        .post_raw("/record", deep.into_bytes(), "application/json")
        .await;
    assert_eq!(status, 400, "deep nesting is refused, not a crash");

    api.seed("m", 3, 10.0, None, true, 1).await;
    for (path, field) in [
        ("/statistics/m?duration_hours=0", "duration_hours"),
        ("/statistics/m?duration_hours=-1", "duration_hours"),
        ("/statistics/m?duration_hours=abc", "duration_hours"),
        ("/statistics?duration_hours=NaN", "duration_hours"),
        ("/recommend?priority=cheapest", "priority"),
        ("/recommend?min_operations=-3", "min_operations"),
        ("/recommend?available_vram_gb=0", "available_vram_gb"),
        ("/trend/m?metric=vibes", "metric"),
        ("/trend/m?hours=0", "hours"),
        ("/trend/m?bucket_minutes=0", "bucket_minutes"),
        ("/insights?duration_hours=-2", "duration_hours"),
        ("/export?format=xml", "format"),
    ] {
        let (status, answer) = api.get(path).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            answer["error"].as_str().expect("message").contains(field),
            "{path}: {answer}"
        );
    }
    for (path, body, field) in [
        ("/compare", json!({"models": "m"}), "models"),
        (
            "/compare",
            json!({"models": ["m"], "duration_hours": 0}),
            "duration_hours",
        ),
        ("/clear-old", json!({"days": -1}), "days"),
        ("/clear-old", json!({}), "days"),
        (
            "/records/x/quality",
            json!({"quality_score": 9}),
            "quality_score",
        ),
    ] {
        let (status, answer) = api.post(path, &body).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().expect("message").contains(field),
            "{path}: {answer}"
        );
    }
    let (status, _) = api.get("/statistics/never-seen").await;
    assert_eq!(status, 404);
    let (status, _) = api.get("/trend/never-seen").await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post("/records/no-such-id/quality", &json!({"quality_score": 3}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn statistics_compare_and_filters() {
    let (api, _fake) = Api::start().await;
    api.seed("llama3.1:8b-instruct", 20, 1000.0, Some(4.5), true, 10)
        .await;
    api.seed("llama3.2:3b-instruct", 20, 300.0, Some(3.5), true, 10)
        .await;
    api.seed("llama3.2:3b-instruct", 5, 300.0, None, false, 60 * 48)
        .await;
    let (status, all) = api.get("/statistics").await;
    assert_eq!(status, 200);
    assert_eq!(
        all["models"]["llama3.2:3b-instruct"]["total_operations"],
        25
    );
    let (_, recent) = api.get("/statistics?duration_hours=24").await;
    assert_eq!(
        recent["models"]["llama3.2:3b-instruct"]["total_operations"],
        20
    );
    assert_eq!(
        recent["models"]["llama3.2:3b-instruct"]["failed_operations"],
        0
    );
    let (_, other_op) = api
        .get("/statistics/llama3.2:3b-instruct?operation=chat")
        .await;
    assert_eq!(other_op["total_operations"], 0);
    let (status, cmp) = api
        .post("/compare", &json!({"models": ["llama3.1:8b-instruct", "llama3.2:3b-instruct", "ghost"], "duration_hours": 24}))
        .await;
    assert_eq!(status, 200, "{cmp}");
    assert_eq!(cmp["rankings"]["fastest"]["model"], "llama3.2:3b-instruct");
    assert_eq!(
        cmp["rankings"]["highest_quality"]["model"],
        "llama3.1:8b-instruct"
    );
    assert_eq!(cmp["missing"], json!(["ghost"]));
}

#[tokio::test]
async fn recommendations_follow_the_data() {
    let (api, _fake) = Api::start().await;
    api.seed("big:70b", 30, 4000.0, Some(4.8), true, 30).await;
    api.seed("mid:8b", 30, 1000.0, Some(4.0), true, 30).await;
    api.seed("tiny:1b", 3, 50.0, Some(5.0), true, 30).await;
    let (status, rec) = api.get("/recommend?priority=speed").await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(
        rec["recommended_model"], "mid:8b",
        "3 lucky operations do not win: {rec}"
    );
    assert!(
        rec["excluded"]
            .as_array()
            .expect("list")
            .iter()
            .any(|e| e["model"] == "tiny:1b")
    );
    let (_, rec) = api.get("/recommend?priority=quality").await;
    assert_eq!(rec["recommended_model"], "big:70b");

    // A faster model appears with enough data: speed follows it.
    api.seed("fast:3b", 30, 200.0, Some(3.9), true, 5).await;
    let (_, rec) = api.get("/recommend?priority=speed").await;
    assert_eq!(rec["recommended_model"], "fast:3b");

    // It degrades: failures pile up, so reliability moves away from it.
    api.seed("fast:3b", 30, 200.0, None, false, 1).await;
    let (_, rec) = api.get("/recommend?priority=reliable").await;
    assert_ne!(rec["recommended_model"], "fast:3b", "{rec}");

    // VRAM shrinks: the big model's measured need no longer fits.
    let need = json!({"model_name": "big:70b", "operation": "photo_evaluation", "processing_time_ms": 4000,
                      "vram_mb": 40960, "quality_score": 4.8, "success": true});
    assert_eq!(api.post("/record", &need).await.0, 201);
    let (_, rec) = api
        .get("/recommend?priority=quality&available_vram_gb=24")
        .await;
    assert_ne!(rec["recommended_model"], "big:70b");
    let excluded = rec["excluded"].as_array().expect("list");
    let big = excluded
        .iter()
        .find(|e| e["model"] == "big:70b")
        .expect("big excluded");
    assert!(
        big["reason"].as_str().expect("reason").contains("VRAM"),
        "{big}"
    );

    // Nothing qualifies: 200 with a null model and the reason.
    let (status, rec) = api.get("/recommend?min_operations=1000").await;
    assert_eq!(status, 200);
    assert_eq!(rec["recommended_model"], Value::Null);
    assert!(!rec["reason"].as_str().expect("reason").is_empty());
    let (_, rec) = api.get("/recommend?available_models=ghost").await;
    assert_eq!(rec["recommended_model"], Value::Null);
    assert_eq!(rec["excluded"][0]["model"], "ghost");
}

#[tokio::test]
async fn trends_and_insights() {
    let (api, _fake) = Api::start().await;
    for (minutes_ago, time) in [
        (300, 100.0),
        (240, 150.0),
        (180, 200.0),
        (120, 250.0),
        (60, 300.0),
        (1, 350.0),
    ] {
        api.seed("slowing:7b", 12, time, Some(4.0), true, minutes_ago)
            .await;
    }
    let (status, t) = api
        .get("/trend/slowing:7b?metric=processing_time&hours=6&bucket_minutes=60")
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["direction"], "degrading", "{t}");
    assert!(t["slope_per_hour"].as_f64().expect("slope") > 0.0);
    assert!(t["buckets"].as_array().expect("buckets").len() >= 6);
    let (_, t) = api.get("/trend/slowing:7b?metric=quality&hours=6").await;
    assert_eq!(t["direction"], "stable");
    let (status, ins) = api.get("/insights?duration_hours=6").await;
    assert_eq!(status, 200, "{ins}");
    let list = ins["insights"].as_array().expect("list");
    assert!(
        list.iter()
            .any(|i| i["model"] == "slowing:7b" && i["kind"] == "processing_time_degradation"),
        "{ins}"
    );
}

#[tokio::test]
async fn export_then_import_round_trips_in_every_format() {
    let (api, fake) = Api::start().await;
    api.seed("a:1b", 4, 10.0, Some(3.0), true, 5).await;
    api.seed("b/c:2b", 3, 20.0, None, false, 5).await;
    let manual = json!({"model_name": "a:1b", "operation": "chat", "processing_time_ms": 7.25,
                        "ollama_rss_mb": 512.5, "gpu_memory_mb": 2048, "tokens_generated": 9,
                        "host": "gpu-1", "energy_j": 4.5, "energy_source": "gpu_power"});
    assert_eq!(api.post("/record", &manual).await.0, 201);
    let stored = api.app.records().await;
    assert!(
        stored
            .iter()
            .any(|r| r.source == ollameter::record::Source::Manual
                && r.host.as_deref() == Some("gpu-1")
                && r.energy_j == Some(4.5))
    );
    for format in ["json", "csv", "ndjson"] {
        let resp = api
            .http
            .get(api.url(&format!("/export?format={format}")))
            .send()
            .await
            .expect("export");
        assert_eq!(resp.status(), 200);
        let body = resp.bytes().await.expect("body").to_vec();
        if format == "csv" {
            let header = String::from_utf8_lossy(&body)
                .lines()
                .next()
                .expect("header")
                .to_string();
            assert_eq!(header, ollameter::record::FIELD_NAMES.join(","));
        }
        let other = TestApp::start(&fake.url()).await;
        let imported: Value = api
            .http
            .post(format!("{}{BASE}/import?format={format}", other.url))
            .body(body.clone())
            .send()
            .await
            .expect("import")
            .json()
            .await
            .expect("json");
        assert_eq!(imported["imported"], 8, "{format}: {imported}");
        let mut back = other.records().await;
        let mut expected = stored.clone();
        back.sort_by(|a, b| a.id.cmp(&b.id));
        expected.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(back, expected, "{format} round trip");
        // Importing the same export twice keeps one copy.
        let again: Value = api
            .http
            .post(format!("{}{BASE}/import?format={format}", other.url))
            .body(body)
            .send()
            .await
            .expect("import")
            .json()
            .await
            .expect("json");
        assert_eq!(again["imported"], 0);
        assert_eq!(again["skipped_existing"], 8);
        other.stop().await;
    }
    let (_, only_b) = api.get("/statistics").await;
    assert_eq!(only_b["models"].as_object().expect("models").len(), 2);
    assert_eq!(only_b["models"]["a:1b"]["total_operations"], 5);
    let resp = api
        .http
        .get(api.url("/export?format=ndjson&model=b/c:2b"))
        .send()
        .await
        .expect("export");
    assert_eq!(resp.text().await.expect("text").lines().count(), 3);
}

#[tokio::test]
async fn the_earlier_systems_file_imports_with_bad_rows_reported() {
    let (api, _fake) = Api::start().await;
    let file = json!({
        "records": {
            "llama3.1:8b-instruct": [
                {"operation": "photo_evaluation", "processing_time_ms": 1200.5, "quality_score": 4.1,
                 "success": true, "timestamp": "2025-11-09T10:00:00.123456", "memory_usage_mb": 5000},
                {"operation": "photo_evaluation", "processing_time_ms": -3, "success": true,
                 "timestamp": "2025-11-09T10:01:00"}
            ],
            "llava:7b": [
                {"model_name": "llava:7b", "operation": "photo_evaluation", "processing_time_ms": 800,
                 "quality_score": 9, "success": true, "timestamp": "2025-11-09T10:02:00"},
                {"model_name": "llava:7b", "operation": "photo_evaluation", "processing_time_ms": 810,
                 "success": false, "timestamp": "2025-11-09T10:03:00"}
            ]
        },
        "last_updated": "2025-11-09T10:05:00"
    });
    let (status, report) = api.post("/import", &file).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["imported"], 2);
    assert_eq!(report["rejected_count"], 2);
    let rejected = report["rejected"].as_array().expect("list");
    assert!(
        rejected
            .iter()
            .any(|r| r["at"] == "records.llama3.1:8b-instruct[1]"
                && r["error"]
                    .as_str()
                    .expect("e")
                    .contains("processing_time_ms")),
        "{report}"
    );
    assert!(
        rejected
            .iter()
            .any(|r| r["error"].as_str().expect("e").contains("quality_score"))
    );
    let ndjson = b"{\"model_name\":\"m\",\"operation\":\"o\",\"processing_time_ms\":1}\nnot json\n{\"model_name\":\"m\"}\n";
    let (status, report) = api
        .post_raw("/import", ndjson.to_vec(), "application/x-ndjson")
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["imported"], 1);
    assert_eq!(report["rejected"][0]["at"], "line 2");
    assert_eq!(report["rejected"][1]["at"], "line 3");
}

#[tokio::test]
async fn quality_can_be_attached_to_a_proxied_call_and_data_cleared() {
    let (api, fake) = Api::start().await;
    let resp = api
        .http
        .post(format!("{}/api/generate", api.app.url))
        .json(&json!({"model": "llama3.2", "prompt": "rate", "stream": false}))
        .send()
        .await
        .expect("send");
    let id = resp.headers()["x-ollameter-record-id"]
        .to_str()
        .expect("id")
        .to_string();
    resp.bytes().await.expect("body");
    let (status, body) = api
        .post(
            &format!("/records/{id}/quality"),
            &json!({"quality_score": 4.5}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, stats) = api.get("/statistics/llama3.2").await;
    assert_eq!(stats["quality"]["avg"], 4.5);
    assert_eq!(stats["quality"]["scored_operations"], 1);

    api.seed("old:1b", 2, 5.0, None, true, 60 * 24 * 10).await;
    let (status, cleared) = api.post("/clear-old", &json!({"days": 7})).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["deleted"], 2);
    assert_eq!(api.get("/statistics/old:1b").await.0, 404);
    let (status, cleared) = api.delete("/clear/llama3.2").await;
    assert_eq!(status, 200);
    assert_eq!(cleared["deleted"], 1);
    assert_eq!(api.get("/statistics/llama3.2").await.0, 404);
    assert!(api.app.records().await.is_empty());
    drop(fake);
}

/// Found by checking answers against the OpenAPI document: a path parameter that is not
/// UTF-8 was axum's plain-text 400, not the API's `{"error"}`.
#[tokio::test]
async fn a_path_parameter_that_is_not_utf8_is_a_json_400_naming_it() {
    let (api, _fake) = Api::start().await;
    for (method, path, name) in [
        (reqwest::Method::GET, "/statistics/%FF", "model"),
        (reqwest::Method::GET, "/trend/a%C3", "model"),
        (reqwest::Method::DELETE, "/clear/%FF%FE", "model"),
        (reqwest::Method::POST, "/records/%FF/quality", "id"),
    ] {
        let resp = api
            .http
            .request(method.clone(), api.url(path))
            .json(&json!({"quality_score": 3}))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400, "{method} {path}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.expect("json");
        assert!(
            body["error"].as_str().expect("message").contains(name),
            "{method} {path}: {body}"
        );
    }
}

/// Found by schemathesis' sub-millisecond processing times: the throughput derived from
/// them was absurd (5e303 tokens/s, or infinite), so `/compare` ranked it with a `value` of
/// null where the document promises a number, and its export could not be imported back.
#[tokio::test]
async fn a_sub_millisecond_record_keeps_rankings_numeric_and_its_export_importable() {
    let (api, fake) = Api::start().await;
    let (status, _) = api
        .post(
            "/record",
            &json!({"model_name": "quick:1b", "operation": "chat", "processing_time_ms": 1e-300,
                    "tokens_generated": 5}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, cmp) = api.post("/compare", &json!({"models": ["quick:1b"]})).await;
    assert_eq!(status, 200, "{cmp}");
    for (name, ranking) in cmp["rankings"].as_object().expect("rankings") {
        assert!(
            ranking.is_null() || ranking["value"].is_number(),
            "{name}: {ranking}"
        );
    }
    let export = api
        .http
        .get(api.url("/export?format=ndjson"))
        .send()
        .await
        .expect("export")
        .bytes()
        .await
        .expect("body");
    let other = TestApp::start(&fake.url()).await;
    let report: Value = api
        .http
        .post(format!("{}{BASE}/import?format=ndjson", other.url))
        .body(export)
        .send()
        .await
        .expect("import")
        .json()
        .await
        .expect("json");
    assert_eq!(report["imported"], 1, "{report}");
    other.stop().await;
}
