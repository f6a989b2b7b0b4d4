//! Push delivery sits behind [`Notifier`] so the real APNs and FCM clients
//! can replace the default without touching the flows.
//!
//! The `[push]` table ([`PushConfig`]) picks a provider per platform: the
//! [`OutboxNotifier`] by default, or APNs and FCM (`dispatch.rs`), which
//! retry what is worth retrying and report what is not, so a challenge
//! falls back to a one-time code at once or within the push deadline.
//! Outcomes and latencies per provider are in [`metrics()`].

mod apns;
mod config;
mod dispatch;
mod fcm;
mod jwt;
mod metrics;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::protocol::wire::PushPayload;

use crate::error::describe_chain as describe;
use crate::storage::{Device, Storage, StorageError};

pub use apns::{BODY_LOC_KEY, TITLE_LOC_KEY};
pub use config::{ApnsConfig, ApnsEnvironment, FcmConfig, PushConfig, PushProvider};
pub use metrics::{
    HistogramSnapshot, LATENCY_BUCKETS_MS, Provider, ProviderMetrics, ProviderSnapshot, PushMetrics,
    PushMetricsSnapshot, metrics,
};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The provider refused the device's token: it will not reach the
    /// device again until the app reports a new one.
    #[error("push token rejected by the provider: {0}")]
    TokenRejected(String),
    /// Anything else: the provider or the network failed this time.
    #[error("push delivery failed: {0}")]
    Failed(String),
}

impl From<StorageError> for NotifyError {
    fn from(e: StorageError) -> Self {
        NotifyError::Failed(e.to_string())
    }
}

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Sends one push to one device. The payload carries only the
    /// challenge id and its expiry, never card or purchase details.
    ///
    /// `Ok` means the provider accepted the push or is still being retried
    /// in the background (the challenge's push deadline then covers the
    /// fallback); an error means the caller should fall back now.
    async fn notify(&self, device: &Device, payload: &PushPayload, now_ms: i64) -> Result<(), NotifyError>;
}

/// The default: records each push in the database's outbox, where the
/// admin API (`GET /v1/admin/pushes`) and tests can read it.
pub struct OutboxNotifier {
    storage: Arc<dyn Storage>,
}

impl OutboxNotifier {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage }
    }
}

#[async_trait]
impl Notifier for OutboxNotifier {
    async fn notify(&self, device: &Device, payload: &PushPayload, now_ms: i64) -> Result<(), NotifyError> {
        let map = serde_json::to_value(payload.to_map()).expect("a string map serialises");
        self.storage.enqueue_push(&device.id, &payload.challenge_id, &map, now_ms).await?;
        Ok(())
    }
}

/// One HTTP/2 client per provider: APNs speaks nothing else, and FCM is
/// faster over one multiplexed connection. Idle connections stay open and
/// are kept alive with pings, as Apple asks of providers.
fn provider_http_client(name: &str, timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .http2_keep_alive_interval(Duration::from_secs(60))
        .http2_keep_alive_while_idle(true)
        .pool_idle_timeout(None)
        .timeout(timeout)
        // A redirect would send the credentials somewhere else.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("{name}: cannot set up the HTTP client: {e}"))
}
