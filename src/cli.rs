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
    /// Commands that ask a running sidecar.
    #[command(flatten)]
    Client(ClientCommand),
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
    /// Measure models on your prompts through a running sidecar, grade the answers, and
    /// recommend: every call is recorded with source `benchmark`.
    Bench(BenchArgs),
    /// Inspect the configuration.
    Config {
        /// What to do with it.
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// The commands that ask a running sidecar through [`ollameter::client::Client`].
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
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
        /// Only records of this source: benchmark, proxy, manual or import.
        #[arg(long)]
        source: Option<String>,
        /// Only calls served by this upstream host (its name, as in [[upstreams]]).
        #[arg(long, value_parser = upstream_name)]
        host: Option<String>,
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
        /// Only calls served by this upstream host (its name, as in [[upstreams]]).
        #[arg(long, value_parser = upstream_name)]
        host: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Which model to use: speed, quality, balanced, reliable or efficient.
    Recommend {
        /// speed, quality, balanced, reliable or efficient.
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
        /// Only records of this source: benchmark, proxy, manual or import.
        #[arg(long)]
        source: Option<String>,
        /// The call to choose for: its output tokens. Each model's time is predicted for
        /// it and the speed score uses the prediction.
        #[arg(long)]
        output_tokens: Option<u64>,
        /// The call's prompt tokens (default: each model's median prompt); needs
        /// --output-tokens.
        #[arg(long)]
        prompt_tokens: Option<u64>,
        /// Leave out models predicted slower than this for the call; needs --output-tokens.
        #[arg(long)]
        max_latency_ms: Option<f64>,
        /// The efficient priority's quality floor, 1 to 5 (default 3).
        #[arg(long)]
        min_quality: Option<f64>,
        /// What to use on this upstream host: only the calls it served (its name, as in
        /// [[upstreams]]).
        #[arg(long, value_parser = upstream_name)]
        host: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// How long a call of so many tokens will take on each model (or one), from each
    /// model's latency fit, with its 80% interval.
    Predict {
        /// Output tokens of the call.
        #[arg(long)]
        output_tokens: u64,
        /// Prompt tokens of the call (default: each model's median prompt).
        #[arg(long)]
        prompt_tokens: Option<u64>,
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// Only the calls served by this upstream host (its name): the time on that box.
        #[arg(long)]
        host: Option<String>,
        /// The call starts cold (the model is loaded first).
        #[arg(long)]
        cold: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// What model routing does now: each virtual name (auto, auto:speed, aliases), its
    /// current choice and why, and where its calls ran in the last hour.
    Route {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Firing alerts and the last resolved ones.
    Alerts {
        /// Only this model's alerts.
        #[arg(long)]
        model: Option<String>,
        /// Only the alerts of this upstream host (with several upstreams, alerts are per
        /// model and host).
        #[arg(long, value_parser = upstream_name)]
        host: Option<String>,
        /// firing or resolved (both when left out).
        #[arg(long)]
        state: Option<String>,
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
        /// Only calls served by this upstream host (its name, as in [[upstreams]]).
        #[arg(long, value_parser = upstream_name)]
        host: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Warnings a person can act on: failing, slowing or degrading models, memory near
    /// capacity, dropped records, calls for models that do not exist.
    Insights {
        /// Window in hours (default: the server's, 24).
        #[arg(long)]
        hours: Option<f64>,
        /// Only calls served by this upstream host (its name, as in [[upstreams]]).
        #[arg(long, value_parser = upstream_name)]
        host: Option<String>,
        /// Also apply the per-model rules to names no call ever succeeded with and that
        /// are not installed (else each is reported once as an unknown model).
        #[arg(long)]
        include_unknown: bool,
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
        /// Only records of calls served by this upstream host (its name, as in [[upstreams]]).
        #[arg(long, value_parser = upstream_name)]
        host: Option<String>,

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
        /// Only the calls served by this upstream host (its name, as in [[upstreams]]).
        #[arg(long, value_parser = upstream_name)]
        host: Option<String>,
        /// Answer the prediction panel's call question in the report: each model's
        /// predicted time for a call of this many output tokens.
        #[arg(long)]
        output_tokens: Option<u64>,
        /// The call's prompt tokens (default: each model's median prompt); needs
        /// --output-tokens.
        #[arg(long, requires = "output_tokens")]
        prompt_tokens: Option<u64>,
        /// Mark which models are predicted to take at most this long; needs --output-tokens.
        #[arg(long, requires = "output_tokens")]
        max_latency_ms: Option<f64>,
        /// Predict a cold start (the model loaded first); needs --output-tokens.
        #[arg(long, requires = "output_tokens")]
        cold: bool,
        /// The sidecar's URL (its API port, when `server.api_listen` is set).
        #[arg(
            long,
            env = "OLLAMETER_SERVER",
            default_value = "http://127.0.0.1:11435"
        )]
        server: String,
    },
}

/// An upstream host's name given on the command line: not empty.
fn upstream_name(value: &str) -> Result<String, String> {
    let name = value.trim();
    if name.is_empty() {
        return Err("give an upstream's name, as in [[upstreams]] (e.g. gpu0)".into());
    }
    Ok(name.to_owned())
}

/// `ollameter config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration; exit non-zero when it is invalid.
    Check(ServeArgs),
}

/// `ollameter bench ...`
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["models", "installed"])))]
pub struct BenchArgs {
    /// The models to measure (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Every installed model that can generate (from Ollama's /api/tags).
    #[arg(long, conflicts_with = "models")]
    pub installed: bool,
    /// With --installed, embedding models too (measured with /api/embed).
    #[arg(long)]
    pub embed: bool,
    /// A JSONL file, one prompt per line: prompt or messages, images (file paths),
    /// operation, options, format, and grading (expect, expect_regex, expect_json,
    /// quality_rule); see config/bench-prompts.example.jsonl.
    #[arg(long, conflicts_with = "suite")]
    pub prompts: Option<PathBuf>,
    /// A built-in suite: `default` (short answer, long answer, JSON output, rating); used
    /// when no --prompts is given.
    #[arg(long)]
    pub suite: Option<String>,
    /// Measured calls per prompt and model.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// One unmeasured load call per model first (recorded as operation `load`); the cold
    /// load is reported apart from the warm calls.
    #[arg(long)]
    pub warmup: bool,
    /// Ollama's keep_alive for every call (`10m`, `-1`, `0`).
    #[arg(long)]
    pub keep_alive: Option<String>,
    /// The sidecar's proxy URL, when the API has its own port (default: --server).
    #[arg(long)]
    pub proxy: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
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
    /// Ollama's URL; repeat it for several Ollama servers, among which each call goes to
    /// the one that serves it best [env: OLLAMETER_UPSTREAM, comma-separated]
    /// [default: http://127.0.0.1:11434]
    #[arg(long)]
    pub upstream: Vec<String>,
    /// The store: a SQLite file, or a postgres:// URL [env: OLLAMETER_DB] [default: ollameter.db]
    #[arg(long)]
    pub db: Option<String>,
    /// Log format: text or json [env: OLLAMETER_LOG_FORMAT]
    #[arg(long)]
    pub log_format: Option<String>,
}
