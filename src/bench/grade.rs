//! Grading an answer against a prompt's checks: exact text, a pattern, values at JSON
//! pointers. The quality is the fraction of checks passed on the records' 1-to-5 scale.

use serde_json::Value;

use super::prompts::{Grading, JsonCheck};

/// The quality of `answer` on the 1-to-5 scale (1 + 4 x the fraction of checks passed), or
/// `None` when the prompt has no checks of its own.
pub fn grade(grading: &Grading, answer: &str) -> Option<f64> {
    let total = grading.checks();
    if total == 0 {
        return None;
    }
    let mut passed = 0usize;
    if let Some(expect) = &grading.expect
        && answer.trim() == expect.trim()
    {
        passed += 1;
    }
    if let Some(regex) = &grading.regex
        && regex.is_match(answer)
    {
        passed += 1;
    }
    if !grading.json.is_empty() {
        let document = json_in(answer);
        passed += grading
            .json
            .iter()
            .filter(|check| document.as_ref().is_some_and(|d| json_matches(d, check)))
            .count();
    }
    Some(1.0 + 4.0 * passed as f64 / total as f64)
}

/// The answer as JSON, or the JSON object inside it (models wrap JSON in prose or code fences).
fn json_in(answer: &str) -> Option<Value> {
    if let Ok(v) = serde_json::from_str(answer.trim()) {
        return Some(v);
    }
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    serde_json::from_str(answer.get(start..=end)?).ok()
}

fn json_matches(document: &Value, check: &JsonCheck) -> bool {
    match document.pointer(&check.pointer) {
        Some(found) => same(found, &check.value),
        None => false,
    }
}

/// JSON equality where numbers compare by value (`4` equals `4.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;
    use serde_json::json;

    fn check(pointer: &str, value: Value) -> JsonCheck {
        JsonCheck {
            pointer: pointer.into(),
            value,
        }
    }

    #[test]
    fn the_fraction_of_checks_passed_is_scaled_to_1_to_5() {
        let g = Grading {
            expect: Some("Paris".into()),
            ..Grading::default()
        };
        assert_eq!(grade(&g, " Paris\n"), Some(5.0));
        assert_eq!(grade(&g, "paris"), Some(1.0));
        let g = Grading {
            regex: Some(Regex::new("score").expect("regex")),
            json: vec![check("/score", json!(4)), check("/reason", json!("ok"))],
            ..Grading::default()
        };
        assert_eq!(grade(&g, r#"{"score": 4.0, "reason": "ok"}"#), Some(5.0));
        assert_eq!(
            grade(&g, r#"{"score": 3, "reason": "ok"}"#),
            Some(1.0 + 4.0 * 2.0 / 3.0)
        );
        assert_eq!(
            grade(&g, "Sure! ```json\n{\"score\": 4, \"reason\": \"no\"}\n```"),
            Some(1.0 + 4.0 * 2.0 / 3.0)
        );
        assert_eq!(grade(&g, "no json"), Some(1.0));
        assert_eq!(grade(&Grading::default(), "anything"), None);
        let rule_only = Grading {
            rule: Some("photo".into()),
            ..Grading::default()
        };
        assert_eq!(grade(&rule_only, "anything"), None);
    }
}
