//! The page's HTML, written with maud (every interpolated value is escaped): the header
//! and filters, the recommendations, the overview table, the comparison charts, the trend
//! with its warnings, every other warning, and the GPU's memory, each with an empty state
//! that says what to do.

use std::collections::BTreeMap;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::charts::{self, BarChart, BarSeries, GpuMemory, MemoryPart, PALETTE, TrendAxis};
use super::{Filters, View, WINDOW_CHOICES, format_hours};
use crate::recommend::{Priority, Recommendation};
use crate::stats::{Direction, Insight, ModelStatistics, Severity, TrendMetric};
use crate::telemetry::{SourceState, SystemSnapshot};

/// The stylesheet, compiled in so the page (and a saved report) needs nothing else.
const STYLESHEET: &str = include_str!("../../assets/dashboard.css");

/// The whole page.
pub fn render(view: &View) -> String {
    let f = &view.filters;
    let title = "ollameter dashboard";
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if f.refresh_s > 0 && !f.standalone {
                    // Reloads the same URL, so the filters stay.
                    meta http-equiv="refresh" content=(f.refresh_s);
                }
                title { (title) }
                // No favicon request: the proxy would forward it to Ollama.
                link rel="icon" href="data:,";
                style { (PreEscaped(STYLESHEET)) }
            }
            body {
                (header(view))
                main {
                    @if view.models_with_records.is_empty() {
                        (no_data(view))
                    } @else if view.statistics.is_empty() {
                        (empty_window(view))
                    } @else {
                        (recommendations(view))
                        (overview(view))
                        (comparison(view))
                    }
                    @if !view.models_with_records.is_empty() {
                        (trend(view))
                        (other_insights(view))
                    }
                    (gpu(&view.system))
                }
                (footer(view))
            }
        }
    };
    markup.into_string()
}

/// The page for a request the dashboard cannot answer: the message and a way back.
pub fn render_error(message: &str) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "ollameter dashboard: bad request" }
                link rel="icon" href="data:,";
                style { (PreEscaped(STYLESHEET)) }
            }
            body {
                main {
                    section.notice.error {
                        h1 { "The dashboard cannot show this view" }
                        p.message { (message) }
                        p { a href="/dashboard" { "Open the default view" } }
                    }
                }
            }
        }
    }
    .into_string()
}

fn window_words(hours: f64) -> String {
    match WINDOW_CHOICES.iter().find(|(h, _)| *h == hours) {
        Some((_, words)) => (*words).to_string(),
        None => format!("last {} hours", format_hours(hours)),
    }
}

fn header(view: &View) -> Markup {
    let f = &view.filters;
    let operations: u64 = view.statistics.iter().map(|s| s.total_operations).sum();
    html! {
        header.top {
            h1 { "ollameter " span.sub { "model performance" } }
            p.meta {
                (capitalise(&window_words(f.hours)))
                " · "
                @match &f.operation {
                    Some(op) => { "operation " strong { (op) } }
                    None => { "all operations" }
                }
                " · " (operations) " operations of " (view.statistics.len()) " models"
                " · computed " (view.generated_at.format("%Y-%m-%d %H:%M:%S UTC"))
                @if f.standalone {
                    " · a saved copy: it does not update"
                } @else if f.refresh_s > 0 {
                    " · reloads every " (f.refresh_s) " s"
                }
            }
            @if !f.standalone {
                (filter_form(view))
            }
        }
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn filter_form(view: &View) -> Markup {
    let f = &view.filters;
    let custom_window = !WINDOW_CHOICES.iter().any(|(h, _)| *h == f.hours);
    let defaults = Filters::default();
    html! {
        form.filters method="get" action="/dashboard" {
            label {
                "Window "
                select name="hours" {
                    @if custom_window {
                        option value=(format_hours(f.hours)) selected { (window_words(f.hours)) }
                    }
                    @for (hours, words) in WINDOW_CHOICES {
                        option value=(format_hours(hours)) selected[hours == f.hours] { (words) }
                    }
                }
            }
            label {
                "Operation "
                select name="operation" {
                    option value="" selected[f.operation.is_none()] { "all operations" }
                    @if let Some(op) = &f.operation {
                        @if !view.operations.contains(op) {
                            option value=(op) selected { (op) }
                        }
                    }
                    @for op in &view.operations {
                        option value=(op) selected[f.operation.as_ref() == Some(op)] { (op) }
                    }
                }
            }
            label {
                "Trend of "
                select name="model" {
                    option value="" selected[f.model.is_none()] { "the recommended model" }
                    @if let Some(m) = &f.model {
                        @if !view.models_with_records.contains(m) {
                            option value=(m) selected { (m) }
                        }
                    }
                    @for m in &view.models_with_records {
                        option value=(m) selected[f.model.as_ref() == Some(m)] { (m) }
                    }
                }
            }
            label {
                "Metric "
                select name="metric" {
                    @for m in TrendMetric::ALL {
                        option value=(m.as_str()) selected[m == f.metric] { (metric_words(m)) }
                    }
                }
            }
            @if let Some(b) = f.bucket_minutes {
                input type="hidden" name="bucket_minutes" value=(b);
            }
            @if f.min_operations != defaults.min_operations {
                input type="hidden" name="min_operations" value=(f.min_operations);
            }
            @if f.refresh_s != defaults.refresh_s {
                input type="hidden" name="refresh" value=(f.refresh_s);
            }
            button type="submit" { "Apply" }
            a.save href=(format!("{}&standalone=1", f.query(None))) {
                "Standalone copy"
            }
        }
    }
}

fn no_data(view: &View) -> Markup {
    html! {
        section.notice #no-data {
            h2 { "No data yet" }
            p {
                "Point your app's " code { "OLLAMA_HOST" } " at " code { "http://" (view.host) "/" }
                " (ollameter's proxy) and make some calls: every inference call through it is "
                "measured and shows up here within a second."
            }
            pre { code { "export OLLAMA_HOST=http://" (view.host) } }
            p {
                "Already have records from elsewhere? " code { "ollameter import FILE" }
                " loads an export. If the API listens on its own port (" code { "server.api_listen" }
                "), use the proxy's port above instead."
            }
        }
    }
}

fn empty_window(view: &View) -> Markup {
    let f = &view.filters;
    let wider = Filters {
        hours: 2160.0,
        ..f.clone()
    };
    let everything = Filters {
        operation: None,
        ..wider.clone()
    };
    html! {
        section.notice #empty-window {
            h2 { "No operations in this view" }
            p {
                "No operation"
                @if let Some(op) = &f.operation { " of " code { (op) } }
                " in the " (window_words(f.hours)) ". "
                (view.models_with_records.len()) " models have records outside it."
            }
            @if !f.standalone {
                p {
                    a href=(wider.query(None)) { "Show the last 90 days" }
                    @if f.operation.is_some() {
                        " · " a href=(everything.query(None)) { "every operation over 90 days" }
                    }
                }
            }
        }
    }
}

fn priority_words(p: Priority) -> &'static str {
    match p {
        Priority::Speed => "Fastest",
        Priority::Quality => "Best quality",
        Priority::Balanced => "Balanced",
        Priority::Reliable => "Most reliable",
    }
}

fn recommendations(view: &View) -> Markup {
    html! {
        section #recommendations {
            h2 { "Recommendation" }
            div.cards {
                @for r in &view.recommendations {
                    div class=(if r.priority == Priority::Balanced { "card main" } else { "card" }) {
                        h3 { (priority_words(r.priority)) " " span.code { "priority=" (r.priority) } }
                        @match &r.recommended_model {
                            Some(m) => {
                                p.model { (m) }
                                @if let Some(score) = r.score {
                                    p.score { "score " (format!("{score:.3}")) " of 1" }
                                }
                                @if let Some(c) = r.confidence {
                                    p.confidence title="The posterior probability that this model is truly the best of those that qualify" {
                                        (crate::recommend::reasons::percent(c)) " likely the best"
                                    }
                                }
                            }
                            None => { p.model.none { "none qualifies" } }
                        }
                        p.reason { (r.reason) }
                    }
                }
            }
        }
    }
}

/// Which priorities recommend each model.
fn recommended_for(view: &View) -> BTreeMap<&str, Vec<Priority>> {
    let mut map: BTreeMap<&str, Vec<Priority>> = BTreeMap::new();
    for r in &view.recommendations {
        if let Some(m) = &r.recommended_model {
            map.entry(m.as_str()).or_default().push(r.priority);
        }
    }
    map
}

fn balanced(view: &View) -> Option<&Recommendation> {
    view.recommendations
        .iter()
        .find(|r| r.priority == Priority::Balanced)
        .or(view.recommendations.first())
}

fn overview(view: &View) -> Markup {
    let marks = recommended_for(view);
    let needs: BTreeMap<&str, &crate::recommend::KnownVramNeed> = balanced(view)
        .map(|r| {
            r.vram
                .known_needs
                .iter()
                .map(|n| (n.model.as_str(), n))
                .collect()
        })
        .unwrap_or_default();
    // Each exclusion once, with the priorities that made it.
    let mut excluded: BTreeMap<(&str, &str), Vec<Priority>> = BTreeMap::new();
    for r in &view.recommendations {
        for e in &r.excluded {
            excluded
                .entry((e.model.as_str(), e.reason.as_str()))
                .or_default()
                .push(r.priority);
        }
    }
    let every = Priority::ALL.len();
    html! {
        section #overview {
            h2 { "Models" }
            div.table-wrap {
                table.models {
                    caption {
                        "Times and speeds are of successful operations; quality is the mean score "
                        "(how many were scored); memory is Ollama's resident memory during the calls."
                    }
                    thead {
                        tr {
                            th scope="col" { "Model" }
                            th scope="col" { "Recommended for" }
                            th.num scope="col" { "Operations" }
                            th.num scope="col" { "Success rate" }
                            th.num scope="col" { "p50 time" }
                            th.num scope="col" { "p95 time" }
                            th.num scope="col" { "TTFT p50" }
                            th.num scope="col" { "Tokens/s p50" }
                            th.num scope="col" { "Quality (1–5)" }
                            th.num scope="col" { "Memory avg" }
                            th.num scope="col" { "VRAM need" }
                        }
                    }
                    tbody {
                        @for s in &view.statistics {
                            tr data-model=(s.model) {
                                th scope="row" {
                                    @if view.filters.standalone {
                                        (s.model)
                                    } @else {
                                        a href=(view.filters.query(Some(&s.model))) title="show its trend" { (s.model) }
                                    }
                                }
                                td {
                                    @for p in marks.get(s.model.as_str()).into_iter().flatten() {
                                        span class=(format!("badge {p}")) { (p) } " "
                                    }
                                }
                                td.num data-value=(s.total_operations) { (s.total_operations) }
                                td.num data-value=(s.success_rate) {
                                    (percent(s.success_rate))
                                    @if s.failed_operations > 0 {
                                        span.small { " (" (s.failed_operations) " failed)" }
                                    }
                                }
                                (number_cell(s.processing_time_ms.p50, duration))
                                (number_cell(s.processing_time_ms.p95, duration))
                                (number_cell(s.ttft_ms.p50, duration))
                                (number_cell(s.tokens_per_second.p50, |v| format!("{v:.1}")))
                                td.num data-value=[s.quality.avg] {
                                    @match s.quality.avg {
                                        Some(q) => { (format!("{q:.2}")) span.small { " (" (s.quality.scored_operations) ")" } }
                                        None => { span.none { "not scored" } }
                                    }
                                }
                                (number_cell(s.memory_mb.avg, megabytes))
                                @match needs.get(s.model.as_str()) {
                                    Some(need) => {
                                        td.num data-value=(need.mb) {
                                            (megabytes(need.mb))
                                            span.small { " (" (need.source.describe()) ")" }
                                        }
                                    }
                                    None => { td.num { span.none { "unknown" } } }
                                }
                            }
                        }
                    }
                }
            }
            @if !excluded.is_empty() {
                h3 { "Not recommended" }
                div.table-wrap {
                    table.excluded {
                        thead { tr { th scope="col" { "Model" } th scope="col" { "For" } th scope="col" { "Why" } } }
                        tbody {
                            @for ((model, reason), priorities) in &excluded {
                                tr {
                                    th scope="row" { (model) }
                                    td {
                                        @if priorities.len() == every {
                                            "every priority"
                                        } @else {
                                            @for (i, p) in priorities.iter().enumerate() {
                                                @if i > 0 { ", " }
                                                (p)
                                            }
                                        }
                                    }
                                    td { (reason) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn number_cell(value: Option<f64>, format: fn(f64) -> String) -> Markup {
    html! {
        @match value {
            Some(v) => { td.num data-value=(v) { (format(v)) } }
            None => { td.num { span.none { "—" } } }
        }
    }
}

/// A time for a table: "850 ms", "1.23 s", "75.0 s".
fn duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 10_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// A share as a percentage: "98.5%", "100%".
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// MiB for a table: "812 MB", "9.4 GB".
fn megabytes(mb: f64) -> String {
    if mb >= 1024.0 {
        format!("{:.1} GB", mb / 1024.0)
    } else {
        format!("{mb:.0} MB")
    }
}

fn axis_ms(v: f64) -> String {
    format!("{v:.0} ms")
}

fn axis_s(v: f64) -> String {
    let s = v / 1000.0;
    if s >= 10.0 || s == s.round() {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

fn axis_tps(v: f64) -> String {
    if v >= 10.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn axis_quality(v: f64) -> String {
    format!("{v:.1}")
}

fn axis_mb(v: f64) -> String {
    format!("{v:.0} MB")
}

fn axis_gb(v: f64) -> String {
    format!("{:.1} GB", v / 1024.0)
}

/// Milliseconds on an axis: in ms up to 2 s, in s beyond, so ticks stay short.
fn time_format(max_ms: f64) -> (fn(f64) -> String, &'static str) {
    if max_ms >= 2000.0 {
        (axis_s, "s")
    } else {
        (axis_ms, "ms")
    }
}

fn memory_format(max_mb: f64) -> (fn(f64) -> String, &'static str) {
    if max_mb >= 2048.0 {
        (axis_gb, "GB")
    } else {
        (axis_mb, "MB")
    }
}

fn chart_or_error(result: Result<String, charts::ChartError>) -> Markup {
    match result {
        Ok(svg) => PreEscaped(svg),
        Err(e) => html! { p.notice.error { (e.to_string()) } },
    }
}

fn comparison(view: &View) -> Markup {
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

fn metric_words(m: TrendMetric) -> &'static str {
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

fn trend(view: &View) -> Markup {
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

fn severity_words(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn insight_item(i: &Insight) -> Markup {
    html! {
        li class=(format!("insight {}", severity_words(i.severity))) {
            span class=(format!("severity {}", severity_words(i.severity))) { (severity_words(i.severity)) }
            " " (i.message)
        }
    }
}

fn other_insights(view: &View) -> Markup {
    let others: Vec<&Insight> = view
        .insights
        .iter()
        .filter(|i| i.model.is_none() || i.model != view.trend_model)
        .collect();
    html! {
        section #insights {
            h2 { "Warnings" }
            @if view.insights.is_empty() {
                p.none { "No warnings over the " (window_words(view.filters.hours)) ": every model is within its thresholds." }
            } @else if others.is_empty() {
                p.none { "No warnings for other models." }
            } @else {
                ul { @for i in others { (insight_item(i)) } }
            }
        }
    }
}

/// Each GPU's memory split between the loaded models, other processes and free memory.
fn gpu_memory(system: &SystemSnapshot) -> Vec<GpuMemory> {
    let single = system.gpus.len() == 1;
    system
        .gpus
        .iter()
        .map(|g| {
            // With one GPU, Ollama's own `size_vram` of each loaded model is the best figure;
            // with several, only NVML's per-process figures say which GPU holds what.
            let models: Vec<MemoryPart> = if single {
                system
                    .loaded_models
                    .iter()
                    .filter_map(|m| {
                        m.vram_mb.or(m.gpu_memory_mb).map(|mb| MemoryPart {
                            label: m.name.clone(),
                            mb,
                        })
                    })
                    .filter(|p| p.mb > 0.0)
                    .collect()
            } else {
                g.processes
                    .iter()
                    .filter_map(|p| {
                        Some(MemoryPart {
                            label: p.model.clone()?,
                            mb: p.used_memory_mb?,
                        })
                    })
                    .collect()
            };
            let held: f64 = models.iter().map(|p| p.mb).sum();
            GpuMemory {
                name: format!("GPU {}: {}", g.index, g.name),
                total_mb: g.memory_total_mb,
                other_mb: (g.memory_used_mb - held).max(0.0),
                free_mb: g.memory_free_mb.max(0.0),
                models,
            }
        })
        .collect()
}

fn source_reason(state: &SourceState) -> Option<&str> {
    match state {
        SourceState::Ok => None,
        SourceState::Unavailable(r) | SourceState::Disabled(r) => Some(r),
        SourceState::Pending => Some("telemetry has not sampled yet"),
    }
}

fn gpu(system: &SystemSnapshot) -> Markup {
    let gpus = gpu_memory(system);
    html! {
        section #gpu {
            h2 { "GPU memory" }
            @if !system.sampler.enabled {
                p.notice {
                    "Telemetry is off"
                    @if let Some(reason) = source_reason(&system.sampler.sources.nvml) { ": " (reason) }
                    ". Turn it on (" code { "telemetry.enabled" } ") to see each loaded model's VRAM here."
                }
            } @else if gpus.is_empty() {
                p.notice {
                    "No GPU seen"
                    @if let Some(reason) = source_reason(&system.sampler.sources.nvml) { ": " (reason) }
                    ". Models' VRAM from Ollama is listed below when it has any loaded; "
                    code { "ollameter gpu-check" } " tells why NVML sees no GPU."
                }
            } @else {
                figure.wide {
                    figcaption { "Each GPU: the loaded models' VRAM, other processes and free memory, against its capacity" }
                    (chart_or_error(charts::gpu_chart("chart-gpu", "GPU memory by loaded model against each GPU's capacity", &gpus)))
                }
            }
            @if system.loaded_models.is_empty() {
                @if system.sampler.enabled {
                    p.none { "Ollama has no model loaded right now." }
                }
            } @else {
                div.table-wrap {
                    table.loaded {
                        caption { "Loaded in Ollama (" code { "/api/ps" } ")" }
                        thead {
                            tr {
                                th scope="col" { "Model" }
                                th.num scope="col" { "VRAM" }
                                th.num scope="col" { "Size" }
                                th.num scope="col" { "Context" }
                                th scope="col" { "Unloads at" }
                            }
                        }
                        tbody {
                            @for m in &system.loaded_models {
                                tr {
                                    th scope="row" { (m.name) }
                                    (number_cell(m.vram_mb, megabytes))
                                    (number_cell(m.size_mb, megabytes))
                                    td.num { @match m.context_length { Some(c) => { (c) " tokens" } None => { "—" } } }
                                    td { (m.expires_at.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn footer(view: &View) -> Markup {
    let api = "/api/model-performance";
    html! {
        footer {
            p {
                "ollameter " (view.version) ". The figures are those of "
                @if view.filters.standalone {
                    code { (api) "/statistics" } ", " code { "/recommend" } ", " code { "/trend" } ", "
                    code { "/insights" } " and " code { "/system" }
                } @else {
                    a href=(format!("{api}/statistics?duration_hours={}", format_hours(view.filters.hours))) { code { "/statistics" } } ", "
                    a href=(format!("{api}/recommend?duration_hours={}", format_hours(view.filters.hours))) { code { "/recommend" } } ", "
                    code { "/trend" } ", "
                    a href=(format!("{api}/insights?duration_hours={}", format_hours(view.filters.hours))) { code { "/insights" } } " and "
                    a href=(format!("{api}/system")) { code { "/system" } }
                }
                " over the same window."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::SourcesState;
    use crate::telemetry::snapshot::{GpuSnapshot, LoadedModel};

    fn snapshot(gpus: Vec<GpuSnapshot>, loaded: Vec<LoadedModel>) -> SystemSnapshot {
        let mut s = SystemSnapshot::empty(true, 1000, SourcesState::all(&SourceState::Ok));
        s.gpus = gpus;
        s.loaded_models = loaded;
        s
    }

    fn loaded(name: &str, vram_mb: f64) -> LoadedModel {
        LoadedModel {
            name: name.into(),
            size_mb: Some(vram_mb + 100.0),
            vram_mb: Some(vram_mb),
            context_length: Some(4096),
            expires_at: Some("2025-01-01T00:05:00Z".into()),
            runner_pid: None,
            runner_rss_mb: None,
            gpu_memory_mb: None,
        }
    }

    fn view(system: SystemSnapshot) -> View {
        View {
            filters: Filters::default(),
            generated_at: chrono::DateTime::UNIX_EPOCH,
            host: "h<o>st:1".into(),
            models_with_records: Vec::new(),
            operations: Vec::new(),
            statistics: Vec::new(),
            recommendations: Vec::new(),
            trend_model: None,
            trend: None,
            insights: Vec::new(),
            system,
            version: "test",
        }
    }

    #[test]
    fn one_gpu_is_split_by_ollamas_loaded_models() {
        let device = GpuSnapshot {
            index: 0,
            name: "NVIDIA L4".into(),
            memory_total_mb: 23_034.0,
            memory_used_mb: 9_000.0,
            memory_free_mb: 14_034.0,
            utilization_gpu_percent: None,
            utilization_memory_percent: None,
            processes: Vec::new(),
        };
        let system = snapshot(
            vec![device],
            vec![loaded("llama3.2:3b", 3_000.0), loaded("<b>x</b>", 5_000.0)],
        );
        let parts = gpu_memory(&system);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].models.len(), 2);
        assert_eq!(parts[0].other_mb, 1_000.0);
        let html = gpu(&system).into_string();
        assert!(html.contains("id=\"chart-gpu\""), "{html}");
        assert!(html.contains("capacity 22.5 GB"), "{html}");
        assert!(!html.contains("<b>x"), "escaped");
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(html.contains("4096 tokens"));
    }

    #[test]
    fn without_a_gpu_the_reason_is_shown() {
        let mut system = snapshot(Vec::new(), Vec::new());
        system.sampler.sources.nvml = SourceState::Unavailable("NVML library not found".into());
        let html = gpu(&system).into_string();
        assert!(
            html.contains("No GPU seen: NVML library not found"),
            "{html}"
        );
        assert!(html.contains("Ollama has no model loaded right now"));
        let off = SystemSnapshot::empty(
            false,
            0,
            SourcesState::all(&SourceState::Disabled("telemetry is off".into())),
        );
        assert!(gpu(&off).into_string().contains("Telemetry is off"));
    }

    #[test]
    fn an_empty_page_points_the_app_here_with_the_host_escaped() {
        let page = render(&view(snapshot(Vec::new(), Vec::new())));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("No data yet"));
        assert!(
            page.contains("export OLLAMA_HOST=http://h&lt;o&gt;st:1"),
            "{page}"
        );
        assert!(!page.contains("<svg"), "no charts without data");
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        let mut still = view(snapshot(Vec::new(), Vec::new()));
        still.filters.standalone = true;
        let page = render(&still);
        assert!(!page.contains("http-equiv"));
        assert!(!page.contains("<form"));
    }

    #[test]
    fn error_page_escapes_the_message() {
        let page = render_error("metric: unknown \"<i>\"");
        assert!(
            page.contains("metric: unknown &quot;&lt;i&gt;&quot;"),
            "{page}"
        );
    }

    #[test]
    fn number_formats() {
        assert_eq!(duration(850.4), "850 ms");
        assert_eq!(duration(1234.5), "1.23 s");
        assert_eq!(duration(75_000.0), "75.0 s");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.985), "98.5%");
        assert_eq!(megabytes(812.0), "812 MB");
        assert_eq!(megabytes(9625.6), "9.4 GB");
        assert_eq!(axis_s(1500.0), "1.5 s");
        assert_eq!(axis_s(20_000.0), "20 s");
        assert_eq!(capitalise("last hour"), "Last hour");
    }
}
