//! The command line: clap structures only.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// ollameter: measure every Ollama inference call and pick models by data.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file (TOML); see config/ollameter.toml for every key.
    #[arg(long, env = "OLLAMETER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: the proxy in front of Ollama and the API.
    Serve(ServeArgs),
    /// Exit 0 when the sidecar on the configured address answers its health route
    /// (for container health checks).
    Healthcheck(ServeArgs),
    /// Initialise NVML through ollameter's own code and print the GPUs, their memory and
    /// each process's use (for checking a GPU host).
    GpuCheck,
    /// Inspect the configuration.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// `ollameter config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration; exit non-zero when it is invalid.
    Check(ServeArgs),
}

/// The main settings as flags (each also settable by its environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address the proxy listens on [env: OLLAMETER_LISTEN] [default: 127.0.0.1:11435]
    #[arg(long)]
    pub listen: Option<String>,
    /// Separate address for the API (default: the proxy's) [env: OLLAMETER_API_LISTEN]
    #[arg(long)]
    pub api_listen: Option<String>,
    /// Ollama's URL [env: OLLAMETER_UPSTREAM] [default: http://127.0.0.1:11434]
    #[arg(long)]
    pub upstream: Option<String>,
    /// The store's SQLite file [env: OLLAMETER_DB] [default: ollameter.db]
    #[arg(long)]
    pub db: Option<String>,
    /// Log format: text or json [env: OLLAMETER_LOG_FORMAT]
    #[arg(long)]
    pub log_format: Option<String>,
}
