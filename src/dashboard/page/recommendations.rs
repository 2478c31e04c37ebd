//! The recommendation cards, one per priority, and which priorities recommend each model.

use std::collections::BTreeMap;

use maud::{Markup, html};

use crate::dashboard::View;
use crate::recommend::{Priority, Recommendation};

fn priority_words(p: Priority) -> &'static str {
    match p {
        Priority::Speed => "Fastest",
        Priority::Quality => "Best quality",
        Priority::Balanced => "Balanced",
        Priority::Reliable => "Most reliable",
        Priority::Efficient => "Most efficient",
    }
}

pub(super) fn recommendations(view: &View) -> Markup {
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
pub(super) fn recommended_for(view: &View) -> BTreeMap<&str, Vec<Priority>> {
    let mut map: BTreeMap<&str, Vec<Priority>> = BTreeMap::new();
    for r in &view.recommendations {
        if let Some(m) = &r.recommended_model {
            map.entry(m.as_str()).or_default().push(r.priority);
        }
    }
    map
}

pub(super) fn balanced(view: &View) -> Option<&Recommendation> {
    view.recommendations
        .iter()
        .find(|r| r.priority == Priority::Balanced)
        .or(view.recommendations.first())
}
