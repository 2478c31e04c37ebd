//! Running a benchmark through a sidecar: every call is an ordinary proxied call to
//! Ollama's own routes, marked `X-Ollameter-Source: benchmark` so its record says where it
//! came from; graded answers get their quality through the API's quality route.
//!
//! Models run one after the other (so one model's load never slows another's calls), each
//! with an optional warm-up (a load-only generate, recorded as operation `load`), then
//! `runs` x prompts calls with at most `concurrency` in flight. A stop request lets the
//! calls in flight finish ([`Stop::Finish`]) or abandons them ([`Stop::Abort`]); what was
//! measured is kept either way.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::grade::grade;
use super::prompts::{Prompt, Request};
use crate::record::SOURCE_HEADER;

/// The operation a warm-up is recorded as (Ollama's own `done_reason` for a load).
pub const WARMUP_OPERATION: &str = "load";

/// The API's prefix (`crate::api::BASE`; the engine sits below the API).
const API_BASE: &str = "/api/model-performance";

/// The priorities the final recommendation is asked for.
pub const PRIORITIES: [&str; 4] = ["speed", "quality", "balanced", "reliable"];

/// Where the sidecar is.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL of the proxy (Ollama's routes), e.g. `http://127.0.0.1:11435`.
    pub proxy: String,
    /// Base URL of the API (the proxy's, unless `server.api_listen` is set).
    pub api: String,
    /// A bearer token for the API, when it asks for one.
    pub token: Option<String>,
}

/// Which models to measure.
#[derive(Debug, Clone, PartialEq)]
pub enum Models {
    /// These, as named.
    Named(Vec<String>),
    /// Every installed model that can generate (and embedding models with `embed`).
    Installed,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The models.
    pub models: Models,
    /// With [`Models::Installed`], embedding models too.
    pub embed: bool,
    /// The prompts.
    pub prompts: Vec<Prompt>,
    /// Measured calls per prompt and model.
    pub runs: u32,
    /// Calls in flight at once (per model).
    pub concurrency: u32,
    /// One unmeasured load call per model first.
    pub warmup: bool,
    /// Ollama's `keep_alive`, passed through (`"5m"`, `-1`, ...).
    pub keep_alive: Option<Value>,
}

/// How far a stop request goes. Ordered: each level includes the ones before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep going.
    Run,
    /// Start no new call; let the calls in flight finish.
    Finish,
    /// Abandon the calls in flight too (their records say `client_cancelled`).
    Abort,
}

/// One call and what it measured.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallResult {
    /// The model.
    pub model: String,
    /// The prompt's label (`warm-up` for a warm-up).
    pub prompt: String,
    /// Which run (1-based; 0 for a warm-up).
    pub run: u32,
    /// A warm-up: unmeasured, recorded as operation `load`.
    pub warmup: bool,
    /// The record the sidecar made (`X-Ollameter-Record-Id`).
    pub record_id: Option<String>,
    /// Whether the call succeeded.
    pub success: bool,
    /// Why not.
    pub error: Option<String>,
    /// Wall time from sending to the last byte, as the bench saw it.
    pub wall_ms: f64,
    /// Time to the first generated content (generation only).
    pub ttft_ms: Option<f64>,
    /// Ollama's `eval_count / eval_duration`.
    pub tokens_per_second: Option<f64>,
    /// Ollama's `load_duration`.
    pub load_ms: Option<f64>,
    /// Ollama's `eval_count`.
    pub output_tokens: Option<u64>,
    /// The grade on the 1-to-5 scale, when the prompt is graded.
    pub quality_score: Option<f64>,
    /// Something that went wrong after the call (storing the grade).
    pub note: Option<String>,
    /// The quality rule that scores this call in the proxy (read back after the run).
    #[serde(skip)]
    pub rule: Option<String>,
}

/// A model that was not measured, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Skipped {
    /// The model.
    pub model: String,
    /// Why.
    pub reason: String,
}

/// A model being measured.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ModelTarget {
    /// Its name as sent.
    pub model: String,
    /// An embedding model: measured with `/api/embed`, never graded.
    pub embedding: bool,
}

/// What the engine reports while it runs.
#[derive(Debug, Clone)]
pub enum Event {
    /// The plan is known: the models and how many calls (warm-ups included).
    Planned {
        /// The models that will be measured.
        models: Vec<ModelTarget>,
        /// Calls planned, warm-ups included.
        total_calls: u64,
    },
    /// A model will not be measured.
    Skipped(Skipped),
    /// A model's calls begin.
    ModelStarted(String),
    /// A call finished (a warm-up too).
    Call(CallResult),
    /// A stop was asked for: no new calls.
    Stopping,
}

/// Why a benchmark could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The sidecar did not answer.
    #[error(
        "cannot reach ollameter at {server}: {detail} (is `ollameter serve` running? use --server)"
    )]
    Sidecar {
        /// The URL tried.
        server: String,
        /// What went wrong.
        detail: String,
    },
    /// The sidecar answered, Ollama behind it did not.
    #[error("ollameter at {server} cannot reach Ollama: {detail}")]
    Ollama {
        /// The sidecar.
        server: String,
        /// Its message.
        detail: String,
    },
    /// Nothing to measure.
    #[error("no model to measure: {0}")]
    NoModels(String),
}

/// Every call a run made, by model, in the order they finished; what the tables and the
/// API's progress are built from.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Tally {
    /// The models planned, in order.
    pub models: Vec<ModelTarget>,
    /// The models not measured.
    pub skipped: Vec<Skipped>,
    /// Calls planned, warm-ups included.
    pub total_calls: u64,
    /// Calls finished (or failed), warm-ups included.
    pub done_calls: u64,
    /// The model being measured now.
    pub current_model: Option<String>,
    /// Each model's calls.
    pub calls: BTreeMap<String, Vec<CallResult>>,
    /// Whether a stop was asked for.
    pub stopping: bool,
}

impl Tally {
    /// Takes in one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Planned {
                models,
                total_calls,
            } => {
                self.models = models.clone();
                self.total_calls = *total_calls;
            }
            Event::Skipped(s) => self.skipped.push(s.clone()),
            Event::ModelStarted(m) => self.current_model = Some(m.clone()),
            Event::Call(c) => {
                self.done_calls += 1;
                self.calls
                    .entry(c.model.clone())
                    .or_default()
                    .push(c.clone());
            }
            Event::Stopping => self.stopping = true,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Every call, by model.
    pub tally: Tally,
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Whether it was stopped before the end.
    pub stopped: bool,
    /// The sidecar's recommendation per priority over benchmark records, or the error.
    pub recommendations: BTreeMap<String, Value>,
}

/// The HTTP client for a run: no proxy from the environment (the sidecar is local), a
/// connect timeout, no response timeout (model loads take minutes).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// Runs the plan against the sidecar, reporting through `on`; `stop` may end it early.
pub async fn run(
    target: &Target,
    plan: &Plan,
    mut stop: watch::Receiver<Stop>,
    on: &dyn Observer,
) -> Result<Outcome, BenchError> {
    let started_at = Utc::now();
    let started = Instant::now();
    let http = http_client();
    let side = Sidecar {
        http: &http,
        target,
    };
    side.check().await?;
    let (models, skipped) = side.resolve(plan).await?;
    let mut rep = Reporter {
        tally: Tally::default(),
        on,
    };
    for s in skipped {
        rep.emit(Event::Skipped(s));
    }
    if models.is_empty() {
        let reasons: Vec<String> = rep
            .tally
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.model, s.reason))
            .collect();
        return Err(BenchError::NoModels(if reasons.is_empty() {
            "Ollama lists no installed model (ollama pull one)".into()
        } else {
            reasons.join("; ")
        }));
    }
    let per_model = u64::from(plan.runs) * plan.prompts.len() as u64 + u64::from(plan.warmup);
    rep.emit(Event::Planned {
        models: models.clone(),
        total_calls: per_model * models.len() as u64,
    });
    let mut abort = stop.clone();
    'models: for model in &models {
        if *stop.borrow() != Stop::Run {
            break;
        }
        rep.emit(Event::ModelStarted(model.model.clone()));
        if plan.warmup {
            let call = side.warmup(model, plan.keep_alive.as_ref());
            let result = tokio::select! {
                r = call => r,
                () = until(&mut abort, Stop::Abort) => break 'models,
            };
            let unknown = is_unknown_model(&result);
            rep.emit(Event::Call(result.clone()));
            if unknown {
                rep.emit(Event::Skipped(Skipped {
                    model: model.model.clone(),
                    reason: result.error.unwrap_or_default(),
                }));
                continue;
            }
        }
        let order: Vec<(u32, usize)> = (1..=plan.runs)
            .flat_map(|run| (0..plan.prompts.len()).map(move |i| (run, i)))
            .collect();
        let mut jobs = order.into_iter();
        let mut in_flight = FuturesUnordered::new();
        let concurrency = plan.concurrency.max(1) as usize;
        let mut unknown = false;
        loop {
            while in_flight.len() < concurrency && *stop.borrow() == Stop::Run && !unknown {
                let Some((run, i)) = jobs.next() else {
                    break;
                };
                let prompt = &plan.prompts[i];
                in_flight.push(side.measure(model, prompt, run, plan.keep_alive.as_ref()));
            }
            if in_flight.is_empty() {
                break;
            }
            let stopping = rep.tally.stopping;
            tokio::select! {
                Some(result) = in_flight.next() => {
                    if is_unknown_model(&result) && !unknown {
                        unknown = true;
                        rep.emit(Event::Skipped(Skipped {
                            model: model.model.clone(),
                            reason: result.error.clone().unwrap_or_default(),
                        }));
                    }
                    rep.emit(Event::Call(result));
                }
                () = until(&mut stop, Stop::Finish), if !stopping => {
                    rep.emit(Event::Stopping);
                }
                () = until(&mut abort, Stop::Abort) => break 'models,
            }
        }
    }
    if *stop.borrow() != Stop::Run && !rep.tally.stopping {
        rep.emit(Event::Stopping);
    }
    let mut tally = rep.tally;
    let stopped = tally.stopping && tally.done_calls < tally.total_calls;
    side.read_rule_scores(&mut tally, started.elapsed()).await;
    let measured: Vec<String> = tally
        .calls
        .iter()
        .filter(|(_, calls)| calls.iter().any(|c| c.success && !c.warmup))
        .map(|(m, _)| m.clone())
        .collect();
    let recommendations = side.recommendations(&measured).await;
    tally.current_model = None;
    Ok(Outcome {
        tally,
        started_at,
        finished_at: Utc::now(),
        stopped,
        recommendations,
    })
}

/// Keeps the tally and passes each event on.
struct Reporter<'a> {
    tally: Tally,
    on: &'a dyn Observer,
}

impl Reporter<'_> {
    fn emit(&mut self, event: Event) {
        self.tally.apply(&event);
        self.on.event(&event);
    }
}

/// Who hears of a run's events (the progress bar, the API's run state).
pub trait Observer: Send + Sync {
    /// One event.
    fn event(&self, event: &Event);
}

/// Resolves when the stop level reaches `level`; never when nobody can ask any more.
async fn until(stop: &mut watch::Receiver<Stop>, level: Stop) {
    if stop.wait_for(|s| *s >= level).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn is_unknown_model(result: &CallResult) -> bool {
    !result.success
        && result
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("404") && e.contains("not found"))
}

struct Sidecar<'a> {
    http: &'a reqwest::Client,
    target: &'a Target,
}

impl Sidecar<'_> {
    fn api(&self, path: &str) -> reqwest::RequestBuilder {
        self.api_request(reqwest::Method::GET, path)
    }

    fn api_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{API_BASE}{path}", self.target.api);
        let request = self.http.request(method, url);
        match &self.target.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn sidecar_error(&self, server: &str, e: &reqwest::Error) -> BenchError {
        BenchError::Sidecar {
            server: server.to_string(),
            detail: crate::text::error_chain(e),
        }
    }

    /// The sidecar answers its health route.
    async fn check(&self) -> Result<(), BenchError> {
        let resp = self
            .api("/health")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| self.sidecar_error(&self.target.api, &e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(BenchError::Sidecar {
                server: self.target.api.clone(),
                detail: format!(
                    "its health route answered {} (is it ollameter?)",
                    resp.status()
                ),
            })
        }
    }

    /// Ollama's installed models through the proxy: name, capabilities, families.
    async fn installed(&self) -> Result<Vec<Value>, BenchError> {
        let url = format!("{}/api/tags", self.target.proxy);
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| self.sidecar_error(&self.target.proxy, &e))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(BenchError::Ollama {
                server: self.target.proxy.clone(),
                detail: format!("{status}: {}", error_text(&body)),
            });
        }
        Ok(body["models"].as_array().cloned().unwrap_or_default())
    }

    /// Whether an installed model only embeds: its capabilities from `/api/tags`, else
    /// `/api/show`, else a BERT family.
    async fn is_embedding(&self, entry: &Value) -> bool {
        let from = |caps: &Value| {
            caps.as_array().map(|c| {
                let has = |name: &str| c.iter().any(|v| v.as_str() == Some(name));
                has("embedding") && !has("completion")
            })
        };
        if let Some(answer) = from(&entry["capabilities"]) {
            return answer;
        }
        let name = entry["name"].as_str().unwrap_or_default();
        let shown = self
            .http
            .post(format!("{}/api/show", self.target.proxy))
            .json(&json!({ "model": name }))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        if let Ok(resp) = shown
            && let Ok(body) = resp.json::<Value>().await
            && let Some(answer) = from(&body["capabilities"])
        {
            return answer;
        }
        let details = &entry["details"];
        let mut families: Vec<&str> = details["families"]
            .as_array()
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        families.extend(details["family"].as_str());
        families.iter().any(|f| f.contains("bert"))
    }

    /// The models to measure, and those left out with the reason.
    async fn resolve(&self, plan: &Plan) -> Result<(Vec<ModelTarget>, Vec<Skipped>), BenchError> {
        let installed = self.installed().await?;
        let mut models = Vec::new();
        let mut skipped = Vec::new();
        match &plan.models {
            Models::Installed => {
                for entry in &installed {
                    let Some(name) = entry["name"].as_str() else {
                        continue;
                    };
                    let embedding = self.is_embedding(entry).await;
                    if embedding && !plan.embed {
                        skipped.push(Skipped {
                            model: name.to_string(),
                            reason: "an embedding model: add --embed to measure it".into(),
                        });
                        continue;
                    }
                    models.push(ModelTarget {
                        model: name.to_string(),
                        embedding,
                    });
                }
            }
            Models::Named(names) => {
                for name in names {
                    let entry = installed.iter().find(|e| {
                        let listed = e["name"].as_str().unwrap_or_default();
                        listed == name || listed == format!("{name}:latest")
                    });
                    match entry {
                        Some(entry) => models.push(ModelTarget {
                            model: name.clone(),
                            embedding: self.is_embedding(entry).await,
                        }),
                        None => skipped.push(Skipped {
                            model: name.clone(),
                            reason: format!(
                                "not installed in Ollama (`ollama pull {name}`; `ollama list` shows what is)"
                            ),
                        }),
                    }
                }
            }
        }
        Ok((models, skipped))
    }

    /// The warm-up: a load-only call, recorded as operation `load`.
    async fn warmup(&self, model: &ModelTarget, keep_alive: Option<&Value>) -> CallResult {
        let (path, mut body) = if model.embedding {
            (
                "/api/embed",
                json!({"model": model.model, "input": "warm-up"}),
            )
        } else {
            (
                "/api/generate",
                json!({"model": model.model, "stream": false}),
            )
        };
        if let Some(k) = keep_alive {
            body["keep_alive"] = k.clone();
        }
        let mut result = CallResult::new(&model.model, "warm-up", 0, true);
        self.send(path, &body, Some(WARMUP_OPERATION), false, &mut result)
            .await;
        result
    }

    /// One measured call, graded when the prompt says how.
    async fn measure(
        &self,
        model: &ModelTarget,
        prompt: &Prompt,
        run: u32,
        keep_alive: Option<&Value>,
    ) -> CallResult {
        let mut result = CallResult::new(&model.model, &prompt.name, run, false);
        let (path, body) = request_body(model, prompt, keep_alive);
        let answer = self
            .send(
                path,
                &body,
                prompt.operation.as_deref(),
                !model.embedding,
                &mut result,
            )
            .await;
        if !result.success || model.embedding {
            return result;
        }
        if let Some(score) = grade(&prompt.grading, &answer) {
            result.quality_score = Some(score);
            if let Some(id) = result.record_id.clone()
                && let Err(e) = self.store_quality(&id, score).await
            {
                result.note = Some(format!("the grade was not stored: {e}"));
            }
        } else if let Some(rule) = &prompt.grading.rule {
            result.rule = Some(rule.clone());
        }
        result
    }

    /// Sends one call through the proxy and fills `result`; returns the answer's text.
    async fn send(
        &self,
        path: &str,
        body: &Value,
        operation: Option<&str>,
        stream: bool,
        result: &mut CallResult,
    ) -> String {
        let started = Instant::now();
        let mut request = self
            .http
            .post(format!("{}{path}", self.target.proxy))
            .header(SOURCE_HEADER, "benchmark")
            .json(body);
        if let Some(op) = operation {
            request = request.header("x-operation", op);
        }
        let resp = match request.send().await {
            Ok(resp) => resp,
            Err(e) => {
                result.wall_ms = ms(started.elapsed());
                result.error = Some(format!(
                    "cannot reach ollameter at {}: {}",
                    self.target.proxy,
                    crate::text::error_chain(&e)
                ));
                return String::new();
            }
        };
        result.record_id = resp
            .headers()
            .get(crate::proxy::RECORD_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            result.wall_ms = ms(started.elapsed());
            result.error = Some(format!("{}: {}", status.as_u16(), error_text(&body)));
            return String::new();
        }
        let ndjson = stream
            && resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.contains("ndjson"));
        let mut answer = Answer::default();
        let mut resp = resp;
        let mut pending: Vec<u8> = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    pending.extend_from_slice(&chunk);
                    if ndjson {
                        while let Some(at) = pending.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = pending.drain(..=at).collect();
                            answer.line(&line, started);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    answer.error = Some(format!(
                        "the answer broke off: {}",
                        crate::text::error_chain(&e)
                    ));
                    break;
                }
            }
        }
        if !pending.is_empty() && answer.error.is_none() {
            answer.line(&pending, started);
        }
        result.wall_ms = ms(started.elapsed());
        result.ttft_ms = answer.ttft_ms;
        result.load_ms = answer.load_ms;
        result.output_tokens = answer.eval_count;
        result.tokens_per_second = match (answer.eval_count, answer.eval_ns) {
            (Some(n), Some(ns)) if ns > 0.0 => Some(n as f64 / ns * 1e9),
            _ => None,
        };
        result.success = answer.error.is_none() && (answer.done || !ndjson);
        if let Some(e) = answer.error {
            result.error = Some(e);
        } else if !result.success {
            result.error = Some("the stream ended without its final object".into());
        }
        answer.text
    }

    /// Stores a grade on the record; the record is queued when its answer ends and may be
    /// a moment from committed, so a 404 is retried briefly, as is a busy recorder.
    async fn store_quality(&self, id: &str, score: f64) -> Result<(), String> {
        let path = format!("/records/{}/quality", encode(id));
        let mut last = String::new();
        for attempt in 0..20u64 {
            let sent = self
                .api_request(reqwest::Method::POST, &path)
                .json(&json!({ "quality_score": score }))
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    last = format!("{}: {}", status.as_u16(), error_text(&body));
                    if !matches!(status.as_u16(), 404 | 503) {
                        return Err(last);
                    }
                }
                Err(e) => last = crate::text::error_chain(&e),
            }
            tokio::time::sleep(Duration::from_millis(25 * (attempt + 1))).await;
        }
        Err(last)
    }

    /// The proxy's quality rules scored some calls: read their scores back from the export.
    async fn read_rule_scores(&self, tally: &mut Tally, elapsed: Duration) {
        let hours = elapsed.as_secs_f64() / 3600.0 + 0.1;
        for (model, calls) in tally.calls.iter_mut() {
            let wanted: Vec<usize> = calls
                .iter()
                .enumerate()
                .filter(|(_, c)| c.rule.is_some() && c.success && c.record_id.is_some())
                .map(|(i, _)| i)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let mut scores: HashMap<String, Option<f64>> = HashMap::new();
            for attempt in 0..10u64 {
                let path = format!(
                    "/export?format=ndjson&model={}&duration_hours={hours}",
                    encode(model)
                );
                if let Ok(resp) = self.api(&path).send().await
                    && resp.status().is_success()
                    && let Ok(text) = resp.text().await
                {
                    for line in text.lines() {
                        if let Ok(v) = serde_json::from_str::<Value>(line)
                            && let Some(id) = v["id"].as_str()
                        {
                            scores.insert(id.to_string(), v["quality_score"].as_f64());
                        }
                    }
                }
                let all_there = wanted.iter().all(|i| {
                    calls[*i]
                        .record_id
                        .as_ref()
                        .is_some_and(|id| scores.contains_key(id))
                });
                if all_there {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
            }
            for i in wanted {
                let call = &mut calls[i];
                let id = call.record_id.clone().unwrap_or_default();
                match scores.get(&id).copied().flatten() {
                    Some(score) => call.quality_score = Some(score),
                    None => {
                        call.note = Some(format!(
                            "no quality score: no configured rule for operation {:?} read one from the answer",
                            call.rule.as_deref().unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }

    /// The sidecar's recommendation per priority over benchmark records of these models.
    async fn recommendations(&self, models: &[String]) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        if models.is_empty() {
            return out;
        }
        let list = encode(&models.join(","));
        for priority in PRIORITIES {
            let path =
                format!("/recommend?priority={priority}&source=benchmark&available_models={list}");
            let answer = match self.api(&path).send().await {
                Ok(resp) => {
                    let ok = resp.status().is_success();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    if ok {
                        body
                    } else {
                        json!({ "error": error_text(&body) })
                    }
                }
                Err(e) => json!({ "error": crate::text::error_chain(&e) }),
            };
            out.insert(priority.to_string(), answer);
        }
        out
    }
}

impl CallResult {
    fn new(model: &str, prompt: &str, run: u32, warmup: bool) -> CallResult {
        CallResult {
            model: model.to_string(),
            prompt: prompt.to_string(),
            run,
            warmup,
            record_id: None,
            success: false,
            error: None,
            wall_ms: 0.0,
            ttft_ms: None,
            tokens_per_second: None,
            load_ms: None,
            output_tokens: None,
            quality_score: None,
            note: None,
            rule: None,
        }
    }
}

/// The request for one prompt on one model.
fn request_body(
    model: &ModelTarget,
    prompt: &Prompt,
    keep_alive: Option<&Value>,
) -> (&'static str, Value) {
    let (path, mut body) = if model.embedding {
        (
            "/api/embed",
            json!({"model": model.model, "input": prompt.request.text()}),
        )
    } else {
        match &prompt.request {
            Request::Generate {
                prompt: text,
                system,
            } => {
                let mut body = json!({"model": model.model, "prompt": text, "stream": true});
                if let Some(system) = system {
                    body["system"] = json!(system);
                }
                if !prompt.images.is_empty() {
                    body["images"] = json!(prompt.images);
                }
                ("/api/generate", body)
            }
            Request::Chat { messages } => {
                let mut messages = messages.clone();
                if !prompt.images.is_empty() {
                    let last_user = messages
                        .iter()
                        .rposition(|m| m["role"] == "user")
                        .unwrap_or(messages.len() - 1);
                    messages[last_user]["images"] = json!(prompt.images);
                }
                (
                    "/api/chat",
                    json!({"model": model.model, "messages": messages, "stream": true}),
                )
            }
        }
    };
    if let Some(options) = &prompt.options {
        body["options"] = Value::Object(options.clone());
    }
    if let Some(format) = &prompt.format
        && !model.embedding
    {
        body["format"] = format.clone();
    }
    if let Some(k) = keep_alive {
        body["keep_alive"] = k.clone();
    }
    (path, body)
}

/// What a streamed (or single JSON) answer said.
#[derive(Default)]
struct Answer {
    text: String,
    ttft_ms: Option<f64>,
    load_ms: Option<f64>,
    eval_count: Option<u64>,
    eval_ns: Option<f64>,
    done: bool,
    error: Option<String>,
}

impl Answer {
    fn line(&mut self, line: &[u8], started: Instant) {
        let Ok(v) = serde_json::from_slice::<Value>(line.trim_ascii()) else {
            return;
        };
        if let Some(e) = v["error"].as_str() {
            self.error = Some(e.to_string());
            return;
        }
        let piece = v["response"]
            .as_str()
            .or_else(|| v["message"]["content"].as_str())
            .unwrap_or_default();
        if !piece.is_empty() {
            if self.ttft_ms.is_none() {
                self.ttft_ms = Some(ms(started.elapsed()));
            }
            self.text.push_str(piece);
        }
        if v["done"].as_bool() == Some(true) {
            self.done = true;
            self.load_ms = v["load_duration"].as_f64().map(|ns| ns / 1e6);
            self.eval_count = v["eval_count"].as_u64();
            self.eval_ns = v["eval_duration"].as_f64();
        }
        if v.get("embeddings").is_some() {
            self.load_ms = v["load_duration"].as_f64().map(|ns| ns / 1e6);
        }
    }
}

/// Percent-encodes a query value or path segment (model names carry `:` and `/`).
fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The message of an `{"error": ...}` body (Ollama's or ollameter's), else the body.
fn error_text(body: &Value) -> String {
    body["error"]
        .as_str()
        .or_else(|| body["error"]["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string())
}
