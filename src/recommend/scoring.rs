//! Eligibility and ranking: which candidates qualify (and every reason the others do not),
//! their expected scores under the priority, how likely each is the best, and the answer.

use super::posterior::{Posteriors, posteriors, quality_score};
use super::reasons::{exclusion_sentences, nothing_qualifies, winner_reason};
use super::types::{
    BALANCED_WEIGHTS, BALANCED_WEIGHTS_WITHOUT_QUALITY, Candidate, ComponentScores, Efficiency,
    Excluded, ExclusionKind, Figures, KnownVramNeed, Priority, RecommendParams, Recommendation,
    ScoredModel, VramNeed, VramReport,
};
use crate::stats::{ModelSummary, wilson_lower_bound};

/// Scores for the API: 4 decimals is finer than any decision they support.
pub(crate) fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// A qualifying candidate with its estimates, before rounding.
pub(super) struct Scored<'a> {
    pub(super) summary: &'a ModelSummary,
    pub(super) vram_need: Option<VramNeed>,
    /// The observed median.
    pub(super) p50_ms: f64,
    /// The estimated median.
    pub(super) p50_estimate_ms: f64,
    /// The estimated mean quality; `None` when quality does not count.
    pub(super) quality_estimate: Option<f64>,
    pub(super) speed: f64,
    pub(super) quality: Option<f64>,
    /// The estimated success rate, also the reliability score.
    pub(super) reliability: f64,
    /// What its output tokens cost (the efficient priority).
    pub(super) efficiency: Option<Efficiency>,
    pub(super) score: f64,
    pub(super) confidence: f64,
}

impl Scored<'_> {
    pub(super) fn success_rate(&self) -> f64 {
        self.summary.successful_operations as f64 / self.summary.total_operations.max(1) as f64
    }

    fn to_scored_model(&self, rank: usize) -> ScoredModel {
        ScoredModel {
            rank,
            model: self.summary.model.clone(),
            score: round4(self.score),
            confidence: round4(self.confidence),
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
        let s = self.summary;
        Figures {
            total_operations: s.total_operations,
            successful_operations: s.successful_operations,
            p50_processing_time_ms: self.p50_ms,
            p50_estimate_ms: crate::stats::round3(self.p50_estimate_ms),
            quality_raw: s.quality_avg,
            quality_adjusted: self.quality_estimate.map(round4),
            scored_operations: s.scored_operations,
            success_rate: round4(self.success_rate()),
            success_rate_estimate: round4(self.reliability),
            success_rate_lower_bound: round4(wilson_lower_bound(
                s.successful_operations,
                s.total_operations,
            )),
            vram_need: self.vram_need,
        }
    }
}

/// Scores the models of `set` (indices into `posts.models`, each with a successful
/// operation) under `priority`, best first: by the expected score as reported (4
/// decimals), ties to more operations, then the name in byte order. Also returns whether
/// quality counted.
pub(super) fn score_set<'a>(
    posts: &Posteriors,
    set: &[usize],
    summaries: &[&'a ModelSummary],
    needs: &[Option<VramNeed>],
    efficiencies: &[Option<Efficiency>],
    priority: Priority,
) -> (Vec<Scored<'a>>, bool) {
    let (mut scores, any_quality) = posts.expected_scores(priority, set);
    let (speeds, _) = posts.expected_scores(Priority::Speed, set);
    let mut confidence = posts.win_probabilities(priority, set);
    if priority == Priority::Efficient {
        let figures: Vec<Option<Efficiency>> = set.iter().map(|&i| efficiencies[i]).collect();
        (scores, confidence) = efficiency_scores(&figures);
    }
    let mut scored: Vec<Scored> = set
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            let post = &posts.models[i];
            let summary = summaries[i];
            let quality_estimate = any_quality.then(|| post.quality.map(|q| q.mean)).flatten();
            Scored {
                summary,
                vram_need: needs[i],
                p50_ms: summary.p50_processing_time_ms.unwrap_or(0.0),
                p50_estimate_ms: post.log_p50_ms.map_or(0.0, |l| l.mean.exp()),
                quality_estimate,
                speed: speeds[j],
                quality: quality_estimate.map(quality_score),
                reliability: post.success_rate.mean(),
                efficiency: efficiencies[i],
                score: scores[j],
                confidence: confidence[j],
            }
        })
        .collect();
    scored.sort_by(|a, b| {
        round4(b.score)
            .total_cmp(&round4(a.score))
            .then(b.summary.total_operations.cmp(&a.summary.total_operations))
            .then_with(|| a.summary.model.cmp(&b.summary.model))
    });
    (scored, any_quality)
}

/// Draws for the efficient priority's win probabilities: enough that a probability is
/// right to about a percent.
const EFFICIENCY_DRAWS: usize = 4_000;

/// The efficient priority's scores (`least / own` cost per 1,000 output tokens) and the
/// probability that each is truly the cheapest: the log of each figure is drawn from a
/// normal around it with its standard error (a fixed seed, so answers repeat).
fn efficiency_scores(figures: &[Option<Efficiency>]) -> (Vec<f64>, Vec<f64>) {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    let least = figures
        .iter()
        .flatten()
        .map(|e| e.per_1k_output_tokens)
        .fold(f64::INFINITY, f64::min);
    let scores = figures
        .iter()
        .map(|e| {
            e.map_or(0.0, |e| {
                if e.per_1k_output_tokens > 0.0 {
                    (least / e.per_1k_output_tokens).min(1.0)
                } else {
                    1.0
                }
            })
        })
        .collect();
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0x0e77);
    let mut wins = vec![0_usize; figures.len()];
    for _ in 0..EFFICIENCY_DRAWS {
        let mut best: Option<(usize, f64)> = None;
        for (j, e) in figures.iter().enumerate() {
            let Some(e) = e else { continue };
            let z: f64 = StandardNormal.sample(&mut rng);
            let draw = e.per_1k_output_tokens.max(1e-300).ln() + z * e.log_standard_error;
            if best.is_none_or(|(_, b)| draw < b) {
                best = Some((j, draw));
            }
        }
        if let Some((j, _)) = best {
            wins[j] += 1;
        }
    }
    let confidence = wins
        .iter()
        .map(|&w| w as f64 / EFFICIENCY_DRAWS as f64)
        .collect();
    (scores, confidence)
}

/// Every rule `candidate` fails.
fn exclusions(candidate: &Candidate, params: &RecommendParams) -> Vec<ExclusionKind> {
    let Some(s) = &candidate.summary else {
        return vec![ExclusionKind::NoOperations];
    };
    let mut found = Vec::new();
    if s.total_operations < params.min_operations {
        found.push(ExclusionKind::TooFewOperations);
    }
    if let (Some(available), Some(need)) =
        (params.vram.for_candidate(candidate), candidate.vram_need)
        && need.mb > available
    {
        found.push(ExclusionKind::NeedsMoreVram);
    }
    if s.successful_operations == 0 || s.p50_processing_time_ms.is_none() {
        found.push(ExclusionKind::NoSuccessfulOperations);
    }
    if matches!(params.priority, Priority::Quality | Priority::Efficient)
        && s.scored_operations == 0
    {
        found.push(ExclusionKind::NoQualityScores);
    }
    if params.priority == Priority::Efficient {
        if s.quality_avg.is_some_and(|q| q < params.min_quality) {
            found.push(ExclusionKind::BelowQualityFloor);
        }
        if candidate.efficiency.is_none() {
            found.push(ExclusionKind::NoEfficiencyFigure);
        }
    }
    if let (Some(max), Some(p)) = (params.max_latency_ms, candidate.prediction)
        && super::types::over_latency_budget(p.predicted_ms, max)
    {
        found.push(ExclusionKind::OverLatencyBudget);
    }
    found
}

/// The recommendation for `candidates` under `params`. Never fails: when nothing qualifies
/// the model is `None` and `reason` says why. Every candidate with operations informs the
/// fitted priors, whether it qualifies or not; only qualifying ones are ranked.
pub fn recommend(candidates: &[Candidate], params: &RecommendParams) -> Recommendation {
    let with_data: Vec<&Candidate> = candidates.iter().filter(|c| c.summary.is_some()).collect();
    let summaries: Vec<&ModelSummary> = with_data
        .iter()
        .filter_map(|c| c.summary.as_ref())
        .collect();
    let needs: Vec<Option<VramNeed>> = with_data.iter().map(|c| c.vram_need).collect();
    let efficiencies: Vec<Option<Efficiency>> = with_data.iter().map(|c| c.efficiency).collect();
    let posts = posteriors(&summaries);

    let mut excluded = Vec::new();
    let mut set = Vec::new();
    let mut data_index = 0;
    for c in candidates {
        let kinds = exclusions(c, params);
        if kinds.is_empty() {
            set.push(data_index);
        } else {
            excluded.push(Excluded {
                model: c.model.clone(),
                reason: exclusion_sentences(c, &kinds, params).join("; "),
                kinds,
            });
        }
        if c.summary.is_some() {
            data_index += 1;
        }
    }
    excluded.sort_by(|a, b| a.model.cmp(&b.model));
    let vram = vram_report(candidates, params);

    let (scored, any_quality) = score_set(
        &posts,
        &set,
        &summaries,
        &needs,
        &efficiencies,
        params.priority,
    );
    let weights = (params.priority == Priority::Balanced).then_some(if any_quality {
        BALANCED_WEIGHTS
    } else {
        BALANCED_WEIGHTS_WITHOUT_QUALITY
    });

    let Some(best) = scored.first() else {
        return Recommendation {
            priority: params.priority,
            recommended_model: None,
            score: None,
            confidence: None,
            component_scores: None,
            figures: None,
            statistic_used: params.priority.statistic_used().to_owned(),
            weights,
            reason: nothing_qualifies(candidates, &excluded, params),
            alternatives: Vec::new(),
            excluded,
            vram,
            quality_prior: posts.quality_prior,
            success_rate_prior: posts.success_rate_prior,
        };
    };

    Recommendation {
        priority: params.priority,
        recommended_model: Some(best.summary.model.clone()),
        score: Some(round4(best.score)),
        confidence: Some(round4(best.confidence)),
        component_scores: Some(best.components()),
        figures: Some(best.figures()),
        statistic_used: params.priority.statistic_used().to_owned(),
        weights,
        reason: winner_reason(&scored, any_quality, &posts, excluded.len(), params),
        alternatives: scored
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, s)| s.to_scored_model(i + 1))
            .collect(),
        excluded,
        vram,
        quality_prior: posts.quality_prior,
        success_rate_prior: posts.success_rate_prior,
    }
}

/// Which VRAM needs are known, and the budget.
fn vram_report(candidates: &[Candidate], params: &RecommendParams) -> VramReport {
    let mut known_needs: Vec<KnownVramNeed> = candidates
        .iter()
        .filter_map(|c| {
            c.vram_need.map(|n| KnownVramNeed {
                model: c.model.clone(),
                mb: n.mb,
                source: n.source,
            })
        })
        .collect();
    known_needs.sort_by(|a, b| a.model.cmp(&b.model));
    let mut unknown: Vec<String> = candidates
        .iter()
        .filter(|c| c.vram_need.is_none() && c.summary.is_some())
        .map(|c| c.model.clone())
        .collect();
    unknown.sort();
    VramReport {
        basis: params.vram.basis(),
        available_mb: params.vram.available_mb(),
        known_needs,
        unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::types::{
        DEFAULT_MIN_OPERATIONS, VramBasis, VramBudget, VramSource, Weights,
    };
    use crate::stats::{Filter, Sample, model_summary};

    pub(crate) fn summary(model: &str, total: u64, ok: u64, p50: f64) -> ModelSummary {
        ModelSummary {
            model: model.to_owned(),
            total_operations: total,
            successful_operations: ok,
            p50_processing_time_ms: (ok > 0).then_some(p50),
            p25_processing_time_ms: (ok > 0).then_some(p50 * 0.8),
            p75_processing_time_ms: (ok > 0).then_some(p50 * 1.25),
            quality_avg: None,
            quality_variance: None,
            scored_operations: 0,
            max_vram_mb: None,
            max_gpu_memory_mb: None,
        }
    }

    fn scored(mut s: ModelSummary, avg: f64, sd: f64, n: u64) -> ModelSummary {
        s.quality_avg = Some(avg);
        s.quality_variance = (n > 1).then_some(sd * sd);
        s.scored_operations = n;
        s
    }

    fn candidate(s: ModelSummary) -> Candidate {
        Candidate {
            vram_need: None,
            ..Candidate::new(s)
        }
    }

    fn with_priority(priority: Priority) -> RecommendParams {
        RecommendParams {
            priority,
            ..RecommendParams::default()
        }
    }

    fn order(r: &Recommendation) -> Vec<&str> {
        r.recommended_model
            .iter()
            .map(String::as_str)
            .chain(r.alternatives.iter().map(|a| a.model.as_str()))
            .collect()
    }

    #[test]
    fn priority_parses_and_defaults_to_balanced() {
        assert_eq!(RecommendParams::default().priority, Priority::Balanced);
        assert_eq!(
            RecommendParams::default().min_operations,
            DEFAULT_MIN_OPERATIONS
        );
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        assert_eq!(
            "fast".parse::<Priority>().unwrap_err().to_string(),
            "priority: unknown \"fast\"; valid: speed, quality, balanced, reliable, efficient"
        );
    }

    #[test]
    fn statistic_used_names_the_balanced_weights() {
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
    fn a_cold_load_does_not_decide_speed() {
        // a: 20 calls of 1 s and one 60 s cold load (mean 3.8 s, median 1 s);
        // b: 21 calls of 1.5 s. By the mean b would win; by the median a does.
        let mut a: Vec<Sample> = (0..20).map(|i| Sample::new(i, 0, true, 1000.0)).collect();
        a.push(Sample::new(20, 0, true, 60_000.0));
        let b: Vec<Sample> = (0..21).map(|i| Sample::new(i, 0, true, 1500.0)).collect();
        let f = Filter::default();
        let candidates = [
            candidate(model_summary("a", &a, &f).unwrap()),
            candidate(model_summary("b", &b, &f).unwrap()),
        ];
        let r = recommend(&candidates, &with_priority(Priority::Speed));
        assert_eq!(r.recommended_model.as_deref(), Some("a"));
        assert_eq!(r.score, Some(1.0));
        assert!(r.confidence.unwrap() > 0.99, "{r:?}");
        assert!(
            r.reason.starts_with(
                "a has the lowest median (p50) processing time, 1.0 s over 21 successful \
                 operations, against 1.5 s for b. It is over 99% likely the best of the 2 \
                 that qualify; next is b at under 1%."
            ),
            "{}",
            r.reason
        );
        // b's speed score is about 1000 / 1500: with 21 identical calls each, the estimates
        // are the observed medians.
        assert_eq!(r.alternatives.len(), 1);
        assert_eq!(r.alternatives[0].rank, 2);
        assert!((r.alternatives[0].score - 2.0 / 3.0).abs() < 0.01);
        assert_eq!(r.weights, None);
    }

    #[test]
    fn an_excellent_thin_model_beats_a_good_thick_one_when_scores_are_consistent() {
        // The case: a true 4.6 with 5 scores against a 4.0 with 200, scores with sd
        // 0.3, the models far apart. A fixed prior of 10 scores at 3.0 made the thin one
        // about 3.5; the fitted prior barely moves it.
        let thin = scored(summary("thin", 10, 10, 1000.0), 4.6, 0.3, 5);
        let thick = scored(summary("thick", 200, 200, 1000.0), 4.0, 0.3, 200);
        let low = scored(summary("low", 100, 100, 1000.0), 2.8, 0.3, 100);
        let candidates = [
            candidate(thin.clone()),
            candidate(thick.clone()),
            candidate(low),
        ];
        let r = recommend(&candidates, &with_priority(Priority::Quality));
        assert_eq!(r.recommended_model.as_deref(), Some("thin"), "{}", r.reason);
        let estimate = r.figures.unwrap().quality_adjusted.unwrap();
        assert!(estimate > 4.5, "{estimate}");
        assert!(r.confidence.unwrap() > 0.95);
        assert!(
            r.reason.starts_with("thin has the highest quality, 4.5"),
            "{}",
            r.reason
        );
        assert!(
            r.reason
                .contains("(4.60 mean over 5 scores); next is thick at 4.00")
        );
        let prior = r.quality_prior.unwrap();
        assert!(
            prior.weight < 1.0,
            "consistent scores, different models: {prior:?}"
        );

        // Noisy scores (sd 1.5) and similar models: the same 5 scores prove little, so the
        // thin model is pulled well toward the others, and the answer is unsure.
        let noisy_thin = scored(summary("thin", 10, 10, 1000.0), 4.6, 1.5, 5);
        let noisy_thick = scored(summary("thick", 200, 200, 1000.0), 4.0, 1.5, 200);
        let similar = scored(summary("similar", 200, 200, 1000.0), 3.9, 1.5, 200);
        let r = recommend(
            &[
                candidate(noisy_thin),
                candidate(noisy_thick),
                candidate(similar),
            ],
            &with_priority(Priority::Quality),
        );
        let thin_estimate = r
            .alternatives
            .iter()
            .chain(std::iter::once(&ScoredModel {
                rank: 1,
                model: r.recommended_model.clone().unwrap(),
                score: 0.0,
                confidence: 0.0,
                component_scores: r.component_scores.unwrap(),
                figures: r.figures.unwrap(),
            }))
            .find(|a| a.model == "thin")
            .and_then(|a| a.figures.quality_adjusted)
            .unwrap();
        assert!(thin_estimate < 4.3, "{thin_estimate}");
        assert!(r.confidence.unwrap() < 0.75, "{}", r.reason);
        assert!(
            r.quality_prior.unwrap().weight > 2.0,
            "{:?}",
            r.quality_prior
        );
    }

    #[test]
    fn three_of_three_successes_count_for_what_they_are_worth() {
        // Models at 90-95%: 3 of 3 is probably a good model, better than one at 90 of 100,
        // but not proven better than 990 of 1000.
        let candidates = [
            candidate(summary("new", 3, 3, 100.0)),
            candidate(summary("ninety", 100, 90, 100.0)),
            candidate(summary("solid", 1000, 990, 100.0)),
            candidate(summary("mid", 200, 186, 100.0)),
        ];
        let params = RecommendParams {
            min_operations: 1,
            ..with_priority(Priority::Reliable)
        };
        let r = recommend(&candidates, &params);
        assert_eq!(order(&r), ["solid", "new", "mid", "ninety"], "{}", r.reason);
        let new = &r.alternatives[0];
        assert!(new.figures.success_rate_estimate > 0.92, "{new:?}");
        assert!(new.figures.success_rate_estimate < 0.99, "{new:?}");
        assert!(
            r.reason.starts_with(
                "solid is the most reliable: an estimated 98.9% success (990 of 1000 operations \
             succeeded), against"
            ),
            "{}",
            r.reason
        );
        assert!(
            r.reason
                .contains("Each rate is shrunk toward the candidates'")
        );
        // The Wilson bound stays in the figures for reference.
        assert!(new.figures.success_rate_lower_bound < 0.5);
        assert!(r.success_rate_prior.is_some());
    }

    #[test]
    fn balanced_is_the_weighted_sum_of_the_components() {
        let a = scored(summary("a", 100, 100, 1000.0), 4.0, 0.7, 100);
        let b = scored(summary("b", 50, 50, 2000.0), 4.8, 0.7, 50);
        let r = recommend(&[candidate(b), candidate(a)], &RecommendParams::default());
        assert_eq!(r.weights, Some(BALANCED_WEIGHTS));
        let Weights {
            speed,
            quality,
            reliability,
        } = BALANCED_WEIGHTS;
        let check = |score: f64, c: &ComponentScores| {
            let sum = speed * c.speed + quality * c.quality.unwrap() + reliability * c.reliability;
            assert!((score - sum).abs() < 2e-4, "{score} vs {sum}");
        };
        check(r.score.unwrap(), &r.component_scores.unwrap());
        for alt in &r.alternatives {
            check(alt.score, &alt.component_scores);
        }
        // a is twice as fast: speed 1 against 0.5; b's quality 0.8 better.
        // a: 0.3 + 0.4 * 0.75 + 0.3 * r = 0.6 + 0.3r; b: 0.15 + 0.4 * 0.95 + 0.3r = 0.53 + 0.3r.
        assert_eq!(r.recommended_model.as_deref(), Some("a"));
        assert!(
            r.reason.starts_with("a has the best balanced score, 0.9"),
            "{}",
            r.reason
        );
        assert!(r.reason.contains("; next is b at 0.8"), "{}", r.reason);
    }

    #[test]
    fn balanced_without_quality_renormalises() {
        let candidates = [
            candidate(summary("a", 10, 10, 1000.0)),
            candidate(summary("b", 10, 10, 500.0)),
        ];
        let r = recommend(&candidates, &RecommendParams::default());
        assert_eq!(r.recommended_model.as_deref(), Some("b"));
        assert_eq!(r.component_scores.unwrap().quality, None);
        assert_eq!(r.weights, Some(BALANCED_WEIGHTS_WITHOUT_QUALITY));
        assert_eq!(r.quality_prior, None);
        let c = r.component_scores.unwrap();
        assert!((r.score.unwrap() - (0.5 * c.speed + 0.5 * c.reliability)).abs() < 2e-4);
        assert!(
            r.reason.contains("weighs speed and reliability 50/50"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn an_unscored_model_gets_the_pooled_mean_in_balanced() {
        let a = scored(summary("a", 10, 10, 2000.0), 2.0, 0.5, 10);
        let c = scored(summary("c", 10, 10, 4000.0), 3.0, 0.5, 10);
        let b = summary("b", 10, 10, 1000.0);
        let r = recommend(
            &[candidate(a), candidate(b), candidate(c)],
            &RecommendParams::default(),
        );
        assert_eq!(r.recommended_model.as_deref(), Some("b"));
        let figures = r.figures.unwrap();
        assert_eq!(figures.quality_raw, None);
        let pooled = r.quality_prior.unwrap().mean;
        assert!((figures.quality_adjusted.unwrap() - pooled).abs() < 1e-3);
        assert!(
            r.reason
                .contains("no quality scores; its quality counts as the candidates' pooled mean"),
            "{}",
            r.reason
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
        assert_eq!(r.confidence, Some(1.0));
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
    fn a_given_vram_budget_excludes_known_needs_and_flags_unknown_ones() {
        let big = Candidate {
            vram_need: Some(VramNeed {
                mb: 9625.6,
                source: VramSource::Measured,
            }),
            ..candidate(summary("big", 50, 50, 500.0))
        };
        let small = Candidate {
            vram_need: Some(VramNeed {
                mb: 4096.0,
                source: VramSource::Records,
            }),
            ..candidate(summary("small", 50, 50, 800.0))
        };
        let mystery = candidate(summary("mystery", 50, 50, 900.0));
        let params = RecommendParams {
            vram: VramBudget::Given(8192.0),
            ..with_priority(Priority::Speed)
        };
        let r = recommend(&[big.clone(), small.clone(), mystery], &params);
        assert_eq!(r.recommended_model.as_deref(), Some("small"));
        assert_eq!(r.excluded[0].model, "big");
        assert_eq!(r.excluded[0].kinds, [ExclusionKind::NeedsMoreVram]);
        assert_eq!(
            r.excluded[0].reason,
            "needs 9.4 GB of VRAM, 8.0 GB available (the need is measured)"
        );
        assert_eq!(r.alternatives[0].model, "mystery");
        assert_eq!(r.vram.basis, VramBasis::Given);
        assert_eq!(r.vram.available_mb, Some(8192.0));
        assert_eq!(r.vram.unknown, ["mystery"]);
        let known: Vec<&str> = r
            .vram
            .known_needs
            .iter()
            .map(|k| k.model.as_str())
            .collect();
        assert_eq!(known, ["big", "small"]);
        assert!(
            r.reason.contains(
                "The VRAM need of mystery is unknown, so it was kept without a check against the \
             8.0 GB available."
            ),
            "{}",
            r.reason
        );
        // Without a budget the big model wins on speed; enough VRAM is no exclusion either.
        let r = recommend(
            &[big.clone(), small.clone()],
            &with_priority(Priority::Speed),
        );
        assert_eq!(r.recommended_model.as_deref(), Some("big"));
        assert_eq!(r.vram.basis, VramBasis::Unknown);
        let roomy = RecommendParams {
            vram: VramBudget::Given(9625.6),
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
    fn free_vram_plus_what_a_model_holds() {
        // 6 GB free. big needs 10 GB and holds 5 GB now: 11 GB for it, it fits. huge needs
        // 20 GB and holds nothing: excluded, with the sum in words.
        let big = Candidate {
            vram_need: Some(VramNeed {
                mb: 10_240.0,
                source: VramSource::Measured,
            }),
            held_vram_mb: Some(5120.0),
            ..candidate(summary("big", 50, 50, 500.0))
        };
        let huge = Candidate {
            vram_need: Some(VramNeed {
                mb: 20_480.0,
                source: VramSource::Estimate,
            }),
            held_vram_mb: Some(0.0),
            ..candidate(summary("huge", 50, 50, 300.0))
        };
        let params = RecommendParams {
            vram: VramBudget::FreePlusHeld(6144.0),
            ..with_priority(Priority::Speed)
        };
        let r = recommend(&[big, huge.clone()], &params);
        assert_eq!(r.recommended_model.as_deref(), Some("big"));
        assert_eq!(r.vram.basis, VramBasis::FreePlusHeld);
        assert_eq!(r.vram.available_mb, Some(6144.0));
        assert_eq!(
            r.excluded[0].reason,
            "needs 20.0 GB of VRAM (an estimate), 6.0 GB available: 6.0 GB free on the GPU \
             plus 0.0 GB it holds now"
        );
        assert!(r.reason.ends_with("1 model was excluded (see excluded)."));

        // Every model too big: the reason says so, not "no operations".
        let r = recommend(&[huge], &params);
        assert_eq!(r.recommended_model, None);
        assert_eq!(
            r.reason,
            "no model qualifies: 1 model needs more VRAM than the 6.0 GB free on the GPU plus \
             what it holds"
        );
        assert_eq!(r.excluded[0].kinds, [ExclusionKind::NeedsMoreVram]);
    }

    #[test]
    fn models_without_operations_are_candidates_excluded_in_order_and_counted() {
        let candidates = [
            Candidate::without_operations("zeta"),
            candidate(summary("ok", 20, 20, 900.0)),
            Candidate::without_operations("alpha"),
            candidate(summary("few", 2, 2, 100.0)),
        ];
        let params = RecommendParams {
            window_hours: Some(24.0),
            ..with_priority(Priority::Speed)
        };
        let r = recommend(&candidates, &params);
        assert_eq!(r.recommended_model.as_deref(), Some("ok"));
        let excluded: Vec<(&str, &[ExclusionKind])> = r
            .excluded
            .iter()
            .map(|e| (e.model.as_str(), e.kinds.as_slice()))
            .collect();
        assert_eq!(
            excluded,
            [
                ("alpha", &[ExclusionKind::NoOperations][..]),
                ("few", &[ExclusionKind::TooFewOperations][..]),
                ("zeta", &[ExclusionKind::NoOperations][..]),
            ]
        );
        assert_eq!(r.excluded[0].reason, "no operations recorded in the window");
        assert!(
            r.reason.ends_with("3 models were excluded (see excluded)."),
            "{}",
            r.reason
        );
        // A model without operations has no VRAM need to report as unknown.
        assert_eq!(r.vram.unknown, ["few", "ok"]);

        let r = recommend(&candidates[2..3], &params);
        assert_eq!(
            r.reason,
            "none of the models has operations in the last 24 h"
        );
        let r = recommend(&[], &params);
        assert_eq!(
            r.reason,
            "no model has any records yet: point your app at ollameter and make some calls"
        );
        let r = recommend(&[candidates[0].clone(), candidates[3].clone()], &params);
        assert_eq!(
            r.reason,
            "no model qualifies in the last 24 h: 1 model has no operations; 1 model has fewer \
             than the 10 operations required"
        );
    }

    #[test]
    fn quality_priority_excludes_unscored_models() {
        let candidates = [
            candidate(summary("fast", 20, 20, 100.0)),
            candidate(scored(summary("good", 20, 20, 900.0), 4.0, 0.5, 20)),
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
        let few = [
            candidate(summary("a", 3, 3, 1.0)),
            candidate(summary("b", 7, 7, 1.0)),
        ];
        let r = recommend(&few, &params);
        assert_eq!(r.recommended_model, None);
        assert_eq!(r.score, None);
        assert_eq!(r.confidence, None);
        assert_eq!(
            r.reason,
            "no model has at least 10 operations in the last 24 h (the most is b with 7)"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["recommended_model"].is_null());
        assert!(json["confidence"].is_null());

        let mixed = [
            candidate(summary("a", 3, 3, 1.0)),
            Candidate {
                vram_need: Some(VramNeed {
                    mb: 20_480.0,
                    source: VramSource::Estimate,
                }),
                ..candidate(summary("b", 30, 30, 1.0))
            },
        ];
        let tight = RecommendParams {
            vram: VramBudget::Given(8192.0),
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
            vram_need: Some(VramNeed {
                mb: 20_480.0,
                source: VramSource::Estimate,
            }),
            ..candidate(summary("c", 3, 3, 1.0))
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
            candidate(summary("c", 11, 11, 500.0)),
        ];
        // Speed ties at 1.0 for all three: c has more operations, then a before b.
        let r = recommend(&candidates, &with_priority(Priority::Speed));
        assert_eq!(order(&r), ["c", "a", "b"]);
    }

    #[test]
    fn confidences_are_probabilities_and_stable() {
        let candidates = [
            candidate(scored(summary("a", 40, 38, 1000.0), 4.1, 0.7, 38)),
            candidate(scored(summary("b", 12, 12, 1100.0), 4.2, 0.7, 12)),
            candidate(scored(summary("c", 200, 190, 3000.0), 3.0, 0.7, 190)),
        ];
        for priority in Priority::POSTERIOR {
            let r = recommend(&candidates, &with_priority(priority));
            let total: f64 =
                r.confidence.unwrap() + r.alternatives.iter().map(|a| a.confidence).sum::<f64>();
            assert!((total - 1.0).abs() < 1e-3, "{priority}: {total}");
            assert!(
                r.reason.contains("likely the best of the 3 that qualify"),
                "{}",
                r.reason
            );
            assert_eq!(
                recommend(&candidates, &with_priority(priority)),
                r,
                "{priority}"
            );
        }
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
            "confidence",
            "component_scores",
            "statistic_used",
            "reason",
            "alternatives",
            "excluded",
            "vram",
            "quality_prior",
            "success_rate_prior",
        ] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert_eq!(v["priority"], "balanced");
        assert_eq!(v["confidence"], 1.0);
        assert!(v["vram"]["known_needs"].is_array());
        assert_eq!(v["vram"]["basis"], "unknown");
        assert_eq!(v["vram"]["unknown"][0], "m");
    }

    /// A million samples over fifty models through the whole recommend path, to show the
    /// code copes with the size; timing belongs to the benchmark, not here.
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
            .map(Candidate::new)
            .collect();
        assert_eq!(candidates.len(), MODELS);
        let params = RecommendParams {
            vram: VramBudget::Given(8192.0),
            ..RecommendParams::default()
        };
        let r = recommend(&candidates, &params);
        let model = r.recommended_model.expect("a model");
        assert!(models.iter().any(|(name, _)| *name == model));
        // Needs above 8192 MB: 1000 + 200 m > 8192 for m >= 36, so 14 are excluded.
        assert_eq!(r.excluded.len(), 14);
        assert_eq!(r.alternatives.len(), MODELS - 14 - 1);
        assert!(r.score.is_some_and(|s| (0.0..=1.0).contains(&s)));
        assert!(r.confidence.is_some_and(|c| (0.0..=1.0).contains(&c)));
    }
}
