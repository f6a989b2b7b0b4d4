//! The API the browser challenge window calls, keyed by the purchase's
//! `acsTransID` (a random UUID the 3DS server hands the browser). The
//! window pages themselves bind it to their own session (issue 4).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{self, Path};
use super::openapi::{
    BadRequest, Conflict, Forbidden, Gone, NotFound, PayloadTooLarge, TooManyRequests, Unavailable, Unprocessable,
};
use crate::app::App;
use crate::error::ApiError;
use crate::flows::codes::{self, CodeView, Verified, WindowView};

/// The purchase the window is for.
const ACS_TRANS_ID: &str = "The purchase's acsTransID, as the ARes gave it";

/// Show the purchase
///
/// The purchase as the window shows it, and its code once one was issued.
#[utoipa::path(
    get, path = "/v1/window/{acs_trans_id}", tag = "window", operation_id = "getWindow",
    params(("acs_trans_id" = String, Path, description = ACS_TRANS_ID)),
    responses(
        (status = 200, description = "The purchase", body = WindowView),
        (status = 400, response = BadRequest), (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn show(State(app): State<App>, Path(acs_trans_id): Path<String>) -> Result<Json<WindowView>, ApiError> {
    Ok(Json(codes::window(&app, &acs_trans_id).await?))
}

/// Send me a code instead
///
/// Issues the purchase's one-time code and sends it to every contact of
/// the card (idempotent: a second call answers the same code's state).
#[utoipa::path(
    post, path = "/v1/window/{acs_trans_id}/code", tag = "window", operation_id = "requestCode",
    params(("acs_trans_id" = String, Path, description = ACS_TRANS_ID)),
    responses(
        (status = 200, description = "The code's state", body = CodeView),
        (status = 400, response = BadRequest), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 410, response = Gone), (status = 503, response = Unavailable),
    ),
)]
pub async fn request_code(
    State(app): State<App>,
    Path(acs_trans_id): Path<String>,
) -> Result<Json<CodeView>, ApiError> {
    Ok(Json(codes::request(&app, &acs_trans_id).await?))
}

/// Send the same code again
#[utoipa::path(
    post, path = "/v1/window/{acs_trans_id}/code/resend", tag = "window", operation_id = "resendCode",
    params(("acs_trans_id" = String, Path, description = ACS_TRANS_ID)),
    responses(
        (status = 200, description = "The code's state", body = CodeView),
        (status = 400, response = BadRequest), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 410, response = Gone), (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn resend_code(State(app): State<App>, Path(acs_trans_id): Path<String>) -> Result<Json<CodeView>, ApiError> {
    Ok(Json(codes::resend(&app, &acs_trans_id).await?))
}

/// The code the cardholder typed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeAnswer {
    #[schema(example = "123456")]
    code: String,
}

/// Check a typed code
///
/// A correct code completes the purchase as a push approval would; a wrong
/// one counts against the card, which is blocked at the limit.
#[utoipa::path(
    post, path = "/v1/window/{acs_trans_id}/code/verify", tag = "window", operation_id = "verifyCode",
    params(("acs_trans_id" = String, Path, description = ACS_TRANS_ID)),
    request_body = CodeAnswer,
    responses(
        (status = 200, description = "The code was correct", body = Verified),
        (status = 400, response = BadRequest), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 410, response = Gone), (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable), (status = 503, response = Unavailable),
    ),
)]
pub async fn verify_code(
    State(app): State<App>,
    Path(acs_trans_id): Path<String>,
    extract::Json(answer): extract::Json<CodeAnswer>,
) -> Result<Json<Verified>, ApiError> {
    Ok(Json(codes::verify(&app, &acs_trans_id, &answer.code).await?))
}
