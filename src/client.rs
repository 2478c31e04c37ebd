//! The command-line client of a running sidecar: `ollameter stats`, `compare`,
//! `recommend`, `trend`, `export` and `import` call the API and print readable tables (or
//! the JSON itself with `--json`); `report` saves the dashboard as one HTML file. Rendering is pure so it is tested without a server.

pub mod routing;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

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
            detail: crate::proxy::meter::error_chain(&e),
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

    /// GETs an API path (with its query) as JSON.
    pub async fn get(&self, path_and_query: &str) -> Result<Value, ClientError> {
        let body = self.answer(self.http.get(self.url(path_and_query))).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Io(format!("answer is not JSON: {e}")))
    }

    /// POSTs JSON to an API path.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json");
        let body = self.answer(request.body(body.to_string())).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Io(format!("answer is not JSON: {e}")))
    }

    /// POSTs raw bytes (an import file) with a content type.
    pub async fn post_bytes(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<Value, ClientError> {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        let body = self.answer(request).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ClientError::Io(format!("answer is not JSON: {e}")))
    }

    /// GETs raw bytes (an export).
    pub async fn get_bytes(&self, path_and_query: &str) -> Result<bytes::Bytes, ClientError> {
        self.answer(self.http.get(self.url(path_and_query))).await
    }

    /// GETs the dashboard page (`/dashboard` and `query`, which starts with `?`); an error
    /// page becomes its message.
    pub async fn get_dashboard(&self, query: &str) -> Result<String, ClientError> {
        let url = format!("{}/dashboard{query}", self.server);
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

/// Percent-encodes a value for a query string or a path segment (model names carry `:`
/// and `/`; `/` stays as it is in paths).
pub fn encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn num(v: &Value, decimals: usize) -> String {
    match v.as_f64() {
        Some(n) => format!("{n:.decimals$}"),
        None => "-".into(),
    }
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |n| format!("{:.1}%", n * 100.0))
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    t
}

fn stats_row(name: &str, s: &Value) -> Vec<String> {
    vec![
        name.to_string(),
        num(&s["total_operations"], 0),
        pct(&s["success_rate"]),
        num(&s["processing_time_ms"]["p50"], 1),
        num(&s["processing_time_ms"]["p95"], 1),
        num(&s["ttft_ms"]["p50"], 1),
        num(&s["tokens_per_second"]["p50"], 1),
        num(&s["quality"]["avg"], 2),
        num(&s["memory_mb"]["max"], 0),
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
];

/// `ollameter stats`: one row per model.
pub fn render_statistics(answer: &Value) -> String {
    let mut t = table(STATS_HEADER);
    if let Some(models) = answer["models"].as_object() {
        for (name, s) in models {
            t.add_row(stats_row(name, s));
        }
        if models.is_empty() {
            return "no records yet: point your app's OLLAMA_HOST at ollameter\n".into();
        }
    } else {
        let name = answer["model"].as_str().unwrap_or("?");
        t.add_row(stats_row(name, answer));
    }
    format!("{t}\n")
}

/// `ollameter compare`: the models side by side and the winners.
pub fn render_comparison(answer: &Value) -> String {
    let mut out = render_statistics(answer);
    let mut t = table(&["ranking", "model", "value"]);
    if let Some(rankings) = answer["rankings"].as_object() {
        for (name, r) in rankings {
            t.add_row(vec![
                name.clone(),
                r["model"].as_str().unwrap_or("-").to_string(),
                num(&r["value"], 3),
            ]);
        }
    }
    out.push_str(&format!("{t}\n"));
    if let Some(missing) = answer["missing"].as_array().filter(|m| !m.is_empty()) {
        let names: Vec<&str> = missing.iter().filter_map(Value::as_str).collect();
        out.push_str(&format!("no data in the window: {}\n", names.join(", ")));
    }
    out
}

/// `ollameter recommend`: the pick, why, the alternatives and the excluded.
pub fn render_recommendation(answer: &Value) -> String {
    let mut out = String::new();
    match answer["recommended_model"].as_str() {
        Some(model) => out.push_str(&format!(
            "recommended ({}): {model}  score {}\n",
            answer["priority"].as_str().unwrap_or("?"),
            num(&answer["score"], 3)
        )),
        None => out.push_str("no model qualifies\n"),
    }
    out.push_str(&format!("{}\n", answer["reason"].as_str().unwrap_or("")));
    if let Some(alts) = answer["alternatives"].as_array().filter(|a| !a.is_empty()) {
        let mut t = table(&["rank", "model", "score", "speed", "quality", "reliability"]);
        for a in alts {
            let c = &a["component_scores"];
            t.add_row(vec![
                num(&a["rank"], 0),
                a["model"].as_str().unwrap_or("-").to_string(),
                num(&a["score"], 3),
                num(&c["speed"], 3),
                num(&c["quality"], 3),
                num(&c["reliability"], 3),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    if let Some(excluded) = answer["excluded"].as_array().filter(|e| !e.is_empty()) {
        let mut t = table(&["excluded", "why"]);
        for e in excluded {
            t.add_row(vec![
                e["model"].as_str().unwrap_or("-").to_string(),
                e["reason"].as_str().unwrap_or("-").to_string(),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    out
}

/// `ollameter trend`: one row per bucket, then the direction.
pub fn render_trend(answer: &Value) -> String {
    let mut t = table(&["bucket start", "count", "value"]);
    for b in answer["buckets"].as_array().into_iter().flatten() {
        t.add_row(vec![
            b["start"].as_str().unwrap_or("-").to_string(),
            num(&b["count"], 0),
            num(&b["value"], 3),
        ]);
    }
    format!(
        "{t}\n{} {}: {} (slope {} per hour)\n",
        answer["model"].as_str().unwrap_or("?"),
        answer["metric"].as_str().unwrap_or("?"),
        answer["direction"].as_str().unwrap_or("?"),
        num(&answer["slope_per_hour"], 3)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_show_the_numbers() {
        let answer = json!({"models": {"llama3.2:3b": {"total_operations": 12, "success_rate": 0.75,
            "processing_time_ms": {"p50": 812.25, "p95": 1500.0}, "quality": {"avg": 4.123}}}});
        let text = render_statistics(&answer);
        for needle in ["llama3.2:3b", "12", "75.0%", "812.2", "1500.0", "4.12"] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        let empty = render_statistics(&json!({"models": {}}));
        assert!(empty.contains("no records yet"));
    }

    #[test]
    fn recommendation_says_why() {
        let answer = json!({"priority": "speed", "recommended_model": "a", "score": 1.0,
            "reason": "a is fastest", "alternatives": [], "excluded": [{"model": "b", "reason": "3 operations"}]});
        let text = render_recommendation(&answer);
        assert!(text.contains("recommended (speed): a"));
        assert!(text.contains("a is fastest"));
        assert!(text.contains("3 operations"));
        let none = render_recommendation(&json!({"recommended_model": null, "reason": "nothing"}));
        assert!(none.starts_with("no model qualifies"));
    }

    #[test]
    fn names_are_encoded_for_urls() {
        assert_eq!(encode("hf.co/org/m:Q4 K", true), "hf.co/org/m:Q4%20K");
        assert_eq!(encode("a,b&c", false), "a%2Cb%26c");
    }
}
