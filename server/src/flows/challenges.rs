//! A challenge from creation to its one final outcome.
//!
//! However many devices answer, and whatever the expiry sweeper does at the
//! same moment, exactly one ending is applied: the storage's conditional
//! update on `state = 'pending'` decides, and the loser is told what won.

use axum::http::StatusCode;
use countersign_core::protocol::wire::{
    ChallengeOutcome, ChallengeView, DecisionReceipt, DecisionRequest, EnrolledCard, ErrorCode,
};
use countersign_core::protocol::{Decision, DecisionMessage, DenyReason, PublicKey, TransactionTerms, check_freshness};

use crate::app::App;
use crate::emv::{ChallengeCancel, TransStatus, TransStatusReason};
use crate::error::ApiError;
use crate::flows::{authentication_value, callbacks};
use crate::secrets::{random_below, random_bytes};
use crate::storage::{AuditEvent, Authentication, Challenge, ChallengeEnd, ChallengeState, Device, DeviceChallenge};

pub const NONCE_LEN: usize = 32;

/// A new pending challenge for an authentication. Number matching, when
/// the policy asks for it, picks a two-digit number for the checkout and
/// two different decoys for the app, in random order.
pub fn new_challenge(app: &App, a: &Authentication, card_id: &str, now: i64) -> Challenge {
    let (number_match, number_choices) = if app.config.challenge.number_match.applies(a.currency, a.amount_minor) {
        let mut choices: Vec<u8> = Vec::with_capacity(3);
        while choices.len() < 3 {
            let n = 10 + random_below(90) as u8;
            if !choices.contains(&n) {
                choices.push(n);
            }
        }
        let answer = choices[random_below(3) as usize];
        (Some(answer), Some(choices))
    } else {
        (None, None)
    };
    Challenge {
        id: crate::secrets::time_ordered_id(now).to_string(),
        acs_trans_id: a.acs_trans_id.clone(),
        card_id: card_id.to_owned(),
        nonce: random_bytes::<NONCE_LEN>().to_vec(),
        state: ChallengeState::Pending,
        number_match,
        number_choices,
        created_at: now,
        expires_at: now + app.config.challenge.expiry_secs as i64 * 1000,
        decided_at: None,
        decided_by_device: None,
        outcome_reason: None,
        push_deadline: None,
        fallback_reason: None,
    }
}

pub fn terms(a: &Authentication) -> TransactionTerms {
    TransactionTerms {
        amount_minor: a.amount_minor,
        currency: a.currency,
        exponent: a.exponent,
        merchant_name: a.merchant_name.clone(),
        requestor_id: a.requestor_id.clone(),
        merchant_id: a.merchant_id.clone(),
    }
}

/// The challenge as the device sees it; refused unless the device is
/// enrolled for its card.
async fn load(app: &App, device: &Device, challenge_id: &str) -> Result<DeviceChallenge, ApiError> {
    let found = app
        .storage
        .challenge_for_device(challenge_id, &device.id)
        .await?
        .ok_or_else(|| ApiError::not_found("challenge"))?;
    if !found.device_enrolled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::NotEnrolledForCard,
            "this device is not enrolled for the card",
        ));
    }
    Ok(found)
}

fn view(app: &App, found: DeviceChallenge) -> ChallengeView {
    let DeviceChallenge { challenge, authentication, card, requestor_name, .. } = found;
    ChallengeView {
        card: EnrolledCard {
            masked_pan: card.masked_pan(),
            card_id: card.id,
            issuer_name: app.config.issuer.name.clone(),
        },
        terms: terms(&authentication),
        requestor_name: requestor_name.unwrap_or_default(),
        created_at: challenge.created_at,
        expires_at: challenge.expires_at,
        challenge_id: challenge.id,
        nonce: challenge.nonce,
        number_choices: challenge.number_choices,
    }
}

/// One challenge, for a device enrolled for its card.
pub async fn show(app: &App, device: &Device, challenge_id: &str) -> Result<ChallengeView, ApiError> {
    Ok(view(app, load(app, device, challenge_id).await?))
}

/// Every challenge still open on the device's cards: the pull fallback for
/// a push that never arrived.
pub async fn pending(app: &App, device: &Device) -> Result<Vec<ChallengeView>, ApiError> {
    let open = app.storage.pending_challenges_for_device(&device.id, app.now_ms()).await?;
    Ok(open.into_iter().map(|found| view(app, found)).collect())
}

fn mismatch(code: ErrorCode, what: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, format!("the {what} does not match this purchase"))
}

/// Verifies and applies a cardholder's signed decision.
pub async fn decide(
    app: &App,
    device: &Device,
    challenge_id: &str,
    req: DecisionRequest,
) -> Result<DecisionReceipt, ApiError> {
    if req.challenge_id != challenge_id {
        return Err(mismatch(ErrorCode::ChallengeMismatch, "challenge id"));
    }
    let decision =
        req.decision().ok_or_else(|| ApiError::bad_request("a denial needs a denyReason; an approval has none"))?;
    let DeviceChallenge { challenge, authentication: auth, .. } = load(app, device, challenge_id).await?;

    let stored = terms(&auth);
    let checks = [
        (req.terms.amount_minor == stored.amount_minor, ErrorCode::AmountMismatch, "amount"),
        (req.terms.currency == stored.currency, ErrorCode::CurrencyMismatch, "currency"),
        (req.terms.exponent == stored.exponent, ErrorCode::ExponentMismatch, "currency exponent"),
        (req.terms.merchant_name == stored.merchant_name, ErrorCode::MerchantMismatch, "merchant"),
        (
            req.terms.requestor_id == stored.requestor_id && req.terms.merchant_id == stored.merchant_id,
            ErrorCode::RequestorMismatch,
            "requestor",
        ),
    ];
    if let Some((_, code, what)) = checks.into_iter().find(|(ok, _, _)| !ok) {
        return Err(mismatch(code, what));
    }
    if challenge.number_match.is_none() && req.number_match.is_some() {
        return Err(ApiError::bad_request("numberMatch: this challenge has no number to match"));
    }

    let now = app.now_ms();
    check_freshness(req.signed_at, now)?;
    // The signature is checked over the server's own record of the
    // purchase, so a device cannot approve terms other than these.
    let message = DecisionMessage {
        challenge_id: challenge.id.clone(),
        challenge_nonce: challenge.nonce.clone(),
        decision,
        terms: stored,
        device_id: device.id.clone(),
        signed_at_ms: req.signed_at,
        number_match: req.number_match,
    };
    PublicKey::from_sec1(&device.public_key)?.verify(&message.signed_bytes(), &req.signature)?;

    if challenge.state != ChallengeState::Pending {
        return Err(closed(challenge.state));
    }
    if challenge.expires_at <= now {
        finish(app, &challenge, &auth, Ending::Expired, now).await?;
        return Err(closed(ChallengeState::Expired));
    }
    let ending = match decision {
        Decision::Approve if challenge.number_match.is_some() && req.number_match != challenge.number_match => {
            Ending::NumberMismatch { device_id: device.id.clone() }
        }
        Decision::Approve => Ending::Approved { device_id: device.id.clone() },
        Decision::Deny(reason) => Ending::Denied { device_id: device.id.clone(), reason },
    };
    let state = ending.state();
    if !finish(app, &challenge, &auth, ending, now).await? {
        let now_state = app.storage.challenge(challenge_id).await?.map_or(ChallengeState::Expired, |c| c.state);
        return Err(closed(now_state));
    }
    let outcome = match state {
        ChallengeState::Approved => ChallengeOutcome::Approved,
        ChallengeState::Cancelled => ChallengeOutcome::Cancelled,
        _ => ChallengeOutcome::Denied,
    };
    Ok(DecisionReceipt { challenge_id: challenge.id, outcome, decided_at: now })
}

fn closed(state: ChallengeState) -> ApiError {
    match state {
        ChallengeState::Expired => {
            ApiError::new(StatusCode::GONE, ErrorCode::ChallengeExpired, "this challenge has expired")
        }
        _ => ApiError::conflict(ErrorCode::AlreadyDecided, "this challenge was already answered"),
    }
}

/// How a challenge ends.
#[derive(Debug, Clone)]
pub enum Ending {
    Approved {
        device_id: String,
    },
    Denied {
        device_id: String,
        reason: DenyReason,
    },
    /// Approved, but with a number other than the one the checkout showed:
    /// treated as a denial.
    NumberMismatch {
        device_id: String,
    },
    /// The cardholder typed the right one-time code.
    CodeVerified,
    /// Too many wrong codes: the card is blocked.
    CardBlocked,
    /// A resend was asked for after the code expired: the purchase must
    /// start again.
    CodeExpired,
    Expired,
    /// No CReq arrived in time after the ARes: the window never opened.
    CReqTimeout,
    /// The window was open but the cardholder did nothing for too long.
    WindowInactive,
    /// The cardholder pressed Cancel in the window.
    WindowCancelled,
}

impl Ending {
    fn state(&self) -> ChallengeState {
        match self {
            Ending::Approved { .. } | Ending::CodeVerified => ChallengeState::Approved,
            // The cardholder made the purchase but called it off.
            Ending::Denied { reason: DenyReason::Cancelled, .. } | Ending::WindowCancelled => ChallengeState::Cancelled,
            Ending::Denied { .. } | Ending::NumberMismatch { .. } | Ending::CardBlocked => ChallengeState::Denied,
            Ending::Expired | Ending::CodeExpired | Ending::CReqTimeout | Ending::WindowInactive => {
                ChallengeState::Expired
            }
        }
    }

    fn reason_code(&self) -> &'static str {
        match self {
            Ending::Approved { .. } => "approved",
            Ending::Denied { reason: DenyReason::NotMe, .. } => "not_me",
            Ending::Denied { reason: DenyReason::Cancelled, .. } => "cancelled",
            Ending::NumberMismatch { .. } => "number_mismatch",
            Ending::CodeVerified => "code_verified",
            Ending::CardBlocked => "card_blocked",
            Ending::CodeExpired => "code_expired",
            Ending::Expired => "expired",
            Ending::CReqTimeout => "creq_timeout",
            Ending::WindowInactive => "window_inactive",
            Ending::WindowCancelled => "cancelled_in_window",
        }
    }

    fn device_id(&self) -> Option<String> {
        match self {
            Ending::Approved { device_id }
            | Ending::Denied { device_id, .. }
            | Ending::NumberMismatch { device_id } => Some(device_id.clone()),
            Ending::CodeVerified
            | Ending::CardBlocked
            | Ending::CodeExpired
            | Ending::Expired
            | Ending::CReqTimeout
            | Ending::WindowInactive
            | Ending::WindowCancelled => None,
        }
    }

    fn actor(&self) -> String {
        match (self, self.device_id()) {
            (_, Some(device)) => format!("device:{device}"),
            (Ending::CodeVerified | Ending::CardBlocked | Ending::CodeExpired | Ending::WindowCancelled, None) => {
                "cardholder:window".into()
            }
            _ => "system".into(),
        }
    }

    /// Which channel answered: the app (`push`), a typed code (`code`), or
    /// neither (`none`: a timeout or a cancel before any answer).
    fn channel(&self, challenge: &Challenge) -> &'static str {
        match self {
            Ending::Approved { .. } | Ending::Denied { .. } | Ending::NumberMismatch { .. } => "push",
            Ending::CodeVerified | Ending::CardBlocked | Ending::CodeExpired => "code",
            _ if challenge.fallback_reason.is_some() => "code",
            _ => "none",
        }
    }

    /// EMV result: Y for an approval; N with the reason a 3DS server expects.
    fn trans_status(&self) -> (TransStatus, Option<TransStatusReason>) {
        let denied = TransStatus::NotAuthenticated;
        match self {
            Ending::Approved { .. } | Ending::CodeVerified => (TransStatus::Authenticated, None),
            Ending::Denied { reason: DenyReason::NotMe, .. } => (denied, Some(TransStatusReason::SuspectedFraud)),
            Ending::Denied { reason: DenyReason::Cancelled, .. }
            | Ending::WindowCancelled
            | Ending::NumberMismatch { .. }
            | Ending::CardBlocked => (denied, Some(TransStatusReason::CardAuthenticationFailed)),
            Ending::Expired | Ending::CodeExpired | Ending::CReqTimeout | Ending::WindowInactive => {
                (denied, Some(TransStatusReason::TransactionTimedOutAtAcs))
            }
        }
    }

    /// EMV `challengeCancel` for the result message, when the challenge
    /// stopped short of an answer.
    fn challenge_cancel(&self) -> Option<ChallengeCancel> {
        match self {
            Ending::Denied { reason: DenyReason::Cancelled, .. } | Ending::WindowCancelled => {
                Some(ChallengeCancel::CardholderCancelled)
            }
            Ending::CReqTimeout => Some(ChallengeCancel::FirstCReqNotReceived),
            Ending::Expired | Ending::CodeExpired | Ending::WindowInactive => Some(ChallengeCancel::AcsTimedOut),
            _ => None,
        }
    }
}

/// Applies an ending with everything it causes (result for the requestor,
/// audit line) at most once; `false` if the challenge had already ended.
pub async fn finish(
    app: &App,
    challenge: &Challenge,
    auth: &Authentication,
    ending: Ending,
    now: i64,
) -> Result<bool, ApiError> {
    let (trans_status, reason) = ending.trans_status();
    let mut after = Authentication {
        trans_status: trans_status.as_str().to_owned(),
        trans_status_reason: reason.map(|r| r.as_str().to_owned()),
        updated_at: now,
        ..auth.clone()
    };
    if trans_status == TransStatus::Authenticated {
        after.authentication_value = Some(authentication_value::compute(&app.secrets, &after));
        after.eci = Some(authentication_value::ECI_AUTHENTICATED.to_owned());
    }
    let actor = ending.actor();
    let mut audit = AuditEvent::new(now, "challenge.ended", actor, ending.reason_code());
    audit.card_id = Some(challenge.card_id.clone());
    audit.acs_trans_id = Some(auth.acs_trans_id.clone());
    audit.challenge_id = Some(challenge.id.clone());
    audit.device_id = ending.device_id();
    audit.detail =
        serde_json::json!({ "transStatus": trans_status.as_str(), "transStatusReason": after.trans_status_reason });
    let end = ChallengeEnd {
        challenge_id: challenge.id.clone(),
        state: ending.state(),
        outcome_reason: ending.reason_code().to_owned(),
        decided_by_device: ending.device_id(),
        at: now,
        trans_status: after.trans_status.clone(),
        trans_status_reason: after.trans_status_reason.clone(),
        authentication_value: after.authentication_value.clone(),
        eci: after.eci.clone(),
        callback: Some(callbacks::result_callback(&after, ending.challenge_cancel())),
        code_verified: matches!(ending, Ending::CodeVerified),
        audit,
    };
    let ended = app.storage.end_challenge(&end).await?;
    if ended {
        crate::metrics::challenge_ended(ending.channel(challenge), &end.outcome_reason);
        // Its result callback goes now, not at the worker's next poll.
        app.wake.callbacks.notify_one();
    }
    Ok(ended)
}

/// Closes every pending challenge past its expiry; returns how many.
pub async fn expire_due(app: &App) -> Result<usize, ApiError> {
    let now = app.now_ms();
    let mut closed = 0;
    for challenge in app.storage.expired_challenges(now, 100).await? {
        if let Some(auth) = app.storage.authentication(&challenge.acs_trans_id).await?
            && finish(app, &challenge, &auth, Ending::Expired, now).await?
        {
            closed += 1;
        }
    }
    Ok(closed)
}
