//! The one change routing makes to a request body: the top-level `model` string is
//! replaced, byte for byte everything else stays (a base64 photo is never re-encoded, key
//! order and spacing are kept).

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
}

/// Where the top-level `model` value (quotes included) lies in `body`; `None` when the body
/// is not a JSON object with a `model` key.
fn model_span(body: &[u8]) -> Option<std::ops::Range<usize>> {
    // serde reads a struct from an array too (by position): only an object is a request.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let field: ModelField<'_> = serde_json::from_slice(body).ok()?;
    let raw = field.model.get().as_bytes();
    // The raw value borrows from `body`: its offset is the distance between the pointers.
    let start = (raw.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(raw.len())?;
    (end <= body.len()).then_some(start..end)
}

/// `body` with its top-level `model` set to `model`; `None` when the body has no such key
/// (then the call is not routed: the proxy forwards it untouched).
pub fn with_model(body: &[u8], model: &str) -> Option<Bytes> {
    let span = model_span(body)?;
    let quoted = serde_json::to_string(model).ok()?;
    let mut out = BytesMut::with_capacity(body.len() - span.len() + quoted.len());
    out.extend_from_slice(&body[..span.start]);
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(&body[span.end..]);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_model_value_changes() {
        let body = br#"{ "stream":false,"model" : "auto:speed", "images":["aGk="], "x":{"model":"inner"} }"#;
        let out = with_model(body, "llama3.2:3b").expect("rewritten");
        assert_eq!(
            &out[..],
            br#"{ "stream":false,"model" : "llama3.2:3b", "images":["aGk="], "x":{"model":"inner"} }"#
        );
    }

    #[test]
    fn escapes_both_ways() {
        let body = br#"{"model":"au\u0074o","prompt":"\"hi\""}"#;
        let out = with_model(body, "we\"ird").expect("rewritten");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["model"], "we\"ird");
        assert_eq!(v["prompt"], "\"hi\"");
    }

    #[test]
    fn bodies_without_a_model_are_left_alone() {
        assert!(with_model(b"not json", "m").is_none());
        assert!(with_model(br#"{"prompt":"x"}"#, "m").is_none());
        assert!(with_model(br#"[{"model":"x"}]"#, "m").is_none());
    }

    #[test]
    fn a_large_body_keeps_its_length_but_for_the_name() {
        let photo = "A".repeat(1 << 20);
        let body = format!(r#"{{"model":"photo","images":["{photo}"]}}"#);
        let out = with_model(body.as_bytes(), "llava:7b").expect("rewritten");
        assert_eq!(out.len(), body.len() + "llava:7b".len() - "photo".len());
        assert!(out.ends_with(format!(r#"["{photo}"]}}"#).as_bytes()));
    }
}
