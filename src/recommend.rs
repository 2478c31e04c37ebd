//! Scoring, rankings and the recommendation: which model to use, and why. Pure functions
//! over [`ModelSummary`]s and [`ModelStatistics`] that [`crate::stats`] computed.
//!
//! The scores, all in `0..=1` with higher better:
//! - **speed** = `min_p50 / p50`: the fastest qualifying model's median processing time over
//!   this one's. The median (p50) of successful operations, not the mean, so one 60-second
//!   cold load among a hundred 1-second calls does not decide.
//! - **quality** = `(adjusted - 1) / 4`, mapping the 1 to 5 scale onto `0..=1`, where
//!   `adjusted` is a Bayesian average: `(m·prior + n·mean) / (m + n)` with
//!   prior [`QUALITY_PRIOR_MEAN`] = 3.0 and weight `m` = [`QUALITY_PRIOR_WEIGHT`] = 10
//!   scores. A model with `n` scores counts its own mean with weight `n` against 10
//!   imaginary average ones, so 3 lucky 5.0 scores (adjusted 3.46) do not beat 500 solid
//!   4.5 ones (4.47). The prior is the scale's midpoint rather than the candidates' pooled
//!   mean on purpose: with two candidates the pool is the well-scored model's own mean, and
//!   shrinking toward it would keep any raw lead of the thin model; the midpoint also makes
//!   a model's adjusted quality independent of which other models are compared. A
//!   candidate without scores gets the prior itself (0.5) when others have scores.
//! - **reliability** = the Wilson score 95% lower bound of the success rate.
//! - **balanced** = `0.3·speed + 0.4·quality + 0.3·reliability`; when no qualifying
//!   candidate has a quality score, `0.5·speed + 0.5·reliability`, and the answer says so.
//!
//! Rules: a candidate is excluded when it has fewer than `min_operations` operations, when
//! its known VRAM need exceeds the VRAM available, when it has no successful operation (no
//! processing time to judge), and, for the quality priority, when it has no quality score.
//! A candidate whose VRAM need is unknown is kept and named in the answer. Ties go to the
//! model with more operations, then to the name in byte order, so answers are stable.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::stats::{ModelStatistics, ModelSummary, fmt_gb, fmt_hours, fmt_ms, wilson_lower_bound};

/// Operations a model needs in the window to be recommended: fewer say little about its
/// typical speed or its failure rate.
pub const DEFAULT_MIN_OPERATIONS: u64 = 10;
/// The quality every model is assumed to have before its scores say otherwise: the middle
/// of the 1 to 5 scale.
pub const QUALITY_PRIOR_MEAN: f64 = 3.0;
/// How many scores the prior is worth: a model's own mean outweighs it from 10 scores on.
pub const QUALITY_PRIOR_WEIGHT: f64 = 10.0;
/// Balanced weights, as the earlier system had them: quality first, speed and reliability
/// equal.
pub const BALANCED_WEIGHTS: Weights = Weights {
    speed: 0.3,
    quality: 0.4,
    reliability: 0.3,
};
/// Balanced weights when no candidate has a quality score.
pub const BALANCED_WEIGHTS_WITHOUT_QUALITY: Weights = Weights {
    speed: 0.5,
    quality: 0.0,
    reliability: 0.5,
};

/// What the recommendation optimises.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Lowest median processing time.
    Speed,
    /// Highest adjusted quality.
    Quality,
    /// The weighted blend of speed, quality and reliability.
    #[default]
    Balanced,
    /// Highest Wilson lower bound of the success rate.
    Reliable,
}

impl Priority {
    /// Every priority, in the order error messages list them.
    pub const ALL: [Priority; 4] = [
        Priority::Speed,
        Priority::Quality,
        Priority::Balanced,
        Priority::Reliable,
    ];

    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Speed => "speed",
            Priority::Quality => "quality",
            Priority::Balanced => "balanced",
            Priority::Reliable => "reliable",
        }
    }

    /// What the score of this priority is computed from, as the answer states it.
    pub fn statistic_used(self) -> &'static str {
        match self {
            Priority::Speed => "p50 processing_time_ms of successful operations",
            Priority::Quality => {
                "quality_score mean, Bayesian-adjusted toward 3.0 with a prior weight of 10 scores"
            }
            Priority::Reliable => "Wilson 95% lower bound of success_rate",
            Priority::Balanced => {
                "0.3 speed (min p50 / p50 processing_time_ms) + 0.4 quality ((adjusted quality - 1) \
                 / 4) + 0.3 reliability (Wilson 95% lower bound of success_rate)"
            }
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown priority name; its message lists the valid ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsePriorityError {
    /// The name that was given.
    pub given: String,
}

impl fmt::Display for ParsePriorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let valid: Vec<&str> = Priority::ALL.iter().map(|p| p.as_str()).collect();
        write!(
            f,
            "priority: unknown \"{}\"; valid: {}",
            self.given,
            valid.join(", ")
        )
    }
}

impl std::error::Error for ParsePriorityError {}

impl FromStr for Priority {
    type Err = ParsePriorityError;

    fn from_str(s: &str) -> Result<Priority, ParsePriorityError> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| ParsePriorityError {
                given: s.to_owned(),
            })
    }
}

/// Where a VRAM need came from. Serialized lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VramSource {
    /// Measured by telemetry while the model was loaded.
    Measured,
    /// Estimated from the model's size and quantisation.
    Estimate,
    /// The highest `vram_mb` (or `gpu_memory_mb`) in the model's records.
    Records,
}

impl VramSource {
    /// The source in words, for reasons a person reads.
    pub fn describe(self) -> &'static str {
        match self {
            VramSource::Measured => "measured",
            VramSource::Estimate => "an estimate",
            VramSource::Records => "from its records",
        }
    }
}

/// How much VRAM a model needs, and how that is known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VramNeed {
    /// MiB.
    pub mb: f64,
    /// Where the figure came from.
    pub source: VramSource,
}

impl VramNeed {
    /// The need the records show: the highest `vram_mb` (Ollama's `size_vram`), else the
    /// highest `gpu_memory_mb`; `None` when the records carry neither.
    pub fn from_records(summary: &ModelSummary) -> Option<VramNeed> {
        summary
            .max_vram_mb
            .or(summary.max_gpu_memory_mb)
            .map(|mb| VramNeed {
                mb,
                source: VramSource::Records,
            })
    }
}

/// One model that may be recommended.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its figures over the window.
    pub summary: ModelSummary,
    /// Its VRAM need, when known.
    pub vram_need: Option<VramNeed>,
}

/// How to recommend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecommendParams {
    /// What to optimise.
    pub priority: Priority,
    /// Fewer operations than this excludes a model.
    pub min_operations: u64,
    /// The VRAM budget in MiB; `None` checks nothing.
    pub available_vram_mb: Option<f64>,
    /// The window the summaries cover, only to word the reasons ("in the last 24 h").
    pub window_hours: Option<f64>,
}

impl Default for RecommendParams {
    fn default() -> RecommendParams {
        RecommendParams {
            priority: Priority::Balanced,
            min_operations: DEFAULT_MIN_OPERATIONS,
            available_vram_mb: None,
            window_hours: None,
        }
    }
}

/// The weights of the balanced score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Weights {
    /// Weight of the speed score.
    pub speed: f64,
    /// Weight of the quality score.
    pub quality: f64,
    /// Weight of the reliability score.
    pub reliability: f64,
}

/// A candidate's three scores, each in `0..=1`, higher better.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentScores {
    /// `min_p50 / p50`.
    pub speed: f64,
    /// `(adjusted quality - 1) / 4`; null when no candidate has a quality score.
    pub quality: Option<f64>,
    /// Wilson 95% lower bound of the success rate.
    pub reliability: f64,
}

/// The figures behind a candidate's scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Figures {
    /// Operations in the window.
    pub total_operations: u64,
    /// Of which succeeded.
    pub successful_operations: u64,
    /// Median processing time of the successful ones.
    pub p50_processing_time_ms: f64,
    /// Mean quality score, unadjusted; null without scores.
    pub quality_raw: Option<f64>,
    /// The Bayesian-adjusted quality the score uses (the prior, 3.0, without scores); null
    /// when no candidate has a quality score.
    pub quality_adjusted: Option<f64>,
    /// How many operations were scored.
    pub scored_operations: u64,
    /// Observed success rate.
    pub success_rate: f64,
    /// Its Wilson 95% lower bound.
    pub success_rate_lower_bound: f64,
    /// The VRAM need, when known.
    pub vram_need: Option<VramNeed>,
}

/// A qualifying candidate, scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScoredModel {
    /// 1 for the best.
    pub rank: usize,
    /// The model.
    pub model: String,
    /// The priority's score, `0..=1`.
    pub score: f64,
    /// All three scores, whatever the priority.
    pub component_scores: ComponentScores,
    /// The figures behind them.
    pub figures: Figures,
}

/// Why a candidate was left out. Serialized snake_case.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionKind {
    /// Fewer than `min_operations` operations.
    TooFewOperations,
    /// Its known VRAM need exceeds the VRAM available.
    NeedsMoreVram,
    /// No successful operation, so no processing time.
    NoSuccessfulOperations,
    /// No quality score, and the priority is quality.
    NoQualityScores,
    /// Named in `available_models` but no operation of it is in the window.
    NoOperations,
}

/// A candidate that was left out, with every reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Excluded {
    /// The model.
    pub model: String,
    /// Each rule it failed.
    pub kinds: Vec<ExclusionKind>,
    /// The same, as a sentence: "3 operations, fewer than the 10 required".
    pub reason: String,
}

/// A known VRAM need, named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KnownVramNeed {
    /// The model.
    pub model: String,
    /// MiB.
    pub mb: f64,
    /// Where the figure came from.
    pub source: VramSource,
}

/// Which VRAM figures the answer knew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VramReport {
    /// The budget in MiB, when one was given.
    pub available_mb: Option<f64>,
    /// Every candidate whose need is known.
    pub known_needs: Vec<KnownVramNeed>,
    /// Every candidate whose need is unknown (kept, not checked).
    pub unknown: Vec<String>,
}

/// The prior the quality adjustment used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QualityPrior {
    /// [`QUALITY_PRIOR_MEAN`].
    pub mean: f64,
    /// [`QUALITY_PRIOR_WEIGHT`].
    pub weight: f64,
}

/// `/recommend`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recommendation {
    /// What was optimised.
    pub priority: Priority,
    /// The best qualifying model; null when none qualifies (`reason` says why).
    pub recommended_model: Option<String>,
    /// Its score under the priority.
    pub score: Option<f64>,
    /// Its three scores.
    pub component_scores: Option<ComponentScores>,
    /// The figures behind them.
    pub figures: Option<Figures>,
    /// What the score is computed from.
    pub statistic_used: String,
    /// The balanced weights that applied; null for other priorities.
    pub weights: Option<Weights>,
    /// A sentence with numbers: why this model, or why none.
    pub reason: String,
    /// The other qualifying models, best first.
    pub alternatives: Vec<ScoredModel>,
    /// The models left out, and why, in name order.
    pub excluded: Vec<Excluded>,
    /// Which VRAM needs were known.
    pub vram: VramReport,
    /// The quality prior.
    pub quality_prior: QualityPrior,
}

/// A model's quality shrunk toward [`QUALITY_PRIOR_MEAN`] by how many scores it has:
/// `(10 · 3.0 + n · avg) / (10 + n)`. Without scores it is the prior.
pub fn adjusted_quality(avg: Option<f64>, scored_operations: u64) -> f64 {
    match avg {
        Some(avg) if scored_operations > 0 => {
            let n = scored_operations as f64;
            (QUALITY_PRIOR_WEIGHT * QUALITY_PRIOR_MEAN + n * avg) / (QUALITY_PRIOR_WEIGHT + n)
        }
        _ => QUALITY_PRIOR_MEAN,
    }
}

/// Scores for the API: 4 decimals is finer than any decision they support.
fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// A candidate with its scores, before rounding.
struct Scored<'a> {
    summary: &'a ModelSummary,
    vram_need: Option<VramNeed>,
    p50_ms: f64,
    quality_adjusted: Option<f64>,
    speed: f64,
    quality: Option<f64>,
    reliability: f64,
    score: f64,
}

impl Scored<'_> {
    fn success_rate(&self) -> f64 {
        self.summary.successful_operations as f64 / self.summary.total_operations.max(1) as f64
    }

    fn to_scored_model(&self, rank: usize) -> ScoredModel {
        ScoredModel {
            rank,
            model: self.summary.model.clone(),
            score: round4(self.score),
            component_scores: self.components(),
            figures: self.figures(),
        }
    }

    fn components(&self) -> ComponentScores {
        ComponentScores {
            speed: round4(self.speed),
            quality: self.quality.map(round4),
            reliability: round4(self.reliability),
        }
    }

    fn figures(&self) -> Figures {
        Figures {
            total_operations: self.summary.total_operations,
            successful_operations: self.summary.successful_operations,
            p50_processing_time_ms: self.p50_ms,
            quality_raw: self.summary.quality_avg,
            quality_adjusted: self.quality_adjusted.map(round4),
            scored_operations: self.summary.scored_operations,
            success_rate: round4(self.success_rate()),
            success_rate_lower_bound: round4(self.reliability),
            vram_need: self.vram_need,
        }
    }
}

/// Scores every candidate (each must have a p50) against the others under `priority`,
/// best first. Also returns whether any candidate had a quality score.
fn score_all<'a>(
    candidates: Vec<(&'a ModelSummary, Option<VramNeed>)>,
    priority: Priority,
) -> (Vec<Scored<'a>>, bool) {
    let with_p50: Vec<(&ModelSummary, Option<VramNeed>, f64)> = candidates
        .into_iter()
        .filter_map(|(s, need)| s.p50_processing_time_ms.map(|p50| (s, need, p50)))
        .collect();
    let min_p50 = with_p50.iter().map(|c| c.2).fold(f64::INFINITY, f64::min);
    let any_quality = with_p50.iter().any(|c| c.0.scored_operations > 0);
    let weights = if any_quality {
        BALANCED_WEIGHTS
    } else {
        BALANCED_WEIGHTS_WITHOUT_QUALITY
    };
    let mut scored: Vec<Scored> = with_p50
        .into_iter()
        .map(|(summary, vram_need, p50_ms)| {
            // A 0 ms median (possible for imported data) is as fast as it gets.
            let speed = if p50_ms > 0.0 {
                (min_p50 / p50_ms).clamp(0.0, 1.0)
            } else {
                1.0
            };
            let quality_adjusted = any_quality
                .then(|| adjusted_quality(summary.quality_avg, summary.scored_operations));
            let quality = quality_adjusted.map(|q| ((q - 1.0) / 4.0).clamp(0.0, 1.0));
            let reliability =
                wilson_lower_bound(summary.successful_operations, summary.total_operations);
            let score = match priority {
                Priority::Speed => speed,
                Priority::Quality => quality.unwrap_or(0.0),
                Priority::Reliable => reliability,
                Priority::Balanced => {
                    weights.speed * speed
                        + weights.quality * quality.unwrap_or(0.0)
                        + weights.reliability * reliability
                }
            };
            Scored {
                summary,
                vram_need,
                p50_ms,
                quality_adjusted,
                speed,
                quality,
                reliability,
                score,
            }
        })
        .collect();
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.summary.total_operations.cmp(&a.summary.total_operations))
            .then_with(|| a.summary.model.cmp(&b.summary.model))
    });
    (scored, any_quality)
}

/// Every rule `candidate` fails, with its sentence.
fn exclusions(candidate: &Candidate, params: &RecommendParams) -> Vec<(ExclusionKind, String)> {
    let s = &candidate.summary;
    let mut found = Vec::new();
    if s.total_operations < params.min_operations {
        found.push((
            ExclusionKind::TooFewOperations,
            format!(
                "{} operation{}, fewer than the {} required",
                s.total_operations,
                if s.total_operations == 1 { "" } else { "s" },
                params.min_operations
            ),
        ));
    }
    if let (Some(available), Some(need)) = (params.available_vram_mb, candidate.vram_need)
        && need.mb > available
    {
        found.push((
            ExclusionKind::NeedsMoreVram,
            format!(
                "needs {} of VRAM, {} available (the need is {})",
                fmt_gb(need.mb),
                fmt_gb(available),
                need.source.describe()
            ),
        ));
    }
    if s.successful_operations == 0 || s.p50_processing_time_ms.is_none() {
        found.push((
            ExclusionKind::NoSuccessfulOperations,
            "no successful operations, so no processing time to judge".to_owned(),
        ));
    }
    if params.priority == Priority::Quality && s.scored_operations == 0 {
        found.push((
            ExclusionKind::NoQualityScores,
            "no quality scores, which the quality priority needs".to_owned(),
        ));
    }
    found
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

/// The recommendation for `candidates` under `params`. Never fails: when nothing qualifies
/// the model is `None` and `reason` says why.
pub fn recommend(candidates: &[Candidate], params: &RecommendParams) -> Recommendation {
    let mut excluded = Vec::new();
    let mut qualifying = Vec::new();
    for c in candidates {
        let found = exclusions(c, params);
        if found.is_empty() {
            qualifying.push((&c.summary, c.vram_need));
        } else {
            let (kinds, reasons): (Vec<ExclusionKind>, Vec<String>) = found.into_iter().unzip();
            excluded.push(Excluded {
                model: c.summary.model.clone(),
                kinds,
                reason: reasons.join("; "),
            });
        }
    }
    excluded.sort_by(|a, b| a.model.cmp(&b.model));

    let mut known_needs: Vec<KnownVramNeed> = candidates
        .iter()
        .filter_map(|c| {
            c.vram_need.map(|n| KnownVramNeed {
                model: c.summary.model.clone(),
                mb: n.mb,
                source: n.source,
            })
        })
        .collect();
    known_needs.sort_by(|a, b| a.model.cmp(&b.model));
    let mut unknown: Vec<String> = candidates
        .iter()
        .filter(|c| c.vram_need.is_none())
        .map(|c| c.summary.model.clone())
        .collect();
    unknown.sort();
    let vram = VramReport {
        available_mb: params.available_vram_mb,
        known_needs,
        unknown,
    };

    let (scored, any_quality) = score_all(qualifying, params.priority);
    let weights = (params.priority == Priority::Balanced).then_some(if any_quality {
        BALANCED_WEIGHTS
    } else {
        BALANCED_WEIGHTS_WITHOUT_QUALITY
    });
    let quality_prior = QualityPrior {
        mean: QUALITY_PRIOR_MEAN,
        weight: QUALITY_PRIOR_WEIGHT,
    };

    let Some(best) = scored.first() else {
        return Recommendation {
            priority: params.priority,
            recommended_model: None,
            score: None,
            component_scores: None,
            figures: None,
            statistic_used: params.priority.statistic_used().to_owned(),
            weights,
            reason: nothing_qualifies(candidates, &excluded, params),
            alternatives: Vec::new(),
            excluded,
            vram,
            quality_prior,
        };
    };

    let mut reason = winner_reason(best, scored.get(1), params.priority);
    if scored.len() == 1 {
        reason.push_str(" It is the only model that qualifies.");
    }
    if params.priority == Priority::Balanced && !any_quality {
        reason.push_str(
            " No qualifying model has quality scores, so balanced weighs speed and reliability \
             50/50.",
        );
    } else if any_quality && best.summary.scored_operations == 0 {
        reason.push_str(&format!(
            " It has no quality scores; its quality counts as the prior, {QUALITY_PRIOR_MEAN:.1}."
        ));
    }
    if let Some(available) = params.available_vram_mb {
        let unchecked: Vec<&str> = scored
            .iter()
            .filter(|s| s.vram_need.is_none())
            .map(|s| s.summary.model.as_str())
            .collect();
        if !unchecked.is_empty() {
            reason.push_str(&format!(
                " The VRAM need of {} is unknown, so {} kept without a check against the {} \
                 available.",
                names(&unchecked),
                if unchecked.len() == 1 {
                    "it was"
                } else {
                    "they were"
                },
                fmt_gb(available)
            ));
        }
    }
    if !excluded.is_empty() {
        reason.push_str(&format!(
            " {} excluded (see excluded).",
            count_models(excluded.len(), "was", "were")
        ));
    }

    Recommendation {
        priority: params.priority,
        recommended_model: Some(best.summary.model.clone()),
        score: Some(round4(best.score)),
        component_scores: Some(best.components()),
        figures: Some(best.figures()),
        statistic_used: params.priority.statistic_used().to_owned(),
        weights,
        reason,
        alternatives: scored
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, s)| s.to_scored_model(i + 1))
            .collect(),
        excluded,
        vram,
        quality_prior,
    }
}

/// Why `best` won, with its numbers and the runner-up's.
fn winner_reason(best: &Scored, next: Option<&Scored>, priority: Priority) -> String {
    let model = &best.summary.model;
    let quality_words = |s: &Scored| match (s.quality_adjusted, s.summary.quality_avg) {
        (Some(adjusted), Some(raw)) => format!(
            "{adjusted:.2} adjusted ({raw:.2} mean over {} scored operations)",
            s.summary.scored_operations
        ),
        (Some(adjusted), None) => format!("{adjusted:.2} (the prior; no scores)"),
        _ => "no scores".to_owned(),
    };
    match priority {
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
            let mut r = format!(
                "{model} has the highest quality, {}, shrunk toward {QUALITY_PRIOR_MEAN:.1} with \
                 a weight of {QUALITY_PRIOR_WEIGHT} scores",
                quality_words(best)
            );
            if let Some(n) = next {
                r.push_str(&format!(
                    "; next is {} at {}",
                    n.summary.model,
                    quality_words(n)
                ));
            }
            r + "."
        }
        Priority::Reliable => {
            let mut r = format!(
                "{model} is the most reliable: {:.1}% of {} operations succeeded, at least {:.1}% \
                 with 95% confidence",
                best.success_rate() * 100.0,
                best.summary.total_operations,
                best.reliability * 100.0
            );
            if let Some(n) = next {
                r.push_str(&format!(
                    ", against at least {:.1}% for {}",
                    n.reliability * 100.0,
                    n.summary.model
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
                 {:.2}): p50 {}, {:.1}% success",
                best.score,
                best.speed,
                best.reliability,
                fmt_ms(best.p50_ms),
                best.success_rate() * 100.0
            );
            if best.quality_adjusted.is_some() {
                r.push_str(&format!(", quality {}", quality_words(best)));
            }
            if let Some(n) = next {
                r.push_str(&format!("; next is {} at {:.3}", n.summary.model, n.score));
            }
            r + "."
        }
    }
}

/// Why no candidate qualifies.
fn nothing_qualifies(
    candidates: &[Candidate],
    excluded: &[Excluded],
    params: &RecommendParams,
) -> String {
    let window = window_words(params);
    if candidates.is_empty() {
        return format!("no model has operations{window}");
    }
    let with = |kind: ExclusionKind| excluded.iter().filter(|e| e.kinds.contains(&kind)).count();
    let too_few = with(ExclusionKind::TooFewOperations);
    if too_few == excluded.len() {
        let most = candidates.iter().map(|c| &c.summary).max_by(|a, b| {
            a.total_operations
                .cmp(&b.total_operations)
                .then_with(|| b.model.cmp(&a.model))
        });
        let most = most
            .map(|m| format!(" (the most is {} with {})", m.model, m.total_operations))
            .unwrap_or_default();
        return format!(
            "no model has at least {} operations{window}{most}",
            params.min_operations
        );
    }
    let mut parts = Vec::new();
    if too_few > 0 {
        parts.push(format!(
            "{} fewer than the {} operations required",
            count_models(too_few, "has", "have"),
            params.min_operations
        ));
    }
    let vram = with(ExclusionKind::NeedsMoreVram);
    if vram > 0 {
        let available = params.available_vram_mb.map(fmt_gb).unwrap_or_default();
        parts.push(format!(
            "{} more VRAM than the {available} available",
            count_models(vram, "needs", "need")
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

/// The best model by one statistic, and that statistic's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Ranking {
    /// The model.
    pub model: String,
    /// Its value of the statistic (rounded to 4 decimals).
    pub value: f64,
    /// What `value` is.
    pub statistic: String,
}

/// The winners of `/compare`; each is null when no compared model has the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rankings {
    /// Lowest p50 processing time.
    pub fastest: Option<Ranking>,
    /// Highest Bayesian-adjusted quality (see the module doc).
    pub highest_quality: Option<Ranking>,
    /// Highest Wilson lower bound of the success rate.
    pub most_reliable: Option<Ranking>,
    /// Highest p50 tokens per second.
    pub highest_throughput: Option<Ranking>,
    /// Lowest average `memory_mb` (RSS).
    pub most_memory_efficient: Option<Ranking>,
    /// Highest balanced score among the compared models.
    pub best_overall: Option<Ranking>,
}

/// `/compare`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comparison {
    /// Each model's statistics, keyed by name.
    pub models: BTreeMap<String, ModelStatistics>,
    /// The winners.
    pub rankings: Rankings,
}

/// The model with the best `key` (lowest when `lower_is_better`), ties to more operations,
/// then name. Only finite values count: a [`Ranking`]'s `value` is a number in the API, and
/// JSON has no infinity (serde writes it as null).
fn best_by(
    stats: &[ModelStatistics],
    statistic: &'static str,
    lower_is_better: bool,
    key: impl Fn(&ModelStatistics) -> Option<f64>,
) -> Option<Ranking> {
    stats
        .iter()
        .filter_map(|s| key(s).filter(|v| v.is_finite()).map(|v| (s, v)))
        .min_by(|(a, x), (b, y)| {
            let by_value = if lower_is_better {
                x.total_cmp(y)
            } else {
                y.total_cmp(x)
            };
            by_value
                .then(b.total_operations.cmp(&a.total_operations))
                .then_with(|| a.model.cmp(&b.model))
        })
        .map(|(s, v)| Ranking {
            model: s.model.clone(),
            value: round4(v),
            statistic: statistic.to_owned(),
        })
}

/// Rankings of `stats` (one per model). No `min_operations` or VRAM rule applies: the
/// caller chose these models. `best_overall` is the balanced score among the models with a
/// successful operation.
pub fn compare(stats: Vec<ModelStatistics>) -> Comparison {
    let summaries: Vec<ModelSummary> = stats.iter().map(ModelSummary::from).collect();
    let (scored, _) = score_all(
        summaries.iter().map(|s| (s, None)).collect(),
        Priority::Balanced,
    );
    let best_overall = scored.first().map(|s| Ranking {
        model: s.summary.model.clone(),
        value: round4(s.score),
        statistic: "balanced score (0.3 speed + 0.4 quality + 0.3 reliability)".to_owned(),
    });
    let rankings = Rankings {
        fastest: best_by(&stats, "p50 processing_time_ms", true, |s| {
            s.processing_time_ms.p50
        }),
        highest_quality: best_by(
            &stats,
            "quality adjusted toward 3.0 with a prior weight of 10 scores",
            false,
            |s| {
                s.quality
                    .avg
                    .map(|_| adjusted_quality(s.quality.avg, s.quality.scored_operations))
            },
        ),
        most_reliable: best_by(&stats, "success_rate_lower_bound", false, |s| {
            Some(s.success_rate_lower_bound)
        }),
        highest_throughput: best_by(&stats, "p50 tokens_per_second", false, |s| {
            s.tokens_per_second.p50
        }),
        most_memory_efficient: best_by(&stats, "avg memory_mb", true, |s| s.memory_mb.avg),
        best_overall,
    };
    Comparison {
        models: stats.into_iter().map(|s| (s.model.clone(), s)).collect(),
        rankings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Filter, Sample, model_statistics, model_summary};

    fn summary(model: &str, total: u64, ok: u64, p50: f64) -> ModelSummary {
        ModelSummary {
            model: model.to_owned(),
            total_operations: total,
            successful_operations: ok,
            p50_processing_time_ms: (ok > 0).then_some(p50),
            quality_avg: None,
            scored_operations: 0,
            max_vram_mb: None,
            max_gpu_memory_mb: None,
        }
    }

    fn scored(mut s: ModelSummary, avg: f64, n: u64) -> ModelSummary {
        s.quality_avg = Some(avg);
        s.scored_operations = n;
        s
    }

    fn candidate(s: ModelSummary) -> Candidate {
        Candidate {
            summary: s,
            vram_need: None,
        }
    }

    fn with_priority(priority: Priority) -> RecommendParams {
        RecommendParams {
            priority,
            ..RecommendParams::default()
        }
    }

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-4, "{actual} != {expected}");
    }

    #[test]
    fn priority_parses_and_defaults_to_balanced() {
        assert_eq!(RecommendParams::default().priority, Priority::Balanced);
        assert_eq!(RecommendParams::default().min_operations, 10);
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        assert_eq!(
            "fast".parse::<Priority>().unwrap_err().to_string(),
            "priority: unknown \"fast\"; valid: speed, quality, balanced, reliable"
        );
    }

    #[test]
    fn statistic_used_names_the_constants() {
        // The sentences are &'static str; keep them true if a constant changes.
        let quality = Priority::Quality.statistic_used();
        assert!(quality.contains(&format!("toward {QUALITY_PRIOR_MEAN:.1}")));
        assert!(quality.contains(&format!("weight of {QUALITY_PRIOR_WEIGHT} scores")));
        let balanced = Priority::Balanced.statistic_used();
        let w = BALANCED_WEIGHTS;
        for part in [
            format!("{} speed", w.speed),
            format!("{} quality", w.quality),
            format!("{} reliability", w.reliability),
        ] {
            assert!(balanced.contains(&part), "{part}");
        }
    }

    #[test]
    fn adjusted_quality_by_hand() {
        // (10 * 3 + 3 * 5) / 13 and (10 * 3 + 500 * 4.5) / 510.
        close(adjusted_quality(Some(5.0), 3), 45.0 / 13.0);
        close(adjusted_quality(Some(4.5), 500), 2280.0 / 510.0);
        close(adjusted_quality(None, 0), 3.0);
        close(adjusted_quality(Some(4.0), 0), 3.0);
    }

    #[test]
    fn a_cold_load_does_not_decide_speed() {
        // a: 20 calls of 1 s and one 60 s cold load (mean 3.8 s, median 1 s);
        // b: 21 calls of 1.5 s. By the mean b would win; by the median a does.
        let mut a: Vec<Sample> = (0..20).map(|i| Sample::new(i, 0, true, 1000.0)).collect();
        a.push(Sample::new(20, 0, true, 60_000.0));
        let b: Vec<Sample> = (0..21).map(|i| Sample::new(i, 0, true, 1500.0)).collect();
        let f = Filter::default();
        assert!(
            model_statistics("a", &a, &f)
                .unwrap()
                .processing_time_ms
                .avg
                > Some(3800.0)
        );
        let candidates = [
            candidate(model_summary("a", &a, &f).unwrap()),
            candidate(model_summary("b", &b, &f).unwrap()),
        ];
        let r = recommend(&candidates, &with_priority(Priority::Speed));
        assert_eq!(r.recommended_model.as_deref(), Some("a"));
        assert_eq!(r.score, Some(1.0));
        assert_eq!(
            r.statistic_used,
            "p50 processing_time_ms of successful operations"
        );
        assert_eq!(
            r.reason,
            "a has the lowest median (p50) processing time, 1.0 s over 21 successful operations, \
             against 1.5 s for b."
        );
        // b's speed score is 1000 / 1500.
        assert_eq!(r.alternatives.len(), 1);
        assert_eq!(r.alternatives[0].rank, 2);
        assert_eq!(r.alternatives[0].model, "b");
        close(r.alternatives[0].score, 0.6667);
        assert_eq!(r.weights, None);
    }

    #[test]
    fn three_lucky_scores_lose_to_five_hundred_solid_ones() {
        let lucky = scored(summary("lucky", 10, 10, 1000.0), 5.0, 3);
        let solid = scored(summary("solid", 500, 500, 1000.0), 4.5, 500);
        let candidates = [candidate(lucky), candidate(solid)];
        let r = recommend(&candidates, &with_priority(Priority::Quality));
        assert_eq!(r.recommended_model.as_deref(), Some("solid"));
        // (4.4706 - 1) / 4
        assert_eq!(r.score, Some(0.8676));
        let solid = r.figures.unwrap();
        assert_eq!(solid.quality_raw, Some(4.5));
        assert_eq!(solid.quality_adjusted, Some(4.4706));
        let lucky = &r.alternatives[0];
        assert_eq!(lucky.figures.quality_raw, Some(5.0));
        assert_eq!(lucky.figures.quality_adjusted, Some(3.4615));
        assert_eq!(lucky.score, 0.6154);
        assert!(r.reason.starts_with(
            "solid has the highest quality, 4.47 adjusted (4.50 mean over 500 scored operations)"
        ));
        assert!(
            r.reason
                .contains("next is lucky at 3.46 adjusted (5.00 mean over 3 scored")
        );
        // Balanced agrees: same speed, and solid is also more reliable.
        let r = recommend(&candidates, &RecommendParams::default());
        assert_eq!(r.recommended_model.as_deref(), Some("solid"));
    }

    #[test]
    fn balanced_by_hand() {
        // a: speed 1, quality (3.5 - 1) / 4 = 0.625, reliability w(100/100) = 0.96301
        //    -> 0.3 + 0.25 + 0.28890 = 0.83890
        // b: speed 0.5, quality (4.8 - 1) / 4 = 0.95, reliability w(50/50) = 0.92865
        //    -> 0.15 + 0.38 + 0.27859 = 0.80859
        let a = scored(summary("a", 100, 100, 1000.0), 4.0, 10);
        let b = scored(summary("b", 50, 50, 2000.0), 5.0, 90);
        let r = recommend(&[candidate(b), candidate(a)], &RecommendParams::default());
        assert_eq!(r.recommended_model.as_deref(), Some("a"));
        assert_eq!(r.score, Some(0.8389));
        let c = r.component_scores.unwrap();
        assert_eq!(
            (c.speed, c.quality, c.reliability),
            (1.0, Some(0.625), 0.963)
        );
        assert_eq!(r.alternatives[0].model, "b");
        assert_eq!(r.alternatives[0].score, 0.8086);
        assert_eq!(r.alternatives[0].component_scores.quality, Some(0.95));
        assert_eq!(r.weights, Some(BALANCED_WEIGHTS));
        assert!(r.reason.starts_with(
            "a has the best balanced score, 0.839 (speed 1.00, quality 0.62, reliability 0.96): \
             p50 1.0 s, 100.0% success"
        ));
        assert!(r.reason.ends_with("; next is b at 0.809."), "{}", r.reason);
    }

    #[test]
    fn balanced_without_quality_renormalises() {
        // Both 10/10 (reliability 0.72246); b is twice as fast.
        // a: 0.5 * 0.5 + 0.5 * 0.72246 = 0.61123; b: 0.5 + 0.36123 = 0.86123.
        let candidates = [
            candidate(summary("a", 10, 10, 1000.0)),
            candidate(summary("b", 10, 10, 500.0)),
        ];
        let r = recommend(&candidates, &RecommendParams::default());
        assert_eq!(r.recommended_model.as_deref(), Some("b"));
        assert_eq!(r.score, Some(0.8612));
        assert_eq!(r.alternatives[0].score, 0.6112);
        assert_eq!(r.component_scores.unwrap().quality, None);
        assert_eq!(r.weights, Some(BALANCED_WEIGHTS_WITHOUT_QUALITY));
        assert!(
            r.reason.contains("weighs speed and reliability 50/50"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn an_unscored_model_gets_the_prior_in_balanced() {
        // b has no scores: adjusted 3.0 -> quality 0.5, and the reason says so.
        let a = scored(summary("a", 10, 10, 2000.0), 2.0, 10);
        let b = summary("b", 10, 10, 1000.0);
        let r = recommend(&[candidate(a), candidate(b)], &RecommendParams::default());
        assert_eq!(r.recommended_model.as_deref(), Some("b"));
        assert_eq!(r.component_scores.unwrap().quality, Some(0.5));
        assert_eq!(r.figures.unwrap().quality_raw, None);
        assert!(
            r.reason
                .contains("no quality scores; its quality counts as the prior, 3.0")
        );
    }

    #[test]
    fn reliable_uses_the_wilson_bound() {
        // 3/3 = 100% but at least 43.8%; 495/500 = 99% and at least 97.7%.
        let candidates = [
            candidate(summary("new", 3, 3, 100.0)),
            candidate(summary("old", 500, 495, 100.0)),
        ];
        let params = RecommendParams {
            min_operations: 1,
            ..with_priority(Priority::Reliable)
        };
        let r = recommend(&candidates, &params);
        assert_eq!(r.recommended_model.as_deref(), Some("old"));
        assert_eq!(r.score, Some(0.9768));
        assert_eq!(
            r.reason,
            "old is the most reliable: 99.0% of 500 operations succeeded, at least 97.7% with 95% \
             confidence, against at least 43.8% for new."
        );
    }

    #[test]
    fn too_few_operations_are_excluded() {
        let candidates = [
            candidate(summary("few", 3, 3, 100.0)),
            candidate(summary("many", 10, 10, 900.0)),
        ];
        let r = recommend(&candidates, &with_priority(Priority::Speed));
        assert_eq!(r.recommended_model.as_deref(), Some("many"));
        assert_eq!(r.excluded.len(), 1);
        assert_eq!(r.excluded[0].model, "few");
        assert_eq!(r.excluded[0].kinds, [ExclusionKind::TooFewOperations]);
        assert_eq!(
            r.excluded[0].reason,
            "3 operations, fewer than the 10 required"
        );
        assert!(r.reason.contains("It is the only model that qualifies."));
        assert!(r.reason.ends_with("1 model was excluded (see excluded)."));
    }

    #[test]
    fn vram_budget_excludes_known_needs_and_flags_unknown_ones() {
        let big = Candidate {
            summary: summary("big", 50, 50, 500.0),
            vram_need: Some(VramNeed {
                mb: 9625.6,
                source: VramSource::Measured,
            }),
        };
        let small = Candidate {
            summary: summary("small", 50, 50, 800.0),
            vram_need: Some(VramNeed {
                mb: 4096.0,
                source: VramSource::Records,
            }),
        };
        let mystery = candidate(summary("mystery", 50, 50, 900.0));
        let params = RecommendParams {
            available_vram_mb: Some(8192.0),
            ..with_priority(Priority::Speed)
        };
        let r = recommend(&[big.clone(), small.clone(), mystery.clone()], &params);
        assert_eq!(r.recommended_model.as_deref(), Some("small"));
        assert_eq!(r.excluded[0].model, "big");
        assert_eq!(r.excluded[0].kinds, [ExclusionKind::NeedsMoreVram]);
        assert_eq!(
            r.excluded[0].reason,
            "needs 9.4 GB of VRAM, 8.0 GB available (the need is measured)"
        );
        assert_eq!(r.alternatives[0].model, "mystery");
        assert_eq!(r.vram.available_mb, Some(8192.0));
        assert_eq!(r.vram.unknown, ["mystery"]);
        let known: Vec<&str> = r
            .vram
            .known_needs
            .iter()
            .map(|k| k.model.as_str())
            .collect();
        assert_eq!(known, ["big", "small"]);
        assert!(r.reason.contains(
            "The VRAM need of mystery is unknown, so it was kept without a check against the \
             8.0 GB available."
        ));
        // Without a budget the big model wins on speed; enough VRAM is no exclusion either.
        let r = recommend(
            &[big.clone(), small.clone()],
            &with_priority(Priority::Speed),
        );
        assert_eq!(r.recommended_model.as_deref(), Some("big"));
        let roomy = RecommendParams {
            available_vram_mb: Some(9625.6),
            ..params
        };
        assert_eq!(
            recommend(&[big, small], &roomy)
                .recommended_model
                .as_deref(),
            Some("big")
        );
    }

    #[test]
    fn from_records_prefers_size_vram() {
        let mut s = summary("m", 1, 1, 1.0);
        assert_eq!(VramNeed::from_records(&s), None);
        s.max_gpu_memory_mb = Some(5000.0);
        assert_eq!(VramNeed::from_records(&s).unwrap().mb, 5000.0);
        s.max_vram_mb = Some(6000.0);
        let need = VramNeed::from_records(&s).unwrap();
        assert_eq!((need.mb, need.source), (6000.0, VramSource::Records));
    }

    #[test]
    fn quality_priority_excludes_unscored_models() {
        let candidates = [
            candidate(summary("fast", 20, 20, 100.0)),
            candidate(scored(summary("good", 20, 20, 900.0), 4.0, 20)),
        ];
        let r = recommend(&candidates, &with_priority(Priority::Quality));
        assert_eq!(r.recommended_model.as_deref(), Some("good"));
        assert_eq!(r.excluded[0].model, "fast");
        assert_eq!(r.excluded[0].kinds, [ExclusionKind::NoQualityScores]);
        assert_eq!(
            r.excluded[0].reason,
            "no quality scores, which the quality priority needs"
        );
    }

    #[test]
    fn models_without_a_success_are_excluded() {
        let candidates = [
            candidate(summary("broken", 20, 0, 0.0)),
            candidate(summary("ok", 20, 20, 900.0)),
        ];
        let r = recommend(&candidates, &with_priority(Priority::Speed));
        assert_eq!(r.recommended_model.as_deref(), Some("ok"));
        assert_eq!(r.excluded[0].kinds, [ExclusionKind::NoSuccessfulOperations]);
    }

    #[test]
    fn nothing_qualifies_says_why() {
        let params = RecommendParams {
            window_hours: Some(24.0),
            ..RecommendParams::default()
        };
        let r = recommend(&[], &params);
        assert_eq!(r.recommended_model, None);
        assert_eq!(r.score, None);
        assert_eq!(r.reason, "no model has operations in the last 24 h");

        let few = [
            candidate(summary("a", 3, 3, 1.0)),
            candidate(summary("b", 7, 7, 1.0)),
        ];
        let r = recommend(&few, &params);
        assert_eq!(r.recommended_model, None);
        assert_eq!(
            r.reason,
            "no model has at least 10 operations in the last 24 h (the most is b with 7)"
        );
        assert_eq!(r.excluded.len(), 2);
        assert_eq!(
            r.excluded[0].reason,
            "3 operations, fewer than the 10 required"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["recommended_model"].is_null());

        let mixed = [
            candidate(summary("a", 3, 3, 1.0)),
            Candidate {
                summary: summary("b", 30, 30, 1.0),
                vram_need: Some(VramNeed {
                    mb: 20_480.0,
                    source: VramSource::Estimate,
                }),
            },
        ];
        let tight = RecommendParams {
            available_vram_mb: Some(8192.0),
            ..params
        };
        let r = recommend(&mixed, &tight);
        assert_eq!(
            r.reason,
            "no model qualifies in the last 24 h: 1 model has fewer than the 10 operations \
             required; 1 model needs more VRAM than the 8.0 GB available"
        );
        // Every reason of a model that fails several rules is listed.
        let both = [Candidate {
            summary: summary("c", 3, 3, 1.0),
            vram_need: Some(VramNeed {
                mb: 20_480.0,
                source: VramSource::Estimate,
            }),
        }];
        let r = recommend(&both, &tight);
        assert_eq!(
            r.excluded[0].reason,
            "3 operations, fewer than the 10 required; needs 20.0 GB of VRAM, 8.0 GB available \
             (the need is an estimate)"
        );
    }

    #[test]
    fn ties_go_to_more_operations_then_name() {
        let candidates = [
            candidate(summary("b", 10, 10, 500.0)),
            candidate(summary("a", 10, 10, 500.0)),
            candidate(summary("c", 11, 10, 500.0)),
        ];
        // Speed ties at 1.0 for all three: c has more operations, then a before b.
        let r = recommend(&candidates, &with_priority(Priority::Speed));
        let order: Vec<&str> = std::iter::once(r.recommended_model.as_deref().unwrap())
            .chain(r.alternatives.iter().map(|a| a.model.as_str()))
            .collect();
        assert_eq!(order, ["c", "a", "b"]);
    }

    #[test]
    fn serializes_the_api_shape() {
        let r = recommend(
            &[candidate(summary("m", 10, 10, 1.0))],
            &RecommendParams::default(),
        );
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "priority",
            "recommended_model",
            "score",
            "component_scores",
            "statistic_used",
            "reason",
            "alternatives",
            "excluded",
            "vram",
        ] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert_eq!(v["priority"], "balanced");
        assert!(v["vram"]["known_needs"].is_array());
        assert_eq!(v["vram"]["unknown"][0], "m");
    }

    fn stats_of(model: &str, samples: &[Sample]) -> ModelStatistics {
        model_statistics(model, samples, &Filter::default()).unwrap()
    }

    #[test]
    fn compare_rankings_by_hand() {
        // fast: p50 100 ms, 10/10, quality 3.0 x 10, 30 tok/s, RSS 4000.
        // slow: p50 400 ms, 9/10, quality 5.0 x 10, 60 tok/s, RSS 2000.
        let fast: Vec<Sample> = (0..10)
            .map(|i| Sample {
                quality_score: 3.0,
                tokens_per_second: 30.0,
                ollama_rss_mb: 4000.0,
                ..Sample::new(i, 0, true, 100.0)
            })
            .collect();
        let slow: Vec<Sample> = (0..10)
            .map(|i| Sample {
                quality_score: 5.0,
                tokens_per_second: 60.0,
                ollama_rss_mb: 2000.0,
                ..Sample::new(i, 0, i != 0, 400.0)
            })
            .collect();
        let nothing: Vec<Sample> = vec![Sample::new(0, 0, false, 5.0)];
        let c = compare(vec![
            stats_of("slow", &slow),
            stats_of("fast", &fast),
            stats_of("x", &nothing),
        ]);
        let r = &c.rankings;
        assert_eq!(c.models.keys().collect::<Vec<_>>(), ["fast", "slow", "x"]);
        let fastest = r.fastest.as_ref().unwrap();
        assert_eq!((fastest.model.as_str(), fastest.value), ("fast", 100.0));
        let quality = r.highest_quality.as_ref().unwrap();
        // (30 + 50) / 20 = 4.0 against (30 + 30) / 20 = 3.0.
        assert_eq!((quality.model.as_str(), quality.value), ("slow", 4.0));
        let reliable = r.most_reliable.as_ref().unwrap();
        assert_eq!((reliable.model.as_str(), reliable.value), ("fast", 0.7225));
        let throughput = r.highest_throughput.as_ref().unwrap();
        assert_eq!(
            (throughput.model.as_str(), throughput.value),
            ("slow", 60.0)
        );
        let memory = r.most_memory_efficient.as_ref().unwrap();
        assert_eq!((memory.model.as_str(), memory.value), ("slow", 2000.0));
        // fast: 0.3 * 1 + 0.4 * 0.5 + 0.3 * 0.72246 = 0.71674
        // slow: 0.3 * 0.25 + 0.4 * 0.75 + 0.3 * w(9/10) = 0.075 + 0.3 + 0.3 * 0.59585 = 0.55376
        let overall = r.best_overall.as_ref().unwrap();
        assert_eq!((overall.model.as_str(), overall.value), ("fast", 0.7167));
    }

    #[test]
    fn compare_without_data_gives_null_rankings() {
        let c = compare(vec![stats_of("x", &[Sample::new(0, 0, false, 5.0)])]);
        let v = serde_json::to_value(&c).unwrap();
        assert!(v["rankings"]["fastest"].is_null());
        assert!(v["rankings"]["highest_quality"].is_null());
        assert!(v["rankings"]["best_overall"].is_null());
        assert_eq!(v["rankings"]["most_reliable"]["value"], 0.0);
        assert_eq!(v["models"]["x"]["total_operations"], 1);
        let empty = compare(Vec::new());
        assert_eq!(empty.rankings.most_reliable, None);
    }

    #[test]
    fn rankings_skip_values_json_cannot_carry() {
        let mut s = stats_of("inf", &[Sample::new(0, 0, true, 5.0)]);
        s.tokens_per_second.p50 = Some(f64::INFINITY);
        let mut t = stats_of("ok", &[Sample::new(0, 0, true, 5.0)]);
        t.tokens_per_second.p50 = Some(10.0);
        let c = compare(vec![s.clone()]);
        assert_eq!(c.rankings.highest_throughput, None);
        let c = compare(vec![s, t]);
        let best = c.rankings.highest_throughput.unwrap();
        assert_eq!((best.model.as_str(), best.value), ("ok", 10.0));
    }

    /// A million samples over 50 models through the whole recommend path, to show the code
    /// copes with the size; timing belongs to the benchmark, not here. Builds in about a
    /// second in a debug build (most of it generating the data).
    #[test]
    fn a_million_samples_over_fifty_models() {
        const MODELS: usize = 50;
        const PER_MODEL: usize = 20_000;
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            // xorshift64: deterministic, no dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let models: Vec<(String, Vec<Sample>)> = (0..MODELS)
            .map(|m| {
                let base = 200.0 + 40.0 * m as f32;
                let samples = (0..PER_MODEL)
                    .map(|i| {
                        let r = next();
                        let mut s = Sample::new(i as i64 * 1000, (r % 3) as u32, r % 97 != 0, base);
                        s.processing_time_ms =
                            base * (0.5 + (r >> 40) as f32 / (1u64 << 24) as f32);
                        if r % 4 == 0 {
                            s.quality_score = 1.0 + (r % 5) as f32;
                        }
                        s.vram_mb = 1000.0 + 200.0 * m as f32;
                        s
                    })
                    .collect();
                (format!("model-{m:02}"), samples)
            })
            .collect();
        let filter = Filter {
            since_ms: Some(0),
            ..Filter::default()
        };
        let candidates: Vec<Candidate> = models
            .iter()
            .filter_map(|(name, samples)| model_summary(name, samples, &filter))
            .map(|summary| {
                let vram_need = VramNeed::from_records(&summary);
                Candidate { summary, vram_need }
            })
            .collect();
        assert_eq!(candidates.len(), MODELS);
        let params = RecommendParams {
            available_vram_mb: Some(8192.0),
            ..RecommendParams::default()
        };
        let r = recommend(&candidates, &params);
        let model = r.recommended_model.expect("a model");
        assert!(models.iter().any(|(name, _)| *name == model));
        // Needs above 8192 MB: 1000 + 200 m > 8192 for m >= 36, so 14 are excluded.
        assert_eq!(r.excluded.len(), 14);
        assert_eq!(r.alternatives.len(), MODELS - 14 - 1);
        assert!(r.score.is_some_and(|s| (0.0..=1.0).contains(&s)));
    }
}
