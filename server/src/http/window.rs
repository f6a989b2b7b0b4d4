//! The API the browser challenge window calls, keyed by the purchase's
//! `acsTransID` (a random UUID the 3DS server hands the browser). The
//! window pages themselves bind it to their own session (issue 4).

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::extract;
use crate::app::App;
use crate::error::ApiError;
use crate::flows::codes::{self, CodeView, Verified, WindowView};

pub async fn show(State(app): State<App>, Path(acs_trans_id): Path<String>) -> Result<Json<WindowView>, ApiError> {
    Ok(Json(codes::window(&app, &acs_trans_id).await?))
}

/// "Send me a code instead."
pub async fn request_code(
    State(app): State<App>,
    Path(acs_trans_id): Path<String>,
) -> Result<Json<CodeView>, ApiError> {
    Ok(Json(codes::request(&app, &acs_trans_id).await?))
}

pub async fn resend_code(State(app): State<App>, Path(acs_trans_id): Path<String>) -> Result<Json<CodeView>, ApiError> {
    Ok(Json(codes::resend(&app, &acs_trans_id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeAnswer {
    code: String,
}

pub async fn verify_code(
    State(app): State<App>,
    Path(acs_trans_id): Path<String>,
    extract::Json(answer): extract::Json<CodeAnswer>,
) -> Result<Json<Verified>, ApiError> {
    Ok(Json(codes::verify(&app, &acs_trans_id, &answer.code).await?))
}
