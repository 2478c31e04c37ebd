//! The fleet: every upstream ollameter forwards to, each with its own health, inventory,
//! in-flight counts and telemetry, and the choice of the host that serves a call best.
//!
//! With one upstream the fleet is that upstream and nothing runs in the background: the
//! proxy behaves as it always did. With several, a task per host probes it
//! (`GET /api/version`, or its kind's probe) and reads what it holds (`/api/ps` each
//! probe, `/api/tags` now and then), and calls that fail at a host (connect error or 5xx)
//! eject it for a while, after which one call is let through to try it again
//! (half-open).
//!
//! - [`choose`]: the pure ranking of hosts for one model (loaded, then fits, then any).
//! - [`model_id`]: a model's key as a 64-bit id, taken from the request's name without
//!   allocating; inventories, speeds and in-flight counters are keyed by it.
//! - [`union`]: the pure merge of model lists (`/api/tags`, `/api/ps`, `/v1/models`).
//! - `probe` (private): the per-host loop of health probes and inventory reads.
//! - `speed` (private): measured load time and speed per host and model, from commits.
//!
//! The hot path reads through [`Fleet::order`]: the model's id hashed once from its name,
//! then per host an atomic pointer load of its inventory and speeds, three lookups by id
//! and a few atomics, the ranking on the stack; no lock, no allocation, no I/O, no await
//! (`cargo bench --bench fleet` measures it).

pub mod choose;
pub mod model_id;
mod probe;
mod speed;
pub mod union;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use axum::http::{HeaderMap, HeaderValue};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::telemetry::Telemetry;
use crate::upstream::{Kind, KindSetting, UpstreamKind};
use choose::{Candidate, Fit};
use model_id::{IdMap, IdSet};

pub use choose::HostOrder;
pub use model_id::ModelId;
pub use speed::SpeedHook;

/// The header that pins a call to one upstream (on the request) and names the upstream
/// that served it (on every answer).
pub const UPSTREAM_HEADER: &str = "x-ollameter-upstream";

/// Time between two health probes of a host: a host that dies is noticed within two
/// seconds by the probe (at once by the calls that fail on it), and a probe with an
/// `/api/ps` read every two seconds costs Ollama nothing measurable.
pub const DEFAULT_PROBE_INTERVAL_MS: u64 = 2_000;
/// Failed calls in a row (connect error or 5xx) that eject a host: one failure can be a
/// model's own crash; three in a row say the host is in trouble.
pub const DEFAULT_EJECT_AFTER_FAILURES: u32 = 3;
/// How long an ejected host gets no calls before one is let through to try it: long
/// enough for a restarting Ollama to come back, short enough to use it soon after.
pub const DEFAULT_EJECT_MS: u64 = 10_000;
/// `/api/tags` is read every this many probes (and after a host comes back or a
/// management call went to it): installed models change on pull and delete only.
const TAGS_EVERY_PROBES: u64 = 5;
/// In-flight counters per host: a model's calls count in the slot of its name's hash.
/// Two models sharing a slot only make the spread slightly less even.
const INFLIGHT_SLOTS: usize = 64;
/// Longest upstream name: it goes into a header, the records and metric labels.
pub const MAX_NAME_CHARS: usize = 64;
/// Most upstreams one ollameter fronts: each call ranks them all on the stack.
pub const MAX_UPSTREAMS: usize = choose::MAX_RANKED;

/// One configured upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Its name in records, headers and labels (default: `host:port`).
    pub name: String,
    /// Base URL without a trailing slash.
    pub url: String,
    /// What it is, or detect it.
    pub kind: KindSetting,
}

/// How hosts are watched when there are several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between two probes of a host.
    pub probe_interval: Duration,
    /// Failed calls in a row that eject a host.
    pub eject_after_failures: u32,
    /// How long an ejected host rests before a trial call.
    pub eject_for: Duration,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            probe_interval: Duration::from_millis(DEFAULT_PROBE_INTERVAL_MS),
            eject_after_failures: DEFAULT_EJECT_AFTER_FAILURES,
            eject_for: Duration::from_millis(DEFAULT_EJECT_MS),
        }
    }
}

/// What a host holds, as its last reads said. Replaced whole by the probe loop.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Installed models by id with the VRAM each needs (MiB, when telemetry knows it);
    /// `None` before a good `/api/tags`.
    pub installed: Option<IdMap<Option<f64>>>,
    /// The installed models' keys ([`crate::telemetry::model_key`]), sorted.
    pub installed_keys: Vec<String>,
    /// Loaded models by id (`/api/ps`).
    pub loaded: IdSet,
    /// The loaded models' keys, sorted.
    pub loaded_keys: Vec<String>,
    /// Free GPU memory, MiB, where the host's GPU is visible.
    pub free_vram_mb: Option<f64>,
}

impl Inventory {
    /// The inventory of these installed models (keys with their VRAM need; `None` when
    /// not read yet) and loaded models (keys).
    pub fn new(
        installed: Option<HashMap<String, Option<f64>>>,
        loaded: HashSet<String>,
        free_vram_mb: Option<f64>,
    ) -> Inventory {
        let mut installed_keys: Vec<String> = installed
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        installed_keys.sort();
        let mut loaded_keys: Vec<String> = loaded.into_iter().collect();
        loaded_keys.sort();
        Inventory {
            installed: installed.map(|m| {
                m.into_iter()
                    .map(|(k, need)| (ModelId::of_key(&k), need))
                    .collect()
            }),
            installed_keys,
            loaded: loaded_keys.iter().map(|k| ModelId::of_key(k)).collect(),
            loaded_keys,
            free_vram_mb,
        }
    }

    /// The installed models with their VRAM need, by key (`None` when not read yet).
    fn installed_by_key(&self) -> Option<HashMap<String, Option<f64>>> {
        let installed = self.installed.as_ref()?;
        Some(
            self.installed_keys
                .iter()
                .map(|k| {
                    let need = installed.get(&ModelId::of_key(k)).copied().flatten();
                    (k.clone(), need)
                })
                .collect(),
        )
    }
}

/// The health of one host: atomics only, read on every call.
#[derive(Debug)]
struct HealthState {
    /// The last active probe answered (optimistic before the first).
    probe_ok: AtomicBool,
    /// Why the last probe failed.
    probe_error: ArcSwapOption<String>,
    /// Why the last failed call failed at this host (connect error, or its 5xx).
    call_error: ArcSwapOption<String>,
    /// Failed calls in a row.
    failures: AtomicU32,
    /// Ejected until this many ms after the fleet's epoch; 0 when not ejected.
    ejected_until_ms: AtomicU64,
    /// Times the host was ejected.
    ejections: AtomicU64,
}

/// Whether a host takes calls now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    /// It answers its probe and is not ejected.
    Healthy,
    /// Its ejection is over: the next call tries it.
    HalfOpen,
    /// Its probe fails, or it is ejected after failed calls.
    Down,
}

/// One upstream host and everything known about it.
pub struct Host {
    index: usize,
    name: String,
    header: HeaderValue,
    url: String,
    kind: Kind,
    telemetry: Telemetry,
    health: HealthState,
    inventory: ArcSwap<Inventory>,
    speeds: ArcSwap<speed::Speeds>,
    inflight: [AtomicU32; INFLIGHT_SLOTS],
    inflight_total: AtomicU32,
    /// Set after a management call: the next probe reads `/api/tags`.
    refresh_tags: AtomicBool,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Its position in the configuration (0 is the first upstream).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its name as a header value (checked by the configuration).
    pub fn header(&self) -> &HeaderValue {
        &self.header
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its kind, configured or detected.
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// Its own telemetry.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The next probe reads `/api/tags` (a pull, delete, copy or create went to it).
    pub fn refresh_tags(&self) {
        self.refresh_tags.store(true, Ordering::Relaxed);
    }

    /// Starts counting one call of the model `id` in flight here, until the guard drops.
    pub fn track(self: &Arc<Host>, id: ModelId) -> InFlight {
        let slot = id.slot(INFLIGHT_SLOTS);
        self.inflight[slot].fetch_add(1, Ordering::Relaxed);
        self.inflight_total.fetch_add(1, Ordering::Relaxed);
        InFlight {
            host: Arc::clone(self),
            slot,
        }
    }

    /// Calls of the model `id` in flight here (and of models sharing its slot).
    pub fn inflight(&self, id: ModelId) -> u32 {
        self.inflight[id.slot(INFLIGHT_SLOTS)].load(Ordering::Relaxed)
    }

    fn availability(&self, now_ms: u64) -> Availability {
        if !self.health.probe_ok.load(Ordering::Relaxed) {
            return Availability::Down;
        }
        match self.health.ejected_until_ms.load(Ordering::Acquire) {
            0 => Availability::Healthy,
            until if now_ms < until => Availability::Down,
            _ => Availability::HalfOpen,
        }
    }

    /// Claims the one trial call of a half-open host: the ejection is re-armed, so other
    /// calls keep away until the trial says how it went.
    fn claim_trial(&self, now_ms: u64, eject_for_ms: u64) -> bool {
        let until = self.health.ejected_until_ms.load(Ordering::Acquire);
        until != 0
            && now_ms >= until
            && self
                .health
                .ejected_until_ms
                .compare_exchange(
                    until,
                    now_ms + eject_for_ms,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn health_at(&self, now_ms: u64) -> HostHealth {
        let health = &self.health;
        let until = health.ejected_until_ms.load(Ordering::Acquire);
        HostHealth {
            name: self.name.clone(),
            url: self.url.clone(),
            kind: self.kind.get(),
            reachable: health.probe_ok.load(Ordering::Relaxed),
            availability: self.availability(now_ms),
            ejected: until != 0,
            ejected_for_ms: (until > now_ms).then(|| until - now_ms),
            failures_in_a_row: health.failures.load(Ordering::Relaxed),
            ejections: health.ejections.load(Ordering::Relaxed),
            probe_error: health.probe_error.load_full().map(|e| (*e).clone()),
            last_call_error: health.call_error.load_full().map(|e| (*e).clone()),
            in_flight: self.inflight_total.load(Ordering::Relaxed),
        }
    }

    fn set_probe(&self, error: Option<String>) {
        let ok = error.is_none();
        let was = self.health.probe_ok.swap(ok, Ordering::Relaxed);
        if was != ok {
            if ok {
                tracing::info!(upstream = %self.name, "upstream answers its probe again");
                self.refresh_tags();
            } else {
                tracing::warn!(upstream = %self.name, error = error.as_deref().unwrap_or(""), "upstream fails its probe: no calls go to it");
            }
        }
        self.health.probe_error.store(error.map(Arc::new));
    }
}

/// One call counted in flight at a host; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight {
    host: Arc<Host>,
    slot: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.host.inflight[self.slot].fetch_sub(1, Ordering::Relaxed);
        self.host.inflight_total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every upstream; cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<FleetInner>,
}

struct FleetInner {
    hosts: Vec<Arc<Host>>,
    health: HealthConfig,
    epoch: tokio::time::Instant,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("hosts", &self.inner.hosts)
            .finish_non_exhaustive()
    }
}

/// How the host for a call was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// By the fleet's rules.
    None,
    /// By the client's `X-Ollameter-Upstream` header: this host.
    Host(usize),
}

impl Fleet {
    /// The fleet of `upstreams` (at least one), each with its telemetry (same order).
    /// Nothing runs until [`Fleet::start`].
    pub fn new(
        upstreams: &[UpstreamConfig],
        telemetries: Vec<Telemetry>,
        health: HealthConfig,
    ) -> Fleet {
        let mut telemetries = telemetries.into_iter();
        let hosts = upstreams
            .iter()
            .enumerate()
            .map(|(index, u)| {
                Arc::new(Host {
                    index,
                    name: u.name.clone(),
                    header: HeaderValue::from_str(&u.name)
                        .unwrap_or_else(|_| HeaderValue::from_static("upstream")),
                    url: u.url.clone(),
                    kind: Kind::new(u.kind),
                    telemetry: telemetries.next().unwrap_or_else(Telemetry::disabled),
                    health: HealthState {
                        probe_ok: AtomicBool::new(true),
                        probe_error: ArcSwapOption::empty(),
                        call_error: ArcSwapOption::empty(),
                        failures: AtomicU32::new(0),
                        ejected_until_ms: AtomicU64::new(0),
                        ejections: AtomicU64::new(0),
                    },
                    inventory: ArcSwap::from_pointee(Inventory::default()),
                    speeds: ArcSwap::from_pointee(speed::Speeds::default()),
                    inflight: std::array::from_fn(|_| AtomicU32::new(0)),
                    inflight_total: AtomicU32::new(0),
                    refresh_tags: AtomicBool::new(true),
                })
            })
            .collect();
        let (stop, _) = watch::channel(false);
        Fleet {
            inner: Arc::new(FleetInner {
                hosts,
                health,
                epoch: tokio::time::Instant::now(),
                stop,
                tasks: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    /// A fleet of the one upstream at `url`, without telemetry (tests, tools).
    pub fn single(url: &str) -> Fleet {
        let authority = url
            .strip_prefix("http://")
            .unwrap_or(url)
            .split('/')
            .next()
            .unwrap_or(url);
        Fleet::new(
            &[UpstreamConfig {
                name: authority.to_owned(),
                url: url.trim_end_matches('/').to_owned(),
                kind: KindSetting::Auto,
            }],
            Vec::new(),
            HealthConfig::default(),
        )
    }

    /// Starts probing every host when there are several (one upstream needs no choice
    /// and keeps today's behaviour: nothing runs). `client` makes the probes.
    pub fn start(&self, client: reqwest::Client) {
        if !self.is_multi() {
            return;
        }
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for host in &self.inner.hosts {
            tasks.push(tokio::spawn(probe::run(
                self.clone(),
                Arc::clone(host),
                client.clone(),
                self.inner.stop.subscribe(),
            )));
        }
    }

    /// Stops the probes and every host's telemetry.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let tasks: Vec<_> = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        for host in &self.inner.hosts {
            host.telemetry.shutdown().await;
        }
    }

    /// Sets what the host at `index` holds, as its probe would (benchmarks, tests): these
    /// models installed (VRAM need unknown), those loaded.
    #[cfg(feature = "test-support")]
    pub fn set_inventory(&self, index: usize, installed: &[&str], loaded: &[&str]) {
        let host = &self.inner.hosts[index];
        host.inventory.store(Arc::new(Inventory::new(
            Some(
                installed
                    .iter()
                    .map(|m| (crate::telemetry::model_key(m), None))
                    .collect(),
            ),
            loaded
                .iter()
                .map(|m| crate::telemetry::model_key(m))
                .collect(),
            None,
        )));
    }

    /// Whether there are several upstreams to choose from.
    pub fn is_multi(&self) -> bool {
        self.inner.hosts.len() > 1
    }

    /// Every host, in configuration order.
    pub fn hosts(&self) -> &[Arc<Host>] {
        &self.inner.hosts
    }

    /// The first upstream.
    pub fn first(&self) -> &Arc<Host> {
        &self.inner.hosts[0]
    }

    /// The host with this name.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Host>> {
        self.inner.hosts.iter().find(|h| h.name == name)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The host a request pins with `X-Ollameter-Upstream`; an error naming the hosts when
    /// the name is not one of them.
    pub fn pin(&self, headers: &HeaderMap) -> Result<Pin, String> {
        let Some(value) = headers.get(UPSTREAM_HEADER) else {
            return Ok(Pin::None);
        };
        let name = value.to_str().unwrap_or("").trim();
        match self.inner.hosts.iter().find(|h| h.name == name) {
            Some(host) => Ok(Pin::Host(host.index)),
            None => {
                let names: Vec<&str> = self.inner.hosts.iter().map(|h| h.name.as_str()).collect();
                Err(format!(
                    "X-Ollameter-Upstream: {name:?} is not one of this ollameter's upstreams ({})",
                    names.join(", ")
                ))
            }
        }
    }

    /// Whether a host takes calls now.
    pub fn availability(&self, host: &Host) -> Availability {
        host.availability(self.now_ms())
    }

    /// The first host that takes calls; the first upstream when none does.
    pub fn first_healthy(&self) -> &Arc<Host> {
        let now = self.now_ms();
        self.inner
            .hosts
            .iter()
            .find(|h| h.availability(now) != Availability::Down)
            .unwrap_or_else(|| self.first())
    }

    /// The hosts to try for the model `id`, best first, into `out` (cleared first): see
    /// [`choose::rank`]. A half-open host is included only when this call claims its
    /// trial, and then first.
    pub fn order(&self, id: ModelId, out: &mut HostOrder) {
        out.clear();
        let hosts = &self.inner.hosts;
        if hosts.len() == 1 {
            out.push(0);
            return;
        }
        let now = self.now_ms();
        let n = hosts.len().min(choose::MAX_RANKED);
        let mut availability = [Availability::Down; choose::MAX_RANKED];
        let mut candidates: [Candidate; choose::MAX_RANKED] = Default::default();
        for (i, host) in hosts.iter().take(n).enumerate() {
            let inventory = host.inventory.load();
            availability[i] = host.availability(now);
            let installed = inventory.installed.as_ref().map(|m| m.get(&id));
            let loaded = inventory.loaded.contains(&id);
            let fit = match (installed, inventory.free_vram_mb) {
                (Some(Some(Some(need))), Some(free)) => {
                    if *need <= free {
                        Fit::Fits
                    } else {
                        Fit::TooBig
                    }
                }
                _ => Fit::Unknown,
            };
            candidates[i] = Candidate {
                index: i,
                up: availability[i] != Availability::Down,
                has: installed.map(|found| found.is_some() || loaded),
                loaded,
                inflight: host.inflight(id),
                fit,
                expected_ms: host
                    .speeds
                    .load()
                    .get(&id)
                    .and_then(|s| s.expected_ms(loaded)),
            };
        }
        choose::rank(&mut candidates[..n], out);
        let eject_for_ms = duration_ms(self.inner.health.eject_for);
        let mut trial = None;
        out.retain(|i| match availability[i] {
            Availability::HalfOpen
                if trial.is_none() && hosts[i].claim_trial(now, eject_for_ms) =>
            {
                trial = Some(i);
                false
            }
            Availability::HalfOpen => false,
            _ => true,
        });
        if let Some(i) = trial {
            // The trial call goes to the half-open host first, whatever its rank: else a
            // host ranked behind another would never be tried again.
            out.insert_first(i);
        }
        if out.is_empty() {
            // Every host is down or ejected: try them anyway, in order, rather than fail
            // without asking.
            for i in 0..n {
                out.push(i);
            }
        }
    }

    /// Notes how a call at `host` went, from its answer's status or why there was none,
    /// and returns whether the host failed it (connect error or 5xx): see
    /// [`Fleet::record_result`]. The failure's reason is kept for `/health`.
    pub fn record_outcome(
        &self,
        host: &Host,
        outcome: Result<axum::http::StatusCode, String>,
    ) -> bool {
        let failed = match &outcome {
            Ok(status) => status.is_server_error(),
            Err(_) => true,
        };
        if failed && self.is_multi() {
            let why = match outcome {
                Ok(status) => format!("answered {status}"),
                Err(e) => e,
            };
            host.health.call_error.store(Some(Arc::new(why)));
        }
        self.record_result(host, failed);
        failed
    }

    /// Notes how a call at `host` went: `failed` for a connect error or a 5xx. Enough
    /// failures in a row eject the host; a success brings it back.
    pub fn record_result(&self, host: &Host, failed: bool) {
        if !self.is_multi() {
            return;
        }
        let health = &host.health;
        if !failed {
            // A read first: the common case (no failure before) writes nothing, so calls
            // on several cores do not pass the counter's cache line around.
            if health.failures.load(Ordering::Relaxed) != 0
                && health.failures.swap(0, Ordering::Relaxed) != 0
                && health.ejected_until_ms.swap(0, Ordering::AcqRel) != 0
            {
                tracing::info!(upstream = %host.name, "upstream answers again: back in rotation");
            }
            return;
        }
        let failures = health.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.inner.health.eject_after_failures {
            let until = self.now_ms() + duration_ms(self.inner.health.eject_for);
            if health.ejected_until_ms.swap(until, Ordering::AcqRel) == 0 {
                health.ejections.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    upstream = %host.name,
                    failures,
                    "upstream ejected after failed calls in a row; one call will try it again later"
                );
            }
        }
    }

    /// Each host's health with its reachability probed now (every host at once, as its
    /// kind expects), for `/health`. The probes only inform the answer: routing keeps
    /// following the probe loop and the calls (a host that fails this probe is reported
    /// `down` here, and the loop takes it out within its interval).
    pub async fn health_now(&self, client: &reqwest::Client) -> Vec<HostHealth> {
        let probes = self
            .inner
            .hosts
            .iter()
            .map(|host| host.kind.probe(client, &host.url));
        let probes = futures_util::future::join_all(probes).await;
        let mut health = self.health();
        for (h, probe) in health.iter_mut().zip(probes) {
            h.reachable = probe.error.is_none();
            h.probe_error = probe.error;
            if probe.kind.is_some() {
                h.kind = probe.kind;
            }
            if !h.reachable {
                h.availability = Availability::Down;
            }
        }
        health
    }

    /// Each host's health, as `/health` reports it.
    pub fn health(&self) -> Vec<HostHealth> {
        let now = self.now_ms();
        self.inner.hosts.iter().map(|h| h.health_at(now)).collect()
    }

    /// What `/system` shows of each host.
    pub fn status(&self) -> Vec<HostStatus> {
        let now = self.now_ms();
        self.inner
            .hosts
            .iter()
            .map(|h| {
                let inventory = h.inventory.load();
                HostStatus {
                    health: h.health_at(now),
                    installed_models: inventory.installed_keys.clone(),
                    loaded_models: inventory.loaded_keys.clone(),
                    free_vram_mb: inventory.free_vram_mb,
                    telemetry: h.telemetry.snapshot(),
                }
            })
            .collect()
    }

    /// The union of every host's installed models (for `auto` and aliases), in host
    /// order, each model once.
    fn installed_union(&self) -> Option<Vec<crate::telemetry::InstalledModel>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut any = false;
        for host in &self.inner.hosts {
            if let Some(models) = host.telemetry.installed_models_of_host() {
                any = true;
                for m in models {
                    if seen.insert(crate::telemetry::model_key(&m.name)) {
                        out.push(m);
                    }
                }
            } else {
                let inventory = host.inventory.load();
                if inventory.installed.is_none() {
                    continue;
                }
                any = true;
                for key in &inventory.installed_keys {
                    if seen.insert(key.clone()) {
                        out.push(crate::telemetry::InstalledModel {
                            name: key.clone(),
                            capabilities: Vec::new(),
                        });
                    }
                }
            }
        }
        any.then_some(out)
    }
}

/// One host's health, as `/health` and `/system` show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HostHealth {
    /// Its name.
    pub name: String,
    /// Its base URL.
    pub url: String,
    /// `ollama` or `openai`, configured or detected; `null` while not known.
    pub kind: Option<UpstreamKind>,
    /// Whether it answers its probe (Ollama: `GET /api/version`): in `/health`, a probe
    /// made for that answer; in `/system`, the probe loop's last.
    pub reachable: bool,
    /// Whether it takes calls: `healthy`, `half_open` (its ejection is over: the next
    /// call tries it) or `down` (its probe fails, or it is ejected after failed calls).
    pub availability: Availability,
    /// Ejected after failed calls in a row, and not yet back (a successful call brings it
    /// back).
    pub ejected: bool,
    /// While ejected, how long until a call tries it again, ms (`null` once half-open).
    pub ejected_for_ms: Option<u64>,
    /// Failed calls in a row.
    pub failures_in_a_row: u32,
    /// Times it was ejected since start.
    pub ejections: u64,
    /// Why its last probe failed (`null` while it answers).
    pub probe_error: Option<String>,
    /// Why the last call that failed at it failed (connect error, or its 5xx); kept
    /// after it recovers, as the last error seen.
    pub last_call_error: Option<String>,
    /// Calls in flight there now.
    pub in_flight: u32,
}

/// One host as `/system` shows it.
#[derive(Debug, Serialize)]
pub struct HostStatus {
    /// Its health.
    #[serde(flatten)]
    pub health: HostHealth,
    /// Installed models (keys), at the last `/api/tags`.
    pub installed_models: Vec<String>,
    /// Loaded models (keys), at the last `/api/ps`.
    pub loaded_models: Vec<String>,
    /// Free GPU memory, MiB, where visible.
    pub free_vram_mb: Option<f64>,
    /// Its telemetry: GPUs, loaded models' memory, processes, sources.
    pub telemetry: crate::telemetry::SystemSnapshot,
}

/// Whether an upstream URL names this machine's loopback (`localhost`, `127.x`, `::1`).
pub fn is_loopback(url: &str) -> bool {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The GPU and process sources of an upstream on another machine: not visible from here,
/// and `/system` says so.
#[derive(Debug, Clone)]
pub struct NotVisible(pub String);

impl NotVisible {
    fn reason(&self) -> String {
        format!(
            "not visible: upstream {} is on another machine (only the first upstream and \
             those on this machine's loopback are read here)",
            self.0
        )
    }
}

impl crate::telemetry::GpuBackend for NotVisible {
    fn sample(&mut self) -> Result<crate::telemetry::gpu::GpuReading, String> {
        Err(self.reason())
    }
}

impl crate::telemetry::ProcessSource for NotVisible {
    fn all(&mut self) -> Result<Vec<crate::telemetry::process::ProcInfo>, String> {
        Err(self.reason())
    }
    fn some(&mut self, _: &[u32]) -> Result<Vec<crate::telemetry::process::ProcInfo>, String> {
        Err(self.reason())
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Fleet {
        let upstreams: Vec<UpstreamConfig> = (0..n)
            .map(|i| UpstreamConfig {
                name: format!("gpu{i}"),
                url: format!("http://127.0.0.1:{}", 20_000 + i),
                kind: KindSetting::Fixed(UpstreamKind::Ollama),
            })
            .collect();
        Fleet::new(
            &upstreams,
            Vec::new(),
            HealthConfig {
                probe_interval: Duration::from_secs(1),
                eject_after_failures: 2,
                eject_for: Duration::from_secs(10),
            },
        )
    }

    fn set_inventory(host: &Host, installed: &[&str], loaded: &[&str]) {
        host.inventory.store(Arc::new(Inventory::new(
            Some(installed.iter().map(|k| (k.to_string(), None)).collect()),
            loaded.iter().map(|k| k.to_string()).collect(),
            None,
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_eject_a_host_and_a_half_open_trial_brings_it_back() {
        let f = fleet(2);
        let (a, b) = (&f.hosts()[0], &f.hosts()[1]);
        set_inventory(a, &["m:latest"], &["m:latest"]);
        set_inventory(b, &["m:latest"], &["m:latest"]);
        let m = ModelId::of("m:latest");
        let mut order = HostOrder::default();
        f.order(m, &mut order);
        assert_eq!(*order, [0, 1]);
        f.record_result(a, true);
        assert_eq!(
            f.availability(a),
            Availability::Healthy,
            "one failure is not enough"
        );
        f.record_result(a, true);
        assert_eq!(f.availability(a), Availability::Down);
        f.order(m, &mut order);
        assert_eq!(*order, [1], "an ejected host gets no calls");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(f.availability(a), Availability::HalfOpen);
        f.order(m, &mut order);
        assert_eq!(*order, [0, 1], "the trial call goes to the half-open host");
        f.order(m, &mut order);
        assert_eq!(*order, [1], "one trial at a time");
        f.record_result(a, false);
        assert_eq!(f.availability(a), Availability::Healthy);
        f.order(m, &mut order);
        assert_eq!(*order, [0, 1]);
        assert_eq!(a.health.ejections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_takes_a_host_out_until_it_answers() {
        let f = fleet(2);
        let (a, b) = (&f.hosts()[0], &f.hosts()[1]);
        set_inventory(a, &["m:latest"], &[]);
        set_inventory(b, &["m:latest"], &[]);
        a.set_probe(Some("connection refused".into()));
        let m = ModelId::of("m:latest");
        let mut order = HostOrder::default();
        f.order(m, &mut order);
        assert_eq!(*order, [1]);
        assert_eq!(f.first_healthy().name(), "gpu1");
        b.set_probe(Some("connection refused".into()));
        f.order(m, &mut order);
        assert_eq!(
            *order,
            [0, 1],
            "all down: try them all rather than fail unasked"
        );
        a.set_probe(None);
        f.order(m, &mut order);
        assert_eq!(*order, [0]);
    }

    #[test]
    fn in_flight_guards_count_per_model_and_release_on_drop() {
        let f = fleet(2);
        let a = &f.hosts()[0];
        let m = ModelId::of("M");
        let g1 = a.track(m);
        let g2 = a.track(m);
        assert_eq!(a.inflight(m), 2);
        drop(g1);
        assert_eq!(a.inflight(m), 1);
        drop(g2);
        assert_eq!(a.inflight(m), 0);
        assert_eq!(a.inflight_total.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn health_tells_reachable_ejected_and_the_last_errors_apart() {
        let f = fleet(2);
        let (a, b) = (&f.hosts()[0], &f.hosts()[1]);
        let ok = axum::http::StatusCode::OK;
        let bad = axum::http::StatusCode::SERVICE_UNAVAILABLE;
        assert!(!f.record_outcome(a, Ok(ok)));
        assert!(f.record_outcome(a, Ok(bad)));
        assert!(f.record_outcome(a, Err("connection refused".into())));
        b.set_probe(Some("GET /api/version: timed out".into()));
        let h = f.health();
        assert!(h[0].reachable && h[0].ejected);
        assert_eq!(h[0].availability, Availability::Down);
        assert_eq!(h[0].ejected_for_ms, Some(10_000));
        assert_eq!(h[0].failures_in_a_row, 2);
        assert_eq!(h[0].last_call_error.as_deref(), Some("connection refused"));
        assert!(!h[1].reachable && !h[1].ejected);
        assert_eq!(
            h[1].probe_error.as_deref(),
            Some("GET /api/version: timed out")
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        let h = f.health();
        assert_eq!(h[0].availability, Availability::HalfOpen);
        assert_eq!(h[0].ejected_for_ms, None);
        assert!(!f.record_outcome(a, Ok(ok)), "a success brings it back");
        let h = f.health();
        assert!(!h[0].ejected);
        assert_eq!(h[0].availability, Availability::Healthy);
        assert_eq!(
            h[0].last_call_error.as_deref(),
            Some("connection refused"),
            "the last error stays for the record"
        );
        let status = f.status();
        assert_eq!(status[0].health.name, "gpu0");
        let json = serde_json::to_value(&status[0]).expect("json");
        assert_eq!(
            json["availability"], "healthy",
            "the health is inline: {json}"
        );
    }

    #[test]
    fn loopback_urls_are_told_apart() {
        assert!(is_loopback("http://127.0.0.1:11434"));
        assert!(is_loopback("http://localhost:1/ollama"));
        assert!(is_loopback("http://[::1]:11434"));
        assert!(!is_loopback("http://gpu-box-1:11434"));
        assert!(!is_loopback("http://10.0.0.2:11434"));
    }

    #[test]
    fn a_pin_names_a_host_or_lists_them_all() {
        let f = fleet(2);
        let mut headers = HeaderMap::new();
        assert_eq!(f.pin(&headers), Ok(Pin::None));
        headers.insert(UPSTREAM_HEADER, HeaderValue::from_static("gpu1"));
        assert_eq!(f.pin(&headers), Ok(Pin::Host(1)));
        headers.insert(UPSTREAM_HEADER, HeaderValue::from_static("gpu9"));
        let err = f.pin(&headers).expect_err("unknown");
        assert!(err.contains("gpu0, gpu1"), "{err}");
    }
}
