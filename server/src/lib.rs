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
pub mod risk;
pub mod secrets;
pub mod storage;
pub mod window;
pub mod worker;

use std::net::SocketAddr;
use std::time::Duration;

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

/// Serves the HTTP API on `listener` and runs the background workers
/// (challenge expiry, result delivery) until stopped.
pub fn start(app: App, listener: TcpListener) -> std::io::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let (shutdown, rx) = watch::channel(false);
    let router = http::router(app.clone());
    let mut http_rx = rx.clone();
    let server = tokio::spawn(async move {
        let graceful = async move {
            let _ = http_rx.wait_for(|stop| *stop).await;
        };
        // Small answers go out at once, never held back for an ACK (Nagle).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(graceful).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    let callbacks = tokio::spawn(flows::callbacks::run_worker(app.clone(), rx.clone()));
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

/// Timers, as a sweep over the database: pushes unanswered past their
/// deadline fall back to a code; challenges past their expiry end; so do
/// challenges whose window never opened or went idle.
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
    })
    .await
}
