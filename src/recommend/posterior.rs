//! What each model's figures say about its true speed, quality and reliability: posterior
//! distributions by empirical Bayes, fitted from the candidates themselves. Pure functions;
//! [`posteriors`] builds them, [`Posteriors::expected_scores`] decides,
//! [`Posteriors::win_probabilities`] says how sure, and [`Posteriors::draw_scores`] is one
//! joint draw, the step of Thompson sampling.
//!
//! The three hierarchical models (every candidate's true value is drawn from a population
//! whose parameters are learned from all candidates):
//! - **Quality**, normal-normal: a model's mean score `y_i` over `n_i` scores has noise
//!   `σ_i² / n_i`, where `σ_i²` is its own score variance pulled toward the pooled
//!   within-model variance (so three identical scores do not claim zero noise); true means
//!   are `N(μ, τ²)`. `μ` has a flat prior and `τ` a uniform one on `0..2`, integrated over
//!   a grid of 64 values (Gelman et al., *Bayesian Data Analysis*, §5.4): with three to five
//!   models a point estimate of `τ` is often 0, which would shrink every model to the same
//!   value. So consistent scores and very different models shrink little, noisy scores
//!   and similar models a lot.
//! - **Speed**, the same model on the log of the median processing time: `ln p50` has noise
//!   `(π/2)·σ_i²/n_i` (the sampling variance of a median), `σ_i` from the interquartile
//!   range of the log times (IQR / 1.349), pulled toward the pooled spread. The median
//!   keeps one cold load from deciding.
//! - **Reliability**, beta-binomial: true success rates are `Beta(mκ, (1-m)κ)`, with
//!   `m` uniform and `p(κ) ∝ κ^(-3/2)` (BDA's `(α+β)^(-5/2)`), integrated over a 31 × 20
//!   grid; each model's rate is then a mixture of `Beta(α + successes, β + failures)`.
//!
//! Each model's posterior is summarised by its first two moments (a normal, or a beta for
//! the success rate), which is what [`ModelPosterior`] exposes.

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Beta, Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::types::{BALANCED_WEIGHTS, BALANCED_WEIGHTS_WITHOUT_QUALITY, FittedPrior, Priority};
use crate::stats::ModelSummary;

/// Posterior draws behind a confidence: 4,000 put its Monte Carlo error under 0.8 points.
pub const DRAWS: usize = 4_000;
/// The seed of the draws: the same data always gives the same confidence.
const SEED: u64 = 0x6f6c_6c61_6d65_7465;
/// Points of the grid over the between-model spread `τ`.
const TAU_GRID: usize = 64;
/// Largest between-model spread of true mean quality considered (the scale is 1 to 5).
const QUALITY_TAU_MAX: f64 = 2.0;
/// Largest between-model spread of true log median considered: a factor of e⁴ ≈ 55.
const LATENCY_TAU_MAX: f64 = 4.0;
/// Prior guess of a quality score's per-call standard deviation, worth 2 scores.
const QUALITY_SD_PRIOR: f64 = 1.0;
/// Prior guess of the log processing time's per-call spread, worth 2 calls.
const LOG_TIME_SD_PRIOR: f64 = 0.5;
/// Degrees of freedom of those prior guesses in the pooled spread.
const POOLED_PRIOR_DF: f64 = 2.0;
/// How many observations the pooled spread is worth in a model's own spread.
const OWN_SPREAD_PRIOR_DF: f64 = 10.0;
/// The normal IQR in standard deviations.
const IQR_PER_SD: f64 = 1.349;
/// Grid over the mean success rate `m`, in logits around the pooled rate.
const RATE_GRID: usize = 31;
/// Half-width of that grid, in logits.
const RATE_GRID_HALF_WIDTH: f64 = 3.0;
/// Grid over the concentration `κ`, log-spaced.
const CONCENTRATION_GRID: usize = 20;
/// Range of `κ`: from nearly no pooling to nearly complete.
const CONCENTRATION_RANGE: (f64, f64) = (0.5, 1e5);
/// Processing times are floored here before the log: imported data may carry 0 ms.
const MIN_TIME_MS: f64 = 0.01;
/// Standard deviations a model's score may lie below the leader's and still be drawn.
const CONTENDER_SDS: f64 = 5.0;

/// A normal distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NormalPosterior {
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub sd: f64,
}

impl NormalPosterior {
    fn from_moments(mean: f64, second: f64) -> NormalPosterior {
        NormalPosterior {
            mean,
            sd: (second - mean * mean).max(0.0).sqrt(),
        }
    }

    fn draw(self, rng: &mut Xoshiro256PlusPlus) -> f64 {
        let z: f64 = StandardNormal.sample(rng);
        self.mean + self.sd * z
    }
}

/// A beta distribution of a success rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BetaPosterior {
    /// Successes-like parameter.
    pub alpha: f64,
    /// Failures-like parameter.
    pub beta: f64,
}

impl BetaPosterior {
    /// Mean.
    pub fn mean(self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// Standard deviation.
    pub fn sd(self) -> f64 {
        let n = self.alpha + self.beta;
        (self.alpha * self.beta / (n * n * (n + 1.0))).sqrt()
    }

    /// The beta with this mean and second moment.
    fn from_moments(mean: f64, second: f64) -> BetaPosterior {
        let mean = mean.clamp(1e-9, 1.0 - 1e-9);
        let var = (second - mean * mean).max(1e-12);
        let n = (mean * (1.0 - mean) / var - 1.0).max(1e-3);
        BetaPosterior {
            alpha: mean * n,
            beta: (1.0 - mean) * n,
        }
    }
}

/// One model's posteriors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelPosterior {
    /// The model.
    pub model: String,
    /// The natural log of its true median processing time (ms); null without a successful
    /// operation.
    pub log_p50_ms: Option<NormalPosterior>,
    /// Its true mean quality score; for a model without scores, the population's (what a
    /// model of these candidates scores); null when no candidate has scores.
    pub quality: Option<NormalPosterior>,
    /// Whether `quality` rests on the model's own scores.
    pub quality_observed: bool,
    /// Its true success rate.
    pub success_rate: BetaPosterior,
}

/// Every candidate's posteriors and the priors fitted from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Posteriors {
    /// In the order the summaries were given.
    pub models: Vec<ModelPosterior>,
    /// The fitted quality prior; null when no model has scores.
    pub quality_prior: Option<FittedPrior>,
    /// The fitted success-rate prior; null without models.
    pub success_rate_prior: Option<FittedPrior>,
}

/// The posteriors of every model in `summaries`, each fitted against all of them.
pub fn posteriors(summaries: &[&ModelSummary]) -> Posteriors {
    let latency = latency_fit(summaries);
    let quality = quality_fit(summaries);
    let (rates, success_rate_prior) = rate_fit(summaries);
    let models = summaries
        .iter()
        .zip(rates)
        .enumerate()
        .map(|(i, (s, success_rate))| {
            let observed = quality.as_ref().and_then(|q| q.by_model[i]);
            ModelPosterior {
                model: s.model.clone(),
                log_p50_ms: latency.as_ref().and_then(|l| l.by_model[i]),
                quality: observed.or(quality.as_ref().map(|q| q.population)),
                quality_observed: observed.is_some(),
                success_rate,
            }
        })
        .collect();
    Posteriors {
        models,
        quality_prior: quality.map(|q| q.prior),
        success_rate_prior,
    }
}

/// A normal hierarchy's result, by model index.
struct NormalFit {
    by_model: Vec<Option<NormalPosterior>>,
    /// What a new model of this population would have.
    population: NormalPosterior,
    prior: FittedPrior,
}

/// One model's observation in a normal hierarchy.
struct Obs {
    index: usize,
    y: f64,
    se2: f64,
}

/// The within-model variance each model's observations have: its own sample variance
/// (with `df` degrees of freedom) pulled toward the pooled one, which is itself pulled
/// toward a prior guess. Returns the per-model variances and the pooled one.
fn spreads(own: &[(f64, f64)], prior_sd: f64) -> (Vec<f64>, f64) {
    let (mut ss, mut df) = (POOLED_PRIOR_DF * prior_sd * prior_sd, POOLED_PRIOR_DF);
    for &(var, d) in own {
        ss += d * var;
        df += d;
    }
    let pooled = ss / df;
    let per_model = own
        .iter()
        .map(|&(var, d)| {
            ((OWN_SPREAD_PRIOR_DF * pooled + d * var) / (OWN_SPREAD_PRIOR_DF + d)).max(1e-6)
        })
        .collect();
    (per_model, pooled)
}

/// Quality: models with at least one score.
fn quality_fit(summaries: &[&ModelSummary]) -> Option<NormalFit> {
    let scored: Vec<(usize, f64, f64)> = summaries
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let avg = s.quality_avg.filter(|_| s.scored_operations > 0)?;
            Some((i, avg, s.scored_operations as f64))
        })
        .collect();
    if scored.is_empty() {
        return None;
    }
    let own: Vec<(f64, f64)> = scored
        .iter()
        .map(|&(i, _, n)| match summaries[i].quality_variance {
            Some(var) if n > 1.0 => (var, n - 1.0),
            _ => (0.0, 0.0),
        })
        .collect();
    let (vars, pooled) = spreads(&own, QUALITY_SD_PRIOR);
    let obs: Vec<Obs> = scored
        .iter()
        .zip(vars)
        .map(|(&(index, y, n), var)| Obs {
            index,
            y,
            se2: var / n,
        })
        .collect();
    Some(normal_hierarchy(
        &obs,
        summaries.len(),
        QUALITY_TAU_MAX,
        pooled,
        (1.0, 5.0),
    ))
}

/// Speed: the log median of models with a successful operation.
fn latency_fit(summaries: &[&ModelSummary]) -> Option<NormalFit> {
    let timed: Vec<(usize, f64, f64)> = summaries
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let p50 = s
                .p50_processing_time_ms
                .filter(|_| s.successful_operations > 0)?;
            Some((i, p50.max(MIN_TIME_MS).ln(), s.successful_operations as f64))
        })
        .collect();
    if timed.is_empty() {
        return None;
    }
    let own: Vec<(f64, f64)> = timed
        .iter()
        .map(|&(i, _, n)| {
            let s = summaries[i];
            match (s.p25_processing_time_ms, s.p75_processing_time_ms) {
                (Some(p25), Some(p75)) if n > 1.0 => {
                    let sd = (p75.max(MIN_TIME_MS).ln() - p25.max(MIN_TIME_MS).ln()) / IQR_PER_SD;
                    (sd * sd, n - 1.0)
                }
                _ => (0.0, 0.0),
            }
        })
        .collect();
    let (vars, pooled) = spreads(&own, LOG_TIME_SD_PRIOR);
    let obs: Vec<Obs> = timed
        .iter()
        .zip(vars)
        .map(|(&(index, y, n), var)| Obs {
            index,
            y,
            se2: std::f64::consts::FRAC_PI_2 * var / n,
        })
        .collect();
    Some(normal_hierarchy(
        &obs,
        summaries.len(),
        LATENCY_TAU_MAX,
        pooled,
        (f64::NEG_INFINITY, f64::INFINITY),
    ))
}

/// The normal-normal hierarchy with `μ` flat and `τ` uniform on `0..tau_max`, integrated
/// over a grid (BDA §5.4, the marginal posterior of `τ` with `μ` integrated out). Means
/// are clamped to `range`, the scale's bounds.
fn normal_hierarchy(
    obs: &[Obs],
    models: usize,
    tau_max: f64,
    within_var: f64,
    range: (f64, f64),
) -> NormalFit {
    let mut log_w = [0.0; TAU_GRID];
    let mut mu = [0.0; TAU_GRID];
    let mut v_mu = [0.0; TAU_GRID];
    let tau2 = |g: usize| ((g as f64 + 0.5) * tau_max / TAU_GRID as f64).powi(2);
    for g in 0..TAU_GRID {
        let t2 = tau2(g);
        let (mut sw, mut swy, mut log_v) = (0.0, 0.0, 0.0);
        for o in obs {
            let v = o.se2 + t2;
            sw += 1.0 / v;
            swy += o.y / v;
            log_v += v.ln();
        }
        mu[g] = swy / sw;
        v_mu[g] = 1.0 / sw;
        let q: f64 = obs
            .iter()
            .map(|o| (o.y - mu[g]).powi(2) / (o.se2 + t2))
            .sum();
        log_w[g] = 0.5 * v_mu[g].ln() - 0.5 * log_v - 0.5 * q;
    }
    let w = normalised(&log_w);
    let mut by_model = vec![None; models];
    for o in obs {
        let (mut m1, mut m2) = (0.0, 0.0);
        for g in 0..TAU_GRID {
            let b = o.se2 / (o.se2 + tau2(g));
            let mean = (1.0 - b) * o.y + b * mu[g];
            let var = (1.0 - b) * o.se2 + b * b * v_mu[g];
            m1 += w[g] * mean;
            m2 += w[g] * (var + mean * mean);
        }
        let mut post = NormalPosterior::from_moments(m1, m2);
        post.mean = post.mean.clamp(range.0, range.1);
        by_model[o.index] = Some(post);
    }
    let (mut p1, mut p2, mut t2_mean) = (0.0, 0.0, 0.0);
    for g in 0..TAU_GRID {
        p1 += w[g] * mu[g];
        p2 += w[g] * (tau2(g) + v_mu[g] + mu[g] * mu[g]);
        t2_mean += w[g] * tau2(g);
    }
    let mut population = NormalPosterior::from_moments(p1, p2);
    population.mean = population.mean.clamp(range.0, range.1);
    NormalFit {
        by_model,
        population,
        prior: FittedPrior {
            mean: p1,
            weight: within_var / t2_mean,
        },
    }
}

/// `exp(log_w - max)`, summing to 1.
fn normalised(log_w: &[f64]) -> Vec<f64> {
    let max = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = log_w.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|x| x / total).collect()
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Reliability: the beta-binomial hierarchy over every model.
fn rate_fit(summaries: &[&ModelSummary]) -> (Vec<BetaPosterior>, Option<FittedPrior>) {
    if summaries.is_empty() {
        return (Vec::new(), None);
    }
    let counts: Vec<(f64, f64)> = summaries
        .iter()
        .map(|s| {
            let n = s.total_operations as f64;
            (s.successful_operations.min(s.total_operations) as f64, n)
        })
        .collect();
    let (s_all, n_all) = counts
        .iter()
        .fold((0.0, 0.0), |(a, b), (s, n)| (a + s, b + n));
    let centre = {
        let p = (s_all + 0.5) / (n_all + 1.0);
        (p / (1.0 - p)).ln()
    };
    let k = counts.len() as f64;
    let (lo, hi) = (CONCENTRATION_RANGE.0.ln(), CONCENTRATION_RANGE.1.ln());
    let kappas: Vec<f64> = (0..CONCENTRATION_GRID)
        .map(|h| (lo + (hi - lo) * h as f64 / (CONCENTRATION_GRID - 1) as f64).exp())
        .collect();
    let rates: Vec<f64> = (0..RATE_GRID)
        .map(|j| {
            let step = 2.0 * RATE_GRID_HALF_WIDTH / (RATE_GRID - 1) as f64;
            logistic(centre - RATE_GRID_HALF_WIDTH + step * j as f64)
        })
        .collect();
    // The part of the likelihood that depends on κ alone.
    let by_kappa: Vec<f64> = kappas
        .iter()
        .map(|&kappa| {
            counts
                .iter()
                .map(|&(_, n)| libm::lgamma(kappa) - libm::lgamma(kappa + n))
                .sum()
        })
        .collect();
    let mut grid = Vec::with_capacity(RATE_GRID * CONCENTRATION_GRID);
    let mut log_w = Vec::with_capacity(RATE_GRID * CONCENTRATION_GRID);
    for &m in &rates {
        for (h, &kappa) in kappas.iter().enumerate() {
            let (a, b) = (m * kappa, (1.0 - m) * kappa);
            let mut ll = by_kappa[h] - k * (libm::lgamma(a) + libm::lgamma(b));
            for &(s, n) in &counts {
                ll += libm::lgamma(a + s) + libm::lgamma(b + n - s);
            }
            // Uniform in m (the logit grid's Jacobian is m(1-m)); p(κ) ∝ κ^(-3/2), times κ
            // for the log spacing.
            let prior = (m * (1.0 - m)).ln() - 0.5 * kappa.ln();
            grid.push((a, b));
            log_w.push(ll + prior);
        }
    }
    let w = normalised(&log_w);
    let posts = counts
        .iter()
        .map(|&(s, n)| {
            let (mut m1, mut m2) = (0.0, 0.0);
            for (&(a, b), &wg) in grid.iter().zip(&w) {
                if wg < 1e-12 {
                    continue;
                }
                let (pa, total) = (a + s, a + b + n);
                m1 += wg * pa / total;
                m2 += wg * pa * (pa + 1.0) / (total * (total + 1.0));
            }
            BetaPosterior::from_moments(m1, m2)
        })
        .collect();
    let (mut mean, mut log_kappa) = (0.0, 0.0);
    for (&(a, b), &wg) in grid.iter().zip(&w) {
        mean += wg * a / (a + b);
        log_kappa += wg * (a + b).ln();
    }
    (
        posts,
        Some(FittedPrior {
            mean,
            weight: log_kappa.exp(),
        }),
    )
}

impl Posteriors {
    /// The posterior expected score under `priority` of each model in `set` (indices into
    /// [`Posteriors::models`]), aligned with `set`, and whether quality counted (balanced
    /// weighs speed and reliability 50/50 when no model in `set` has its own scores).
    /// Speed compares estimated medians: `min p50 / p50` of `exp(mean log p50)`. A model
    /// without the figure a priority needs scores 0.
    pub fn expected_scores(&self, priority: Priority, set: &[usize]) -> (Vec<f64>, bool) {
        let any_quality = set.iter().any(|&i| self.models[i].quality_observed);
        let min_log = set
            .iter()
            .filter_map(|&i| self.models[i].log_p50_ms.map(|l| l.mean))
            .fold(f64::INFINITY, f64::min);
        let scores = set
            .iter()
            .map(|&i| {
                let m = &self.models[i];
                let speed = m
                    .log_p50_ms
                    .map_or(0.0, |l| (min_log - l.mean).exp().min(1.0));
                let quality = m.quality.map_or(0.0, |q| quality_score(q.mean));
                let reliability = m.success_rate.mean();
                combine(priority, any_quality, speed, quality, reliability)
            })
            .collect();
        (scores, any_quality)
    }

    /// One joint draw from the posteriors: each model's score under `priority` if its true
    /// values were the drawn ones, aligned with `set`. Thompson sampling picks the argmax.
    pub fn draw_scores(
        &self,
        priority: Priority,
        set: &[usize],
        rng: &mut Xoshiro256PlusPlus,
    ) -> Vec<f64> {
        let all: Vec<bool> = vec![true; set.len()];
        let mut out = vec![f64::NEG_INFINITY; set.len()];
        let samplers = self.samplers(set);
        self.draw_into(priority, set, &all, &samplers, rng, &mut out);
        out
    }

    /// The posterior probability that each model in `set` is truly the best under
    /// `priority`, by [`DRAWS`] seeded draws (so the same data gives the same answer).
    /// Models too far behind to win are not drawn and get 0.
    pub fn win_probabilities(&self, priority: Priority, set: &[usize]) -> Vec<f64> {
        if set.len() <= 1 {
            return vec![1.0; set.len()];
        }
        let contenders = self.contenders(priority, set);
        let samplers = self.samplers(set);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED ^ priority as u64);
        let mut wins = vec![0u32; set.len()];
        let mut scores = vec![f64::NEG_INFINITY; set.len()];
        for _ in 0..DRAWS {
            self.draw_into(priority, set, &contenders, &samplers, &mut rng, &mut scores);
            let best = (0..set.len())
                .filter(|&j| contenders[j])
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)));
            if let Some(best) = best {
                wins[best] += 1;
            }
        }
        wins.into_iter()
            .map(|w| f64::from(w) / DRAWS as f64)
            .collect()
    }

    /// A beta sampler per model of `set` (built once, drawn from many times).
    fn samplers(&self, set: &[usize]) -> Vec<Option<Beta<f64>>> {
        set.iter()
            .map(|&i| {
                let r = self.models[i].success_rate;
                Beta::new(r.alpha, r.beta).ok()
            })
            .collect()
    }

    /// Which models of `set` could be the best: those whose expected score is within
    /// [`CONTENDER_SDS`] standard deviations (theirs plus the leader's) of the leader's.
    fn contenders(&self, priority: Priority, set: &[usize]) -> Vec<bool> {
        let (means, any_quality) = self.expected_scores(priority, set);
        let min_log_sd = set
            .iter()
            .filter_map(|&i| self.models[i].log_p50_ms)
            .min_by(|a, b| a.mean.total_cmp(&b.mean))
            .map_or(0.0, |l| l.sd);
        let sds: Vec<f64> = set
            .iter()
            .zip(&means)
            .map(|(&i, &mean)| {
                let m = &self.models[i];
                let log_sd = m.log_p50_ms.map_or(0.0, |l| l.sd);
                let q_sd = m.quality.map_or(0.0, |q| q.sd / 4.0);
                let r_sd = m.success_rate.sd();
                match priority {
                    // On the score's scale near the leader; the log sd bounds the ratio's.
                    // Efficient is scored from measured cost (scoring::efficiency_scores);
                    // its posterior stand-in is speed's.
                    Priority::Speed | Priority::Efficient => mean.max(1e-9) * (log_sd + min_log_sd),
                    Priority::Quality => q_sd,
                    Priority::Reliable => r_sd,
                    Priority::Balanced => {
                        let w = if any_quality {
                            BALANCED_WEIGHTS
                        } else {
                            BALANCED_WEIGHTS_WITHOUT_QUALITY
                        };
                        let speed = mean.max(1e-9);
                        ((w.speed * speed * (log_sd + min_log_sd)).powi(2)
                            + (w.quality * q_sd).powi(2)
                            + (w.reliability * r_sd).powi(2))
                        .sqrt()
                    }
                }
            })
            .collect();
        let lead = (0..set.len())
            .max_by(|&a, &b| means[a].total_cmp(&means[b]))
            .unwrap_or(0);
        let floor = means[lead] - CONTENDER_SDS * sds[lead];
        means
            .iter()
            .zip(&sds)
            .map(|(&mean, &sd)| mean + CONTENDER_SDS * sd >= floor)
            .collect()
    }

    /// Draws the scores of the models `active` marks into `out` (others are left alone).
    /// Balanced draws every model's speed, since the fastest sets the scale.
    fn draw_into(
        &self,
        priority: Priority,
        set: &[usize],
        active: &[bool],
        samplers: &[Option<Beta<f64>>],
        rng: &mut Xoshiro256PlusPlus,
        out: &mut [f64],
    ) {
        match priority {
            Priority::Speed | Priority::Efficient => {
                for (j, &i) in set.iter().enumerate() {
                    if active[j] {
                        // Lower log time is better: the negative orders the same way.
                        out[j] = self.models[i]
                            .log_p50_ms
                            .map_or(f64::NEG_INFINITY, |l| -l.draw(rng));
                    }
                }
            }
            Priority::Quality => {
                for (j, &i) in set.iter().enumerate() {
                    if active[j] {
                        out[j] = self.models[i]
                            .quality
                            .map_or(f64::NEG_INFINITY, |q| q.draw(rng));
                    }
                }
            }
            Priority::Reliable => {
                for (j, sampler) in samplers.iter().enumerate() {
                    if active[j] {
                        out[j] = sampler.map_or(0.0, |b| b.sample(rng));
                    }
                }
            }
            Priority::Balanced => {
                let any_quality = set.iter().any(|&i| self.models[i].quality_observed);
                let logs: Vec<Option<f64>> = set
                    .iter()
                    .map(|&i| self.models[i].log_p50_ms.map(|l| l.draw(rng)))
                    .collect();
                let min_log = logs.iter().flatten().copied().fold(f64::INFINITY, f64::min);
                for (j, &i) in set.iter().enumerate() {
                    if !active[j] {
                        continue;
                    }
                    let m = &self.models[i];
                    let speed = logs[j].map_or(0.0, |l| (min_log - l).exp());
                    let quality = m.quality.map_or(0.0, |q| quality_score(q.draw(rng)));
                    let reliability = samplers[j].map_or(0.0, |b| b.sample(rng));
                    out[j] = combine(priority, any_quality, speed, quality, reliability);
                }
            }
        }
    }
}

/// A mean quality on the 1 to 5 scale as a `0..=1` score.
pub(crate) fn quality_score(quality: f64) -> f64 {
    ((quality - 1.0) / 4.0).clamp(0.0, 1.0)
}

/// The priority's score from the three component scores.
pub(crate) fn combine(
    priority: Priority,
    any_quality: bool,
    speed: f64,
    quality: f64,
    reliability: f64,
) -> f64 {
    match priority {
        Priority::Speed | Priority::Efficient => speed,
        Priority::Quality => quality,
        Priority::Reliable => reliability,
        Priority::Balanced => {
            let w = if any_quality {
                BALANCED_WEIGHTS
            } else {
                BALANCED_WEIGHTS_WITHOUT_QUALITY
            };
            w.speed * speed + w.quality * quality + w.reliability * reliability
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(model: &str, total: u64, ok: u64, p50: f64) -> ModelSummary {
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

    fn scored(model: &str, n: u64, avg: f64, sd: f64) -> ModelSummary {
        ModelSummary {
            quality_avg: Some(avg),
            quality_variance: Some(sd * sd),
            scored_operations: n,
            ..summary(model, n, n, 1000.0)
        }
    }

    fn quality_of(p: &Posteriors, i: usize) -> NormalPosterior {
        p.models[i].quality.unwrap()
    }

    #[test]
    fn shrinkage_follows_the_noise_and_the_spread() {
        // Thin model (5 scores at 4.6) beside thick ones at 4.0 and 3.0.
        let fit = |sd: f64| {
            let s = [
                scored("thin", 5, 4.6, sd),
                scored("a", 200, 4.0, sd),
                scored("b", 200, 3.0, sd),
            ];
            posteriors(&s.iter().collect::<Vec<_>>())
        };
        let consistent = fit(0.3);
        let noisy = fit(1.5);
        let (c, n) = (quality_of(&consistent, 0), quality_of(&noisy, 0));
        assert!(c.mean > 4.5, "{c:?}");
        assert!(n.mean < c.mean - 0.1, "noisy {n:?}, consistent {c:?}");
        assert!(n.sd > c.sd);
        // Thick models barely move either way.
        assert!((quality_of(&noisy, 1).mean - 4.0).abs() < 0.05);
        // The fitted weight is small for consistent scores, large for noisy ones.
        let (wc, wn) = (
            consistent.quality_prior.unwrap().weight,
            noisy.quality_prior.unwrap().weight,
        );
        assert!(wc < 1.0 && wn > 2.0 * wc, "{wc} {wn}");
    }

    #[test]
    fn one_model_keeps_its_own_figures() {
        let s = scored("only", 20, 4.2, 0.5);
        let p = posteriors(&[&s]);
        assert!((quality_of(&p, 0).mean - 4.2).abs() < 1e-9);
        assert!((p.models[0].log_p50_ms.unwrap().mean - 1000f64.ln()).abs() < 1e-9);
        let rate = p.models[0].success_rate.mean();
        assert!(rate > 0.85 && rate <= 1.0, "{rate}");
        assert_eq!(p.win_probabilities(Priority::Quality, &[0]), [1.0]);
    }

    #[test]
    fn an_unscored_model_gets_the_population() {
        let s = [
            scored("a", 50, 4.0, 0.7),
            scored("b", 50, 3.0, 0.7),
            summary("c", 50, 50, 1.0),
        ];
        let p = posteriors(&s.iter().collect::<Vec<_>>());
        assert!(!p.models[2].quality_observed);
        let q = quality_of(&p, 2);
        assert!((q.mean - 3.5).abs() < 0.05, "{q:?}");
        assert!(q.sd > quality_of(&p, 0).sd);
        let none = posteriors(&[&summary("x", 5, 5, 1.0)]);
        assert_eq!(none.models[0].quality, None);
        assert_eq!(none.quality_prior, None);
    }

    #[test]
    fn success_rates_shrink_toward_the_candidates() {
        let s = [
            summary("new", 3, 3, 1.0),
            summary("a", 100, 90, 1.0),
            summary("b", 100, 95, 1.0),
            summary("c", 100, 92, 1.0),
        ];
        let p = posteriors(&s.iter().collect::<Vec<_>>());
        // 3 of 3 ranks above 90 of 100, below 95 of 100, and is the least certain.
        let new = p.models[0].success_rate;
        assert!(new.mean() > p.models[1].success_rate.mean(), "{new:?}");
        assert!(new.mean() < p.models[2].success_rate.mean(), "{new:?}");
        assert!(new.sd() > p.models[1].success_rate.sd());
        let prior = p.success_rate_prior.unwrap();
        assert!(prior.mean > 0.85 && prior.mean < 0.95, "{prior:?}");
        // Observed rates with much data stay put.
        assert!((p.models[2].success_rate.mean() - 0.95).abs() < 0.02);
    }

    #[test]
    fn win_probabilities_sum_to_one_and_repeat() {
        let s = [
            scored("a", 30, 4.0, 0.7),
            scored("b", 30, 4.1, 0.7),
            scored("c", 300, 2.0, 0.7),
        ];
        let p = posteriors(&s.iter().collect::<Vec<_>>());
        for priority in Priority::ALL {
            let w = p.win_probabilities(priority, &[0, 1, 2]);
            assert!(
                (w.iter().sum::<f64>() - 1.0).abs() < 1e-9,
                "{priority}: {w:?}"
            );
            assert_eq!(w, p.win_probabilities(priority, &[0, 1, 2]));
        }
        let w = p.win_probabilities(Priority::Quality, &[0, 1, 2]);
        assert!(w[1] > w[0] && w[0] > 0.2, "{w:?}");
        assert_eq!(w[2], 0.0, "far behind, not even drawn");
    }

    #[test]
    fn thompson_draws_follow_the_posterior() {
        let s = [scored("a", 30, 4.0, 0.7), scored("b", 30, 3.0, 0.7)];
        let p = posteriors(&s.iter().collect::<Vec<_>>());
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut a_wins = 0;
        for _ in 0..1000 {
            let d = p.draw_scores(Priority::Quality, &[0, 1], &mut rng);
            assert_eq!(d.len(), 2);
            a_wins += usize::from(d[0] > d[1]);
        }
        assert!(a_wins > 950, "{a_wins}");
    }
}
