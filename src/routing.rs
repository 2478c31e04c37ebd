//! Model routing: virtual model names that the proxy resolves per request, fallback to the
//! next model when one fails before answering, and exploration of models not yet measured.
//!
//! - `auto` (balanced), `auto:speed`, `auto:quality`, `auto:balanced`, `auto:reliable`,
//!   and the aliases of `[routing.aliases.NAME]`, resolve to the model that
//!   [`crate::policy`] recommends: the same code and answer as `GET /recommend`.
//! - A plain model name is forwarded as sent; with a chain in `[routing.fallbacks]` it
//!   falls back along it.
//!
//! Sub-modules: [`config`] (`[routing]`), [`resolve`] (a name to its candidates and
//! recommendation; blocking), [`cache`] (at most 1 s old, refreshed in the background),
//! [`choose`] (per call: the model, exploration, the fallback order), [`body`] (the
//! `model` of a request body, replaced byte-exactly), [`share`] (the last hour of
//! decisions per name), [`workload`] (a call's own size and latency budget, from its
//! headers).
//!
//! The hot path of an explicit model costs one map lookup; a virtual name costs the
//! cache's read lock and a random draw (the recomputation runs on a blocking thread).

pub mod body;
pub mod cache;
pub mod choose;
pub mod config;
pub mod resolve;
pub mod share;
pub mod workload;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use serde::Serialize;

use crate::history::History;
use crate::metrics::Metrics;
use crate::recommend::Priority;
use crate::record::{CallKind, RouteReason};
use crate::telemetry::Telemetry;
pub use choose::{Attempt, RouteError};
use config::{AUTO, Alias, RoutingConfig, is_auto};
pub use resolve::{Explorable, Resolution, RouteExclusion, Veto};
use share::{ModelShare, Shares};
use workload::{CallWorkload, SizeKey};

/// The response header that names the model a routed call ran on.
pub const MODEL_HEADER: &str = "x-ollameter-model";

/// What a requested name is.
enum Target<'a> {
    /// A virtual name and what it stands for.
    Virtual(std::borrow::Cow<'a, Alias>),
    /// A real model with a fallback chain.
    Chain(&'a [String]),
    /// A real model, forwarded as sent.
    Plain,
}

/// The plan for one call: the models to try in order, each with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The model name the client sent.
    pub requested: String,
    /// The first is the one to run; the others follow, in order, if it fails before
    /// answering. Never empty.
    pub attempts: Vec<Attempt>,
    /// The candidates the call's own latency budget left out, each with its prediction
    /// (the answer names them in `X-Ollameter-Over-Budget`). Empty without a budget.
    pub over_budget: Vec<RouteExclusion>,
}

impl Plan {
    /// The `X-Ollameter-Over-Budget` value: `model: reason` for each candidate the budget
    /// left out, `; ` between them. `None` when the budget left none out.
    pub fn over_budget_header(&self) -> Option<axum::http::HeaderValue> {
        if self.over_budget.is_empty() {
            return None;
        }
        let text: Vec<String> = self
            .over_budget
            .iter()
            .map(|e| format!("{}: {}", e.model, e.reason))
            .collect();
        axum::http::HeaderValue::from_bytes(text.join("; ").as_bytes()).ok()
    }
}

/// The router; cheap to clone.
#[derive(Clone)]
pub struct ModelRouter {
    inner: Arc<Inner>,
}

struct Inner {
    config: RoutingConfig,
    history: Arc<History>,
    telemetry: Telemetry,
    metrics: Arc<Metrics>,
    veto: Option<Veto>,
    cache: cache::Cache,
    rng: Mutex<Xoshiro256PlusPlus>,
    shares: Mutex<Shares>,
}

impl ModelRouter {
    /// A router over the live history and telemetry. `veto` says why a model must not be
    /// chosen now (a firing critical alert); such models are skipped with that reason.
    pub fn new(
        config: RoutingConfig,
        history: Arc<History>,
        telemetry: Telemetry,
        metrics: Arc<Metrics>,
        veto: Option<Veto>,
    ) -> ModelRouter {
        ModelRouter {
            inner: Arc::new(Inner {
                config,
                history,
                telemetry,
                metrics,
                veto,
                cache: cache::Cache::default(),
                rng: Mutex::new(Xoshiro256PlusPlus::seed_from_u64(seed())),
                shares: Mutex::new(Shares::default()),
            }),
        }
    }

    /// The configuration it routes by.
    pub fn config(&self) -> &RoutingConfig {
        &self.inner.config
    }

    fn target<'a>(&'a self, requested: &str) -> Result<Target<'a>, RouteError> {
        let config = &self.inner.config;
        if let Some(alias) = config.aliases.get(requested) {
            return Ok(Target::Virtual(std::borrow::Cow::Borrowed(alias)));
        }
        if is_auto(requested) {
            let priority = match requested.strip_prefix("auto:") {
                None => Priority::Balanced,
                Some(p) => p.parse::<Priority>().map_err(|_| RouteError::UnknownAuto {
                    given: requested.to_owned(),
                })?,
            };
            return Ok(Target::Virtual(std::borrow::Cow::Owned(Alias::auto(
                priority,
            ))));
        }
        Ok(match config.fallbacks.get(requested) {
            Some(chain) => Target::Chain(chain),
            None => Target::Plain,
        })
    }

    /// Whether a name is one the router acts on (a virtual name, or a model with a
    /// fallback chain); a cheap check before reading anything else.
    pub fn routes(&self, requested: &str) -> bool {
        is_auto(requested)
            || self.inner.config.aliases.contains_key(requested)
            || self.inner.config.fallbacks.contains_key(requested)
    }

    /// The plan for a call that asked for `requested`, of `kind`, under `operation` (the
    /// request's, header or endpoint kind), with the workload its headers say (`call`;
    /// `body` gives the output limit when no header or alias names the output tokens).
    /// `Ok(None)`: forward as sent. An explicit model ignores the workload.
    pub async fn plan(
        &self,
        requested: &str,
        kind: CallKind,
        operation: &str,
        call: Option<CallWorkload>,
        body: &[u8],
    ) -> Result<Option<Plan>, RouteError> {
        let max = self.inner.config.max_attempts as usize;
        let alias = match self.target(requested)? {
            Target::Plain => return Ok(None),
            Target::Chain(chain) => {
                let attempts = std::iter::once(Attempt {
                    model: requested.to_owned(),
                    reason: RouteReason::Explicit,
                })
                .chain(chain.iter().map(|m| Attempt {
                    model: m.clone(),
                    reason: RouteReason::Fallback,
                }))
                .take(max)
                .collect();
                return Ok(Some(Plan {
                    requested: requested.to_owned(),
                    attempts,
                    over_budget: Vec::new(),
                }));
            }
            Target::Virtual(alias) => alias.into_owned(),
        };
        // A call that says its own workload: the ranking for its size is cached under the
        // size's coarse key (computed for the key's middle size, without a budget), and
        // the budget is checked below, exactly, against each candidate's fit.
        let workload = call
            .map(|call| {
                workload::effective(
                    call,
                    alias.expected_output_tokens,
                    alias.prompt_tokens,
                    alias.max_latency_ms,
                    body,
                )
                .map_err(|message| RouteError::BadWorkload { message })
            })
            .transpose()?;
        let size = workload.as_ref().map(SizeKey::of);
        let alias = match size {
            None => alias,
            Some(size) => Alias {
                expected_output_tokens: Some(size.output_tokens()),
                prompt_tokens: size.prompt_tokens(),
                max_latency_ms: None,
                ..alias
            },
        };
        // An alias with its own operation resolves the same whatever the request's.
        let operation = alias
            .operation
            .clone()
            .unwrap_or_else(|| operation.to_owned());
        let resolution = {
            let inner = self.inner.clone();
            let name = requested.to_owned();
            let op = operation.clone();
            self.inner
                .cache
                .get(requested, &operation, kind, size, move || {
                    resolve::resolve(
                        &inner.history,
                        &inner.telemetry,
                        inner.veto.as_ref(),
                        &name,
                        &alias,
                        kind,
                        Some(&op),
                        Instant::now(),
                        &inner.config.cost,
                    )
                })
                .await
        };
        let Some(resolution) = resolution else {
            return Err(RouteError::NoCandidate {
                name: requested.to_owned(),
                reason: "the choice could not be computed (see the sidecar's log)".into(),
                excluded: Vec::new(),
            });
        };
        let budget = workload.and_then(|w| w.max_latency_ms.map(|max| (w, max)));
        let over = |model: &str| budget.and_then(|b| over_budget(&resolution, model, b));
        let chosen = {
            let mut rng = self
                .inner
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            choose::choose(
                &resolution,
                self.inner.config.explore,
                self.inner.config.max_attempts,
                &mut *rng,
                |model| over(model).is_none(),
                |explorable, rng| thompson_draws(&resolution, explorable, rng),
            )
        };
        let over_budget: Vec<RouteExclusion> = match budget {
            None => Vec::new(),
            Some((w, max)) => resolution
                .ranked
                .iter()
                .chain(resolution.explorable.iter().map(|e| &e.model))
                .filter_map(|model| {
                    over(model).map(|o| RouteExclusion {
                        model: model.clone(),
                        reason: o.reason(w.output_tokens, max),
                    })
                })
                .collect(),
        };
        let attempts = match (chosen, budget) {
            (Ok(attempts), _) => attempts,
            (Err(RouteError::NoCandidate { name, excluded, .. }), Some((_, max)))
                if !over_budget.is_empty() =>
            {
                return Err(RouteError::NoCandidate {
                    name,
                    reason: format!(
                        "no candidate is predicted to finish within the call's budget of {} (raise \
                         X-Ollameter-Max-Latency-Ms, ask for fewer output tokens, or run a \
                         faster model)",
                        crate::stats::fmt_ms(max)
                    ),
                    excluded: over_budget.into_iter().chain(excluded).collect(),
                });
            }
            (Err(e), _) => return Err(e),
        };
        if !over_budget.is_empty() {
            tracing::debug!(
                requested,
                model = %attempts[0].model,
                left_out = over_budget.len(),
                "routing: the call's latency budget left candidates out"
            );
        }
        Ok(Some(Plan {
            requested: requested.to_owned(),
            attempts,
            over_budget,
        }))
    }

    /// Counts an attempt that is being sent: the last-hour shares and the Prometheus
    /// counter of routing decisions.
    pub fn note(&self, requested: &str, attempt: &Attempt) {
        self.inner
            .metrics
            .observe_routing(requested, &attempt.model, attempt.reason);
        let minute = chrono::Utc::now().timestamp() / 60;
        self.inner
            .shares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(requested, &attempt.model, attempt.reason, minute);
    }

    /// What `GET /api/model-performance/routing` shows. Blocking: resolves each name
    /// afresh (for generation calls under its own operation, and every cached key).
    pub fn snapshot(&self) -> RoutingSnapshot {
        let inner = &self.inner;
        let config = &inner.config;
        let minute = chrono::Utc::now().timestamp() / 60;
        let held = inner.cache.held();
        let mut names: Vec<(String, Alias, bool)> = std::iter::once(AUTO.to_owned())
            .chain(Priority::ALL.iter().map(|p| format!("auto:{p}")))
            .map(|name| {
                let priority = name
                    .strip_prefix("auto:")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(Priority::Balanced);
                (name, Alias::auto(priority), true)
            })
            .collect();
        names.extend(
            config
                .aliases
                .iter()
                .map(|(n, a)| (n.clone(), a.clone(), false)),
        );
        // The shares are copied out first: the hot path notes into them, and the
        // resolutions below take a while over a large history.
        let (mut alias_shares, fallback_shares): (Vec<Vec<ModelShare>>, Vec<Vec<ModelShare>>) = {
            let shares = inner.shares.lock().unwrap_or_else(PoisonError::into_inner);
            (
                names
                    .iter()
                    .map(|(name, _, _)| shares.last_hour(name, minute))
                    .collect(),
                config
                    .fallbacks
                    .keys()
                    .map(|model| shares.last_hour(model, minute))
                    .collect(),
            )
        };
        alias_shares.reverse();
        let aliases = names
            .into_iter()
            .map(|(name, alias, builtin)| {
                let mut current: Vec<CurrentChoice> = held
                    .iter()
                    .filter(|r| r.name == name)
                    .map(|r| {
                        let fresh = resolve::resolve(
                            &inner.history,
                            &inner.telemetry,
                            inner.veto.as_ref(),
                            &name,
                            &alias,
                            r.kind,
                            r.operation.as_deref(),
                            Instant::now(),
                            &inner.config.cost,
                        );
                        CurrentChoice::of(&fresh)
                    })
                    .collect();
                if current.is_empty() {
                    let fresh = resolve::resolve(
                        &inner.history,
                        &inner.telemetry,
                        inner.veto.as_ref(),
                        &name,
                        &alias,
                        CallKind::Generation,
                        None,
                        Instant::now(),
                        &inner.config.cost,
                    );
                    current.push(CurrentChoice::of(&fresh));
                }
                current.sort_by(|a, b| (a.kind, &a.operation).cmp(&(b.kind, &b.operation)));
                AliasView {
                    last_hour: alias_shares.pop().unwrap_or_default(),
                    name,
                    builtin,
                    priority: alias.priority,
                    candidates: alias.candidates.clone(),
                    operation: alias.operation.clone(),
                    min_operations: alias.min_operations,
                    max_vram_gb: alias.max_vram_mb.map(|mb| mb / 1024.0),
                    max_p95_ms: alias.max_p95_ms,
                    current,
                }
            })
            .collect();
        let fallbacks = config
            .fallbacks
            .iter()
            .zip(fallback_shares)
            .map(|((model, chain), last_hour)| FallbackView {
                model: model.clone(),
                chain: chain.clone(),
                last_hour,
            })
            .collect();
        RoutingSnapshot {
            explore: config.explore,
            max_attempts: config.max_attempts,
            aliases,
            fallbacks,
        }
    }
}

/// The veto `auto` and the aliases obey: a model with a firing critical alert (latency
/// doubled, a sixth more failures, quality a point down: see [`crate::alerts`]) is not
/// chosen, recommended or explored, and the routing view says which alert keeps it out.
/// Explicit model names are never vetoed.
pub fn alert_veto(alerts: Arc<crate::alerts::Alerts>) -> Veto {
    Arc::new(move |model: &str| {
        let firing = alerts.critical_alerts(model);
        if firing.is_empty() {
            return None;
        }
        let what: Vec<String> = firing.iter().map(|a| a.summary.clone()).collect();
        Some(format!(
            "a critical alert is firing: {} (GET /api/model-performance/alerts)",
            what.join("; ")
        ))
    })
}

/// A candidate's prediction for a call, over the call's budget.
#[derive(Debug, Clone, Copy)]
struct OverBudget {
    prediction: crate::analytics::Prediction,
    /// The prompt tokens predicted for.
    prompt_tokens: u64,
    /// Whether they are the model's median prompt (the call named none).
    median_prompt: bool,
}

/// Whether `model` is left out of a call whose workload and budget are `(workload, max)`:
/// its warm prediction for the call (prompt tokens: the call's, else the model's median)
/// is over the budget. `None` when it fits, or when it has no fit (a model not yet
/// measured with token counts is not excluded, as `/recommend` does not exclude it).
/// A few multiply-adds; no allocation.
fn over_budget(
    resolution: &Resolution,
    model: &str,
    (workload, max): (crate::policy::Workload, f64),
) -> Option<OverBudget> {
    let fit = resolution.fits.as_ref()?.get(model)?;
    let (prompt_tokens, median_prompt) = match workload.prompt_tokens {
        Some(p) => (p, false),
        None => (fit.median_prompt_tokens, true),
    };
    let prediction = fit.predict(prompt_tokens as f64, workload.output_tokens as f64, false)?;
    crate::recommend::over_latency_budget(prediction.predicted_ms, max).then_some(OverBudget {
        prediction,
        prompt_tokens,
        median_prompt,
    })
}

impl OverBudget {
    /// The reason, with the numbers.
    fn reason(&self, output_tokens: u64, max: f64) -> String {
        let p = &self.prediction;
        format!(
            "predicted {} (80% interval {} to {}) for {} prompt{} and {output_tokens} output \
             tokens, over the call's max latency of {}",
            crate::stats::fmt_ms(p.predicted_ms),
            crate::stats::fmt_ms(p.low_ms),
            crate::stats::fmt_ms(p.high_ms),
            self.prompt_tokens,
            if self.median_prompt {
                " (its median)"
            } else {
                ""
            },
            crate::stats::fmt_ms(max),
        )
    }
}

/// A seed that differs between runs (exploration needs no secrecy, only variety).
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// One Thompson draw per unmeasured candidate that has run: a joint draw of the truth
/// posteriors (latency, quality, success rate, as `/recommend` fits them) scored under the
/// name's priority; the best draw is explored. A candidate without a posterior (no
/// operations in the window) draws nothing and loses to any that has one.
pub(crate) fn thompson_draws(
    resolution: &Resolution,
    explorable: &[&Explorable],
    rng: &mut Xoshiro256PlusPlus,
) -> Vec<f64> {
    let Some(posteriors) = &resolution.posteriors else {
        return vec![f64::NEG_INFINITY; explorable.len()];
    };
    let index: Vec<Option<usize>> = explorable
        .iter()
        .map(|e| posteriors.models.iter().position(|m| m.model == e.model))
        .collect();
    let set: Vec<usize> = index.iter().flatten().copied().collect();
    let drawn = posteriors.draw_scores(resolution.recommendation.priority, &set, rng);
    let mut next = drawn.into_iter();
    index
        .iter()
        .map(|i| match i {
            Some(_) => next.next().unwrap_or(f64::NEG_INFINITY),
            None => f64::NEG_INFINITY,
        })
        .collect()
}

/// The current choice of a name for one kind of call and operation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CurrentChoice {
    /// The call kind.
    pub kind: CallKind,
    /// The operation whose statistics decide; null: every operation.
    pub operation: Option<String>,
    /// The model a call would run on now, unless it is explored; null when none can.
    pub model: Option<String>,
    /// `recommended`, or `explore` when nothing is measured yet; null with no model.
    pub reason: Option<RouteReason>,
    /// The recommendation's reason, with its numbers.
    pub why: String,
    /// The candidates considered.
    pub candidates: Vec<String>,
    /// The qualifying models, best first: the fallback order.
    pub ranked: Vec<String>,
    /// Candidates being measured, which share the exploration calls.
    pub explorable: Vec<Explorable>,
    /// Candidates that cannot be chosen, and why.
    pub excluded: Vec<RouteExclusion>,
}

impl CurrentChoice {
    fn of(r: &Resolution) -> CurrentChoice {
        let (model, reason) = match (r.ranked.first(), r.explorable.first()) {
            (Some(m), _) => (Some(m.clone()), Some(RouteReason::Recommended)),
            (None, Some(e)) => (Some(e.model.clone()), Some(RouteReason::Explore)),
            (None, None) => (None, None),
        };
        CurrentChoice {
            kind: r.kind,
            operation: r.operation.clone(),
            model,
            reason,
            why: r.recommendation.reason.clone(),
            candidates: r.candidates.clone(),
            ranked: r.ranked.clone(),
            explorable: r.explorable.clone(),
            excluded: r.excluded.clone(),
        }
    }
}

/// One virtual name on the routing endpoint.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AliasView {
    /// The name clients send.
    pub name: String,
    /// Whether it is built in (`auto...`) rather than configured.
    pub builtin: bool,
    /// What it optimises.
    pub priority: Priority,
    /// The configured candidates; null: the installed models of the call's kind.
    pub candidates: Option<Vec<String>>,
    /// The configured operation; null: the request's.
    pub operation: Option<String>,
    /// Fewest operations to be recommended.
    pub min_operations: u64,
    /// The configured VRAM budget; null: the GPU's free VRAM.
    pub max_vram_gb: Option<f64>,
    /// The configured p95 limit.
    pub max_p95_ms: Option<f64>,
    /// The choice now: for each kind and operation it has served, else for generation
    /// calls under its own operation.
    pub current: Vec<CurrentChoice>,
    /// The models its calls ran on in the last hour.
    pub last_hour: Vec<ModelShare>,
}

/// One explicit fallback chain.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FallbackView {
    /// The model clients name.
    pub model: String,
    /// The models tried after it, in order.
    pub chain: Vec<String>,
    /// Where its calls ran in the last hour.
    pub last_hour: Vec<ModelShare>,
}

/// `GET /api/model-performance/routing`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RoutingSnapshot {
    /// `routing.explore`.
    pub explore: f64,
    /// `routing.max_attempts`.
    pub max_attempts: u32,
    /// The built-in names, then the configured aliases.
    pub aliases: Vec<AliasView>,
    /// The explicit fallback chains.
    pub fallbacks: Vec<FallbackView>,
}
