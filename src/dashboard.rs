//! The dashboard: one HTML page that shows what the statistics API answers, for people who
//! would rather look than read JSON. Served at `GET /dashboard` on the API listener and
//! written to a file by `ollameter report`; nothing is fetched from anywhere else (the
//! stylesheet is compiled in, the charts are inline SVG, there is no script).
//!
//! This module is pure: [`Filters`] parses and validates the query string, [`View`] holds
//! the figures the API's own functions computed (statistics, recommendations, a trend,
//! insights, the telemetry snapshot), and [`render`] turns them into the page. The handler
//! that gathers a [`View`] from the running sidecar is `api::dashboard`.
//!
//! - [`charts`]: the SVG charts (plotters), in a colour-blind-safe palette.
//! - [`question`]: the prediction panel's call question (tokens, time budget, cold).
//! - `page`: the HTML (maud, which escapes every interpolated value).

pub mod alerts;
pub mod charts;
mod page;
pub mod question;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::recommend::Recommendation;
use crate::stats::{Insight, ModelStatistics, Trend, TrendMetric};
use crate::telemetry::SystemSnapshot;

pub use page::{render, render_error};
pub use question::{BadQuestion, Question};

/// The window when the URL names none: a day, like `/trend` and `/insights`.
pub const DEFAULT_WINDOW_HOURS: f64 = 24.0;
/// Longest window accepted: ten years, as the API.
pub const MAX_WINDOW_HOURS: f64 = 87_600.0;
/// How often an open page reloads itself.
pub const DEFAULT_REFRESH_S: u32 = 30;
/// Fastest reload accepted: each one recomputes every statistic.
pub const MIN_REFRESH_S: u32 = 5;
/// Slowest reload accepted (0 switches reloading off).
pub const MAX_REFRESH_S: u32 = 86_400;
/// About this many buckets in a trend when the URL does not say how wide they are: enough
/// to see a shape, few enough that each bucket holds several calls.
pub const TARGET_TREND_BUCKETS: f64 = 48.0;
/// Bucket widths (minutes) the automatic choice picks from: round clock intervals.
const BUCKET_STEPS_MIN: [u32; 14] = [
    1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080,
];
/// The window choices the filter offers (hours, words).
pub const WINDOW_CHOICES: [(f64, &str); 6] = [
    (1.0, "last hour"),
    (6.0, "last 6 hours"),
    (24.0, "last 24 hours"),
    (168.0, "last 7 days"),
    (720.0, "last 30 days"),
    (2160.0, "last 90 days"),
];
/// Every query parameter the dashboard reads; any other is a 400 (a typo would otherwise
/// silently show another view than the link meant). The last four are the call question's
/// ([`question::PARAMETERS`]).
pub const PARAMETERS: [&str; 15] = [
    "hours",
    "operation",
    "host",
    "model",
    "metric",
    "bucket_minutes",
    "min_operations",
    "refresh",
    "standalone",
    "include_unknown",
    "limit",
    "output_tokens",
    "prompt_tokens",
    "max_latency_ms",
    "cold",
];

/// What the page shows, from the query string. Every field is in the URL, so a view can
/// be shared.
#[derive(Debug, Clone, PartialEq)]
pub struct Filters {
    /// The window: the last this many hours (`hours`).
    pub hours: f64,
    /// Only this operation (`operation`); every operation without.
    pub operation: Option<String>,
    /// Only calls served by this upstream host (`host`); every host without.
    pub host: Option<String>,
    /// The model whose trend is shown (`model`); without, the recommended one.
    pub model: Option<String>,
    /// The trend's metric (`metric`).
    pub metric: TrendMetric,
    /// The trend's bucket width (`bucket_minutes`); chosen from the window without.
    pub bucket_minutes: Option<u32>,
    /// Fewest operations a model needs to be recommended (`min_operations`).
    pub min_operations: u64,
    /// Seconds between reloads (`refresh`); 0 for none.
    pub refresh_s: u32,
    /// A file to keep (`standalone=1`): no reload, no filter form, no links back.
    pub standalone: bool,
    /// Show names no call ever succeeded with and Ollama does not have (`include_unknown`).
    pub include_unknown: bool,
    /// Most models shown, the busiest first (`limit`).
    pub limit: usize,
    /// The call question of the prediction panel (`output_tokens`, `prompt_tokens`,
    /// `max_latency_ms`, `cold`); none asked without.
    pub question: Option<Question>,
}

impl Default for Filters {
    fn default() -> Filters {
        Filters {
            hours: DEFAULT_WINDOW_HOURS,
            operation: None,
            host: None,
            model: None,
            metric: TrendMetric::ProcessingTime,
            bucket_minutes: None,
            min_operations: crate::recommend::DEFAULT_MIN_OPERATIONS,
            refresh_s: DEFAULT_REFRESH_S,
            standalone: false,
            include_unknown: false,
            limit: crate::stats::known::DEFAULT_LIMIT,
            question: None,
        }
    }
}

impl Filters {
    /// Reads the query string's pairs; the message of an error names the parameter and
    /// what it accepts.
    pub fn parse(pairs: &HashMap<String, String>) -> Result<Filters, String> {
        match Filters::parse_page(pairs)? {
            (filters, None) => Ok(filters),
            (_, Some(bad)) => Err(bad.message),
        }
    }

    /// As [`Filters::parse`], but a bad call question is set aside rather than failing
    /// the view: the filters without it, and what is wrong with it, so the page can still
    /// show everything else with the message next to the question's form.
    ///
    /// # Errors
    /// An unknown parameter or a bad value of any other parameter.
    pub fn parse_page(
        pairs: &HashMap<String, String>,
    ) -> Result<(Filters, Option<BadQuestion>), String> {
        let mut unknown: Vec<&str> = pairs
            .keys()
            .map(String::as_str)
            .filter(|k| !PARAMETERS.contains(k))
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(format!(
                "unknown parameter {}; the dashboard reads {}",
                unknown.join(", "),
                PARAMETERS.join(", ")
            ));
        }
        let text = |name: &str| pairs.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut filters = Filters::default();
        if let Some(v) = text("hours") {
            filters.hours = match v.parse::<f64>() {
                Ok(h) if h.is_finite() && h > 0.0 && h <= MAX_WINDOW_HOURS => h,
                _ => {
                    return Err(format!(
                        "hours: {v:?} must be a number of hours above 0 and at most \
                         {MAX_WINDOW_HOURS}, e.g. hours=24"
                    ));
                }
            };
        }
        filters.operation = text("operation").map(str::to_string);
        filters.host = text("host").map(str::to_string);
        filters.model = text("model").map(str::to_string);
        if let Some(v) = text("metric") {
            filters.metric = v.parse::<TrendMetric>().map_err(|e| e.to_string())?;
        }
        if let Some(v) = text("bucket_minutes") {
            filters.bucket_minutes = Some(match v.parse::<u32>() {
                Ok(m) if (1..=525_600).contains(&m) => m,
                _ => {
                    return Err(format!(
                        "bucket_minutes: {v:?} must be a whole number of minutes from 1 to 525600"
                    ));
                }
            });
        }
        if let Some(v) = text("min_operations") {
            filters.min_operations = match v.parse::<u64>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "min_operations: {v:?} must be a whole number from 1 to 1000000"
                    ));
                }
            };
        }
        if let Some(v) = text("refresh") {
            filters.refresh_s = match v.parse::<u32>() {
                Ok(0) => 0,
                Ok(s) if (MIN_REFRESH_S..=MAX_REFRESH_S).contains(&s) => s,
                _ => {
                    return Err(format!(
                        "refresh: {v:?} must be 0 (no reload) or a whole number of seconds \
                         from {MIN_REFRESH_S} to {MAX_REFRESH_S}"
                    ));
                }
            };
        }
        if let Some(v) = text("standalone") {
            filters.standalone = match v {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => return Err(format!("standalone: {v:?} must be 1 or 0")),
            };
        }
        if let Some(v) = text("include_unknown") {
            filters.include_unknown = match v {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => return Err(format!("include_unknown: {v:?} must be true or false")),
            };
        }
        if let Some(v) = text("limit") {
            let max = crate::stats::known::MAX_LIMIT;
            filters.limit = match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "limit: {v:?} must be a whole number of models from 1 to {max}"
                    ));
                }
            };
        }
        match Question::parse(pairs) {
            Ok(question) => {
                filters.question = question;
                Ok((filters, None))
            }
            Err(bad) => Ok((filters, Some(bad))),
        }
    }

    /// The trend's bucket width: the URL's, else the smallest round step that gives at
    /// most [`TARGET_TREND_BUCKETS`] buckets over the window.
    pub fn trend_bucket_minutes(&self) -> u32 {
        self.bucket_minutes.unwrap_or_else(|| {
            let minutes = self.hours * 60.0;
            BUCKET_STEPS_MIN
                .into_iter()
                .find(|step| minutes / f64::from(*step) <= TARGET_TREND_BUCKETS)
                .unwrap_or(BUCKET_STEPS_MIN[BUCKET_STEPS_MIN.len() - 1])
        })
    }

    /// The query string (with its `?`) of this view, with `model` replaced when given;
    /// only what differs from the defaults, and never `standalone`. The call question is
    /// kept.
    pub fn query(&self, model: Option<&str>) -> String {
        let mut pairs = self.view_pairs(model);
        pairs.extend(self.question.iter().flat_map(Question::pairs));
        let parts: Vec<String> = pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={}", crate::text::encode(&v, false)))
            .collect();
        format!("?{}", parts.join("&"))
    }

    /// The query string of this view without the call question.
    pub fn query_without_question(&self) -> String {
        Filters {
            question: None,
            ..self.clone()
        }
        .query(None)
    }

    /// The parameters of the view (everything but the call question), as
    /// [`Filters::query`] writes them: what the question's form carries along.
    pub fn view_pairs(&self, model: Option<&str>) -> Vec<(&'static str, String)> {
        let defaults = Filters::default();
        let mut pairs: Vec<(&'static str, String)> = vec![("hours", format_hours(self.hours))];
        if let Some(host) = &self.host {
            pairs.push(("host", host.clone()));
        }
        if let Some(op) = &self.operation {
            pairs.push(("operation", op.clone()));
        }
        if let Some(m) = model.or(self.model.as_deref()) {
            pairs.push(("model", m.to_string()));
        }
        pairs.push(("metric", self.metric.as_str().to_string()));
        if let Some(b) = self.bucket_minutes {
            pairs.push(("bucket_minutes", b.to_string()));
        }
        if self.min_operations != defaults.min_operations {
            pairs.push(("min_operations", self.min_operations.to_string()));
        }
        if self.refresh_s != defaults.refresh_s {
            pairs.push(("refresh", self.refresh_s.to_string()));
        }
        if self.include_unknown {
            pairs.push(("include_unknown", "true".into()));
        }
        if self.limit != defaults.limit {
            pairs.push(("limit", self.limit.to_string()));
        }
        pairs
    }
}

/// Hours without a needless ".0": "24", "0.5".
pub fn format_hours(hours: f64) -> String {
    let rounded = (hours * 1000.0).round() / 1000.0;
    format!("{rounded}")
}

/// Everything the page shows, computed by the same functions the API answers with.
#[derive(Debug, Clone)]
pub struct View {
    /// What was asked.
    pub filters: Filters,
    /// When the figures were computed.
    pub generated_at: DateTime<Utc>,
    /// The sidecar's address as the browser reached it (`127.0.0.1:11435`), for the "point
    /// your app here" hint.
    pub host: String,
    /// Every model with records at all, sorted.
    pub models_with_records: Vec<String>,
    /// Every operation name seen, sorted.
    pub operations: Vec<String>,
    /// Every upstream host name the records have, sorted (the host filter's choices).
    pub hosts: Vec<String>,
    /// Each model's statistics in the window and operation: the busiest `limit` of them,
    /// most operations first.
    pub statistics: Vec<ModelStatistics>,
    /// Models with operations in the window that `limit` left out.
    pub models_left_out: usize,
    /// Unknown names (never succeeded, not installed) with operations in the window that
    /// are not shown.
    pub unknown_models_hidden: usize,
    /// The recommendation for each priority, in [`crate::recommend::Priority::ALL`]'s order.
    pub recommendations: Vec<Recommendation>,
    /// The model the trend is of, when there is one to show.
    pub trend_model: Option<String>,
    /// Its trend; `None` without a model.
    pub trend: Option<Trend>,
    /// `/insights` over the window.
    pub insights: Vec<Insight>,
    /// `/system`.
    pub system: SystemSnapshot,
    /// `/routing`; `None` where the page is built without a running router.
    pub routing: Option<crate::routing::RoutingSnapshot>,
    /// `/alerts`: firing and lately resolved.
    pub alerts: crate::alerts::AlertList,
    /// ollameter's version.
    pub version: &'static str,
    /// The latest benchmark run inside the sidecar, linked from the page.
    pub latest_benchmark: Option<BenchmarkLink>,
    /// The latency fit of each listed model that has one, for the prediction panel.
    pub predictions: Vec<charts::PredictionLine>,
    /// The answer to the call question (`filters.question`) for each listed model, as
    /// `GET /predict` answers it (same function, same host); `None` when none is asked.
    pub call_predictions: Option<crate::analytics::PredictAll>,
    /// A call question the page could not read: shown next to its form (the page is then
    /// a 400).
    pub bad_question: Option<BadQuestion>,
    /// `[cost] currency` when a price (`price_per_kwh` or `gpu_hour_price`) is set; `None`
    /// when nothing is priced, which is why a cost is unknown.
    pub priced_in: Option<String>,
}

/// Where the latest benchmark run is, for the dashboard's link.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchmarkLink {
    /// The run's id (`GET /api/model-performance/benchmark/{id}`).
    pub id: String,
    /// `running`, `finished`, ...
    pub state: String,
    /// Calls made.
    pub done_calls: u64,
    /// Calls planned.
    pub total_calls: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query string's pairs, as the handlers get them (also used by `question`'s tests).
    pub(super) fn pairs(list: &[(&str, &str)]) -> HashMap<String, String> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_every_parameter() {
        assert_eq!(Filters::parse(&pairs(&[])), Ok(Filters::default()));
        let f = Filters::parse(&pairs(&[
            ("hours", "6"),
            ("operation", "photo_evaluation"),
            ("model", "hf.co/org/m:Q4"),
            ("metric", "ttft"),
            ("bucket_minutes", "10"),
            ("min_operations", "3"),
            ("refresh", "0"),
            ("standalone", "1"),
        ]))
        .expect("valid");
        assert_eq!(f.hours, 6.0);
        assert_eq!(f.operation.as_deref(), Some("photo_evaluation"));
        assert_eq!(f.model.as_deref(), Some("hf.co/org/m:Q4"));
        assert_eq!(f.metric, TrendMetric::Ttft);
        assert_eq!(f.bucket_minutes, Some(10));
        assert_eq!(f.min_operations, 3);
        assert_eq!(f.refresh_s, 0);
        assert!(f.standalone);
        assert_eq!(
            f.query(None),
            "?hours=6&operation=photo_evaluation&model=hf.co%2Forg%2Fm:Q4&metric=ttft\
             &bucket_minutes=10&min_operations=3&refresh=0"
        );
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (k, v, start) in [
            ("hours", "0", "hours:"),
            ("hours", "abc", "hours:"),
            ("hours", "1e9", "hours:"),
            ("metric", "latency", "metric: unknown \"latency\""),
            ("bucket_minutes", "0", "bucket_minutes:"),
            ("min_operations", "-1", "min_operations:"),
            ("refresh", "1", "refresh:"),
            ("standalone", "yes", "standalone:"),
            ("hour", "6", "unknown parameter hour"),
        ] {
            let e = Filters::parse(&pairs(&[(k, v)])).expect_err(k);
            assert!(e.starts_with(start), "{k}={v}: {e}");
        }
        // Empty values are absent, as the API treats them.
        assert_eq!(
            Filters::parse(&pairs(&[("operation", " "), ("hours", "")])),
            Ok(Filters::default())
        );
    }

    #[test]
    fn the_call_question_rides_along_or_is_set_aside_when_bad() {
        let f = Filters::parse(&pairs(&[
            ("hours", "6"),
            ("output_tokens", "500"),
            ("max_latency_ms", "2000"),
        ]))
        .expect("valid");
        assert_eq!(
            f.question,
            Some(Question {
                output_tokens: 500,
                prompt_tokens: None,
                max_latency_ms: Some(2000.0),
                cold: false,
            })
        );
        assert_eq!(
            f.query(Some("m")),
            "?hours=6&model=m&metric=processing_time&output_tokens=500&max_latency_ms=2000"
        );
        assert_eq!(
            f.query_without_question(),
            "?hours=6&metric=processing_time"
        );
        // A bad question: `parse` fails on it, `parse_page` keeps the rest of the view.
        let bad = pairs(&[("hours", "6"), ("output_tokens", "x")]);
        let e = Filters::parse(&bad).expect_err("bad");
        assert!(e.starts_with("output_tokens: \"x\""), "{e}");
        let (f, problem) = Filters::parse_page(&bad).expect("the view is fine");
        assert_eq!(f.hours, 6.0);
        assert_eq!(f.question, None);
        assert_eq!(
            problem.expect("set aside").typed("output_tokens"),
            Some("x")
        );
        // Any other bad parameter still fails the whole view.
        assert!(Filters::parse_page(&pairs(&[("hours", "0"), ("output_tokens", "x")])).is_err());
    }

    #[test]
    fn automatic_buckets_follow_the_window() {
        let with = |hours| Filters {
            hours,
            ..Filters::default()
        };
        assert_eq!(with(1.0).trend_bucket_minutes(), 2);
        assert_eq!(with(24.0).trend_bucket_minutes(), 30);
        assert_eq!(with(168.0).trend_bucket_minutes(), 360);
        assert_eq!(with(2160.0).trend_bucket_minutes(), 2880);
        assert_eq!(with(87_600.0).trend_bucket_minutes(), 10080);
        let fixed = Filters {
            bucket_minutes: Some(7),
            ..Filters::default()
        };
        assert_eq!(fixed.trend_bucket_minutes(), 7);
    }

    #[test]
    fn hours_print_without_trailing_zeros() {
        assert_eq!(format_hours(24.0), "24");
        assert_eq!(format_hours(0.5), "0.5");
    }
}
