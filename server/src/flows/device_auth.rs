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
    let fresh = app.storage.remember_nonce(&device.id, &auth.nonce, now, nonce_window_start(now)).await?;
    if !fresh {
        return Err(ProtocolError::ReplayedNonce.into());
    }
    Ok(device)
}

/// Since when a nonce still makes a replay. A timestamp is accepted up to
/// one window either side of the clock, so a request first seen now stays
/// acceptable until `now + 2 × window` (if it was dated one window ahead):
/// its nonce must be kept that long.
fn nonce_window_start(now: i64) -> i64 {
    now - 2 * FRESHNESS_WINDOW_MS
}

/// Nonces forgotten per write: each batch is a short transaction of its own.
const FORGET_BATCH: u32 = 1_000;

/// Most batches per pass: a backlog (after a stop, say) is worked off over
/// a few passes rather than holding the sweeper.
const FORGET_BATCHES: u32 = 50;

/// Forgets nonces that can no longer make a replay (the sweeper's work,
/// not each request's): in batches while they come back full, so a busy
/// server's thousands of requests a second are kept up with.
pub async fn forget_old_nonces(app: &App) -> Result<u64, ApiError> {
    let before = nonce_window_start(app.now_ms());
    let mut forgotten = 0;
    for _ in 0..FORGET_BATCHES {
        let n = app.storage.forget_nonces(before, FORGET_BATCH).await?;
        forgotten += n;
        if n < u64::from(FORGET_BATCH) {
            break;
        }
    }
    Ok(forgotten)
}
