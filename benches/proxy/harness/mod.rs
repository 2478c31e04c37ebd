//! The proxy benchmark's parts, shared by `cargo bench --bench proxy` and the smoke test in
//! `tests/bench_smoke.rs`:
//!
//! - [`upstream`]: the fast fake Ollama the three ways are measured against.
//! - [`children`]: the processes the benchmark starts (ollameter, nginx), stopped on drop.
//! - [`load`]: the load generators: `wrk` for closed-loop throughput and latency, and
//!   Rust clients for streams, large bodies and fixed-rate load.
//! - [`scenarios`]: the plan of one run and the scenarios of issue 6.
//! - [`stats`]: percentiles and medians.

pub mod children;
pub mod load;
pub mod scenarios;
pub mod stats;
pub mod upstream;
