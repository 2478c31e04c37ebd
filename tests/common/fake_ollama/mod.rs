//! A fake Ollama server for the integration tests, following `ollama-api.md`.
//!
//! Start one with [`FakeOllama::start`] (or [`FakeOllama::start_with`] and a [`FakeConfig`]);
//! it binds `127.0.0.1:0` and serves from a spawned task until dropped or stopped.
//!
//! - **Native API**: `/api/generate` and `/api/chat` stream NDJSON by default (one JSON object
//!   with `"stream": false`); the final object carries real nanosecond measurements of what the
//!   fake did, every metric omitted when zero. `/api/embed`, `/api/embeddings`, `/api/tags`,
//!   `/api/ps`, `/api/show`, `/api/pull|push|create` (NDJSON progress), `/api/copy`,
//!   `/api/delete`, `/api/blobs/{digest}`, `/api/version` and `/`.
//! - **Compatibility routes**: `/v1/chat/completions`, `/v1/completions` (SSE with
//!   `"stream": true`, else JSON), `/v1/embeddings`, `/v1/models[/{model}]`, `/v1/messages`
//!   (Anthropic events) and `/v1/responses`, shaped as Ollama's middlewares write them.
//! - **Ollama's checks**: a `Host` that is not localhost or a loopback/private IP gets 403 with
//!   an empty body, and so does a browser `Origin` outside Ollama's default allow-list.
//! - **Steering**: `options.num_predict` (native) or `max_tokens` (compatibility routes) sets
//!   the number of tokens; a prompt containing `SCORE=<n>` makes the answer exactly
//!   `{"score": <n>, "reason": "ok"}`; the model name picks a failure (see [`Scenario`]).
//! - **Test-only routes**: any method on `/echo` or `/echo/...` describes the request it
//!   received; `/slow-headers` answers after `header_delay`.
//!
//! Everything is observable through [`FakeState`]: the requests as received, how each stream
//! ended, chunks written, connections. A [`Gate`] holds streams chunk by chunk.
//!
//! This file holds the public API (the fake, its configuration, state and gate); the
//! routes live in `router` (recording, Host/Origin checks), `inference` (generate, chat,
//! compatibility routes), `encoders` (each wire format), `embeddings`, `models` (tags, ps,
//! show, pull, ...), `replies` (error shapes), `test_routes`, `connections` and `util`.

#![allow(
    dead_code,
    reason = "each integration test compiles `mod common;` on its own and uses only part of the fake"
)]

mod connections;
mod embeddings;
mod encoders;
mod inference;
mod models;
mod replies;
mod router;
mod test_routes;
mod util;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::serve::{IncomingStream, Listener};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use self::connections::*;
use self::embeddings::*;
use self::encoders::*;
use self::inference::*;
use self::models::*;
use self::replies::*;
use self::router::*;
use self::test_routes::*;
use self::util::*;

/// The version `/api/version` reports.
pub const VERSION: &str = "0.33.0";
/// The 503 message of the `busy` model.
pub const BUSY_MESSAGE: &str = "server busy, please try again.  maximum pending requests exceeded";
/// The 500 message of the `crash` model.
pub const CRASH_MESSAGE: &str = "llama runner process has terminated: exit status 2";
/// The mid-stream error line of the `fail-midstream` model.
pub const MIDSTREAM_MESSAGE: &str =
    "an error was encountered while running the model: unexpected EOF";
/// Dimensions of every fake embedding.
pub const EMBEDDING_DIMS: usize = 8;
/// Tokens a `fail-midstream` model sends before its error line.
pub const FAIL_AFTER_TOKENS: usize = 3;
/// Tokens a `hangup` model sends before it drops the connection.
pub const HANGUP_AFTER_TOKENS: usize = 2;

/// `modified_at` of every installed model (2026-01-15T10:00:00Z): fixed, so replies repeat.
const MODIFIED_AT_UNIX_S: u64 = 1_768_471_200;
/// How long `/api/ps` says a loaded model stays loaded, as Ollama's default keep-alive.
const KEEP_ALIVE: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// A running fake Ollama.
pub struct FakeOllama {
    /// Where it listens (`127.0.0.1`, a free port).
    pub addr: SocketAddr,
    /// What it has seen and done.
    pub state: Arc<FakeState>,
    /// How it was started.
    pub config: Arc<FakeConfig>,
    kill: Arc<Kill>,
    server: JoinHandle<()>,
}

impl FakeOllama {
    /// Starts a fake with [`FakeConfig::default`].
    pub async fn start() -> FakeOllama {
        FakeOllama::start_with(FakeConfig::default()).await
    }

    /// Starts a fake on `127.0.0.1:0`, serving from a spawned task.
    pub async fn start_with(config: FakeConfig) -> FakeOllama {
        FakeOllama::start_at("127.0.0.1:0".parse().expect("address"), config).await
    }

    /// Starts a fake on a given address: a restart of an upstream that was stopped.
    pub async fn start_at(addr: SocketAddr, config: FakeConfig) -> FakeOllama {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the loopback address");
        let addr = listener.local_addr().expect("the listener has an address");
        let state = Arc::new(FakeState::default());
        let config = Arc::new(config);
        let kill = Arc::new(Kill::default());
        let listener = CountingListener {
            inner: listener,
            state: state.clone(),
            kill: kill.clone(),
        };
        let app = App {
            config: config.clone(),
            state: state.clone(),
        };
        let service = router(app).into_make_service_with_connect_info::<ConnInfo>();
        let server = tokio::spawn(async move {
            axum::serve(listener, service)
                .await
                .expect("the fake Ollama serves");
        });
        FakeOllama {
            addr,
            state,
            config,
            kill,
            server,
        }
    }

    /// The base URL, `http://127.0.0.1:PORT`, as `OLLAMA_HOST` would name it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and resets every open connection, idle or mid-response, as a killed
    /// `ollama serve` would. Also done on drop.
    pub fn stop(&self) {
        self.kill.fire();
        self.server.abort();
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a fake behaves.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Real time between two chunks of a stream, and between two tokens of a non-streaming
    /// generation.
    pub chunk_gap: Duration,
    /// Tokens generated when the request does not say (`options.num_predict`, `max_tokens`).
    pub tokens: usize,
    /// Delay before the response headers of every inference call (generate, chat, embed and
    /// the compatibility routes) and of `/slow-headers`: the model load. Reported as
    /// `load_duration`.
    pub header_delay: Duration,
    /// Installed models: `/api/tags`, `/api/show`, `/v1/models`; the `loaded` ones in `/api/ps`.
    pub models: Vec<FakeModel>,
    /// When true, inference on a model not in `models` is 404 `model 'x' not found`; when
    /// false, every model name is served. The [`Scenario`] names work either way.
    pub strict_models: bool,
    /// Holds every streamed chunk until the test releases it. Shared by all streams.
    pub gate: Option<Arc<Gate>>,
}

impl Default for FakeConfig {
    fn default() -> FakeConfig {
        FakeConfig {
            chunk_gap: Duration::from_millis(5),
            tokens: 8,
            header_delay: Duration::ZERO,
            models: vec![
                FakeModel::new("llama3.2:latest"),
                FakeModel {
                    family: "nomic-bert".into(),
                    capabilities: vec!["embedding".into()],
                    size_bytes: 274_302_450,
                    size_vram_bytes: 0,
                    parameter_size: "137M".into(),
                    quantization_level: "F16".into(),
                    context_length: 2048,
                    loaded: false,
                    ..FakeModel::new("nomic-embed-text:latest")
                },
            ],
            strict_models: false,
            gate: None,
        }
    }
}

/// An installed model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeModel {
    /// Full name with tag, e.g. `llama3.2:latest`.
    pub name: String,
    /// The weights blob, the `FROM` path in `/api/show`'s modelfile and a runner's `--model`.
    pub blob_path: String,
    /// On-disk size (`/api/tags`).
    pub size_bytes: u64,
    /// VRAM footprint when loaded (`/api/ps` `size_vram`; its `size` is the larger of the two).
    pub size_vram_bytes: u64,
    /// Like `3.2B`; `/api/show` derives `general.parameter_count` from it.
    pub parameter_size: String,
    /// Like `Q4_K_M`.
    pub quantization_level: String,
    /// Context length (`/api/tags` details, `/api/ps`, `<family>.context_length` in `/api/show`).
    pub context_length: u64,
    /// Listed by `/api/ps`.
    pub loaded: bool,
    /// Architecture, e.g. `llama`: `details.family` and the `model_info` key prefix.
    pub family: String,
    /// Like `completion`, `tools`, `embedding`.
    pub capabilities: Vec<String>,
}

impl FakeModel {
    /// A loaded 3.2B Q4_K_M llama with a blob path derived from `name`.
    pub fn new(name: &str) -> FakeModel {
        FakeModel {
            name: name.to_owned(),
            blob_path: format!(
                "/root/.ollama/models/blobs/sha256-{}",
                hex_digest("blob", name)
            ),
            size_bytes: 2_019_393_189,
            size_vram_bytes: 2_950_000_000,
            parameter_size: "3.2B".into(),
            quantization_level: "Q4_K_M".into(),
            context_length: 4096,
            loaded: true,
            family: "llama".into(),
            capabilities: vec!["completion".into(), "tools".into()],
        }
    }

    /// The manifest digest `/api/tags` and `/api/ps` report (64 hex digits, derived from the
    /// name).
    pub fn digest(&self) -> String {
        hex_digest("manifest", &self.name)
    }
}

/// Failure modes chosen by the model name, before any tag and after any namespace
/// (`hangup:7b` and `library/hangup` are `hangup`). They work with `strict_models` too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Any other name: served normally.
    Normal,
    /// `missing`, `no-such-*`, or any uninstalled model under `strict_models`: 404
    /// `{"error":"model 'x' not found"}` as JSON, even for a streaming request.
    NotFound,
    /// `busy`: 503 [`BUSY_MESSAGE`] at once (queue full).
    Busy,
    /// `crash`: 500 [`CRASH_MESSAGE`] after `header_delay` (the runner died while loading).
    Crash,
    /// `fail-midstream`: status 200, [`FAIL_AFTER_TOKENS`] tokens, then an error line and the
    /// end of the stream, no `done: true`. Non-streaming: 500 [`MIDSTREAM_MESSAGE`].
    FailMidstream,
    /// `hangup`: [`HANGUP_AFTER_TOKENS`] tokens, then the connection is dropped without the
    /// terminating chunk.
    Hangup,
    /// `no-metrics`: served normally, but the final object has no metrics at all (every
    /// field is optional).
    NoMetrics,
}

impl Scenario {
    /// The scenario a request for `model` gets under `config`.
    pub fn of(config: &FakeConfig, model: &str) -> Scenario {
        let base = model.rsplit('/').next().unwrap_or(model);
        let base = base.split(':').next().unwrap_or(base);
        match base {
            "missing" => Scenario::NotFound,
            _ if base.starts_with("no-such-") => Scenario::NotFound,
            "busy" => Scenario::Busy,
            "crash" => Scenario::Crash,
            "fail-midstream" => Scenario::FailMidstream,
            "hangup" => Scenario::Hangup,
            "no-metrics" => Scenario::NoMetrics,
            _ if config.strict_models && find_model(config, model).is_none() => Scenario::NotFound,
            _ => Scenario::Normal,
        }
    }
}

/// What the fake has seen and done. Counters only grow, except `open_connections`.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Every request, in arrival order, as received (recorded before the Host/Origin checks).
    pub requests: Mutex<Vec<RecordedRequest>>,
    /// Work begun: inference calls that passed validation (streaming or not, before
    /// `header_delay`) and pull/push/create calls.
    pub streams_started: AtomicU64,
    /// Work whose response the fake finished normally, whatever it said: a `done: true`, an
    /// error line, a 500 from `crash`.
    pub streams_completed: AtomicU64,
    /// Work dropped before the fake finished it: the client or the proxy went away while
    /// waiting for headers, while a non-streaming reply was generated, or mid-stream.
    pub streams_cancelled: AtomicU64,
    /// Work the fake cut itself (`hangup`).
    pub streams_aborted: AtomicU64,
    /// Body chunks written by streams (each NDJSON line or group of SSE events is one chunk).
    pub chunks_sent: AtomicU64,
    /// TCP connections accepted so far.
    pub connections_accepted: AtomicU64,
    /// TCP connections open now.
    pub open_connections: AtomicU64,
    changed: Notify,
    next_id: AtomicU64,
}

/// A snapshot of [`FakeState`]'s counters, for `assert_eq!`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub streams_started: u64,
    pub streams_completed: u64,
    pub streams_cancelled: u64,
    pub streams_aborted: u64,
    pub chunks_sent: u64,
    pub connections_accepted: u64,
    pub open_connections: u64,
}

impl FakeState {
    /// The counters now.
    pub fn counters(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        Counters {
            requests: self.request_count() as u64,
            streams_started: get(&self.streams_started),
            streams_completed: get(&self.streams_completed),
            streams_cancelled: get(&self.streams_cancelled),
            streams_aborted: get(&self.streams_aborted),
            chunks_sent: get(&self.chunks_sent),
            connections_accepted: get(&self.connections_accepted),
            open_connections: get(&self.open_connections),
        }
    }

    /// How many requests have arrived.
    pub fn request_count(&self) -> usize {
        self.requests.lock().expect("requests lock").len()
    }

    /// A copy of every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// The latest request to `path`, if any. ollameter's own requests (the kind's detection
    /// at start, `GET /api/version`, sent in the background; health probes; telemetry) may
    /// arrive after the call a test made, so tests name the path they sent.
    pub fn last_request_to(&self, path: &str) -> Option<RecordedRequest> {
        let requests = self.requests.lock().expect("requests lock");
        requests.iter().rev().find(|r| r.path == path).cloned()
    }

    /// Waits until `done` holds, re-checking after every change of state (request, counter,
    /// connection); false if `timeout` passes first.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&FakeState) -> bool) -> bool {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                let mut changed = std::pin::pin!(changed);
                changed.as_mut().enable();
                if done(self) {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_requests(&self, n: u64, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| s.counters().requests >= n).await
    }

    /// Waits until at least `n` streams have started.
    pub async fn wait_started(&self, n: u64, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| s.counters().streams_started >= n)
            .await
    }

    /// Waits until at least `n` streams have completed.
    pub async fn wait_completed(&self, n: u64, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| s.counters().streams_completed >= n)
            .await
    }

    /// Waits until at least `n` streams have been cancelled by the other side.
    pub async fn wait_cancelled(&self, n: u64, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| s.counters().streams_cancelled >= n)
            .await
    }

    /// Waits until at most `n` connections are open.
    pub async fn wait_open_connections_at_most(&self, n: u64, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| s.counters().open_connections <= n)
            .await
    }

    fn bump(&self, counter: &AtomicU64) -> u64 {
        let value = counter.fetch_add(1, Ordering::SeqCst) + 1;
        self.changed.notify_waiters();
        value
    }

    fn drop_connection(&self) {
        self.open_connections.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn record(&self, request: RecordedRequest) {
        self.requests.lock().expect("requests lock").push(request);
        self.changed.notify_waiters();
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    pub version: Version,
    /// Headers as received (hyper lowercases the names).
    pub headers: HeaderMap,
    /// The whole body, byte for byte.
    pub body: Bytes,
    /// Which TCP connection carried it (1, 2, ... in accept order): shows connection reuse.
    pub connection_id: u64,
    pub peer: SocketAddr,
    pub received_at: Instant,
}

impl RecordedRequest {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON; panics if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the recorded body is JSON")
    }
}

/// Holds streams chunk by chunk: a stream writes its next chunk only after the test has
/// [`release`](Gate::release)d one more, so a test can check what the client holds before
/// the fake sends anything else. Non-streaming replies ignore the gate.
#[derive(Debug)]
pub struct Gate {
    permits: Semaphore,
    sent_at: Mutex<Vec<Instant>>,
    changed: Notify,
}

impl Gate {
    /// A closed gate; put it in [`FakeConfig::gate`].
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            permits: Semaphore::new(0),
            sent_at: Mutex::new(Vec::new()),
            changed: Notify::new(),
        })
    }

    /// Lets `n` more chunks through.
    pub fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Chunks written through the gate so far.
    pub fn sent(&self) -> u64 {
        self.sent_at.lock().expect("gate lock").len() as u64
    }

    /// When each chunk was handed to the connection, in order.
    pub fn sent_at(&self) -> Vec<Instant> {
        self.sent_at.lock().expect("gate lock").clone()
    }

    /// Waits until at least `n` chunks have been written; false on timeout.
    pub async fn wait_sent(&self, n: u64, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                let mut changed = std::pin::pin!(changed);
                changed.as_mut().enable();
                if self.sent() >= n {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    async fn pass(&self) {
        self.permits
            .acquire()
            .await
            .expect("the gate is never closed")
            .forget();
    }

    fn record(&self) {
        self.sent_at.lock().expect("gate lock").push(Instant::now());
        self.changed.notify_waiters();
    }
}

/// FNV-1a (64 bit) of `bytes`: the hash `/echo` reports, as 16 lowercase hex digits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The embedding the fake returns for `text`: [`EMBEDDING_DIMS`] values, unit length,
/// derived from the text alone.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    let mut seed = fnv1a64(text.as_bytes());
    let raw: Vec<f64> = (0..EMBEDDING_DIMS)
        .map(|_| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    raw.iter().map(|x| (x / norm) as f32).collect()
}

/// The text the fake generates for a prompt, with `tokens` as the default length: the
/// `SCORE=<n>` answer if the prompt asks for one, else `tok0 tok1 ...`.
pub fn expected_text(prompt: &str, tokens: usize) -> String {
    plan_tokens(prompt, tokens).concat()
}
