//! `ollameter bench` on a terminal: a progress bar (plain lines when standard error is not
//! a terminal), Ctrl-C to stop (the calls in flight finish; a second Ctrl-C abandons them),
//! and the report at the end, partial when stopped.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use super::engine::{self, BenchError, Event, Plan, Stop, Target};
use super::report::{Report, render};

/// Runs the benchmark and returns what to print: the tables, or the report as JSON.
pub async fn run(target: &Target, plan: &Plan, json: bool) -> Result<String, BenchError> {
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let progress = Progress::new(std::io::stderr().is_terminal());
    let signals = {
        let bar = progress.bar.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            say(
                bar.as_ref(),
                "stopping: the calls in flight finish, then the report (Ctrl-C again to abandon them)",
            );
            let _ = stop.send(Stop::Finish);
            if tokio::signal::ctrl_c().await.is_ok() {
                say(bar.as_ref(), "abandoning the calls in flight");
                let _ = stop.send(Stop::Abort);
            }
        })
    };
    let outcome = engine::run(target, plan, stop_rx, &progress).await;
    signals.abort();
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
    let report = Report::from_outcome(&outcome?);
    Ok(if json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        )
    } else {
        render(&report)
    })
}

fn say(bar: Option<&ProgressBar>, line: &str) {
    match bar {
        Some(bar) => bar.println(line),
        None => eprintln!("{line}"),
    }
}

/// The progress display: a bar on a terminal, one line per call elsewhere.
struct Progress {
    bar: Option<ProgressBar>,
    done: AtomicU64,
    total: AtomicU64,
}

impl engine::Observer for Progress {
    fn event(&self, event: &Event) {
        self.show(event);
    }
}

impl Progress {
    fn new(terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} calls  {msg}  [{elapsed_precise}, {eta} left]",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    fn show(&self, event: &Event) {
        let bar = self.bar.as_ref();
        match event {
            Event::Planned {
                models,
                total_calls,
            } => {
                self.total.store(*total_calls, Ordering::Relaxed);
                if let Some(bar) = bar {
                    bar.set_length(*total_calls);
                } else {
                    eprintln!("measuring {} model(s), {total_calls} calls", models.len());
                }
            }
            Event::Skipped(s) => say(bar, &format!("skipped {}: {}", s.model, s.reason)),
            Event::ModelStarted(model) => match bar {
                Some(bar) => bar.set_message(model.clone()),
                None => eprintln!("{model}"),
            },
            Event::Call(c) => {
                let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
                match bar {
                    Some(bar) => {
                        bar.inc(1);
                        if let Some(e) = &c.error {
                            bar.println(format!("{} {}: {e}", c.model, c.prompt));
                        }
                    }
                    None => {
                        let what = if c.warmup {
                            "warm-up".to_string()
                        } else {
                            format!("{} run {}", c.prompt, c.run)
                        };
                        let outcome = match &c.error {
                            None => format!("ok {:.0} ms", c.wall_ms),
                            Some(e) => format!("failed: {e}"),
                        };
                        eprintln!(
                            "[{done}/{}] {} {what}: {outcome}",
                            self.total.load(Ordering::Relaxed),
                            c.model
                        );
                    }
                }
            }
            Event::Stopping => {}
        }
    }
}
