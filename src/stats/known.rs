//! Which model names are real. A client that mistypes a model (`lama3.2`) or loops over
//! generated names gets Ollama's 404 "model not found" on every call; those calls are
//! recorded, but the names must not flood the views. A name is *unknown* when none of its
//! calls ever succeeded and Ollama does not have it installed (per `/api/tags`); when the
//! installed list is not known (telemetry off, Ollama unreachable), when every one of its
//! calls was answered "model not found". Unknown names are left out of the lists unless a
//! caller asks for them, and reported once by the insights with a "did you mean" by edit
//! distance to the installed models.
//!
//! Also here: the one rule by which a list of models is cut to a `limit` (most operations
//! in the window first), so every view cuts the same way.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::insights::{Insight, InsightKind, Severity};
use super::{Filter, Sample};

/// Models a list shows when the caller names no `limit`: a page a person can read, and a
/// few dozen kilobytes of JSON.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` accepted: ten times the default bound on model names in the
/// history (`store.max_models`), so every model fits in one answer.
pub const MAX_LIMIT: usize = 10_000;

/// How many unknown names the insights report one by one; the rest are counted in one line.
pub const UNKNOWN_NAMES_REPORTED: usize = 5;
/// Calls an unknown name needs to be reported on its own when it is close to no installed
/// model: a mistake repeated, not one generated name among thousands.
pub const MIN_CALLS_REPORTED: u64 = 3;

/// The models Ollama has installed, as the sampler last read them from `/api/tags`.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The names as `/api/tags` spells them; `None` when the list is not known.
    names: Option<Vec<String>>,
    /// `key` of each name.
    keys: HashSet<String>,
    /// How a name is compared (`llama3.2` finds `llama3.2:latest`): the telemetry's key.
    key: fn(&str) -> String,
}

impl Installed {
    /// The installed `names` (`None`: not known), compared through `key`.
    pub fn new(names: Option<Vec<String>>, key: fn(&str) -> String) -> Installed {
        let keys = names.iter().flatten().map(|n| key(n)).collect();
        Installed { names, keys, key }
    }

    /// An installed list that is not known.
    pub fn not_known() -> Installed {
        Installed::new(None, |n| n.to_string())
    }

    /// Whether `model` is installed; `None` when the list is not known.
    pub fn contains(&self, model: &str) -> Option<bool> {
        self.names
            .as_ref()
            .map(|_| self.keys.contains(&(self.key)(model)))
    }

    /// The installed names (empty when not known).
    pub fn names(&self) -> &[String] {
        self.names.as_deref().unwrap_or_default()
    }
}

/// Whether `model` (with its samples) is an unknown name: no call ever succeeded, and it
/// is not installed (or, not knowing what is installed, every call was "model not found").
pub fn is_unknown(model: &str, samples: &[Sample], installed: &Installed) -> bool {
    if samples.iter().any(|s| s.success) {
        return false;
    }
    match installed.contains(model) {
        Some(is_installed) => !is_installed,
        None => !samples.is_empty() && samples.iter().all(|s| s.model_not_found),
    }
}

/// The installed model `name` most likely meant, by edit distance (Damerau-Levenshtein,
/// case-insensitive, `:latest` ignored): within 2 edits, or a third of the name's length
/// for long names; `None` when nothing is that close.
pub fn did_you_mean<'a>(name: &str, installed: &'a [String]) -> Option<&'a str> {
    fn bare(name: &str) -> String {
        let lower = name.trim().to_ascii_lowercase();
        match lower.strip_suffix(":latest") {
            Some(stem) => stem.to_string(),
            None => lower,
        }
    }
    let wanted = bare(name);
    let allowed = (wanted.chars().count() / 3).max(2);
    installed
        .iter()
        .map(|candidate| {
            (
                strsim::damerau_levenshtein(&wanted, &bare(candidate)),
                candidate,
            )
        })
        .filter(|(distance, _)| *distance <= allowed)
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))
        .map(|(_, candidate)| candidate.as_str())
}

/// An unknown name that calls asked for in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnknownName {
    /// The name as the requests spelled it.
    pub model: String,
    /// Calls that asked for it in the window.
    pub calls: u64,
    /// The installed model it most likely meant, if one is close.
    pub did_you_mean: Option<String>,
}

/// The unknown names with calls in the window worth reporting one by one (close to an
/// installed model, or asked for at least [`MIN_CALLS_REPORTED`] times), most calls first
/// (then by name), at most `top` of them; and the number of unknown names in all.
pub fn unknown_names<'a>(
    models: impl IntoIterator<Item = (&'a str, &'a [Sample])>,
    installed: &Installed,
    filter: &Filter,
    top: usize,
) -> (Vec<UnknownName>, usize) {
    let mut all: Vec<(&str, u64)> = models
        .into_iter()
        .filter(|(name, samples)| is_unknown(name, samples, installed))
        .map(|(name, samples)| (name, filter.select(samples).count() as u64))
        .filter(|(_, calls)| *calls > 0)
        .collect();
    let total = all.len();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let names = all
        .into_iter()
        .map(|(model, calls)| UnknownName {
            model: model.to_string(),
            calls,
            did_you_mean: did_you_mean(model, installed.names()).map(str::to_string),
        })
        .filter(|n| n.did_you_mean.is_some() || n.calls >= MIN_CALLS_REPORTED)
        .take(top)
        .collect();
    (names, total)
}

/// The insights about unknown names: one per reported name (the most frequent), and one
/// line counting the rest.
pub fn unknown_name_insights(names: &[UnknownName], total: usize) -> Vec<Insight> {
    let mut out: Vec<Insight> = names
        .iter()
        .map(|n| {
            let calls = format!("{} call{}", n.calls, if n.calls == 1 { "" } else { "s" });
            let message = match &n.did_you_mean {
                Some(meant) => format!(
                    "{calls} asked for `{}`, which Ollama does not have; did you mean `{meant}`?",
                    n.model
                ),
                None => format!(
                    "{calls} asked for `{}`, which Ollama does not have and which is close to no \
                     installed model; check the client's configuration or `ollama pull` it",
                    n.model
                ),
            };
            Insight {
                severity: Severity::Warning,
                kind: InsightKind::UnknownModel,
                model: Some(n.model.clone()),
                message,
                value: Some(n.calls as f64),
                threshold: None,
            }
        })
        .collect();
    let rest = total.saturating_sub(names.len());
    if rest > 0 {
        out.push(Insight {
            severity: Severity::Info,
            kind: InsightKind::UnknownModel,
            model: None,
            message: format!(
                "{rest} more model name{} that Ollama does not have {} asked for in the window; \
                 GET /api/model-performance/statistics?include_unknown=true lists them",
                if rest == 1 { "" } else { "s" },
                if rest == 1 { "was" } else { "were" }
            ),
            value: Some(rest as f64),
            threshold: None,
        });
    }
    out
}

/// Cuts `items` to the `limit` with the most operations (then by name, for a stable
/// page); returns them in that order and how many were left out.
pub fn top_by_operations<T>(
    mut items: Vec<T>,
    limit: usize,
    operations: impl Fn(&T) -> u64,
    name: impl Fn(&T) -> &str,
) -> (Vec<T>, usize) {
    items.sort_by(|a, b| {
        operations(b)
            .cmp(&operations(a))
            .then_with(|| name(a).cmp(name(b)))
    });
    let left_out = items.len().saturating_sub(limit);
    items.truncate(limit);
    (items, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> String {
        let lower = name.to_ascii_lowercase();
        if lower.contains(':') {
            lower
        } else {
            format!("{lower}:latest")
        }
    }

    fn failed(not_found: bool) -> Sample {
        let mut s = Sample::new(10, 0, false, 1.0);
        s.model_not_found = not_found;
        s
    }

    fn installed() -> Installed {
        Installed::new(Some(vec!["llama3.2:latest".into(), "qwen3:8b".into()]), key)
    }

    #[test]
    fn a_name_is_unknown_only_without_success_and_installation() {
        let ok = Sample::new(10, 0, true, 1.0);
        let inst = installed();
        assert!(is_unknown("lama3.2", &[failed(true)], &inst));
        assert!(
            is_unknown("gone:7b", &[failed(false)], &inst),
            "not installed, never worked"
        );
        assert!(!is_unknown("llama3.2", &[failed(true)], &inst), "installed");
        assert!(!is_unknown("LLAMA3.2:latest", &[failed(false)], &inst));
        assert!(
            !is_unknown("gone:7b", &[failed(true), ok], &inst),
            "it worked once"
        );
        let blind = Installed::not_known();
        assert!(is_unknown("lama3.2", &[failed(true), failed(true)], &blind));
        assert!(
            !is_unknown("slow:7b", &[failed(true), failed(false)], &blind),
            "a timeout is not Ollama saying it has no such model"
        );
    }

    #[test]
    fn the_near_miss_is_suggested_and_junk_gets_nothing() {
        let names: Vec<String> = vec![
            "llama3.2:latest".into(),
            "llama3.1:8b".into(),
            "qwen3:8b".into(),
        ];
        assert_eq!(did_you_mean("lama3.2", &names), Some("llama3.2:latest"));
        assert_eq!(
            did_you_mean("Llama3.2:latest", &names),
            Some("llama3.2:latest")
        );
        assert_eq!(did_you_mean("qwen3:8", &names), Some("qwen3:8b"));
        assert_eq!(did_you_mean("lalma3.1:8b", &names), Some("llama3.1:8b"));
        assert_eq!(did_you_mean("zq-7f3a9c1e", &names), None);
        assert_eq!(did_you_mean("x", &names), None);
        assert_eq!(did_you_mean("lama3.2", &[]), None);
    }

    #[test]
    fn unknown_names_are_counted_ranked_and_reported_once() {
        let inst = installed();
        let many: Vec<Sample> = (0..12).map(|_| failed(true)).collect();
        let few = vec![failed(true)];
        let repeated: Vec<Sample> = (0..3).map(|_| failed(true)).collect();
        let ok = vec![Sample::new(10, 0, true, 1.0)];
        let models: Vec<(&str, &[Sample])> = vec![
            ("lama3.2", &many),
            ("junk-1", &few),
            ("junk-2", &few),
            ("qwen3:7b", &few),
            ("always-this", &repeated),
            ("llama3.2", &ok),
        ];
        let (top, total) = unknown_names(models.clone(), &inst, &Filter::default(), 5);
        assert_eq!(total, 5);
        let reported: Vec<&str> = top.iter().map(|n| n.model.as_str()).collect();
        assert_eq!(
            reported,
            ["lama3.2", "always-this", "qwen3:7b"],
            "one-off junk is only counted"
        );
        assert_eq!(top[0].calls, 12);
        assert_eq!(top[0].did_you_mean.as_deref(), Some("llama3.2:latest"));
        assert_eq!(top[1].did_you_mean, None);
        assert_eq!(top[2].did_you_mean.as_deref(), Some("qwen3:8b"));
        let insights = unknown_name_insights(&top, total);
        assert_eq!(insights.len(), 4);
        assert_eq!(
            insights[0].message,
            "12 calls asked for `lama3.2`, which Ollama does not have; did you mean `llama3.2:latest`?"
        );
        assert!(insights[3].message.starts_with("2 more model names"));
        let (two, _) = unknown_names(models.clone(), &inst, &Filter::default(), 2);
        assert_eq!(two.len(), 2);
        let outside = Filter {
            since_ms: Some(1_000),
            ..Filter::default()
        };
        assert_eq!(unknown_names(models, &inst, &outside, 2).1, 0);
    }

    #[test]
    fn a_list_is_cut_to_the_busiest() {
        let items = vec![("b", 5), ("a", 5), ("c", 9), ("d", 1)];
        let (kept, left_out) = top_by_operations(items, 3, |i| i.1, |i| i.0);
        assert_eq!(kept, vec![("c", 9), ("a", 5), ("b", 5)]);
        assert_eq!(left_out, 1);
        let (kept, left_out) = top_by_operations(vec![("a", 1)], 3, |i| i.1, |i| i.0);
        assert_eq!((kept.len(), left_out), (1, 0));
    }
}
