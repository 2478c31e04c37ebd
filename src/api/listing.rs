//! What every list of models obeys: unknown names (never succeeded, not installed: see
//! [`crate::stats::known`]) are left out unless `include_unknown=true`, and a list is cut
//! to `limit` models (default [`DEFAULT_LIMIT`]), the busiest in the window first, saying
//! how many were left out. The statistics route, the insights and the dashboard read their
//! models through here, so they agree.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::error::ApiError;
use super::params::Params;
use super::query::Window;
use crate::stats::{self, Filter, Insight, Installed, ModelStatistics};
use crate::telemetry::model_key;

pub use crate::stats::known::{DEFAULT_LIMIT, MAX_LIMIT};

/// The list parameters, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListParams {
    /// List unknown names too.
    pub include_unknown: bool,
    /// Most models listed.
    pub limit: usize,
}

impl Default for ListParams {
    fn default() -> ListParams {
        ListParams {
            include_unknown: false,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl ListParams {
    /// Reads `include_unknown` and `limit` from the query string.
    pub fn from_params(p: &Params) -> Result<ListParams, ApiError> {
        Ok(ListParams {
            include_unknown: match p.text("include_unknown") {
                None => false,
                Some(v) => flag("include_unknown", v).map_err(ApiError::bad)?,
            },
            limit: p
                .whole("limit", 1, MAX_LIMIT as u64)?
                .map_or(DEFAULT_LIMIT, |n| n as usize),
        })
    }
}

/// A yes/no query value: `true`/`1` or `false`/`0`.
pub fn flag(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{name}: {value:?} must be true or false")),
    }
}

/// The installed models as the telemetry last read them.
pub fn installed(state: &ApiState) -> Installed {
    let names = state
        .telemetry
        .installed_models()
        .map(|list| list.into_iter().map(|m| m.name).collect());
    Installed::new(names, model_key)
}

/// The statistics of a list, and what it left out.
#[derive(Debug, Default)]
pub struct Listed {
    /// The models listed, most operations first.
    pub models: Vec<ModelStatistics>,
    /// Models with operations in the window that the `limit` cut.
    pub left_out: usize,
    /// Unknown names with operations in the window that were not listed.
    pub unknown_hidden: usize,
}

/// How many models a list left out, as the JSON answers carry it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct LeftOut {
    /// Models with operations in the window that `limit` cut (the least busy).
    pub models_left_out: usize,
    /// Names that no call ever succeeded with and that Ollama does not have installed,
    /// with calls in the window, not listed (ask with `include_unknown=true`).
    pub unknown_models_hidden: usize,
}

impl From<&Listed> for LeftOut {
    fn from(l: &Listed) -> LeftOut {
        LeftOut {
            models_left_out: l.left_out,
            unknown_models_hidden: l.unknown_hidden,
        }
    }
}

/// Each model's statistics over the window, cut by `list`. Blocking: it reads the
/// history under its lock.
pub(crate) fn statistics(
    state: &ApiState,
    window: &Window,
    filter: &Filter,
    list: ListParams,
) -> Listed {
    let installed = installed(state);
    let (all, unknown_hidden) = state.history.with_all(|all| {
        let mut hidden = 0;
        let mut out = Vec::new();
        for (name, samples) in all {
            let samples = window.of_source(samples);
            if !list.include_unknown && stats::is_unknown(name, &samples, &installed) {
                if filter.select(&samples).next().is_some() {
                    hidden += 1;
                }
                continue;
            }
            if let Some(s) = stats::model_statistics(name, &samples, filter) {
                out.push(s);
            }
        }
        (out, hidden)
    });
    let (models, left_out) = stats::top_by_operations(
        all,
        list.limit,
        |s| s.total_operations,
        |s| s.model.as_str(),
    );
    Listed {
        models,
        left_out,
        unknown_hidden,
    }
}

/// The model names a recommendation may consider by default: every one with records but
/// the unknown names, which `/recommend` never considers.
pub fn known_models(state: &ApiState) -> Vec<String> {
    let installed = installed(state);
    let mut names: Vec<String> = state.history.with_all(|all| {
        all.iter()
            .filter(|(name, s)| !stats::is_unknown(name, s, &installed))
            .map(|(name, _)| name.clone())
            .collect()
    });
    names.sort();
    names
}

/// Which of `names` are unknown names.
pub fn unknown_among(state: &ApiState, names: &[String]) -> Vec<String> {
    let installed = installed(state);
    state.history.with_all(|all| {
        names
            .iter()
            .filter(|n| {
                all.get(n.as_str())
                    .is_some_and(|s| stats::is_unknown(n, s, &installed))
            })
            .cloned()
            .collect()
    })
}

/// The insights over the window: the per-model rules over the known models (every model
/// with `include_unknown`), then the most frequent unknown names once each, with a
/// "did you mean". Blocking.
pub fn insights(
    state: &ApiState,
    params: &stats::InsightParams,
    include_unknown: bool,
) -> Vec<Insight> {
    let installed = installed(state);
    let window_ms = (params.duration_hours * 3_600_000.0) as i64;
    let filter = Filter {
        since_ms: Some(params.now_ms.saturating_sub(window_ms)),
        until_ms: Some(params.now_ms.saturating_add(1)),
        operation: None,
        host: None,
    };
    state.history.with_all(|all| {
        let mut out = stats::insights(
            all.iter()
                .filter(|(name, s)| include_unknown || !stats::is_unknown(name, s, &installed))
                .map(|(name, s)| (name.as_str(), s.as_slice())),
            params,
        );
        let (names, total) = stats::unknown_names(
            all.iter().map(|(name, s)| (name.as_str(), s.as_slice())),
            &installed,
            &filter,
            stats::known::UNKNOWN_NAMES_REPORTED,
        );
        out.extend(stats::unknown_name_insights(&names, total));
        // Keep the order the insights promise: most urgent first.
        out.sort_by_key(|i| std::cmp::Reverse(i.severity));
        out
    })
}
