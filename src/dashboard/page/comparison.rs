//! The side-by-side bar charts: processing time, tokens per second, quality, success rate.

use maud::{Markup, html};

use super::format::{axis_quality, axis_tps, chart_or_error, duration, percent, time_format};
use crate::dashboard::View;
use crate::dashboard::charts::{self, BarChart, BarSeries, PALETTE};
use crate::stats::ModelStatistics;

pub(super) fn comparison(view: &View) -> Markup {
    let names: Vec<String> = view.statistics.iter().map(|s| s.model.clone()).collect();
    let column = |get: fn(&ModelStatistics) -> Option<f64>| -> Vec<Option<f64>> {
        view.statistics.iter().map(get).collect()
    };
    let p50 = column(|s| s.processing_time_ms.p50);
    let p95 = column(|s| s.processing_time_ms.p95);
    let max_ms = p50
        .iter()
        .chain(&p95)
        .flatten()
        .fold(0.0, |a: f64, &b| a.max(b));
    let (time_fmt, time_unit) = time_format(max_ms);
    let time_axis = format!("processing time of successful calls ({time_unit})");
    let time = charts::bar_chart(&BarChart {
        id: "chart-processing-time",
        title: "Processing time per model: median (p50) and 95th percentile (p95)",
        axis: &time_axis,
        categories: &names,
        series: vec![
            BarSeries {
                label: "p50 (median)".into(),
                color: PALETTE[0],
                values: p50,
            },
            BarSeries {
                label: "p95".into(),
                color: PALETTE[1],
                values: p95,
            },
        ],
        min: 0.0,
        max: None,
        format: time_fmt,
        value_format: duration,
    });
    let tps = charts::bar_chart(&BarChart {
        id: "chart-tokens-per-second",
        title: "Generation speed per model: median tokens per second",
        axis: "generation speed, p50 (tokens/s)",
        categories: &names,
        series: vec![BarSeries {
            label: "tokens/s".into(),
            color: PALETTE[2],
            values: column(|s| s.tokens_per_second.p50),
        }],
        min: 0.0,
        max: None,
        format: axis_tps,
        value_format: |v| format!("{v:.1}"),
    });
    let quality = charts::bar_chart(&BarChart {
        id: "chart-quality",
        title: "Quality per model: mean score on the 1 to 5 scale",
        axis: "mean quality score (1 to 5)",
        categories: &names,
        series: vec![BarSeries {
            label: "quality".into(),
            color: PALETTE[3],
            values: column(|s| s.quality.avg),
        }],
        min: 1.0,
        max: Some(5.0),
        format: axis_quality,
        value_format: |v| format!("{v:.2}"),
    });
    let success = charts::bar_chart(&BarChart {
        id: "chart-success-rate",
        title: "Success rate per model",
        axis: "success rate (% of operations)",
        categories: &names,
        series: vec![BarSeries {
            label: "success rate".into(),
            color: PALETTE[4],
            values: column(|s| Some(s.success_rate)),
        }],
        min: 0.0,
        max: Some(1.0),
        format: percent,
        value_format: percent,
    });
    html! {
        section #compare {
            h2 { "Side by side" }
            div.charts {
                figure {
                    figcaption { "Processing time: p50 and p95 (lower is better)" }
                    (chart_or_error(time))
                }
                figure {
                    figcaption { "Tokens per second, p50 (higher is better)" }
                    (chart_or_error(tps))
                }
                figure {
                    figcaption { "Quality, mean score (higher is better)" }
                    (chart_or_error(quality))
                }
                figure {
                    figcaption { "Success rate (higher is better)" }
                    (chart_or_error(success))
                }
            }
        }
    }
}
