//! The union of several hosts' model lists (pure): `/api/tags` and `/api/ps`
//! (`{"models":[...]}`) and `/v1/models` (`{"object":"list","data":[...]}`), each model
//! once (the first host that lists it gives its entry), every entry byte for byte as
//! its host wrote it.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::telemetry::model_key;

/// Which list a body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListShape {
    /// Ollama's `{"models":[{"name":...,"model":...},...]}` (`/api/tags`, `/api/ps`).
    Ollama,
    /// OpenAI's `{"object":"list","data":[{"id":...},...]}` (`/v1/models`).
    OpenAi,
}

impl ListShape {
    /// The list a `GET` of `path` answers with, when it is one to merge.
    pub fn of_path(path: &str) -> Option<ListShape> {
        match path {
            "/api/tags" | "/api/ps" => Some(ListShape::Ollama),
            "/v1/models" => Some(ListShape::OpenAi),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    models: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    data: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Named {
    name: Option<String>,
    model: Option<String>,
    id: Option<String>,
}

/// Merges `bodies` (one per host, in host order) into one body of `shape`. A body that
/// is not such a list is left out (and named in the error when all are).
pub fn merge(shape: ListShape, bodies: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut entries: Vec<&RawValue> = Vec::new();
    let mut parsed = 0;
    let mut last_error = String::new();
    for body in bodies {
        let list: Body<'_> = match serde_json::from_slice(body) {
            Ok(list) => list,
            Err(e) => {
                last_error = e.to_string();
                continue;
            }
        };
        parsed += 1;
        let items = match shape {
            ListShape::Ollama => list.models,
            ListShape::OpenAi => list.data,
        };
        for item in items {
            let key = serde_json::from_str::<Named>(item.get())
                .ok()
                .and_then(|n| n.name.or(n.model).or(n.id))
                .map(|n| model_key(&n));
            // An entry without a name cannot be told apart: kept as it is.
            if key.is_none_or(|k| seen.insert(k)) {
                entries.push(item);
            }
        }
    }
    if parsed == 0 && !bodies.is_empty() {
        return Err(format!("no upstream answered a model list: {last_error}"));
    }
    let mut out = Vec::with_capacity(bodies.iter().map(|b| b.len()).sum::<usize>() + 32);
    out.extend_from_slice(match shape {
        ListShape::Ollama => b"{\"models\":[",
        ListShape::OpenAi => b"{\"object\":\"list\",\"data\":[",
    });
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(entry.get().as_bytes());
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_model_once_first_host_wins_entries_kept_byte_for_byte() {
        let a = br#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","size":1,"details":{"family":"llama"}}]}"#;
        let b = br#"{"models":[{"name":"LLAMA3.2","model":"llama3.2","size":2},{"name":"qwen3:8b","model":"qwen3:8b","size":3}]}"#;
        let merged = merge(ListShape::Ollama, &[a, b]).expect("merged");
        assert_eq!(
            String::from_utf8(merged).expect("utf8"),
            r#"{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","size":1,"details":{"family":"llama"}},{"name":"qwen3:8b","model":"qwen3:8b","size":3}]}"#
        );
    }

    #[test]
    fn an_empty_ps_and_openai_lists_merge_in_their_shapes() {
        let empty = br#"{"models":[]}"#;
        assert_eq!(
            merge(ListShape::Ollama, &[empty, empty]).expect("merged"),
            br#"{"models":[]}"#.to_vec()
        );
        let a = br#"{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"library"}]}"#;
        let b = br#"{"object":"list","data":[{"id":"m:latest","object":"model"},{"id":"n","object":"model"}]}"#;
        let merged = merge(ListShape::OpenAi, &[a, b]).expect("merged");
        let v: serde_json::Value = serde_json::from_slice(&merged).expect("json");
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_body_that_is_no_list_is_left_out() {
        let good = br#"{"models":[{"name":"a"}]}"#;
        let bad = b"<html>";
        let merged = merge(ListShape::Ollama, &[bad, good]).expect("merged");
        assert_eq!(merged, br#"{"models":[{"name":"a"}]}"#.to_vec());
        assert!(merge(ListShape::Ollama, &[bad]).is_err());
        assert_eq!(ListShape::of_path("/api/ps"), Some(ListShape::Ollama));
        assert_eq!(ListShape::of_path("/api/show"), None);
    }
}
