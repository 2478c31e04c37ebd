//! Scenarios across the sources: fake Ollama, fake GPU and fake or real process tables
//! joined by the sampler, read back through the [`Telemetry`] handle. Ticks are driven by
//! hand with explicit instants; the tests of the running loop wait on its tick counter,
//! never on the clock.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::{Instant, timeout};

use super::gpu::{DeviceReading, GpuProcess, GpuProcessKind, GpuReading};
use super::ollama::{ApiFuture, PsModel, ShowInfo, TagModel};
use super::process::ProcInfo;
use super::sampler::{NO_PROCESS_VISIBLE, SHOW_RETRY, Sampler, TAGS_REFRESH};
use super::*;

const MIB: u64 = 1024 * 1024;
const BLOB_A: &str = "/root/.ollama/models/blobs/sha256-aaaa";
const BLOB_B: &str = "/root/.ollama/models/blobs/sha256-bbbb";
/// A bound on waits for the running sampler: generous, since it only fails a broken test.
const PATIENCE: Duration = Duration::from_secs(60);

fn proc(pid: u32, name: &str, cmd: &[&str], rss_mib: u64) -> ProcInfo {
    ProcInfo {
        pid,
        name: name.into(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        rss_bytes: rss_mib * MIB,
    }
}

fn ps_model(name: &str, size_mib: u64, vram_mib: u64, ctx: u64) -> PsModel {
    PsModel {
        name: name.into(),
        model: name.into(),
        size: Some(size_mib * MIB),
        size_vram: Some(vram_mib * MIB),
        digest: Some(format!("digest-of-{name}")),
        context_length: Some(ctx),
        ..Default::default()
    }
}

fn shows(path: &str) -> ShowInfo {
    ShowInfo {
        from_paths: vec![path.into()],
        ..Default::default()
    }
}

fn device(index: u32, free_mib: u64, procs: &[(u32, u64)]) -> DeviceReading {
    DeviceReading {
        index,
        name: format!("Fake GPU {index}"),
        memory_total_bytes: 24_576 * MIB,
        memory_used_bytes: (24_576 - free_mib) * MIB,
        memory_free_bytes: free_mib * MIB,
        utilization_gpu_percent: Some(30),
        utilization_memory_percent: Some(10),
        processes: procs
            .iter()
            .map(|(pid, mib)| GpuProcess {
                pid: *pid,
                used_memory_bytes: Some(mib * MIB),
                kind: GpuProcessKind::Compute,
            })
            .collect(),
    }
}

/// The usual machine: a server, two runners (new and mid-era forms), a helper without
/// `--model`, and a stranger.
fn machine() -> Vec<ProcInfo> {
    vec![
        proc(100, "ollama", &["/usr/bin/ollama", "serve"], 100),
        proc(
            201,
            "llama-server",
            &[
                "/usr/lib/ollama/llama-server",
                "--model",
                BLOB_A,
                "--port",
                "40001",
            ],
            1000,
        ),
        proc(
            202,
            "ollama",
            &[
                "/usr/bin/ollama",
                "runner",
                "--model",
                BLOB_B,
                "--port",
                "40002",
            ],
            2000,
        ),
        proc(
            203,
            "ollama",
            &["/usr/bin/ollama", "runner", "--port", "40003"],
            50,
        ),
        proc(300, "bash", &["bash"], 5),
    ]
}

struct Rig {
    telemetry: Telemetry,
    sampler: Sampler,
    ollama: FakeOllama,
    gpu: FakeGpu,
    procs: FakeProcesses,
    now: Instant,
}

impl Rig {
    fn new() -> Rig {
        let ollama = FakeOllama::new();
        ollama.set_ps(Ok(vec![
            ps_model("a:latest", 3500, 3000, 4096),
            ps_model("b:7b", 7000, 6000, 8192),
        ]));
        ollama.set_show("a:latest", shows(BLOB_A));
        ollama.set_show("b:7b", shows(BLOB_B));
        let gpu = FakeGpu::new(GpuReading {
            devices: vec![
                device(0, 10_000, &[(201, 3100), (202, 5000), (999, 64)]),
                device(1, 4_000, &[(202, 1000)]),
            ],
        });
        let procs = FakeProcesses::new(machine());
        let (telemetry, sampler) = manual(
            &TelemetryConfig::default(),
            Box::new(ollama.clone()),
            Box::new(gpu.clone()),
            Box::new(procs.clone()),
        );
        Rig {
            telemetry,
            sampler,
            ollama,
            gpu,
            procs,
            now: Instant::now(),
        }
    }

    async fn tick_after(&mut self, after: Duration) {
        self.now += after;
        self.sampler.tick(self.now).await;
    }
}

#[tokio::test]
async fn gpu_memory_and_rss_are_attributed_through_the_from_path() {
    let mut rig = Rig::new();
    let mark = rig.telemetry.mark();
    rig.tick_after(Duration::ZERO).await;

    let a = rig.telemetry.model_memory("a", mark);
    assert_eq!(a.ollama_rss_mb, Some(1100.0), "runner 1000 + server 100");
    assert_eq!(a.gpu_memory_mb, Some(3100.0));
    assert_eq!(a.vram_mb, Some(3000.0));
    assert_eq!(a.gpu_free_mb, Some(14_000.0));
    let b = rig.telemetry.model_memory("B:7b", mark);
    assert_eq!(b.ollama_rss_mb, Some(2100.0));
    assert_eq!(b.gpu_memory_mb, Some(6000.0), "summed over both devices");
    assert_eq!(b.vram_mb, Some(6000.0));
    assert_eq!(
        rig.telemetry.model_memory("c", mark),
        ModelMemory {
            gpu_free_mb: Some(14_000.0),
            ..Default::default()
        }
    );

    let snap = rig.telemetry.snapshot();
    assert_eq!(snap.sampler.sources.processes, SourceState::Ok);
    assert_eq!(snap.sampler.sources.nvml, SourceState::Ok);
    assert_eq!(snap.sampler.sources.ollama_api, SourceState::Ok);
    assert_eq!(snap.processes.servers.len(), 1);
    let runners: Vec<(u32, Option<&str>)> = snap
        .processes
        .runners
        .iter()
        .map(|r| (r.pid, r.model.as_deref()))
        .collect();
    assert_eq!(
        runners,
        vec![(201, Some("a:latest")), (202, Some("b:7b"))],
        "the helper is ignored"
    );
    let on_gpu0: Vec<Option<&str>> = snap.gpus[0]
        .processes
        .iter()
        .map(|p| p.model.as_deref())
        .collect();
    assert_eq!(on_gpu0, vec![Some("a:latest"), Some("b:7b"), None]);
    let loaded_b = snap
        .loaded_models
        .iter()
        .find(|m| m.name == "b:7b")
        .expect("b loaded");
    assert_eq!(
        (loaded_b.runner_pid, loaded_b.gpu_memory_mb),
        (Some(202), Some(6000.0))
    );
    assert_eq!(snap.free_vram_mb, Some(14_000.0));
    assert!(snap.notes.is_empty(), "{:?}", snap.notes);
    assert_eq!(rig.ollama.show_calls(), vec!["a:latest", "b:7b"]);
}

#[tokio::test]
async fn ollama_out_of_sight_leaves_rss_unknown_and_says_why() {
    let mut rig = Rig::new();
    rig.procs.set(Ok(vec![proc(300, "bash", &["bash"], 5)]));
    rig.gpu
        .set(Err("NVML library not found (no NVIDIA driver?)".into()));
    let mark = rig.telemetry.mark();
    rig.tick_after(Duration::ZERO).await;

    let a = rig.telemetry.model_memory("a:latest", mark);
    assert_eq!(
        a,
        ModelMemory {
            vram_mb: Some(3000.0),
            ..Default::default()
        }
    );
    let snap = rig.telemetry.snapshot();
    assert_eq!(
        snap.sampler.sources.processes,
        SourceState::Unavailable(NO_PROCESS_VISIBLE.into())
    );
    assert_eq!(
        snap.sampler.sources.nvml,
        SourceState::Unavailable("NVML library not found (no NVIDIA driver?)".into())
    );
    assert!(snap.gpus.is_empty());
    assert_eq!(snap.free_vram_mb, None);
    assert_eq!(rig.telemetry.free_vram_mb(), None);
}

#[tokio::test]
async fn a_failing_api_keeps_the_runners_it_already_mapped() {
    let mut rig = Rig::new();
    rig.tick_after(Duration::ZERO).await;
    rig.ollama.set_ps(Err(
        "GET /api/ps failed: error sending request: connection refused".into(),
    ));
    let mark = rig.telemetry.mark();
    rig.tick_after(Duration::from_secs(1)).await;

    let snap = rig.telemetry.snapshot();
    assert_eq!(
        snap.sampler.sources.ollama_api,
        SourceState::Unavailable(
            "GET /api/ps failed: error sending request: connection refused".into()
        )
    );
    assert!(snap.loaded_models.is_empty());
    let a = rig.telemetry.model_memory("a", mark);
    assert_eq!(
        a.ollama_rss_mb,
        Some(1100.0),
        "the runner's blob was mapped on the first tick"
    );
    assert_eq!(a.gpu_memory_mb, Some(3100.0));
    assert_eq!(a.vram_mb, None, "size_vram comes from /api/ps only");
    assert_eq!(
        rig.telemetry.held_vram_mb("a"),
        Some(3100.0),
        "NVML's number stands in"
    );
    assert_eq!(
        rig.telemetry.held_vram_mb("never-seen"),
        None,
        "unknown without /api/ps"
    );
}

#[tokio::test]
async fn peak_covers_the_call_and_current_is_its_end() {
    let mut rig = Rig::new();
    rig.tick_after(Duration::ZERO).await; // before the call: runner a at 1000
    let mut table = machine();
    table[1].rss_bytes = 1500 * MIB;
    rig.procs.set(Ok(table.clone()));
    rig.tick_after(Duration::from_secs(1)).await; // current when the call starts
    let mark = rig.telemetry.mark();
    table[1].rss_bytes = 2500 * MIB;
    rig.procs.set(Ok(table.clone()));
    rig.tick_after(Duration::from_secs(1)).await;
    table[1].rss_bytes = 1800 * MIB;
    rig.procs.set(Ok(table));
    rig.tick_after(Duration::from_secs(1)).await;

    let a = rig.telemetry.model_memory("a", mark);
    assert_eq!(a.ollama_rss_mb, Some(1900.0));
    assert_eq!(a.ollama_rss_peak_mb, Some(2600.0));
    assert_eq!(a.gpu_memory_peak_mb, Some(3100.0));
    assert_eq!(
        rig.procs.full_scans(),
        1,
        "known runners are refreshed, not rediscovered"
    );
}

#[tokio::test]
async fn measured_need_is_the_largest_seen_and_beats_the_estimate() {
    let mut rig = Rig::new();
    rig.ollama.set_tags(Ok(vec![
        TagModel {
            name: "a:latest".into(),
            size: Some(2000 * MIB),
            ..Default::default()
        },
        TagModel {
            name: "never:loaded".into(),
            size: Some(1000 * MIB),
            ..Default::default()
        },
    ]));
    rig.ollama.set_show(
        "never:loaded",
        ShowInfo {
            kv_bytes_per_token: Some(65_536.0),
            ..Default::default()
        },
    );
    rig.tick_after(Duration::ZERO).await;
    rig.ollama
        .set_ps(Ok(vec![ps_model("a:latest", 5000, 3000, 16_384)]));
    rig.tick_after(Duration::from_secs(1)).await;
    rig.ollama
        .set_ps(Ok(vec![ps_model("a:latest", 4000, 4000, 8192)]));
    rig.tick_after(Duration::from_secs(1)).await;

    let a = rig.telemetry.vram_need("a").expect("a's need");
    assert_eq!(a.source, VramSource::Measured);
    assert_eq!(
        a.mb, 5000.0,
        "the largest footprint, though only 3000 MiB fitted in VRAM"
    );
    // Estimate: 1000 MiB weights + 65,536 B/token × 8192 tokens (the context last seen
    // in /api/ps) = 512 MiB + 512 MiB overhead.
    let never = rig.telemetry.vram_need("never:loaded").expect("estimate");
    assert_eq!(never.source, VramSource::Estimate);
    assert!((never.mb - 2024.0).abs() < 1e-9, "{never:?}");
    let b = rig
        .telemetry
        .vram_need("b:7b")
        .expect("b was loaded on the first tick");
    assert_eq!(b.mb, 7000.0);
    let names: Vec<String> = rig
        .telemetry
        .vram_needs()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["a:latest", "b:7b", "never:loaded"]);
    assert_eq!(rig.telemetry.vram_need("unknown"), None);
    let json = serde_json::to_value(rig.telemetry.snapshot()).expect("json");
    assert_eq!(json["vram_needs"][2]["source"], "estimate");
    assert_eq!(json["vram_needs"][2]["model"], "never:loaded");
}

#[tokio::test]
async fn free_and_held_vram_for_the_recommendation() {
    let mut rig = Rig::new();
    rig.tick_after(Duration::ZERO).await;
    assert_eq!(
        rig.telemetry.free_vram_mb(),
        Some(14_000.0),
        "10,000 + 4,000 over two devices"
    );
    assert_eq!(rig.telemetry.gpu_total_mb(), Some(49_152.0));
    assert_eq!(rig.telemetry.held_vram_mb("b:7b"), Some(6000.0));
    assert_eq!(
        rig.telemetry.held_vram_mb("qwen3:8b"),
        Some(0.0),
        "/api/ps answered without it"
    );
    // b could use what is free plus what it holds itself.
    let usable = rig
        .telemetry
        .free_vram_mb()
        .zip(rig.telemetry.held_vram_mb("b:7b"))
        .map(|(f, h)| f + h);
    assert_eq!(usable, Some(20_000.0));
}

#[tokio::test]
async fn the_process_table_is_scanned_only_when_needed() {
    let mut rig = Rig::new();
    rig.tick_after(Duration::ZERO).await;
    assert_eq!(
        (rig.procs.full_scans(), rig.procs.partial_refreshes()),
        (1, 0)
    );
    rig.tick_after(Duration::from_secs(1)).await;
    assert_eq!(
        (rig.procs.full_scans(), rig.procs.partial_refreshes()),
        (1, 1)
    );
    // Runner b exits: the partial refresh misses it, the next tick looks again.
    rig.procs
        .set(Ok(machine().into_iter().filter(|p| p.pid != 202).collect()));
    rig.tick_after(Duration::from_secs(1)).await;
    rig.tick_after(Duration::from_secs(1)).await;
    assert_eq!(rig.procs.full_scans(), 2);
    // A new model appears in /api/ps: scan at once to find its runner.
    rig.ollama.set_ps(Ok(vec![
        ps_model("a:latest", 3500, 3000, 4096),
        ps_model("c:1b", 900, 900, 4096),
    ]));
    rig.tick_after(Duration::from_secs(1)).await;
    assert_eq!(rig.procs.full_scans(), 3);
    rig.tick_after(Duration::from_secs(1)).await;
    assert_eq!(rig.procs.full_scans(), 3);
    // And now and then regardless, for a server that restarted under a new pid.
    rig.tick_after(sampler::DISCOVERY_INTERVAL).await;
    assert_eq!(rig.procs.full_scans(), 4);
    let notes = rig.telemetry.snapshot().notes;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("c:1b: cannot map its runner: POST /api/show failed: HTTP 404")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn show_is_asked_once_per_model_and_again_after_a_pull() {
    let mut rig = Rig::new();
    rig.ollama.set_tags(Ok(vec![TagModel {
        name: "gone:1b".into(),
        size: Some(MIB),
        ..Default::default()
    }]));
    rig.tick_after(Duration::ZERO).await;
    rig.tick_after(Duration::from_secs(1)).await;
    assert_eq!(rig.ollama.show_calls(), vec!["a:latest", "b:7b", "gone:1b"]);
    // The failed one is asked again only after SHOW_RETRY.
    rig.tick_after(SHOW_RETRY - Duration::from_secs(2)).await;
    assert_eq!(rig.ollama.show_calls().len(), 3);
    rig.tick_after(Duration::from_secs(1)).await;
    assert_eq!(rig.ollama.show_calls().len(), 4);
    // A new digest for a: pulled again, maybe a new blob.
    let mut a = ps_model("a:latest", 3500, 3000, 4096);
    a.digest = Some("new-digest".into());
    rig.ollama
        .set_ps(Ok(vec![a, ps_model("b:7b", 7000, 6000, 8192)]));
    rig.tick_after(Duration::from_secs(1)).await;
    assert_eq!(rig.ollama.show_calls()[4], "a:latest");
    assert!(TAGS_REFRESH > Duration::from_secs(1));
}

#[tokio::test]
async fn nvml_processes_from_another_namespace_are_noted() {
    let mut rig = Rig::new();
    rig.gpu.set(Ok(GpuReading {
        devices: vec![device(0, 1000, &[(55_001, 3000)])],
    }));
    rig.tick_after(Duration::ZERO).await;
    assert_eq!(
        rig.telemetry
            .model_memory("a", SampleMark::default())
            .gpu_memory_mb,
        None
    );
    let notes = rig.telemetry.snapshot().notes;
    assert!(
        notes.iter().any(|n| n.contains("another PID namespace")),
        "{notes:?}"
    );
}

/// An Ollama whose `/api/ps` panics on the first call.
struct PanicsOnce(AtomicUsize);

impl OllamaApi for PanicsOnce {
    fn ps(&self) -> ApiFuture<'_, Vec<PsModel>> {
        assert!(self.0.fetch_add(1, Ordering::SeqCst) > 0, "ps exploded");
        Box::pin(async { Ok(Vec::new()) })
    }
    fn show(&self, _model: String) -> ApiFuture<'_, ShowInfo> {
        Box::pin(async { Err("no".to_owned()) })
    }
    fn tags(&self) -> ApiFuture<'_, Vec<TagModel>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// A process source that always panics and says when it is dropped.
struct Boom(Option<tokio::sync::oneshot::Sender<()>>);

impl ProcessSource for Boom {
    fn all(&mut self) -> Result<Vec<ProcInfo>, String> {
        panic!("boom")
    }
    fn some(&mut self, _pids: &[u32]) -> Result<Vec<ProcInfo>, String> {
        panic!("boom")
    }
}

impl Drop for Boom {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[tokio::test]
async fn the_sampler_survives_panics_and_stops_with_its_last_handle() {
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel();
    let config = TelemetryConfig {
        interval: Duration::from_millis(1),
        ..Default::default()
    };
    let telemetry = Telemetry::start_with(
        config,
        Box::new(PanicsOnce(AtomicUsize::new(0))),
        Box::new(FakeGpu::unavailable("no GPU here")),
        Box::new(Boom(Some(dropped_tx))),
    );
    timeout(PATIENCE, telemetry.wait_for_ticks(3))
        .await
        .expect("the sampler keeps ticking");
    let snap = telemetry.snapshot();
    assert_eq!(snap.sampler.tick_panics, 1);
    assert!(
        snap.sampler
            .last_panic
            .as_deref()
            .is_some_and(|m| m.contains("ps exploded"))
    );
    assert_eq!(snap.sampler.interval_ms, 50, "raised to MIN_INTERVAL");
    assert!(snap.sampler.ticks >= 3);
    assert_eq!(
        snap.sampler.sources.processes,
        SourceState::Unavailable("the process source panicked: boom".into())
    );
    assert_eq!(
        snap.sampler.sources.nvml,
        SourceState::Unavailable("no GPU here".into())
    );

    let clone = telemetry.clone();
    drop(telemetry);
    assert!(clone.ticks() >= 3, "a clone keeps the sampler alive");
    drop(clone);
    timeout(PATIENCE, dropped_rx)
        .await
        .expect("the sampler ends")
        .expect("its sources are dropped");
}

#[tokio::test]
async fn shutdown_stops_the_sampler() {
    let config = TelemetryConfig {
        interval: MIN_INTERVAL,
        ..Default::default()
    };
    let telemetry = Telemetry::start_with(
        config,
        Box::new(FakeOllama::new()),
        Box::new(FakeGpu::unavailable("no GPU here")),
        Box::new(FakeProcesses::new(Vec::new())),
    );
    timeout(PATIENCE, telemetry.wait_for_ticks(1))
        .await
        .expect("first tick");
    timeout(PATIENCE, telemetry.shutdown())
        .await
        .expect("stops");
    let ticks = telemetry.ticks();
    // The sampler is gone: waiting for more ticks returns at once.
    timeout(PATIENCE, telemetry.wait_for_ticks(ticks + 100))
        .await
        .expect("returns");
    assert_eq!(telemetry.ticks(), ticks);
    assert_eq!(
        telemetry.snapshot().sampler.sources.ollama_api,
        SourceState::Ok
    );
}

// ---- A real process standing in for a runner, read through sysinfo. ----

/// Allocates and touches 200 MiB, says so, and waits for its stdin to close.
const HOLD_200_MIB: &str = "import sys\nb = bytearray(b'\\x01') * (200 << 20)\n\
                            print('ready', flush=True)\nsys.stdin.read()\n";

/// The real Python binary (pyenv's `python3` is a shell shim: a link to it would run bash).
fn real_python() -> PathBuf {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Starts `exe -c HOLD_200_MIB <args>` and waits until it holds its memory.
async fn stand_in(exe: &Path, args: &[&str]) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(exe)
        .arg("-c")
        .arg(HOLD_200_MIB)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the stand-in starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = timeout(PATIENCE, BufReader::new(stdout).lines().next_line())
        .await
        .expect("in time")
        .expect("reads");
    assert_eq!(line.as_deref(), Some("ready"));
    child
}

/// What the kernel says the process holds right now.
fn vm_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

async fn measure_stand_in(
    config: TelemetryConfig,
    pid: u32,
    blob: &str,
) -> (ModelMemory, SystemSnapshot) {
    let ollama = FakeOllama::new();
    ollama.set_ps(Ok(vec![ps_model("stand-in:latest", 300, 0, 2048)]));
    ollama.set_show("stand-in:latest", shows(blob));
    let telemetry = Telemetry::start_with(
        config,
        Box::new(ollama),
        Box::new(FakeGpu::unavailable("no GPU here")),
        Box::new(SysinfoProcesses::new()),
    );
    let mark = telemetry.mark();
    timeout(PATIENCE, telemetry.wait_for_ticks(2))
        .await
        .expect("ticks");
    let memory = telemetry.model_memory("stand-in", mark);
    let snapshot = telemetry.snapshot();
    telemetry.shutdown().await;
    let runner = snapshot.processes.runners.iter().find(|r| r.pid == pid);
    assert!(
        runner.is_some(),
        "runner {pid} not found: {:?}",
        snapshot.processes
    );
    (memory, snapshot)
}

fn assert_close_to_truth(memory: &ModelMemory, pid: u32) {
    let truth = vm_rss_mib(pid);
    let seen = memory.ollama_rss_mb.expect("the runner's RSS");
    assert!(truth >= 200.0, "the stand-in holds {truth} MiB");
    assert!(
        (seen - truth).abs() <= truth * 0.10,
        "seen {seen} MiB, kernel says {truth} MiB"
    );
    assert!(memory.ollama_rss_peak_mb.is_some_and(|p| p >= seen));
}

#[tokio::test]
async fn a_real_runner_is_found_by_its_command_line_and_measured() {
    // A models directory with a space in its path, and python linked as `llama-server` so
    // the kernel names the process like Ollama's runner.
    let dir = tempfile::Builder::new()
        .prefix("ollama models ")
        .tempdir()
        .expect("tempdir");
    let exe = dir.path().join("llama-server");
    std::os::unix::fs::symlink(real_python(), &exe).expect("symlink");
    let blob = dir
        .path()
        .join("blobs")
        .join("sha256-abc")
        .to_string_lossy()
        .into_owned();
    let mut child = stand_in(&exe, &["--model", &blob, "--port", "0"]).await;
    let pid = child.id().expect("pid");

    let config = TelemetryConfig {
        interval: MIN_INTERVAL,
        ..Default::default()
    };
    let (memory, snapshot) = measure_stand_in(config, pid, &blob).await;
    assert_close_to_truth(&memory, pid);
    let runner = snapshot
        .processes
        .runners
        .iter()
        .find(|r| r.pid == pid)
        .expect("runner");
    assert_eq!(runner.model.as_deref(), Some("stand-in:latest"));
    assert_eq!(runner.model_path, blob);
    assert_eq!(snapshot.loaded_models[0].runner_pid, Some(pid));
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn a_configured_pid_counts_as_a_runner() {
    let blob = "/tmp/ollameter-test/blobs/sha256-configured";
    let mut child = stand_in(&real_python(), &["--model", blob, "--port", "0"]).await;
    let pid = child.id().expect("pid");
    let config = TelemetryConfig {
        interval: MIN_INTERVAL,
        server_pids: vec![pid],
        ..Default::default()
    };
    let (memory, _) = measure_stand_in(config, pid, blob).await;
    assert_close_to_truth(&memory, pid);
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn the_snapshot_serialises_for_the_system_route() {
    let mut rig = Rig::new();
    rig.tick_after(Duration::ZERO).await;
    let json = serde_json::to_value(rig.telemetry.snapshot()).expect("json");
    assert_eq!(
        json["sampler"]["sources"]["processes"],
        serde_json::json!({"state": "ok"})
    );
    assert_eq!(json["gpus"][0]["memory_free_mb"], 10_000.0);
    assert_eq!(json["loaded_models"][0]["vram_mb"], 3000.0);
    assert_eq!(json["processes"]["runners"][0]["rss_mb"], 1000.0);
    assert!(json["sampler"]["last_tick_duration_ms"].is_number());
}

#[tokio::test]
async fn each_call_gets_the_energy_of_the_gpus_its_model_runs_on() {
    use crate::telemetry::energy::Meter;
    let counters = |g0: f64, g1: f64| {
        Ok(vec![
            (
                0,
                Meter::Counter {
                    joules: g0,
                    wraps_at: None,
                },
            ),
            (
                1,
                Meter::Counter {
                    joules: g1,
                    wraps_at: None,
                },
            ),
        ])
    };
    let mut rig = Rig::new();
    rig.gpu.set_energy(counters(1_000.0, 5_000.0));
    rig.tick_after(Duration::ZERO).await; // the channels and which GPUs each runner is on
    let a = rig.telemetry.energy_begin("a"); // runner 201: GPU 0 only
    let b = rig.telemetry.energy_begin("b:7b"); // runner 202: GPUs 0 and 1
    rig.tick_after(Duration::from_secs(1)).await; // nothing spent yet
    rig.gpu.set_energy(counters(1_000.0, 5_300.0));
    rig.tick_after(Duration::from_secs(1)).await; // GPU 1 spent 300 J, GPU 0 nothing
    let ea = a.finish();
    let eb = b.finish();
    assert_eq!(ea.joules, Some(0.0), "GPU 1's energy is not a's: {ea:?}");
    assert_eq!(ea.source.as_deref(), Some("gpu_counter"));
    assert!(
        eb.joules.is_some_and(|j| j >= 300.0),
        "all of GPU 1's 300 J: {eb:?}"
    );

    // Without an energy reading: null, and the reason, never 0.
    rig.gpu.set_energy(Err("no counter on this board".into()));
    rig.tick_after(Duration::from_secs(1)).await;
    let c = rig.telemetry.energy_begin("a");
    rig.tick_after(Duration::from_secs(1)).await;
    let ec = c.finish();
    assert_eq!(ec.joules, None, "{ec:?}");
    let reason = ec.reason.expect("a reason");
    assert!(
        reason.contains("GPU energy: no counter on this board"),
        "{reason}"
    );
    assert!(reason.contains("CPU energy"), "{reason}");
    assert!(!rig.telemetry.energy_missing().is_empty());
}
