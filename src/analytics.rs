//! Advanced analytics over the history: how long a call will take (a robust latency fit
//! per model), and what its tokens cost (energy and money). docs/analytics.md has the
//! method.
//!
//! - [`fit`](mod@fit): the pure robust fit of one model's calls (Huber IRLS, cold loads
//!   apart, residual-quantile intervals).
//! - [`cost`]: `[cost]` and the arithmetic from joules and GPU time to money.
//!
//! Fits are computed on demand, not cached, from a model's newest [`fit::MAX_FIT_CALLS`]
//! calls (a few dozen passes over them); routing caches its resolutions, so the proxy's hot path never
//! fits. They are keyed by [`FitKey`]: a model's calls on every host, or on one
//! upstream host (by the records' `host`).

pub mod cost;
pub mod fit;

use serde::{Deserialize, Serialize};

pub use fit::{FitError, LatencyFit, Point, Prediction};

use crate::history::History;
use crate::stats::Sample;

/// Which calls a fit is over: one model's, on every host or on one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FitKey {
    /// The model.
    pub model: String,
    /// The upstream host; `None`: every host's calls.
    pub host: Option<String>,
}

impl FitKey {
    /// The key of every call of `model`.
    pub fn model(model: impl Into<String>) -> FitKey {
        FitKey {
            model: model.into(),
            host: None,
        }
    }
}

/// The calls of `samples` (time-sorted) that the fit can use, newest
/// [`fit::MAX_FIT_CALLS`]: successful, with prompt and output token counts, and not a
/// load-only call (no tokens at all).
pub fn points(samples: &[Sample]) -> Vec<Point> {
    let mut out: Vec<Point> = samples
        .iter()
        .rev()
        .filter(|s| {
            s.success
                && !s.prompt_tokens.is_nan()
                && !s.output_tokens.is_nan()
                && s.prompt_tokens + s.output_tokens > 0.0
        })
        .take(fit::MAX_FIT_CALLS)
        .map(|s| Point {
            prompt_tokens: f64::from(s.prompt_tokens),
            output_tokens: f64::from(s.output_tokens),
            time_ms: f64::from(s.processing_time_ms),
            cold: !s.load_duration_ms.is_nan()
                && f64::from(s.load_duration_ms) >= fit::COLD_LOAD_MS,
        })
        .collect();
    out.reverse();
    out
}

/// Why no prediction.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PredictError {
    /// No record of the model.
    #[error("no calls of model {model:?} are recorded")]
    UnknownModel {
        /// The name asked for.
        model: String,
    },
    /// Too few calls to fit.
    #[error("model {model:?}: {source}")]
    TooFew {
        /// The model.
        model: String,
        /// How many there are and how many are needed.
        source: FitError,
    },
    /// The model has calls, but none on the asked-for host.
    #[error("no calls of model {model:?} served by host {host:?} are recorded")]
    NotOnHost {
        /// The model.
        model: String,
        /// The host asked for.
        host: String,
    },
    /// A cold prediction was asked for and no cold start was ever measured.
    #[error(
        "model {model:?}: no cold start (load_duration_ms of {cold_ms} ms or more) has been measured; ask for cold=false"
    )]
    NoColdStart {
        /// The model.
        model: String,
        /// The threshold.
        cold_ms: f64,
    },
}

/// The fit of `key`'s calls.
///
/// # Errors
/// [`PredictError::UnknownModel`], [`PredictError::NotOnHost`] or
/// [`PredictError::TooFew`].
pub fn fit_for(history: &History, key: &FitKey) -> Result<LatencyFit, PredictError> {
    let host = key.host.as_deref().map(|name| history.host_filter(name));
    let points = history
        .with_model(&key.model, |samples| match host {
            None => Some(points(samples)),
            Some(host) => {
                let on_host: Vec<Sample> =
                    samples.iter().filter(|s| s.host == host).copied().collect();
                (!on_host.is_empty()).then(|| points(&on_host))
            }
        })
        .ok_or_else(|| PredictError::UnknownModel {
            model: key.model.clone(),
        })?
        .ok_or_else(|| PredictError::NotOnHost {
            model: key.model.clone(),
            host: key.host.clone().unwrap_or_default(),
        })?;
    fit::fit(&points).map_err(|source| PredictError::TooFew {
        model: key.model.clone(),
        source,
    })
}

/// What a model's output tokens cost over some calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostFigure {
    /// Per 1,000 output tokens: the currency with prices configured, else joules.
    pub per_1k_output_tokens: f64,
    /// The standard error of its logarithm, from the spread of the calls' own figures.
    pub log_standard_error: f64,
    /// Calls it rests on.
    pub calls: u64,
}

/// The cost per output token of `samples` under `cost`'s prices: energy at
/// `price_per_kwh` plus GPU time at `gpu_hour_price` where set, joules alone where no
/// price is set. Calls without output tokens, or without energy when energy counts, are
/// left out; `None` when none is left.
pub fn cost_figure<'a>(
    samples: impl Iterator<Item = &'a Sample>,
    cost: &cost::CostConfig,
) -> Option<CostFigure> {
    let priced = cost.price_per_kwh.is_some() || cost.gpu_hour_price.is_some();
    let energy_price = if priced {
        cost.price_per_kwh.map(|p| p / cost::JOULES_PER_KWH)
    } else {
        Some(1.0)
    };
    let hour_price = cost.gpu_hour_price.map(|p| p / 3_600_000.0);
    let (mut total, mut tokens, mut logs) = (0.0, 0.0, Vec::new());
    for s in samples {
        if !s.success || s.output_tokens.is_nan() || s.output_tokens <= 0.0 {
            continue;
        }
        let energy = match energy_price {
            Some(_) if s.energy_j.is_nan() => continue,
            Some(price) => f64::from(s.energy_j) * price,
            None => 0.0,
        };
        let time = hour_price.map_or(0.0, |p| f64::from(s.processing_time_ms) * p);
        let call = energy + time;
        total += call;
        tokens += f64::from(s.output_tokens);
        if call > 0.0 {
            logs.push((call / f64::from(s.output_tokens)).ln());
        }
    }
    if tokens <= 0.0 {
        return None;
    }
    let n = logs.len() as f64;
    let log_standard_error = if logs.len() > 1 {
        let mean = logs.iter().sum::<f64>() / n;
        (logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() / n.sqrt()
    } else {
        // One call says little: as uncertain as a factor of e.
        1.0
    };
    Some(CostFigure {
        per_1k_output_tokens: total / tokens * 1000.0,
        log_standard_error,
        calls: logs.len() as u64,
    })
}

/// `GET /predict`'s answer without a model: every model that can be fitted, and why the
/// others cannot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PredictAll {
    /// One prediction per model that has a fit, by name.
    pub predictions: Vec<PredictAnswer>,
    /// The models without one, and why.
    pub not_predicted: Vec<NotPredicted>,
}

/// A model without a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotPredicted {
    /// The model.
    pub model: String,
    /// Why, in words.
    pub reason: String,
}

/// The prediction for every model of `models`.
pub fn predict_all(
    history: &History,
    models: &[String],
    host: Option<&str>,
    prompt_tokens: Option<u64>,
    output_tokens: u64,
    cold: bool,
) -> PredictAll {
    let mut all = PredictAll {
        predictions: Vec::new(),
        not_predicted: Vec::new(),
    };
    for model in models {
        match predict(
            history,
            &FitKey {
                model: model.clone(),
                host: host.map(str::to_owned),
            },
            prompt_tokens,
            output_tokens,
            cold,
        ) {
            Ok(p) => all.predictions.push(p),
            Err(e) => all.not_predicted.push(NotPredicted {
                model: model.clone(),
                reason: e.to_string(),
            }),
        }
    }
    all
}

/// `GET /predict`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PredictAnswer {
    /// The model.
    pub model: String,
    /// The upstream host whose calls were fitted; null: every host's.
    #[serde(default)]
    pub host: Option<String>,
    /// The prompt tokens asked about (the median of the calls fitted when not given).
    pub prompt_tokens: u64,
    /// The output tokens asked about.
    pub output_tokens: u64,
    /// Whether a cold start was asked about.
    pub cold: bool,
    /// The predicted processing time, ms.
    pub predicted_ms: f64,
    /// The 80% interval's low end (the warm residuals' p10, or the cold extra's), ms.
    pub low_ms: f64,
    /// Its high end (p90), ms.
    pub high_ms: f64,
    /// The fit: coefficients, calls fitted and error.
    pub fit: LatencyFit,
}

/// The prediction for `key` at these token counts.
///
/// # Errors
/// See [`PredictError`].
pub fn predict(
    history: &History,
    key: &FitKey,
    prompt_tokens: Option<u64>,
    output_tokens: u64,
    cold: bool,
) -> Result<PredictAnswer, PredictError> {
    let fit = fit_for(history, key)?;
    // Without a prompt size, the model's typical one: the median of the calls fitted.
    let prompt_tokens = prompt_tokens.unwrap_or(fit.median_prompt_tokens);
    let p = fit
        .predict(prompt_tokens as f64, output_tokens as f64, cold)
        .ok_or_else(|| PredictError::NoColdStart {
            model: key.model.clone(),
            cold_ms: fit::COLD_LOAD_MS,
        })?;
    Ok(PredictAnswer {
        model: key.model.clone(),
        host: key.host.clone(),
        prompt_tokens,
        output_tokens,
        cold,
        predicted_ms: p.predicted_ms,
        low_ms: p.low_ms,
        high_ms: p.high_ms,
        fit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::recorder::StoreListener;
    use chrono::{TimeZone, Utc};

    fn record(i: i64, prompt: u64, output: u64, time_ms: f64, load_ms: f64) -> Record {
        let mut r = Record::new(
            format!("r{i}"),
            Utc.timestamp_millis_opt(1_700_000_000_000 + i * 1000)
                .single()
                .expect("ts"),
            "m".into(),
            "chat".into(),
            "/api/chat".into(),
        );
        r.success = true;
        r.prompt_tokens = Some(prompt);
        r.output_tokens = Some(output);
        r.processing_time_ms = time_ms;
        r.load_duration_ms = Some(load_ms);
        r
    }

    #[test]
    fn predictions_come_from_the_history_and_errors_say_what_is_missing() {
        let history = History::default();
        assert_eq!(
            predict(&history, &FitKey::model("m"), Some(10), 10, false),
            Err(PredictError::UnknownModel { model: "m".into() })
        );
        let few: Vec<Record> = (0..5)
            .map(|i| record(i, 100, 10 * i as u64, 400.0 + 200.0 * i as f64, 5.0))
            .collect();
        history.committed(&few);
        let err = predict(&history, &FitKey::model("m"), Some(10), 10, false).unwrap_err();
        assert!(
            err.to_string().contains("5 warm") && err.to_string().contains("at least 10"),
            "{err}"
        );
        // 200 ms + 2 ms per prompt token + 20 ms per output token, exactly; one cold start.
        let calls: Vec<Record> = (5..40)
            .map(|i| {
                let (p, o) = (50 + (i as u64 * 37) % 400, 10 + (i as u64 * 53) % 300);
                record(i, p, o, 200.0 + 2.0 * p as f64 + 20.0 * o as f64, 3.0)
            })
            .chain([record(40, 100, 100, 2400.0 + 5000.0, 5000.0)])
            .collect();
        history.committed(&calls);
        let answer = predict(&history, &FitKey::model("m"), Some(100), 500, false).expect("fits");
        assert!((answer.predicted_ms - 10_400.0).abs() < 50.0, "{answer:?}");
        assert!(answer.low_ms <= answer.predicted_ms && answer.predicted_ms <= answer.high_ms);
        assert_eq!(answer.fit.cold_calls, 1);
        let cold = predict(&history, &FitKey::model("m"), Some(100), 100, true).expect("cold");
        assert!((cold.predicted_ms - 7400.0).abs() < 50.0, "{cold:?}");
        let other = FitKey {
            model: "m".into(),
            host: Some("gpu-2".into()),
        };
        assert!(matches!(
            fit_for(&history, &other),
            Err(PredictError::NotOnHost { .. })
        ));
        // The same model on another host, twice as slow: its own fit, and the model's
        // fit over every host lies between the two.
        let slow: Vec<Record> = (100..140)
            .map(|i| {
                let (p, o) = (50 + (i as u64 * 37) % 400, 10 + (i as u64 * 53) % 300);
                let mut r = record(
                    i,
                    p,
                    o,
                    2.0 * (200.0 + 2.0 * p as f64 + 20.0 * o as f64),
                    3.0,
                );
                r.host = Some("gpu-2".into());
                r
            })
            .collect();
        history.committed(&slow);
        let on_two = predict(&history, &other, Some(100), 500, false).expect("fits on gpu-2");
        assert!((on_two.predicted_ms - 20_800.0).abs() < 100.0, "{on_two:?}");
        let anywhere = predict(&history, &FitKey::model("m"), Some(100), 500, false).expect("fits");
        assert!(
            anywhere.predicted_ms > answer.predicted_ms + 1000.0
                && anywhere.predicted_ms < on_two.predicted_ms - 1000.0,
            "{anywhere:?}"
        );
    }
}
