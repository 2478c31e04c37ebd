//! The statistics API at scale: 1,000,000 records over 50 models. Measures the store's
//! ingest rate (records committed per second through the recorder), the start-up load of
//! the in-memory history, and the latency of `/recommend` and `/statistics/{model}` over
//! HTTP (median and p95 of repeated calls).
//!
//! Run: `cargo bench --bench api` (add `-- --records N` for another size). The numbers are
//! written to standard output; docs/benchmarks.md records them.

#[path = "api/run.rs"]
mod run;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    run::run(&runtime, &db.display().to_string());
}
