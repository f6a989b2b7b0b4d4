//! Apple Push Notification service, provider API over HTTP/2:
//! `POST /3/device/<token>` with a token-based (ES256 JWT) authorization.
//!
//! The alert is generic and localized on the phone (`loc-key`), so the
//! notification says only that a purchase waits for approval; the app
//! fetches merchant and amount over the signed channel. The provider token
//! is reused for 50 minutes — APNs refuses tokens older than an hour and
//! answers `TooManyProviderTokenUpdates` to a server that renews more often
//! than every 20 minutes — and renewed early only when APNs calls it
//! expired, and then only if it is at least 20 minutes old.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::protocol::wire::PushPayload;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::dispatch::{Attempt, ProviderClient, Push};
use super::jwt::SigningKey;
use super::metrics::{Provider, ProviderMetrics, PushMetrics};
use super::retry::parse_retry_after;
use super::{describe, provider_http_client};
use crate::clock::Clock;

/// Largest payload APNs accepts for a regular notification.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Keys of the app's `Localizable.strings` for the alert's title and body.
pub const TITLE_LOC_KEY: &str = "COUNTERSIGN_CHALLENGE_TITLE";
pub const BODY_LOC_KEY: &str = "COUNTERSIGN_CHALLENGE_BODY";
/// How long one provider token is used.
pub const TOKEN_REUSE_MS: i64 = 50 * 60_000;
/// The least time between two provider tokens.
pub const TOKEN_MIN_REFRESH_MS: i64 = 20 * 60_000;

pub struct ApnsSettings {
    pub key: SigningKey,
    pub key_id: String,
    pub team_id: String,
    pub topic: String,
    pub base_url: String,
    pub category: String,
}

pub struct ApnsClient {
    http: reqwest::Client,
    base_url: String,
    topic: String,
    category: String,
    tokens: ProviderTokens,
    clock: Arc<dyn Clock>,
    metrics: Arc<PushMetrics>,
}

/// The `aps` dictionary and Countersign's keys: the challenge id and its
/// expiry, nothing about the card or the purchase.
pub fn notification_payload(payload: &PushPayload, category: &str) -> Value {
    let mut body = json!({
        "aps": {
            "alert": { "title-loc-key": TITLE_LOC_KEY, "loc-key": BODY_LOC_KEY },
            "category": category,
            "mutable-content": 1,
            "sound": "default",
        }
    });
    let custom = body.as_object_mut().expect("an object");
    for (key, value) in payload.to_map() {
        custom.insert(key, Value::String(value));
    }
    body
}

impl ApnsClient {
    pub fn new(
        settings: ApnsSettings,
        timeout: Duration,
        clock: Arc<dyn Clock>,
        metrics: Arc<PushMetrics>,
    ) -> Result<Self, String> {
        Ok(Self {
            http: provider_http_client("APNs", timeout)?,
            base_url: settings.base_url,
            topic: settings.topic,
            category: settings.category,
            tokens: ProviderTokens::new(settings.key, settings.key_id, settings.team_id)?,
            clock,
            metrics,
        })
    }

    fn counters(&self) -> &ProviderMetrics {
        self.metrics.provider(Provider::Apns)
    }

    async fn post(&self, push: &Push, body: &[u8], token: &ProviderToken) -> Answer {
        ProviderMetrics::count(&self.counters().requests);
        let started = Instant::now();
        let request = self
            .http
            .post(format!("{}/3/device/{}", self.base_url, push.token))
            .header(AUTHORIZATION, format!("bearer {}", token.jwt))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", (push.payload.expires_at / 1000).to_string())
            .header("apns-collapse-id", &push.payload.challenge_id)
            .header("apns-id", &push.notification_id)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        let answer = match request.send().await {
            Err(e) => transient(format!("cannot reach APNs: {}", describe(&e.without_url())), None),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, self.clock.now_ms()));
                match response.bytes().await {
                    Ok(bytes) => classify(status, &bytes, retry_after),
                    Err(e) => transient(format!("APNs answer cut short: {}", describe(&e.without_url())), None),
                }
            }
        };
        self.counters().request_latency.observe(started.elapsed());
        answer
    }
}

#[async_trait]
impl ProviderClient for ApnsClient {
    fn kind(&self) -> Provider {
        Provider::Apns
    }

    async fn send(&self, push: &Push) -> Attempt {
        if push.token.is_empty() || !push.token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Attempt::TokenRejected("not an APNs device token (expected hexadecimal)".into());
        }
        let body = notification_payload(&push.payload, &self.category).to_string();
        if body.len() > MAX_PAYLOAD_BYTES {
            return Attempt::Misconfigured(format!("APNs payload of {} bytes exceeds {MAX_PAYLOAD_BYTES}", body.len()));
        }
        let token = match self.tokens.current(self.clock.now_ms(), self.counters()) {
            Ok(t) => t,
            Err(e) => return Attempt::Misconfigured(e),
        };
        match self.post(push, body.as_bytes(), &token).await {
            Answer::Done(attempt) => attempt,
            Answer::ExpiredProviderToken => {
                match self.tokens.replace_expired(&token, self.clock.now_ms(), self.counters()) {
                    Ok(Some(fresh)) => match self.post(push, body.as_bytes(), &fresh).await {
                        Answer::Done(attempt) => attempt,
                        Answer::ExpiredProviderToken => Attempt::Misconfigured(
                            "APNs 403 ExpiredProviderToken for a token just made: check the server's clock".into(),
                        ),
                    },
                    Ok(None) => Attempt::Misconfigured(
                        "APNs 403 ExpiredProviderToken for a token less than 20 minutes old, which may not be \
                         renewed yet: check the server's clock"
                            .into(),
                    ),
                    Err(e) => Attempt::Misconfigured(e),
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Done(Attempt),
    ExpiredProviderToken,
}

fn transient(reason: String, retry_after: Option<Duration>) -> Answer {
    Answer::Done(Attempt::Transient { reason, retry_after })
}

/// What an APNs status and `reason` mean for this push.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> Answer {
    if status == 200 {
        return Answer::Done(Attempt::Delivered);
    }
    let reason = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let text = format!("APNs {status} {reason}").trim_end().to_owned();
    match (status, reason.as_str()) {
        (403, "ExpiredProviderToken") => Answer::ExpiredProviderToken,
        (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => Answer::Done(Attempt::TokenRejected(text)),
        (429 | 500..=599, _) => transient(text, retry_after),
        _ => Answer::Done(Attempt::Misconfigured(text)),
    }
}

/// The provider token in use, with when it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderToken {
    pub jwt: String,
    pub issued_at_ms: i64,
}

pub struct ProviderTokens {
    key: SigningKey,
    key_id: String,
    team_id: String,
    cached: Mutex<Option<ProviderToken>>,
}

impl ProviderTokens {
    /// Signs one token to prove the key works before the server starts.
    fn new(key: SigningKey, key_id: String, team_id: String) -> Result<Self, String> {
        let tokens = Self { key, key_id, team_id, cached: Mutex::new(None) };
        tokens.mint(0)?;
        Ok(tokens)
    }

    fn mint(&self, now_ms: i64) -> Result<ProviderToken, String> {
        let claims = json!({ "iss": self.team_id, "iat": now_ms.div_euclid(1000) });
        let jwt = self.key.sign(&[("kid", &self.key_id)], &claims)?;
        Ok(ProviderToken { jwt, issued_at_ms: now_ms })
    }

    /// The cached token while it is younger than 50 minutes, else a new one.
    pub fn current(&self, now_ms: i64, metrics: &ProviderMetrics) -> Result<ProviderToken, String> {
        let mut cached = self.cached.lock().expect("token cache poisoned");
        if let Some(token) = cached.as_ref()
            && now_ms - token.issued_at_ms < TOKEN_REUSE_MS
        {
            return Ok(token.clone());
        }
        let token = self.mint(now_ms)?;
        ProviderMetrics::count(&metrics.credential_refreshes);
        *cached = Some(token.clone());
        Ok(token)
    }

    /// After APNs called `stale` expired: the token to retry with, or
    /// `None` when renewing now would break the 20-minute rule. A token
    /// another push renewed meanwhile is used as it is.
    pub fn replace_expired(
        &self,
        stale: &ProviderToken,
        now_ms: i64,
        metrics: &ProviderMetrics,
    ) -> Result<Option<ProviderToken>, String> {
        let mut cached = self.cached.lock().expect("token cache poisoned");
        if let Some(token) = cached.as_ref() {
            if token != stale {
                return Ok(Some(token.clone()));
            }
            if now_ms - token.issued_at_ms < TOKEN_MIN_REFRESH_MS {
                return Ok(None);
            }
        }
        let token = self.mint(now_ms)?;
        ProviderMetrics::count(&metrics.credential_refreshes);
        *cached = Some(token.clone());
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifier::jwt::tests::p256_pem;

    fn payload() -> PushPayload {
        PushPayload { challenge_id: "0b6e1c2a-8f7c-4a53-9d0e-1f2a3b4c5d6e".into(), expires_at: 1_700_000_300_123 }
    }

    #[test]
    fn the_payload_is_generic_and_small() {
        let body = notification_payload(&payload(), "COUNTERSIGN_CHALLENGE");
        assert_eq!(
            body,
            json!({
                "aps": {
                    "alert": { "title-loc-key": TITLE_LOC_KEY, "loc-key": BODY_LOC_KEY },
                    "category": "COUNTERSIGN_CHALLENGE",
                    "mutable-content": 1,
                    "sound": "default",
                },
                "cs_type": "challenge",
                "cs_challenge": "0b6e1c2a-8f7c-4a53-9d0e-1f2a3b4c5d6e",
                "cs_expires": "1700000300123",
            })
        );
        assert!(body.to_string().len() < 400);
        // What the app reads back is exactly what was sent.
        let map = body
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect();
        assert_eq!(PushPayload::from_map(&map), Some(payload()));
    }

    #[test]
    fn each_answer_is_classified() {
        let reason = |r: &str| format!("{{\"reason\":\"{r}\"}}").into_bytes();
        let token_rejected = |a: Answer| matches!(a, Answer::Done(Attempt::TokenRejected(_)));
        let misconfigured = |a: Answer| matches!(a, Answer::Done(Attempt::Misconfigured(_)));
        assert_eq!(classify(200, b"", None), Answer::Done(Attempt::Delivered));
        assert!(token_rejected(classify(410, &reason("Unregistered"), None)));
        assert!(token_rejected(classify(410, &reason("ExpiredToken"), None)));
        assert!(token_rejected(classify(400, &reason("BadDeviceToken"), None)));
        assert!(token_rejected(classify(400, &reason("DeviceTokenNotForTopic"), None)));
        assert_eq!(classify(403, &reason("ExpiredProviderToken"), None), Answer::ExpiredProviderToken);
        for r in ["InvalidProviderToken", "MissingProviderToken", "BadCertificateEnvironment", "Forbidden"] {
            assert!(misconfigured(classify(403, &reason(r), None)), "{r}");
        }
        for r in ["BadTopic", "TopicDisallowed", "BadExpirationDate", "BadCollapseId", "PayloadEmpty"] {
            assert!(misconfigured(classify(400, &reason(r), None)), "{r}");
        }
        assert!(misconfigured(classify(413, &reason("PayloadTooLarge"), None)));
        assert!(misconfigured(classify(404, &reason("BadPath"), None)));
        let wait = Some(Duration::from_secs(3));
        assert_eq!(
            classify(429, &reason("TooManyRequests"), wait),
            Answer::Done(Attempt::Transient { reason: "APNs 429 TooManyRequests".into(), retry_after: wait })
        );
        for (status, r) in [(500, "InternalServerError"), (503, "ServiceUnavailable"), (503, "Shutdown")] {
            assert!(matches!(classify(status, &reason(r), None), Answer::Done(Attempt::Transient { .. })), "{r}");
        }
        // No JSON body at all (a proxy's error page): the status decides.
        assert!(matches!(classify(502, b"<html>", None), Answer::Done(Attempt::Transient { .. })));
    }

    #[test]
    fn provider_tokens_are_reused_for_50_minutes_and_renewed_at_most_every_20() {
        let key = SigningKey::es256_from_pem(&p256_pem().0).unwrap();
        let tokens = ProviderTokens::new(key, "ABC123DEFG".into(), "TEAM123456".into()).unwrap();
        let metrics = ProviderMetrics::default();
        let minute = 60_000;
        let t0 = 1_700_000_000_000;
        let first = tokens.current(t0, &metrics).unwrap();
        assert_eq!(tokens.current(t0 + 49 * minute, &metrics).unwrap(), first);
        let second = tokens.current(t0 + 50 * minute, &metrics).unwrap();
        assert_ne!(second, first);
        assert_eq!(second.issued_at_ms, t0 + 50 * minute);

        // Called expired 10 minutes after it was made: too soon to renew.
        assert_eq!(tokens.replace_expired(&second, t0 + 60 * minute, &metrics).unwrap(), None);
        // 20 minutes after: renewed, once — a second caller holding the
        // stale token gets the renewed one rather than renewing again.
        let third = tokens.replace_expired(&second, t0 + 70 * minute, &metrics).unwrap().unwrap();
        assert_eq!(third.issued_at_ms, t0 + 70 * minute);
        assert_eq!(tokens.replace_expired(&second, t0 + 71 * minute, &metrics).unwrap(), Some(third.clone()));
        assert_eq!(tokens.current(t0 + 71 * minute, &metrics).unwrap(), third);
        assert_eq!(metrics.snapshot().credential_refreshes, 3);
    }
}
