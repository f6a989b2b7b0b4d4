//! Countersign's server: decides when a purchase needs the cardholder,
//! pushes the challenge to their phone, verifies the signed answer and
//! reports the result. See `docs/architecture.md`.

pub mod app;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod emv;
pub mod error;
pub mod flows;
pub mod http;
pub mod metrics;
pub mod notifier;
pub mod requestor_keys;
pub mod risk;
pub mod secrets;
pub mod storage;
pub mod tls;
pub mod window;
pub mod worker;

use std::net::SocketAddr;
use std::time::Duration;

use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use app::App;

/// A server running in this process: its address and a way to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `GET /metrics` is served, when `metrics.enabled`.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, stops the workers.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Resolves when a stop was asked for (e.g. by a signal handler).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Serves the HTTP API on `listener` (HTTPS when `server.tls` is set) and
/// runs the background workers (challenge expiry, result delivery) until
/// stopped.
pub fn start(app: App, listener: TcpListener) -> std::io::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let (shutdown, rx) = watch::channel(false);
    let listener = listener.into_std()?;
    let tls = match &app.config.server.tls {
        Some(tls) => {
            let serving = tls::rustls_config(tls).map_err(std::io::Error::other)?;
            tls::reload_on_hangup(tls.clone(), serving.clone());
            Some(serving)
        }
        None => None,
    };
    let server = tokio::spawn(serve_http(app.clone(), listener, tls, rx.clone()));
    let callbacks = tokio::spawn(seal_then_deliver_callbacks(app.clone(), rx.clone()));
    let codes = tokio::spawn(flows::codes::run_delivery_worker(app.clone(), rx.clone()));
    let mut tasks = vec![server, callbacks, codes];
    let mut metrics_addr = None;
    if app.config.metrics.enabled {
        let listener = std::net::TcpListener::bind(app.config.metrics.listen)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        metrics_addr = Some(listener.local_addr()?);
        tasks.push(tokio::spawn(metrics::serve(listener, rx.clone())));
    }
    tasks.push(tokio::spawn(run_sweeper(app, rx)));
    Ok(RunningServer { addr, metrics_addr, shutdown, tasks })
}

/// Serves until a stop is asked for, then stops accepting and gives the
/// requests in flight `server.shutdown_grace_secs` to finish (a window's
/// long poll would otherwise hold the stop for its whole wait).
async fn serve_http(
    app: App,
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let handle = axum_server::Handle::new();
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    let stopper = handle.clone();
    tokio::spawn(async move {
        let _ = stop.wait_for(|stop| *stop).await;
        stopper.graceful_shutdown(Some(grace));
    });
    let service = http::router(app).into_make_service();
    // Small answers go out at once, never held back for an ACK (Nagle).
    let result = match (axum_server::from_tcp(listener), tls) {
        (Ok(server), Some(tls)) => {
            let acceptor = RustlsAcceptor::new(tls).acceptor(NoDelayAcceptor);
            server.acceptor(acceptor).handle(handle).serve(service).await
        }
        (Ok(server), None) => server.acceptor(NoDelayAcceptor).handle(handle).serve(service).await,
        (Err(e), _) => Err(e),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// Seals any callback secret an earlier version stored in the clear (a
/// copy of the database then holds none) or under a previous master key,
/// then delivers result callbacks.
/// Sealing is tried once: a secret still in the clear keeps working, and
/// the next start seals it.
async fn seal_then_deliver_callbacks(app: App, shutdown: watch::Receiver<bool>) {
    match flows::admin::seal_callback_secrets(&app).await {
        Ok(done) if done == flows::admin::SealedSecrets::default() => {}
        Ok(done) => tracing::info!(
            sealed = done.sealed,
            resealed = done.resealed,
            "sealed callback secrets kept in the clear by an earlier version or under a previous master key"
        ),
        Err(e) => tracing::warn!(error = %e, "could not bring the sealed callback secrets up to date"),
    }
    flows::callbacks::run_worker(app, shutdown).await
}

/// Timers, as a sweep over the database: pushes unanswered past their
/// deadline fall back to a code; challenges past their expiry end; so do
/// challenges whose window never opened or went idle; device nonces too
/// old to make a replay are forgotten.
async fn run_sweeper(app: App, shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(app.config.challenge.sweep_interval_ms.max(10));
    worker::repeat(interval, shutdown, || async {
        if let Err(e) = flows::codes::fall_back_unanswered_pushes(&app).await {
            tracing::warn!(error = %e, "push fallback sweep failed");
        }
        if let Err(e) = flows::challenges::expire_due(&app).await {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
        if let Err(e) = window::sweep(&app).await {
            tracing::warn!(error = %e, "challenge window timer sweep failed");
        }
        if let Err(e) = flows::device_auth::forget_old_nonces(&app).await {
            tracing::warn!(error = %e, "forgetting old device nonces failed");
        }
    })
    .await
}
