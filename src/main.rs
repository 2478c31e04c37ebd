//! The `ollameter` binary: parses the command line, loads the configuration, starts
//! logging and hands over to the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, ConfigAction, ServeArgs};
use ollameter::config::{self, Config, LogFormat, Overrides};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match load(cli.config.as_deref(), &args) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_tracing(&config);
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
        Command::GpuCheck => {
            print!("{}", ollameter::telemetry::nvml_report());
            ExitCode::SUCCESS
        }
        Command::Config {
            action: ConfigAction::Check(args),
        } => match load(cli.config.as_deref(), &args) {
            Ok(config) => match toml::to_string_pretty(&config) {
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

fn load(file: Option<&std::path::Path>, args: &ServeArgs) -> Result<Config, ExitCode> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("OLLAMETER_"))
        .collect();
    let flags = Overrides {
        listen: args.listen.clone(),
        api_listen: args.api_listen.clone(),
        upstream: args.upstream.clone(),
        db: args.db.clone(),
        log_format: args.log_format.clone(),
    };
    config::load(file, &env, &flags).map_err(|e| {
        eprintln!("ollameter: {e}");
        ExitCode::from(2)
    })
}

/// Asks the running sidecar's health route; any answer from it means the process serves.
fn healthcheck(config: &Config) -> ExitCode {
    let addr = config.api_listen.unwrap_or(config.listen);
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

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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
