//! Push delivery sits behind [`Notifier`] so the real APNs and FCM clients
//! can replace the default without touching the flows.

use std::sync::Arc;

use async_trait::async_trait;
use countersign_core::protocol::wire::PushPayload;

use crate::storage::{Device, Storage, StorageError};

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
