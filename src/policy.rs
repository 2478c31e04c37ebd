//! The one model-choice policy: the recommendation over the live history and telemetry.
//! `GET /recommend` answers with it and the proxy's routing acts on it, so what a person
//! reads and what the proxy does can never disagree. [`crate::recommend`] holds the pure
//! scoring; this module only gathers its inputs (summaries from the history, VRAM needs
//! and the budget from telemetry).

use std::borrow::Cow;

use chrono::Utc;

use crate::history::History;
use crate::recommend::{
    self, Candidate, Excluded, ExclusionKind, Priority, RecommendParams, Recommendation,
    VramBudget, VramNeed,
};
use crate::record::Source;
use crate::stats::{self, Filter, Installed, Sample};
use crate::telemetry::{Telemetry, VramSource as TelemetryVramSource, model_key};

/// What a recommendation is asked for, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRequest {
    /// What to optimise.
    pub priority: Priority,
    /// Only the last this many hours; all of the history without.
    pub hours: Option<f64>,
    /// Only this operation.
    pub operation: Option<String>,
    /// Only records of this source (`benchmark`, `proxy`, `manual`, `import`); all without.
    pub source: Option<Source>,
    /// Only records of this upstream host (its interned id, see
    /// [`History::host_filter`]); all without.
    pub host: Option<u8>,
    /// Fewest operations a model needs.
    pub min_operations: u64,
    /// The caller's VRAM budget in MiB; without it, what the GPU has free.
    pub available_vram_mb: Option<f64>,
    /// Only these models; every model with records without.
    pub models: Option<Vec<String>>,
}

/// The history filter of a window and operation; `None` when the operation has never been
/// seen (so nothing can match).
pub fn filter(history: &History, hours: Option<f64>, operation: Option<&str>) -> Option<Filter> {
    let operation = match operation {
        Some(name) => Some(history.operation_id(name)?),
        None => None,
    };
    let since_ms = hours.map(|h| Utc::now().timestamp_millis() - (h * 3_600_000.0) as i64);
    Some(Filter {
        since_ms,
        until_ms: None,
        operation,
        host: None,
    })
}

/// A model's samples of `source`; the samples themselves without one.
pub fn of_source(samples: &[Sample], source: Option<Source>) -> Cow<'_, [Sample]> {
    match source {
        None => Cow::Borrowed(samples),
        Some(source) => Cow::Owned(
            samples
                .iter()
                .filter(|s| s.source == source)
                .copied()
                .collect(),
        ),
    }
}

/// The recommendation over the history and the telemetry, as `/recommend` answers it; the
/// dashboard shows the same and routing acts on it. Unknown names (never succeeded, not
/// installed) are never candidates: without `models` they are not considered at all, and
/// one named in `models` is excluded. Blocking: it reads the history under its lock.
pub fn recommendation(
    history: &History,
    telemetry: &Telemetry,
    request: PolicyRequest,
) -> Recommendation {
    let PolicyRequest {
        priority,
        hours,
        operation,
        source,
        host,
        min_operations,
        available_vram_mb,
        models,
    } = request;
    let installed = Installed::new(
        telemetry
            .installed_models()
            .map(|list| list.into_iter().map(|m| m.name).collect()),
        model_key,
    );
    let (models, unknown) = history.with_all(|all| match models {
        None => {
            let mut known: Vec<String> = all
                .iter()
                .filter(|(name, s)| !stats::is_unknown(name, s, &installed))
                .map(|(name, _)| name.clone())
                .collect();
            known.sort();
            (known, Vec::new())
        }
        Some(named) => named.into_iter().partition(|n| {
            !all.get(n.as_str())
                .is_some_and(|s| stats::is_unknown(n, s, &installed))
        }),
    });
    let filter = filter(history, hours, operation.as_deref()).map(|f| Filter { host, ..f });
    let mut candidates: Vec<Candidate> = history.with_all(|all| {
        models
            .iter()
            .map(|model| {
                let summary = filter.as_ref().and_then(|f| {
                    all.get(model)
                        .and_then(|s| stats::model_summary(model, &of_source(s, source), f))
                });
                summary.map_or_else(
                    || Candidate::without_operations(model.clone()),
                    Candidate::new,
                )
            })
            .collect()
    });
    for candidate in &mut candidates {
        // Telemetry's figure (measured by Ollama or NVML, or estimated from the model's
        // size) beats what the records carry.
        if let Some(need) = telemetry.vram_need(&candidate.model) {
            candidate.vram_need = Some(VramNeed {
                mb: need.mb,
                source: match need.source {
                    TelemetryVramSource::Measured => recommend::VramSource::Measured,
                    TelemetryVramSource::Estimate => recommend::VramSource::Estimate,
                },
            });
        }
        candidate.held_vram_mb = telemetry.held_vram_mb(&candidate.model);
    }
    // The caller's budget; without one, each model may use what the GPU has free plus what
    // it holds itself now; without GPU telemetry, nothing is checked.
    let vram = match (available_vram_mb, telemetry.free_vram_mb()) {
        (Some(mb), _) => VramBudget::Given(mb),
        (None, Some(free)) => VramBudget::FreePlusHeld(free),
        (None, None) => VramBudget::Unknown,
    };
    let params = RecommendParams {
        priority,
        min_operations,
        vram,
        window_hours: hours,
    };
    let mut answer = recommend::recommend(&candidates, &params);
    for model in unknown {
        answer.excluded.push(Excluded {
            model,
            kinds: vec![ExclusionKind::NoSuccessfulOperations],
            reason: "Ollama does not have this model and no call to it ever succeeded".into(),
        });
    }
    answer
}
