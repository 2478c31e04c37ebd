//! The recorder: a bounded queue between the hot path and the store, and the one writer
//! thread that drains it in batches (by size, or at most `flush_interval` after the first
//! record of a batch arrived). The proxy never waits: when the queue is full the record
//! is counted as dropped. Retention runs on the same thread between batches, so the store
//! has a single writer.
//!
//! On a shared store (PostgreSQL) the writer also follows what every instance commits and
//! feeds it to the history in commit order (its own records included), and it rides out
//! outages: a batch the database refused waits in a bounded spill while the writer
//! reconnects with a growing pause, and is written when the database is back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use tokio::sync::oneshot;

use crate::record::Record;
use crate::store::{Change, RecordStore, StoreError, StoreLocation};

/// How long the writer sleeps between two looks at the queue while it gathers a batch:
/// the most a flush, a shutdown or a waited-on write can be held up by it, short next to
/// the flush interval, and long enough that at thousands of records a second each look
/// finds dozens of them.
const GATHER_POLL: Duration = Duration::from_millis(5);

/// Records read from a shared store per look: bounds the writer's time away from its
/// queue while a fresh instance loads a large history.
const FOLLOW_LIMIT: usize = 20_000;

/// First pause before the writer tries an unreachable shared store again; it doubles up
/// to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Longest pause between two tries of an unreachable shared store.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Told on the writer thread what the store now holds: each batch right after it
/// committed, and each retention pass after it ran (so an in-memory view stays in step).
pub trait StoreListener: Send + Sync {
    /// These records were committed.
    fn committed(&self, records: &[Record]);
    /// Retention deleted records older than `cutoff_ms` and all but the newest
    /// `max_per_model` of each model.
    fn retained(&self, cutoff_ms: i64, max_per_model: u64);
    /// A change read from a shared store (any instance's, this one's included), in
    /// commit order.
    fn changed(&self, change: &Change) {
        match change {
            Change::Records(records) => self.committed(records),
            Change::Retention {
                cutoff_ms,
                max_per_model,
            } => self.retained(*cutoff_ms, *max_per_model),
            Change::ClearModel(_) | Change::DeleteBefore(_) | Change::Quality { .. } => {}
        }
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
    /// This ollameter's name, stamped on records that carry none.
    pub instance: String,
    /// Shared store only: records held while the database is unreachable, beyond the
    /// queue; more are dropped and counted.
    pub spill_capacity: usize,
    /// Shared store only: how often the writer looks for other instances' changes.
    pub follow_interval: Duration,
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
    /// Duration of the last commit, microseconds.
    pub last_commit_us: AtomicU64,
    /// Sum of commit durations, microseconds (with `commits`, the mean).
    pub commit_us_total: AtomicU64,
    /// Number of commits.
    pub commits: AtomicU64,
    /// Records waiting in the spill for an unreachable shared store.
    pub spilled: AtomicU64,
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
type StoreJob = Box<dyn FnOnce(&mut dyn RecordStore) + Send>;

enum Msg {
    Record(Box<Record>),
    /// Records a caller waits on (manual writes): answered after their commit.
    Sync(Vec<Record>, oneshot::Sender<Result<usize, SubmitError>>),
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
#[derive(Debug, Clone, thiserror::Error)]
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
    /// A shared store cannot be reached now: nothing was stored; send it again later.
    #[error("the store cannot be reached now; nothing was stored, try again shortly ({0})")]
    Unreachable(String),
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
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SubmitError::Stopped),
        }
    }

    /// Runs `job` on the writer thread after everything queued before it is committed, and
    /// returns its result.
    pub async fn run_job<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut dyn RecordStore) -> R + Send + 'static,
    ) -> Result<R, SubmitError> {
        let (tx, rx) = oneshot::channel();
        let boxed: StoreJob = Box::new(move |store: &mut dyn RecordStore| {
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

/// Opens the store and starts the writer thread. A SQLite store must open now; a shared
/// store is connected by the writer, now or when the database comes back.
pub fn start(
    location: &StoreLocation,
    config: RecorderConfig,
    on_commit: Option<CommitHook>,
) -> Result<(Recorder, RecorderTask), StoreError> {
    let store = location.open_writer(&config.instance)?;
    let (tx, rx) = bounded(config.queue_capacity);
    let stats = Arc::new(RecorderStats::default());
    let writer = Writer {
        shared: store.is_shared(),
        store,
        rx,
        config,
        stats: stats.clone(),
        on_commit,
        spill: VecDeque::new(),
        retry_at: None,
        retry_pause: FIRST_RETRY_PAUSE,
        following: true,
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
    store: Box<dyn RecordStore>,
    /// Whether the store is shared (then the history follows its change log).
    shared: bool,
    rx: Receiver<Msg>,
    config: RecorderConfig,
    stats: Arc<RecorderStats>,
    on_commit: Option<CommitHook>,
    /// Shared store: records the database refused, oldest first, written when it is back.
    spill: VecDeque<Record>,
    /// Shared store: while unreachable, the next time to try it.
    retry_at: Option<Instant>,
    retry_pause: Duration,
    /// Shared store: more changes are waiting to be read (a large history loading).
    following: bool,
}

#[derive(Default)]
struct Batch {
    records: Vec<Record>,
    /// Records a caller waits on: answered, never spilled.
    waited: Vec<Record>,
    waiters: Vec<(oneshot::Sender<Result<usize, SubmitError>>, usize)>,
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
                self.waited.extend(records);
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
        let mut next_retention = Instant::now();
        let mut next_follow = Instant::now();
        loop {
            if Instant::now() >= next_retention && !self.waiting_to_retry() {
                self.retention();
                next_retention = Instant::now() + self.config.retention_interval;
            }
            if self.shared && !self.waiting_to_retry() {
                if !self.spill.is_empty() {
                    self.drain_spill();
                }
                if self.following || Instant::now() >= next_follow {
                    self.follow();
                    next_follow = Instant::now() + self.config.follow_interval;
                }
            }
            let mut wake = next_retention;
            if self.shared {
                wake = wake.min(next_follow);
                if let Some(at) = self.retry_at {
                    wake = wake.min(at);
                }
                if self.retry_at.is_none() && (self.following || !self.spill.is_empty()) {
                    wake = Instant::now();
                }
            }
            let wait = wake.saturating_duration_since(Instant::now());
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
            for job in jobs {
                // A job that panics must not take the writer down with it.
                let store: &mut dyn RecordStore = self.store.as_mut();
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

    /// Whether a shared store is down and its next try is still ahead.
    fn waiting_to_retry(&self) -> bool {
        self.retry_at.is_some_and(|at| Instant::now() < at)
    }

    /// A shared store failed: remember why, and wait a growing pause before the next try.
    fn store_down(&mut self, message: &str) {
        if !self.stats.store_failing() {
            tracing::error!(error = %message, "shared store unreachable; records wait in the spill");
        }
        self.stats.set_error(Some(message.to_string()));
        self.retry_at = Some(Instant::now() + self.retry_pause);
        self.retry_pause = (self.retry_pause * 2).min(MAX_RETRY_PAUSE);
    }

    /// A shared store answered again.
    fn store_up(&mut self) {
        self.retry_at = None;
        self.retry_pause = FIRST_RETRY_PAUSE;
        if self.spill.is_empty() && self.stats.store_failing() {
            tracing::info!("shared store reachable again");
            self.stats.set_error(None);
        }
    }

    /// Keeps records the shared store refused, up to the spill's capacity (the rest are
    /// dropped and counted).
    fn spill_records(&mut self, records: Vec<Record>) {
        for r in records {
            if self.spill.len() < self.config.spill_capacity {
                self.spill.push_back(r);
            } else {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stats
            .spilled
            .store(self.spill.len() as u64, Ordering::Relaxed);
    }

    /// Writes the oldest spilled records (a few batches' worth) to a shared store.
    fn drain_spill(&mut self) {
        let n = self.spill.len().min(self.config.batch_size.max(1) * 16);
        let chunk: Vec<Record> = self.spill.drain(..n).collect();
        match self.commit(&chunk) {
            Ok(()) => {
                self.stats
                    .written
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                self.stats
                    .spilled
                    .store(self.spill.len() as u64, Ordering::Relaxed);
                self.store_up();
                self.following = true;
            }
            Err(e) => {
                for r in chunk.into_iter().rev() {
                    self.spill.push_front(r);
                }
                self.store_down(&e.to_string());
            }
        }
    }

    /// Reads what any instance committed since the last look and tells the history.
    fn follow(&mut self) {
        match self.store.poll_changes(FOLLOW_LIMIT) {
            Ok((changes, more)) => {
                if let Some(hook) = &self.on_commit {
                    for change in &changes {
                        hook.changed(change);
                    }
                }
                self.following = more;
                self.store_up();
            }
            Err(e) => {
                self.following = false;
                self.store_down(&e.to_string());
            }
        }
    }

    /// One timed commit.
    fn commit(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.store.insert_batch(records);
        let us = started.elapsed().as_micros() as u64;
        self.stats.last_commit_us.store(us, Ordering::Relaxed);
        self.stats.commit_us_total.fetch_add(us, Ordering::Relaxed);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn write(&mut self, batch: Batch) {
        let Batch {
            mut records,
            waited,
            waiters,
            flushes,
            ..
        } = batch;
        let fire_and_forget = records.len();
        records.extend(waited);
        for r in &mut records {
            if r.instance.is_empty() {
                r.instance.clone_from(&self.config.instance);
            }
        }
        if self.shared && (self.waiting_to_retry() || !self.spill.is_empty()) {
            // The store is down (or still catching up on the spill): the records join the
            // spill behind those already waiting, so they are written in order.
            let message = self
                .stats
                .last_error()
                .unwrap_or_else(|| "the shared store is catching up after an outage".into());
            // A caller waiting on its records is told they were not stored, so it can
            // send them again; only fire-and-forget records are kept.
            records.truncate(fire_and_forget);
            self.spill_records(records);
            for (tx, _) in waiters {
                let _ = tx.send(Err(SubmitError::Unreachable(message.clone())));
            }
            for tx in flushes {
                let _ = tx.send(());
            }
            return;
        }
        let result = if records.is_empty() {
            Ok(())
        } else {
            // One transaction for the whole write, even when a waited-on import brings more
            // than `batch_size`: all or none, so what is counted, announced to the history
            // and answered to the waiters is exactly what the store holds.
            self.commit(&records)
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
                if self.shared {
                    // The history learns of these from the store, in commit order with
                    // every other instance's records.
                    self.store_up();
                    self.follow();
                } else if let Some(hook) = &self.on_commit
                    && !records.is_empty()
                {
                    hook.committed(&records);
                }
                for (tx, n) in waiters {
                    let _ = tx.send(Ok(n));
                }
            }
            Err(e) if self.shared => {
                // Kept in the bounded spill and written when the database is back; a
                // caller waiting on its records is told, and may send them again (the
                // import skips ids already stored).
                let message = e.to_string();
                self.store_down(&message);
                records.truncate(fire_and_forget);
                self.spill_records(records);
                for (tx, _) in waiters {
                    let _ = tx.send(Err(SubmitError::Unreachable(message.clone())));
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
                self.stats
                    .dropped
                    .fetch_add(fire_and_forget as u64, Ordering::Relaxed);
                for (tx, _) in waiters {
                    let _ = tx.send(Err(SubmitError::Store(message.clone())));
                }
            }
        }
        for tx in flushes {
            let _ = tx.send(());
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
                    self.stats.retention_removed.fetch_add(n, Ordering::Relaxed);
                    tracing::info!(removed = n, "retention removed old records");
                    if self.shared {
                        // Announced through the change log, in order, to every instance.
                        self.follow();
                    } else if let Some(hook) = &self.on_commit {
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
    use crate::store::Store;
    use chrono::Utc;

    fn config(capacity: usize, flush_ms: u64) -> RecorderConfig {
        RecorderConfig {
            queue_capacity: capacity,
            batch_size: 100,
            flush_interval: Duration::from_millis(flush_ms),
            max_records_per_model: 10_000,
            max_age: Duration::from_secs(90 * 86_400),
            retention_interval: Duration::from_secs(3600),
            instance: "test".into(),
            spill_capacity: 1000,
            follow_interval: Duration::from_millis(50),
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
        let (rec, task) = start(
            &StoreLocation::Sqlite(path.clone()),
            config(1000, 600_000),
            None,
        )
        .expect("start");
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
        let (rec, task) =
            start(&StoreLocation::Sqlite(path.clone()), config(4, 1), None).expect("start");
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
        let (rec, task) = start(
            &StoreLocation::Sqlite(path.clone()),
            cfg,
            Some(seen.clone() as CommitHook),
        )
        .expect("start");
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
        let (rec, task) = start(
            &StoreLocation::Sqlite(path.clone()),
            config(100, 600_000),
            None,
        )
        .expect("start");
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
