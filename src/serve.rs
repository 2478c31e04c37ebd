//! The accept loop both listeners run: HTTP/1.1 connections with a deadline for reading
//! request headers (a slow client cannot hold a connection forever), a cap on concurrent
//! connections, the peer address on every request (for the loopback rule of the
//! destructive routes), and a graceful stop that cuts what is still open after a grace
//! period and waits for it, so every cut call is still recorded.
//!
//! The loop calls a plain handler (a function from request to response), with no tower
//! layers between hyper and it: the wiring decides per request whether it goes to the
//! API's router or straight into the proxy's pipeline.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Longest wait for a request's headers, from the first byte of a request (or the
    /// connection's start) to the end of its headers.
    pub header_read_timeout: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Largest request head (line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// How long open calls may finish after the stop signal before they are cut.
    pub grace: Duration,
}

/// Serves `handler` on `listener` until `stop` turns true, then stops gracefully. Every
/// request carries its peer's address (`ConnectInfo`) as an extension.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) where
    H: Fn(hyper::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, don't spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, max = limits.max_connections, "connection cap reached: connection closed");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let answer = handler(request);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_read_timeout)
                    .max_buf_size(limits.max_header_bytes.max(8192));
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.grace) => {
            tracing::warn!(open = connections.len(), "grace period over: cutting the calls still open");
        }
    }
    // Cut what is left and wait for it: a cut call's record is written as it unwinds.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The client's address, as the accept loop recorded it.
pub fn peer(request: &axum::extract::Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}
