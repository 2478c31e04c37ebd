//! The tick when the upstream is an OpenAI-compatible server (kind `openai`: llama.cpp's
//! `llama-server`, vLLM, SGLang, LM Studio). Such a server has no `/api/ps`: its models come
//! from `/v1/models`, llama.cpp's `/props` adds the weights path, context size and slots,
//! and the processes serving it are found by the socket listening on the upstream's port
//! ([`super::super::listener`]), or named by `telemetry.server_pids` / `process_names`.
//! Their RSS and NVML memory are charged to the model(s) the server lists, so records carry
//! `ollama_rss_mb` and the GPU figures as they do for Ollama.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::PoisonError;

use chrono::Utc;
use tokio::time::Instant;

use super::super::gpu::GpuReading;
use super::super::join::{gpu_snapshots, mib};
use super::super::listener::{self, Serving};
use super::super::openai::{OpenAiApi, ServedModel, ServerProps};
use super::super::process::{Matchers, ProcInfo, ProcessSource, model_arg};
use super::super::samples::{ModelSample, Sample};
use super::super::snapshot::{
    LoadedModel, ProcessesSnapshot, RunnerProcess, SourceState, SourcesState, SystemSnapshot,
    UpstreamServer,
};
use super::super::{InstalledModel, model_key};
use super::{DISCOVERY_INTERVAL, Sampler, guarded};
use crate::upstream::UpstreamKind;

/// Why Ollama's own routes are not asked, in the words `/system` gives.
pub const NOT_OLLAMA: &str = "the upstream is an OpenAI-compatible server (kind openai): it \
     has no /api/ps or /api/tags; its models come from /v1/models (openai_api)";

/// Processes that hold a port for another: when one of them listens on the upstream's port,
/// its memory is not the model's.
const FORWARDERS: &[&str] = &[
    "docker-proxy",
    "rootlesskit",
    "rootlessport",
    "slirp4netns",
    "pasta",
    "kubectl",
    "ssh",
    "socat",
    "nginx",
    "haproxy",
    "envoy",
    "caddy",
    "traefik",
];

/// The processes serving the upstream, found by its socket or named by configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    /// The socket's address; `None` when configuration named the processes.
    listen: Option<SocketAddr>,
    holders: Vec<u32>,
    descendants: Vec<u32>,
}

impl Server {
    fn pids(&self) -> Vec<u32> {
        let mut all: Vec<u32> = self
            .holders
            .iter()
            .chain(&self.descendants)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

impl From<Serving> for Server {
    fn from(s: Serving) -> Server {
        Server {
            listen: Some(s.listen),
            holders: s.holders,
            descendants: s.descendants,
        }
    }
}

/// What the OpenAI-compatible tick keeps between ticks.
pub(crate) struct OpenAiSide {
    api: Box<dyn OpenAiApi>,
    upstream: String,
    /// Where `/proc` is (tests build their own).
    pub(crate) proc_root: PathBuf,
    /// The last good `/v1/models` answer: a server busy loading still holds its memory.
    models: Vec<ServedModel>,
    props: Option<ServerProps>,
    props_error: Option<String>,
    props_at: Option<Instant>,
    server: Result<Server, String>,
    discovered_at: Option<Instant>,
    rediscover: bool,
}

impl OpenAiSide {
    pub(crate) fn new(api: Box<dyn OpenAiApi>, upstream: &str) -> OpenAiSide {
        OpenAiSide {
            api,
            upstream: upstream.to_owned(),
            proc_root: PathBuf::from("/proc"),
            models: Vec::new(),
            props: None,
            props_error: None,
            props_at: None,
            server: Err("not looked for yet".to_owned()),
            discovered_at: None,
            rediscover: false,
        }
    }
}

/// The addresses the upstream URL names (a host name resolved).
async fn resolve(upstream: &str) -> Result<Vec<SocketAddr>, String> {
    let url = reqwest::Url::parse(upstream)
        .map_err(|e| format!("the upstream URL {upstream:?} does not parse: {e}"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("the upstream URL {upstream:?} has no port"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("the upstream URL {upstream:?} has no host"))?;
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    tokio::net::lookup_host((host, port))
        .await
        .map(Iterator::collect)
        .map_err(|e| format!("cannot resolve the upstream's host {host}: {e}"))
}

/// The configured processes (`telemetry.server_pids` / `process_names`).
fn configured(procs: &mut dyn ProcessSource, matchers: &Matchers) -> Result<Server, String> {
    let holders: Vec<u32> = procs
        .all()?
        .iter()
        .filter(|p| matchers.matches(p))
        .map(|p| p.pid)
        .collect();
    if holders.is_empty() {
        return Err(format!(
            "no visible process matches telemetry.server_pids {:?} / process_names {:?}",
            matchers.pids, matchers.names
        ));
    }
    Ok(Server {
        listen: None,
        holders,
        descendants: Vec::new(),
    })
}

/// A listener that only forwards the port (Docker's proxy, an SSH tunnel, a reverse
/// proxy): the reason its memory is not the model's.
fn forwarder(server: &Server, table: &[ProcInfo]) -> Option<String> {
    let holder = table.iter().find(|p| server.holders.contains(&p.pid))?;
    let argv0 = holder
        .cmd
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a));
    let name = [Some(holder.name.as_str()), argv0]
        .into_iter()
        .flatten()
        .find(|n| FORWARDERS.contains(n))?;
    Some(format!(
        "the upstream's port is held by {name} (pid {}), which forwards it to the server; the \
         server's own process is not visible here: share its PID namespace or name it in \
         telemetry.server_pids",
        holder.pid
    ))
}

impl Sampler {
    /// Whether the upstream is known to be OpenAI-compatible (configured or detected).
    pub(super) fn upstream_is_openai(&self) -> bool {
        self.shared
            .kind
            .get()
            .is_some_and(|k| k.get() == Some(UpstreamKind::OpenAi))
    }

    /// One tick against an OpenAI-compatible upstream.
    pub(super) async fn tick_openai(&mut self, now: Instant) {
        let started = std::time::Instant::now();
        self.ticks += 1;
        let models = self.openai.api.models().await;
        if let Ok(list) = &models {
            self.openai.models = list.clone();
        }
        if models.is_ok()
            && self
                .openai
                .props_at
                .is_none_or(|at| now.duration_since(at) >= DISCOVERY_INTERVAL)
        {
            self.openai.props_at = Some(now);
            match self.openai.api.props().await {
                Ok(props) => {
                    self.openai.props = props;
                    self.openai.props_error = None;
                }
                Err(e) => self.openai.props_error = Some(e),
            }
        }
        let (table, gpu) = self.read_server(now).await;
        let at = Utc::now();
        self.publish_openai(&models, &table, &gpu, at, started.elapsed());
    }

    /// Finds the serving processes (now and then, or when one exited) and reads their
    /// memory and the GPUs on a blocking thread.
    async fn read_server(
        &mut self,
        now: Instant,
    ) -> (Result<Vec<ProcInfo>, String>, Result<GpuReading, String>) {
        let discover = self.openai.rediscover
            || self
                .openai
                .discovered_at
                .is_none_or(|at| now.duration_since(at) >= DISCOVERY_INTERVAL);
        let targets = if discover && self.matchers.is_empty() {
            Some(resolve(&self.openai.upstream).await)
        } else {
            None
        };
        let known = self.openai.server.clone();
        let procs = std::sync::Arc::clone(&self.procs);
        let gpu = std::sync::Arc::clone(&self.gpu);
        let matchers = self.matchers.clone();
        let root = self.openai.proc_root.clone();
        let blocking = tokio::task::spawn_blocking(move || {
            let mut source = procs.lock().unwrap_or_else(PoisonError::into_inner);
            let server = if !discover {
                known
            } else if let Some(targets) = targets {
                targets.and_then(|t| {
                    guarded("socket lookup", || {
                        listener::find(&root, &t).map(Server::from)
                    })
                })
            } else {
                guarded("process source", || configured(&mut **source, &matchers))
            };
            let table = server
                .clone()
                .and_then(|s| guarded("process source", || source.some(&s.pids())));
            drop(source);
            let reading = guarded("GPU backend", || {
                gpu.lock().unwrap_or_else(PoisonError::into_inner).sample()
            });
            (server, table, reading)
        });
        let (server, table, reading) = match blocking.await {
            Ok(found) => found,
            Err(e) => {
                let reason = format!("the sampling thread failed: {e}");
                (Err(reason.clone()), Err(reason.clone()), Err(reason))
            }
        };
        if discover {
            self.openai.discovered_at = Some(now);
            self.openai.rediscover = false;
        }
        let server = match (server, &table) {
            (Ok(s), Ok(table)) => match forwarder(&s, table) {
                Some(reason) => Err(reason),
                None => {
                    // A holder gone: the server restarted (maybe as another pid): look again.
                    if s.holders.iter().any(|p| !table.iter().any(|t| t.pid == *p)) {
                        self.openai.rediscover = true;
                    }
                    Ok(s)
                }
            },
            (server, _) => server,
        };
        self.openai.server = server;
        let table = match &self.openai.server {
            Ok(_) => table,
            Err(reason) => Err(reason.clone()),
        };
        (table, reading)
    }

    fn publish_openai(
        &mut self,
        models: &Result<Vec<ServedModel>, String>,
        table: &Result<Vec<ProcInfo>, String>,
        gpu: &Result<GpuReading, String>,
        at: chrono::DateTime<Utc>,
        duration: std::time::Duration,
    ) {
        let side = &self.openai;
        let server = side.server.as_ref().ok();
        let pids = server.map(Server::pids).unwrap_or_default();
        let procs: Vec<&ProcInfo> = table
            .as_ref()
            .map(|t| t.iter().filter(|p| pids.contains(&p.pid)).collect())
            .unwrap_or_default();
        let rss_bytes = (!procs.is_empty()).then(|| procs.iter().map(|p| p.rss_bytes).sum());
        let gpu_bytes = gpu.as_ref().ok().and_then(|g| {
            let held: Vec<u64> = pids.iter().filter_map(|p| g.process_bytes(*p)).collect();
            (!held.is_empty()).then(|| held.iter().sum::<u64>())
        });
        let props = side.props.as_ref();
        let context = |m: &ServedModel| {
            props
                .and_then(|p| p.n_ctx)
                .or(m.context_length)
                .or(m.max_model_len)
        };
        let served = &side.models;
        let runner_pid = server.and_then(|s| s.holders.first().copied());
        let model_samples: Vec<ModelSample> = served
            .iter()
            .map(|m| ModelSample {
                key: model_key(&m.id),
                name: m.id.clone(),
                context_length: context(m),
                runner_pid,
                runner_rss_bytes: rss_bytes,
                gpu_memory_bytes: gpu_bytes,
                ..ModelSample::default()
            })
            .collect();
        let one_model = match served.as_slice() {
            [only] => Some(only.id.clone()),
            _ => None,
        };

        let mut notes = Vec::new();
        if let Err(reason) = &side.server {
            notes.push(format!(
                "the OpenAI-compatible server's memory cannot be attributed to its models: \
                 {reason}"
            ));
        }
        if served.len() > 1 && rss_bytes.is_some() {
            notes.push(format!(
                "the server lists {} models from one process: each is charged that \
                 process's whole memory",
                served.len()
            ));
        }
        if let Some(e) = &side.props_error {
            notes.push(format!("llama.cpp's /props: {e}"));
        }
        if let Ok(g) = gpu {
            let on_gpu = g.pids();
            if !pids.is_empty() && !on_gpu.is_empty() && gpu_bytes.is_none() {
                notes.push(format!(
                    "NVML lists GPU processes {on_gpu:?}, none of which serves the upstream: \
                     the server may run on the CPU, or ollameter is in another PID namespace \
                     (NVML reports host PIDs)"
                ));
            }
        }

        let model_path = |p: &ProcInfo| {
            props
                .and_then(|x| x.model_path.clone())
                .or_else(|| model_arg(&p.cmd).map(str::to_owned))
                .unwrap_or_default()
        };
        let mut processes = ProcessesSnapshot::default();
        for p in &procs {
            processes.runners.push(RunnerProcess {
                pid: p.pid,
                name: p.name.clone(),
                model_path: model_path(p),
                model: one_model.clone(),
                rss_mb: mib(p.rss_bytes),
                gpu_memory_mb: gpu
                    .as_ref()
                    .ok()
                    .and_then(|g| g.process_bytes(p.pid))
                    .map(mib),
            });
        }
        processes.runners.sort_by_key(|r| r.pid);
        let runner_models = one_model
            .as_ref()
            .map(|id| {
                pids.iter()
                    .map(|p| (*p, (model_key(id), id.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let loaded_models = model_samples
            .iter()
            .map(|m| LoadedModel {
                name: m.name.clone(),
                size_mb: None,
                vram_mb: None,
                context_length: m.context_length,
                expires_at: None,
                runner_pid: m.runner_pid,
                runner_rss_mb: m.runner_rss_bytes.map(mib),
                gpu_memory_mb: m.gpu_memory_bytes.map(mib),
            })
            .collect();
        let upstream_server = UpstreamServer {
            listen: server.and_then(|s| s.listen).map(|a| a.to_string()),
            pids: server.map(|s| s.holders.clone()).unwrap_or_default(),
            child_pids: server.map(|s| s.descendants.clone()).unwrap_or_default(),
            rss_mb: rss_bytes.map(mib),
            gpu_memory_mb: gpu_bytes.map(mib),
            models: served.clone(),
            props: side.props.clone(),
        };
        let sources = SourcesState {
            processes: match table {
                Ok(t) if !t.is_empty() => SourceState::Ok,
                Ok(_) => SourceState::Unavailable(
                    "the processes serving the upstream exited; looking again".into(),
                ),
                Err(reason) => SourceState::Unavailable(reason.clone()),
            },
            nvml: match gpu {
                Ok(_) => SourceState::Ok,
                Err(reason) => SourceState::Unavailable(reason.clone()),
            },
            ollama_api: SourceState::Disabled(NOT_OLLAMA.into()),
            ollama_tags: SourceState::Disabled(NOT_OLLAMA.into()),
            openai_api: match models {
                Ok(_) => SourceState::Ok,
                Err(reason) => SourceState::Unavailable(reason.clone()),
            },
        };
        let installed = models.as_ref().ok().map(|list| {
            list.iter()
                .map(|m| InstalledModel {
                    name: m.id.clone(),
                    capabilities: Vec::new(),
                })
                .collect()
        });
        self.observe_needs(&model_samples);
        self.log_changes(&sources);
        let needs = self.needs();
        let snapshot = SystemSnapshot {
            taken_at: Some(at),
            gpus: gpu_snapshots(gpu, &runner_models),
            free_vram_mb: gpu.as_ref().ok().and_then(GpuReading::free_bytes).map(mib),
            loaded_models,
            processes,
            vram_needs: needs.iter().map(|(_, n)| n.clone()).collect(),
            notes,
            upstream_server: Some(upstream_server),
            sampler: self.sampler_state(Some(at), Some(duration), sources),
        };
        let sample = Sample {
            seq: 0,
            at: Some(at),
            server_rss_bytes: None,
            ps_ok: models.is_ok(),
            serves_any_name: one_model.is_some(),
            models: model_samples,
            gpu_free_bytes: gpu.as_ref().ok().and_then(GpuReading::free_bytes),
            gpu_total_bytes: gpu.as_ref().ok().and_then(GpuReading::total_bytes),
        };
        self.commit(sample, snapshot, needs, installed);
    }
}

#[cfg(test)]
mod tests;
