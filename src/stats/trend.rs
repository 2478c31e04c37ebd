//! A metric of one model bucketed over time, and whether it is getting better or worse.
//!
//! Buckets are aligned to multiples of `bucket_minutes` since the Unix epoch, so the same
//! question asked a minute later gives the same bucket boundaries (a chart does not
//! shimmer); the first bucket is therefore usually only partly inside the window. Every
//! bucket from the window's start to now is returned, an empty one with `count` 0 and
//! `value` null.
//!
//! The slope is an ordinary least-squares line through the bucket values against the
//! bucket midpoints, each bucket weighted by its count (a bucket of 200 calls says more than
//! a bucket of 2). Direction: fewer than [`MIN_TREND_BUCKETS`] non-empty buckets is
//! `insufficient_data`; a fitted change over the span of the data smaller than
//! [`STABLE_THRESHOLD_PERCENT`] of the weighted mean is `stable`; otherwise the sign of the
//! slope and whether lower or higher is better for the metric decide.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Filter, Sample, round3, utc};

/// Fewer non-empty buckets than this is `insufficient_data`: two points always make a
/// perfect line, a third is the least that can disagree with it.
pub const MIN_TREND_BUCKETS: usize = 3;

/// A fitted change smaller than this share of the mean (in percent) is `stable`: below
/// the run-to-run noise of LLM latencies.
pub const STABLE_THRESHOLD_PERCENT: f64 = 5.0;

/// The most buckets one trend may have, so `hours=10000&bucket_minutes=1` is a 400 and not
/// a 600,000-element answer.
pub const MAX_TREND_BUCKETS: u64 = 10_000;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: f64 = 3_600_000.0;

/// What a trend follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrendMetric {
    /// Mean `processing_time_ms` of successful operations; lower is better.
    ProcessingTime,
    /// Mean `ttft_ms` of successful operations; lower is better.
    Ttft,
    /// Mean `tokens_per_second` of successful operations; higher is better.
    TokensPerSecond,
    /// Mean `quality_score` of scored operations; higher is better.
    Quality,
    /// Fraction of operations that succeeded; higher is better.
    SuccessRate,
    /// Mean `ollama_rss_mb`; lower is better.
    Memory,
}

impl TrendMetric {
    /// Every metric, in the order error messages list them.
    pub const ALL: [TrendMetric; 6] = [
        TrendMetric::ProcessingTime,
        TrendMetric::Ttft,
        TrendMetric::TokensPerSecond,
        TrendMetric::Quality,
        TrendMetric::SuccessRate,
        TrendMetric::Memory,
    ];

    /// The name used in the API (`processing_time`, `ttft`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TrendMetric::ProcessingTime => "processing_time",
            TrendMetric::Ttft => "ttft",
            TrendMetric::TokensPerSecond => "tokens_per_second",
            TrendMetric::Quality => "quality",
            TrendMetric::SuccessRate => "success_rate",
            TrendMetric::Memory => "memory",
        }
    }

    /// Whether a falling value is an improvement.
    pub fn lower_is_better(self) -> bool {
        matches!(
            self,
            TrendMetric::ProcessingTime | TrendMetric::Ttft | TrendMetric::Memory
        )
    }

    /// The sample's value for this metric, NaN when it does not count: unknown, or a
    /// failure for the latency and throughput metrics. Success rate reads as 1 or 0.
    fn value(self, s: &Sample) -> f32 {
        let when_successful = |v: f32| if s.success { v } else { f32::NAN };
        match self {
            TrendMetric::ProcessingTime => when_successful(s.processing_time_ms),
            TrendMetric::Ttft => when_successful(s.ttft_ms),
            TrendMetric::TokensPerSecond => when_successful(s.tokens_per_second),
            TrendMetric::Quality => s.quality_score,
            TrendMetric::SuccessRate => f32::from(u8::from(s.success)),
            TrendMetric::Memory => s.ollama_rss_mb,
        }
    }
}

impl fmt::Display for TrendMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown metric name; its message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMetricError {
    /// The name that was given.
    pub given: String,
}

impl fmt::Display for ParseMetricError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valid: Vec<&str> = TrendMetric::ALL.iter().map(|m| m.as_str()).collect();
        write!(
            f,
            "metric: unknown \"{}\"; valid: {}",
            self.given,
            valid.join(", ")
        )
    }
}

impl std::error::Error for ParseMetricError {}

impl FromStr for TrendMetric {
    type Err = ParseMetricError;

    fn from_str(s: &str) -> Result<TrendMetric, ParseMetricError> {
        TrendMetric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseMetricError {
                given: s.to_owned(),
            })
    }
}

/// Which way a metric is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Moving the good way by more than the stable threshold.
    Improving,
    /// Moving the bad way by more than the stable threshold.
    Degrading,
    /// Within the threshold.
    Stable,
    /// Too few non-empty buckets to tell.
    InsufficientData,
}

/// What to compute a trend over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendParams {
    /// The metric.
    pub metric: TrendMetric,
    /// The end of the window (ms since the epoch), included.
    pub now_ms: i64,
    /// The window's length; above 0.
    pub hours: f64,
    /// The bucket width; at least 1.
    pub bucket_minutes: u32,
    /// Only this interned operation id.
    pub operation: Option<u32>,
    /// Only this interned upstream host id.
    pub host: Option<u8>,
}

/// Parameters that cannot make a trend; each message names the field.
#[derive(Debug, Clone, PartialEq)]
pub enum TrendError {
    /// `hours` is not above 0 (or not a number).
    HoursNotPositive(f64),
    /// `bucket_minutes` is 0.
    BucketMinutesZero,
    /// `hours / bucket_minutes` asks for more than [`MAX_TREND_BUCKETS`] buckets.
    TooManyBuckets {
        /// How many the parameters ask for.
        requested: u64,
    },
}

impl fmt::Display for TrendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrendError::HoursNotPositive(h) => write!(f, "hours: must be above 0, got {h}"),
            TrendError::BucketMinutesZero => f.write_str("bucket_minutes: must be at least 1"),
            TrendError::TooManyBuckets { requested } => write!(
                f,
                "bucket_minutes: {requested} buckets requested, at most {MAX_TREND_BUCKETS}; \
                 use fewer hours or wider buckets"
            ),
        }
    }
}

impl std::error::Error for TrendError {}

/// One bucket of a trend.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrendBucket {
    /// The bucket's start; it covers `bucket_minutes` from there.
    pub start: DateTime<Utc>,
    /// How many values are behind `value` (for success_rate: operations).
    pub count: u64,
    /// The mean of the metric in the bucket; null when `count` is 0.
    pub value: Option<f64>,
}

/// `/trend/{model}`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Trend {
    /// The model.
    pub model: String,
    /// The metric.
    pub metric: TrendMetric,
    /// `"lower"` or `"higher"`: which way is better for the metric.
    pub better: String,
    /// The window's length.
    pub hours: f64,
    /// The bucket width.
    pub bucket_minutes: u32,
    /// Every bucket from the window's start to now, oldest first.
    pub buckets: Vec<TrendBucket>,
    /// The verdict.
    pub direction: Direction,
    /// The fitted slope in metric units per hour; null with fewer than
    /// [`MIN_TREND_BUCKETS`] non-empty buckets.
    pub slope_per_hour: Option<f64>,
    /// The fitted change from the first to the last non-empty bucket, in percent of the
    /// weighted mean; what is compared with the threshold.
    pub change_percent: Option<f64>,
    /// [`STABLE_THRESHOLD_PERCENT`].
    pub stable_threshold_percent: f64,
}

/// Floor division for possibly negative timestamps.
fn floor_to(ms: i64, step: i64) -> i64 {
    ms.div_euclid(step) * step
}

/// The trend of `params.metric` for `model` over `samples` (sorted by timestamp).
pub fn trend(model: &str, samples: &[Sample], params: &TrendParams) -> Result<Trend, TrendError> {
    if params.hours.is_nan() || params.hours <= 0.0 {
        return Err(TrendError::HoursNotPositive(params.hours));
    }
    if params.bucket_minutes == 0 {
        return Err(TrendError::BucketMinutesZero);
    }
    let bucket_ms = i64::from(params.bucket_minutes) * MINUTE_MS;
    let requested = (params.hours * 60.0 / f64::from(params.bucket_minutes)).ceil() + 1.0;
    if requested > MAX_TREND_BUCKETS as f64 {
        return Err(TrendError::TooManyBuckets {
            requested: requested as u64,
        });
    }
    // The bucket limit bounds the window to 10,000 buckets, so this cannot wrap for any
    // real "now"; saturating keeps an absurd one from panicking.
    let since_ms = params
        .now_ms
        .saturating_sub((params.hours * HOUR_MS) as i64);
    let first_start = floor_to(since_ms, bucket_ms);
    let count = ((params.now_ms - first_start) / bucket_ms + 1) as usize;

    let mut sums = vec![(0.0_f64, 0_u64); count];
    let filter = Filter {
        since_ms: Some(since_ms),
        until_ms: Some(params.now_ms.saturating_add(1)),
        operation: params.operation,
        host: params.host,
    };
    for s in filter.select(samples) {
        let value = params.metric.value(s);
        if value.is_nan() {
            continue;
        }
        let index = ((s.timestamp_ms - first_start) / bucket_ms) as usize;
        if let Some((sum, n)) = sums.get_mut(index) {
            *sum += f64::from(value);
            *n += 1;
        }
    }

    let buckets: Vec<TrendBucket> = sums
        .iter()
        .enumerate()
        .map(|(i, &(sum, n))| TrendBucket {
            start: utc(first_start + i as i64 * bucket_ms),
            count: n,
            value: (n > 0).then(|| round3(sum / n as f64)),
        })
        .collect();

    // x = bucket midpoint in hours from the first bucket's start, y = mean, w = count.
    let bucket_hours = bucket_ms as f64 / HOUR_MS;
    let points: Vec<(f64, f64, f64)> = sums
        .iter()
        .enumerate()
        .filter(|(_, (_, n))| *n > 0)
        .map(|(i, &(sum, n))| ((i as f64 + 0.5) * bucket_hours, sum / n as f64, n as f64))
        .collect();
    let fit = fit_line(&points);
    let (direction, slope, change_percent) = match fit {
        None => (Direction::InsufficientData, None, None),
        Some(fit) => {
            let direction = if fit.change_percent.abs() < STABLE_THRESHOLD_PERCENT {
                Direction::Stable
            } else if (fit.slope < 0.0) == params.metric.lower_is_better() {
                Direction::Improving
            } else {
                Direction::Degrading
            };
            (direction, Some(fit.slope), Some(fit.change_percent))
        }
    };

    Ok(Trend {
        model: model.to_owned(),
        metric: params.metric,
        better: if params.metric.lower_is_better() {
            "lower"
        } else {
            "higher"
        }
        .to_owned(),
        hours: params.hours,
        bucket_minutes: params.bucket_minutes,
        buckets,
        direction,
        slope_per_hour: slope.map(round6),
        change_percent: change_percent.map(round3),
        stable_threshold_percent: STABLE_THRESHOLD_PERCENT,
    })
}

/// Slopes of a success rate per hour can be tiny; 6 decimals keeps them readable.
fn round6(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}

/// A fitted line's slope and the change it implies over the data's span.
struct Fit {
    slope: f64,
    change_percent: f64,
}

/// Weighted least squares through `(x, y, weight)` points; `None` with fewer than
/// [`MIN_TREND_BUCKETS`] points.
fn fit_line(points: &[(f64, f64, f64)]) -> Option<Fit> {
    if points.len() < MIN_TREND_BUCKETS {
        return None;
    }
    let total_weight: f64 = points.iter().map(|p| p.2).sum();
    let mean_x = points.iter().map(|p| p.0 * p.2).sum::<f64>() / total_weight;
    let mean_y = points.iter().map(|p| p.1 * p.2).sum::<f64>() / total_weight;
    let covariance: f64 = points
        .iter()
        .map(|p| p.2 * (p.0 - mean_x) * (p.1 - mean_y))
        .sum();
    let variance: f64 = points
        .iter()
        .map(|p| p.2 * (p.0 - mean_x) * (p.0 - mean_x))
        .sum();
    // Distinct bucket midpoints make the variance positive; guard anyway.
    if variance <= 0.0 {
        return None;
    }
    let slope = covariance / variance;
    let span = points.last().map_or(0.0, |p| p.0) - points.first().map_or(0.0, |p| p.0);
    let change = slope * span;
    let change_percent = if mean_y.abs() > f64::EPSILON {
        change / mean_y.abs() * 100.0
    } else if change == 0.0 {
        0.0
    } else {
        // A metric that averages 0 (every call failed) and still moves: any move counts.
        change.signum() * f64::INFINITY
    };
    Some(Fit {
        slope,
        change_percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    /// A "now" on an hour boundary, so hourly buckets line up with the window.
    const NOW: i64 = 1_000 * HOUR;

    fn params(metric: TrendMetric) -> TrendParams {
        TrendParams {
            metric,
            now_ms: NOW,
            hours: 3.0,
            bucket_minutes: 60,
            operation: None,
            host: None,
        }
    }

    /// One sample in the middle of each of the three hours before NOW, then `f` fills it in.
    fn three_hours(f: impl Fn(usize, Sample) -> Sample) -> Vec<Sample> {
        (0..3)
            .map(|i| {
                f(
                    i,
                    Sample::new(NOW - (3 - i as i64) * HOUR + HOUR / 2, 0, true, 100.0),
                )
            })
            .collect()
    }

    #[test]
    fn parse_metric() {
        assert_eq!("ttft".parse::<TrendMetric>(), Ok(TrendMetric::Ttft));
        for m in TrendMetric::ALL {
            assert_eq!(m.as_str().parse::<TrendMetric>(), Ok(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        let e = "latency".parse::<TrendMetric>().unwrap_err().to_string();
        assert_eq!(
            e,
            "metric: unknown \"latency\"; valid: processing_time, ttft, tokens_per_second, \
             quality, success_rate, memory"
        );
    }

    #[test]
    fn bad_params_name_the_field() {
        let s = three_hours(|_, s| s);
        let mut p = params(TrendMetric::ProcessingTime);
        p.hours = 0.0;
        assert!(
            trend("m", &s, &p)
                .unwrap_err()
                .to_string()
                .starts_with("hours:")
        );
        p.hours = f64::NAN;
        assert!(trend("m", &s, &p).is_err());
        p.hours = 3.0;
        p.bucket_minutes = 0;
        assert!(
            trend("m", &s, &p)
                .unwrap_err()
                .to_string()
                .starts_with("bucket_minutes:")
        );
        p.hours = 10_000.0;
        p.bucket_minutes = 1;
        assert!(matches!(
            trend("m", &s, &p),
            Err(TrendError::TooManyBuckets { .. })
        ));
    }

    #[test]
    fn buckets_include_empty_ones() {
        // Window [NOW - 3h, NOW]: buckets at -3h, -2h, -1h and the one holding NOW.
        let s = vec![
            Sample::new(NOW - 3 * HOUR, 0, true, 100.0),
            Sample::new(NOW - 3 * HOUR + 1, 0, true, 300.0),
            Sample::new(NOW - HOUR, 0, false, 5.0),
            Sample::new(NOW, 0, true, 50.0),
        ];
        let t = trend("m", &s, &params(TrendMetric::ProcessingTime)).unwrap();
        let counts: Vec<u64> = t.buckets.iter().map(|b| b.count).collect();
        let values: Vec<Option<f64>> = t.buckets.iter().map(|b| b.value).collect();
        assert_eq!(counts, [2, 0, 0, 1]); // the failure does not count for processing time
        assert_eq!(values, [Some(200.0), None, None, Some(50.0)]);
        assert_eq!(t.buckets[0].start, utc(NOW - 3 * HOUR));
        assert_eq!(t.direction, Direction::InsufficientData);
        assert_eq!(t.slope_per_hour, None);

        let t = trend("m", &s, &params(TrendMetric::SuccessRate)).unwrap();
        let values: Vec<Option<f64>> = t.buckets.iter().map(|b| b.value).collect();
        assert_eq!(values, [Some(1.0), None, Some(0.0), Some(1.0)]);
    }

    #[test]
    fn buckets_align_to_the_epoch() {
        // Now is 10 minutes past the hour: the first hourly bucket starts before the window.
        let mut p = params(TrendMetric::ProcessingTime);
        p.now_ms = NOW + 10 * 60_000;
        let t = trend("m", &[], &p).unwrap();
        assert_eq!(t.buckets.len(), 4);
        assert_eq!(t.buckets[0].start, utc(NOW - 3 * HOUR));
        assert_eq!(t.buckets[3].start, utc(NOW));
    }

    #[test]
    fn rising_time_is_degrading_falling_is_improving() {
        // 100, 200, 300 ms one hour apart: slope 100 ms/h; change 200 over mean 200 = 100%.
        let up = three_hours(|i, s| Sample {
            processing_time_ms: 100.0 * (i + 1) as f32,
            ..s
        });
        let t = trend("m", &up, &params(TrendMetric::ProcessingTime)).unwrap();
        assert_eq!(t.slope_per_hour, Some(100.0));
        assert_eq!(t.change_percent, Some(100.0));
        assert_eq!(t.direction, Direction::Degrading);
        assert_eq!(t.better, "lower");
        let down = three_hours(|i, s| Sample {
            processing_time_ms: 300.0 - 100.0 * i as f32,
            ..s
        });
        let t = trend("m", &down, &params(TrendMetric::ProcessingTime)).unwrap();
        assert_eq!(t.slope_per_hour, Some(-100.0));
        assert_eq!(t.direction, Direction::Improving);
    }

    #[test]
    fn rising_throughput_and_quality_are_improving() {
        let tps = three_hours(|i, s| Sample {
            tokens_per_second: 10.0 * (i + 1) as f32,
            ..s
        });
        let t = trend("m", &tps, &params(TrendMetric::TokensPerSecond)).unwrap();
        assert_eq!(t.direction, Direction::Improving);
        assert_eq!(t.better, "higher");
        let q = three_hours(|i, s| Sample {
            quality_score: 4.5 - i as f32,
            ..s
        });
        let t = trend("m", &q, &params(TrendMetric::Quality)).unwrap();
        assert_eq!(t.slope_per_hour, Some(-1.0));
        assert_eq!(t.direction, Direction::Degrading);
    }

    #[test]
    fn ttft_and_memory_follow_lower_is_better() {
        let ttft = three_hours(|i, s| Sample {
            ttft_ms: 100.0 + 50.0 * i as f32,
            ..s
        });
        let t = trend("m", &ttft, &params(TrendMetric::Ttft)).unwrap();
        assert_eq!(t.direction, Direction::Degrading);
        let mem = three_hours(|i, s| Sample {
            ollama_rss_mb: 9000.0 - 1000.0 * i as f32,
            ..s
        });
        let t = trend("m", &mem, &params(TrendMetric::Memory)).unwrap();
        assert_eq!(t.direction, Direction::Improving);
    }

    #[test]
    fn small_change_is_stable() {
        // 1000, 1010, 1020: change 20 over mean 1010 = 1.98% < 5%.
        let s = three_hours(|i, s| Sample {
            processing_time_ms: 1000.0 + 10.0 * i as f32,
            ..s
        });
        let t = trend("m", &s, &params(TrendMetric::ProcessingTime)).unwrap();
        assert_eq!(t.slope_per_hour, Some(10.0));
        assert_eq!(t.change_percent, Some(1.98));
        assert_eq!(t.direction, Direction::Stable);
    }

    #[test]
    fn success_rate_falling_is_degrading_and_weights_count() {
        // Hour 0: 4 of 4 succeed; hour 1: 1 of 1; hour 2: 0 of 1.
        let mut s = Vec::new();
        for (hour, ok, total) in [(0, 4, 4), (1, 1, 1), (2, 0, 1)] {
            for k in 0..total {
                let ms = NOW - (3 - hour) * HOUR + k;
                s.push(Sample::new(ms, 0, k < ok, 100.0));
            }
        }
        let t = trend("m", &s, &params(TrendMetric::SuccessRate)).unwrap();
        let counts: Vec<u64> = t.buckets.iter().map(|b| b.count).collect();
        assert_eq!(counts, [4, 1, 1, 0]);
        // x = 0.5, 1.5, 2.5 with w = 4, 1, 1; y = 1, 1, 0. W = 6, mean x = 1, mean y = 5/6.
        // Sxy = sum w x y - W mx my = 3.5 - 5 = -1.5; Sxx = sum w x^2 - W mx^2 = 9.5 - 6 = 3.5
        // -> slope = -3/7 (unweighted it would be -0.5). Change = -6/7 over 5/6 = -102.857%.
        assert_eq!(t.slope_per_hour, Some(-0.428571));
        assert_eq!(t.change_percent, Some(-102.857));
        assert_eq!(t.direction, Direction::Degrading);
    }

    #[test]
    fn operation_filter_applies() {
        let mut s = three_hours(|i, s| Sample {
            processing_time_ms: 100.0 * (i + 1) as f32,
            ..s
        });
        s.iter_mut().for_each(|s| s.operation = 1);
        let mut p = params(TrendMetric::ProcessingTime);
        p.operation = Some(2);
        let t = trend("m", &s, &p).unwrap();
        assert!(t.buckets.iter().all(|b| b.count == 0));
        assert_eq!(t.direction, Direction::InsufficientData);
    }
}
