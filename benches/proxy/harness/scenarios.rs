//! The scenarios of issue 6, run the same way against each of the paths to the fake
//! Ollama: direct, through ollameter, through nginx, through a bare hyper proxy.
//!
//! One run starts a fresh ollameter (and nginx, and the bare proxy), measures its idle
//! RSS, then runs, for each scenario, the ways back to back so that drift in the
//! machine's load hits them all alike. The fixed-rate recording scenario needs only ollameter and runs once,
//! after the runs, against a fresh ollameter and an empty store.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::children::{Bare, Nginx, Ollameter};
use super::load::{self, Closed, OpenLoop, StreamSample};
use super::stats::{max, median, percentile};
use super::upstream::FakeOllama;

/// One of the paths to the fake Ollama.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The client talks to the fake itself.
    Direct,
    /// Through the ollameter binary.
    Ollameter,
    /// Through a second ollameter exporting a span per call over OTLP/HTTP (`--otel`).
    OllameterOtel,
    /// Through nginx.
    Nginx,
    /// Through a bare hyper reverse proxy (no metering): the async stack's floor.
    Bare,
    /// Through the ollameter binary in front of several fake Ollamas (`--upstreams N`):
    /// each call also chooses its host.
    Fleet,
}

impl Way {
    /// The name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Way::Direct => "direct",
            Way::Ollameter => "ollameter",
            Way::OllameterOtel => "ollameter + OTLP export",
            Way::Nginx => "nginx",
            Way::Bare => "bare hyper",
            Way::Fleet => "ollameter, several upstreams",
        }
    }
}

/// What a benchmark run does and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Repeated runs (the tables show their medians).
    pub runs: usize,
    /// Length of each closed-loop measurement (whole seconds with wrk).
    pub closed: Duration,
    /// Closed-loop concurrency levels; the RSS under load is read at the highest.
    pub concurrency: Vec<usize>,
    /// Streamed answers per way and run.
    pub streams: usize,
    /// Streams open at once.
    pub stream_concurrency: usize,
    /// Lines per streamed answer, the final one included.
    pub stream_chunks: usize,
    /// Microseconds between streamed lines.
    pub stream_interval_us: u64,
    /// Extra short streams timed for the time to first chunk, per way and run.
    pub ttft_probes: usize,
    /// Size of the large request body.
    pub big_body_bytes: usize,
    /// Large requests per way and run.
    pub big_body_requests: usize,
    /// Requests per second of the recording scenario.
    pub record_rate: f64,
    /// Length of the recording scenario (zero: skipped).
    pub record: Duration,
    /// `wrk`, for the closed-loop scenario; the Rust client is used without it.
    pub wrk: Option<PathBuf>,
    /// `nginx`; the nginx way is skipped without it.
    pub nginx: Option<PathBuf>,
    /// The bare hyper proxy's binary; that way is skipped without it.
    pub bare: Option<PathBuf>,
    /// Also measure an ollameter that exports a span per call (`--otel`), to an OTLP sink
    /// served by the fake Ollama.
    pub otel: bool,
    /// Upstreams of the [`Way::Fleet`] ollameter (each its own fake Ollama); below 2 that
    /// way is skipped.
    pub upstreams: usize,
}

impl Plan {
    /// The full benchmark: 3 runs, about 6 minutes.
    pub fn full(wrk: Option<PathBuf>, nginx: Option<PathBuf>, bare: Option<PathBuf>) -> Plan {
        Plan {
            runs: 3,
            closed: Duration::from_secs(5),
            concurrency: vec![1, 16, 64],
            streams: 16,
            stream_concurrency: 4,
            stream_chunks: 256,
            stream_interval_us: 5_000,
            ttft_probes: 100,
            big_body_bytes: 20 * 1024 * 1024,
            big_body_requests: 10,
            record_rate: 2_000.0,
            record: Duration::from_secs(30),
            wrk,
            nginx,
            bare,
            otel: false,
            upstreams: 0,
        }
    }

    /// A smoke run of every scenario in about 30 seconds: one run, short measurements.
    pub fn quick(wrk: Option<PathBuf>, nginx: Option<PathBuf>, bare: Option<PathBuf>) -> Plan {
        Plan {
            runs: 1,
            closed: Duration::from_secs(1),
            streams: 4,
            stream_chunks: 64,
            ttft_probes: 20,
            big_body_requests: 3,
            record: Duration::from_secs(5),
            ..Plan::full(wrk, nginx, bare)
        }
    }

    /// What the test suite runs: a couple of seconds, no nginx, no wrk, small sizes.
    pub fn smoke() -> Plan {
        Plan {
            runs: 1,
            closed: Duration::from_millis(500),
            concurrency: vec![4],
            streams: 2,
            stream_concurrency: 2,
            stream_chunks: 16,
            stream_interval_us: 1_000,
            ttft_probes: 3,
            big_body_bytes: 1024 * 1024,
            big_body_requests: 2,
            record_rate: 200.0,
            record: Duration::from_secs(1),
            wrk: None,
            nginx: None,
            bare: None,
            otel: false,
            upstreams: 0,
        }
    }

    /// The ways this plan measures, in table order.
    pub fn ways(&self) -> Vec<Way> {
        let mut ways = vec![Way::Direct, Way::Ollameter];
        if self.otel {
            ways.push(Way::OllameterOtel);
        }
        if self.nginx.is_some() {
            ways.push(Way::Nginx);
        }
        if self.bare.is_some() {
            ways.push(Way::Bare);
        }
        if self.upstreams >= 2 {
            ways.push(Way::Fleet);
        }
        ways
    }
}

/// Streaming as one way saw it in one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamStats {
    /// Median time to first chunk, microseconds.
    pub ttft_us: f64,
    /// Chunk delay (arrival minus the fake's send), microseconds: median.
    pub chunk_p50_us: f64,
    /// 99th percentile.
    pub chunk_p99_us: f64,
    /// Largest.
    pub chunk_max_us: f64,
    /// Chunks timed.
    pub chunks: usize,
}

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Scenario 1: per way and concurrency.
    pub closed: Vec<(Way, usize, Closed)>,
    /// Scenario 1: the proxy's own CPU per answered request (user + system time of all
    /// its threads and processes, from `/proc`), microseconds, per way and concurrency.
    pub cpu_us_per_call: Vec<(Way, usize, f64)>,
    /// Scenario 2: per way.
    pub streams: Vec<(Way, StreamStats)>,
    /// Scenario 3: median latency of the large request per way, microseconds.
    pub big_body_us: Vec<(Way, f64)>,
    /// ollameter's RSS after start, before any request, KiB.
    pub ollameter_idle_kib: u64,
    /// ollameter's peak RSS during the highest closed-loop concurrency, KiB.
    pub ollameter_loaded_peak_kib: u64,
    /// ollameter's RSS just before the large bodies, KiB.
    pub ollameter_before_big_kib: u64,
    /// ollameter's peak RSS during the large bodies, KiB.
    pub ollameter_big_peak_kib: u64,
    /// nginx's RSS (master and workers) after start, KiB.
    pub nginx_idle_kib: u64,
    /// nginx's RSS right after the highest closed-loop concurrency, KiB.
    pub nginx_loaded_kib: u64,
    /// With `--otel`: spans the exporting ollameter sent, and spans it dropped.
    pub otel_spans: Option<(f64, f64)>,
}

impl RunResult {
    /// The closed-loop result of `way` at `concurrency`.
    pub fn closed(&self, way: Way, concurrency: usize) -> Option<Closed> {
        self.closed
            .iter()
            .find(|(w, c, _)| *w == way && *c == concurrency)
            .map(|(_, _, r)| *r)
    }

    /// The proxy's CPU per call of `way` at `concurrency`, microseconds.
    pub fn cpu_per_call(&self, way: Way, concurrency: usize) -> Option<f64> {
        self.cpu_us_per_call
            .iter()
            .find(|(w, c, _)| *w == way && *c == concurrency)
            .map(|(_, _, us)| *us)
    }

    /// The streaming result of `way`.
    pub fn stream(&self, way: Way) -> Option<StreamStats> {
        self.streams
            .iter()
            .find(|(w, _)| *w == way)
            .map(|(_, s)| *s)
    }

    /// The large-body latency of `way`, microseconds.
    pub fn big_body(&self, way: Way) -> Option<f64> {
        self.big_body_us
            .iter()
            .find(|(w, _)| *w == way)
            .map(|(_, us)| *us)
    }
}

/// Scenario 4: ollameter under a fixed request rate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recording {
    /// The load as the client saw it.
    pub load: OpenLoop,
    /// Records the store committed.
    pub written: u64,
    /// Records dropped (queue full or store failing).
    pub dropped: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Time spent committing, seconds.
    pub commit_seconds: f64,
    /// From the end of the load until the queue was empty, seconds.
    pub drain_seconds: f64,
}

/// All runs.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Each run's results.
    pub runs: Vec<RunResult>,
    /// Scenario 4, when it ran.
    pub recording: Option<Recording>,
}

/// Runs `plan` with the ollameter binary at `bin`; `progress` hears what is being done.
pub fn run(plan: &Plan, bin: &Path, progress: &dyn Fn(&str)) -> Result<Report, String> {
    let epoch = Instant::now();
    let fake = FakeOllama::start(epoch);
    // The fleet's other hosts: the same fake, each on its own port.
    let others: Vec<FakeOllama> = (1..plan.upstreams.max(1))
        .map(|_| FakeOllama::start(epoch))
        .collect();
    let fleet: Vec<std::net::SocketAddr> = std::iter::once(fake.addr)
        .chain(others.iter().map(|f| f.addr))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("client runtime: {e}"))?;
    let big_body = big_body(plan.big_body_bytes);
    let mut report = Report::default();
    for run in 1..=plan.runs {
        progress(&format!("run {run} of {}", plan.runs));
        let result = runtime.block_on(one_run(
            plan, bin, &fake, &fleet, epoch, &big_body, progress,
        ))?;
        report.runs.push(result);
    }
    if !plan.record.is_zero() {
        progress(&format!(
            "recording: {} requests/s for {} s through ollameter",
            plan.record_rate,
            plan.record.as_secs_f64()
        ));
        report.recording = Some(runtime.block_on(recording(plan, bin, &fake))?);
    }
    Ok(report)
}

fn url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/api/generate")
}

async fn one_run(
    plan: &Plan,
    bin: &Path,
    fake: &FakeOllama,
    fleet_upstreams: &[std::net::SocketAddr],
    epoch: Instant,
    big_body: &Bytes,
    progress: &dyn Fn(&str),
) -> Result<RunResult, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let ollameter = Ollameter::start(bin, fake.addr, dir.path())?;
    let exporting = if plan.otel {
        Some(Ollameter::start_exporting(
            bin,
            fake.addr,
            dir.path(),
            "ollameter-otel",
            &format!("http://{}/v1/traces", fake.addr),
        )?)
    } else {
        None
    };
    let nginx = match &plan.nginx {
        Some(nginx) => Some(Nginx::start(nginx, fake.addr, dir.path())?),
        None => None,
    };
    let bare = match &plan.bare {
        Some(bare) => Some(Bare::start(bare, fake.addr)?),
        None => None,
    };
    let fleet = if plan.upstreams >= 2 {
        Some(Ollameter::start_many(
            bin,
            fleet_upstreams,
            dir.path(),
            "ollameter-fleet",
        )?)
    } else {
        None
    };
    // Let both settle (ollameter's telemetry sampler takes its first reading) before the
    // idle figures.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut result = RunResult {
        ollameter_idle_kib: ollameter.rss_kib(),
        nginx_idle_kib: nginx.as_ref().map_or(0, Nginx::rss_kib),
        ..RunResult::default()
    };
    let target = |way: Way| match way {
        Way::Direct => url(fake.addr),
        Way::Ollameter => url(ollameter.addr),
        Way::OllameterOtel => exporting.as_ref().map_or_else(String::new, |o| url(o.addr)),
        Way::Nginx => nginx.as_ref().map_or_else(String::new, |n| url(n.addr)),
        Way::Bare => bare.as_ref().map_or_else(String::new, |b| url(b.addr)),
        Way::Fleet => fleet.as_ref().map_or_else(String::new, |f| url(f.addr)),
    };
    // The CPU seconds the way's proxy process(es) have used so far (none for direct: the
    // fake runs inside this process).
    let cpu = |way: Way| match way {
        Way::Direct => None,
        Way::Ollameter => Some(ollameter.cpu_seconds()),
        Way::OllameterOtel => exporting.as_ref().map(Ollameter::cpu_seconds),
        Way::Nginx => nginx.as_ref().map(Nginx::cpu_seconds),
        Way::Bare => bare.as_ref().map(Bare::cpu_seconds),
        Way::Fleet => fleet.as_ref().map(Ollameter::cpu_seconds),
    };
    let ways = plan.ways();
    let closed = |url: String, connections: usize, duration: Duration| {
        let wrk = plan.wrk.clone();
        let dir = dir.path().to_path_buf();
        async move {
            match wrk {
                Some(wrk) => tokio::task::spawn_blocking(move || {
                    load::wrk(&wrk, &dir, &url, connections, duration.as_secs().max(1))
                })
                .await
                .expect("wrk"),
                None => load::closed_loop(&url, connections, duration).await,
            }
        }
    };

    // Warm every path (connection pools, nginx's keep-alive, ollameter's first store
    // commit) so the first measured level does not pay for it.
    for &way in &ways {
        closed(target(way), 16, Duration::from_secs(1)).await;
    }

    // Scenario 1 (and 5: RSS under the highest concurrency).
    let top = plan.concurrency.iter().copied().max().unwrap_or(1);
    for &c in &plan.concurrency {
        for &way in &ways {
            progress(&format!("  closed loop, concurrency {c}, {}", way.name()));
            if way == Way::Ollameter && c == top {
                ollameter.reset_peak();
            }
            let cpu_before = cpu(way);
            let r = closed(target(way), c, plan.closed).await;
            if let (Some(before), Some(after)) = (cpu_before, cpu(way))
                && r.requests > 0
            {
                result
                    .cpu_us_per_call
                    .push((way, c, (after - before) * 1e6 / r.requests as f64));
            }
            if way == Way::Ollameter && c == top {
                result.ollameter_loaded_peak_kib = ollameter.peak_kib();
            }
            if way == Way::Nginx && c == top {
                result.nginx_loaded_kib = nginx.as_ref().map_or(0, Nginx::rss_kib);
            }
            if r.requests == 0 || r.errors > 0 {
                return Err(format!(
                    "{} at concurrency {c}: {} answered, {} failed",
                    way.name(),
                    r.requests,
                    r.errors
                ));
            }
            result.closed.push((way, c, r));
        }
    }

    // Scenario 2.
    let client = load::client();
    for &way in &ways {
        progress(&format!("  streaming, {}", way.name()));
        let url = target(way);
        let mut samples: Vec<StreamSample> = Vec::new();
        let mut left = plan.streams;
        while left > 0 {
            let n = left.min(plan.stream_concurrency.max(1));
            left -= n;
            let batch = futures_util::future::join_all((0..n).map(|_| {
                load::stream_once(
                    &client,
                    &url,
                    plan.stream_chunks,
                    plan.stream_interval_us,
                    epoch,
                )
            }))
            .await;
            samples.extend(batch);
        }
        let mut ttfts: Vec<f64> = samples.iter().map(|s| s.ttft_us).collect();
        for _ in 0..plan.ttft_probes {
            ttfts.push(
                load::stream_once(&client, &url, 2, 1_000, epoch)
                    .await
                    .ttft_us,
            );
        }
        let delays: Vec<f64> = samples
            .iter()
            .flat_map(|s| s.chunk_delays_us.iter().copied())
            .collect();
        result.streams.push((
            way,
            StreamStats {
                ttft_us: median(&ttfts),
                chunk_p50_us: percentile(&delays, 50.0),
                chunk_p99_us: percentile(&delays, 99.0),
                chunk_max_us: max(&delays),
                chunks: delays.len(),
            },
        ));
    }

    // Scenario 3.
    for &way in &ways {
        progress(&format!("  large body, {}", way.name()));
        let url = target(way);
        // One unmeasured request first: the large-body path's buffers, not a cold start.
        load::sequential(&client, &url, big_body, 1).await;
        if way == Way::Ollameter {
            result.ollameter_before_big_kib = ollameter.rss_kib();
            ollameter.reset_peak();
        }
        let latencies = load::sequential(&client, &url, big_body, plan.big_body_requests).await;
        if way == Way::Ollameter {
            result.ollameter_big_peak_kib = ollameter.peak_kib();
        }
        result.big_body_us.push((way, median(&latencies)));
    }
    if let Some(exporting) = &exporting {
        result.otel_spans = Some(otel_spans(&client, exporting.addr).await?);
    }
    drop(fleet);
    drop(bare);
    drop(nginx);
    drop(exporting);
    drop(ollameter);
    Ok(result)
}

/// Scenario 4: a fresh ollameter under `plan.record_rate` requests per second.
async fn recording(plan: &Plan, bin: &Path, fake: &FakeOllama) -> Result<Recording, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let ollameter = Ollameter::start(bin, fake.addr, dir.path())?;
    let http = load::client();
    let before = health(&http, ollameter.addr).await?;
    let load = load::open_loop(&url(ollameter.addr), plan.record_rate, plan.record).await;
    let ended = Instant::now();
    // Wait until every served request's record has left the queue (committed or dropped).
    let mut after = health(&http, ollameter.addr).await?;
    while (after.written + after.dropped) < (before.written + before.dropped + load.ok)
        && ended.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = health(&http, ollameter.addr).await?;
    }
    let drain_seconds = ended.elapsed().as_secs_f64();
    let metrics = http
        .get(format!("http://{}/metrics", ollameter.addr))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    Ok(Recording {
        load,
        written: after.written - before.written,
        dropped: after.dropped - before.dropped,
        commits: value("ollameter_store_commits_total ") as u64,
        commit_seconds: value("ollameter_store_commit_seconds_total "),
        drain_seconds,
    })
}

/// The exporting ollameter's spans sent and dropped, read once the last batch has left:
/// after the default 5 s schedule delay and a second more.
async fn otel_spans(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
) -> Result<(f64, f64), String> {
    tokio::time::sleep(Duration::from_secs(6)).await;
    let sums = metric_sums(
        http,
        addr,
        &[
            "ollameter_otel_spans_exported_total",
            "ollameter_otel_spans_dropped_total",
        ],
    )
    .await?;
    Ok((sums[0], sums[1]))
}

/// For each of `prefixes`, the sum of the values of every series of ollameter's
/// `/metrics` whose line starts with it (all labels of a counter, say).
pub async fn metric_sums(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    prefixes: &[&str],
) -> Result<Vec<f64>, String> {
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    Ok(prefixes
        .iter()
        .map(|prefix| {
            metrics
                .lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum()
        })
        .collect())
}

struct Health {
    written: u64,
    dropped: u64,
}

async fn health(http: &reqwest::Client, addr: std::net::SocketAddr) -> Result<Health, String> {
    let body: serde_json::Value = http
        .get(format!("http://{addr}/api/model-performance/health"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let field = |name: &str| body[name].as_u64().ok_or(format!("health has no {name}"));
    Ok(Health {
        written: field("records_written")?,
        dropped: field("records_dropped")?,
    })
}

/// A generate request of exactly `size` bytes carrying a base64 "photo" (deterministic
/// noise, as a compressed photo is).
fn big_body(size: usize) -> Bytes {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let head = br#"{"model":"llava","prompt":"Rate this photo","stream":false,"images":[""#;
    let tail = br#""]}"#;
    let n = size.saturating_sub(head.len() + tail.len()) / 4 * 4;
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(head);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.push(ALPHABET[(x % 64) as usize]);
    }
    body.extend_from_slice(tail);
    Bytes::from(body)
}
