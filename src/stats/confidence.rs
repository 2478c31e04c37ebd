//! Confidence in a success rate: the Wilson score interval. Its lower bound keeps a model
//! with 3 successes out of 3 from looking more reliable than one with 495 out of 500; its
//! upper bound tells a streak of bad luck from a model that is surely failing.

/// The normal quantile for a two-sided 95% interval, rounded as it is usually quoted.
pub const Z_95: f64 = 1.96;

/// The lower bound of the Wilson score interval at 95% (z = 1.96) for `successes` out of
/// `total`: `(p + z²/2n - z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`. It is 0 when `total`
/// is 0 (no evidence, no confidence) and grows toward the observed rate as `total` grows:
/// 8/10 -> 0.4902, 80/100 -> 0.7112 and 10/10 -> 0.7225.
pub fn wilson_lower_bound(successes: u64, total: u64) -> f64 {
    wilson_interval(successes, total).0
}

/// The upper bound of the same interval: 1 when `total` is 0; 16/20 -> 0.9193,
/// 80/100 -> 0.8666.
pub fn wilson_upper_bound(successes: u64, total: u64) -> f64 {
    wilson_interval(successes, total).1
}

/// The Wilson score 95% interval `(lower, upper)`; `(0, 1)` without evidence.
pub fn wilson_interval(successes: u64, total: u64) -> (f64, f64) {
    if total == 0 {
        return (0.0, 1.0);
    }
    let n = total as f64;
    let p = successes.min(total) as f64 / n;
    let z2 = Z_95 * Z_95;
    let centre = p + z2 / (2.0 * n);
    let margin = Z_95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let scale = 1.0 + z2 / n;
    (
        ((centre - margin) / scale).max(0.0),
        ((centre + margin) / scale).min(1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 5e-5, "{actual} != {expected}");
    }

    #[test]
    fn known_values() {
        // 8/10: (0.8 + 0.19208 - 1.96 * sqrt(0.016 + 0.009604)) / 1.38416 = 0.49016
        close(wilson_lower_bound(8, 10), 0.4902);
        // 10/10: (1 + 0.19208 - 1.96 * sqrt(0.009604)) / 1.38416 = 0.72246
        close(wilson_lower_bound(10, 10), 0.7225);
        // 80/100: (0.8 + 0.019208 - 1.96 * sqrt(0.0016 + 0.00009604)) / 1.038416 = 0.71117
        close(wilson_lower_bound(80, 100), 0.7112);
        close(wilson_lower_bound(0, 10), 0.0);
        close(wilson_lower_bound(0, 0), 0.0);
    }

    #[test]
    fn upper_bounds() {
        close(wilson_upper_bound(16, 20), 0.9193);
        close(wilson_upper_bound(80, 100), 0.8666);
        close(wilson_upper_bound(10, 10), 1.0);
        close(wilson_upper_bound(0, 0), 1.0);
    }

    #[test]
    fn more_evidence_means_more_confidence() {
        assert!(wilson_lower_bound(3, 3) < wilson_lower_bound(495, 500));
        assert!(wilson_lower_bound(99, 100) < wilson_lower_bound(990, 1000));
    }
}
