//! The resolution cache: each (name, operation, kind, and for calls that say their own
//! workload, its coarse [`SizeKey`]) is resolved at most about once a second and no answer served is older than [`MAX_AGE`]. A call that finds an entry past
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
use super::workload::SizeKey;
use crate::record::CallKind;

/// The oldest resolution served: the bound, and short enough that a model that
/// starts failing or a newly measured one is acted on within a second.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Age from which a call starts a background refresh, so the next ones find a fresh entry.
pub const REFRESH_AFTER: Duration = Duration::from_millis(750);

/// Entries kept at most: operations and call sizes come from the client, so their number
/// is bounded here rather than by trust; past it the per-call sizes go first, and if that
/// is not enough the cache starts over.
const MAX_ENTRIES: usize = 1_024;

type Computed = Option<Arc<Resolution>>;

struct Slot {
    value: watch::Sender<Computed>,
    refreshing: AtomicBool,
}

/// The slots of one name and operation: per kind, the plain one (no per-call workload),
/// and those of the call sizes seen (created only when a call says its workload, so the
/// plain path stays an array index).
#[derive(Default)]
struct OpSlots {
    plain: [Option<Arc<Slot>>; 2],
    sized: HashMap<(usize, SizeKey), Arc<Slot>>,
}

impl OpSlots {
    fn get(&self, k: usize, size: Option<SizeKey>) -> Option<&Arc<Slot>> {
        match size {
            None => self.plain[k].as_ref(),
            Some(size) => self.sized.get(&(k, size)),
        }
    }

    fn len(&self) -> usize {
        self.plain.iter().flatten().count() + self.sized.len()
    }
}

/// name -> operation -> kind and size.
type Slots = HashMap<String, HashMap<String, OpSlots>>;

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
    fn slot(
        &self,
        name: &str,
        operation: &str,
        kind: CallKind,
        size: Option<SizeKey>,
    ) -> Arc<Slot> {
        let k = kind_index(kind);
        {
            let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = slots
                .get(name)
                .and_then(|ops| ops.get(operation))
                .and_then(|kinds| kinds.get(k, size))
            {
                return slot.clone();
            }
        }
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        let entries: usize = slots
            .values()
            .flat_map(HashMap::values)
            .map(OpSlots::len)
            .sum();
        if entries >= MAX_ENTRIES {
            let mut left = 0;
            for kinds in slots.values_mut().flat_map(HashMap::values_mut) {
                kinds.sized.clear();
                left += kinds.len();
            }
            if left >= MAX_ENTRIES {
                slots.clear();
            }
        }
        let kinds = slots
            .entry(name.to_owned())
            .or_default()
            .entry(operation.to_owned())
            .or_default();
        let new = || {
            Arc::new(Slot {
                value: watch::channel(None).0,
                refreshing: AtomicBool::new(false),
            })
        };
        match size {
            None => kinds.plain[k].get_or_insert_with(new).clone(),
            Some(size) => kinds.sized.entry((k, size)).or_insert_with(new).clone(),
        }
    }

    /// The resolution of (`name`, `operation`, `kind`, `size`), computing it with
    /// `compute` (on a blocking thread) when none is fresh. `None` only if the computation
    /// panicked.
    pub async fn get(
        &self,
        name: &str,
        operation: &str,
        kind: CallKind,
        size: Option<SizeKey>,
        compute: impl FnOnce() -> Resolution + Send + 'static,
    ) -> Option<Arc<Resolution>> {
        let slot = self.slot(name, operation, kind, size);
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

    /// Every resolution held without a per-call workload, fresh or not (for the routing
    /// endpoint: a call size is one call's, not the name's).
    pub fn held(&self) -> Vec<Arc<Resolution>> {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots
            .values()
            .flat_map(HashMap::values)
            .flat_map(|kinds| kinds.plain.iter().flatten())
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
