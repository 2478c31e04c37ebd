//! The empty states: no records at all (how to point an app here), and no operations in
//! the chosen window (links to a wider one).

use maud::{Markup, html};

use super::window_words;
use crate::dashboard::{Filters, View};

pub(super) fn no_data(view: &View) -> Markup {
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

pub(super) fn empty_window(view: &View) -> Markup {
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
