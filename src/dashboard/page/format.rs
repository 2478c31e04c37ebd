//! How numbers look in the tables and on the charts' axes, and a chart that failed.

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

/// A time for a table: "850 ms", "1.23 s", "75.0 s".
pub(super) fn duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 10_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// A share as a percentage: "98.5%", "100%".
pub(super) fn percent(share: f64) -> String {
    let p = share * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// MiB for a table: "812 MB", "9.4 GB".
pub(super) fn megabytes(mb: f64) -> String {
    if mb >= 1024.0 {
        format!("{:.1} GB", mb / 1024.0)
    } else {
        format!("{mb:.0} MB")
    }
}

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
    }
}
