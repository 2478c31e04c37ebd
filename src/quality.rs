//! Quality scores read from generated text, by configurable rules.
//!
//! A deployment whose prompts ask the model to grade something (an evaluator, a judge, a
//! classifier with a confidence) can have that grade recorded per call. Each rule picks
//! the calls it applies to (operation, model glob) and says where the score is: a JSON
//! pointer into the answer, or a regex capture group. The score is then mapped from the
//! rule's scale onto the 1..=5 scale every record uses, so that rules with different
//! rubrics compare.
//!
//! Configuration arrives as [`QualityRuleConfig`] and is validated once, all problems
//! reported together, into [`QualityRules`], whose matching and extraction never fail.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The scale a rule reads when it names none: the common 1-to-5 rubric, which is also the
/// stored scale, so such scores are stored as read.
const DEFAULT_SCALE_MIN: f64 = 1.0;
/// See [`DEFAULT_SCALE_MIN`].
const DEFAULT_SCALE_MAX: f64 = 5.0;

/// Lowest stored score.
const SCORE_MIN: f64 = 1.0;
/// Highest stored score.
const SCORE_MAX: f64 = 5.0;

/// The regex group read in preference to group 1, so that a pattern can use groups of its
/// own and still say which one is the score.
const SCORE_GROUP: &str = "score";

/// One rule as written in the configuration file (`[[quality.rules]]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QualityRuleConfig {
    /// The operation the rule applies to (as the proxy names it); none means every one.
    pub operation: Option<String>,
    /// The model it applies to: exact, or a glob where `*` matches any run of characters
    /// (`llava*`, `*:7b`); none means every model.
    pub model: Option<String>,
    /// RFC 6901 pointer to the score in an answer that is JSON (or holds a JSON object).
    pub json_pointer: Option<String>,
    /// Regex whose group `score`, or else group 1, is the score.
    pub regex: Option<String>,
    /// The lowest score the model is asked for; 1 when absent.
    pub scale_min: Option<f64>,
    /// The highest score the model is asked for; 5 when absent.
    pub scale_max: Option<f64>,
}

/// Validated rules, in configuration order: the first that yields a score wins.
#[derive(Debug, Clone, Default)]
pub struct QualityRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    operation: Option<String>,
    model: Option<String>,
    source: Source,
    scale_min: f64,
    scale_max: f64,
}

#[derive(Debug, Clone)]
enum Source {
    JsonPointer(String),
    /// `group` is the capture group to read: `score` when the regex has it, else 1.
    Regex {
        regex: Regex,
        group: Group,
    },
}

#[derive(Debug, Clone, Copy)]
enum Group {
    Named,
    First,
}

impl QualityRules {
    /// Validates all rules at once; `Err` lists every problem, each prefixed
    /// `quality.rules[i].field: `. A rule needs exactly one of `json_pointer` and `regex`;
    /// a regex must compile and have a capture group; a pointer must be empty or start with
    /// `/`; the scale must be finite with `scale_min < scale_max`.
    pub fn new(rules: &[QualityRuleConfig]) -> Result<QualityRules, Vec<String>> {
        let mut problems = Vec::new();
        let mut valid = Vec::new();
        for (i, config) in rules.iter().enumerate() {
            let mut problem = |field: &str, message: String| {
                problems.push(format!("quality.rules[{i}].{field}: {message}"));
            };
            if let Some(rule) = validate(config, &mut problem) {
                valid.push(rule);
            }
        }
        if problems.is_empty() {
            Ok(QualityRules { rules: valid })
        } else {
            Err(problems)
        }
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule applies to this call, so the proxy captures text only when needed.
    pub fn applies(&self, operation: &str, model: &str) -> bool {
        self.rules.iter().any(|rule| rule.applies(operation, model))
    }

    /// The score of the first applicable rule that yields one, mapped linearly from the
    /// rule's scale onto 1..=5 (unchanged with the default scale). A score that is absent,
    /// unparsable, not finite or outside the rule's scale yields nothing.
    pub fn extract(&self, operation: &str, model: &str, text: &str) -> Option<f64> {
        self.rules
            .iter()
            .filter(|rule| rule.applies(operation, model))
            .find_map(|rule| rule.extract(text))
    }
}

/// Checks one rule, reporting each problem through `problem(field, message)`.
fn validate(config: &QualityRuleConfig, problem: &mut impl FnMut(&str, String)) -> Option<Rule> {
    let mut ok = true;
    let mut fail = |field: &str, message: String| {
        ok = false;
        problem(field, message);
    };

    for (field, value) in [("operation", &config.operation), ("model", &config.model)] {
        if value.as_deref().is_some_and(str::is_empty) {
            fail(
                field,
                format!("must not be empty (leave {field} out to match every one)"),
            );
        }
    }

    let source = match (&config.json_pointer, &config.regex) {
        (Some(_), Some(_)) => {
            fail(
                "regex",
                "set either json_pointer or regex, not both".to_owned(),
            );
            None
        }
        (None, None) => {
            fail(
                "json_pointer",
                "one of json_pointer or regex is required".to_owned(),
            );
            None
        }
        (Some(pointer), None) => {
            if pointer.is_empty() || pointer.starts_with('/') {
                Some(Source::JsonPointer(pointer.clone()))
            } else {
                fail(
                    "json_pointer",
                    format!("{pointer:?} must be empty or start with '/' (e.g. \"/score\")"),
                );
                None
            }
        }
        (None, Some(pattern)) => match Regex::new(pattern) {
            Ok(regex) if regex.captures_len() < 2 => {
                fail(
                    "regex",
                    format!("{pattern:?} needs a capture group around the score, e.g. (\\d+)"),
                );
                None
            }
            Ok(regex) => {
                let group = if regex.capture_names().flatten().any(|n| n == SCORE_GROUP) {
                    Group::Named
                } else {
                    Group::First
                };
                Some(Source::Regex { regex, group })
            }
            Err(e) => {
                fail("regex", format!("does not compile: {e}"));
                None
            }
        },
    };

    let scale_min = config.scale_min.unwrap_or(DEFAULT_SCALE_MIN);
    let scale_max = config.scale_max.unwrap_or(DEFAULT_SCALE_MAX);
    let mut scale_ok = true;
    for (field, value) in [("scale_min", scale_min), ("scale_max", scale_max)] {
        if !value.is_finite() {
            fail(field, format!("must be a finite number, not {value}"));
            scale_ok = false;
        }
    }
    if scale_ok {
        if scale_min >= scale_max {
            fail(
                "scale_max",
                format!("must be greater than scale_min ({scale_max} <= {scale_min})"),
            );
        } else if !(scale_max - scale_min).is_finite() {
            fail(
                "scale_max",
                "scale_max - scale_min must be a finite number".to_owned(),
            );
        }
    }

    let source = source?;
    ok.then(|| Rule {
        operation: config.operation.clone(),
        model: config.model.clone(),
        source,
        scale_min,
        scale_max,
    })
}

impl Rule {
    fn applies(&self, operation: &str, model: &str) -> bool {
        self.operation.as_deref().is_none_or(|op| op == operation)
            && self
                .model
                .as_deref()
                .is_none_or(|pattern| glob_matches(pattern, model))
    }

    fn extract(&self, text: &str) -> Option<f64> {
        let raw = match &self.source {
            Source::JsonPointer(pointer) => from_json(text, pointer),
            Source::Regex { regex, group } => {
                let captures = regex.captures(text)?;
                let found = match group {
                    Group::Named => captures.name(SCORE_GROUP),
                    Group::First => captures.get(1),
                }?;
                parse_number(found.as_str())
            }
        }?;
        self.rescale(raw)
    }

    /// Maps `[scale_min, scale_max]` linearly onto `[SCORE_MIN, SCORE_MAX]`.
    fn rescale(&self, score: f64) -> Option<f64> {
        if !score.is_finite() || score < self.scale_min || score > self.scale_max {
            return None;
        }
        let fraction = (score - self.scale_min) / (self.scale_max - self.scale_min);
        let mapped = SCORE_MIN + fraction * (SCORE_MAX - SCORE_MIN);
        // Rounding must not push a score at the edge of the scale off the stored range.
        mapped
            .is_finite()
            .then(|| mapped.clamp(SCORE_MIN, SCORE_MAX))
    }
}

/// The number at `pointer` in `text` read as JSON. Models often wrap JSON in prose or a
/// ```json fence, so when the whole text is not JSON the span from the first `{` to the
/// last `}` is tried.
fn from_json(text: &str, pointer: &str) -> Option<f64> {
    let value = serde_json::from_str::<Value>(text).ok().or_else(|| {
        let start = text.find('{')?;
        let end = text.rfind('}')?;
        serde_json::from_str::<Value>(text.get(start..=end)?).ok()
    })?;
    match value.pointer(pointer)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number(s),
        _ => None,
    }
}

/// A decimal number, surrounding whitespace allowed; `inf` and `NaN` are refused.
fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (none
/// included) and everything else matches itself. Linear backtracking to the last `*`
/// keeps the worst case at `pattern.len() * text.len()` steps.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it is currently made to end at.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            star = Some((p, t));
            p += 1;
        } else if pattern.get(p) == Some(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(pointer: &str) -> QualityRuleConfig {
        QualityRuleConfig {
            json_pointer: Some(pointer.to_owned()),
            ..QualityRuleConfig::default()
        }
    }

    fn regex(pattern: &str) -> QualityRuleConfig {
        QualityRuleConfig {
            regex: Some(pattern.to_owned()),
            ..QualityRuleConfig::default()
        }
    }

    fn rules(configs: &[QualityRuleConfig]) -> QualityRules {
        QualityRules::new(configs).expect("valid rules")
    }

    #[test]
    fn config_deserializes_and_refuses_unknown_fields() {
        let config: QualityRuleConfig = serde_json::from_str(
            r#"{"operation":"chat","model":"llava*","regex":"(\\d)","scale_min":0,"scale_max":10}"#,
        )
        .expect("config");
        assert_eq!(config.model.as_deref(), Some("llava*"));
        assert_eq!(config.scale_max, Some(10.0));
        let again = serde_json::to_string(&config).expect("serialize");
        assert_eq!(
            serde_json::from_str::<QualityRuleConfig>(&again).expect("again"),
            config
        );
        let typo = serde_json::from_str::<QualityRuleConfig>(r#"{"json_pointr":"/score"}"#);
        assert!(typo.is_err());
    }

    #[test]
    fn no_rules_is_empty_and_applies_to_nothing() {
        let none = rules(&[]);
        assert!(none.is_empty());
        assert!(!none.applies("chat", "llama3.2"));
        assert_eq!(none.extract("chat", "llama3.2", r#"{"score":4}"#), None);
        assert!(QualityRules::default().is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let configs = [
            pointer("/score"),
            QualityRuleConfig::default(),
            QualityRuleConfig {
                regex: Some("(\\d)".into()),
                json_pointer: Some("/a".into()),
                ..QualityRuleConfig::default()
            },
            regex("(unclosed"),
            regex("\\d+"),
            pointer("score"),
            QualityRuleConfig {
                scale_min: Some(5.0),
                scale_max: Some(1.0),
                ..pointer("/s")
            },
            QualityRuleConfig {
                scale_min: Some(f64::NAN),
                scale_max: Some(f64::INFINITY),
                ..pointer("/s")
            },
            QualityRuleConfig {
                scale_min: Some(-f64::MAX),
                scale_max: Some(f64::MAX),
                ..pointer("/s")
            },
            QualityRuleConfig {
                operation: Some(String::new()),
                model: Some(String::new()),
                ..pointer("/s")
            },
            QualityRuleConfig {
                scale_min: Some(3.0),
                scale_max: Some(3.0),
                ..regex("(?P<score>\\d)")
            },
        ];
        let problems = QualityRules::new(&configs).expect_err("invalid rules");
        let prefixes: Vec<&str> = problems
            .iter()
            .map(|p| p.split(": ").next().expect("prefix"))
            .collect();
        assert_eq!(
            prefixes,
            [
                "quality.rules[1].json_pointer",
                "quality.rules[2].regex",
                "quality.rules[3].regex",
                "quality.rules[4].regex",
                "quality.rules[5].json_pointer",
                "quality.rules[6].scale_max",
                "quality.rules[7].scale_min",
                "quality.rules[7].scale_max",
                "quality.rules[8].scale_max",
                "quality.rules[9].operation",
                "quality.rules[9].model",
                "quality.rules[10].scale_max",
            ],
            "{problems:#?}"
        );
        assert!(problems[2].contains("does not compile"), "{}", problems[2]);
        assert!(problems[3].contains("capture group"), "{}", problems[3]);
    }

    #[test]
    fn an_empty_pointer_reads_the_whole_answer() {
        let r = rules(&[pointer("")]);
        assert_eq!(r.extract("generate", "m", "4"), Some(4.0));
        assert_eq!(r.extract("generate", "m", " \"3.5\" "), Some(3.5));
    }

    #[test]
    fn json_pointer_reads_numbers_and_numeric_strings() {
        let r = rules(&[pointer("/eval/score")]);
        assert_eq!(r.extract("chat", "m", r#"{"eval":{"score":4}}"#), Some(4.0));
        assert_eq!(
            r.extract("chat", "m", r#"{"eval":{"score":"2.5"}}"#),
            Some(2.5)
        );
        assert_eq!(
            r.extract("chat", "m", r#"{"eval":{"score":" 3 "}}"#),
            Some(3.0)
        );
        assert_eq!(r.extract("chat", "m", r#"{"eval":{"score":"good"}}"#), None);
        assert_eq!(r.extract("chat", "m", r#"{"eval":{"score":true}}"#), None);
        assert_eq!(r.extract("chat", "m", r#"{"eval":{"score":null}}"#), None);
        assert_eq!(r.extract("chat", "m", r#"{"eval":{}}"#), None);
        assert_eq!(r.extract("chat", "m", r#"{"eval":{"score":"NaN"}}"#), None);
        assert_eq!(r.extract("chat", "m", r#"{"eval":{"score":"inf"}}"#), None);
        assert_eq!(r.extract("chat", "m", ""), None);
    }

    #[test]
    fn json_pointer_escapes_and_array_indexes_work() {
        let r = rules(&[pointer("/scores/1/a~1b")]);
        assert_eq!(
            r.extract("chat", "m", r#"{"scores":[{},{"a/b":5}]}"#),
            Some(5.0)
        );
    }

    #[test]
    fn json_wrapped_in_prose_or_a_fence_is_found() {
        let r = rules(&[pointer("/score")]);
        let fenced = "Here is my rating:\n```json\n{\"score\": 4, \"why\": \"clear {and} brief\"}\n```\nThanks!";
        assert_eq!(r.extract("chat", "m", fenced), Some(4.0));
        assert_eq!(
            r.extract("chat", "m", "Score: {\"score\": 2} done"),
            Some(2.0)
        );
        assert_eq!(r.extract("chat", "m", "} backwards {"), None);
        assert_eq!(r.extract("chat", "m", "no json here"), None);
    }

    #[test]
    fn regex_reads_the_named_group_before_group_one() {
        let r = rules(&[regex(r"(Rating|Score):\s*(?P<score>\d+(?:\.\d+)?)")]);
        assert_eq!(
            r.extract("chat", "m", "Reasoning...\nScore: 4.5/5"),
            Some(4.5)
        );
        let r = rules(&[regex(r"(\d+)/5")]);
        assert_eq!(r.extract("chat", "m", "I give it 3/5."), Some(3.0));
        assert_eq!(r.extract("chat", "m", "I give it three."), None);
    }

    #[test]
    fn a_regex_group_that_did_not_take_part_yields_nothing() {
        let r = rules(&[regex(r"score: (\d)|none")]);
        assert_eq!(r.extract("chat", "m", "none"), None);
    }

    #[test]
    fn scores_are_mapped_onto_one_to_five() {
        let ten = QualityRuleConfig {
            scale_min: Some(0.0),
            scale_max: Some(10.0),
            ..regex(r"(\d+(?:\.\d+)?)")
        };
        let r = rules(&[ten]);
        assert_eq!(r.extract("chat", "m", "0"), Some(1.0));
        assert_eq!(r.extract("chat", "m", "5"), Some(3.0));
        assert_eq!(r.extract("chat", "m", "10"), Some(5.0));
        assert_eq!(r.extract("chat", "m", "7.5"), Some(4.0));
        assert_eq!(r.extract("chat", "m", "11"), None, "outside the scale");

        let unit = QualityRuleConfig {
            scale_min: Some(0.0),
            scale_max: Some(1.0),
            ..pointer("/p")
        };
        let r = rules(&[unit]);
        assert_eq!(r.extract("chat", "m", r#"{"p":0.25}"#), Some(2.0));
        assert_eq!(r.extract("chat", "m", r#"{"p":-0.1}"#), None);
    }

    #[test]
    fn the_default_scale_is_the_identity_and_bounded() {
        let r = rules(&[pointer("/s")]);
        for score in [1.0, 1.5, 2.0, 3.25, 4.999, 5.0] {
            let text = format!(r#"{{"s":{score}}}"#);
            assert_eq!(r.extract("chat", "m", &text), Some(score));
        }
        assert_eq!(r.extract("chat", "m", r#"{"s":0.99}"#), None);
        assert_eq!(r.extract("chat", "m", r#"{"s":6}"#), None);
        assert_eq!(r.extract("chat", "m", r#"{"s":1e400}"#), None);
    }

    #[test]
    fn rules_match_operation_and_model_globs() {
        let r = rules(&[
            QualityRuleConfig {
                operation: Some("chat".into()),
                model: Some("llava*".into()),
                ..pointer("/a")
            },
            QualityRuleConfig {
                model: Some("*:7b".into()),
                ..pointer("/b")
            },
            QualityRuleConfig {
                model: Some("llama3.2".into()),
                ..pointer("/c")
            },
        ]);
        assert!(r.applies("chat", "llava:13b"));
        assert!(!r.applies("generate", "llava:13b"));
        assert!(r.applies("generate", "mistral:7b"));
        assert!(!r.applies("generate", "mistral:7b-instruct"));
        assert!(r.applies("embed", "llama3.2"));
        assert!(!r.applies("embed", "llama3.2:latest"), "exact means exact");
        let text = r#"{"a":1,"b":2,"c":3}"#;
        assert_eq!(r.extract("chat", "llava:13b", text), Some(1.0));
        assert_eq!(r.extract("generate", "llava:7b", text), Some(2.0));
        assert_eq!(r.extract("generate", "llama3.2", text), Some(3.0));
        assert_eq!(r.extract("generate", "qwen3", text), None);
    }

    #[test]
    fn the_first_rule_that_yields_a_score_wins() {
        let r = rules(&[pointer("/first"), pointer("/second"), regex(r"(\d)")]);
        assert_eq!(
            r.extract("chat", "m", r#"{"first":2,"second":3}"#),
            Some(2.0)
        );
        assert_eq!(
            r.extract("chat", "m", r#"{"first":"x","second":3}"#),
            Some(3.0)
        );
        assert_eq!(
            r.extract("chat", "m", r#"{"other":4,"first":9}"#),
            Some(4.0)
        );
    }

    #[test]
    fn globs() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "x", false),
            ("llava*", "llava", true),
            ("llava*", "llava:7b", true),
            ("llava*", "bakllava", false),
            ("*:7b", "qwen2.5:7b", true),
            ("*:7b", "qwen2.5:7b-q4", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("**x", "yx", true),
            ("*é*", "modèle-é", true),
            ("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_matches(pattern, text),
                expected,
                "{pattern:?} {text:?}"
            );
        }
    }

    #[test]
    fn odd_text_never_panics() {
        let r = rules(&[pointer("/s"), regex(r"(?P<score>[\d.]+)")]);
        for text in [
            "{",
            "}",
            "}{",
            "{{}",
            "\u{0}",
            "é{é}é",
            "1.2.3",
            ".",
            "{\"s\":[1]}",
        ] {
            let _ = r.extract("chat", "m", text);
        }
        let deep = format!("{}{}", "{\"s\":".repeat(10_000), "}".repeat(10_000));
        assert_eq!(r.extract("chat", "m", &deep), None);
    }
}
