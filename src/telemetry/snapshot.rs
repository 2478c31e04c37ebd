//! What `GET /api/model-performance/system` serves: the GPUs, the loaded models with their
//! memory, Ollama's processes, and the sampler's own state with, for each source, `ok` or
//! the reason in words that it is unavailable. Plain serialisable data, rebuilt once per
//! tick.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::gpu::GpuProcessKind;
use super::vram::VramNeed;

/// Whether a source of facts works, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum SourceState {
    /// It answered at the last tick.
    Ok,
    /// It did not; the reason in words a person can act on.
    Unavailable(String),
    /// No tick has asked it yet.
    Pending,
    /// Telemetry is switched off (or could not start); the reason.
    Disabled(String),
}

impl SourceState {
    /// Whether the source answered.
    pub fn is_ok(&self) -> bool {
        matches!(self, SourceState::Ok)
    }
}

/// One source state per source of facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourcesState {
    /// The process table (sysinfo): Ollama's server and runners, their RSS.
    pub processes: SourceState,
    /// NVML: devices and per-process GPU memory.
    pub nvml: SourceState,
    /// `GET /api/ps` (and `/api/show` for the blob mapping).
    pub ollama_api: SourceState,
    /// `GET /api/tags`, read now and then for the installed models' estimates.
    pub ollama_tags: SourceState,
    /// `GET /v1/models` of an OpenAI-compatible upstream (kind `openai`).
    pub openai_api: SourceState,
}

impl SourcesState {
    /// Every source in `state`.
    pub fn all(state: &SourceState) -> SourcesState {
        SourcesState {
            processes: state.clone(),
            nvml: state.clone(),
            ollama_api: state.clone(),
            ollama_tags: state.clone(),
            openai_api: state.clone(),
        }
    }

    /// The state of the upstream's own model API: `/v1/models` for an OpenAI-compatible
    /// upstream, else Ollama's `/api/ps`.
    pub fn upstream_api(&self) -> &SourceState {
        match self.ollama_api {
            SourceState::Disabled(_) => &self.openai_api,
            _ => &self.ollama_api,
        }
    }
}

/// The sampler itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplerState {
    /// Whether a sampler runs.
    pub enabled: bool,
    /// Time between ticks, milliseconds.
    pub interval_ms: u64,
    /// Ticks run so far (panicked ones included).
    pub ticks: u64,
    /// When the last tick ended.
    pub last_tick_at: Option<DateTime<Utc>>,
    /// How long the last tick took, milliseconds.
    pub last_tick_duration_ms: Option<f64>,
    /// Ticks that panicked; the sampler carried on after each.
    pub tick_panics: u64,
    /// The last panic's message.
    pub last_panic: Option<String>,
    /// Each source: `ok` or why not.
    pub sources: SourcesState,
}

/// A process on a GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuProcessSnapshot {
    /// As NVML reports it.
    pub pid: u32,
    /// Compute or graphics.
    pub kind: GpuProcessKind,
    /// MiB on this device; `None` where the driver does not say.
    pub used_memory_mb: Option<f64>,
    /// The model, when the pid is a runner mapped to one.
    pub model: Option<String>,
}

/// One GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuSnapshot {
    /// NVML's index.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// Installed memory, MiB.
    pub memory_total_mb: f64,
    /// Allocated memory, MiB.
    pub memory_used_mb: f64,
    /// Free memory, MiB.
    pub memory_free_mb: f64,
    /// Kernel activity, percent.
    pub utilization_gpu_percent: Option<u32>,
    /// Memory activity, percent.
    pub utilization_memory_percent: Option<u32>,
    /// Processes holding memory on it.
    pub processes: Vec<GpuProcessSnapshot>,
}

/// A model Ollama has loaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadedModel {
    /// The name as Ollama gives it.
    pub name: String,
    /// `/api/ps` `size`: the whole footprint, MiB.
    pub size_mb: Option<f64>,
    /// `/api/ps` `size_vram`, MiB.
    pub vram_mb: Option<f64>,
    /// The context length it was loaded with.
    pub context_length: Option<u64>,
    /// When Ollama will unload it.
    pub expires_at: Option<String>,
    /// The runner serving it, when visible.
    pub runner_pid: Option<u32>,
    /// The runner's RSS, MiB.
    pub runner_rss_mb: Option<f64>,
    /// The runner's GPU memory (NVML), MiB.
    pub gpu_memory_mb: Option<f64>,
}

/// Ollama's server process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerProcess {
    /// Process id.
    pub pid: u32,
    /// Kernel name.
    pub name: String,
    /// RSS, MiB.
    pub rss_mb: f64,
}

/// A runner process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunnerProcess {
    /// Process id.
    pub pid: u32,
    /// Kernel name.
    pub name: String,
    /// Its `--model` argument.
    pub model_path: String,
    /// The model whose `/api/show` names that blob, once known.
    pub model: Option<String>,
    /// RSS, MiB.
    pub rss_mb: f64,
    /// GPU memory (NVML), MiB.
    pub gpu_memory_mb: Option<f64>,
}

/// Ollama's processes as seen from here.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessesSnapshot {
    /// Server processes (normally one).
    pub servers: Vec<ServerProcess>,
    /// One per loaded model.
    pub runners: Vec<RunnerProcess>,
}

/// A model's VRAM need, named.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedVramNeed {
    /// The model's name.
    pub model: String,
    /// Its need.
    #[serde(flatten)]
    pub need: VramNeed,
}

/// The whole picture at the last tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemSnapshot {
    /// When the facts were gathered (the last tick's end).
    pub taken_at: Option<DateTime<Utc>>,
    /// The GPUs; empty without GPU telemetry (see `sampler.sources.nvml`).
    pub gpus: Vec<GpuSnapshot>,
    /// Free memory over all GPUs, MiB.
    pub free_vram_mb: Option<f64>,
    /// What Ollama has loaded.
    pub loaded_models: Vec<LoadedModel>,
    /// Ollama's processes.
    pub processes: ProcessesSnapshot,
    /// The VRAM each installed or seen model needs.
    pub vram_needs: Vec<NamedVramNeed>,
    /// Facts that are partial, in words (a loaded model without a visible runner, GPU
    /// processes from another PID namespace, ...).
    pub notes: Vec<String>,
    /// The OpenAI-compatible server behind the upstream (kind `openai`): the processes
    /// found by its listening socket, what it serves and llama.cpp's `/props`; `null` for
    /// Ollama.
    pub upstream_server: Option<UpstreamServer>,
    /// The sampler and its sources.
    pub sampler: SamplerState,
}

/// An OpenAI-compatible server as telemetry sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamServer {
    /// The address its socket listens on, once found.
    pub listen: Option<String>,
    /// The processes holding that socket (normally one).
    pub pids: Vec<u32>,
    /// Their descendants (engine or worker processes), counted with them.
    pub child_pids: Vec<u32>,
    /// RSS over those processes, MiB: what each model it serves is charged.
    pub rss_mb: Option<f64>,
    /// GPU memory over those processes (NVML), MiB.
    pub gpu_memory_mb: Option<f64>,
    /// The models `/v1/models` lists.
    pub models: Vec<super::openai::ServedModel>,
    /// llama.cpp's `/props`; `null` where the server has none.
    pub props: Option<super::openai::ServerProps>,
}

impl SystemSnapshot {
    /// The snapshot before any tick, or of a telemetry that does not run.
    pub fn empty(enabled: bool, interval_ms: u64, sources: SourcesState) -> SystemSnapshot {
        SystemSnapshot {
            taken_at: None,
            gpus: Vec::new(),
            free_vram_mb: None,
            loaded_models: Vec::new(),
            processes: ProcessesSnapshot::default(),
            vram_needs: Vec::new(),
            notes: Vec::new(),
            upstream_server: None,
            sampler: SamplerState {
                enabled,
                interval_ms,
                ticks: 0,
                last_tick_at: None,
                last_tick_duration_ms: None,
                tick_panics: 0,
                last_panic: None,
                sources,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_states_serialise_as_state_and_reason() {
        let ok = serde_json::to_value(SourceState::Ok).expect("json");
        assert_eq!(ok, serde_json::json!({"state": "ok"}));
        let no = serde_json::to_value(SourceState::Unavailable("NVML sees no GPU".into()))
            .expect("json");
        assert_eq!(
            no,
            serde_json::json!({"state": "unavailable", "reason": "NVML sees no GPU"})
        );
    }
}
