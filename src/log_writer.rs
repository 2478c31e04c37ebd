//! Where the log goes: stderr, in batches. Each proxied call logs one line at `info`;
//! written on its own, that line is a `write` system call on the hot path (about a tenth
//! of a small call's CPU in the proxy benchmark). Lines at `info` and below are instead
//! copied into a buffer that a background thread writes out at most
//! [`FLUSH_INTERVAL`] later, many lines per `write`. Warnings and errors are written at
//! once, after whatever is pending, so the order of lines is kept and a problem is never
//! held back. Dropping the [`FlushGuard`] writes what is left.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in the buffer: short enough for `tail -f` and a journal,
/// long enough to gather a busy proxy's lines into one write.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Pending bytes above which a line is written at once (with what is pending) instead
/// of buffered: the buffer never grows without bound, and a flood of lines slows its
/// writers rather than the memory growing.
const MAX_PENDING_BYTES: usize = 256 * 1024;

/// Where the lines finally go (stderr, or a test's buffer).
type Output = Box<dyn Write + Send>;

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    pending: Vec<u8>,
    stop: bool,
    output: Output,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a buffer of whole lines: still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Writes what is pending and then `line`, ignoring failures (there is nowhere else
    /// to report them).
    fn write_out(&mut self, line: &[u8]) {
        if !self.pending.is_empty() {
            let _ = self.output.write_all(&self.pending);
            self.pending.clear();
        }
        if !line.is_empty() {
            let _ = self.output.write_all(line);
        }
        let _ = self.output.flush();
    }
}

/// The batching stderr writer, for `tracing_subscriber::fmt().with_writer(...)`.
#[derive(Clone)]
pub struct BatchedStderr {
    shared: Arc<Shared>,
}

/// Stops the background writer and writes what is pending, when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchedStderr {
    /// Starts the background writer to stderr. Keep the guard for the life of the
    /// program.
    pub fn start() -> (BatchedStderr, FlushGuard) {
        BatchedStderr::start_to(Box::new(std::io::stderr()))
    }

    /// Starts the background writer to `output`.
    fn start_to(output: Output) -> (BatchedStderr, FlushGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Vec::with_capacity(16 * 1024),
                stop: false,
                output,
            }),
            wake: Condvar::new(),
        });
        let flusher = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || flush_loop(&flusher))
            .ok();
        if thread.is_none() {
            // No thread: every line is written at once, as a plain stderr writer would.
            shared.lock().stop = true;
        }
        (
            BatchedStderr {
                shared: shared.clone(),
            },
            FlushGuard { shared, thread },
        )
    }
}

/// Waits for the first pending line, lets more gather for [`FLUSH_INTERVAL`], writes
/// them all (one `write`); until stopped.
fn flush_loop(shared: &Shared) {
    loop {
        {
            let mut state = shared.lock();
            while state.pending.is_empty() && !state.stop {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                state.write_out(&[]);
                return;
            }
        }
        std::thread::sleep(FLUSH_INTERVAL);
        shared.lock().write_out(&[]);
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.lock().write_out(&[]);
    }
}

/// One log line on its way: buffered, or written at once.
pub struct LineWriter<'a> {
    shared: &'a Shared,
    immediate: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        if self.immediate || state.stop || state.pending.len() + line.len() > MAX_PENDING_BYTES {
            state.write_out(line);
            return Ok(line.len());
        }
        let was_empty = state.pending.is_empty();
        state.pending.extend_from_slice(line);
        drop(state);
        if was_empty {
            // One wake-up per batch, not per line.
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
            immediate: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
            // Levels order from most to least severe: WARN and ERROR are at or below WARN.
            immediate: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared buffer standing in for stderr.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(data);
            Ok(data.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
        }
    }

    #[test]
    fn info_lines_wait_warnings_go_at_once_in_order_and_nothing_is_lost() {
        let out = Captured::default();
        let (writer, guard) = BatchedStderr::start_to(Box::new(out.clone()));
        let mut info = LineWriter {
            shared: &writer.shared,
            immediate: false,
        };
        info.write_all(b"call 1\n").expect("write");
        info.write_all(b"call 2\n").expect("write");
        let mut warn = LineWriter {
            shared: &writer.shared,
            immediate: true,
        };
        warn.write_all(b"warning\n").expect("write");
        assert_eq!(
            out.text(),
            "call 1\ncall 2\nwarning\n",
            "a warning is written at once, after the lines before it"
        );
        info.write_all(b"call 3\n").expect("write");
        drop(guard);
        assert_eq!(
            out.text(),
            "call 1\ncall 2\nwarning\ncall 3\n",
            "the guard writes what is pending"
        );
    }

    #[test]
    fn a_full_buffer_is_written_at_once() {
        let out = Captured::default();
        // No background writer: only the cap can write the lines out.
        let shared = Shared {
            state: Mutex::new(State {
                pending: Vec::new(),
                stop: false,
                output: Box::new(out.clone()),
            }),
            wake: Condvar::new(),
        };
        let mut info = LineWriter {
            shared: &shared,
            immediate: false,
        };
        let line = vec![b'x'; MAX_PENDING_BYTES / 2 + 1];
        info.write_all(&line).expect("write");
        assert!(out.text().is_empty(), "under the cap: held");
        info.write_all(&line).expect("write");
        assert_eq!(
            out.text().len(),
            2 * line.len(),
            "never more than the cap held"
        );
    }
}
