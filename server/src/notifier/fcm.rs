//! Firebase Cloud Messaging, HTTP v1 API: `POST
//! /v1/projects/{project}/messages:send` with an OAuth 2.0 access token
//! from the service account (a JWT-bearer grant signed RS256, scope
//! `firebase.messaging`, audience the token endpoint).
//!
//! Android gets a data message at high priority — the app posts the
//! notification itself, on its own channel — with a time to live of the
//! challenge's remaining life. An iOS device reached through Firebase gets
//! the same alert as from APNs directly. The access token is kept until
//! shortly before it expires, fetched by one push while others wait for it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use countersign_core::protocol::Platform;
use reqwest::header::RETRY_AFTER;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::apns::notification_payload;
use super::dispatch::{Attempt, ProviderClient, Push};
use super::jwt::SigningKey;
use super::metrics::{Provider, ProviderMetrics, PushMetrics};
use super::retry::parse_retry_after;
use super::{describe, provider_http_client};
use crate::clock::Clock;

pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Largest message sent; FCM's limit for a data payload.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Google accepts assertions valid for an hour at most.
const ASSERTION_LIFETIME_SECS: i64 = 3600;
/// Renew an access token this long before it expires (or at half its
/// life, if that is shorter), so no request goes out with a dying one.
const RENEW_BEFORE_EXPIRY_MS: i64 = 5 * 60_000;

pub struct FcmSettings {
    pub key: SigningKey,
    /// `private_key_id`, sent as the assertion's `kid` when known.
    pub key_id: Option<String>,
    pub client_email: String,
    /// Where the grant is POSTed.
    pub token_url: String,
    /// The assertion's `aud`: the service account's `token_uri`.
    pub audience: String,
    pub send_url: String,
    /// For iOS devices reached through Firebase.
    pub category: String,
}

pub struct FcmClient {
    http: reqwest::Client,
    settings: FcmSettings,
    access: tokio::sync::Mutex<Option<AccessToken>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<PushMetrics>,
}

#[derive(Clone)]
struct AccessToken {
    value: String,
    renew_at_ms: i64,
}

/// The `messages:send` body: the challenge id and its expiry as data,
/// nothing about the card or the purchase.
pub fn message(push: &Push, now_ms: i64, category: &str) -> Value {
    let payload = &push.payload;
    let mut message = json!({ "token": push.token, "data": payload.to_map() });
    match push.platform {
        Platform::Android => {
            let ttl_secs = (payload.expires_at - now_ms).max(0) / 1000;
            message["android"] = json!({ "priority": "HIGH", "ttl": format!("{ttl_secs}s") });
        }
        Platform::Ios => {
            message["apns"] = json!({
                "headers": {
                    "apns-priority": "10",
                    "apns-push-type": "alert",
                    "apns-expiration": (payload.expires_at / 1000).to_string(),
                    "apns-collapse-id": payload.challenge_id,
                },
                "payload": notification_payload(payload, category),
            });
        }
    }
    json!({ "message": message })
}

impl FcmClient {
    pub fn new(
        settings: FcmSettings,
        timeout: Duration,
        clock: Arc<dyn Clock>,
        metrics: Arc<PushMetrics>,
    ) -> Result<Self, String> {
        let client = Self {
            http: provider_http_client("FCM", timeout)?,
            settings,
            access: tokio::sync::Mutex::new(None),
            clock,
            metrics,
        };
        // Proves the key signs before the server starts.
        client.assertion(0)?;
        Ok(client)
    }

    fn counters(&self) -> &ProviderMetrics {
        self.metrics.provider(Provider::Fcm)
    }

    fn assertion(&self, now_ms: i64) -> Result<String, String> {
        let iat = now_ms.div_euclid(1000);
        let claims = json!({
            "iss": self.settings.client_email,
            "scope": SCOPE,
            "aud": self.settings.audience,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECS,
        });
        let mut header = vec![("typ", "JWT")];
        if let Some(kid) = &self.settings.key_id {
            header.push(("kid", kid));
        }
        self.settings.key.sign(&header, &claims)
    }

    /// The cached access token, unless it is due for renewal or is the one
    /// FCM just refused (`refused`); else a new one.
    async fn access_token(&self, refused: Option<&str>) -> Result<String, Attempt> {
        let mut cached = self.access.lock().await;
        let now = self.clock.now_ms();
        if let Some(token) = cached.as_ref()
            && now < token.renew_at_ms
            && refused != Some(token.value.as_str())
        {
            return Ok(token.value.clone());
        }
        let token = self.fetch_access_token(now).await?;
        *cached = Some(token.clone());
        Ok(token.value)
    }

    async fn fetch_access_token(&self, now_ms: i64) -> Result<AccessToken, Attempt> {
        let assertion = self.assertion(now_ms).map_err(Attempt::Misconfigured)?;
        ProviderMetrics::count(&self.counters().requests);
        let started = Instant::now();
        let sent = self
            .http
            .post(&self.settings.token_url)
            .form(&[("grant_type", GRANT_TYPE), ("assertion", &assertion)])
            .send()
            .await;
        let result = match sent {
            Err(e) => Err(Attempt::Transient {
                reason: format!("cannot reach the OAuth token endpoint: {}", describe(&e)),
                retry_after: None,
            }),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = self.retry_after(&response);
                match response.bytes().await {
                    Ok(body) => parse_token_answer(status, &body, retry_after),
                    Err(e) => Err(Attempt::Transient {
                        reason: format!("OAuth token answer cut short: {}", describe(&e)),
                        retry_after: None,
                    }),
                }
            }
        };
        self.counters().request_latency.observe(started.elapsed());
        let (value, lifetime_ms) = result?;
        ProviderMetrics::count(&self.counters().credential_refreshes);
        let renew_at_ms = now_ms + lifetime_ms - RENEW_BEFORE_EXPIRY_MS.min(lifetime_ms / 2);
        Ok(AccessToken { value, renew_at_ms })
    }

    fn retry_after(&self, response: &reqwest::Response) -> Option<Duration> {
        let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
        parse_retry_after(value, self.clock.now_ms())
    }

    async fn post(&self, body: &str, access_token: &str) -> Answer {
        ProviderMetrics::count(&self.counters().requests);
        let started = Instant::now();
        let sent = self
            .http
            .post(&self.settings.send_url)
            .bearer_auth(access_token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .send()
            .await;
        let answer = match sent {
            Err(e) => Answer::Done(Attempt::Transient {
                reason: format!("cannot reach FCM: {}", describe(&e)),
                retry_after: None,
            }),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = self.retry_after(&response);
                match response.bytes().await {
                    Ok(bytes) => classify(status, &bytes, retry_after),
                    Err(e) => Answer::Done(Attempt::Transient {
                        reason: format!("FCM answer cut short: {}", describe(&e)),
                        retry_after: None,
                    }),
                }
            }
        };
        self.counters().request_latency.observe(started.elapsed());
        answer
    }
}

#[async_trait]
impl ProviderClient for FcmClient {
    fn kind(&self) -> Provider {
        Provider::Fcm
    }

    async fn send(&self, push: &Push) -> Attempt {
        let body = message(push, self.clock.now_ms(), &self.settings.category).to_string();
        if body.len() > MAX_MESSAGE_BYTES {
            return Attempt::Misconfigured(format!("FCM message of {} bytes exceeds {MAX_MESSAGE_BYTES}", body.len()));
        }
        let token = match self.access_token(None).await {
            Ok(t) => t,
            Err(attempt) => return attempt,
        };
        match self.post(&body, &token).await {
            Answer::Done(attempt) => attempt,
            Answer::Unauthenticated(_) => {
                let fresh = match self.access_token(Some(&token)).await {
                    Ok(t) => t,
                    Err(attempt) => return attempt,
                };
                match self.post(&body, &fresh).await {
                    Answer::Done(attempt) => attempt,
                    Answer::Unauthenticated(text) => {
                        Attempt::Misconfigured(format!("{text} (with an access token just issued)"))
                    }
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Done(Attempt),
    /// Our access token was refused: fetch another once.
    Unauthenticated(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Status,
}

#[derive(Deserialize, Default)]
struct Status {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl Status {
    /// The FCM-specific `ErrorCode`, when there is one.
    fn fcm_error_code(&self) -> Option<&str> {
        self.details.iter().find_map(|d| {
            let is_fcm = d.get("@type").and_then(Value::as_str).is_some_and(|t| t.ends_with("fcm.v1.FcmError"));
            if is_fcm { d.get("errorCode").and_then(Value::as_str) } else { None }
        })
    }

    /// Whether the complaint is about the registration token, not about
    /// another part of the message.
    fn about_the_token(&self) -> bool {
        let field_is_token = self.details.iter().any(|d| {
            d.get("fieldViolations")
                .and_then(Value::as_array)
                .is_some_and(|v| v.iter().any(|f| f.get("field").and_then(Value::as_str) == Some("message.token")))
        });
        field_is_token || self.message.to_ascii_lowercase().contains("registration token")
    }
}

/// What an FCM status and error body mean for this push.
pub fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> Answer {
    if status == 200 {
        return Answer::Done(Attempt::Delivered);
    }
    let error = serde_json::from_slice::<ErrorBody>(body).map(|b| b.error).unwrap_or_default();
    let code = error.fcm_error_code().unwrap_or(&error.status).to_owned();
    let text = format!("FCM {status} {code}: {}", error.message);
    let attempt = match code.as_str() {
        "UNREGISTERED" => Attempt::TokenRejected(text),
        "INVALID_ARGUMENT" if error.about_the_token() => Attempt::TokenRejected(text),
        "SENDER_ID_MISMATCH" | "THIRD_PARTY_AUTH_ERROR" | "INVALID_ARGUMENT" => Attempt::Misconfigured(text),
        "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL" => Attempt::Transient { reason: text, retry_after },
        _ => match status {
            401 => return Answer::Unauthenticated(text),
            429 | 500..=599 => Attempt::Transient { reason: text, retry_after },
            _ => Attempt::Misconfigured(text),
        },
    };
    Answer::Done(attempt)
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: i64,
}

/// An access token and its lifetime in milliseconds, or why there is none.
fn parse_token_answer(status: u16, body: &[u8], retry_after: Option<Duration>) -> Result<(String, i64), Attempt> {
    if status == 200 {
        return match serde_json::from_slice::<TokenAnswer>(body) {
            Ok(t) if !t.access_token.is_empty() && t.expires_in > 0 => Ok((t.access_token, t.expires_in * 1000)),
            _ => Err(Attempt::Transient {
                reason: "the OAuth token endpoint answered 200 without an access token".into(),
                retry_after: None,
            }),
        };
    }
    let error = serde_json::from_slice::<Value>(body).unwrap_or_default();
    let field = |name: &str| error.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let text = format!("OAuth token endpoint {status} {}: {}", field("error"), field("error_description"));
    match status {
        429 | 500..=599 => Err(Attempt::Transient { reason: text, retry_after }),
        _ => Err(Attempt::Misconfigured(format!("the service account was refused: {text}"))),
    }
}

#[cfg(test)]
mod tests {
    use countersign_core::protocol::wire::PushPayload;

    use super::*;

    fn push(platform: Platform) -> Push {
        Push {
            device_id: "d1".into(),
            token: "fcm-token:APA91b".into(),
            platform,
            payload: PushPayload { challenge_id: "c-1".into(), expires_at: 1_700_000_300_000 },
            notification_id: "n1".into(),
        }
    }

    #[test]
    fn android_gets_a_high_priority_data_message_living_as_long_as_the_challenge() {
        let m = message(&push(Platform::Android), 1_700_000_000_500, "CAT");
        assert_eq!(
            m,
            json!({"message": {
                "token": "fcm-token:APA91b",
                "data": {"cs_type": "challenge", "cs_challenge": "c-1", "cs_expires": "1700000300000"},
                "android": {"priority": "HIGH", "ttl": "299s"},
            }})
        );
        let late = message(&push(Platform::Android), 1_700_000_400_000, "CAT");
        assert_eq!(late["message"]["android"]["ttl"], "0s");
    }

    #[test]
    fn ios_through_firebase_gets_the_apns_alert() {
        let m = message(&push(Platform::Ios), 1_700_000_000_000, "CAT");
        let apns = &m["message"]["apns"];
        assert_eq!(apns["headers"]["apns-push-type"], "alert");
        assert_eq!(apns["headers"]["apns-expiration"], "1700000300");
        assert_eq!(apns["payload"]["aps"]["category"], "CAT");
        assert_eq!(apns["payload"]["cs_challenge"], "c-1");
        assert!(m["message"].get("android").is_none());
    }

    fn error(status: &str, message: &str, details: Value) -> Vec<u8> {
        json!({"error": {"code": 0, "message": message, "status": status, "details": details}}).to_string().into_bytes()
    }

    fn fcm_error(code: &str) -> Value {
        json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}])
    }

    #[test]
    fn each_answer_is_classified() {
        let is = |a: Answer, f: fn(&Attempt) -> bool| matches!(a, Answer::Done(ref x) if f(x));
        let token_rejected = |a: &Attempt| matches!(a, Attempt::TokenRejected(_));
        let misconfigured = |a: &Attempt| matches!(a, Attempt::Misconfigured(_));
        let transient = |a: &Attempt| matches!(a, Attempt::Transient { .. });

        assert_eq!(classify(200, b"{\"name\":\"projects/p/messages/1\"}", None), Answer::Done(Attempt::Delivered));
        let unregistered = error("NOT_FOUND", "Requested entity was not found.", fcm_error("UNREGISTERED"));
        assert!(is(classify(404, &unregistered, None), token_rejected));
        let bad_token = error(
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            fcm_error("INVALID_ARGUMENT"),
        );
        assert!(is(classify(400, &bad_token, None), token_rejected));
        let bad_field = error(
            "INVALID_ARGUMENT",
            "Invalid value at 'message.data[0].value'",
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message.data[0].value", "description": "x"}]}]),
        );
        assert!(is(classify(400, &bad_field, None), misconfigured));
        let token_field = error(
            "INVALID_ARGUMENT",
            "Invalid value",
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message.token", "description": "x"}]}]),
        );
        assert!(is(classify(400, &token_field, None), token_rejected));
        let mismatch = error("PERMISSION_DENIED", "SenderId mismatch", fcm_error("SENDER_ID_MISMATCH"));
        assert!(is(classify(403, &mismatch, None), misconfigured));
        let apns_auth = error("UNAUTHENTICATED", "Auth error from APNS", fcm_error("THIRD_PARTY_AUTH_ERROR"));
        assert!(is(classify(401, &apns_auth, None), misconfigured), "401 from APNs behind FCM is not our token");
        let wait = Some(Duration::from_secs(7));
        let quota = error("RESOURCE_EXHAUSTED", "quota", fcm_error("QUOTA_EXCEEDED"));
        assert_eq!(
            classify(429, &quota, wait),
            Answer::Done(Attempt::Transient { reason: "FCM 429 QUOTA_EXCEEDED: quota".into(), retry_after: wait })
        );
        assert!(is(classify(503, &error("UNAVAILABLE", "", fcm_error("UNAVAILABLE")), None), transient));
        assert!(is(classify(500, &error("INTERNAL", "", fcm_error("INTERNAL")), None), transient));
        assert!(is(classify(502, b"<html>bad gateway</html>", None), transient));
        let expired = error("UNAUTHENTICATED", "Request had invalid authentication credentials.", json!([]));
        assert!(matches!(classify(401, &expired, None), Answer::Unauthenticated(_)));
        let denied = error("PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied", json!([]));
        assert!(is(classify(403, &denied, None), misconfigured));
        let no_project = error("NOT_FOUND", "Requested entity was not found.", json!([]));
        assert!(is(classify(404, &no_project, None), misconfigured), "a wrong project is not a dead token");
    }

    #[test]
    fn token_endpoint_answers() {
        let ok = json!({"access_token": "ya29.x", "expires_in": 3599, "token_type": "Bearer"}).to_string();
        assert_eq!(parse_token_answer(200, ok.as_bytes(), None), Ok(("ya29.x".into(), 3_599_000)));
        assert!(matches!(parse_token_answer(200, b"{}", None), Err(Attempt::Transient { .. })));
        let grant = json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}).to_string();
        match parse_token_answer(400, grant.as_bytes(), None) {
            Err(Attempt::Misconfigured(text)) => {
                assert!(text.contains("invalid_grant: Invalid JWT Signature."), "{text}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_token_answer(503, b"", None), Err(Attempt::Transient { .. })));
    }
}
