//! The bound on distinct model names (`store.max_models`), kept by the writer thread: a
//! client that loops over generated names must not grow the store, the history or any
//! view without end. The writer knows each model's outcome and last call; after a commit
//! takes the count over the bound, it picks the models to evict (the names with no
//! successful call first, then the oldest last call), deletes them from the store and
//! tells the listener, all on the writer thread like every other change.

use std::collections::HashMap;

use crate::record::Record;
use crate::store::{RecordStore, StoreError, StoredModel};

/// What the writer knows of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    succeeded: bool,
    last_call_ms: i64,
}

/// The models the store holds, as far as the writer knows, and the bound.
#[derive(Debug)]
pub(super) struct ModelLimit {
    max: usize,
    models: HashMap<String, Seen>,
    /// Set after a change the writer did not follow record by record (a delete, a
    /// retention pass): `models` may then name models the store no longer holds, so it
    /// is read again from the store before anything is evicted. (Such changes only ever
    /// remove models, so an overcount is the only way it can be wrong.)
    stale: bool,
}

impl ModelLimit {
    /// A bound of `max` names; what the store holds is read at the first check.
    pub(super) fn new(max: usize) -> ModelLimit {
        ModelLimit {
            max: max.max(1),
            models: HashMap::new(),
            stale: true,
        }
    }

    /// The store changed in a way not followed here.
    pub(super) fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// Takes in what a committed batch adds.
    pub(super) fn committed(&mut self, records: &[Record]) {
        for r in records {
            let ts = r.timestamp.timestamp_millis();
            match self.models.get_mut(r.model.as_str()) {
                Some(seen) => {
                    seen.succeeded |= r.success;
                    seen.last_call_ms = seen.last_call_ms.max(ts);
                }
                None => {
                    self.models.insert(
                        r.model.clone(),
                        Seen {
                            succeeded: r.success,
                            last_call_ms: ts,
                        },
                    );
                }
            }
        }
    }

    /// Reads every model from the store.
    pub(super) fn load(&mut self, store: &mut dyn RecordStore) -> Result<(), StoreError> {
        self.models = store
            .stored_models()?
            .into_iter()
            .map(
                |StoredModel {
                     model,
                     succeeded,
                     last_call_ms,
                 }| {
                    (
                        model,
                        Seen {
                            succeeded,
                            last_call_ms,
                        },
                    )
                },
            )
            .collect();
        self.stale = false;
        Ok(())
    }

    /// The models to evict now to get back to the bound, in eviction order, already
    /// forgotten here; empty when within it.
    pub(super) fn over(&mut self, store: &mut dyn RecordStore) -> Result<Vec<String>, StoreError> {
        if self.models.len() <= self.max {
            return Ok(Vec::new());
        }
        if self.stale {
            self.load(store)?;
            if self.models.len() <= self.max {
                return Ok(Vec::new());
            }
        }
        let excess = self.models.len() - self.max;
        let mut order: Vec<(&String, &Seen)> = self.models.iter().collect();
        // A partial sort: only the `excess` first are needed.
        fn cmp(a: &(&String, &Seen), b: &(&String, &Seen)) -> std::cmp::Ordering {
            (a.1.succeeded, a.1.last_call_ms, a.0).cmp(&(b.1.succeeded, b.1.last_call_ms, b.0))
        }
        order.select_nth_unstable_by(excess - 1, cmp);
        let mut victims: Vec<(&String, &Seen)> = order.into_iter().take(excess).collect();
        victims.sort_by(cmp);
        let victims: Vec<String> = victims.into_iter().map(|(name, _)| name.clone()).collect();
        for name in &victims {
            self.models.remove(name);
        }
        Ok(victims)
    }

    /// Names known now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.models.len()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::store::Store;

    fn record(model: &str, ts_ms: i64, success: bool) -> Record {
        let mut r = Record::new(
            format!("{model}-{ts_ms}"),
            Utc.timestamp_millis_opt(ts_ms).single().expect("ts"),
            model.into(),
            "chat".into(),
            "/api/chat".into(),
        );
        r.success = success;
        r
    }

    #[test]
    fn names_without_success_go_first_then_the_oldest_last_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("s.db")).expect("open");
        let mut limit = ModelLimit::new(3);
        limit.load(&mut store).expect("load");
        limit.committed(&[
            record("old-good", 10, true),
            record("new-good", 50, true),
            record("typo", 40, false),
            record("recent-typo", 60, false),
            record("mid-good", 30, true),
        ]);
        assert_eq!(
            limit.over(&mut store).expect("over"),
            vec!["typo", "recent-typo"],
            "the failing names, oldest first"
        );
        assert_eq!(limit.len(), 3);
        limit.committed(&[record("another", 70, true)]);
        assert_eq!(limit.over(&mut store).expect("over"), vec!["old-good"]);
        limit.committed(&[record("new-good", 80, false)]);
        assert!(
            limit.over(&mut store).expect("over").is_empty(),
            "a known name"
        );
    }

    #[test]
    fn a_stale_count_is_read_again_before_evicting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(&dir.path().join("s.db")).expect("open");
        store
            .insert_batch(&[record("a", 1, true), record("b", 2, true)])
            .expect("insert");
        let mut limit = ModelLimit::new(2);
        limit.committed(&[record("a", 1, true), record("b", 2, true)]);
        // Someone cleared "a" through the API; the writer only knows something changed.
        store.delete_model("a").expect("clear");
        limit.mark_stale();
        store
            .insert_batch(&[record("c", 3, false)])
            .expect("insert");
        limit.committed(&[record("c", 3, false)]);
        assert!(
            limit.over(&mut store).expect("over").is_empty(),
            "two models in the store: within the bound"
        );
        assert_eq!(limit.len(), 2);
    }
}
