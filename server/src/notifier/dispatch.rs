//! The notifier the server runs with when a provider is configured: routes
//! each device to its platform's provider and drives one push to its end.
//!
//! An AReq waits for the push while it is sending the ARes, so the wait is
//! short ([`Timing::inline_wait`]). Everything a provider says quickly is
//! answered inline: accepted, the token refused (the caller marks the
//! device unreachable and sends a code at once), our configuration refused
//! (a code at once, and an error in the logs), or no time left to retry (a
//! code at once). A push still being retried when the wait ends carries on
//! in the background until it is accepted, refused, or the challenge
//! expires or ends; the caller treats it as sent, and the challenge's push
//! deadline (`codes.push_timeout_secs`) sends the code if it stays
//! unanswered — so every failure falls back within that bound. What the
//! background learns later it records itself: a refused token marks the
//! device unreachable, and every failure is audited.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::protocol::Platform;
use countersign_core::protocol::wire::PushPayload;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::metrics::{Provider, ProviderMetrics, PushMetrics};
use super::retry::Backoff;
use super::{Notifier, NotifyError, OutboxNotifier};
use crate::clock::Clock;
use crate::storage::{AuditEvent, ChallengeState, Device, Storage};

/// One push to one device, as the providers need it.
pub struct Push {
    pub device_id: String,
    pub token: String,
    pub platform: Platform,
    pub payload: PushPayload,
    /// Stays the same across retries, so the provider's logs join them.
    pub notification_id: String,
}

/// What one try at a provider came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// The provider will not deliver to this token again.
    TokenRejected(String),
    /// Worth another try: 429, 5xx, a network failure or timeout.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Our side is wrong — key, topic, project, permissions, the request
    /// itself. Retrying cannot help; an operator has to.
    Misconfigured(String),
}

#[async_trait]
pub trait ProviderClient: Send + Sync + 'static {
    fn kind(&self) -> Provider;
    /// One try, including at most one renewal of the credential when the
    /// provider calls it expired.
    async fn send(&self, push: &Push) -> Attempt;
}

pub enum Route {
    Outbox,
    Provider(Arc<dyn ProviderClient>),
}

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub inline_wait: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

pub struct PushNotifier {
    ios: Route,
    android: Route,
    outbox: OutboxNotifier,
    shared: Arc<Shared>,
}

struct Shared {
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    metrics: Arc<PushMetrics>,
    timing: Timing,
}

/// How a push ended, as the caller hears it.
#[derive(Debug)]
enum Verdict {
    Delivered,
    TokenRejected(String),
    Failed(String),
}

impl PushNotifier {
    pub fn new(
        ios: Route,
        android: Route,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        metrics: Arc<PushMetrics>,
        timing: Timing,
    ) -> Self {
        let outbox = OutboxNotifier::new(storage.clone());
        Self { ios, android, outbox, shared: Arc::new(Shared { storage, clock, metrics, timing }) }
    }
}

#[async_trait]
impl Notifier for PushNotifier {
    async fn notify(&self, device: &Device, payload: &PushPayload, now_ms: i64) -> Result<(), NotifyError> {
        let platform: Platform = device
            .platform
            .parse()
            .map_err(|_| NotifyError::Failed(format!("no push provider for platform {:?}", device.platform)))?;
        let provider = match (platform, &self.ios, &self.android) {
            (Platform::Ios, Route::Outbox, _) | (Platform::Android, _, Route::Outbox) => {
                return self.outbox.notify(device, payload, now_ms).await;
            }
            (Platform::Ios, Route::Provider(p), _) | (Platform::Android, _, Route::Provider(p)) => p.clone(),
        };
        let token = device
            .push_token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| NotifyError::Failed("the device has no push token".into()))?;
        let life = payload.expires_at - now_ms;
        if life <= 0 {
            return Err(NotifyError::Failed("the challenge has expired".into()));
        }
        let push = Push {
            device_id: device.id.clone(),
            token,
            platform,
            payload: payload.clone(),
            notification_id: uuid::Uuid::new_v4().to_string(),
        };
        let deadline = Instant::now() + Duration::from_millis(life.unsigned_abs());
        let (tx, mut rx) = oneshot::channel();
        tokio::spawn(drive(self.shared.clone(), provider, push, deadline, tx));

        let verdict = match tokio::time::timeout(self.shared.timing.inline_wait, &mut rx).await {
            Ok(Ok(verdict)) => Some(verdict),
            Ok(Err(_)) => Some(Verdict::Failed("the push task stopped without an outcome".into())),
            Err(_) => {
                // Closing first means the task either sent already (and the
                // verdict is here) or will learn that nobody listens.
                rx.close();
                rx.try_recv().ok()
            }
        };
        match verdict {
            Some(Verdict::Delivered) => Ok(()),
            Some(Verdict::TokenRejected(reason)) => Err(NotifyError::TokenRejected(reason)),
            Some(Verdict::Failed(reason)) => Err(NotifyError::Failed(reason)),
            None => {
                tracing::info!(
                    device_id = %device.id,
                    challenge_id = %payload.challenge_id,
                    "push not accepted yet; retrying in the background"
                );
                Ok(())
            }
        }
    }
}

/// Tries, and retries, one push until it ends; reports to the waiting
/// caller, or records the outcome itself once the caller has moved on.
async fn drive(
    shared: Arc<Shared>,
    provider: Arc<dyn ProviderClient>,
    push: Push,
    deadline: Instant,
    report: oneshot::Sender<Verdict>,
) {
    let kind = provider.kind();
    let metrics = shared.metrics.provider(kind);
    let started = Instant::now();
    let mut backoff = Backoff::new(shared.timing.initial_backoff, shared.timing.max_backoff);
    let verdict = loop {
        match provider.send(&push).await {
            Attempt::Delivered => {
                ProviderMetrics::count(&metrics.delivered);
                metrics.delivery_latency.observe(started.elapsed());
                break Verdict::Delivered;
            }
            Attempt::TokenRejected(reason) => {
                ProviderMetrics::count(&metrics.token_rejected);
                break Verdict::TokenRejected(reason);
            }
            Attempt::Misconfigured(reason) => {
                ProviderMetrics::count(&metrics.misconfigured);
                tracing::error!(
                    provider = kind.as_str(),
                    device_id = %push.device_id,
                    error = %reason,
                    "push refused for a configuration error: check the [push] settings and the provider account; \
                     cardholders get one-time codes meanwhile"
                );
                break Verdict::Failed(reason);
            }
            Attempt::Transient { reason, retry_after } => {
                let Some(wait) = backoff.next_wait(retry_after, Instant::now(), deadline) else {
                    ProviderMetrics::count(&metrics.gave_up);
                    break Verdict::Failed(format!("{reason}; the challenge expires before another try"));
                };
                ProviderMetrics::count(&metrics.retries);
                tracing::warn!(
                    provider = kind.as_str(),
                    device_id = %push.device_id,
                    error = %reason,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "push failed; retrying"
                );
                tokio::time::sleep(wait).await;
                if challenge_ended(&shared, &push.payload.challenge_id).await {
                    ProviderMetrics::count(&metrics.abandoned);
                    break Verdict::Failed("the challenge ended before the push went out".into());
                }
            }
        }
    };
    if let Err(verdict) = report.send(verdict) {
        record_late_outcome(&shared, kind, &push, verdict).await;
    }
}

/// Whether the challenge was answered or closed while a retry waited. A
/// challenge this node cannot read is assumed open: retrying is harmless.
async fn challenge_ended(shared: &Shared, challenge_id: &str) -> bool {
    matches!(shared.storage.challenge(challenge_id).await, Ok(Some(c)) if c.state != ChallengeState::Pending)
}

/// What the caller would have done, had it still been waiting: a refused
/// token makes the device unreachable; a failure is audited. The code
/// fallback itself comes from the challenge's push deadline.
async fn record_late_outcome(shared: &Shared, kind: Provider, push: &Push, verdict: Verdict) {
    let reason = match verdict {
        Verdict::Delivered => {
            tracing::info!(provider = kind.as_str(), device_id = %push.device_id, "push accepted after retries");
            return;
        }
        Verdict::TokenRejected(reason) => {
            if let Err(e) = shared.storage.mark_push_unreachable(&push.device_id, shared.clock.now_ms()).await {
                tracing::warn!(error = %e, "could not mark a device unreachable");
            }
            NotifyError::TokenRejected(reason)
        }
        Verdict::Failed(reason) => NotifyError::Failed(reason),
    };
    tracing::warn!(provider = kind.as_str(), device_id = %push.device_id, error = %reason, "push failed");
    let mut audit = AuditEvent::new(shared.clock.now_ms(), "push.failed", "system".into(), "failed");
    if let Ok(Some(challenge)) = shared.storage.challenge(&push.payload.challenge_id).await {
        audit.card_id = Some(challenge.card_id);
        audit.acs_trans_id = Some(challenge.acs_trans_id);
    }
    audit.challenge_id = Some(push.payload.challenge_id.clone());
    audit.device_id = Some(push.device_id.clone());
    audit.detail = serde_json::json!({ "error": reason.to_string(), "provider": kind.as_str() });
    if let Err(e) = shared.storage.append_audit(&audit).await {
        tracing::warn!(error = %e, "could not audit a failed push");
    }
}
