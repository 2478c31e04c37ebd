//! The recommendation in words: why this model and how sure, why a model was left out, why
//! none qualifies. Every sentence carries the numbers behind it.

use super::posterior::Posteriors;
use super::scoring::Scored;
use super::types::{
    Candidate, Excluded, ExclusionKind, PredictedTime, Priority, RecommendParams, VramBudget,
};
use crate::stats::{fmt_gb, fmt_hours, fmt_ms};

/// A probability for a sentence: "82%", "over 99%", "under 1%".
pub fn percent(p: f64) -> String {
    if p >= 0.995 {
        "over 99%".to_owned()
    } else if p < 0.005 {
        "under 1%".to_owned()
    } else {
        format!("{:.0}%", p * 100.0)
    }
}

/// " in the last 24 h" when the window is known.
fn window_words(params: &RecommendParams) -> String {
    params
        .window_hours
        .map(|h| format!(" in the last {}", fmt_hours(h)))
        .unwrap_or_default()
}

/// "1 model has" / "3 models have".
fn count_models(n: usize, singular: &str, plural: &str) -> String {
    if n == 1 {
        format!("1 model {singular}")
    } else {
        format!("{n} models {plural}")
    }
}

/// A list of names for a sentence: "a", "a and b", "a, b and c".
fn names(list: &[&str]) -> String {
    match list {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The sentence of each rule in `kinds` that `candidate` failed.
pub(super) fn exclusion_sentences(
    candidate: &Candidate,
    kinds: &[ExclusionKind],
    params: &RecommendParams,
) -> Vec<String> {
    kinds
        .iter()
        .map(|kind| match kind {
            ExclusionKind::NoOperations => "no operations recorded in the window".to_owned(),
            ExclusionKind::TooFewOperations => {
                let n = candidate.summary.as_ref().map_or(0, |s| s.total_operations);
                format!(
                    "{n} operation{}, fewer than the {} required",
                    if n == 1 { "" } else { "s" },
                    params.min_operations
                )
            }
            ExclusionKind::NeedsMoreVram => {
                let need = candidate.vram_need.map_or(0.0, |n| n.mb);
                let source = candidate.vram_need.map_or("", |n| n.source.describe());
                match params.vram {
                    VramBudget::FreePlusHeld(free) => {
                        let held = candidate.held_vram_mb.unwrap_or(0.0);
                        format!(
                            "needs {} of VRAM ({source}), {} available: {} free on the GPU \
                             plus {} it holds now",
                            fmt_gb(need),
                            fmt_gb(free + held),
                            fmt_gb(free),
                            fmt_gb(held)
                        )
                    }
                    VramBudget::Given(available) => format!(
                        "needs {} of VRAM, {} available (the need is {source})",
                        fmt_gb(need),
                        fmt_gb(available)
                    ),
                    VramBudget::Unknown => format!("needs {} of VRAM", fmt_gb(need)),
                }
            }
            ExclusionKind::NoSuccessfulOperations => {
                "no successful operations, so no processing time to judge".to_owned()
            }
            ExclusionKind::NoQualityScores => format!(
                "no quality scores, which the {} priority needs",
                params.priority
            ),
            ExclusionKind::OverLatencyBudget => over_budget_sentence(
                candidate.prediction.unwrap_or(PredictedTime {
                    predicted_ms: 0.0,
                    low_ms: 0.0,
                    high_ms: 0.0,
                }),
                params.workload,
                params.max_latency_ms.unwrap_or(0.0),
            ),
            ExclusionKind::NoEfficiencyFigure => {
                "no energy per output token measured (no call carries energy_j), which the \
                 efficient priority needs"
                    .to_owned()
            }
            ExclusionKind::BelowQualityFloor => format!(
                "mean quality {:.2} is under min_quality {:.2}",
                candidate
                    .summary
                    .as_ref()
                    .and_then(|s| s.quality_avg)
                    .unwrap_or(0.0),
                params.min_quality
            ),
        })
        .collect()
}

/// Why a model is over the latency budget: its prediction, with the interval and the
/// call's size (prompt, output tokens) when known. `/recommend` and the dashboard word it
/// alike.
pub fn over_budget_sentence(
    p: PredictedTime,
    workload: Option<(u64, u64)>,
    max_latency_ms: f64,
) -> String {
    format!(
        "predicted {} (80% interval {} to {}){} is over max_latency_ms {}",
        fmt_ms(p.predicted_ms),
        fmt_ms(p.low_ms),
        fmt_ms(p.high_ms),
        workload.map_or(String::new(), |(prompt, output)| format!(
            " for {prompt} prompt and {output} output tokens"
        )),
        fmt_ms(max_latency_ms)
    )
}

/// The budget for a sentence: "the 8.0 GB available", "the 8.0 GB free on the GPU".
fn budget_words(budget: VramBudget) -> String {
    match budget {
        VramBudget::Given(mb) => format!("the {} available", fmt_gb(mb)),
        VramBudget::FreePlusHeld(mb) => format!("the {} free on the GPU", fmt_gb(mb)),
        VramBudget::Unknown => "the VRAM available".to_owned(),
    }
}

/// Why no candidate qualifies.
pub(super) fn nothing_qualifies(
    candidates: &[Candidate],
    excluded: &[Excluded],
    params: &RecommendParams,
) -> String {
    let window = window_words(params);
    if candidates.is_empty() {
        return "no model has any records yet: point your app at ollameter and make some calls"
            .to_owned();
    }
    let with = |kind: ExclusionKind| excluded.iter().filter(|e| e.kinds.contains(&kind)).count();
    let without_operations = with(ExclusionKind::NoOperations);
    if without_operations == excluded.len() {
        let window = if window.is_empty() {
            " in the window".to_owned()
        } else {
            window
        };
        return format!("none of the models has operations{window}");
    }
    let too_few = with(ExclusionKind::TooFewOperations);
    if too_few + without_operations == excluded.len() && without_operations == 0 {
        let most = candidates
            .iter()
            .filter_map(|c| c.summary.as_ref())
            .max_by(|a, b| {
                a.total_operations
                    .cmp(&b.total_operations)
                    .then_with(|| b.model.cmp(&a.model))
            })
            .map(|m| format!(" (the most is {} with {})", m.model, m.total_operations))
            .unwrap_or_default();
        return format!(
            "no model has at least {} operations{window}{most}",
            params.min_operations
        );
    }
    let mut parts = Vec::new();
    if without_operations > 0 {
        parts.push(format!(
            "{} no operations",
            count_models(without_operations, "has", "have")
        ));
    }
    if too_few > 0 {
        parts.push(format!(
            "{} fewer than the {} operations required",
            count_models(too_few, "has", "have"),
            params.min_operations
        ));
    }
    let vram = with(ExclusionKind::NeedsMoreVram);
    if vram > 0 {
        let plus_held = if matches!(params.vram, VramBudget::FreePlusHeld(_)) {
            " plus what it holds"
        } else {
            ""
        };
        parts.push(format!(
            "{} more VRAM than {}{plus_held}",
            count_models(vram, "needs", "need"),
            budget_words(params.vram)
        ));
    }
    let failing = with(ExclusionKind::NoSuccessfulOperations);
    if failing > 0 {
        parts.push(format!(
            "{} no successful operations",
            count_models(failing, "has", "have")
        ));
    }
    let unscored = with(ExclusionKind::NoQualityScores);
    if unscored > 0 {
        parts.push(format!(
            "{} no quality scores, which the quality priority needs",
            count_models(unscored, "has", "have")
        ));
    }
    format!("no model qualifies{window}: {}", parts.join("; "))
}

/// Why the first of `scored` won and how sure that is, with the runner-up's numbers, then
/// what the reader should know: quality that counts as the population's, VRAM needs not
/// checked, models excluded.
pub(super) fn winner_reason(
    scored: &[Scored],
    any_quality: bool,
    posts: &Posteriors,
    excluded: usize,
    params: &RecommendParams,
) -> String {
    let (best, next) = (&scored[0], scored.get(1));
    let mut reason = first_sentence(best, next, params, posts);
    if let Some(next) = next {
        reason.push_str(&format!(
            " It is {} likely the best of the {} that qualify; next is {} at {}.",
            percent(best.confidence),
            scored.len(),
            next.summary.model,
            percent(next.confidence)
        ));
    } else {
        reason.push_str(" It is the only model that qualifies.");
    }
    if params.priority == Priority::Balanced && !any_quality {
        reason.push_str(
            " No qualifying model has quality scores, so balanced weighs speed and reliability \
             50/50.",
        );
    } else if any_quality && best.summary.scored_operations == 0 {
        reason.push_str(&format!(
            " It has no quality scores; its quality counts as the candidates' pooled mean, \
             {:.2}.",
            best.quality_estimate.unwrap_or_default()
        ));
    }
    if params.vram != VramBudget::Unknown {
        let unchecked: Vec<&str> = scored
            .iter()
            .filter(|s| s.vram_need.is_none())
            .map(|s| s.summary.model.as_str())
            .collect();
        if !unchecked.is_empty() {
            reason.push_str(&format!(
                " The VRAM need of {} is unknown, so {} kept without a check against {}.",
                names(&unchecked),
                if unchecked.len() == 1 {
                    "it was"
                } else {
                    "they were"
                },
                budget_words(params.vram)
            ));
        }
    }
    if excluded > 0 {
        reason.push_str(&format!(
            " {} excluded (see excluded).",
            count_models(excluded, "was", "were")
        ));
    }
    reason
}

/// The estimated quality with what it rests on: "4.45 estimated (4.60 mean over 5
/// scores)".
fn quality_words(s: &Scored) -> String {
    match (s.quality_estimate, s.summary.quality_avg) {
        (Some(estimate), Some(raw)) if s.summary.scored_operations > 0 => format!(
            "{estimate:.2} estimated ({raw:.2} mean over {} score{})",
            s.summary.scored_operations,
            if s.summary.scored_operations == 1 {
                ""
            } else {
                "s"
            }
        ),
        (Some(estimate), _) => format!("{estimate:.2} (the pooled mean; no scores)"),
        _ => "no scores".to_owned(),
    }
}

/// The first sentence of the winner's reason, by priority.
fn first_sentence(
    best: &Scored,
    next: Option<&Scored>,
    params: &RecommendParams,
    posts: &Posteriors,
) -> String {
    let model = &best.summary.model;
    match params.priority {
        Priority::Efficient => {
            let unit = params.efficiency_unit;
            let figure = |s: &Scored| {
                s.efficiency.map_or("unmeasured".to_owned(), |e| {
                    format!(
                        "{:.4} {unit} per 1,000 output tokens over {} calls",
                        e.per_1k_output_tokens, e.calls
                    )
                })
            };
            let mut r = format!(
                "{model} costs least among the models with mean quality of at least {:.2}: {}",
                params.min_quality,
                figure(best)
            );
            if let Some(n) = next {
                r.push_str(&format!(", against {} for {}", figure(n), n.summary.model));
            }
            r + "."
        }
        Priority::Speed => {
            let mut r = format!(
                "{model} has the lowest median (p50) processing time, {} over {} successful \
                 operations",
                fmt_ms(best.p50_ms),
                best.summary.successful_operations
            );
            if let Some(n) = next {
                r.push_str(&format!(
                    ", against {} for {}",
                    fmt_ms(n.p50_ms),
                    n.summary.model
                ));
            }
            r + "."
        }
        Priority::Quality => {
            let mut r = format!("{model} has the highest quality, {}", quality_words(best));
            if let Some(n) = next {
                r.push_str(&format!(
                    "; next is {} at {}",
                    n.summary.model,
                    quality_words(n)
                ));
            }
            if let Some(prior) = posts.quality_prior {
                r.push_str(&format!(
                    ". Each mean is shrunk toward the candidates' {:.2} with a weight of {} \
                     scores, learned from how much the models differ and how noisy the scores are",
                    prior.mean,
                    weight_words(prior.weight)
                ));
            }
            r + "."
        }
        Priority::Reliable => {
            let mut r = format!(
                "{model} is the most reliable: an estimated {:.1}% success ({} of {} operations \
                 succeeded)",
                best.reliability * 100.0,
                best.summary.successful_operations,
                best.summary.total_operations
            );
            if let Some(n) = next {
                r.push_str(&format!(
                    ", against {:.1}% for {} ({} of {})",
                    n.reliability * 100.0,
                    n.summary.model,
                    n.summary.successful_operations,
                    n.summary.total_operations
                ));
            }
            if let Some(prior) = posts.success_rate_prior {
                r.push_str(&format!(
                    ". Each rate is shrunk toward the candidates' {:.1}% with a weight of {} \
                     operations",
                    prior.mean * 100.0,
                    weight_words(prior.weight)
                ));
            }
            r + "."
        }
        Priority::Balanced => {
            let quality = best
                .quality
                .map(|q| format!(", quality {q:.2}"))
                .unwrap_or_default();
            let mut r = format!(
                "{model} has the best balanced score, {:.3} (speed {:.2}{quality}, reliability \
                 {:.2}): p50 {}, {:.1}% success estimated",
                best.score,
                best.speed,
                best.reliability,
                fmt_ms(best.p50_ms),
                best.reliability * 100.0
            );
            if best.quality_estimate.is_some() {
                r.push_str(&format!(", quality {}", quality_words(best)));
            }
            if let Some(n) = next {
                r.push_str(&format!("; next is {} at {:.3}", n.summary.model, n.score));
            }
            r + "."
        }
    }
}

/// A prior's weight for a sentence: one decimal below 10, whole numbers above.
fn weight_words(weight: f64) -> String {
    if weight < 10.0 {
        format!("{weight:.1}")
    } else {
        format!("{weight:.0}")
    }
}
