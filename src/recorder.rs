//! The recorder: a bounded queue between the hot path and the store, and the one writer
//! thread that drains it in batches (by size, or at most `flush_interval` after the first
//! record of a batch arrived). The proxy never waits: when the queue is full the record
//! is counted as dropped. Retention, deletes and quality updates run on the same thread
//! between batches, so the store has a single writer, and the [`StoreListener`] (the
//! in-memory history) is told of every change on that thread, in commit order.
//!
//! On a shared store (PostgreSQL) the history is not told directly: the writer follows
//! what every instance commits (its own writes, deletes and quality scores included) and
//! feeds it to the history in commit order, still on this thread. It also rides out
//! outages: a batch the database refused waits in a bounded spill while the writer
//! reconnects with a growing pause, and is written when the database is back.
//!
//! The bound on distinct model names (`model_limit`) is kept on the same thread: the
//! writer evicts the least useful models when a commit takes the count over it.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use tokio::sync::oneshot;

use crate::record::Record;
use crate::store::{Change, RecordStore, StoreError, StoreLocation};
use crate::text::panic_message;

mod model_limit;

use model_limit::ModelLimit;

/// How long the writer sleeps between two looks at the queue while it gathers a batch:
/// the most a flush, a shutdown or a waited-on write can be held up by it, short next to
/// the flush interval, and long enough that at thousands of records a second each look
/// finds dozens of them.
const GATHER_POLL: Duration = Duration::from_millis(5);

/// How many times `batch_size` one transaction may take when that much is already
/// queued. A commit has a fixed cost (an fsync; on PostgreSQL, round trips and the
/// server's fsync) that a backlog then shares among more records, so a writer that fell
/// behind catches up instead of falling further behind; with no backlog nothing changes.
pub const BACKLOG_BATCH_FACTOR: usize = 16;

/// Records read from a shared store per look: bounds the writer's time away from its
/// queue while a fresh instance loads a large history.
const FOLLOW_LIMIT: usize = 20_000;

/// First pause before the writer tries an unreachable shared store again; it doubles up
/// to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Longest pause between two tries of an unreachable shared store.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// Told on the writer thread what the store now holds, right after each change and in
/// the order of the changes (so an in-memory view stays in step with the store: a batch
/// committed after a delete is never deleted from the view).
pub trait StoreListener: Send + Sync {
    /// These records were committed.
    fn committed(&self, records: &[Record]);
    /// Records older than `cutoff_ms` and all but the newest `max_per_model` of each model
    /// were deleted (retention, or `u64::MAX` for a delete by age).
    fn retained(&self, cutoff_ms: i64, max_per_model: u64);
    /// Every record of `model` was deleted.
    fn model_deleted(&self, model: &str);
    /// `record` (as it now is in the store) was given this quality score.
    fn quality_set(&self, record: &Record, quality: f64);
    /// A change read from a shared store's log (any instance's, this one's included), in
    /// commit order.
    fn changed(&self, change: &Change) {
        match change {
            Change::Records(records) => self.committed(records),
            Change::Retention {
                cutoff_ms,
                max_per_model,
            } => self.retained(*cutoff_ms, *max_per_model),
            Change::ClearModel(model) => self.model_deleted(model),
            Change::EvictModel(model) => self.models_evicted(std::slice::from_ref(model)),
            Change::DeleteBefore(cutoff_ms) => self.retained(*cutoff_ms, u64::MAX),
            Change::Quality {
                record,
                quality_score,
            } => self.quality_set(record, *quality_score),
        }
    }
    /// Every record of these models was deleted to keep the number of distinct model
    /// names within `store.max_models`.
    fn models_evicted(&self, models: &[String]);
}

/// A shared listener.
pub type CommitHook = Arc<dyn StoreListener>;

/// Several listeners, told in order (the history first, then the alerts).
impl StoreListener for Vec<CommitHook> {
    fn committed(&self, records: &[Record]) {
        self.iter().for_each(|l| l.committed(records));
    }

    fn retained(&self, cutoff_ms: i64, max_per_model: u64) {
        self.iter()
            .for_each(|l| l.retained(cutoff_ms, max_per_model));
    }

    fn model_deleted(&self, model: &str) {
        self.iter().for_each(|l| l.model_deleted(model));
    }

    fn quality_set(&self, record: &Record, quality: f64) {
        self.iter().for_each(|l| l.quality_set(record, quality));
    }

    fn models_evicted(&self, models: &[String]) {
        self.iter().for_each(|l| l.models_evicted(models));
    }
}

/// How the writer batches and keeps the store in bounds.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Records held in the queue at most.
    pub queue_capacity: usize,
    /// Records that start a commit without waiting for the flush interval; under a
    /// backlog one transaction takes up to [`BACKLOG_BATCH_FACTOR`] times as many.
    pub batch_size: usize,
    /// Longest a record waits before its batch is committed.
    pub flush_interval: Duration,
    /// Retention: newest records kept per model.
    pub max_records_per_model: u64,
    /// Retention: oldest record kept.
    pub max_age: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// This ollameter's name (`store.instance`), stamped on records that carry none.
    pub instance: String,
    /// Shared store only: records held while the database is unreachable, beyond the
    /// queue; more are dropped and counted (`store.spill_capacity`).
    pub spill_capacity: usize,
    /// Shared store only: how often the writer looks for other instances' changes
    /// (`store.follow_interval_ms`).
    pub follow_interval: Duration,
    /// Distinct model names kept; beyond, models are evicted (see `model_limit`).
    pub max_models: usize,
}

/// The recorder's counters at one moment, for `/metrics`, `/health` and the insights.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RecorderSnapshot {
    /// Records committed to the store.
    pub written: u64,
    /// Records lost: queue full, or the store refused the batch.
    pub dropped: u64,
    /// Records waiting in the queue now.
    pub queue_depth: u64,
    /// Store commits (batches) so far.
    pub commits: u64,
    /// Time spent in store commits so far, seconds.
    pub commit_seconds_total: f64,
    /// Duration of the most recent commit, seconds.
    pub last_commit_seconds: f64,
    /// Models evicted to stay within `store.max_models`.
    pub models_evicted: u64,
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
    /// Records waiting in the spill for an unreachable shared store.
    pub spilled: AtomicU64,
    store_failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    writer_error: Mutex<Option<String>>,
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

    /// Why the writer thread stopped before it was told to (it panicked): nothing more
    /// is stored until a restart.
    pub fn writer_error(&self) -> Option<String> {
        self.writer_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    fn set_writer_error(&self, error: String) {
        if let Ok(mut slot) = self.writer_error.lock() {
            *slot = Some(error);
        }
    }

    fn set_error(&self, error: Option<String>) {
        self.store_failing.store(error.is_some(), Ordering::Relaxed);
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }
}

/// Work the writer thread does on the store; it tells the listener what it changed (when
/// given one) and returns how to answer its caller, which the writer calls once the
/// history has the change (on a shared store, after reading it back from the log).
type StoreJob =
    Box<dyn FnOnce(&mut dyn RecordStore, Option<&dyn StoreListener>) -> JobAnswer + Send>;

/// Sends a job's result to its caller.
type JobAnswer = Box<dyn FnOnce() + Send>;

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
    /// A shared store cannot be reached now: nothing was changed; send it again later.
    #[error("the store cannot be reached now; nothing was stored, try again shortly ({0})")]
    Unreachable(String),
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> SubmitError {
        match e {
            // A shared store that is down or restarting: the caller may try again.
            StoreError::Postgres(m) => SubmitError::Unreachable(m),
            other => SubmitError::Store(other.to_string()),
        }
    }
}

/// Why the recorder could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer thread could not be started (the OS refused a thread).
    #[error("cannot start the recorder's writer thread: {0}")]
    Spawn(std::io::Error),
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

    /// Deletes every record of `model` (after everything queued before is committed);
    /// returns how many.
    pub async fn delete_model(&self, model: String) -> Result<u64, SubmitError> {
        self.run_job(move |store, listener| {
            let deleted = store.delete_model(&model)?;
            if let Some(l) = listener {
                l.model_deleted(&model);
            }
            Ok(deleted)
        })
        .await
    }

    /// Deletes every record older than `cutoff`; returns how many.
    pub async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, SubmitError> {
        self.run_job(move |store, listener| {
            let deleted = store.delete_before(cutoff)?;
            if let Some(l) = listener {
                l.retained(cutoff.timestamp_millis(), u64::MAX);
            }
            Ok(deleted)
        })
        .await
    }

    /// Scores the stored record with this id; the record as it now is, or `None` when no
    /// record has the id.
    pub async fn set_quality(
        &self,
        id: String,
        quality: f64,
    ) -> Result<Option<Record>, SubmitError> {
        self.run_job(move |store, listener| {
            let updated = store.set_quality(&id, quality)?;
            if let (Some(l), Some(record)) = (listener, &updated) {
                l.quality_set(record, quality);
            }
            Ok(updated)
        })
        .await
    }

    /// Runs `job` on the writer thread after everything queued before it, for tables no
    /// listener mirrors (the alerts): the store keeps its single writer.
    pub async fn write_unmirrored<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut dyn RecordStore) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, SubmitError> {
        self.run_job(move |store, _| job(store)).await
    }

    /// Runs `job` on the writer's own connection after everything queued before it, and
    /// tells the listener nothing: only for tests that make the store fail on purpose
    /// (the `test-support` feature).
    #[cfg(feature = "test-support")]
    pub async fn run_raw_job<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut dyn RecordStore) -> R + Send + 'static,
    ) -> Result<R, SubmitError> {
        self.run_job(move |store, _| Ok(job(store))).await
    }

    /// Runs `job` on the writer thread after everything queued before it is committed,
    /// and returns its result. Private: every change a job makes must be told to the
    /// listener, which the public operations above do.
    async fn run_job<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut dyn RecordStore, Option<&dyn StoreListener>) -> Result<R, StoreError>
        + Send
        + 'static,
    ) -> Result<R, SubmitError> {
        let (tx, rx) = oneshot::channel();
        let boxed: StoreJob = Box::new(move |store, listener| {
            let result = job(store, listener);
            Box::new(move || {
                let _ = tx.send(result);
            })
        });
        match self.tx.try_send(Msg::Job(boxed)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(SubmitError::QueueFull),
            Err(TrySendError::Disconnected(_)) => return Err(SubmitError::Stopped),
        }
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(SubmitError::Stopped),
        }
    }

    /// Waits until everything queued before this call is committed (or dropped). When the
    /// queue is full it waits for room without blocking the async runtime's thread.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        let mut msg = Msg::Flush(tx);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    msg = back;
                    tokio::time::sleep(GATHER_POLL).await;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        let _ = rx.await;
    }

    /// The counters and the queue's depth now.
    pub fn snapshot(&self) -> RecorderSnapshot {
        let s = &self.stats;
        RecorderSnapshot {
            written: s.written.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            queue_depth: self.tx.len() as u64,
            commits: s.commits.load(Ordering::Relaxed),
            commit_seconds_total: s.commit_us_total.load(Ordering::Relaxed) as f64 / 1e6,
            last_commit_seconds: s.last_commit_us.load(Ordering::Relaxed) as f64 / 1e6,
            models_evicted: s.models_evicted.load(Ordering::Relaxed),
        }
    }

    /// The counters and the store's and writer's state.
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
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            // The writer catches its own panics (and logs them); this is the thread
            // failing outside that.
            tracing::error!("the recorder's writer thread panicked");
        }
    }
}

/// Opens the store and starts the writer thread. A SQLite store must open now; a shared
/// store is connected by the writer, now or when the database comes back.
pub fn start(
    location: &StoreLocation,
    config: RecorderConfig,
    on_commit: Option<CommitHook>,
) -> Result<(Recorder, RecorderTask), StartError> {
    let store = location.open_writer(&config.instance)?;
    let (tx, rx) = bounded(config.queue_capacity);
    let stats = Arc::new(RecorderStats::default());
    let writer = Writer {
        shared: store.is_shared(),
        store,
        rx,
        limit: ModelLimit::new(config.max_models),
        config,
        stats: stats.clone(),
        on_commit,
        spill: VecDeque::new(),
        retry_at: None,
        retry_pause: FIRST_RETRY_PAUSE,
        following: true,
    };
    let watched = stats.clone();
    let thread = std::thread::Builder::new()
        .name("ollameter-writer".into())
        .spawn(move || {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| writer.run())) {
                let message = panic_message(payload.as_ref());
                tracing::error!(error = %message, "the recorder's writer panicked: nothing more is stored until a restart");
                watched.set_writer_error(format!("the writer panicked: {message}"));
            }
        })
        .map_err(StartError::Spawn)?;
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
    limit: ModelLimit,
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
        if let Err(e) = self.limit.load(self.store.as_mut()) {
            // Read again at the first commit over the bound.
            tracing::warn!(error = %e, "reading the stored models failed; will retry");
        }
        let mut next_retention = Instant::now();
        let mut next_follow = Instant::now();
        loop {
            if Instant::now() >= next_retention && !self.waiting_to_retry() {
                self.retention();
                next_retention = Instant::now() + self.config.retention_interval;
            }
            if !self.waiting_to_retry() {
                if !self.spill.is_empty() {
                    self.drain_spill();
                }
                if self.shared && (self.following || Instant::now() >= next_follow) {
                    self.follow();
                    next_follow = Instant::now() + self.config.follow_interval;
                }
            }
            let mut wake = next_retention;
            if self.shared {
                wake = wake.min(next_follow);
            }
            if let Some(at) = self.retry_at {
                wake = wake.min(at);
            }
            if self.retry_at.is_none()
                && ((self.shared && self.following) || !self.spill.is_empty())
            {
                wake = Instant::now();
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
            if !jobs.is_empty() {
                // A job may delete models; the limit reads the store again when it matters.
                self.limit.mark_stale();
            }
            let mut answers = Vec::with_capacity(jobs.len());
            for job in jobs {
                // A job that panics must not take the writer down with it. On a shared
                // store the listener hears of the job's change from the log (below), in
                // order with every other instance's, so it is not told twice.
                let store: &mut dyn RecordStore = self.store.as_mut();
                let listener = if self.shared {
                    None
                } else {
                    self.on_commit.as_deref()
                };
                match catch_unwind(AssertUnwindSafe(|| job(store, listener))) {
                    Ok(answer) => answers.push(answer),
                    Err(_) => tracing::error!("a store job panicked"),
                }
            }
            if self.shared && !answers.is_empty() {
                // The history reads the jobs' changes back from the log before their
                // callers hear back, so a `clear` answered is a `clear` the statistics show.
                self.follow();
            }
            for answer in answers {
                answer();
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
        // What is already queued is taken up to the backlog bound; the commit starts
        // without waiting once a batch's worth is in.
        let most = self.config.batch_size.saturating_mul(BACKLOG_BATCH_FACTOR);
        loop {
            while !urgent && batch.records.len() < most {
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

    /// Whether the store is failing and its next try is still ahead.
    fn waiting_to_retry(&self) -> bool {
        self.retry_at.is_some_and(|at| Instant::now() < at)
    }

    /// The store failed a write (a shared store unreachable, a SQLite file on a full
    /// disk): remember why, and wait a growing pause before the next try.
    fn store_down(&mut self, message: &str) {
        if !self.stats.store_failing() {
            tracing::error!(error = %message, "store write failed; records wait in the spill and are written when it takes them");
        }
        self.stats.set_error(Some(message.to_string()));
        self.retry_at = Some(Instant::now() + self.retry_pause);
        self.retry_pause = (self.retry_pause * 2).min(MAX_RETRY_PAUSE);
    }

    /// The store took a write again.
    fn store_up(&mut self) {
        self.retry_at = None;
        self.retry_pause = FIRST_RETRY_PAUSE;
        if self.spill.is_empty() && self.stats.store_failing() {
            tracing::info!("store writable again; the spill is written");
            self.stats.set_error(None);
        }
    }

    /// Keeps records the store refused, up to the spill's capacity (the rest are dropped
    /// and counted).
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

    /// Writes the oldest spilled records (a few batches' worth) to the store.
    fn drain_spill(&mut self) {
        let n = self
            .spill
            .len()
            .min(self.config.batch_size.max(1) * BACKLOG_BATCH_FACTOR);
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
                if self.shared {
                    // The history reads them back from the change log.
                    self.following = true;
                } else if let Some(hook) = &self.on_commit {
                    hook.committed(&chunk);
                }
                self.limit.committed(&chunk);
                self.evict();
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
                // The bound on model names counts every instance's models.
                for change in &changes {
                    match change {
                        Change::Records(records) => self.limit.committed(records),
                        Change::Quality { .. } => {}
                        _ => self.limit.mark_stale(),
                    }
                }
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
        if self.waiting_to_retry() || !self.spill.is_empty() {
            // The store is failing (or still catching up on the spill): the records join
            // the spill behind those already waiting, so they are written in order.
            let message = self
                .stats
                .last_error()
                .unwrap_or_else(|| "the store is catching up after an outage".into());
            // A caller waiting on its records is told they were not stored, so it can
            // send them again; only fire-and-forget records are kept.
            records.truncate(fire_and_forget);
            self.spill_records(records);
            for (tx, _) in waiters {
                let _ = tx.send(Err(self.refused(message.clone())));
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
                self.store_up();
                if self.shared {
                    // The history learns of these from the store, in commit order with
                    // every other instance's records.
                    self.follow();
                } else if let Some(hook) = &self.on_commit
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
                // Kept in the bounded spill and written when the store takes writes again
                // (a shared store back, a full disk with room again); a caller waiting on
                // its records is told, and may send them again (the import skips ids
                // already stored).
                let message = e.to_string();
                self.store_down(&message);
                self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                records.truncate(fire_and_forget);
                self.spill_records(records);
                for (tx, _) in waiters {
                    let _ = tx.send(Err(self.refused(message.clone())));
                }
            }
        }
        for tx in flushes {
            let _ = tx.send(());
        }
    }

    /// What a caller waiting on records hears when the store refused them.
    fn refused(&self, message: String) -> SubmitError {
        if self.shared {
            SubmitError::Unreachable(message)
        } else {
            SubmitError::Store(message)
        }
    }

    /// Deletes the models over `max_models` from the store and tells the listener.
    fn evict(&mut self) {
        let victims = match self.limit.over(self.store.as_mut()) {
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
                if self.shared {
                    // Recorded in the change log, one row per model, so every instance
                    // (this one included, in commit order) hears of it, like a `clear`.
                    self.follow();
                } else if let Some(hook) = &self.on_commit {
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
    async fn a_backlog_is_committed_in_larger_transactions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let (rec, task) = start(
            &StoreLocation::Sqlite(path.clone()),
            config(10_000, 10),
            None,
        )
        .expect("start");
        // Hold the writer in a job while 3,200 records queue up behind it.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let job = {
            let rec = rec.clone();
            tokio::spawn(async move { rec.run_raw_job(move |_| held.recv().is_ok()).await })
        };
        while rec.snapshot().queue_depth > 0 {
            tokio::task::yield_now().await;
        }
        let before = rec.snapshot().commits;
        for i in 0..3_200 {
            assert!(rec.submit(record(i)));
        }
        release.send(()).expect("release");
        assert!(job.await.expect("join").expect("job"));
        rec.flush().await;
        let commits = rec.snapshot().commits - before;
        // batch_size is 100: one commit per batch would be 32; the backlog goes in
        // transactions of up to 1,600.
        assert!(
            (2..=3).contains(&commits),
            "3,200 queued records took {commits} commits"
        );
        assert_eq!(rec.stats().written.load(Ordering::Relaxed), 3_200);
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
        assert_eq!(
            Store::open(&path).expect("open").count().expect("count"),
            3_200
        );
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
        fn model_deleted(&self, _: &str) {}
        fn quality_set(&self, _: &Record, _: f64) {}
        fn models_evicted(&self, _: &[String]) {}
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

    struct Panics;

    impl StoreListener for Panics {
        fn committed(&self, _: &[Record]) {
            panic!("listener bug");
        }
        fn retained(&self, _: i64, _: u64) {}
        fn model_deleted(&self, _: &str) {}
        fn quality_set(&self, _: &Record, _: f64) {}
        fn models_evicted(&self, _: &[String]) {}
    }

    #[tokio::test]
    async fn a_writer_that_panics_says_so_and_callers_hear_it_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let (rec, task) = start(
            &StoreLocation::Sqlite(path.clone()),
            config(100, 1),
            Some(Arc::new(Panics) as CommitHook),
        )
        .expect("start");
        assert_eq!(rec.stats().writer_error(), None);
        let first = rec.submit_and_wait(vec![record(1)]).await;
        assert!(matches!(first, Err(SubmitError::Stopped)), "{first:?}");
        // The waiter hears of it as the panic unwinds; the error is noted just after.
        let deadline = Instant::now() + Duration::from_secs(10);
        let error = loop {
            if let Some(e) = rec.stats().writer_error() {
                break e;
            }
            assert!(Instant::now() < deadline, "the panic is kept");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        assert!(error.contains("listener bug"), "{error}");
        assert!(
            matches!(
                rec.submit_and_wait(vec![record(2)]).await,
                Err(SubmitError::Stopped)
            ),
            "nothing is queued into a dead writer"
        );
        rec.flush().await;
        tokio::task::spawn_blocking(move || task.shutdown())
            .await
            .expect("join");
    }
}
