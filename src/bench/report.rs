//! What a run found, per model: warm timings, time to first token, tokens/s, the cold
//! load, success and quality; as JSON for machines and as tables for people.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use serde_json::Value;

use super::engine::{CallResult, Outcome, PRIORITIES, Skipped, Tally};
use crate::stats::percentiles;

/// One model's figures over the calls measured so far.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelSummary {
    /// The model.
    pub model: String,
    /// An embedding model.
    pub embedding: bool,
    /// Measured calls finished (warm-ups not counted).
    pub calls: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// `succeeded / calls`.
    pub success_rate: Option<f64>,
    /// Median wall time of the successful measured calls, ms.
    pub warm_p50_ms: Option<f64>,
    /// Their 95th percentile, ms.
    pub warm_p95_ms: Option<f64>,
    /// Median time to first token, ms.
    pub ttft_p50_ms: Option<f64>,
    /// Median tokens per second.
    pub tokens_per_second_p50: Option<f64>,
    /// The cold load: the warm-up's load time (Ollama's `load_duration`, else its wall
    /// time); without a warm-up, the longest load a measured call waited for.
    pub load_ms: Option<f64>,
    /// Mean grade of the graded calls (1 to 5).
    pub quality_avg: Option<f64>,
    /// How many calls were graded.
    pub graded: u64,
    /// The distinct errors seen (at most 5).
    pub errors: Vec<String>,
}

/// A run's report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// When it began.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (null while running).
    pub finished_at: Option<DateTime<Utc>>,
    /// Stopped before every planned call was made.
    pub stopped: bool,
    /// Calls planned, warm-ups included.
    pub total_calls: u64,
    /// Calls made, warm-ups included.
    pub done_calls: u64,
    /// Each model measured.
    pub models: Vec<ModelSummary>,
    /// Models left out, and why.
    pub skipped: Vec<Skipped>,
    /// The sidecar's recommendation per priority over benchmark records (empty while
    /// running); each the `/recommend` answer or `{"error": ...}`.
    #[schema(value_type = Object)]
    pub recommendations: BTreeMap<String, Value>,
}

impl Report {
    /// The report of a finished (or stopped) run.
    pub fn from_outcome(outcome: &Outcome) -> Report {
        let mut report = Report::from_tally(&outcome.tally);
        report.started_at = Some(outcome.started_at);
        report.finished_at = Some(outcome.finished_at);
        report.stopped = outcome.stopped;
        report.recommendations = outcome.recommendations.clone();
        report
    }

    /// The report of the calls made so far.
    pub fn from_tally(tally: &Tally) -> Report {
        let mut models: Vec<ModelSummary> = tally
            .models
            .iter()
            .filter_map(|m| {
                let calls = tally.calls.get(&m.model)?;
                Some(summarize(&m.model, m.embedding, calls))
            })
            .collect();
        // In the plan's order; a model not reached yet has no row.
        models.retain(|m| m.calls > 0 || m.load_ms.is_some() || !m.errors.is_empty());
        Report {
            started_at: None,
            finished_at: None,
            stopped: tally.stopping && tally.done_calls < tally.total_calls,
            total_calls: tally.total_calls,
            done_calls: tally.done_calls,
            models,
            skipped: tally.skipped.clone(),
            recommendations: BTreeMap::new(),
        }
    }
}

/// One model's figures.
pub fn summarize(model: &str, embedding: bool, calls: &[CallResult]) -> ModelSummary {
    let measured: Vec<&CallResult> = calls.iter().filter(|c| !c.warmup).collect();
    let ok: Vec<&CallResult> = measured.iter().copied().filter(|c| c.success).collect();
    let collect = |f: fn(&CallResult) -> Option<f64>| -> Vec<f32> {
        ok.iter().filter_map(|c| f(c)).map(|v| v as f32).collect()
    };
    let mut wall = collect(|c| Some(c.wall_ms));
    let [p50, p95] = percentiles(&mut wall, [0.5, 0.95]);
    let [ttft] = percentiles(&mut collect(|c| c.ttft_ms), [0.5]);
    let [tps] = percentiles(&mut collect(|c| c.tokens_per_second), [0.5]);
    let warmup = calls.iter().find(|c| c.warmup && c.success);
    let load_ms = match warmup {
        Some(w) => w.load_ms.or(Some(w.wall_ms)),
        None => ok
            .iter()
            .filter_map(|c| c.load_ms)
            .fold(None, |max: Option<f64>, v| {
                Some(max.map_or(v, |m| m.max(v)))
            }),
    };
    let grades: Vec<f64> = ok.iter().filter_map(|c| c.quality_score).collect();
    let mut errors: Vec<String> = Vec::new();
    for e in calls
        .iter()
        .filter_map(|c| c.error.as_ref().or(c.note.as_ref()))
    {
        if errors.len() < 5 && !errors.contains(e) {
            errors.push(e.clone());
        }
    }
    ModelSummary {
        model: model.to_string(),
        embedding,
        calls: measured.len() as u64,
        succeeded: ok.len() as u64,
        success_rate: (!measured.is_empty()).then(|| ok.len() as f64 / measured.len() as f64),
        warm_p50_ms: p50,
        warm_p95_ms: p95,
        ttft_p50_ms: ttft,
        tokens_per_second_p50: tps,
        load_ms,
        quality_avg: (!grades.is_empty()).then(|| grades.iter().sum::<f64>() / grades.len() as f64),
        graded: grades.len() as u64,
        errors,
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".into(), |n| format!("{n:.decimals$}"))
}

/// The tables a person reads: one row per model, what was skipped, the errors, and the
/// recommendation per priority.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    if report.stopped {
        out.push_str(&format!(
            "stopped: {} of {} calls made; the figures cover what was measured\n",
            report.done_calls, report.total_calls
        ));
    }
    if report.models.is_empty() {
        out.push_str("no model was measured\n");
    } else {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED).set_header(vec![
            "model",
            "calls",
            "success",
            "warm p50 ms",
            "warm p95 ms",
            "ttft p50 ms",
            "tok/s p50",
            "load ms",
            "quality",
        ]);
        for m in &report.models {
            t.add_row(vec![
                m.model.clone(),
                m.calls.to_string(),
                m.success_rate
                    .map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
                num(m.warm_p50_ms, 1),
                num(m.warm_p95_ms, 1),
                num(m.ttft_p50_ms, 1),
                num(m.tokens_per_second_p50, 1),
                num(m.load_ms, 0),
                match m.quality_avg {
                    Some(q) => format!("{q:.2} ({} graded)", m.graded),
                    None => "-".into(),
                },
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    for s in &report.skipped {
        out.push_str(&format!("skipped {}: {}\n", s.model, s.reason));
    }
    for m in &report.models {
        for e in &m.errors {
            out.push_str(&format!("{}: {e}\n", m.model));
        }
    }
    // The priorities in the order the API lists them, then anything else.
    let mut order: Vec<(&String, &Value)> = report.recommendations.iter().collect();
    order.sort_by_key(|(p, _)| PRIORITIES.iter().position(|k| k == p).unwrap_or(usize::MAX));
    for (priority, answer) in order {
        match (
            answer["recommended_model"].as_str(),
            answer["error"].as_str(),
        ) {
            (Some(model), _) => out.push_str(&format!(
                "recommended ({priority}): {model}: {}\n",
                answer["reason"].as_str().unwrap_or_default()
            )),
            (None, Some(e)) => out.push_str(&format!("recommendation ({priority}): {e}\n")),
            (None, None) => out.push_str(&format!(
                "recommended ({priority}): none: {}\n",
                answer["reason"].as_str().unwrap_or_default()
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ms: f64, success: bool, warmup: bool, quality: Option<f64>) -> CallResult {
        CallResult {
            model: "m".into(),
            prompt: "p".into(),
            run: u32::from(!warmup),
            warmup,
            record_id: None,
            success,
            error: (!success).then(|| "500: crashed".to_string()),
            wall_ms: ms,
            ttft_ms: Some(ms / 10.0),
            tokens_per_second: Some(1000.0 / ms),
            load_ms: warmup.then_some(1500.0),
            output_tokens: Some(10),
            quality_score: quality,
            note: None,
            rule: None,
        }
    }

    #[test]
    fn warm_figures_leave_out_the_warm_up_and_failures() {
        let calls = [
            call(2000.0, true, true, None),
            call(100.0, true, false, Some(5.0)),
            call(200.0, true, false, Some(1.0)),
            call(300.0, true, false, None),
            call(5.0, false, false, None),
        ];
        let s = summarize("m", false, &calls);
        assert_eq!((s.calls, s.succeeded), (4, 3));
        assert_eq!(s.success_rate, Some(0.75));
        assert_eq!(s.warm_p50_ms, Some(200.0));
        assert_eq!(s.warm_p95_ms, Some(290.0));
        assert_eq!(s.ttft_p50_ms, Some(20.0));
        assert_eq!(s.load_ms, Some(1500.0));
        assert_eq!((s.quality_avg, s.graded), (Some(3.0), 2));
        assert_eq!(s.errors, ["500: crashed"]);
        let report = Report {
            started_at: None,
            finished_at: None,
            stopped: true,
            total_calls: 10,
            done_calls: 5,
            models: vec![s],
            skipped: vec![Skipped {
                model: "ghost".into(),
                reason: "not installed".into(),
            }],
            recommendations: BTreeMap::from([(
                "speed".to_string(),
                serde_json::json!({"recommended_model": "m", "reason": "fastest"}),
            )]),
        };
        let text = render(&report);
        for needle in [
            "stopped: 5 of 10",
            "75.0%",
            "200.0",
            "290.0",
            "1500",
            "3.00 (2 graded)",
            "skipped ghost: not installed",
            "recommended (speed): m: fastest",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
    }
}
