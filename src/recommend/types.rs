//! The recommendation's vocabulary: what is asked ([`Priority`], [`RecommendParams`],
//! [`Candidate`], [`VramBudget`]) and what is answered ([`Recommendation`] and its parts).
//! The JSON names are the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::stats::ModelSummary;

/// Operations a model needs in the window to be recommended: fewer say little about its
/// typical speed or its failure rate. A floor for eligibility; the estimates themselves
/// weigh how much evidence each model has.
pub const DEFAULT_MIN_OPERATIONS: u64 = 10;
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
    /// Lowest estimated median processing time.
    Speed,
    /// Highest estimated mean quality.
    Quality,
    /// The weighted blend of speed, quality and reliability.
    #[default]
    Balanced,
    /// Highest estimated success rate.
    Reliable,
    /// Least cost per output token (energy and GPU time at `[cost]` prices; joules per
    /// output token where no price is set) among the models whose mean quality is at
    /// least `min_quality`.
    Efficient,
}

impl Priority {
    /// Every priority, in the order error messages list them.
    pub const ALL: [Priority; 5] = [
        Priority::Speed,
        Priority::Quality,
        Priority::Balanced,
        Priority::Reliable,
        Priority::Efficient,
    ];

    /// The priorities scored from the posteriors (all but `efficient`, which is scored
    /// from measured energy and cost): the ones the ground-truth simulation measures.
    pub const POSTERIOR: [Priority; 4] = [
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
            Priority::Efficient => "efficient",
        }
    }

    /// What the score of this priority is computed from, as the answer states it.
    pub fn statistic_used(self) -> &'static str {
        match self {
            Priority::Speed => {
                "p50 processing_time_ms of successful operations, estimated on the log scale \
                 (empirical Bayes)"
            }
            Priority::Quality => {
                "quality_score mean, estimated by empirical Bayes: shrunk toward the candidates' \
                 pooled mean by how noisy the scores are and how much the models differ"
            }
            Priority::Reliable => {
                "success_rate, estimated by empirical Bayes (beta-binomial, the prior fitted \
                 from the candidates)"
            }
            Priority::Balanced => {
                "0.3 speed (min p50 / p50 processing_time_ms) + 0.4 quality ((estimated quality \
                 - 1) / 4) + 0.3 reliability (estimated success_rate)"
            }
            Priority::Efficient => {
                "least / this model's cost per 1,000 output tokens (energy at price_per_kwh plus \
                 GPU time at gpu_hour_price; joules per output token without prices), among \
                 models whose mean quality is at least min_quality"
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

/// The VRAM a model may use, against which its known need is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum VramBudget {
    /// No budget is known: nothing is checked.
    #[default]
    Unknown,
    /// The caller's budget, MiB, the same for every model.
    Given(f64),
    /// What the GPU has free now, MiB, plus what each model holds itself now (its own VRAM
    /// is freed when it is reloaded; see [`Candidate::held_vram_mb`]).
    FreePlusHeld(f64),
}

impl VramBudget {
    /// The MiB `candidate` may use; `None` when nothing is checked.
    pub fn for_candidate(self, candidate: &Candidate) -> Option<f64> {
        match self {
            VramBudget::Unknown => None,
            VramBudget::Given(mb) => Some(mb),
            VramBudget::FreePlusHeld(free) => Some(free + candidate.held_vram_mb.unwrap_or(0.0)),
        }
    }

    /// The budget's base figure for the report: the given budget, or the free VRAM.
    pub fn available_mb(self) -> Option<f64> {
        match self {
            VramBudget::Unknown => None,
            VramBudget::Given(mb) | VramBudget::FreePlusHeld(mb) => Some(mb),
        }
    }

    /// The basis, as the answer names it.
    pub fn basis(self) -> VramBasis {
        match self {
            VramBudget::Unknown => VramBasis::Unknown,
            VramBudget::Given(_) => VramBasis::Given,
            VramBudget::FreePlusHeld(_) => VramBasis::FreePlusHeld,
        }
    }
}

/// Where the VRAM budget came from. Serialized snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VramBasis {
    /// `available_vram_gb` in the request.
    Given,
    /// The GPU's free memory plus what each model holds, from telemetry.
    FreePlusHeld,
    /// Neither: no VRAM need was checked.
    Unknown,
}

/// One model that may be recommended.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The model's name.
    pub model: String,
    /// Its figures over the window; `None` when the window holds none of its operations
    /// (it is then excluded, and says so).
    pub summary: Option<ModelSummary>,
    /// Its VRAM need, when known.
    pub vram_need: Option<VramNeed>,
    /// The VRAM it holds on the GPU now, MiB, for a [`VramBudget::FreePlusHeld`] budget.
    pub held_vram_mb: Option<f64>,
    /// Its predicted time for the asked-for workload, when one was asked for and it has a
    /// latency fit.
    pub prediction: Option<PredictedTime>,
    /// What its output tokens cost, for the `efficient` priority; `None` when unmeasured.
    pub efficiency: Option<Efficiency>,
}

/// A model's predicted time for a workload, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PredictedTime {
    /// The prediction.
    pub predicted_ms: f64,
    /// Its 80% interval's low end.
    pub low_ms: f64,
    /// Its 80% interval's high end.
    pub high_ms: f64,
}

/// The latency budget's rule, in one place (`/recommend`, routing and the dashboard's
/// call question all ask it): a model is over when its predicted time itself is over the
/// budget; the interval only words the answer.
pub fn over_latency_budget(predicted_ms: f64, max_latency_ms: f64) -> bool {
    predicted_ms > max_latency_ms
}

/// What a model's output tokens cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Efficiency {
    /// Per 1,000 output tokens, in [`RecommendParams::efficiency_unit`]s.
    pub per_1k_output_tokens: f64,
    /// The standard error of its logarithm (from the spread of the calls' own figures):
    /// how precisely it is known.
    pub log_standard_error: f64,
    /// Calls it is measured over.
    pub calls: u64,
}

impl Candidate {
    /// A model with operations, its VRAM need from its records.
    pub fn new(summary: ModelSummary) -> Candidate {
        Candidate {
            model: summary.model.clone(),
            vram_need: VramNeed::from_records(&summary),
            summary: Some(summary),
            held_vram_mb: None,
            prediction: None,
            efficiency: None,
        }
    }

    /// A model named but without operations in the window.
    pub fn without_operations(model: impl Into<String>) -> Candidate {
        Candidate {
            model: model.into(),
            summary: None,
            vram_need: None,
            held_vram_mb: None,
            prediction: None,
            efficiency: None,
        }
    }
}

/// How to recommend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecommendParams {
    /// What to optimise.
    pub priority: Priority,
    /// Fewer operations than this excludes a model.
    pub min_operations: u64,
    /// The VRAM each model may use.
    pub vram: VramBudget,
    /// The window the summaries cover, only to word the reasons ("in the last 24 h").
    pub window_hours: Option<f64>,
    /// A model predicted slower than this for the workload is excluded.
    pub max_latency_ms: Option<f64>,
    /// The workload the predictions are for (prompt, output tokens), to word the reasons.
    pub workload: Option<(u64, u64)>,
    /// The quality floor of the `efficient` priority (1 to 5).
    pub min_quality: f64,
    /// The unit of [`Efficiency::per_1k_output_tokens`] ("J", or the currency).
    pub efficiency_unit: &'static str,
}

/// The `efficient` priority's quality floor unless asked otherwise: "acceptable" on the 1
/// to 5 scale; a cheap model that answers badly is not efficient.
pub const DEFAULT_MIN_QUALITY: f64 = 3.0;

impl Default for RecommendParams {
    fn default() -> RecommendParams {
        RecommendParams {
            priority: Priority::Balanced,
            min_operations: DEFAULT_MIN_OPERATIONS,
            vram: VramBudget::Unknown,
            window_hours: None,
            max_latency_ms: None,
            workload: None,
            min_quality: DEFAULT_MIN_QUALITY,
            efficiency_unit: "J",
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

/// A candidate's three scores, each in `0..=1`, higher better, from the posterior
/// estimates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentScores {
    /// `min p50 / p50`, both estimated.
    pub speed: f64,
    /// `(estimated quality - 1) / 4`; null when no candidate has a quality score.
    pub quality: Option<f64>,
    /// The estimated success rate.
    pub reliability: f64,
}

/// The figures behind a candidate's scores: what was observed, and what is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Figures {
    /// Operations in the window.
    pub total_operations: u64,
    /// Of which succeeded.
    pub successful_operations: u64,
    /// Observed median processing time of the successful ones.
    pub p50_processing_time_ms: f64,
    /// The estimated median the speed score uses.
    pub p50_estimate_ms: f64,
    /// Mean quality score, as observed; null without scores.
    pub quality_raw: Option<f64>,
    /// The estimated mean quality the score uses (the candidates' pooled mean without
    /// scores); null when no candidate has a quality score.
    pub quality_adjusted: Option<f64>,
    /// How many operations were scored.
    pub scored_operations: u64,
    /// Observed success rate.
    pub success_rate: f64,
    /// The estimated success rate the score uses.
    pub success_rate_estimate: f64,
    /// The Wilson 95% lower bound of the observed rate, for reference.
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
    /// The posterior probability that this model is truly the best of those that qualify
    /// under the priority, `0..=1`.
    pub confidence: f64,
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
    /// No operation of it is in the window.
    NoOperations,
    /// Its predicted time for the workload is over `max_latency_ms`.
    OverLatencyBudget,
    /// No energy (or cost) per output token measured, which the efficient priority needs.
    NoEfficiencyFigure,
    /// Its mean quality is under `min_quality` (the efficient priority).
    BelowQualityFloor,
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
    /// Where the budget came from.
    pub basis: VramBasis,
    /// The budget in MiB: the one given, or the GPU's free VRAM (each model may also use
    /// what it holds itself); null when nothing is checked.
    pub available_mb: Option<f64>,
    /// Every candidate whose need is known.
    pub known_needs: Vec<KnownVramNeed>,
    /// Every candidate with operations whose need is unknown (kept, not checked).
    pub unknown: Vec<String>,
}

/// A prior fitted from the candidates: where a thin model's estimate is pulled, and how
/// hard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FittedPrior {
    /// The candidates' pooled mean (quality on the 1 to 5 scale; success rate 0 to 1).
    pub mean: f64,
    /// What the prior is worth, in observations: a model's own mean outweighs it from this
    /// many scores (or operations) on.
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
    /// The posterior probability that it is truly the best of the qualifying models,
    /// `0..=1` (calibrated on simulated ground truth: see docs/recommendation.md).
    pub confidence: Option<f64>,
    /// Its three scores.
    pub component_scores: Option<ComponentScores>,
    /// The figures behind them.
    pub figures: Option<Figures>,
    /// What the score is computed from.
    pub statistic_used: String,
    /// The balanced weights that applied; null for other priorities.
    pub weights: Option<Weights>,
    /// A sentence with numbers: why this model, how sure, or why none.
    pub reason: String,
    /// The other qualifying models, best first, each with its confidence.
    pub alternatives: Vec<ScoredModel>,
    /// The models left out, and why, in name order.
    pub excluded: Vec<Excluded>,
    /// Which VRAM needs were known.
    pub vram: VramReport,
    /// The quality prior fitted from the candidates; null when none has scores.
    pub quality_prior: Option<FittedPrior>,
    /// The success-rate prior fitted from the candidates; null when none has operations.
    pub success_rate_prior: Option<FittedPrior>,
}
