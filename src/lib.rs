//! ollameter: a transparent reverse proxy in front of Ollama that measures every
//! inference call, stores each record, and tells its users which model to use.
//!
//! How the crate is laid out (dependencies flow down this list, never up):
//!
//! - [`app`]: wiring: store, history, recorder, telemetry, metrics, routers, listeners,
//!   and the ordered shutdown.
//! - [`serve`]: the accept loop both listeners run (header timeout, connection cap,
//!   peer address, graceful cut).
//! - [`config`]: raw configuration (file, environment, flags) validated into [`config::Config`].
//! - [`logging`]: whether the log carries ANSI colours (a terminal only, never JSON).
//! - [`client`]: the command-line client of a running sidecar (`stats`, `recommend`, ...).
//! - [`api`]: the sidecar's own routes under `/api/model-performance/` and `/metrics`,
//!   with the token rules for destructive routes.
//! - [`dashboard`]: the HTML page and its SVG charts at `GET /dashboard` (pure: figures
//!   in, HTML out); also what `ollameter report` saves.
//! - [`bench`]: `ollameter bench` and the benchmark routes: prompts, grading, the run
//!   engine (calls through a sidecar's proxy, marked `source = benchmark`) and its reports.
//! - [`proxy`]: the data plane: forwarding, classification of inference calls, and the
//!   meter that watches each answer and finishes its record.
//! - [`decode`]: incremental decoders for Ollama's NDJSON, OpenAI/Anthropic SSE and JSON
//!   answers: any split of the bytes gives the same facts.
//! - [`quality`]: configurable rules that read a quality score from an answer.
//! - [`metrics`]: Prometheus metrics named after the OpenTelemetry GenAI conventions.
//! - [`telemetry`]: the background sampler of Ollama's processes, the GPU (NVML) and
//!   `/api/ps`, and each model's VRAM need.
//! - [`recommend`]: scoring, rankings and the VRAM-aware recommendation (pure).
//! - [`stats`]: statistics, percentiles, trends and insights over samples (pure).
//! - [`history`]: the in-memory, time-sorted samples per model that the API reads.
//! - [`recorder`]: the bounded queue off the hot path and the batching writer thread.
//! - [`store`]: one interface over two backends: the embedded SQLite file (default) and a
//!   PostgreSQL database several instances share (change log in commit order, spill
//!   through outages); the versioned schema of both, retention, reads, `migrate`.
//! - [`record`]: the record of one call, shared by all of the above.

pub mod api;
pub mod app;
pub mod bench;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod decode;
pub mod history;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod quality;
pub mod recommend;
pub mod record;
pub mod recorder;
pub mod serve;
pub mod stats;
pub mod store;
pub mod telemetry;
