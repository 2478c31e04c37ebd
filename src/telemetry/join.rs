//! The pure half of a tick: `/api/ps`, the processes found and the GPU reading joined into
//! one picture (which runner serves which model, with its RSS and GPU memory), and the
//! snapshot parts built from it. No I/O: [`super::sampler`] gathers the inputs.

use std::collections::HashMap;

use super::gpu::{BYTES_PER_MIB, GpuReading};
use super::model_key;
use super::ollama::{PsModel, TagModel};
use super::process::{ProcInfo, Role};
use super::samples::ModelSample;
use super::snapshot::{
    GpuProcessSnapshot, GpuSnapshot, LoadedModel, ProcessesSnapshot, RunnerProcess, ServerProcess,
};

/// A process of Ollama's, as the blocking half of a tick found it.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) proc: ProcInfo,
    pub(crate) role: Role,
}

pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / BYTES_PER_MIB
}

pub(super) fn ps_name(m: &PsModel) -> &str {
    if m.name.is_empty() { &m.model } else { &m.name }
}

pub(super) fn tag_name(t: &TagModel) -> &str {
    if t.name.is_empty() { &t.model } else { &t.name }
}

/// The three sources joined.
#[derive(Debug, Default)]
pub(crate) struct Joined {
    pub(crate) server_rss_bytes: Option<u64>,
    pub(crate) models: Vec<ModelSample>,
    /// Runner pid → (model key, model name) for every runner whose blob is mapped.
    pub(crate) runner_models: HashMap<u32, (String, String)>,
    pub(crate) notes: Vec<String>,
}

/// Whether a runner's `--model` path is the blob `/api/show` named: the same path, or
/// the same `sha256-<hex>` file when the two see the models directory at different
/// mount points.
pub(super) fn same_blob(runner_path: &str, from_path: &str) -> bool {
    if runner_path == from_path {
        return true;
    }
    let file = |p: &str| p.rsplit(['/', '\\']).next().map(str::to_owned);
    let a = file(runner_path);
    a.as_deref().is_some_and(|f| f.starts_with("sha256")) && a == file(from_path)
}

/// Joins `/api/ps`, the processes found and the GPU reading: each loaded model gets its
/// runner (through the blob mapping), the runner's RSS and its NVML memory.
pub(crate) fn join(
    ps: &Result<Vec<PsModel>, String>,
    found: &Result<Vec<Found>, String>,
    gpu: &Result<GpuReading, String>,
    blobs: &[(String, String, String)],
) -> Joined {
    let mut joined = Joined::default();
    let empty = Vec::new();
    let found = found.as_ref().unwrap_or(&empty);
    let servers: Vec<&Found> = found.iter().filter(|f| f.role == Role::Server).collect();
    if !servers.is_empty() {
        joined.server_rss_bytes = Some(servers.iter().map(|f| f.proc.rss_bytes).sum());
    }
    let gpu = gpu.as_ref().ok();
    let mut runners: Vec<(&Found, Option<(String, String)>)> = Vec::new();
    for f in found {
        if let Role::Runner { model_path } = &f.role {
            let model = blobs
                .iter()
                .find(|(path, _, _)| same_blob(model_path, path))
                .map(|(_, key, name)| (key.clone(), name.clone()));
            if let Some(m) = &model {
                joined.runner_models.insert(f.proc.pid, m.clone());
            } else {
                joined.notes.push(format!(
                    "runner pid {} serves {model_path}, which no loaded model's /api/show names",
                    f.proc.pid
                ));
            }
            runners.push((f, model));
        }
    }
    let runner_for = |key: &str| {
        runners
            .iter()
            .find(|(_, m)| m.as_ref().is_some_and(|(k, _)| k == key))
            .map(|(f, _)| *f)
    };
    let model_sample = |key: String, name: String, runner: Option<&Found>| ModelSample {
        key,
        name,
        runner_pid: runner.map(|r| r.proc.pid),
        runner_rss_bytes: runner.map(|r| r.proc.rss_bytes),
        gpu_memory_bytes: runner.and_then(|r| gpu.and_then(|g| g.process_bytes(r.proc.pid))),
        ..ModelSample::default()
    };
    if let Ok(models) = ps {
        for m in models {
            let key = model_key(ps_name(m));
            let runner = runner_for(&key);
            if runner.is_none() && !found.is_empty() {
                joined.notes.push(format!(
                    "{} is loaded but no runner serving its blob is visible",
                    ps_name(m)
                ));
            }
            joined.models.push(ModelSample {
                size_bytes: m.size,
                size_vram_bytes: m.size_vram,
                context_length: m.context_length,
                ..model_sample(key, ps_name(m).to_owned(), runner)
            });
        }
    } else {
        // Without /api/ps, runners whose blob was mapped earlier still say which model
        // they serve: their RSS and GPU memory stay known.
        for (f, model) in &runners {
            if let Some((key, name)) = model
                && !joined.models.iter().any(|m| m.key == *key)
            {
                joined
                    .models
                    .push(model_sample(key.clone(), name.clone(), Some(f)));
            }
        }
    }
    if let Some(g) = gpu {
        let gpu_pids = g.pids();
        if !runners.is_empty()
            && !gpu_pids.is_empty()
            && !runners.iter().any(|(f, _)| gpu_pids.contains(&f.proc.pid))
        {
            joined.notes.push(format!(
                "NVML lists GPU processes {gpu_pids:?}, none of which is a runner seen here: \
                 NVML reports host PIDs, so ollameter may be in another PID namespace"
            ));
        }
    }
    joined
}

pub(super) fn gpu_snapshots(
    gpu: &Result<GpuReading, String>,
    runner_models: &HashMap<u32, (String, String)>,
) -> Vec<GpuSnapshot> {
    let Ok(reading) = gpu else {
        return Vec::new();
    };
    reading
        .devices
        .iter()
        .map(|d| GpuSnapshot {
            index: d.index,
            name: d.name.clone(),
            memory_total_mb: mib(d.memory_total_bytes),
            memory_used_mb: mib(d.memory_used_bytes),
            memory_free_mb: mib(d.memory_free_bytes),
            utilization_gpu_percent: d.utilization_gpu_percent,
            utilization_memory_percent: d.utilization_memory_percent,
            processes: d
                .processes
                .iter()
                .map(|p| GpuProcessSnapshot {
                    pid: p.pid,
                    kind: p.kind,
                    used_memory_mb: p.used_memory_bytes.map(mib),
                    model: runner_models.get(&p.pid).map(|(_, name)| name.clone()),
                })
                .collect(),
        })
        .collect()
}

pub(super) fn loaded_models(
    ps: &Result<Vec<PsModel>, String>,
    joined: &Joined,
) -> Vec<LoadedModel> {
    let Ok(models) = ps else {
        return Vec::new();
    };
    models
        .iter()
        .map(|m| {
            let sample = joined
                .models
                .iter()
                .find(|s| s.key == model_key(ps_name(m)));
            LoadedModel {
                name: ps_name(m).to_owned(),
                size_mb: m.size.map(mib),
                vram_mb: m.size_vram.map(mib),
                context_length: m.context_length,
                expires_at: m.expires_at.clone(),
                runner_pid: sample.and_then(|s| s.runner_pid),
                runner_rss_mb: sample.and_then(|s| s.runner_rss_bytes).map(mib),
                gpu_memory_mb: sample.and_then(|s| s.gpu_memory_bytes).map(mib),
            }
        })
        .collect()
}

pub(super) fn processes_snapshot(
    found: &Result<Vec<Found>, String>,
    joined: &Joined,
    gpu: &Result<GpuReading, String>,
) -> ProcessesSnapshot {
    let Ok(found) = found else {
        return ProcessesSnapshot::default();
    };
    let mut snapshot = ProcessesSnapshot::default();
    for f in found {
        match &f.role {
            Role::Server => snapshot.servers.push(ServerProcess {
                pid: f.proc.pid,
                name: f.proc.name.clone(),
                rss_mb: mib(f.proc.rss_bytes),
            }),
            Role::Runner { model_path } => snapshot.runners.push(RunnerProcess {
                pid: f.proc.pid,
                name: f.proc.name.clone(),
                model_path: model_path.clone(),
                model: joined
                    .runner_models
                    .get(&f.proc.pid)
                    .map(|(_, name)| name.clone()),
                rss_mb: mib(f.proc.rss_bytes),
                gpu_memory_mb: gpu
                    .as_ref()
                    .ok()
                    .and_then(|g| g.process_bytes(f.proc.pid))
                    .map(mib),
            }),
        }
    }
    snapshot.servers.sort_by_key(|s| s.pid);
    snapshot.runners.sort_by_key(|r| r.pid);
    snapshot
}
