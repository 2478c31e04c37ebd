//! The page's HTML, written with maud (every interpolated value is escaped): the frame
//! (head, header with the filters, footer) here, and one file per section, each with an
//! empty state that says what to do:
//!
//! - `empty`: no records at all, or none in the window.
//! - `recommendations`: one card per priority.
//! - `overview`: the table of every model and the models not recommended.
//! - `comparison`: the side-by-side bar charts.
//! - `trend`: one model's trend with its warnings.
//! - `warnings`: every other warning.
//! - `routing`: the virtual model names, what each runs on now, and their last hour.
//! - `gpu`: the GPUs' memory and the loaded models.
//! - `format`: how numbers look in tables and on axes.

mod comparison;
mod empty;
mod format;
mod gpu;
mod overview;
mod prediction;
mod recommendations;
mod routing;
mod trend;
mod warnings;

use maud::{DOCTYPE, Markup, PreEscaped, html};

use self::comparison::comparison;
use self::empty::{empty_window, no_data};
use self::gpu::gpu;
use self::overview::overview;
use self::recommendations::recommendations;
use self::routing::routing;
use self::trend::{metric_words, trend};
use self::warnings::other_insights;
use super::{Filters, View, WINDOW_CHOICES, format_hours};
use crate::stats::TrendMetric;

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
                @if f.refresh_s > 0 && !f.standalone && view.bad_question.is_none() {
                    // Reloads the same URL, so the filters stay. Not while the call
                    // question waits to be corrected: a reload would wipe the typing.
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
                    (super::alerts::section(&view.alerts))
                    @if view.models_with_records.is_empty() || view.statistics.is_empty() {
                        // No prediction panel to show a bad question next to.
                        @if let Some(bad) = &view.bad_question {
                            section.notice.error {
                                p.message { (bad.message) }
                            }
                        }
                    }
                    @if view.models_with_records.is_empty() {
                        (no_data(view))
                    } @else if view.statistics.is_empty() {
                        (empty_window(view))
                    } @else {
                        (recommendations(view))
                        (overview(view))
                        (comparison(view))
                        (prediction::prediction(view))
                    }
                    @if !view.models_with_records.is_empty() {
                        (trend(view))
                        (other_insights(view))
                    }
                    (routing(view))
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

/// This view with room for every model it left out.
fn more_models_link(f: &Filters, view: &View) -> String {
    let mut wider = f.clone();
    wider.limit =
        (view.statistics.len() + view.models_left_out).min(crate::stats::known::MAX_LIMIT);
    wider.query(None)
}

/// This view with the unknown names shown.
fn unknown_models_link(f: &Filters) -> String {
    let mut with = f.clone();
    with.include_unknown = true;
    with.query(None)
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
                @if let Some(host) = &f.host {
                    " · host " strong { (host) }
                }
                " · " (operations) " operations of " (view.statistics.len()) " models"
                @if view.models_left_out > 0 {
                    " (the busiest " (view.statistics.len()) "; " (view.models_left_out)
                    " more not shown"
                    @if !f.standalone {
                        ": " a href=(more_models_link(f, view)) { "show them" }
                    }
                    ")"
                }
                @if view.unknown_models_hidden > 0 {
                    " · " (view.unknown_models_hidden)
                    " unknown model names hidden"
                    @if !f.standalone {
                        " (" a href=(unknown_models_link(f)) { "show them" } ")"
                    }
                }
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
            @if view.hosts.len() > 1 || f.host.is_some() {
                label {
                    "Host "
                    select name="host" {
                        option value="" selected[f.host.is_none()] { "all hosts" }
                        @if let Some(host) = &f.host {
                            @if !view.hosts.contains(host) {
                                option value=(host) selected { (host) }
                            }
                        }
                        @for host in &view.hosts {
                            option value=(host) selected[f.host.as_ref() == Some(host)] { (host) }
                        }
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
            // The call question stays when the view changes.
            @for (name, value) in f.question.iter().flat_map(super::Question::pairs) {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" { "Apply" }
            a.save href=(format!("{}&standalone=1", f.query(None))) {
                "Standalone copy"
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
            @if let (Some(b), false) = (&view.latest_benchmark, view.filters.standalone) {
                p.benchmark {
                    "Latest benchmark: " a href=(format!("{api}/benchmark/{}", b.id)) { (b.id) }
                    " (" (b.state) ", " (b.done_calls) " of " (b.total_calls) " calls)."
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{SourceState, SourcesState, SystemSnapshot};

    fn view() -> View {
        View {
            filters: Filters::default(),
            generated_at: chrono::DateTime::UNIX_EPOCH,
            host: "h<o>st:1".into(),
            models_with_records: Vec::new(),
            operations: Vec::new(),
            hosts: Vec::new(),
            statistics: Vec::new(),
            models_left_out: 0,
            unknown_models_hidden: 0,
            recommendations: Vec::new(),
            trend_model: None,
            trend: None,
            insights: Vec::new(),
            system: SystemSnapshot::empty(true, 1000, SourcesState::all(&SourceState::Ok)),
            alerts: Default::default(),
            version: "test",
            routing: None,
            latest_benchmark: None,
            predictions: Vec::new(),
            call_predictions: None,
            bad_question: None,
            priced_in: None,
        }
    }

    #[test]
    fn the_routing_section_shows_each_name_its_choice_and_exclusions() {
        use crate::recommend::Priority;
        use crate::record::{CallKind, RouteReason};
        use crate::routing::share::ModelShare;
        use crate::routing::{
            AliasView, CurrentChoice, Explorable, RouteExclusion, RoutingSnapshot,
        };
        let mut v = view();
        v.routing = Some(RoutingSnapshot {
            explore: 0.1,
            max_attempts: 3,
            fallbacks: Vec::new(),
            aliases: vec![AliasView {
                name: "ph<o>to".into(),
                builtin: false,
                priority: Priority::Quality,
                candidates: None,
                operation: Some("photo_evaluation".into()),
                min_operations: 10,
                max_vram_gb: Some(8.0),
                max_p95_ms: None,
                current: vec![CurrentChoice {
                    kind: CallKind::Generation,
                    operation: Some("photo_evaluation".into()),
                    model: Some("llava:7b".into()),
                    reason: Some(RouteReason::Recommended),
                    why: "best".into(),
                    candidates: vec!["llava:7b".into(), "gemma3:4b".into()],
                    ranked: vec!["llava:7b".into(), "gemma3:4b".into()],
                    explorable: vec![Explorable {
                        model: "qwen2.5vl:7b".into(),
                        operations: 2,
                    }],
                    excluded: vec![RouteExclusion {
                        model: "big:70b".into(),
                        reason: "needs 40.0 GB of VRAM".into(),
                    }],
                }],
                last_hour: vec![ModelShare {
                    model: "llava:7b".into(),
                    calls: 9,
                    share: 0.9,
                    recommended: 9,
                    explore: 0,
                    fallback: 0,
                    explicit: 0,
                }],
            }],
        });
        let page = render(&v);
        for needle in [
            "Model routing",
            "ph&lt;o&gt;to",
            "llava:7b",
            "recommended",
            "gemma3:4b",
            "qwen2.5vl:7b (2 ops)",
            "big:70b (needs 40.0 GB of VRAM)",
            "llava:7b 90%",
        ] {
            assert!(page.contains(needle), "{needle} missing");
        }
        v.routing.as_mut().expect("set").aliases.clear();
        assert!(render(&v).contains("No virtual model used in the last hour"));
    }

    #[test]
    fn an_empty_page_points_the_app_here_with_the_host_escaped() {
        let page = render(&view());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("No data yet"));
        assert!(
            page.contains("export OLLAMA_HOST=http://h&lt;o&gt;st:1"),
            "{page}"
        );
        assert!(!page.contains("<svg"), "no charts without data");
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        let mut still = view();
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
    fn capitalises_the_window_words() {
        assert_eq!(capitalise("last hour"), "Last hour");
    }
}
