//! Several Ollama servers behind one ollameter: two and three fake Ollamas holding
//! different models, loaded states and speeds. Calls land on the host that serves them
//! best, a host that goes down is ejected and comes back, a header pins a host, the model
//! lists are unions, and every record names its host.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::fake_ollama::{FakeConfig, FakeModel, FakeOllama, Gate};
use common::harness::TestApp;
use ollameter::config::Config;
use ollameter::record::Record;
use serde_json::{Value, json};

const BASE: &str = "/api/model-performance";
const UPSTREAM: &str = "x-ollameter-upstream";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// A fake holding `models` (loaded or not), serving nothing else.
fn holding(models: &[(&str, bool)]) -> FakeConfig {
    FakeConfig {
        models: models
            .iter()
            .map(|(name, loaded)| FakeModel {
                loaded: *loaded,
                ..FakeModel::new(name)
            })
            .collect(),
        strict_models: true,
        ..FakeConfig::default()
    }
}

/// Starts ollameter in front of `fakes`, named `gpu0`, `gpu1`, ..., probing every 50 ms
/// unless `tweak` says otherwise, and waits until it has read every host's models.
async fn start(fakes: &[&FakeOllama], tweak: impl FnOnce(&mut Config)) -> TestApp {
    let urls: Vec<String> = fakes.iter().map(|f| f.url()).collect();
    let app = TestApp::start_with(&urls.join(","), |c| {
        for (i, u) in c.proxy.upstreams.iter_mut().enumerate() {
            u.name = format!("gpu{i}");
        }
        c.proxy.health.probe_interval = Duration::from_millis(50);
        tweak(c);
    })
    .await;
    wait_for(&app, |system| {
        system["hosts"].as_array().is_some_and(|hosts| {
            hosts.iter().all(|h| {
                h["installed_models"]
                    .as_array()
                    .is_some_and(|m| !m.is_empty())
            })
        })
    })
    .await;
    app
}

/// Waits (up to 10 s) until `/system` satisfies `done`; panics with the last answer.
async fn wait_for(app: &TestApp, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let system: Value = http()
            .get(format!("{}{BASE}/system", app.url))
            .send()
            .await
            .expect("system")
            .json()
            .await
            .expect("json");
        if done(&system) {
            return system;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting; /system says {system:#}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A non-streamed generate of `model`; returns the status, the answering host and the body.
async fn generate(app: &TestApp, model: &str, pin: Option<&str>) -> (u16, String, Value) {
    let mut request = http()
        .post(format!("{}/api/generate", app.url))
        .json(&json!({"model": model, "prompt": "hi", "stream": false}));
    if let Some(pin) = pin {
        request = request.header(UPSTREAM, pin);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let host = response
        .headers()
        .get(UPSTREAM)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, host, body)
}

fn inference_count(fake: &FakeOllama) -> usize {
    fake.state
        .requests()
        .iter()
        .filter(|r| r.path == "/api/generate" || r.path == "/api/chat")
        .count()
}

fn hosts_of(records: &[Record]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r.host.as_deref().unwrap_or("-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_installed_on_one_host_only_always_goes_there() {
    let a = FakeOllama::start_with(holding(&[("alpha:latest", true)])).await;
    let b = FakeOllama::start_with(holding(&[("beta:latest", false)])).await;
    let app = start(&[&a, &b], |_| {}).await;
    for _ in 0..4 {
        let (status, host, body) = generate(&app, "beta", None).await;
        assert_eq!((status, host.as_str()), (200, "gpu1"), "{body}");
        let (status, host, _) = generate(&app, "alpha:latest", None).await;
        assert_eq!((status, host.as_str()), (200, "gpu0"));
    }
    assert_eq!(inference_count(&a), 4);
    assert_eq!(inference_count(&b), 4);
    let records = app.wait_records(8).await;
    for r in &records {
        let expected = if r.model.starts_with("beta") {
            "gpu1"
        } else {
            "gpu0"
        };
        assert_eq!(r.host.as_deref(), Some(expected), "{r:?}");
        assert!(r.success);
        assert_eq!(r.attempt, 1, "never tried on the host without it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_to_the_host_that_has_the_model_loaded() {
    // Installed on all three; loaded on the third only.
    let a = FakeOllama::start_with(holding(&[("m:latest", false)])).await;
    let b = FakeOllama::start_with(holding(&[("m:latest", false)])).await;
    let c = FakeOllama::start_with(holding(&[("m:latest", true)])).await;
    let app = start(&[&a, &b, &c], |_| {}).await;
    for _ in 0..5 {
        let (status, host, _) = generate(&app, "m", None).await;
        assert_eq!((status, host.as_str()), (200, "gpu2"));
    }
    assert_eq!(
        (
            inference_count(&a),
            inference_count(&b),
            inference_count(&c)
        ),
        (0, 0, 5)
    );
    let records = app.wait_records(5).await;
    assert_eq!(hosts_of(&records), vec!["gpu2"; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_model_loaded_on_both_load_spreads_by_calls_in_flight() {
    let gate = Gate::new();
    let gated = |loaded| FakeConfig {
        gate: Some(gate.clone()),
        ..holding(&[("m:latest", loaded)])
    };
    let a = FakeOllama::start_with(gated(true)).await;
    let b = FakeOllama::start_with(gated(true)).await;
    let app = start(&[&a, &b], |_| {}).await;
    let mut calls = Vec::new();
    for n in 1..=4_u64 {
        let url = format!("{}/api/generate", app.url);
        calls.push(tokio::spawn(async move {
            let response = http()
                .post(url)
                .json(&json!({"model": "m", "prompt": "hi"}))
                .send()
                .await
                .expect("send");
            let host = response.headers()[UPSTREAM]
                .to_str()
                .expect("text")
                .to_owned();
            let text = response.text().await.expect("body");
            (host, text)
        }));
        // Each call is in flight (held at the gate) before the next one is chosen.
        let started = |s: &common::fake_ollama::FakeState| s.counters().streams_started;
        let ok = tokio::time::timeout(Duration::from_secs(10), async {
            while started(&a.state) + started(&b.state) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(ok.is_ok(), "call {n} never started");
    }
    assert_eq!(a.state.counters().streams_started, 2, "spread evenly");
    assert_eq!(b.state.counters().streams_started, 2, "spread evenly");
    gate.release(10_000);
    let mut hosts = Vec::new();
    for call in calls {
        let (host, text) = call.await.expect("join");
        assert!(text.contains("\"done\":true"), "{text}");
        hosts.push(host);
    }
    hosts.sort();
    assert_eq!(hosts, vec!["gpu0", "gpu0", "gpu1", "gpu1"]);
    // The counts are released at the end of each call: idle again, the first host wins.
    let records = app.wait_records(4).await;
    assert_eq!(records.len(), 4);
    let system = wait_for(&app, |s| {
        s["hosts"]
            .as_array()
            .is_some_and(|h| h.iter().all(|h| h["in_flight"] == 0))
    })
    .await;
    assert_eq!(system["hosts"][0]["in_flight"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_fails_is_ejected_calls_still_succeed_and_it_comes_back() {
    let a = FakeOllama::start_with(holding(&[("m:latest", true), ("solo:latest", true)])).await;
    // `m` is loaded on gpu0 only, so gpu0 ranks first while it takes calls (with `m`
    // loaded on both, the host measured faster would rank first as soon as gpu1's first
    // answer is committed, and whether the second call tried gpu0 would be a race).
    let b = FakeOllama::start_with(holding(&[("m:latest", false)])).await;
    // Probes far apart: only the failed calls (passive ejection) and the half-open trial
    // act here.
    let app = start(&[&a, &b], |c| {
        c.proxy.health.probe_interval = Duration::from_secs(3600);
        c.proxy.health.eject_after_failures = 2;
        // Long enough that the three calls below all fall inside it on a loaded
        // machine; the rest itself is checked under a paused clock in src/fleet.rs.
        c.proxy.health.eject_for = Duration::from_secs(2);
    })
    .await;
    let addr = a.addr;
    a.stop();
    drop(a);
    // Two calls find gpu0 down and fall back to gpu1; the second failure ejects gpu0.
    for _ in 0..2 {
        let (status, host, body) = generate(&app, "m", None).await;
        assert_eq!((status, host.as_str()), (200, "gpu1"), "{body}");
    }
    let records = app.wait_records(4).await;
    assert_eq!(hosts_of(&records), vec!["gpu0", "gpu1", "gpu0", "gpu1"]);
    assert!(!records[0].success && records[1].success);
    assert_eq!((records[0].attempt, records[1].attempt), (1, 2));
    let health: Value = http()
        .get(format!("{}{BASE}/health", app.url))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["upstreams"][0]["availability"], "down");
    // Ejected: the next calls go straight to gpu1, one record each.
    for _ in 0..3 {
        let (status, host, _) = generate(&app, "m", None).await;
        assert_eq!((status, host.as_str()), (200, "gpu1"));
    }
    let records = app.wait_records(7).await;
    assert_eq!(hosts_of(&records[4..]), vec!["gpu1"; 3]);
    // gpu0 recovers; after its rest the next call is its trial, and it is back.
    let a = FakeOllama::start_at(addr, holding(&[("m:latest", true), ("solo:latest", true)])).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, host, _) = generate(&app, "m", None).await;
        assert_eq!(status, 200);
        if host == "gpu0" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gpu0 never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for(&app, |s| s["hosts"][0]["availability"] == "healthy").await;
    let (status, host, _) = generate(&app, "solo", None).await;
    assert_eq!((status, host.as_str()), (200, "gpu0"));
    assert_eq!(inference_count(&a), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_probe_fails_gets_no_calls_until_it_answers_again() {
    let a = FakeOllama::start_with(holding(&[("m:latest", true), ("solo:latest", true)])).await;
    let b = FakeOllama::start_with(holding(&[("m:latest", true)])).await;
    let app = start(&[&a, &b], |_| {}).await;
    let addr = a.addr;
    a.stop();
    drop(a);
    wait_for(&app, |s| s["hosts"][0]["availability"] == "down").await;
    for _ in 0..3 {
        let (status, host, _) = generate(&app, "m", None).await;
        assert_eq!((status, host.as_str()), (200, "gpu1"));
    }
    let records = app.wait_records(3).await;
    assert_eq!(hosts_of(&records), vec!["gpu1"; 3], "no call tried gpu0");
    // The one host with `solo` is down: it is tried anyway (never the host without it),
    // and the client gets the proxy's 502.
    let (status, host, _) = generate(&app, "solo", None).await;
    assert_eq!((status, host.as_str()), (502, "gpu0"));
    let a = FakeOllama::start_at(addr, holding(&[("m:latest", true), ("solo:latest", true)])).await;
    wait_for(&app, |s| s["hosts"][0]["availability"] == "healthy").await;
    let (status, host, _) = generate(&app, "solo", None).await;
    assert_eq!((status, host.as_str()), (200, "gpu0"));
    assert_eq!(inference_count(&a), 1);
    assert_eq!(inference_count(&b), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_pins_a_host_and_every_answer_names_its_host() {
    let a = FakeOllama::start_with(holding(&[("m:latest", true)])).await;
    let b = FakeOllama::start_with(holding(&[("m:latest", false)])).await;
    let app = start(&[&a, &b], |_| {}).await;
    let (status, host, _) = generate(&app, "m", Some("gpu1")).await;
    assert_eq!(
        (status, host.as_str()),
        (200, "gpu1"),
        "pinned, though gpu0 has it loaded"
    );
    let seen = b.state.last_request_to("/api/generate").expect("request");
    assert_eq!(
        seen.header(UPSTREAM),
        None,
        "ollameter's own header never goes upstream"
    );
    let (status, _, body) = generate(&app, "m", Some("gpu7")).await;
    assert_eq!(status, 400);
    let message = body["error"].as_str().expect("message");
    assert!(message.contains("gpu0, gpu1"), "{message}");
    // A forward-only route names its host too, and honours the pin.
    let version = http()
        .get(format!("{}/api/version", app.url))
        .header(UPSTREAM, "gpu1")
        .send()
        .await
        .expect("version");
    assert_eq!(version.headers()[UPSTREAM], "gpu1");
    let version = http()
        .get(format!("{}/api/version", app.url))
        .send()
        .await
        .expect("version");
    assert_eq!(
        version.headers()[UPSTREAM],
        "gpu0",
        "the first healthy host"
    );
    let records = app.wait_records(1).await;
    assert_eq!(hosts_of(&records), vec!["gpu1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_ps_are_the_union_in_ollamas_shape() {
    let a =
        FakeOllama::start_with(holding(&[("shared:latest", true), ("alpha:latest", false)])).await;
    let b =
        FakeOllama::start_with(holding(&[("shared:latest", false), ("beta:latest", true)])).await;
    let app = start(&[&a, &b], |_| {}).await;
    let get = |url: String| async move {
        let response = http().get(url).send().await.expect("get");
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("text")
                .starts_with("application/json")
        );
        response.json::<Value>().await.expect("json")
    };
    let direct_a = get(format!("{}/api/tags", a.url())).await;
    let direct_b = get(format!("{}/api/tags", b.url())).await;
    let tags = get(format!("{}/api/tags", app.url)).await;
    let names: Vec<&str> = tags["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names.len(), 3, "each model once: {names:?}");
    assert_eq!(
        names.iter().copied().collect::<HashSet<_>>(),
        HashSet::from(["shared:latest", "alpha:latest", "beta:latest"])
    );
    // Each entry exactly as its host gave it.
    let beta = direct_b["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["name"] == "beta:latest")
        .expect("beta");
    assert!(tags["models"].as_array().expect("models").contains(beta));
    assert!(
        tags["models"]
            .as_array()
            .expect("models")
            .contains(&direct_a["models"][0])
    );
    assert_eq!(
        tags.as_object().expect("object").keys().collect::<Vec<_>>(),
        vec!["models"]
    );
    let ps = get(format!("{}/api/ps", app.url)).await;
    let loaded: HashSet<&str> = ps["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["name"].as_str().expect("name"))
        .collect();
    assert_eq!(loaded, HashSet::from(["shared:latest", "beta:latest"]));
    let v1: Value = get(format!("{}/v1/models", app.url)).await;
    assert_eq!(v1["object"], "list");
    assert_eq!(v1["data"].as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_goes_to_a_host_with_the_model_and_management_to_the_pinned_or_first() {
    let a = FakeOllama::start_with(holding(&[("alpha:latest", true)])).await;
    let b = FakeOllama::start_with(holding(&[("beta:latest", true)])).await;
    let app = start(&[&a, &b], |_| {}).await;
    let show = http()
        .post(format!("{}/api/show", app.url))
        .json(&json!({"model": "beta"}))
        .send()
        .await
        .expect("show");
    assert_eq!(show.status(), 200);
    assert_eq!(show.headers()[UPSTREAM], "gpu1");
    let count = |fake: &FakeOllama, path: &str| {
        fake.state
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .count()
    };
    assert_eq!((count(&a, "/api/show"), count(&b, "/api/show")), (0, 1));
    // A pull goes to the first upstream unless pinned.
    let pull = |model: &'static str, pin: Option<&'static str>| {
        let url = format!("{}/api/pull", app.url);
        async move {
            let mut request = http()
                .post(url)
                .json(&json!({"model": model, "stream": false}));
            if let Some(pin) = pin {
                request = request.header(UPSTREAM, pin);
            }
            let response = request.send().await.expect("pull");
            assert_eq!(response.status(), 200);
            response.headers()[UPSTREAM]
                .to_str()
                .expect("text")
                .to_owned()
        }
    };
    assert_eq!(pull("alpha", None).await, "gpu0");
    assert_eq!(pull("beta", Some("gpu1")).await, "gpu1");
    assert_eq!((count(&a, "/api/pull"), count(&b, "/api/pull")), (1, 1));
    let delete = http()
        .delete(format!("{}/api/delete", app.url))
        .header(UPSTREAM, "gpu1")
        .json(&json!({"model": "beta"}))
        .send()
        .await
        .expect("delete");
    assert_eq!(delete.headers()[UPSTREAM], "gpu1");
    assert_eq!((count(&a, "/api/delete"), count(&b, "/api/delete")), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn among_hosts_that_must_load_it_the_faster_measured_host_wins() {
    // Three hosts, none with the model loaded; each load takes 300 ms; generation speed
    // differs tenfold.
    let host = |gap_ms| FakeConfig {
        chunk_gap: Duration::from_millis(gap_ms),
        header_delay: Duration::from_millis(300),
        tokens: 4,
        ..holding(&[("m:latest", false)])
    };
    let a = FakeOllama::start_with(host(20)).await;
    let b = FakeOllama::start_with(host(20)).await;
    let c = FakeOllama::start_with(host(2)).await;
    let app = start(&[&a, &b, &c], |_| {}).await;
    // Unmeasured: the first host. Then one call pinned to each, to measure them.
    let (_, first, _) = generate(&app, "m", None).await;
    assert_eq!(first, "gpu0");
    for pin in ["gpu0", "gpu1", "gpu2"] {
        let (status, host, _) = generate(&app, "m", Some(pin)).await;
        assert_eq!((status, host.as_str()), (200, pin));
    }
    let records = app.wait_records(4).await;
    assert!(
        records
            .iter()
            .all(|r| r.load_duration_ms.is_some_and(|l| l >= 300.0)),
        "{records:#?}"
    );
    // The speeds are learnt from the committed records; then the fast host wins.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, host, _) = generate(&app, "m", None).await;
        assert_eq!(status, 200);
        if host == "gpu2" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fast host never won"
        );
    }
    for _ in 0..3 {
        let (_, host, _) = generate(&app, "m", None).await;
        assert_eq!(host, "gpu2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_upstream_behaves_as_before_and_names_itself() {
    let a = FakeOllama::start_with(holding(&[("m:latest", true)])).await;
    let app = TestApp::start(&a.url()).await;
    let (status, host, _) = generate(&app, "m", None).await;
    let name = a.addr.to_string();
    assert_eq!((status, host.as_str()), (200, name.as_str()));
    // No probes, no union: only the call itself reached the fake.
    // (The kind's detection asks `/api/version` once at start, as it always did.)
    let paths: Vec<String> = a
        .state
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| p != "/api/version")
        .collect();
    assert_eq!(paths, vec!["/api/generate"]);
    let tags = http()
        .get(format!("{}/api/tags", app.url))
        .send()
        .await
        .expect("tags")
        .bytes()
        .await
        .expect("bytes");
    let direct = http()
        .get(format!("{}/api/tags", a.url()))
        .send()
        .await
        .expect("tags")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(tags, direct, "forwarded byte for byte");
    let system: Value = http()
        .get(format!("{}{BASE}/system", app.url))
        .send()
        .await
        .expect("system")
        .json()
        .await
        .expect("json");
    assert!(system.get("hosts").is_none());
    let records = app.wait_records(1).await;
    assert_eq!(records[0].host.as_deref(), Some(name.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_ollama_client_sees_one_ollama_with_every_model() {
    let a =
        FakeOllama::start_with(holding(&[("alpha:latest", true), ("shared:latest", false)])).await;
    let b =
        FakeOllama::start_with(holding(&[("beta:latest", true), ("shared:latest", true)])).await;
    let app = start(&[&a, &b], |_| {}).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/fleet.py");
    let proxy = app.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(proxy)
            .env("NO_PROXY", "*")
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "the client script failed (are the packages in tests/python/requirements.txt \
         installed? scripts/test installs them):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).expect("json result");
    let listed: HashSet<&str> = result["list"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m.as_str().expect("name"))
        .collect();
    assert_eq!(
        listed,
        HashSet::from(["alpha:latest", "beta:latest", "shared:latest"])
    );
    let loaded: HashSet<&str> = result["ps"]
        .as_array()
        .expect("ps")
        .iter()
        .map(|m| m.as_str().expect("name"))
        .collect();
    assert_eq!(
        loaded,
        HashSet::from(["alpha:latest", "beta:latest", "shared:latest"])
    );
    assert_eq!(result["show_beta_family"], "llama");
    for call in ["generate_alpha", "chat_beta", "stream_shared"] {
        assert_eq!(result[call], true, "{call}: {result:#}");
    }
    let records = app.wait_records(3).await;
    let by_model = |m: &str| {
        records
            .iter()
            .find(|r| r.model == m)
            .and_then(|r| r.host.clone())
    };
    assert_eq!(by_model("alpha").as_deref(), Some("gpu0"));
    assert_eq!(by_model("beta").as_deref(), Some("gpu1"));
    assert_eq!(
        by_model("shared").as_deref(),
        Some("gpu1"),
        "loaded on gpu1 only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_takes_a_host_filter_and_metrics_carry_the_host() {
    let a = FakeOllama::start_with(holding(&[("m:latest", true)])).await;
    let b = FakeOllama::start_with(holding(&[("m:latest", true)])).await;
    let app = start(&[&a, &b], |_| {}).await;
    for _ in 0..3 {
        assert_eq!(generate(&app, "m", Some("gpu0")).await.0, 200);
    }
    for _ in 0..2 {
        assert_eq!(generate(&app, "m", Some("gpu1")).await.0, 200);
    }
    app.wait_records(5).await;
    let get = |path: String| async move {
        let response = http().get(path).send().await.expect("get");
        assert_eq!(response.status(), 200);
        response.text().await.expect("body")
    };
    let json = |text: String| serde_json::from_str::<Value>(&text).expect("json");
    let stats = |host: &str| {
        let url = format!("{}{BASE}/statistics/m?host={host}", app.url);
        async move { json(get(url).await)["total_operations"].clone() }
    };
    assert_eq!(stats("gpu0").await, 3);
    assert_eq!(stats("gpu1").await, 2);
    let all = json(get(format!("{}{BASE}/statistics/m", app.url)).await);
    assert_eq!(all["total_operations"], 5);
    let nowhere = json(get(format!("{}{BASE}/statistics/m?host=gpu9", app.url)).await);
    assert_ne!(
        nowhere["total_operations"], 5,
        "an unknown host matches nothing"
    );
    let export = json(get(format!("{}{BASE}/export?host=gpu1", app.url)).await);
    let hosts: Vec<&str> = export
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["host"].as_str().expect("host"))
        .collect();
    assert_eq!(hosts, vec!["gpu1", "gpu1"]);
    let compare: Value = http()
        .post(format!("{}{BASE}/compare", app.url))
        .json(&json!({"models": ["m"], "host": "gpu0"}))
        .send()
        .await
        .expect("compare")
        .json()
        .await
        .expect("json");
    assert_eq!(compare["models"]["m"]["total_operations"], 3, "{compare:#}");
    let recommend = json(
        get(format!(
            "{}{BASE}/recommend?host=gpu1&min_operations=1",
            app.url
        ))
        .await,
    );
    assert_eq!(recommend["recommended_model"], "m", "{recommend:#}");
    let recommend = json(
        get(format!(
            "{}{BASE}/recommend?host=gpu1&min_operations=3",
            app.url
        ))
        .await,
    );
    assert!(
        recommend["recommended_model"].is_null(),
        "two calls on gpu1 are too few: {recommend:#}"
    );
    let trend = json(
        get(format!(
            "{}{BASE}/trend/m?host=gpu1&metric=processing_time",
            app.url
        ))
        .await,
    );
    let counted: u64 = trend["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 2, "{trend:#}");
    get(format!("{}{BASE}/insights?host=gpu0", app.url)).await;
    let page = get(format!("{}/dashboard?host=gpu1&refresh=0", app.url)).await;
    assert!(
        page.contains("host <strong>gpu1</strong>"),
        "the page names its host filter"
    );
    assert!(
        page.contains("<option value=\"gpu0\""),
        "a chooser lists the hosts"
    );
    let metrics = get(format!("{}/metrics", app.url)).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ollameter_inference_calls_total")
                && l.contains("host=\"gpu1\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );
}

async fn health(app: &TestApp) -> Value {
    let response = http()
        .get(format!("{}{BASE}/health", app.url))
        .send()
        .await
        .expect("health");
    assert_eq!(response.status(), 200, "health always answers 200");
    response.json().await.expect("json")
}

/// `ollameter healthcheck` (the Docker HEALTHCHECK) against the app: whether it passes.
async fn healthcheck_passes(app: &TestApp) -> bool {
    let listen = app.url.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ollameter"))
            .args(["healthcheck", "--listen", &listen])
            .env_remove("OLLAMETER_CONFIG")
            .output()
            .expect("runs")
            .status
            .success()
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_every_host_and_is_degraded_while_one_is_down() {
    let a = FakeOllama::start_with(holding(&[("m:latest", true)])).await;
    let b = FakeOllama::start_with(holding(&[("m:latest", true)])).await;
    // Probes far apart: what /health says comes from its own probe of every host (and
    // from the calls), not from the background loop.
    let app = start(&[&a, &b], |c| {
        c.proxy.health.probe_interval = Duration::from_secs(3600);
        c.proxy.health.eject_after_failures = 1;
        c.proxy.health.eject_for = Duration::from_millis(300);
    })
    .await;
    let h = health(&app).await;
    assert_eq!(h["status"], "ok", "{h:#}");
    assert_eq!(h["upstream_reachable"], true);
    assert_eq!(h["upstream_error"], Value::Null);
    assert_eq!(h["upstream"], a.url());
    let hosts = h["upstreams"].as_array().expect("every host");
    assert_eq!(hosts.len(), 2);
    for (host, name) in hosts.iter().zip(["gpu0", "gpu1"]) {
        assert_eq!(host["name"], name);
        assert_eq!(host["kind"], "ollama");
        assert_eq!(host["reachable"], true);
        assert_eq!(host["availability"], "healthy");
        assert_eq!(host["ejected"], false);
        assert_eq!(host["probe_error"], Value::Null);
        assert_eq!(host["last_call_error"], Value::Null);
    }

    // gpu1 goes down: /health says so at once, the fleet still serves through gpu0.
    let addr = b.addr;
    b.stop();
    drop(b);
    let h = health(&app).await;
    assert_eq!(h["status"], "degraded", "{h:#}");
    assert_eq!(h["upstream_reachable"], true, "gpu0 still takes calls");
    let error = h["upstream_error"].as_str().expect("why");
    assert!(error.starts_with("gpu1: "), "{error}");
    assert_eq!(h["upstreams"][0]["availability"], "healthy");
    let down = &h["upstreams"][1];
    assert_eq!(down["reachable"], false);
    assert_eq!(down["availability"], "down");
    assert!(
        down["probe_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down}"
    );
    let (status, host, _) = generate(&app, "m", None).await;
    assert_eq!((status, host.as_str()), (200, "gpu0"));
    assert!(
        healthcheck_passes(&app).await,
        "a degraded fleet keeps the container healthy"
    );

    // A call pinned to gpu1 fails: it is ejected, with the call's error kept.
    let (status, host, _) = generate(&app, "m", Some("gpu1")).await;
    assert_eq!((status, host.as_str()), (502, "gpu1"));
    let h = health(&app).await;
    let down = &h["upstreams"][1];
    assert_eq!(down["ejected"], true, "{down}");
    assert_eq!(down["failures_in_a_row"], 1);
    assert!(
        down["last_call_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{down}"
    );

    // gpu0 down too: nothing serves, still a 200 that says so.
    let a_addr = a.addr;
    a.stop();
    drop(a);
    let h = health(&app).await;
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["upstream_reachable"], false, "{h:#}");
    let error = h["upstream_error"].as_str().expect("why");
    assert!(
        error.contains("gpu0: ") && error.contains("gpu1: "),
        "{error}"
    );
    assert!(healthcheck_passes(&app).await);

    // Both back: once gpu1's rest is over (half-open, answering its probe) all is well.
    let _a = FakeOllama::start_at(a_addr, holding(&[("m:latest", true)])).await;
    let _b = FakeOllama::start_at(addr, holding(&[("m:latest", true)])).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h = health(&app).await;
        if h["status"] == "ok" {
            assert_eq!(h["upstreams"][0]["reachable"], true);
            assert_eq!(h["upstreams"][1]["reachable"], true);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ok again: {h:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/metrics`' `ollameter_upstream_up` per host, once it satisfies `done` (up to 10 s:
/// each host's telemetry samples its `/api/ps` on its own interval).
async fn upstream_up_lines(app: &TestApp, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = http()
            .get(format!("{}/metrics", app.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let lines: Vec<String> = page
            .lines()
            .filter(|l| l.starts_with("ollameter_upstream_up"))
            .map(str::to_string)
            .collect();
        if done(&lines) || tokio::time::Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_up_metric_has_a_series_per_host() {
    let a = FakeOllama::start_with(holding(&[("m:latest", true)])).await;
    let b = FakeOllama::start_with(holding(&[("m:latest", true)])).await;
    // Each host's telemetry samples its /api/ps every second.
    let app = start(&[&a, &b], |c| c.telemetry.enabled = true).await;
    let both_up = [
        "ollameter_upstream_up{host=\"gpu0\"} 1".to_string(),
        "ollameter_upstream_up{host=\"gpu1\"} 1".to_string(),
    ];
    let lines = upstream_up_lines(&app, |l| l == both_up).await;
    assert_eq!(
        lines, both_up,
        "one labelled series per host, no unlabelled one"
    );
    b.stop();
    drop(b);
    let one_down = [
        "ollameter_upstream_up{host=\"gpu0\"} 1".to_string(),
        "ollameter_upstream_up{host=\"gpu1\"} 0".to_string(),
    ];
    let lines = upstream_up_lines(&app, |l| l == one_down).await;
    assert_eq!(
        lines, one_down,
        "the host that went down, and only it, is 0"
    );
    app.stop().await;
}
