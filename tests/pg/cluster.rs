//! A real PostgreSQL for tests and benches: `initdb` in a temporary directory, started on
//! a free port with its unix socket in that directory, stopped and removed when the
//! [`Cluster`] is dropped (a panicking test included).
//!
//! PostgreSQL refuses to run as root: as root, the cluster runs as an unprivileged user
//! (`postgres` when the package created it, else a created `ollameter-test`). The server's
//! binaries come from `OLLAMETER_PG_BIN`, else Debian's `/usr/lib/postgresql/<v>/bin`,
//! else `PATH` (`scripts/test` installs Debian's `postgresql`).

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster; dropping it stops the server and deletes its files.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    user: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

/// How the server runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Keep `fsync` on (benchmarks measure a durable server; tests run faster without).
    pub durable: bool,
}

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("OLLAMETER_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from(""))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn ids_of(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// The unprivileged user the server runs as when the tests run as root.
fn server_user() -> (u32, u32) {
    if let Some(ids) = ids_of("postgres") {
        return ids;
    }
    if let Some(ids) = ids_of("ollameter-test") {
        return ids;
    }
    let status = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .arg("ollameter-test")
        .status()
        .expect("useradd runs");
    // Another test binary may have created it at the same moment.
    let _ = status;
    ids_of("ollameter-test").expect("an unprivileged user for PostgreSQL")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    /// Creates and starts a cluster with the default options.
    pub fn start() -> Cluster {
        Cluster::start_with(Options::default())
    }

    /// Creates and starts a cluster.
    pub fn start_with(options: Options) -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("ollameter-pg-")
            .tempdir()
            .expect("tempdir");
        let user = is_root().then(server_user);
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let data = dir.path().join("data");
        let cluster = Cluster {
            bin,
            data,
            port: free_port(),
            user,
            dir,
        };
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "ollameter", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs (install Debian's postgresql, or set OLLAMETER_PG_BIN)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             max_connections = 100\nshared_buffers = 128MB\n",
            cluster.port,
            cluster.dir.path().display()
        );
        if !options.durable {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf_path = cluster.data.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).expect("write postgresql.conf");
        cluster.start_server();
        cluster
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd.env("LC_ALL", "C");
        cmd
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_server(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", "60", "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    /// Stops the server at once (connections are cut, as in a crash or a restart).
    pub fn stop_server(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "fast", "stop"])
            .output();
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let out = self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "ollameter",
            ])
            .arg(name)
            .output()
            .expect("createdb runs");
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }

    /// The URL of a database in this cluster.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://ollameter@127.0.0.1:{}/{database}?sslmode=disable&connect_timeout=2",
            self.port
        )
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "immediate", "stop"])
            .output();
    }
}
