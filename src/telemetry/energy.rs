//! Energy per call: the ledger that shares each energy channel's joules among the calls
//! running on it (pure, driven by the sampler's readings and the proxy's call start and
//! end), and the readers of the channels: the GPU's energy counter or power through the
//! [`GpuBackend`](super::GpuBackend), and the CPU packages' RAPL counters under
//! `/sys/class/powercap`.
//!
//! How a channel's energy is shared: between two readings the channel's power is taken as
//! constant (ΔE / Δt, or the power reading where there is no counter); each moment of it
//! goes in equal parts to the calls running then. The ledger keeps, per channel, a clock
//! that advances by `dt / n` while `n` calls run (the "share-seconds" each of them has
//! earned); a call's energy is the power of each interval times the share-seconds it
//! earned in it. What a call earned after the last reading before it ended is priced at
//! the last known power (the sampler reads once a second, so that tail is under a second).
//! Idle energy (no call running) goes to no call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

/// One channel: a GPU (by NVML index) or a CPU package (by its RAPL zone).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A GPU, by NVML index.
    Gpu(u32),
    /// A CPU package, by its powercap zone name (`intel-rapl:0`).
    Cpu(String),
}

/// What a channel reports at one reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Meter {
    /// A cumulative energy counter in joules, and where it wraps to zero (RAPL's
    /// `max_energy_range_uj`); `None`: it does not wrap (NVML's 64-bit millijoules).
    Counter {
        /// The counter, J.
        joules: f64,
        /// Where it wraps, J.
        wraps_at: Option<f64>,
    },
    /// Only the power now, W (GPUs without an energy counter): energy is power × time.
    Power {
        /// Watts.
        watts: f64,
    },
}

/// One channel's reading.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelReading {
    /// Which channel.
    pub channel: Channel,
    /// What it reported.
    pub meter: Meter,
}

/// A reading of every energy channel the machine has, with why any part is missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnergyReading {
    /// The channels read.
    pub channels: Vec<ChannelReading>,
    /// Why the GPU or CPU part is missing, in words (`GPU energy: NVML library not found`).
    pub missing: Vec<String>,
}

/// How a call's energy was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Method {
    GpuCounter,
    GpuPower,
    CpuRapl,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::GpuCounter => "gpu_counter",
            Method::GpuPower => "gpu_power",
            Method::CpuRapl => "cpu_rapl",
        }
    }
}

/// A call's energy, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct CallEnergy {
    /// Joules; `None` when no channel could be read while it ran.
    pub joules: Option<f64>,
    /// How: `gpu_counter`, `gpu_power`, `cpu_rapl`, joined by `+`.
    pub source: Option<String>,
    /// Why `joules` is `None`.
    pub reason: Option<String>,
}

struct ChannelState {
    method: Method,
    /// The last reading: when, and the counter (J) for counters.
    last_at: Option<Instant>,
    last_counter: Option<f64>,
    wraps_at: Option<f64>,
    /// The power of the last interval, W.
    power_w: Option<f64>,
    /// The share-seconds clock and when it last advanced.
    clock: f64,
    clock_at: Option<Instant>,
    running: usize,
}

impl ChannelState {
    fn advance(&mut self, now: Instant) {
        if let Some(at) = self.clock_at
            && self.running > 0
        {
            self.clock += now.saturating_duration_since(at).as_secs_f64() / self.running as f64;
        }
        self.clock_at = Some(now);
    }
}

struct Share {
    channel: Channel,
    method: Method,
    /// The channel's clock when this call was last settled.
    settled_clock: f64,
    joules: f64,
    /// Whether any energy of this channel reached the call.
    priced: bool,
}

/// The ledger. Calls are told by id; ids come from [`EnergyLedger::begin`].
#[derive(Default)]
pub struct EnergyLedger {
    channels: HashMap<Channel, ChannelState>,
    calls: HashMap<u64, Vec<Share>>,
    next_id: u64,
    /// Per model key, the GPUs its runner is on (from the last sample).
    model_gpus: HashMap<String, Vec<u32>>,
    missing: Vec<String>,
}

/// The counter's increase from `before` to `now`: across a wrap when the counter wraps,
/// `None` after a reset (the counter went back and does not wrap, or the wrapped increase
/// is impossible for the interval).
fn counter_delta(before: f64, now: f64, wraps_at: Option<f64>) -> Option<f64> {
    if now >= before {
        return Some(now - before);
    }
    let range = wraps_at?;
    let delta = range - before + now;
    (delta >= 0.0 && delta < range / 2.0).then_some(delta)
}

impl EnergyLedger {
    /// A call of the model with this key starts now; returns its id.
    pub fn begin(&mut self, model_key: &str, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let gpus = self.model_gpus.get(model_key);
        let mut shares = Vec::new();
        for (channel, state) in &mut self.channels {
            let applies = match channel {
                // A model's runner on known GPUs runs there; an unknown one (not loaded
                // yet, not visible) is counted on every GPU.
                Channel::Gpu(index) => gpus.is_none_or(|g| g.contains(index)),
                Channel::Cpu(_) => true,
            };
            if applies {
                state.advance(now);
                state.running += 1;
                shares.push(Share {
                    channel: channel.clone(),
                    method: state.method,
                    settled_clock: state.clock,
                    joules: 0.0,
                    priced: false,
                });
            }
        }
        self.calls.insert(id, shares);
        id
    }

    /// The call `id` ended now: its energy. The part since the last reading is priced at
    /// the last known power.
    pub fn end(&mut self, id: u64, now: Instant) -> CallEnergy {
        let shares = self.calls.remove(&id).unwrap_or_default();
        let mut total = 0.0;
        let mut methods = Vec::new();
        for mut share in shares {
            // A channel no longer read keeps what the call earned while it was.
            if let Some(state) = self.channels.get_mut(&share.channel) {
                state.advance(now);
                if let Some(power) = state.power_w {
                    share.joules += power * (state.clock - share.settled_clock);
                    share.priced = true;
                }
                state.running = state.running.saturating_sub(1);
            }
            if share.priced {
                total += share.joules;
                methods.push(share.method);
            }
        }
        methods.sort_unstable();
        methods.dedup();
        if methods.is_empty() {
            let reason = if self.missing.is_empty() {
                "no energy reading covered the call yet (the first readings come at the \
                 sampler's first ticks)"
                    .to_owned()
            } else {
                self.missing.join("; ")
            };
            return CallEnergy {
                joules: None,
                source: None,
                reason: Some(reason),
            };
        }
        let names: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
        CallEnergy {
            joules: Some(total),
            source: Some(names.join("+")),
            reason: None,
        }
    }

    /// Forgets a call that will not be recorded.
    pub fn abandon(&mut self, id: u64, now: Instant) {
        let _ = self.end(id, now);
    }

    /// Which GPUs each model's runner is on, from the newest sample.
    pub fn set_model_gpus(&mut self, model_gpus: HashMap<String, Vec<u32>>) {
        self.model_gpus = model_gpus;
    }

    /// The readings taken now: each channel's energy since its last reading is shared
    /// among the calls that ran in between.
    pub fn reading(&mut self, reading: &EnergyReading, now: Instant) {
        self.missing.clone_from(&reading.missing);
        // A channel that is no longer read (NVML failing now, a GPU gone) must not go on
        // pricing calls at its last power.
        self.channels
            .retain(|c, _| reading.channels.iter().any(|r| r.channel == *c));
        for r in &reading.channels {
            let method = match (&r.channel, r.meter) {
                (Channel::Cpu(_), _) => Method::CpuRapl,
                (Channel::Gpu(_), Meter::Counter { .. }) => Method::GpuCounter,
                (Channel::Gpu(_), Meter::Power { .. }) => Method::GpuPower,
            };
            let state = self
                .channels
                .entry(r.channel.clone())
                .or_insert_with(|| ChannelState {
                    method,
                    last_at: None,
                    last_counter: None,
                    wraps_at: None,
                    power_w: None,
                    clock: 0.0,
                    clock_at: Some(now),
                    running: 0,
                });
            state.method = method;
            state.advance(now);
            let power = match r.meter {
                Meter::Power { watts } => Some(watts),
                Meter::Counter { joules, wraps_at } => {
                    state.wraps_at = wraps_at;
                    let power = match (state.last_at, state.last_counter) {
                        (Some(at), Some(before)) => {
                            let dt = now.saturating_duration_since(at).as_secs_f64();
                            // A reset: the interval is priced at the power before it.
                            counter_delta(before, joules, wraps_at)
                                .filter(|_| dt > 0.0)
                                .map(|d| d / dt)
                                .or(state.power_w)
                        }
                        _ => None,
                    };
                    state.last_counter = Some(joules);
                    power
                }
            };
            state.last_at = Some(now);
            if let Some(power) = power.filter(|p| p.is_finite() && *p >= 0.0) {
                let clock = state.clock;
                for share in self.calls.values_mut().flatten() {
                    if share.channel == r.channel {
                        share.joules += power * (clock - share.settled_clock);
                        share.settled_clock = clock;
                        share.priced = true;
                    }
                }
                state.power_w = Some(power);
            } else {
                // The interval cannot be priced (first reading): what was earned so far
                // is dropped rather than priced at a power from later.
                let clock = state.clock;
                for share in self.calls.values_mut().flatten() {
                    if share.channel == r.channel {
                        share.settled_clock = clock;
                    }
                }
            }
        }
    }

    /// Why energy is missing, in words (empty when every part is read).
    pub fn missing(&self) -> Vec<String> {
        self.missing.clone()
    }

    /// The channels read, with their last power in W.
    pub fn channels(&self) -> Vec<(Channel, Option<f64>)> {
        let mut out: Vec<(Channel, Option<f64>)> = self
            .channels
            .iter()
            .map(|(c, s)| (c.clone(), s.power_w))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Where the kernel's powercap zones live.
pub const POWERCAP_DIR: &str = "/sys/class/powercap";

/// One RAPL package zone's counter.
#[derive(Debug, Clone, PartialEq)]
pub struct RaplZone {
    /// The zone's directory name, e.g. `intel-rapl:0`.
    pub zone: String,
    /// `energy_uj` in joules.
    pub joules: f64,
    /// `max_energy_range_uj` in joules, where the counter wraps.
    pub wraps_at: Option<f64>,
}

/// Reads the CPU packages' RAPL counters under `dir` (top-level zones only: a package's
/// sub-zones, core and uncore, are part of it). Errors say why in words.
pub fn read_rapl(dir: &Path) -> Result<Vec<RaplZone>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "CPU energy: {} cannot be read ({e}); no RAPL here",
            dir.display()
        )
    })?;
    let mut zones: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                (n.starts_with("intel-rapl:") || n.starts_with("amd-rapl:"))
                    && n.matches(':').count() == 1
            })
        })
        .collect();
    zones.sort();
    if zones.is_empty() {
        return Err(format!(
            "CPU energy: no RAPL package zone under {} (not an Intel or AMD CPU with RAPL, \
             or the intel_rapl module is not loaded)",
            dir.display()
        ));
    }
    let mut out = Vec::new();
    for zone in zones {
        let name = zone
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let energy = zone.join("energy_uj");
        let uj: f64 = std::fs::read_to_string(&energy)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    format!(
                        "CPU energy: {} is readable by root only (run as root, or grant read \
                         access to it)",
                        energy.display()
                    )
                } else {
                    format!("CPU energy: {} cannot be read ({e})", energy.display())
                }
            })?
            .trim()
            .parse()
            .map_err(|e| format!("CPU energy: {} is not a number ({e})", energy.display()))?;
        let range: Option<f64> = std::fs::read_to_string(zone.join("max_energy_range_uj"))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        out.push(RaplZone {
            zone: name,
            joules: uj / 1e6,
            wraps_at: range.map(|r| r / 1e6),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn gpu_counter(joules: f64) -> EnergyReading {
        EnergyReading {
            channels: vec![ChannelReading {
                channel: Channel::Gpu(0),
                meter: Meter::Counter {
                    joules,
                    wraps_at: None,
                },
            }],
            missing: Vec::new(),
        }
    }

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-6)
    }

    #[test]
    fn two_overlapping_calls_share_the_energy_of_the_overlap() {
        let t0 = Instant::now();
        let mut ledger = EnergyLedger::default();
        ledger.reading(&gpu_counter(1000.0), t0);
        // A runs 0..3 s, B runs 1.5..4 s; the GPU draws 100 W, then 200 W, 200 W, 100 W.
        let a = ledger.begin("m:latest", t0);
        ledger.reading(&gpu_counter(1100.0), secs(t0, 1.0));
        let b = ledger.begin("m:latest", secs(t0, 1.5));
        ledger.reading(&gpu_counter(1300.0), secs(t0, 2.0));
        ledger.reading(&gpu_counter(1500.0), secs(t0, 3.0));
        let ea = ledger.end(a, secs(t0, 3.0));
        ledger.reading(&gpu_counter(1600.0), secs(t0, 4.0));
        let eb = ledger.end(b, secs(t0, 4.0));
        // A: 100 J alone, then [1, 1.5) alone at 200 W = 100 J, [1.5, 2) half of 100 J,
        // [2, 3) half of 200 J: 100 + 100 + 50 + 100 = 350 J.
        assert!(close(ea.joules, 350.0), "{ea:?}");
        // B: 50 + 100 + 100 (alone over [3, 4)) = 250 J.
        assert!(close(eb.joules, 250.0), "{eb:?}");
        assert_eq!(ea.source.as_deref(), Some("gpu_counter"));
        // Every joule spent while a call ran went to one: 600 J from 1000 to 1600.
        assert!(close(
            Some(ea.joules.unwrap_or(0.0) + eb.joules.unwrap_or(0.0)),
            600.0
        ));
    }

    #[test]
    fn the_tail_after_the_last_reading_is_priced_at_the_last_power() {
        let t0 = Instant::now();
        let mut ledger = EnergyLedger::default();
        ledger.reading(&gpu_counter(0.0), t0);
        let a = ledger.begin("m", secs(t0, 0.5));
        ledger.reading(&gpu_counter(300.0), secs(t0, 1.0));
        let e = ledger.end(a, secs(t0, 1.25));
        // 0.5 s at 300 W, then 0.25 s at the same power.
        assert!(close(e.joules, 225.0), "{e:?}");
    }

    #[test]
    fn a_wrapping_counter_keeps_counting_and_a_reset_is_priced_at_the_power_before() {
        let t0 = Instant::now();
        let rapl = |joules: f64| EnergyReading {
            channels: vec![ChannelReading {
                channel: Channel::Cpu("intel-rapl:0".into()),
                meter: Meter::Counter {
                    joules,
                    wraps_at: Some(1000.0),
                },
            }],
            missing: Vec::new(),
        };
        let mut ledger = EnergyLedger::default();
        ledger.reading(&rapl(900.0), t0);
        let a = ledger.begin("m", t0);
        ledger.reading(&rapl(40.0), secs(t0, 1.0)); // wrapped: 140 J
        let e = ledger.end(a, secs(t0, 1.0));
        assert!(close(e.joules, 140.0), "{e:?}");
        assert_eq!(e.source.as_deref(), Some("cpu_rapl"));

        // A GPU counter that goes back (driver reloaded) does not wrap: the interval is
        // priced at the power before it, never negative and never the whole counter.
        let mut ledger = EnergyLedger::default();
        ledger.reading(&gpu_counter(50_000.0), t0);
        let b = ledger.begin("m", t0);
        ledger.reading(&gpu_counter(50_100.0), secs(t0, 1.0)); // 100 W
        ledger.reading(&gpu_counter(20.0), secs(t0, 2.0)); // reset
        ledger.reading(&gpu_counter(120.0), secs(t0, 3.0)); // 100 W again
        let e = ledger.end(b, secs(t0, 3.0));
        assert!(close(e.joules, 300.0), "{e:?}");
    }

    #[test]
    fn no_channel_gives_null_with_the_reason_never_zero() {
        let t0 = Instant::now();
        let mut ledger = EnergyLedger::default();
        ledger.reading(
            &EnergyReading {
                channels: Vec::new(),
                missing: vec![
                    "GPU energy: NVML library not found".into(),
                    "CPU energy: /sys/class/powercap/intel-rapl:0/energy_uj is readable by root only".into(),
                ],
            },
            t0,
        );
        let a = ledger.begin("m", t0);
        let e = ledger.end(a, secs(t0, 2.0));
        assert_eq!(e.joules, None);
        assert_eq!(e.source, None);
        let reason = e.reason.expect("a reason");
        assert!(
            reason.contains("NVML library not found") && reason.contains("root only"),
            "{reason}"
        );
    }

    #[test]
    fn power_only_gpus_use_power_times_time_and_calls_stay_on_their_gpus() {
        let t0 = Instant::now();
        let power = |w0: f64, w1: f64| EnergyReading {
            channels: vec![
                ChannelReading {
                    channel: Channel::Gpu(0),
                    meter: Meter::Power { watts: w0 },
                },
                ChannelReading {
                    channel: Channel::Gpu(1),
                    meter: Meter::Power { watts: w1 },
                },
            ],
            missing: Vec::new(),
        };
        let mut ledger = EnergyLedger::default();
        ledger.set_model_gpus(HashMap::from([
            ("small:latest".to_owned(), vec![0]),
            ("big:latest".to_owned(), vec![0, 1]),
        ]));
        ledger.reading(&power(50.0, 50.0), t0);
        let small = ledger.begin("small:latest", t0);
        let big = ledger.begin("big:latest", t0);
        ledger.reading(&power(200.0, 300.0), secs(t0, 1.0));
        let es = ledger.end(small, secs(t0, 1.0));
        let eb = ledger.end(big, secs(t0, 1.0));
        // GPU 0's 200 J shared by both; GPU 1's 300 J is big's alone.
        assert!(close(es.joules, 100.0), "{es:?}");
        assert!(close(eb.joules, 400.0), "{eb:?}");
        assert_eq!(eb.source.as_deref(), Some("gpu_power"));
    }

    #[test]
    fn rapl_is_read_from_package_zones_and_unreadable_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read_rapl(&dir.path().join("nope")).is_err());
        let err = read_rapl(dir.path()).unwrap_err();
        assert!(err.contains("no RAPL package zone"), "{err}");
        for (zone, uj) in [("intel-rapl:0", "123456789"), ("intel-rapl:0:0", "5")] {
            let z = dir.path().join(zone);
            std::fs::create_dir(&z).expect("mkdir");
            std::fs::write(z.join("energy_uj"), uj).expect("write");
            std::fs::write(z.join("max_energy_range_uj"), "262143328850").expect("write");
        }
        let zones = read_rapl(dir.path()).expect("reads");
        assert_eq!(zones.len(), 1, "sub-zones are part of their package");
        assert_eq!(zones[0].zone, "intel-rapl:0");
        assert!((zones[0].joules - 123.456789).abs() < 1e-9);
        assert!(
            zones[0]
                .wraps_at
                .is_some_and(|w| (w - 262_143.328_85).abs() < 1e-6)
        );
    }
}
