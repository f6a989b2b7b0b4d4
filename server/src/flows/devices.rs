//! What an enrolled device may change about itself.

use countersign_core::protocol::wire::PushSettings;

use crate::app::App;
use crate::error::ApiError;
use crate::flows::codes::{self, Fallback};
use crate::storage::{AuditEvent, Device, DeviceChallenge};

pub async fn set_push_settings(app: &App, device: &Device, settings: PushSettings) -> Result<(), ApiError> {
    if settings.push_token.as_ref().is_some_and(|t| t.is_empty() || t.len() > 4096) {
        return Err(ApiError::bad_request("pushToken: 1 to 4096 characters"));
    }
    let now = app.now_ms();
    app.storage
        .set_push_settings(&device.id, settings.push_token.as_deref(), settings.notifications_enabled, now)
        .await?;
    let mut audit = AuditEvent::new(now, "device.push_settings", format!("device:{}", device.id), "ok");
    audit.device_id = Some(device.id.clone());
    audit.detail = serde_json::json!({
        "notificationsEnabled": settings.notifications_enabled,
        "hasToken": settings.push_token.is_some(),
    });
    app.storage.append_audit(&audit).await?;
    Ok(())
}

pub async fn unenrol_card(app: &App, device: &Device, card_id: &str) -> Result<(), ApiError> {
    let mut audit = AuditEvent::new(app.now_ms(), "device.unenrolled_card", format!("device:{}", device.id), "ok");
    audit.device_id = Some(device.id.clone());
    audit.card_id = Some(card_id.to_owned());
    if !app.storage.unenrol_card(&device.id, card_id, &audit).await? {
        return Err(ApiError::not_found("enrolment of this device for that card"));
    }
    Ok(())
}

pub async fn unenrol_device(app: &App, device: &Device) -> Result<(), ApiError> {
    let mut audit = AuditEvent::new(app.now_ms(), "device.unenrolled", format!("device:{}", device.id), "ok");
    audit.device_id = Some(device.id.clone());
    revoke(app, &device.id, &audit).await?;
    Ok(())
}

/// Revokes a device everywhere (`audit` says who and why): its signed
/// requests are refused from now on, and each purchase waiting on it that
/// no other device of the card can answer falls back to a one-time code at
/// once rather than at the push deadline. `false` if there is no such
/// device or it was revoked already.
pub async fn revoke(app: &App, device_id: &str, audit: &AuditEvent) -> Result<bool, ApiError> {
    // Read before revoking, while the device's cards are still known; a
    // purchase that starts in between still falls back at its push deadline.
    let waiting = app.storage.pending_challenges_for_device(device_id, audit.at).await?;
    if !app.storage.revoke_device(device_id, audit.at, audit).await? {
        return Ok(false);
    }
    for DeviceChallenge { challenge, .. } in waiting {
        if !app.storage.card_devices(&challenge.card_id).await?.iter().any(Device::pushable) {
            codes::start(app, &challenge, Fallback::DeviceRevoked).await?;
        }
    }
    Ok(true)
}
