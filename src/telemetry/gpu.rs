//! The GPUs, through the [`GpuBackend`] trait: each device's memory and utilisation and
//! the GPU memory each process holds. The real backend is [`NvmlBackend`] (NVIDIA's
//! management library, loaded at run time); [`FakeGpu`] stands in for tests. A machine
//! without NVIDIA's library, driver or permission is a normal case: the backend answers
//! with the reason in words and the sampler carries on.

use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use serde::Serialize;

/// Bytes in one MiB: every `_mb` value in telemetry is MiB.
pub const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;

/// How long after a failed NVML start the backend tries again: a driver can be loaded
/// after ollameter starts, but `dlopen` on every tick of a GPU-less machine is waste.
pub const NVML_RETRY: Duration = Duration::from_secs(60);

/// One reading of every device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuReading {
    /// The devices, in NVML's index order.
    pub devices: Vec<DeviceReading>,
}

/// One device at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReading {
    /// NVML's device index.
    pub index: u32,
    /// The product name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Installed memory.
    pub memory_total_bytes: u64,
    /// Allocated memory (every process, plus the driver's own reservation).
    pub memory_used_bytes: u64,
    /// Unallocated memory: what a model could still load into.
    pub memory_free_bytes: u64,
    /// Percent of the last sample period in which a kernel ran; `None` when unsupported.
    pub utilization_gpu_percent: Option<u32>,
    /// Percent of the last sample period in which memory was read or written.
    pub utilization_memory_percent: Option<u32>,
    /// The processes holding memory on this device.
    pub processes: Vec<GpuProcess>,
}

/// Whether NVML listed a process as a compute (CUDA) or graphics user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuProcessKind {
    /// From `running_compute_processes` (CUDA: where llama.cpp runners show up).
    Compute,
    /// From `running_graphics_processes`.
    Graphics,
}

/// One process's use of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuProcess {
    /// The process id as NVML reports it (the host's PID namespace).
    pub pid: u32,
    /// Memory it holds on the device; `None` where the driver does not say (Windows WDDM).
    pub used_memory_bytes: Option<u64>,
    /// Compute or graphics.
    pub kind: GpuProcessKind,
}

impl GpuReading {
    /// Free memory summed over the devices (a model can be split across devices).
    pub fn free_bytes(&self) -> Option<u64> {
        (!self.devices.is_empty()).then(|| self.devices.iter().map(|d| d.memory_free_bytes).sum())
    }

    /// Installed memory summed over the devices.
    pub fn total_bytes(&self) -> Option<u64> {
        (!self.devices.is_empty()).then(|| self.devices.iter().map(|d| d.memory_total_bytes).sum())
    }

    /// The memory `pid` holds, summed over devices. A process listed both as compute and
    /// graphics on one device holds one allocation, so each device counts its largest
    /// entry for the pid. `None` when no device lists the pid.
    pub fn process_bytes(&self, pid: u32) -> Option<u64> {
        let mut total: Option<u64> = None;
        for device in &self.devices {
            let on_device = device
                .processes
                .iter()
                .filter(|p| p.pid == pid)
                .filter_map(|p| p.used_memory_bytes)
                .max();
            if let Some(bytes) = on_device {
                total = Some(total.unwrap_or(0) + bytes);
            }
        }
        total
    }

    /// Every pid any device lists.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .devices
            .iter()
            .flat_map(|d| d.processes.iter().map(|p| p.pid))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

/// Where GPU readings come from. Called on a blocking thread, never on the async runtime.
pub trait GpuBackend: Send {
    /// Reads every device.
    ///
    /// # Errors
    /// Why there is no reading, in words a person can act on (no library, no driver, no
    /// permission, no device).
    fn sample(&mut self) -> Result<GpuReading, String>;

    /// Reads each device's energy: its total energy counter where it has one, else its
    /// power now. Called right after [`GpuBackend::sample`] on the same thread.
    ///
    /// # Errors
    /// Why no device's energy can be read, in words.
    fn energy(&mut self) -> Result<Vec<(u32, super::energy::Meter)>, String> {
        Err("this GPU backend reads no energy".to_owned())
    }
}

/// The reason, in words, that NVML could not start.
pub fn nvml_init_reason(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(e) => {
            format!("NVML library not found (no NVIDIA driver?): {e}")
        }
        NvmlError::LibraryNotFound => "NVML library not found (no NVIDIA driver?)".to_owned(),
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".to_owned(),
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver (in a container: \
                                    run it with the NVIDIA runtime, e.g. --gpus all)"
            .to_owned(),
        NvmlError::FailedToLoadSymbol(e) => {
            format!("the NVML library is too old or broken (missing {e})")
        }
        other => format!("NVML failed to start: {other}"),
    }
}

/// The real GPUs, through NVML. NVML is loaded at the first sample, on the sampler's
/// blocking thread, because starting it can take a second on a GPU without persistence
/// mode and must not delay start-up.
pub struct NvmlBackend {
    nvml: Option<Nvml>,
    failed: Option<(String, Instant)>,
}

impl NvmlBackend {
    /// A backend that loads NVML when first sampled.
    pub fn new() -> NvmlBackend {
        NvmlBackend {
            nvml: None,
            failed: None,
        }
    }

    fn nvml(&mut self) -> Result<&Nvml, String> {
        if self.nvml.is_none() {
            if let Some((reason, at)) = &self.failed
                && at.elapsed() < NVML_RETRY
            {
                return Err(reason.clone());
            }
            match Nvml::init() {
                Ok(nvml) => {
                    self.failed = None;
                    self.nvml = Some(nvml);
                }
                Err(e) => {
                    let reason = nvml_init_reason(&e);
                    self.failed = Some((reason.clone(), Instant::now()));
                    return Err(reason);
                }
            }
        }
        self.nvml
            .as_ref()
            .ok_or_else(|| "NVML is not loaded".to_owned())
    }
}

impl Default for NvmlBackend {
    fn default() -> Self {
        NvmlBackend::new()
    }
}

fn processes(list: Result<Vec<ProcessInfo>, NvmlError>, kind: GpuProcessKind) -> Vec<GpuProcess> {
    // NotSupported on some boards (and under MIG without privileges): no list, not an error.
    list.unwrap_or_default()
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            used_memory_bytes: match p.used_gpu_memory {
                UsedGpuMemory::Used(bytes) => Some(bytes),
                UsedGpuMemory::Unavailable => None,
            },
            kind,
        })
        .collect()
}

impl GpuBackend for NvmlBackend {
    fn sample(&mut self) -> Result<GpuReading, String> {
        let nvml = self.nvml()?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("NVML cannot count devices: {e}"))?;
        if count == 0 {
            return Err("NVML sees no GPU".to_owned());
        }
        let mut devices = Vec::new();
        let mut problems = Vec::new();
        for index in 0..count {
            let device = match nvml.device_by_index(index) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("GPU {index}: {e}"));
                    continue;
                }
            };
            let memory = match device.memory_info() {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!("GPU {index} memory: {e}"));
                    continue;
                }
            };
            let utilization = device.utilization_rates().ok();
            let mut procs = processes(device.running_compute_processes(), GpuProcessKind::Compute);
            procs.extend(processes(
                device.running_graphics_processes(),
                GpuProcessKind::Graphics,
            ));
            devices.push(DeviceReading {
                index,
                name: device.name().unwrap_or_else(|_| format!("GPU {index}")),
                memory_total_bytes: memory.total,
                memory_used_bytes: memory.used,
                memory_free_bytes: memory.free,
                utilization_gpu_percent: utilization.as_ref().map(|u| u.gpu),
                utilization_memory_percent: utilization.as_ref().map(|u| u.memory),
                processes: procs,
            });
        }
        if devices.is_empty() {
            return Err(format!(
                "NVML could not read any GPU: {}",
                problems.join("; ")
            ));
        }
        Ok(GpuReading { devices })
    }

    fn energy(&mut self) -> Result<Vec<(u32, super::energy::Meter)>, String> {
        use super::energy::Meter;
        let nvml = self.nvml()?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("NVML cannot count devices: {e}"))?;
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for index in 0..count {
            let device = match nvml.device_by_index(index) {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("GPU {index}: {e}"));
                    continue;
                }
            };
            // Volta and later count energy since the driver loaded, in mJ; older boards
            // only report power.
            match device.total_energy_consumption() {
                Ok(mj) => out.push((
                    index,
                    Meter::Counter {
                        joules: mj as f64 / 1000.0,
                        wraps_at: None,
                    },
                )),
                Err(counter) => match device.power_usage() {
                    Ok(mw) => out.push((
                        index,
                        Meter::Power {
                            watts: f64::from(mw) / 1000.0,
                        },
                    )),
                    Err(power) => problems.push(format!(
                        "GPU {index}: no energy counter ({counter}) and no power reading ({power})"
                    )),
                },
            }
        }
        if out.is_empty() {
            return Err(if problems.is_empty() {
                "NVML sees no GPU".to_owned()
            } else {
                problems.join("; ")
            });
        }
        Ok(out)
    }
}

/// The test double of the GPU (tests, and the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
mod fake {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    /// A GPU backend whose answer the test sets. Clones share the answer, so a test keeps one
    /// clone to change what the sampler sees next.
    #[derive(Clone)]
    pub struct FakeGpu {
        answer: Arc<Mutex<Result<GpuReading, String>>>,
        energy: Arc<Mutex<EnergyAnswer>>,
    }

    /// What the fake's energy reading answers.
    type EnergyAnswer = Result<Vec<(u32, crate::telemetry::energy::Meter)>, String>;

    /// What a fake GPU without a set energy answer says.
    pub const FAKE_NO_ENERGY: &str = "the fake GPU reads no energy";

    impl FakeGpu {
        /// A backend that answers `reading`.
        pub fn new(reading: GpuReading) -> FakeGpu {
            FakeGpu {
                answer: Arc::new(Mutex::new(Ok(reading))),
                energy: Arc::new(Mutex::new(Err(FAKE_NO_ENERGY.to_owned()))),
            }
        }

        /// A backend with no GPU, for `reason`.
        pub fn unavailable(reason: &str) -> FakeGpu {
            FakeGpu {
                answer: Arc::new(Mutex::new(Err(reason.to_owned()))),
                energy: Arc::new(Mutex::new(Err(reason.to_owned()))),
            }
        }

        /// Changes the answer of every clone.
        pub fn set(&self, answer: Result<GpuReading, String>) {
            *self.answer.lock().unwrap_or_else(PoisonError::into_inner) = answer;
        }

        /// Changes the energy answer of every clone (a fake energy counter).
        pub fn set_energy(
            &self,
            answer: Result<Vec<(u32, crate::telemetry::energy::Meter)>, String>,
        ) {
            *self.energy.lock().unwrap_or_else(PoisonError::into_inner) = answer;
        }
    }

    impl GpuBackend for FakeGpu {
        fn sample(&mut self) -> Result<GpuReading, String> {
            self.answer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        fn energy(&mut self) -> Result<Vec<(u32, crate::telemetry::energy::Meter)>, String> {
            self.energy
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }
}
#[cfg(any(test, feature = "test-support"))]
pub use fake::FakeGpu;

/// Starts NVML through the project's backend and describes what it sees: each device's
/// memory and utilisation and each process's memory, with the process's name where this
/// machine can see it. For a `gpu-check` command on a GPU machine.
pub fn nvml_report() -> String {
    use std::fmt::Write as _;

    use super::process::{ProcessSource, SysinfoProcesses};

    let mut out = String::new();
    let reading = match NvmlBackend::new().sample() {
        Ok(r) => r,
        Err(reason) => return format!("NVML unavailable: {reason}\n"),
    };
    let names: Vec<(u32, String)> = SysinfoProcesses::new()
        .some(&reading.pids())
        .map(|ps| ps.into_iter().map(|p| (p.pid, p.cmd.join(" "))).collect())
        .unwrap_or_default();
    let mib = |b: u64| b as f64 / BYTES_PER_MIB;
    let energy = NvmlBackend::new().energy();
    for d in &reading.devices {
        let pct = |p: Option<u32>| p.map_or("n/a".to_owned(), |p| format!("{p}%"));
        let _ = writeln!(
            out,
            "GPU {} {}: total {:.0} MiB, used {:.0} MiB, free {:.0} MiB, utilisation gpu {} \
             memory {}",
            d.index,
            d.name,
            mib(d.memory_total_bytes),
            mib(d.memory_used_bytes),
            mib(d.memory_free_bytes),
            pct(d.utilization_gpu_percent),
            pct(d.utilization_memory_percent),
        );
        match &energy {
            Ok(meters) => match meters.iter().find(|(i, _)| *i == d.index) {
                Some((_, super::energy::Meter::Counter { joules, .. })) => {
                    let _ = writeln!(
                        out,
                        "  energy counter: {joules:.3} J since the driver loaded (total_energy_consumption)"
                    );
                }
                Some((_, super::energy::Meter::Power { watts })) => {
                    let _ = writeln!(
                        out,
                        "  no energy counter; power now {watts:.1} W (energy is power x time)"
                    );
                }
                None => {
                    let _ = writeln!(out, "  energy: not readable on this device");
                }
            },
            Err(reason) => {
                let _ = writeln!(out, "  energy: {reason}");
            }
        }
        if d.processes.is_empty() {
            let _ = writeln!(out, "  no processes listed");
        }
        for p in &d.processes {
            let used = p
                .used_memory_bytes
                .map_or("n/a".to_owned(), |b| format!("{:.0} MiB", mib(b)));
            let cmd = names
                .iter()
                .find(|(pid, _)| *pid == p.pid)
                .map_or("(not visible from here)", |(_, c)| c.as_str());
            let _ = writeln!(out, "  pid {} {:?} {used}: {cmd}", p.pid, p.kind);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn device(
        index: u32,
        free_mib: u64,
        procs: &[(u32, Option<u64>, GpuProcessKind)],
    ) -> DeviceReading {
        DeviceReading {
            index,
            name: format!("Fake {index}"),
            memory_total_bytes: 80_000 * MIB,
            memory_used_bytes: (80_000 - free_mib) * MIB,
            memory_free_bytes: free_mib * MIB,
            utilization_gpu_percent: Some(50),
            utilization_memory_percent: None,
            processes: procs
                .iter()
                .map(|(pid, mib, kind)| GpuProcess {
                    pid: *pid,
                    used_memory_bytes: mib.map(|m| m * MIB),
                    kind: *kind,
                })
                .collect(),
        }
    }

    #[test]
    fn free_memory_sums_over_devices() {
        let reading = GpuReading {
            devices: vec![device(0, 1000, &[]), device(1, 2500, &[])],
        };
        assert_eq!(reading.free_bytes(), Some(3500 * MIB));
        assert_eq!(reading.total_bytes(), Some(160_000 * MIB));
        assert_eq!(GpuReading::default().free_bytes(), None);
    }

    #[test]
    fn process_memory_sums_devices_and_counts_one_entry_per_device() {
        use GpuProcessKind::{Compute, Graphics};
        let reading = GpuReading {
            devices: vec![
                device(
                    0,
                    0,
                    &[
                        (7, Some(3000), Compute),
                        (7, Some(3000), Graphics),
                        (8, Some(5), Compute),
                    ],
                ),
                device(1, 0, &[(7, Some(1200), Compute), (9, None, Compute)]),
            ],
        };
        assert_eq!(reading.process_bytes(7), Some(4200 * MIB));
        assert_eq!(reading.process_bytes(8), Some(5 * MIB));
        assert_eq!(
            reading.process_bytes(9),
            None,
            "listed without a number is unknown"
        );
        assert_eq!(reading.process_bytes(10), None);
        assert_eq!(reading.pids(), vec![7, 8, 9]);
    }

    #[test]
    fn real_nvml_without_a_gpu_says_why_and_does_not_panic() {
        let mut backend = NvmlBackend::new();
        match backend.sample() {
            // On a GPU machine this test has nothing to prove.
            Ok(reading) => assert!(!reading.devices.is_empty()),
            Err(reason) => {
                assert!(!reason.is_empty());
                // A second sample inside the retry window answers the same, without
                // loading the library again.
                assert_eq!(backend.sample(), Err(reason));
            }
        }
        let report = nvml_report();
        assert!(
            report.starts_with("NVML unavailable: ") || report.starts_with("GPU 0"),
            "{report}"
        );
    }

    #[test]
    fn init_reasons_are_words() {
        assert_eq!(
            nvml_init_reason(&NvmlError::LibraryNotFound),
            "NVML library not found (no NVIDIA driver?)"
        );
        assert!(nvml_init_reason(&NvmlError::NoPermission).contains("permission"));
        assert!(nvml_init_reason(&NvmlError::DriverNotLoaded).contains("driver"));
    }
}
