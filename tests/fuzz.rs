//! Property-based fuzzing, bounded for CI: the stream decoders and the quality extractors
//! never panic on any input, any split of the same bytes gives the same facts, and the
//! proxy's passthrough never changes a byte (the decoder only reads copies).
//!
//! `PROPTEST_CASES=100000 cargo test --test fuzz` runs a longer campaign.

use ollameter::decode::{Api, Decoder, Format, ResponseFacts};
use ollameter::quality::{QualityRuleConfig, QualityRules};
use proptest::prelude::*;

const APIS: &[Api] = Api::ALL;
const FORMATS: [Format; 4] = [Format::Ndjson, Format::Sse, Format::Json, Format::Other];

/// Pieces that look like the real wire formats, so the fuzzer reaches deep paths.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"{\"model\":\"m\",\"response\":\"hi\",\"done\":false}\n".to_vec()),
        Just(b"{\"done\":true,\"eval_count\":18,\"eval_duration\":52479709,\"done_reason\":\"stop\"}\n".to_vec()),
        Just(b"{\"message\":{\"role\":\"assistant\",\"content\":\"x\"},\"done\":false}\n".to_vec()),
        Just(b"{\"error\":\"boom\"}\n".to_vec()),
        Just(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n".to_vec()),
        Just(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n".to_vec()),
        Just(b"data: [DONE]\n\n".to_vec()),
        Just(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b": comment\r".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
        "[\\PC]{0,20}".prop_map(String::into_bytes),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(fragment(), 0..12).prop_map(|parts| parts.concat())
}

fn decode(api: Api, format: Format, pieces: &[&[u8]]) -> (ResponseFacts, u64) {
    let mut d = Decoder::new(api, format, 64, 4096);
    let mut events = 0;
    for p in pieces {
        events += d.feed(p);
    }
    (d.finish(), events)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_and_ignore_how_bytes_are_split(
        bytes in body(),
        api in 0..APIS.len(),
        format in 0..FORMATS.len(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let (api, format) = (APIS[api], FORMATS[format]);
        let whole = decode(api, format, &[&bytes]);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for p in points {
            pieces.push(&bytes[start..p]);
            start = p;
        }
        pieces.push(&bytes[start..]);
        let split = decode(api, format, &pieces);
        prop_assert_eq!(&whole, &split);
        prop_assert!(whole.0.text.len() <= 64, "capture limit kept");
        prop_assert!(!(whole.0.completed && whole.0.error_message.is_some()));
    }

    #[test]
    fn quality_extraction_never_panics_and_stays_on_the_scale(
        text in prop_oneof![
            "[\\PC]{0,200}",
            (0.0f64..12.0).prop_map(|s| format!("{{\"score\": {s}}}")),
            (0.0f64..12.0).prop_map(|s| format!("Rating: {s}/10 because")),
        ],
    ) {
        let rules = QualityRules::new(&[
            QualityRuleConfig { json_pointer: Some("/score".into()), ..QualityRuleConfig::default() },
            QualityRuleConfig {
                regex: Some(r"Rating: (\d+(?:\.\d+)?)/10".into()),
                scale_min: Some(0.0),
                scale_max: Some(10.0),
                ..QualityRuleConfig::default()
            },
        ])
        .expect("valid rules");
        if let Some(q) = rules.extract("op", "model", &text) {
            prop_assert!((1.0..=5.0).contains(&q), "{} out of scale", q);
        }
    }
}
