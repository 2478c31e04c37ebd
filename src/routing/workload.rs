//! A call's own size and time budget for `auto` and the aliases: three request headers,
//! validated here and removed before the call goes upstream, and the body's output-token
//! limit standing in for the expected output when no header or alias names it.
//!
//! The budget is checked per call, exactly, against each candidate's latency fit held in
//! the cached resolution (a few multiply-adds per model); only the ranking for the call's
//! size is cached, under a coarse [`SizeKey`] (tokens to the power of two), so a workload
//! never makes a call compute a recommendation of its own.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use crate::policy::Workload;

/// The call's time budget, ms: candidates predicted slower for the call are left out.
pub const MAX_LATENCY_HEADER: HeaderName = HeaderName::from_static("x-ollameter-max-latency-ms");
/// The call's prompt tokens; each model's median prompt without.
pub const PROMPT_TOKENS_HEADER: HeaderName = HeaderName::from_static("x-ollameter-prompt-tokens");
/// The output tokens the call expects.
pub const OUTPUT_TOKENS_HEADER: HeaderName =
    HeaderName::from_static("x-ollameter-expected-output-tokens");
/// The answer header naming the candidates this call's budget left out, and why.
pub const OVER_BUDGET_HEADER: &str = "x-ollameter-over-budget";

/// The most tokens a header may name: `/recommend`'s limit (no model's context is longer).
pub const MAX_TOKENS: u64 = 10_000_000;
/// The longest budget, ms: a day, `/recommend`'s limit.
pub const MAX_LATENCY_MS: f64 = 86_400_000.0;

/// What the call's headers say, each part optional.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallWorkload {
    /// `X-Ollameter-Prompt-Tokens`.
    pub prompt_tokens: Option<u64>,
    /// `X-Ollameter-Expected-Output-Tokens`.
    pub output_tokens: Option<u64>,
    /// `X-Ollameter-Max-Latency-Ms`.
    pub max_latency_ms: Option<f64>,
}

/// Removes the three headers from `headers` (they are ollameter's own: never forwarded)
/// and reads them. `Ok(None)` when none was sent; `Err` with a message naming the header
/// and what it takes when a value is malformed.
pub fn take(headers: &mut HeaderMap) -> Result<Option<CallWorkload>, String> {
    let latency = headers.remove(MAX_LATENCY_HEADER);
    let prompt = headers.remove(PROMPT_TOKENS_HEADER);
    let output = headers.remove(OUTPUT_TOKENS_HEADER);
    if latency.is_none() && prompt.is_none() && output.is_none() {
        return Ok(None);
    }
    Ok(Some(CallWorkload {
        prompt_tokens: prompt
            .map(|v| tokens("X-Ollameter-Prompt-Tokens", &v))
            .transpose()?,
        output_tokens: output
            .map(|v| tokens("X-Ollameter-Expected-Output-Tokens", &v))
            .transpose()?,
        max_latency_ms: latency.map(|v| budget(&v)).transpose()?,
    }))
}

fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

fn tokens(name: &str, value: &HeaderValue) -> Result<u64, String> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n <= MAX_TOKENS)
        .ok_or_else(|| {
            format!(
                "ollameter: {name}: {:?} must be a whole number of tokens from 0 to {MAX_TOKENS}",
                text(value)
            )
        })
}

fn budget(value: &HeaderValue) -> Result<f64, String> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms > 0.0 && *ms <= MAX_LATENCY_MS)
        .ok_or_else(|| {
            format!(
                "ollameter: X-Ollameter-Max-Latency-Ms: {:?} must be a number of milliseconds \
                 above 0 and at most {MAX_LATENCY_MS} (the call's time budget: candidates \
                 predicted slower are left out)",
                text(value)
            )
        })
}

/// The call's workload: what its headers say, the alias's configured call for the rest,
/// and for the output tokens, when neither names them, the body's output limit
/// ([`output_limit`]). `Err` when there is no output count at all: a time cannot be
/// predicted without it.
pub fn effective(
    call: CallWorkload,
    alias_output_tokens: Option<u64>,
    alias_prompt_tokens: Option<u64>,
    alias_max_latency_ms: Option<f64>,
    body: &[u8],
) -> Result<Workload, String> {
    let output_tokens = call
        .output_tokens
        .or(alias_output_tokens)
        .or_else(|| output_limit(body))
        .ok_or_else(|| {
            "ollameter: X-Ollameter-Max-Latency-Ms and X-Ollameter-Prompt-Tokens need the call's \
             output tokens: send X-Ollameter-Expected-Output-Tokens, or set the body's output \
             limit (options.num_predict, max_tokens, max_completion_tokens or max_output_tokens)"
                .to_owned()
        })?;
    Ok(Workload {
        prompt_tokens: call.prompt_tokens.or(alias_prompt_tokens),
        output_tokens,
        max_latency_ms: call.max_latency_ms.or(alias_max_latency_ms),
    })
}

#[derive(Deserialize)]
struct Options {
    num_predict: Option<Value>,
}

#[derive(Deserialize)]
struct Limits {
    options: Option<Options>,
    max_tokens: Option<Value>,
    max_completion_tokens: Option<Value>,
    max_output_tokens: Option<Value>,
}

/// The output-token limit a request body sets: OpenAI's `max_completion_tokens`, else
/// `max_tokens` (OpenAI's older name, Anthropic's), else the Responses API's
/// `max_output_tokens`, else Ollama's `options.num_predict`. `None` without one, or when
/// it sets no limit (`num_predict` -1 or -2). A limit is a ceiling, so a budget checked
/// against it holds however long the answer runs.
pub fn output_limit(body: &[u8]) -> Option<u64> {
    // serde reads a struct from an array too (by position): only an object is a request.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let limits: Limits = serde_json::from_slice(body).ok()?;
    let positive = |v: Option<Value>| {
        v.and_then(|v| v.as_u64())
            .filter(|n| *n > 0)
            .map(|n| n.min(MAX_TOKENS))
    };
    positive(limits.max_completion_tokens)
        .or_else(|| positive(limits.max_tokens))
        .or_else(|| positive(limits.max_output_tokens))
        .or_else(|| positive(limits.options.and_then(|o| o.num_predict)))
}

/// The coarse size a call's ranking is cached under: its output and prompt tokens, each
/// to its power-of-two bucket (the ranking of models by time changes only where their
/// fitted lines cross, and a factor of two is well inside that). At most 25 × 26 sizes
/// per name, operation and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SizeKey {
    output: u8,
    /// `None`: each model's median prompt.
    prompt: Option<u8>,
}

impl SizeKey {
    /// The bucket of a workload.
    pub fn of(workload: &Workload) -> SizeKey {
        SizeKey {
            output: bucket(workload.output_tokens),
            prompt: workload.prompt_tokens.map(bucket),
        }
    }

    /// The output tokens the bucket's ranking is computed for.
    pub fn output_tokens(self) -> u64 {
        representative(self.output)
    }

    /// The prompt tokens the bucket's ranking is computed for; `None`: each model's median.
    pub fn prompt_tokens(self) -> Option<u64> {
        self.prompt.map(representative)
    }
}

/// 0 for 0; `b` for `2^(b-1) ..= 2^b - 1`.
fn bucket(n: u64) -> u8 {
    (u64::BITS - n.leading_zeros()) as u8
}

/// The middle of bucket `b`: 0, 1, 3, 6, 12, 24, ...
fn representative(b: u8) -> u64 {
    match b {
        0 => 0,
        b => {
            let low = 1_u64 << (b - 1).min(62);
            low + low / 2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-other", HeaderValue::from_static("kept"));
        for (name, value) in pairs {
            h.append(
                (*name).clone(),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        h
    }

    #[test]
    fn the_headers_are_read_and_removed() {
        let mut h = headers(&[
            (&MAX_LATENCY_HEADER, " 2000.5 "),
            (&PROMPT_TOKENS_HEADER, "300"),
            (&OUTPUT_TOKENS_HEADER, "500"),
        ]);
        let w = take(&mut h).expect("valid").expect("sent");
        assert_eq!(
            w,
            CallWorkload {
                prompt_tokens: Some(300),
                output_tokens: Some(500),
                max_latency_ms: Some(2000.5),
            }
        );
        assert_eq!(h.len(), 1, "only the client's other header is left: {h:?}");
        let mut none = headers(&[]);
        assert_eq!(take(&mut none), Ok(None));
    }

    #[test]
    fn bad_values_name_the_header_and_what_it_takes() {
        for (name, value, needle) in [
            (
                &MAX_LATENCY_HEADER,
                "fast",
                "X-Ollameter-Max-Latency-Ms: \"fast\"",
            ),
            (&MAX_LATENCY_HEADER, "0", "above 0"),
            (&MAX_LATENCY_HEADER, "-5", "above 0"),
            (&MAX_LATENCY_HEADER, "NaN", "above 0"),
            (&MAX_LATENCY_HEADER, "1e12", "at most 86400000"),
            (&PROMPT_TOKENS_HEADER, "1.5", "X-Ollameter-Prompt-Tokens"),
            (&OUTPUT_TOKENS_HEADER, "-1", "whole number of tokens"),
            (&OUTPUT_TOKENS_HEADER, "20000000", "from 0 to 10000000"),
        ] {
            let mut h = headers(&[(name, value)]);
            let e = take(&mut h).expect_err(value);
            assert!(e.contains(needle), "{value}: {e}");
            assert!(!h.contains_key(name), "removed even when refused");
        }
    }

    #[test]
    fn the_body_limit_stands_in_for_the_output_tokens() {
        assert_eq!(
            output_limit(br#"{"model":"auto","options":{"num_predict":256,"temperature":0}}"#),
            Some(256)
        );
        assert_eq!(
            output_limit(br#"{"max_tokens":100,"max_completion_tokens":50}"#),
            Some(50)
        );
        assert_eq!(output_limit(br#"{"max_output_tokens":70}"#), Some(70));
        assert_eq!(output_limit(br#"{"options":{"num_predict":-1}}"#), None);
        assert_eq!(output_limit(br#"{"max_tokens":null}"#), None);
        assert_eq!(output_limit(br#"[{"max_tokens":5}]"#), None);
        assert_eq!(output_limit(b"not json"), None);

        let call = CallWorkload {
            max_latency_ms: Some(1000.0),
            ..CallWorkload::default()
        };
        let body = br#"{"model":"auto","max_tokens":64}"#;
        let w = effective(call, None, None, None, body).expect("from the body");
        assert_eq!(w.output_tokens, 64);
        let w = effective(call, Some(200), Some(30), Some(9.0), body).expect("alias");
        assert_eq!(
            (w.output_tokens, w.prompt_tokens, w.max_latency_ms),
            (200, Some(30), Some(1000.0)),
            "the header's budget, the alias's call size"
        );
        let e = effective(call, None, None, None, b"{}").expect_err("no output count");
        assert!(e.contains("X-Ollameter-Expected-Output-Tokens"), "{e}");
    }

    #[test]
    fn sizes_share_a_key_within_a_factor_of_two() {
        let w = |o, p| Workload {
            prompt_tokens: p,
            output_tokens: o,
            max_latency_ms: None,
        };
        assert_eq!(SizeKey::of(&w(500, None)), SizeKey::of(&w(300, None)));
        assert_ne!(SizeKey::of(&w(500, None)), SizeKey::of(&w(600, None)));
        assert_ne!(SizeKey::of(&w(500, None)), SizeKey::of(&w(500, Some(500))));
        let k = SizeKey::of(&w(500, Some(0)));
        assert_eq!((k.output_tokens(), k.prompt_tokens()), (384, Some(0)));
        for n in [1_u64, 2, 3, 7, 8, 1000, MAX_TOKENS] {
            let k = SizeKey::of(&w(n, None));
            let rep = k.output_tokens();
            assert!(rep * 2 > n && rep <= n * 2, "{n} -> {rep}");
        }
    }
}
