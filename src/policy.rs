//! The one model-choice policy: the recommendation over the live history and telemetry.
//! `GET /recommend` answers with it and the proxy's routing acts on it, so what a person
//! reads and what the proxy does can never disagree. [`crate::recommend`] holds the pure
//! scoring; this module only gathers its inputs (summaries from the history, VRAM needs
//! and the budget from telemetry).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;

use crate::analytics::{self, FitKey, cost::CostConfig};
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
    /// The call the choice is for: each model's time is predicted for it, the speed
    /// score uses the prediction, and `max_latency_ms` excludes the models predicted over.
    pub workload: Option<Workload>,
    /// The `efficient` priority's quality floor.
    pub min_quality: f64,
    /// Prices for the `efficient` priority; joules per token without them.
    pub cost: Arc<CostConfig>,
    /// The models' latency fits when the caller already has them (routing fits once per
    /// refresh and keeps them for the per-call budget); fitted here when `None`. A model
    /// missing from the map has no fit.
    pub fits: Option<Arc<HashMap<String, analytics::LatencyFit>>>,
}

/// A call's size and time budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Prompt tokens; each model's median prompt when `None`.
    pub prompt_tokens: Option<u64>,
    /// Output tokens expected.
    pub output_tokens: u64,
    /// Models predicted slower than this are excluded.
    pub max_latency_ms: Option<f64>,
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

/// The currency label as a `&'static str` (the recommendation's parameters are `Copy`):
/// each distinct label is leaked once.
fn currency_label(currency: &str) -> &'static str {
    use std::sync::{Mutex, PoisonError};
    static LABELS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut labels = LABELS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(l) = labels.iter().find(|l| **l == currency) {
        return l;
    }
    let leaked: &'static str = Box::leak(currency.to_owned().into_boxed_str());
    labels.push(leaked);
    leaked
}

/// Predicts `candidate`'s time for the workload and lets its speed figures follow: its
/// median (and quartiles) become the prediction for this call, so the speed score ranks
/// by it. A model without a fit keeps its own figures and is not excluded.
fn predict_into(
    history: &History,
    fits: Option<&HashMap<String, analytics::LatencyFit>>,
    candidate: &mut Candidate,
    workload: Workload,
) {
    let fitted;
    let fit = match fits {
        Some(fits) => match fits.get(&candidate.model) {
            Some(fit) => fit,
            None => return,
        },
        None => match analytics::fit_for(history, &FitKey::model(candidate.model.clone())) {
            Ok(fit) => {
                fitted = fit;
                &fitted
            }
            Err(_) => return,
        },
    };
    let prompt = workload.prompt_tokens.unwrap_or(fit.median_prompt_tokens);
    let Some(p) = fit.predict(prompt as f64, workload.output_tokens as f64, false) else {
        return;
    };
    candidate.prediction = Some(recommend::PredictedTime {
        predicted_ms: p.predicted_ms,
        low_ms: p.low_ms,
        high_ms: p.high_ms,
    });
    if let Some(s) = candidate.summary.as_mut()
        && let Some(p50) = s.p50_processing_time_ms.filter(|v| *v > 0.0)
        && p.predicted_ms > 0.0
    {
        let ratio = p.predicted_ms / p50;
        s.p50_processing_time_ms = Some(p.predicted_ms);
        s.p25_processing_time_ms = s.p25_processing_time_ms.map(|v| v * ratio);
        s.p75_processing_time_ms = s.p75_processing_time_ms.map(|v| v * ratio);
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
        workload,
        min_quality,
        cost,
        fits,
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
        if let Some(w) = workload {
            predict_into(history, fits.as_deref(), candidate, w);
        }
        if priority == Priority::Efficient
            && let Some(f) = filter.as_ref()
        {
            candidate.efficiency = history
                .with_model(&candidate.model, |s| {
                    let of = of_source(s, source);
                    analytics::cost_figure(f.select(&of), &cost)
                })
                .flatten()
                .map(|c| recommend::Efficiency {
                    per_1k_output_tokens: c.per_1k_output_tokens,
                    log_standard_error: c.log_standard_error,
                    calls: c.calls,
                });
        }
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
        max_latency_ms: workload.and_then(|w| w.max_latency_ms),
        workload: workload.map(|w| (w.prompt_tokens.unwrap_or(0), w.output_tokens)),
        min_quality,
        efficiency_unit: if cost.price_per_kwh.is_some() || cost.gpu_hour_price.is_some() {
            // Leaked once per distinct currency label: a handful per process at most.
            currency_label(&cost.currency)
        } else {
            "J"
        },
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
