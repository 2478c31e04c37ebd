//! The trend of one model and metric over the window, with that model's warnings.

use maud::{Markup, html};

use super::format::{axis_quality, axis_tps, chart_or_error, memory_format, percent, time_format};
use super::warnings::insight_item;
use super::window_words;
use crate::dashboard::charts::{self, TrendAxis};
use crate::dashboard::{Filters, View};
use crate::stats::{Direction, Insight, TrendMetric};

pub(super) fn metric_words(m: TrendMetric) -> &'static str {
    match m {
        TrendMetric::ProcessingTime => "processing time",
        TrendMetric::Ttft => "time to first token",
        TrendMetric::TokensPerSecond => "tokens per second",
        TrendMetric::Quality => "quality",
        TrendMetric::SuccessRate => "success rate",
        TrendMetric::Memory => "Ollama's memory",
    }
}

fn direction_words(d: Direction) -> &'static str {
    match d {
        Direction::Improving => "improving",
        Direction::Degrading => "degrading",
        Direction::Stable => "stable",
        Direction::InsufficientData => "not enough data to tell",
    }
}

pub(super) fn trend(view: &View) -> Markup {
    let f = &view.filters;
    let Some(model) = &view.trend_model else {
        return html! {};
    };
    let insights: Vec<&Insight> = view
        .insights
        .iter()
        .filter(|i| i.model.as_deref() == Some(model.as_str()))
        .collect();
    html! {
        section #trend {
            h2 { "Trend: " (metric_words(f.metric)) " of " span.model-name { (model) } }
            @if !f.standalone {
                p.metric-links {
                    "Metric: "
                    @for m in TrendMetric::ALL {
                        @if m == f.metric {
                            strong { (metric_words(m)) }
                        } @else {
                            a href=(Filters { metric: m, ..f.clone() }.query(Some(model))) { (metric_words(m)) }
                        }
                        " "
                    }
                }
            }
            div.trend-grid {
                figure {
                    @match &view.trend {
                        Some(t) => {
                            @let max = t.buckets.iter().filter_map(|b| b.value).fold(0.0, f64::max);
                            @let axis = trend_axis(f.metric, max);
                            (chart_or_error(charts::trend_chart(
                                "chart-trend",
                                &format!("{} of {} over the {}", metric_words(f.metric), model, window_words(f.hours)),
                                t,
                                axis,
                            )))
                            p.direction {
                                "Direction: " strong class=(format!("direction {}", direction_class(t.direction))) { (direction_words(t.direction)) }
                                @if let (Some(change), Some(slope)) = (t.change_percent, t.slope_per_hour) {
                                    " — the fitted line changes " (format!("{change:+.1}%")) " over the data ("
                                    (slope_words(f.metric, slope)) " per hour); "
                                    (t.better) " is better, and changes under "
                                    (format!("{:.0}%", t.stable_threshold_percent)) " count as stable."
                                }
                            }
                        }
                        None => {
                            p.notice {
                                "No records for model " code { (model) } "; pick one of the models in the table."
                            }
                        }
                    }
                }
                aside.insights {
                    h3 { "Warnings for this model" }
                    @if insights.is_empty() {
                        p.none { "None over the " (window_words(f.hours)) ": its success rate, speed and quality are within their thresholds." }
                    } @else {
                        ul { @for i in insights { (insight_item(i)) } }
                    }
                }
            }
        }
    }
}

fn direction_class(d: Direction) -> &'static str {
    match d {
        Direction::Improving => "improving",
        Direction::Degrading => "degrading",
        Direction::Stable => "stable",
        Direction::InsufficientData => "unknown",
    }
}

fn slope_words(metric: TrendMetric, slope: f64) -> String {
    match metric {
        TrendMetric::ProcessingTime | TrendMetric::Ttft => format!("{slope:+.1} ms"),
        TrendMetric::TokensPerSecond => format!("{slope:+.2} tokens/s"),
        TrendMetric::Quality => format!("{slope:+.3} points"),
        TrendMetric::SuccessRate => format!("{:+.2} percentage points", slope * 100.0),
        TrendMetric::Memory => format!("{slope:+.0} MB"),
    }
}

/// A trend's y axis: the format, its description with the unit, fixed bounds if any.
fn trend_axis(metric: TrendMetric, max: f64) -> TrendAxis {
    let axis = |format, label: String, bounds| TrendAxis {
        label,
        format,
        bounds,
    };
    match metric {
        TrendMetric::ProcessingTime | TrendMetric::Ttft => {
            let (format, unit) = time_format(max);
            let what = if metric == TrendMetric::Ttft {
                "time to first token"
            } else {
                "processing time"
            };
            axis(format, format!("mean {what} ({unit})"), None)
        }
        TrendMetric::TokensPerSecond => axis(axis_tps, "mean tokens/s".into(), None),
        TrendMetric::Quality => axis(
            axis_quality,
            "mean quality (1 to 5)".into(),
            Some((1.0, 5.0)),
        ),
        TrendMetric::SuccessRate => axis(percent, "success rate (%)".into(), Some((0.0, 1.0))),
        TrendMetric::Memory => {
            let (format, unit) = memory_format(max);
            axis(format, format!("Ollama memory, RSS ({unit})"), None)
        }
    }
}
