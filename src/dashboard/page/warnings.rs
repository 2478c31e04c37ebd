//! The warnings (insights) for every model but the one whose trend is shown.

use maud::{Markup, html};

use super::window_words;
use crate::dashboard::View;
use crate::stats::{Insight, Severity};

fn severity_words(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

pub(super) fn insight_item(i: &Insight) -> Markup {
    html! {
        li class=(format!("insight {}", severity_words(i.severity))) {
            span class=(format!("severity {}", severity_words(i.severity))) { (severity_words(i.severity)) }
            " " (i.message)
        }
    }
}

pub(super) fn other_insights(view: &View) -> Markup {
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
