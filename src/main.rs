//! The `ollameter` binary: parses the command line, loads the configuration, starts
//! logging and hands over to the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, ClientCommand, Command, ConfigAction, ServeArgs};
use ollameter::client::{self, Client, ClientError, DashboardView, RecommendAsk, Window};
use ollameter::config::{self, Config, LogFormat, Overrides};

/// mimalloc in place of the system's allocator: hyper allocates and frees buffers per
/// call, and glibc's malloc (its free-list consolidation above all) cost several
/// microseconds of each proxied call (docs/benchmarks.md, issue 12). Built without
/// transparent huge pages (`no_thp`): with them its arenas doubled the idle RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match load(cli.config.as_deref(), &args) {
                Ok(c) => c,
                Err(code) => return code,
            };
            // Held until the end of `main`: dropping it writes the log lines still pending.
            let _log = init_tracing(&config);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("ollameter: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(ollameter::app::run(config, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "ollameter could not start");
                    eprintln!("ollameter: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Healthcheck(args) => {
            let config = match load(cli.config.as_deref(), &args) {
                Ok(c) => c,
                Err(code) => return code,
            };
            healthcheck(&config)
        }
        Command::Client(command) => client_command(command),
        Command::Migrate { from, to, instance } => migrate(&from, &to, instance),
        Command::Bench(args) => bench(args),
        Command::GpuCheck => {
            print!("{}", ollameter::telemetry::nvml_report());
            ExitCode::SUCCESS
        }
        Command::Config {
            action: ConfigAction::Check(args),
        } => match load(cli.config.as_deref(), &args) {
            Ok(config) => match config.to_toml() {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ollameter: cannot print the configuration: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
    }
}

/// `ollameter migrate`: copies one store into another.
fn migrate(from: &str, to: &str, instance: Option<String>) -> ExitCode {
    use ollameter::store::StoreLocation;
    let (from, to) = match (StoreLocation::parse(from), StoreLocation::parse(to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) => {
            eprintln!("ollameter: --from: {e}");
            return ExitCode::from(2);
        }
        (_, Err(e)) => {
            eprintln!("ollameter: --to: {e}");
            return ExitCode::from(2);
        }
    };
    if let StoreLocation::Sqlite(path) = &from
        && !path.exists()
    {
        eprintln!("ollameter: --from: {} does not exist", path.display());
        return ExitCode::from(2);
    }
    let instance = instance.unwrap_or_else(ollameter::config::store::default_instance);
    match ollameter::store::copy::copy_store(&from, &to, &instance) {
        Ok(report) => {
            println!(
                "copied {} records from {} to {} ({} read, {} already there)",
                report.copied,
                from.describe(),
                to.describe(),
                report.read,
                report.skipped_existing
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ollameter: migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(file: Option<&std::path::Path>, args: &ServeArgs) -> Result<Config, ExitCode> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("OLLAMETER_") || k.starts_with("OTEL_"))
        .collect();
    let flags = Overrides {
        listen: args.listen.clone(),
        api_listen: args.api_listen.clone(),
        upstream: (!args.upstream.is_empty()).then(|| args.upstream.join(",")),
        db: args.db.clone(),
        log_format: args.log_format.clone(),
    };
    config::load(file, &env, &flags).map_err(|e| {
        eprintln!("ollameter: {e}");
        ExitCode::from(2)
    })
}

/// `ollameter bench`: reads the prompts, then runs against the sidecar.
fn bench(args: cli::BenchArgs) -> ExitCode {
    use ollameter::bench::{self, Models, Plan, Target, prompts};
    let prompts = match (&args.prompts, &args.suite) {
        (Some(file), _) => prompts::read_file(file),
        (None, suite) => prompts::suite(suite.as_deref().unwrap_or("default")),
    };
    let prompts = match prompts {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ollameter: {e}");
            return ExitCode::from(2);
        }
    };
    if !args.installed && args.models.iter().all(|m| m.trim().is_empty()) {
        eprintln!("ollameter: --models: name at least one model (a,b,c), or use --installed");
        return ExitCode::from(2);
    }
    let keep_alive = args.keep_alive.as_deref().map(|k| match k.parse::<i64>() {
        Ok(seconds) => serde_json::json!(seconds),
        Err(_) => serde_json::json!(k),
    });
    let plan = Plan {
        models: if args.installed {
            Models::Installed
        } else {
            Models::Named(
                args.models
                    .iter()
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect(),
            )
        },
        embed: args.embed,
        prompts,
        runs: args.runs,
        concurrency: args.concurrency,
        warmup: args.warmup,
        keep_alive,
    };
    let server = args.client.server.trim_end_matches('/').to_string();
    let target = Target {
        proxy: args
            .proxy
            .as_deref()
            .map_or(server.clone(), |p| p.trim_end_matches('/').to_string()),
        api: server,
        token: None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ollameter: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::cli::run(&target, &plan, args.client.json)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ollameter: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client command against a running sidecar.
fn client_command(command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ollameter: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_client(command)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ollameter: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one client command; its output, or why it failed.
async fn run_client(command: ClientCommand) -> Result<String, ClientError> {
    let show = |json: bool, typed: String, text: String| if json { typed } else { text };
    match command {
        ClientCommand::Stats {
            model,
            hours,
            operation,
            source,
            host,
            client: args,
        } => {
            let c = Client::new(&args.server)?;
            let window = Window {
                hours,
                operation,
                source,
                host,
            };
            Ok(match &model {
                Some(m) => {
                    let answer = c.model_statistics(m, &window).await?;
                    show(
                        args.json,
                        client::json(&answer),
                        client::render_model_statistics(&answer),
                    )
                }
                None => {
                    let answer = c.all_statistics(&window).await?;
                    show(
                        args.json,
                        client::json(&answer),
                        client::render_statistics(&answer),
                    )
                }
            })
        }
        ClientCommand::Compare {
            models,
            hours,
            operation,
            host,
            client: args,
        } => {
            let c = Client::new(&args.server)?;
            let window = Window {
                hours,
                operation,
                source: None,
                host,
            };
            let answer = c.compare(&models, &window).await?;
            Ok(show(
                args.json,
                client::json(&answer),
                client::render_comparison(&answer),
            ))
        }
        ClientCommand::Recommend {
            priority,
            vram_gb,
            models,
            hours,
            min_operations,
            operation,
            source,
            output_tokens,
            prompt_tokens,
            max_latency_ms,
            min_quality,
            host,
            client: args,
        } => {
            let c = Client::new(&args.server)?;
            let answer = c
                .recommend(&RecommendAsk {
                    priority,
                    vram_gb,
                    models,
                    min_operations,
                    output_tokens,
                    prompt_tokens,
                    max_latency_ms,
                    min_quality,
                    window: Window {
                        hours,
                        operation,
                        source,
                        host,
                    },
                })
                .await?;
            Ok(show(
                args.json,
                client::json(&answer),
                client::render_recommendation(&answer),
            ))
        }
        ClientCommand::Predict {
            output_tokens,
            prompt_tokens,
            model,
            host,
            cold,
            client: args,
        } => {
            let c = Client::new(&args.server)?;
            let answer = c
                .predict(
                    model.as_deref(),
                    host.as_deref(),
                    prompt_tokens,
                    output_tokens,
                    cold,
                )
                .await?;
            Ok(show(
                args.json,
                client::json(&answer),
                client::render_predictions(&answer),
            ))
        }
        ClientCommand::Route { client: args } => {
            let c = Client::new(&args.server)?;
            let answer = c.routing().await?;
            Ok(show(
                args.json,
                client::json(&answer),
                client::routing::render_routing(&answer),
            ))
        }
        ClientCommand::Alerts {
            model,
            host,
            state,
            client: args,
        } => {
            let c = Client::new(&args.server)?;
            let answer = c
                .alerts(model.as_deref(), host.as_deref(), state.as_deref())
                .await?;
            let value = serde_json::to_value(&answer).unwrap_or_default();
            Ok(show(
                args.json,
                client::json(&answer),
                ollameter::alerts::text::render(&value),
            ))
        }
        ClientCommand::Trend {
            model,
            metric,
            hours,
            bucket_minutes,
            host,
            client: args,
        } => {
            let c = Client::new(&args.server)?;
            let answer = c
                .trend(&model, &metric, hours, bucket_minutes, host.as_deref())
                .await?;
            Ok(show(
                args.json,
                client::json(&answer),
                client::render_trend(&answer),
            ))
        }
        ClientCommand::Insights {
            hours,
            host,
            include_unknown,
            client: args,
        } => {
            let c = Client::new(&args.server)?;
            let answer = c.insights(hours, host.as_deref(), include_unknown).await?;
            Ok(show(
                args.json,
                client::json(&answer),
                client::render_insights(&answer),
            ))
        }
        ClientCommand::Export {
            format,
            model,
            hours,
            out,
            host,
            client: args,
        } => {
            let c = Client::new(&args.server)?;
            let body = c
                .export(&format, model.as_deref(), hours, host.as_deref())
                .await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &body)
                        .map_err(|e| ClientError::Io(format!("{}: {e}", path.display())))?;
                    Ok(format!(
                        "wrote {} bytes to {}\n",
                        body.len(),
                        path.display()
                    ))
                }
                None => Ok(String::from_utf8_lossy(&body).into_owned()),
            }
        }
        ClientCommand::Import {
            file,
            format,
            client: args,
        } => {
            let c = Client::new(&args.server)?;
            let body = std::fs::read(&file)
                .map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))?;
            let answer = c.import(body, format.as_deref()).await?;
            Ok(show(
                args.json,
                client::json(&answer),
                client::render_import(&answer),
            ))
        }
        ClientCommand::Report {
            out,
            hours,
            operation,
            model,
            metric,
            host,
            output_tokens,
            prompt_tokens,
            max_latency_ms,
            cold,
            server,
        } => {
            let c = Client::new(&server)?;
            let page = c
                .dashboard(&DashboardView {
                    hours,
                    operation,
                    model,
                    metric,
                    host,
                    output_tokens,
                    prompt_tokens,
                    max_latency_ms,
                    cold,
                })
                .await?;
            std::fs::write(&out, &page)
                .map_err(|e| ClientError::Io(format!("{}: {e}", out.display())))?;
            Ok(format!(
                "wrote the dashboard ({} bytes) to {}\n",
                page.len(),
                out.display()
            ))
        }
    }
}

/// Asks the running sidecar's health route; any answer from it means the process serves.
fn healthcheck(config: &Config) -> ExitCode {
    let addr = config.server.api_listen.unwrap_or(config.server.listen);
    let host = if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    let url = format!("http://{host}/api/model-performance/health");
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| {
            rt.block_on(async {
                reqwest::Client::builder()
                    .no_proxy()
                    .timeout(std::time::Duration::from_secs(4))
                    .build()?
                    .get(&url)
                    .send()
                    .await
            })
        });
    match result {
        Ok(Ok(resp)) if resp.status().is_success() => ExitCode::SUCCESS,
        Ok(Ok(resp)) => {
            eprintln!("ollameter: {url} answered {}", resp.status());
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("ollameter: {url}: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ollameter: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) -> ollameter::log_writer::FlushGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = config.log.format == LogFormat::Json;
    let ansi = ollameter::logging::use_ansi(
        config.log.color,
        json,
        ollameter::logging::Terminal::of_stderr(),
    );
    let (writer, guard) = ollameter::log_writer::BatchedStderr::start();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
