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
//! - [`union`]: the pure merge of model lists (`/api/tags`, `/api/ps`, `/v1/models`).
//! - `probe` (private): the per-host loop of health probes and inventory reads.
//! - `speed` (private): measured load time and speed per host and model, from commits.
//!
//! The hot path reads through [`Fleet::order`]: per host an atomic pointer load of its
//! inventory and speeds, two map lookups and a few atomics; no lock, no I/O, no await.

pub mod choose;
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
    /// Installed models by key ([`crate::telemetry::model_key`]) with the VRAM each needs
    /// (MiB, when telemetry knows it); `None` before a good `/api/tags`.
    pub installed: Option<HashMap<String, Option<f64>>>,
    /// Loaded models by key (`/api/ps`).
    pub loaded: HashSet<String>,
    /// Free GPU memory, MiB, where the host's GPU is visible.
    pub free_vram_mb: Option<f64>,
}

/// The health of one host: atomics only, read on every call.
#[derive(Debug)]
struct HealthState {
    /// The last active probe answered (optimistic before the first).
    probe_ok: AtomicBool,
    /// Why the last probe failed.
    probe_error: ArcSwapOption<String>,
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

    /// Starts counting one call of the model with key `key` in flight here, until the
    /// guard drops.
    pub fn track(self: &Arc<Host>, key: &str) -> InFlight {
        let slot = slot(key);
        self.inflight[slot].fetch_add(1, Ordering::Relaxed);
        self.inflight_total.fetch_add(1, Ordering::Relaxed);
        InFlight {
            host: Arc::clone(self),
            slot,
        }
    }

    /// Calls of the model with key `key` in flight here (and of models sharing its slot).
    pub fn inflight(&self, key: &str) -> u32 {
        self.inflight[slot(key)].load(Ordering::Relaxed)
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

/// FNV-1a of the key, into a slot.
fn slot(key: &str) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % INFLIGHT_SLOTS as u64) as usize
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

    /// The hosts to try for the model with key `key`, best first, into `out` (cleared
    /// first): see [`choose::rank`]. A half-open host is included only when this call
    /// claims its trial, and then first.
    pub fn order(&self, key: &str, out: &mut Vec<usize>) {
        out.clear();
        let hosts = &self.inner.hosts;
        if hosts.len() == 1 {
            out.push(0);
            return;
        }
        let now = self.now_ms();
        let mut candidates: [Candidate; choose::MAX_RANKED] = Default::default();
        let n = hosts.len().min(choose::MAX_RANKED);
        for (c, host) in candidates.iter_mut().zip(hosts.iter()).take(n) {
            let inventory = host.inventory.load();
            let availability = host.availability(now);
            let installed = inventory.installed.as_ref().map(|m| m.get(key));
            let loaded = inventory.loaded.contains(key);
            let speeds = host.speeds.load();
            let speed = speeds.get(key);
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
            *c = Candidate {
                index: host.index,
                up: availability != Availability::Down,
                has: installed.map(|found| found.is_some() || loaded),
                loaded,
                inflight: host.inflight(key),
                fit,
                expected_ms: speed.and_then(|s| s.expected_ms(loaded)),
            };
        }
        choose::rank(&mut candidates[..n], out);
        let eject_for_ms = duration_ms(self.inner.health.eject_for);
        let mut trial = None;
        out.retain(|&i| {
            let host = &hosts[i];
            match host.availability(now) {
                Availability::HalfOpen
                    if trial.is_none() && host.claim_trial(now, eject_for_ms) =>
                {
                    trial = Some(i);
                    false
                }
                Availability::HalfOpen => false,
                _ => true,
            }
        });
        if let Some(i) = trial {
            // The trial call goes to the half-open host first, whatever its rank: else a
            // host ranked behind another would never be tried again.
            out.insert(0, i);
        }
        if out.is_empty() {
            // Every host is down or ejected: try them anyway, in order, rather than fail
            // without asking.
            out.extend(0..hosts.len());
        }
    }

    /// Notes how a call at `host` went: `failed` for a connect error or a 5xx. Enough
    /// failures in a row eject the host; a success brings it back.
    pub fn record_result(&self, host: &Host, failed: bool) {
        if !self.is_multi() {
            return;
        }
        let health = &host.health;
        if !failed {
            if health.failures.swap(0, Ordering::Relaxed) != 0
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

    /// What `/system` shows of each host.
    pub fn status(&self) -> Vec<HostStatus> {
        let now = self.now_ms();
        self.inner
            .hosts
            .iter()
            .map(|h| {
                let inventory = h.inventory.load();
                let mut installed: Vec<String> = inventory
                    .installed
                    .as_ref()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                installed.sort();
                let mut loaded: Vec<String> = inventory.loaded.iter().cloned().collect();
                loaded.sort();
                HostStatus {
                    name: h.name.clone(),
                    url: h.url.clone(),
                    kind: h.kind.get(),
                    availability: h.availability(now),
                    probe_error: h.health.probe_error.load_full().map(|e| (*e).clone()),
                    failures_in_a_row: h.health.failures.load(Ordering::Relaxed),
                    ejections: h.health.ejections.load(Ordering::Relaxed),
                    in_flight: h.inflight_total.load(Ordering::Relaxed),
                    installed_models: installed,
                    loaded_models: loaded,
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
            } else if let Some(installed) = &host.inventory.load().installed {
                any = true;
                let mut keys: Vec<&String> = installed.keys().collect();
                keys.sort();
                for key in keys {
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

/// One host as `/system` shows it.
#[derive(Debug, Serialize)]
pub struct HostStatus {
    /// Its name.
    pub name: String,
    /// Its base URL.
    pub url: String,
    /// `ollama` or `openai`, configured or detected.
    pub kind: Option<UpstreamKind>,
    /// Whether it takes calls now.
    pub availability: Availability,
    /// Why its last probe failed.
    pub probe_error: Option<String>,
    /// Failed calls in a row.
    pub failures_in_a_row: u32,
    /// Times it was ejected.
    pub ejections: u64,
    /// Calls in flight there now.
    pub in_flight: u32,
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
        host.inventory.store(Arc::new(Inventory {
            installed: Some(installed.iter().map(|k| (k.to_string(), None)).collect()),
            loaded: loaded.iter().map(|k| k.to_string()).collect(),
            free_vram_mb: None,
        }));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_eject_a_host_and_a_half_open_trial_brings_it_back() {
        let f = fleet(2);
        let (a, b) = (&f.hosts()[0], &f.hosts()[1]);
        set_inventory(a, &["m:latest"], &["m:latest"]);
        set_inventory(b, &["m:latest"], &["m:latest"]);
        let mut order = Vec::new();
        f.order("m:latest", &mut order);
        assert_eq!(order, vec![0, 1]);
        f.record_result(a, true);
        assert_eq!(
            f.availability(a),
            Availability::Healthy,
            "one failure is not enough"
        );
        f.record_result(a, true);
        assert_eq!(f.availability(a), Availability::Down);
        f.order("m:latest", &mut order);
        assert_eq!(order, vec![1], "an ejected host gets no calls");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(f.availability(a), Availability::HalfOpen);
        f.order("m:latest", &mut order);
        assert_eq!(
            order,
            vec![0, 1],
            "the trial call goes to the half-open host"
        );
        f.order("m:latest", &mut order);
        assert_eq!(order, vec![1], "one trial at a time");
        f.record_result(a, false);
        assert_eq!(f.availability(a), Availability::Healthy);
        f.order("m:latest", &mut order);
        assert_eq!(order, vec![0, 1]);
        assert_eq!(a.health.ejections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_takes_a_host_out_until_it_answers() {
        let f = fleet(2);
        let (a, b) = (&f.hosts()[0], &f.hosts()[1]);
        set_inventory(a, &["m:latest"], &[]);
        set_inventory(b, &["m:latest"], &[]);
        a.set_probe(Some("connection refused".into()));
        let mut order = Vec::new();
        f.order("m:latest", &mut order);
        assert_eq!(order, vec![1]);
        assert_eq!(f.first_healthy().name(), "gpu1");
        b.set_probe(Some("connection refused".into()));
        f.order("m:latest", &mut order);
        assert_eq!(
            order,
            vec![0, 1],
            "all down: try them all rather than fail unasked"
        );
        a.set_probe(None);
        f.order("m:latest", &mut order);
        assert_eq!(order, vec![0]);
    }

    #[test]
    fn in_flight_guards_count_per_model_and_release_on_drop() {
        let f = fleet(2);
        let a = &f.hosts()[0];
        let g1 = a.track("m:latest");
        let g2 = a.track("m:latest");
        assert_eq!(a.inflight("m:latest"), 2);
        drop(g1);
        assert_eq!(a.inflight("m:latest"), 1);
        drop(g2);
        assert_eq!(a.inflight("m:latest"), 0);
        assert_eq!(a.inflight_total.load(Ordering::Relaxed), 0);
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
