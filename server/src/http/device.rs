//! The device API. Enrolment proves possession of the key in its body;
//! every other call is signed (see [`SignedDevice`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use countersign_core::protocol::wire::{
    ChallengeView, DecisionReceipt, DecisionRequest, EnrolmentRequest, EnrolmentResponse, PendingChallenges,
    PushSettings,
};

use super::extract::{self, Path, SignedDevice};
use super::openapi::{BadRequest, Conflict, Forbidden, Gone, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use crate::app::App;
use crate::error::ApiError;
use crate::flows::{challenges, devices, enrolment};

/// Enrol a device
///
/// Redeems an enrolment code with a new device key; `proof` is the key's
/// signature over the enrolment message (docs/protocol.md). Unsigned: the
/// proof stands in for the request signature.
#[utoipa::path(
    post, path = "/v1/device/enrolments", tag = "device", operation_id = "enrolDevice",
    request_body = EnrolmentRequest,
    responses(
        (status = 201, description = "Enrolled", body = EnrolmentResponse),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 409, response = Conflict),
        (status = 410, response = Gone), (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn enrol(
    State(app): State<App>,
    extract::Json(req): extract::Json<EnrolmentRequest>,
) -> Result<(StatusCode, Json<EnrolmentResponse>), ApiError> {
    Ok((StatusCode::CREATED, Json(enrolment::enrol(&app, req).await?)))
}

/// Report the push token and notification setting
#[utoipa::path(
    put, path = "/v1/device/push-settings", tag = "device", operation_id = "setPushSettings",
    request_body = PushSettings,
    responses(
        (status = 204, description = "Saved"),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("deviceId" = [], "deviceTimestamp" = [], "deviceNonce" = [], "deviceSignature" = [])),
)]
pub async fn push_settings(State(app): State<App>, signed: SignedDevice) -> Result<StatusCode, ApiError> {
    let settings: PushSettings = signed.json()?;
    devices::set_push_settings(&app, &signed.device, settings).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List pending challenges
///
/// The challenges waiting for an answer, for every card the device is
/// enrolled for.
#[utoipa::path(
    get, path = "/v1/device/challenges", tag = "device", operation_id = "listPendingChallenges",
    responses(
        (status = 200, description = "The pending challenges", body = PendingChallenges),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("deviceId" = [], "deviceTimestamp" = [], "deviceNonce" = [], "deviceSignature" = [])),
)]
pub async fn pending(State(app): State<App>, signed: SignedDevice) -> Result<Json<PendingChallenges>, ApiError> {
    Ok(Json(PendingChallenges { challenges: challenges::pending(&app, &signed.device).await? }))
}

/// Show a challenge
///
/// The purchase as the app shows it, with the nonce the decision signs.
#[utoipa::path(
    get, path = "/v1/device/challenges/{challenge_id}", tag = "device", operation_id = "getChallenge",
    params(("challenge_id" = String, Path, description = "The challenge's id (from the push or the pending list)")),
    responses(
        (status = 200, description = "The challenge", body = ChallengeView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("deviceId" = [], "deviceTimestamp" = [], "deviceNonce" = [], "deviceSignature" = [])),
)]
pub async fn show(
    State(app): State<App>,
    Path(challenge_id): Path<String>,
    signed: SignedDevice,
) -> Result<Json<ChallengeView>, ApiError> {
    Ok(Json(challenges::show(&app, &signed.device, &challenge_id).await?))
}

/// Approve or deny a challenge
///
/// The decision repeats the terms it signs; the first valid answer wins.
#[utoipa::path(
    post, path = "/v1/device/challenges/{challenge_id}/decision", tag = "device", operation_id = "decideChallenge",
    params(("challenge_id" = String, Path, description = "The challenge's id")),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "The decision was recorded", body = DecisionReceipt),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 410, response = Gone),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("deviceId" = [], "deviceTimestamp" = [], "deviceNonce" = [], "deviceSignature" = [])),
)]
pub async fn decide(
    State(app): State<App>,
    Path(challenge_id): Path<String>,
    signed: SignedDevice,
) -> Result<Json<DecisionReceipt>, ApiError> {
    let req: DecisionRequest = signed.json()?;
    Ok(Json(challenges::decide(&app, &signed.device, &challenge_id, req).await?))
}

/// Stop approving for a card
#[utoipa::path(
    delete, path = "/v1/device/cards/{card_id}", tag = "device", operation_id = "unenrolCard",
    params(("card_id" = String, Path, description = "The card's id (from enrolment)")),
    responses(
        (status = 204, description = "This device no longer approves for that card"),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("deviceId" = [], "deviceTimestamp" = [], "deviceNonce" = [], "deviceSignature" = [])),
)]
pub async fn unenrol_card(
    State(app): State<App>,
    Path(card_id): Path<String>,
    signed: SignedDevice,
) -> Result<StatusCode, ApiError> {
    devices::unenrol_card(&app, &signed.device, &card_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unenrol the device
///
/// The device stops approving for every card, and its key is refused from
/// now on.
#[utoipa::path(
    delete, path = "/v1/device", tag = "device", operation_id = "unenrolDevice",
    responses(
        (status = 204, description = "The device is unenrolled everywhere"),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("deviceId" = [], "deviceTimestamp" = [], "deviceNonce" = [], "deviceSignature" = [])),
)]
pub async fn unenrol_device(State(app): State<App>, signed: SignedDevice) -> Result<StatusCode, ApiError> {
    devices::unenrol_device(&app, &signed.device).await?;
    Ok(StatusCode::NO_CONTENT)
}
