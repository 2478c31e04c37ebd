//! `ollameter bench`: measures models on a set of prompts before real traffic does, so the
//! first recommendation is already based on data. The calls go through a running sidecar
//! like any client's, marked `X-Ollameter-Source: benchmark`, so each makes an ordinary
//! record with `source = "benchmark"`; graded answers get a quality score.
//!
//! - [`prompts`]: the JSONL prompt file (images as file paths), API bodies and the
//!   built-in `default` suite, validated with line numbers.
//! - [`grade`](mod@grade): exact text, patterns and JSON pointer checks -> a 1-to-5 score.
//! - [`engine`]: the run itself (warm-ups, runs x prompts, concurrency, stopping) and
//!   its events; used by the CLI and by the API.
//! - [`report`]: per-model figures and the tables.
//! - [`cli`]: the command: progress bar, Ctrl-C, the printed report.
//! - [`runs`]: runs inside the sidecar, one at a time, for the benchmark routes.

pub mod cli;
pub mod engine;
pub mod grade;
pub mod prompts;
pub mod report;
pub mod runs;

pub use engine::{Models, Plan, Stop, Target};
pub use report::Report;
pub use runs::BenchRuns;
