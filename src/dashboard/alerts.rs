//! The dashboard's alerts section: what is firing now (severity in words and colour,
//! since when, the evidence in a line) and the last few resolved alerts.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::alerts::{Alert, AlertList};

/// Resolved alerts shown under the firing ones.
const RESOLVED_SHOWN: usize = 10;

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn evidence(a: &Alert) -> String {
    let e = &a.evidence;
    format!(
        "baseline over {} calls, now over {} calls; statistic {:.1} over threshold {:.1}",
        e.baseline_samples, e.recent_samples, e.statistic, e.threshold
    )
}

/// The section.
pub fn section(alerts: &AlertList) -> Markup {
    let resolved: Vec<&Alert> = alerts.resolved.iter().take(RESOLVED_SHOWN).collect();
    html! {
        section #alerts {
            h2 { "Alerts" }
            @if alerts.active.is_empty() {
                p.none { "Nothing is firing: every model is within its own baseline." }
            } @else {
                ul {
                    @for a in &alerts.active {
                        li class=(format!("insight {}", a.severity.as_str())) {
                            span class=(format!("severity {}", a.severity.as_str())) { (a.severity.as_str()) }
                            " " strong { (a.model) } " " span.badge { (a.kind.as_str()) }
                            " " (a.summary)
                            br;
                            span.small { "firing since " (when(a.started_at)) "; " (evidence(a)) }
                        }
                    }
                }
            }
            @if !resolved.is_empty() {
                h3 { "Recently resolved" }
                div.table-wrap {
                    table {
                        thead { tr { th { "model" } th { "kind" } th { "severity" } th { "fired" } th { "resolved" } th { "what" } } }
                        tbody {
                            @for a in resolved {
                                tr {
                                    td { (a.model) }
                                    td { (a.kind.as_str()) }
                                    td { (a.severity.as_str()) }
                                    td.small { (when(a.started_at)) }
                                    td.small { (a.resolved_at.map(when).unwrap_or_default()) }
                                    td { (a.summary) @if let Some(n) = &a.note { " (" (n) ")" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
