//! The OpenAI-compatible tick against a real listening socket (this test process listens,
//! so `/proc` finds it), a fake `/v1/models` and `/props`, a fake GPU and a process table
//! that gives this process a known RSS.

use std::time::Duration;

use tokio::time::Instant;

use super::super::super::gpu::{DeviceReading, GpuProcess, GpuProcessKind, GpuReading};
use super::super::super::openai::{FakeOpenAi, ServedModel, ServerProps};
use super::super::super::process::ProcInfo;
use super::super::super::{
    FakeGpu, FakeOllama, FakeProcesses, SourceState, Telemetry, TelemetryConfig, manual_sources,
};
use super::super::{DISCOVERY_INTERVAL, Sampler};
use super::NOT_OLLAMA;
use crate::upstream::{Kind, KindSetting, UpstreamKind};

const MIB: u64 = 1024 * 1024;

fn me() -> u32 {
    std::process::id()
}

fn served(id: &str, ctx: u64) -> ServedModel {
    ServedModel {
        id: id.into(),
        context_length: Some(ctx),
        ..ServedModel::default()
    }
}

fn this_process(name: &str, rss_mib: u64) -> ProcInfo {
    ProcInfo {
        pid: me(),
        name: name.into(),
        cmd: vec![
            "/opt/llama/llama-server".into(),
            "--model".into(),
            "/m/from-argv.gguf".into(),
        ],
        rss_bytes: rss_mib * MIB,
    }
}

fn gpu_with(pid: u32, mib: u64) -> GpuReading {
    GpuReading {
        devices: vec![DeviceReading {
            index: 0,
            name: "Fake GPU".into(),
            memory_total_bytes: 24_576 * MIB,
            memory_used_bytes: 4_576 * MIB,
            memory_free_bytes: 20_000 * MIB,
            utilization_gpu_percent: None,
            utilization_memory_percent: None,
            processes: vec![GpuProcess {
                pid,
                used_memory_bytes: Some(mib * MIB),
                kind: GpuProcessKind::Compute,
            }],
        }],
    }
}

struct Rig {
    telemetry: Telemetry,
    sampler: Sampler,
    api: FakeOpenAi,
    procs: FakeProcesses,
    now: Instant,
    /// The "server" socket: held by this process.
    _listener: Option<std::net::TcpListener>,
}

impl Rig {
    /// An upstream at a socket this process listens on, unless `listening` is false.
    fn new(listening: bool, config: impl FnOnce(&mut TelemetryConfig)) -> Rig {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let addr = listener.local_addr().expect("addr");
        let listener = listening.then_some(listener);
        let api = FakeOpenAi::new();
        api.set_models(Ok(vec![served("smol", 2048)]));
        api.set_props(Some(ServerProps {
            model_path: Some("/m/smol.gguf".into()),
            model_alias: Some("smol".into()),
            n_ctx: Some(4096),
            total_slots: Some(4),
            build_info: Some("b1-test".into()),
        }));
        let procs = FakeProcesses::new(vec![this_process("llama-server", 512)]);
        let mut cfg = TelemetryConfig {
            upstream: format!("http://{addr}"),
            ..TelemetryConfig::default()
        };
        config(&mut cfg);
        let (telemetry, sampler) = manual_sources(
            &cfg,
            Box::new(FakeOllama::new()),
            Box::new(api.clone()),
            Box::new(FakeGpu::new(gpu_with(me(), 300))),
            Box::new(procs.clone()),
        );
        telemetry.follow_upstream_kind(Kind::new(KindSetting::Fixed(UpstreamKind::OpenAi)));
        Rig {
            telemetry,
            sampler,
            api,
            procs,
            now: Instant::now(),
            _listener: listener,
        }
    }

    async fn tick(&mut self, after: Duration) {
        self.now += after;
        self.sampler.tick(self.now).await;
    }
}

#[tokio::test]
async fn the_listening_process_memory_is_charged_to_the_model_it_serves() {
    let mut rig = Rig::new(true, |_| {});
    let mark = rig.telemetry.mark();
    rig.tick(Duration::ZERO).await;
    let s = rig.telemetry.snapshot();
    assert_eq!(s.notes, Vec::<String>::new());
    let server = s.upstream_server.expect("an upstream server section");
    assert_eq!(server.pids, vec![me()]);
    assert_eq!(server.rss_mb, Some(512.0));
    assert_eq!(server.gpu_memory_mb, Some(300.0));
    assert!(server.listen.expect("listen").starts_with("127.0.0.1:"));
    assert_eq!(server.props.expect("props").total_slots, Some(4));
    let src = &s.sampler.sources;
    assert_eq!(src.processes, SourceState::Ok);
    assert_eq!(src.openai_api, SourceState::Ok);
    assert_eq!(src.ollama_api, SourceState::Disabled(NOT_OLLAMA.into()));
    assert_eq!(src.upstream_api(), &SourceState::Ok);
    // The served model, with /props' context size and weights path.
    assert_eq!(s.loaded_models.len(), 1);
    assert_eq!(s.loaded_models[0].name, "smol");
    assert_eq!(s.loaded_models[0].context_length, Some(4096));
    assert_eq!(s.loaded_models[0].runner_rss_mb, Some(512.0));
    assert_eq!(s.processes.runners.len(), 1);
    assert_eq!(s.processes.runners[0].model_path, "/m/smol.gguf");
    assert_eq!(s.processes.runners[0].model.as_deref(), Some("smol"));
    assert_eq!(s.gpus[0].processes[0].model.as_deref(), Some("smol"));
    // A record for the served name, and (one model) for any name a client gives.
    for name in ["smol", "gpt-4o-mini"] {
        let m = rig.telemetry.model_memory(name, mark);
        assert_eq!(m.ollama_rss_mb, Some(512.0), "{name}");
        assert_eq!(m.gpu_memory_mb, Some(300.0), "{name}");
    }
    // The VRAM need is measured from NVML per process; the installed list is /v1/models.
    let need = rig.telemetry.vram_need("smol").expect("need");
    assert_eq!(need.mb, 300.0);
    let installed = rig.telemetry.installed_models().expect("installed");
    assert_eq!(installed[0].name, "smol");
}

#[tokio::test]
async fn several_models_are_each_charged_and_unknown_names_get_nothing() {
    let mut rig = Rig::new(true, |_| {});
    rig.api
        .set_models(Ok(vec![served("a", 1024), served("b", 1024)]));
    rig.tick(Duration::ZERO).await;
    let s = rig.telemetry.snapshot();
    assert!(
        s.notes.iter().any(|n| n.contains("lists 2 models")),
        "{:?}",
        s.notes
    );
    let mark = rig.telemetry.mark();
    assert_eq!(
        rig.telemetry.model_memory("a", mark).ollama_rss_mb,
        Some(512.0)
    );
    assert_eq!(
        rig.telemetry.model_memory("b", mark).ollama_rss_mb,
        Some(512.0)
    );
    assert_eq!(rig.telemetry.model_memory("c", mark).ollama_rss_mb, None);
    assert_eq!(rig.telemetry.held_vram_mb("c"), Some(0.0));
}

#[tokio::test]
async fn without_a_visible_listener_the_models_are_listed_and_the_reason_given() {
    let mut rig = Rig::new(false, |_| {});
    rig.tick(Duration::ZERO).await;
    let s = rig.telemetry.snapshot();
    let SourceState::Unavailable(reason) = &s.sampler.sources.processes else {
        panic!("processes: {:?}", s.sampler.sources.processes);
    };
    assert!(reason.contains("nothing listens on port"), "{reason}");
    assert!(s.notes.iter().any(|n| n.contains("cannot be attributed")));
    assert_eq!(s.loaded_models[0].name, "smol");
    assert_eq!(s.loaded_models[0].runner_rss_mb, None);
    let m = rig.telemetry.model_memory("smol", rig.telemetry.mark());
    assert_eq!(m.ollama_rss_mb, None, "unknown, never zero");
    // Looked for again only after the discovery interval: no /proc scan per tick.
    let scans = rig.procs.full_scans() + rig.procs.partial_refreshes();
    rig.tick(Duration::from_secs(1)).await;
    assert_eq!(
        rig.procs.full_scans() + rig.procs.partial_refreshes(),
        scans
    );
}

#[tokio::test]
async fn configured_pids_name_the_server_when_its_socket_cannot_be_seen() {
    let mut rig = Rig::new(false, |c| c.server_pids = vec![std::process::id()]);
    rig.tick(Duration::ZERO).await;
    let s = rig.telemetry.snapshot();
    assert_eq!(s.sampler.sources.processes, SourceState::Ok);
    let server = s.upstream_server.expect("section");
    assert_eq!((server.listen, server.pids), (None, vec![me()]));
    let m = rig.telemetry.model_memory("smol", rig.telemetry.mark());
    assert_eq!(m.ollama_rss_mb, Some(512.0));
}

#[tokio::test]
async fn a_port_forwarder_is_not_taken_for_the_server() {
    let mut rig = Rig::new(true, |_| {});
    rig.procs.set(Ok(vec![this_process("docker-proxy", 12)]));
    rig.tick(Duration::ZERO).await;
    let s = rig.telemetry.snapshot();
    assert!(
        s.notes.iter().any(|n| n.contains("held by docker-proxy")),
        "{:?}",
        s.notes
    );
    let m = rig.telemetry.model_memory("smol", rig.telemetry.mark());
    assert_eq!(m.ollama_rss_mb, None);
}

#[tokio::test]
async fn props_and_discovery_are_refreshed_per_interval_and_a_failing_list_keeps_the_last() {
    let mut rig = Rig::new(true, |_| {});
    rig.tick(Duration::ZERO).await;
    rig.tick(Duration::from_secs(1)).await;
    assert_eq!(rig.api.props_calls(), 1);
    rig.tick(DISCOVERY_INTERVAL).await;
    assert_eq!(rig.api.props_calls(), 2);
    // The server is busy or restarting: /v1/models fails; the last list still names the
    // model its memory belongs to, and the source says why.
    rig.api
        .set_models(Err("GET /v1/models failed: HTTP 503".into()));
    rig.tick(Duration::from_secs(1)).await;
    let s = rig.telemetry.snapshot();
    assert!(matches!(
        s.sampler.sources.openai_api,
        SourceState::Unavailable(ref r) if r.contains("503")
    ));
    let m = rig.telemetry.model_memory("smol", rig.telemetry.mark());
    assert_eq!(m.ollama_rss_mb, Some(512.0));
    // The server exits: the next tick sees its pid gone and looks again.
    rig.procs.set(Ok(Vec::new()));
    rig.tick(Duration::from_secs(1)).await;
    assert!(matches!(
        rig.telemetry.snapshot().sampler.sources.processes,
        SourceState::Unavailable(_)
    ));
    let scans = rig.procs.partial_refreshes();
    rig.procs.set(Ok(vec![this_process("llama-server", 600)]));
    rig.tick(Duration::from_secs(1)).await;
    assert!(rig.procs.partial_refreshes() > scans);
    let m = rig.telemetry.model_memory("smol", rig.telemetry.mark());
    assert_eq!(m.ollama_rss_mb, Some(600.0));
}

#[tokio::test]
async fn an_ollama_or_unknown_upstream_keeps_the_ollama_tick() {
    for setting in [KindSetting::Auto, KindSetting::Fixed(UpstreamKind::Ollama)] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let config = TelemetryConfig {
            upstream: format!("http://{}", listener.local_addr().expect("addr")),
            ..TelemetryConfig::default()
        };
        let api = FakeOpenAi::new();
        let (telemetry, mut sampler) = manual_sources(
            &config,
            Box::new(FakeOllama::new()),
            Box::new(api.clone()),
            Box::new(FakeGpu::unavailable("no GPU")),
            Box::new(FakeProcesses::new(Vec::new())),
        );
        telemetry.follow_upstream_kind(Kind::new(setting));
        sampler.tick(Instant::now()).await;
        let s = telemetry.snapshot();
        assert_eq!(s.upstream_server, None);
        assert_eq!(s.sampler.sources.ollama_api, SourceState::Ok);
        assert!(matches!(
            s.sampler.sources.openai_api,
            SourceState::Disabled(_)
        ));
        assert_eq!(api.props_calls(), 0);
    }
}
