//! A device redeems an enrolment code with a new key and becomes able to
//! approve purchases on that card.

use axum::http::StatusCode;
use countersign_core::protocol::wire::{EnrolledCard, EnrolmentRequest, EnrolmentResponse, ErrorCode};
use countersign_core::protocol::{EnrolmentMessage, PublicKey, check_freshness};

use crate::app::App;
use crate::error::ApiError;
use crate::flows::admin::{CODE_LOOKUP_LEN, is_code_shaped};
use crate::secrets::Purpose;
use crate::storage::{AuditEvent, Device, StorageError};

const MAX_PUSH_TOKEN_LEN: usize = 4096;
const MAX_DISPLAY_NAME_CHARS: usize = 64;

fn code_invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::EnrolmentCodeInvalid, message)
}

pub async fn enrol(app: &App, req: EnrolmentRequest) -> Result<EnrolmentResponse, ApiError> {
    let name_len = req.display_name.chars().count();
    if name_len == 0 || name_len > MAX_DISPLAY_NAME_CHARS || req.display_name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("displayName: 1 to 64 printable characters"));
    }
    if req.push_token.as_ref().is_some_and(|t| t.is_empty() || t.len() > MAX_PUSH_TOKEN_LEN) {
        return Err(ApiError::bad_request("pushToken: 1 to 4096 characters"));
    }
    let public_key =
        PublicKey::from_sec1(&req.public_key).map_err(|e| ApiError::bad_request(format!("publicKey: {e}")))?;
    let now = app.now_ms();
    check_freshness(req.signed_at, now)?;
    let code = EnrolmentMessage::normalize_code(&req.code);
    let message = EnrolmentMessage {
        code: code.clone(),
        public_key: req.public_key.clone(),
        platform: req.platform,
        signed_at_ms: req.signed_at,
    };
    public_key.verify(&message.signed_bytes(), &req.proof)?;

    if !is_code_shaped(&code) {
        return Err(code_invalid("this is not an enrolment code"));
    }
    let (lookup, secret) = code.split_at(CODE_LOOKUP_LEN);
    let stored = app.storage.enrolment_code(lookup).await?.ok_or_else(|| code_invalid("unknown enrolment code"))?;
    if stored.used_at.is_some() {
        return Err(ApiError::conflict(ErrorCode::EnrolmentCodeUsed, "this enrolment code was already used"));
    }
    if stored.attempts_left == 0 {
        return Err(code_invalid("this enrolment code is blocked after too many wrong tries; ask for a new one"));
    }
    if stored.expires_at <= now {
        return Err(ApiError::new(
            StatusCode::GONE,
            ErrorCode::EnrolmentCodeExpired,
            "this enrolment code has expired",
        ));
    }
    if app.secrets.verify(Purpose::EnrolmentCode, secret.as_bytes(), &stored.secret_hash).is_none() {
        let left = app.storage.spend_enrolment_attempt(lookup).await?.unwrap_or(0);
        let mut audit = AuditEvent::new(now, "enrolment.refused", "device:unenrolled".into(), "wrong_code");
        audit.card_id = Some(stored.card_id.clone());
        audit.detail = serde_json::json!({ "attemptsLeft": left });
        app.storage.append_audit(&audit).await?;
        return Err(code_invalid(format!("wrong enrolment code; {left} attempts left")));
    }

    let device = Device {
        id: uuid::Uuid::new_v4().to_string(),
        public_key: req.public_key,
        platform: req.platform.as_str().to_owned(),
        display_name: req.display_name,
        push_token: req.push_token,
        notifications_enabled: req.notifications_enabled,
        push_unreachable: false,
        revoked_at: None,
        created_at: now,
    };
    let mut audit = AuditEvent::new(now, "device.enrolled", format!("device:{}", device.id), "ok");
    audit.detail =
        serde_json::json!({ "platform": device.platform, "notificationsEnabled": device.notifications_enabled });
    let stored_device = match app.storage.complete_enrolment(lookup, &device, now, &audit).await {
        Ok(d) => d,
        Err(StorageError::Conflict("revoked device key")) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::DeviceRevoked,
                "this key belongs to an unenrolled device; make a new key",
            ));
        }
        Err(StorageError::Conflict(_)) => {
            return Err(ApiError::conflict(ErrorCode::EnrolmentCodeUsed, "this enrolment code was already used"));
        }
        Err(e) => return Err(e.into()),
    };
    let card = app.storage.card(&stored.card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    Ok(EnrolmentResponse {
        device_id: stored_device.id,
        card: EnrolledCard {
            card_id: card.id.clone(),
            masked_pan: card.masked_pan(),
            issuer_name: app.config.issuer.name.clone(),
        },
        server_time: now,
    })
}
