//! How numbers look on the charts' axes (the table formats are the crate's one set, in
//! [`crate::text`]), and a chart that failed.

use maud::{Markup, PreEscaped, html};

use crate::dashboard::charts;

pub(super) fn number_cell(value: Option<f64>, format: fn(f64) -> String) -> Markup {
    html! {
        @match value {
            Some(v) => { td.num data-value=(v) { (format(v)) } }
            None => { td.num { span.none { "—" } } }
        }
    }
}

pub(super) use crate::text::{
    fmt_mb as megabytes, fmt_ms_precise as duration, fmt_percent as percent,
};

pub(super) fn axis_ms(v: f64) -> String {
    format!("{v:.0} ms")
}

pub(super) fn axis_s(v: f64) -> String {
    let s = v / 1000.0;
    if s >= 10.0 || s == s.round() {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

pub(super) fn axis_tps(v: f64) -> String {
    if v >= 10.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub(super) fn axis_quality(v: f64) -> String {
    format!("{v:.1}")
}

pub(super) fn axis_mb(v: f64) -> String {
    format!("{v:.0} MB")
}

pub(super) fn axis_gb(v: f64) -> String {
    format!("{:.1} GB", v / 1024.0)
}

/// Milliseconds on an axis: in ms up to 2 s, in s beyond, so ticks stay short.
pub(super) fn time_format(max_ms: f64) -> (fn(f64) -> String, &'static str) {
    if max_ms >= 2000.0 {
        (axis_s, "s")
    } else {
        (axis_ms, "ms")
    }
}

pub(super) fn memory_format(max_mb: f64) -> (fn(f64) -> String, &'static str) {
    if max_mb >= 2048.0 {
        (axis_gb, "GB")
    } else {
        (axis_mb, "MB")
    }
}

pub(super) fn chart_or_error(result: Result<String, charts::ChartError>) -> Markup {
    match result {
        Ok(svg) => PreEscaped(svg),
        Err(e) => html! { p.notice.error { (e.to_string()) } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_formats() {
        assert_eq!(axis_s(1500.0), "1.5 s");
        assert_eq!(axis_s(20_000.0), "20 s");
    }
}
