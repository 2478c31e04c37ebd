//! The `[store]` settings that only matter for a shared store (PostgreSQL): this
//! instance's name, the spill that holds records through an outage, and how often the
//! history looks for other instances' changes. Validated from the raw `[store]` section
//! into the recorder's settings (its writer applies them).

use std::time::Duration;

use serde::Serialize;

use super::RawStore;
use crate::store::StoreLocation;

/// Records kept through a database outage beyond the queue: at 1,000 calls/s about a
/// minute and a half, at about 1 KiB each a hundred MiB at most.
pub const DEFAULT_SPILL_CAPACITY: u64 = 100_000;

/// Other instances' records reach the history within this (plus one query): a quarter of
/// the one-second promise, and an empty look costs one indexed query.
pub const DEFAULT_FOLLOW_INTERVAL_MS: u64 = 250;

/// The validated settings.
#[derive(Debug, Clone, Serialize)]
pub struct StoreSettings {
    /// This ollameter's name in a shared store (default: the host name).
    pub instance: String,
    /// Records held through an outage beyond the queue.
    pub spill_capacity: usize,
    /// How often the history looks for other instances' changes.
    #[serde(serialize_with = "ser_ms")]
    pub follow_interval: Duration,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// The host's name, or `ollameter` when the system gives none.
pub fn default_instance() -> String {
    sysinfo::System::host_name()
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "ollameter".into())
}

/// Validates the shared-store settings (and a PostgreSQL URL in `path`), adding every
/// problem to `problems`.
pub fn validate(raw: &RawStore, problems: &mut Vec<String>) -> StoreSettings {
    if let Some(path) = &raw.path
        && let Err(e) = StoreLocation::parse(path)
    {
        problems.push(format!("store.path: {e}"));
    }
    let instance = match &raw.instance {
        Some(name) if name.trim().is_empty() => {
            problems
                .push("store.instance: must not be empty (leave it out for the host name)".into());
            String::new()
        }
        Some(name) if name.len() > 200 => {
            problems.push("store.instance: at most 200 characters".into());
            String::new()
        }
        Some(name) => name.clone(),
        None => default_instance(),
    };
    let spill_capacity = raw.spill_capacity.unwrap_or(DEFAULT_SPILL_CAPACITY);
    let follow_interval_ms = match raw.follow_interval_ms {
        Some(0) => {
            problems.push("store.follow_interval_ms: must be above 0".into());
            DEFAULT_FOLLOW_INTERVAL_MS
        }
        Some(ms) => ms,
        None => DEFAULT_FOLLOW_INTERVAL_MS,
    };
    StoreSettings {
        instance,
        spill_capacity: usize::try_from(spill_capacity).unwrap_or(usize::MAX),
        follow_interval: Duration::from_millis(follow_interval_ms),
    }
}
