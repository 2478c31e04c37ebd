//! The change detectors, pure: values in, readings out. Each watches one metric of one
//! model against that model's own baseline.
//!
//! - [`ShiftDetector`]: a one-sided CUSUM on robustly standardised values. The baseline is
//!   the median and MAD of a reference window (the last `reference_window` values, less the
//!   newest `recent_window`, so a change is never its own baseline); each value becomes
//!   `u = clamp((y - median) / (1.4826 MAD), -4, 4)`, and `S = max(0, S + u - drift)` fires
//!   at `S > threshold`. Median and MAD ignore outliers in the baseline; the clamp keeps one
//!   wild call from firing alone. Latency-like metrics are watched on a log scale, so a
//!   doubling is the same step on a fast model and a slow one.
//! - [`RateDetector`]: a Bernoulli CUSUM (log-likelihood ratio of "bad" events under the
//!   baseline rate `p0` against `p0 + success_drop`), for the success rate.
//! - [`TailDetector`]: the same Bernoulli CUSUM on "above the baseline's p95" events: when
//!   the p95 rises, far more than 5 % of calls exceed the old p95.
//!
//! While an alert fires, the baseline is frozen (the bad values never enter it), and a
//! detector reports whether its recent window is back near the baseline.

use std::collections::VecDeque;

/// Largest contribution of one value to the CUSUM, in robust standard deviations.
const CLIP: f64 = 4.0;
/// 1.4826 MAD estimates the standard deviation of normal data.
const MAD_TO_SD: f64 = 1.4826;
/// The standard error of a median of n normal values is about 1.2533 sd / sqrt(n).
const MEDIAN_SE: f64 = 1.2533;
/// The baseline's median and MAD are recomputed after this many new baseline values
/// (and whenever the baseline was empty): each recompute is O(window) (two selections
/// over a copy), and 32 values, 6% of a 500-value window, move its median and MAD by
/// nothing that matters. At 8 the recomputes cost about 1 µs of CPU per proxied call.
const RECOMPUTE_EVERY: u32 = 32;
/// Share of baseline calls above the baseline's p95, by definition.
const TAIL_P0: f64 = 0.05;
/// Share of calls above the old p95 the tail detector is tuned to find.
const TAIL_P1: f64 = 0.30;
/// The tail detector's threshold, as a multiple of the rate threshold: its baseline p95
/// is itself an estimate from the window, which makes "above p95" events a little more
/// frequent than 5 % by chance; at 1x the tail fired several times per 100,000 calls of
/// stationary noise, and at 1.5x still about one; at 2x it is a second opinion on the
/// median detector that adds no false alerts of its own.
const TAIL_THRESHOLD_FACTOR: f64 = 2.0;
/// Smallest baseline failure rate assumed: a model with no failure in its window is not
/// infinitely surprised by one.
const MIN_P0: f64 = 0.005;

/// The windows and thresholds every detector shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Baseline values kept.
    pub reference_window: usize,
    /// Newest values kept out of the baseline.
    pub recent_window: usize,
    /// Baseline values needed before a detector fires.
    pub min_samples: usize,
    /// CUSUM decision interval, robust standard deviations.
    pub threshold: f64,
    /// CUSUM drift, robust standard deviations.
    pub drift: f64,
    /// Bernoulli CUSUM decision interval (log-likelihood ratio).
    pub rate_threshold: f64,
    /// Rise in the bad-event rate the rate detectors look for.
    pub rate_rise: f64,
}

/// What a detector says after one value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The CUSUM crossed its threshold on this value (and the change is large enough).
    pub alarm: bool,
    /// The recent window is back near the baseline (meaningful while firing).
    pub recovered: bool,
    /// The baseline: median, p95 or success rate, on the detector's scale.
    pub baseline: f64,
    /// The same statistic over the recent window.
    pub current: f64,
    /// Values in the baseline.
    pub baseline_samples: usize,
    /// Values in the recent window.
    pub recent_samples: usize,
    /// The CUSUM statistic before it was reset.
    pub statistic: f64,
    /// Its threshold.
    pub threshold: f64,
}

/// The baseline and the recent window of one metric. The recent window is also kept
/// sorted, so its quantiles after each value cost a binary search and a short move
/// instead of a copy and a selection.
#[derive(Debug, Clone)]
struct Windows {
    reference: VecDeque<f32>,
    recent: VecDeque<f32>,
    /// `recent`'s values in ascending order (`f32::total_cmp`).
    recent_sorted: Vec<f32>,
    reference_cap: usize,
    recent_cap: usize,
}

impl Windows {
    fn new(settings: &Settings) -> Windows {
        Windows {
            reference: VecDeque::with_capacity(settings.reference_window.min(1024)),
            recent: VecDeque::with_capacity(settings.recent_window),
            recent_sorted: Vec::with_capacity(settings.recent_window + 1),
            reference_cap: settings.reference_window,
            recent_cap: settings.recent_window,
        }
    }

    /// Adds a value; the one leaving the recent window enters the baseline unless it is
    /// frozen. Returns true when the baseline changed.
    fn push(&mut self, value: f32, frozen: bool) -> bool {
        self.recent.push_back(value);
        let at = self
            .recent_sorted
            .partition_point(|v| v.total_cmp(&value).is_lt());
        self.recent_sorted.insert(at, value);
        if self.recent.len() <= self.recent_cap {
            return false;
        }
        let Some(old) = self.recent.pop_front() else {
            return false;
        };
        let from = self
            .recent_sorted
            .partition_point(|v| v.total_cmp(&old).is_lt());
        self.recent_sorted.remove(from);
        if frozen {
            return false;
        }
        self.reference.push_back(old);
        if self.reference.len() > self.reference_cap {
            self.reference.pop_front();
        }
        true
    }

    /// Makes the recent window the whole baseline (a new level accepted).
    fn rebaseline(&mut self) {
        self.reference.clear();
        self.reference.extend(self.recent.drain(..));
        self.recent_sorted.clear();
    }

    /// The `q` quantile (0..1) of the recent window, as [`quantile`] computes it.
    fn recent_quantile(&self, q: f64) -> f64 {
        sorted_quantile(&self.recent_sorted, q)
    }
}

/// The `q` quantile (0..1) of ascending `sorted` values, by linear interpolation.
fn sorted_quantile(sorted: &[f32], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let pos = q * last as f64;
    let lo = pos.floor() as usize;
    let at_lo = f64::from(sorted[lo]);
    let frac = pos - lo as f64;
    if frac == 0.0 {
        return at_lo;
    }
    let at_hi = f64::from(sorted[(lo + 1).min(last)]);
    at_lo + (at_hi - at_lo) * frac
}

/// The `q` quantile (0..1) of `values` (reordered), by linear interpolation.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    // A selection, not a sort: O(n), and the detectors take one or two per value.
    let pos = q * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let (_, at_lo, above) = values.select_nth_unstable_by(lo, f64::total_cmp);
    let at_lo = *at_lo;
    let frac = pos - lo as f64;
    if frac == 0.0 {
        return at_lo;
    }
    let at_hi = above.iter().copied().fold(f64::INFINITY, f64::min);
    at_lo + (at_hi - at_lo) * frac
}

fn to_vec(values: &VecDeque<f32>) -> Vec<f64> {
    values.iter().map(|v| f64::from(*v)).collect()
}

/// Median and robust sd (1.4826 MAD) of a window.
fn median_and_scale(values: &VecDeque<f32>) -> (f64, f64) {
    let mut v = to_vec(values);
    let median = quantile(&mut v, 0.5);
    let mut deviations: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
    (median, MAD_TO_SD * quantile(&mut deviations, 0.5))
}

/// A one-sided CUSUM on robustly standardised values, for a metric oriented so that
/// "worse" is "up" (the caller negates tokens/s and quality, and takes logs of times).
#[derive(Debug, Clone)]
pub struct ShiftDetector {
    settings: Settings,
    windows: Windows,
    center: f64,
    scale: f64,
    stale: u32,
    cusum: f64,
    /// Smallest change (on this scale) worth an alarm; half of it floors the scale, so a
    /// model whose calls all take the same time is not paged for jitter.
    min_change: f64,
    /// For values watched as `ln(ms)`: smallest rise in milliseconds worth an alarm (0:
    /// none). Half of it is as far as a recovered metric may stay above the baseline.
    min_absolute: f64,
}

/// The rise from `base` to `now`, both `ln(x)`, in the units of x.
fn absolute_rise(base: f64, now: f64) -> f64 {
    now.exp() - base.exp()
}

impl ShiftDetector {
    /// A detector that fires on upward shifts of at least `min_change`.
    pub fn new(settings: Settings, min_change: f64) -> ShiftDetector {
        ShiftDetector {
            settings,
            windows: Windows::new(&settings),
            center: f64::NAN,
            scale: f64::NAN,
            stale: u32::MAX,
            cusum: 0.0,
            min_change,
            min_absolute: 0.0,
        }
    }

    /// Also asks a rise of `ms` (values are `ln(milliseconds)`): a 25 % change of a 20-ms
    /// call is scheduling noise, not a degraded model.
    pub fn with_absolute_floor(mut self, ms: f64) -> ShiftDetector {
        self.min_absolute = ms;
        self
    }

    /// Feeds one value. `None` while the baseline is too small to judge against.
    pub fn push(&mut self, y: f64, firing: bool) -> Option<Reading> {
        if !y.is_finite() {
            return None;
        }
        let ready = self.windows.reference.len() >= self.settings.min_samples;
        let mut reading = None;
        if ready {
            if self.stale >= RECOMPUTE_EVERY {
                let (center, scale) = median_and_scale(&self.windows.reference);
                self.center = center;
                self.scale = scale.max(self.min_change / 2.0);
                self.stale = 0;
            }
            if !firing {
                let u = ((y - self.center) / self.scale).clamp(-CLIP, CLIP);
                self.cusum = (self.cusum + u - self.settings.drift).max(0.0);
            }
        }
        if self.windows.push(y as f32, firing) {
            self.stale = self.stale.saturating_add(1);
        }
        if ready {
            let n = self.windows.recent.len();
            let current = self.windows.recent_quantile(0.5);
            let change = current - self.center;
            let se = MEDIAN_SE * self.scale / (n as f64).sqrt();
            let statistic = self.cusum;
            let mut alarm = false;
            let rise = absolute_rise(self.center, current);
            // Significant but small changes keep the sum growing: they fire once large enough.
            if statistic > self.settings.threshold
                && change >= self.min_change
                && rise >= self.min_absolute
            {
                alarm = true;
                self.cusum = 0.0;
            }
            let near = change < (2.0 * se).max(self.min_change / 2.0);
            reading = Some(Reading {
                alarm,
                recovered: near || rise < self.min_absolute / 2.0,
                baseline: self.center,
                current,
                baseline_samples: self.windows.reference.len(),
                recent_samples: n,
                statistic,
                threshold: self.settings.threshold,
            });
        }
        reading
    }

    /// Accepts the recent level as the new baseline.
    pub fn rebaseline(&mut self) {
        self.windows.rebaseline();
        self.cusum = 0.0;
        self.stale = u32::MAX;
    }
}

/// The Bernoulli CUSUM step: `S = max(0, S + log LR(event))` for bad-event rates `p0`
/// (baseline) against `p1` (changed).
fn bernoulli_step(cusum: f64, bad: bool, p0: f64, p1: f64) -> f64 {
    let llr = if bad {
        (p1 / p0).ln()
    } else {
        ((1.0 - p1) / (1.0 - p0)).ln()
    };
    (cusum + llr).max(0.0)
}

/// A Bernoulli CUSUM on failures, for the success rate.
///
/// Each call adds the log-likelihood ratio of its outcome under "the failure rate rose to
/// `p1 = p0 + rate_rise`" against "it is still the baseline's `p0`" (Laplace's estimate
/// over the reference window); the sum, floored at 0, crosses `rate_threshold` when the
/// evidence for a rise is strong. This is the sequential test with the shortest delay for
/// a given false-alarm rate (Moustakides, 1986), and the false-alarm rate of an LLR CUSUM
/// depends little on `p0`: at the default threshold of 8, about one per 60,000 to 80,000
/// calls of a steady model from a 99.9 % to an 80 % baseline (Markov-chain ARL).
///
/// An alarm also needs the recent window to show the whole rise (`rate_now - p0 >=
/// rate_rise`, i.e. 4 failures in 20 calls at a 1 % baseline): it cuts false alerts of a
/// steady 99 % model by about 4x for a few points of detection probability.
///
/// What any detector can do here is bounded: 30 calls at 80 % hold 3 or fewer failures
/// one time in eight; see the alerts section of docs/alerts.md for the limit and the
/// measured rates.
#[derive(Debug, Clone)]
pub struct RateDetector {
    settings: Settings,
    reference: VecDeque<bool>,
    recent: VecDeque<bool>,
    /// Failures in `reference` and `recent`, kept as values come and go (O(1) a call).
    failures_reference: usize,
    failures_recent: usize,
    cusum: f64,
}

impl RateDetector {
    /// A detector of a rising failure rate.
    pub fn new(settings: Settings) -> RateDetector {
        RateDetector {
            settings,
            reference: VecDeque::with_capacity(settings.reference_window.min(1024)),
            recent: VecDeque::with_capacity(settings.recent_window + 1),
            failures_reference: 0,
            failures_recent: 0,
            cusum: 0.0,
        }
    }

    /// The baseline failure rate (Laplace's rule: a window without failures still has a
    /// small, non-zero rate) and the changed rate the CUSUM looks for.
    fn rates(&self) -> (f64, f64) {
        let n = self.reference.len() as f64;
        let p0 = ((self.failures_reference as f64 + 1.0) / (n + 2.0)).max(MIN_P0);
        (p0, (p0 + self.settings.rate_rise).min(0.99))
    }

    /// Feeds one call's outcome. Readings carry success rates (0 to 1).
    pub fn push(&mut self, success: bool, firing: bool) -> Option<Reading> {
        let n_ref = self.reference.len();
        let ready = n_ref >= self.settings.min_samples;
        let (p0, p1) = self.rates();
        if ready && !firing {
            self.cusum = bernoulli_step(self.cusum, !success, p0, p1);
        }
        self.recent.push_back(success);
        self.failures_recent += usize::from(!success);
        if self.recent.len() > self.settings.recent_window
            && let Some(old) = self.recent.pop_front()
        {
            self.failures_recent -= usize::from(!old);
            // While firing the baseline is frozen: the bad calls never enter it.
            if !firing {
                self.reference.push_back(old);
                self.failures_reference += usize::from(!old);
                if self.reference.len() > self.settings.reference_window
                    && let Some(gone) = self.reference.pop_front()
                {
                    self.failures_reference -= usize::from(!gone);
                }
            }
        }
        if !ready {
            return None;
        }
        let n = self.recent.len();
        let failures = self.failures_recent;
        let statistic = self.cusum;
        let rate_now = failures as f64 / n as f64;
        let mut alarm = false;
        if statistic > self.settings.rate_threshold && rate_now - p0 >= self.settings.rate_rise {
            alarm = true;
            self.cusum = 0.0;
        }
        let allowed = (n as f64 * (p0 + self.settings.rate_rise / 3.0)).ceil() as usize;
        Some(Reading {
            alarm,
            recovered: failures <= allowed,
            baseline: 1.0 - self.failures_reference as f64 / n_ref.max(1) as f64,
            current: 1.0 - rate_now,
            baseline_samples: n_ref,
            recent_samples: n,
            statistic,
            threshold: self.settings.rate_threshold,
        })
    }

    /// Accepts the recent level as the new baseline.
    pub fn rebaseline(&mut self) {
        self.reference.clear();
        self.reference.extend(self.recent.drain(..));
        self.failures_reference = self.failures_recent;
        self.failures_recent = 0;
        self.cusum = 0.0;
    }
}

/// A Bernoulli CUSUM on calls above the baseline's p95, for a rising tail (p95) that the
/// median may not show.
#[derive(Debug, Clone)]
pub struct TailDetector {
    settings: Settings,
    windows: Windows,
    p95: f64,
    stale: u32,
    cusum: f64,
    min_change: f64,
    /// As [`ShiftDetector::with_absolute_floor`].
    min_absolute: f64,
}

impl TailDetector {
    /// A detector of a rising p95 by at least `min_change` (on the caller's scale).
    pub fn new(settings: Settings, min_change: f64) -> TailDetector {
        TailDetector {
            settings,
            windows: Windows::new(&settings),
            p95: f64::NAN,
            stale: u32::MAX,
            cusum: 0.0,
            min_change,
            min_absolute: 0.0,
        }
    }

    /// Also asks the p95 to rise by `ms` (values are `ln(milliseconds)`).
    pub fn with_absolute_floor(mut self, ms: f64) -> TailDetector {
        self.min_absolute = ms;
        self
    }

    /// Feeds one value. Readings carry p95s.
    pub fn push(&mut self, y: f64, firing: bool) -> Option<Reading> {
        if !y.is_finite() {
            return None;
        }
        let ready = self.windows.reference.len() >= self.settings.min_samples;
        if ready {
            if self.stale >= RECOMPUTE_EVERY {
                self.p95 = quantile(&mut to_vec(&self.windows.reference), 0.95);
                self.stale = 0;
            }
            if !firing {
                self.cusum = bernoulli_step(self.cusum, y > self.p95, TAIL_P0, TAIL_P1);
            }
        }
        if self.windows.push(y as f32, firing) {
            self.stale = self.stale.saturating_add(1);
        }
        if !ready {
            return None;
        }
        let n = self.windows.recent.len();
        // Back to normal: few calls above the old p95 plus half the smallest change worth
        // an alert (relative, or absolute where one is set, whichever is wider).
        let mut line = self.p95 + self.min_change / 2.0;
        if self.min_absolute > 0.0 {
            line = line.max((self.p95.exp() + self.min_absolute / 2.0).ln());
        }
        let above = self
            .windows
            .recent
            .iter()
            .filter(|v| f64::from(**v) > line)
            .count();
        let current = self.windows.recent_quantile(0.95);
        let statistic = self.cusum;
        let mut alarm = false;
        let threshold = self.settings.rate_threshold * TAIL_THRESHOLD_FACTOR;
        if statistic > threshold
            && current - self.p95 >= self.min_change
            && absolute_rise(self.p95, current) >= self.min_absolute
        {
            alarm = true;
            self.cusum = 0.0;
        }
        let allowed = (n as f64 * (TAIL_P0 + TAIL_P1) / 2.0).ceil() as usize;
        Some(Reading {
            alarm,
            recovered: above <= allowed,
            baseline: self.p95,
            current,
            baseline_samples: self.windows.reference.len(),
            recent_samples: n,
            statistic,
            threshold,
        })
    }

    /// Accepts the recent level as the new baseline.
    pub fn rebaseline(&mut self) {
        self.windows.rebaseline();
        self.cusum = 0.0;
        self.stale = u32::MAX;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator (SplitMix64) with normal draws (Box-Muller): the
    /// tests need reproducible noise, not a cryptographic source.
    pub(crate) struct Noise(u64);

    impl Noise {
        /// The state starts at a hash of the seed: SplitMix64 walks its state in fixed
        /// steps, so seeds one step apart would give the same series shifted by one draw.
        pub(crate) fn new(seed: u64) -> Noise {
            Noise(mix(seed ^ 0x5DEE_CE66_D1CE_4E5B))
        }

        pub(crate) fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            ((mix(self.0) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        pub(crate) fn normal(&mut self) -> f64 {
            let (a, b) = (self.uniform(), self.uniform());
            (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
        }
    }

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn the_sorted_recent_window_gives_the_quantiles_of_the_window() {
        let settings = Settings {
            recent_window: 17,
            reference_window: 40,
            ..settings()
        };
        let mut windows = Windows::new(&settings);
        let mut noise = Noise::new(7);
        for i in 0..500 {
            // Repeated values too: ties must leave and enter the sorted copy one by one.
            let value = if i % 5 == 0 {
                1.0
            } else {
                (noise.normal() * 3.0) as f32
            };
            windows.push(value, i % 50 > 40);
            if i == 250 {
                windows.rebaseline();
            }
            let mut copy = to_vec(&windows.recent);
            let mut sorted = windows.recent.iter().copied().collect::<Vec<f32>>();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(windows.recent_sorted, sorted, "after value {i}");
            for q in [0.0, 0.5, 0.95, 1.0] {
                let want = quantile(&mut copy, q);
                let got = windows.recent_quantile(q);
                assert!(
                    (want - got).abs() < 1e-12 || (want.is_nan() && got.is_nan()),
                    "q {q} after value {i}: {got} against {want}"
                );
            }
        }
    }

    pub(crate) fn settings() -> Settings {
        Settings {
            reference_window: 500,
            recent_window: 20,
            min_samples: 50,
            threshold: 9.0,
            drift: 0.75,
            rate_threshold: 8.0,
            rate_rise: 0.15,
        }
    }

    #[test]
    fn a_constant_series_never_fires_and_a_step_on_it_does() {
        let mut d = ShiftDetector::new(settings(), 1.25f64.ln());
        for _ in 0..1_000 {
            let r = d.push(100f64.ln(), false);
            assert!(r.is_none_or(|r| !r.alarm));
        }
        let fired = (0..30).position(|_| d.push(300f64.ln(), false).is_some_and(|r| r.alarm));
        assert!(fired.is_some_and(|i| i < 10), "{fired:?}");
    }

    #[test]
    fn a_small_significant_change_waits_for_the_minimum() {
        let mut d = ShiftDetector::new(settings(), 1.25f64.ln());
        let mut noise = Noise::new(7);
        for _ in 0..600 {
            d.push(100f64.ln() + 0.01 * noise.normal(), false);
        }
        // 10 % slower: clearly significant at this noise, below the 25 % minimum.
        for _ in 0..500 {
            let r = d.push(110f64.ln() + 0.01 * noise.normal(), false);
            assert!(r.is_some_and(|r| !r.alarm));
        }
    }

    #[test]
    fn the_baseline_is_frozen_while_firing_and_recovery_is_seen() {
        let mut d = ShiftDetector::new(settings(), 1.25f64.ln());
        let mut noise = Noise::new(3);
        for _ in 0..600 {
            d.push(100f64.ln() + 0.3 * noise.normal(), false);
        }
        for i in 0..1_000 {
            let r = d
                .push(400f64.ln() + 0.3 * noise.normal(), true)
                .expect("ready");
            // Once the recent window holds mostly slow calls, it is not recovered.
            assert!(i < 12 || !r.recovered, "{i}: {r:?}");
            assert!((r.baseline - 100f64.ln()).abs() < 0.1, "frozen baseline");
        }
        let back = (0..60).position(|_| {
            d.push(100f64.ln() + 0.3 * noise.normal(), true)
                .is_some_and(|r| r.recovered)
        });
        assert!(back.is_some_and(|i| i <= 20), "{back:?}");
    }

    /// Alarms per 100,000 values of stationary noise: `seeds` series of 20,000 values,
    /// the first 1,000 filling the baseline. No lifecycle: every alarm counts (the engine's
    /// hysteresis and cooldown only merge alarms).
    fn false_alarms_per_100k(
        seeds: u64,
        mut detector: impl FnMut() -> Box<dyn FnMut(f64) -> bool>,
        value: impl Fn(&mut Noise) -> f64,
    ) -> f64 {
        let mut alarms = 0;
        for seed in 0..seeds {
            let mut noise = Noise::new(1_000 + seed);
            let mut push = detector();
            for i in 0..20_000 {
                if push(value(&mut noise)) && i >= 1_000 {
                    alarms += 1;
                }
            }
        }
        alarms as f64 * 100_000.0 / (seeds as f64 * 19_000.0)
    }

    #[test]
    fn stationary_noise_rarely_alarms_any_detector() {
        // 114,000 judged values a detector (the engine test adds 100,000 calls of all of
        // them together).
        const SEEDS: u64 = 6;
        let shift = |min_change: f64| {
            move || -> Box<dyn FnMut(f64) -> bool> {
                let mut d = ShiftDetector::new(settings(), min_change);
                Box::new(move |y| d.push(y, false).is_some_and(|r| r.alarm))
            }
        };
        let ratio = 1.25f64.ln();
        // Latency, TTFT and load time: log-normal, log-sd 0.4 (watched as ln).
        let latency = false_alarms_per_100k(SEEDS, shift(ratio), |n| 0.4 * n.normal());
        // Tokens/s: log-sd 0.1, below the scale floor (half the 25 % minimum).
        let speed = false_alarms_per_100k(SEEDS, shift(ratio), |n| 0.1 * n.normal());
        // Quality: 4 +- 0.5 on the 1-to-5 scale (watched negated), minimum drop 0.5.
        let quality = false_alarms_per_100k(SEEDS, shift(0.5), |n| {
            -(4.0 + 0.5 * n.normal()).clamp(1.0, 5.0)
        });
        let tail = false_alarms_per_100k(
            SEEDS,
            || -> Box<dyn FnMut(f64) -> bool> {
                let mut d = TailDetector::new(settings(), 1.25f64.ln());
                Box::new(move |y| d.push(y, false).is_some_and(|r| r.alarm))
            },
            |n| 0.4 * n.normal(),
        );
        eprintln!(
            "false alarms per 100,000 stationary values: latency {latency:.2}, tokens/s \
             {speed:.2}, quality {quality:.2}, p95 {tail:.2}"
        );
        for (what, rate) in [
            ("latency", latency),
            ("tokens/s", speed),
            ("quality", quality),
            ("p95", tail),
        ] {
            assert!(
                rate <= 2.0,
                "{what}: {rate} false alarms per 100,000 values"
            );
        }
    }

    #[test]
    fn rate_detector_reads_success_rates() {
        let mut d = RateDetector::new(settings());
        for i in 0..200 {
            d.push(i % 50 != 0, false);
        }
        let r = d.push(true, false).expect("ready");
        assert!((r.baseline - 0.98).abs() < 0.01, "{r:?}");
        assert!(!r.alarm);
        let fired = (0..30).position(|_| d.push(false, false).is_some_and(|r| r.alarm));
        assert!(fired.is_some_and(|i| i < 6), "{fired:?}");
    }
}
