//! The command-line client of a running sidecar: `ollameter stats`, `compare`,
//! `recommend`, `trend`, `export` and `import` call the API through [`Client`], whose
//! methods return the API's own answer types ([`AllStatistics`], [`Recommendation`],
//! [`Trend`], ...), and print readable tables (or the JSON with `--json`); `report` saves
//! the dashboard as one HTML file. Rendering is pure, so it is tested without a server.

pub mod routing;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::query::{AllStatistics, CompareAnswer, InsightsAnswer, StatisticsAnswer};
use crate::api::records::ImportReport;
use crate::recommend::Recommendation;
use crate::stats::{ModelStatistics, Trend};

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The sidecar could not be reached.
    #[error(
        "cannot reach ollameter at {server}: {detail} (is `ollameter serve` running? use --server)"
    )]
    Unreachable {
        /// The server URL.
        server: String,
        /// What went wrong.
        detail: String,
    },
    /// The sidecar answered with an error.
    #[error("{status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Its `error` message.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(String),
}

/// A client of one sidecar.
pub struct Client {
    server: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the sidecar at `server` (e.g. `http://127.0.0.1:11435`).
    pub fn new(server: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder().no_proxy().build().map_err(|e| {
            ClientError::Unreachable {
                server: server.to_string(),
                detail: e.to_string(),
            }
        })?;
        Ok(Client {
            server: server.trim_end_matches('/').to_string(),
            http,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/model-performance{path}", self.server)
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> Result<bytes::Bytes, ClientError> {
        let resp = request.send().await.map_err(|e| ClientError::Unreachable {
            server: self.server.clone(),
            detail: crate::text::error_chain(&e),
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| ClientError::Unreachable {
            server: self.server.clone(),
            detail: e.to_string(),
        })?;
        if status.is_success() {
            Ok(body)
        } else {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            Err(ClientError::Api {
                status: status.as_u16(),
                message,
            })
        }
    }

    /// GETs an API path (with its query) and reads the answer as `T`.
    async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> Result<T, ClientError> {
        let body = self.answer(self.http.get(self.url(path_and_query))).await?;
        parse(&body)
    }

    /// POSTs a body with its content type to an API path and reads the answer as `T`.
    async fn post<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<T, ClientError> {
        let request = self
            .http
            .post(self.url(path_and_query))
            .header("content-type", content_type)
            .body(body);
        parse(&self.answer(request).await?)
    }

    /// `GET /statistics`: every model's statistics in the window.
    pub async fn all_statistics(&self, window: &Window) -> Result<AllStatistics, ClientError> {
        self.get(&format!("/statistics{}", window.query())).await
    }

    /// `GET /statistics/{model}`: one model's statistics (or the empty window).
    pub async fn model_statistics(
        &self,
        model: &str,
        window: &Window,
    ) -> Result<StatisticsAnswer, ClientError> {
        let path = format!("/statistics/{}{}", encode(model, true), window.query());
        self.get(&path).await
    }

    /// `POST /compare`: the models side by side and the winners.
    pub async fn compare(
        &self,
        models: &[String],
        window: &Window,
    ) -> Result<CompareAnswer, ClientError> {
        let body = serde_json::json!({
            "models": models,
            "duration_hours": window.hours,
            "operation": window.operation,
            "host": window.host,
        });
        self.post(
            "/compare",
            body.to_string().into_bytes(),
            "application/json",
        )
        .await
    }

    /// `GET /recommend`: the model to use for a priority.
    pub async fn recommend(&self, ask: &RecommendAsk) -> Result<Recommendation, ClientError> {
        let mut pairs = vec![
            ("priority", Some(ask.priority.clone())),
            ("available_vram_gb", ask.vram_gb.map(|v| v.to_string())),
            ("available_models", ask.models.clone()),
            ("min_operations", ask.min_operations.map(|n| n.to_string())),
            (
                "expected_output_tokens",
                ask.output_tokens.map(|n| n.to_string()),
            ),
            ("prompt_tokens", ask.prompt_tokens.map(|n| n.to_string())),
            (
                "max_latency_ms",
                ask.max_latency_ms.map(|ms| ms.to_string()),
            ),
            ("min_quality", ask.min_quality.map(|q| q.to_string())),
        ];
        pairs.extend(ask.window.pairs());
        let q = query(&pairs);
        self.get(&format!("/recommend{q}")).await
    }

    /// `GET /predict`: each model's (or one model's) predicted time for a call.
    pub async fn predict(
        &self,
        model: Option<&str>,
        host: Option<&str>,
        prompt_tokens: Option<u64>,
        output_tokens: u64,
        cold: bool,
    ) -> Result<crate::analytics::PredictAll, ClientError> {
        let q = query(&[
            ("model", model.map(str::to_string)),
            ("host", host.map(str::to_string)),
            ("prompt_tokens", prompt_tokens.map(|n| n.to_string())),
            ("output_tokens", Some(output_tokens.to_string())),
            ("cold", Some(cold.to_string())),
        ]);
        match model {
            Some(_) => {
                let one: crate::analytics::PredictAnswer =
                    self.get(&format!("/predict{q}")).await?;
                Ok(crate::analytics::PredictAll {
                    predictions: vec![one],
                    not_predicted: Vec::new(),
                })
            }
            None => self.get(&format!("/predict{q}")).await,
        }
    }

    /// `GET /routing`: what model routing does now (read as JSON: the CLI only prints it).
    pub async fn routing(&self) -> Result<Value, ClientError> {
        self.get("/routing").await
    }

    /// `GET /alerts`: firing and lately resolved alerts, of one model, upstream host and
    /// state if given.
    pub async fn alerts(
        &self,
        model: Option<&str>,
        host: Option<&str>,
        state: Option<&str>,
    ) -> Result<crate::alerts::AlertList, ClientError> {
        let q = query(&[
            ("model", model.map(str::to_string)),
            ("host", host.map(str::to_string)),
            ("state", state.map(str::to_string)),
        ]);
        self.get(&format!("/alerts{q}")).await
    }

    /// `GET /trend/{model}`: one metric of a model bucketed over time (of the calls one
    /// upstream `host` served, when given).
    pub async fn trend(
        &self,
        model: &str,
        metric: &str,
        hours: f64,
        bucket_minutes: u64,
        host: Option<&str>,
    ) -> Result<Trend, ClientError> {
        let q = query(&[
            ("metric", Some(metric.to_string())),
            ("hours", Some(hours.to_string())),
            ("bucket_minutes", Some(bucket_minutes.to_string())),
            ("host", host.map(str::to_string)),
        ]);
        self.get(&format!("/trend/{}{q}", encode(model, true)))
            .await
    }

    /// `GET /insights`: warnings a person can act on, over the last `hours` (the
    /// server's default window when `None`), of one upstream `host`'s calls when given.
    pub async fn insights(
        &self,
        hours: Option<f64>,
        host: Option<&str>,
        include_unknown: bool,
    ) -> Result<InsightsAnswer, ClientError> {
        let q = query(&[
            ("duration_hours", hours.map(|h| h.to_string())),
            ("host", host.map(str::to_string)),
            (
                "include_unknown",
                include_unknown.then(|| "true".to_string()),
            ),
        ]);
        self.get(&format!("/insights{q}")).await
    }

    /// `GET /export`: the records as stored, in `format` (json, ndjson, csv), of one
    /// model and one upstream `host` when given.
    pub async fn export(
        &self,
        format: &str,
        model: Option<&str>,
        hours: Option<f64>,
        host: Option<&str>,
    ) -> Result<bytes::Bytes, ClientError> {
        let q = query(&[
            ("format", Some(format.to_string())),
            ("model", model.map(str::to_string)),
            ("duration_hours", hours.map(|h| h.to_string())),
            ("host", host.map(str::to_string)),
        ]);
        self.answer(self.http.get(self.url(&format!("/export{q}"))))
            .await
    }

    /// `POST /import`: an export (or the earlier system's file) loaded into the store.
    pub async fn import(
        &self,
        body: Vec<u8>,
        format: Option<&str>,
    ) -> Result<ImportReport, ClientError> {
        let q = query(&[("format", format.map(str::to_string))]);
        self.post(&format!("/import{q}"), body, "application/octet-stream")
            .await
    }

    /// The dashboard as a standalone page (no reloads, no form) for `view`; an error page
    /// becomes its message.
    pub async fn dashboard(&self, view: &DashboardView) -> Result<String, ClientError> {
        let q = query(&[
            ("hours", Some(view.hours.to_string())),
            ("operation", view.operation.clone()),
            ("model", view.model.clone()),
            ("metric", Some(view.metric.clone())),
            ("host", view.host.clone()),
            ("output_tokens", view.output_tokens.map(|n| n.to_string())),
            ("prompt_tokens", view.prompt_tokens.map(|n| n.to_string())),
            (
                "max_latency_ms",
                view.max_latency_ms.map(|ms| ms.to_string()),
            ),
            ("cold", view.cold.then(|| "true".to_owned())),
            ("standalone", Some("1".into())),
        ]);
        let url = format!("{}/dashboard{q}", self.server);
        match self.answer(self.http.get(url)).await {
            Ok(body) => Ok(String::from_utf8_lossy(&body).into_owned()),
            Err(ClientError::Api { status: 404, .. }) => Err(ClientError::Api {
                status: 404,
                message: format!(
                    "{} serves no /dashboard: is it an ollameter older than the dashboard, or \
                     the proxy port of one with a separate API port?",
                    self.server
                ),
            }),
            Err(ClientError::Api { status, message }) => Err(ClientError::Api {
                status,
                message: page_message(&message),
            }),
            Err(e) => Err(e),
        }
    }
}

/// The message of the dashboard's error page, unescaped; the whole text when it has none.
fn page_message(page: &str) -> String {
    const START: &str = "<p class=\"message\">";
    let Some(from) = page.find(START).map(|i| i + START.len()) else {
        return page.to_string();
    };
    let text = page[from..].split("</p>").next().unwrap_or_default();
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

pub use crate::text::encode;
use crate::text::fmt_percent;

/// What the window of a statistics call is: the last `hours` (all of history when
/// `None`) and one operation (all when `None`).
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Only operations of the last this many hours.
    pub hours: Option<f64>,
    /// Only operations with this name.
    pub operation: Option<String>,
    /// Only records of this source (`benchmark`, `proxy`, `manual`, `import`).
    pub source: Option<String>,
    /// Only calls served by this upstream host (its name, as in `[[upstreams]]`).
    pub host: Option<String>,
}

impl Window {
    fn query(&self) -> String {
        query(&self.pairs())
    }

    fn pairs(&self) -> [(&'static str, Option<String>); 4] {
        [
            ("duration_hours", self.hours.map(|h| h.to_string())),
            ("operation", self.operation.clone()),
            ("source", self.source.clone()),
            ("host", self.host.clone()),
        ]
    }
}

/// What `ollameter report` saves of the dashboard.
#[derive(Debug, Clone)]
pub struct DashboardView {
    /// The window, hours.
    pub hours: f64,
    /// Only this operation.
    pub operation: Option<String>,
    /// The model whose trend is shown (the recommended one when `None`).
    pub model: Option<String>,
    /// The trend's metric.
    pub metric: String,
    /// Only the calls served by this upstream host.
    pub host: Option<String>,
    /// The call question: output tokens (none asked when `None`).
    pub output_tokens: Option<u64>,
    /// Its prompt tokens; each model's median when `None`.
    pub prompt_tokens: Option<u64>,
    /// Its time budget, ms.
    pub max_latency_ms: Option<f64>,
    /// Whether it starts cold.
    pub cold: bool,
}

/// What `ollameter recommend` asks.
#[derive(Debug, Clone, Default)]
pub struct RecommendAsk {
    /// `speed`, `quality`, `balanced` or `reliable` (the server checks it).
    pub priority: String,
    /// The VRAM the model must fit in, GB.
    pub vram_gb: Option<f64>,
    /// The candidates, comma-separated; every model with data when `None`.
    pub models: Option<String>,
    /// Fewest operations a candidate needs.
    pub min_operations: Option<u64>,
    /// The call to choose for: output tokens (each model's time is predicted for it).
    pub output_tokens: Option<u64>,
    /// The call's prompt tokens; each model's median without.
    pub prompt_tokens: Option<u64>,
    /// Models predicted slower than this for the call are left out.
    pub max_latency_ms: Option<f64>,
    /// The efficient priority's quality floor.
    pub min_quality: Option<f64>,
    /// The window the figures come from.
    pub window: Window,
}

/// A query string from the pairs that have a value (`?a=1&b=x`), or nothing.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v, false))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| {
        ClientError::Io(format!(
            "the answer is not what this ollameter expects ({e}); is the server the same version?"
        ))
    })
}

/// An answer as pretty JSON (`--json`).
pub fn json<T: Serialize>(answer: &T) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(answer).unwrap_or_default()
    )
}

/// A figure with `decimals`, or `-` when unknown.
fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".into(), |n| format!("{n:.decimals$}"))
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

fn stats_row(s: &ModelStatistics) -> Vec<String> {
    vec![
        s.model.clone(),
        s.total_operations.to_string(),
        fmt_percent(s.success_rate),
        num(s.processing_time_ms.p50, 1),
        num(s.processing_time_ms.p95, 1),
        num(s.ttft_ms.p50, 1),
        num(s.tokens_per_second.p50, 1),
        num(s.quality.avg, 2),
        num(s.memory_mb.max, 0),
        num(s.efficiency.joules_per_output_token, 3),
        num(s.efficiency.cost_per_1k_output_tokens, 4),
    ]
}

const STATS_HEADER: &[&str] = &[
    "model",
    "ops",
    "success",
    "p50 ms",
    "p95 ms",
    "ttft p50 ms",
    "tok/s p50",
    "quality",
    "mem MiB",
    "J/out tok",
    "cost/1k tok",
];

const NO_RECORDS: &str = "no records yet: point your app's OLLAMA_HOST at ollameter\n";

fn stats_table<'a>(models: impl IntoIterator<Item = &'a ModelStatistics>) -> String {
    let mut t = table(STATS_HEADER);
    for s in models {
        t.add_row(stats_row(s));
    }
    format!("{t}\n")
}

/// `ollameter stats`: one row per model.
pub fn render_statistics(answer: &AllStatistics) -> String {
    if answer.models.is_empty() && answer.left_out.unknown_models_hidden == 0 {
        return NO_RECORDS.into();
    }
    let mut out = stats_table(answer.models.values());
    let left = &answer.left_out;
    if left.models_left_out > 0 {
        out.push_str(&format!(
            "{} more models not shown (the least busy; the API's `limit` lists more)\n",
            left.models_left_out
        ));
    }
    if left.unknown_models_hidden > 0 {
        out.push_str(&format!(
            "{} model names that Ollama does not have were asked for (`include_unknown=true` lists them)\n",
            left.unknown_models_hidden
        ));
    }
    out
}

/// `ollameter stats MODEL`: its row, or why there is none.
pub fn render_model_statistics(answer: &StatisticsAnswer) -> String {
    match answer {
        StatisticsAnswer::Statistics(s) => stats_table([s.as_ref()]),
        StatisticsAnswer::Empty(empty) => format!("{}\n", empty.message),
    }
}

/// `ollameter compare`: the models side by side and the winners.
pub fn render_comparison(answer: &CompareAnswer) -> String {
    let mut out = stats_table(answer.models.values());
    let mut t = table(&["ranking", "model", "value"]);
    let r = &answer.rankings;
    for (name, ranking) in [
        ("fastest", &r.fastest),
        ("highest_quality", &r.highest_quality),
        ("most_reliable", &r.most_reliable),
        ("highest_throughput", &r.highest_throughput),
        ("most_memory_efficient", &r.most_memory_efficient),
        ("best_overall", &r.best_overall),
    ] {
        t.add_row(vec![
            name.to_string(),
            ranking.as_ref().map_or("-".into(), |r| r.model.clone()),
            num(ranking.as_ref().map(|r| r.value), 3),
        ]);
    }
    out.push_str(&format!("{t}\n"));
    if !answer.missing.is_empty() {
        out.push_str(&format!(
            "no data in the window: {}\n",
            answer.missing.join(", ")
        ));
    }
    out
}

/// Predictions as text: one line per model, fastest first.
pub fn render_predictions(answer: &crate::analytics::PredictAll) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut rows: Vec<&crate::analytics::PredictAnswer> = answer.predictions.iter().collect();
    rows.sort_by(|a, b| a.predicted_ms.total_cmp(&b.predicted_ms));
    for p in rows {
        let _ = writeln!(
            out,
            "{:<40} {:>10}  (80%: {} to {})  {} prompt + {} output tokens{}; fit over {} calls, mean error {}",
            p.model,
            crate::text::fmt_ms(p.predicted_ms),
            crate::text::fmt_ms(p.low_ms),
            crate::text::fmt_ms(p.high_ms),
            p.prompt_tokens,
            p.output_tokens,
            if p.cold { ", cold" } else { "" },
            p.fit.warm_calls,
            crate::text::fmt_ms(p.fit.mean_absolute_error_ms),
        );
    }
    for n in &answer.not_predicted {
        let _ = writeln!(out, "{:<40} no prediction: {}", n.model, n.reason);
    }
    if out.is_empty() {
        out.push_str("no models with records yet\n");
    }
    out
}

/// `ollameter recommend`: the pick, why, the alternatives and the excluded.
pub fn render_recommendation(answer: &Recommendation) -> String {
    let mut out = String::new();
    match &answer.recommended_model {
        Some(model) => out.push_str(&format!(
            "recommended ({}): {model}  score {}\n",
            answer.priority,
            num(answer.score, 3)
        )),
        None => out.push_str("no model qualifies\n"),
    }
    out.push_str(&format!("{}\n", answer.reason));
    if !answer.alternatives.is_empty() {
        let mut t = table(&["rank", "model", "score", "speed", "quality", "reliability"]);
        for a in &answer.alternatives {
            let c = &a.component_scores;
            t.add_row(vec![
                a.rank.to_string(),
                a.model.clone(),
                num(Some(a.score), 3),
                num(Some(c.speed), 3),
                num(c.quality, 3),
                num(Some(c.reliability), 3),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    if !answer.excluded.is_empty() {
        let mut t = table(&["excluded", "why"]);
        for e in &answer.excluded {
            t.add_row(vec![e.model.clone(), e.reason.clone()]);
        }
        out.push_str(&format!("{t}\n"));
    }
    out
}

/// `ollameter trend`: one row per bucket, then the direction.
pub fn render_trend(answer: &Trend) -> String {
    let mut t = table(&["bucket start", "count", "value"]);
    for b in &answer.buckets {
        t.add_row(vec![
            b.start.to_rfc3339(),
            b.count.to_string(),
            num(b.value, 3),
        ]);
    }
    format!(
        "{t}\n{} {}: {} (slope {} per hour)\n",
        answer.model,
        answer.metric.as_str(),
        serde_name(&answer.direction),
        num(answer.slope_per_hour, 3)
    )
}

/// `ollameter insights`: the warnings, most urgent first.
pub fn render_insights(answer: &InsightsAnswer) -> String {
    if answer.insights.is_empty() {
        return format!(
            "no warnings over the last {} hours\n",
            answer.duration_hours
        );
    }
    let mut t = table(&["severity", "kind", "model", "what"]);
    for i in &answer.insights {
        t.add_row(vec![
            serde_name(&i.severity),
            serde_name(&i.kind),
            i.model.clone().unwrap_or_else(|| "-".into()),
            i.message.clone(),
        ]);
    }
    format!("{t}\n")
}

/// `ollameter import`: what was stored, skipped and refused.
pub fn render_import(answer: &ImportReport) -> String {
    let mut text = format!(
        "imported {} records ({} already stored), rejected {}\n",
        answer.imported, answer.skipped_existing, answer.rejected_count
    );
    for r in &answer.rejected {
        text.push_str(&format!("  {}: {}\n", r.at, r.error));
    }
    text
}

/// A value's name as the API writes it (`"improving"`).
fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::query::EmptyWindow;
    use crate::stats::{Filter, Sample, model_statistics};

    fn statistics(model: &str) -> ModelStatistics {
        let samples: Vec<Sample> = (0..12)
            .map(|i| {
                let mut s = Sample::new(1_000 + i, 0, i % 4 != 0, 800.0 + i as f32);
                s.quality_score = 4.0;
                s
            })
            .collect();
        model_statistics(model, &samples, &Filter::default()).expect("statistics")
    }

    #[test]
    fn tables_show_the_numbers() {
        let s = statistics("llama3.2:3b");
        let answer = AllStatistics {
            duration_hours: None,
            operation: None,
            models: BTreeMap::from([(s.model.clone(), s.clone())]),
            left_out: Default::default(),
        };
        let text = render_statistics(&answer);
        for needle in ["llama3.2:3b", "12", "75%", "4.00"] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        let p50 = format!("{:.1}", s.processing_time_ms.p50.expect("p50"));
        assert!(text.contains(&p50), "{p50} missing:\n{text}");
        let empty = AllStatistics {
            models: BTreeMap::new(),
            ..answer
        };
        assert!(render_statistics(&empty).contains("no records yet"));
        let none = StatisticsAnswer::Empty(EmptyWindow {
            total_operations: 0,
            message: "no operations of this model in the window".into(),
        });
        assert!(render_model_statistics(&none).contains("no operations"));
    }

    #[test]
    fn the_json_is_the_answer_itself() {
        let s = statistics("m");
        let text = json(&StatisticsAnswer::Statistics(Box::new(s.clone())));
        let back: StatisticsAnswer = serde_json::from_str(&text).expect("parses");
        match back {
            StatisticsAnswer::Statistics(b) => assert_eq!(*b, s),
            StatisticsAnswer::Empty(_) => panic!("read back as empty"),
        }
    }

    #[test]
    fn an_import_lists_its_rejections() {
        let report: ImportReport = serde_json::from_value(serde_json::json!({
            "imported": 3, "skipped_existing": 1, "rejected_count": 1, "format": "csv",
            "rejected": [{"at": "line 7", "error": "processing_time_ms: missing"}]
        }))
        .expect("report");
        let text = render_import(&report);
        assert!(text.starts_with("imported 3 records (1 already stored), rejected 1"));
        assert!(
            text.contains("line 7: processing_time_ms: missing"),
            "{text}"
        );
    }

    #[test]
    fn queries_skip_what_is_unset_and_encode_the_rest() {
        let w = Window {
            hours: Some(2.0),
            operation: Some("a b".into()),
            source: None,
            host: Some("gpu 1".into()),
        };
        assert_eq!(w.query(), "?duration_hours=2&operation=a%20b&host=gpu%201");
        assert_eq!(Window::default().query(), "");
    }
}
