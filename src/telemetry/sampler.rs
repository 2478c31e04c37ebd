//! The sampler's tick loop: one tick asks Ollama (`/api/ps`, `/api/show` once per model, `/api/tags`
//! now and then), reads the process table and the GPUs on a blocking thread, joins the
//! three into one [`Sample`] (the pure join is in [`super::join`]), and publishes it with a fresh snapshot and VRAM needs. A
//! tick that panics is caught and counted; the next one runs as usual.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::energy::{
    Channel, ChannelReading, EnergyReading, Meter, POWERCAP_DIR, RaplZone, read_rapl,
};
use super::gpu::{GpuBackend, GpuReading};
use super::join::{
    Found, Joined, gpu_snapshots, join, loaded_models, mib, processes_snapshot, ps_name, tag_name,
};
use super::ollama::{OllamaApi, PsModel, ShowInfo, TagModel};
use super::openai::OpenAiApi;
use super::process::{Matchers, ProcessSource, classify};
use super::samples::Sample;
use super::snapshot::{NamedVramNeed, SourceState, SourcesState, SystemSnapshot};
use super::vram::{DEFAULT_CONTEXT_TOKENS, Measured, estimate};
use super::{InstalledModel, Shared, TelemetryConfig, duration_ms, model_key};
use crate::text::panic_message;

mod openai;

/// How often `/api/tags` is read: installed models change on pull and delete, which are
/// rare and slow; a minute's delay in an estimate costs nothing.
pub const TAGS_REFRESH: Duration = Duration::from_secs(60);

/// How often the whole process table is scanned for new Ollama processes. Between scans
/// only the known processes are refreshed; a model loading or a known process exiting
/// triggers a scan at once.
pub const DISCOVERY_INTERVAL: Duration = Duration::from_secs(10);

/// How long a failed `/api/show` waits before it is asked again.
pub const SHOW_RETRY: Duration = Duration::from_secs(60);

/// `/api/show` calls per tick for installed models that are not loaded (for their
/// estimates): spreads a long model list over ticks instead of bursting at start-up.
pub const SHOW_INSTALLED_PER_TICK: usize = 2;

/// Why no process is visible, in the words `/system` gives.
pub const NO_PROCESS_VISIBLE: &str = "no Ollama process visible: Ollama may run in another PID \
     namespace or on another host (share its PID namespace: pid: \"service:ollama\")";

struct ShowEntry {
    digest: Option<String>,
    name: String,
    result: Result<ShowInfo, String>,
    at: Instant,
}

pub(crate) struct Sampler {
    ollama: Box<dyn OllamaApi>,
    /// What the tick needs when the upstream is an OpenAI-compatible server.
    openai: openai::OpenAiSide,
    procs: Arc<Mutex<Box<dyn ProcessSource>>>,
    gpu: Arc<Mutex<Box<dyn GpuBackend>>>,
    matchers: Matchers,
    interval: Duration,
    shared: Arc<Shared>,
    ticks_tx: watch::Sender<u64>,
    shows: HashMap<String, ShowEntry>,
    tags: Vec<TagModel>,
    tags_at: Option<Instant>,
    tags_state: SourceState,
    measured: HashMap<String, (String, Measured)>,
    known_pids: Vec<u32>,
    last_discovery: Option<Instant>,
    discovered_for: BTreeSet<String>,
    rediscover: bool,
    context_tokens: Option<u64>,
    last_sources: Option<SourcesState>,
    seq: u64,
    ticks: u64,
    panics: u64,
    last_panic: Option<String>,
    /// Where the RAPL zones are read (tests point it elsewhere).
    pub(crate) powercap: std::path::PathBuf,
}

impl Sampler {
    #[expect(
        clippy::too_many_arguments,
        reason = "each source is its own trait object, handed in by the telemetry's constructors"
    )]
    pub(crate) fn new(
        config: &TelemetryConfig,
        interval: Duration,
        ollama: Box<dyn OllamaApi>,
        openai_api: Box<dyn OpenAiApi>,
        gpu: Box<dyn GpuBackend>,
        procs: Box<dyn ProcessSource>,
        shared: Arc<Shared>,
        ticks_tx: watch::Sender<u64>,
    ) -> Sampler {
        Sampler {
            ollama,
            openai: openai::OpenAiSide::new(openai_api, &config.upstream),
            procs: Arc::new(Mutex::new(procs)),
            gpu: Arc::new(Mutex::new(gpu)),
            matchers: Matchers {
                pids: config.server_pids.clone(),
                names: config.process_names.clone(),
            },
            interval,
            shared,
            ticks_tx,
            shows: HashMap::new(),
            tags: Vec::new(),
            tags_at: None,
            tags_state: SourceState::Pending,
            measured: HashMap::new(),
            known_pids: Vec::new(),
            last_discovery: None,
            discovered_for: BTreeSet::new(),
            rediscover: false,
            context_tokens: None,
            last_sources: None,
            seq: 0,
            ticks: 0,
            panics: 0,
            last_panic: None,
            powercap: std::path::PathBuf::from(POWERCAP_DIR),
        }
    }

    /// One tick at `now` (a parameter so tests drive time by hand).
    pub(crate) async fn tick(&mut self, now: Instant) {
        if self.upstream_is_openai() {
            return self.tick_openai(now).await;
        }
        let started = std::time::Instant::now();
        self.ticks += 1;
        let ps = self.ollama.ps().await;
        // When /api/ps fails, the other calls would fail the same way (or hang to their
        // timeout), delaying this tick's process and GPU reading: skip them.
        if ps.is_ok()
            && self
                .tags_at
                .is_none_or(|at| now.duration_since(at) >= TAGS_REFRESH)
        {
            self.tags_at = Some(now);
            match self.ollama.tags().await {
                Ok(tags) => {
                    self.tags = tags;
                    self.tags_state = SourceState::Ok;
                }
                Err(reason) => self.tags_state = SourceState::Unavailable(reason),
            }
        }
        if let Ok(models) = &ps {
            self.refresh_shows(models, now).await;
            if let Some(ctx) = models.iter().filter_map(|m| m.context_length).max() {
                self.context_tokens = Some(ctx);
            }
        }
        let (found, gpu, energy) = self.read_machine(&ps, now).await;
        let read_at = std::time::Instant::now();
        let sample_at = Utc::now();
        let duration = started.elapsed();
        let joined = join(&ps, &found, &gpu, &self.blob_models());
        let model_gpus = model_gpus(&joined, &gpu);
        {
            let mut ledger = self.shared.ledger();
            ledger.set_model_gpus(model_gpus);
            ledger.reading(&energy, read_at);
        }
        self.publish(&ps, &found, &gpu, joined, sample_at, duration);
    }

    /// Asks `/api/show` for loaded models not yet mapped (or pulled again since), then for
    /// a few installed models, so their estimates can use the architecture.
    async fn refresh_shows(&mut self, loaded: &[PsModel], now: Instant) {
        let due = |entry: Option<&ShowEntry>, digest: &Option<String>| match entry {
            None => true,
            Some(e) if digest_changed(e.digest.as_deref(), digest.as_deref()) => true,
            Some(e) => e.result.is_err() && now.duration_since(e.at) >= SHOW_RETRY,
        };
        let mut wanted: Vec<(String, Option<String>)> = loaded
            .iter()
            .map(|m| (ps_name(m).to_owned(), m.digest.clone()))
            .filter(|(name, digest)| due(self.shows.get(&model_key(name)), digest))
            .collect();
        let installed: Vec<(String, Option<String>)> = self
            .tags
            .iter()
            .map(|t| (tag_name(t).to_owned(), t.digest.clone()))
            .filter(|(name, digest)| {
                due(self.shows.get(&model_key(name)), digest)
                    && !wanted.iter().any(|(w, _)| model_key(w) == model_key(name))
            })
            .take(SHOW_INSTALLED_PER_TICK)
            .collect();
        wanted.extend(installed);
        for (name, digest) in wanted {
            let result = self.ollama.show(name.clone()).await;
            self.shows.insert(
                model_key(&name),
                ShowEntry {
                    digest,
                    name,
                    result,
                    at: now,
                },
            );
        }
    }

    /// Every blob path `/api/show` named, with the model's key and name.
    fn blob_models(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (key, entry) in &self.shows {
            if let Ok(info) = &entry.result {
                for path in &info.from_paths {
                    out.push((path.clone(), key.clone(), entry.name.clone()));
                }
            }
        }
        out
    }

    /// Reads the process table and the GPUs on a blocking thread (both read files or
    /// talk to a driver). A panic in either source becomes that source's reason.
    async fn read_machine(
        &mut self,
        ps: &Result<Vec<PsModel>, String>,
        now: Instant,
    ) -> (
        Result<Vec<Found>, String>,
        Result<GpuReading, String>,
        EnergyReading,
    ) {
        let loaded: BTreeSet<String> = match ps {
            Ok(models) => models.iter().map(|m| model_key(ps_name(m))).collect(),
            Err(_) => self.discovered_for.clone(),
        };
        let discover = self.rediscover
            || loaded != self.discovered_for
            || self
                .last_discovery
                .is_none_or(|at| now.duration_since(at) >= DISCOVERY_INTERVAL);
        let mut watch: Vec<u32> = self.known_pids.clone();
        watch.extend(&self.matchers.pids);
        watch.sort_unstable();
        watch.dedup();
        let procs = Arc::clone(&self.procs);
        let gpu = Arc::clone(&self.gpu);
        let matchers = self.matchers.clone();
        let watched = watch.clone();
        let powercap = self.powercap.clone();
        let blocking = tokio::task::spawn_blocking(move || {
            let found = guarded("process source", || {
                let mut source = procs.lock().unwrap_or_else(PoisonError::into_inner);
                let table = if discover {
                    source.all()
                } else if watch.is_empty() {
                    Ok(Vec::new())
                } else {
                    source.some(&watch)
                }?;
                Ok(table
                    .into_iter()
                    .filter_map(|proc| classify(&proc, &matchers).map(|role| Found { proc, role }))
                    .collect::<Vec<_>>())
            });
            let reading = guarded("GPU backend", || {
                gpu.lock().unwrap_or_else(PoisonError::into_inner).sample()
            });
            let gpu_energy = match &reading {
                Ok(_) => guarded("GPU energy", || {
                    gpu.lock().unwrap_or_else(PoisonError::into_inner).energy()
                }),
                Err(reason) => Err(reason.clone()),
            };
            // This machine's CPU is Ollama's only when Ollama's processes are visible here.
            let rapl = match &found {
                Ok(found) if !found.is_empty() => read_rapl(&powercap),
                _ => Err(
                    "CPU energy: not read, as no Ollama process is visible on this \
                          machine (its CPU may be another's)"
                        .to_owned(),
                ),
            };
            let energy = energy_reading(gpu_energy, rapl);
            (found, reading, energy)
        });
        let (found, reading, energy) = match blocking.await {
            Ok(triple) => triple,
            Err(e) => {
                let reason = format!("the sampling thread failed: {e}");
                (
                    Err(reason.clone()),
                    Err(reason.clone()),
                    EnergyReading {
                        channels: Vec::new(),
                        missing: vec![reason],
                    },
                )
            }
        };
        if let Ok(found) = &found {
            let pids: Vec<u32> = found.iter().map(|f| f.proc.pid).collect();
            if discover {
                self.last_discovery = Some(now);
                self.discovered_for = loaded;
                self.rediscover = false;
            } else if watched
                .iter()
                .any(|p| !pids.contains(p) && self.known_pids.contains(p))
            {
                // A runner exited (model unloaded) or the server restarted: look again.
                self.rediscover = true;
            }
            self.known_pids = pids;
        }
        (found, reading, energy)
    }

    fn publish(
        &mut self,
        ps: &Result<Vec<PsModel>, String>,
        found: &Result<Vec<Found>, String>,
        gpu: &Result<GpuReading, String>,
        joined: Joined,
        at: chrono::DateTime<Utc>,
        duration: Duration,
    ) {
        self.observe_needs(&joined.models);
        let sources = SourcesState {
            processes: match found {
                Err(reason) => SourceState::Unavailable(reason.clone()),
                Ok(found) if found.is_empty() => {
                    SourceState::Unavailable(NO_PROCESS_VISIBLE.into())
                }
                Ok(_) => SourceState::Ok,
            },
            nvml: match gpu {
                Ok(_) => SourceState::Ok,
                Err(reason) => SourceState::Unavailable(reason.clone()),
            },
            ollama_api: match ps {
                Ok(_) => SourceState::Ok,
                Err(reason) => SourceState::Unavailable(reason.clone()),
            },
            ollama_tags: self.tags_state.clone(),
            openai_api: SourceState::Disabled(
                "the upstream is Ollama (or not yet known to be otherwise)".into(),
            ),
        };
        let mut notes = joined.notes.clone();
        if let Ok(models) = ps {
            for m in models {
                if let Some(ShowEntry {
                    result: Err(reason),
                    ..
                }) = self.shows.get(&model_key(ps_name(m)))
                {
                    notes.push(format!("{}: cannot map its runner: {reason}", ps_name(m)));
                }
            }
        }
        self.log_changes(&sources);
        let needs = self.needs();
        let snapshot = SystemSnapshot {
            taken_at: Some(at),
            gpus: gpu_snapshots(gpu, &joined.runner_models),
            free_vram_mb: gpu.as_ref().ok().and_then(GpuReading::free_bytes).map(mib),
            loaded_models: loaded_models(ps, &joined),
            processes: processes_snapshot(found, &joined, gpu),
            vram_needs: needs.iter().map(|(_, n)| n.clone()).collect(),
            notes,
            upstream_server: None,
            sampler: self.sampler_state(Some(at), Some(duration), sources),
        };
        let sample = Sample {
            seq: 0,
            at: Some(at),
            server_rss_bytes: joined.server_rss_bytes,
            ps_ok: ps.is_ok(),
            models: joined.models,
            gpu_free_bytes: gpu.as_ref().ok().and_then(GpuReading::free_bytes),
            gpu_total_bytes: gpu.as_ref().ok().and_then(GpuReading::total_bytes),
            serves_any_name: false,
        };
        let installed = (self.tags_state == SourceState::Ok).then(|| {
            self.tags
                .iter()
                .map(|t| InstalledModel {
                    name: tag_name(t).to_owned(),
                    capabilities: t.capabilities.clone(),
                })
                .collect()
        });
        self.commit(sample, snapshot, needs, installed);
    }

    /// Keeps the largest footprint each model was seen with: its measured VRAM need.
    fn observe_needs(&mut self, models: &[super::samples::ModelSample]) {
        for m in models {
            if let Some(observed) = Measured::observe(
                m.size_bytes,
                m.size_vram_bytes,
                m.gpu_memory_bytes,
                m.context_length,
            ) {
                let entry = self
                    .measured
                    .remove(&m.key)
                    .map(|(_, old)| old.max(observed.clone()));
                self.measured
                    .insert(m.key.clone(), (m.name.clone(), entry.unwrap_or(observed)));
            }
        }
    }

    /// Publishes one sample (numbered here) with its snapshot; `installed` replaces the
    /// installed models when given.
    fn commit(
        &mut self,
        mut sample: Sample,
        snapshot: SystemSnapshot,
        needs: Vec<(String, NamedVramNeed)>,
        installed: Option<Vec<InstalledModel>>,
    ) {
        self.seq += 1;
        sample.seq = self.seq;
        {
            let mut published = self
                .shared
                .published
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            published.history.push(sample);
            published.snapshot = snapshot;
            published.needs = needs;
            if installed.is_some() {
                published.installed = installed;
            }
        }
        self.shared.latest_seq.store(self.seq, Ordering::Release);
    }

    /// Logs a source that stopped or started answering, once per change rather than
    /// once per tick.
    fn log_changes(&mut self, sources: &SourcesState) {
        let before = self.last_sources.replace(sources.clone());
        let pairs = [
            (
                "processes",
                &sources.processes,
                before.as_ref().map(|b| &b.processes),
            ),
            ("nvml", &sources.nvml, before.as_ref().map(|b| &b.nvml)),
            (
                "ollama_api",
                &sources.ollama_api,
                before.as_ref().map(|b| &b.ollama_api),
            ),
            (
                "ollama_tags",
                &sources.ollama_tags,
                before.as_ref().map(|b| &b.ollama_tags),
            ),
            (
                "openai_api",
                &sources.openai_api,
                before.as_ref().map(|b| &b.openai_api),
            ),
        ];
        for (source, now, then) in pairs {
            if then == Some(now) {
                continue;
            }
            match now {
                SourceState::Unavailable(reason) => {
                    tracing::info!(source, reason = %reason, "telemetry source unavailable");
                }
                SourceState::Ok => tracing::info!(source, "telemetry source ok"),
                SourceState::Pending | SourceState::Disabled(_) => {}
            }
        }
    }

    /// Measured needs for every model seen loaded, estimates for installed ones never seen.
    fn needs(&self) -> Vec<(String, NamedVramNeed)> {
        let context = self.context_tokens.unwrap_or(DEFAULT_CONTEXT_TOKENS);
        let mut needs: Vec<(String, NamedVramNeed)> = Vec::new();
        for tag in &self.tags {
            let key = model_key(tag_name(tag));
            let need = match self.measured.get(&key) {
                Some((_, measured)) => Some(measured.need()),
                None => {
                    let show = self.shows.get(&key).and_then(|e| e.result.as_ref().ok());
                    estimate(tag, show, context)
                }
            };
            if let Some(need) = need {
                needs.push((
                    key,
                    NamedVramNeed {
                        model: tag_name(tag).to_owned(),
                        need,
                    },
                ));
            }
        }
        for (key, (name, measured)) in &self.measured {
            if !needs.iter().any(|(k, _)| k == key) {
                needs.push((
                    key.clone(),
                    NamedVramNeed {
                        model: name.clone(),
                        need: measured.need(),
                    },
                ));
            }
        }
        needs.sort_by(|a, b| a.1.model.cmp(&b.1.model));
        needs
    }

    fn sampler_state(
        &self,
        at: Option<chrono::DateTime<Utc>>,
        duration: Option<Duration>,
        sources: SourcesState,
    ) -> super::snapshot::SamplerState {
        super::snapshot::SamplerState {
            enabled: true,
            interval_ms: duration_ms(self.interval),
            ticks: self.ticks,
            last_tick_at: at,
            last_tick_duration_ms: duration.map(|d| d.as_secs_f64() * 1000.0),
            tick_panics: self.panics,
            last_panic: self.last_panic.clone(),
            sources,
        }
    }

    /// Counts a tick that panicked, and shows it in the snapshot.
    fn record_panic(&mut self, message: String) {
        tracing::error!(panic = %message, "telemetry tick panicked; the sampler carries on");
        self.panics += 1;
        self.last_panic = Some(message);
        let mut published = self
            .shared
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let sources = published.snapshot.sampler.sources.clone();
        let at = published.snapshot.sampler.last_tick_at;
        let duration = published.snapshot.sampler.last_tick_duration_ms;
        published.snapshot.sampler = self.sampler_state(at, None, sources);
        published.snapshot.sampler.last_tick_duration_ms = duration;
    }
}

/// Runs `f`, turning a panic into a reason.
/// The GPU energy and the RAPL zones as one reading, with why either is missing.
fn energy_reading(
    gpu: Result<Vec<(u32, Meter)>, String>,
    rapl: Result<Vec<RaplZone>, String>,
) -> EnergyReading {
    let mut reading = EnergyReading::default();
    match gpu {
        Ok(meters) => reading
            .channels
            .extend(meters.into_iter().map(|(index, meter)| ChannelReading {
                channel: Channel::Gpu(index),
                meter,
            })),
        Err(reason) => reading.missing.push(format!("GPU energy: {reason}")),
    }
    match rapl {
        Ok(zones) => reading
            .channels
            .extend(zones.into_iter().map(|z| ChannelReading {
                channel: Channel::Cpu(z.zone),
                meter: Meter::Counter {
                    joules: z.joules,
                    wraps_at: z.wraps_at,
                },
            })),
        Err(reason) => reading.missing.push(reason),
    }
    reading
}

/// Per model key, the GPUs (NVML indices) whose process list holds its runner.
fn model_gpus(joined: &Joined, gpu: &Result<GpuReading, String>) -> HashMap<String, Vec<u32>> {
    let Ok(gpu) = gpu else {
        return HashMap::new();
    };
    joined
        .models
        .iter()
        .filter_map(|m| {
            let pid = m.runner_pid?;
            let on: Vec<u32> = gpu
                .devices
                .iter()
                .filter(|d| d.processes.iter().any(|p| p.pid == pid))
                .map(|d| d.index)
                .collect();
            (!on.is_empty()).then(|| (m.key.clone(), on))
        })
        .collect()
}

fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(format!("the {what} panicked: {}", panic_message(&*payload))))
}

/// A future that turns a panic while polling into an error, so one bad tick does not end
/// the sampler task. Safe code: the inner future is boxed, so this wrapper is `Unpin`.
struct CatchUnwind<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}

/// The sampler task: a tick per interval until the stop signal (or the last handle's
/// drop, which drops the signal's sender).
pub(crate) async fn run(mut sampler: Sampler, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(sampler.interval);
    // After a slow tick, carry on at the interval rather than firing a burst to catch up.
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = interval.tick() => {}
        }
        let now = Instant::now();
        let outcome = tokio::select! {
            biased;
            _ = stop.changed() => break,
            outcome = CatchUnwind { inner: Box::pin(sampler.tick(now)) } => outcome,
        };
        if let Err(message) = outcome {
            sampler.record_panic(message);
        }
        let ticks = sampler.ticks;
        sampler.ticks_tx.send_replace(ticks);
    }
}

/// Whether a model was pulled again: both digests known and different. One may be cut
/// short or carry a `sha256:` prefix, so a prefix match is the same digest.
fn digest_changed(old: Option<&str>, new: Option<&str>) -> bool {
    let bare = |d: &str| d.trim_start_matches("sha256:").to_ascii_lowercase();
    match (old.map(bare), new.map(bare)) {
        (Some(a), Some(b)) => !(a.starts_with(&b) || b.starts_with(&a)),
        _ => false,
    }
}
