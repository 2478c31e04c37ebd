//! Starts the real sidecar on port 0 in front of a given upstream, with its own store in
//! a temporary directory, and reads back what it recorded.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::path::PathBuf;
use std::time::Duration;

use ollameter::app::{self, Running};
use ollameter::config::{self, Config, Overrides};
use ollameter::record::Record;
use ollameter::store::Store;

/// A running sidecar and its store.
pub struct TestApp {
    /// The sidecar's base URL.
    pub url: String,
    /// The store's file.
    pub db: PathBuf,
    running: Option<Running>,
    _dir: tempfile::TempDir,
}

/// The test configuration: port 0, a temporary store, a short flush interval, telemetry
/// off.
pub fn test_config(upstream: &str, dir: &tempfile::TempDir) -> Config {
    let flags = Overrides {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some(upstream.into()),
        db: Some(dir.path().join("ollameter.db").display().to_string()),
        ..Overrides::default()
    };
    let mut config = config::load(None, &[], &flags).expect("valid test config");
    config.recorder.flush_interval = Duration::from_millis(10);
    // The sampler polls the upstream's /api/ps every second: off unless a test needs it
    // (`start_with(.., |c| c.telemetry.enabled = true)`), so what the fake sees is the
    // test's own traffic.
    config.telemetry.enabled = false;
    config
}

impl TestApp {
    /// Starts the sidecar in front of `upstream`.
    pub async fn start(upstream: &str) -> TestApp {
        TestApp::start_with(upstream, |_| {}).await
    }

    /// Starts the sidecar after `tweak` has adjusted the configuration.
    pub async fn start_with(upstream: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(upstream, &dir);
        tweak(&mut config);
        let db = config.store.path.clone();
        let running = app::start(config).await.expect("sidecar starts");
        TestApp {
            url: format!("http://{}", running.proxy_addr),
            db,
            running: Some(running),
            _dir: dir,
        }
    }

    /// Imports `records` through `POST /api/model-performance/import` and checks that
    /// every one was taken.
    pub async fn import(&self, records: &[serde_json::Value]) {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .post(format!("{}/api/model-performance/import", self.url))
            .json(records)
            .send()
            .await
            .expect("import");
        let status = resp.status();
        let report: serde_json::Value = resp.json().await.expect("the import's report");
        assert_eq!(status, 200, "{report}");
        assert_eq!(
            report["imported"].as_u64(),
            Some(records.len() as u64),
            "{report}"
        );
    }

    /// The running sidecar.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// Every record committed so far, after flushing the queue.
    pub async fn records(&self) -> Vec<Record> {
        self.running().recorder.flush().await;
        Store::open_reader(&self.db)
            .expect("reader")
            .records(None)
            .expect("records")
    }

    /// Waits until at least `n` records are committed (records are finished when the
    /// response body ends, which can be just after the client has read it).
    pub async fn wait_records(&self, n: usize) -> Vec<Record> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let records = self.records().await;
            if records.len() >= n {
                return records;
            }
            if tokio::time::Instant::now() > deadline {
                // The caller's assertion fails next; say whether the records were lost
                // before the store or by it.
                eprintln!(
                    "wait_records: {} of {n} records after 10 s; recorder: {:?}, store error {:?}",
                    records.len(),
                    self.running().recorder.snapshot(),
                    self.running().recorder.stats().last_error(),
                );
                return records;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until a record of each of `operations` is committed, and returns every record
    /// then. `patience` only bounds a broken run (a healthy one returns as soon as the
    /// last record is in); past it the test fails naming what is missing, with the
    /// recorder's counters (records dropped, store failures), so a failure says whether
    /// the record never reached the recorder or the store refused it.
    pub async fn wait_for_operations(
        &self,
        operations: &[&str],
        patience: Duration,
    ) -> Vec<Record> {
        let started = std::time::Instant::now();
        loop {
            let records = self.records().await;
            let missing: Vec<&str> = operations
                .iter()
                .copied()
                .filter(|op| !records.iter().any(|r| r.operation == *op))
                .collect();
            if missing.is_empty() {
                return records;
            }
            if started.elapsed() > patience {
                let recorder = &self.running().recorder;
                let stats = recorder.stats();
                let found: Vec<&str> = records.iter().map(|r| r.operation.as_str()).collect();
                panic!(
                    "no record for {missing:?} {patience:?} after it was awaited; committed: \
                     {found:?}; recorder: {:?}, failed batches {}, store error {:?}, writer \
                     error {:?}",
                    recorder.snapshot(),
                    stats
                        .failed_batches
                        .load(std::sync::atomic::Ordering::Relaxed),
                    stats.last_error(),
                    stats.writer_error(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the sidecar, committing everything queued. The store's directory lives as
    /// long as the returned guard.
    pub async fn stop(mut self) -> (PathBuf, tempfile::TempDir) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        (self.db, self._dir)
    }
}
