//! TEMPORARY STUB: replaced by the real rules.
#![allow(missing_docs, unused)]
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QualityRuleConfig { pub operation: Option<String>, pub model: Option<String>, pub json_pointer: Option<String>, pub regex: Option<String>, pub scale_min: Option<f64>, pub scale_max: Option<f64> }
pub struct QualityRules;
impl QualityRules { pub fn new(rules: &[QualityRuleConfig]) -> Result<QualityRules, Vec<String>> { Ok(QualityRules) } pub fn is_empty(&self) -> bool { true } pub fn applies(&self, operation: &str, model: &str) -> bool { false } pub fn extract(&self, operation: &str, model: &str, text: &str) -> Option<f64> { None } }
