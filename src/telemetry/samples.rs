//! The recent samples, and a model's memory over a call read from them: the value at the
//! end and the peak since the call's mark. Pure data and functions; the sampler appends,
//! the proxy's meter reads.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::gpu::BYTES_PER_MIB;

/// One model's memory in one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSample {
    /// The model's key (see [`super::model_key`]).
    pub key: String,
    /// The model's name as Ollama gives it.
    pub name: String,
    /// `/api/ps` `size`, bytes.
    pub size_bytes: Option<u64>,
    /// `/api/ps` `size_vram`, bytes.
    pub size_vram_bytes: Option<u64>,
    /// `/api/ps` `context_length`.
    pub context_length: Option<u64>,
    /// The runner serving it, when one was found.
    pub runner_pid: Option<u32>,
    /// The runner's RSS, bytes.
    pub runner_rss_bytes: Option<u64>,
    /// The runner's GPU memory (NVML, summed over devices), bytes.
    pub gpu_memory_bytes: Option<u64>,
}

/// Everything the sampler saw at one tick that records need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Increases by one per sample; a [`super::SampleMark`] holds one.
    pub seq: u64,
    /// When the tick ended.
    pub at: Option<DateTime<Utc>>,
    /// RSS of Ollama's server process(es), bytes; `None` when none is visible.
    pub server_rss_bytes: Option<u64>,
    /// Whether `/api/ps` answered: if it did, a model missing from `models` holds nothing.
    pub ps_ok: bool,
    /// Models loaded (per `/api/ps`) or served by a runner whose blob is known.
    pub models: Vec<ModelSample>,
    /// Free memory over all devices, bytes; `None` without GPU telemetry.
    pub gpu_free_bytes: Option<u64>,
    /// Installed memory over all devices, bytes; `None` without GPU telemetry.
    pub gpu_total_bytes: Option<u64>,
    /// The upstream serves its one model whatever name a call gives (a single-model
    /// OpenAI-compatible server such as llama.cpp's): every name reads that model.
    pub serves_any_name: bool,
}

impl Sample {
    /// The entry for `key` (or the one model of a server that serves any name).
    pub fn model(&self, key: &str) -> Option<&ModelSample> {
        self.models
            .iter()
            .find(|m| m.key == key)
            .or(match self.models.as_slice() {
                [only] if self.serves_any_name => Some(only),
                _ => None,
            })
    }

    /// The model's runner RSS plus the server's, bytes. `None` when its runner is not
    /// visible: the server alone is not the model's memory. A server that is not visible
    /// (configured runner only, or a runner-only container) adds nothing.
    pub fn ollama_rss_bytes(&self, key: &str) -> Option<u64> {
        let runner = self.model(key)?.runner_rss_bytes?;
        Some(runner + self.server_rss_bytes.unwrap_or(0))
    }
}

/// A model's memory over one call, MiB. `None` means unknown, never zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ModelMemory {
    /// The model's runner RSS plus the server's RSS, at the last sample.
    pub ollama_rss_mb: Option<f64>,
    /// The largest `ollama_rss_mb` over the samples since the mark.
    pub ollama_rss_peak_mb: Option<f64>,
    /// The runner's GPU memory (NVML), at the last sample.
    pub gpu_memory_mb: Option<f64>,
    /// The largest `gpu_memory_mb` since the mark.
    pub gpu_memory_peak_mb: Option<f64>,
    /// `/api/ps` `size_vram`, at the last sample.
    pub vram_mb: Option<f64>,
    /// Free memory over all devices at the last sample.
    pub gpu_free_mb: Option<f64>,
}

fn mib(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|b| b as f64 / BYTES_PER_MIB)
}

/// A bounded run of samples, oldest first.
#[derive(Debug, Clone, Default)]
pub struct SampleHistory {
    samples: VecDeque<Sample>,
    capacity: usize,
}

impl SampleHistory {
    /// Keeps at most `capacity` samples (at least 1).
    pub fn new(capacity: usize) -> SampleHistory {
        SampleHistory {
            samples: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends a sample, dropping the oldest beyond capacity.
    pub fn push(&mut self, sample: Sample) {
        while self.samples.len() >= self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// How many samples are kept.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is kept.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The model's memory: current values from the newest sample, peaks over the samples
    /// whose `seq` is at least `since` (the sample current when the call started is the
    /// first of them). Scans from the newest back, so a short call reads a few samples.
    pub fn model_memory(&self, key: &str, since: u64) -> ModelMemory {
        let Some(latest) = self.latest() else {
            return ModelMemory::default();
        };
        let mut rss_peak: Option<u64> = None;
        let mut gpu_peak: Option<u64> = None;
        for sample in self.samples.iter().rev().take_while(|s| s.seq >= since) {
            rss_peak = rss_peak.max(sample.ollama_rss_bytes(key));
            gpu_peak = gpu_peak.max(sample.model(key).and_then(|m| m.gpu_memory_bytes));
        }
        let current = latest.model(key);
        ModelMemory {
            ollama_rss_mb: mib(latest.ollama_rss_bytes(key)),
            ollama_rss_peak_mb: mib(rss_peak),
            gpu_memory_mb: mib(current.and_then(|m| m.gpu_memory_bytes)),
            gpu_memory_peak_mb: mib(gpu_peak),
            vram_mb: mib(current.and_then(|m| m.size_vram_bytes)),
            gpu_free_mb: mib(latest.gpu_free_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn sample(seq: u64, runner_mib: Option<u64>, gpu_mib: Option<u64>) -> Sample {
        Sample {
            seq,
            at: None,
            server_rss_bytes: Some(100 * MIB),
            ps_ok: true,
            models: vec![ModelSample {
                key: "m:latest".into(),
                name: "m:latest".into(),
                size_vram_bytes: Some(4000 * MIB),
                runner_pid: Some(9),
                runner_rss_bytes: runner_mib.map(|m| m * MIB),
                gpu_memory_bytes: gpu_mib.map(|m| m * MIB),
                ..Default::default()
            }],
            gpu_free_bytes: Some(7000 * MIB),
            gpu_total_bytes: Some(24_000 * MIB),
            serves_any_name: false,
        }
    }

    #[test]
    fn a_single_model_server_answers_for_any_name_and_only_then() {
        let mut one = sample(1, Some(500), Some(700));
        one.server_rss_bytes = None;
        assert_eq!(one.model("gpt-4o:latest"), None);
        one.serves_any_name = true;
        assert_eq!(one.ollama_rss_bytes("gpt-4o:latest"), Some(500 * MIB));
        // Two models: a name picks its own or none, never a guess.
        let mut two = one.clone();
        two.models.push(ModelSample {
            key: "n:latest".into(),
            runner_rss_bytes: Some(MIB),
            ..Default::default()
        });
        assert_eq!(two.model("gpt-4o:latest"), None);
        assert_eq!(two.ollama_rss_bytes("n:latest"), Some(MIB));
    }

    #[test]
    fn peak_covers_the_samples_since_the_mark_and_current_is_the_last() {
        let mut h = SampleHistory::new(10);
        h.push(sample(1, Some(5000), Some(9000))); // before the mark: ignored
        h.push(sample(2, Some(900), Some(3000))); // current at the mark: included
        h.push(sample(3, Some(1500), Some(3500)));
        h.push(sample(4, Some(1200), Some(3200)));
        let m = h.model_memory("m:latest", 2);
        assert_eq!(m.ollama_rss_mb, Some(1300.0));
        assert_eq!(m.ollama_rss_peak_mb, Some(1600.0));
        assert_eq!(m.gpu_memory_mb, Some(3200.0));
        assert_eq!(m.gpu_memory_peak_mb, Some(3500.0));
        assert_eq!(m.vram_mb, Some(4000.0));
        assert_eq!(m.gpu_free_mb, Some(7000.0));
        // A mark from before any sample covers everything kept.
        assert_eq!(
            h.model_memory("m:latest", 0).ollama_rss_peak_mb,
            Some(5100.0)
        );
        // The mark is the newest sample: peak and current are that sample.
        let m = h.model_memory("m:latest", 4);
        assert_eq!(
            (m.ollama_rss_mb, m.ollama_rss_peak_mb),
            (Some(1300.0), Some(1300.0))
        );
    }

    #[test]
    fn unknown_stays_none_and_unloaded_keeps_its_peak() {
        let mut h = SampleHistory::new(10);
        assert_eq!(h.model_memory("m:latest", 0), ModelMemory::default());
        h.push(sample(1, None, None));
        let m = h.model_memory("m:latest", 1);
        assert_eq!(
            (m.ollama_rss_mb, m.gpu_memory_mb),
            (None, None),
            "no runner: unknown"
        );
        h.push(sample(2, Some(800), None));
        h.push(Sample {
            seq: 3,
            ps_ok: true,
            ..Default::default()
        }); // unloaded
        let m = h.model_memory("m:latest", 1);
        assert_eq!(m.ollama_rss_mb, None);
        assert_eq!(m.ollama_rss_peak_mb, Some(900.0));
        assert_eq!(h.model_memory("other:latest", 0), ModelMemory::default());
    }

    #[test]
    fn history_is_bounded() {
        let mut h = SampleHistory::new(3);
        for seq in 1..=10 {
            h.push(sample(seq, Some(seq), None));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.latest().map(|s| s.seq), Some(10));
        // The mark fell out of the window: the peak is over what is kept.
        assert_eq!(
            h.model_memory("m:latest", 2).ollama_rss_peak_mb,
            Some(110.0)
        );
    }

    #[test]
    fn a_missing_server_adds_nothing() {
        let mut s = sample(1, Some(250), None);
        s.server_rss_bytes = None;
        assert_eq!(s.ollama_rss_bytes("m:latest"), Some(250 * MIB));
    }
}
