//! The dashboard's call question: "how long will a call of so many tokens take on each
//! model, which ones meet my time budget, and what do their tokens cost", asked with the
//! prediction panel's form and answered with `/predict`'s own function
//! ([`crate::analytics::predict_all`]) and the recommendation's budget rule
//! ([`crate::recommend::over_latency_budget`]). This module reads and writes its query
//! parameters (the same names and limits as `/predict` and `/recommend`).

use std::collections::HashMap;

use crate::routing::workload::{MAX_LATENCY_MS, MAX_TOKENS};

/// The question's query parameters, as `/predict` (and `/recommend`'s `max_latency_ms`)
/// name them.
pub const PARAMETERS: [&str; 4] = ["output_tokens", "prompt_tokens", "max_latency_ms", "cold"];

/// The output tokens the form offers before anything is asked.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 500;

/// A call to predict for, and its time budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Question {
    /// Output tokens of the call (`output_tokens`).
    pub output_tokens: u64,
    /// Prompt tokens (`prompt_tokens`); each model's median prompt when `None`.
    pub prompt_tokens: Option<u64>,
    /// The time budget, ms (`max_latency_ms`); none when `None`.
    pub max_latency_ms: Option<f64>,
    /// Whether the call starts cold, loading the model first (`cold`).
    pub cold: bool,
}

/// A question the page cannot read: what is wrong, and the values as typed, so the form
/// shows them back to be corrected.
#[derive(Debug, Clone, PartialEq)]
pub struct BadQuestion {
    /// Every problem, each naming its parameter and what it accepts.
    pub message: String,
    /// The question's parameters as they came (non-empty ones).
    pub typed: Vec<(&'static str, String)>,
}

impl BadQuestion {
    /// The value of `name` as typed.
    pub fn typed(&self, name: &str) -> Option<&str> {
        self.typed
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Question {
    /// Reads the question from the query string's pairs: `None` when none of its
    /// parameters is given (empty values are absent, as in the API).
    ///
    /// # Errors
    /// Every bad value, named, in one [`BadQuestion`].
    pub fn parse(pairs: &HashMap<String, String>) -> Result<Option<Question>, BadQuestion> {
        let typed: Vec<(&'static str, String)> = PARAMETERS
            .into_iter()
            .filter_map(|name| {
                pairs
                    .get(name)
                    .map(|v| v.trim())
                    .filter(|v| !v.is_empty())
                    .map(|v| (name, v.to_owned()))
            })
            .collect();
        if typed.is_empty() {
            return Ok(None);
        }
        let text = |name: &str| {
            typed
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        let mut problems = Vec::new();
        let tokens = |name: &str, problems: &mut Vec<String>| -> Option<u64> {
            let v = text(name)?;
            match v.parse::<u64>() {
                Ok(n) if n <= MAX_TOKENS => Some(n),
                _ => {
                    problems.push(format!(
                        "{name}: {v:?} must be a whole number of tokens from 0 to {MAX_TOKENS}"
                    ));
                    None
                }
            }
        };
        let output_tokens = tokens("output_tokens", &mut problems);
        let prompt_tokens = tokens("prompt_tokens", &mut problems);
        let max_latency_ms = text("max_latency_ms").and_then(|v| match v.parse::<f64>() {
            Ok(ms) if ms.is_finite() && ms > 0.0 && ms <= MAX_LATENCY_MS => Some(ms),
            _ => {
                problems.push(format!(
                    "max_latency_ms: {v:?} must be a number of milliseconds above 0 and at \
                     most {MAX_LATENCY_MS}, e.g. 2000 for 2 s"
                ));
                None
            }
        });
        let cold = match text("cold") {
            None | Some("0" | "false") => false,
            Some("1" | "true") => true,
            Some(other) => {
                problems.push(format!("cold: {other:?} must be true or false"));
                false
            }
        };
        if text("output_tokens").is_none() {
            problems.push(format!(
                "output_tokens: required with prompt_tokens, max_latency_ms or cold (the size \
                 of the call whose time is predicted, e.g. {DEFAULT_OUTPUT_TOKENS})"
            ));
        }
        match output_tokens {
            Some(output_tokens) if problems.is_empty() => Ok(Some(Question {
                output_tokens,
                prompt_tokens,
                max_latency_ms,
                cold,
            })),
            _ => Err(BadQuestion {
                message: problems.join("; "),
                typed,
            }),
        }
    }

    /// Its query parameters, only those that say something.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![("output_tokens", self.output_tokens.to_string())];
        if let Some(p) = self.prompt_tokens {
            pairs.push(("prompt_tokens", p.to_string()));
        }
        if let Some(ms) = self.max_latency_ms {
            pairs.push(("max_latency_ms", format!("{ms}")));
        }
        if self.cold {
            pairs.push(("cold", "true".into()));
        }
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::tests::pairs;

    #[test]
    fn reads_the_question_and_writes_it_back() {
        assert_eq!(Question::parse(&pairs(&[])), Ok(None));
        assert_eq!(
            Question::parse(&pairs(&[("output_tokens", " "), ("cold", "")])),
            Ok(None),
            "empty values are absent"
        );
        let q = Question::parse(&pairs(&[
            ("output_tokens", "500"),
            ("prompt_tokens", "120"),
            ("max_latency_ms", "2000"),
            ("cold", "1"),
        ]))
        .expect("valid")
        .expect("asked");
        assert_eq!(
            q,
            Question {
                output_tokens: 500,
                prompt_tokens: Some(120),
                max_latency_ms: Some(2000.0),
                cold: true,
            }
        );
        let back: HashMap<String, String> = q
            .pairs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(Question::parse(&back), Ok(Some(q)));
        let plain = Question::parse(&pairs(&[("output_tokens", "0")]))
            .expect("valid")
            .expect("asked");
        assert_eq!(plain.pairs(), vec![("output_tokens", "0".to_owned())]);
    }

    #[test]
    fn every_bad_value_is_named_and_the_typed_values_kept() {
        for (list, needles) in [
            (
                &[("output_tokens", "lots")][..],
                &["output_tokens: \"lots\" must be a whole number of tokens from 0 to 10000000"][..],
            ),
            (&[("output_tokens", "-1")], &["output_tokens: \"-1\""]),
            (&[("output_tokens", "10000001")], &["output_tokens:"]),
            (
                &[("output_tokens", "500"), ("max_latency_ms", "0")],
                &["max_latency_ms: \"0\" must be a number of milliseconds above 0"],
            ),
            (
                &[("output_tokens", "500"), ("max_latency_ms", "NaN")],
                &["max_latency_ms:"],
            ),
            (
                &[("output_tokens", "500"), ("cold", "maybe")],
                &["cold: \"maybe\" must be true or false"],
            ),
            (
                &[("max_latency_ms", "2000")],
                &["output_tokens: required with prompt_tokens, max_latency_ms or cold"],
            ),
            (
                &[("output_tokens", "x"), ("prompt_tokens", "y")],
                &["output_tokens: \"x\"", "; prompt_tokens: \"y\""],
            ),
        ] {
            let bad = Question::parse(&pairs(list)).expect_err("bad");
            for needle in needles {
                assert!(bad.message.contains(needle), "{list:?}: {}", bad.message);
            }
            for (k, v) in list {
                assert_eq!(bad.typed(k), Some(*v), "{list:?}");
            }
        }
    }
}
