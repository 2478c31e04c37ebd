//! A fake Ollama built to be fast, so that what the benchmark sees is the proxy's cost:
//! `POST /api/generate` answers at once with one small JSON object, or, when the request
//! says `"stream":true`, streams NDJSON chunks at a set interval and ends with the
//! `done: true` object carrying Ollama's metrics. Every streamed line carries `sent_ns`,
//! the moment it left the fake (nanoseconds since the benchmark's epoch), so a client in
//! the same process can tell how long each chunk took to reach it.

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use futures_util::StreamExt;
use tokio::sync::oneshot;

/// Request header: how many NDJSON lines a streamed answer has, the final one included.
pub const CHUNKS_HEADER: &str = "x-fake-chunks";
/// Request header: microseconds between two streamed lines.
pub const INTERVAL_HEADER: &str = "x-fake-interval-us";

/// Streamed lines when the request does not say.
const DEFAULT_CHUNKS: u64 = 256;
/// Microseconds between streamed lines when the request does not say.
const DEFAULT_INTERVAL_US: u64 = 5_000;
/// How much of the request body is kept to look for the stream flag (the rest is read
/// and thrown away: a 20 MiB body costs the fake no memory).
const HEAD_BYTES: usize = 256;

/// `GET /api/version`.
const VERSION: &str = r#"{"version":"0.33.0"}"#;
/// `GET /api/ps` and `/api/tags`: the one model the benchmark calls, loaded.
const MODELS: &str = r#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","size":2019393189,"size_vram":2019393189}]}"#;

/// The non-streaming answer, shaped like Ollama's.
const ANSWER: &str = concat!(
    r#"{"model":"llama3.2","created_at":"2026-08-21T17:15:24.097767Z","#,
    r#""response":"The sky is blue because of Rayleigh scattering.","done":true,"#,
    r#""done_reason":"stop","context":[128006,9125,882],"total_duration":1162761250,"#,
    r#""load_duration":101397084,"prompt_eval_count":26,"prompt_eval_duration":13074791,"#,
    r#""eval_count":18,"eval_duration":52479709}"#
);

/// The fake Ollama, serving on its own runtime (two worker threads) until dropped.
pub struct FakeOllama {
    /// Where it listens (loopback, port chosen by the OS).
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeOllama {
    /// Starts the fake; `epoch` is the clock origin of the `sent_ns` stamps.
    pub fn start(epoch: Instant) -> FakeOllama {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-ollama".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("fake-ollama-worker")
                    .enable_all()
                    .build()
                    .expect("fake Ollama runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind the fake Ollama");
                    addr_tx
                        .send(listener.local_addr().expect("fake Ollama address"))
                        .expect("report the address");
                    // As Ollama: Go sets TCP_NODELAY on every connection.
                    let listener = listener.tap_io(|stream| {
                        let _ = stream.set_nodelay(true);
                    });
                    let app = Router::new()
                        .route("/", get(|| async { "Ollama is running" }))
                        // What ollameter asks of each host of several: its kind, its
                        // loaded and installed models (the model the load asks for).
                        .route("/api/version", get(|| async { VERSION }))
                        .route("/api/ps", get(|| async { MODELS }))
                        .route("/api/tags", get(|| async { MODELS }))
                        .route("/api/generate", post(generate))
                        // An OTLP/HTTP sink for ollameter's spans (`--otel`): reads each
                        // export and accepts it, as a collector would.
                        .route("/v1/traces", post(otlp_sink))
                        .with_state(epoch);
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = shutdown_rx.await;
                        })
                        .await
                        .expect("fake Ollama serves");
                });
            })
            .expect("spawn the fake Ollama");
        let addr = addr_rx.recv().expect("the fake Ollama started");
        FakeOllama {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts an OTLP/HTTP export: the body is read whole and an empty
/// `ExportTraceServiceResponse` (zero bytes of protobuf) is the answer.
async fn otlp_sink(body: axum::body::Bytes) -> Response {
    let _ = body.len();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        "",
    )
        .into_response()
}

fn header_u64(headers: &HeaderMap, name: &str, default: u64) -> u64 {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn generate(State(epoch): State<Instant>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut head = Vec::with_capacity(HEAD_BYTES);
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let Ok(bytes) = frame else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let room = HEAD_BYTES.saturating_sub(head.len());
        head.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }
    let streaming = head.windows(14).any(|w| w == br#""stream":true}"#)
        || head.windows(14).any(|w| w == br#""stream":true,"#);
    if !streaming {
        return (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            ANSWER,
        )
            .into_response();
    }
    let chunks = header_u64(&parts.headers, CHUNKS_HEADER, DEFAULT_CHUNKS).max(1);
    let interval = Duration::from_micros(header_u64(
        &parts.headers,
        INTERVAL_HEADER,
        DEFAULT_INTERVAL_US,
    ));
    let start = tokio::time::Instant::now();
    let lines = futures_util::stream::unfold(0u64, move |i| async move {
        if i == chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep_until(start + interval * i as u32).await;
        }
        let sent_ns = epoch.elapsed().as_nanos();
        let line = if i + 1 < chunks {
            format!(
                r#"{{"model":"llama3.2","created_at":"2026-08-21T17:15:24.097767Z","response":"tok","done":false,"sent_ns":{sent_ns}}}"#
            )
        } else {
            format!(
                r#"{{"model":"llama3.2","created_at":"2026-08-21T17:15:25.097767Z","response":"","done":true,"done_reason":"stop","total_duration":1300000000,"load_duration":1000000,"prompt_eval_count":26,"prompt_eval_duration":13074791,"eval_count":{},"eval_duration":1280000000,"sent_ns":{sent_ns}}}"#,
                chunks - 1
            )
        };
        Some((
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line + "\n")),
            i + 1,
        ))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}
