//! Statistics over measured inference calls: the pure core behind `/statistics`, `/compare`,
//! `/trend` and `/insights`. Nothing here does I/O or reads a clock; callers pass samples
//! and "now".
//!
//! - [`sample`]: [`Sample`], the compact form of a [`Record`](crate::record::Record) that the
//!   in-memory cache keeps, one slice per model sorted by timestamp.
//! - [`percentile`](mod@percentile): the one percentile method (linear interpolation, numpy's default).
//! - [`confidence`]: the Wilson lower bound of a success rate.
//! - [`model`]: [`ModelStatistics`] for one model and the lighter [`ModelSummary`] that
//!   recommendation needs.
//! - [`trend`](mod@trend): a metric bucketed over time, with a weighted least-squares slope.
//! - [`insights`](mod@insights): warnings a person can act on.
//! - [`known`]: which model names are real (unknown names stay out of the views), the
//!   "did you mean" for a mistyped one, and the one rule that cuts a list to a `limit`.
//!
//! Scoring, rankings and recommendation live in [`crate::recommend`], which reads these.

pub mod confidence;
pub mod insights;
pub mod known;
pub mod model;
pub mod percentile;
pub mod sample;
pub mod trend;

pub use confidence::{wilson_interval, wilson_lower_bound, wilson_upper_bound};
pub use insights::{Insight, InsightKind, InsightParams, Severity, insights};
pub use known::{
    Installed, UnknownName, did_you_mean, is_unknown, top_by_operations, unknown_name_insights,
    unknown_names,
};
pub use model::{
    EfficiencyStats, ModelStatistics, ModelSummary, NO_ENERGY_IN_WINDOW, ReferenceCost,
    model_statistics, model_summary,
};
pub use percentile::{percentile, percentiles};
pub use sample::Sample;
pub use trend::{Direction, Trend, TrendBucket, TrendError, TrendMetric, TrendParams, trend};

use chrono::{DateTime, Utc};

/// Which of a model's samples a statistic covers. The default covers all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only samples at or after this instant (ms since the epoch), e.g. now minus
    /// `duration_hours`.
    pub since_ms: Option<i64>,
    /// Only samples before this instant (exclusive). Trends and insights use it to split a
    /// window; the HTTP filters leave it `None`.
    pub until_ms: Option<i64>,
    /// Only samples of this interned operation id.
    pub operation: Option<u32>,
    /// Only samples of this interned upstream host id (see `History::host_id`).
    pub host: Option<u8>,
}

impl Filter {
    /// The samples inside the time window, found by binary search: `samples` must be sorted
    /// by `timestamp_ms` ascending, as the cache keeps them. The operation is not applied
    /// here (see [`Filter::matches_operation`]).
    pub fn window<'a>(&self, samples: &'a [Sample]) -> &'a [Sample] {
        debug_assert!(
            samples.is_sorted_by_key(|s| s.timestamp_ms),
            "samples not sorted"
        );
        let start = self
            .since_ms
            .map_or(0, |t| samples.partition_point(|s| s.timestamp_ms < t));
        let end = self.until_ms.map_or(samples.len(), |t| {
            samples.partition_point(|s| s.timestamp_ms < t)
        });
        // An `until` before `since` is an empty window, not a panic.
        samples.get(start..end).unwrap_or(&[])
    }

    /// Whether `sample` is of the filtered operation and host (always true without
    /// them).
    pub fn matches_operation(&self, sample: &Sample) -> bool {
        self.operation.is_none_or(|op| sample.operation == op)
            && self.host.is_none_or(|host| sample.host == host)
    }

    /// Every sample the filter covers, in timestamp order.
    pub fn select<'a>(&self, samples: &'a [Sample]) -> impl Iterator<Item = &'a Sample> + 'a {
        let filter = *self;
        self.window(samples)
            .iter()
            .filter(move |s| filter.matches_operation(s))
    }
}

/// Milliseconds since the epoch as a UTC time (RFC 3339 when serialized). Out-of-range
/// values, which no record can produce, become the epoch rather than a panic.
pub(crate) fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

// The number formats live in one place for the whole crate; recommendation and insight
// reasons reach them through here.
pub(crate) use crate::text::{fmt_gb, fmt_hours, fmt_ms, round3};

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64, op: u32) -> Sample {
        Sample::new(ms, op, true, 1.0)
    }

    #[test]
    fn window_is_since_inclusive_until_exclusive() {
        let s = [at(10, 0), at(20, 0), at(20, 1), at(30, 0), at(40, 0)];
        let f = Filter {
            since_ms: Some(20),
            until_ms: Some(40),
            operation: None,
            host: None,
        };
        let times: Vec<i64> = f.window(&s).iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(times, [20, 20, 30]);
        let f = Filter {
            operation: Some(1),
            ..Filter::default()
        };
        assert_eq!(f.select(&s).count(), 1);
        let backwards = Filter {
            since_ms: Some(40),
            until_ms: Some(10),
            operation: None,
            host: None,
        };
        assert!(backwards.window(&s).is_empty());
        assert_eq!(Filter::default().window(&s).len(), 5);
    }
}
