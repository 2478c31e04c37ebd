//! Several sidecars on one PostgreSQL: traffic through one shows in the others'
//! statistics and recommendation, deletions and quality feedback reach every instance, and
//! the database going away (at start, or restarted under load) loses and duplicates
//! nothing while proxied traffic carries on.

#[path = "pg/cluster.rs"]
mod cluster;
mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use cluster::Cluster;
use common::fake_ollama::FakeOllama;
use common::harness::TestApp;
use ollameter::record::Record;
use ollameter::store::StoreLocation;
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

async fn start_on(fake: &FakeOllama, url: &str, instance: &str) -> TestApp {
    let url = url.to_string();
    let instance = instance.to_string();
    TestApp::start_with(&fake.url(), move |config| {
        config.store.path = PathBuf::from(url);
        config.recorder.instance = instance;
        config.telemetry.enabled = false;
    })
    .await
}

async fn generate(c: &reqwest::Client, app: &TestApp, model: &str, prompt: &str) -> u16 {
    let resp = c
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": model, "prompt": prompt, "stream": false}))
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    resp.bytes().await.expect("body");
    status
}

async fn get(c: &reqwest::Client, app: &TestApp, path: &str) -> (u16, Value) {
    let resp = c
        .get(format!("{}/api/model-performance{path}", app.url))
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls `check` every 20 ms until it holds or `limit` passes; says whether it held.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every record in the database, read directly.
async fn stored(url: &str) -> Vec<Record> {
    let location = StoreLocation::parse(url).expect("url");
    tokio::task::spawn_blocking(move || {
        location
            .open_reader()
            .expect("reader")
            .all_records(None)
            .expect("records")
    })
    .await
    .expect("join")
}

fn operations(stats: &Value) -> u64 {
    stats["total_operations"].as_u64().unwrap_or(0)
}

/// How long the tests give an instance to see another's writes. The promise is 1 s (the
/// follow interval is 250 ms); the bound is wider so a loaded CI machine does not fail a
/// correct build, and the catch-up time itself is measured in `cargo bench --bench pg`.
const SEEN_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_on_one_database_answer_the_same() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("pg");
    let url = cluster.create_database("fleet");
    let fake = FakeOllama::start().await;
    let a = start_on(&fake, &url, "a").await;
    let b = start_on(&fake, &url, "b").await;
    let c = http();
    for i in 0..12 {
        assert_eq!(generate(&c, &a, "llama3.2", &format!("a {i}")).await, 200);
    }
    for i in 0..3 {
        assert_eq!(generate(&c, &b, "qwen2.5:7b", &format!("b {i}")).await, 200);
    }
    // B sees A's twelve calls in its statistics and its recommendation, and A sees B's.
    assert!(
        eventually(SEEN_WITHIN, || async {
            operations(&get(&c, &b, "/statistics/llama3.2").await.1) == 12
        })
        .await,
        "B's statistics never showed A's traffic: {}",
        get(&c, &b, "/statistics/llama3.2").await.1
    );
    assert!(
        eventually(SEEN_WITHIN, || async {
            operations(&get(&c, &a, "/statistics/qwen2.5:7b").await.1) == 3
        })
        .await,
        "A never saw B's traffic"
    );
    let (status, rec_b) = get(&c, &b, "/recommend?min_operations=5").await;
    assert_eq!(status, 200, "{rec_b}");
    assert_eq!(rec_b["recommended_model"], "llama3.2", "{rec_b}");
    let (_, rec_a) = get(&c, &a, "/recommend?min_operations=5").await;
    assert_eq!(rec_a["recommended_model"], rec_b["recommended_model"]);
    assert_eq!(
        get(&c, &a, "/statistics/llama3.2").await.1["processing_time_ms"],
        get(&c, &b, "/statistics/llama3.2").await.1["processing_time_ms"],
        "the same figures on both"
    );
    // Each record names the instance that stored it.
    let records = stored(&url).await;
    assert_eq!(records.len(), 15);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.model == "llama3.2" && r.instance == "a")
            .count(),
        12
    );
    assert!(
        records
            .iter()
            .filter(|r| r.model == "qwen2.5:7b")
            .all(|r| r.instance == "b")
    );

    // Quality feedback given on B reaches A.
    let scored = records
        .iter()
        .find(|r| r.model == "llama3.2")
        .expect("a record");
    let resp = c
        .post(format!(
            "{}/api/model-performance/records/{}/quality",
            b.url, scored.id
        ))
        .json(&json!({"quality_score": 5}))
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    assert!(
        eventually(SEEN_WITHIN, || async {
            get(&c, &a, "/statistics/llama3.2").await.1["quality"]["scored_operations"] == 1
        })
        .await,
        "A never saw B's quality score: {}",
        get(&c, &a, "/statistics/llama3.2").await.1
    );

    // A clear on B reaches A.
    let resp = c
        .delete(format!("{}/api/model-performance/clear/llama3.2", b.url))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(
        eventually(SEEN_WITHIN, || async {
            get(&c, &a, "/statistics/llama3.2").await.0 == 404
        })
        .await,
        "A still has the cleared model: {}",
        get(&c, &a, "/statistics/llama3.2").await.1
    );
    assert_eq!(
        operations(&get(&c, &a, "/statistics/qwen2.5:7b").await.1),
        3
    );

    // clear-old on A reaches B.
    let resp = c
        .post(format!("{}/api/model-performance/clear-old", a.url))
        .json(&json!({"days": 0.000_000_1}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert!(
        eventually(SEEN_WITHIN, || async {
            get(&c, &b, "/statistics/qwen2.5:7b").await.0 == 404
        })
        .await,
        "B still has records cleared on A"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_loads_everything_already_stored() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("pg");
    let url = cluster.create_database("late");
    let fake = FakeOllama::start().await;
    let a = start_on(&fake, &url, "a").await;
    let c = http();
    for i in 0..7 {
        assert_eq!(generate(&c, &a, "llama3.2", &format!("{i}")).await, 200);
    }
    a.running().recorder.flush().await;
    let late = start_on(&fake, &url, "late").await;
    assert!(
        eventually(SEEN_WITHIN, || async {
            operations(&get(&c, &late, "/statistics/llama3.2").await.1) == 7
        })
        .await
    );
    a.stop().await;
    late.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_restarted_under_load_loses_and_duplicates_nothing() {
    let cluster = std::sync::Arc::new(
        tokio::task::spawn_blocking(Cluster::start)
            .await
            .expect("pg"),
    );
    let url = cluster.create_database("restart");
    let fake = FakeOllama::start().await;
    let a = start_on(&fake, &url, "a").await;
    let c = http();
    let total = 300;
    let load = {
        let c = c.clone();
        let base = a.url.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..total {
                let resp = c
                    .post(format!("{base}/api/generate"))
                    .json(&json!({"model": "llama3.2", "prompt": format!("{i}"), "stream": false}))
                    .send()
                    .await
                    .expect("send");
                statuses.push(resp.status().as_u16());
                resp.bytes().await.expect("body");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        })
    };
    // Let some records land, then take the database away under the load.
    assert!(fake.state.wait_requests(50, Duration::from_secs(30)).await);
    let pg = cluster.clone();
    tokio::task::spawn_blocking(move || pg.stop_server())
        .await
        .expect("stop");
    assert!(
        eventually(SEEN_WITHIN, || async {
            let (_, h) = get(&c, &a, "/health").await;
            h["status"] == "degraded" && h["store_writable"] == false
        })
        .await,
        "health never said degraded"
    );
    let (_, health) = get(&c, &a, "/health").await;
    assert!(
        health["store_error"]
            .as_str()
            .is_some_and(|e| e.contains("PostgreSQL")),
        "the reason is given: {health}"
    );
    assert!(fake.state.wait_requests(150, Duration::from_secs(30)).await);
    let pg = cluster.clone();
    tokio::task::spawn_blocking(move || pg.start_server())
        .await
        .expect("start");
    let statuses = load.await.expect("load");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "traffic untouched: {statuses:?}"
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            stored(&url).await.len() >= total
        })
        .await,
        "only {} of {total} records stored",
        stored(&url).await.len()
    );
    let records = stored(&url).await;
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(records.len(), total, "none duplicated");
    assert_eq!(ids.len(), total, "every call recorded once");
    assert!(
        eventually(SEEN_WITHIN, || async {
            let (_, h) = get(&c, &a, "/health").await;
            h["status"] == "ok" || (h["store_writable"] == true)
        })
        .await,
        "health recovers"
    );
    let (_, health) = get(&c, &a, "/health").await;
    assert_eq!(health["records_dropped"], 0, "{health}");
    assert!(
        eventually(SEEN_WITHIN, || async {
            operations(&get(&c, &a, "/statistics/llama3.2").await.1) == total as u64
        })
        .await,
        "the history has every record once"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_started_with_the_database_down_serves_and_catches_up() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("pg");
    let url = cluster.create_database("later");
    cluster.stop_server();
    let fake = FakeOllama::start().await;
    let a = start_on(&fake, &url, "a").await;
    let c = http();
    for i in 0..5 {
        assert_eq!(generate(&c, &a, "llama3.2", &format!("{i}")).await, 200);
    }
    assert!(
        eventually(SEEN_WITHIN, || async {
            get(&c, &a, "/health").await.1["status"] == "degraded"
        })
        .await
    );
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_server();
        cluster
    })
    .await
    .expect("start");
    assert!(
        eventually(Duration::from_secs(30), || async {
            stored(&url).await.len() == 5
        })
        .await,
        "the waiting records are written when the database is back"
    );
    assert!(
        eventually(SEEN_WITHIN, || async {
            operations(&get(&c, &a, "/statistics/llama3.2").await.1) == 5
        })
        .await
    );
    a.stop().await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_a_sqlite_store_once_and_running_instances_see_it() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("pg");
    let url = cluster.create_database("moved");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("old.db");
    let mut originals = Vec::new();
    let now_ms = chrono::Utc::now().timestamp_millis();
    {
        let mut store = ollameter::store::Store::open(&file).expect("sqlite");
        for i in 0..1_234 {
            let mut r = Record::new(
                format!("old-{i}"),
                chrono::DateTime::from_timestamp_millis(now_ms - i * 60_000).expect("ts"),
                "llama3.2".into(),
                "chat".into(),
                "/api/chat".into(),
            );
            r.success = true;
            r.processing_time_ms = 100.0 + i as f64;
            r.quality_score = (i % 3 == 0).then_some(4.0);
            if i == 0 {
                r.instance = "named".into();
            }
            originals.push(r);
        }
        store.insert_batch(&originals).expect("insert");
    }
    let fake = FakeOllama::start().await;
    let watcher = start_on(&fake, &url, "watcher").await;
    let run = |file: PathBuf, url: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
            .args(["migrate", "--from"])
            .arg(file)
            .args(["--to", &url, "--instance", "old-host"])
            .output()
            .expect("runs")
    };
    let out = run(file.clone(), url.clone());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("copied 1234 records"), "{text}");
    let again = run(file.clone(), url.clone());
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(
        text.contains("copied 0 records") && text.contains("1234 already there"),
        "{text}"
    );
    let stored = stored(&url).await;
    assert_eq!(stored.len(), originals.len(), "each record once");
    for (copy, original) in stored.iter().zip(&originals) {
        let mut expected = original.clone();
        if expected.instance.is_empty() {
            expected.instance = "old-host".into();
        }
        assert_eq!(copy, &expected);
    }
    let c = http();
    assert!(
        eventually(SEEN_WITHIN, || async {
            operations(&get(&c, &watcher, "/statistics/llama3.2").await.1) == 1_234
        })
        .await,
        "a running instance follows the copied records"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
        .args(["migrate", "--from"])
        .arg(dir.path().join("missing.db"))
        .args(["--to", &url])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not exist"));
    watcher.stop().await;
}
