//! The result of a challenge, sent to the requestor as an RReq-shaped JSON
//! POST to the AReq's notificationURL, signed with HMAC-SHA-256 under the
//! requestor's callback secret, retried with exponential backoff, every
//! attempt recorded. Jobs live in the database so a restart (or another
//! node) picks up what is due.

use std::time::Duration;

use ring::hmac;

use crate::app::App;
use crate::emv::{ChallengeCancel, MessageCategory, MessageVersion, RReq, TransStatus, TransStatusReason};
use crate::error::ApiError;
use crate::flows::admin;
use crate::secrets::constant_time_eq;
use crate::storage::{Authentication, CallbackAttempt, CallbackJob, CallbackNext, NewCallback};
use crate::worker;

/// Header carrying `t=<ms>,v1=<hex HMAC-SHA-256 of "<t>.<body>">`, with a
/// second `v1` while a rotated callback secret's overlap lasts.
pub const SIGNATURE_HEADER: &str = "x-countersign-signature";
/// How long a claimed job stays hidden from other workers.
const LEASE_MS: i64 = 60_000;

/// The RReq for an authentication that has just ended; `cancel` says why
/// a challenge stopped short (EMV `challengeCancel`).
pub fn result_callback(a: &Authentication, cancel: Option<ChallengeCancel>) -> NewCallback {
    let status = match a.trans_status.as_str() {
        "Y" => TransStatus::Authenticated,
        "R" => TransStatus::Rejected,
        "U" => TransStatus::Unavailable,
        _ => TransStatus::NotAuthenticated,
    };
    let version = MessageVersion::parse(&a.message_version).unwrap_or(MessageVersion::V2_2_0);
    let category = MessageCategory::parse(&a.message_category).unwrap_or(MessageCategory::Payment);
    let parse_uuid = |s: &str| uuid::Uuid::parse_str(s).unwrap_or_default();
    let mut rreq = RReq::new(version, parse_uuid(&a.ds_trans_id), parse_uuid(&a.acs_trans_id), status, 1, category);
    if let Some(reason) = a.trans_status_reason.as_deref().and_then(TransStatusReason::parse) {
        rreq = rreq.with_reason(reason);
    }
    if let (Some(value), Some(eci)) = (&a.authentication_value, &a.eci) {
        rreq = rreq.with_authentication(value.clone(), eci.clone());
    }
    if let Some(cancel) = cancel {
        rreq = rreq.with_challenge_cancel(cancel);
    }
    NewCallback {
        acs_trans_id: a.acs_trans_id.clone(),
        requestor_id: a.requestor_id.clone(),
        url: a.notification_url.clone(),
        body: serde_json::to_string(&rreq).expect("an RReq serialises"),
    }
}

/// The signature header value for `body` sent at `timestamp_ms`: one `v1`
/// per secret, the current one first (then, during a rotation's overlap,
/// the previous one, so a requestor verifying with either accepts it).
pub fn sign(secrets: &[String], timestamp_ms: i64, body: &str) -> String {
    let mut header = format!("t={timestamp_ms}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac(secret, timestamp_ms, body).as_ref()));
    }
    header
}

/// What a requestor does with the header: the signing time if any `v1` in
/// it is valid for `body` under `secret` (checking its age is theirs).
pub fn verify(secret: &str, header: &str, body: &str) -> Option<i64> {
    let mut parts = header.split(',');
    let t: i64 = parts.next()?.strip_prefix("t=")?.parse().ok()?;
    let expected = hex::encode(mac(secret, t, body).as_ref());
    parts
        .filter_map(|p| p.strip_prefix("v1="))
        .fold(false, |found, v1| constant_time_eq(v1.as_bytes(), expected.as_bytes()) | found)
        .then_some(t)
}

fn mac(secret: &str, timestamp_ms: i64, body: &str) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::sign(&key, format!("{timestamp_ms}.{body}").as_bytes())
}

/// Callbacks one worker sends at once: each is a request to a requestor's
/// server, which may be slow to answer (up to `callbacks.request_timeout_ms`).
const SENDS_AT_ONCE: usize = 64;

/// Takes up to `n` due callbacks, leased to this worker.
async fn claim(app: &App, n: usize) -> Result<Vec<CallbackJob>, ApiError> {
    let now = app.now_ms();
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    Ok(app.storage.claim_callbacks(now, now + LEASE_MS, n).await?)
}

/// Sends one callback and records the attempt. A failure of ours (the
/// database) is logged; the lease runs out and the callback goes again.
async fn send(app: App, job: CallbackJob) {
    if let Err(e) = deliver(&app, job).await {
        tracing::warn!(error = %e, "a result callback could not be sent or recorded");
    }
}

/// Sends every due callback (up to a worker's [`SENDS_AT_ONCE`]) side by
/// side, once, and waits for them; returns how many were attempted.
pub async fn deliver_due(app: &App) -> Result<usize, ApiError> {
    let jobs = claim(app, SENDS_AT_ONCE).await?;
    let count = jobs.len();
    let mut sends: tokio::task::JoinSet<()> = jobs.into_iter().map(|job| send(app.clone(), job)).collect();
    while sends.join_next().await.is_some() {}
    Ok(count)
}

async fn deliver(app: &App, job: CallbackJob) -> Result<(), ApiError> {
    let sent_at = app.now_ms();
    let secrets = match app.storage.requestor(&job.requestor_id).await? {
        Some(requestor) => admin::callback_secrets(app, &requestor, sent_at)?,
        None => Vec::new(),
    };
    let response = app
        .http
        .post(&job.url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, sign(&secrets, sent_at, &job.body))
        .body(job.body.clone())
        .send()
        .await;
    let attempt_no = job.attempts + 1;
    let (http_status, error) = match response {
        Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
        Ok(r) => (Some(r.status().as_u16()), Some(format!("HTTP {}", r.status().as_u16()))),
        // The error names the host, never the body.
        Err(e) => (None, Some(describe(&e))),
    };
    let next = if error.is_none() {
        CallbackNext::Delivered
    } else if attempt_no >= app.config.callbacks.max_attempts {
        CallbackNext::GiveUp
    } else {
        CallbackNext::RetryAt(
            app.now_ms()
                + worker::backoff_ms(
                    app.config.callbacks.initial_backoff_ms,
                    attempt_no,
                    app.config.callbacks.max_backoff_ms,
                ),
        )
    };
    if let Some(e) = &error {
        tracing::warn!(acs_trans_id = %job.acs_trans_id, attempt = attempt_no, error = %e, "result callback failed");
    }
    let attempt = CallbackAttempt { attempt: attempt_no, at: sent_at, http_status, error };
    app.storage.record_callback_attempt(&job, &attempt, next).await?;
    crate::metrics::result_callback(match next {
        CallbackNext::Delivered => "delivered",
        CallbackNext::RetryAt(_) => "retried",
        CallbackNext::GiveUp => "failed",
    });
    Ok(())
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// Sends result callbacks as they come due, until `shutdown` fires.
pub async fn run_worker(app: App, shutdown: tokio::sync::watch::Receiver<bool>) {
    let interval = Duration::from_millis(app.config.callbacks.poll_interval_ms.max(10));
    let app = &app;
    let claim = |n| claim(app, n);
    let send = |job| send(app.clone(), job);
    worker::work_queue("result callbacks", SENDS_AT_ONCE, interval, &app.wake.callbacks, shutdown, claim, send).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_time_and_body() {
        let k = ["k".to_owned()];
        let a = sign(&k, 1, "{}");
        assert!(a.starts_with("t=1,v1="));
        assert_ne!(a, sign(&k, 2, "{}"));
        assert_ne!(a, sign(&k, 1, "{ }"));
        assert_ne!(a, sign(&["j".to_owned()], 1, "{}"));
        assert_eq!(verify("k", &a, "{}"), Some(1));
        assert_eq!(verify("k", &a, "{ }"), None);
        assert_eq!(verify("j", &a, "{}"), None);
        assert_eq!(verify("k", &a.replace("t=1", "t=2"), "{}"), None);
    }

    #[test]
    fn during_an_overlap_either_secret_verifies() {
        let header = sign(&["new".to_owned(), "old".to_owned()], 7, "{}");
        assert_eq!(header.matches(",v1=").count(), 2);
        assert_eq!(verify("new", &header, "{}"), Some(7));
        assert_eq!(verify("old", &header, "{}"), Some(7));
        assert_eq!(verify("other", &header, "{}"), None);
        assert_eq!(verify("new", "v1=00,t=7", "{}"), None);
    }
}
