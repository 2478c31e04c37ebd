//! One model's statistics over a filtered window of its samples: [`ModelStatistics`] for
//! `/statistics` and `/compare`, and the lighter [`ModelSummary`] that recommendation needs,
//! which skips every percentile but p50 so `/recommend` over all models stays fast.
//!
//! Which operations each figure covers:
//! - `processing_time_ms`, `ttft_ms`, `tokens_per_second` and `prompt_tokens_per_second`
//!   are over **successful** operations only. They describe what a user waits for when the
//!   model works; a failure that returns in 3 ms (model not found, upstream down) would
//!   otherwise make a broken model look fast. How often it fails is `success_rate`'s job.
//! - `quality`, `memory_mb`, `gpu_memory_mb`, `vram_mb` and `load_duration_ms` are over
//!   every operation that carries the value: a scored or measured failure still tells
//!   something true about the model.
//! - Unknown values are skipped; a figure with no known value is `null`.
//! - Figures are rounded to 3 decimals; percentiles follow [`super::percentile`](mod@super::percentile).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Filter, Sample, percentiles, round3, utc, wilson_lower_bound};

/// Processing time of the successful operations, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessingTimeStats {
    /// Mean.
    pub avg: Option<f64>,
    /// Fastest.
    pub min: Option<f64>,
    /// Slowest.
    pub max: Option<f64>,
    /// Median: the typical call, robust to one cold load.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Time to first token of the successful operations, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TtftStats {
    /// Mean.
    pub avg: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
}

/// Generation throughput of the successful operations, in tokens per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ThroughputStats {
    /// Mean.
    pub avg: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
}

/// A figure of which only the mean is served.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AvgStats {
    /// Mean.
    pub avg: Option<f64>,
}

/// Quality scores (1 to 5) of the scored operations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QualityStats {
    /// Mean.
    pub avg: Option<f64>,
    /// Lowest.
    pub min: Option<f64>,
    /// Highest.
    pub max: Option<f64>,
    /// How many operations carry a score: the weight of evidence behind `avg`.
    pub scored_operations: u64,
}

/// A memory figure in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AvgMaxStats {
    /// Mean.
    pub avg: Option<f64>,
    /// Highest.
    pub max: Option<f64>,
}

/// A figure of which only the maximum is served.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MaxStats {
    /// Highest.
    pub max: Option<f64>,
}

/// Everything `/statistics/{model}` answers for one model. The JSON names are the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelStatistics {
    /// The model's name as requests spell it (`llama3.1:8b-instruct`).
    pub model: String,
    /// Operations in the window.
    pub total_operations: u64,
    /// Of which succeeded.
    pub successful_operations: u64,
    /// Of which failed.
    pub failed_operations: u64,
    /// `successful_operations / total_operations`, 0 to 1.
    pub success_rate: f64,
    /// Wilson score 95% lower bound of `success_rate`: what the rate is at least, given how
    /// many operations stand behind it.
    pub success_rate_lower_bound: f64,
    /// Over successful operations.
    pub processing_time_ms: ProcessingTimeStats,
    /// Over successful operations.
    pub ttft_ms: TtftStats,
    /// Over successful operations.
    pub tokens_per_second: ThroughputStats,
    /// Over successful operations.
    pub prompt_tokens_per_second: AvgStats,
    /// Over scored operations.
    pub quality: QualityStats,
    /// RSS of the runner plus the Ollama server (`ollama_rss_mb`).
    pub memory_mb: AvgMaxStats,
    /// GPU memory of the runner (`gpu_memory_mb`).
    pub gpu_memory_mb: AvgMaxStats,
    /// The model's `size_vram` (`vram_mb`).
    pub vram_mb: MaxStats,
    /// Ollama's `load_duration` (queueing plus model load).
    pub load_duration_ms: AvgStats,
    /// The earliest operation in the window.
    pub first_seen: DateTime<Utc>,
    /// The latest operation in the window.
    pub last_seen: DateTime<Utc>,
    /// Energy and cost per token (cost figures are filled in by the API from `[cost]`).
    pub efficiency: EfficiencyStats,
}

/// What a model's tokens cost in energy, time and money over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EfficiencyStats {
    /// Mean `energy_j` of the operations that carry one.
    pub avg_energy_j: Option<f64>,
    /// Energy over output tokens, summed over the operations that carry both (a ratio of
    /// sums, so a call with no output adds its energy and no tokens); null when none does.
    pub joules_per_output_token: Option<f64>,
    /// Operations with an energy measurement.
    pub energy_measured_operations: u64,
    /// Why `joules_per_output_token` is null, in words; null when it is known.
    pub energy_unavailable_reason: Option<String>,
    /// Processing time over output tokens of the successful operations that report
    /// output tokens, ms: what `gpu_hour_price` is charged on.
    pub ms_per_output_token: Option<f64>,
    /// Prompt tokens of the successful operations in the window.
    pub prompt_tokens: u64,
    /// Output tokens of the successful operations in the window.
    pub output_tokens: u64,
    /// Cost per 1,000 output tokens in `[cost] currency`: energy at `price_per_kwh` plus
    /// GPU time at `gpu_hour_price`, each where configured and measured; null when
    /// neither is.
    pub cost_per_1k_output_tokens: Option<f64>,
    /// What `cost_per_1k_output_tokens` includes, in words.
    pub cost_basis: Option<String>,
    /// What the window's calls (their prompt and output tokens) would have cost at each
    /// `[cost.reference]` price.
    pub reference_costs: Vec<ReferenceCost>,
}

/// The same calls at a paid API's configured prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReferenceCost {
    /// The reference's name as configured (e.g. `gpt-4o-mini`).
    pub name: String,
    /// The window's prompt and output tokens at its prices.
    pub cost_of_these_calls: f64,
    /// Its price per 1,000 output tokens, with the prompt tokens these calls had per
    /// output token.
    pub cost_per_1k_output_tokens: Option<f64>,
}

/// Why energy is unknown when the records carry none: the API replaces it with the live
/// telemetry's reason where it has one.
pub const NO_ENERGY_IN_WINDOW: &str = "no operation in the window carries an energy measurement \
     (recorded before energy metering, written by hand or imported without energy_j, or \
     measured where neither a GPU energy counter nor RAPL was readable)";

/// Count, sum, min and max of the known values pushed.
#[derive(Debug, Clone, Copy)]
struct Moments {
    count: u64,
    sum: f64,
    min: f32,
    max: f32,
}

impl Moments {
    const EMPTY: Moments = Moments {
        count: 0,
        sum: 0.0,
        min: f32::INFINITY,
        max: f32::NEG_INFINITY,
    };

    fn push(&mut self, value: f32) {
        // Branch-free on purpose: known and unknown values interleave unpredictably, and
        // `f32::min`/`max` already ignore NaN.
        let known = !value.is_nan();
        self.count += u64::from(known);
        self.sum += if known { f64::from(value) } else { 0.0 };
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| round3(self.sum / self.count as f64))
    }

    fn min(&self) -> Option<f64> {
        (self.count > 0).then(|| round3(f64::from(self.min)))
    }

    fn max(&self) -> Option<f64> {
        (self.count > 0).then(|| round3(f64::from(self.max)))
    }
}

/// Counts and extremes shared by the full statistics and the summary.
struct Counts {
    total: u64,
    successful: u64,
    first_ms: i64,
    last_ms: i64,
}

impl Counts {
    const EMPTY: Counts = Counts {
        total: 0,
        successful: 0,
        first_ms: i64::MAX,
        last_ms: i64::MIN,
    };

    fn push(&mut self, s: &Sample) {
        self.total += 1;
        self.successful += u64::from(s.success);
        self.first_ms = self.first_ms.min(s.timestamp_ms);
        self.last_ms = self.last_ms.max(s.timestamp_ms);
    }
}

/// Six decimals: joules per token are often well under one.
fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// `value`'s percentiles, rounded for the API.
fn rounded<const N: usize>(values: &mut [f32], ps: [f64; N]) -> [Option<f64>; N] {
    percentiles(values, ps).map(|v| v.map(round3))
}

/// The statistics of `model` over the samples `filter` covers; `None` when none does.
/// `samples` are the model's samples sorted by timestamp (see [`Filter::window`]).
pub fn model_statistics(
    model: &str,
    samples: &[Sample],
    filter: &Filter,
) -> Option<ModelStatistics> {
    let window = filter.window(samples);
    let mut counts = Counts::EMPTY;
    // Percentile buffers; processing time is known on every successful sample, so its
    // buffer is sized once, the others grow only if their values are present.
    let mut times = Vec::with_capacity(window.len());
    let mut ttfts = Vec::new();
    let mut throughputs = Vec::new();
    let (mut time, mut ttft, mut tps, mut prompt_tps) = (
        Moments::EMPTY,
        Moments::EMPTY,
        Moments::EMPTY,
        Moments::EMPTY,
    );
    let (mut quality, mut rss, mut gpu, mut vram, mut load) = (
        Moments::EMPTY,
        Moments::EMPTY,
        Moments::EMPTY,
        Moments::EMPTY,
        Moments::EMPTY,
    );
    let mut energy = Moments::EMPTY;
    let (mut energy_with_tokens, mut tokens_with_energy) = (0.0_f64, 0.0_f64);
    let (mut timed_ms, mut timed_tokens) = (0.0_f64, 0.0_f64);
    let (mut prompt_total, mut output_total) = (0.0_f64, 0.0_f64);

    for s in window.iter().filter(|s| filter.matches_operation(s)) {
        counts.push(s);
        energy.push(s.energy_j);
        if !s.energy_j.is_nan() && !s.output_tokens.is_nan() {
            energy_with_tokens += f64::from(s.energy_j);
            tokens_with_energy += f64::from(s.output_tokens);
        }
        if s.success {
            if !s.output_tokens.is_nan() {
                timed_ms += f64::from(s.processing_time_ms);
                timed_tokens += f64::from(s.output_tokens);
                output_total += f64::from(s.output_tokens);
            }
            if !s.prompt_tokens.is_nan() {
                prompt_total += f64::from(s.prompt_tokens);
            }
            time.push(s.processing_time_ms);
            ttft.push(s.ttft_ms);
            tps.push(s.tokens_per_second);
            prompt_tps.push(s.prompt_tokens_per_second);
            // NaN is skipped by the percentile functions, so unknowns may go in.
            times.push(s.processing_time_ms);
            if !s.ttft_ms.is_nan() {
                ttfts.push(s.ttft_ms);
            }
            if !s.tokens_per_second.is_nan() {
                throughputs.push(s.tokens_per_second);
            }
        }
        quality.push(s.quality_score);
        rss.push(s.ollama_rss_mb);
        gpu.push(s.gpu_memory_mb);
        vram.push(s.vram_mb);
        load.push(s.load_duration_ms);
    }
    if counts.total == 0 {
        return None;
    }

    let [p50, p90, p95, p99] = rounded(&mut times, [0.5, 0.9, 0.95, 0.99]);
    let [ttft_p50, ttft_p95] = rounded(&mut ttfts, [0.5, 0.95]);
    let [tps_p50] = rounded(&mut throughputs, [0.5]);
    Some(ModelStatistics {
        model: model.to_owned(),
        total_operations: counts.total,
        successful_operations: counts.successful,
        failed_operations: counts.total - counts.successful,
        success_rate: counts.successful as f64 / counts.total as f64,
        success_rate_lower_bound: wilson_lower_bound(counts.successful, counts.total),
        processing_time_ms: ProcessingTimeStats {
            avg: time.avg(),
            min: time.min(),
            max: time.max(),
            p50,
            p90,
            p95,
            p99,
        },
        ttft_ms: TtftStats {
            avg: ttft.avg(),
            p50: ttft_p50,
            p95: ttft_p95,
        },
        tokens_per_second: ThroughputStats {
            avg: tps.avg(),
            p50: tps_p50,
        },
        prompt_tokens_per_second: AvgStats {
            avg: prompt_tps.avg(),
        },
        quality: QualityStats {
            avg: quality.avg(),
            min: quality.min(),
            max: quality.max(),
            scored_operations: quality.count,
        },
        memory_mb: AvgMaxStats {
            avg: rss.avg(),
            max: rss.max(),
        },
        gpu_memory_mb: AvgMaxStats {
            avg: gpu.avg(),
            max: gpu.max(),
        },
        vram_mb: MaxStats { max: vram.max() },
        load_duration_ms: AvgStats { avg: load.avg() },
        first_seen: utc(counts.first_ms),
        last_seen: utc(counts.last_ms),
        efficiency: EfficiencyStats {
            avg_energy_j: energy.avg(),
            joules_per_output_token: (tokens_with_energy > 0.0)
                .then(|| round6(energy_with_tokens / tokens_with_energy)),
            energy_measured_operations: energy.count,
            energy_unavailable_reason: (energy.count == 0).then(|| NO_ENERGY_IN_WINDOW.to_owned()),
            ms_per_output_token: (timed_tokens > 0.0).then(|| round3(timed_ms / timed_tokens)),
            prompt_tokens: prompt_total as u64,
            output_tokens: output_total as u64,
            cost_per_1k_output_tokens: None,
            cost_basis: None,
            reference_costs: Vec::new(),
        },
    })
}

/// What recommendation reads of one model: a subset of [`ModelStatistics`] that
/// [`model_summary`] computes with one selection instead of seven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// The model's name.
    pub model: String,
    /// Operations in the window.
    pub total_operations: u64,
    /// Of which succeeded.
    pub successful_operations: u64,
    /// Median processing time of the successful operations; `None` without one.
    pub p50_processing_time_ms: Option<f64>,
    /// First quartile of the same: with the third, the spread that says how precisely the
    /// median is known. `None` without a successful operation (or from full statistics).
    pub p25_processing_time_ms: Option<f64>,
    /// Third quartile of the same.
    pub p75_processing_time_ms: Option<f64>,
    /// Mean quality score of the scored operations.
    pub quality_avg: Option<f64>,
    /// Sample variance (n - 1) of the quality scores: how consistent they are. `None` with
    /// fewer than two scores (or from full statistics).
    pub quality_variance: Option<f64>,
    /// How many operations carry a quality score.
    pub scored_operations: u64,
    /// Highest `vram_mb` (Ollama's `size_vram`) seen.
    pub max_vram_mb: Option<f64>,
    /// Highest `gpu_memory_mb` (NVML) seen.
    pub max_gpu_memory_mb: Option<f64>,
}

impl From<&ModelStatistics> for ModelSummary {
    fn from(s: &ModelStatistics) -> ModelSummary {
        ModelSummary {
            model: s.model.clone(),
            total_operations: s.total_operations,
            successful_operations: s.successful_operations,
            p50_processing_time_ms: s.processing_time_ms.p50,
            p25_processing_time_ms: None,
            p75_processing_time_ms: None,
            quality_avg: s.quality.avg,
            quality_variance: None,
            scored_operations: s.quality.scored_operations,
            max_vram_mb: s.vram_mb.max,
            max_gpu_memory_mb: s.gpu_memory_mb.max,
        }
    }
}

/// The [`ModelSummary`] of `model` over the samples `filter` covers; `None` when none
/// does. Equal to `ModelSummary::from(&model_statistics(..)?)`, at a fraction of the cost.
pub fn model_summary(model: &str, samples: &[Sample], filter: &Filter) -> Option<ModelSummary> {
    let window = filter.window(samples);
    let mut counts = Counts::EMPTY;
    let mut times = Vec::with_capacity(window.len());
    let (mut quality, mut vram, mut gpu) = (Moments::EMPTY, Moments::EMPTY, Moments::EMPTY);
    let mut quality_squares = 0.0;
    for s in window.iter().filter(|s| filter.matches_operation(s)) {
        counts.push(s);
        if s.success {
            times.push(s.processing_time_ms);
        }
        quality.push(s.quality_score);
        if !s.quality_score.is_nan() {
            quality_squares += f64::from(s.quality_score) * f64::from(s.quality_score);
        }
        vram.push(s.vram_mb);
        gpu.push(s.gpu_memory_mb);
    }
    if counts.total == 0 {
        return None;
    }
    let [p25, p50, p75] = rounded(&mut times, [0.25, 0.5, 0.75]);
    let quality_variance = (quality.count > 1).then(|| {
        let n = quality.count as f64;
        ((quality_squares - quality.sum * quality.sum / n) / (n - 1.0)).max(0.0)
    });
    Some(ModelSummary {
        model: model.to_owned(),
        total_operations: counts.total,
        successful_operations: counts.successful,
        p50_processing_time_ms: p50,
        p25_processing_time_ms: p25,
        p75_processing_time_ms: p75,
        quality_avg: quality.avg(),
        quality_variance,
        scored_operations: quality.count,
        max_vram_mb: vram.max(),
        max_gpu_memory_mb: gpu.max(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    fn sample(ms: i64, op: u32, success: bool, time_ms: f32) -> Sample {
        Sample::new(ms, op, success, time_ms)
    }

    /// Hand-checkable data: op 0 = "chat", op 1 = "embed".
    fn data() -> Vec<Sample> {
        let mut v = vec![
            // Hour 0: two chats, one failing instantly (must not count as fast).
            Sample {
                quality_score: 2.0,
                ollama_rss_mb: 1000.0,
                ..sample(0, 0, true, 100.0)
            },
            sample(HOUR_MS / 2, 0, false, 3.0),
            // Hour 1: chats and an embed.
            Sample {
                ttft_ms: 50.0,
                tokens_per_second: 40.0,
                prompt_tokens_per_second: 400.0,
                quality_score: 4.0,
                ollama_rss_mb: 3000.0,
                gpu_memory_mb: 5000.0,
                vram_mb: 6000.0,
                load_duration_ms: 10.0,
                ..sample(HOUR_MS, 0, true, 200.0)
            },
            Sample {
                ttft_ms: 150.0,
                tokens_per_second: 20.0,
                ..sample(HOUR_MS + 1, 0, true, 400.0)
            },
            sample(HOUR_MS + 2, 1, true, 10.0),
        ];
        v.sort_by_key(|s| s.timestamp_ms);
        v
    }

    #[test]
    fn no_matching_sample_gives_none() {
        assert_eq!(model_statistics("m", &[], &Filter::default()), None);
        let f = Filter {
            operation: Some(9),
            ..Filter::default()
        };
        assert_eq!(model_statistics("m", &data(), &f), None);
        assert_eq!(model_summary("m", &data(), &f), None);
    }

    #[test]
    fn all_samples() {
        let s = model_statistics("m", &data(), &Filter::default()).unwrap();
        assert_eq!(s.total_operations, 5);
        assert_eq!(s.successful_operations, 4);
        assert_eq!(s.failed_operations, 1);
        assert_eq!(s.success_rate, 0.8);
        // Successful times 10, 100, 200, 400; the 3 ms failure is not among them.
        let t = s.processing_time_ms;
        assert_eq!(t.avg, Some(177.5));
        assert_eq!(t.min, Some(10.0));
        assert_eq!(t.max, Some(400.0));
        assert_eq!(t.p50, Some(150.0)); // rank 1.5: 100 + 0.5 * 100
        assert_eq!(t.p90, Some(340.0)); // rank 2.7: 200 + 0.7 * 200
        assert_eq!(t.p95, Some(370.0)); // rank 2.85
        assert_eq!(t.p99, Some(394.0)); // rank 2.97
        assert_eq!(s.ttft_ms.avg, Some(100.0));
        assert_eq!(s.ttft_ms.p50, Some(100.0));
        assert_eq!(s.ttft_ms.p95, Some(145.0)); // rank 0.95: 50 + 0.95 * 100
        assert_eq!(s.tokens_per_second.avg, Some(30.0));
        assert_eq!(s.tokens_per_second.p50, Some(30.0));
        assert_eq!(s.prompt_tokens_per_second.avg, Some(400.0));
        assert_eq!(s.quality.avg, Some(3.0));
        assert_eq!(s.quality.min, Some(2.0));
        assert_eq!(s.quality.max, Some(4.0));
        assert_eq!(s.quality.scored_operations, 2);
        assert_eq!(s.memory_mb.avg, Some(2000.0));
        assert_eq!(s.memory_mb.max, Some(3000.0));
        assert_eq!(s.gpu_memory_mb.avg, Some(5000.0));
        assert_eq!(s.vram_mb.max, Some(6000.0));
        assert_eq!(s.load_duration_ms.avg, Some(10.0));
        assert_eq!(s.first_seen, utc(0));
        assert_eq!(s.last_seen, utc(HOUR_MS + 2));
    }

    #[test]
    fn window_filter() {
        // Since hour 1: 200, 400 (chat) and 10 (embed), all successful.
        let f = Filter {
            since_ms: Some(HOUR_MS),
            ..Filter::default()
        };
        let s = model_statistics("m", &data(), &f).unwrap();
        assert_eq!(s.total_operations, 3);
        assert_eq!(s.success_rate, 1.0);
        assert_eq!(s.processing_time_ms.p50, Some(200.0));
        assert_eq!(s.quality.avg, Some(4.0));
        assert_eq!(s.first_seen, utc(HOUR_MS));
    }

    #[test]
    fn operation_filter() {
        // Chats only: successful times 100, 200, 400.
        let f = Filter {
            operation: Some(0),
            ..Filter::default()
        };
        let s = model_statistics("m", &data(), &f).unwrap();
        assert_eq!(s.total_operations, 4);
        assert_eq!(s.failed_operations, 1);
        assert_eq!(s.processing_time_ms.p50, Some(200.0));
        assert_eq!(s.processing_time_ms.avg, Some(233.333));
        assert_eq!(s.last_seen, utc(HOUR_MS + 1));
        // Both filters: hour 1 chats = 200 and 400.
        let f = Filter {
            since_ms: Some(HOUR_MS),
            operation: Some(0),
            until_ms: None,
            host: None,
        };
        let s = model_statistics("m", &data(), &f).unwrap();
        assert_eq!(s.total_operations, 2);
        assert_eq!(s.processing_time_ms.p50, Some(300.0));
    }

    #[test]
    fn only_failures_leave_times_null() {
        let v = [sample(0, 0, false, 5.0), sample(1, 0, false, 7.0)];
        let s = model_statistics("m", &v, &Filter::default()).unwrap();
        assert_eq!(s.success_rate, 0.0);
        assert_eq!(s.processing_time_ms.p50, None);
        assert_eq!(s.processing_time_ms.avg, None);
        assert_eq!(s.quality.avg, None);
        assert_eq!(s.quality.scored_operations, 0);
    }

    #[test]
    fn summary_equals_the_full_statistics() {
        for f in [
            Filter::default(),
            Filter {
                operation: Some(0),
                ..Filter::default()
            },
        ] {
            let full = model_statistics("m", &data(), &f).unwrap();
            let mut summary = model_summary("m", &data(), &f).unwrap();
            // The spreads only the summary computes.
            assert!(summary.p25_processing_time_ms <= summary.p50_processing_time_ms);
            assert!(summary.p75_processing_time_ms >= summary.p50_processing_time_ms);
            summary.p25_processing_time_ms = None;
            summary.p75_processing_time_ms = None;
            summary.quality_variance = None;
            assert_eq!(summary, ModelSummary::from(&full));
        }
        // Scores 2 and 4: mean 3, sample variance ((-1)² + 1²) / 1 = 2. Times 10, 100,
        // 200, 400: p25 at rank 0.75 = 77.5, p75 at rank 2.25 = 250.
        let s = model_summary("m", &data(), &Filter::default()).unwrap();
        assert_eq!(s.quality_variance, Some(2.0));
        assert_eq!(s.p25_processing_time_ms, Some(77.5));
        assert_eq!(s.p75_processing_time_ms, Some(250.0));
    }

    #[test]
    fn serializes_with_the_api_names() {
        let s = model_statistics("m", &data(), &Filter::default()).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["processing_time_ms"]["p50"], 150.0);
        assert_eq!(v["ttft_ms"]["p95"], 145.0);
        assert_eq!(v["quality"]["scored_operations"], 2);
        assert_eq!(v["first_seen"], "1970-01-01T00:00:00Z");
        assert!(v["success_rate_lower_bound"].is_number());
        let no_ttft = Filter {
            since_ms: Some(HOUR_MS + 2),
            ..Filter::default()
        };
        let v = serde_json::to_value(model_statistics("m", &data(), &no_ttft)).unwrap();
        assert!(v["ttft_ms"]["avg"].is_null());
    }
}
