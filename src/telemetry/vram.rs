//! How much VRAM a model needs: measured while it was loaded, or estimated from what
//! `/api/tags` and `/api/show` say about an installed model that has never been seen
//! loaded. Pure functions over plain data; the sampler feeds them.

use serde::Serialize;

use super::gpu::BYTES_PER_MIB;
use super::ollama::{ShowInfo, TagModel};

/// The context length Ollama gives a model when nothing else says (its default
/// `num_ctx`), used for estimates until a loaded model shows the server's real setting.
pub const DEFAULT_CONTEXT_TOKENS: u64 = 4096;

/// A fixed allowance for the compute graph and runtime buffers, in MiB. The graph holds
/// the logits of one batch (512 tokens × vocabulary × 4 bytes ≈ 260 MiB for the 128k
/// vocabularies of current models) plus activation scratch; 512 MiB covers that with room,
/// because an estimate that errs high only makes a recommendation more careful.
pub const OVERHEAD_MIB: f64 = 512.0;

/// KV cache per token per billion parameters^[`KV_EXPONENT`], in bytes, for models whose
/// architecture is unknown. Fitted by hand (rounded up) to f16 caches of grouped-query
/// models: Llama 3.2 1B 32 KiB/token, 3B 112, Llama 3.1 8B 128, Qwen3 8B 144, Qwen 2.5
/// 14B 192, 32B 256, Llama 3 70B 320.
pub const KV_BYTES_PER_TOKEN_AT_1B: f64 = 56.0 * 1024.0;

/// How the KV cache per token grows with parameter count: layers grow more slowly than
/// parameters, and the KV head count stays near 8 at every size.
pub const KV_EXPONENT: f64 = 0.45;

/// Where a VRAM need comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VramSource {
    /// Observed while the model was loaded.
    Measured,
    /// Computed from the model's size and architecture by [`estimate`]'s formula.
    Estimate,
}

/// The VRAM a model needs to run entirely on the GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VramNeed {
    /// MiB.
    pub mb: f64,
    /// Measured or estimated.
    pub source: VramSource,
    /// How the number came about, for a person reading a recommendation.
    pub detail: String,
}

/// Parses Ollama's `parameter_size` ("8.0B", "137M", "567.00M", "1.5T", "7b") into a
/// parameter count.
pub fn parse_parameter_size(text: &str) -> Option<f64> {
    let text = text.trim();
    let (digits, scale) = match text.chars().last()?.to_ascii_uppercase() {
        'K' => (&text[..text.len() - 1], 1e3),
        'M' => (&text[..text.len() - 1], 1e6),
        'B' => (&text[..text.len() - 1], 1e9),
        'T' => (&text[..text.len() - 1], 1e12),
        _ => (text, 1.0),
    };
    let value: f64 = digits.trim().parse().ok()?;
    (value.is_finite() && value > 0.0).then_some(value * scale)
}

/// KV cache bytes per token from the parameter count alone:
/// `KV_BYTES_PER_TOKEN_AT_1B × (parameters / 1e9)^KV_EXPONENT`.
pub fn kv_bytes_per_token_from_parameters(parameters: f64) -> f64 {
    KV_BYTES_PER_TOKEN_AT_1B * (parameters / 1e9).powf(KV_EXPONENT)
}

/// Estimates the VRAM an installed model needs, fully offloaded:
///
/// ```text
/// need = weights + context × kv_per_token + OVERHEAD_MIB
/// ```
///
/// - `weights` = the size on disk from `/api/tags`: a GGUF file is its tensors, and
///   quantised tensors load into VRAM byte for byte.
/// - `context` = `context_tokens` (the context length Ollama loads models with here: the
///   last one seen in `/api/ps`, else [`DEFAULT_CONTEXT_TOKENS`]), capped at the model's
///   trained context, as Ollama caps it.
/// - `kv_per_token` = exact from the architecture when `/api/show` gave it
///   (`2 × layers × kv heads × head dim × 2 bytes`, f16 cache), else
///   [`kv_bytes_per_token_from_parameters`] of `general.parameter_count` or the
///   `parameter_size` text; no KV term when neither is known.
/// - [`OVERHEAD_MIB`] for the compute graph and runtime buffers.
///
/// `None` when the size on disk is unknown.
pub fn estimate(tag: &TagModel, show: Option<&ShowInfo>, context_tokens: u64) -> Option<VramNeed> {
    let weights_mib = tag.size? as f64 / BYTES_PER_MIB;
    let trained = show
        .and_then(|s| s.trained_context)
        .or(tag.context_length)
        .or(tag.details.context_length);
    let context = trained.map_or(context_tokens, |t| context_tokens.min(t));
    let parameters = show.and_then(|s| s.parameter_count).or_else(|| {
        tag.details
            .parameter_size
            .as_deref()
            .and_then(parse_parameter_size)
    });
    let (kv_per_token, kv_how) = match (show.and_then(|s| s.kv_bytes_per_token), parameters) {
        (Some(exact), _) => (Some(exact), "from its layers and KV heads".to_owned()),
        (None, Some(p)) => (
            Some(kv_bytes_per_token_from_parameters(p)),
            format!("guessed from {:.1}B parameters", p / 1e9),
        ),
        (None, None) => (
            None,
            "unknown (no architecture or parameter count)".to_owned(),
        ),
    };
    let kv_mib = kv_per_token.map_or(0.0, |b| b * context as f64 / BYTES_PER_MIB);
    let mb = weights_mib + kv_mib + OVERHEAD_MIB;
    Some(VramNeed {
        mb,
        source: VramSource::Estimate,
        detail: format!(
            "estimate: weights {weights_mib:.0} MiB (size on disk) + KV cache {kv_mib:.0} MiB \
             for {context} tokens ({kv_how}) + {OVERHEAD_MIB:.0} MiB overhead"
        ),
    })
}

/// The largest footprint seen for one model while loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The largest of `/api/ps` `size` and `size_vram` and NVML's per-process use, bytes.
    pub bytes: u64,
    /// `size_vram` at that moment, bytes.
    pub size_vram_bytes: Option<u64>,
    /// The context length it was loaded with at that moment.
    pub context_length: Option<u64>,
    /// Where the number came from ("/api/ps size", "/api/ps size_vram", "NVML").
    pub from: &'static str,
}

impl Measured {
    /// One observation: `size` is the whole footprint wherever it lives, so a model that
    /// only fitted partly (size_vram < size) still shows what full offload would take.
    pub fn observe(
        size: Option<u64>,
        size_vram: Option<u64>,
        gpu_process: Option<u64>,
        context_length: Option<u64>,
    ) -> Option<Measured> {
        let candidates = [
            (size, "/api/ps size"),
            (size_vram, "/api/ps size_vram"),
            (gpu_process, "NVML per-process memory"),
        ];
        let (bytes, from) = candidates
            .into_iter()
            .filter_map(|(b, from)| b.filter(|b| *b > 0).map(|b| (b, from)))
            .max_by_key(|(b, _)| *b)?;
        Some(Measured {
            bytes,
            size_vram_bytes: size_vram,
            context_length,
            from,
        })
    }

    /// Keeps the larger of two observations.
    pub fn max(self, other: Measured) -> Measured {
        if other.bytes > self.bytes {
            other
        } else {
            self
        }
    }

    /// As a [`VramNeed`].
    pub fn need(&self) -> VramNeed {
        let mb = self.bytes as f64 / BYTES_PER_MIB;
        let ctx = self
            .context_length
            .map_or(String::new(), |c| format!(" at context {c}"));
        let vram = match self.size_vram_bytes {
            Some(v) if v < self.bytes => {
                format!(", of which {:.0} MiB was in VRAM", v as f64 / BYTES_PER_MIB)
            }
            _ => String::new(),
        };
        VramNeed {
            mb,
            source: VramSource::Measured,
            detail: format!(
                "measured: largest footprint seen {mb:.0} MiB ({}){ctx}{vram}",
                self.from
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::ollama::ModelDetails;

    fn tag(size: u64, parameter_size: Option<&str>) -> TagModel {
        TagModel {
            name: "m:latest".into(),
            size: Some(size),
            details: ModelDetails {
                parameter_size: parameter_size.map(str::to_owned),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn parses_parameter_sizes() {
        assert_eq!(parse_parameter_size("8.0B"), Some(8.0e9));
        assert_eq!(parse_parameter_size("137M"), Some(137e6));
        assert_eq!(parse_parameter_size("567.00M"), Some(567e6));
        assert_eq!(parse_parameter_size("7b"), Some(7e9));
        assert_eq!(parse_parameter_size("1.5T"), Some(1.5e12));
        assert_eq!(parse_parameter_size(""), None);
        assert_eq!(parse_parameter_size("B"), None);
        assert_eq!(parse_parameter_size("lots"), None);
    }

    #[test]
    fn estimate_with_exact_architecture_by_hand() {
        // llama3.1:8b Q4_K_M: 4,920,753,328 bytes on disk = 4692.79 MiB; 131,072 bytes
        // of KV per token × 4096 tokens = 512 MiB; + 512 MiB overhead = 5716.79 MiB.
        let show = ShowInfo {
            kv_bytes_per_token: Some(131_072.0),
            trained_context: Some(131_072),
            parameter_count: Some(8.03e9),
            ..Default::default()
        };
        let need =
            estimate(&tag(4_920_753_328, Some("8.0B")), Some(&show), 4096).expect("estimate");
        assert!((need.mb - 5716.79).abs() < 0.01, "{need:?}");
        assert_eq!(need.source, VramSource::Estimate);
        assert!(
            need.detail.contains("KV cache 512 MiB for 4096 tokens"),
            "{}",
            need.detail
        );
    }

    #[test]
    fn estimate_from_parameter_count_by_hand() {
        // 8e9 parameters: 8^0.45 = e^(0.45 × 2.0794) = 2.5491; × 57,344 = 146,178 bytes
        // per token; × 4096 tokens = 571.0 MiB. Weights 4,000,000,000 bytes = 3814.70 MiB.
        // Need = 3814.70 + 571.0 + 512 = 4897.7 MiB.
        let need = estimate(&tag(4_000_000_000, Some("8.0B")), None, 4096).expect("estimate");
        assert!((need.mb - 4897.7).abs() < 0.5, "{need:?}");
        assert!(
            need.detail.contains("guessed from 8.0B parameters"),
            "{}",
            need.detail
        );
    }

    #[test]
    fn estimate_caps_context_and_survives_missing_facts() {
        // Trained for 2048 tokens: Ollama will not give it 8192.
        let show = ShowInfo {
            kv_bytes_per_token: Some(1_048_576.0),
            trained_context: Some(2048),
            ..Default::default()
        };
        let need = estimate(&tag(1_048_576 * 100, None), Some(&show), 8192).expect("estimate");
        assert!(
            (need.mb - (100.0 + 2048.0 + 512.0)).abs() < 1e-9,
            "{need:?}"
        );
        // No parameter count: weights and overhead only, and the detail says so.
        let need = estimate(&tag(1_048_576 * 100, None), None, 4096).expect("estimate");
        assert!((need.mb - 612.0).abs() < 1e-9);
        assert!(need.detail.contains("unknown"));
        assert_eq!(estimate(&TagModel::default(), None, 4096), None);
    }

    #[test]
    fn the_parameter_curve_stays_near_known_models() {
        // (parameters, real f16 KV bytes per token): within a factor of 2.5, erring high
        // for typical GQA models.
        for (p, real) in [
            (1.24e9, 32_768.0),
            (3.2e9, 114_688.0),
            (8.0e9, 131_072.0),
            (70.6e9, 327_680.0),
        ] {
            let guess = kv_bytes_per_token_from_parameters(p);
            assert!(
                guess / real < 2.5 && guess / real > 0.7,
                "{p}: {guess} vs {real}"
            );
        }
    }

    #[test]
    fn measured_takes_the_largest_observation() {
        const MIB: u64 = 1024 * 1024;
        let a = Measured::observe(Some(3000 * MIB), Some(3000 * MIB), None, Some(4096)).expect("a");
        // Partly offloaded later with a longer context: size is the full footprint.
        let b = Measured::observe(
            Some(5000 * MIB),
            Some(2000 * MIB),
            Some(2100 * MIB),
            Some(16384),
        )
        .expect("b");
        let max = a.clone().max(b.clone());
        assert_eq!(max, b);
        assert_eq!(b.clone().max(a), b);
        let need = max.need();
        assert_eq!(need.mb, 5000.0);
        assert_eq!(need.source, VramSource::Measured);
        assert!(
            need.detail
                .contains("at context 16384, of which 2000 MiB was in VRAM"),
            "{}",
            need.detail
        );
        // NVML saw more than Ollama's numbers.
        let c = Measured::observe(Some(10), Some(10), Some(20), None).expect("c");
        assert_eq!((c.bytes, c.from), (20, "NVML per-process memory"));
        assert_eq!(Measured::observe(None, Some(0), None, None), None);
    }
}
