//! The shared store on PostgreSQL: the API bench's flow over a real PostgreSQL started
//! for the run (fsync on), then what only a shared store has: fire-and-forget ingest at
//! the default batch size, and how long one instance takes to see another's record.
//!
//! Run: `cargo bench --bench pg` (add `-- --records N` for another size). Needs Debian's
//! `postgresql` (or `OLLAMETER_PG_BIN`); the cluster lives in a temporary directory and
//! is removed at the end. The numbers go to standard output; docs/benchmarks.md records
//! them.

#[path = "../tests/pg/cluster.rs"]
mod cluster;
#[path = "api/run.rs"]
mod run;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use ollameter::app;
use ollameter::config::{self, Overrides};
use ollameter::record::Record;
use ollameter::recorder::{self, RecorderConfig};
use ollameter::store::StoreLocation;

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let cluster = cluster::Cluster::start_with(cluster::Options { durable: true });
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    // 1. The API bench over PostgreSQL: acknowledged ingest, history load, query latency.
    let url = cluster.create_database("bench");
    run::run(&runtime, &url);

    // 2. Fire-and-forget ingest as the proxy submits, at the default batch size.
    let total = run::arg("--records", if measuring { 1_000_000 } else { 20_000 }).min(200_000);
    let url = cluster.create_database("ingest");
    let location = StoreLocation::parse(&url).expect("url");
    let defaults = config::load(None, &[], &Overrides::default()).expect("defaults");
    let now_ms = Utc::now().timestamp_millis();
    runtime.block_on(async {
        let (rec, task) = recorder::start(
            &location,
            RecorderConfig {
                max_records_per_model: u64::MAX,
                max_age: Duration::from_secs(3650 * 86_400),
                max_models: usize::MAX,
                retention_interval: Duration::from_secs(86_400),
                instance: "bench".into(),
                ..defaults.recorder.clone()
            },
            None,
        )
        .expect("recorder");
        let started = Instant::now();
        let mut i = 0;
        while i < total {
            if rec.submit(run::record(i, 50, now_ms, 86_400_000)) {
                i += 1;
            } else {
                // The queue is full: the proxy would count a drop; the bench waits.
                rec.stats().dropped.fetch_sub(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        rec.flush().await;
        let elapsed = started.elapsed();
        println!(
            "fire-and-forget ingest at batch_size {}: {total} records in {:.2} s = {:.0} records/s \
             ({} commits, mean {:.2} ms)",
            defaults.recorder.batch_size,
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64(),
            rec.stats().commits.load(Ordering::Relaxed),
            rec.stats().commit_us_total.load(Ordering::Relaxed) as f64
                / rec.stats().commits.load(Ordering::Relaxed).max(1) as f64
                / 1e3
        );
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
    });

    // 3. Catch-up: a record written by one instance, until another's API shows it.
    let url = cluster.create_database("follow");
    let location = StoreLocation::parse(&url).expect("url");
    let flags = Overrides {
        listen: Some("127.0.0.1:0".into()),
        upstream: Some("http://127.0.0.1:9".into()),
        db: Some(url.clone()),
        ..Overrides::default()
    };
    let mut config = config::load(None, &[], &flags).expect("config");
    config.telemetry.enabled = false;
    let rounds = if measuring { 40 } else { 3 };
    runtime.block_on(async {
        let running = app::start(config).await.expect("start");
        let (writer, task) = recorder::start(
            &location,
            RecorderConfig {
                queue_capacity: 100,
                batch_size: 64,
                flush_interval: Duration::from_millis(200),
                max_records_per_model: u64::MAX,
                max_age: Duration::from_secs(3650 * 86_400),
                max_models: usize::MAX,
                retention_interval: Duration::from_secs(86_400),
                instance: "other".into(),
                spill_capacity: 0,
                follow_interval: Duration::from_secs(3600),
            },
            None,
        )
        .expect("writer");
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let mut times = Vec::new();
        for round in 0..rounds {
            let model = format!("follow-{round}");
            let mut r = Record::new(
                format!("follow-{round}"),
                Utc::now(),
                model.clone(),
                "chat".into(),
                "/api/chat".into(),
            );
            r.success = true;
            r.processing_time_ms = 100.0;
            writer.submit_and_wait(vec![r]).await.expect("stored");
            let committed = Instant::now();
            let path = format!(
                "http://{}/api/model-performance/statistics/{model}",
                running.api_addr
            );
            loop {
                let status = http.get(&path).send().await.expect("send").status();
                if status.is_success() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            times.push(committed.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "another instance's record in this one's statistics: median {:.0} ms, max {:.0} ms \
             over {rounds} records (follow interval {} ms)",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            ollameter::config::store::DEFAULT_FOLLOW_INTERVAL_MS
        );
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
        running.shutdown().await;
    });
}
