//! The log of `ollameter serve` is plain text wherever it goes except a terminal: no ANSI
//! escape codes in a file or a pipe, colours under a pseudo-terminal, and `log.color`,
//! `NO_COLOR` and `--log-format json` decide as the README says.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ESC: u8 = 0x1b;
const STARTED: &str = "ollameter listening";

fn ollameter(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ollameter"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OLLAMETER_") || k == "NO_COLOR" || k == "RUST_LOG" || k == "TERM" {
            c.env_remove(k);
        }
    }
    // Port 0 everywhere and an upstream nobody listens on: the start-up line is all we need.
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9",
        "--db",
    ])
    .arg(dir.join("o.db"))
    .env("OLLAMETER_TELEMETRY_ENABLED", "false")
    .env("TERM", "xterm-256color");
    c
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the sidecar with its log (stdout and stderr) written to a file until it has
/// logged its start, and returns the log.
fn log_to_file(tweak: impl FnOnce(&mut Command)) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ollameter.log");
    let file = std::fs::File::create(&path).expect("log file");
    let mut cmd = ollameter(dir.path());
    tweak(&mut cmd);
    cmd.stdout(file.try_clone().expect("clone")).stderr(file);
    let _child = Killed(cmd.spawn().expect("starts"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(STARTED) {
            return text;
        }
        assert!(Instant::now() < deadline, "no start line in {text:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the sidecar with its log going to a pipe until the start line, returns the bytes.
fn log_to_pipe(tweak: impl FnOnce(&mut Command)) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = ollameter(dir.path());
    tweak(&mut cmd);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = Killed(cmd.spawn().expect("starts"));
    let mut pipe = child.0.stderr.take().expect("stderr");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(STARTED) {
        let n = pipe.read(&mut buf).expect("read the pipe");
        assert!(n > 0, "log ended early: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Runs the sidecar under a pseudo-terminal (Python's `pty` module) until the start line,
/// returns what the terminal received.
fn log_to_terminal(envs: &[(&str, &str)], extra_args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let cmd = ollameter(dir.path());
    let mut argv: Vec<String> = vec![cmd.get_program().to_string_lossy().into_owned()];
    argv.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    argv.extend(extra_args.iter().map(|a| a.to_string()));
    let mut py = Command::new("python3");
    py.arg("-c").arg(PTY_RUNNER).arg(STARTED).args(&argv);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => py.env(k, v),
            None => py.env_remove(k),
        };
    }
    py.envs(envs.iter().copied());
    let out = py.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "pty runner: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Forks the command onto a new pseudo-terminal, copies what it writes until the marker
/// (or 30 s), stops it and prints the bytes.
const PTY_RUNNER: &str = r#"
import os, pty, select, signal, sys, time
marker = sys.argv[1].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
buf = b""
deadline = time.monotonic() + 30
while marker not in buf and time.monotonic() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.5)
    if ready:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
sys.stdout.buffer.write(buf)
if marker not in buf:
    sys.exit("no start line: %r" % buf)
"#;

fn has_escape(bytes: &[u8]) -> bool {
    bytes.contains(&ESC)
}

#[test]
fn a_log_written_to_a_file_or_a_pipe_has_no_escape_codes() {
    let file = log_to_file(|_| {});
    assert!(!has_escape(file.as_bytes()), "{file:?}");
    assert!(file.contains("INFO"), "{file:?}");
    let pipe = log_to_pipe(|_| {});
    assert!(!has_escape(&pipe), "{:?}", String::from_utf8_lossy(&pipe));
}

#[test]
fn a_terminal_gets_colours_unless_no_color_or_the_setting_says_otherwise() {
    let tty = log_to_terminal(&[], &[]);
    assert!(
        has_escape(&tty),
        "a terminal gets colours: {:?}",
        String::from_utf8_lossy(&tty)
    );
    let no_color = log_to_terminal(&[("NO_COLOR", "1")], &[]);
    assert!(!has_escape(&no_color), "NO_COLOR honoured");
    let never = log_to_terminal(&[("OLLAMETER_LOG_COLOR", "never")], &[]);
    assert!(!has_escape(&never), "log.color = never");
    let json = log_to_terminal(
        &[("OLLAMETER_LOG_COLOR", "always")],
        &["--log-format", "json"],
    );
    assert!(
        !has_escape(&json),
        "json is never coloured: {:?}",
        String::from_utf8_lossy(&json)
    );
    assert!(String::from_utf8_lossy(&json).contains(r#""message":"ollameter listening""#));
}

#[test]
fn log_color_always_colours_even_a_file_and_wins_over_no_color() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[log]\ncolor = \"always\"\n").expect("write");
    let file = log_to_file(|c| {
        c.env("OLLAMETER_CONFIG", &config).env("NO_COLOR", "1");
    });
    assert!(has_escape(file.as_bytes()), "{file:?}");
}

#[test]
fn an_unknown_log_color_is_refused_with_the_choices() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = ollameter(dir.path())
        .env("OLLAMETER_LOG_COLOR", "rainbow")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log.color: \"rainbow\" is not one of auto, always, never"),
        "{err}"
    );
}
