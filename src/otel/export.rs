//! The exporter's side: a bounded queue of finished calls and one thread that encodes
//! them as spans ([`super::span`]) and sends them in batches as OTLP export requests, over
//! HTTP with protobuf bodies (`reqwest`) or gRPC (`tonic`), on a small runtime of its own.
//!
//! A batch leaves when it is full (`max_export_batch_size`) or when the oldest span has
//! waited `schedule_delay`. Nothing here can slow a proxied call: the proxy only tries to
//! put a record in the queue, and a full queue (the collector is down or slow and the
//! queue has filled while an export waits) drops the span and counts it. A failed or
//! timed-out export drops its batch and counts it too, as do spans the collector says it
//! rejected (`partial_success`); after a failed export the thread pauses (backing off)
//! so that a collector that is down costs full-queue drops, not encoding and connecting.
//! The thread runs at a lower CPU priority than the proxy's. This is the SDK's batch span
//! processor's and OTLP exporter's job, done here because the SDK's path (a `SpanData`
//! per span, converted to generated protobuf structs, then encoded) cost 10-14 µs of CPU
//! a span, and its counters of dropped spans are not public while `/metrics` must show
//! them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::Resource;
use prost::Message as _;

use super::CallTrace;
use super::config::{OtelConfig, Protocol};
use super::span::{Batch, Servers};
use crate::record::Record;
use crate::text::error_chain;

/// How long shutting down may spend sending what is still queued, beyond one export's
/// timeout: a collector that is gone must not hold up the sidecar's exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often the export thread looks at the queue. It sleeps between looks instead of
/// waiting on the channel: a waiting receiver makes every call's `push` pay a wake-up (a
/// futex call and a context switch, measured at 13-56 µs of CPU per call in the proxy
/// benchmark), which the recorder's writer avoids the same way.
const POLL: Duration = Duration::from_millis(20);

/// After a failed export the thread leaves the queue alone for this long, doubling with
/// every failure in a row up to [`MAX_BACKOFF`]: while the collector is down or hung,
/// spans are dropped where that is cheapest (a full queue, before any copy), not encoded
/// and sent to fail. The first export after the pause sends what the queue then holds.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between two tries at a collector that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How far below the process's CPU priority the exporter's thread runs (`nice` levels,
/// Linux): on a host whose cores are all busy the proxied calls go first and spans wait
/// in the queue. On an idle core it runs as before.
#[cfg(target_os = "linux")]
const EXPORTER_NICE_STEP: i32 = 10;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The OTLP exporter's configuration cannot be used.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    /// The exporter's thread or runtime could not be started.
    #[error("cannot start the OTLP exporter's thread: {0}")]
    Thread(std::io::Error),
}

/// The exporter's counters, shown in `/metrics`.
#[derive(Debug, Default)]
pub struct OtelStats {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Spans dropped because their export failed or timed out, or the collector
    /// rejected them.
    pub dropped_export_failed: AtomicU64,
    /// Exports that failed or timed out.
    pub failed_exports: AtomicU64,
    queue: std::sync::OnceLock<Receiver<Box<Finished>>>,
}

impl OtelStats {
    /// Spans waiting in the queue now.
    pub fn queue_depth(&self) -> u64 {
        self.queue.get().map_or(0, |q| q.len() as u64)
    }
}

/// A finished call on its way to the exporter.
pub struct Finished {
    trace: CallTrace,
    record: Record,
}

/// The proxy's end of the queue.
#[derive(Clone)]
pub struct Queue {
    sender: Sender<Box<Finished>>,
    stats: Arc<OtelStats>,
}

impl Queue {
    /// Puts a copy of a finished call in the queue, or counts it as dropped when the queue
    /// is full. A full queue (the collector down or hung, the exporter backing off) costs
    /// the call no copy of its record.
    pub fn push(&self, trace: &CallTrace, record: &Record) {
        if self.sender.is_full() {
            self.stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let finished = Finished {
            trace: trace.clone(),
            record: record.clone(),
        };
        match self.sender.try_send(Box::new(finished)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<OtelStats> {
        self.stats.clone()
    }

    /// A queue with no thread behind it (unit tests of the proxy's side).
    #[cfg(test)]
    pub(crate) fn detached(capacity: usize) -> (Queue, Receiver<Box<Finished>>) {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        let stats = Arc::new(OtelStats::default());
        let _ = stats.queue.set(receiver.clone());
        (Queue { sender, stats }, receiver)
    }
}

/// The exporter's thread; [`OtelTask::shutdown`] sends what is queued and stops it.
pub struct OtelTask {
    thread: Option<(JoinHandle<()>, Sender<()>)>,
}

impl OtelTask {
    /// No thread (export is off).
    pub fn none() -> OtelTask {
        OtelTask { thread: None }
    }

    /// Sends what is still queued (bounded by one export's timeout plus a short grace)
    /// and stops the thread. Blocking: call it from a blocking context.
    pub fn shutdown(self) {
        if let Some((thread, stop)) = self.thread {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// Starts the exporter's thread for `config`, sending spans of calls to the upstreams
/// `servers` names.
pub fn start(config: &OtelConfig, servers: Servers) -> Result<(Queue, OtelTask), StartError> {
    let (sender, receiver) = crossbeam_channel::bounded(config.max_queue_size);
    let stats = Arc::new(OtelStats::default());
    let _ = stats.queue.set(receiver.clone());
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let resource = resource(config);
    let worker = Worker {
        config: config.clone(),
        servers,
        batch: Batch::new(resource.iter().map(|(k, v)| (k.as_str(), v))),
        stats: stats.clone(),
        queue: receiver,
        stop: stop_rx,
    };
    let thread = std::thread::Builder::new()
        .name("otel-exporter".into())
        .spawn(move || worker.run(ready_tx))
        .map_err(StartError::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            return Err(StartError::Exporter(
                "the exporter's thread ended while starting".into(),
            ));
        }
    }
    tracing::info!(
        endpoint = %config.traces_endpoint,
        protocol = config.protocol.as_str(),
        sampler = config.sampler.name(),
        "exporting GenAI spans over OTLP"
    );
    Ok((
        Queue { sender, stats },
        OtelTask {
            thread: Some((thread, stop_tx)),
        },
    ))
}

/// The service's resource: `service.name`, `service.version`, the SDK's `telemetry.sdk.*`
/// and whatever `OTEL_RESOURCE_ATTRIBUTES` adds.
fn resource(config: &OtelConfig) -> Resource {
    Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

struct Worker {
    config: OtelConfig,
    servers: Servers,
    batch: Batch,
    stats: Arc<OtelStats>,
    queue: Receiver<Box<Finished>>,
    stop: Receiver<()>,
}

impl Worker {
    fn run(self, ready: std::sync::mpsc::Sender<Result<(), StartError>>) {
        lower_priority();
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(StartError::Thread(e)));
                return;
            }
        };
        // The gRPC channel is created inside the runtime (tonic spawns its connection
        // task there).
        let transport = match runtime.block_on(async { Transport::new(&self.config) }) {
            Ok(transport) => transport,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        self.serve(&runtime, &transport);
    }

    /// Adds a finished call's span to the batch.
    fn take(&mut self, finished: &Finished) {
        let server = self.servers.of(finished.record.host.as_deref());
        self.batch.push(&finished.trace, &finished.record, server);
    }

    fn serve(mut self, runtime: &tokio::runtime::Runtime, transport: &Transport) {
        let max_batch = self.config.max_export_batch_size;
        let mut oldest: Option<Instant> = None;
        let mut failing = false;
        let mut backoff = Backoff::default();
        loop {
            // Take what is queued, sending each full batch; none while backing off.
            let mut senders_gone = false;
            while !backoff.waiting() {
                match self.queue.try_recv() {
                    Ok(finished) => {
                        self.take(&finished);
                        oldest.get_or_insert_with(Instant::now);
                        if self.batch.len() >= max_batch {
                            let failed =
                                self.export(runtime, transport, &mut failing, self.config.timeout);
                            backoff.after(failed);
                            oldest = None;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        senders_gone = true;
                        break;
                    }
                }
            }
            if !backoff.waiting()
                && oldest.is_some_and(|t| t.elapsed() >= self.config.schedule_delay)
            {
                let failed = self.export(runtime, transport, &mut failing, self.config.timeout);
                backoff.after(failed);
                oldest = None;
            }
            if senders_gone {
                break;
            }
            // Sleep until the next look (or the oldest span's deadline), woken early only
            // by the stop signal; a look while backing off only checks the pause's end.
            let wait = match oldest {
                Some(t) if !backoff.waiting() => self
                    .config
                    .schedule_delay
                    .saturating_sub(t.elapsed())
                    .min(POLL),
                _ => POLL,
            };
            match self.stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Shutting down: what is queued goes out in full batches, all within one
        // export's timeout plus a grace period.
        let deadline = Instant::now() + self.config.timeout + SHUTDOWN_GRACE;
        loop {
            while self.batch.len() < max_batch {
                match self.queue.try_recv() {
                    Ok(finished) => self.take(&finished),
                    Err(_) => break,
                }
            }
            if self.batch.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let lost = self.batch.len() as u64 + self.queue.len() as u64;
                self.stats
                    .dropped_export_failed
                    .fetch_add(lost, Ordering::Relaxed);
                break;
            }
            self.export(
                runtime,
                transport,
                &mut failing,
                left.min(self.config.timeout),
            );
        }
    }

    /// Sends the batch (emptying it) and counts the outcome. True when the export failed
    /// (no answer, or an error from the transport): the collector is down or hung.
    fn export(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        transport: &Transport,
        failing: &mut bool,
        timeout: Duration,
    ) -> bool {
        let n = self.batch.len() as u64;
        let body = self.batch.request();
        // The timer is made inside the runtime, which it needs.
        let outcome =
            runtime.block_on(async { tokio::time::timeout(timeout, transport.send(body)).await });
        let (accepted, error, failed) = match outcome {
            Ok(Ok(rejected)) => {
                let lost = rejected.spans.min(n);
                let error = (lost > 0).then(|| {
                    format!(
                        "the collector rejected {lost} of {n} spans: {}",
                        rejected.message
                    )
                });
                (n - lost, error, false)
            }
            Ok(Err(e)) => (0, Some(e), true),
            Err(_) => (
                0,
                Some(format!("no answer within {} ms", timeout.as_millis())),
                true,
            ),
        };
        self.stats.exported.fetch_add(accepted, Ordering::Relaxed);
        self.stats
            .dropped_export_failed
            .fetch_add(n - accepted, Ordering::Relaxed);
        if failed {
            self.stats.failed_exports.fetch_add(1, Ordering::Relaxed);
        }
        match error {
            None => {
                if std::mem::take(failing) {
                    tracing::info!("OTLP export works again");
                }
            }
            Some(error) => {
                if !std::mem::replace(failing, true) {
                    // Logged once per outage; /metrics counts every lost span.
                    tracing::warn!(
                        endpoint = %self.config.traces_endpoint,
                        %error,
                        spans = n - accepted,
                        "OTLP export failed; spans are dropped until the collector takes them"
                    );
                }
            }
        }
        failed
    }
}

/// The pause after failed exports.
#[derive(Debug, Default)]
struct Backoff {
    /// Until when the queue is left alone (the end of the latest pause, past or not).
    until: Option<Instant>,
    /// The next pause.
    next: Option<Duration>,
}

impl Backoff {
    /// Whether the thread is pausing now.
    fn waiting(&self) -> bool {
        self.until.is_some_and(|t| Instant::now() < t)
    }

    /// After an export: a failure starts (or doubles) the pause, a success ends them.
    fn after(&mut self, failed: bool) {
        if failed {
            let pause = self.next.unwrap_or(FIRST_BACKOFF);
            self.until = Some(Instant::now() + pause);
            self.next = Some((pause * 2).min(MAX_BACKOFF));
        } else {
            self.next = None;
        }
    }
}

/// Lowers the calling thread's CPU priority by [`EXPORTER_NICE_STEP`] `nice` levels from
/// its own (a process started with `nice` keeps the gap); where that is refused the
/// thread runs at the process's.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = Some(rustix::thread::gettid());
        let lowered = rustix::process::getpriority_process(thread)
            .map(|nice| (nice + EXPORTER_NICE_STEP).min(19))
            .and_then(|nice| rustix::process::setpriority_process(thread, nice));
        if let Err(e) = lowered {
            tracing::debug!(error = %e, "the span exporter's thread keeps the process's priority");
        }
    }
}

/// What the collector said it did not take (`ExportTracePartialSuccess`).
#[derive(Debug, Default)]
struct Rejected {
    spans: u64,
    message: String,
}

impl Rejected {
    fn of(response: &ExportTraceServiceResponse) -> Rejected {
        response
            .partial_success
            .as_ref()
            .map_or_else(Rejected::default, |p| Rejected {
                spans: u64::try_from(p.rejected_spans).unwrap_or(0),
                message: p.error_message.clone(),
            })
    }
}

/// The gRPC method of OTLP trace export.
const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Where export requests go.
enum Transport {
    /// OTLP/HTTP: `POST` of the protobuf body to the traces URL.
    Http {
        client: reqwest::Client,
        url: String,
        headers: reqwest::header::HeaderMap,
    },
    /// OTLP/gRPC: the trace service's `Export`, the body already encoded.
    Grpc {
        channel: tonic::transport::Channel,
        metadata: tonic::metadata::MetadataMap,
    },
}

impl Transport {
    /// The transport for `config`; gRPC connects on the first export.
    fn new(config: &OtelConfig) -> Result<Transport, StartError> {
        let mut headers = axum::http::HeaderMap::new();
        for (k, v) in &config.headers {
            // Checked by the configuration's validation.
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                axum::http::HeaderValue::from_str(v),
            ) {
                headers.insert(k, v);
            }
        }
        match config.protocol {
            Protocol::HttpProtobuf => {
                let client = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .build()
                    .map_err(|e| StartError::Exporter(error_chain(&e)))?;
                headers.insert(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/x-protobuf"),
                );
                Ok(Transport::Http {
                    client,
                    url: config.traces_endpoint.clone(),
                    headers,
                })
            }
            Protocol::Grpc => {
                let endpoint =
                    tonic::transport::Endpoint::from_shared(config.traces_endpoint.clone())
                        .map_err(|e| StartError::Exporter(error_chain(&e)))?
                        .timeout(config.timeout)
                        .connect_timeout(config.timeout);
                Ok(Transport::Grpc {
                    channel: endpoint.connect_lazy(),
                    metadata: tonic::metadata::MetadataMap::from_headers(headers),
                })
            }
        }
    }

    /// Sends one export request; what the collector rejected, or why it failed.
    async fn send(&self, body: Vec<u8>) -> Result<Rejected, String> {
        match self {
            Transport::Http {
                client,
                url,
                headers,
            } => {
                let response = client
                    .post(url)
                    .headers(headers.clone())
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| error_chain(&e))?;
                let status = response.status();
                let answer = response.bytes().await.map_err(|e| error_chain(&e))?;
                if !status.is_success() {
                    return Err(format!("the collector answered HTTP {status}"));
                }
                // An empty body is an empty response: all accepted.
                Ok(ExportTraceServiceResponse::decode(answer)
                    .map(|r| Rejected::of(&r))
                    .unwrap_or_default())
            }
            Transport::Grpc { channel, metadata } => {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready().await.map_err(|e| error_chain(&e))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = metadata.clone();
                let response = grpc
                    .unary(
                        request,
                        axum::http::uri::PathAndQuery::from_static(GRPC_EXPORT_PATH),
                        Encoded,
                    )
                    .await
                    .map_err(|s| format!("gRPC status {:?}: {}", s.code(), s.message()))?;
                Ok(Rejected::of(response.get_ref()))
            }
        }
    }
}

/// The gRPC codec of an export: the request goes as the bytes [`Batch::request`]
/// encoded; the answer is decoded with the official definitions.
#[derive(Debug, Clone, Copy)]
struct Encoded;

impl tonic::codec::Codec for Encoded {
    type Encode = Vec<u8>;
    type Decode = ExportTraceServiceResponse;
    type Encoder = Encoded;
    type Decoder = Encoded;

    fn encoder(&mut self) -> Encoded {
        Encoded
    }

    fn decoder(&mut self) -> Encoded {
        Encoded
    }
}

impl tonic::codec::Encoder for Encoded {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Encoded {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| {
                tonic::Status::internal(format!("an export answer that does not decode: {e}"))
            })
    }
}
