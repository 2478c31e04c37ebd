//! Alerts end to end: the real sidecar in front of the fake Ollama, with real HTTP
//! receivers for the webhooks. A model slows down mid-run (a relay between ollameter and
//! the fake adds a delay on request), the alert fires and reaches every receiver in its
//! format, the model recovers and the alert resolves; alerts survive a restart; and
//! webhook receivers that are down or never answer do not slow proxied calls.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use common::fake_ollama::FakeOllama;
use common::harness::TestApp;
use ollameter::alerts::config::{Webhook, WebhookFormat};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP relay to the fake that, while `slow` is set, waits `delay` before passing on
/// each piece of a request: the model "slows down" without the fake knowing.
struct SlowRelay {
    url: String,
    slow: Arc<AtomicBool>,
}

async fn slow_relay(upstream: &str, delay: Duration) -> SlowRelay {
    let target = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let slow = Arc::new(AtomicBool::new(false));
    let flag = slow.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let target = target.clone();
            let flag = flag.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if flag.load(Ordering::Relaxed) {
                            tokio::time::sleep(delay).await;
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    SlowRelay { url, slow }
}

/// A webhook receiver: records each JSON body it gets.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (receiver, url)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().expect("lock").clone()
    }

    async fn wait_for(&self, what: &str, found: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(v) = self.bodies().into_iter().find(&found) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never arrived; got {:#?}",
                self.bodies()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(State(r): State<Receiver>, body: axum::Json<Value>) -> &'static str {
    r.bodies.lock().expect("lock").push(body.0);
    "ok"
}

fn hook(url: &str, format: WebhookFormat) -> Webhook {
    Webhook {
        url: url.to_string(),
        format,
        name: format.as_str().to_string(),
    }
}

/// Small windows so the test needs tens of calls, not hundreds; only changes of 4x and
/// more count (the slowdown is over 10x), so a busy test machine's jitter on 15-ms calls
/// neither fires nor holds an alert.
fn quick(config: &mut ollameter::config::Config) {
    let a = &mut config.alerts;
    a.min_relative_change = 3.0;
    a.reference_window = 40;
    a.min_samples = 20;
    a.recent_window = 8;
    a.resolve_after = 5;
    a.cooldown = Duration::ZERO;
    a.webhook_backoff = Duration::from_millis(50);
}

async fn generate(http: &reqwest::Client, url: &str, model: &str) -> Duration {
    let started = Instant::now();
    let r = http
        .post(format!("{url}/api/generate"))
        .json(
            &json!({"model": model, "prompt": "x", "stream": false, "options": {"num_predict": 2}}),
        )
        .send()
        .await
        .expect("call");
    assert!(r.status().is_success(), "{}", r.status());
    r.bytes().await.expect("body");
    started.elapsed()
}

async fn alerts(http: &reqwest::Client, url: &str, query: &str) -> Value {
    http.get(format!("{url}/api/model-performance/alerts{query}"))
        .send()
        .await
        .expect("alerts")
        .json()
        .await
        .expect("json")
}

fn is_latency(kind: &Value) -> bool {
    kind == "latency_p50" || kind == "latency_p95"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_slows_down_fires_notifies_every_format_and_resolves() {
    let fake = FakeOllama::start().await;
    let relay = slow_relay(&fake.url(), Duration::from_millis(250)).await;
    let (json_rx, json_url) = Receiver::start().await;
    let (am_rx, am_url) = Receiver::start().await;
    let (slack_rx, slack_url) = Receiver::start().await;
    let app = TestApp::start_with(&relay.url, |c| {
        quick(c);
        c.alerts.webhooks = vec![
            hook(&json_url, WebhookFormat::Json),
            hook(&am_url, WebhookFormat::Alertmanager),
            hook(&slack_url, WebhookFormat::Slack),
        ];
    })
    .await;
    let http = reqwest::Client::new();
    let model = "llama3.2:latest";
    for _ in 0..40 {
        generate(&http, &app.url, model).await;
    }
    let board = app.running().alerts.clone();
    // Nothing about latency is firing before the slowdown.
    let before = alerts(&http, &app.url, "?state=firing").await;
    assert!(
        !before["active"]
            .as_array()
            .expect("list")
            .iter()
            .any(|a| is_latency(&a["kind"])),
        "{before}"
    );

    relay.slow.store(true, Ordering::Relaxed);
    let mut fired = None;
    for _ in 0..40 {
        generate(&http, &app.url, model).await;
        app.running().recorder.flush().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let list = alerts(&http, &app.url, &format!("?state=firing&model={model}")).await;
        if let Some(a) = list["active"]
            .as_array()
            .expect("list")
            .iter()
            .find(|a| is_latency(&a["kind"]) && a["severity"] == "critical")
        {
            fired = Some(a.clone());
            break;
        }
    }
    let fired = fired.expect("a critical latency alert within 40 slow calls");
    assert_eq!(fired["state"], "firing");
    assert!(fired["evidence"]["current"].as_f64() > fired["evidence"]["baseline"].as_f64());
    assert!(board.is_critical(model), "routing would skip the model now");

    let kind = fired["kind"].as_str().expect("kind").to_string();
    let firing = |status: &'static str| {
        let kind = kind.clone();
        move |v: &Value| -> bool {
            (v["status"] == status
                && (v["alert"]["kind"] == kind.as_str()
                    || v["alerts"][0]["labels"]["kind"] == kind.as_str()))
                || v["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(&kind) && t.contains(&status.to_uppercase()))
        }
    };
    let j = json_rx.wait_for("json firing", firing("firing")).await;
    assert_eq!(j["alert"]["model"], model);
    let a = am_rx
        .wait_for("alertmanager firing", firing("firing"))
        .await;
    assert_eq!(a["version"], "4");
    assert_eq!(a["alerts"][0]["labels"]["model"], model);
    assert_eq!(a["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let s = slack_rx.wait_for("slack firing", firing("firing")).await;
    assert!(s["text"].as_str().expect("text").contains(model));

    // /metrics shows the gauge.
    let metrics = http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!(
            "ollameter_alert_active{{kind=\"{kind}\",model=\"{model}\"}} 1"
        )),
        "{metrics}"
    );

    relay.slow.store(false, Ordering::Relaxed);
    let mut resolved = false;
    for _ in 0..100 {
        generate(&http, &app.url, model).await;
        app.running().recorder.flush().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let list = alerts(&http, &app.url, "?state=resolved").await;
        if list["resolved"]
            .as_array()
            .expect("list")
            .iter()
            .any(|a| a["id"] == fired["id"])
        {
            resolved = true;
            break;
        }
    }
    assert!(
        resolved,
        "the alert resolves once the model is fast again: {fired}\n{}",
        alerts(&http, &app.url, "").await
    );
    assert!(!board.is_critical(model), "routable again");
    json_rx.wait_for("json resolved", firing("resolved")).await;
    let a = am_rx
        .wait_for("alertmanager resolved", firing("resolved"))
        .await;
    assert_ne!(a["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    slack_rx
        .wait_for("slack resolved", firing("resolved"))
        .await;

    // The dashboard shows the alerts panel.
    let page = http
        .get(format!("{}/dashboard", app.url))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("id=\"alerts\"") && page.contains("Recently resolved"),
        "{page}"
    );

    // Bad filters are a 400 that names the parameter.
    let r = http
        .get(format!(
            "{}/api/model-performance/alerts?state=open",
            app.url
        ))
        .send()
        .await
        .expect("bad");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"].as_str().expect("msg").contains("state"),
        "{body}"
    );
}

/// Manual records that make `model` fire a critical latency alert quickly.
async fn make_it_fire(http: &reqwest::Client, url: &str, model: &str) {
    for i in 0..60 {
        let slow = i >= 40;
        let ms = if slow {
            5_000.0
        } else {
            100.0 + f64::from(i % 7)
        };
        let r = http
            .post(format!("{url}/api/model-performance/record"))
            .json(&json!({"model_name": model, "operation": "chat", "processing_time_ms": ms, "success": true}))
            .send()
            .await
            .expect("record");
        assert_eq!(r.status(), 201);
    }
}

async fn wait_critical(board: &ollameter::alerts::Alerts, model: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !board.is_critical(model) {
        assert!(Instant::now() < deadline, "no critical alert for {model}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_survive_a_restart() {
    let fake = FakeOllama::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("keep.db");
    let start = |db: std::path::PathBuf, url: String| async move {
        TestApp::start_with(&url, move |c| {
            quick(c);
            c.store.path = db;
        })
        .await
    };
    let app = start(db.clone(), fake.url()).await;
    let http = reqwest::Client::new();
    make_it_fire(&http, &app.url, "m").await;
    wait_critical(&app.running().alerts, "m").await;
    let before = alerts(&http, &app.url, "").await;
    let _guard = app.stop().await;
    let app = start(db.clone(), fake.url()).await;
    assert!(
        app.running().alerts.is_critical("m"),
        "still firing after a restart"
    );
    let after = alerts(&http, &app.url, "").await;
    assert_eq!(before["active"], after["active"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receivers_that_are_down_or_hang_do_not_slow_proxied_calls() {
    let fake = FakeOllama::start().await;
    // One receiver refuses connections (bound then closed); one accepts and never answers.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/hook", l.local_addr().expect("addr"))
    };
    let hang = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hang_url = format!("http://{}/hook", hang.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicU64::new(0));
    let seen = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            seen.fetch_add(1, Ordering::Relaxed);
            held.push(s);
        }
    });
    let app = TestApp::start_with(&fake.url(), |c| {
        quick(c);
        c.alerts.webhook_timeout = Duration::from_secs(600);
        c.alerts.webhook_attempts = 1_000;
        c.alerts.webhooks = vec![
            Webhook {
                url: down,
                format: WebhookFormat::Json,
                name: "down".into(),
            },
            Webhook {
                url: hang_url,
                format: WebhookFormat::Slack,
                name: "hang".into(),
            },
        ];
    })
    .await;
    let http = reqwest::Client::new();
    let model = "llama3.2:latest";
    let mut before = Vec::new();
    for _ in 0..30 {
        before.push(generate(&http, &app.url, model).await);
    }
    make_it_fire(&http, &app.url, "other").await;
    wait_critical(&app.running().alerts, "other").await;
    // The hanging receiver holds a notification; the down one fails and retries.
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the hanging receiver was never called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut during = Vec::new();
    for _ in 0..30 {
        during.push(generate(&http, &app.url, model).await);
    }
    before.sort();
    during.sort();
    let (b, d) = (before[15], during[15]);
    assert!(
        d.as_secs_f64() < 3.0 * b.as_secs_f64() + 0.005,
        "median proxied call {d:?} with stuck webhooks against {b:?} before"
    );
    let metrics = http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let failures = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "ollameter_alert_webhook_failures_total{format=\"json\",webhook=\"down\"}",
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(failures >= 1.0, "failures are counted:\n{metrics}");
}
