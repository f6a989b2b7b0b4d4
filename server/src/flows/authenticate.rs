//! An AReq arrives: find the card, ask the risk engine, and answer
//! frictionless (Y), challenge (C, with a push to the cardholder's devices)
//! or no (N/R) — with the reasons stored beside the result.

use countersign_core::protocol::wire::PushPayload;
use uuid::Uuid;

use crate::app::App;
use crate::emv::{
    AReq, ARes, AuthenticationType, ChallengeIndicator, EmvError, TransStatus, TransStatusReason, parse_areq,
};
use crate::flows::codes::{self, Fallback};
use crate::flows::{authentication_value, challenges, rekey};
use crate::notifier::NotifyError;
use crate::risk::{CardHistory, LowValueTally, RiskInput, assess};
use crate::secrets::Purpose;
use crate::storage::{
    AuditEvent, Authentication, Card, CardActivity, Challenge, Device, HistoryQuery, NewAuthentication, Rekeyed,
    Requestor, StorageError,
};

/// Where browsers post their CReq (the challenge window).
pub const CHALLENGE_PATH: &str = "/challenge";

pub async fn authenticate(app: &App, requestor: &Requestor, body: &[u8]) -> Result<ARes, EmvError> {
    let areq = parse_areq(body)?;
    let echo = |e: EmvError| {
        e.with_three_ds_server_trans_id(areq.three_ds_server_trans_id).with_message_version(areq.message_version)
    };
    if areq.three_ds_requestor_id != requestor.id {
        return Err(echo(EmvError::access_denied("threeDSRequestorID")));
    }
    let transient = |e: StorageError| echo(EmvError::transient(e.to_string()));
    let now = app.now_ms();
    let acs_trans_id = crate::secrets::time_ordered_id(now);
    // The card, its history and its devices in one read.
    let history = history_query(app, &areq, now);
    let found = rekey::find(
        app,
        Purpose::CardNumber,
        areq.acct_number.as_str().as_bytes(),
        Rekeyed::PanHash,
        |hash| async move { app.storage.card_for_purchase(&hash, &history).await },
    )
    .await
    .map_err(transient)?;
    let card = found.as_ref().map(|f| &f.card);

    let mut record = new_record(&areq, acs_trans_id, card.map(|c| c.id.clone()), now);
    let mut challenge: Option<Challenge> = None;
    let mut devices = Vec::new();
    match screen(&areq, card) {
        Some((status, reason, code)) => refuse(&mut record, status, reason, code),
        None => {
            let found = found.expect("screen() refuses unknown cards");
            let card = &found.card;
            let assessment = assess(&app.config.risk, &risk_input(&areq, &found.activity));
            record.reasons = assessment.reasons.iter().map(|r| r.as_str().to_owned()).collect();
            if !assessment.is_challenge() {
                record.trans_status = TransStatus::Authenticated.as_str().into();
                record.low_value_exempt = assessment.grants_low_value_exemption();
                record.authentication_value = Some(authentication_value::compute(&app.secrets, &record));
                record.eci = Some(authentication_value::ECI_AUTHENTICATED.into());
            } else {
                devices = found.devices;
                let mut c = challenges::new_challenge(app, &record, &card.id, now);
                if devices.iter().any(Device::pushable) {
                    c.push_deadline = Some(now + app.config.codes.push_timeout_secs as i64 * 1000);
                }
                record.trans_status = TransStatus::Challenge.as_str().into();
                record.challenge_id = Some(c.id.clone());
                challenge = Some(c);
            }
        }
    }

    let mut audit =
        AuditEvent::new(now, "authentication.decided", format!("requestor:{}", requestor.id), &record.trans_status);
    audit.card_id = record.card_id.clone();
    audit.acs_trans_id = Some(record.acs_trans_id.clone());
    audit.challenge_id = record.challenge_id.clone();
    audit.detail = serde_json::json!({ "reasons": record.reasons, "transStatusReason": record.trans_status_reason });
    let new = NewAuthentication { authentication: record.clone(), challenge: challenge.clone(), audit };
    match app.storage.record_authentication(&new).await {
        Ok(()) => {
            crate::metrics::authentication(&record.trans_status, record.reasons.first().map_or("none", String::as_str))
        }
        Err(StorageError::Conflict(_)) => {
            return Err(echo(EmvError::transaction_data_invalid(
                "threeDSServerTransID",
                "already used by this requestor",
            )));
        }
        Err(e) => return Err(transient(e)),
    }
    if let Some(c) = &challenge {
        reach_cardholder(app, c, &devices).await;
    }
    Ok(ares(app, &areq, acs_trans_id, &record))
}

/// Refusals that need no risk assessment: unknown, blocked or expired card.
fn screen(areq: &AReq, card: Option<&Card>) -> Option<(TransStatus, TransStatusReason, &'static str)> {
    let Some(card) = card else {
        return Some((TransStatus::NotAuthenticated, TransStatusReason::NoCardRecord, "unknown_card"));
    };
    if card.blocked_at.is_some() {
        return Some((TransStatus::Rejected, TransStatusReason::TransactionNotPermitted, "card_blocked"));
    }
    if let (Some(expiry), Some(purchase)) = (areq.card_expiry_date, areq.purchase) {
        use chrono::Datelike;
        let (year, month) = (purchase.date.year(), purchase.date.month());
        if (i32::from(expiry.year()), u32::from(expiry.month)) < (year, month) {
            return Some((TransStatus::NotAuthenticated, TransStatusReason::ExpiredCard, "card_expired"));
        }
    }
    None
}

fn refuse(record: &mut Authentication, status: TransStatus, reason: TransStatusReason, code: &str) {
    record.trans_status = status.as_str().into();
    record.trans_status_reason = Some(reason.as_str().into());
    record.reasons.push(code.into());
}

fn new_record(areq: &AReq, acs_trans_id: Uuid, card_id: Option<String>, now: i64) -> Authentication {
    let (amount_minor, currency, exponent) =
        areq.purchase.map_or((0, 0, 0), |p| (p.amount, p.currency.numeric, p.exponent));
    Authentication {
        acs_trans_id: acs_trans_id.to_string(),
        ds_trans_id: areq.three_ds_server_trans_id.to_string(),
        requestor_id: areq.three_ds_requestor_id.clone(),
        card_id,
        message_version: areq.message_version.as_str().into(),
        message_category: areq.message_category.as_str().into(),
        amount_minor,
        currency,
        exponent,
        merchant_name: areq.merchant_name.clone(),
        merchant_id: areq.acquirer_merchant_id.clone(),
        notification_url: areq.notification_url.clone().unwrap_or_default(),
        trans_status: TransStatus::NotAuthenticated.as_str().into(),
        trans_status_reason: None,
        reasons: Vec::new(),
        low_value_exempt: false,
        authentication_value: None,
        eci: None,
        challenge_id: None,
        browser_language: areq.browser.as_ref().map(|b| b.language.clone()),
        browser_tz: areq.browser.as_ref().map(|b| b.tz_offset_minutes),
        created_at: now,
        updated_at: now,
    }
}

/// What the risk rules will ask of the card's history: each count only up
/// to the limit it is compared with.
fn history_query(app: &App, areq: &AReq, now: i64) -> HistoryQuery {
    let risk = &app.config.risk;
    HistoryQuery {
        currency: areq.purchase.map_or(0, |p| p.currency.numeric),
        recent_since: now - risk.velocity.window_secs as i64 * 1000,
        authenticated_up_to: risk.first_purchases_exempt,
        recent_up_to: risk.velocity.max_authentications,
    }
}

fn risk_input(areq: &AReq, activity: &CardActivity) -> RiskInput {
    let (amount_minor, currency) = areq.purchase.map_or((0, 0), |p| (p.amount, p.currency.numeric));
    RiskInput {
        amount_minor,
        currency,
        challenge_mandated_by_requestor: areq.three_ds_requestor_challenge_ind
            == Some(ChallengeIndicator::ChallengeMandated),
        history: CardHistory {
            previous_authentications: activity.authenticated,
            recent_authentications: activity.recent,
            low_value_since_challenge: LowValueTally {
                count: activity.low_value_count,
                sum_minor: activity.low_value_sum,
            },
        },
    }
}

/// Pushes to every device of the card that can take one, or falls back to
/// a one-time code at once when none can. The challenge is already stored,
/// so a failure here loses nothing: the app can still pull it, and the
/// code path still runs. Failures are logged and audited, not returned.
async fn reach_cardholder(app: &App, challenge: &Challenge, devices: &[Device]) {
    let fallback = if devices.is_empty() {
        Some(Fallback::NoDevice)
    } else if !devices.iter().any(Device::pushable) {
        Some(Fallback::NotificationsOff)
    } else {
        push_all(app, challenge, devices).await
    };
    if let Some(reason) = fallback
        && let Err(e) = codes::start(app, challenge, reason).await
    {
        tracing::warn!(challenge_id = %challenge.id, error = %e, "could not start the one-time code fallback");
    }
}

/// Sends the pushes; returns the fallback to take when none went out.
async fn push_all(app: &App, challenge: &Challenge, devices: &[Device]) -> Option<Fallback> {
    let payload = PushPayload { challenge_id: challenge.id.clone(), expires_at: challenge.expires_at };
    let (mut sent, mut rejected) = (0, 0);
    for device in devices.iter().filter(|d| d.pushable()) {
        let error = match app.notifier.notify(device, &payload, app.now_ms()).await {
            Ok(()) => {
                sent += 1;
                continue;
            }
            Err(e) => e,
        };
        tracing::warn!(device_id = %device.id, error = %error, "push failed");
        if let NotifyError::TokenRejected(_) = error {
            rejected += 1;
            // Until the app reports a new token, this device gets no pushes.
            if let Err(e) = app.storage.mark_push_unreachable(&device.id, app.now_ms()).await {
                tracing::warn!(error = %e, "could not mark a device unreachable");
            }
        }
        let mut audit = AuditEvent::new(app.now_ms(), "push.failed", "system".into(), "failed");
        audit.card_id = Some(challenge.card_id.clone());
        audit.challenge_id = Some(challenge.id.clone());
        audit.device_id = Some(device.id.clone());
        audit.detail = serde_json::json!({ "error": error.to_string() });
        if let Err(e) = app.storage.append_audit(&audit).await {
            tracing::warn!(error = %e, "could not audit a failed push");
        }
    }
    match (sent, rejected) {
        (0, r) if r > 0 => Some(Fallback::TokenRejected),
        (0, _) => Some(Fallback::PushFailed),
        _ => None,
    }
}

fn ares(app: &App, areq: &AReq, acs_trans_id: Uuid, record: &Authentication) -> ARes {
    let status = match record.trans_status.as_str() {
        "Y" => TransStatus::Authenticated,
        "C" => TransStatus::Challenge,
        "R" => TransStatus::Rejected,
        _ => TransStatus::NotAuthenticated,
    };
    let mut ares = ARes::for_areq(areq, acs_trans_id, app.config.issuer.acs_reference_number.clone(), status);
    if let Some(reason) = record.trans_status_reason.as_deref().and_then(TransStatusReason::parse) {
        ares = ares.with_reason(reason);
    }
    if let (Some(value), Some(eci)) = (&record.authentication_value, &record.eci) {
        ares = ares.with_authentication(value.clone(), eci.clone());
    }
    if status == TransStatus::Challenge {
        let url = format!("{}{CHALLENGE_PATH}", app.config.public_url());
        ares = ares.with_challenge(Some(url), true, AuthenticationType::OutOfBand);
    }
    ares
}
