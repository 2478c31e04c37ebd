//! The exporter's side: a bounded queue of finished calls and one thread that turns them
//! into spans and sends them in batches with the `opentelemetry-otlp` exporter (HTTP with
//! protobuf bodies, or gRPC), on a small runtime of its own.
//!
//! A batch leaves when it is full (`max_export_batch_size`) or when the oldest span has
//! waited `schedule_delay`. Nothing here can slow a proxied call: the proxy only tries to
//! put a record in the queue, and a full queue (the collector is down or slow and the
//! queue has filled while an export waits) drops the span and counts it. A failed or
//! timed-out export drops its batch and counts it too. This is the SDK's batch span
//! processor's job, done here because its counters of dropped spans are not public and
//! `/metrics` must show them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};

use super::CallTrace;
use super::config::{OtelConfig, Protocol};
use super::span::{self, Server};
use crate::record::Record;

/// How long shutting down may spend sending what is still queued, beyond one export's
/// timeout: a collector that is gone must not hold up the sidecar's exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often the export thread looks at the queue. It sleeps between looks instead of
/// waiting on the channel: a waiting receiver makes every call's `push` pay a wake-up (a
/// futex call and a context switch, measured at 13-56 µs of CPU per call in the proxy
/// benchmark), which the recorder's writer avoids the same way.
const POLL: Duration = Duration::from_millis(20);

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The OTLP exporter refused its configuration.
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
    /// Spans dropped because their export failed or timed out.
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
    /// Puts a finished call in the queue, or counts it as dropped when the queue is full.
    pub fn push(&self, trace: CallTrace, record: Record) {
        match self.sender.try_send(Box::new(Finished { trace, record })) {
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

/// Starts the exporter's thread for `config`, sending spans of calls to `server`.
pub fn start(config: &OtelConfig, server: Server) -> Result<(Queue, OtelTask), StartError> {
    let (sender, receiver) = crossbeam_channel::bounded(config.max_queue_size);
    let stats = Arc::new(OtelStats::default());
    let _ = stats.queue.set(receiver.clone());
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let worker = Worker {
        config: config.clone(),
        server,
        scope: span::scope(),
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

struct Worker {
    config: OtelConfig,
    server: Server,
    scope: InstrumentationScope,
    stats: Arc<OtelStats>,
    queue: Receiver<Box<Finished>>,
    stop: Receiver<()>,
}

impl Worker {
    fn run(self, ready: std::sync::mpsc::Sender<Result<(), StartError>>) {
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
        let exporter = match runtime.block_on(async { build_exporter(&self.config) }) {
            Ok(exporter) => exporter,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        self.serve(&runtime, exporter);
    }

    fn serve(self, runtime: &tokio::runtime::Runtime, exporter: opentelemetry_otlp::SpanExporter) {
        let max_batch = self.config.max_export_batch_size;
        let mut batch: Vec<SpanData> = Vec::with_capacity(max_batch);
        let mut oldest: Option<Instant> = None;
        let mut failing = false;
        loop {
            // Take what is queued, sending each full batch.
            let mut senders_gone = false;
            loop {
                match self.queue.try_recv() {
                    Ok(finished) => {
                        batch.push(span::span_data(
                            &finished.trace,
                            &finished.record,
                            &self.server,
                            &self.scope,
                        ));
                        oldest.get_or_insert_with(Instant::now);
                        if batch.len() >= max_batch {
                            self.export(
                                runtime,
                                &exporter,
                                &mut batch,
                                &mut failing,
                                self.config.timeout,
                            );
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
            if oldest.is_some_and(|t| t.elapsed() >= self.config.schedule_delay) {
                self.export(
                    runtime,
                    &exporter,
                    &mut batch,
                    &mut failing,
                    self.config.timeout,
                );
                oldest = None;
            }
            if senders_gone {
                break;
            }
            // Sleep until the next look (or the oldest span's deadline), woken early only
            // by the stop signal.
            let wait = oldest.map_or(POLL, |t| {
                self.config
                    .schedule_delay
                    .saturating_sub(t.elapsed())
                    .min(POLL)
            });
            match self.stop.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Shutting down: what is queued goes out in full batches, all within one
        // export's timeout plus a grace period.
        let deadline = Instant::now() + self.config.timeout + SHUTDOWN_GRACE;
        loop {
            for finished in self
                .queue
                .try_iter()
                .take(max_batch - batch.len().min(max_batch))
            {
                batch.push(span::span_data(
                    &finished.trace,
                    &finished.record,
                    &self.server,
                    &self.scope,
                ));
            }
            if batch.is_empty() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let lost = batch.len() as u64 + self.queue.len() as u64;
                self.stats
                    .dropped_export_failed
                    .fetch_add(lost, Ordering::Relaxed);
                break;
            }
            self.export(
                runtime,
                &exporter,
                &mut batch,
                &mut failing,
                left.min(self.config.timeout),
            );
        }
        let _ = exporter.shutdown();
    }

    /// Sends `batch` (emptying it) and counts the outcome.
    fn export(
        &self,
        runtime: &tokio::runtime::Runtime,
        exporter: &opentelemetry_otlp::SpanExporter,
        batch: &mut Vec<SpanData>,
        failing: &mut bool,
        timeout: Duration,
    ) {
        let spans = std::mem::take(batch);
        let n = spans.len() as u64;
        // The timer is made inside the runtime, which it needs.
        let outcome =
            runtime.block_on(async { tokio::time::timeout(timeout, exporter.export(spans)).await });
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {} ms", timeout.as_millis())),
        };
        match error {
            None => {
                self.stats.exported.fetch_add(n, Ordering::Relaxed);
                if std::mem::take(failing) {
                    tracing::info!("OTLP export works again");
                }
            }
            Some(error) => {
                self.stats
                    .dropped_export_failed
                    .fetch_add(n, Ordering::Relaxed);
                self.stats.failed_exports.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(failing, true) {
                    // Logged once per outage; /metrics counts every lost span.
                    tracing::warn!(
                        endpoint = %self.config.traces_endpoint,
                        %error,
                        spans = n,
                        "OTLP export failed; spans are dropped until the collector answers"
                    );
                }
            }
        }
        *batch = Vec::with_capacity(self.config.max_export_batch_size);
    }
}

/// The OTLP exporter for `config`, with the service's resource.
fn build_exporter(config: &OtelConfig) -> Result<opentelemetry_otlp::SpanExporter, StartError> {
    let error = |e: opentelemetry_otlp::ExporterBuildError| StartError::Exporter(e.to_string());
    let mut exporter = match config.protocol {
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(config.traces_endpoint.clone())
            .with_timeout(config.timeout)
            .with_headers(config.headers.iter().cloned().collect())
            .build()
            .map_err(error)?,
        Protocol::Grpc => {
            let mut headers = axum::http::HeaderMap::new();
            for (k, v) in &config.headers {
                if let (Ok(k), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(k.as_bytes()),
                    axum::http::HeaderValue::from_str(v),
                ) {
                    headers.insert(k, v);
                }
            }
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                .with_endpoint(config.traces_endpoint.clone())
                .with_timeout(config.timeout)
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers),
                )
                .build()
                .map_err(error)?
        }
    };
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    exporter.set_resource(&resource);
    Ok(exporter)
}
