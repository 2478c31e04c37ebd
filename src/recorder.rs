//! The recorder: a bounded queue between the hot path and the store, and the one writer
//! thread that drains it in batches (by size, or at most `flush_interval` after the first
//! record of a batch arrived). The proxy never waits: when the queue is full the record
//! is counted as dropped. Retention runs on the same thread between batches, so the store
//! has a single writer. So does the bound on distinct model names (`model_limit`): the
//! writer evicts the least useful models when a commit takes the count over it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use tokio::sync::oneshot;

use crate::record::Record;
use crate::store::{Store, StoreError};

mod model_limit;

use model_limit::ModelLimit;

/// How long the writer sleeps between two looks at the queue while it gathers a batch:
/// the most a flush, a shutdown or a waited-on write can be held up by it, short next to
/// the flush interval, and long enough that at thousands of records a second each look
/// finds dozens of them.
const GATHER_POLL: Duration = Duration::from_millis(5);

/// Told on the writer thread what the store now holds: each batch right after it
/// committed, and each retention pass after it ran (so an in-memory view stays in step).
pub trait StoreListener: Send + Sync {
    /// These records were committed.
    fn committed(&self, records: &[Record]);
    /// Retention deleted records older than `cutoff_ms` and all but the newest
    /// `max_per_model` of each model.
    fn retained(&self, cutoff_ms: i64, max_per_model: u64);
    /// Every record of these models was deleted to keep the number of distinct model
    /// names within `store.max_models`. A listener that mirrors the store must forget
    /// them; the default does nothing.
    fn models_evicted(&self, models: &[String]) {
        let _ = models;
    }
}

/// A shared listener.
pub type CommitHook = Arc<dyn StoreListener>;

/// How the writer batches and keeps the store in bounds.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Records held in the queue at most.
    pub queue_capacity: usize,
    /// Records per transaction at most.
    pub batch_size: usize,
    /// Longest a record waits before its batch is committed.
    pub flush_interval: Duration,
    /// Retention: newest records kept per model.
    pub max_records_per_model: u64,
    /// Retention: oldest record kept.
    pub max_age: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Distinct model names kept; beyond, models are evicted (see `model_limit`).
    pub max_models: usize,
}

/// Counters the health route and metrics read.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Records committed to the store.
    pub written: AtomicU64,
    /// Records lost: queue full, or the store refused the batch.
    pub dropped: AtomicU64,
    /// Batches the store refused.
    pub failed_batches: AtomicU64,
    /// Records deleted by retention.
    pub retention_removed: AtomicU64,
    /// Models evicted to stay within `max_models`.
    pub models_evicted: AtomicU64,
    /// Records deleted with the evicted models.
    pub model_records_evicted: AtomicU64,
    /// Duration of the last commit, microseconds.
    pub last_commit_us: AtomicU64,
    /// Sum of commit durations, microseconds (with `commits`, the mean).
    pub commit_us_total: AtomicU64,
    /// Number of commits.
    pub commits: AtomicU64,
    store_failing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl RecorderStats {
    /// Whether the last write attempt failed.
    pub fn store_failing(&self) -> bool {
        self.store_failing.load(Ordering::Relaxed)
    }

    /// The last store error, if the store is failing now.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    fn set_error(&self, error: Option<String>) {
        self.store_failing.store(error.is_some(), Ordering::Relaxed);
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

/// Work the writer thread does on the store.
type StoreJob = Box<dyn FnOnce(&mut Store) + Send>;

enum Msg {
    Record(Box<Record>),
    /// Records a caller waits on (manual writes): answered after their commit.
    Sync(Vec<Record>, oneshot::Sender<Result<usize, String>>),
    /// Commit what is queued and answer.
    Flush(oneshot::Sender<()>),
    /// Commit everything queued, then stop.
    Shutdown,
    /// Work on the store done by the writer itself (deletes, updates), after the records
    /// queued before it, so the store keeps a single writer.
    Job(StoreJob),
}

/// The cheap, cloneable handle the proxy and the API hold.
#[derive(Clone)]
pub struct Recorder {
    tx: Sender<Msg>,
    stats: Arc<RecorderStats>,
}

/// Why a record a caller waits on was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full; try again shortly.
    #[error("the recorder queue is full; try again shortly")]
    QueueFull,
    /// The writer has stopped (shutting down).
    #[error("the recorder has stopped")]
    Stopped,
    /// The store refused the write.
    #[error("the store refused the write: {0}")]
    Store(String),
}

impl Recorder {
    /// Queues a record without waiting. Returns false (and counts it) when it was dropped.
    pub fn submit(&self, record: Record) -> bool {
        match self.tx.try_send(Msg::Record(Box::new(record))) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues records and waits until they are committed: for writes the caller
    /// acknowledges to its client, so nothing acknowledged is lost.
    pub async fn submit_and_wait(&self, records: Vec<Record>) -> Result<usize, SubmitError> {
        let (tx, rx) = oneshot::channel();
        match self.tx.try_send(Msg::Sync(records, tx)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(SubmitError::QueueFull),
            Err(TrySendError::Disconnected(_)) => return Err(SubmitError::Stopped),
        }
        match rx.await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(SubmitError::Store(e)),
            Err(_) => Err(SubmitError::Stopped),
        }
    }

    /// Runs `job` on the writer thread after everything queued before it is committed, and
    /// returns its result.
    pub async fn run_job<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Store) -> R + Send + 'static,
    ) -> Result<R, SubmitError> {
        let (tx, rx) = oneshot::channel();
        let boxed: StoreJob = Box::new(move |store: &mut Store| {
            let _ = tx.send(job(store));
        });
        match self.tx.try_send(Msg::Job(boxed)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(SubmitError::QueueFull),
            Err(TrySendError::Disconnected(_)) => return Err(SubmitError::Stopped),
        }
        rx.await.map_err(|_| SubmitError::Stopped)
    }

    /// Waits until everything queued before this call is committed (or dropped).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Records waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.tx.len()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<RecorderStats> {
        &self.stats
    }
}

/// The writer thread; `shutdown` drains the queue and joins it.
pub struct RecorderTask {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl RecorderTask {
    /// Commits everything queued, then stops the writer. Blocks until it has.
    pub fn shutdown(mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens the store and starts the writer thread.
pub fn start(
    db_path: &Path,
    config: RecorderConfig,
    on_commit: Option<CommitHook>,
) -> Result<(Recorder, RecorderTask), StoreError> {
    let store = Store::open(db_path)?;
    let (tx, rx) = bounded(config.queue_capacity);
    let stats = Arc::new(RecorderStats::default());
    let writer = Writer {
        store,
        rx,
        limit: ModelLimit::new(config.max_models),
        config,
        stats: stats.clone(),
        on_commit,
    };
    let thread = std::thread::Builder::new()
        .name("ollameter-writer".into())
        .spawn(move || writer.run())
        .map_err(|e| StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    Ok((
        Recorder {
            tx: tx.clone(),
            stats,
        },
        RecorderTask {
            tx,
            thread: Some(thread),
        },
    ))
}

struct Writer {
    store: Store,
    rx: Receiver<Msg>,
    limit: ModelLimit,
    config: RecorderConfig,
    stats: Arc<RecorderStats>,
    on_commit: Option<CommitHook>,
}

#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    waiters: Vec<(oneshot::Sender<Result<usize, String>>, usize)>,
    flushes: Vec<oneshot::Sender<()>>,
    jobs: Vec<StoreJob>,
    shutdown: bool,
}

impl Batch {
    /// Adds a message; true when the batch must be written now.
    fn add(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Record(r) => {
                self.records.push(*r);
                false
            }
            Msg::Sync(records, tx) => {
                self.waiters.push((tx, records.len()));
                self.records.extend(records);
                true
            }
            Msg::Flush(tx) => {
                self.flushes.push(tx);
                true
            }
            Msg::Shutdown => {
                self.shutdown = true;
                true
            }
            Msg::Job(job) => {
                self.jobs.push(job);
                true
            }
        }
    }
}

impl Writer {
    fn run(mut self) {
        if let Err(e) = self.limit.load(&self.store) {
            // Read again at the first commit over the bound.
            tracing::warn!(error = %e, "reading the stored models failed; will retry");
        }
        let mut next_retention = Instant::now();
        loop {
            if Instant::now() >= next_retention {
                self.retention();
                next_retention = Instant::now() + self.config.retention_interval;
            }
            let wait = next_retention.saturating_duration_since(Instant::now());
            let first = match self.rx.recv_timeout(wait) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = Batch::default();
            let urgent = batch.add(first);
            self.gather(&mut batch, urgent);
            if batch.shutdown || !batch.flushes.is_empty() {
                // Everything queued before the flush/shutdown belongs to this batch.
                while let Ok(msg) = self.rx.try_recv() {
                    batch.add(msg);
                }
            }
            let shutdown = batch.shutdown;
            let jobs = std::mem::take(&mut batch.jobs);
            self.write(batch);
            if !jobs.is_empty() {
                // A job may delete models; the limit reads the store again when it matters.
                self.limit.mark_stale();
            }
            for job in jobs {
                // A job that panics must not take the writer down with it.
                let store = &mut self.store;
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(store))).is_err() {
                    tracing::error!("a store job panicked");
                }
            }
            if shutdown {
                return;
            }
        }
    }

    /// Adds what arrives to `batch` until it is full, an urgent message came, or the
    /// flush interval since its first record is over. Between looks at the queue the
    /// writer sleeps instead of waiting on the channel: a waiting receiver would make
    /// every `submit` on the hot path pay a wake-up (a futex call), and it spins and
    /// yields before it sleeps, which takes the CPU from the proxy on a small machine.
    fn gather(&self, batch: &mut Batch, mut urgent: bool) {
        let deadline = Instant::now() + self.config.flush_interval;
        loop {
            while !urgent && batch.records.len() < self.config.batch_size {
                match self.rx.try_recv() {
                    Ok(msg) => urgent = batch.add(msg),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if urgent || batch.records.len() >= self.config.batch_size || now >= deadline {
                return;
            }
            std::thread::sleep(GATHER_POLL.min(deadline - now));
        }
    }

    fn write(&mut self, batch: Batch) {
        let Batch {
            records,
            waiters,
            flushes,
            ..
        } = batch;
        let result = if records.is_empty() {
            Ok(())
        } else {
            let started = Instant::now();
            // One transaction for the whole write, even when a waited-on import brings more
            // than `batch_size`: all or none, so what is counted, announced to the history
            // and answered to the waiters is exactly what the store holds.
            let result = self.store.insert_batch(&records);
            let us = started.elapsed().as_micros() as u64;
            self.stats.last_commit_us.store(us, Ordering::Relaxed);
            self.stats.commit_us_total.fetch_add(us, Ordering::Relaxed);
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            result
        };
        match result {
            Ok(()) => {
                self.stats
                    .written
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                if self.stats.store_failing() {
                    tracing::info!("store writable again");
                    self.stats.set_error(None);
                }
                if let Some(hook) = &self.on_commit
                    && !records.is_empty()
                {
                    hook.committed(&records);
                }
                self.limit.committed(&records);
                self.evict();
                for (tx, n) in waiters {
                    let _ = tx.send(Ok(n));
                }
            }
            Err(e) => {
                // Counted, not retried: a store that refuses writes must not grow memory.
                let message = e.to_string();
                if !self.stats.store_failing() {
                    tracing::error!(error = %message, records = records.len(), "store write failed; records dropped");
                }
                self.stats.set_error(Some(message.clone()));
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                let waited: usize = waiters.iter().map(|(_, n)| n).sum();
                self.stats
                    .dropped
                    .fetch_add((records.len() - waited) as u64, Ordering::Relaxed);
                for (tx, _) in waiters {
                    let _ = tx.send(Err(message.clone()));
                }
            }
        }
        for tx in flushes {
            let _ = tx.send(());
        }
    }

    /// Deletes the models over `max_models` from the store and tells the listener.
    fn evict(&mut self) {
        let victims = match self.limit.over(&self.store) {
            Ok(v) if v.is_empty() => return,
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "reading the stored models failed; will retry");
                return;
            }
        };
        match self.store.delete_models(&victims) {
            Ok(removed) => {
                let before = self
                    .stats
                    .models_evicted
                    .fetch_add(victims.len() as u64, Ordering::Relaxed);
                self.stats
                    .model_records_evicted
                    .fetch_add(removed, Ordering::Relaxed);
                if before == 0 {
                    // Once: under a stream of junk names this happens on every batch.
                    tracing::warn!(
                        max_models = self.config.max_models,
                        first = %victims[0],
                        "store.max_models reached: evicting the models without a successful call, then the least recently used (counted in ollameter_models_evicted_total)"
                    );
                }
                if let Some(hook) = &self.on_commit {
                    hook.models_evicted(&victims);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, models = victims.len(), "evicting models failed; will retry");
                self.limit.mark_stale();
            }
        }
    }

    fn retention(&mut self) {
        let now = chrono::Utc::now();
        let cutoff_ms = now.timestamp_millis() - self.config.max_age.as_millis() as i64;
        match self.store.apply_retention(
            now,
            self.config.max_age,
            self.config.max_records_per_model,
        ) {
            Ok(n) => {
                if n > 0 {
                    self.limit.mark_stale();
                    self.stats.retention_removed.fetch_add(n, Ordering::Relaxed);
                    tracing::info!(removed = n, "retention removed old records");
                    if let Some(hook) = &self.on_commit {
                        hook.retained(cutoff_ms, self.config.max_records_per_model);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn config(capacity: usize, flush_ms: u64) -> RecorderConfig {
        RecorderConfig {
            queue_capacity: capacity,
            batch_size: 100,
            flush_interval: Duration::from_millis(flush_ms),
            max_records_per_model: 10_000,
            max_age: Duration::from_secs(90 * 86_400),
            retention_interval: Duration::from_secs(3600),
            max_models: 1_000,
        }
    }

    fn record(i: usize) -> Record {
        Record::new(
            format!("r{i}"),
            Utc::now(),
            "m".into(),
            "chat".into(),
            "/api/chat".into(),
        )
    }

    #[tokio::test]
    async fn records_are_committed_and_shutdown_drains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        // A flush interval far longer than the test: only shutdown can have written them.
        let (rec, task) = start(&path, config(1000, 600_000), None).expect("start");
        for i in 0..250 {
            assert!(rec.submit(record(i)));
        }
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
        let store = Store::open(&path).expect("open");
        assert_eq!(store.count().expect("count"), 250);
        assert_eq!(rec.stats().written.load(Ordering::Relaxed), 250);
        assert_eq!(rec.stats().dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let store = Store::open(&path).expect("open");
        // Hold the write lock so the writer is stuck on its first batch.
        store
            .connection()
            .execute_batch("BEGIN EXCLUSIVE")
            .expect("lock");
        let (rec, task) = start(&path, config(4, 1), None).expect("start");
        let mut accepted = 0;
        for i in 0..100 {
            if rec.submit(record(i)) {
                accepted += 1;
            }
        }
        assert!(accepted < 100, "some must be dropped");
        assert_eq!(rec.stats().dropped.load(Ordering::Relaxed), 100 - accepted);
        store
            .connection()
            .execute_batch("ROLLBACK")
            .expect("unlock");
        drop(store);
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<(i64, u64)>>);

    impl StoreListener for Seen {
        fn committed(&self, _: &[Record]) {}
        fn retained(&self, cutoff_ms: i64, max_per_model: u64) {
            self.0
                .lock()
                .expect("lock")
                .push((cutoff_ms, max_per_model));
        }
    }

    #[tokio::test]
    async fn retention_runs_on_the_writer_and_is_announced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let seen = Arc::new(Seen::default());
        let mut cfg = config(100, 1);
        cfg.max_records_per_model = 3;
        cfg.retention_interval = Duration::from_millis(20);
        let (rec, task) = start(&path, cfg, Some(seen.clone() as CommitHook)).expect("start");
        rec.submit_and_wait((0..10).map(record).collect())
            .await
            .expect("stored");
        let reader = Store::open_reader(&path).expect("reader");
        for _ in 0..500 {
            if reader.count().expect("count") == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            reader.count().expect("count"),
            3,
            "the newest 3 of the model stay"
        );
        assert!(
            seen.0
                .lock()
                .expect("lock")
                .iter()
                .any(|(_, max)| *max == 3)
        );
        assert_eq!(rec.stats().retention_removed.load(Ordering::Relaxed), 7);
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
    }

    #[tokio::test]
    async fn submit_and_wait_answers_after_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let (rec, task) = start(&path, config(100, 600_000), None).expect("start");
        let n = rec
            .submit_and_wait(vec![record(1), record(2)])
            .await
            .expect("stored");
        assert_eq!(n, 2);
        let reader = Store::open_reader(&path).expect("reader");
        assert_eq!(
            reader.count().expect("count"),
            2,
            "visible as soon as acknowledged"
        );
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
    }
}
