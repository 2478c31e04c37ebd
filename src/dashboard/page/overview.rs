//! The overview table of every model, and the models not recommended with the reason.

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::format::{duration, megabytes, number_cell, percent};
use super::recommendations::{balanced, recommended_for};
use crate::dashboard::View;
use crate::recommend::Priority;

pub(super) fn overview(view: &View) -> Markup {
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
                            th.num scope="col" { "J / output token" }
                            th.num scope="col" { "Cost / 1k tokens" }
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
                                @match s.efficiency.joules_per_output_token {
                                    Some(j) => { td.num data-value=(j) { (format!("{j:.3}")) } }
                                    None => {
                                        td.num title=[s.efficiency.energy_unavailable_reason.as_deref()] {
                                            span.none { "not measured" }
                                        }
                                    }
                                }
                                @match s.efficiency.cost_per_1k_output_tokens {
                                    Some(c) => {
                                        td.num data-value=(c) title=[s.efficiency.cost_basis.as_deref()] {
                                            (format!("{c:.4}"))
                                        }
                                    }
                                    None => { td.num { span.none { "no price" } } }
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
