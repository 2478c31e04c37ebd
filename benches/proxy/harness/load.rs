//! Load generators. Closed-loop throughput and latency come from `wrk` (Debian's package)
//! where it is installed, with a Rust client of the same shape as the fallback; streams,
//! large bodies and fixed-rate load come from Rust clients (reqwest) in this process,
//! which share the fake Ollama's clock and so can time every chunk.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use super::stats::percentile;
use super::upstream::{CHUNKS_HEADER, INTERVAL_HEADER};

/// The small non-streaming request of scenario 1.
pub const SMALL_BODY: &str =
    r#"{"model":"llama3.2","prompt":"Why is the sky blue?","stream":false}"#;
/// The streaming request of scenario 2.
pub const STREAM_BODY: &str =
    r#"{"model":"llama3.2","prompt":"Why is the sky blue?","stream":true}"#;

/// Requests a fixed-rate run may have open at once before it skips sends (a proxy that
/// falls this far behind has failed the scenario anyway).
const MAX_IN_FLIGHT: usize = 1024;

/// A closed-loop run: `connections` clients, each sending its next request as soon as its
/// last one is answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Closed {
    /// Requests answered with a 2xx status.
    pub requests: u64,
    /// Length of the run.
    pub seconds: f64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile, microseconds.
    pub p999_us: f64,
    /// Failed requests (connection errors, timeouts, non-2xx).
    pub errors: u64,
}

impl Closed {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// A reqwest client as an application would hold one: keep-alive pool, no proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .build()
        .expect("HTTP client")
}

/// Runs `wrk` (one thread, `connections` connections) posting [`SMALL_BODY`] to `url`.
pub fn wrk(wrk: &Path, dir: &Path, url: &str, connections: usize, seconds: u64) -> Closed {
    let script = dir.join("post.lua");
    std::fs::write(
        &script,
        format!(
            r#"wrk.method = "POST"
wrk.body = [[{SMALL_BODY}]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"#
        ),
    )
    .expect("write the wrk script");
    let output = Command::new(wrk)
        .args(["-t1", &format!("-c{connections}"), &format!("-d{seconds}s")])
        .args(["--timeout", "10s", "-s"])
        .arg(&script)
        .arg(url)
        .output()
        .expect("run wrk");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no result: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let n: Vec<f64> = line
        .split_whitespace()
        .map(|v| v.parse().expect("wrk number"))
        .collect();
    let errors = n[5] as u64;
    Closed {
        requests: (n[0] as u64).saturating_sub(errors),
        seconds: n[1] / 1e6,
        p50_us: n[2],
        p99_us: n[3],
        p999_us: n[4],
        errors,
    }
}

/// The Rust fallback for [`wrk`]: `connections` tasks posting [`SMALL_BODY`] to `url`
/// for `duration`.
pub async fn closed_loop(url: &str, connections: usize, duration: Duration) -> Closed {
    let client = client();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match post(&client, &url, Bytes::from_static(SMALL_BODY.as_bytes())).await {
                        Ok(()) => latencies.push(t.elapsed().as_secs_f64() * 1e6),
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("load task");
        latencies.extend(l);
        errors += e;
    }
    Closed {
        requests: latencies.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
        p50_us: percentile(&latencies, 50.0),
        p99_us: percentile(&latencies, 99.0),
        p999_us: percentile(&latencies, 99.9),
        errors,
    }
}

/// One POST, read to the end; an error unless the answer was 2xx.
async fn post(client: &reqwest::Client, url: &str, body: Bytes) -> Result<(), String> {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    resp.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// Timings of `n` sequential POSTs of `body` (a large one), microseconds.
pub async fn sequential(client: &reqwest::Client, url: &str, body: &Bytes, n: usize) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        post(client, url, body.clone()).await.expect("large POST");
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    latencies
}

/// What one streamed answer looked like from the client.
#[derive(Debug, Clone, Default)]
pub struct StreamSample {
    /// Request sent to first body bytes, microseconds.
    pub ttft_us: f64,
    /// For each NDJSON line: its arrival minus the moment the fake sent it, microseconds.
    pub chunk_delays_us: Vec<f64>,
}

/// Streams one generate of `chunks` lines `interval_us` apart from `url` and times it.
/// `epoch` is the clock the fake stamps its lines with.
pub async fn stream_once(
    client: &reqwest::Client,
    url: &str,
    chunks: usize,
    interval_us: u64,
    epoch: Instant,
) -> StreamSample {
    let t = Instant::now();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header(CHUNKS_HEADER, chunks.to_string())
        .header(INTERVAL_HEADER, interval_us.to_string())
        .body(STREAM_BODY)
        .send()
        .await
        .expect("stream request");
    assert!(
        resp.status().is_success(),
        "stream answered {}",
        resp.status()
    );
    let mut body = resp.bytes_stream();
    let mut sample = StreamSample::default();
    let mut partial: Vec<u8> = Vec::new();
    while let Some(bytes) = body.next().await {
        let bytes = bytes.expect("stream body");
        let arrived = epoch.elapsed().as_nanos() as f64;
        if sample.chunk_delays_us.is_empty() && partial.is_empty() {
            sample.ttft_us = t.elapsed().as_secs_f64() * 1e6;
        }
        partial.extend_from_slice(&bytes);
        while let Some(end) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            let sent = sent_ns(&line).expect("a line stamped by the fake");
            sample.chunk_delays_us.push((arrived - sent) / 1e3);
        }
    }
    assert_eq!(
        sample.chunk_delays_us.len(),
        chunks,
        "every line of the stream arrived"
    );
    sample
}

/// The `sent_ns` stamp of a line from the fake.
fn sent_ns(line: &[u8]) -> Option<f64> {
    let key = br#""sent_ns":"#;
    let at = line.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: String = line[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|b| *b as char)
        .collect();
    digits.parse().ok()
}

/// A fixed-rate (open-loop) run: requests are sent on schedule whether or not earlier
/// ones were answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenLoop {
    /// Requests sent.
    pub sent: u64,
    /// Answered with a 2xx status.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Not sent because [`MAX_IN_FLIGHT`] requests were already open.
    pub skipped: u64,
    /// From the first send to the last answer.
    pub seconds: f64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
}

/// Posts [`SMALL_BODY`] to `url` at `rate` requests per second for `duration`.
pub async fn open_loop(url: &str, rate: f64, duration: Duration) -> OpenLoop {
    let client = client();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = Vec::new();
    let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut result = OpenLoop::default();
    loop {
        ticker.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * rate) as u64;
        while result.sent + result.skipped < due {
            if in_flight.load(std::sync::atomic::Ordering::Relaxed) >= MAX_IN_FLIGHT {
                result.skipped += 1;
                continue;
            }
            result.sent += 1;
            let (client, url, in_flight) = (client.clone(), url.to_string(), in_flight.clone());
            in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let ok = post(&client, &url, Bytes::from_static(SMALL_BODY.as_bytes()))
                    .await
                    .is_ok();
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                (ok, t.elapsed().as_secs_f64() * 1e6)
            }));
        }
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (ok, us) = task.await.expect("request task");
        if ok {
            result.ok += 1;
            latencies.push(us);
        } else {
            result.failed += 1;
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    result.p50_us = percentile(&latencies, 50.0);
    result.p99_us = percentile(&latencies, 99.0);
    result
}
