//! Alerts on a shared PostgreSQL store: every instance runs its detectors over every
//! instance's records, yet an alert is stored once, notified once, shown by all, and
//! still firing for an instance started later.

#[path = "pg/cluster.rs"]
mod cluster;
mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use cluster::Cluster;
use common::fake_ollama::FakeOllama;
use common::harness::TestApp;
use ollameter::alerts::AlertState;
use ollameter::alerts::config::{Webhook, WebhookFormat};
use serde_json::{Value, json};
use tokio::net::TcpListener;

type Bodies = Arc<Mutex<Vec<Value>>>;

async fn receiver() -> (Bodies, String) {
    let bodies: Bodies = Arc::default();
    async fn receive(State(b): State<Bodies>, body: axum::Json<Value>) -> &'static str {
        b.lock().expect("lock").push(body.0);
        "ok"
    }
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(bodies.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (bodies, url)
}

async fn start_on(fake: &FakeOllama, db: &str, instance: &str, hook: Option<&str>) -> TestApp {
    let (db, instance, hook) = (
        db.to_string(),
        instance.to_string(),
        hook.map(str::to_string),
    );
    TestApp::start_with(&fake.url(), move |c| {
        c.store.path = PathBuf::from(db);
        c.recorder.instance = instance;
        c.alerts.webhook_backoff = Duration::from_millis(50);
        c.alerts.webhooks = hook
            .into_iter()
            .map(|url| Webhook {
                url,
                format: WebhookFormat::Json,
                name: "json".into(),
            })
            .collect();
    })
    .await
}

async fn wait(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_on_a_shared_store_are_stored_once_notified_once_and_survive() {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("pg");
    let db = cluster.create_database("alerts");
    let fake = FakeOllama::start().await;
    let (to_a, hook_a) = receiver().await;
    let (to_b, hook_b) = receiver().await;
    let a = start_on(&fake, &db, "a", Some(&hook_a)).await;
    let b = start_on(&fake, &db, "b", Some(&hook_b)).await;
    let http = reqwest::Client::new();
    // Through A only: 80 calls at about 100 ms, then 30 at 5 s. B sees them through the
    // store's change log and runs its own detectors over them.
    for i in 0..110u32 {
        let ms = if i >= 80 {
            5_000.0
        } else {
            100.0 + f64::from(i % 7)
        };
        let r = http
            .post(format!("{}/api/model-performance/record", a.url))
            .json(&json!({"model_name": "m", "operation": "chat", "processing_time_ms": ms, "success": true}))
            .send()
            .await
            .expect("record");
        assert_eq!(r.status(), 201);
    }
    let (board_a, board_b) = (a.running().alerts.clone(), b.running().alerts.clone());
    wait("A: no critical alert", || board_a.is_critical("m")).await;
    wait("B: no critical alert", || board_b.is_critical("m")).await;
    // Both detectors fired the same alerts; each is one row, with one id for both.
    let firing = |board: &ollameter::alerts::Alerts| {
        let mut list: Vec<(i64, String)> = board
            .list(Some("m"), Some(AlertState::Firing))
            .active
            .into_iter()
            .map(|x| (x.id, x.kind.as_str().to_string()))
            .collect();
        list.sort();
        list
    };
    wait("both boards show the same alerts", || {
        firing(&board_a) == firing(&board_b)
    })
    .await;
    let shown = firing(&board_a);
    assert!(!shown.is_empty());
    // One notification per alert, from whichever instance stored it first.
    let notified = |kind: &str| {
        [&to_a, &to_b]
            .iter()
            .flat_map(|b| b.lock().expect("lock").clone())
            .filter(|v| v["status"] == "firing" && v["alert"]["kind"] == kind)
            .count()
    };
    for (_, kind) in &shown {
        wait("a notification", || notified(kind) >= 1).await;
    }
    // Time for a duplicate to arrive, were one sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (_, kind) in &shown {
        assert_eq!(
            notified(kind),
            1,
            "{kind}: one notification from two instances"
        );
    }
    a.running().recorder.flush().await;
    b.running().recorder.flush().await;
    a.stop().await;
    b.stop().await;

    // A new instance reads the firing alerts from the database: still critical.
    let c = start_on(&fake, &db, "c", None).await;
    assert!(
        c.running().alerts.is_critical("m"),
        "still firing for a new instance"
    );
    assert_eq!(firing(&c.running().alerts), shown);
    c.stop().await;
}
