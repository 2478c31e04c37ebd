//! Warnings a person can act on, from every model's samples over a window: low success
//! rate, degradation against the model's own earlier baseline, a slow tail, a quality drop,
//! VRAM close to the GPU's capacity, and records the recorder had to drop.
//!
//! "Recent" is the last [`RECENT_SHARE`] of the window and "baseline" the part before it,
//! so a model is only ever compared with itself. Every rule needs a minimum number of
//! operations on each side, so a handful of calls cannot raise an alarm. Each threshold is
//! a named constant below with the reason for its value.

use serde::{Deserialize, Serialize};

use super::confidence::wilson_upper_bound;
use super::{Filter, ModelStatistics, Sample, fmt_gb, fmt_hours, fmt_ms, model_statistics};

/// A success rate below this is low: more than 1 call in 10 fails, which a retrying client
/// already feels. The rule compares the observed rate (with at least
/// [`MIN_OPERATIONS_FOR_SUCCESS_RATE`] operations), not the Wilson lower bound: that bound
/// is under 0.9 for every model with fewer than 35 calls even when all of them succeeded
/// (10 of 10 -> 0.72), which would raise an alarm on every new model. The interval decides
/// the severity instead: critical when even its upper bound is below this, i.e. the model
/// is failing beyond a streak of bad luck.
pub const LOW_SUCCESS_RATE: f64 = 0.9;
/// Operations in the window before the success rate is judged.
pub const MIN_OPERATIONS_FOR_SUCCESS_RATE: u64 = 10;
/// The recent window's share of the whole window.
pub const RECENT_SHARE: f64 = 0.25;
/// Operations needed in each of the recent and baseline windows to compare them.
pub const MIN_OPERATIONS_PER_SIDE: u64 = 10;
/// Recent p50 processing time over baseline p50 above this is a degradation: beyond the
/// usual hour-to-hour wobble of prompt mixes.
pub const DEGRADATION_TIME_RATIO: f64 = 1.25;
/// A success rate lower by more than this (a fraction: 0.10 = 10 points) is a degradation.
pub const DEGRADATION_SUCCESS_DROP: f64 = 0.10;
/// p95 over p50 above this is a slow tail: typical of cold loads and queueing, not of the
/// model's own speed.
pub const SLOW_TAIL_RATIO: f64 = 3.0;
/// Successful operations needed before p95 means something (at 10, p95 is nearly the max).
pub const MIN_OPERATIONS_FOR_TAIL: u64 = 20;
/// A recent mean quality lower than the baseline's by this much (on the 1 to 5 scale) is a
/// drop: half a point is a visible change in answers.
pub const QUALITY_DROP_POINTS: f64 = 0.5;
/// Scored operations needed on each side to compare quality; scores are rarer than calls.
pub const MIN_SCORED_PER_SIDE: u64 = 5;
/// VRAM use above this share of the GPU's total is close to capacity: the next larger
/// context or a second model spills to system memory.
pub const MEMORY_NEAR_CAPACITY: f64 = 0.9;

/// How urgent an insight is. Serialized lowercase; sorts critical first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Worth acting on.
    Warning,
    /// Act now: calls are failing or the model no longer fits.
    Critical,
}

/// What an insight is about. Serialized snake_case, for scripts to match on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum InsightKind {
    /// The success rate is under [`LOW_SUCCESS_RATE`].
    LowSuccessRate,
    /// Recent p50 processing time is over [`DEGRADATION_TIME_RATIO`] times the baseline's.
    ProcessingTimeDegradation,
    /// Recent success rate is more than [`DEGRADATION_SUCCESS_DROP`] below the baseline's.
    SuccessRateDegradation,
    /// p95 processing time is over [`SLOW_TAIL_RATIO`] times p50.
    SlowP95,
    /// Recent mean quality is [`QUALITY_DROP_POINTS`] or more below the baseline's.
    QualityDrop,
    /// VRAM use is over [`MEMORY_NEAR_CAPACITY`] of the GPU's total.
    MemoryNearCapacity,
    /// The recorder dropped records.
    DroppedRecords,
    /// Calls asked for a model Ollama does not have (see [`super::known`]).
    UnknownModel,
}

/// One warning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Insight {
    /// How urgent.
    pub severity: Severity,
    /// What about.
    pub kind: InsightKind,
    /// The model concerned; null for the whole proxy (dropped records).
    pub model: Option<String>,
    /// A sentence with the numbers and what to do.
    pub message: String,
    /// The measured figure the rule compared (units per kind: a lower bound, a ratio, a
    /// drop as a fraction or in quality points, a share of VRAM, a count).
    pub value: Option<f64>,
    /// The figure it was compared with, in the same units.
    pub threshold: Option<f64>,
}

/// What insights look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InsightParams {
    /// The end of the window (ms since the epoch), included.
    pub now_ms: i64,
    /// The window's length; above 0 (the caller validates it).
    pub duration_hours: f64,
    /// The GPU's total memory in MiB, when telemetry knows it; without it the capacity rule
    /// is skipped.
    pub gpu_total_mb: Option<f64>,
    /// Records the recorder dropped since start.
    pub dropped_records: u64,
    /// Only this interned upstream host id; every host without.
    pub host: Option<u8>,
}

/// Every insight for `models` (name and its samples sorted by timestamp), critical first,
/// then by model and kind so the order is stable.
pub fn insights<'a>(
    models: impl IntoIterator<Item = (&'a str, &'a [Sample])>,
    params: &InsightParams,
) -> Vec<Insight> {
    let mut out = Vec::new();
    if params.dropped_records > 0 {
        let n = params.dropped_records;
        out.push(Insight {
            severity: Severity::Warning,
            kind: InsightKind::DroppedRecords,
            model: None,
            message: format!(
                "{n} record{} dropped because the recorder's queue was full, so the statistics \
                 undercount traffic; raise the queue size or check the store's write speed",
                if n == 1 { " was" } else { "s were" }
            ),
            value: Some(n as f64),
            threshold: Some(0.0),
        });
    }
    let window_ms = (params.duration_hours.max(0.0) * 3_600_000.0) as i64;
    let end_ms = params.now_ms.saturating_add(1);
    let since_ms = params.now_ms.saturating_sub(window_ms);
    let split_ms = params
        .now_ms
        .saturating_sub((window_ms as f64 * RECENT_SHARE) as i64);
    let windows = Windows {
        whole: Filter {
            since_ms: Some(since_ms),
            until_ms: Some(end_ms),
            operation: None,
            host: params.host,
        },
        baseline: Filter {
            since_ms: Some(since_ms),
            until_ms: Some(split_ms),
            operation: None,
            host: params.host,
        },
        recent: Filter {
            since_ms: Some(split_ms),
            until_ms: Some(end_ms),
            operation: None,
            host: params.host,
        },
        hours: params.duration_hours,
    };
    for (model, samples) in models {
        model_insights(model, samples, &windows, params.gpu_total_mb, &mut out);
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.model.cmp(&b.model))
            .then(a.kind.cmp(&b.kind))
    });
    out
}

/// The three filters every model is read through.
struct Windows {
    whole: Filter,
    baseline: Filter,
    recent: Filter,
    hours: f64,
}

impl Windows {
    fn recent_hours(&self) -> String {
        fmt_hours(self.hours * RECENT_SHARE)
    }

    fn baseline_hours(&self) -> String {
        fmt_hours(self.hours * (1.0 - RECENT_SHARE))
    }
}

fn model_insights(
    model: &str,
    samples: &[Sample],
    w: &Windows,
    gpu_total_mb: Option<f64>,
    out: &mut Vec<Insight>,
) {
    let Some(whole) = model_statistics(model, samples, &w.whole) else {
        return;
    };
    let mut push = |severity, kind, message: String, value: f64, threshold: f64| {
        out.push(Insight {
            severity,
            kind,
            model: Some(model.to_owned()),
            message,
            value: Some(value),
            threshold: Some(threshold),
        });
    };

    if whole.total_operations >= MIN_OPERATIONS_FOR_SUCCESS_RATE
        && whole.success_rate < LOW_SUCCESS_RATE
    {
        let lower = whole.success_rate_lower_bound;
        let upper = wilson_upper_bound(whole.successful_operations, whole.total_operations);
        let severity = if upper < LOW_SUCCESS_RATE {
            Severity::Critical
        } else {
            Severity::Warning
        };
        push(
            severity,
            InsightKind::LowSuccessRate,
            format!(
                "{model}: {:.1}% of {} operations succeeded in the last {} (between {:.1}% and \
                 {:.1}% with 95% confidence), below {:.0}%; look at the error_kind of its \
                 failed records",
                whole.success_rate * 100.0,
                whole.total_operations,
                fmt_hours(w.hours),
                lower * 100.0,
                upper * 100.0,
                LOW_SUCCESS_RATE * 100.0
            ),
            whole.success_rate,
            LOW_SUCCESS_RATE,
        );
    }

    if let (Some(p50), Some(p95)) = (whole.processing_time_ms.p50, whole.processing_time_ms.p95)
        && whole.successful_operations >= MIN_OPERATIONS_FOR_TAIL
        && p50 > 0.0
        && p95 / p50 > SLOW_TAIL_RATIO
    {
        push(
            Severity::Info,
            InsightKind::SlowP95,
            format!(
                "{model}: p95 processing time {} is {:.1}x the median {}: a slow tail, often \
                 cold model loads (raise keep_alive) or queued requests (OLLAMA_NUM_PARALLEL)",
                fmt_ms(p95),
                p95 / p50,
                fmt_ms(p50)
            ),
            p95 / p50,
            SLOW_TAIL_RATIO,
        );
    }

    if let Some(total_mb) = gpu_total_mb.filter(|t| *t > 0.0)
        && let Some(used_mb) = whole.vram_mb.max.or(whole.gpu_memory_mb.max)
        && used_mb / total_mb > MEMORY_NEAR_CAPACITY
    {
        let share = used_mb / total_mb;
        let severity = if share > 1.0 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        push(
            severity,
            InsightKind::MemoryNearCapacity,
            format!(
                "{model}: uses {} of the GPU's {} of VRAM ({:.0}%); a longer context or a \
                 second model will spill to system memory and slow every call",
                fmt_gb(used_mb),
                fmt_gb(total_mb),
                share * 100.0
            ),
            share,
            MEMORY_NEAR_CAPACITY,
        );
    }

    let (Some(base), Some(recent)) = (
        model_statistics(model, samples, &w.baseline),
        model_statistics(model, samples, &w.recent),
    ) else {
        return;
    };
    for insight in degradations(model, &base, &recent, w) {
        out.push(insight);
    }
}

/// Recent against baseline: processing time, success rate and quality.
fn degradations(
    model: &str,
    base: &ModelStatistics,
    recent: &ModelStatistics,
    w: &Windows,
) -> Vec<Insight> {
    let mut out = Vec::new();
    let insight = |severity, kind, message, value, threshold| Insight {
        severity,
        kind,
        model: Some(model.to_owned()),
        message,
        value: Some(value),
        threshold: Some(threshold),
    };
    let enough = |s: &ModelStatistics| s.successful_operations >= MIN_OPERATIONS_PER_SIDE;
    if let (Some(before), Some(now)) = (base.processing_time_ms.p50, recent.processing_time_ms.p50)
        && enough(base)
        && enough(recent)
        && before > 0.0
        && now / before > DEGRADATION_TIME_RATIO
    {
        let ratio = now / before;
        let severity = if ratio >= 2.0 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        out.push(insight(
            severity,
            InsightKind::ProcessingTimeDegradation,
            format!(
                "{model}: median processing time rose {:.0}% in the last {} ({} against {} in \
                 the {} before); check for a new prompt mix, a model swapped to CPU, or a busier \
                 GPU",
                (ratio - 1.0) * 100.0,
                w.recent_hours(),
                fmt_ms(now),
                fmt_ms(before),
                w.baseline_hours()
            ),
            ratio,
            DEGRADATION_TIME_RATIO,
        ));
    }

    let judged = |s: &ModelStatistics| s.total_operations >= MIN_OPERATIONS_PER_SIDE;
    let drop = base.success_rate - recent.success_rate;
    if judged(base) && judged(recent) && drop > DEGRADATION_SUCCESS_DROP {
        let severity = if drop >= 0.3 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        out.push(insight(
            severity,
            InsightKind::SuccessRateDegradation,
            format!(
                "{model}: success rate fell {:.0} points in the last {} ({:.1}% of {} against \
                 {:.1}% of {} in the {} before)",
                drop * 100.0,
                w.recent_hours(),
                recent.success_rate * 100.0,
                recent.total_operations,
                base.success_rate * 100.0,
                base.total_operations,
                w.baseline_hours()
            ),
            drop,
            DEGRADATION_SUCCESS_DROP,
        ));
    }

    let scored = |s: &ModelStatistics| s.quality.scored_operations >= MIN_SCORED_PER_SIDE;
    if let (Some(before), Some(now)) = (base.quality.avg, recent.quality.avg)
        && scored(base)
        && scored(recent)
        && before - now >= QUALITY_DROP_POINTS
    {
        out.push(insight(
            Severity::Warning,
            InsightKind::QualityDrop,
            format!(
                "{model}: mean quality fell from {before:.2} to {now:.2} in the last {} ({} \
                 scored operations against {} in the {} before)",
                w.recent_hours(),
                recent.quality.scored_operations,
                base.quality.scored_operations,
                w.baseline_hours()
            ),
            before - now,
            QUALITY_DROP_POINTS,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const NOW: i64 = 1_000 * HOUR;

    fn params() -> InsightParams {
        InsightParams {
            now_ms: NOW,
            duration_hours: 4.0,
            gpu_total_mb: None,
            dropped_records: 0,
            host: None,
        }
    }

    /// `n` samples spread evenly over [from, to) hours before NOW, filled in by `f`.
    fn spread(
        n: usize,
        from_h: f64,
        to_h: f64,
        f: impl Fn(usize, Sample) -> Sample,
    ) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let h = from_h + (to_h - from_h) * i as f64 / n as f64;
                let ms = NOW - 4 * HOUR + (h * HOUR as f64) as i64;
                f(i, Sample::new(ms, 0, true, 1000.0))
            })
            .collect()
    }

    fn kinds(found: &[Insight]) -> Vec<InsightKind> {
        found.iter().map(|i| i.kind).collect()
    }

    #[test]
    fn a_healthy_model_raises_nothing() {
        let s = spread(100, 0.0, 4.0, |_, s| Sample {
            quality_score: 4.0,
            ..s
        });
        assert!(insights([("m", s.as_slice())], &params()).is_empty());
    }

    #[test]
    fn low_success_rate() {
        // 16 of 20 succeed: 80% < 90%, spread evenly so the recent window fails as often as
        // the baseline and only this rule fires. The Wilson interval is 58.4% to 91.9%: it
        // could still be bad luck, so a warning.
        let s = spread(20, 0.0, 4.0, |i, s| Sample {
            success: i % 5 != 0,
            ..s
        });
        let found = insights([("m", s.as_slice())], &params());
        assert_eq!(kinds(&found), [InsightKind::LowSuccessRate]);
        assert_eq!(found[0].severity, Severity::Warning);
        assert_eq!(found[0].value, Some(0.8));
        assert_eq!(found[0].threshold, Some(0.9));
        assert!(
            found[0].message.contains(
                "80.0% of 20 operations succeeded in the last 4 h (between 58.4% and 91.9% \
                 with 95% confidence)"
            ),
            "{}",
            found[0].message
        );
        // 80 of 100: the interval's top is 86.7% < 90%, so it is surely failing: critical.
        let s = spread(100, 0.0, 4.0, |i, s| Sample {
            success: i % 5 != 0,
            ..s
        });
        let found = insights([("m", s.as_slice())], &params());
        assert_eq!(found[0].severity, Severity::Critical);
        // 10 of 10 is not low, though its lower bound (0.72) is under 0.9.
        let s = spread(10, 0.0, 4.0, |_, s| s);
        assert!(insights([("m", s.as_slice())], &params()).is_empty());
        // Too few operations to judge: 3 of 5 fail but only 5 ran.
        let s = spread(5, 0.0, 4.0, |i, s| Sample {
            success: i < 2,
            ..s
        });
        assert!(insights([("m", s.as_slice())], &params()).is_empty());
    }

    #[test]
    fn processing_time_degradation() {
        // Baseline (first 3 h) 1000 ms, recent (last 1 h) 1500 ms: ratio 1.5 > 1.25.
        let mut s = spread(30, 0.0, 3.0, |_, s| s);
        s.extend(spread(10, 3.0, 4.0, |_, s| Sample {
            processing_time_ms: 1500.0,
            ..s
        }));
        let found = insights([("m", s.as_slice())], &params());
        assert_eq!(kinds(&found), [InsightKind::ProcessingTimeDegradation]);
        assert_eq!(found[0].value, Some(1.5));
        assert!(
            found[0].message.contains("rose 50% in the last 1 h"),
            "{}",
            found[0].message
        );
        assert!(
            found[0]
                .message
                .contains("1.5 s against 1.0 s in the 3 h before")
        );
        // 1200 ms is only 20% slower: nothing.
        let mut s = spread(30, 0.0, 3.0, |_, s| s);
        s.extend(spread(10, 3.0, 4.0, |_, s| Sample {
            processing_time_ms: 1200.0,
            ..s
        }));
        assert!(insights([("m", s.as_slice())], &params()).is_empty());
    }

    #[test]
    fn success_rate_degradation() {
        // Baseline 100% of 30; recent 70% of 10 (fails 3): drop 0.3 -> critical. The whole
        // window is 37/40 = 92.5%, not low.
        let mut s = spread(30, 0.0, 3.0, |_, s| s);
        s.extend(spread(10, 3.0, 4.0, |i, s| Sample {
            success: i >= 3,
            ..s
        }));
        let found = insights([("m", s.as_slice())], &params());
        assert_eq!(kinds(&found), [InsightKind::SuccessRateDegradation]);
        assert_eq!(found[0].severity, Severity::Critical);
        assert!((found[0].value.unwrap() - 0.3).abs() < 1e-9);
        assert!(
            found[0].message.contains(
                "fell 30 points in the last 1 h (70.0% of 10 against 100.0% of 30 in the 3 h \
                 before)"
            ),
            "{}",
            found[0].message
        );
        // 8 of 10 recent (a drop of 20 points) is a warning.
        let mut s = spread(30, 0.0, 3.0, |_, s| s);
        s.extend(spread(10, 3.0, 4.0, |i, s| Sample {
            success: i >= 2,
            ..s
        }));
        let found = insights([("m", s.as_slice())], &params());
        assert_eq!(kinds(&found), [InsightKind::SuccessRateDegradation]);
        assert_eq!(found[0].severity, Severity::Warning);
    }

    #[test]
    fn slow_p95() {
        // 20 successful: 18 at 1 s, 2 at 20 s. p50 = 1000; p95 rank 18.05 -> 20000 s region:
        // sorted[18] = 20000, so p95 = 20000 and the ratio is 20 > 3.
        let s = spread(20, 0.0, 4.0, |i, s| Sample {
            processing_time_ms: if i % 10 == 0 { 20_000.0 } else { 1000.0 },
            ..s
        });
        let found = insights([("m", s.as_slice())], &params());
        assert_eq!(kinds(&found), [InsightKind::SlowP95]);
        assert_eq!(found[0].severity, Severity::Info);
        assert_eq!(found[0].value, Some(20.0));
    }

    #[test]
    fn quality_drop() {
        // Baseline mean 4.5, recent mean 3.8: a drop of 0.7 >= 0.5.
        let mut s = spread(20, 0.0, 3.0, |_, s| Sample {
            quality_score: 4.5,
            ..s
        });
        s.extend(spread(10, 3.0, 4.0, |_, s| Sample {
            quality_score: 3.8,
            ..s
        }));
        let found = insights([("m", s.as_slice())], &params());
        assert_eq!(kinds(&found), [InsightKind::QualityDrop]);
        assert!((found[0].value.unwrap() - 0.7).abs() < 1e-3);
        assert!(
            found[0].message.contains("from 4.50 to 3.80"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn memory_near_capacity_needs_a_gpu_total() {
        let s = spread(10, 0.0, 4.0, |_, s| Sample {
            vram_mb: 7500.0,
            ..s
        });
        assert!(insights([("m", s.as_slice())], &params()).is_empty());
        let p = InsightParams {
            gpu_total_mb: Some(8192.0),
            ..params()
        };
        let found = insights([("m", s.as_slice())], &p);
        assert_eq!(kinds(&found), [InsightKind::MemoryNearCapacity]);
        assert!((found[0].value.unwrap() - 7500.0 / 8192.0).abs() < 1e-9);
        assert!(found[0].message.contains("uses 7.3 GB of the GPU's 8.0 GB"));
        let p = InsightParams {
            gpu_total_mb: Some(9000.0),
            ..params()
        };
        assert!(insights([("m", s.as_slice())], &p).is_empty());
    }

    #[test]
    fn dropped_records_and_ordering() {
        let p = InsightParams {
            dropped_records: 3,
            ..params()
        };
        let bad = spread(20, 0.0, 4.0, |_, s| Sample {
            success: false,
            ..s
        });
        let slow = spread(20, 0.0, 4.0, |i, s| Sample {
            processing_time_ms: if i % 10 == 0 { 20_000.0 } else { 1000.0 },
            ..s
        });
        let found = insights([("b", slow.as_slice()), ("a", bad.as_slice())], &p);
        // Critical first (a's success rate is 0), then warnings, then info.
        assert_eq!(
            kinds(&found),
            [
                InsightKind::LowSuccessRate,
                InsightKind::DroppedRecords,
                InsightKind::SlowP95
            ]
        );
        assert_eq!(found[0].model.as_deref(), Some("a"));
        assert_eq!(found[1].model, None);
        assert_eq!(found[1].value, Some(3.0));
        assert!(found[1].message.starts_with("3 records were dropped"));
    }

    #[test]
    fn old_samples_are_outside_the_window() {
        // All failures, but 10 hours ago: outside a 4-hour window.
        let s: Vec<Sample> = (0..20)
            .map(|i| Sample::new(NOW - 10 * HOUR + i, 0, false, 5.0))
            .collect();
        assert!(insights([("m", s.as_slice())], &params()).is_empty());
    }
}
