//! From a virtual name to its [`Resolution`]: the candidates (configured, or the installed
//! models of the call's kind), the routing-only exclusions (wrong kind, too slow at p95, a
//! firing critical alert), the recommendation of [`crate::policy`] over the rest, and the
//! candidates still worth measuring. Blocking (it reads the history); the result is
//! cached by [`super::cache`] and chosen from per call by [`super::choose`].

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use super::config::Alias;
use crate::history::History;
use crate::policy::{self, PolicyRequest};
use crate::recommend::{ExclusionKind, Posteriors, Priority, Recommendation, posteriors};
use crate::record::CallKind;
use crate::stats;
use crate::telemetry::{Telemetry, model_key};

/// Says why a model must not be chosen now (a firing critical alert), or `None`.
pub type Veto = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A model left out of a virtual name's choice, and why.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RouteExclusion {
    /// The model.
    pub model: String,
    /// Why, in words with numbers.
    pub reason: String,
}

/// A candidate not yet measured enough to be recommended, that fits the VRAM budget: it
/// gets the exploration share of the calls.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Explorable {
    /// The model.
    pub model: String,
    /// Its operations so far in the window (fewer than `min_operations`).
    pub operations: u64,
}

/// What one virtual name resolves to for one kind of call and operation, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    /// The name as the client sent it (`auto`, `auto:quality`, `photo`).
    pub name: String,
    /// The call kind the candidates serve.
    pub kind: CallKind,
    /// The operation whose statistics decided; `None`: all of them.
    pub operation: Option<String>,
    /// The candidates handed to the recommendation.
    pub candidates: Vec<String>,
    /// The recommendation, exactly as `GET /recommend` answers it for
    /// `priority`, `operation`, `min_operations`, `available_vram_gb` and
    /// `available_models` = `candidates`.
    pub recommendation: Recommendation,
    /// The qualifying models, best first: the recommended one and its alternatives, less
    /// any vetoed.
    pub ranked: Vec<String>,
    /// Candidates being measured.
    pub explorable: Vec<Explorable>,
    /// Every candidate that cannot be chosen, and why (routing's own reasons first, then
    /// the recommendation's).
    pub excluded: Vec<RouteExclusion>,
    /// The Bayesian posteriors (the ones the recommendation's confidence comes from) of
    /// every candidate with operations in the window: exploration's Thompson draws come
    /// from them. `None` when no candidate has any.
    #[serde(skip)]
    pub posteriors: Option<Posteriors>,
    /// The latency fit of each candidate that has one, when the name is resolved for a
    /// call size (an alias's configured one, or a call's own): the recommendation
    /// predicted by them, and a call's own budget is checked against them
    /// ([`super::workload`]). `None` without a call size.
    #[serde(skip)]
    pub fits: Option<std::sync::Arc<HashMap<String, crate::analytics::LatencyFit>>>,
    /// When it was computed.
    #[serde(skip)]
    pub computed_at: Instant,
}

/// The models a virtual name chooses from: the alias's list, or the installed models that
/// serve `kind` (by `/api/tags` capabilities, else by the kinds of call their records
/// show). Installed names are mapped to the spelling the history knows them by
/// (`llama3.2` for `llama3.2:latest`) so their records count. Also returns the configured
/// candidates left out for serving the other kind.
pub fn candidates(
    history: &History,
    telemetry: &Telemetry,
    alias: &Alias,
    kind: CallKind,
) -> (Vec<String>, Vec<RouteExclusion>) {
    let other = match kind {
        CallKind::Generation => CallKind::Embedding,
        CallKind::Embedding => CallKind::Generation,
    };
    let installed = telemetry.installed_models();
    let capability_kind = |model: &str| -> Option<CallKind> {
        let key = model_key(model);
        installed
            .as_ref()?
            .iter()
            .find(|m| model_key(&m.name) == key)
            .and_then(|m| CallKind::of_capabilities(&m.capabilities))
    };
    if let Some(list) = &alias.candidates {
        let mut keep = Vec::new();
        let mut excluded = Vec::new();
        for model in list {
            let serves_other = match capability_kind(model) {
                Some(k) => k == other,
                None => history.has_served(model, other) && !history.has_served(model, kind),
            };
            if serves_other {
                excluded.push(RouteExclusion {
                    model: model.clone(),
                    reason: format!(
                        "serves {} calls, and this is a {} call",
                        other.as_str(),
                        kind.as_str()
                    ),
                });
            } else {
                keep.push(model.clone());
            }
        }
        return (keep, excluded);
    }
    let served = history.models_serving(kind);
    let Some(installed) = &installed else {
        // No `/api/tags` (telemetry off or failing): the models whose records show calls
        // of this kind.
        return (served.into_iter().map(|(m, _)| m).collect(), Vec::new());
    };
    // The history's spelling of each installed model, the busiest when several match.
    let mut spelled: HashMap<String, (String, usize)> = HashMap::new();
    for (model, n) in history.models_serving(kind) {
        let entry = spelled
            .entry(model_key(&model))
            .or_insert_with(|| (model.clone(), n));
        if n > entry.1 {
            *entry = (model, n);
        }
    }
    let mut out: Vec<String> = installed
        .iter()
        .filter(|m| match CallKind::of_capabilities(&m.capabilities) {
            Some(k) => k == kind,
            None => spelled.contains_key(&model_key(&m.name)),
        })
        .map(|m| {
            spelled
                .get(&model_key(&m.name))
                .map_or_else(|| m.name.clone(), |(name, _)| name.clone())
        })
        .collect();
    out.sort();
    out.dedup();
    (out, Vec::new())
}

/// The p95 processing time of a model's successful operations under the filter.
fn p95_ms(history: &History, model: &str, filter: &stats::Filter) -> Option<f64> {
    history
        .with_model(model, |samples| {
            let mut times: Vec<f32> = filter
                .select(samples)
                .filter(|s| s.success)
                .map(|s| s.processing_time_ms)
                .collect();
            stats::percentile(&mut times, 95.0)
        })
        .flatten()
}

/// Resolves `alias` (named `name` by the client) for a call of `kind` whose operation is
/// `request_operation`.
#[expect(
    clippy::too_many_arguments,
    reason = "each input is distinct and named"
)]
pub fn resolve(
    history: &History,
    telemetry: &Telemetry,
    veto: Option<&Veto>,
    name: &str,
    alias: &Alias,
    kind: CallKind,
    request_operation: Option<&str>,
    now: Instant,
    cost: &std::sync::Arc<crate::analytics::cost::CostConfig>,
) -> Resolution {
    let operation = alias
        .operation
        .clone()
        .or_else(|| request_operation.map(str::to_owned));
    let (mut list, mut excluded) = candidates(history, telemetry, alias, kind);
    if let Some(max) = alias.max_p95_ms
        && let Some(filter) = policy::filter(history, None, operation.as_deref())
    {
        list.retain(|model| match p95_ms(history, model, &filter) {
            Some(p95) if p95 > max => {
                excluded.push(RouteExclusion {
                    model: model.clone(),
                    reason: format!(
                        "p95 processing time {} is over the alias's max_p95_ms of {}",
                        stats_ms(p95),
                        stats_ms(max)
                    ),
                });
                false
            }
            _ => true,
        });
    }
    // With a call size, every candidate's fit: the recommendation predicts by them, and
    // routing keeps them to check each call's own budget.
    let fits = alias
        .workload()
        .map(|_| std::sync::Arc::new(fits(history, &list)));
    let recommendation = policy::recommendation(
        history,
        telemetry,
        PolicyRequest {
            priority: alias.priority,
            hours: None,
            operation: operation.clone(),
            source: None,
            host: None,
            min_operations: alias.min_operations,
            available_vram_mb: alias.max_vram_mb,
            models: Some(list.clone()),
            workload: alias.workload(),
            min_quality: alias.min_quality,
            cost: cost.clone(),
            fits: fits.clone(),
        },
    );
    let mut ranked: Vec<String> = recommendation
        .recommended_model
        .iter()
        .cloned()
        .chain(recommendation.alternatives.iter().map(|a| a.model.clone()))
        .collect();
    let budget = alias
        .max_vram_mb
        .map(|mb| (mb, false))
        .or_else(|| telemetry.free_vram_mb().map(|free| (free, true)));
    let mut explorable = Vec::new();
    for e in &recommendation.excluded {
        let unmeasured = e.kinds.contains(&ExclusionKind::TooFewOperations)
            || e.kinds.contains(&ExclusionKind::NoOperations);
        if unmeasured && !e.kinds.contains(&ExclusionKind::NeedsMoreVram) {
            // The recommendation checks only models with operations; a model without any
            // is checked here, against the same budget.
            let need = telemetry.vram_need(&e.model).map(|n| n.mb);
            let available = budget.map(|(mb, plus_held)| {
                if plus_held {
                    mb + telemetry.held_vram_mb(&e.model).unwrap_or(0.0)
                } else {
                    mb
                }
            });
            if let (Some(need), Some(available)) = (need, available)
                && need > available
            {
                excluded.push(RouteExclusion {
                    model: e.model.clone(),
                    reason: format!(
                        "not measured yet, and needs {:.1} GB of VRAM, {:.1} GB available",
                        need / 1024.0,
                        available / 1024.0
                    ),
                });
                continue;
            }
            let operations = operations_in(history, &e.model, operation.as_deref());
            explorable.push(Explorable {
                model: e.model.clone(),
                operations,
            });
        }
    }
    if let Some(veto) = veto {
        let mut vetoed = |model: &String| -> bool {
            match veto(model) {
                Some(why) => {
                    excluded.push(RouteExclusion {
                        model: model.clone(),
                        reason: why,
                    });
                    true
                }
                None => false,
            }
        };
        ranked.retain(|m| !vetoed(m));
        explorable.retain(|e| !vetoed(&e.model));
    }
    for e in &recommendation.excluded {
        if !explorable.iter().any(|x| x.model == e.model)
            && !excluded.iter().any(|x| x.model == e.model)
        {
            excluded.push(RouteExclusion {
                model: e.model.clone(),
                reason: e.reason.clone(),
            });
        }
    }
    let posteriors = candidate_posteriors(history, &list, operation.as_deref());
    Resolution {
        name: name.to_owned(),
        kind,
        operation,
        candidates: list,
        recommendation,
        ranked,
        explorable,
        excluded,
        posteriors,
        fits,
        computed_at: now,
    }
}

/// The latency fit of each of `models` that has one (enough warm calls with token
/// counts).
fn fits(history: &History, models: &[String]) -> HashMap<String, crate::analytics::LatencyFit> {
    models
        .iter()
        .filter_map(|model| {
            crate::analytics::fit_for(history, &crate::analytics::FitKey::model(model.clone()))
                .ok()
                .map(|fit| (model.clone(), fit))
        })
        .collect()
}

/// The posteriors of the candidates with operations under `operation` (all time), each
/// fitted against all of them, as the recommendation fits them.
fn candidate_posteriors(
    history: &History,
    list: &[String],
    operation: Option<&str>,
) -> Option<Posteriors> {
    let filter = policy::filter(history, None, operation)?;
    let summaries: Vec<crate::stats::ModelSummary> = history.with_all(|all| {
        list.iter()
            .filter_map(|model| {
                all.get(model)
                    .and_then(|s| crate::stats::model_summary(model, s, &filter))
            })
            .collect()
    });
    if summaries.is_empty() {
        return None;
    }
    Some(posteriors(&summaries.iter().collect::<Vec<_>>()))
}

/// A model's operations in the window of `operation` (all time).
fn operations_in(history: &History, model: &str, operation: Option<&str>) -> u64 {
    let Some(filter) = policy::filter(history, None, operation) else {
        return 0;
    };
    history
        .with_model(model, |s| filter.select(s).count() as u64)
        .unwrap_or(0)
}

fn stats_ms(ms: f64) -> String {
    crate::stats::fmt_ms(ms)
}

/// The priority a name stands for, for documents.
pub fn describe(priority: Priority) -> &'static str {
    match priority {
        Priority::Speed => "the lowest median processing time",
        Priority::Quality => "the highest quality score",
        Priority::Balanced => "the best blend of speed, quality and reliability",
        Priority::Reliable => "the highest success rate",
        Priority::Efficient => "the least cost per output token above a quality floor",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::recorder::StoreListener;
    use chrono::{TimeZone, Utc};

    fn records(model: &str, endpoint: &str, n: usize, ms: f64) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let mut r = Record::new(
                    format!("{model}-{i}"),
                    Utc.timestamp_millis_opt(1_700_000_000_000 + i as i64)
                        .single()
                        .expect("ts"),
                    model.into(),
                    if endpoint == "/api/embed" {
                        "embed"
                    } else {
                        "chat"
                    }
                    .into(),
                    endpoint.into(),
                );
                r.success = true;
                r.processing_time_ms = ms + i as f64;
                r
            })
            .collect()
    }

    fn history(parts: &[(&str, &str, usize, f64)]) -> History {
        let h = History::default();
        for (model, endpoint, n, ms) in parts {
            h.committed(&records(model, endpoint, *n, *ms));
        }
        h
    }

    fn run(h: &History, alias: &Alias, kind: CallKind, veto: Option<&Veto>) -> Resolution {
        let op = match kind {
            CallKind::Generation => "chat",
            CallKind::Embedding => "embed",
        };
        resolve(
            h,
            &Telemetry::disabled(),
            veto,
            "test",
            alias,
            kind,
            Some(op),
            Instant::now(),
            &std::sync::Arc::default(),
        )
    }

    #[test]
    fn without_candidates_a_call_chooses_among_models_of_its_kind() {
        let h = history(&[
            ("chat:1b", "/api/chat", 12, 100.0),
            ("chat:7b", "/v1/chat/completions", 12, 50.0),
            ("embed:1b", "/api/embed", 12, 5.0),
        ]);
        let r = run(
            &h,
            &Alias::auto(Priority::Speed),
            CallKind::Generation,
            None,
        );
        assert_eq!(r.candidates, vec!["chat:1b", "chat:7b"]);
        assert_eq!(r.ranked, vec!["chat:7b", "chat:1b"]);
        let e = run(&h, &Alias::auto(Priority::Speed), CallKind::Embedding, None);
        assert_eq!(e.candidates, vec!["embed:1b"]);
        assert_eq!(e.ranked, vec!["embed:1b"]);
    }

    #[test]
    fn configured_candidates_of_the_other_kind_are_left_out_with_a_reason() {
        let h = history(&[
            ("chat:1b", "/api/chat", 12, 100.0),
            ("embed:1b", "/api/embed", 12, 5.0),
        ]);
        let alias = Alias {
            candidates: Some(vec!["chat:1b".into(), "embed:1b".into()]),
            ..Alias::auto(Priority::Speed)
        };
        let r = run(&h, &alias, CallKind::Generation, None);
        assert_eq!(r.ranked, vec!["chat:1b"]);
        assert_eq!(r.excluded[0].model, "embed:1b");
        assert!(r.excluded[0].reason.contains("serves embedding calls"));
    }

    #[test]
    fn p95_limit_unmeasured_candidates_and_vetoes() {
        let h = history(&[
            ("fast:1b", "/api/chat", 20, 100.0),
            ("slow:7b", "/api/chat", 20, 9_000.0),
            ("young:3b", "/api/chat", 3, 50.0),
        ]);
        let alias = Alias {
            candidates: Some(vec![
                "fast:1b".into(),
                "slow:7b".into(),
                "young:3b".into(),
                "new:1b".into(),
            ]),
            max_p95_ms: Some(5_000.0),
            ..Alias::auto(Priority::Speed)
        };
        let r = run(&h, &alias, CallKind::Generation, None);
        assert_eq!(r.ranked, vec!["fast:1b"]);
        let mut explorable: Vec<(&str, u64)> = r
            .explorable
            .iter()
            .map(|e| (e.model.as_str(), e.operations))
            .collect();
        explorable.sort();
        assert_eq!(explorable, vec![("new:1b", 0), ("young:3b", 3)]);
        let slow = r
            .excluded
            .iter()
            .find(|e| e.model == "slow:7b")
            .expect("slow");
        assert!(slow.reason.contains("max_p95_ms"), "{}", slow.reason);
        assert!(
            !r.candidates.contains(&"slow:7b".to_string()),
            "the recommendation never saw it"
        );

        let veto: Veto = std::sync::Arc::new(|m: &str| {
            (m == "fast:1b").then(|| "a critical alert is firing: success rate fell".to_string())
        });
        let r = run(&h, &alias, CallKind::Generation, Some(&veto));
        assert!(r.ranked.is_empty());
        let fast = r
            .excluded
            .iter()
            .find(|e| e.model == "fast:1b")
            .expect("vetoed");
        assert!(fast.reason.contains("critical alert"));
    }

    #[test]
    fn a_model_with_a_firing_critical_alert_is_skipped_by_auto() {
        use crate::alerts::engine::{AlertKind, Evidence, Severity};
        use crate::alerts::{Alert, AlertState, Alerts, config::AlertsConfig};
        let h = history(&[
            ("fast:1b", "/api/chat", 20, 100.0),
            ("slow:7b", "/api/chat", 20, 400.0),
        ]);
        let alerts = std::sync::Arc::new(Alerts::empty(AlertsConfig::default()));
        let veto = crate::routing::alert_veto(alerts.clone());
        let alias = Alias::auto(Priority::Speed);
        let r = run(&h, &alias, CallKind::Generation, Some(&veto));
        assert_eq!(r.ranked, vec!["fast:1b", "slow:7b"], "no alert: both");

        let mut alert = Alert {
            id: 1,
            model: "fast:1b".into(),
            host: None,
            kind: AlertKind::LatencyP50,
            severity: Severity::Warning,
            state: AlertState::Firing,
            started_at: Utc::now(),
            resolved_at: None,
            summary: "fast:1b: median processing time 100 ms -> 180 ms".into(),
            evidence: Evidence {
                metric: "median processing_time_ms".into(),
                baseline: 100.0,
                current: 180.0,
                baseline_samples: 50,
                recent_samples: 20,
                statistic: 10.0,
                threshold: 9.0,
            },
            resolved_evidence: None,
            note: None,
        };
        alerts.publish(&alert);
        let r = run(&h, &alias, CallKind::Generation, Some(&veto));
        assert_eq!(
            r.ranked,
            vec!["fast:1b", "slow:7b"],
            "a warning does not veto"
        );

        alert.severity = Severity::Critical;
        alert.summary = "fast:1b: median processing time 100 ms -> 250 ms".into();
        alerts.publish(&alert);
        let r = run(&h, &alias, CallKind::Generation, Some(&veto));
        assert_eq!(r.ranked, vec!["slow:7b"], "critical: skipped");
        let why = &r
            .excluded
            .iter()
            .find(|e| e.model == "fast:1b")
            .expect("excluded")
            .reason;
        assert!(
            why.contains("critical alert") && why.contains("250 ms"),
            "{why}"
        );

        alert.state = AlertState::Resolved;
        alerts.publish(&alert);
        let r = run(&h, &alias, CallKind::Generation, Some(&veto));
        assert_eq!(r.ranked, vec!["fast:1b", "slow:7b"], "resolved: back");
    }

    #[test]
    fn exploration_draws_come_from_the_truth_posteriors() {
        // Two candidates under min_operations: one always fails, one always succeeds.
        // Under `reliable` the posterior draws favour the one that succeeds.
        let h = history(&[
            ("good:1b", "/api/chat", 4, 100.0),
            ("flaky:1b", "/api/chat", 4, 100.0),
        ]);
        h.committed(
            &records("flaky:1b", "/api/chat", 4, 100.0)
                .into_iter()
                .enumerate()
                .map(|(i, mut r)| {
                    r.id = format!("flaky-fail-{i}");
                    r.success = false;
                    r
                })
                .collect::<Vec<_>>(),
        );
        let alias = Alias {
            candidates: Some(vec!["good:1b".into(), "flaky:1b".into()]),
            ..Alias::auto(Priority::Reliable)
        };
        let r = run(&h, &alias, CallKind::Generation, None);
        assert!(r.ranked.is_empty(), "nothing is measured: {:?}", r.ranked);
        let posteriors = r.posteriors.as_ref().expect("both have operations");
        assert_eq!(posteriors.models.len(), 2);
        let explorable: Vec<&Explorable> = r.explorable.iter().collect();
        let good = explorable
            .iter()
            .position(|e| e.model == "good:1b")
            .expect("good explorable");
        let mut rng = <rand::rngs::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(7);
        let wins = (0..400)
            .filter(|_| {
                let d = crate::routing::thompson_draws(&r, &explorable, &mut rng);
                let best = (0..d.len())
                    .max_by(|a, b| d[*a].total_cmp(&d[*b]))
                    .expect("two");
                best == good
            })
            .count();
        assert!(wins > 300, "the reliable model wins most draws: {wins}/400");
    }
}
