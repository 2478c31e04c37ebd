//! The robust latency fit of one model (pure): processing time as a linear function of
//! prompt and output tokens, fitted on warm calls by iteratively reweighted least squares
//! (Huber's weights, then Tukey's bisquare), with cold loads measured apart as the extra time over the
//! warm line. Intervals come from the quantiles of the residuals. docs/analytics.md has the
//! method and why.

use serde::{Deserialize, Serialize};

/// A call whose `load_duration_ms` is at least this was a cold start (the model was
/// loaded, or the call queued behind others for as long): warm calls report a few ms to a
/// few tens of ms of load, a load from disk takes seconds.
pub const COLD_LOAD_MS: f64 = 500.0;

/// Fewest warm calls a fit needs: three coefficients, and enough residuals that their
/// p10 and p90 are not simply the extremes of a handful.
pub const MIN_WARM_CALLS: usize = 10;

/// At most this many of a model's newest calls are fitted: enough for stable coefficients
/// and quantiles, few enough that a fit costs well under a millisecond, and recent enough
/// to follow a changed setup (new GPU, new quantisation).
pub const MAX_FIT_CALLS: usize = 2_000;

/// Huber's tuning constant, in robust standard deviations: 95% efficiency when the noise is
/// normal, while a call far off the line (a queued call, a stalled stream) weighs only as
/// much as one this far.
const HUBER_K: f64 = 1.345;

/// Tukey's bisquare constant, in robust standard deviations: 95% efficiency under normal
/// noise; a residual beyond it gets no weight.
const BISQUARE_C: f64 = 4.685;

/// How a round of IRLS weighs a residual of `u` robust standard deviations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weighting {
    Huber,
    Bisquare,
}

impl Weighting {
    fn weight(self, u: f64) -> f64 {
        match self {
            Weighting::Huber => {
                if u <= HUBER_K {
                    1.0
                } else {
                    HUBER_K / u
                }
            }
            Weighting::Bisquare => {
                if u >= BISQUARE_C {
                    0.0
                } else {
                    (1.0 - (u / BISQUARE_C).powi(2)).powi(2)
                }
            }
        }
    }
}

/// IRLS stops when no coefficient moves by more than this share of the time scale.
const TOLERANCE: f64 = 1e-9;

/// IRLS never runs more rounds than this (it converges in a handful).
const MAX_ROUNDS: usize = 100;

/// The residual quantiles that bound the interval: p10 to p90, an 80% interval.
pub const INTERVAL: (f64, f64) = (0.10, 0.90);

/// One call, as the fit sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Prompt tokens.
    pub prompt_tokens: f64,
    /// Output tokens.
    pub output_tokens: f64,
    /// Processing time at the proxy, ms.
    pub time_ms: f64,
    /// Whether the call started cold (see [`COLD_LOAD_MS`]).
    pub cold: bool,
}

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// Too few warm calls with token counts.
    #[error(
        "{have} warm successful calls with prompt and output token counts; the fit needs at least {need}"
    )]
    TooFew {
        /// Warm calls usable.
        have: usize,
        /// Calls needed ([`MIN_WARM_CALLS`]).
        need: usize,
    },
}

/// A fitted model: `time_ms = intercept + per_prompt·prompt + per_output·output` warm, plus
/// `cold_load_ms` when cold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LatencyFit {
    /// Fixed time per call, ms.
    pub intercept_ms: f64,
    /// Time per prompt token, ms (prompt processing).
    pub ms_per_prompt_token: f64,
    /// Time per output token, ms (generation).
    pub ms_per_output_token: f64,
    /// Median extra time of a cold call over the warm line, ms; null when no cold call
    /// was measured.
    pub cold_load_ms: Option<f64>,
    /// Warm calls fitted.
    pub warm_calls: usize,
    /// Cold calls measured.
    pub cold_calls: usize,
    /// Mean absolute residual of the warm calls, ms: the fit's typical error.
    pub mean_absolute_error_ms: f64,
    /// p10 and p90 of the warm residuals, ms: added to a warm prediction they give its
    /// 80% interval.
    pub residual_p10_ms: f64,
    /// See `residual_p10_ms`.
    pub residual_p90_ms: f64,
    /// p10 and p90 of the cold calls' extra time over the warm line, ms.
    pub cold_extra_p10_ms: Option<f64>,
    /// See `cold_extra_p10_ms`.
    pub cold_extra_p90_ms: Option<f64>,
    /// The median prompt tokens of the warm calls fitted: the typical prompt.
    pub median_prompt_tokens: u64,
    /// Regressors that did not vary among the calls, so their coefficient is 0 and the
    /// intercept holds their effect at the value seen (e.g. every call had 0 prompt tokens).
    pub not_varied: Vec<String>,
}

/// A prediction with its 80% interval, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prediction {
    /// The predicted processing time.
    pub predicted_ms: f64,
    /// The low end of the interval (p10).
    pub low_ms: f64,
    /// The high end of the interval (p90).
    pub high_ms: f64,
}

impl LatencyFit {
    /// The warm line at these token counts.
    pub fn warm_line(&self, prompt_tokens: f64, output_tokens: f64) -> f64 {
        self.intercept_ms
            + self.ms_per_prompt_token * prompt_tokens
            + self.ms_per_output_token * output_tokens
    }

    /// The prediction for a call of these token counts, cold or warm; `None` for a cold
    /// call when no cold load was measured. Never below zero.
    pub fn predict(
        &self,
        prompt_tokens: f64,
        output_tokens: f64,
        cold: bool,
    ) -> Option<Prediction> {
        let line = self.warm_line(prompt_tokens, output_tokens);
        let (center, low, high) = if cold {
            let load = self.cold_load_ms?;
            (
                line + load,
                line + self.cold_extra_p10_ms.unwrap_or(load),
                line + self.cold_extra_p90_ms.unwrap_or(load),
            )
        } else {
            (
                line,
                line + self.residual_p10_ms,
                line + self.residual_p90_ms,
            )
        };
        Some(Prediction {
            predicted_ms: round3(center.max(0.0)),
            low_ms: round3(low.max(0.0)),
            high_ms: round3(high.max(center).max(0.0)),
        })
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The `p`-quantile (0..=1) of `values` by linear interpolation (numpy's default); sorts.
fn quantile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = p.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let k = rank.floor() as usize;
    let next = values.get(k + 1).copied().unwrap_or(values[k]);
    values[k] + (rank - k as f64) * (next - values[k])
}

/// Solves the symmetric `n × n` system `a·x = b` by Gaussian elimination with partial
/// pivoting; `None` when it is singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col].clone();
        for row in col + 1..n {
            let f = a[row][col] / pivot_row[col];
            for (cell, p) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                *cell -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// Weighted least squares of `y` on `[1, columns...]`; `None` when singular.
fn weighted_least_squares(columns: &[Vec<f64>], y: &[f64], w: &[f64]) -> Option<Vec<f64>> {
    let p = columns.len() + 1;
    let x = |i: usize, j: usize| if j == 0 { 1.0 } else { columns[j - 1][i] };
    let mut a = vec![vec![0.0; p]; p];
    let mut b = vec![0.0; p];
    for i in 0..y.len() {
        for (j, (row, bj)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
            *bj += w[i] * x(i, j) * y[i];
            for (k, cell) in row.iter_mut().enumerate() {
                *cell += w[i] * x(i, j) * x(i, k);
            }
        }
    }
    solve(a, b)
}

/// Fits `points` (any order). Warm calls fit the line robustly; cold calls only measure
/// the load on top of it, so they never pull the warm line.
///
/// # Errors
/// [`FitError::TooFew`] below [`MIN_WARM_CALLS`] warm calls.
pub fn fit(points: &[Point]) -> Result<LatencyFit, FitError> {
    let warm: Vec<&Point> = points.iter().filter(|p| !p.cold).collect();
    if warm.len() < MIN_WARM_CALLS {
        return Err(FitError::TooFew {
            have: warm.len(),
            need: MIN_WARM_CALLS,
        });
    }
    let y: Vec<f64> = warm.iter().map(|p| p.time_ms).collect();
    // Centre and scale each regressor: the normal equations stay well conditioned when
    // prompts run to 100,000 tokens and times to 0.1 ms.
    let names = ["prompt_tokens", "output_tokens"];
    let raw: [Vec<f64>; 2] = [
        warm.iter().map(|p| p.prompt_tokens).collect(),
        warm.iter().map(|p| p.output_tokens).collect(),
    ];
    let mut used = Vec::new();
    let mut not_varied = Vec::new();
    let mut columns = Vec::new();
    for (j, values) in raw.iter().enumerate() {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        if sd <= 1e-9 * mean.abs().max(1.0) {
            not_varied.push(names[j].to_owned());
            continue;
        }
        used.push((j, mean, sd));
        columns.push(values.iter().map(|v| (v - mean) / sd).collect::<Vec<f64>>());
    }
    let mut weights = vec![1.0; y.len()];
    let mut beta = weighted_least_squares(&columns, &y, &weights).unwrap_or_else(|| {
        // Collinear regressors (prompt and output always in the same proportion): the
        // mean alone, which is what nothing better can be told from.
        let mut b = vec![0.0; columns.len() + 1];
        b[0] = y.iter().sum::<f64>() / y.len() as f64;
        b
    });
    let time_scale = y.iter().map(|v| v.abs()).fold(1.0, f64::max);
    let residuals = |beta: &[f64]| -> Vec<f64> {
        (0..y.len())
            .map(|i| {
                let fitted: f64 = beta[0]
                    + columns
                        .iter()
                        .enumerate()
                        .map(|(j, c)| beta[j + 1] * c[i])
                        .sum::<f64>();
                y[i] - fitted
            })
            .collect()
    };
    // Huber first (convex: it converges from least squares), then Tukey's bisquare from
    // there with the scale held: the bisquare gives a call far off the line (a stall, a
    // queue) no weight at all, where Huber still lets it pull the intercept a little.
    let mut scale = 0.0;
    for phase in [Weighting::Huber, Weighting::Bisquare] {
        for _ in 0..MAX_ROUNDS {
            let r = residuals(&beta);
            if phase == Weighting::Huber || scale == 0.0 {
                // The robust scale: the median absolute deviation, as a normal sd.
                let mut abs: Vec<f64> = r.iter().map(|v| v.abs()).collect();
                scale = (1.4826 * quantile(&mut abs, 0.5)).max(1e-9 * time_scale);
            }
            for (w, ri) in weights.iter_mut().zip(&r) {
                *w = phase.weight(ri.abs() / scale);
            }
            let Some(next) = weighted_least_squares(&columns, &y, &weights) else {
                break;
            };
            let moved = next
                .iter()
                .zip(&beta)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            beta = next;
            if moved <= TOLERANCE * time_scale {
                break;
            }
        }
    }
    // Back to the regressors' own units.
    let mut per = [0.0; 2];
    let mut intercept = beta[0];
    for (k, (j, mean, sd)) in used.iter().enumerate() {
        per[*j] = beta[k + 1] / sd;
        intercept -= per[*j] * mean;
    }
    let mut r = residuals(&beta);
    let mean_absolute_error_ms = r.iter().map(|v| v.abs()).sum::<f64>() / r.len() as f64;
    let residual_p10_ms = quantile(&mut r, INTERVAL.0);
    let residual_p90_ms = quantile(&mut r, INTERVAL.1);
    let mut fit = LatencyFit {
        intercept_ms: intercept,
        ms_per_prompt_token: per[0],
        ms_per_output_token: per[1],
        cold_load_ms: None,
        warm_calls: warm.len(),
        cold_calls: 0,
        mean_absolute_error_ms: round3(mean_absolute_error_ms),
        residual_p10_ms: round3(residual_p10_ms),
        residual_p90_ms: round3(residual_p90_ms),
        cold_extra_p10_ms: None,
        cold_extra_p90_ms: None,
        median_prompt_tokens: quantile(&mut raw[0].clone(), 0.5).round().max(0.0) as u64,
        not_varied,
    };
    let mut extras: Vec<f64> = points
        .iter()
        .filter(|p| p.cold)
        .map(|p| p.time_ms - fit.warm_line(p.prompt_tokens, p.output_tokens))
        .collect();
    if !extras.is_empty() {
        fit.cold_calls = extras.len();
        fit.cold_load_ms = Some(round3(quantile(&mut extras, 0.5)));
        fit.cold_extra_p10_ms = Some(round3(quantile(&mut extras, INTERVAL.0)));
        fit.cold_extra_p90_ms = Some(round3(quantile(&mut extras, INTERVAL.1)));
    }
    Ok(fit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_distr::{Distribution, Normal};

    /// A model with known coefficients: 400 ms + 0.4 ms per prompt token + 25 ms per output
    /// token, normal noise of 80 ms, and a 5% share of stalled calls 2 to 6 s slow.
    fn generate(n: usize, seed: u64, cold_share: f64) -> Vec<Point> {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        let noise = Normal::new(0.0, 80.0).expect("normal");
        (0..n)
            .map(|_| {
                let prompt = rng.random_range(10.0..4000.0_f64).round();
                let output = rng.random_range(5.0..800.0_f64).round();
                let cold = rng.random_bool(cold_share);
                let mut t = 400.0 + 0.4 * prompt + 25.0 * output + noise.sample(&mut rng);
                if rng.random_bool(0.05) {
                    t += rng.random_range(2000.0..6000.0);
                }
                if cold {
                    t += rng.random_range(8000.0..12000.0);
                }
                Point {
                    prompt_tokens: prompt,
                    output_tokens: output,
                    time_ms: t,
                    cold,
                }
            })
            .collect()
    }

    fn within(actual: f64, expected: f64, share: f64) -> bool {
        (actual - expected).abs() <= share * expected.abs()
    }

    #[test]
    fn the_fit_recovers_known_coefficients_within_ten_percent() {
        for seed in 1..=5 {
            let fit = fit(&generate(400, seed, 0.0)).expect("fits");
            assert!(within(fit.intercept_ms, 400.0, 0.10), "{fit:?}");
            assert!(within(fit.ms_per_prompt_token, 0.4, 0.10), "{fit:?}");
            assert!(within(fit.ms_per_output_token, 25.0, 0.10), "{fit:?}");
            assert_eq!(fit.cold_load_ms, None);
            assert_eq!(fit.warm_calls, 400);
        }
    }

    #[test]
    fn intervals_cover_about_eighty_percent_of_held_out_calls() {
        let fit = fit(&generate(1000, 7, 0.0)).expect("fits");
        let held_out = generate(4000, 8, 0.0);
        let inside = held_out
            .iter()
            .filter(|p| {
                let pr = fit
                    .predict(p.prompt_tokens, p.output_tokens, false)
                    .expect("warm");
                (pr.low_ms..=pr.high_ms).contains(&p.time_ms)
            })
            .count();
        let share = inside as f64 / held_out.len() as f64;
        assert!((0.75..=0.85).contains(&share), "coverage {share}");
    }

    #[test]
    fn cold_calls_do_not_bias_warm_predictions_and_are_predicted_apart() {
        let warm_only = fit(&generate(600, 11, 0.0)).expect("fits");
        let mixed = fit(&generate(600, 11, 0.3)).expect("fits");
        assert!(mixed.cold_calls > 100, "{}", mixed.cold_calls);
        for (prompt, output) in [(100.0, 50.0), (2000.0, 500.0), (3500.0, 780.0)] {
            let truth = 400.0 + 0.4 * prompt + 25.0 * output;
            let warm = mixed.predict(prompt, output, false).expect("warm");
            assert!(
                within(warm.predicted_ms, truth, 0.05),
                "{warm:?} vs {truth}"
            );
            let reference = warm_only.predict(prompt, output, false).expect("warm");
            assert!(within(warm.predicted_ms, reference.predicted_ms, 0.05));
            let cold = mixed.predict(prompt, output, true).expect("cold measured");
            assert!(
                within(cold.predicted_ms, truth + 10_000.0, 0.10),
                "{cold:?} vs {}",
                truth + 10_000.0
            );
        }
        assert_eq!(
            warm_only.predict(10.0, 10.0, true),
            None,
            "no cold load seen"
        );
        // A plain least-squares line through the same calls is pulled far off: what the
        // separation prevents.
        let naive: Vec<Point> = generate(600, 11, 0.3)
            .into_iter()
            .map(|p| Point { cold: false, ..p })
            .collect();
        let naive = fit(&naive).expect("fits");
        assert!(naive.intercept_ms > 1000.0, "{naive:?}");
    }

    #[test]
    fn too_few_warm_calls_say_how_many_are_needed() {
        let mut points = generate(9, 3, 0.0);
        assert_eq!(fit(&points), Err(FitError::TooFew { have: 9, need: 10 }));
        points.extend(generate(5, 4, 1.0));
        assert!(matches!(
            fit(&points),
            Err(FitError::TooFew { have: 9, .. })
        ));
        let message = fit(&points).unwrap_err().to_string();
        assert!(message.contains("at least 10"), "{message}");
    }

    #[test]
    fn a_regressor_that_never_varies_is_named_and_the_rest_still_fits() {
        let points: Vec<Point> = (0..30)
            .map(|i| Point {
                prompt_tokens: 20.0,
                output_tokens: f64::from(i * 10),
                time_ms: 100.0 + 0.5 * 20.0 + 30.0 * f64::from(i * 10),
                cold: false,
            })
            .collect();
        let fit = fit(&points).expect("fits");
        assert_eq!(fit.not_varied, vec!["prompt_tokens".to_owned()]);
        assert!(within(fit.ms_per_output_token, 30.0, 1e-6));
        let p = fit.predict(20.0, 100.0, false).expect("warm");
        assert!(within(p.predicted_ms, 3110.0, 1e-6), "{p:?}");
    }
}
