//! The compact form of a record that the in-memory cache keeps and every statistic reads.

use crate::record::{ErrorKind, Record, Source};

/// One record reduced to what statistics need.
///
/// Measurements are `f32` with NaN for unknown (instead of `Option<f64>`) so a sample stays
/// at 64 bytes and a million of them fit in about 64 MB. `f32` keeps 7 significant digits:
/// a microsecond on a 10-second call, far below what a person compares. Sums and means are
/// accumulated in `f64` so precision is not lost over many samples.
///
/// `prompt_tokens` and `output_tokens` feed the latency fit ([`crate::analytics`]) and
/// `energy_j` the energy per token; the one-byte `source` fits in the padding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// `Record::timestamp` as milliseconds since the Unix epoch (UTC).
    pub timestamp_ms: i64,
    /// The operation's interned id; the caller keeps the id -> name table.
    pub operation: u32,
    /// `Record::success`.
    pub success: bool,
    /// `Record::processing_time_ms`.
    pub processing_time_ms: f32,
    /// `Record::ttft_ms`, NaN when unknown.
    pub ttft_ms: f32,
    /// `Record::tokens_per_second`, NaN when unknown.
    pub tokens_per_second: f32,
    /// `Record::prompt_tokens_per_second`, NaN when unknown.
    pub prompt_tokens_per_second: f32,
    /// `Record::quality_score` (1 to 5), NaN when the call was not scored.
    pub quality_score: f32,
    /// `Record::ollama_rss_mb`, NaN when unknown.
    pub ollama_rss_mb: f32,
    /// `Record::gpu_memory_mb`, NaN when unknown.
    pub gpu_memory_mb: f32,
    /// `Record::vram_mb`, NaN when unknown.
    pub vram_mb: f32,
    /// `Record::load_duration_ms`, NaN when unknown.
    pub load_duration_ms: f32,
    /// `Record::output_tokens`, NaN when unknown.
    pub output_tokens: f32,
    /// `Record::prompt_tokens`, NaN when unknown.
    pub prompt_tokens: f32,
    /// `Record::energy_j`, NaN when unknown.
    pub energy_j: f32,
    /// `Record::source`: statistics and recommend can be asked for one source only.
    pub source: Source,
    /// Whether Ollama answered this call "model not found": a name made only of such
    /// calls is a client's mistake, kept out of the views (see `stats::known`).
    pub model_not_found: bool,
    /// `Record::host` as the caller's interned id (0 for none), so statistics can be
    /// asked for one upstream host.
    pub host: u8,
}

// The size is the reason this type exists; a field added carelessly should fail the build.
const _: () = assert!(std::mem::size_of::<Sample>() <= 64);

/// `None` becomes NaN, the sample's "unknown".
fn known(value: Option<f64>) -> f32 {
    value.map_or(f32::NAN, |v| v as f32)
}

impl Sample {
    /// Reduces a record; `operation_id` is the caller's interned id of `r.operation`,
    /// `host_id` that of `r.host` (0 for none).
    pub fn from_record(r: &Record, operation_id: u32, host_id: u8) -> Sample {
        Sample {
            timestamp_ms: r.timestamp.timestamp_millis(),
            operation: operation_id,
            success: r.success,
            processing_time_ms: r.processing_time_ms as f32,
            ttft_ms: known(r.ttft_ms),
            tokens_per_second: known(r.tokens_per_second),
            prompt_tokens_per_second: known(r.prompt_tokens_per_second),
            quality_score: known(r.quality_score),
            ollama_rss_mb: known(r.ollama_rss_mb),
            gpu_memory_mb: known(r.gpu_memory_mb),
            vram_mb: known(r.vram_mb),
            load_duration_ms: known(r.load_duration_ms),
            // Token counts stay exact in f32 up to 16,777,216, far beyond any answer.
            output_tokens: known(r.output_tokens.map(|t| t as f64)),
            prompt_tokens: known(r.prompt_tokens.map(|t| t as f64)),
            energy_j: known(r.energy_j),
            source: r.source,
            model_not_found: r.error_kind == Some(ErrorKind::ModelNotFound),
            host: host_id,
        }
    }

    /// A sample that knows only its time, operation, outcome and processing time, every
    /// other measurement unknown; the starting point tests and benchmarks fill in.
    pub fn new(
        timestamp_ms: i64,
        operation: u32,
        success: bool,
        processing_time_ms: f32,
    ) -> Sample {
        Sample {
            timestamp_ms,
            operation,
            success,
            processing_time_ms,
            ttft_ms: f32::NAN,
            tokens_per_second: f32::NAN,
            prompt_tokens_per_second: f32::NAN,
            quality_score: f32::NAN,
            ollama_rss_mb: f32::NAN,
            gpu_memory_mb: f32::NAN,
            vram_mb: f32::NAN,
            load_duration_ms: f32::NAN,
            output_tokens: f32::NAN,
            prompt_tokens: f32::NAN,
            energy_j: f32::NAN,
            source: Source::Proxy,
            model_not_found: false,
            host: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn from_record_maps_unknown_to_nan() {
        let ts = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        let mut r = Record::new(
            "id".into(),
            ts,
            "m".into(),
            "chat".into(),
            "/api/chat".into(),
        );
        r.success = true;
        r.processing_time_ms = 1234.5;
        r.quality_score = Some(4.0);
        r.output_tokens = Some(42);
        let s = Sample::from_record(&r, 7, 0);
        assert_eq!(s.timestamp_ms, ts.timestamp_millis());
        assert_eq!(s.operation, 7);
        assert!(s.success);
        assert_eq!(s.processing_time_ms, 1234.5);
        assert_eq!(s.quality_score, 4.0);
        assert_eq!(s.output_tokens, 42.0);
        assert!(s.ttft_ms.is_nan());
        assert!(s.vram_mb.is_nan());
    }
}
