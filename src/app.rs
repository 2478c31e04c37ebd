//! Wiring: opens the store and recorder, builds the proxy and API routers, binds the
//! listeners, and shuts down in order (stop accepting, let calls finish for a grace
//! period, then drain the recorder so every queued record is committed).

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use futures_util::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::health::{ServerFailures, UpstreamProbe};
use crate::api::{self, ApiState};
use crate::bench::BenchRuns;
use crate::config::Config;
use crate::history::History;
use crate::metrics::Metrics;
use crate::proxy::{self, ProxyState};
use crate::recorder::{self, Recorder, RecorderTask};
use crate::serve::ConnLimits;
use crate::store::{Store, StoreLocation};
use crate::telemetry::Telemetry;
use crate::text::panic_message;

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
    /// The recorder's writer thread could not be started.
    #[error("{0}")]
    Recorder(std::io::Error),
    /// The OTLP span exporter could not be started.
    #[error("{0}")]
    Otel(#[from] crate::otel::StartError),
}

/// A started sidecar.
pub struct Running {
    /// Where the proxy (and, without a separate API address, the API) listens.
    pub proxy_addr: SocketAddr,
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// The recorder handle (tests flush it).
    pub recorder: Recorder,
    /// The telemetry sampler's handle (the first upstream's).
    pub telemetry: Telemetry,
    /// The upstreams, their health and inventory.
    pub fleet: crate::fleet::Fleet,
    /// The API's routes, for in-process requests (tests, the report).
    pub api_router: Router,
    /// The alerts board (what is firing; `is_critical` for routing).
    pub alerts: Arc<crate::alerts::Alerts>,
    alerts_task: crate::alerts::AlertsTask,
    /// The benchmark runs inside the sidecar.
    pub bench: Arc<BenchRuns>,
    shutdown: watch::Sender<bool>,
    servers: Vec<(&'static str, JoinHandle<()>)>,
    recorder_task: RecorderTask,
    otel_task: crate::otel::export::OtelTask,
}

impl Running {
    /// Stops the sidecar: stop accepting, let calls finish (up to the grace period),
    /// commit every queued record.
    pub async fn shutdown(self) {
        self.bench.shutdown();
        let _ = self.shutdown.send(true);
        for (what, server) in self.servers {
            if let Err(e) = server.await {
                tracing::error!(listener = what, error = %e, "the listener's task failed");
            }
        }
        self.fleet.shutdown().await;
        self.telemetry.shutdown().await;
        self.alerts_task.shutdown().await;
        let task = self.recorder_task;
        if let Err(e) = tokio::task::spawn_blocking(move || task.shutdown()).await {
            tracing::error!(error = %e, "draining the recorder failed; queued records may be lost");
        }
        // Spans of the last calls go out (bounded by one export's timeout).
        let otel = self.otel_task;
        if let Err(e) = tokio::task::spawn_blocking(move || otel.shutdown()).await {
            tracing::error!(error = %e, "stopping the span exporter failed");
        }
    }
}

/// Starts the sidecar on the configured addresses. Each part gets its own section of the
/// configuration as it is.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let Config {
        server,
        proxy: proxy_config,
        store,
        recorder: recorder_config,
        telemetry: telemetry_config,
        access,
        alerts: alerts_config,
        cost,
        otel: otel_config,
        ..
    } = config;
    // Checked by the configuration's validation; a config built by hand may still be wrong.
    let location = StoreLocation::from_path(&store.path).map_err(StartError::Config)?;
    let described = location.describe();
    let store_error = |source| StartError::Store {
        path: described.clone(),
        source,
    };
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
                .map_err(store_error)?
        }
        StoreLocation::Postgres(_) => Arc::new(History::default()),
    };
    let fleet = start_fleet(&proxy_config, &telemetry_config)?;
    let telemetry = fleet.first().telemetry().clone();
    let instance = recorder_config.instance.clone();
    let alerts = crate::alerts::prepare(alerts_config, &location, &history, fleet.is_multi())
        .await
        .map_err(store_error)?;
    let (recorder, recorder_task) = recorder::start(
        &location,
        recorder_config,
        Some(Arc::new(vec![
            history.clone() as recorder::CommitHook,
            alerts.hook.clone() as recorder::CommitHook,
            crate::fleet::SpeedHook::new(fleet.clone()) as recorder::CommitHook,
        ]) as recorder::CommitHook),
    )
    .map_err(|e| match e {
        recorder::StartError::Store(source) => store_error(source),
        recorder::StartError::Spawn(e) => StartError::Recorder(e),
    })?;
    let alerts_board = alerts.alerts.clone();
    let alerts_task = alerts.start(recorder.clone());
    let metrics = Arc::new(Metrics::with_names(otel_config.gen_ai_metric_names));
    let (otel, otel_task) = crate::otel::Otel::start(
        &otel_config,
        fleet.hosts().iter().map(|h| (h.name(), h.url())),
    )?;
    if let Some(stats) = otel.stats() {
        metrics.attach_otel(stats);
    }
    metrics.attach_upstreams(fleet.hosts().iter().map(|h| (h.name(), h.kind())));
    let router = crate::routing::ModelRouter::new(
        config.routing.clone(),
        history.clone(),
        telemetry.clone(),
        metrics.clone(),
        Some(crate::routing::alert_veto(alerts_board.clone())),
    );
    let proxy_state = ProxyState::new(
        &proxy_config,
        fleet.clone(),
        recorder.clone(),
        metrics.clone(),
        router.clone(),
        otel,
    )
    .map_err(|e| StartError::Config(format!("cannot build the upstream client: {e}")))?;
    for host in fleet.hosts() {
        // Each host's telemetry follows that host's kind (Ollama's `/api/ps` or an
        // OpenAI-compatible server's processes and `/v1/models`).
        host.telemetry().follow_upstream_kind(host.kind().clone());
        // Detect each upstream's kind now rather than at the first health check; an
        // upstream that is not up yet is detected by the first probe that reaches it.
        let host = Arc::clone(host);
        let client = proxy_state.client().clone();
        tokio::spawn(async move {
            if let Err(e) = host.kind().ensure(&client, host.url()).await {
                tracing::warn!(upstream = %host.url(), error = %e, "upstream kind not known yet");
            }
        });
    }
    fleet.start(proxy_state.client().clone());
    let server_failures = ServerFailures::default();
    let bench = Arc::new(BenchRuns::default());
    let bench_token = access
        .admin_token
        .clone()
        .or_else(|| access.read_token.clone());
    let api_router = api::router(ApiState {
        routing: router.clone(),
        recorder: recorder.clone(),
        upstream: UpstreamProbe::new(
            proxy_state.client().clone(),
            proxy_config.upstream.clone(),
            proxy_state.kind().clone(),
        ),
        telemetry: telemetry.clone(),
        fleet: fleet.clone(),
        metrics: metrics.clone(),
        store: Arc::new(location.clone()),
        history,
        started: Instant::now(),
        access: Arc::new(access),
        server_failures: server_failures.clone(),
        alerts: alerts_board.clone(),
        bench: bench.clone(),
        cost: Arc::new(cost),
    });
    let counted = axum::middleware::from_fn_with_state(metrics.clone(), count_requests);
    let api_router = api_router.layer(counted.clone());
    // The proxy's fallback behind the API's routes, for the API-shaped paths that no route
    // of the API serves (they are forwarded, as any other path).
    let proxy_router = Router::new()
        .fallback(proxy::handle)
        .with_state(proxy_state.clone())
        .layer(counted);

    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let proxy_listener = bind(server.listen).await?;
    let proxy_addr = proxy_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: server.listen,
            source,
        })?;
    let api_router_copy = api_router.clone();
    let limits = ConnLimits {
        header_read_timeout: server.header_read_timeout,
        max_connections: server.max_connections,
        max_header_bytes: server.max_header_bytes,
        grace: SHUTDOWN_GRACE,
    };
    let failures = &server_failures;
    let mut servers = Vec::new();
    let api_addr = match server.api_listen {
        Some(addr) => {
            let api_listener = bind(addr).await?;
            let api_addr = api_listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            let stop = shutdown_rx.clone();
            servers.push(serve(
                "api",
                api_listener,
                Dispatch::api(api_router),
                limits,
                stop,
                failures,
            ));
            servers.push(serve(
                "proxy",
                proxy_listener,
                Dispatch::proxy(proxy_state, metrics.clone(), None),
                limits,
                shutdown_rx,
                failures,
            ));
            api_addr
        }
        None => {
            let both = api_router.merge(proxy_router);
            servers.push(serve(
                "proxy and api",
                proxy_listener,
                Dispatch::proxy(proxy_state, metrics.clone(), Some(both)),
                limits,
                shutdown_rx,
                failures,
            ));
            proxy_addr
        }
    };
    bench.set_target(crate::bench::Target {
        proxy: local_url(proxy_addr),
        api: local_url(api_addr),
        token: bench_token,
    });
    let upstreams: Vec<&str> = fleet.hosts().iter().map(|h| h.url()).collect();
    tracing::info!(%proxy_addr, %api_addr, upstream = %upstreams.join(", "), db = %location.describe(), %instance, "ollameter listening");
    Ok(Running {
        proxy_addr,
        api_addr,
        recorder,
        telemetry,
        fleet,
        api_router: api_router_copy,
        alerts: alerts_board,
        alerts_task,
        bench,
        shutdown,
        servers,
        recorder_task,
        otel_task,
    })
}

/// Every upstream with its own telemetry, and the fleet over them (not started). The
/// first upstream, and any on this machine's loopback, see this machine's processes and
/// GPUs (as one upstream always did); another machine's are not visible from here.
fn start_fleet(
    proxy: &crate::proxy::ProxyConfig,
    telemetry: &crate::telemetry::TelemetryConfig,
) -> Result<crate::fleet::Fleet, StartError> {
    let client = if telemetry.enabled {
        Some(
            reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(proxy.connect_timeout)
                .build()
                .map_err(|e| {
                    StartError::Config(format!("cannot build the telemetry client: {e}"))
                })?,
        )
    } else {
        None
    };
    let telemetries = proxy
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, upstream)| {
            let Some(client) = &client else {
                return Telemetry::disabled();
            };
            let config = crate::telemetry::TelemetryConfig {
                upstream: upstream.url.clone(),
                ..telemetry.clone()
            };
            if i == 0 || crate::fleet::is_loopback(&upstream.url) {
                Telemetry::start_default(config, client.clone())
            } else {
                let remote = crate::fleet::NotVisible(upstream.name.clone());
                Telemetry::start(
                    config,
                    client.clone(),
                    Box::new(remote.clone()),
                    Box::new(remote),
                )
            }
        })
        .collect();
    // `proxy.kind` is the first upstream's kind (as with one upstream, it is what sets it).
    let mut upstreams = proxy.upstreams.clone();
    if let Some(first) = upstreams.first_mut() {
        first.kind = proxy.kind;
    }
    Ok(crate::fleet::Fleet::new(
        &upstreams,
        telemetries,
        proxy.health,
    ))
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

/// What one listener serves. The proxied paths go straight into the proxy's pipeline
/// (no router, no middleware: the data plane's cost is its own), counted as the API's
/// requests are; the API's paths (`/api/model-performance/...`, `/metrics`,
/// `/dashboard`) go through the API's router.
#[derive(Clone)]
struct Dispatch {
    inner: Arc<Serves>,
}

/// The two kinds of listener.
enum Serves {
    /// The API only (its own address).
    Api(Router),
    /// The proxy, counted in `metrics`; with `api`, the API's paths too (its router, with
    /// the proxy as its fallback).
    Proxy {
        state: ProxyState,
        metrics: Arc<Metrics>,
        api: Option<Router>,
    },
}

impl Dispatch {
    /// A listener of the API only.
    fn api(router: Router) -> Dispatch {
        Dispatch {
            inner: Arc::new(Serves::Api(router)),
        }
    }

    /// A listener of the proxy, and of the API's paths when `api` is given.
    fn proxy(state: ProxyState, metrics: Arc<Metrics>, api: Option<Router>) -> Dispatch {
        Dispatch {
            inner: Arc::new(Serves::Proxy {
                state,
                metrics,
                api,
            }),
        }
    }

    /// Answers one request.
    fn call(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = axum::response::Response> + Send + use<> {
        let inner = self.inner.clone();
        async move {
            let request = request.map(axum::body::Body::new);
            let router = match &*inner {
                Serves::Api(router) => router,
                Serves::Proxy {
                    api: Some(router), ..
                } if is_api_path(request.uri().path()) => router,
                Serves::Proxy { state, metrics, .. } => {
                    let class = crate::metrics::endpoint_class(
                        request.method().as_str(),
                        request.uri().path(),
                    );
                    let response =
                        proxy::handle(axum::extract::State(state.clone()), request).await;
                    metrics.observe_request(class, response.status().as_u16());
                    return response;
                }
            };
            use tower::ServiceExt;
            match router.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    }
}

/// Whether a path may be one of the API's (its prefix, `/metrics`, `/dashboard`): those
/// go through the API's router, which forwards what it does not serve.
fn is_api_path(path: &str) -> bool {
    path == "/metrics"
        || path == "/dashboard"
        || path
            .strip_prefix(api::BASE)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
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

/// Serves until the shutdown signal, then gives open calls the grace period to finish. A
/// listener whose accept loop panics or ends before the signal is logged and noted for
/// `/health`: the sidecar no longer serves on it.
fn serve(
    what: &'static str,
    listener: TcpListener,
    dispatch: Dispatch,
    limits: ConnLimits,
    shutdown: watch::Receiver<bool>,
    failures: &ServerFailures,
) -> (&'static str, JoinHandle<()>) {
    let failures = failures.clone();
    let stopping = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = AssertUnwindSafe(crate::serve::serve(
            listener,
            move |request| dispatch.call(request),
            limits,
            shutdown,
        ))
        .catch_unwind()
        .await;
        let why = match served {
            Err(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
            Ok(()) if !*stopping.borrow() => "its accept loop ended".to_string(),
            Ok(()) => return,
        };
        tracing::error!(listener = what, error = %why, "a listener stopped serving");
        failures.push(format!("{what} listener stopped: {why}"));
    });
    (what, task)
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
