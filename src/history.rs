//! The in-memory history the API reads: per model, the compact [`Sample`]s of its records
//! sorted by time, so a window is a binary search and a statistic one scan. It is loaded
//! from the store at start and kept in step with it by the recorder's writer thread alone
//! (as its [`StoreListener`]): each committed batch, each deletion (retention, clear) and
//! each quality score is applied here right after the store has it, in the same order, so
//! no change can overtake another.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::record::{CallKind, Record};
use crate::recorder::StoreListener;
use crate::stats::Sample;
use crate::store::{Store, StoreError};

/// The history of every model.
#[derive(Default)]
pub struct History {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    models: HashMap<String, Vec<Sample>>,
    operation_names: Vec<String>,
    operation_ids: HashMap<String, u32>,
    /// Per model, the [`CallKind`] bits of the endpoints its records came from.
    kinds: HashMap<String, u8>,
    /// Upstream host names, id `i + 1` for `host_names[i]` (0 is "no host").
    host_names: Vec<String>,
    host_ids: HashMap<String, u8>,
}

/// The host id the names beyond [`MAX_HOSTS`] share: they can be told apart from the
/// named hosts, not from each other.
pub const OTHER_HOSTS: u8 = 254;
/// A host id no sample has: the filter of a host name never seen matches nothing.
pub const NO_SUCH_HOST: u8 = 255;
/// Distinct host names interned: far above any fleet (hosts come from the configuration;
/// only imported records can name others), and the id fits the sample's one byte.
pub const MAX_HOSTS: usize = 253;

impl Inner {
    fn operation_id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.operation_ids.get(name) {
            return *id;
        }
        let id = self.operation_names.len() as u32;
        self.operation_names.push(name.to_string());
        self.operation_ids.insert(name.to_string(), id);
        id
    }

    fn host_id(&mut self, name: Option<&str>) -> u8 {
        let Some(name) = name else {
            return 0;
        };
        if let Some(id) = self.host_ids.get(name) {
            return *id;
        }
        if self.host_names.len() >= MAX_HOSTS {
            return OTHER_HOSTS;
        }
        self.host_names.push(name.to_string());
        let id = self.host_names.len() as u8;
        self.host_ids.insert(name.to_string(), id);
        id
    }

    fn insert(&mut self, record: &Record) {
        let op = self.operation_id(&record.operation);
        let host = self.host_id(record.host.as_deref());
        let sample = Sample::from_record(record, op, host);
        let bit = CallKind::of_endpoint(&record.endpoint).bit();
        match self.kinds.get_mut(&record.model) {
            Some(kinds) => *kinds |= bit,
            None => {
                self.kinds.insert(record.model.clone(), bit);
            }
        }
        let samples = self.models.entry(record.model.clone()).or_default();
        // Records arrive nearly in order (a call is stamped when it starts and committed
        // when it ends), so the insertion point is almost always the end.
        let at = samples.partition_point(|s| s.timestamp_ms <= sample.timestamp_ms);
        samples.insert(at, sample);
    }
}

impl History {
    /// Loads every stored record.
    pub fn load(store: &Store) -> Result<History, StoreError> {
        let history = History::default();
        {
            let mut inner = history.write();
            store.for_each_record(None, None, |r| {
                inner.insert(&r);
                true
            })?;
        }
        Ok(history)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // A panic while holding the lock cannot leave samples half-written in a way that
        // matters more than losing the API: keep serving.
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds committed records.
    fn append(&self, records: &[Record]) {
        let mut inner = self.write();
        for r in records {
            inner.insert(r);
        }
    }

    /// The interned id of an operation name, if any record has it.
    pub fn operation_id(&self, name: &str) -> Option<u32> {
        self.read().operation_ids.get(name).copied()
    }

    /// The interned id of an upstream host name for a filter: [`NO_SUCH_HOST`] when no
    /// record has it (so nothing matches).
    pub fn host_filter(&self, name: &str) -> u8 {
        self.read()
            .host_ids
            .get(name)
            .copied()
            .unwrap_or(NO_SUCH_HOST)
    }

    /// Every upstream host name interned, by id: id `i + 1` is the name at `i` (a
    /// sample's host 0 is "no host").
    pub fn host_names_by_id(&self) -> Vec<String> {
        self.read().host_names.clone()
    }

    /// Every upstream host name any record has had, sorted.
    pub fn hosts(&self) -> Vec<String> {
        let mut names = self.read().host_names.clone();
        names.sort();
        names
    }

    /// Every operation name any record has had, sorted (names stay interned after their
    /// records are deleted, so a name may have no records left).
    pub fn operations(&self) -> Vec<String> {
        let mut names = self.read().operation_names.clone();
        names.sort();
        names
    }

    /// Every model with at least one record, sorted by name.
    pub fn models(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().models.keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether the model has any record.
    pub fn has_model(&self, model: &str) -> bool {
        self.read().models.contains_key(model)
    }

    /// Runs `f` over a model's samples (time-sorted) under the read lock.
    pub fn with_model<R>(&self, model: &str, f: impl FnOnce(&[Sample]) -> R) -> Option<R> {
        let inner = self.read();
        inner.models.get(model).map(|s| f(s))
    }

    /// Runs `f` over every model's samples under one read lock.
    pub fn with_all<R>(&self, f: impl FnOnce(&HashMap<String, Vec<Sample>>) -> R) -> R {
        f(&self.read().models)
    }

    /// Whether the model's records include calls of this kind (by their endpoint).
    pub fn has_served(&self, model: &str, kind: CallKind) -> bool {
        self.read()
            .kinds
            .get(model)
            .is_some_and(|k| k & kind.bit() != 0)
    }

    /// Every model whose records include calls of this kind, with its number of samples,
    /// sorted by name.
    pub fn models_serving(&self, kind: CallKind) -> Vec<(String, usize)> {
        let inner = self.read();
        let mut out: Vec<(String, usize)> = inner
            .models
            .iter()
            .filter(|(m, _)| inner.kinds.get(*m).is_some_and(|k| k & kind.bit() != 0))
            .map(|(m, s)| (m.clone(), s.len()))
            .collect();
        out.sort();
        out
    }

    /// Forgets a model (after it was cleared from the store).
    fn remove_model(&self, model: &str) {
        let mut inner = self.write();
        inner.kinds.remove(model);
        inner.models.remove(model);
    }

    /// Forgets records before `cutoff_ms` and all but the newest `max_per_model` of each
    /// model: the store's retention rule, applied to the same records.
    fn retain(&self, cutoff_ms: i64, max_per_model: usize) {
        let mut inner = self.write();
        for samples in inner.models.values_mut() {
            let old = samples.partition_point(|s| s.timestamp_ms < cutoff_ms);
            let over = samples
                .len()
                .saturating_sub(old)
                .saturating_sub(max_per_model);
            samples.drain(..old + over);
        }
        inner.models.retain(|_, s| !s.is_empty());
        let Inner { models, kinds, .. } = &mut *inner;
        kinds.retain(|m, _| models.contains_key(m));
    }

    /// Sets the quality of the sample that stands for `record`.
    fn set_quality(&self, record: &Record, quality: f64) {
        let mut inner = self.write();
        if let Some(samples) = inner.models.get_mut(&record.model) {
            let ts = record.timestamp.timestamp_millis();
            let time = record.processing_time_ms as f32;
            let start = samples.partition_point(|s| s.timestamp_ms < ts);
            if let Some(s) = samples[start..]
                .iter_mut()
                .take_while(|s| s.timestamp_ms == ts)
                .find(|s| s.processing_time_ms == time)
            {
                s.quality_score = quality as f32;
            }
        }
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.read().models.values().map(Vec::len).sum()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StoreListener for History {
    fn committed(&self, records: &[Record]) {
        self.append(records);
    }

    fn retained(&self, cutoff_ms: i64, max_per_model: u64) {
        self.retain(
            cutoff_ms,
            usize::try_from(max_per_model).unwrap_or(usize::MAX),
        );
    }

    fn models_evicted(&self, models: &[String]) {
        let mut inner = self.write();
        for model in models {
            inner.models.remove(model);
        }
    }

    fn model_deleted(&self, model: &str) {
        self.remove_model(model);
    }

    fn quality_set(&self, record: &Record, quality: f64) {
        self.set_quality(record, quality);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn record(model: &str, ts_ms: i64, op: &str) -> Record {
        let mut r = Record::new(
            format!("{model}-{ts_ms}"),
            Utc.timestamp_millis_opt(ts_ms).single().expect("ts"),
            model.into(),
            op.into(),
            "/api/chat".into(),
        );
        r.processing_time_ms = ts_ms as f64;
        r
    }

    #[test]
    fn out_of_order_appends_stay_sorted_and_operations_are_interned() {
        let h = History::default();
        h.append(&[
            record("a", 30, "chat"),
            record("a", 10, "embed"),
            record("a", 20, "chat"),
        ]);
        let times = h.with_model("a", |s| {
            s.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>()
        });
        assert_eq!(times, Some(vec![10, 20, 30]));
        assert_eq!(h.operation_id("chat"), Some(0));
        assert_eq!(h.operation_id("embed"), Some(1));
        assert_eq!(h.operation_id("nope"), None);
    }

    #[test]
    fn retain_applies_the_stores_rule() {
        let h = History::default();
        let batch: Vec<Record> = (0..10).map(|i| record("a", i * 10, "chat")).collect();
        h.append(&batch);
        h.append(&[record("b", 5, "chat")]);
        h.retain(25, 4);
        let times = h.with_model("a", |s| {
            s.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>()
        });
        assert_eq!(times, Some(vec![60, 70, 80, 90]));
        assert!(!h.has_model("b"), "b's only record was too old");
    }

    #[test]
    fn quality_is_set_on_the_matching_sample() {
        let h = History::default();
        let r = record("a", 10, "chat");
        h.append(&[record("a", 10, "chat"), record("a", 11, "chat")]);
        h.set_quality(&r, 4.5);
        let q = h.with_model("a", |s| {
            s.iter().map(|s| s.quality_score).collect::<Vec<_>>()
        });
        let q = q.expect("model");
        assert_eq!(q[0], 4.5);
        assert!(q[1].is_nan());
    }

    /// The race this module's design removes: a clear is answered, and before its caller
    /// resumes, the writer commits a new record for the same model. The history must hold
    /// that record (the store does): changes apply in commit order on the writer, never
    /// from the caller after the fact. The caller here is held back for certain by
    /// blocking the test's only runtime thread until the store has the new record.
    #[tokio::test]
    async fn a_record_committed_right_after_a_clear_stays_in_the_history() {
        use std::sync::Arc;
        use std::time::Duration;

        use crate::recorder::{self, CommitHook, RecorderConfig};

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.db");
        let history = Arc::new(History::default());
        let config = RecorderConfig {
            queue_capacity: 100,
            batch_size: 100,
            flush_interval: Duration::from_millis(1),
            max_records_per_model: 10_000,
            max_age: Duration::from_secs(365 * 86_400),
            retention_interval: Duration::from_secs(3600),
            instance: "test".into(),
            spill_capacity: 0,
            follow_interval: Duration::from_millis(250),
            max_models: 1_000,
        };
        let (rec, task) = recorder::start(
            &crate::store::StoreLocation::Sqlite(path.clone()),
            config,
            Some(history.clone() as CommitHook),
        )
        .expect("start");
        let now = Utc::now().timestamp_millis();
        rec.submit_and_wait((0..3).map(|i| record("m", now - 10 + i, "chat")).collect())
            .await
            .expect("stored");
        assert_eq!(history.len(), 3);
        // Hold the store's write lock so the clear waits in the writer until both it and
        // the next record are queued, in that order.
        let lock = Store::open(&path).expect("open");
        lock.connection()
            .execute_batch("BEGIN EXCLUSIVE")
            .expect("lock");
        let clear = tokio::spawn({
            let rec = rec.clone();
            async move { rec.delete_model("m".into()).await }
        });
        tokio::task::yield_now().await;
        assert!(
            rec.submit(record("m", now, "chat")),
            "queued after the clear"
        );
        lock.connection().execute_batch("ROLLBACK").expect("unlock");
        let reader = Store::open_reader(&path).expect("reader");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while reader.count().expect("count") != 1 || history.len() != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never got there"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(clear.await.expect("join").expect("cleared"), 3);
        assert_eq!(reader.count().expect("count"), 1);
        assert_eq!(
            history.with_model("m", <[Sample]>::len),
            Some(1),
            "the history holds what the store holds"
        );
        drop(lock);
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
    }
}
