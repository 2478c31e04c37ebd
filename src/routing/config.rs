//! `[routing]`: the raw shape of the section and its validation into [`RoutingConfig`],
//! every problem named by its key (`routing.aliases.photo.priority`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::recommend::{DEFAULT_MIN_OPERATIONS, Priority};

/// The share of a virtual name's calls sent to candidates still being measured: one call
/// in ten costs little if the new model is poor, and measures it (10 operations) within a
/// hundred calls.
pub const DEFAULT_EXPLORE: f64 = 0.1;

/// Models tried for one call: the chosen one and two fallbacks. More rarely helps (a third
/// failure in a row says the upstream itself is in trouble) and each try can cost a model
/// load.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The most attempts accepted: each may load a model, which takes seconds to minutes.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;

/// The prefix of the built-in virtual names (`auto`, `auto:speed`, ...).
pub const AUTO: &str = "auto";

/// `[routing]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Share of a virtual name's calls that measure new candidates, 0 to 1.
    pub explore: Option<f64>,
    /// Models tried for one call at most.
    pub max_attempts: Option<u32>,
    /// `[routing.aliases.NAME]`: named virtual models.
    #[serde(default)]
    pub aliases: BTreeMap<String, RawAlias>,
    /// `[routing.fallbacks]`: `"model" = ["next", "after"]`.
    #[serde(default)]
    pub fallbacks: BTreeMap<String, Vec<String>>,
}

/// `[routing.aliases.NAME]` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawAlias {
    /// `speed`, `quality`, `balanced` (default) or `reliable`.
    pub priority: Option<String>,
    /// The models to choose from; the installed ones of the call's kind without.
    pub candidates: Option<Vec<String>>,
    /// Whose statistics decide; the request's operation without.
    pub operation: Option<String>,
    /// Fewest operations a model needs to be recommended.
    pub min_operations: Option<u64>,
    /// The VRAM budget in GB; the GPU's free VRAM without.
    pub max_vram_gb: Option<f64>,
    /// Models slower than this at p95 are left out.
    pub max_p95_ms: Option<f64>,
    /// Models predicted slower than this for the alias's call size are left out.
    pub max_latency_ms: Option<f64>,
    /// The alias's typical call: output tokens (needed by `max_latency_ms`).
    pub expected_output_tokens: Option<u64>,
    /// The alias's typical call: prompt tokens; each model's median without.
    pub prompt_tokens: Option<u64>,
    /// The `efficient` priority's quality floor (1 to 5, default 3).
    pub min_quality: Option<f64>,
}

/// One named virtual model, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alias {
    /// What the recommendation optimises.
    pub priority: Priority,
    /// The models to choose from; `None`: the installed ones of the call's kind.
    pub candidates: Option<Vec<String>>,
    /// Whose statistics decide; `None`: the request's operation.
    pub operation: Option<String>,
    /// Fewest operations a model needs to be recommended (and below which it is explored).
    pub min_operations: u64,
    /// The VRAM budget in MiB; `None`: what the GPU has free, as `/recommend` does.
    pub max_vram_mb: Option<f64>,
    /// Models whose p95 processing time is above this are left out.
    pub max_p95_ms: Option<f64>,
    /// Models predicted slower than this for the call size are left out.
    pub max_latency_ms: Option<f64>,
    /// The typical call's output tokens: each model's time is predicted for it.
    pub expected_output_tokens: Option<u64>,
    /// The typical call's prompt tokens; each model's median when `None`.
    pub prompt_tokens: Option<u64>,
    /// The `efficient` priority's quality floor.
    pub min_quality: f64,
}

impl Alias {
    /// The call size and budget the recommendation predicts for, when one is configured.
    pub fn workload(&self) -> Option<crate::policy::Workload> {
        self.expected_output_tokens
            .map(|output_tokens| crate::policy::Workload {
                prompt_tokens: self.prompt_tokens,
                output_tokens,
                max_latency_ms: self.max_latency_ms,
            })
    }

    /// The built-in `auto:PRIORITY` names: every installed model of the call's kind.
    pub fn auto(priority: Priority) -> Alias {
        Alias {
            priority,
            candidates: None,
            operation: None,
            min_operations: DEFAULT_MIN_OPERATIONS,
            max_vram_mb: None,
            max_p95_ms: None,
            max_latency_ms: None,
            expected_output_tokens: None,
            prompt_tokens: None,
            min_quality: crate::recommend::DEFAULT_MIN_QUALITY,
        }
    }
}

/// `[routing]`, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingConfig {
    /// Share of a virtual name's calls that go to candidates still being measured.
    pub explore: f64,
    /// Models tried for one call at most (the first choice included).
    pub max_attempts: u32,
    /// Named virtual models.
    pub aliases: BTreeMap<String, Alias>,
    /// Explicit fallback chains: a call for the key that fails before answering tries
    /// these in order.
    pub fallbacks: BTreeMap<String, Vec<String>>,
    /// `[cost]`, for the `efficient` priority (set from the root configuration).
    #[serde(skip)]
    pub cost: std::sync::Arc<crate::analytics::cost::CostConfig>,
}

impl Default for RoutingConfig {
    fn default() -> RoutingConfig {
        RoutingConfig {
            explore: DEFAULT_EXPLORE,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            aliases: BTreeMap::new(),
            fallbacks: BTreeMap::new(),
            cost: std::sync::Arc::default(),
        }
    }
}

/// Validates `[routing]`, adding each problem to `problems`.
pub fn validate(raw: RawRouting, problems: &mut Vec<String>) -> RoutingConfig {
    let explore = raw.explore.unwrap_or(DEFAULT_EXPLORE);
    if !(0.0..=1.0).contains(&explore) {
        problems.push(format!(
            "routing.explore: {explore} is not a share between 0 and 1 (0.1 sends one call in ten \
             to models still being measured; 0 turns exploration off)"
        ));
    }
    let max_attempts = raw.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
        problems.push(format!(
            "routing.max_attempts: must be 1 to {MAX_ATTEMPTS_LIMIT} (1 turns fallback off), got \
             {max_attempts}"
        ));
    }
    let mut aliases = BTreeMap::new();
    for (name, alias) in raw.aliases {
        if let Some(alias) = validate_alias(&name, alias, problems) {
            aliases.insert(name, alias);
        }
    }
    let mut fallbacks = BTreeMap::new();
    for (model, chain) in raw.fallbacks {
        let key = format!("routing.fallbacks.{model:?}");
        if model.trim().is_empty() {
            problems.push("routing.fallbacks: a model name is empty".into());
            continue;
        }
        if chain.is_empty() {
            problems.push(format!("{key}: name at least one model to fall back to"));
        }
        if chain.iter().any(|m| m.trim().is_empty()) {
            problems.push(format!("{key}: a model name in the chain is empty"));
        }
        if chain.contains(&model) {
            problems.push(format!("{key}: the chain names the model itself"));
        }
        if aliases.contains_key(&model) || is_auto(&model) {
            problems.push(format!(
                "{key}: {model:?} is a virtual name, whose fallbacks are its other candidates"
            ));
        }
        fallbacks.insert(model, chain);
    }
    RoutingConfig {
        explore,
        max_attempts,
        aliases,
        fallbacks,
        cost: std::sync::Arc::default(),
    }
}

/// Whether a name is `auto` or starts with `auto:`.
pub fn is_auto(name: &str) -> bool {
    name == AUTO || name.starts_with("auto:")
}

fn validate_alias(name: &str, raw: RawAlias, problems: &mut Vec<String>) -> Option<Alias> {
    let key = format!("routing.aliases.{name}");
    let before = problems.len();
    if name.trim().is_empty() || name.len() > 256 {
        problems.push(format!("{key}: an alias name must be 1 to 256 characters"));
    }
    if is_auto(name) {
        problems.push(format!(
            "{key}: names starting with \"auto\" are the built-in ones (auto, auto:speed, \
             auto:quality, auto:balanced, auto:reliable); pick another name"
        ));
    }
    let priority = match raw.priority.as_deref() {
        None => Priority::Balanced,
        Some(p) => match p.parse::<Priority>() {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{key}.{e}"));
                Priority::Balanced
            }
        },
    };
    if let Some(candidates) = &raw.candidates {
        if candidates.is_empty() {
            problems.push(format!(
                "{key}.candidates: name at least one model, or leave the key out to choose \
                 among the installed models"
            ));
        }
        if candidates.iter().any(|c| c.trim().is_empty()) {
            problems.push(format!("{key}.candidates: a model name is empty"));
        }
    }
    if raw
        .operation
        .as_deref()
        .is_some_and(|o| o.trim().is_empty())
    {
        problems.push(format!("{key}.operation: must not be empty"));
    }
    let min_operations = raw.min_operations.unwrap_or(DEFAULT_MIN_OPERATIONS);
    if !(1..=1_000_000).contains(&min_operations) {
        problems.push(format!("{key}.min_operations: must be 1 to 1000000"));
    }
    if raw.expected_output_tokens.is_none()
        && (raw.max_latency_ms.is_some() || raw.prompt_tokens.is_some())
    {
        problems.push(format!(
            "{key}.expected_output_tokens: required with max_latency_ms or prompt_tokens (the \
             size of the call whose time is predicted)"
        ));
    }
    let min_quality = raw
        .min_quality
        .unwrap_or(crate::recommend::DEFAULT_MIN_QUALITY);
    if !(1.0..=5.0).contains(&min_quality) {
        problems.push(format!(
            "{key}.min_quality: must be 1 to 5, got {min_quality}"
        ));
    }
    for (leaf, value) in [
        ("max_vram_gb", raw.max_vram_gb),
        ("max_p95_ms", raw.max_p95_ms),
        ("max_latency_ms", raw.max_latency_ms),
    ] {
        if let Some(v) = value
            && !(v.is_finite() && v > 0.0)
        {
            problems.push(format!("{key}.{leaf}: must be a number above 0, got {v}"));
        }
    }
    (problems.len() == before).then(|| Alias {
        priority,
        candidates: raw.candidates,
        operation: raw.operation,
        min_operations,
        max_vram_mb: raw.max_vram_gb.map(|gb| gb * 1024.0),
        max_p95_ms: raw.max_p95_ms,
        max_latency_ms: raw.max_latency_ms,
        expected_output_tokens: raw.expected_output_tokens,
        prompt_tokens: raw.prompt_tokens,
        min_quality,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (RoutingConfig, Vec<String>) {
        let raw: RawRouting = toml::from_str(text).expect("toml");
        let mut problems = Vec::new();
        let config = validate(raw, &mut problems);
        (config, problems)
    }

    #[test]
    fn defaults_and_a_full_alias() {
        let (c, problems) = parse(
            r#"
            [aliases.photo]
            priority = "quality"
            candidates = ["llava:7b", "qwen2.5vl:7b"]
            operation = "photo_evaluation"
            min_operations = 5
            max_vram_gb = 8
            max_p95_ms = 5000
            [fallbacks]
            "llama3.2:3b" = ["qwen2.5:3b", "gemma3:1b"]
            "#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.explore, DEFAULT_EXPLORE);
        assert_eq!(c.max_attempts, 3);
        let photo = &c.aliases["photo"];
        assert_eq!(photo.priority, Priority::Quality);
        assert_eq!(photo.max_vram_mb, Some(8.0 * 1024.0));
        assert_eq!(photo.min_operations, 5);
        assert_eq!(c.fallbacks["llama3.2:3b"], vec!["qwen2.5:3b", "gemma3:1b"]);
    }

    #[test]
    fn every_problem_names_its_key() {
        let (_, problems) = parse(
            r#"
            explore = 1.5
            max_attempts = 0
            [aliases."auto:mine"]
            [aliases.photo]
            priority = "fast"
            candidates = []
            max_vram_gb = -1
            [fallbacks]
            "a" = []
            "b" = ["b"]
            "#,
        );
        let text = problems.join("\n");
        for needle in [
            "routing.explore: 1.5",
            "routing.max_attempts: must be 1 to 10",
            "routing.aliases.auto:mine: names starting with \"auto\"",
            "routing.aliases.photo.priority: unknown \"fast\"; valid: speed, quality, balanced, reliable",
            "routing.aliases.photo.candidates: name at least one model",
            "routing.aliases.photo.max_vram_gb: must be a number above 0",
            "routing.fallbacks.\"a\": name at least one model",
            "routing.fallbacks.\"b\": the chain names the model itself",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
