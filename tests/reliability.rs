//! Faults survived, bad input refused, nothing lost, nobody let in: the points of
//! docs/reliability.md, each tested against the real app.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::fake_ollama::{FakeConfig, FakeOllama};
use common::harness::TestApp;
use futures_util::StreamExt;
use ollameter::record::ErrorKind;
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

fn generate(prompt: &str) -> Value {
    json!({"model": "llama3.2", "prompt": prompt, "stream": false})
}

/// Sends raw bytes and returns everything the server answers until it closes.
fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn upstream_down_then_back_needs_no_restart() {
    let fake = FakeOllama::start().await;
    let addr = fake.addr;
    let app = TestApp::start(&fake.url()).await;
    let c = http();
    assert_eq!(
        c.post(format!("{}/api/generate", app.url))
            .json(&generate("a"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    fake.stop();
    drop(fake);
    let down = c
        .post(format!("{}/api/generate", app.url))
        .json(&generate("b"))
        .send()
        .await
        .expect("send");
    assert_eq!(down.status(), 502);
    let body: Value = down.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("message")
            .contains(&addr.to_string())
    );
    let _back = FakeOllama::start_at(addr, FakeConfig::default()).await;
    let up = c
        .post(format!("{}/api/generate", app.url))
        .json(&generate("c"))
        .send()
        .await
        .expect("send");
    assert_eq!(up.status(), 200);
    let records = app.wait_records(3).await;
    let kinds: Vec<Option<ErrorKind>> = records.iter().map(|r| r.error_kind).collect();
    assert_eq!(
        kinds,
        vec![None, Some(ErrorKind::UpstreamUnreachable), None]
    );
    app.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_model_load_of_minutes_is_waited_for_not_timed_out() {
    // The clock is paused: it jumps to the next timer whenever everything waits. If the
    // proxy had any response timeout shorter than the 150 s "model load", that timer would
    // fire first and the call would fail.
    let fake = FakeOllama::start_with(FakeConfig {
        header_delay: Duration::from_secs(150),
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start_with(&fake.url(), |c| {
        c.telemetry.enabled = false;
        c.server.header_read_timeout = Duration::from_secs(86_400);
    })
    .await;
    let started = tokio::time::Instant::now();
    let resp = http()
        .post(format!("{}/api/generate", app.url))
        .json(&generate("slow"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["done"], true);
    assert!(
        started.elapsed() >= Duration::from_secs(150),
        "the load really took its 150 s"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_stream_closes_the_upstream_and_leaks_nothing() {
    let fake = FakeOllama::start_with(FakeConfig {
        chunk_gap: Duration::from_millis(10),
        tokens: 100_000,
        ..FakeConfig::default()
    })
    .await;
    let app = TestApp::start_with(&fake.url(), |c| c.telemetry.enabled = false).await;
    let runtime = tokio::runtime::Handle::current();
    // Warm up the pools, then take the baseline.
    let c = http();
    c.get(format!("{}/api/tags", app.url))
        .send()
        .await
        .expect("warm")
        .bytes()
        .await
        .expect("body");
    let baseline_tasks = runtime.metrics().num_alive_tasks();
    let baseline_upstream = fake.state.counters().open_connections;
    let mut closings = Vec::new();
    for i in 0..5 {
        let client = http();
        let resp = client
            .post(format!("{}/api/generate", app.url))
            .json(&json!({"model": "llama3.2", "prompt": format!("p{i}")}))
            .send()
            .await
            .expect("send");
        let mut stream = resp.bytes_stream();
        stream.next().await.expect("chunk").expect("ok");
        let left = Instant::now();
        drop(stream);
        drop(client);
        assert!(
            fake.state
                .wait_cancelled(i + 1, Duration::from_secs(10))
                .await,
            "upstream stream {i} dropped"
        );
        closings.push(left.elapsed());
    }
    closings.sort();
    println!(
        "upstream generation stopped after the client left: median {:?}, max {:?}",
        closings[2], closings[4]
    );
    assert!(
        fake.state
            .wait_open_connections_at_most(baseline_upstream, Duration::from_secs(10))
            .await,
        "upstream connections back to the baseline"
    );
    let records = app.wait_records(5).await;
    assert_eq!(
        records
            .iter()
            .filter(|r| r.error_kind == Some(ErrorKind::ClientCancelled))
            .count(),
        5
    );
    // Connection tasks end once the sockets close; give them the moment it takes.
    let mut tasks = runtime.metrics().num_alive_tasks();
    for _ in 0..200 {
        if tasks <= baseline_tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        tasks = runtime.metrics().num_alive_tasks();
    }
    assert!(
        tasks <= baseline_tasks,
        "tasks {tasks} > baseline {baseline_tasks}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_store_that_refuses_writes_degrades_and_recovers_without_touching_traffic() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let c = http();
    let recorder = app.running().recorder.clone();
    // A full disk, as SQLite sees it: no page may be added to the file.
    recorder
        .run_raw_job(|store| {
            let store = store.as_sqlite().expect("a SQLite store");
            let pages: i64 = store
                .connection()
                .pragma_query_value(None, "page_count", |r| r.get(0))
                .expect("pages");
            store
                .connection()
                .pragma_update(None, "max_page_count", pages)
                .expect("cap");
        })
        .await
        .expect("job");
    let mut statuses = Vec::new();
    for i in 0..30 {
        let resp = c
            .post(format!("{}/api/generate", app.url))
            .json(&generate(&format!("{i} {}", "x".repeat(4000))))
            .send()
            .await
            .expect("send");
        statuses.push(resp.status().as_u16());
        resp.bytes().await.expect("body");
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "traffic unaffected: {statuses:?}"
    );
    recorder.flush().await;
    let health: Value = c
        .get(format!("{}/api/model-performance/health", app.url))
        .send()
        .await
        .expect("h")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store_writable"], false);
    // The file's free pages take a few records before the cap bites.
    assert!(
        health["records_written"].as_u64().expect("written") < 30,
        "some records refused: {health}"
    );
    assert_eq!(
        health["records_dropped"], 0,
        "refused records wait in the spill: {health}"
    );
    recorder
        .run_raw_job(|store| {
            store
                .as_sqlite()
                .expect("a SQLite store")
                .connection()
                .pragma_update(None, "max_page_count", 1_073_741_823i64)
                .expect("uncap")
        })
        .await
        .expect("job");
    let resp = c
        .post(format!("{}/api/generate", app.url))
        .json(&generate("after"))
        .send()
        .await
        .expect("send");
    resp.bytes().await.expect("body");
    // The writer tries the store again by itself (0.2 s, doubling): wait until it has
    // written what waited, on the condition, with a bound only a broken run reaches.
    let mut health = Value::Null;
    for _ in 0..600 {
        recorder.flush().await;
        health = c
            .get(format!("{}/api/model-performance/health", app.url))
            .send()
            .await
            .expect("h")
            .json()
            .await
            .expect("json");
        if health["records_written"] == 31 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health["store_writable"], true, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(
        health["records_written"], 31,
        "every call through the outage written once the store takes writes: {health}"
    );
    assert_eq!(health["records_dropped"], 0, "{health}");
    let stored = recorder
        .run_raw_job(|store| {
            store
                .as_sqlite()
                .expect("a SQLite store")
                .connection()
                .query_row(
                    "SELECT COUNT(*), COUNT(DISTINCT id) FROM records",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                )
                .expect("count")
        })
        .await
        .expect("job");
    assert_eq!(stored, (31, 31), "each record stored once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_only_ever_reach_the_configured_upstream() {
    let fake = FakeOllama::start().await;
    // The kind is given, so no detection probe reaches the fake beside what is forwarded.
    let app = TestApp::start_with(&fake.url(), |c| {
        c.proxy.kind =
            ollameter::upstream::KindSetting::Fixed(ollameter::upstream::UpstreamKind::Ollama);
    })
    .await;
    let addr = app.url.trim_start_matches("http://").to_string();
    let upstream_host = fake.url().trim_start_matches("http://").to_string();
    let a = addr.clone();
    let answers = tokio::task::spawn_blocking(move || {
        vec![
            raw(&a, b"GET http://evil.example:80/api/tags HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
            raw(&a, b"GET /api/version HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n"),
            raw(&a, b"GET /../../api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            raw(&a, b"GET /%2e%2e/api/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ]
    })
    .await
    .expect("join");
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    }
    assert!(
        answers[0].starts_with("HTTP/1.1 200"),
        "absolute-form is served by the upstream: {}",
        answers[0]
    );
    // Telemetry is off in the test app, so the fake sees exactly what was forwarded: each
    // of the four requests once (none refused, none sent twice), every one to the
    // configured upstream's Host.
    let seen = fake.state.requests();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/api/tags", "/api/version", "/api/version", "/api/version"],
        "{answers:?}"
    );
    for r in seen {
        assert_eq!(
            r.header("host"),
            Some(upstream_host.as_str()),
            "{} went with a foreign Host",
            r.path
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_and_slow_or_surplus_clients_are_cut() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| {
        c.server.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    let addr = app.url.trim_start_matches("http://").to_string();
    let a = addr.clone();
    let big = tokio::task::spawn_blocking(move || {
        let header = format!(
            "GET /api/tags HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(200_000)
        );
        raw(&a, header.as_bytes())
    })
    .await
    .expect("join");
    assert!(
        big.starts_with("HTTP/1.1 431"),
        "{}",
        &big[..big.len().min(80)]
    );
    // A client that never finishes its headers is cut, not waited for forever.
    let a = addr.clone();
    let slow =
        tokio::task::spawn_blocking(move || raw(&a, b"GET /api/tags HTTP/1.1\r\nHost: x\r\n"))
            .await
            .expect("join");
    assert!(
        slow.is_empty() || slow.starts_with("HTTP/1.1 408"),
        "{slow}"
    );
    app.stop().await;
    // Two connections held open: a third is closed at once. The held ones send nothing, so
    // the header deadline is the default (30 s), far beyond this test on any machine; and
    // the listener accepts connections in the order they were made, so the third finds
    // both places taken without any wait.
    let app = TestApp::start_with(&fake.url(), |c| c.server.max_connections = 2).await;
    let a = app.url.trim_start_matches("http://").to_string();
    let third = tokio::task::spawn_blocking(move || {
        let hold: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(&a).expect("connect"))
            .collect();
        let answer = raw(
            &a,
            b"GET /api/tags HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        drop(hold);
        answer
    })
    .await
    .expect("join");
    assert!(
        third.is_empty(),
        "the surplus connection is refused: {third}"
    );
    app.stop().await;
}

#[tokio::test]
async fn destructive_routes_need_the_admin_token_when_one_is_set() {
    let fake = FakeOllama::start().await;
    let token = "0123456789abcdef0123";
    let app = TestApp::start_with(&fake.url(), |c| c.access.admin_token = Some(token.into())).await;
    let c = http();
    let url = format!("{}/api/model-performance/clear-old", app.url);
    let no = c
        .post(&url)
        .json(&json!({"days": 1}))
        .send()
        .await
        .expect("send");
    assert_eq!(no.status(), 401);
    let wrong = c
        .post(&url)
        .bearer_auth("0123456789abcdef0124")
        .json(&json!({"days": 1}))
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    let yes = c
        .post(&url)
        .bearer_auth(token)
        .json(&json!({"days": 1}))
        .send()
        .await
        .expect("send");
    assert_eq!(yes.status(), 200);
    let del = c
        .delete(format!("{}/api/model-performance/clear/m", app.url))
        .send()
        .await
        .expect("send");
    assert_eq!(del.status(), 401);
    // Reads stay open.
    let read = c
        .get(format!("{}/api/model-performance/statistics", app.url))
        .send()
        .await
        .expect("send");
    assert_eq!(read.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn without_a_token_destructive_routes_are_for_loopback_clients_only() {
    use axum::extract::ConnectInfo;
    use tower::ServiceExt;
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    // The API router in-process, as a remote client would reach it.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::harness::test_config(&fake.url(), &dir);
    let running = ollameter::app::start(config).await.expect("start");
    let router = running.api_router.clone();
    let request = |peer: &str| {
        let mut r = axum::http::Request::builder()
            .method("POST")
            .uri("/api/model-performance/clear-old")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(r#"{"days": 1}"#))
            .expect("request");
        r.extensions_mut().insert(ConnectInfo(
            peer.parse::<std::net::SocketAddr>().expect("addr"),
        ));
        r
    };
    let remote = router
        .clone()
        .oneshot(request("192.0.2.7:5000"))
        .await
        .expect("answer");
    assert_eq!(remote.status(), 403);
    let local = router
        .oneshot(request("127.0.0.1:5000"))
        .await
        .expect("answer");
    assert_eq!(local.status(), 200);
    running.shutdown().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_can_listen_on_its_own_address() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start_with(&fake.url(), |c| {
        c.server.api_listen = Some("127.0.0.1:0".parse().expect("addr"))
    })
    .await;
    let api = format!("http://{}", app.running().api_addr);
    assert_ne!(api, app.url);
    let c = http();
    let on_api = c
        .get(format!("{api}/api/model-performance/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(on_api.status(), 200);
    // On the proxy's port the path is just forwarded to Ollama, which has no such route.
    let on_proxy = c
        .get(format!("{}/api/model-performance/health", app.url))
        .send()
        .await
        .expect("send");
    assert_eq!(on_proxy.status(), 404);
    let tags = c.get(format!("{api}/api/tags")).send().await.expect("send");
    assert_eq!(tags.status(), 404, "the API listener does not proxy");
    app.stop().await;
}
