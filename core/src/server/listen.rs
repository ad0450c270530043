//! The accept loop: HTTP/1.1 and HTTP/2 (h2c, prior knowledge) on one port, so that a remote
//! client can carry all of its calls and long polls on one connection (`RemoteEngine` does:
//! `remote/transport.rs`). axum's own `serve` caps an HTTP/2 connection at hyper's default of
//! 200 concurrent streams, which would queue a process's 201st long poll behind the others;
//! this loop sets the cap to [`MAX_STREAMS_PER_CONNECTION`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tower_service::Service;

/// How many requests one HTTP/2 connection may have open at once: each waiting long poll is
/// one, so a process's waits (100,000 from one process is a use we support) must fit.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1 << 20;

/// Serves `app` on `listener` until `shutdown` completes, then lets every open connection
/// finish what it has in flight (HTTP/2: GOAWAY; HTTP/1.1: close after the response).
pub(super) async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        // Long-poll answers can arrive by the thousand at once: a wider window than the
        // 64 KB default lets them flow without a round trip per window.
        .initial_connection_window_size(4 << 20)
        .adaptive_window(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: say so, pause, go on (a
                    // per-connection error such as a reset before accept is not worth a log).
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) {
                        tracing::error!(error = %e, "inloop: cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
            let mut app = app.clone();
            async move {
                let resp = app.call(req.map(axum::body::Body::new)).await;
                Ok::<_, Infallible>(resp.unwrap_or_else(|never| match never {}))
            }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "inloop: connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
