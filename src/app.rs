//! Wiring: opens the store and recorder, builds the proxy and API routers, binds the
//! listeners, and shuts down in order (stop accepting, let calls finish for a grace
//! period, then drain the recorder so every queued record is committed).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::bench::BenchRuns;
use crate::config::Config;
use crate::history::History;
use crate::metrics::Metrics;
use crate::proxy::{self, ProxyConfig, ProxyState};
use crate::quality::QualityRules;
use crate::recorder::{self, Recorder, RecorderConfig, RecorderTask};
use crate::serve::ConnLimits;
use crate::store::{Store, StoreLocation};
use crate::telemetry::{Telemetry, TelemetryConfig};

/// How long in-flight calls may run on after a shutdown signal before they are cut (and
/// recorded as cancelled).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("cannot open the store {path}: {source}")]
    Store {
        /// The database path.
        path: String,
        /// SQLite's reason.
        source: crate::store::StoreError,
    },
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS's reason.
        source: std::io::Error,
    },
    /// The configuration is not usable.
    #[error("{0}")]
    Config(String),
}

/// A started sidecar.
pub struct Running {
    /// Where the proxy (and, without a separate API address, the API) listens.
    pub proxy_addr: SocketAddr,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// The recorder handle (tests flush it).
    pub recorder: Recorder,
    /// The telemetry sampler's handle.
    pub telemetry: Telemetry,
    /// The API's routes, for in-process requests (tests, the report).
    pub api_router: Router,
    /// The benchmark runs inside the sidecar.
    pub bench: Arc<BenchRuns>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    recorder_task: RecorderTask,
}

impl Running {
    /// Stops the sidecar: stop accepting, let calls finish (up to the grace period),
    /// commit every queued record.
    pub async fn shutdown(self) {
        self.bench.shutdown();
        let _ = self.shutdown.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        self.telemetry.shutdown().await;
        let task = self.recorder_task;
        let _ = tokio::task::spawn_blocking(move || task.shutdown()).await;
    }
}

/// Starts the sidecar on the configured addresses.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let quality = Arc::new(
        QualityRules::new(&config.quality_rules)
            .map_err(|problems| StartError::Config(problems.join("; ")))?,
    );
    let location = StoreLocation::from_path(&config.db_path).map_err(StartError::Config)?;
    // SQLite: the history is loaded before the writer starts, so no commit can slip
    // between. A shared store is read by the writer itself (all of it first, then what
    // every instance commits), so the sidecar starts even with the database down.
    let history = match &location {
        StoreLocation::Sqlite(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || Store::open(&path).and_then(|s| History::load(&s)))
                .await
                .map_err(|e| StartError::Config(format!("loading the history: {e}")))?
                .map(Arc::new)
                .map_err(|source| StartError::Store {
                    path: location.describe(),
                    source,
                })?
        }
        StoreLocation::Postgres(_) => Arc::new(History::default()),
    };
    let (recorder, recorder_task) = recorder::start(
        &location,
        RecorderConfig {
            queue_capacity: config.queue_capacity,
            batch_size: config.batch_size,
            flush_interval: config.flush_interval,
            max_records_per_model: config.max_records_per_model,
            max_age: Duration::from_secs(config.max_age_days * 86_400),
            retention_interval: config.retention_interval,
            instance: config.store.instance.clone(),
            spill_capacity: config.store.spill_capacity,
            follow_interval: config.store.follow_interval,
        },
        Some(history.clone() as recorder::CommitHook),
    )
    .map_err(|source| StartError::Store {
        path: location.describe(),
        source,
    })?;
    let telemetry = if config.telemetry_enabled {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| StartError::Config(format!("cannot build the telemetry client: {e}")))?;
        Telemetry::start_default(
            TelemetryConfig {
                interval: config.telemetry_interval,
                upstream: config.upstream.clone(),
                server_pids: config.telemetry_server_pids.clone(),
                process_names: config.telemetry_process_names.clone(),
                enabled: true,
            },
            client,
        )
    } else {
        Telemetry::disabled()
    };
    let metrics = Arc::new(Metrics::new());
    let proxy_state = ProxyState::new(
        &ProxyConfig {
            upstream: config.upstream.clone(),
            connect_timeout: config.connect_timeout,
            operation_header: config.operation_header.clone(),
            max_body_bytes: config.max_body_bytes,
            quality_capture_bytes: config.quality_capture_bytes,
            max_parse_bytes: config.max_parse_bytes,
        },
        recorder.clone(),
        quality,
        telemetry.clone(),
        metrics.clone(),
    )
    .map_err(|e| StartError::Config(format!("cannot build the upstream client: {e}")))?;
    let bench = Arc::new(BenchRuns::default());
    let api_router = api::router(ApiState {
        recorder: recorder.clone(),
        proxy: proxy_state.clone(),
        store: Arc::new(location.clone()),
        history,
        started: Instant::now(),
        access: Arc::new(crate::api::auth::Access {
            admin_token: config.admin_token.clone(),
            read_token: config.read_token.clone(),
            protect_writes: config.protect_writes,
        }),
        bench: bench.clone(),
    });
    let proxy_router = Router::new()
        .fallback(proxy::handle)
        .with_state(proxy_state);
    let counted = axum::middleware::from_fn_with_state(metrics, count_requests);
    let (api_router, proxy_router) = (
        api_router.layer(counted.clone()),
        proxy_router.layer(counted),
    );

    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let proxy_listener = bind(config.listen).await?;
    let proxy_addr = proxy_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let api_router_copy = api_router.clone();
    let limits = ConnLimits {
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections,
        max_header_bytes: config.max_header_bytes,
        grace: SHUTDOWN_GRACE,
    };
    let mut servers = Vec::new();
    let api_addr = match config.api_listen {
        Some(addr) => {
            let api_listener = bind(addr).await?;
            let api_addr = api_listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            servers.push(serve(api_listener, api_router, limits, shutdown_rx.clone()));
            servers.push(serve(proxy_listener, proxy_router, limits, shutdown_rx));
            api_addr
        }
        None => {
            servers.push(serve(
                proxy_listener,
                api_router.merge(proxy_router),
                limits,
                shutdown_rx,
            ));
            proxy_addr
        }
    };
    bench.set_target(crate::bench::Target {
        proxy: local_url(proxy_addr),
        api: local_url(api_addr),
        token: config
            .admin_token
            .clone()
            .or_else(|| config.read_token.clone()),
    });
    tracing::info!(%proxy_addr, %api_addr, upstream = %config.upstream, db = %location.describe(), instance = %config.store.instance, "ollameter listening");
    Ok(Running {
        proxy_addr,
        api_addr,
        recorder,
        telemetry,
        api_router: api_router_copy,
        bench,
        shutdown,
        servers,
        recorder_task,
    })
}

/// The URL this process reaches a listener of its own at: loopback for a wildcard address.
fn local_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new(
            if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            addr.port(),
        )
    } else {
        addr
    };
    format!("http://{host}")
}

/// Counts every request by its endpoint class and status, for `/metrics`.
async fn count_requests(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let class = crate::metrics::endpoint_class(request.method().as_str(), request.uri().path());
    let response = next.run(request).await;
    metrics.observe_request(class, response.status().as_u16());
    response
}

/// Serves until the shutdown signal, then gives open calls the grace period to finish.
fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(crate::serve::serve(listener, router, limits, shutdown))
}

/// Runs the sidecar until `signal` resolves, then shuts down in order.
pub async fn run(config: Config, signal: impl Future<Output = ()>) -> Result<(), StartError> {
    let running = start(config).await?;
    signal.await;
    tracing::info!("shutting down: finishing open calls and writing queued records");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
