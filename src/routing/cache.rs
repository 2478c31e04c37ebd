//! The resolution cache: each (name, operation, kind) is resolved at most about once a
//! second and no answer served is older than [`MAX_AGE`]. A call that finds an entry past
//! [`REFRESH_AFTER`] starts its recomputation in the background and is served the entry
//! (still fresh); only a call that finds none fresh waits, and then for one computation
//! shared by every waiter. Under steady traffic no call waits at all, however long the
//! history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::resolve::Resolution;
use crate::record::CallKind;

/// The oldest resolution served: the bound, and short enough that a model that
/// starts failing or a newly measured one is acted on within a second.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Age from which a call starts a background refresh, so the next ones find a fresh entry.
pub const REFRESH_AFTER: Duration = Duration::from_millis(750);

/// Entries kept at most: operations come from a client header, so their number is bounded
/// here rather than by trust; past it the cache starts over.
const MAX_ENTRIES: usize = 1_024;

type Computed = Option<Arc<Resolution>>;

struct Slot {
    value: watch::Sender<Computed>,
    refreshing: AtomicBool,
}

/// name -> operation -> kind.
type Slots = HashMap<String, HashMap<String, [Option<Arc<Slot>>; 2]>>;

/// The cache; cheap to share behind an `Arc`.
#[derive(Default)]
pub struct Cache {
    slots: RwLock<Slots>,
}

fn kind_index(kind: CallKind) -> usize {
    match kind {
        CallKind::Generation => 0,
        CallKind::Embedding => 1,
    }
}

impl Cache {
    fn slot(&self, name: &str, operation: &str, kind: CallKind) -> Arc<Slot> {
        let k = kind_index(kind);
        {
            let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = slots
                .get(name)
                .and_then(|ops| ops.get(operation))
                .and_then(|kinds| kinds[k].as_ref())
            {
                return slot.clone();
            }
        }
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        let entries: usize = slots.values().map(HashMap::len).sum();
        if entries >= MAX_ENTRIES {
            slots.clear();
        }
        let kinds = slots
            .entry(name.to_owned())
            .or_default()
            .entry(operation.to_owned())
            .or_default();
        kinds[k]
            .get_or_insert_with(|| {
                Arc::new(Slot {
                    value: watch::channel(None).0,
                    refreshing: AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// The resolution of (`name`, `operation`, `kind`), computing it with `compute` (on a
    /// blocking thread) when none is fresh. `None` only if the computation panicked.
    pub async fn get(
        &self,
        name: &str,
        operation: &str,
        kind: CallKind,
        compute: impl FnOnce() -> Resolution + Send + 'static,
    ) -> Option<Arc<Resolution>> {
        let slot = self.slot(name, operation, kind);
        let mut rx = slot.value.subscribe();
        let current = rx.borrow_and_update().clone();
        if let Some(current) = current {
            let age = current.computed_at.elapsed();
            if age < REFRESH_AFTER {
                return Some(current);
            }
            if age < MAX_AGE {
                refresh(&slot, compute);
                return Some(current);
            }
        }
        refresh(&slot, compute);
        // One computation is under way (this call's or an earlier one's); its result is
        // the fresh one.
        let _ = rx.changed().await;
        rx.borrow().clone()
    }

    /// Every resolution held, fresh or not (for the routing endpoint).
    pub fn held(&self) -> Vec<Arc<Resolution>> {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots
            .values()
            .flat_map(HashMap::values)
            .flat_map(|kinds| kinds.iter().flatten())
            .filter_map(|slot| slot.value.borrow().clone())
            .collect()
    }
}

/// Starts a recomputation of `slot` unless one is running.
fn refresh(slot: &Arc<Slot>, compute: impl FnOnce() -> Resolution + Send + 'static) {
    if slot.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let slot = slot.clone();
    tokio::spawn(async move {
        let result = tokio::task::spawn_blocking(compute).await;
        slot.refreshing.store(false, Ordering::Release);
        match result {
            Ok(resolution) => {
                slot.value.send_replace(Some(Arc::new(resolution)));
            }
            Err(e) => {
                tracing::error!(error = %e, "routing: computing a resolution failed");
                // Wake the waiters; they find no fresh value and answer 503.
                slot.value.send_modify(|_| {});
            }
        }
    });
}

/// Whether a resolution computed at `at` may still be served.
pub fn is_fresh(at: Instant) -> bool {
    at.elapsed() < MAX_AGE
}
