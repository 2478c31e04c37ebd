//! The prompts a benchmark sends: read from a JSONL file (one prompt per line, images as
//! file paths), from an API body (images already base64), or the built-in `default`
//! suite; validated once, every problem naming its line.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One prompt as a JSONL line or an API body element spells it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    /// A label for progress lines and errors (default: `line N` or `prompt N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The prompt of a generate call (`/api/generate`); give this or `messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// The system prompt of a generate call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The messages of a chat call (`/api/chat`), each `{"role": ..., "content": ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub messages: Option<Vec<Value>>,
    /// Images: file paths (relative to the prompt file) in a JSONL file, base64 data in an
    /// API body. On a chat they go with the last user message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// The operation the call counts as (sent as `X-Operation`); the endpoint's kind when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Ollama's `options` (`num_predict`, `temperature`, `num_ctx`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub options: Option<Map<String, Value>>,
    /// Ollama's `format`: `"json"` or a JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub format: Option<Value>,
    /// Grading: the answer, trimmed, must be exactly this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Grading: the answer must match this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_regex: Option<String>,
    /// Grading: the answer is JSON (or holds a JSON object) whose value at `pointer` equals
    /// `value`; one check or a list of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub expect_json: Option<Value>,
    /// Grading by a configured quality rule: the operation of a `[[quality.rules]]` entry.
    /// The call is sent as that operation and the proxy's rule scores the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_rule: Option<String>,
}

/// A JSON check: the value at an RFC 6901 pointer.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonCheck {
    /// Where, e.g. `/score` (`""` is the whole document).
    pub pointer: String,
    /// What it must equal (numbers compare by value: 4 equals 4.0).
    pub value: Value,
}

/// How an answer is graded. Checks are counted: the quality is 1 + 4 x the fraction passed.
#[derive(Debug, Clone, Default)]
pub struct Grading {
    /// Exact text.
    pub expect: Option<String>,
    /// A pattern the answer must match.
    pub regex: Option<Regex>,
    /// Values at JSON pointers.
    pub json: Vec<JsonCheck>,
    /// A configured quality rule (its operation) scores the answer instead.
    pub rule: Option<String>,
}

impl Grading {
    /// How many checks the bench itself makes.
    pub fn checks(&self) -> usize {
        usize::from(self.expect.is_some()) + usize::from(self.regex.is_some()) + self.json.len()
    }

    /// Whether the answer is graded at all (by checks or by a rule).
    pub fn is_graded(&self) -> bool {
        self.checks() > 0 || self.rule.is_some()
    }
}

/// What the call sends.
#[derive(Debug, Clone)]
pub enum Request {
    /// `/api/generate`.
    Generate {
        /// The prompt.
        prompt: String,
        /// The system prompt.
        system: Option<String>,
    },
    /// `/api/chat`.
    Chat {
        /// The messages.
        messages: Vec<Value>,
    },
}

impl Request {
    /// The text an embedding model is given for this prompt: the prompt, or the messages'
    /// contents joined.
    pub fn text(&self) -> String {
        match self {
            Request::Generate { prompt, .. } => prompt.clone(),
            Request::Chat { messages } => messages
                .iter()
                .filter_map(|m| m["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// A validated prompt.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// Its label.
    pub name: String,
    /// What is sent.
    pub request: Request,
    /// Images, base64.
    pub images: Vec<String>,
    /// The operation header, when one is set (by `operation` or `quality_rule`).
    pub operation: Option<String>,
    /// Ollama's options.
    pub options: Option<Map<String, Value>>,
    /// Ollama's format.
    pub format: Option<Value>,
    /// How the answer is graded.
    pub grading: Grading,
}

/// Where a prompt's images come from.
#[derive(Debug, Clone)]
pub enum Images {
    /// File paths, relative to this directory (a prompt file's).
    Files(PathBuf),
    /// Base64 data as given (an API body: the sidecar reads no files for a caller).
    Base64,
}

/// Why prompts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The file could not be read.
    #[error("cannot read the prompt file {path}: {detail}")]
    File {
        /// The path.
        path: String,
        /// The OS's reason.
        detail: String,
    },
    /// A line or element is wrong.
    #[error("{place}: {detail}")]
    Invalid {
        /// `prompts.jsonl line 3` or `prompts[2]`.
        place: String,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// Nothing to send.
    #[error("{0}")]
    Empty(String),
}

/// Largest image read from a file (Ollama's own request limit is far above any photo).
const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a JSONL prompt file: one JSON object per line, blank lines skipped.
pub fn read_file(path: &Path) -> Result<Vec<Prompt>, PromptError> {
    let text = std::fs::read_to_string(path).map_err(|e| PromptError::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse_jsonl(&text, &path.display().to_string(), &Images::Files(dir))
}

/// Parses JSONL text; `label` names the file in errors.
pub fn parse_jsonl(text: &str, label: &str, images: &Images) -> Result<Vec<Prompt>, PromptError> {
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let place = format!("{label} line {}", i + 1);
        let spec: PromptSpec = serde_json::from_str(line).map_err(|e| PromptError::Invalid {
            place: place.clone(),
            detail: format!(
                "{e} (each line is one JSON object such as {{\"prompt\": \"...\", \"expect_regex\": \"...\"}})"
            ),
        })?;
        prompts.push(
            validate(spec, &format!("line {}", i + 1), images)
                .map_err(|detail| PromptError::Invalid { place, detail })?,
        );
    }
    if prompts.is_empty() {
        return Err(PromptError::Empty(format!(
            "{label} holds no prompt: write one JSON object per line"
        )));
    }
    Ok(prompts)
}

/// Validates prompts given as JSON values (an API body's `prompts`).
pub fn from_specs(specs: Vec<PromptSpec>, images: &Images) -> Result<Vec<Prompt>, PromptError> {
    if specs.is_empty() {
        return Err(PromptError::Empty(
            "prompts: give at least one prompt".into(),
        ));
    }
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            validate(spec, &format!("prompt {}", i + 1), images).map_err(|detail| {
                PromptError::Invalid {
                    place: format!("prompts[{i}]"),
                    detail,
                }
            })
        })
        .collect()
}

/// The built-in suites; only `default` now.
pub fn suite(name: &str) -> Result<Vec<Prompt>, PromptError> {
    if name != "default" {
        return Err(PromptError::Empty(format!(
            "suite {name:?} does not exist; the built-in suite is \"default\""
        )));
    }
    let specs: Vec<PromptSpec> = DEFAULT_SUITE
        .iter()
        .map(|line| serde_json::from_str(line).expect("the built-in suite is valid JSON"))
        .collect();
    from_specs(specs, &Images::Base64)
}

/// The `default` suite: a short answer, a long answer, JSON output and a rating task.
const DEFAULT_SUITE: &[&str] = &[
    r#"{"name": "short answer", "prompt": "What is the capital of France? Answer with one word.", "options": {"num_predict": 16, "temperature": 0}, "expect_regex": "(?i)\\bparis\\b"}"#,
    r#"{"name": "long answer", "prompt": "Explain in about 200 words how a hash table works, including collisions.", "options": {"num_predict": 320, "temperature": 0}, "expect_regex": "(?i)collision"}"#,
    r#"{"name": "json output", "prompt": "Reply with only a JSON object with the key \"answer\" holding the sum of 17 and 25 as a number.", "format": "json", "options": {"num_predict": 32, "temperature": 0}, "expect_json": {"pointer": "/answer", "value": 42}}"#,
    r#"{"name": "rating", "messages": [{"role": "system", "content": "You rate sentences for grammar from 1 (many errors) to 5 (flawless). Reply with only a JSON object {\"score\": <n>}."}, {"role": "user", "content": "She go to school every days."}], "format": "json", "options": {"num_predict": 24, "temperature": 0}, "expect_regex": "\"score\"\\s*:\\s*[12]\\b"}"#,
];

fn validate(spec: PromptSpec, default_name: &str, images: &Images) -> Result<Prompt, String> {
    let name = spec
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| default_name.to_string());
    let request = match (spec.prompt, spec.messages) {
        (Some(_), Some(_)) => {
            return Err(
                "give either \"prompt\" (generate) or \"messages\" (chat), not both".into(),
            );
        }
        (None, None) => {
            return Err("missing \"prompt\" (generate) or \"messages\" (chat)".into());
        }
        (Some(prompt), None) => {
            if prompt.trim().is_empty() {
                return Err("\"prompt\" is empty".into());
            }
            Request::Generate {
                prompt,
                system: spec.system,
            }
        }
        (None, Some(messages)) => {
            if spec.system.is_some() {
                return Err(
                    "\"system\" goes with \"prompt\"; in a chat, add a message with role \"system\""
                        .into(),
                );
            }
            if messages.is_empty() {
                return Err("\"messages\" is empty".into());
            }
            for (i, m) in messages.iter().enumerate() {
                let ok = m["role"].is_string() && m["content"].is_string();
                if !ok {
                    return Err(format!(
                        "messages[{i}]: expected {{\"role\": \"user\", \"content\": \"...\"}}, got {m}"
                    ));
                }
            }
            Request::Chat { messages }
        }
    };
    let images = spec
        .images
        .iter()
        .enumerate()
        .map(|(i, image)| load_image(image, images).map_err(|e| format!("images[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let regex = match &spec.expect_regex {
        Some(pattern) => Some(
            Regex::new(pattern).map_err(|e| format!("expect_regex: not a valid pattern: {e}"))?,
        ),
        None => None,
    };
    let json = match spec.expect_json {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| json_check(v).map_err(|e| format!("expect_json[{i}]: {e}")))
            .collect::<Result<_, _>>()?,
        Some(v) => vec![json_check(&v).map_err(|e| format!("expect_json: {e}"))?],
    };
    let rule = spec
        .quality_rule
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if rule.is_some() && (spec.expect.is_some() || regex.is_some() || !json.is_empty()) {
        return Err(
            "quality_rule scores the answer itself: do not combine it with expect, expect_regex or expect_json"
                .into(),
        );
    }
    let operation = spec
        .operation
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty());
    if let (Some(op), Some(rule)) = (&operation, &rule)
        && op != rule
    {
        return Err(format!(
            "quality_rule {rule:?} applies to calls of operation {rule:?}, but \"operation\" is {op:?}: leave one out"
        ));
    }
    if let Some(op) = &operation
        && op.len() > 128
    {
        return Err("operation: at most 128 characters".into());
    }
    Ok(Prompt {
        name,
        request,
        images,
        operation: operation.or_else(|| rule.clone()),
        options: spec.options,
        format: spec.format,
        grading: Grading {
            expect: spec.expect,
            regex,
            json,
            rule,
        },
    })
}

fn json_check(v: &Value) -> Result<JsonCheck, String> {
    let pointer = v["pointer"]
        .as_str()
        .ok_or("expected {\"pointer\": \"/score\", \"value\": 4}")?;
    if !(pointer.is_empty() || pointer.starts_with('/')) {
        return Err(format!(
            "pointer {pointer:?} must start with / (RFC 6901, e.g. \"/score\")"
        ));
    }
    let value = v
        .get("value")
        .cloned()
        .ok_or("missing \"value\": the value the pointer must find")?;
    Ok(JsonCheck {
        pointer: pointer.to_string(),
        value,
    })
}

fn load_image(image: &str, images: &Images) -> Result<String, String> {
    match images {
        Images::Base64 => {
            base64::engine::general_purpose::STANDARD
                .decode(image.trim())
                .map_err(|e| {
                    format!(
                        "not base64 ({e}): in an API body images are the data itself, not paths"
                    )
                })?;
            Ok(image.trim().to_string())
        }
        Images::Files(dir) => {
            let path = dir.join(image);
            let meta = std::fs::metadata(&path)
                .map_err(|e| format!("cannot read the image {}: {e}", path.display()))?;
            if meta.len() > MAX_IMAGE_BYTES {
                return Err(format!(
                    "the image {} is {} bytes, over the {MAX_IMAGE_BYTES} byte limit",
                    path.display(),
                    meta.len()
                ));
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("cannot read the image {}: {e}", path.display()))?;
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Prompt>, PromptError> {
        parse_jsonl(text, "p.jsonl", &Images::Base64)
    }

    #[test]
    fn lines_become_prompts_and_errors_name_the_line() {
        let ok = parse(
            "{\"prompt\": \"hi\", \"expect\": \"hello\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"operation\": \"op\"}\n",
        )
        .expect("valid");
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].name, "line 1");
        assert_eq!(ok[1].name, "line 3");
        assert_eq!(ok[1].operation.as_deref(), Some("op"));
        assert_eq!(ok[0].grading.checks(), 1);

        let err = parse("{\"prompt\": \"a\"}\n{\"prompt\": \"b\",}\n").expect_err("bad JSON");
        assert!(err.to_string().starts_with("p.jsonl line 2: "), "{err}");
        let err = parse("{\"prompt\": \"a\", \"expect_regx\": \"b\"}").expect_err("typo");
        assert!(err.to_string().contains("expect_regx"), "{err}");
        let err = parse("{\"prompt\": \"a\", \"expect_regex\": \"(\"}").expect_err("regex");
        assert!(err.to_string().contains("expect_regex"), "{err}");
        let err = parse("{\"system\": \"a\"}").expect_err("no prompt");
        assert!(err.to_string().contains("missing \"prompt\""), "{err}");
        let err = parse("{\"prompt\": \"a\", \"quality_rule\": \"r\", \"expect\": \"x\"}")
            .expect_err("both");
        assert!(err.to_string().contains("quality_rule"), "{err}");
        assert!(matches!(parse("\n\n"), Err(PromptError::Empty(_))));
    }

    #[test]
    fn a_quality_rule_sets_the_operation() {
        let p = parse("{\"prompt\": \"a\", \"quality_rule\": \"photo_evaluation\"}").expect("ok");
        assert_eq!(p[0].operation.as_deref(), Some("photo_evaluation"));
        assert!(p[0].grading.is_graded());
        assert_eq!(p[0].grading.checks(), 0);
        let err = parse("{\"prompt\": \"a\", \"quality_rule\": \"r\", \"operation\": \"o\"}")
            .expect_err("conflict");
        assert!(err.to_string().contains("leave one out"), "{err}");
    }

    #[test]
    fn image_files_are_read_relative_to_the_prompt_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cat.png"), [0x89, b'P', b'N', b'G']).expect("write");
        let file = dir.path().join("p.jsonl");
        std::fs::write(&file, "{\"prompt\": \"rate\", \"images\": [\"cat.png\"]}\n").expect("w");
        let p = read_file(&file).expect("reads");
        assert_eq!(p[0].images, ["iVBORw=="]);
        std::fs::write(&file, "{\"prompt\": \"rate\", \"images\": [\"dog.png\"]}\n").expect("w");
        let err = read_file(&file).expect_err("missing image");
        assert!(
            err.to_string()
                .contains("line 1: images[0]: cannot read the image"),
            "{err}"
        );
        let err = read_file(&dir.path().join("none.jsonl")).expect_err("missing file");
        assert!(
            err.to_string().contains("cannot read the prompt file"),
            "{err}"
        );
        let err = from_specs(
            vec![PromptSpec {
                prompt: Some("x".into()),
                images: vec!["cat.png".into()],
                ..PromptSpec::default()
            }],
            &Images::Base64,
        )
        .expect_err("a path is not base64");
        assert!(
            err.to_string()
                .starts_with("prompts[0]: images[0]: not base64"),
            "{err}"
        );
    }

    #[test]
    fn the_default_suite_is_valid() {
        let s = suite("default").expect("valid");
        assert_eq!(s.len(), 4);
        assert!(s.iter().all(|p| p.grading.is_graded()));
        assert!(suite("huge").is_err());
    }
}
