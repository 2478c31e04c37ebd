//! The prediction panel: processing time against output tokens per model, with each
//! model's fitted line (`GET /predict` answers from the same fits), and the call question:
//! a form for a call's size and time budget, and per model its predicted time (what
//! `/predict` answers), whether it meets the budget (the recommendation's rule and words)
//! and what its output tokens cost in joules and money.

use maud::{Markup, html};

use super::format::{chart_or_error, duration};
use crate::analytics::PredictAnswer;
use crate::dashboard::question::{DEFAULT_OUTPUT_TOKENS, Question};
use crate::dashboard::{View, charts};
use crate::recommend::{PredictedTime, over_latency_budget, reasons::over_budget_sentence};
use crate::routing::workload::MAX_TOKENS;
use crate::stats::ModelStatistics;

pub(super) fn prediction(view: &View) -> Markup {
    html! {
        section #prediction {
            h2 { "Predicted time" }
            @if view.predictions.is_empty() {
                p.none {
                    "No model has enough calls with prompt and output token counts to fit yet \
                     (10 warm calls each)."
                }
            } @else {
                figure {
                    figcaption {
                        "Warm calls (dots) and each model's fitted line at its median prompt; "
                        "GET /api/model-performance/predict?output_tokens=N answers with an interval."
                    }
                    (chart_or_error(charts::prediction_chart(
                        "chart-prediction",
                        "Processing time against output tokens, with each model's fitted line",
                        &view.predictions,
                    )))
                }
            }
            @if !view.filters.standalone {
                (question_form(view))
            }
            @if let Some(bad) = &view.bad_question {
                div.notice.error.question role="alert" {
                    p.message { (bad.message) }
                }
            }
            @if let (Some(q), Some(answer)) = (view.filters.question, &view.call_predictions) {
                (answer_table(view, q, answer))
            }
        }
    }
}

/// The form: a call's output tokens, prompt tokens, time budget and cold start. It
/// reloads the page with the view's other parameters kept.
fn question_form(view: &View) -> Markup {
    let f = &view.filters;
    let q = f.question;
    let bad = view.bad_question.as_ref();
    // What was typed when it could not be read (to correct it), else what was asked.
    let value = |name: &str, asked: Option<String>| -> Option<String> {
        match bad {
            Some(b) => b.typed(name).map(str::to_owned),
            None => asked,
        }
    };
    let output = value(
        "output_tokens",
        Some(
            q.map_or(DEFAULT_OUTPUT_TOKENS, |q| q.output_tokens)
                .to_string(),
        ),
    );
    let prompt = value(
        "prompt_tokens",
        q.and_then(|q| q.prompt_tokens).map(|p| p.to_string()),
    );
    let budget = value(
        "max_latency_ms",
        q.and_then(|q| q.max_latency_ms).map(|ms| format!("{ms}")),
    );
    let cold = match bad {
        Some(b) => b.typed("cold").is_some_and(|v| v != "0" && v != "false"),
        None => q.is_some_and(|q| q.cold),
    };
    html! {
        form.question method="get" action="/dashboard" {
            @for (name, v) in f.view_pairs(None) {
                input type="hidden" name=(name) value=(v);
            }
            span.ask { "How long does a call take on each model?" }
            label {
                "Output tokens "
                input type="number" name="output_tokens" min="0" max=(MAX_TOKENS) step="1"
                    required value=[output];
            }
            label {
                "Prompt tokens "
                input type="number" name="prompt_tokens" min="0" max=(MAX_TOKENS) step="1"
                    placeholder="each model's median" value=[prompt];
            }
            label {
                "Within (ms) "
                input type="number" name="max_latency_ms" min="1" step="any"
                    placeholder="no budget" value=[budget];
            }
            label {
                input type="checkbox" name="cold" value="true" checked[cold];
                " cold start"
            }
            button type="submit" { "Predict" }
            @if q.is_some() || bad.is_some() {
                a href=(f.query_without_question()) { "Clear" }
            }
        }
    }
}

/// One row per listed model: its prediction (fastest first), the budget's verdict, its
/// energy and cost per token; then the models without a prediction and why.
fn answer_table(view: &View, q: Question, answer: &crate::analytics::PredictAll) -> Markup {
    let mut rows: Vec<&PredictAnswer> = answer.predictions.iter().collect();
    rows.sort_by(|a, b| a.predicted_ms.total_cmp(&b.predicted_ms));
    let budget = q.max_latency_ms;
    let meets: Vec<&str> = match budget {
        Some(max) => rows
            .iter()
            .filter(|p| !over_latency_budget(p.predicted_ms, max))
            .map(|p| p.model.as_str())
            .collect(),
        None => Vec::new(),
    };
    let statistics = |model: &str| view.statistics.iter().find(|s| s.model == model);
    // Why an energy or cost figure is unknown: each distinct reason once, under the table.
    let mut notes: Vec<String> = Vec::new();
    let mut note = |reason: String| -> usize {
        match notes.iter().position(|n| *n == reason) {
            Some(i) => i + 1,
            None => {
                notes.push(reason);
                notes.len()
            }
        }
    };
    let before_figures = if budget.is_some() { 4 } else { 3 };
    let table = html! {
        div.table-wrap {
            table.call {
                thead {
                    tr {
                        th scope="col" { "Model" }
                        th scope="col" { "Prompt tokens" }
                        th scope="col" { "Predicted time" }
                        th scope="col" { "80% interval (p10 to p90)" }
                        @if let Some(max) = budget {
                            th scope="col" { "Within " (crate::text::fmt_ms(max)) "?" }
                        }
                        th scope="col" { "Energy per output token" }
                        th scope="col" { "Cost per 1,000 output tokens" }
                    }
                }
                tbody {
                    @for p in &rows {
                        tr data-predicted-for=(p.model) {
                            th scope="row" { (p.model) }
                            td.num {
                                (p.prompt_tokens)
                                @if q.prompt_tokens.is_none() {
                                    span.small { " (its median)" }
                                }
                            }
                            td.num data-value=(p.predicted_ms) { (duration(p.predicted_ms)) }
                            td.num data-low=(p.low_ms) data-high=(p.high_ms) {
                                (duration(p.low_ms)) " to " (duration(p.high_ms))
                            }
                            @if let Some(max) = budget {
                                (verdict(p, max))
                            }
                            (energy_cell(statistics(&p.model), &mut note))
                            (cost_cell(statistics(&p.model), view.priced_in.as_deref(), &mut note))
                        }
                    }
                    @for n in &answer.not_predicted {
                        tr data-predicted-for=(n.model) {
                            th scope="row" { (n.model) }
                            td colspan=(before_figures) data-budget=[budget.map(|_| "unknown")] {
                                span.none { "no prediction: " } (n.reason)
                                @if budget.is_some() {
                                    span.small {
                                        " (not judged against the budget: /recommend and \
                                         routing keep a model without a fit)"
                                    }
                                }
                            }
                            (energy_cell(statistics(&n.model), &mut note))
                            (cost_cell(statistics(&n.model), view.priced_in.as_deref(), &mut note))
                        }
                    }
                }
            }
        }
    };
    let api = predict_link(view, q);
    html! {
        h3 #call {
            "A call of " (q.output_tokens) " output tokens"
            @match q.prompt_tokens {
                Some(p) => { " and " (p) " prompt tokens" }
                None => { " (each model's median prompt)" }
            }
            @if q.cold { ", cold start (the model loaded first)" }
            @if let Some(max) = budget { ", within " (crate::text::fmt_ms(max)) }
        }
        @if let Some(max) = budget {
            p.verdict data-meets=(meets.len()) {
                @if meets.is_empty() {
                    strong.over { "No model is predicted to meet " (crate::text::fmt_ms(max)) "." }
                } @else {
                    strong.meets {
                        (meets.len()) " of " (rows.len() + answer.not_predicted.len())
                        " predicted to meet " (crate::text::fmt_ms(max)) ": "
                    }
                    (meets.join(", "))
                }
            }
        }
        (table)
        p.small {
            "Each model's time is from its latency fit over its newest calls, whatever the window"
            @if let Some(host) = &view.filters.host { " (those served by " (host) ")" }
            "; a model is over the budget when its predicted time is, as "
            code { "/recommend" } " and routing judge it. Energy and cost are over the window's calls."
            @if !view.filters.standalone {
                " The same as JSON: " a href=(api) { code { (api) } }
            }
        }
        @if !notes.is_empty() {
            ol.notes {
                @for n in &notes { li { (n) } }
            }
        }
    }
}

/// Whether `p` meets `max`: the recommendation's rule, and its sentence when it does not.
fn verdict(p: &PredictAnswer, max: f64) -> Markup {
    if over_latency_budget(p.predicted_ms, max) {
        let why = over_budget_sentence(
            PredictedTime {
                predicted_ms: p.predicted_ms,
                low_ms: p.low_ms,
                high_ms: p.high_ms,
            },
            Some((p.prompt_tokens, p.output_tokens)),
            max,
        );
        html! {
            td.budget.over data-budget="over" {
                strong { "✗ over budget" } span.small { ": " (why) }
            }
        }
    } else {
        html! {
            td.budget.meets data-budget="meets" {
                strong { "✓ meets" }
                @if p.high_ms > max {
                    span.small { " (its 80% interval reaches " (duration(p.high_ms)) ")" }
                }
            }
        }
    }
}

fn energy_cell(s: Option<&ModelStatistics>, note: &mut impl FnMut(String) -> usize) -> Markup {
    match s.and_then(|s| s.efficiency.joules_per_output_token) {
        Some(j) => html! { td.num data-value=(j) { (three_figures(j)) " J" } },
        None => {
            let why = s
                .and_then(|s| s.efficiency.energy_unavailable_reason.clone())
                .unwrap_or_else(|| "no operation of it in the window".to_owned());
            let n = note(format!("Energy unknown: {why}"));
            html! { td.num data-unknown="energy" { span.none { "unknown" } sup { "[" (n) "]" } } }
        }
    }
}

fn cost_cell(
    s: Option<&ModelStatistics>,
    priced_in: Option<&str>,
    note: &mut impl FnMut(String) -> usize,
) -> Markup {
    match (
        s.and_then(|s| s.efficiency.cost_per_1k_output_tokens),
        priced_in,
    ) {
        (Some(c), Some(currency)) => html! {
            td.num data-value=(c) title=[s.and_then(|s| s.efficiency.cost_basis.as_deref())] {
                (three_figures(c)) " " (currency)
            }
        },
        _ => {
            let why = match (priced_in, s) {
                (None, _) => "Cost unknown: no price is set ([cost] price_per_kwh or \
                              gpu_hour_price in the configuration)"
                    .to_owned(),
                (Some(_), Some(s)) if s.efficiency.joules_per_output_token.is_none() => {
                    "Cost unknown: energy is priced ([cost] price_per_kwh) and its energy \
                     is unknown"
                        .to_owned()
                }
                (Some(_), _) => {
                    "Cost unknown: no call in the window reports output tokens".to_owned()
                }
            };
            let n = note(why);
            html! { td.num data-unknown="cost" { span.none { "unknown" } sup { "[" (n) "]" } } }
        }
    }
}

/// A small figure with three significant digits (at least the ones place): energy at a
/// fraction of a joule and a cost at a fraction of a cent must not round to zero.
fn three_figures(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{v:.decimals$}")
}

/// `/predict`'s URL for the same question.
fn predict_link(view: &View, q: Question) -> String {
    let mut pairs = vec![("output_tokens", q.output_tokens.to_string())];
    if let Some(p) = q.prompt_tokens {
        pairs.push(("prompt_tokens", p.to_string()));
    }
    if q.cold {
        pairs.push(("cold", "true".to_owned()));
    }
    if let Some(host) = &view.filters.host {
        pairs.push(("host", host.clone()));
    }
    let query: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={}", crate::text::encode(&v, false)))
        .collect();
    format!("/api/model-performance/predict?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::three_figures;

    #[test]
    fn small_figures_keep_three_digits() {
        assert_eq!(three_figures(0.02), "0.0200");
        assert_eq!(three_figures(1.666_666_7e-5), "0.0000167");
        assert_eq!(three_figures(0.2), "0.200");
        assert_eq!(three_figures(12.345), "12.3");
        assert_eq!(three_figures(4321.0), "4321");
        assert_eq!(three_figures(0.0), "0");
    }
}
