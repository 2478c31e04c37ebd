//! The loop that watches one host of several: each interval its kind's health probe
//! (Ollama: `GET /api/version`), then what it holds: `GET /api/ps` every time,
//! `GET /api/tags` every few probes, after it comes back, and after a management call
//! went to it (an OpenAI-compatible server: `GET /v1/models`, its one model list). The
//! result replaces the host's inventory whole; calls read it without a lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{Fleet, Host, Inventory, TAGS_EVERY_PROBES};
use crate::telemetry::model_key;
use crate::text::error_chain;
use crate::upstream::UpstreamKind;

/// How long one inventory read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A model list as Ollama (`models`, each with `name`/`model`) or an OpenAI-compatible
/// server (`data`, each with `id`) gives it.
#[derive(Deserialize, Default)]
struct List {
    #[serde(default)]
    models: Vec<Entry>,
    #[serde(default)]
    data: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: Option<String>,
    model: Option<String>,
    id: Option<String>,
}

impl List {
    fn keys(&self) -> impl Iterator<Item = String> + '_ {
        self.models
            .iter()
            .chain(&self.data)
            .filter_map(|e| e.name.as_ref().or(e.model.as_ref()).or(e.id.as_ref()))
            .map(|n| model_key(n))
    }
}

async fn read(client: &reqwest::Client, base: &str, path: &str) -> Result<List, String> {
    let response = client
        .get(format!("{base}{path}"))
        .timeout(READ_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("GET {path}: {}", error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("GET {path} answered {}", response.status()));
    }
    response
        .json::<List>()
        .await
        .map_err(|e| format!("GET {path}: {}", error_chain(&e)))
}

/// Probes `host` until `stop` says so.
pub(super) async fn run(
    fleet: Fleet,
    host: Arc<Host>,
    client: reqwest::Client,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(fleet.inner.health.probe_interval);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut probes: u64 = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let once = probe_once(&fleet, &host, &client, probes);
        tokio::select! {
            () = once => {}
            _ = stop.changed() => return,
        }
        probes += 1;
    }
}

async fn probe_once(fleet: &Fleet, host: &Host, client: &reqwest::Client, probes: u64) {
    let probe = host.kind.probe(client, &host.url).await;
    let kind = probe.kind;
    let ok = probe.error.is_none();
    host.set_probe(probe.error);
    if !ok {
        return;
    }
    let old = host.inventory.load_full();
    let (installed, loaded) = match kind {
        Some(UpstreamKind::OpenAi) => match read(client, &host.url, "/v1/models").await {
            Ok(list) => {
                let keys: HashSet<String> = list.keys().collect();
                (Some(keys.clone()), keys)
            }
            Err(e) => {
                tracing::debug!(upstream = %host.name, error = %e, "model list not read");
                return;
            }
        },
        _ => {
            let loaded = match read(client, &host.url, "/api/ps").await {
                Ok(list) => list.keys().collect(),
                Err(e) => {
                    tracing::debug!(upstream = %host.name, error = %e, "/api/ps not read");
                    old.loaded_keys.iter().cloned().collect()
                }
            };
            let due = probes.is_multiple_of(TAGS_EVERY_PROBES)
                || host.refresh_tags.swap(false, Ordering::Relaxed)
                || old.installed.is_none();
            let installed = if due {
                match read(client, &host.url, "/api/tags").await {
                    Ok(list) => Some(list.keys().collect::<HashSet<String>>()),
                    Err(e) => {
                        tracing::debug!(upstream = %host.name, error = %e, "/api/tags not read");
                        None
                    }
                }
            } else {
                None
            };
            (installed, loaded)
        }
    };
    let installed: Option<HashMap<String, Option<f64>>> = match installed {
        Some(keys) => Some(
            keys.into_iter()
                .map(|k| {
                    let need = host.telemetry.vram_need(&k).map(|n| n.mb);
                    (k, need)
                })
                .collect(),
        ),
        None => old.installed_by_key(),
    };
    host.inventory.store(Arc::new(Inventory::new(
        installed,
        loaded,
        host.telemetry.free_vram_mb(),
    )));
    fleet
        .first()
        .telemetry
        .set_fleet_installed(fleet.installed_union());
}
