//! Model routing: each virtual name that is configured or was used in the last hour, what
//! it runs on now and why, what follows if that fails, what is being measured, and where
//! its calls went.

use maud::{Markup, html};

use crate::dashboard::View;
use crate::routing::{AliasView, RoutingSnapshot};

fn shown(snapshot: &RoutingSnapshot) -> Vec<&AliasView> {
    snapshot
        .aliases
        .iter()
        .filter(|a| !a.builtin || !a.last_hour.is_empty())
        .collect()
}

pub(super) fn routing(view: &View) -> Markup {
    let Some(snapshot) = &view.routing else {
        return html! {};
    };
    let aliases = shown(snapshot);
    html! {
        section #routing {
            h2 { "Model routing" }
            @if aliases.is_empty() {
                p.none {
                    "No virtual model used in the last hour. Send " span.code { "\"model\": \"auto\"" }
                    " (or " span.code { "auto:speed" } ", " span.code { "auto:quality" } ", an alias from "
                    span.code { "[routing.aliases]" } ") and ollameter runs the recommended model."
                }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr {
                            th { "name" } th { "priority" } th { "operation" } th { "runs now" }
                            th { "then" } th { "measuring" } th { "last hour" }
                        } }
                        tbody {
                            @for a in &aliases {
                                @for c in &a.current {
                                    tr {
                                        td.code { (a.name) }
                                        td { (a.priority) }
                                        td { (c.operation.as_deref().unwrap_or("any")) }
                                        td {
                                            @match &c.model {
                                                Some(m) => { span.code { (m) } " " span.sub { (c.reason.map_or("", |r| r.as_str())) } }
                                                None => { span.none { "none can: " (c.why) } }
                                            }
                                        }
                                        td { (c.ranked.iter().skip(1).cloned().collect::<Vec<_>>().join(", ")) }
                                        td { (c.explorable.iter().map(|e| format!("{} ({} ops)", e.model, e.operations)).collect::<Vec<_>>().join(", ")) }
                                        td { (a.last_hour.iter().map(|s| format!("{} {:.0}%", s.model, s.share * 100.0)).collect::<Vec<_>>().join(", ")) }
                                    }
                                }
                            }
                        }
                    }
                }
                @for a in &aliases {
                    @for c in &a.current {
                        @if !c.excluded.is_empty() {
                            p.reason {
                                span.code { (a.name) } " leaves out: "
                                (c.excluded.iter().map(|e| format!("{} ({})", e.model, e.reason)).collect::<Vec<_>>().join("; "))
                            }
                        }
                    }
                }
            }
            p.sub { "Exploration share " (format!("{:.0}%", snapshot.explore * 100.0)) ", at most " (snapshot.max_attempts) " attempts per call. "
                "The same figures: " span.code { "GET /api/model-performance/routing" } ", " span.code { "ollameter route" } "." }
        }
    }
}
