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
    /// Statistics of one model, or of every model, from a running sidecar.
    Stats {
        /// The model (all models when left out).
        model: Option<String>,
        /// Only the last this many hours.
        #[arg(long)]
        hours: Option<f64>,
        /// Only this operation.
        #[arg(long)]
        operation: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Compare models side by side, with rankings.
    Compare {
        /// Two or more models.
        #[arg(required = true)]
        models: Vec<String>,
        /// Only the last this many hours.
        #[arg(long)]
        hours: Option<f64>,
        /// Only this operation.
        #[arg(long)]
        operation: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Which model to use: speed, quality, balanced or reliable.
    Recommend {
        /// speed, quality, balanced or reliable.
        #[arg(long, default_value = "balanced")]
        priority: String,
        /// GPU memory available, in GB (default: what the GPU has free).
        #[arg(long)]
        vram_gb: Option<f64>,
        /// Only these models (comma-separated).
        #[arg(long)]
        models: Option<String>,
        /// Only the last this many hours.
        #[arg(long)]
        hours: Option<f64>,
        /// Fewest operations a model needs to qualify.
        #[arg(long)]
        min_operations: Option<u64>,
        /// Only this operation.
        #[arg(long)]
        operation: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A metric of a model over time.
    Trend {
        /// The model.
        model: String,
        /// processing_time, ttft, tokens_per_second, quality, success_rate or memory.
        #[arg(long, default_value = "processing_time")]
        metric: String,
        /// Window in hours.
        #[arg(long, default_value_t = 24.0)]
        hours: f64,
        /// Bucket width in minutes.
        #[arg(long, default_value_t = 60)]
        bucket_minutes: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Export records (to standard output, or --out FILE).
    Export {
        /// json, ndjson or csv.
        #[arg(long, default_value = "json")]
        format: String,
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// Only the last this many hours.
        #[arg(long)]
        hours: Option<f64>,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Import records: an export (json, ndjson, csv) or the earlier system's JSON file.
    Import {
        /// The file.
        file: PathBuf,
        /// json, ndjson or csv (default: from the content).
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Save the dashboard of a running sidecar as one self-contained HTML file (styles and
    /// charts inline, nothing loaded from elsewhere), for sharing.
    Report {
        /// The file to write.
        #[arg(long, default_value = "ollameter-report.html")]
        out: PathBuf,
        /// The window: the last this many hours.
        #[arg(long, default_value_t = 24.0)]
        hours: f64,
        /// Only this operation.
        #[arg(long)]
        operation: Option<String>,
        /// The model whose trend is shown (default: the recommended one).
        #[arg(long)]
        model: Option<String>,
        /// The trend's metric: processing_time, ttft, tokens_per_second, quality,
        /// success_rate or memory.
        #[arg(long, default_value = "processing_time")]
        metric: String,
        /// The sidecar's URL (its API port, when `server.api_listen` is set).
        #[arg(
            long,
            env = "OLLAMETER_SERVER",
            default_value = "http://127.0.0.1:11435"
        )]
        server: String,
    },
    /// Copy every record of one store into another: a SQLite file into PostgreSQL (or
    /// back). Ids the target already holds are skipped, so running it again is harmless.
    Migrate {
        /// The source: a SQLite file or a postgres:// URL.
        #[arg(long)]
        from: String,
        /// The target: a postgres:// URL or a SQLite file (created if missing).
        #[arg(long)]
        to: String,
        /// The instance named on records that carry none (default: this host's name).
        #[arg(long)]
        instance: Option<String>,
    },
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

/// How the client commands reach the sidecar.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The sidecar's URL.
    #[arg(
        long,
        env = "OLLAMETER_SERVER",
        default_value = "http://127.0.0.1:11435"
    )]
    pub server: String,
    /// Print the API's JSON instead of tables.
    #[arg(long)]
    pub json: bool,
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
    /// The store: a SQLite file, or a postgres:// URL [env: OLLAMETER_DB] [default: ollameter.db]
    #[arg(long)]
    pub db: Option<String>,
    /// Log format: text or json [env: OLLAMETER_LOG_FORMAT]
    #[arg(long)]
    pub log_format: Option<String>,
}
