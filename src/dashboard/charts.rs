//! The dashboard's charts, drawn on the server as SVG by plotters: horizontal bars (one
//! row per model, two bars side by side when a chart compares two figures), a metric over
//! time, and a stacked bar of each GPU's memory.
//!
//! Every chart uses the Okabe–Ito palette, which stays distinguishable with the common
//! colour-vision deficiencies; names its unit on its axis; draws a legend when it has more
//! than one series; and carries a `<title>` and a `<desc>` with its figures in words, so a
//! screen reader (and a test) can read what the picture shows. Plotters escapes every text
//! it writes; the title and description are escaped by maud.

use chrono::{DateTime, Duration, Utc};
use maud::html;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::stats::Trend;

/// Okabe & Ito's colour-blind-safe palette in the order series take it (their black is left
/// out: it is the text's colour).
pub const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2), // blue
    RGBColor(0xE6, 0x9F, 0x00), // orange
    RGBColor(0x00, 0x9E, 0x73), // bluish green
    RGBColor(0xCC, 0x79, 0xA7), // reddish purple
    RGBColor(0x56, 0xB4, 0xE9), // sky blue
    RGBColor(0xD5, 0x5E, 0x00), // vermillion
    RGBColor(0xF0, 0xE4, 0x42), // yellow
];

/// Memory held by processes that are not a known model.
const OTHER: RGBColor = RGBColor(0x99, 0x99, 0x99);
/// Free memory.
const FREE: RGBColor = RGBColor(0xEE, 0xEE, 0xEE);
const TEXT: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
const GRID: RGBColor = RGBColor(0xE3, 0xE3, 0xE3);
const FONT: &str = "sans-serif";
/// Plotters' SVG backend writes a font size of `size / 1.24`: 16 is a 12.9 px label.
const LABEL_SIZE: f64 = 16.0;
/// Figures printed at the end of a bar, a little smaller than the labels.
const VALUE_SIZE: f64 = 14.5;
/// Every chart's width in px; the page scales it down on narrow screens (it has a viewBox).
pub const WIDTH: u32 = 660;
/// The trend chart is wider: it has one point per bucket.
pub const TREND_WIDTH: u32 = 820;
/// Longest model name a chart prints whole; longer ones are cut with an ellipsis (the
/// table and the `<desc>` have them whole).
const MAX_LABEL_CHARS: usize = 30;
/// About one character's advance at [`LABEL_SIZE`], to size the label column.
const CHAR_PX: u32 = 7;
/// About one character's advance at [`VALUE_SIZE`].
const VALUE_CHAR_PX: i32 = 7;

/// A chart that could not be drawn; the page shows the message in its place.
#[derive(Debug, thiserror::Error)]
#[error("the chart could not be drawn: {0}")]
pub struct ChartError(String);

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// Black or white, whichever reads better on `background` (by its luma).
fn readable_on(background: RGBColor) -> RGBColor {
    let RGBColor(r, g, b) = background;
    let luma = 0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b);
    if luma > 140.0 { TEXT } else { WHITE }
}

fn label_style() -> TextStyle<'static> {
    (FONT, LABEL_SIZE).into_font().color(&TEXT)
}

fn value_style() -> TextStyle<'static> {
    (FONT, VALUE_SIZE).into_font().color(&TEXT)
}

fn muted_style() -> TextStyle<'static> {
    (FONT, VALUE_SIZE).into_font().color(&MUTED)
}

/// A model name short enough for a chart's label column.
fn shorten(name: &str) -> String {
    if name.chars().count() <= MAX_LABEL_CHARS {
        name.to_string()
    } else {
        let head: String = name.chars().take(MAX_LABEL_CHARS - 1).collect();
        format!("{head}…")
    }
}

/// The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) at or
/// above `value`, so an axis ends on a round number without much empty space.
fn nice_ceiling(value: f64) -> f64 {
    if !value.is_finite() || value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= value)
        .unwrap_or(10.0 * magnitude)
}

/// Makes plotters' SVG accessible: `role="img"`, a `<title>` and a `<desc>` referenced by
/// `aria-labelledby`, and a class for the page's CSS.
fn accessible(svg: &str, id: &str, title: &str, description: &str) -> String {
    let Some(open_end) = svg.find('>') else {
        return svg.to_string();
    };
    let (open, rest) = svg.split_at(open_end);
    let head = html! {
        title id=(format!("{id}-title")) { (title) }
        desc id=(format!("{id}-desc")) { (description) }
    };
    format!(
        "{open} id=\"{id}\" class=\"chart\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\">\n{}{}",
        head.into_string(),
        &rest[1..]
    )
}

/// A row of legend entries (swatch and text) starting at `x`, centred on `y`.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    x: i32,
    y: i32,
    entries: &[(String, RGBColor, bool)],
) -> Result<(), ChartError> {
    let mut at = x;
    for (label, color, dashed) in entries {
        if *dashed {
            for k in 0..3 {
                let x0 = at + k * 6;
                area.draw(&PathElement::new(
                    vec![(x0, y), (x0 + 4, y)],
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            }
        } else {
            area.draw(&Rectangle::new(
                [(at, y - 6), (at + 14, y + 6)],
                color.filled(),
            ))
            .map_err(err)?;
            if *color == FREE {
                area.draw(&Rectangle::new([(at, y - 6), (at + 14, y + 6)], OTHER))
                    .map_err(err)?;
            }
        }
        area.draw(&Text::new(
            label.clone(),
            (at + 20, y),
            label_style().pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
        at += 20 + label.chars().count() as i32 * CHAR_PX as i32 + 22;
    }
    Ok(())
}

/// One series of a bar chart: a value, or none, per category.
#[derive(Debug, Clone)]
pub struct BarSeries {
    /// Its name in the legend ("p50").
    pub label: String,
    /// Its colour, from [`PALETTE`].
    pub color: RGBColor,
    /// One per category; `None` draws "no data".
    pub values: Vec<Option<f64>>,
}

/// A horizontal bar chart: the categories (models) top to bottom, the values along x.
#[derive(Debug, Clone)]
pub struct BarChart<'a> {
    /// The `id` of the `<svg>`, unique on the page.
    pub id: &'a str,
    /// What the chart shows, for its `<title>`.
    pub title: &'a str,
    /// The x axis' description, with its unit: "processing time (ms)".
    pub axis: &'a str,
    /// The models, in the order they are drawn from the top.
    pub categories: &'a [String],
    /// One series, or two drawn side by side.
    pub series: Vec<BarSeries>,
    /// Where bars start (0, or 1 for the 1 to 5 quality scale).
    pub min: f64,
    /// Where the axis ends; from the data when `None`.
    pub max: Option<f64>,
    /// How a value is printed on the axis.
    pub format: fn(f64) -> String,
    /// How a value is printed at the end of its bar (more precise than the ticks).
    pub value_format: fn(f64) -> String,
}

/// Draws a [`BarChart`].
pub fn bar_chart(c: &BarChart<'_>) -> Result<String, ChartError> {
    let n = c.categories.len().max(1);
    let m = c.series.len().max(1);
    let band_px: u32 = if m == 1 { 30 } else { 17 * m as u32 + 12 };
    let legend_px: u32 = if m > 1 { 30 } else { 8 };
    let axis_px: u32 = 48;
    let labels: Vec<String> = c.categories.iter().map(|s| shorten(s)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32;
    let label_px = (longest * CHAR_PX + 18).clamp(70, 250);
    let height = legend_px + n as u32 * band_px + axis_px + 6;
    let data_max = c
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(c.min, |a, &b| a.max(b));
    // Room at the right for the figure printed after the longest bar.
    let max = c
        .max
        .unwrap_or_else(|| nice_ceiling(c.min + (data_max - c.min) * 1.25));
    let max = if max > c.min { max } else { c.min + 1.0 };
    let format = c.format;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        if c.series.len() > 1 {
            let entries: Vec<(String, RGBColor, bool)> = c
                .series
                .iter()
                .map(|s| (s.label.clone(), s.color, false))
                .collect();
            legend(&root, label_px as i32, 16, &entries)?;
        }
        let (_, body) = root.split_vertically(legend_px);
        let mut chart = ChartBuilder::on(&body)
            .margin_right(28)
            .margin_bottom(6)
            .x_label_area_size(axis_px)
            .y_label_area_size(label_px)
            .build_cartesian_2d(c.min..max, 0.0..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(6)
            .x_label_formatter(&|v| format(*v))
            .x_desc(c.axis)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(MUTED)
            .draw()
            .map_err(err)?;
        for (k, name) in labels.iter().enumerate() {
            let center = n as f64 - k as f64 - 0.5;
            let (x, y) = chart.backend_coord(&(c.min, center));
            root.draw(&Text::new(
                name.clone(),
                (x - 8, y),
                label_style().pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(err)?;
        }
        let pad = 0.16;
        let share = (1.0 - 2.0 * pad) / m as f64;
        for (s, series) in c.series.iter().enumerate() {
            for (k, value) in series.values.iter().enumerate().take(n) {
                let top = n as f64 - k as f64 - pad - s as f64 * share;
                let bottom = top - share;
                let middle = (top + bottom) / 2.0;
                match value {
                    Some(v) => {
                        let end = v.clamp(c.min, max);
                        chart
                            .draw_series(std::iter::once(Rectangle::new(
                                [(c.min, bottom), (end, top)],
                                series.color.filled(),
                            )))
                            .map_err(err)?;
                        let text = (c.value_format)(*v);
                        let text_px = text.chars().count() as i32 * VALUE_CHAR_PX;
                        let (x, y) = chart.backend_coord(&(end, middle));
                        // After the bar when it fits in the picture, else inside its end in
                        // a colour that reads on the bar.
                        let (at, anchor, color) = if x + 4 + text_px <= WIDTH as i32 - 2 {
                            (x + 4, HPos::Left, TEXT)
                        } else {
                            (x - 4, HPos::Right, readable_on(series.color))
                        };
                        root.draw(&Text::new(
                            text,
                            (at, y),
                            (FONT, VALUE_SIZE)
                                .into_font()
                                .color(&color)
                                .pos(Pos::new(anchor, VPos::Center)),
                        ))
                        .map_err(err)?;
                    }
                    None => {
                        let (x, y) = chart.backend_coord(&(c.min, middle));
                        root.draw(&Text::new(
                            "no data",
                            (x + 4, y),
                            muted_style().pos(Pos::new(HPos::Left, VPos::Center)),
                        ))
                        .map_err(err)?;
                    }
                }
            }
        }
        root.present().map_err(err)?;
    }
    Ok(accessible(&svg, c.id, c.title, &describe_bars(c)))
}

/// The bar chart's figures as a sentence per model.
fn describe_bars(c: &BarChart<'_>) -> String {
    c.categories
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let figures: Vec<String> = c
                .series
                .iter()
                .map(|s| {
                    let value = s
                        .values
                        .get(k)
                        .copied()
                        .flatten()
                        .map_or("no data".to_string(), c.value_format);
                    if c.series.len() > 1 {
                        format!("{} {value}", s.label)
                    } else {
                        value
                    }
                })
                .collect();
            format!("{name}: {}", figures.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a trend's values are shown.
#[derive(Debug, Clone)]
pub struct TrendAxis {
    /// The y axis' description with its unit.
    pub label: String,
    /// A value as printed on the axis.
    pub format: fn(f64) -> String,
    /// Fixed bounds of the scale (success rate 0 to 1, quality 1 to 5); from the data when
    /// `None`.
    pub bounds: Option<(f64, f64)>,
}

/// Draws a trend: each non-empty bucket's mean at the bucket's middle, joined where the
/// buckets are adjacent, and the fitted line the direction was read from (dashed).
pub fn trend_chart(
    id: &str,
    title: &str,
    trend: &Trend,
    axis: TrendAxis,
) -> Result<String, ChartError> {
    let bucket = Duration::minutes(i64::from(trend.bucket_minutes));
    let half = bucket / 2;
    let points: Vec<(DateTime<Utc>, f64, u64)> = trend
        .buckets
        .iter()
        .filter_map(|b| b.value.map(|v| (b.start + half, v, b.count)))
        .collect();
    let (start, end) = match (trend.buckets.first(), trend.buckets.last()) {
        (Some(first), Some(last)) => (first.start, last.start + bucket),
        _ => {
            let now = Utc::now();
            (now - Duration::hours(1), now)
        }
    };
    let fit = fitted_line(trend);
    let (lo, hi) = match axis.bounds {
        Some(bounds) => bounds,
        None => {
            let values = points
                .iter()
                .map(|p| p.1)
                .chain(fit.iter().flat_map(|f| [f.0.1, f.1.1]));
            let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            if min.is_finite() {
                (0.0_f64.min(min), nice_ceiling(max * 1.1))
            } else {
                (0.0, 1.0)
            }
        }
    };
    let span_hours = (end - start).num_minutes() as f64 / 60.0;
    let time_format = if span_hours > 48.0 { "%b %d" } else { "%H:%M" };
    let color = PALETTE[0];
    let fit_color = PALETTE[5];
    let height: u32 = 340;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (TREND_WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut entries = vec![(
            format!("mean per {} bucket", bucket_words(trend.bucket_minutes)),
            color,
            false,
        )];
        if fit.is_some() {
            entries.push(("fitted trend".to_string(), fit_color, true));
        }
        legend(&root, 80, 16, &entries)?;
        let (_, body) = root.split_vertically(30);
        let mut chart = ChartBuilder::on(&body)
            .margin_right(28)
            .margin_bottom(6)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(start..end, lo..hi)
            .map_err(err)?;
        let y_format = axis.format;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|t: &DateTime<Utc>| t.format(time_format).to_string())
            .y_label_formatter(&|v| y_format(*v))
            .x_desc("time (UTC)")
            .y_desc(axis.label.as_str())
            .label_style(label_style())
            .axis_desc_style(label_style())
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(MUTED)
            .draw()
            .map_err(err)?;
        // Lines join adjacent non-empty buckets only: an empty bucket is a gap, not a slope.
        let mut run: Vec<(DateTime<Utc>, f64)> = Vec::new();
        let mut runs = Vec::new();
        for b in &trend.buckets {
            match b.value {
                Some(v) => run.push((b.start + half, v)),
                None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
                None => {}
            }
        }
        if !run.is_empty() {
            runs.push(run);
        }
        for run in runs {
            chart
                .draw_series(LineSeries::new(run, color.stroke_width(2)))
                .map_err(err)?;
        }
        chart
            .draw_series(
                points
                    .iter()
                    .map(|(t, v, _)| Circle::new((*t, *v), 4, color.filled())),
            )
            .map_err(err)?;
        if let Some(((x0, y0), (x1, y1))) = fit {
            chart
                .draw_series(DashedLineSeries::new(
                    [
                        (
                            start + Duration::milliseconds((x0 * 3_600_000.0) as i64),
                            y0,
                        ),
                        (
                            start + Duration::milliseconds((x1 * 3_600_000.0) as i64),
                            y1,
                        ),
                    ],
                    6,
                    4,
                    fit_color.stroke_width(2),
                ))
                .map_err(err)?;
        }
        if points.is_empty() {
            let (w, h) = chart.plotting_area().dim_in_pixel();
            let (x, y) = chart.plotting_area().get_base_pixel();
            root.draw(&Text::new(
                "no operations in this window",
                (x + w as i32 / 2, y + h as i32 / 2),
                muted_style().pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let description = describe_trend(trend, axis.format);
    Ok(accessible(&svg, id, title, &description))
}

/// "30 min", "2 h", "1 d".
fn bucket_words(minutes: u32) -> String {
    if minutes.is_multiple_of(1440) {
        format!("{} d", minutes / 1440)
    } else if minutes.is_multiple_of(60) {
        format!("{} h", minutes / 60)
    } else {
        format!("{minutes} min")
    }
}

/// The trend's weighted least-squares line from the first to the last non-empty bucket, as
/// ((hours, value), (hours, value)) from the first bucket's start. It passes through the
/// count-weighted mean point with the trend's slope, which is how the line was fitted.
fn fitted_line(trend: &Trend) -> Option<((f64, f64), (f64, f64))> {
    let slope = trend.slope_per_hour?;
    let bucket_hours = f64::from(trend.bucket_minutes) / 60.0;
    let points: Vec<(f64, f64, f64)> = trend
        .buckets
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            b.value
                .map(|v| ((i as f64 + 0.5) * bucket_hours, v, b.count as f64))
        })
        .collect();
    let weight: f64 = points.iter().map(|p| p.2).sum();
    if weight <= 0.0 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0 * p.2).sum::<f64>() / weight;
    let mean_y = points.iter().map(|p| p.1 * p.2).sum::<f64>() / weight;
    let (first, last) = (points.first()?.0, points.last()?.0);
    let at = |x: f64| mean_y + slope * (x - mean_x);
    Some(((first, at(first)), (last, at(last))))
}

fn describe_trend(trend: &Trend, format: fn(f64) -> String) -> String {
    let points: Vec<String> = trend
        .buckets
        .iter()
        .filter_map(|b| {
            b.value.map(|v| {
                format!(
                    "{} {} ({} values)",
                    b.start.format("%Y-%m-%d %H:%M"),
                    format(v),
                    b.count
                )
            })
        })
        .collect();
    if points.is_empty() {
        format!(
            "{} of {}: no values in the last {} h",
            trend.metric, trend.model, trend.hours
        )
    } else {
        format!(
            "{} of {} per bucket from its start, UTC: {}",
            trend.metric,
            trend.model,
            points.join("; ")
        )
    }
}

/// One model's fitted latency line and some of the warm calls it was fitted on.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionLine {
    /// The model.
    pub model: String,
    /// Predicted time at 0 output tokens for its median prompt, ms.
    pub at_zero_ms: f64,
    /// Time per output token, ms.
    pub ms_per_output_token: f64,
    /// (output tokens, processing time ms) of some of its warm calls.
    pub calls: Vec<(f64, f64)>,
}

/// Draws processing time against output tokens: each model's calls as dots and its fitted
/// line (at its median prompt) through them.
pub fn prediction_chart(
    id: &str,
    title: &str,
    lines: &[PredictionLine],
) -> Result<String, ChartError> {
    let max_tokens = lines
        .iter()
        .flat_map(|l| l.calls.iter().map(|c| c.0))
        .fold(100.0_f64, f64::max);
    let x_hi = nice_ceiling(max_tokens * 1.05);
    let max_ms = lines
        .iter()
        .flat_map(|l| {
            l.calls
                .iter()
                .map(|c| c.1)
                .chain([l.at_zero_ms + l.ms_per_output_token * x_hi])
        })
        .fold(1.0_f64, f64::max);
    let y_hi = nice_ceiling(max_ms * 1.05);
    let (seconds, unit) = if y_hi >= 2_000.0 {
        (1000.0, "s")
    } else {
        (1.0, "ms")
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (TREND_WIDTH, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let entries: Vec<(String, RGBColor, bool)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (truncate_label(&l.model), PALETTE[i % PALETTE.len()], false))
            .collect();
        legend(&root, 80, 16, &entries)?;
        let (_, body) = root.split_vertically(30);
        let mut chart = ChartBuilder::on(&body)
            .margin_right(28)
            .margin_bottom(6)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_hi, 0.0..y_hi)
            .map_err(err)?;
        let y_desc = format!("processing time ({unit})");
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{:.1}", v / seconds))
            .x_desc("output tokens")
            .y_desc(y_desc.as_str())
            .label_style(label_style())
            .axis_desc_style(label_style())
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(MUTED)
            .draw()
            .map_err(err)?;
        for (i, l) in lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(
                    l.calls
                        .iter()
                        .map(|(x, y)| Circle::new((*x, *y), 2, color.mix(0.45).filled())),
                )
                .map_err(err)?;
            let end = (x_hi, l.at_zero_ms + l.ms_per_output_token * x_hi);
            chart
                .draw_series(LineSeries::new(
                    [(0.0, l.at_zero_ms), end],
                    color.stroke_width(2),
                ))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let description = lines
        .iter()
        .map(|l| {
            format!(
                "{}: {:.0} ms plus {:.2} ms per output token, over {} calls",
                l.model,
                l.at_zero_ms,
                l.ms_per_output_token,
                l.calls.len()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Ok(accessible(&svg, id, title, &description))
}

/// A legend label cut to [`MAX_LABEL_CHARS`].
fn truncate_label(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        label.to_owned()
    } else {
        let cut: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
        format!("{cut}…")
    }
}

/// One part of a GPU's memory.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPart {
    /// A loaded model's name, "other processes" or "free".
    pub label: String,
    /// MiB.
    pub mb: f64,
}

/// One GPU's memory: the loaded models' shares, what other processes hold, what is free.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuMemory {
    /// "GPU 0: NVIDIA RTX 4090".
    pub name: String,
    /// Installed memory, MiB.
    pub total_mb: f64,
    /// Each loaded model's VRAM on it.
    pub models: Vec<MemoryPart>,
    /// Used by anything else, MiB.
    pub other_mb: f64,
    /// Free, MiB.
    pub free_mb: f64,
}

/// Draws each GPU's memory as one stacked bar: its models (a colour each, the same colour
/// for a model on every GPU), other processes, free memory, against the capacity.
pub fn gpu_chart(id: &str, title: &str, gpus: &[GpuMemory]) -> Result<String, ChartError> {
    let mut model_names: Vec<&str> = Vec::new();
    for part in gpus.iter().flat_map(|g| &g.models) {
        if !model_names.contains(&part.label.as_str()) {
            model_names.push(&part.label);
        }
    }
    let color_of = |name: &str| {
        let i = model_names.iter().position(|m| *m == name).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let n = gpus.len().max(1);
    let capacity_gb = gpus.iter().map(|g| g.total_mb).fold(0.0, f64::max) / 1024.0;
    let max = nice_ceiling(capacity_gb.max(0.1));
    let labels: Vec<String> = gpus.iter().map(|g| shorten(&g.name)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32;
    let label_px = (longest * CHAR_PX + 18).clamp(70, 250);
    let mut entries: Vec<(String, RGBColor, bool)> = model_names
        .iter()
        .map(|m| (shorten(m), color_of(m), false))
        .collect();
    entries.push(("other processes".into(), OTHER, false));
    entries.push(("free".into(), FREE, false));
    // The legend wraps onto as many rows as it needs.
    let mut rows: Vec<Vec<(String, RGBColor, bool)>> = vec![Vec::new()];
    let mut row_px = 0;
    for e in entries {
        let px = 42 + e.0.chars().count() as u32 * CHAR_PX;
        if row_px + px > WIDTH - 40 && !rows.last().is_none_or(Vec::is_empty) {
            rows.push(Vec::new());
            row_px = 0;
        }
        row_px += px;
        if let Some(row) = rows.last_mut() {
            row.push(e);
        }
    }
    let legend_px = 24 * rows.len() as u32 + 8;
    let band_px = 46;
    let height = legend_px + n as u32 * band_px + 54;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        for (r, row) in rows.iter().enumerate() {
            legend(&root, 20, 16 + 24 * r as i32, row)?;
        }
        let (_, body) = root.split_vertically(legend_px);
        let mut chart = ChartBuilder::on(&body)
            .margin_right(28)
            .margin_bottom(6)
            .x_label_area_size(48)
            .y_label_area_size(label_px)
            .build_cartesian_2d(0.0..max, 0.0..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(8)
            .x_label_formatter(&|v| format!("{v}"))
            .x_desc("GPU memory (GB)")
            .label_style(label_style())
            .axis_desc_style(label_style())
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(MUTED)
            .draw()
            .map_err(err)?;
        for (k, gpu) in gpus.iter().enumerate() {
            let top = n as f64 - k as f64 - 0.2;
            let bottom = n as f64 - k as f64 - 0.8;
            let (x, y) = chart.backend_coord(&(0.0, (top + bottom) / 2.0));
            root.draw(&Text::new(
                labels[k].clone(),
                (x - 8, y),
                label_style().pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(err)?;
            let mut at = 0.0;
            let parts = gpu
                .models
                .iter()
                .map(|p| (p.mb, color_of(&p.label)))
                .chain([(gpu.other_mb, OTHER), (gpu.free_mb, FREE)]);
            for (mb, color) in parts {
                let gb = mb.max(0.0) / 1024.0;
                if gb <= 0.0 {
                    continue;
                }
                chart
                    .draw_series([
                        Rectangle::new([(at, bottom), (at + gb, top)], color.filled()),
                        Rectangle::new([(at, bottom), (at + gb, top)], WHITE.stroke_width(1)),
                    ])
                    .map_err(err)?;
                at += gb;
            }
            let total_gb = gpu.total_mb / 1024.0;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(total_gb, bottom - 0.12), (total_gb, top + 0.12)],
                    TEXT.stroke_width(2),
                )))
                .map_err(err)?;
            let (x, y) = chart.backend_coord(&(total_gb, top + 0.1));
            root.draw(&Text::new(
                format!("capacity {:.1} GB", total_gb),
                (x, y - 2),
                value_style().pos(Pos::new(HPos::Right, VPos::Bottom)),
            ))
            .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let description = gpus
        .iter()
        .map(|g| {
            let mut parts: Vec<String> = g
                .models
                .iter()
                .map(|p| format!("{} {:.1} GB", p.label, p.mb / 1024.0))
                .collect();
            parts.push(format!("other processes {:.1} GB", g.other_mb / 1024.0));
            parts.push(format!("free {:.1} GB", g.free_mb / 1024.0));
            format!(
                "{} of {:.1} GB: {}",
                g.name,
                g.total_mb / 1024.0,
                parts.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Ok(accessible(&svg, id, title, &description))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Direction, TrendBucket, TrendMetric};

    fn ms(v: f64) -> String {
        format!("{v:.0} ms")
    }

    fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}\n{svg}"))
    }

    fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_string()))
            .collect()
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(1.3), 1.5);
        assert_eq!(nice_ceiling(2.2), 2.5);
        assert_eq!(nice_ceiling(4100.0), 5000.0);
        assert_eq!(nice_ceiling(7.0), 8.0);
        assert_eq!(nice_ceiling(9.0), 10.0);
    }

    #[test]
    fn text_on_bars_keeps_its_contrast() {
        assert_eq!(readable_on(PALETTE[0]), WHITE);
        assert_eq!(readable_on(PALETTE[4]), TEXT);
        assert_eq!(readable_on(PALETTE[6]), TEXT);
    }

    #[test]
    fn shorten_cuts_long_names_only() {
        assert_eq!(shorten("llama3.2:3b"), "llama3.2:3b");
        let long = "hf.co/some-organisation/a-very-long-model-name:Q4_K_M";
        let short = shorten(long);
        assert_eq!(short.chars().count(), MAX_LABEL_CHARS);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn bar_chart_is_valid_svg_with_title_labels_and_escaped_names() {
        let names = vec!["<script>alert(1)</script>".to_string(), "b&c".to_string()];
        let svg = bar_chart(&BarChart {
            id: "t",
            title: "Processing time <p50>",
            axis: "processing time (ms)",
            categories: &names,
            series: vec![
                BarSeries {
                    label: "p50".into(),
                    color: PALETTE[0],
                    values: vec![Some(850.0), None],
                },
                BarSeries {
                    label: "p95".into(),
                    color: PALETTE[1],
                    values: vec![Some(1200.0), Some(90.0)],
                },
            ],
            min: 0.0,
            max: None,
            format: ms,
            value_format: ms,
        })
        .expect("chart");
        assert!(!svg.contains("<script>"), "{svg}");
        let doc = parse(&svg);
        let root = doc.root_element();
        assert_eq!(root.attribute("role"), Some("img"));
        assert_eq!(root.attribute("id"), Some("t"));
        let title = root
            .children()
            .find(|n| n.has_tag_name("title"))
            .expect("title");
        assert_eq!(title.text(), Some("Processing time <p50>"));
        let texts = texts(&doc);
        for expected in [
            "<script>alert(1)</script>",
            "b&c",
            "850 ms",
            "1200 ms",
            "90 ms",
            "no data",
            "p50",
            "p95",
            "processing time (ms)",
        ] {
            assert!(
                texts.iter().any(|t| t == expected),
                "{expected} not in {texts:?}"
            );
        }
        let desc = root
            .children()
            .find(|n| n.has_tag_name("desc"))
            .and_then(|n| n.text())
            .expect("desc");
        assert!(desc.contains("b&c: p50 no data, p95 90 ms"), "{desc}");
        // Two series, one with a missing value: three bars in the palette's colours.
        let bars = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("rect")
                    && matches!(n.attribute("fill"), Some("#0072B2") | Some("#E69F00"))
            })
            .count();
        assert_eq!(bars, 3 + 2, "three bars and two legend swatches");
    }

    #[test]
    fn trend_chart_draws_points_gaps_and_the_fit() {
        let start =
            DateTime::from_timestamp(1_700_000_000 - 1_700_000_000 % 3600, 0).expect("time");
        let bucket = |i: i64, value: Option<f64>, count: u64| TrendBucket {
            start: start + Duration::hours(i),
            count,
            value,
        };
        let trend = Trend {
            model: "m<1>".into(),
            metric: TrendMetric::ProcessingTime,
            better: "lower".into(),
            hours: 4.0,
            bucket_minutes: 60,
            buckets: vec![
                bucket(0, Some(100.0), 2),
                bucket(1, Some(200.0), 1),
                bucket(2, None, 0),
                bucket(3, Some(300.0), 1),
                bucket(4, None, 0),
            ],
            direction: Direction::Degrading,
            slope_per_hour: Some(66.667),
            change_percent: Some(100.0),
            stable_threshold_percent: 5.0,
        };
        let svg = trend_chart(
            "trend",
            "processing time of m<1>",
            &trend,
            TrendAxis {
                label: "processing time (ms)".into(),
                format: ms,
                bounds: None,
            },
        )
        .expect("chart");
        let doc = parse(&svg);
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("circle"))
                .count(),
            3
        );
        // Two runs of adjacent buckets, and the dashed fit drawn as segments.
        let lines = doc
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some("#0072B2"))
            .count();
        assert!(lines >= 2, "{svg}");
        assert!(
            doc.descendants()
                .any(|n| n.attribute("stroke") == Some("#D55E00")),
            "fit line"
        );
        let texts = texts(&doc);
        assert!(texts.iter().any(|t| t == "time (UTC)"), "{texts:?}");
        assert!(
            texts.iter().any(|t| t == "mean per 1 h bucket"),
            "{texts:?}"
        );
        let desc = doc
            .descendants()
            .find(|n| n.has_tag_name("desc"))
            .and_then(|n| n.text())
            .expect("desc");
        assert!(desc.contains("300 ms (1 values)"), "{desc}");
    }

    #[test]
    fn fitted_line_passes_through_the_weighted_mean() {
        let start = DateTime::from_timestamp(0, 0).expect("time");
        let trend = Trend {
            model: "m".into(),
            metric: TrendMetric::ProcessingTime,
            better: "lower".into(),
            hours: 3.0,
            bucket_minutes: 60,
            buckets: (0..3)
                .map(|i| TrendBucket {
                    start: start + Duration::hours(i),
                    count: 1,
                    value: Some(100.0 * (i + 1) as f64),
                })
                .collect(),
            direction: Direction::Degrading,
            slope_per_hour: Some(100.0),
            change_percent: Some(100.0),
            stable_threshold_percent: 5.0,
        };
        let ((x0, y0), (x1, y1)) = fitted_line(&trend).expect("fit");
        assert_eq!((x0, y0, x1, y1), (0.5, 100.0, 2.5, 300.0));
    }

    #[test]
    fn gpu_chart_stacks_models_other_and_free() {
        let svg = gpu_chart(
            "gpu",
            "GPU memory",
            &[GpuMemory {
                name: "GPU 0: NVIDIA RTX 4090".into(),
                total_mb: 24_564.0,
                models: vec![MemoryPart {
                    label: "llama3.2:3b".into(),
                    mb: 4096.0,
                }],
                other_mb: 512.0,
                free_mb: 19_956.0,
            }],
        )
        .expect("chart");
        let doc = parse(&svg);
        let texts = texts(&doc);
        for expected in [
            "llama3.2:3b",
            "other processes",
            "free",
            "capacity 24.0 GB",
            "GPU memory (GB)",
        ] {
            assert!(
                texts.iter().any(|t| t == expected),
                "{expected} not in {texts:?}"
            );
        }
        let desc = doc
            .descendants()
            .find(|n| n.has_tag_name("desc"))
            .and_then(|n| n.text())
            .expect("desc");
        assert!(desc.contains("llama3.2:3b 4.0 GB"), "{desc}");
    }
}
