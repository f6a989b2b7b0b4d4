//! The device API. Enrolment proves possession of the key in its body;
//! every other call is signed (see [`SignedDevice`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use countersign_core::protocol::wire::{
    ChallengeView, DecisionReceipt, DecisionRequest, EnrolmentRequest, EnrolmentResponse, PendingChallenges,
    PushSettings,
};

use super::extract::{self, SignedDevice};
use crate::app::App;
use crate::error::ApiError;
use crate::flows::{challenges, devices, enrolment};

pub async fn enrol(
    State(app): State<App>,
    extract::Json(req): extract::Json<EnrolmentRequest>,
) -> Result<(StatusCode, Json<EnrolmentResponse>), ApiError> {
    Ok((StatusCode::CREATED, Json(enrolment::enrol(&app, req).await?)))
}

pub async fn push_settings(State(app): State<App>, signed: SignedDevice) -> Result<StatusCode, ApiError> {
    let settings: PushSettings = signed.json()?;
    devices::set_push_settings(&app, &signed.device, settings).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn pending(State(app): State<App>, signed: SignedDevice) -> Result<Json<PendingChallenges>, ApiError> {
    Ok(Json(PendingChallenges { challenges: challenges::pending(&app, &signed.device).await? }))
}

pub async fn show(
    State(app): State<App>,
    Path(challenge_id): Path<String>,
    signed: SignedDevice,
) -> Result<Json<ChallengeView>, ApiError> {
    Ok(Json(challenges::show(&app, &signed.device, &challenge_id).await?))
}

pub async fn decide(
    State(app): State<App>,
    Path(challenge_id): Path<String>,
    signed: SignedDevice,
) -> Result<Json<DecisionReceipt>, ApiError> {
    let req: DecisionRequest = signed.json()?;
    Ok(Json(challenges::decide(&app, &signed.device, &challenge_id, req).await?))
}

pub async fn unenrol_card(
    State(app): State<App>,
    Path(card_id): Path<String>,
    signed: SignedDevice,
) -> Result<StatusCode, ApiError> {
    devices::unenrol_card(&app, &signed.device, &card_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unenrol_device(State(app): State<App>, signed: SignedDevice) -> Result<StatusCode, ApiError> {
    devices::unenrol_device(&app, &signed.device).await?;
    Ok(StatusCode::NO_CONTENT)
}
