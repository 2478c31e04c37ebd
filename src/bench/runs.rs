//! Benchmark runs inside the sidecar (`POST /api/model-performance/benchmark`): one at a
//! time, each on its own task, its progress readable while it runs and its report kept
//! afterwards (the last [`KEPT_RUNS`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;

use super::engine::{self, Plan, Stop, Tally, Target};
use super::report::Report;

/// How many finished runs are kept for `GET .../benchmark/{id}`.
pub const KEPT_RUNS: usize = 20;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Making calls.
    Running,
    /// Asked to stop: the calls in flight are finishing.
    Stopping,
    /// Every planned call made.
    Finished,
    /// Stopped before the end; what was measured is kept.
    Stopped,
    /// Could not run (sidecar or Ollama unreachable, no model to measure).
    Failed,
}

/// A run's progress and results, as `GET .../benchmark/{id}` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunStatus {
    /// The run's id.
    pub id: String,
    /// Where it is.
    pub state: RunState,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// When it ended (null while running).
    pub finished_at: Option<DateTime<Utc>>,
    /// The model being measured now.
    pub current_model: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The figures so far (final once it ended, with the recommendations).
    pub report: Report,
}

/// One run.
pub struct Run {
    id: String,
    started_at: DateTime<Utc>,
    stop: watch::Sender<Stop>,
    live: Mutex<Live>,
}

struct Live {
    tally: Tally,
    state: RunState,
    error: Option<String>,
    report: Option<Report>,
    finished_at: Option<DateTime<Utc>>,
}

impl Run {
    /// The run's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Its progress and results now.
    pub fn status(&self) -> RunStatus {
        let live = self.live();
        let report = live
            .report
            .clone()
            .unwrap_or_else(|| Report::from_tally(&live.tally));
        RunStatus {
            id: self.id.clone(),
            state: live.state,
            started_at: self.started_at,
            finished_at: live.finished_at,
            current_model: live.tally.current_model.clone(),
            error: live.error.clone(),
            report: report_with_start(report, self.started_at),
        }
    }

    /// Asks it to stop: no new calls, the ones in flight finish. False when it had ended.
    pub fn stop(&self, level: Stop) -> bool {
        let mut live = self.live();
        if !matches!(live.state, RunState::Running | RunState::Stopping) {
            return false;
        }
        live.state = RunState::Stopping;
        self.stop.send_if_modified(|s| {
            let raise = *s < level;
            if raise {
                *s = level;
            }
            raise
        });
        true
    }

    fn is_active(&self) -> bool {
        matches!(self.live().state, RunState::Running | RunState::Stopping)
    }
}

/// Runs the plan, keeping the run's progress, then its report.
async fn drive(run: Arc<Run>, target: Target, plan: Plan, stop: watch::Receiver<Stop>) {
    let on = Tracker(run.clone());
    let result = engine::run(&target, &plan, stop, &on).await;
    let mut live = run.live();
    live.finished_at = Some(Utc::now());
    match result {
        Ok(outcome) => {
            live.state = if outcome.stopped {
                RunState::Stopped
            } else {
                RunState::Finished
            };
            live.report = Some(Report::from_outcome(&outcome));
            live.tally = outcome.tally;
        }
        Err(e) => {
            live.state = RunState::Failed;
            live.error = Some(e.to_string());
        }
    }
    tracing::info!(id = %run.id, state = ?live.state, "benchmark ended");
}

/// Feeds the engine's events into a run's tally.
struct Tracker(Arc<Run>);

impl engine::Observer for Tracker {
    fn event(&self, event: &engine::Event) {
        self.0.live().tally.apply(event);
    }
}

fn report_with_start(mut report: Report, started_at: DateTime<Utc>) -> Report {
    report.started_at.get_or_insert(started_at);
    report
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another run is active.
    #[error(
        "benchmark {0} is running: one at a time; follow it with GET /api/model-performance/benchmark/{0} or stop it with DELETE"
    )]
    Busy(String),
    /// The sidecar is not listening yet (or is shutting down).
    #[error("the sidecar is not serving its proxy yet; try again")]
    NotReady,
}

/// The sidecar's runs.
#[derive(Default)]
pub struct BenchRuns {
    target: OnceLock<Target>,
    runs: Mutex<VecDeque<Arc<Run>>>,
    shut: std::sync::atomic::AtomicBool,
}

impl BenchRuns {
    /// Where the runs send their calls: set once the listeners are bound.
    pub fn set_target(&self, target: Target) {
        let _ = self.target.set(target);
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Run>>> {
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a run on its own task.
    pub fn start(&self, plan: Plan) -> Result<Arc<Run>, StartError> {
        if self.shut.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StartError::NotReady);
        }
        let target = self.target.get().cloned().ok_or(StartError::NotReady)?;
        let mut runs = self.runs();
        if let Some(active) = runs.iter().find(|r| r.is_active()) {
            return Err(StartError::Busy(active.id.clone()));
        }
        let (stop, stop_rx) = watch::channel(Stop::Run);
        let run = Arc::new(Run {
            id: uuid::Uuid::now_v7().to_string(),
            started_at: Utc::now(),
            stop,
            live: Mutex::new(Live {
                tally: Tally::default(),
                state: RunState::Running,
                error: None,
                report: None,
                finished_at: None,
            }),
        });
        runs.push_back(run.clone());
        while runs.len() > KEPT_RUNS {
            runs.pop_front();
        }
        drop(runs);
        tokio::spawn(drive(run.clone(), target, plan, stop_rx));
        Ok(run)
    }

    /// A run by id.
    pub fn get(&self, id: &str) -> Option<Arc<Run>> {
        self.runs().iter().find(|r| r.id == id).cloned()
    }

    /// The most recent run.
    pub fn latest(&self) -> Option<Arc<Run>> {
        self.runs().back().cloned()
    }

    /// Abandons every active run (the sidecar is shutting down) and refuses new ones.
    pub fn shutdown(&self) {
        self.shut.store(true, std::sync::atomic::Ordering::SeqCst);
        for run in self.runs().iter() {
            run.stop(Stop::Abort);
        }
    }
}
