//! ollameter: a transparent reverse proxy in front of Ollama that measures every
//! inference call, stores each record, and tells its users which model to use.
//!
//! How the crate is laid out (dependencies flow down this list, never up; a test in this
//! file checks it):
//!
//! - [`app`]: wiring: store, history, recorder, telemetry, metrics, routers, listeners,
//!   and the ordered shutdown.
//! - [`config`]: raw configuration (file, environment, flags) validated into [`config::Config`],
//!   one typed section per part.
//! - [`logging`]: whether the log carries ANSI colours (a terminal only, never JSON).
//! - [`log_writer`]: the log's batching writer to stderr (the per-call line costs no
//!   system call on the hot path).
//! - [`client`]: the command-line client of a running sidecar (`stats`, `recommend`, ...),
//!   typed by the API's own answer types.
//! - [`api`]: the sidecar's own routes under `/api/model-performance/` and `/metrics`,
//!   with the token rules for destructive routes.
//! - [`dashboard`]: the HTML page and its SVG charts at `GET /dashboard` (pure: figures
//!   in, HTML out); also what `ollameter report` saves.
//! - [`bench`]: `ollameter bench` and the benchmark routes: prompts, grading, the run
//!   engine (calls through a sidecar's proxy, marked `source = benchmark`) and its reports.
//! - [`proxy`]: the data plane: forwarding, classification of inference calls, and the
//!   meter that watches each answer and finishes its record.
//! - [`fleet`]: several upstreams: each host's health (probe, ejection, half-open
//!   retry), inventory, in-flight calls and telemetry, and the choice of the host that
//!   serves a call best.
//! - [`routing`]: virtual model names (`auto`, `auto:speed`, aliases) resolved per call,
//!   fallback to the next model before any byte is sent, and exploration of new models.
//! - [`policy`]: the one model-choice policy over the live history and telemetry, that
//!   `GET /recommend` answers with and routing acts on.
//! - [`serve`]: the accept loop both listeners run (header timeout, connection cap,
//!   peer address, graceful cut).
//! - [`decode`]: incremental decoders for Ollama's NDJSON, OpenAI/Anthropic SSE and JSON
//!   answers: any split of the bytes gives the same facts.
//! - [`quality`]: configurable rules that read a quality score from an answer.
//! - [`alerts`]: change detectors per model evaluated after each commit, the alert
//!   lifecycle (kept in the store), webhooks, and `is_critical` for routing.
//! - [`metrics`]: Prometheus metrics named after the OpenTelemetry GenAI conventions
//!   (the v1.36 names, the current ones, or both).
//! - [`otel`]: OpenTelemetry: a GenAI span per inference call, joined to the caller's W3C
//!   trace context and exported over OTLP by a thread of its own through a bounded queue.
//! - [`telemetry`]: the background sampler of Ollama's processes, the GPU (NVML) and
//!   `/api/ps` (or, for an OpenAI-compatible upstream, `/v1/models` and the process
//!   listening on its port), and each model's VRAM need.
//! - [`recommend`]: the VRAM-aware recommendation by empirical-Bayes estimates, its
//!   confidence, the rankings, and the ground-truth simulation that measures them (pure).
//! - [`analytics`]: the robust latency fit per model and its predictions, and `[cost]`:
//!   energy and GPU time in money, against paid APIs' prices.
//! - [`history`]: the in-memory, time-sorted samples per model that the API reads, kept
//!   in step with the store by the recorder's writer thread.
//! - [`stats`]: statistics, percentiles, trends and insights over samples (pure).
//! - [`recorder`]: the bounded queue off the hot path and the batching writer thread.
//! - [`store`]: one interface over two backends: the embedded SQLite file (default) and a
//!   PostgreSQL database several instances share (change log in commit order, spill
//!   through outages); the versioned schema of both, retention, reads, `migrate`.
//! - [`upstream`]: an upstream's kind (`ollama` or any OpenAI-compatible server),
//!   detected or configured, and the health probe each kind answers.
//! - [`record`]: the record of one call, shared by all of the above.
//! - [`text`]: the shared small helpers: an error's causes on one line, URL encoding,
//!   and the one set of number formats.

pub mod alerts;
pub mod analytics;
pub mod api;
pub mod app;
pub mod bench;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod decode;
pub mod fleet;
pub mod history;
pub mod log_writer;
pub mod logging;
pub mod metrics;
pub mod otel;
pub mod policy;
pub mod proxy;
pub mod quality;
pub mod recommend;
pub mod record;
pub mod recorder;
pub mod routing;
pub mod serve;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod upstream;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The modules in the order of the map above.
    fn map_order() -> Vec<String> {
        include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//! - [`"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect()
    }

    /// Every `crate::name` a module's files use (comments skipped).
    fn uses(module: &str) -> Vec<String> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join(format!("{module}.rs"))];
        let mut dirs = vec![src.join(module)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let mut found = Vec::new();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let name: String = line[at + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module && !found.contains(&name) {
                        found.push(name);
                    }
                }
            }
        }
        found
    }

    #[test]
    fn the_map_lists_every_module_and_dependencies_flow_down_it() {
        let order = map_order();
        let declared: Vec<&str> = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod "))
            .map(|l| l.trim_end_matches(';'))
            .collect();
        for m in &declared {
            assert!(
                order.iter().any(|o| o == m),
                "{m} is missing from lib.rs's map"
            );
        }
        for (i, module) in order.iter().enumerate() {
            for used in uses(module) {
                let at = order.iter().position(|o| *o == used);
                assert!(
                    at.is_some_and(|j| j > i),
                    "{module} uses crate::{used}, which is not below it in lib.rs's map"
                );
            }
        }
    }
}
