//! `ollameter route`: each virtual name, its current choice and why, the candidates left
//! out, and where its calls ran in the last hour.

use serde_json::Value;

use super::table;

/// A JSON number with `decimals` places; `-` when absent.
fn num(v: &Value, decimals: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |n| format!("{n:.decimals$}"))
}

/// The routing endpoint's answer as text.
pub fn render_routing(answer: &Value) -> String {
    let mut out = format!(
        "exploration share {}, at most {} attempts per call\n",
        num(&answer["explore"], 2),
        num(&answer["max_attempts"], 0)
    );
    let mut t = table(&[
        "name",
        "priority",
        "kind",
        "operation",
        "now",
        "reason",
        "fallbacks",
    ]);
    for alias in answer["aliases"].as_array().into_iter().flatten() {
        for c in alias["current"].as_array().into_iter().flatten() {
            let fallbacks: Vec<&str> = c["ranked"]
                .as_array()
                .into_iter()
                .flatten()
                .skip(1)
                .filter_map(Value::as_str)
                .collect();
            t.add_row(vec![
                alias["name"].as_str().unwrap_or("-").to_string(),
                alias["priority"].as_str().unwrap_or("-").to_string(),
                c["kind"].as_str().unwrap_or("-").to_string(),
                c["operation"].as_str().unwrap_or("(any)").to_string(),
                c["model"].as_str().unwrap_or("(none)").to_string(),
                c["reason"].as_str().unwrap_or("-").to_string(),
                if fallbacks.is_empty() {
                    "-".to_string()
                } else {
                    fallbacks.join(", ")
                },
            ]);
        }
    }
    out.push_str(&format!("{t}\n"));
    let mut details = String::new();
    for alias in answer["aliases"].as_array().into_iter().flatten() {
        let name = alias["name"].as_str().unwrap_or("-");
        for c in alias["current"].as_array().into_iter().flatten() {
            let exploring: Vec<String> = c["explorable"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    format!(
                        "{} ({} ops)",
                        e["model"].as_str().unwrap_or("-"),
                        num(&e["operations"], 0)
                    )
                })
                .collect();
            if !exploring.is_empty() {
                details.push_str(&format!("{name}: measuring {}\n", exploring.join(", ")));
            }
            for e in c["excluded"].as_array().into_iter().flatten() {
                details.push_str(&format!(
                    "{name}: excluded {}: {}\n",
                    e["model"].as_str().unwrap_or("-"),
                    e["reason"].as_str().unwrap_or("-")
                ));
            }
        }
        let shares = alias["last_hour"].as_array().filter(|s| !s.is_empty());
        if let Some(shares) = shares {
            let parts: Vec<String> = shares
                .iter()
                .map(|s| {
                    format!(
                        "{} {:.0}% ({} calls)",
                        s["model"].as_str().unwrap_or("-"),
                        s["share"].as_f64().unwrap_or(0.0) * 100.0,
                        num(&s["calls"], 0)
                    )
                })
                .collect();
            details.push_str(&format!("{name}: last hour {}\n", parts.join(", ")));
        }
    }
    out.push_str(&details);
    for f in answer["fallbacks"].as_array().into_iter().flatten() {
        let chain: Vec<&str> = f["chain"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "fallback chain: {} -> {}\n",
            f["model"].as_str().unwrap_or("-"),
            chain.join(" -> ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_the_choice_the_reason_and_the_exclusions() {
        let answer = json!({"explore": 0.1, "max_attempts": 3, "aliases": [{
            "name": "photo", "priority": "quality", "last_hour": [
                {"model": "llava:7b", "calls": 9, "share": 0.9}],
            "current": [{"kind": "generation", "operation": "photo_evaluation",
                "model": "llava:7b", "reason": "recommended", "ranked": ["llava:7b", "gemma3:4b"],
                "explorable": [{"model": "qwen2.5vl:7b", "operations": 2}],
                "excluded": [{"model": "big:70b", "reason": "needs 40.0 GB of VRAM"}]}]}],
            "fallbacks": [{"model": "a", "chain": ["b", "c"]}]});
        let text = render_routing(&answer);
        for needle in [
            "photo",
            "quality",
            "photo_evaluation",
            "llava:7b",
            "recommended",
            "gemma3:4b",
            "measuring qwen2.5vl:7b (2 ops)",
            "excluded big:70b: needs 40.0 GB of VRAM",
            "llava:7b 90% (9 calls)",
            "fallback chain: a -> b -> c",
        ] {
            assert!(text.contains(needle), "{needle} missing:\n{text}");
        }
    }
}
