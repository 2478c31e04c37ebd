//! The one model-choice policy: the recommendation over the live history and telemetry.
//! `GET /recommend` answers with it and the proxy's routing acts on it, so what a person
//! reads and what the proxy does can never disagree. [`crate::recommend`] holds the pure
//! scoring; this module only gathers its inputs (summaries from the history, VRAM needs
//! and the budget from telemetry).

use std::borrow::Cow;

use chrono::Utc;

use crate::history::History;
use crate::recommend::{
    self, Candidate, Excluded, ExclusionKind, Priority, RecommendParams, Recommendation, VramNeed,
};
use crate::record::Source;
use crate::stats::{self, Filter, Sample};
use crate::telemetry::{Telemetry, VramSource as TelemetryVramSource};

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
/// dashboard shows the same and routing acts on it. Blocking: it reads the history under
/// its lock.
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
        min_operations,
        available_vram_mb,
        models,
    } = request;
    let models = models.unwrap_or_else(|| history.models());
    let filter = filter(history, hours, operation.as_deref());
    let mut candidates = Vec::new();
    let mut missing = Vec::new();
    history.with_all(|all| {
        for model in &models {
            let summary = filter.as_ref().and_then(|f| {
                all.get(model)
                    .and_then(|s| stats::model_summary(model, &of_source(s, source), f))
            });
            match summary {
                Some(summary) => candidates.push(Candidate {
                    vram_need: VramNeed::from_records(&summary),
                    summary,
                }),
                None => missing.push(model.clone()),
            }
        }
    });
    for candidate in &mut candidates {
        // Telemetry's figure (measured by Ollama or NVML, or estimated from the model's
        // size) beats what the records carry.
        if let Some(need) = telemetry.vram_need(&candidate.summary.model) {
            candidate.vram_need = Some(VramNeed {
                mb: need.mb,
                source: match need.source {
                    TelemetryVramSource::Measured => recommend::VramSource::Measured,
                    TelemetryVramSource::Estimate => recommend::VramSource::Estimate,
                },
            });
        }
    }
    let params = RecommendParams {
        priority,
        min_operations,
        available_vram_mb,
        window_hours: hours,
    };
    let mut answer = if available_vram_mb.is_some() {
        recommend::recommend(&candidates, &params)
    } else {
        recommend_with_free_vram(&candidates, &params, telemetry)
    };
    for model in missing {
        answer.excluded.push(Excluded {
            model,
            kinds: vec![ExclusionKind::NoOperations],
            reason: "no operations recorded in the window".into(),
        });
    }
    if answer.recommended_model.is_none() && candidates.is_empty() {
        answer.reason = if models.is_empty() {
            "no model has any records yet: point your app at ollameter and make some calls".into()
        } else {
            "none of the models has operations in the window".into()
        };
    }
    answer
}

/// Without a budget from the caller: each candidate may use the GPU's free memory plus
/// what it holds itself right now (its own VRAM is freed when it is reloaded). Without
/// telemetry of the GPU there is no budget at all.
fn recommend_with_free_vram(
    candidates: &[Candidate],
    params: &RecommendParams,
    telemetry: &Telemetry,
) -> Recommendation {
    let Some(free) = telemetry.free_vram_mb() else {
        return recommend::recommend(candidates, params);
    };
    let mut fitting = Vec::new();
    let mut too_big = Vec::new();
    for c in candidates {
        let held = telemetry.held_vram_mb(&c.summary.model).unwrap_or(0.0);
        match c.vram_need {
            Some(need) if need.mb > free + held => too_big.push(Excluded {
                model: c.summary.model.clone(),
                kinds: vec![ExclusionKind::NeedsMoreVram],
                reason: format!(
                    "needs {:.1} GB of VRAM ({}), {:.1} GB available: {:.1} GB free on the GPU plus {:.1} GB it holds now",
                    need.mb / 1024.0,
                    need.source.describe(),
                    (free + held) / 1024.0,
                    free / 1024.0,
                    held / 1024.0
                ),
            }),
            _ => fitting.push(c.clone()),
        }
    }
    let mut answer = recommend::recommend(&fitting, params);
    answer.vram.available_mb = Some(free);
    answer.excluded.extend(too_big);
    answer
}
