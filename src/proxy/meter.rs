//! The meter of one instrumented call: it owns the record from the moment the request
//! arrives until it is handed to the recorder. It watches the response body chunk by
//! chunk (stamping the first content chunk, feeding a copy to the decoder) and finishes
//! the record at the end of the body, on an upstream failure, or when dropped unfinished
//! (the client went away: `client_cancelled`). The bytes themselves pass untouched.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as _, Frame};
use hyper::body::Incoming;

use crate::decode::{Api, Decoder, Format, ResponseFacts};
use crate::metrics::{ChunkGaps, Metrics};
use crate::otel::{CallTrace, Otel};
use crate::quality::QualityRules;
use crate::record::{ErrorKind, Record, TimingSource};
use crate::recorder::Recorder;
use crate::telemetry::{EnergyCall, SampleMark, Telemetry};
use crate::text::error_chain;

/// Error messages kept in a record are cut to this many bytes.
const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// How the body ended.
enum End {
    /// The upstream finished the body.
    Complete,
    /// The upstream connection broke mid-body.
    UpstreamBroke(String),
    /// Dropped before the end: the client disconnected.
    Dropped,
}

/// Where a finished record goes and what it is scored and measured with: shared by all
/// calls.
#[derive(Clone)]
pub struct Sinks {
    /// The queue to the store.
    pub recorder: Recorder,
    /// Quality rules.
    pub quality: Arc<QualityRules>,
    /// Memory of the models.
    pub telemetry: Telemetry,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The span exporter (does nothing when export is off).
    pub otel: Otel,
}

/// Owns one call's record until it is submitted.
pub struct Meter {
    record: Option<Record>,
    sinks: Sinks,
    started: Instant,
    api: Api,
    /// The client named its operation; a load-only call keeps it then.
    operation_explicit: bool,
    decoder: Option<Decoder>,
    format: Format,
    first_content: Option<Instant>,
    last_content: Option<Instant>,
    mark: SampleMark,
    /// The call's claim on the energy ledger, from start to submit.
    energy: Option<EnergyCall>,
    /// When the request went to the upstream: the time before it is ollameter's own.
    upstream_sent: Option<Instant>,
    /// When the upstream's body ended (or failed).
    upstream_done: Option<Instant>,
    /// The call counted in flight at its host until the meter is done.
    _in_flight: Option<crate::fleet::InFlight>,
    /// The call's span, when spans are exported.
    trace: Option<CallTrace>,
    /// Where the gaps between content chunks of a stream go (current GenAI metric names).
    chunk_gaps: Option<ChunkGaps>,
}

/// Limits for decoding an answer.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Answer text kept for quality rules.
    pub capture_bytes: usize,
    /// Largest JSON answer parsed.
    pub parse_bytes: usize,
}

impl Meter {
    /// Starts metering a call whose request arrived at `started`.
    pub fn new(
        record: Record,
        sinks: Sinks,
        started: Instant,
        api: Api,
        operation_explicit: bool,
    ) -> Meter {
        let mark = sinks.telemetry.mark();
        let energy = Some(sinks.telemetry.energy_begin(&record.model));
        Meter {
            sinks,
            mark,
            energy,
            upstream_sent: None,
            upstream_done: None,
            _in_flight: None,
            record: Some(record),
            started,
            api,
            operation_explicit,
            decoder: None,
            format: Format::Other,
            first_content: None,
            last_content: None,
            trace: None,
            chunk_gaps: None,
        }
    }

    /// The call's span (from [`Otel::start_call`]), finished with the record.
    pub fn set_trace(&mut self, trace: Option<CallTrace>) {
        self.trace = trace;
    }

    /// The `traceparent` the upstream gets: this call's span as the parent; `None` when
    /// spans are not exported (the client's own header then passes through as it came).
    pub fn traceparent(&self) -> Option<axum::http::HeaderValue> {
        self.trace.as_ref().map(CallTrace::traceparent)
    }

    /// The record's id, for the `X-Ollameter-Record-Id` header.
    pub fn id(&self) -> &str {
        self.record.as_ref().map_or("", |r| r.id.as_str())
    }

    /// Holds the call's in-flight count at its host until the record is finished (the
    /// answer's end, a failure, or the client going away).
    pub fn hold(&mut self, in_flight: crate::fleet::InFlight) {
        self._in_flight = Some(in_flight);
    }

    /// The request is about to be sent upstream: the time before it was ollameter's own.
    pub fn upstream_sent(&mut self) {
        self.upstream_sent = Some(Instant::now());
    }

    /// The upstream's body ended (or broke): the time after it is ollameter's own.
    fn upstream_done(&mut self) {
        self.upstream_done = Some(Instant::now());
    }

    /// The upstream's response headers arrived: prepare to read its body.
    pub fn response_started(
        &mut self,
        status: u16,
        content_type: Option<&str>,
        limits: DecodeLimits,
    ) {
        self.format = Format::from_content_type(content_type);
        let Some(record) = self.record.as_mut() else {
            return;
        };
        record.http_status = Some(status);
        record.stream = matches!(self.format, Format::Ndjson | Format::Sse);
        if record.stream && (200..300).contains(&status) {
            self.chunk_gaps = self.sinks.metrics.chunk_gaps(
                &record.model,
                &record.endpoint,
                record.host.as_deref(),
            );
        }
        let capture = if self.sinks.quality.applies(&record.operation, &record.model) {
            limits.capture_bytes
        } else {
            0
        };
        self.decoder = Some(Decoder::new(
            self.api,
            self.format,
            capture,
            limits.parse_bytes,
        ));
    }

    /// The call failed before any response: record why, with the status the client got.
    pub fn fail(mut self, kind: ErrorKind, status: u16, message: String) {
        if let Some(mut record) = self.record.take() {
            record.http_status = Some(status);
            record.success = false;
            record.error_kind = Some(kind);
            record.error_message = Some(truncate(message));
            record.processing_time_ms = ms_since(self.started);
            self.submit(record);
        }
    }

    /// A chunk of the answer passed to the client.
    fn on_chunk(&mut self, chunk: &[u8]) {
        if let Some(record) = self.record.as_mut() {
            record.response_bytes += chunk.len() as u64;
        }
        if let Some(decoder) = self.decoder.as_mut()
            && decoder.feed(chunk) > 0
        {
            let now = Instant::now();
            self.first_content.get_or_insert(now);
            if let (Some(gaps), Some(last)) = (&self.chunk_gaps, self.last_content) {
                gaps.observe(now - last);
            }
            self.last_content = Some(now);
        }
    }

    fn finish(&mut self, end: End) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let now = Instant::now();
        record.processing_time_ms = ms_between(self.started, now);
        let facts = self.decoder.take().map(Decoder::finish).unwrap_or_default();
        apply_facts(&mut record, &facts);
        if record.stream
            && let Some(first) = self.first_content
        {
            record.ttft_ms = Some(ms_between(self.started, first));
        }
        if record.tokens_per_second.is_none()
            && record.stream
            && let (Some(first), Some(last), Some(tokens)) =
                (self.first_content, self.last_content, record.output_tokens)
        {
            // No upstream timings (OpenAI-compatible routes): measure generation speed at
            // the proxy, between the first and the last content chunk.
            let secs = (last - first).as_secs_f64();
            if tokens >= 2 && secs > 0.0 {
                record.tokens_per_second = Some((tokens - 1) as f64 / secs);
                record.timing_source = Some(TimingSource::Proxy);
            }
        }
        let status = record.http_status.unwrap_or(0);
        let clean = facts.error_message.is_none();
        let (success, kind, message) = if record.http_status.is_none() {
            // No response yet: the handler was dropped while waiting for the upstream.
            (
                false,
                Some(ErrorKind::ClientCancelled),
                Some("the client closed the connection before the upstream answered".into()),
            )
        } else if !(200..300).contains(&status) {
            let message = facts
                .error_message
                .clone()
                .unwrap_or_else(|| format!("HTTP {status}"));
            let kind = ErrorKind::of_upstream_answer(status, &message);
            (false, Some(kind), Some(message))
        } else {
            match end {
                End::Dropped if facts.completed && clean => (true, None, None),
                End::Dropped => (
                    false,
                    Some(ErrorKind::ClientCancelled),
                    Some("the client closed the connection before the answer was complete".into()),
                ),
                End::UpstreamBroke(e) => (
                    false,
                    Some(ErrorKind::UpstreamDisconnected),
                    Some(format!("the upstream connection broke mid-answer: {e}")),
                ),
                End::Complete if !clean => {
                    let kind = if record.stream {
                        ErrorKind::MidstreamError
                    } else {
                        ErrorKind::UpstreamError
                    };
                    (false, Some(kind), facts.error_message.clone())
                }
                End::Complete if record.stream && !facts.completed => (
                    false,
                    Some(ErrorKind::MidstreamError),
                    Some("the stream ended without its final object".into()),
                ),
                End::Complete => (true, None, parse_note(&facts)),
            }
        };
        record.success = success;
        record.error_kind = kind;
        record.error_message = message.map(truncate);
        if success && !facts.text.is_empty() {
            record.quality_score =
                self.sinks
                    .quality
                    .extract(&record.operation, &record.model, &facts.text);
        }
        if !self.operation_explicit
            && let Some(reason @ ("load" | "unload")) = record.done_reason.as_deref()
        {
            // A generate with no prompt only loads or unloads a model: counting it as a
            // generation would skew the model's timings.
            record.operation = reason.to_string();
        }
        self.submit(record);
    }

    fn submit(&mut self, mut record: Record) {
        // Its share of the energy while it ran: a short lock, no I/O.
        if let Some(call) = self.energy.take() {
            let energy = call.finish();
            record.energy_j = energy.joules;
            record.energy_source = energy.source;
        }
        // The model's memory at the end of the call and its peak while it ran: a short
        // read of the sampler's latest figures, no I/O.
        let memory = self.sinks.telemetry.model_memory(&record.model, self.mark);
        record.ollama_rss_mb = memory.ollama_rss_mb;
        record.ollama_rss_peak_mb = memory.ollama_rss_peak_mb;
        record.gpu_memory_mb = memory.gpu_memory_mb;
        record.gpu_memory_peak_mb = memory.gpu_memory_peak_mb;
        record.vram_mb = memory.vram_mb;
        record.gpu_free_mb = memory.gpu_free_mb;
        self.sinks.metrics.observe_record(&record);
        if let Some(trace) = &self.trace {
            // A copy of the record to the exporter's queue; the span is built there.
            self.sinks.otel.finish(trace, &record);
        }
        tracing::info!(
            record_id = %record.id,
            model = %record.model,
            endpoint = %record.endpoint,
            status = record.http_status,
            success = record.success,
            error_kind = record.error_kind.map(ErrorKind::as_str),
            processing_time_ms = record.processing_time_ms,
            ttft_ms = record.ttft_ms,
            tokens_per_second = record.tokens_per_second,
            "inference call"
        );
        if !self.sinks.recorder.submit(record) {
            tracing::warn!("recorder queue full: record dropped");
        }
        if let (Some(sent), Some(done)) = (self.upstream_sent, self.upstream_done) {
            // ollameter's own share of the call: reading and parsing the request before it
            // went upstream, and finishing the record after the upstream's body ended (up
            // to here, the record queued). The time in between was the upstream's.
            let own = sent.saturating_duration_since(self.started) + done.elapsed();
            self.sinks.metrics.observe_proxy_overhead(own.as_secs_f64());
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Unfinished when dropped: the response (or the handler) was abandoned because the
        // client went away.
        self.finish(End::Dropped);
    }
}

/// Copies the upstream's own numbers into the record, nanoseconds to milliseconds.
fn apply_facts(record: &mut Record, facts: &ResponseFacts) {
    let ms = |ns: Option<u64>| ns.map(|v| v as f64 / 1e6);
    record.total_duration_ms = ms(facts.total_duration_ns);
    record.load_duration_ms = ms(facts.load_duration_ns);
    record.prompt_eval_duration_ms = ms(facts.prompt_eval_duration_ns);
    record.eval_duration_ms = ms(facts.eval_duration_ns);
    record.prompt_tokens = facts.prompt_eval_count;
    record.output_tokens = facts.eval_count;
    record.tokens_estimated = facts.tokens_estimated;
    record.tokens_per_second = rate(facts.eval_count, facts.eval_duration_ns);
    record.prompt_tokens_per_second = rate(facts.prompt_eval_count, facts.prompt_eval_duration_ns);
    record.done_reason = facts.done_reason.clone();
    if let Some(t) = &facts.server_timings {
        // llama.cpp's own figures. `prompt_n` counts only the prompt tokens it evaluated
        // (not those reused from its cache), so its speed is the server's, not usage/time.
        record.prompt_eval_duration_ms = t.prompt_ms.or(record.prompt_eval_duration_ms);
        record.eval_duration_ms = t.predicted_ms.or(record.eval_duration_ms);
        record.tokens_per_second = t.tokens_per_second().or(record.tokens_per_second);
        record.prompt_tokens_per_second = t
            .prompt_tokens_per_second()
            .or(record.prompt_tokens_per_second);
    }
    if record.tokens_per_second.is_some() || record.prompt_tokens_per_second.is_some() {
        record.timing_source = Some(TimingSource::Server);
    }
}

/// Tokens per second from a count and a duration in nanoseconds.
fn rate(count: Option<u64>, duration_ns: Option<u64>) -> Option<f64> {
    match (count, duration_ns) {
        (Some(c), Some(d)) if c > 0 && d > 0 => Some(c as f64 / d as f64 * 1e9),
        _ => None,
    }
}

fn parse_note(facts: &ResponseFacts) -> Option<String> {
    (facts.parse_errors > 0).then(|| {
        format!(
            "answer passed through, but {} part(s) could not be parsed: {}",
            facts.parse_errors,
            facts.first_parse_error.as_deref().unwrap_or("unknown")
        )
    })
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE_BYTES {
        let mut cut = MAX_ERROR_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

fn ms_since(start: Instant) -> f64 {
    ms_between(start, Instant::now())
}

fn ms_between(start: Instant, end: Instant) -> f64 {
    end.saturating_duration_since(start).as_secs_f64() * 1e3
}

/// The upstream's body, passed through frame by frame, unchanged, while the meter
/// watches it: each data frame is counted and fed to the decoder, and the end of the
/// body (or its failure) finishes the record.
pub struct MeteredBody {
    inner: Incoming,
    meter: Meter,
}

impl MeteredBody {
    /// Wraps an upstream answer's body.
    pub fn new(inner: Incoming, meter: Meter) -> MeteredBody {
        let mut body = MeteredBody { inner, meter };
        if body.inner.is_end_stream() {
            // An empty body (`Content-Length: 0`): the server will not poll it.
            body.ended(End::Complete);
        }
        body
    }

    fn ended(&mut self, end: End) {
        self.meter.upstream_done();
        self.meter.finish(end);
    }
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(chunk) = frame.data_ref() {
                    this.meter.on_chunk(chunk);
                }
                // A body of known length ends with its last byte: the server writes that
                // chunk as the end and never polls again.
                if this.inner.is_end_stream() {
                    this.ended(End::Complete);
                }
            }
            Poll::Ready(Some(Err(e))) => this.ended(End::UpstreamBroke(error_chain(e))),
            Poll::Ready(None) => this.ended(End::Complete),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
