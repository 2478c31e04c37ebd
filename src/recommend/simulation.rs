//! Simulated ground truth: scenarios of models whose true speed, quality and reliability are
//! known, their calls generated from that truth, summarised by the same
//! [`model_summary`] the API uses and handed to [`recommend`]. Each pick is compared with
//! the true best, side by side with the earlier system's plain rule (lowest mean time,
//! highest mean quality, highest success rate, the 30/40/30 composite of those).
//!
//! `cargo bench --bench truth` runs the full study (docs/recommendation.md has its method
//! and results); the test suite runs a small one. Seeded: the same seed gives the same
//! numbers.

use std::fmt::Write as _;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::scoring::recommend;
use super::types::{BALANCED_WEIGHTS, Candidate, Priority, RecommendParams};
use crate::stats::{Filter, Sample, model_summary};

/// A family of scenarios.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Family {
    /// The issue's: 3 to 5 models; true median 100 ms to 5 s (log-uniform) with log-normal
    /// noise and 2% cold loads of 20 to 60 s; success 0.85 to 1; mean quality 2.5 to 4.8
    /// with per-call noise of the given sd; 3 to 200 calls per model.
    Standard {
        /// Per-call quality noise (sd).
        quality_sd: f64,
    },
    /// Close races: medians 0.8 to 1.2 s, quality 3.8 to 4.2 (sd 0.7), success 0.95 to 1.
    CloseRace,
    /// One model with 1,000 to 5,000 calls beside 2 to 4 new ones with 3 to 30 each; truth
    /// as in the standard family (quality sd 0.7).
    VeteranAndNewcomers,
}

impl Family {
    /// A short name for tables.
    pub fn name(self) -> String {
        match self {
            Family::Standard { quality_sd } => format!("standard, quality sd {quality_sd}"),
            Family::CloseRace => "close races".to_owned(),
            Family::VeteranAndNewcomers => "veteran beside newcomers".to_owned(),
        }
    }
}

/// A model's truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrueModel {
    /// Median processing time of a call, ms (without cold loads).
    pub median_ms: f64,
    /// Probability that a call succeeds.
    pub success: f64,
    /// Mean quality score before clamping to 1..5 (clamping keeps the order).
    pub quality: f64,
}

/// Per-call log-normal noise of the processing time.
const LOG_TIME_NOISE_SD: f64 = 0.3;
/// Share of calls that hit a cold load.
const COLD_LOAD_SHARE: f64 = 0.02;

/// One generated scenario: the truth and each model's calls.
struct Scenario {
    truth: Vec<TrueModel>,
    calls: Vec<Vec<Sample>>,
}

fn log_uniform(rng: &mut Xoshiro256PlusPlus, lo: f64, hi: f64) -> f64 {
    rng.random_range(lo.ln()..hi.ln()).exp()
}

fn generate(family: Family, rng: &mut Xoshiro256PlusPlus) -> Scenario {
    let k = rng.random_range(3..=5usize);
    let mut truth = Vec::with_capacity(k);
    let mut sizes = Vec::with_capacity(k);
    let quality_sd = match family {
        Family::Standard { quality_sd } => quality_sd,
        _ => 0.7,
    };
    for i in 0..k {
        let model = match family {
            Family::CloseRace => TrueModel {
                median_ms: log_uniform(rng, 800.0, 1200.0),
                success: rng.random_range(0.95..1.0),
                quality: rng.random_range(3.8..4.2),
            },
            _ => TrueModel {
                median_ms: log_uniform(rng, 100.0, 5000.0),
                success: rng.random_range(0.85..1.0),
                quality: rng.random_range(2.5..4.8),
            },
        };
        truth.push(model);
        sizes.push(match family {
            Family::VeteranAndNewcomers if i == 0 => rng.random_range(1000..=5000usize),
            Family::VeteranAndNewcomers => rng.random_range(3..=30usize),
            _ => rng.random_range(3..=200usize),
        });
    }
    let calls = truth
        .iter()
        .zip(&sizes)
        .map(|(t, &n)| {
            (0..n)
                .map(|c| {
                    let success = rng.random_bool(t.success);
                    let z: f64 = StandardNormal.sample(rng);
                    let time = if rng.random_bool(COLD_LOAD_SHARE) {
                        rng.random_range(20_000.0..60_000.0)
                    } else {
                        t.median_ms * (LOG_TIME_NOISE_SD * z).exp()
                    };
                    let mut s = Sample::new(c as i64, 0, success, time as f32);
                    if success {
                        let z: f64 = StandardNormal.sample(rng);
                        s.quality_score = (t.quality + quality_sd * z).clamp(1.0, 5.0) as f32;
                    }
                    s
                })
                .collect()
        })
        .collect();
    Scenario { truth, calls }
}

/// The earlier system's figures of one model: plain means.
struct Plain {
    mean_ms: Option<f64>,
    quality: Option<f64>,
    success_rate: f64,
}

fn plain(calls: &[Sample]) -> Plain {
    let ok: Vec<&Sample> = calls.iter().filter(|s| s.success).collect();
    let mean = |v: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        (n > 0).then(|| sum / n as f64)
    };
    Plain {
        mean_ms: mean(&mut ok.iter().map(|s| f64::from(s.processing_time_ms))),
        quality: mean(
            &mut calls
                .iter()
                .filter(|s| !s.quality_score.is_nan())
                .map(|s| f64::from(s.quality_score)),
        ),
        success_rate: ok.len() as f64 / calls.len().max(1) as f64,
    }
}

/// The plain rule's pick among `eligible`; first index wins ties.
fn plain_pick(priority: Priority, figures: &[Plain], eligible: &[usize]) -> Option<usize> {
    let min_mean = eligible
        .iter()
        .filter_map(|&i| figures[i].mean_ms)
        .fold(f64::INFINITY, f64::min);
    let score = |i: usize| {
        let f = &figures[i];
        let speed = f.mean_ms.map_or(0.0, |m| min_mean / m);
        let quality = f.quality.map_or(0.0, |q| (q - 1.0) / 4.0);
        match priority {
            // Efficient is not simulated (it is scored from measured cost); speed stands in.
            Priority::Speed | Priority::Efficient => speed,
            Priority::Quality => quality,
            Priority::Reliable => f.success_rate,
            Priority::Balanced => {
                let w = BALANCED_WEIGHTS;
                w.speed * speed + w.quality * quality + w.reliability * f.success_rate
            }
        }
    };
    eligible
        .iter()
        .copied()
        .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
}

/// The true score of each eligible model under `priority` (higher better), in the unit its
/// regret is reported in: speed as minus the percentage by which a model is slower than
/// the fastest, quality in points, reliability in percentage points, balanced in
/// hundredths of the balanced score.
fn true_scores(priority: Priority, truth: &[TrueModel], eligible: &[usize]) -> Vec<f64> {
    let fastest = eligible
        .iter()
        .map(|&i| truth[i].median_ms)
        .fold(f64::INFINITY, f64::min);
    eligible
        .iter()
        .map(|&i| {
            let t = truth[i];
            match priority {
                Priority::Speed | Priority::Efficient => -100.0 * (t.median_ms / fastest - 1.0),
                Priority::Quality => t.quality,
                Priority::Reliable => 100.0 * t.success,
                Priority::Balanced => {
                    let w = BALANCED_WEIGHTS;
                    100.0
                        * (w.speed * fastest / t.median_ms
                            + w.quality * (t.quality - 1.0) / 4.0
                            + w.reliability * t.success)
                }
            }
        })
        .collect()
}

/// The tally of one rule.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Scenarios decided.
    pub scenarios: usize,
    /// Of which the pick was the true best.
    pub hits: usize,
    /// Sum of regrets (true best's score minus the pick's).
    pub regret_sum: f64,
}

impl Tally {
    /// Share of picks that were the true best, 0 to 1.
    pub fn accuracy(&self) -> f64 {
        self.hits as f64 / self.scenarios.max(1) as f64
    }

    /// Mean regret, in the priority's unit.
    pub fn mean_regret(&self) -> f64 {
        self.regret_sum / self.scenarios.max(1) as f64
    }
}

/// Both rules over one family and priority.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The family.
    pub family: Family,
    /// The priority.
    pub priority: Priority,
    /// ollameter's recommendation.
    pub ours: Tally,
    /// The earlier system's plain rule.
    pub plain: Tally,
    /// Sum over scenarios of ollameter's regret minus the plain rule's.
    pub difference_sum: f64,
    /// Sum of the squares of those differences.
    pub difference_squares: f64,
}

impl Outcome {
    /// Mean regret difference, ollameter minus plain (negative: ollameter better), and two
    /// standard errors of it (the paired difference over the same scenarios).
    pub fn difference(&self) -> (f64, f64) {
        let n = self.ours.scenarios.max(2) as f64;
        let mean = self.difference_sum / n;
        let var = (self.difference_squares / n - mean * mean).max(0.0) * n / (n - 1.0);
        (mean, 2.0 * (var / n).sqrt())
    }
}

/// A reported confidence and whether the pick was right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Call {
    /// The priority asked.
    pub priority: Priority,
    /// The reported confidence of the pick.
    pub confidence: f64,
    /// Whether the pick was the true best.
    pub hit: bool,
}

/// A study's results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Study {
    /// One per family and priority.
    pub outcomes: Vec<Outcome>,
    /// Every pick with its confidence, for calibration.
    pub calls: Vec<Call>,
}

/// Runs `scenarios` scenarios of each family under each of `priorities`, seeded by `seed`
/// (the scenarios do not depend on which priorities are asked).
pub fn run(families: &[Family], priorities: &[Priority], scenarios: usize, seed: u64) -> Study {
    let mut study = Study::default();
    for (f, &family) in families.iter().enumerate() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed.wrapping_add(f as u64));
        let mut tallies = vec![(Tally::default(), Tally::default()); priorities.len()];
        let mut differences = vec![(0.0, 0.0); priorities.len()];
        for _ in 0..scenarios {
            let scenario = generate(family, &mut rng);
            let summaries: Vec<_> = scenario
                .calls
                .iter()
                .enumerate()
                .map(|(i, c)| model_summary(&format!("m{i}"), c, &Filter::default()))
                .collect();
            let figures: Vec<Plain> = scenario.calls.iter().map(|c| plain(c)).collect();
            let candidates: Vec<Candidate> = summaries
                .iter()
                .flatten()
                .cloned()
                .map(Candidate::new)
                .collect();
            for (p, &priority) in priorities.iter().enumerate() {
                // Eligible for both rules: a successful call, and a score for quality.
                let eligible: Vec<usize> = (0..scenario.truth.len())
                    .filter(|&i| {
                        figures[i].mean_ms.is_some()
                            && (priority != Priority::Quality || figures[i].quality.is_some())
                    })
                    .collect();
                if eligible.is_empty() {
                    continue;
                }
                let truth = true_scores(priority, &scenario.truth, &eligible);
                let best = truth.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let params = RecommendParams {
                    priority,
                    min_operations: 1,
                    ..RecommendParams::default()
                };
                let answer = recommend(&candidates, &params);
                let ours = answer
                    .recommended_model
                    .as_deref()
                    .and_then(|m| m.strip_prefix('m'))
                    .and_then(|i| i.parse::<usize>().ok());
                let plain = plain_pick(priority, &figures, &eligible);
                let (ours_tally, plain_tally) = &mut tallies[p];
                let mut regrets = [0.0; 2];
                for (k, (tally, pick)) in [(ours_tally, ours), (plain_tally, plain)]
                    .into_iter()
                    .enumerate()
                {
                    let value = pick
                        .and_then(|i| eligible.iter().position(|&e| e == i))
                        .map_or(f64::NEG_INFINITY, |j| truth[j]);
                    tally.scenarios += 1;
                    tally.hits += usize::from(value == best);
                    tally.regret_sum += best - value;
                    regrets[k] = best - value;
                }
                let d = regrets[0] - regrets[1];
                differences[p].0 += d;
                differences[p].1 += d * d;
                if let (Some(confidence), Some(i)) = (answer.confidence, ours) {
                    let hit = eligible
                        .iter()
                        .position(|&e| e == i)
                        .is_some_and(|j| truth[j] == best);
                    study.calls.push(Call {
                        priority,
                        confidence,
                        hit,
                    });
                }
            }
        }
        for (p, &priority) in priorities.iter().enumerate() {
            study.outcomes.push(Outcome {
                family,
                priority,
                ours: tallies[p].0,
                plain: tallies[p].1,
                difference_sum: differences[p].0,
                difference_squares: differences[p].1,
            });
        }
    }
    study
}

/// The edges of the calibration bins.
pub const CALIBRATION_BINS: [f64; 8] = [0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// A calibration bin: picks whose confidence fell in `[low, high)` (the last includes 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    /// Lower edge.
    pub low: f64,
    /// Upper edge.
    pub high: f64,
    /// Picks in the bin.
    pub picks: usize,
    /// Their mean reported confidence.
    pub mean_confidence: f64,
    /// The share that were the true best.
    pub hit_rate: f64,
}

/// Reported confidence against observed hit rate, by bin.
pub fn calibration(calls: &[Call]) -> Vec<Bin> {
    CALIBRATION_BINS
        .windows(2)
        .map(|edge| {
            let (low, high) = (edge[0], edge[1]);
            let inside: Vec<&Call> = calls
                .iter()
                .filter(|c| {
                    c.confidence >= low
                        && (c.confidence < high || (high == 1.0 && c.confidence <= 1.0))
                })
                .collect();
            let n = inside.len().max(1) as f64;
            Bin {
                low,
                high,
                picks: inside.len(),
                mean_confidence: inside.iter().map(|c| c.confidence).sum::<f64>() / n,
                hit_rate: inside.iter().filter(|c| c.hit).count() as f64 / n,
            }
        })
        .collect()
}

/// The study as Markdown tables: accuracy and regret per family and priority, then
/// calibration.
pub fn report(study: &Study) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| family | priority | scenarios | ollameter picks the true best | plain rule | mean regret, ollameter / plain | regret difference ± 2 SE |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for o in &study.outcomes {
        let unit = match o.priority {
            Priority::Speed | Priority::Efficient => "% slower",
            Priority::Quality => "quality points",
            Priority::Reliable => "success points",
            Priority::Balanced => "balanced points (of 100)",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} % | {:.1} % | {:.4} / {:.4} {unit} | {:+.4} ± {:.4} |",
            o.family.name(),
            o.priority,
            o.ours.scenarios,
            100.0 * o.ours.accuracy(),
            100.0 * o.plain.accuracy(),
            o.ours.mean_regret(),
            o.plain.mean_regret(),
            o.difference().0,
            o.difference().1
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| reported confidence | picks | mean reported | observed: the true best |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for b in calibration(&study.calls) {
        let _ = writeln!(
            out,
            "| {:.0}–{:.0} % | {} | {:.1} % | {:.1} % |",
            100.0 * b.low,
            100.0 * b.high,
            b.picks,
            100.0 * b.mean_confidence,
            100.0 * b.hit_rate
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The suite's small study: on every priority and family, ollameter's pick has no more
    /// regret than the plain rule and is right at least as often (within 1.5 points for
    /// quality, where the plain mean is close to the best any rule can do). Seeded, so the
    /// numbers are the same on every run.
    #[test]
    fn no_priority_is_worse_than_the_plain_rule() {
        let families = [
            Family::Standard { quality_sd: 0.7 },
            Family::Standard { quality_sd: 1.5 },
            Family::CloseRace,
            Family::VeteranAndNewcomers,
        ];
        let study = run(&families, &Priority::POSTERIOR, 40, 11);
        for priority in Priority::POSTERIOR {
            let (mut ours, mut plain) = (Tally::default(), Tally::default());
            for o in study.outcomes.iter().filter(|o| o.priority == priority) {
                ours.scenarios += o.ours.scenarios;
                ours.hits += o.ours.hits;
                ours.regret_sum += o.ours.regret_sum;
                plain.scenarios += o.plain.scenarios;
                plain.hits += o.plain.hits;
                plain.regret_sum += o.plain.regret_sum;
            }
            let slack = if priority == Priority::Quality {
                0.015
            } else {
                0.0
            };
            assert!(
                ours.accuracy() + slack >= plain.accuracy(),
                "{priority}: {ours:?} against {plain:?}\n{}",
                report(&study)
            );
            assert!(
                ours.mean_regret() <= plain.mean_regret() + 1e-9,
                "{priority}: {ours:?} against {plain:?}\n{}",
                report(&study)
            );
        }
        // Same seed, same numbers.
        let once = run(&families[..1], &Priority::POSTERIOR, 5, 11);
        assert_eq!(once, run(&families[..1], &Priority::POSTERIOR, 5, 11));
        // Asking fewer priorities does not change the scenarios.
        let quality = run(&families[..1], &[Priority::Quality], 5, 11);
        assert_eq!(quality.outcomes[0], once.outcomes[1]);
    }

    #[test]
    fn calibration_bins_cover_every_call() {
        let calls = [
            Call {
                priority: Priority::Speed,
                confidence: 1.0,
                hit: true,
            },
            Call {
                priority: Priority::Speed,
                confidence: 0.85,
                hit: false,
            },
            Call {
                priority: Priority::Speed,
                confidence: 0.0,
                hit: false,
            },
        ];
        let bins = calibration(&calls);
        assert_eq!(bins.iter().map(|b| b.picks).sum::<usize>(), 3);
        let last = bins.last().unwrap();
        assert_eq!((last.picks, last.hit_rate), (1, 1.0));
        let text = report(&Study {
            outcomes: Vec::new(),
            calls: calls.to_vec(),
        });
        assert!(
            text.contains("| 90–100 % | 1 | 100.0 % | 100.0 % |"),
            "{text}"
        );
    }
}
