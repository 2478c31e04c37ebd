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
use common::fake_ollama::{FakeConfig, FakeOllama};
use common::harness::TestApp;
use ollameter::alerts::config::{Webhook, WebhookFormat};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP relay to the fake that holds each piece of a request for a delay: `delay_ms`
/// for every piece (while `slow` is set), and `per_model` delays for pieces that name a
/// model (`"model":"NAME"`, as ollameter forwards it after routing). The model "slows
/// down" without the fake knowing.
struct SlowRelay {
    url: String,
    slow: Arc<AtomicBool>,
    per_model: Arc<Mutex<Vec<(String, u64)>>>,
}

impl SlowRelay {
    /// Sets the delay of pieces naming `model` (0: none).
    fn set(&self, model: &str, ms: u64) {
        let mut list = self.per_model.lock().expect("lock");
        list.retain(|(m, _)| m != model);
        list.push((model.to_string(), ms));
    }
}

async fn slow_relay(upstream: &str, delay: Duration) -> SlowRelay {
    let target = upstream.trim_start_matches("http://").to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let slow = Arc::new(AtomicBool::new(false));
    let per_model: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let (flag, models) = (slow.clone(), per_model.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let target = target.clone();
            let (flag, models) = (flag.clone(), models.clone());
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
                        let mut wait = if flag.load(Ordering::Relaxed) {
                            delay
                        } else {
                            Duration::ZERO
                        };
                        let piece = String::from_utf8_lossy(&buf[..n]);
                        for (model, ms) in models.lock().expect("lock").iter() {
                            if piece.contains(&format!("\"model\":\"{model}\"")) {
                                wait += Duration::from_millis(*ms);
                            }
                        }
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
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
    SlowRelay {
        url,
        slow,
        per_model,
    }
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

/// The detectors run with their defaults (`[alerts]` as shipped); only the webhook retry
/// delay is shortened, so a retried notification arrives within the test.
fn quick(config: &mut ollameter::config::Config) {
    config.alerts.webhook_backoff = Duration::from_millis(50);
}

/// A fake whose calls take at least 20 ms (the fake's load delay): a busy test machine
/// adds a few milliseconds here and there, small against that, so the defaults'
/// 25 % minimum change is not reached by jitter.
async fn steady_fake() -> FakeOllama {
    FakeOllama::start_with(FakeConfig {
        header_delay: Duration::from_millis(20),
        ..FakeConfig::default()
    })
    .await
}

/// Calls before the detectors judge: the default baseline minimum (50) plus the recent
/// window (20), with a margin.
const WARM_UP: usize = 80;

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
    let fake = steady_fake().await;
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
    for _ in 0..WARM_UP {
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
    for i in 0..WARM_UP as u32 + 30 {
        let slow = i >= WARM_UP as u32;
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

/// A proxied call; the model that ran (`X-Ollameter-Model`, for virtual names) and the
/// record's id.
async fn chat(http: &reqwest::Client, url: &str, model: &str) -> (Option<String>, String) {
    let r = http
        .post(format!("{url}/api/chat"))
        .json(&json!({"model": model, "stream": false,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("chat");
    assert!(r.status().is_success(), "{}", r.status());
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (routed, id) = (header("x-ollameter-model"), header("x-ollameter-record-id"));
    r.bytes().await.expect("body");
    (routed, id.expect("a record id"))
}

/// Flushes the recorder and gives the alert task a moment to read what was committed.
async fn settle(app: &TestApp) {
    app.running().recorder.flush().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_routing_steps_around_a_critical_model_and_comes_back_after_recovery() {
    let fake = steady_fake().await;
    let relay = slow_relay(&fake.url(), Duration::ZERO).await;
    // `other` is the slower of the two, so `auto` prefers `pick` while it is healthy.
    relay.set("other:1b", 60);
    let app = TestApp::start_with(&relay.url, |c| {
        quick(c);
        // Every call goes to the recommended model: what is measured is the veto alone.
        c.routing.explore = 0.0;
    })
    .await;
    let http = reqwest::Client::new();
    let (pick, other) = ("pick:1b", "other:1b");
    for _ in 0..WARM_UP {
        chat(&http, &app.url, pick).await;
        chat(&http, &app.url, other).await;
    }
    settle(&app).await;
    tokio::time::sleep(ollameter::routing::cache::MAX_AGE + Duration::from_millis(100)).await;
    for _ in 0..5 {
        let (routed, _) = chat(&http, &app.url, "auto").await;
        assert_eq!(
            routed.as_deref(),
            Some(pick),
            "the faster model while healthy"
        );
    }
    let board = app.running().alerts.clone();
    assert!(!board.is_critical(pick));

    // `pick` becomes ten times slower; `auto` keeps sending it calls until the alert.
    relay.set(pick, 300);
    let mut calls = 0;
    while !board.is_critical(pick) {
        calls += 1;
        assert!(calls <= 40, "no critical alert within 40 slow calls");
        let (routed, _) = chat(&http, &app.url, "auto").await;
        assert_eq!(routed.as_deref(), Some(pick));
        settle(&app).await;
    }
    eprintln!("critical after {calls} slow calls");
    // The resolution `auto` uses may be up to MAX_AGE old.
    tokio::time::sleep(ollameter::routing::cache::MAX_AGE + Duration::from_millis(100)).await;
    for _ in 0..10 {
        let (routed, _) = chat(&http, &app.url, "auto").await;
        assert_eq!(
            routed.as_deref(),
            Some(other),
            "auto avoids the critical model"
        );
    }
    // The routing view says why: the alert, not the statistics (its median is still the
    // faster one, `calls` slow calls against WARM_UP fast ones).
    let routing: Value = http
        .get(format!("{}/api/model-performance/routing", app.url))
        .send()
        .await
        .expect("routing")
        .json()
        .await
        .expect("json");
    let text = routing.to_string();
    assert!(
        text.contains(pick) && text.contains("a critical alert is firing"),
        "{routing:#}"
    );
    // An explicit name is never vetoed: the model recovers, and the calls made to it by
    // name let the detectors see that.
    relay.set(pick, 0);
    let mut calls = 0;
    while board.is_critical(pick) {
        calls += 1;
        assert!(calls <= 60, "not resolved within 60 calls after recovery");
        chat(&http, &app.url, pick).await;
        settle(&app).await;
    }
    eprintln!("resolved after {calls} calls back at speed");
    let list = alerts(&http, &app.url, &format!("?model={pick}&state=resolved")).await;
    assert!(
        list["resolved"]
            .as_array()
            .expect("list")
            .iter()
            .any(|a| is_latency(&a["kind"]) && a["severity"] == "critical"),
        "{list}"
    );
    tokio::time::sleep(ollameter::routing::cache::MAX_AGE + Duration::from_millis(100)).await;
    for _ in 0..5 {
        let (routed, _) = chat(&http, &app.url, "auto").await;
        assert_eq!(routed.as_deref(), Some(pick), "chosen again once resolved");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_quality_scores_raise_a_quality_alert() {
    let fake = steady_fake().await;
    let app = TestApp::start_with(&fake.url(), quick).await;
    let http = reqwest::Client::new();
    let model = "llama3.2:latest";
    // Scores given after each call through the feedback route: steady around 4, then
    // about 1.5 points lower.
    let score = |http: &reqwest::Client, id: String, q: f64| {
        let url = format!("{}/api/model-performance/records/{id}/quality", app.url);
        let http = http.clone();
        async move {
            let r = http
                .post(url)
                .json(&json!({ "quality_score": q }))
                .send()
                .await
                .expect("score");
            assert_eq!(r.status(), 200);
        }
    };
    let jitter = [-0.5, 0.0, 0.5, 0.25, -0.25];
    for i in 0..WARM_UP {
        let (_, id) = chat(&http, &app.url, model).await;
        score(&http, id, 4.0 + jitter[i % 5]).await;
    }
    settle(&app).await;
    let board = app.running().alerts.clone();
    let quality_firing = || {
        board
            .list(Some(model), Some(ollameter::alerts::AlertState::Firing))
            .active
            .into_iter()
            .find(|a| a.kind == ollameter::alerts::engine::AlertKind::Quality)
    };
    assert!(quality_firing().is_none());
    // About 1.5 points lower: it fires (a warning while the recent window is half low),
    // then becomes critical (a point or more down) as the low scores fill the window.
    let mut scored = 0;
    let mut first = None;
    let alert = loop {
        scored += 1;
        assert!(
            scored <= 30,
            "no critical quality alert within 30 low scores"
        );
        let (_, id) = chat(&http, &app.url, model).await;
        score(&http, id, 2.5 + jitter[scored % 5]).await;
        settle(&app).await;
        match quality_firing() {
            Some(a) if a.severity == ollameter::alerts::engine::Severity::Critical => break a,
            Some(_) => {
                first.get_or_insert(scored);
            }
            None => {}
        }
    };
    eprintln!(
        "quality alert after {:?} low scores, critical after {scored}: {}",
        first.unwrap_or(scored),
        alert.summary
    );
    assert!(
        alert.evidence.baseline - alert.evidence.current >= 1.0,
        "{alert:?}"
    );
    assert!(board.is_critical(model), "auto routing would skip it now");
    app.stop().await;
}

/// A generate pinned to one upstream host (`X-Ollameter-Upstream`).
async fn generate_on(http: &reqwest::Client, url: &str, model: &str, host: &str) {
    let r = http
        .post(format!("{url}/api/generate"))
        .header("x-ollameter-upstream", host)
        .json(
            &json!({"model": model, "prompt": "x", "stream": false, "options": {"num_predict": 2}}),
        )
        .send()
        .await
        .expect("call");
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["x-ollameter-upstream"], host);
    r.bytes().await.expect("body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_degrades_on_one_host_raises_an_alert_for_that_host() {
    // Two Ollamas with the same model; gpu1 is reached through a relay that slows it.
    let fast = steady_fake().await;
    let slowed = steady_fake().await;
    let relay = slow_relay(&slowed.url(), Duration::from_millis(250)).await;
    let (json_rx, json_url) = Receiver::start().await;
    let (am_rx, am_url) = Receiver::start().await;
    let app = TestApp::start_with(&format!("{},{}", fast.url(), relay.url), |c| {
        quick(c);
        for (i, u) in c.proxy.upstreams.iter_mut().enumerate() {
            u.name = format!("gpu{i}");
        }
        c.alerts.webhooks = vec![
            hook(&json_url, WebhookFormat::Json),
            hook(&am_url, WebhookFormat::Alertmanager),
        ];
    })
    .await;
    let http = reqwest::Client::new();
    let model = "llama3.2:latest";
    for _ in 0..WARM_UP {
        generate_on(&http, &app.url, model, "gpu0").await;
        generate_on(&http, &app.url, model, "gpu1").await;
    }
    relay.slow.store(true, Ordering::Relaxed);
    let mut fired = None;
    for _ in 0..40 {
        generate_on(&http, &app.url, model, "gpu0").await;
        generate_on(&http, &app.url, model, "gpu1").await;
        app.running().recorder.flush().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let list = alerts(&http, &app.url, &format!("?state=firing&model={model}")).await;
        if let Some(a) = list["active"]
            .as_array()
            .expect("list")
            .iter()
            .find(|a| is_latency(&a["kind"]))
        {
            fired = Some(a.clone());
            break;
        }
    }
    let fired = fired.expect("a latency alert within 40 slow calls on gpu1");
    assert_eq!(fired["host"], "gpu1", "{fired}");
    assert_eq!(fired["model"], model);
    // Only gpu1's: the same model on gpu0 is fine.
    let all = alerts(&http, &app.url, "?state=firing").await;
    assert!(
        all["active"]
            .as_array()
            .expect("list")
            .iter()
            .all(|a| a["host"] == "gpu1" || !is_latency(&a["kind"])),
        "{all}"
    );
    let on_gpu0 = alerts(&http, &app.url, "?host=gpu0").await;
    assert!(
        on_gpu0["active"].as_array().expect("list").is_empty(),
        "{on_gpu0}"
    );
    let on_gpu1 = alerts(&http, &app.url, "?host=gpu1&state=firing").await;
    assert!(
        on_gpu1["active"]
            .as_array()
            .expect("list")
            .iter()
            .any(|a| a["id"] == fired["id"]),
        "{on_gpu1}"
    );
    let kind = fired["kind"].as_str().expect("kind").to_string();
    let j = json_rx
        .wait_for("json firing", |v| {
            v["status"] == "firing" && v["alert"]["kind"] == kind.as_str()
        })
        .await;
    assert_eq!(j["alert"]["host"], "gpu1");
    assert_eq!(j["alert"]["model"], model);
    let a = am_rx
        .wait_for("alertmanager firing", |v| {
            v["status"] == "firing" && v["alerts"][0]["labels"]["kind"] == kind.as_str()
        })
        .await;
    assert_eq!(a["alerts"][0]["labels"]["host"], "gpu1");
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
            "ollameter_alert_active{{host=\"gpu1\",kind=\"{kind}\",model=\"{model}\"}} 1"
        )),
        "{metrics}"
    );
    // The CLI's table names the host.
    let server = app.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
            .args(["alerts", "--host", "gpu1", "--server", &server])
            .env_remove("OLLAMETER_SERVER")
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("{model} on gpu1")), "{text}");
}
