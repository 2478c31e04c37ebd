//! The processes the benchmark starts: the ollameter release binary and nginx. Each is
//! held by a [`Guard`] that stops it when dropped (SIGTERM, then SIGKILL after a grace
//! period), so a failing or interrupted run leaves nothing behind.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a child may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child may take to stop after SIGTERM (ollameter finishes open calls and
/// commits its queue first).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The children alive now, for [`stop_children_on_signal`].
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A started process, stopped on drop.
pub struct Guard {
    name: &'static str,
    child: Child,
}

impl Guard {
    fn new(name: &'static str, child: Child) -> Guard {
        if let Ok(mut live) = LIVE.lock() {
            live.push(child.id());
        }
        Guard { name, child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has already exited.
    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.child.id();
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|p| *p != pid);
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM first: nginx's master takes its workers down with it, ollameter commits.
        terminate(pid);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop after SIGTERM: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to a process (nginx's master then stops its workers; ollameter commits
/// its queue and exits).
fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// On SIGINT or SIGTERM, stops every child still alive and exits with status 130: a
/// signal ends the process without running the guards' `Drop`.
pub fn stop_children_on_signal() {
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
            let live: Vec<u32> = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
            eprintln!("interrupted: stopping {} child process(es)", live.len());
            for pid in &live {
                terminate(*pid);
            }
            // Give them a moment to finish (ollameter commits its queue), then go.
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline
                && live
                    .iter()
                    .any(|pid| Path::new(&format!("/proc/{pid}")).exists() && !zombie(*pid))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::process::exit(130);
        });
    if let Err(e) = spawned {
        eprintln!("cannot watch for signals ({e}): an interrupted run may leave children");
    }
}

/// Whether a process has exited and waits to be reaped.
fn zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// A loopback port free now (the OS's pick), for children that cannot report theirs.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits until `addr` accepts connections.
fn wait_listening(addr: SocketAddr, guard: &mut Guard) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        guard.check_alive()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{} did not listen on {addr} in time", guard.name))
}

/// A line of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The ollameter binary, serving with its default configuration but for the addresses
/// and the store.
pub struct Ollameter {
    /// Where the proxy listens.
    pub addr: SocketAddr,
    guard: Guard,
}

impl Ollameter {
    /// Starts `bin serve` in front of `upstream`, its store and log in `dir`.
    pub fn start(bin: &Path, upstream: SocketAddr, dir: &Path) -> Result<Ollameter, String> {
        Ollameter::start_with(bin, &[upstream], dir, "ollameter", None)
    }

    /// Starts `bin serve` in front of every one of `upstreams` (`--upstream` repeated),
    /// its files in `dir` named `name`.
    pub fn start_many(
        bin: &Path,
        upstreams: &[SocketAddr],
        dir: &Path,
        name: &str,
    ) -> Result<Ollameter, String> {
        Ollameter::start_with(bin, upstreams, dir, name, None)
    }

    /// [`Ollameter::start`] with span export on, to the OTLP/HTTP traces URL `traces`
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, e.g. `http://127.0.0.1:4318/v1/traces`); its
    /// files in `dir` are named `name`.
    pub fn start_exporting(
        bin: &Path,
        upstream: SocketAddr,
        dir: &Path,
        name: &str,
        traces: &str,
    ) -> Result<Ollameter, String> {
        Ollameter::start_with(bin, &[upstream], dir, name, Some(traces))
    }

    fn start_with(
        bin: &Path,
        upstreams: &[SocketAddr],
        dir: &Path,
        name: &str,
        traces: Option<&str>,
    ) -> Result<Ollameter, String> {
        let log_path = dir.join(format!("{name}.log"));
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut command = Command::new(bin);
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        for upstream in upstreams {
            command.arg("--upstream").arg(format!("http://{upstream}"));
        }
        command
            .arg("--db")
            .arg(dir.join(format!("{name}.db")))
            .env_remove("RUST_LOG")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env("NO_COLOR", "1");
        if let Some(traces) = traces {
            command.env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // The log goes to a file, as it would to a journal: its cost is part of the
            // measurement.
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut guard = Guard::new("ollameter", child);
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            guard.check_alive()?;
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(addr) = listening_addr(&text) {
                break addr;
            }
            if Instant::now() > deadline {
                return Err(format!("ollameter did not start; its log:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        wait_listening(addr, &mut guard)?;
        Ok(Ollameter { addr, guard })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The resident set now, KiB.
    pub fn rss_kib(&self) -> u64 {
        status_kib(self.guard.pid(), "VmRSS:")
    }

    /// The highest resident set since the last [`Ollameter::reset_peak`], KiB.
    pub fn peak_kib(&self) -> u64 {
        status_kib(self.guard.pid(), "VmHWM:")
    }

    /// Resets the kernel's peak-RSS mark to the current RSS (`/proc/<pid>/clear_refs`).
    pub fn reset_peak(&self) {
        let _ = fs::write(format!("/proc/{}/clear_refs", self.guard.pid()), "5");
    }
}

/// The proxy address in ollameter's "listening" log line.
fn listening_addr(log: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains("ollameter listening"))?;
    let rest = &line[line.find("proxy_addr")? + "proxy_addr".len()..];
    let start = rest.find(|c: char| c.is_ascii_digit())?;
    let addr: String = rest[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}

/// nginx as a plain reverse proxy with buffering off, configured by [`nginx_config`].
pub struct Nginx {
    /// Where it listens.
    pub addr: SocketAddr,
    guard: Guard,
}

/// The nginx configuration the benchmark uses: a plain reverse proxy, no buffering in
/// either direction, HTTP/1.1 with a keep-alive pool to the upstream, one worker per core
/// (as ollameter's runtime has), no access log.
pub fn nginx_config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "worker_processes auto;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 64m;
    upstream ollama {{
        server {upstream};
        keepalive 128;
    }}
    server {{
        listen {listen} reuseport;
        location / {{
            proxy_pass http://ollama;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"
    )
}

impl Nginx {
    /// Starts `nginx` (the binary at `bin`) in the foreground in front of `upstream`, its
    /// configuration and logs in `dir`.
    pub fn start(bin: &Path, upstream: SocketAddr, dir: &Path) -> Result<Nginx, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let conf = dir.join("nginx.conf");
        fs::write(&conf, nginx_config(dir, addr, upstream))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut guard = Guard::new("nginx", child);
        wait_listening(addr, &mut guard).map_err(|e| {
            let log = fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            format!("{e}; nginx's error log:\n{log}")
        })?;
        Ok(Nginx { addr, guard })
    }

    /// The resident set of the master and its workers, KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.guard.pid();
        let workers =
            fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        status_kib(pid, "VmRSS:")
            + workers
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .map(|w| status_kib(w, "VmRSS:"))
                .sum::<u64>()
    }
}

/// The first executable named `name` on `PATH` (or in `/usr/sbin`, where Debian puts
/// nginx).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// CPU time a process has used so far (user + system, all its threads), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces): state is the 3rd
            // field of the line, utime the 14th and stime the 15th.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0)
}

/// The processes a process started (nginx's workers).
fn children_of(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// Clock ticks per second of `/proc`'s CPU times (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds a process and its children have used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let ticks = cpu_ticks(pid) + children_of(pid).into_iter().map(cpu_ticks).sum::<u64>();
    ticks as f64 / ticks_per_second()
}

impl Ollameter {
    /// CPU seconds used so far, every thread.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.guard.pid())
    }
}

impl Nginx {
    /// CPU seconds used so far by the master and its workers.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.guard.pid())
    }
}

/// The bare hyper reverse proxy (benches/proxy/bareproxy): the floor of a tokio + hyper
/// data plane, no metering.
pub struct Bare {
    /// Where it listens.
    pub addr: SocketAddr,
    guard: Guard,
}

impl Bare {
    /// Builds benches/proxy/bareproxy with Cargo (release profile, its own target
    /// directory under `target/`) and returns the binary.
    pub fn build() -> Result<PathBuf, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest = root.join("benches/proxy/bareproxy/Cargo.toml");
        let target = root.join("target/bareproxy");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building {} failed: {status}", manifest.display()));
        }
        Ok(target.join("release/bareproxy"))
    }

    /// Starts the binary at `bin` in front of `upstream`.
    pub fn start(bin: &Path, upstream: SocketAddr) -> Result<Bare, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(bin)
            .arg(addr.to_string())
            .arg(format!("http://{upstream}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut guard = Guard::new("bareproxy", child);
        wait_listening(addr, &mut guard)?;
        Ok(Bare { addr, guard })
    }

    /// CPU seconds used so far, every thread.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.guard.pid())
    }
}
