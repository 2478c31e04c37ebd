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

#![allow(
    dead_code,
    reason = "each integration test compiles `mod common;` on its own and uses only part of the fake"
)]

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

    /// The latest request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.requests.lock().expect("requests lock").last().cloned()
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

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

/// Fired once, when the fake stops: every open connection fails its next read or write.
#[derive(Debug, Default)]
struct Kill {
    fired: AtomicBool,
    notify: Arc<Notify>,
}

impl Kill {
    fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

/// The peer and the number of the connection a request came on.
#[derive(Clone, Copy, Debug)]
struct ConnInfo {
    peer: SocketAddr,
    id: u64,
}

impl Connected<IncomingStream<'_, CountingListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, CountingListener>) -> ConnInfo {
        *stream.remote_addr()
    }
}

/// A TCP listener that counts connections and can kill them all.
struct CountingListener {
    inner: TcpListener,
    state: Arc<FakeState>,
    kill: Arc<Kill>,
}

impl Listener for CountingListener {
    type Io = Conn;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Conn, ConnInfo) {
        let (io, peer) = Listener::accept(&mut self.inner).await;
        // Go's net/http sets TCP_NODELAY too: small chunks leave at once.
        io.set_nodelay(true).expect("set TCP_NODELAY");
        self.state.open_connections.fetch_add(1, Ordering::SeqCst);
        let id = self.state.bump(&self.state.connections_accepted);
        let conn = Conn {
            io,
            killed: Box::pin(self.kill.notify.clone().notified_owned()),
            kill: self.kill.clone(),
            state: self.state.clone(),
        };
        (conn, ConnInfo { peer, id })
    }

    fn local_addr(&self) -> io::Result<ConnInfo> {
        Ok(ConnInfo {
            peer: self.inner.local_addr()?,
            id: 0,
        })
    }
}

/// An accepted connection: counted while open, reset when the fake stops.
struct Conn {
    io: TcpStream,
    /// Created at accept, so it sees a `notify_waiters` even before its first poll.
    killed: Pin<Box<OwnedNotified>>,
    kill: Arc<Kill>,
    state: Arc<FakeState>,
}

impl Conn {
    /// Whether the fake has stopped; registers for the wake-up when it has not.
    fn poll_killed(&mut self, cx: &mut Context<'_>) -> bool {
        self.kill.fired.load(Ordering::SeqCst) || self.killed.as_mut().poll(cx).is_ready()
    }
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "the fake Ollama stopped")
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_killed(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_killed(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_killed(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.state.drop_connection();
    }
}

// ---------------------------------------------------------------------------------------------
// Router, recording and Ollama's Host/Origin checks
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct App {
    config: Arc<FakeConfig>,
    state: Arc<FakeState>,
}

fn router(app: App) -> Router {
    let infer = |api: Api| move |State(app): State<App>, body: Bytes| generation(app, api, body);
    let embed = |api: EmbedApi| move |State(app): State<App>, body: Bytes| embed(app, api, body);
    let progress =
        |verb: Verb| move |State(app): State<App>, body: Bytes| progress(app, verb, body);
    Router::new()
        .route("/", get(|| async { "Ollama is running" }))
        .route(
            "/api/version",
            get(|| async { gin_json(StatusCode::OK, &json!({"version": VERSION})) }),
        )
        .route("/api/generate", post(infer(Api::Generate)))
        .route("/api/chat", post(infer(Api::Chat)))
        .route("/api/embed", post(embed(EmbedApi::Embed)))
        .route("/api/embeddings", post(embed(EmbedApi::Legacy)))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/pull", post(progress(Verb::Pull)))
        .route("/api/push", post(progress(Verb::Push)))
        .route("/api/create", post(progress(Verb::Create)))
        .route("/api/copy", post(copy))
        .route("/api/delete", delete(delete_model))
        .route("/api/blobs/{digest}", post(create_blob).head(blob_exists))
        .route("/v1/chat/completions", post(infer(Api::OpenAiChat)))
        .route("/v1/completions", post(infer(Api::OpenAiCompletion)))
        .route("/v1/embeddings", post(embed(EmbedApi::OpenAi)))
        .route("/v1/messages", post(infer(Api::Anthropic)))
        .route("/v1/responses", post(infer(Api::Responses)))
        .route("/v1/models", get(openai_models))
        .route("/v1/models/{model}", get(openai_model))
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/slow-headers", any(slow_headers))
        // gin answers an unknown path, and a known path with another method, the same way.
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "404 page not found",
    )
        .into_response()
}

/// Records the request as received, then applies Ollama's CORS and Host checks.
async fn observe(
    State(app): State<App>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    app.state.record(RecordedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        version: parts.version,
        headers: parts.headers.clone(),
        body: body.clone(),
        connection_id: conn.id,
        peer: conn.peer,
        received_at: Instant::now(),
    });

    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path = parts.uri.path();
    let test_route = path == "/echo" || path.starts_with("/echo/") || path == "/slow-headers";
    if !test_route
        && let Some(origin) = parts.headers.get(header::ORIGIN)
        && !origin_allowed(origin.to_str().unwrap_or(""), &host)
    {
        return StatusCode::FORBIDDEN.into_response();
    }
    match check_host(&host) {
        HostCheck::Refused => return StatusCode::FORBIDDEN.into_response(),
        HostCheck::LocalName if parts.method == Method::OPTIONS => {
            return StatusCode::NO_CONTENT.into_response();
        }
        _ => {}
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

#[derive(Debug, PartialEq, Eq)]
enum HostCheck {
    Ip,
    LocalName,
    Refused,
}

/// Ollama's `allowedHostsMiddleware` for a server on loopback (the machine-name check left
/// out), except that a bracketed IPv6 literal without a port is accepted.
fn check_host(host: &str) -> HostCheck {
    let host = split_host_port(host);
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        let local = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unspecified(),
        };
        return if local {
            HostCheck::Ip
        } else {
            HostCheck::Refused
        };
    }
    let host = host.to_ascii_lowercase();
    let local = host.is_empty()
        || host == "localhost"
        || [".localhost", ".local", ".internal"]
            .iter()
            .any(|tld| host.ends_with(tld));
    if local {
        HostCheck::LocalName
    } else {
        HostCheck::Refused
    }
}

/// Go's `net.SplitHostPort`, falling back to the whole string when it has no port.
fn split_host_port(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return match rest.split_once("]:") {
            Some((host, _port)) => host,
            None => hostport,
        };
    }
    match hostport.split_once(':') {
        Some((host, port)) if !port.contains(':') => host,
        _ => hostport,
    }
}

/// gin-contrib/cors with Ollama's default `OLLAMA_ORIGINS`.
fn origin_allowed(origin: &str, host: &str) -> bool {
    if origin.is_empty()
        || origin == format!("http://{host}")
        || origin == format!("https://{host}")
    {
        return true;
    }
    let local = ["localhost", "127.0.0.1", "0.0.0.0"].iter().any(|name| {
        ["http", "https"].iter().any(|scheme| {
            let base = format!("{scheme}://{name}");
            origin == base || origin.starts_with(&format!("{base}:"))
        })
    });
    let schemes = [
        "app://",
        "file://",
        "tauri://",
        "vscode-webview://",
        "vscode-file://",
        "chrome-extension://",
        "moz-extension://",
        "safari-web-extension://",
    ];
    local || schemes.iter().any(|scheme| origin.starts_with(scheme))
}

// ---------------------------------------------------------------------------------------------
// Response shapes shared by the handlers
// ---------------------------------------------------------------------------------------------

/// JSON as Go's `encoding/json` writes it: HTML-sensitive characters and the JavaScript
/// line separators escaped (they can only occur inside strings, so a plain replace is safe).
fn go_json(value: &impl Serialize) -> Vec<u8> {
    let text = serde_json::to_string(value).expect("fake replies serialize");
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text.into_bytes();
    }
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into_bytes()
}

/// gin's `c.JSON`: `application/json; charset=utf-8`, no trailing newline.
fn gin_json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = go_json(value);
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Go's `json.NewEncoder(w).Encode`, as Ollama's compatibility middlewares write:
/// `application/json` and a trailing newline.
fn encoder_json(status: StatusCode, value: &impl Serialize) -> Response {
    let mut body = go_json(value);
    body.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn native_error(status: StatusCode, message: &str) -> Response {
    gin_json(status, &json!({ "error": message }))
}

fn not_found_model(model: &str) -> Response {
    native_error(StatusCode::NOT_FOUND, &format!("model '{model}' not found"))
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiErrorBody<'a>,
}

#[derive(Serialize)]
struct OpenAiErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: Option<()>,
}

/// The OpenAI middleware's error: a 400 it raises itself is `invalid_request_error`; an
/// error from the native handler keeps its status but is typed `api_error` (Ollama wraps it
/// as a 500).
fn openai_error(status: StatusCode, message: &str) -> Response {
    let kind = if status == StatusCode::BAD_REQUEST {
        "invalid_request_error"
    } else {
        "api_error"
    };
    let error = OpenAiErrorBody {
        message,
        kind,
        param: None,
        code: None,
    };
    encoder_json(status, &OpenAiError { error })
}

#[derive(Serialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicErrorBody<'a>,
    request_id: String,
}

#[derive(Serialize)]
struct AnthropicErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

/// The Anthropic middleware's error; handler errors come out as `api_error`, as in Ollama.
fn anthropic_error(status: StatusCode, message: &str, request_id: String) -> Response {
    let kind = if status == StatusCode::BAD_REQUEST {
        "invalid_request_error"
    } else {
        "api_error"
    };
    let error = AnthropicError {
        kind: "error",
        error: AnthropicErrorBody { kind, message },
        request_id,
    };
    encoder_json(status, &error)
}

/// A response whose body fails at once: hyper drops the connection mid-response.
fn hangup_reply(content_type: &'static str) -> Response {
    let failure = futures_util::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the fake Ollama hung up",
        ))
    });
    (
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(failure),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Inference: generate, chat and the compatibility routes
// ---------------------------------------------------------------------------------------------

/// The shape an inference request came in and its reply goes out in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Generate,
    Chat,
    OpenAiChat,
    OpenAiCompletion,
    Anthropic,
    Responses,
}

impl Api {
    fn is_native(self) -> bool {
        matches!(self, Api::Generate | Api::Chat)
    }

    fn error(self, state: &FakeState, status: StatusCode, message: &str) -> Response {
        match self {
            Api::Generate | Api::Chat => native_error(status, message),
            Api::OpenAiChat | Api::OpenAiCompletion | Api::Responses => {
                openai_error(status, message)
            }
            Api::Anthropic => anthropic_error(status, message, hex_id("req", state.next_id())),
        }
    }
}

/// How many tokens a request asks for.
#[derive(Clone, Copy, Debug)]
enum Limit {
    /// [`FakeConfig::tokens`].
    Default,
    /// Native `options.num_predict`: exactly this many (0 allowed), `done_reason` `stop`.
    Exact(usize),
    /// `max_tokens` and the like: at most this many; fewer than the default gives
    /// `done_reason` `length`.
    AtMost(usize),
}

/// An inference request, reduced to what steers the fake.
#[derive(Debug)]
struct GenRequest {
    model: String,
    stream: bool,
    limit: Limit,
    /// Every piece of prompt text (system, prompt, message contents), space-joined.
    prompt: String,
    /// Native only: no prompt (generate) or no messages (chat), so Ollama only loads the
    /// model and answers `done_reason` `load` (or `unload` with `keep_alive: 0`).
    load_only: bool,
    unload: bool,
    include_usage: bool,
}

impl GenRequest {
    fn parse(api: Api, body: &[u8]) -> Result<GenRequest, String> {
        let value = parse_body(body, api.is_native())?;
        let str_of = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or("");
        let token_cap = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_u64)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        };
        let model = str_of("model").to_owned();
        let stream = value
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(api.is_native());
        let mut prompt = String::new();
        let text_fields: &[&str] = match api {
            Api::Generate => &["system", "prompt", "suffix"],
            Api::Chat | Api::OpenAiChat => &["messages"],
            Api::OpenAiCompletion => &["prompt"],
            Api::Anthropic => &["system", "messages"],
            Api::Responses => &["instructions", "input"],
        };
        for field in text_fields {
            if let Some(v) = value.get(*field) {
                collect_text(v, &mut prompt);
            }
        }
        let messages = value
            .get("messages")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let max_tokens = value.get("max_tokens").and_then(Value::as_i64).unwrap_or(0);
        match api {
            Api::OpenAiChat if messages == 0 => {
                return Err("[] is too short - 'messages'".into());
            }
            Api::Anthropic if model.is_empty() => return Err("model is required".into()),
            Api::Anthropic if max_tokens <= 0 => {
                return Err("max_tokens is required and must be positive".into());
            }
            Api::Anthropic if messages == 0 => return Err("messages is required".into()),
            _ if model.is_empty() => return Err("model is required".into()),
            _ => {}
        }
        let limit = match api {
            Api::Generate | Api::Chat => {
                match value
                    .pointer("/options/num_predict")
                    .and_then(Value::as_i64)
                {
                    Some(n) if n >= 0 => Limit::Exact(usize::try_from(n).unwrap_or(usize::MAX)),
                    _ => Limit::Default,
                }
            }
            Api::OpenAiChat => {
                at_most(token_cap("max_completion_tokens").or_else(|| token_cap("max_tokens")))
            }
            Api::OpenAiCompletion | Api::Anthropic => at_most(token_cap("max_tokens")),
            Api::Responses => at_most(token_cap("max_output_tokens")),
        };
        let images = value
            .get("images")
            .and_then(Value::as_array)
            .is_some_and(|i| !i.is_empty());
        let load_only = match api {
            Api::Generate => str_of("prompt").is_empty() && !images,
            Api::Chat => messages == 0,
            _ => false,
        };
        Ok(GenRequest {
            model,
            stream,
            limit,
            prompt,
            load_only,
            unload: value.get("keep_alive").is_some_and(is_zero_duration),
            include_usage: value
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

fn at_most(max_tokens: Option<usize>) -> Limit {
    max_tokens.map_or(Limit::Default, Limit::AtMost)
}

/// The body as a JSON object, or the message Ollama gives for it.
fn parse_body(body: &[u8], native: bool) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(if native {
            "missing request body"
        } else {
            "EOF"
        }
        .into());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("json: cannot unmarshal non-object into Go value of request type".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Appends every string in `value`: strings themselves, arrays, and an object's `content`
/// and `text` (messages, content parts, Responses input items).
fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(s);
        }
        Value::Array(items) => items.iter().for_each(|item| collect_text(item, out)),
        Value::Object(map) => {
            for key in ["content", "text"] {
                if let Some(v) = map.get(key) {
                    collect_text(v, out);
                }
            }
        }
        _ => {}
    }
}

/// `keep_alive` of zero: `0`, `"0"`, `"0s"`, `"0m"`.
fn is_zero_duration(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => {
            let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            digits.parse::<f64>().is_ok_and(|d| d == 0.0)
        }
        _ => false,
    }
}

/// The prompt's token count as the fake sees it: its words.
fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// The tokens the fake generates for `prompt`: the `SCORE=<n>` answer in four pieces, else
/// `count` words.
fn plan_tokens(prompt: &str, count: usize) -> Vec<String> {
    if let Some(score) = find_score(prompt) {
        return vec![
            r#"{"score": "#.to_owned(),
            score.to_owned(),
            r#", "reason": "#.to_owned(),
            r#""ok"}"#.to_owned(),
        ];
    }
    (0..count).map(word_token).collect()
}

/// Token `i` of the default answer `tok0 tok1 tok2 ...`.
fn word_token(i: usize) -> String {
    if i == 0 {
        "tok0".to_owned()
    } else {
        format!(" tok{i}")
    }
}

/// `<n>` of the first `SCORE=<n>` in the prompt.
fn find_score(prompt: &str) -> Option<&str> {
    let rest = &prompt[prompt.find("SCORE=")? + "SCORE=".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|n| !n.is_empty())
}

/// The tokens and the `done_reason` for a request. A `SCORE=<n>` answer ignores the limit.
fn plan(config: &FakeConfig, request: &GenRequest) -> (Vec<String>, &'static str) {
    let (count, reason) = match request.limit {
        Limit::Default => (config.tokens, "stop"),
        Limit::Exact(n) => (n, "stop"),
        Limit::AtMost(n) if n < config.tokens => (n, "length"),
        Limit::AtMost(_) => (config.tokens, "stop"),
    };
    let reason = if find_score(&request.prompt).is_some() {
        "stop"
    } else {
        reason
    };
    (plan_tokens(&request.prompt, count), reason)
}

/// Counts one unit of work as started, and as cancelled if dropped before it is ended.
struct StreamGuard {
    state: Arc<FakeState>,
    ended: bool,
}

impl StreamGuard {
    fn start(state: &Arc<FakeState>) -> StreamGuard {
        state.bump(&state.streams_started);
        StreamGuard {
            state: state.clone(),
            ended: false,
        }
    }

    fn finish(&mut self) {
        if !std::mem::replace(&mut self.ended, true) {
            self.state.bump(&self.state.streams_completed);
        }
    }

    fn abort(&mut self) {
        if !std::mem::replace(&mut self.ended, true) {
            self.state.bump(&self.state.streams_aborted);
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.state.bump(&self.state.streams_cancelled);
        }
    }
}

/// Paces a stream: `chunk_gap` between chunks, then the gate if any.
struct Pacer {
    gap: Duration,
    gate: Option<Arc<Gate>>,
    first: bool,
}

impl Pacer {
    fn new(gap: Duration, gate: Option<Arc<Gate>>) -> Pacer {
        Pacer {
            gap,
            gate,
            first: true,
        }
    }

    async fn pace(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            sleep(self.gap).await;
        }
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
    }

    fn sent(&self, state: &FakeState) {
        state.bump(&state.chunks_sent);
        if let Some(gate) = &self.gate {
            gate.record();
        }
    }
}

async fn sleep(duration: Duration) {
    if !duration.is_zero() {
        tokio::time::sleep(duration).await;
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// What a generation produces, in native terms; each becomes one chunk of any shape.
#[derive(Debug)]
enum Event {
    Token(String),
    Done(Final),
    Error(&'static str),
    Hangup,
}

#[derive(Debug)]
struct Final {
    done_reason: &'static str,
    metrics: Metrics,
    context: Vec<u64>,
}

/// Ollama's `Metrics`: nanoseconds and counts, each omitted when zero.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Metrics {
    #[serde(skip_serializing_if = "is_zero")]
    total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    prompt_eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    prompt_eval_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    eval_duration: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How a generation ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Done,
    ErrorAfter(usize),
    HangupAfter(usize),
}

/// One generation in progress: yields its events in time, measuring itself.
struct Generation {
    tokens: Vec<String>,
    next: usize,
    finished: bool,
    ending: Ending,
    done_reason: &'static str,
    with_metrics: bool,
    context: bool,
    prompt_eval_count: u64,
    started_at: Instant,
    loaded_at: Instant,
    prompted_at: Instant,
    pacer: Pacer,
}

impl Generation {
    async fn next_event(&mut self) -> Option<Event> {
        if self.finished {
            return None;
        }
        self.pacer.pace().await;
        let i = self.next;
        self.next += 1;
        match self.ending {
            Ending::ErrorAfter(k) if i == k => {
                self.finished = true;
                return Some(Event::Error(MIDSTREAM_MESSAGE));
            }
            Ending::HangupAfter(k) if i == k => {
                self.finished = true;
                return Some(Event::Hangup);
            }
            _ => {}
        }
        if let Some(token) = self.tokens.get(i) {
            return Some(Event::Token(token.clone()));
        }
        self.finished = true;
        Some(Event::Done(self.finish()))
    }

    fn finish(&self) -> Final {
        let now = Instant::now();
        let eval_count = self.tokens.len() as u64;
        if !self.with_metrics {
            return Final {
                done_reason: self.done_reason,
                metrics: Metrics::default(),
                context: Vec::new(),
            };
        }
        let metrics = Metrics {
            total_duration: nanos(now - self.started_at),
            load_duration: nanos(self.loaded_at - self.started_at),
            prompt_eval_count: self.prompt_eval_count,
            prompt_eval_duration: if self.prompt_eval_count > 0 {
                nanos(self.prompted_at - self.loaded_at)
            } else {
                0
            },
            eval_count,
            eval_duration: if eval_count > 0 {
                nanos(now - self.prompted_at)
            } else {
                0
            },
        };
        let context = if self.context {
            (0..self.prompt_eval_count + eval_count)
                .map(|i| 128_000 + i)
                .collect()
        } else {
            Vec::new()
        };
        Final {
            done_reason: self.done_reason,
            metrics,
            context,
        }
    }
}

/// Generate, chat, and the OpenAI, Anthropic and Responses routes.
async fn generation(app: App, api: Api, body: Bytes) -> Response {
    let started_at = Instant::now();
    let request = match GenRequest::parse(api, &body) {
        Ok(request) => request,
        Err(message) => return api.error(&app.state, StatusCode::BAD_REQUEST, &message),
    };
    let scenario = Scenario::of(&app.config, &request.model);
    match scenario {
        Scenario::NotFound => {
            let message = format!("model '{}' not found", request.model);
            return api.error(&app.state, StatusCode::NOT_FOUND, &message);
        }
        Scenario::Busy => {
            return api.error(&app.state, StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE);
        }
        _ => {}
    }
    let mut guard = StreamGuard::start(&app.state);
    sleep(app.config.header_delay).await;
    if scenario == Scenario::Crash {
        guard.finish();
        return api.error(&app.state, StatusCode::INTERNAL_SERVER_ERROR, CRASH_MESSAGE);
    }
    let loaded_at = Instant::now();
    if request.load_only {
        guard.finish();
        return load_reply(api, &request);
    }
    let prompt_eval_count = word_count(&request.prompt);
    let (tokens, done_reason) = plan(&app.config, &request);
    let ending = match scenario {
        Scenario::FailMidstream => Ending::ErrorAfter(FAIL_AFTER_TOKENS.min(tokens.len())),
        Scenario::Hangup => Ending::HangupAfter(HANGUP_AFTER_TOKENS.min(tokens.len())),
        _ => Ending::Done,
    };
    let gate = if request.stream {
        app.config.gate.clone()
    } else {
        None
    };
    let generation = Generation {
        tokens,
        next: 0,
        finished: false,
        ending,
        done_reason,
        with_metrics: scenario != Scenario::NoMetrics,
        context: api == Api::Generate,
        prompt_eval_count,
        started_at,
        loaded_at,
        prompted_at: Instant::now(),
        pacer: Pacer::new(app.config.chunk_gap, gate),
    };
    let encoder = Encoder::new(api, &request, app.state.next_id(), prompt_eval_count);
    if request.stream {
        stream_reply(api, generation, encoder, guard, app.state.clone())
    } else {
        collect_reply(api, generation, encoder, guard, &app.state).await
    }
}

/// The native answer to a request that only loads (or unloads) the model.
fn load_reply(api: Api, request: &GenRequest) -> Response {
    let done_reason = Some(if request.unload { "unload" } else { "load" });
    let created_at = rfc3339(SystemTime::now());
    match api {
        Api::Chat => gin_json(
            StatusCode::OK,
            &ChatChunk {
                model: &request.model,
                created_at,
                message: AssistantMessage::new(""),
                done_reason,
                done: true,
                metrics: Metrics::default(),
            },
        ),
        _ => gin_json(
            StatusCode::OK,
            &GenerateChunk {
                model: &request.model,
                created_at,
                response: "",
                done: true,
                done_reason,
                context: Vec::new(),
                metrics: Metrics::default(),
            },
        ),
    }
}

fn stream_reply(
    api: Api,
    generation: Generation,
    encoder: Encoder,
    guard: StreamGuard,
    state: Arc<FakeState>,
) -> Response {
    let chunks = futures_util::stream::unfold(
        (generation, encoder, guard, state),
        |(mut generation, mut encoder, mut guard, state)| async move {
            let event = generation.next_event().await?;
            let bytes = match &event {
                Event::Hangup => {
                    guard.abort();
                    let error = io::Error::new(io::ErrorKind::ConnectionAborted, "hangup");
                    return Some((Err(error), (generation, encoder, guard, state)));
                }
                Event::Token(_) => encoder.encode(&event),
                Event::Done(_) | Event::Error(_) => {
                    guard.finish();
                    encoder.encode(&event)
                }
            };
            // A compatibility stream may have nothing to say for an error: it just ends.
            if bytes.is_empty() {
                return None;
            }
            generation.pacer.sent(&state);
            Some((
                Ok::<_, io::Error>(bytes),
                (generation, encoder, guard, state),
            ))
        },
    );
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    let content_type = if api.is_native() {
        "application/x-ndjson"
    } else {
        "text/event-stream"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if matches!(api, Api::Anthropic | Api::Responses) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    response
}

async fn collect_reply(
    api: Api,
    mut generation: Generation,
    encoder: Encoder,
    mut guard: StreamGuard,
    state: &FakeState,
) -> Response {
    let mut text = String::new();
    loop {
        match generation.next_event().await {
            Some(Event::Token(token)) => text.push_str(&token),
            Some(Event::Done(done)) => {
                guard.finish();
                return encoder.complete(&text, &done);
            }
            Some(Event::Error(message)) => {
                guard.finish();
                return api.error(state, StatusCode::INTERNAL_SERVER_ERROR, message);
            }
            Some(Event::Hangup) | None => {
                guard.abort();
                let content_type = if api.is_native() {
                    "application/json; charset=utf-8"
                } else {
                    "application/json"
                };
                return hangup_reply(content_type);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoders: one generation event -> one chunk of the wire format
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct GenerateChunk<'a> {
    model: &'a str,
    created_at: String,
    response: &'a str,
    done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    context: Vec<u64>,
    #[serde(flatten)]
    metrics: Metrics,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    model: &'a str,
    created_at: String,
    message: AssistantMessage<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'a str>,
    done: bool,
    #[serde(flatten)]
    metrics: Metrics,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
}

impl AssistantMessage<'_> {
    fn new(content: &str) -> AssistantMessage<'_> {
        AssistantMessage {
            role: "assistant",
            content,
        }
    }
}

#[derive(Clone, Copy, Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl Usage {
    fn of(metrics: &Metrics) -> Usage {
        Usage {
            prompt_tokens: metrics.prompt_eval_count,
            completion_tokens: metrics.eval_count,
            total_tokens: metrics.prompt_eval_count + metrics.eval_count,
        }
    }

    fn zero() -> Usage {
        Usage::of(&Metrics::default())
    }
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChatChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<AssistantMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<AssistantMessage<'a>>,
    finish_reason: Option<&'a str>,
}

/// A `/v1/completions` reply.
#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<CompletionChoice<'a>>,
    usage: Usage,
}

/// A `/v1/completions` chunk: `choices` before `model`, as Ollama writes it.
#[derive(Serialize)]
struct CompletionChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    choices: Vec<CompletionChoice<'a>>,
    model: &'a str,
    system_fingerprint: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    text: &'a str,
    index: u32,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AnthropicEvent<'a> {
    MessageStart {
        message: AnthropicMessage<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: TextBlock<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: TextDelta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: StopDelta,
        usage: OutputUsage,
    },
    MessageStop,
}

impl AnthropicEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            AnthropicEvent::MessageStart { .. } => "message_start",
            AnthropicEvent::ContentBlockStart { .. } => "content_block_start",
            AnthropicEvent::ContentBlockDelta { .. } => "content_block_delta",
            AnthropicEvent::ContentBlockStop { .. } => "content_block_stop",
            AnthropicEvent::MessageDelta { .. } => "message_delta",
            AnthropicEvent::MessageStop => "message_stop",
        }
    }
}

#[derive(Serialize)]
struct AnthropicMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Option<Vec<TextBlock<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<&'static str>,
    usage: AnthropicUsage,
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: u64,
}

#[derive(Serialize)]
struct AnthropicUsage {
    input_tokens: u64,
    output_tokens: u64,
}

/// Ollama's mapping of `done_reason` to Anthropic's `stop_reason`.
fn stop_reason(done_reason: &str) -> &'static str {
    match done_reason {
        "stop" => "end_turn",
        "length" => "max_tokens",
        _ => "stop_sequence",
    }
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum ResponsesEvent<'a> {
    #[serde(rename = "response.created")]
    Created {
        sequence_number: u64,
        response: ResponseObject<'a>,
    },
    #[serde(rename = "response.output_item.added")]
    ItemAdded {
        sequence_number: u64,
        output_index: u32,
        item: OutputItem<'a>,
    },
    #[serde(rename = "response.content_part.added")]
    PartAdded {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        part: OutputText<'a>,
    },
    #[serde(rename = "response.output_text.delta")]
    TextDelta {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        delta: &'a str,
    },
    #[serde(rename = "response.output_text.done")]
    TextDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        text: &'a str,
    },
    #[serde(rename = "response.content_part.done")]
    PartDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        part: OutputText<'a>,
    },
    #[serde(rename = "response.output_item.done")]
    ItemDone {
        sequence_number: u64,
        output_index: u32,
        item: OutputItem<'a>,
    },
    #[serde(rename = "response.completed")]
    Completed {
        sequence_number: u64,
        response: ResponseObject<'a>,
    },
}

impl ResponsesEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            ResponsesEvent::Created { .. } => "response.created",
            ResponsesEvent::ItemAdded { .. } => "response.output_item.added",
            ResponsesEvent::PartAdded { .. } => "response.content_part.added",
            ResponsesEvent::TextDelta { .. } => "response.output_text.delta",
            ResponsesEvent::TextDone { .. } => "response.output_text.done",
            ResponsesEvent::PartDone { .. } => "response.content_part.done",
            ResponsesEvent::ItemDone { .. } => "response.output_item.done",
            ResponsesEvent::Completed { .. } => "response.completed",
        }
    }
}

#[derive(Serialize)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    model: &'a str,
    output: Vec<OutputItem<'a>>,
    usage: Option<ResponseUsage>,
}

#[derive(Serialize)]
struct OutputItem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    status: &'static str,
    role: &'static str,
    content: Vec<OutputText<'a>>,
}

#[derive(Serialize)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    annotations: [(); 0],
}

impl OutputText<'_> {
    fn new(text: &str) -> OutputText<'_> {
        OutputText {
            kind: "output_text",
            text,
            annotations: [],
        }
    }
}

#[derive(Serialize)]
struct ResponseUsage {
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
}

/// Writes one generation in one wire format, keeping what that format needs between chunks.
struct Encoder {
    api: Api,
    model: String,
    /// `chatcmpl-N`, `cmpl-N`, `msg_<hex>` or `resp_N` (none for the native shapes).
    id: String,
    /// The Responses output item's id.
    item_id: String,
    include_usage: bool,
    prompt_eval_count: u64,
    created: u64,
    started: bool,
    sequence: u64,
    text: String,
}

impl Encoder {
    fn new(api: Api, request: &GenRequest, serial: u64, prompt_eval_count: u64) -> Encoder {
        let id = match api {
            Api::OpenAiChat => format!("chatcmpl-{}", serial % 999),
            Api::OpenAiCompletion => format!("cmpl-{}", serial % 999),
            Api::Anthropic => hex_id("msg", serial),
            Api::Responses => format!("resp_{}", serial % 999_999),
            Api::Generate | Api::Chat => String::new(),
        };
        Encoder {
            api,
            model: request.model.clone(),
            id,
            item_id: format!("msg_{}", (serial + 1) % 999_999),
            include_usage: request.include_usage,
            prompt_eval_count,
            created: unix_now(),
            started: false,
            sequence: 0,
            text: String::new(),
        }
    }

    /// One streamed chunk; empty when this format writes nothing for the event.
    fn encode(&mut self, event: &Event) -> Bytes {
        let mut out = Vec::new();
        match self.api {
            Api::Generate => self.generate_chunk(event, &mut out),
            Api::Chat => self.chat_chunk(event, &mut out),
            Api::OpenAiChat => self.openai_chat_chunk(event, &mut out),
            Api::OpenAiCompletion => self.openai_completion_chunk(event, &mut out),
            Api::Anthropic => self.anthropic_chunk(event, &mut out),
            Api::Responses => self.responses_chunk(event, &mut out),
        }
        Bytes::from(out)
    }

    fn generate_chunk(&self, event: &Event, out: &mut Vec<u8>) {
        let chunk = match event {
            Event::Token(token) => GenerateChunk {
                model: &self.model,
                created_at: rfc3339(SystemTime::now()),
                response: token,
                done: false,
                done_reason: None,
                context: Vec::new(),
                metrics: Metrics::default(),
            },
            Event::Done(done) => GenerateChunk {
                model: &self.model,
                created_at: rfc3339(SystemTime::now()),
                response: "",
                done: true,
                done_reason: Some(done.done_reason),
                context: done.context.clone(),
                metrics: done.metrics,
            },
            Event::Error(message) => return ndjson(out, &json!({ "error": message })),
            Event::Hangup => return,
        };
        ndjson(out, &chunk);
    }

    fn chat_chunk(&self, event: &Event, out: &mut Vec<u8>) {
        let chunk = match event {
            Event::Token(token) => ChatChunk {
                model: &self.model,
                created_at: rfc3339(SystemTime::now()),
                message: AssistantMessage::new(token),
                done_reason: None,
                done: false,
                metrics: Metrics::default(),
            },
            Event::Done(done) => ChatChunk {
                model: &self.model,
                created_at: rfc3339(SystemTime::now()),
                message: AssistantMessage::new(""),
                done_reason: Some(done.done_reason),
                done: true,
                metrics: done.metrics,
            },
            Event::Error(message) => return ndjson(out, &json!({ "error": message })),
            Event::Hangup => return,
        };
        ndjson(out, &chunk);
    }

    fn chat_completion<'a>(
        &'a self,
        choices: Vec<ChatChoice<'a>>,
        usage: Option<Usage>,
    ) -> ChatCompletion<'a> {
        ChatCompletion {
            id: &self.id,
            object: "chat.completion.chunk",
            created: unix_now(),
            model: &self.model,
            system_fingerprint: "fp_ollama",
            choices,
            usage,
        }
    }

    /// Ollama's ChatWriter: a chunk per native chunk, the last with `finish_reason`, then the
    /// usage chunk if asked for and `[DONE]`, all in one write. A native error line comes out
    /// as an empty delta, and the stream ends without `[DONE]`.
    fn openai_chat_chunk(&self, event: &Event, out: &mut Vec<u8>) {
        let delta = |content, finish_reason| ChatChoice {
            index: 0,
            message: None,
            delta: Some(AssistantMessage::new(content)),
            finish_reason,
        };
        match event {
            Event::Token(token) => {
                sse_data(out, &self.chat_completion(vec![delta(token, None)], None))
            }
            Event::Error(_) => sse_data(out, &self.chat_completion(vec![delta("", None)], None)),
            Event::Done(done) => {
                let last = vec![delta("", Some(done.done_reason))];
                sse_data(out, &self.chat_completion(last, None));
                if self.include_usage {
                    let usage = Some(Usage::of(&done.metrics));
                    sse_data(out, &self.chat_completion(Vec::new(), usage));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Event::Hangup => {}
        }
    }

    fn completion_chunk<'a>(
        &'a self,
        choices: Vec<CompletionChoice<'a>>,
        usage: Option<Usage>,
    ) -> CompletionChunk<'a> {
        CompletionChunk {
            id: &self.id,
            object: "text_completion",
            created: unix_now(),
            choices,
            model: &self.model,
            system_fingerprint: "fp_ollama",
            usage,
        }
    }

    /// Ollama's CompleteWriter; with `include_usage` every chunk carries a zero `usage`
    /// until the usage chunk, as Ollama's do.
    fn openai_completion_chunk(&self, event: &Event, out: &mut Vec<u8>) {
        let zero = self.include_usage.then(Usage::zero);
        let choice = |text, finish_reason| CompletionChoice {
            text,
            index: 0,
            finish_reason,
        };
        match event {
            Event::Token(token) => {
                sse_data(out, &self.completion_chunk(vec![choice(token, None)], zero))
            }
            Event::Error(_) => sse_data(out, &self.completion_chunk(vec![choice("", None)], zero)),
            Event::Done(done) => {
                let last = vec![choice("", Some(done.done_reason))];
                sse_data(out, &self.completion_chunk(last, zero));
                if self.include_usage {
                    let usage = Some(Usage::of(&done.metrics));
                    sse_data(out, &self.completion_chunk(Vec::new(), usage));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Event::Hangup => {}
        }
    }

    /// Ollama's Anthropic StreamConverter: `message_start` (with the prompt's
    /// `input_tokens`) and `content_block_start` before the first text, a delta per token,
    /// then `content_block_stop`, `message_delta` (stop reason, `output_tokens`) and
    /// `message_stop`. A native error line adds nothing: the stream just ends.
    fn anthropic_chunk(&mut self, event: &Event, out: &mut Vec<u8>) {
        let first = !std::mem::replace(&mut self.started, true);
        if first && !matches!(event, Event::Hangup) {
            let start = AnthropicEvent::MessageStart {
                message: AnthropicMessage {
                    id: &self.id,
                    kind: "message",
                    role: "assistant",
                    model: &self.model,
                    content: Some(Vec::new()),
                    stop_reason: None,
                    usage: AnthropicUsage {
                        input_tokens: self.prompt_eval_count,
                        output_tokens: 0,
                    },
                },
            };
            sse_event(out, start.name(), &start);
        }
        match event {
            Event::Token(token) => {
                if self.text.is_empty() {
                    let block = AnthropicEvent::ContentBlockStart {
                        index: 0,
                        content_block: TextBlock {
                            kind: "text",
                            text: "",
                        },
                    };
                    sse_event(out, block.name(), &block);
                }
                self.text.push_str(token);
                let delta = AnthropicEvent::ContentBlockDelta {
                    index: 0,
                    delta: TextDelta {
                        kind: "text_delta",
                        text: token,
                    },
                };
                sse_event(out, delta.name(), &delta);
            }
            Event::Done(done) => {
                if !self.text.is_empty() {
                    let stop = AnthropicEvent::ContentBlockStop { index: 0 };
                    sse_event(out, stop.name(), &stop);
                }
                let delta = AnthropicEvent::MessageDelta {
                    delta: StopDelta {
                        stop_reason: stop_reason(done.done_reason),
                    },
                    usage: OutputUsage {
                        output_tokens: done.metrics.eval_count,
                    },
                };
                sse_event(out, delta.name(), &delta);
                sse_event(out, "message_stop", &AnthropicEvent::MessageStop);
            }
            Event::Error(_) | Event::Hangup => {}
        }
    }

    fn response_object(&self, status: &'static str, done: Option<&Final>) -> ResponseObject<'_> {
        ResponseObject {
            id: &self.id,
            object: "response",
            created_at: self.created,
            status,
            model: &self.model,
            output: done
                .map(|_| vec![self.output_item("completed")])
                .unwrap_or_default(),
            usage: done.map(|done| ResponseUsage {
                input_tokens: done.metrics.prompt_eval_count,
                output_tokens: done.metrics.eval_count,
                total_tokens: done.metrics.prompt_eval_count + done.metrics.eval_count,
            }),
        }
    }

    fn output_item(&self, status: &'static str) -> OutputItem<'_> {
        let content = if status == "completed" {
            vec![OutputText::new(&self.text)]
        } else {
            Vec::new()
        };
        OutputItem {
            kind: "message",
            id: &self.item_id,
            status,
            role: "assistant",
            content,
        }
    }

    /// The OpenAI Responses stream: created, output item and content part added before the
    /// first text, a delta per token, then the done events and `response.completed` with
    /// usage. A native error line adds nothing: the stream just ends.
    fn responses_chunk(&mut self, event: &Event, out: &mut Vec<u8>) {
        if matches!(event, Event::Hangup) {
            return;
        }
        if !std::mem::replace(&mut self.started, true) {
            self.responses_preamble(out);
        }
        match event {
            Event::Token(token) => {
                let seq = self.next_sequence(1);
                self.text.push_str(token);
                let delta = ResponsesEvent::TextDelta {
                    sequence_number: seq,
                    item_id: &self.item_id,
                    output_index: 0,
                    content_index: 0,
                    delta: token,
                };
                sse_event(out, delta.name(), &delta);
            }
            Event::Done(done) => {
                let seq = self.next_sequence(4);
                let events = [
                    ResponsesEvent::TextDone {
                        sequence_number: seq,
                        item_id: &self.item_id,
                        output_index: 0,
                        content_index: 0,
                        text: &self.text,
                    },
                    ResponsesEvent::PartDone {
                        sequence_number: seq + 1,
                        item_id: &self.item_id,
                        output_index: 0,
                        content_index: 0,
                        part: OutputText::new(&self.text),
                    },
                    ResponsesEvent::ItemDone {
                        sequence_number: seq + 2,
                        output_index: 0,
                        item: self.output_item("completed"),
                    },
                    ResponsesEvent::Completed {
                        sequence_number: seq + 3,
                        response: self.response_object("completed", Some(done)),
                    },
                ];
                events.iter().for_each(|e| sse_event(out, e.name(), e));
            }
            Event::Error(_) | Event::Hangup => {}
        }
    }

    fn responses_preamble(&mut self, out: &mut Vec<u8>) {
        let seq = self.next_sequence(3);
        let events = [
            ResponsesEvent::Created {
                sequence_number: seq,
                response: self.response_object("in_progress", None),
            },
            ResponsesEvent::ItemAdded {
                sequence_number: seq + 1,
                output_index: 0,
                item: self.output_item("in_progress"),
            },
            ResponsesEvent::PartAdded {
                sequence_number: seq + 2,
                item_id: &self.item_id,
                output_index: 0,
                content_index: 0,
                part: OutputText::new(""),
            },
        ];
        events.iter().for_each(|e| sse_event(out, e.name(), e));
    }

    fn next_sequence(&mut self, count: u64) -> u64 {
        let first = self.sequence;
        self.sequence += count;
        first
    }

    /// The single reply of a non-streaming request.
    fn complete(mut self, text: &str, done: &Final) -> Response {
        let created_at = rfc3339(SystemTime::now());
        let finish_reason = Some(done.done_reason);
        match self.api {
            Api::Generate => gin_json(
                StatusCode::OK,
                &GenerateChunk {
                    model: &self.model,
                    created_at,
                    response: text,
                    done: true,
                    done_reason: finish_reason,
                    context: done.context.clone(),
                    metrics: done.metrics,
                },
            ),
            Api::Chat => gin_json(
                StatusCode::OK,
                &ChatChunk {
                    model: &self.model,
                    created_at,
                    message: AssistantMessage::new(text),
                    done_reason: finish_reason,
                    done: true,
                    metrics: done.metrics,
                },
            ),
            Api::OpenAiChat => {
                let choice = ChatChoice {
                    index: 0,
                    message: Some(AssistantMessage::new(text)),
                    delta: None,
                    finish_reason,
                };
                let reply = ChatCompletion {
                    object: "chat.completion",
                    ..self.chat_completion(vec![choice], Some(Usage::of(&done.metrics)))
                };
                encoder_json(StatusCode::OK, &reply)
            }
            Api::OpenAiCompletion => {
                let choice = CompletionChoice {
                    text,
                    index: 0,
                    finish_reason,
                };
                let reply = Completion {
                    id: &self.id,
                    object: "text_completion",
                    created: self.created,
                    model: &self.model,
                    system_fingerprint: "fp_ollama",
                    choices: vec![choice],
                    usage: Usage::of(&done.metrics),
                };
                encoder_json(StatusCode::OK, &reply)
            }
            Api::Anthropic => {
                let content = (!text.is_empty()).then(|| vec![TextBlock { kind: "text", text }]);
                let reply = AnthropicMessage {
                    id: &self.id,
                    kind: "message",
                    role: "assistant",
                    model: &self.model,
                    content,
                    stop_reason: Some(stop_reason(done.done_reason)),
                    usage: AnthropicUsage {
                        input_tokens: done.metrics.prompt_eval_count,
                        output_tokens: done.metrics.eval_count,
                    },
                };
                encoder_json(StatusCode::OK, &reply)
            }
            Api::Responses => {
                self.text = text.to_owned();
                encoder_json(
                    StatusCode::OK,
                    &self.response_object("completed", Some(done)),
                )
            }
        }
    }
}

fn ndjson(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(&go_json(value));
    out.push(b'\n');
}

fn sse_data(out: &mut Vec<u8>, value: &impl Serialize) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&go_json(value));
    out.extend_from_slice(b"\n\n");
}

fn sse_event(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\n");
    sse_data(out, value);
}

// ---------------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EmbedApi {
    /// `/api/embed`.
    Embed,
    /// `/api/embeddings`.
    Legacy,
    /// `/v1/embeddings`.
    OpenAi,
}

#[derive(Serialize)]
struct EmbedReply<'a> {
    model: &'a str,
    embeddings: Vec<Vec<f32>>,
    #[serde(skip_serializing_if = "is_zero")]
    total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    prompt_eval_count: u64,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    embedding: Vec<f32>,
    index: usize,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// `/api/embed`, `/api/embeddings` and `/v1/embeddings`: after `header_delay`, one
/// [`fake_embedding`] per input; `missing`, `busy` and `crash` fail as for generation.
async fn embed(app: App, api: EmbedApi, body: Bytes) -> Response {
    let started_at = Instant::now();
    let error = |status: StatusCode, message: &str| match api {
        EmbedApi::OpenAi => openai_error(status, message),
        _ => native_error(status, message),
    };
    let value = match parse_body(&body, api != EmbedApi::OpenAi) {
        Ok(value) => value,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let model = value
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let field = if api == EmbedApi::Legacy {
        "prompt"
    } else {
        "input"
    };
    let inputs: Vec<String> = match (api, value.get(field)) {
        (EmbedApi::OpenAi, None | Some(Value::Null)) => {
            return error(StatusCode::BAD_REQUEST, "invalid input");
        }
        (EmbedApi::OpenAi, Some(Value::Array(items))) if items.is_empty() => {
            return error(StatusCode::BAD_REQUEST, "invalid input");
        }
        (EmbedApi::OpenAi, Some(Value::String(s))) => vec![s.clone()],
        (_, None | Some(Value::Null)) => Vec::new(),
        (_, Some(Value::String(s))) if s.is_empty() => Vec::new(),
        (_, Some(Value::String(s))) => vec![s.clone()],
        (_, Some(Value::Array(items))) => {
            match items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect()
            {
                Some(strings) => strings,
                None => return error(StatusCode::BAD_REQUEST, "invalid input type"),
            }
        }
        (_, Some(_)) => return error(StatusCode::BAD_REQUEST, "invalid input type"),
    };
    if model.is_empty() {
        return error(StatusCode::BAD_REQUEST, "model is required");
    }
    let scenario = Scenario::of(&app.config, &model);
    match scenario {
        Scenario::NotFound => {
            return error(StatusCode::NOT_FOUND, &format!("model '{model}' not found"));
        }
        Scenario::Busy => return error(StatusCode::SERVICE_UNAVAILABLE, BUSY_MESSAGE),
        _ => {}
    }
    if inputs.is_empty() {
        // Ollama answers an empty input at once, without loading anything.
        return match api {
            EmbedApi::Legacy => gin_json(StatusCode::OK, &json!({ "embedding": [] })),
            _ => gin_json(
                StatusCode::OK,
                &EmbedReply {
                    model: &model,
                    embeddings: Vec::new(),
                    total_duration: 0,
                    load_duration: 0,
                    prompt_eval_count: 0,
                },
            ),
        };
    }
    let mut guard = StreamGuard::start(&app.state);
    sleep(app.config.header_delay).await;
    let loaded_at = Instant::now();
    if scenario == Scenario::Crash {
        guard.finish();
        return error(StatusCode::INTERNAL_SERVER_ERROR, CRASH_MESSAGE);
    }
    let prompt_eval_count: u64 = inputs.iter().map(|i| word_count(i).max(1)).sum();
    let embeddings: Vec<Vec<f32>> = inputs.iter().map(|i| fake_embedding(i)).collect();
    guard.finish();
    match api {
        EmbedApi::Embed => gin_json(
            StatusCode::OK,
            &EmbedReply {
                model: &model,
                embeddings,
                total_duration: nanos(started_at.elapsed()),
                load_duration: nanos(loaded_at - started_at),
                prompt_eval_count,
            },
        ),
        EmbedApi::Legacy => {
            let embedding: Vec<f64> = embeddings[0].iter().map(|&x| f64::from(x)).collect();
            gin_json(StatusCode::OK, &json!({ "embedding": embedding }))
        }
        EmbedApi::OpenAi => encoder_json(
            StatusCode::OK,
            &EmbeddingList {
                object: "list",
                data: embeddings
                    .into_iter()
                    .enumerate()
                    .map(|(index, embedding)| EmbeddingItem {
                        object: "embedding",
                        embedding,
                        index,
                    })
                    .collect(),
                model: &model,
                usage: EmbeddingUsage {
                    prompt_tokens: prompt_eval_count,
                    total_tokens: prompt_eval_count,
                },
            },
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Models: tags, ps, show, the OpenAI list, pull/push/create, copy, delete, blobs
// ---------------------------------------------------------------------------------------------

/// The installed model `name` means (`llama3.2` is `llama3.2:latest`).
fn find_model<'a>(config: &'a FakeConfig, name: &str) -> Option<&'a FakeModel> {
    let wanted = with_tag(name);
    config.models.iter().find(|m| with_tag(&m.name) == wanted)
}

fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

#[derive(Serialize)]
struct Details<'a> {
    parent_model: &'static str,
    format: &'static str,
    family: &'a str,
    families: [&'a str; 1],
    parameter_size: &'a str,
    quantization_level: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_length: Option<u64>,
}

impl FakeModel {
    fn details(&self, with_context: bool) -> Details<'_> {
        Details {
            parent_model: "",
            format: "gguf",
            family: &self.family,
            families: [&self.family],
            parameter_size: &self.parameter_size,
            quantization_level: &self.quantization_level,
            context_length: with_context.then_some(self.context_length),
        }
    }

    /// `general.parameter_count` from `parameter_size` (`3.2B`, `137M`).
    fn parameter_count(&self) -> u64 {
        let size = self.parameter_size.trim();
        let (number, scale) = match size.chars().last() {
            Some('B' | 'b') => (&size[..size.len() - 1], 1e9),
            Some('M' | 'm') => (&size[..size.len() - 1], 1e6),
            Some('K' | 'k') => (&size[..size.len() - 1], 1e3),
            _ => (size, 1.0),
        };
        (number.parse::<f64>().unwrap_or(0.0) * scale).round() as u64
    }
}

/// `/api/tags` and `/api/ps`.
#[derive(Serialize)]
struct ModelList<T> {
    models: Vec<T>,
}

#[derive(Serialize)]
struct TagsEntry<'a> {
    name: &'a str,
    model: &'a str,
    modified_at: String,
    size: u64,
    digest: String,
    details: Details<'a>,
    capabilities: &'a [String],
}

async fn tags(State(app): State<App>) -> Response {
    let models: Vec<TagsEntry> = app
        .config
        .models
        .iter()
        .map(|m| TagsEntry {
            name: &m.name,
            model: &m.name,
            modified_at: rfc3339(UNIX_EPOCH + Duration::from_secs(MODIFIED_AT_UNIX_S)),
            size: m.size_bytes,
            digest: m.digest(),
            details: m.details(true),
            capabilities: &m.capabilities,
        })
        .collect();
    gin_json(StatusCode::OK, &ModelList { models })
}

#[derive(Serialize)]
struct PsEntry<'a> {
    name: &'a str,
    model: &'a str,
    size: u64,
    digest: String,
    details: Details<'a>,
    expires_at: String,
    size_vram: u64,
    context_length: u64,
}

async fn ps(State(app): State<App>) -> Response {
    let expires_at = rfc3339(SystemTime::now() + KEEP_ALIVE);
    let models: Vec<PsEntry> = app
        .config
        .models
        .iter()
        .filter(|m| m.loaded)
        .map(|m| PsEntry {
            name: &m.name,
            model: &m.name,
            size: m.size_bytes.max(m.size_vram_bytes),
            digest: m.digest(),
            details: m.details(false),
            expires_at: expires_at.clone(),
            size_vram: m.size_vram_bytes,
            context_length: m.context_length,
        })
        .collect();
    gin_json(StatusCode::OK, &ModelList { models })
}

#[derive(Serialize)]
struct ShowReply<'a> {
    modelfile: String,
    parameters: &'static str,
    template: &'static str,
    details: Details<'a>,
    model_info: Value,
    capabilities: &'a [String],
    modified_at: String,
}

/// The model a `{"model"}` (or legacy `{"name"}`) body names.
fn requested_model(body: &[u8]) -> Result<String, String> {
    let value = parse_body(body, true)?;
    let name = ["model", "name"].iter().find_map(|key| {
        value
            .get(*key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    });
    name.map(str::to_owned)
        .ok_or_else(|| "model is required".to_owned())
}

async fn show(State(app): State<App>, body: Bytes) -> Response {
    let name = match requested_model(&body) {
        Ok(name) => name,
        Err(message) => return native_error(StatusCode::BAD_REQUEST, &message),
    };
    let Some(model) = find_model(&app.config, &name) else {
        return not_found_model(&name);
    };
    let modelfile = format!(
        "# Modelfile generated by \"ollama show\"\n\
         # To build a new Modelfile based on this, replace FROM with:\n\
         # FROM {name}\n\n\
         FROM {blob}\n\
         TEMPLATE \"\"\"{{{{ .Prompt }}}}\"\"\"\n\
         PARAMETER stop <|eot_id|>\n",
        name = model.name,
        blob = model.blob_path,
    );
    let arch = &model.family;
    let model_info = json!({
        "general.architecture": arch,
        "general.file_type": 15,
        "general.parameter_count": model.parameter_count(),
        "general.quantization_version": 2,
        format!("{arch}.context_length"): model.context_length,
        format!("{arch}.embedding_length"): 3072,
        format!("{arch}.block_count"): 28,
    });
    gin_json(
        StatusCode::OK,
        &ShowReply {
            modelfile,
            parameters: "stop                           \"<|eot_id|>\"",
            template: "{{ .Prompt }}",
            details: model.details(false),
            model_info,
            capabilities: &model.capabilities,
            modified_at: rfc3339(UNIX_EPOCH + Duration::from_secs(MODIFIED_AT_UNIX_S)),
        },
    )
}

#[derive(Serialize)]
struct OpenAiModelList<'a> {
    object: &'static str,
    data: Option<Vec<OpenAiModel<'a>>>,
}

#[derive(Serialize)]
struct OpenAiModel<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

async fn openai_models(State(app): State<App>) -> Response {
    let data: Vec<OpenAiModel> = app
        .config
        .models
        .iter()
        .map(|m| OpenAiModel {
            id: &m.name,
            object: "model",
            created: MODIFIED_AT_UNIX_S,
            owned_by: "library",
        })
        .collect();
    // Go marshals an empty list of models as null.
    let data = (!data.is_empty()).then_some(data);
    encoder_json(
        StatusCode::OK,
        &OpenAiModelList {
            object: "list",
            data,
        },
    )
}

async fn openai_model(State(app): State<App>, Path(name): Path<String>) -> Response {
    if find_model(&app.config, &name).is_none() {
        return openai_error(StatusCode::NOT_FOUND, &format!("model '{name}' not found"));
    }
    let model = OpenAiModel {
        id: &name,
        object: "model",
        created: MODIFIED_AT_UNIX_S,
        owned_by: "library",
    };
    encoder_json(StatusCode::OK, &model)
}

/// The progress-streaming model operations.
#[derive(Clone, Copy, Debug)]
enum Verb {
    Pull,
    Push,
    Create,
}

#[derive(Serialize)]
struct ProgressLine {
    status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(skip_serializing_if = "is_zero")]
    total: u64,
    #[serde(skip_serializing_if = "is_zero")]
    completed: u64,
}

impl ProgressLine {
    fn status(status: impl Into<String>) -> ProgressLine {
        ProgressLine {
            status: status.into(),
            digest: String::new(),
            total: 0,
            completed: 0,
        }
    }
}

/// `/api/pull|push|create`: NDJSON progress, `tokens` layer updates, `chunk_gap` apart (and
/// through the gate); `{"status":"success"}` alone when `"stream": false`. Pulling `missing`
/// fails after the first line, as pulling an unknown model does.
async fn progress(app: App, verb: Verb, body: Bytes) -> Response {
    let name = match requested_model(&body) {
        Ok(name) => name,
        Err(message) => return native_error(StatusCode::BAD_REQUEST, &message),
    };
    let stream = parse_body(&body, true)
        .ok()
        .and_then(|v| v.get("stream").and_then(Value::as_bool))
        .unwrap_or(true);
    let blob = hex_digest("blob", &name);
    let total = find_model(&app.config, &name).map_or(1_000_000_000, |m| m.size_bytes);
    let steps = app.config.tokens as u64;
    let layer = |verb: &str, step: u64| ProgressLine {
        status: format!("{verb} {}", &blob[..12]),
        digest: format!("sha256:{blob}"),
        total,
        completed: total * step / steps.max(1),
    };
    let mut lines = Vec::new();
    let mut failure = None;
    match verb {
        Verb::Pull => {
            lines.push(ProgressLine::status("pulling manifest"));
            if Scenario::of(&app.config, &name) == Scenario::NotFound {
                failure = Some("pull model manifest: file does not exist");
            } else {
                lines.extend((0..=steps).map(|step| layer("pulling", step)));
                lines.push(ProgressLine::status("verifying sha256 digest"));
                lines.push(ProgressLine::status("writing manifest"));
            }
        }
        Verb::Push => {
            lines.push(ProgressLine::status("retrieving manifest"));
            lines.extend((0..=steps).map(|step| layer("pushing", step)));
            lines.push(ProgressLine::status("pushing manifest"));
        }
        Verb::Create => {
            lines.push(ProgressLine::status("gathering model components"));
            lines.push(ProgressLine::status(format!(
                "using existing layer sha256:{blob}"
            )));
            lines.push(ProgressLine::status("writing manifest"));
        }
    }
    if failure.is_none() {
        lines.push(ProgressLine::status("success"));
    }
    let mut chunks: Vec<Bytes> = lines
        .iter()
        .map(|line| {
            let mut out = Vec::new();
            ndjson(&mut out, line);
            Bytes::from(out)
        })
        .collect();
    if let Some(message) = failure {
        let mut out = Vec::new();
        ndjson(&mut out, &json!({ "error": message }));
        chunks.push(Bytes::from(out));
    }

    let mut guard = StreamGuard::start(&app.state);
    if !stream {
        let mut pacer = Pacer::new(app.config.chunk_gap, None);
        for _ in &chunks {
            pacer.pace().await;
        }
        guard.finish();
        return match failure {
            Some(message) => native_error(StatusCode::INTERNAL_SERVER_ERROR, message),
            None => gin_json(StatusCode::OK, &json!({ "status": "success" })),
        };
    }
    let pacer = Pacer::new(app.config.chunk_gap, app.config.gate.clone());
    let state = app.state.clone();
    let body = futures_util::stream::unfold(
        (chunks.into_iter(), pacer, guard, state),
        |(mut chunks, mut pacer, mut guard, state)| async move {
            let chunk = chunks.next()?;
            pacer.pace().await;
            if chunks.as_slice().is_empty() {
                guard.finish();
            }
            pacer.sent(&state);
            Some((Ok::<_, io::Error>(chunk), (chunks, pacer, guard, state)))
        },
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

async fn copy(State(app): State<App>, body: Bytes) -> Response {
    let value = match parse_body(&body, true) {
        Ok(value) => value,
        Err(message) => return native_error(StatusCode::BAD_REQUEST, &message),
    };
    let source = value.get("source").and_then(Value::as_str).unwrap_or("");
    if find_model(&app.config, source).is_none() {
        return not_found_model(source);
    }
    StatusCode::OK.into_response()
}

async fn delete_model(State(app): State<App>, body: Bytes) -> Response {
    let name = match requested_model(&body) {
        Ok(name) => name,
        Err(message) => return native_error(StatusCode::BAD_REQUEST, &message),
    };
    if find_model(&app.config, &name).is_none() {
        return not_found_model(&name);
    }
    StatusCode::OK.into_response()
}

/// `HEAD /api/blobs/sha256:<hex>`: 200 when an installed model's blob has that digest.
async fn blob_exists(State(app): State<App>, Path(digest): Path<String>) -> StatusCode {
    let file = digest.replace(':', "-");
    if app
        .config
        .models
        .iter()
        .any(|m| m.blob_path.ends_with(&file))
    {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn create_blob() -> StatusCode {
    StatusCode::CREATED
}

// ---------------------------------------------------------------------------------------------
// Test-only routes
// ---------------------------------------------------------------------------------------------

/// Any method on `/echo[/...]`: 200 with the request as the fake saw it:
/// `{"method","path","query","headers":[[name,value],...],"body_len","body_fnv1a64"}`.
async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let headers: Vec<[String; 2]> = headers
        .iter()
        .map(|(name, value)| {
            [
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ]
        })
        .collect();
    gin_json(
        StatusCode::OK,
        &json!({
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query(),
            "headers": headers,
            "body_len": body.len(),
            "body_fnv1a64": format!("{:016x}", fnv1a64(&body)),
        }),
    )
}

/// Any method on `/slow-headers`: waits `header_delay` (or `?delay_ms=N`), then 200
/// `{"waited_ms":N}`.
async fn slow_headers(
    State(app): State<App>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let delay = query
        .get("delay_ms")
        .and_then(|ms| ms.parse().ok())
        .map_or(app.config.header_delay, Duration::from_millis);
    sleep(delay).await;
    gin_json(StatusCode::OK, &json!({ "waited_ms": delay.as_millis() }))
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// 64 hex digits derived from `name`, different for each `salt`.
fn hex_digest(salt: &str, name: &str) -> String {
    (0..4u8)
        .map(|i| {
            let mut input = format!("{salt}/{name}/").into_bytes();
            input.push(i);
            format!("{:016x}", splitmix64(fnv1a64(&input)))
        })
        .collect()
}

/// SplitMix64's finaliser: spreads FNV's similar outputs for similar inputs.
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `prefix_` and 24 hex digits, like Ollama's `generateID`.
fn hex_id(prefix: &str, serial: u64) -> String {
    format!(
        "{prefix}_{}",
        &hex_digest(prefix, &serial.to_string())[..24]
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 in UTC with nanoseconds, trailing zeros trimmed, as Go's `time.Time` marshals.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let nanos = since.subsec_nanos();
    let fraction = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_owned()
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
