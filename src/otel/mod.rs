//! OpenTelemetry: one GenAI span per inference call, exported over OTLP, joined to the
//! caller's trace.
//!
//! On the request path the proxy does two small things, and only when export is on
//! ([`Otel::start_call`]): it reads the client's W3C `traceparent`/`tracestate` (the span's
//! parent), decides sampling, and writes one `traceparent` header naming the call's own
//! span for the upstream. At the end of a sampled call it puts a copy of the record in a
//! bounded queue ([`Otel::finish`]). Everything else happens on the exporter's thread,
//! which encodes the span straight from the record into an OTLP protobuf request
//! ([`span`], [`wire`]) and sends batches over HTTP or gRPC ([`export`]). A full queue or a
//! collector that is down or slow costs dropped spans (counted in `/metrics`), never a
//! wait.
//!
//! - `config`: `[otel]` and the standard `OTEL_*` variables.
//! - `span`: the span of one finished record, encoded (pure).
//! - `wire`: the protobuf wire format the spans are written in.
//! - `export`: the queue, the exporter's thread, its transports and counters.

pub mod config;
pub mod export;
pub mod span;
pub mod wire;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceState,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};

use crate::record::Record;
use crate::upstream::UpstreamKind;
pub use config::{GenAiMetricNames, OtelConfig};
pub use export::{OtelStats, StartError};

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// `gen_ai.provider.name` of an Ollama upstream (not a registered value of the
/// conventions; the name Ollama goes by).
pub const PROVIDER_OLLAMA: &str = "ollama";
/// `gen_ai.provider.name` of an OpenAI-compatible upstream that is not Ollama (llama.cpp's
/// `llama-server`, vLLM, SGLang, LM Studio). Not `openai`, which the conventions register
/// for OpenAI's own service: these servers only speak its API, and which of them answers
/// is not known (`server.address` tells where it runs).
pub const PROVIDER_OPENAI_COMPATIBLE: &str = "openai_compatible";

/// `gen_ai.provider.name` of an upstream of `kind`; an upstream whose kind is not known
/// yet counts as Ollama (as its telemetry does).
pub fn provider_name(kind: Option<UpstreamKind>) -> &'static str {
    match kind {
        Some(UpstreamKind::OpenAi) => PROVIDER_OPENAI_COMPATIBLE,
        Some(UpstreamKind::Ollama) | None => PROVIDER_OLLAMA,
    }
}

/// The trace identity of one call, fixed when its request arrives: its own span, the
/// caller's span (if any) and the sampling decision.
#[derive(Debug, Clone)]
pub struct CallTrace {
    /// The call's own span: trace id (the caller's, or new), a new span id, the sampled
    /// flag and the caller's `tracestate`.
    pub span_context: SpanContext,
    /// The caller's span; invalid when the call started a trace.
    pub parent_span_id: SpanId,
    /// `gen_ai.provider.name` of the upstream.
    pub provider: &'static str,
}

impl CallTrace {
    /// Whether the span is recorded and exported.
    pub fn sampled(&self) -> bool {
        self.span_context.is_sampled()
    }

    /// The `traceparent` header for the upstream: this call's span as the parent.
    pub fn traceparent(&self) -> HeaderValue {
        // `00-{trace id}-{span id}-{flags}`, hex, written without the formatting
        // machinery (it runs on the proxy's thread).
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [b'-'; 55];
        text[0] = b'0';
        text[1] = b'0';
        let mut put = |at: usize, bytes: &[u8]| {
            for (i, b) in bytes.iter().enumerate() {
                text[at + 2 * i] = HEX[usize::from(b >> 4)];
                text[at + 2 * i + 1] = HEX[usize::from(b & 0x0f)];
            }
        };
        put(3, &self.span_context.trace_id().to_bytes());
        put(36, &self.span_context.span_id().to_bytes());
        put(53, &[self.span_context.trace_flags().to_u8()]);
        // Hex digits and dashes only: always a valid header value.
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// The handle the proxy holds: cheap to clone; does nothing when export is off.
#[derive(Clone, Default)]
pub struct Otel {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    sampler: Sampler,
    ids: RandomIdGenerator,
    propagator: TraceContextPropagator,
    queue: export::Queue,
}

impl std::fmt::Debug for Otel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otel")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl Otel {
    /// A handle that traces nothing.
    pub fn disabled() -> Otel {
        Otel::default()
    }

    /// Starts the exporter's thread (when `config.enabled`) for spans of calls to
    /// `upstreams`, given as `(name, url)`, the first one first: the host and port of the
    /// one a record names become its span's `server.address` and `server.port`.
    pub fn start<'a>(
        config: &OtelConfig,
        upstreams: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(Otel, export::OtelTask), StartError> {
        if !config.enabled {
            return Ok((Otel::disabled(), export::OtelTask::none()));
        }
        let (queue, task) = export::start(config, span::Servers::new(upstreams))?;
        let inner = Inner {
            sampler: sampler(config.sampler),
            ids: RandomIdGenerator::default(),
            propagator: TraceContextPropagator::new(),
            queue,
        };
        Ok((
            Otel {
                inner: Some(Arc::new(inner)),
            },
            task,
        ))
    }

    /// Whether spans are exported.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The exporter's counters, for `/metrics`; `None` when export is off.
    pub fn stats(&self) -> Option<Arc<OtelStats>> {
        self.inner.as_ref().map(|i| i.queue.stats())
    }

    /// The trace of a call whose request carries `headers`, to an upstream of `provider`
    /// ([`provider_name`]); `None` when export is off.
    pub fn start_call(&self, headers: &HeaderMap, provider: &'static str) -> Option<CallTrace> {
        let inner = self.inner.as_ref()?;
        let parent = if headers.contains_key(TRACEPARENT) {
            inner
                .propagator
                .extract_with_context(&Context::new(), &Headers(headers))
        } else {
            Context::new()
        };
        let parent_span = parent.span().span_context().clone();
        let (trace_id, parent_span_id, state) = if parent_span.is_valid() {
            (
                parent_span.trace_id(),
                parent_span.span_id(),
                parent_span.trace_state().clone(),
            )
        } else {
            (inner.ids.new_trace_id(), SpanId::INVALID, TraceState::NONE)
        };
        // The samplers offered (always, ratio, parent-based) do not read the span's name.
        let decision =
            inner
                .sampler
                .should_sample(Some(&parent), trace_id, "", &SpanKind::Client, &[], &[]);
        let flags = match decision.decision {
            SamplingDecision::RecordAndSample => TraceFlags::SAMPLED,
            SamplingDecision::Drop | SamplingDecision::RecordOnly => TraceFlags::default(),
        };
        Some(CallTrace {
            span_context: SpanContext::new(trace_id, inner.ids.new_span_id(), flags, false, state),
            parent_span_id,
            provider,
        })
    }

    /// Hands a finished call to the exporter: a copy of the record goes into the queue
    /// (never waited on; counted as dropped when full). Unsampled calls cost nothing.
    pub fn finish(&self, trace: &CallTrace, record: &Record) {
        if let Some(inner) = &self.inner
            && trace.sampled()
        {
            inner.queue.push(trace, record);
        }
    }
}

/// The configured sampler as the SDK's.
fn sampler(setting: config::SamplerSetting) -> Sampler {
    use config::SamplerSetting as S;
    match setting {
        S::AlwaysOn => Sampler::AlwaysOn,
        S::AlwaysOff => Sampler::AlwaysOff,
        S::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
        S::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        S::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        S::ParentBasedTraceIdRatio(r) => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
        }
    }
}

/// A request's headers as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::SamplerSetting;

    fn otel(sampler: SamplerSetting) -> Otel {
        let (queue, _) = export::Queue::detached(16);
        Otel {
            inner: Some(Arc::new(Inner {
                sampler: super::sampler(sampler),
                ids: RandomIdGenerator::default(),
                propagator: TraceContextPropagator::new(),
                queue,
            })),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_client_traceparent_is_the_parent_and_the_upstream_gets_our_span() {
        let o = otel(SamplerSetting::ParentBasedAlwaysOn);
        let t = o
            .start_call(
                &headers(&[(TRACEPARENT, PARENT), ("tracestate", "vendor=x")]),
                "ollama",
            )
            .expect("on");
        assert_eq!(
            t.span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(t.parent_span_id.to_string(), "b7ad6b7169203331");
        assert_ne!(t.span_context.span_id(), t.parent_span_id);
        assert!(t.sampled());
        assert_eq!(t.span_context.trace_state().header(), "vendor=x");
        let header = t.traceparent();
        let text = header.to_str().expect("ascii");
        assert_eq!(
            text,
            format!(
                "00-0af7651916cd43dd8448eb211c80319c-{}-01",
                t.span_context.span_id()
            )
        );
    }

    #[test]
    fn without_a_parent_a_trace_starts_and_a_bad_header_is_ignored() {
        let o = otel(SamplerSetting::ParentBasedAlwaysOn);
        for h in [
            headers(&[]),
            headers(&[(TRACEPARENT, "garbage")]),
            headers(&[(
                TRACEPARENT,
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            )]),
        ] {
            let t = o.start_call(&h, "ollama").expect("on");
            assert!(t.span_context.is_valid());
            assert_eq!(t.parent_span_id, SpanId::INVALID);
            assert!(t.sampled());
        }
    }

    #[test]
    fn the_parent_decides_under_parentbased_samplers() {
        let o = otel(SamplerSetting::ParentBasedAlwaysOff);
        let unsampled_parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        let t = o
            .start_call(&headers(&[(TRACEPARENT, PARENT)]), "ollama")
            .expect("on");
        assert!(t.sampled(), "a sampled parent wins over always_off");
        let t = o
            .start_call(&headers(&[(TRACEPARENT, unsampled_parent)]), "ollama")
            .expect("on");
        assert!(!t.sampled());
        assert!(t.traceparent().to_str().expect("ascii").ends_with("-00"));
        let t = o.start_call(&headers(&[]), "ollama").expect("on");
        assert!(!t.sampled(), "no parent: the root sampler (always_off)");
    }

    #[test]
    fn the_ratio_sampler_keeps_about_its_share() {
        let o = otel(SamplerSetting::TraceIdRatio(0.25));
        let n = 20_000;
        let kept = (0..n)
            .filter(|_| o.start_call(&headers(&[]), "ollama").expect("on").sampled())
            .count();
        let share = kept as f64 / n as f64;
        // Binomial sd at n = 20,000 and p = 0.25 is 0.003; 0.02 is over six of them.
        assert!((share - 0.25).abs() < 0.02, "{share}");
    }

    #[test]
    fn the_provider_follows_the_upstream_kind() {
        assert_eq!(provider_name(Some(UpstreamKind::Ollama)), "ollama");
        assert_eq!(provider_name(None), "ollama", "not known yet: as Ollama");
        assert_eq!(
            provider_name(Some(UpstreamKind::OpenAi)),
            "openai_compatible"
        );
    }

    #[test]
    fn off_does_nothing() {
        let o = Otel::disabled();
        assert!(
            o.start_call(&headers(&[(TRACEPARENT, PARENT)]), "ollama")
                .is_none()
        );
        assert!(o.stats().is_none());
    }
}
