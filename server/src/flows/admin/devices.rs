//! A card's devices as operators see them, and revoking one (a lost or
//! stolen phone).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{action, card_action, record};
use crate::app::App;
use crate::error::ApiError;
use crate::flows::devices;

/// An enrolled device: never its key or push token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSummary {
    pub device_id: String,
    pub platform: String,
    pub display_name: String,
    pub notifications_enabled: bool,
    pub has_push_token: bool,
    pub created_at: i64,
}

/// The devices enrolled for a card (revoked ones are not).
pub async fn card_devices(app: &App, card_id: &str, actor: &str) -> Result<Vec<DeviceSummary>, ApiError> {
    app.storage.card(card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    let devices = app.storage.card_devices(card_id).await?;
    record(app, card_action(app, "card.devices_viewed", actor, card_id)).await?;
    Ok(devices
        .into_iter()
        .map(|d| DeviceSummary {
            device_id: d.id,
            platform: d.platform,
            display_name: d.display_name,
            notifications_enabled: d.notifications_enabled,
            has_push_token: d.push_token.is_some(),
            created_at: d.created_at,
        })
        .collect())
}

/// What revoking a device did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevokedDevice {
    pub device_id: String,
    pub revoked_at: i64,
}

/// Revokes a device for every card it holds: its signed requests are
/// refused, and purchases waiting on it fall back to a one-time code.
pub async fn revoke_device(app: &App, device_id: &str, actor: &str) -> Result<RevokedDevice, ApiError> {
    let mut audit = action(app, "device.revoked", actor);
    audit.device_id = Some(device_id.to_owned());
    if !devices::revoke(app, device_id, &audit).await? {
        return Err(match app.storage.device(device_id).await? {
            Some(_) => ApiError::conflict(
                countersign_core::protocol::wire::ErrorCode::DeviceRevoked,
                "this device was revoked already",
            ),
            None => ApiError::not_found("device"),
        });
    }
    Ok(RevokedDevice { device_id: device_id.to_owned(), revoked_at: audit.at })
}
