//! Per call: which model of a [`Resolution`] runs, and which follow if it fails.
//!
//! **Exploration.** When some candidate fits the VRAM budget but has fewer than
//! `min_operations` measured calls, a share `explore` of the calls (a Bernoulli draw per
//! call) goes to such a candidate instead of the recommended model; when no model
//! qualifies yet, every call does. Which unmeasured candidate: one that has never run
//! first (nothing at all is known of it, and its first call is the cheapest lesson), else
//! Thompson sampling: one draw from each candidate's posterior score, and the best draw
//! runs. A fixed budget around Thompson sampling, rather than Thompson sampling over every
//! candidate, because the operator must know what exploration costs: pure Thompson
//! sampling would give a new model whatever share its uncertainty earns (up to most of
//! the traffic of a production photo evaluator), while the budget bounds it at `explore`
//! and Thompson sampling spends that budget where it is most likely to find a better model.

use rand::{Rng, RngExt};

use super::resolve::{Explorable, Resolution, RouteExclusion};
use crate::record::RouteReason;

/// One try of a call: the model and why it is the one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The model that runs.
    pub model: String,
    /// Why.
    pub reason: RouteReason,
}

/// Why a virtual name cannot be served now.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    /// `auto:SOMETHING` with an unknown priority.
    UnknownAuto {
        /// The name as sent.
        given: String,
    },
    /// No candidate can be chosen: every one is excluded.
    NoCandidate {
        /// The name as sent.
        name: String,
        /// The recommendation's words on why nothing qualifies.
        reason: String,
        /// Every candidate, and why it was left out.
        excluded: Vec<RouteExclusion>,
    },
    /// The call's workload headers cannot be used (no output token count to predict by).
    BadWorkload {
        /// What is missing and how to give it.
        message: String,
    },
}

impl RouteError {
    /// The HTTP status: 400 for a name the client got wrong, 503 when the name is right but
    /// no model can serve it now (a model may be measured, pulled or freed later).
    pub fn status(&self) -> u16 {
        match self {
            RouteError::UnknownAuto { .. } | RouteError::BadWorkload { .. } => 400,
            RouteError::NoCandidate { .. } => 503,
        }
    }

    /// The message a person can act on.
    pub fn message(&self) -> String {
        match self {
            RouteError::UnknownAuto { given } => format!(
                "ollameter: unknown virtual model {given:?}; valid: auto, auto:speed, \
                 auto:quality, auto:balanced, auto:reliable, or an alias from [routing.aliases]"
            ),
            RouteError::NoCandidate {
                name,
                reason,
                excluded,
            } => {
                let mut text = format!("ollameter: no model can serve {name:?} now: {reason}");
                if excluded.is_empty() {
                    text.push_str(
                        " (no candidate at all: name candidates in [routing.aliases], or pull a \
                         model of this kind)",
                    );
                } else {
                    text.push_str("; excluded: ");
                    let parts: Vec<String> = excluded
                        .iter()
                        .map(|e| format!("{} ({})", e.model, e.reason))
                        .collect();
                    text.push_str(&parts.join("; "));
                }
                text
            }
            RouteError::BadWorkload { message } => message.clone(),
        }
    }
}

/// The order in which to try the models of `resolution` for one call, at most
/// `max_attempts` long: the chosen model (recommended, or explored with probability
/// `explore`), then the other qualifying models best first, then the other unmeasured ones.
/// `draw` scores unmeasured candidates that have run (Thompson sampling: one posterior
/// draw each, aligned with its input). Only models that `admit` lets through are tried
/// (the call's own latency budget); the error when none is is the caller's to word.
pub fn choose<R: Rng + ?Sized>(
    resolution: &Resolution,
    explore: f64,
    max_attempts: u32,
    rng: &mut R,
    admit: impl Fn(&str) -> bool,
    draw: impl FnOnce(&[&Explorable], &mut R) -> Vec<f64>,
) -> Result<Vec<Attempt>, RouteError> {
    let mut ranked = resolution.ranked.iter().filter(|m| admit(m));
    let any_explorable = resolution.explorable.iter().any(|e| admit(&e.model));
    let best = ranked.next();
    let explore_now =
        any_explorable && (best.is_none() || rng.random_bool(explore.clamp(0.0, 1.0)));
    let first = if explore_now {
        Attempt {
            model: pick_explorable(&resolution.explorable, &admit, rng, draw),
            reason: RouteReason::Explore,
        }
    } else if let Some(best) = best {
        Attempt {
            model: best.clone(),
            reason: RouteReason::Recommended,
        }
    } else {
        return Err(RouteError::NoCandidate {
            name: resolution.name.clone(),
            reason: resolution.recommendation.reason.clone(),
            excluded: resolution.excluded.clone(),
        });
    };
    let mut attempts = vec![first];
    let rest = resolution
        .ranked
        .iter()
        .chain(resolution.explorable.iter().map(|e| &e.model))
        .filter(|m| admit(m));
    for model in rest {
        if attempts.len() >= max_attempts as usize {
            break;
        }
        if attempts.iter().all(|a| &a.model != model) {
            attempts.push(Attempt {
                model: model.clone(),
                reason: RouteReason::Fallback,
            });
        }
    }
    Ok(attempts)
}

/// The unmeasured candidate to run: one that never ran (uniformly among those), else the
/// best posterior draw.
fn pick_explorable<R: Rng + ?Sized>(
    explorable: &[Explorable],
    admit: impl Fn(&str) -> bool,
    rng: &mut R,
    draw: impl FnOnce(&[&Explorable], &mut R) -> Vec<f64>,
) -> String {
    let never: Vec<&Explorable> = explorable
        .iter()
        .filter(|e| e.operations == 0 && admit(&e.model))
        .collect();
    if !never.is_empty() {
        return never[rng.random_range(0..never.len())].model.clone();
    }
    let all: Vec<&Explorable> = explorable.iter().filter(|e| admit(&e.model)).collect();
    let scores = draw(&all, rng);
    let best = (0..all.len())
        .max_by(|&a, &b| {
            let (x, y) = (
                scores.get(a).copied().unwrap_or(f64::NEG_INFINITY),
                scores.get(b).copied().unwrap_or(f64::NEG_INFINITY),
            );
            x.total_cmp(&y).then(b.cmp(&a))
        })
        .unwrap_or(0);
    all[best].model.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::{RecommendParams, recommend};
    use crate::record::CallKind;
    use rand::SeedableRng;
    use rand::rngs::Xoshiro256PlusPlus;
    use std::time::Instant;

    fn resolution(ranked: &[&str], explorable: &[(&str, u64)]) -> Resolution {
        Resolution {
            name: "photo".into(),
            kind: CallKind::Generation,
            operation: None,
            candidates: Vec::new(),
            recommendation: recommend(&[], &RecommendParams::default()),
            ranked: ranked.iter().map(|m| m.to_string()).collect(),
            explorable: explorable
                .iter()
                .map(|(m, n)| Explorable {
                    model: m.to_string(),
                    operations: *n,
                })
                .collect(),
            excluded: vec![RouteExclusion {
                model: "big".into(),
                reason: "needs 20.0 GB of VRAM, 8.0 GB available".into(),
            }],
            posteriors: None,
            fits: None,
            computed_at: Instant::now(),
        }
    }

    fn all(_: &str) -> bool {
        true
    }

    fn uniform(e: &[&Explorable], rng: &mut Xoshiro256PlusPlus) -> Vec<f64> {
        e.iter().map(|_| rng.random::<f64>()).collect()
    }

    #[test]
    fn the_recommended_model_runs_and_the_others_follow() {
        let r = resolution(&["a", "b", "c", "d"], &[]);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let attempts = choose(&r, 0.1, 3, &mut rng, all, uniform).expect("routed");
        assert_eq!(
            attempts,
            vec![
                Attempt {
                    model: "a".into(),
                    reason: RouteReason::Recommended
                },
                Attempt {
                    model: "b".into(),
                    reason: RouteReason::Fallback
                },
                Attempt {
                    model: "c".into(),
                    reason: RouteReason::Fallback
                },
            ]
        );
        let one = choose(&r, 0.1, 1, &mut rng, all, uniform).expect("routed");
        assert_eq!(one.len(), 1, "max_attempts 1 turns fallback off");
    }

    #[test]
    fn exploration_takes_its_share_and_no_more() {
        let r = resolution(&["a"], &[("new", 3)]);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let n = 20_000;
        let explored = (0..n)
            .filter(|_| {
                let a = choose(&r, 0.1, 3, &mut rng, all, uniform).expect("routed");
                a[0].reason == RouteReason::Explore
            })
            .count();
        let share = explored as f64 / n as f64;
        // The binomial standard deviation at 20,000 calls is 0.0021: 5 of them.
        assert!((share - 0.1).abs() < 0.0106, "share {share}");
    }

    #[test]
    fn nothing_measured_yet_means_every_call_measures() {
        let r = resolution(&[], &[("x", 0), ("y", 2)]);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        for _ in 0..50 {
            let a = choose(&r, 0.1, 3, &mut rng, all, uniform).expect("routed");
            assert_eq!(a[0].model, "x", "the model that never ran goes first");
            assert_eq!(a[0].reason, RouteReason::Explore);
            assert_eq!(a[1].model, "y");
        }
    }

    #[test]
    fn thompson_draws_decide_among_models_that_ran() {
        let r = resolution(&["a"], &[("p", 2), ("q", 5)]);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let prefer_q = |e: &[&Explorable], _: &mut Xoshiro256PlusPlus| {
            e.iter()
                .map(|x| if x.model == "q" { 1.0 } else { 0.0 })
                .collect()
        };
        let a = choose(&r, 1.0, 3, &mut rng, all, prefer_q).expect("routed");
        assert_eq!(a[0].model, "q");
    }

    #[test]
    fn models_the_call_does_not_admit_are_never_tried() {
        let r = resolution(&["slow", "fast", "other"], &[("new", 0)]);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let not_slow = |m: &str| m != "slow";
        for _ in 0..200 {
            let a = choose(&r, 0.1, 3, &mut rng, not_slow, uniform).expect("routed");
            assert!(a.iter().all(|x| x.model != "slow"), "{a:?}");
            if a[0].reason == RouteReason::Recommended {
                assert_eq!(a[0].model, "fast", "the best admitted model leads");
            }
        }
        // Only unmeasured models admitted: every call explores them.
        let only_new = |m: &str| m == "new";
        let a = choose(&r, 0.1, 3, &mut rng, only_new, uniform).expect("routed");
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].model.as_str(), a[0].reason),
            ("new", RouteReason::Explore)
        );
        let none = |_: &str| false;
        let err = choose(&r, 0.1, 3, &mut rng, none, uniform).expect_err("nothing admitted");
        assert_eq!(err.status(), 503);
    }

    #[test]
    fn no_candidate_says_what_was_excluded() {
        let r = resolution(&[], &[]);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let err = choose(&r, 0.1, 3, &mut rng, all, uniform).expect_err("nothing fits");
        assert_eq!(err.status(), 503);
        let text = err.message();
        assert!(text.contains("\"photo\""), "{text}");
        assert!(
            text.contains("big (needs 20.0 GB of VRAM, 8.0 GB available)"),
            "{text}"
        );
        let unknown = RouteError::UnknownAuto {
            given: "auto:fast".into(),
        };
        assert_eq!(unknown.status(), 400);
        assert!(unknown.message().contains("auto:speed"));
    }
}
