//! Who is calling: every device API call but enrolment is signed by the
//! device key (see `docs/protocol.md`, "Device requests").

use axum::http::StatusCode;
use countersign_core::protocol::wire::ErrorCode;
use countersign_core::protocol::{FRESHNESS_WINDOW_MS, ProtocolError, RequestAuth, check_freshness};

use crate::app::App;
use crate::error::ApiError;
use crate::storage::Device;

/// Checks freshness, the device, the signature and then the nonce (only a
/// correctly signed request may spend a nonce, so nobody can burn another
/// device's nonces). Returns the calling device.
pub async fn authenticate(
    app: &App,
    auth: &RequestAuth,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Device, ApiError> {
    let now = app.now_ms();
    check_freshness(auth.timestamp_ms, now)?;
    let device = app
        .storage
        .device(&auth.device_id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::UnknownDevice, "no such device"))?;
    if device.revoked_at.is_some() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, ErrorCode::DeviceRevoked, "this device was unenrolled"));
    }
    auth.verify(&device.public_key, method, path, body, now)?;
    // A timestamp is accepted up to one window either side of the clock, so
    // a request first seen now stays acceptable until `now + 2 × window` (if
    // it was dated one window ahead): its nonce must be kept that long.
    let fresh = app.storage.remember_nonce(&device.id, &auth.nonce, now, now - 2 * FRESHNESS_WINDOW_MS).await?;
    if !fresh {
        return Err(ProtocolError::ReplayedNonce.into());
    }
    Ok(device)
}
