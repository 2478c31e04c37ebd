//! Memory and GPU telemetry: a background sampler that watches Ollama's processes, the
//! GPUs and Ollama's own `/api/ps`, so that each record can carry its model's memory and
//! the recommendation knows each model's VRAM need. It never blocks or fails the proxy:
//! a source that is missing (no GPU, no NVML, no permission, Ollama in another PID
//! namespace or on another host, `/api/ps` failing) leaves its fields `None` and the
//! snapshot says why in words.
//!
//! - [`process`]: Ollama's server and runners in the process table (sysinfo).
//! - [`gpu`]: devices and per-process GPU memory (NVML), and [`nvml_report`].
//! - [`ollama`]: `/api/ps`, `/api/show` (runner blob → model), `/api/tags`.
//! - [`openai`]: an OpenAI-compatible upstream's `/v1/models` and llama.cpp's `/props`.
//! - [`listener`]: the processes serving a TCP address, found by their listening socket
//!   in `/proc` (an OpenAI-compatible server's memory is theirs).
//! - [`vram`]: measured VRAM needs and the estimate formula for models never loaded.
//! - [`energy`]: each call's share of the GPU (NVML energy counter or power) and CPU
//!   (RAPL) energy while it ran.
//! - [`samples`]: the recent samples and a model's memory over one call.
//! - [`snapshot`]: what `/api/model-performance/system` serves.
//! - `sampler` (private): the tick loop that gathers the sources and publishes; for an
//!   OpenAI-compatible upstream (kind `openai`, see [`Telemetry::follow_upstream_kind`])
//!   its tick asks `/v1/models` instead of `/api/ps` and charges the serving processes'
//!   memory to the model(s) it serves.
//! - `join` (private): the pure join of `/api/ps`, the processes and the GPU reading.
//!
//! The hot path reads through [`Telemetry`]: [`Telemetry::mark`] is an atomic load and
//! [`Telemetry::model_memory`] a short read lock, with no I/O and no await.

pub mod energy;
pub mod gpu;
mod join;
pub mod listener;
pub mod ollama;
pub mod openai;
pub mod process;
mod sampler;
pub mod samples;
pub mod snapshot;
pub mod vram;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

#[cfg(any(test, feature = "test-support"))]
pub use gpu::FakeGpu;
pub use gpu::{GpuBackend, NvmlBackend, nvml_report};
#[cfg(any(test, feature = "test-support"))]
pub use ollama::FakeOllama;
pub use ollama::{HttpOllama, OllamaApi};
#[cfg(any(test, feature = "test-support"))]
pub use openai::FakeOpenAi;
pub use openai::{HttpOpenAi, OpenAiApi};
#[cfg(any(test, feature = "test-support"))]
pub use process::FakeProcesses;
pub use process::{ProcessSource, SysinfoProcesses};
pub use samples::ModelMemory;
pub use snapshot::{SourceState, SourcesState, SystemSnapshot};
pub use vram::{VramNeed, VramSource};

use samples::SampleHistory;
use snapshot::NamedVramNeed;

/// Time between ticks unless configured: memory moves on the scale of a model load
/// (seconds), and one tick costs a few `/proc` reads, one NVML query and one `/api/ps`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The shortest interval accepted; shorter ones are raised to it, so a typo cannot turn
/// the sampler into a busy loop against Ollama.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// How far back samples are kept for peaks: a call longer than this gets the peak of its
/// last ten minutes.
pub const HISTORY_WINDOW: Duration = Duration::from_secs(600);

/// The telemetry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Time between ticks (at least [`MIN_INTERVAL`]).
    pub interval: Duration,
    /// Ollama's base URL, e.g. `http://127.0.0.1:11434` (a path prefix is kept).
    pub upstream: String,
    /// Process ids to treat as Ollama's: a runner if it has `--model`, else the server.
    pub server_pids: Vec<u32>,
    /// Process names to treat as Ollama's, likewise.
    pub process_names: Vec<String>,
    /// Whether to sample at all.
    pub enabled: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            interval: DEFAULT_INTERVAL,
            upstream: "http://127.0.0.1:11434".to_owned(),
            server_pids: Vec::new(),
            process_names: Vec::new(),
            enabled: true,
        }
    }
}

/// The key a model is known by: lower case, with `:latest` added when the name has no
/// tag, so a request for `Llama3.2` finds `/api/ps`'s `llama3.2:latest`. (A registry host
/// with a port, `host:5000/ns/model`, is not a tag: only the last path segment counts.)
pub fn model_key(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    let last = name.rsplit('/').next().unwrap_or(&name);
    if last.contains(':') {
        name
    } else {
        format!("{name}:latest")
    }
}

/// The sample current when a call started. Taking one is an atomic load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct SampleMark(u64);

/// What the sampler publishes and the readers read.
pub(crate) struct Published {
    pub(crate) history: SampleHistory,
    pub(crate) snapshot: SystemSnapshot,
    /// Each need with the model's key, in name order.
    pub(crate) needs: Vec<(String, NamedVramNeed)>,
    /// The installed models at the last good `/api/tags`; `None` before one.
    pub(crate) installed: Option<Vec<InstalledModel>>,
    /// With several upstreams, the union of every host's installed models, set by the
    /// fleet on the first host's telemetry: what [`Telemetry::installed_models`] answers.
    pub(crate) fleet_installed: Option<Vec<InstalledModel>>,
}

/// One installed model, as `/api/tags` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledModel {
    /// The name, e.g. `llama3.2:latest`.
    pub name: String,
    /// What it can do (`completion`, `embedding`, ...); empty where Ollama does not say.
    pub capabilities: Vec<String>,
}

/// Shared between the sampler task and the handles.
pub(crate) struct Shared {
    pub(crate) published: RwLock<Published>,
    /// The newest published sample's `seq`; [`Telemetry::mark`] reads it.
    pub(crate) latest_seq: AtomicU64,
    /// The upstream's kind, shared with the proxy and the health probe; unset reads as
    /// Ollama.
    pub(crate) kind: std::sync::OnceLock<crate::upstream::Kind>,
    /// Each running call's share of the energy (held for microseconds: no I/O under it).
    pub(crate) energy: Mutex<energy::EnergyLedger>,
}

impl Shared {
    fn new(snapshot: SystemSnapshot, capacity: usize) -> Shared {
        Shared {
            published: RwLock::new(Published {
                history: SampleHistory::new(capacity),
                snapshot,
                needs: Vec::new(),
                installed: None,
                fleet_installed: None,
            }),
            latest_seq: AtomicU64::new(0),
            kind: std::sync::OnceLock::new(),
            energy: Mutex::new(energy::EnergyLedger::default()),
        }
    }

    pub(crate) fn ledger(&self) -> std::sync::MutexGuard<'_, energy::EnergyLedger> {
        // Every change to the ledger is a few numbers; a panic cannot leave it worse
        // than a call's energy a little off.
        self.energy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read<T>(&self, f: impl FnOnce(&Published) -> T) -> T {
        // A panic while publishing leaves consistent-enough data behind (each field is
        // replaced whole), so a poisoned lock is read as it is.
        f(&self
            .published
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }
}

/// Owned by the handles only: dropping the last handle drops `stop`, which ends the
/// sampler.
struct Handle {
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    ticks: Option<watch::Receiver<u64>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The telemetry handle: cheap to clone; the sampler stops when the last clone is
/// dropped or on [`Telemetry::shutdown`].
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("running", &self.inner.stop.is_some())
            .field("ticks", &self.ticks())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Starts the sampler with the given GPU and process sources, asking Ollama at
    /// `config.upstream` over `client`. Must be called inside a Tokio runtime; outside one
    /// (or with `enabled: false`) it returns a telemetry that samples nothing and says why.
    pub fn start(
        config: TelemetryConfig,
        client: reqwest::Client,
        gpu: Box<dyn GpuBackend>,
        procs: Box<dyn ProcessSource>,
    ) -> Telemetry {
        let ollama = Box::new(HttpOllama::new(client.clone(), &config.upstream));
        let openai = Box::new(HttpOpenAi::new(client, &config.upstream));
        Telemetry::start_sources(config, ollama, openai, gpu, procs)
    }

    /// Starts the sampler with the real sources: NVML and this machine's process table.
    pub fn start_default(config: TelemetryConfig, client: reqwest::Client) -> Telemetry {
        Telemetry::start(
            config,
            client,
            Box::new(NvmlBackend::new()),
            Box::new(SysinfoProcesses::new()),
        )
    }

    /// Starts the sampler with every source given (tests pass [`FakeOllama`]); an
    /// OpenAI-compatible upstream is asked over a client of its own.
    pub fn start_with(
        config: TelemetryConfig,
        ollama: Box<dyn OllamaApi>,
        gpu: Box<dyn GpuBackend>,
        procs: Box<dyn ProcessSource>,
    ) -> Telemetry {
        let openai = Box::new(HttpOpenAi::new(reqwest::Client::new(), &config.upstream));
        Telemetry::start_sources(config, ollama, openai, gpu, procs)
    }

    /// Starts the sampler with every source given, the OpenAI-compatible API included
    /// (tests pass [`FakeOpenAi`]).
    pub fn start_sources(
        config: TelemetryConfig,
        ollama: Box<dyn OllamaApi>,
        openai: Box<dyn OpenAiApi>,
        gpu: Box<dyn GpuBackend>,
        procs: Box<dyn ProcessSource>,
    ) -> Telemetry {
        if !config.enabled {
            return Telemetry::disabled();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Telemetry::stopped("telemetry was started outside a Tokio runtime");
        };
        let interval = config.interval.max(MIN_INTERVAL);
        let capacity = (HISTORY_WINDOW.as_millis() / interval.as_millis()).max(2);
        let snapshot = SystemSnapshot::empty(
            true,
            duration_ms(interval),
            SourcesState::all(&SourceState::Pending),
        );
        let shared = Arc::new(Shared::new(
            snapshot,
            usize::try_from(capacity).unwrap_or(12_000),
        ));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ticks_tx, ticks_rx) = watch::channel(0);
        let sampler = sampler::Sampler::new(
            &config,
            interval,
            ollama,
            openai,
            gpu,
            procs,
            Arc::clone(&shared),
            ticks_tx,
        );
        let task = runtime.spawn(sampler::run(sampler, stop_rx));
        Telemetry {
            inner: Arc::new(Handle {
                shared,
                stop: Some(stop_tx),
                ticks: Some(ticks_rx),
                task: Mutex::new(Some(task)),
            }),
        }
    }

    /// A telemetry that samples nothing: every value is `None` and the snapshot says it
    /// is off.
    pub fn disabled() -> Telemetry {
        Telemetry::stopped("telemetry is off in the configuration")
    }

    fn stopped(reason: &str) -> Telemetry {
        let state = SourceState::Disabled(reason.to_owned());
        let snapshot = SystemSnapshot::empty(false, 0, SourcesState::all(&state));
        let shared = Shared::new(snapshot, 1);
        shared.ledger().reading(
            &energy::EnergyReading {
                channels: Vec::new(),
                missing: vec![format!("no energy is read: {reason}")],
            },
            std::time::Instant::now(),
        );
        Telemetry {
            inner: Arc::new(Handle {
                shared: Arc::new(shared),
                stop: None,
                ticks: None,
                task: Mutex::new(None),
            }),
        }
    }

    /// Stops the sampler and waits for it to finish its tick. Other clones keep reading
    /// the last published values.
    pub async fn shutdown(&self) {
        if let Some(stop) = &self.inner.stop {
            let _ = stop.send(true);
        }
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Follows the upstream's kind (the proxy's, configured or detected): while it is
    /// `openai`, the sampler reads `/v1/models` and the serving processes instead of
    /// Ollama's API. Before this is called, or while the kind is unknown, the upstream is
    /// taken for Ollama. The first call wins; later ones change nothing.
    pub fn follow_upstream_kind(&self, kind: crate::upstream::Kind) {
        let _ = self.inner.shared.kind.set(kind);
    }

    /// Marks the start of a call: the sample current now is the first its peaks cover.
    pub fn mark(&self) -> SampleMark {
        SampleMark(self.inner.shared.latest_seq.load(Ordering::Acquire))
    }

    /// `model`'s memory at the newest sample and its peaks since `since`. For the end of
    /// a call: a short read, no I/O.
    pub fn model_memory(&self, model: &str, since: SampleMark) -> ModelMemory {
        let key = model_key(model);
        self.inner
            .shared
            .read(|p| p.history.model_memory(&key, since.0))
    }

    /// A call of `model` starts: it takes its share of the energy until
    /// [`EnergyCall::finish`]. A short lock, no I/O.
    pub fn energy_begin(&self, model: &str) -> EnergyCall {
        let id = self
            .inner
            .shared
            .ledger()
            .begin(&model_key(model), std::time::Instant::now());
        EnergyCall {
            shared: Arc::clone(&self.inner.shared),
            id: Some(id),
        }
    }

    /// Why energy is not (fully) measured now, in words; empty when every channel reads.
    pub fn energy_missing(&self) -> Vec<String> {
        self.inner.shared.ledger().missing()
    }

    /// The energy channels read, each with its last power in W.
    pub fn energy_channels(&self) -> Vec<(energy::Channel, Option<f64>)> {
        self.inner.shared.ledger().channels()
    }

    /// The picture at the last tick, for `/api/model-performance/system`.
    pub fn snapshot(&self) -> SystemSnapshot {
        self.inner.shared.read(|p| p.snapshot.clone())
    }

    /// The VRAM `model` needs: measured if it was ever seen loaded, else estimated from
    /// `/api/tags` (see [`vram::estimate`]); `None` if it is neither installed nor seen.
    pub fn vram_need(&self, model: &str) -> Option<VramNeed> {
        let key = model_key(model);
        self.inner.shared.read(|p| {
            p.needs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, n)| n.need.clone())
        })
    }

    /// Every known model's VRAM need, by name as Ollama gives it.
    pub fn vram_needs(&self) -> Vec<(String, VramNeed)> {
        self.inner.shared.read(|p| {
            p.needs
                .iter()
                .map(|(_, n)| (n.model.clone(), n.need.clone()))
                .collect()
        })
    }

    /// The installed models at the last good `/api/tags` (read every minute); `None` when
    /// telemetry is off or `/api/tags` never answered.
    pub fn installed_models(&self) -> Option<Vec<InstalledModel>> {
        self.inner
            .shared
            .read(|p| p.fleet_installed.clone().or_else(|| p.installed.clone()))
    }

    /// This host's own installed models at its last good `/api/tags`, never the fleet's
    /// union.
    pub fn installed_models_of_host(&self) -> Option<Vec<InstalledModel>> {
        self.inner.shared.read(|p| p.installed.clone())
    }

    /// Sets the union of several upstreams' installed models, which
    /// [`Telemetry::installed_models`] answers from then on (the fleet keeps it current).
    pub fn set_fleet_installed(&self, models: Option<Vec<InstalledModel>>) {
        self.inner
            .shared
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .fleet_installed = models;
    }

    /// Free memory over all GPUs at the last sample, MiB; `None` without GPU telemetry.
    pub fn free_vram_mb(&self) -> Option<f64> {
        self.inner.shared.read(|p| {
            p.history
                .latest()
                .and_then(|s| s.gpu_free_bytes)
                .map(|b| b as f64 / gpu::BYTES_PER_MIB)
        })
    }

    /// Installed memory over all GPUs, MiB; `None` without GPU telemetry.
    pub fn gpu_total_mb(&self) -> Option<f64> {
        self.inner.shared.read(|p| {
            p.history
                .latest()
                .and_then(|s| s.gpu_total_bytes)
                .map(|b| b as f64 / gpu::BYTES_PER_MIB)
        })
    }

    /// The VRAM `model` holds now (`/api/ps` `size_vram`, else its runner's NVML use),
    /// MiB: `Some(0.0)` when `/api/ps` answered and the model is not loaded, `None` when
    /// that is unknown. With [`Telemetry::free_vram_mb`], what the model could use if it
    /// were the one loaded.
    pub fn held_vram_mb(&self, model: &str) -> Option<f64> {
        let key = model_key(model);
        self.inner.shared.read(|p| {
            let sample = p.history.latest()?;
            match sample.model(&key) {
                Some(m) => m
                    .size_vram_bytes
                    .or(m.gpu_memory_bytes)
                    .map(|b| b as f64 / gpu::BYTES_PER_MIB),
                None => sample.ps_ok.then_some(0.0),
            }
        })
    }

    /// Ticks run so far.
    pub fn ticks(&self) -> u64 {
        self.inner.ticks.as_ref().map_or(0, |rx| *rx.borrow())
    }

    /// Waits until at least `count` ticks have run (returns at once when the sampler is
    /// not running). For start-up checks and tests: waits on the sampler, not the clock.
    pub async fn wait_for_ticks(&self, count: u64) {
        if let Some(rx) = &self.inner.ticks {
            let mut rx = rx.clone();
            let _ = rx.wait_for(|t| *t >= count).await;
        }
    }
}

/// One running call's claim on the energy ledger. Finish it to get the call's energy; a
/// claim dropped unfinished leaves the ledger without a share.
pub struct EnergyCall {
    shared: Arc<Shared>,
    id: Option<u64>,
}

impl EnergyCall {
    /// The call ended now: its energy, or why there is none.
    pub fn finish(mut self) -> energy::CallEnergy {
        match self.id.take() {
            Some(id) => self.shared.ledger().end(id, std::time::Instant::now()),
            None => energy::CallEnergy {
                joules: None,
                source: None,
                reason: Some("already finished".to_owned()),
            },
        }
    }
}

impl Drop for EnergyCall {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.shared.ledger().abandon(id, std::time::Instant::now());
        }
    }
}

impl std::fmt::Debug for EnergyCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnergyCall").field("id", &self.id).finish()
    }
}

/// A telemetry and its sampler, not started: tests drive `tick` by hand.
#[cfg(test)]
pub(crate) fn manual(
    config: &TelemetryConfig,
    ollama: Box<dyn OllamaApi>,
    gpu: Box<dyn GpuBackend>,
    procs: Box<dyn ProcessSource>,
) -> (Telemetry, sampler::Sampler) {
    manual_sources(config, ollama, Box::new(FakeOpenAi::new()), gpu, procs)
}

/// [`manual`] with the OpenAI-compatible API given too.
#[cfg(test)]
pub(crate) fn manual_sources(
    config: &TelemetryConfig,
    ollama: Box<dyn OllamaApi>,
    openai: Box<dyn OpenAiApi>,
    gpu: Box<dyn GpuBackend>,
    procs: Box<dyn ProcessSource>,
) -> (Telemetry, sampler::Sampler) {
    let sources = SourcesState::all(&SourceState::Pending);
    let shared = Arc::new(Shared::new(SystemSnapshot::empty(true, 1000, sources), 600));
    let (ticks_tx, ticks_rx) = watch::channel(0);
    let mut sampler = sampler::Sampler::new(
        config,
        config.interval,
        ollama,
        openai,
        gpu,
        procs,
        Arc::clone(&shared),
        ticks_tx,
    );
    // Tests never read this machine's RAPL: what they see must not depend on it.
    sampler.powercap = std::path::PathBuf::from("/nonexistent/powercap");
    let handle = Handle {
        shared,
        stop: None,
        ticks: Some(ticks_rx),
        task: Mutex::new(None),
    };
    (
        Telemetry {
            inner: Arc::new(handle),
        },
        sampler,
    )
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod scenarios;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_keys_add_latest_and_ignore_case() {
        assert_eq!(model_key("Llama3.2"), "llama3.2:latest");
        assert_eq!(model_key("llama3.2:latest"), "llama3.2:latest");
        assert_eq!(model_key("qwen3:8b"), "qwen3:8b");
        assert_eq!(
            model_key("hf.co/bartowski/Model-GGUF:Q4_K_M"),
            "hf.co/bartowski/model-gguf:q4_k_m"
        );
        assert_eq!(model_key("host:5000/ns/model"), "host:5000/ns/model:latest");
    }

    #[test]
    fn disabled_telemetry_answers_none_and_says_why() {
        let t = Telemetry::disabled();
        let mark = t.mark();
        assert_eq!(t.model_memory("m", mark), ModelMemory::default());
        assert_eq!(t.free_vram_mb(), None);
        assert_eq!(t.gpu_total_mb(), None);
        assert_eq!(t.held_vram_mb("m"), None);
        assert_eq!(t.vram_need("m"), None);
        let s = t.snapshot();
        assert!(!s.sampler.enabled);
        assert_eq!(
            s.sampler.sources.nvml,
            SourceState::Disabled("telemetry is off in the configuration".into())
        );
    }

    #[test]
    fn starting_outside_a_runtime_does_not_panic() {
        let t = Telemetry::start_with(
            TelemetryConfig::default(),
            Box::new(FakeOllama::new()),
            Box::new(FakeGpu::unavailable("none")),
            Box::new(SysinfoProcesses::new()),
        );
        assert!(!t.snapshot().sampler.enabled);
    }
}
