//! Ollama's processes: which visible process is the server (`ollama serve`) and which are
//! its per-model runners, read through the [`ProcessSource`] trait so tests can hand in a
//! process table. The real source is [`SysinfoProcesses`]; classification is the pure
//! [`classify`].

use std::ffi::OsString;

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

/// One visible process, with only what telemetry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// The process id (in the PID namespace that ollameter sees).
    pub pid: u32,
    /// The kernel's short name (`comm`; Linux truncates it to 15 bytes, so
    /// `ollama_llama_server` reads `ollama_llama_se` here).
    pub name: String,
    /// The command line, one entry per argument (so paths with spaces stay whole).
    pub cmd: Vec<String>,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Where the process table comes from. Both calls run on a blocking thread, never on the
/// async runtime.
pub trait ProcessSource: Send {
    /// Every visible process (discovery; the sampler does this now and then).
    ///
    /// # Errors
    /// The reason in words when the table cannot be read at all.
    fn all(&mut self) -> Result<Vec<ProcInfo>, String>;

    /// Only the given processes (the cheap refresh between discoveries); processes that
    /// have gone are left out of the answer.
    ///
    /// # Errors
    /// The reason in words when the table cannot be read at all.
    fn some(&mut self, pids: &[u32]) -> Result<Vec<ProcInfo>, String>;
}

/// What a process is to Ollama.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The server (`ollama serve`, or a configured process without `--model`).
    Server,
    /// A runner serving one model, whose weights are `model_path` (its `--model`).
    Runner {
        /// The `--model` argument: the weights blob, as the server passed it.
        model_path: String,
    },
}

/// Which processes count as Ollama's beyond the ones recognised by their command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matchers {
    /// Configured process ids.
    pub pids: Vec<u32>,
    /// Configured process names, compared with the kernel name and the base name of the
    /// first argument.
    pub names: Vec<String>,
}

impl Matchers {
    /// Whether `proc` is one of the configured processes (by pid or by name).
    pub fn matches(&self, proc: &ProcInfo) -> bool {
        self.pids.contains(&proc.pid) || base_names(proc).any(|n| self.names.iter().any(|m| m == n))
    }

    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.names.is_empty()
    }
}

/// The runner executables that Ollama has used: `llama-server` since v0.30,
/// `ollama_llama_server` before v0.5.2 (its kernel name is cut to 15 bytes, hence the
/// prefix form). `ollama runner` (v0.5.2 to v0.24) is recognised by its first argument.
const RUNNER_NAMES: &[&str] = &["llama-server", "ollama_llama_server", "ollama_llama_se"];

/// The `--model` argument's value, in either `--model <path>` or `--model=<path>` form.
pub fn model_arg(cmd: &[String]) -> Option<&str> {
    let mut args = cmd.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--model" || arg == "-m" {
            return args.next().map(String::as_str).filter(|p| !p.is_empty());
        }
        if let Some(path) = arg.strip_prefix("--model=") {
            return Some(path).filter(|p| !p.is_empty());
        }
    }
    None
}

/// The base names a process goes by: the kernel name and the file name of `argv[0]`.
fn base_names(proc: &ProcInfo) -> impl Iterator<Item = &str> {
    let argv0 = proc.cmd.first().map(|a| a.rsplit('/').next().unwrap_or(a));
    std::iter::once(proc.name.as_str()).chain(argv0)
}

/// What `proc` is to Ollama, or `None` when it is none of its business.
///
/// A runner needs a `--model` argument: Ollama starts short-lived helpers of the same
/// executables without one (GPU discovery), and those hold no model.
pub fn classify(proc: &ProcInfo, matchers: &Matchers) -> Option<Role> {
    let configured = matchers.matches(proc);
    let is_ollama = base_names(proc).any(|n| n == "ollama");
    let first_arg = proc.cmd.get(1).map(String::as_str);
    let runner_form = base_names(proc).any(|n| RUNNER_NAMES.contains(&n))
        || (is_ollama && first_arg == Some("runner"));
    if let Some(path) = model_arg(&proc.cmd)
        && (runner_form || configured)
    {
        return Some(Role::Runner {
            model_path: path.to_owned(),
        });
    }
    if is_ollama && first_arg == Some("serve") {
        return Some(Role::Server);
    }
    // A configured name that is also a runner form (an `ollama runner` helper when the
    // user configured "ollama") is a helper, not a second server.
    if configured && !runner_form {
        return Some(Role::Server);
    }
    None
}

/// The real process table, through sysinfo. Refreshes only memory and (once per
/// process) the command line, and skips threads, so a tick stays cheap.
pub struct SysinfoProcesses {
    system: Result<System, String>,
}

impl SysinfoProcesses {
    /// A source over this machine's process table (nothing is read until the first call).
    pub fn new() -> SysinfoProcesses {
        let system = System::new().map_err(|e| format!("cannot read the process table: {e}"));
        SysinfoProcesses { system }
    }

    fn refresh_kind() -> ProcessRefreshKind {
        ProcessRefreshKind::nothing()
            .with_memory()
            .with_cmd(UpdateKind::OnlyIfNotSet)
            .without_tasks()
    }

    fn collect(system: &System, only: Option<&[Pid]>) -> Vec<ProcInfo> {
        let to_info = |pid: &Pid, p: &sysinfo::Process| ProcInfo {
            pid: pid.as_u32(),
            name: p.name().to_string_lossy().into_owned(),
            cmd: p
                .cmd()
                .iter()
                .map(|a: &OsString| a.to_string_lossy().into_owned())
                .collect(),
            rss_bytes: p.memory(),
        };
        match only {
            None => system
                .processes()
                .iter()
                .map(|(pid, p)| to_info(pid, p))
                .collect(),
            Some(pids) => pids
                .iter()
                .filter_map(|pid| system.process(*pid).map(|p| (pid, p)))
                // A process that died stays in the table until a full refresh; its memory
                // reads 0 and it must not count.
                .filter(|(_, p)| p.exists())
                .map(|(pid, p)| to_info(pid, p))
                .collect(),
        }
    }
}

impl Default for SysinfoProcesses {
    fn default() -> Self {
        SysinfoProcesses::new()
    }
}

impl ProcessSource for SysinfoProcesses {
    fn all(&mut self) -> Result<Vec<ProcInfo>, String> {
        let system = self.system.as_mut().map_err(|e| e.clone())?;
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, Self::refresh_kind());
        Ok(Self::collect(system, None))
    }

    fn some(&mut self, pids: &[u32]) -> Result<Vec<ProcInfo>, String> {
        let system = self.system.as_mut().map_err(|e| e.clone())?;
        let pids: Vec<Pid> = pids.iter().map(|p| Pid::from_u32(*p)).collect();
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            Self::refresh_kind(),
        );
        Ok(Self::collect(system, Some(&pids)))
    }
}

/// The test double of the process table (tests, and the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
mod fake {
    use std::sync::{Arc, Mutex, PoisonError};

    use super::*;

    #[derive(Debug)]
    struct FakeTable {
        table: Result<Vec<ProcInfo>, String>,
        full_scans: usize,
        partial_refreshes: usize,
    }

    /// A process table the test sets. Clones share it, so a test keeps one clone to change
    /// the table and to count scans.
    #[derive(Debug, Clone)]
    pub struct FakeProcesses {
        state: Arc<Mutex<FakeTable>>,
    }

    impl FakeProcesses {
        /// A table holding `table`.
        pub fn new(table: Vec<ProcInfo>) -> FakeProcesses {
            FakeProcesses {
                state: Arc::new(Mutex::new(FakeTable {
                    table: Ok(table),
                    full_scans: 0,
                    partial_refreshes: 0,
                })),
            }
        }

        fn with<T>(&self, f: impl FnOnce(&mut FakeTable) -> T) -> T {
            f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
        }

        /// Replaces the table (or makes it unreadable).
        pub fn set(&self, table: Result<Vec<ProcInfo>, String>) {
            self.with(|s| s.table = table);
        }

        /// How many times every process was read.
        pub fn full_scans(&self) -> usize {
            self.with(|s| s.full_scans)
        }

        /// How many times only chosen processes were read.
        pub fn partial_refreshes(&self) -> usize {
            self.with(|s| s.partial_refreshes)
        }
    }

    impl ProcessSource for FakeProcesses {
        fn all(&mut self) -> Result<Vec<ProcInfo>, String> {
            self.with(|s| {
                s.full_scans += 1;
                s.table.clone()
            })
        }

        fn some(&mut self, pids: &[u32]) -> Result<Vec<ProcInfo>, String> {
            self.with(|s| {
                s.partial_refreshes += 1;
                s.table
                    .clone()
                    .map(|t| t.into_iter().filter(|p| pids.contains(&p.pid)).collect())
            })
        }
    }
}
#[cfg(any(test, feature = "test-support"))]
pub use fake::FakeProcesses;

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, name: &str, cmd: &[&str]) -> ProcInfo {
        ProcInfo {
            pid,
            name: name.into(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            rss_bytes: 1,
        }
    }

    fn runner(path: &str) -> Option<Role> {
        Some(Role::Runner {
            model_path: path.into(),
        })
    }

    #[test]
    fn recognises_the_three_runner_forms() {
        let m = Matchers::default();
        let blob = "/root/.ollama/models/blobs/sha256-abc";
        let new = proc(
            10,
            "llama-server",
            &[
                "/usr/lib/ollama/llama-server",
                "--model",
                blob,
                "--port",
                "41234",
            ],
        );
        assert_eq!(classify(&new, &m), runner(blob));
        let mid = proc(
            11,
            "ollama",
            &["/usr/bin/ollama", "runner", "--model", blob, "--port", "1"],
        );
        assert_eq!(classify(&mid, &m), runner(blob));
        let engine = proc(
            12,
            "ollama",
            &["ollama", "runner", "--ollama-engine", "--model", blob],
        );
        assert_eq!(classify(&engine, &m), runner(blob));
        // The kernel cuts the old runner's name to 15 bytes; argv[0] still names it.
        let old = proc(
            13,
            "ollama_llama_se",
            &["/tmp/ollama1/runners/ollama_llama_server"],
        );
        let old = ProcInfo {
            cmd: [old.cmd, vec!["--model".into(), blob.into()]].concat(),
            ..old
        };
        assert_eq!(classify(&old, &m), runner(blob));
        let eq_form = proc(
            14,
            "llama-server",
            &["llama-server", &format!("--model={blob}")],
        );
        assert_eq!(classify(&eq_form, &m), runner(blob));
    }

    #[test]
    fn finds_the_server_and_ignores_helpers_and_strangers() {
        let m = Matchers::default();
        assert_eq!(
            classify(&proc(1, "ollama", &["/usr/bin/ollama", "serve"]), &m),
            Some(Role::Server)
        );
        // Start-up helpers: runner executables without --model.
        assert_eq!(
            classify(&proc(2, "ollama", &["ollama", "runner", "--port", "1"]), &m),
            None
        );
        assert_eq!(
            classify(&proc(3, "llama-server", &["llama-server", "--version"]), &m),
            None
        );
        // Something else that happens to take --model.
        let other = proc(4, "python3", &["python3", "train.py", "--model", "/x"]);
        assert_eq!(classify(&other, &m), None);
        // The ollama client is not the server.
        assert_eq!(
            classify(&proc(5, "ollama", &["ollama", "run", "llama3.2"]), &m),
            None
        );
    }

    #[test]
    fn keeps_paths_with_spaces_whole() {
        let path = "/Volumes/My Models/blobs/sha256-abc";
        let p = proc(
            7,
            "llama-server",
            &["llama-server", "--port", "9", "--model", path],
        );
        assert_eq!(classify(&p, &Matchers::default()), runner(path));
    }

    #[test]
    fn configured_pids_and_names_count() {
        let m = Matchers {
            pids: vec![40],
            names: vec!["my-ollama".into()],
        };
        let p = proc(
            40,
            "python3",
            &["python3", "-c", "x", "--model", "/b/sha256-1"],
        );
        assert_eq!(classify(&p, &m), runner("/b/sha256-1"));
        assert_eq!(
            classify(&proc(40, "python3", &["python3"]), &m),
            Some(Role::Server)
        );
        assert_eq!(
            classify(&proc(41, "my-ollama", &["/opt/my-ollama", "x"]), &m),
            Some(Role::Server)
        );
        // Configuring "ollama" does not make its helpers servers.
        let m = Matchers {
            pids: vec![],
            names: vec!["ollama".into()],
        };
        assert_eq!(
            classify(&proc(2, "ollama", &["ollama", "runner", "--port", "1"]), &m),
            None
        );
    }

    #[test]
    fn model_arg_needs_a_value() {
        let cmd = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(model_arg(&cmd(&["x", "--model"])), None);
        assert_eq!(model_arg(&cmd(&["x", "--model="])), None);
        assert_eq!(
            model_arg(&cmd(&["--model", "argv0-is-not-an-argument"])),
            None
        );
        assert_eq!(model_arg(&cmd(&["x", "-m", "/p"])), Some("/p"));
    }

    #[test]
    fn the_real_table_lists_this_process() {
        let mut source = SysinfoProcesses::new();
        let me = std::process::id();
        let all = source.all().expect("process table");
        let mine = all
            .iter()
            .find(|p| p.pid == me)
            .expect("this test process is listed");
        assert!(mine.rss_bytes > 0);
        assert!(!mine.cmd.is_empty());
        // A fresh table finds chosen processes without a full scan first.
        let fresh = SysinfoProcesses::new().some(&[me]).expect("process table");
        assert_eq!(fresh.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![me]);
        let some = source.some(&[me, u32::MAX - 1]).expect("process table");
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].pid, me);
    }
}
