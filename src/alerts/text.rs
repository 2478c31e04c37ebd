//! `ollameter alerts`: the `GET /alerts` answer as tables a person reads.

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use serde_json::Value;

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn rows(t: &mut Table, list: &Value, resolved: bool) -> usize {
    let Some(items) = list.as_array() else {
        return 0;
    };
    for a in items {
        // A host's alert reads `model on host`.
        let model = match a["host"].as_str() {
            Some(host) => format!("{} on {host}", text(a, "model")),
            None => text(a, "model").to_string(),
        };
        let mut row = vec![
            model,
            text(a, "kind").to_string(),
            text(a, "severity").to_string(),
            text(a, "started_at").to_string(),
        ];
        if resolved {
            row.push(text(a, "resolved_at").to_string());
        }
        row.push(text(a, "summary").to_string());
        t.add_row(row);
    }
    items.len()
}

/// The firing alerts, then the resolved ones.
pub fn render(answer: &Value) -> String {
    let mut out = String::new();
    let mut firing = Table::new();
    firing.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "model",
        "kind",
        "severity",
        "firing since",
        "what",
    ]);
    if rows(&mut firing, &answer["active"], false) == 0 {
        out.push_str("nothing is firing\n");
    } else {
        out.push_str(&format!("firing:\n{firing}\n"));
    }
    let mut resolved = Table::new();
    resolved.load_style(UTF8_FULL_CONDENSED).set_header(vec![
        "model", "kind", "severity", "fired", "resolved", "what",
    ]);
    if rows(&mut resolved, &answer["resolved"], true) > 0 {
        out.push_str(&format!("resolved:\n{resolved}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn firing_and_resolved_are_listed() {
        let answer = json!({
            "active": [{"model": "llama3.2", "kind": "latency_p50", "severity": "critical",
                        "started_at": "2026-01-01T00:00:00Z", "summary": "rose from 800 to 1700 (2.1x)"}],
            "resolved": [{"model": "qwen3", "kind": "success_rate", "severity": "warning",
                          "started_at": "2026-01-01T00:00:00Z", "resolved_at": "2026-01-01T01:00:00Z",
                          "summary": "resolved: success rate"}],
        });
        let text = render(&answer);
        for needle in [
            "firing:",
            "llama3.2",
            "critical",
            "2.1x",
            "resolved:",
            "qwen3",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
        assert_eq!(
            render(&json!({"active": [], "resolved": []})),
            "nothing is firing\n"
        );
    }
}
