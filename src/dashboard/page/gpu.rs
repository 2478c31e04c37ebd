//! Each GPU's memory split between the loaded models, other processes and free memory,
//! and the models Ollama has loaded.

use maud::{Markup, html};

use super::format::{chart_or_error, megabytes, number_cell};
use crate::dashboard::charts::{self, GpuMemory, MemoryPart};
use crate::telemetry::{SourceState, SystemSnapshot};

/// Each GPU's memory split between the loaded models, other processes and free memory.
fn gpu_memory(system: &SystemSnapshot) -> Vec<GpuMemory> {
    let single = system.gpus.len() == 1;
    system
        .gpus
        .iter()
        .map(|g| {
            // With one GPU, Ollama's own `size_vram` of each loaded model is the best figure;
            // with several, only NVML's per-process figures say which GPU holds what.
            let models: Vec<MemoryPart> = if single {
                system
                    .loaded_models
                    .iter()
                    .filter_map(|m| {
                        m.vram_mb.or(m.gpu_memory_mb).map(|mb| MemoryPart {
                            label: m.name.clone(),
                            mb,
                        })
                    })
                    .filter(|p| p.mb > 0.0)
                    .collect()
            } else {
                g.processes
                    .iter()
                    .filter_map(|p| {
                        Some(MemoryPart {
                            label: p.model.clone()?,
                            mb: p.used_memory_mb?,
                        })
                    })
                    .collect()
            };
            let held: f64 = models.iter().map(|p| p.mb).sum();
            GpuMemory {
                name: format!("GPU {}: {}", g.index, g.name),
                total_mb: g.memory_total_mb,
                other_mb: (g.memory_used_mb - held).max(0.0),
                free_mb: g.memory_free_mb.max(0.0),
                models,
            }
        })
        .collect()
}

fn source_reason(state: &SourceState) -> Option<&str> {
    match state {
        SourceState::Ok => None,
        SourceState::Unavailable(r) | SourceState::Disabled(r) => Some(r),
        SourceState::Pending => Some("telemetry has not sampled yet"),
    }
}

pub(super) fn gpu(system: &SystemSnapshot) -> Markup {
    let gpus = gpu_memory(system);
    html! {
        section #gpu {
            h2 { "GPU memory" }
            @if !system.sampler.enabled {
                p.notice {
                    "Telemetry is off"
                    @if let Some(reason) = source_reason(&system.sampler.sources.nvml) { ": " (reason) }
                    ". Turn it on (" code { "telemetry.enabled" } ") to see each loaded model's VRAM here."
                }
            } @else if gpus.is_empty() {
                p.notice {
                    "No GPU seen"
                    @if let Some(reason) = source_reason(&system.sampler.sources.nvml) { ": " (reason) }
                    ". Models' VRAM from Ollama is listed below when it has any loaded; "
                    code { "ollameter gpu-check" } " tells why NVML sees no GPU."
                }
            } @else {
                figure.wide {
                    figcaption { "Each GPU: the loaded models' VRAM, other processes and free memory, against its capacity" }
                    (chart_or_error(charts::gpu_chart("chart-gpu", "GPU memory by loaded model against each GPU's capacity", &gpus)))
                }
            }
            @if system.loaded_models.is_empty() {
                @if system.sampler.enabled {
                    p.none { "Ollama has no model loaded right now." }
                }
            } @else {
                div.table-wrap {
                    table.loaded {
                        caption { "Loaded in Ollama (" code { "/api/ps" } ")" }
                        thead {
                            tr {
                                th scope="col" { "Model" }
                                th.num scope="col" { "VRAM" }
                                th.num scope="col" { "Size" }
                                th.num scope="col" { "Context" }
                                th scope="col" { "Unloads at" }
                            }
                        }
                        tbody {
                            @for m in &system.loaded_models {
                                tr {
                                    th scope="row" { (m.name) }
                                    (number_cell(m.vram_mb, megabytes))
                                    (number_cell(m.size_mb, megabytes))
                                    td.num { @match m.context_length { Some(c) => { (c) " tokens" } None => { "—" } } }
                                    td { (m.expires_at.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::SourcesState;
    use crate::telemetry::snapshot::{GpuSnapshot, LoadedModel};

    fn snapshot(gpus: Vec<GpuSnapshot>, loaded: Vec<LoadedModel>) -> SystemSnapshot {
        let mut s = SystemSnapshot::empty(true, 1000, SourcesState::all(&SourceState::Ok));
        s.gpus = gpus;
        s.loaded_models = loaded;
        s
    }

    fn loaded(name: &str, vram_mb: f64) -> LoadedModel {
        LoadedModel {
            name: name.into(),
            size_mb: Some(vram_mb + 100.0),
            vram_mb: Some(vram_mb),
            context_length: Some(4096),
            expires_at: Some("2025-01-01T00:05:00Z".into()),
            runner_pid: None,
            runner_rss_mb: None,
            gpu_memory_mb: None,
        }
    }

    #[test]
    fn one_gpu_is_split_by_ollamas_loaded_models() {
        let device = GpuSnapshot {
            index: 0,
            name: "NVIDIA L4".into(),
            memory_total_mb: 23_034.0,
            memory_used_mb: 9_000.0,
            memory_free_mb: 14_034.0,
            utilization_gpu_percent: None,
            utilization_memory_percent: None,
            processes: Vec::new(),
        };
        let system = snapshot(
            vec![device],
            vec![loaded("llama3.2:3b", 3_000.0), loaded("<b>x</b>", 5_000.0)],
        );
        let parts = gpu_memory(&system);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].models.len(), 2);
        assert_eq!(parts[0].other_mb, 1_000.0);
        let html = gpu(&system).into_string();
        assert!(html.contains("id=\"chart-gpu\""), "{html}");
        assert!(html.contains("capacity 22.5 GB"), "{html}");
        assert!(!html.contains("<b>x"), "escaped");
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(html.contains("4096 tokens"));
    }

    #[test]
    fn without_a_gpu_the_reason_is_shown() {
        let mut system = snapshot(Vec::new(), Vec::new());
        system.sampler.sources.nvml = SourceState::Unavailable("NVML library not found".into());
        let html = gpu(&system).into_string();
        assert!(
            html.contains("No GPU seen: NVML library not found"),
            "{html}"
        );
        assert!(html.contains("Ollama has no model loaded right now"));
        let off = SystemSnapshot::empty(
            false,
            0,
            SourcesState::all(&SourceState::Disabled("telemetry is off".into())),
        );
        assert!(gpu(&off).into_string().contains("Telemetry is off"));
    }
}
