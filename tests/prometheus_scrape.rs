//! A real Prometheus scrapes the sidecar's `/metrics` and answers queries over the
//! histograms that this test's traffic filled. Prometheus is Debian's `prometheus`
//! package (`/usr/bin/prometheus`, or `$PROMETHEUS`); without it this test fails rather
//! than passing unchecked.

mod common;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fake_ollama::FakeOllama;
use common::harness::TestApp;
use serde_json::{Value, json};

/// Generate calls the test sends through the proxy.
const CALLS: u64 = 3;
/// Longest wait for Prometheus to start, scrape and answer: a real process on a loaded CI
/// machine, with a 1 s scrape interval.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two queries while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The Prometheus binary: `$PROMETHEUS`, else Debian's.
fn prometheus_binary() -> PathBuf {
    let binary = std::env::var_os("PROMETHEUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        binary.is_file(),
        "{} not found: install Debian's `prometheus` package (`apt-get install -y \
         prometheus`) or set PROMETHEUS to a Prometheus binary",
        binary.display()
    );
    binary
}

/// A loopback port free right now. Prometheus takes its listen address as a flag and
/// does not report a port it picked itself, so the test picks one; the short window in
/// which another process could take it is the price of driving an external binary.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free loopback port")
        .local_addr()
        .expect("the listener has an address")
        .port()
}

/// A running Prometheus, killed on drop (also when the test panics).
struct Prometheus {
    child: Child,
    /// Base URL of its HTTP API.
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) at `/metrics` every second.
    fn start(target: &str) -> Prometheus {
        let binary = prometheus_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  \
                 evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: ollameter\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let log_file = File::create(&log).expect("create prometheus.log");
        let port = free_port();
        // Output goes to a file, not a pipe: nobody reads a pipe while the test polls, and
        // a full pipe would stall Prometheus.
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        }
    }

    /// Panics with Prometheus's log if it has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("poll prometheus") {
            panic!("prometheus exited ({status}):\n{}", read_log(&self.log));
        }
    }

    /// The value of an instant query returning one sample, or `None` while it returns
    /// none (before the first scrape) or Prometheus is not answering yet.
    async fn query_scalar(&self, client: &reqwest::Client, promql: &str) -> Option<f64> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", promql)],
        )
        .expect("query URL");
        let response = client.get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body: Value = response.json().await.ok()?;
        let result = body["data"]["result"].as_array()?;
        let [sample] = result.as_slice() else {
            return None;
        };
        sample["value"][1].as_str()?.parse().ok()
    }

    /// Polls `promql` until it equals `expected`; panics after [`QUERY_TIMEOUT`] with
    /// the last value, the scrape targets' state and Prometheus's log.
    async fn wait_for(&mut self, client: &reqwest::Client, promql: &str, expected: f64) {
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            self.assert_running();
            last = self.query_scalar(client, promql).await;
            if last == Some(expected) {
                return;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        let targets = match client
            .get(format!("{}/api/v1/targets", self.url))
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(error) => format!("(targets unavailable: {error})"),
        };
        panic!(
            "`{promql}` was {last:?}, not {expected}, after {QUERY_TIMEOUT:?}\n\
             targets: {targets}\nprometheus log:\n{}",
            read_log(&self.log)
        );
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Either may fail because the process already exited; there is nothing left to do
        // then.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| format!("(no log: {error})"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_sidecar_and_answers_for_its_histograms() {
    let fake = FakeOllama::start().await;
    let app = TestApp::start(&fake.url()).await;
    let client = client();

    let mut output_tokens = 0;
    for i in 0..CALLS {
        let response = client
            .post(format!("{}/api/generate", app.url))
            .json(&json!({
                "model": "llama3.2",
                "prompt": format!("question {i}"),
                "stream": false,
                "options": {"num_predict": 4 + i},
            }))
            .send()
            .await
            .expect("send generate");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("generate answer");
        output_tokens += body["eval_count"].as_u64().expect("eval_count");
    }
    let records = app.wait_records(CALLS as usize).await;
    assert_eq!(records.len() as u64, CALLS, "{records:#?}");

    // The page itself, before Prometheus reads it.
    let api = app.running().api_addr;
    let page = client
        .get(format!("http://{api}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["content-type"],
        ollameter::metrics::CONTENT_TYPE
    );

    let mut prometheus = Prometheus::start(&api.to_string());
    prometheus
        .wait_for(
            &client,
            "sum(gen_ai_client_operation_duration_seconds_count)",
            CALLS as f64,
        )
        .await;
    // Labels survive the scrape: the output-token histogram holds what Ollama reported.
    prometheus
        .wait_for(
            &client,
            r#"sum(gen_ai_client_token_usage_sum{gen_ai_system="ollama",gen_ai_request_model="llama3.2",gen_ai_token_type="output",status="ok"})"#,
            output_tokens as f64,
        )
        .await;
    prometheus
        .wait_for(
            &client,
            r#"sum(ollameter_http_requests_total{endpoint="/api/generate",status="200"})"#,
            CALLS as f64,
        )
        .await;

    drop(prometheus);
    app.stop().await;
}
