//! Which model to use, why, and how sure: pure functions over the [`ModelSummary`](crate::stats::ModelSummary)s that
//! [`crate::stats`] computed. docs/recommendation.md has the method and the simulated
//! ground truth that measures it.
//!
//! - [`types`]: the vocabulary, asked ([`Priority`], [`Candidate`], [`VramBudget`],
//!   [`RecommendParams`]) and answered ([`Recommendation`]).
//! - [`posterior`](mod@posterior): empirical-Bayes estimates of each model's true speed,
//!   quality and reliability, fitted from the candidates; the probability that each is the
//!   best; one joint draw for Thompson sampling.
//! - [`scoring`]: eligibility (every rule a model fails), expected scores, ranking, and
//!   [`recommend`].
//! - [`reasons`]: the answer in words.
//! - [`compare`](mod@compare): `/compare`'s rankings.
//! - [`simulation`]: scenarios with a known truth, to measure the recommendation against the
//!   earlier system's plain rule (`cargo bench --bench truth`).
//!
//! The scores, all in `0..=1` with higher better, each from posterior estimates:
//! - **speed** = `min p50 / p50` of the estimated medians (log scale): the median of
//!   successful operations, not the mean, so one 60-second cold load does not decide.
//! - **quality** = `(q - 1) / 4` of the estimated mean quality `q` (1 to 5).
//! - **reliability** = the estimated success rate.
//! - **balanced** = `0.3·speed + 0.4·quality + 0.3·reliability` (the earlier system's
//!   weights); when no qualifying candidate has a quality score, `0.5·speed +
//!   0.5·reliability`, and the answer says so.
//!
//! The pick maximises the expected score; `confidence` is the posterior probability that it
//! is truly the best. Rules: a candidate is excluded when it has no operations in the
//! window, fewer than `min_operations`, a known VRAM need above its budget, no successful
//! operation, or (for the quality priority) no quality score. A candidate whose VRAM need
//! is unknown is kept and named in the answer. Ties go to the model with more operations,
//! then to the name in byte order, so answers are stable.

pub mod compare;
pub mod posterior;
pub mod reasons;
pub mod scoring;
pub mod simulation;
pub mod types;

pub use compare::{Comparison, Ranking, Rankings, compare};
pub use posterior::{BetaPosterior, ModelPosterior, NormalPosterior, Posteriors, posteriors};
pub use scoring::recommend;
pub use types::{
    BALANCED_WEIGHTS, BALANCED_WEIGHTS_WITHOUT_QUALITY, Candidate, ComponentScores,
    DEFAULT_MIN_OPERATIONS, DEFAULT_MIN_QUALITY, Efficiency, Excluded, ExclusionKind, Figures,
    FittedPrior, KnownVramNeed, ParsePriorityError, PredictedTime, Priority, RecommendParams,
    Recommendation, ScoredModel, VramBasis, VramBudget, VramNeed, VramReport, VramSource, Weights,
    over_latency_budget,
};
