//! llama.cpp's `timings` object, which its server adds to every OpenAI-shaped answer (the
//! body, and the last chunk of a stream): how many prompt tokens it evaluated and how
//! long that took, how many tokens it generated and how long that took. These are the
//! server's own measurements, so they are preferred to the proxy's wall-clock estimate.

use serde::Deserialize;

use super::Collector;
use super::lenient::Lenient;

/// The fields read; llama.cpp also sends `cache_n`, `*_per_token_ms` and others.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Timings {
    /// Prompt tokens evaluated (those not reused from the KV cache).
    prompt_n: Lenient<u64>,
    prompt_ms: Lenient<f64>,
    prompt_per_second: Lenient<f64>,
    /// Tokens generated.
    predicted_n: Lenient<u64>,
    predicted_ms: Lenient<f64>,
    predicted_per_second: Lenient<f64>,
}

/// Keeps the object's numbers; a later object (the stream's last chunk) replaces an
/// earlier one field by field.
pub(super) fn apply(t: Timings, c: &mut Collector) {
    let mut s = c.facts.server_timings.take().unwrap_or_default();
    let mut keep = |name: &str, value: Lenient<f64>, slot: &mut Option<f64>| {
        if let Some(v) = c.take(name, value) {
            *slot = Some(v);
        }
    };
    keep("timings.prompt_ms", t.prompt_ms, &mut s.prompt_ms);
    keep(
        "timings.prompt_per_second",
        t.prompt_per_second,
        &mut s.prompt_per_second,
    );
    keep("timings.predicted_ms", t.predicted_ms, &mut s.predicted_ms);
    keep(
        "timings.predicted_per_second",
        t.predicted_per_second,
        &mut s.predicted_per_second,
    );
    if let Some(n) = c.take("timings.prompt_n", t.prompt_n) {
        s.prompt_n = Some(n);
    }
    if let Some(n) = c.take("timings.predicted_n", t.predicted_n) {
        s.predicted_n = Some(n);
    }
    c.facts.server_timings = Some(s);
}
