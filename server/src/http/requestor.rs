//! The 3DS requestor API: AReq in, ARes out, and the current result.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{RequestorAuth, read_body};
use super::openapi::{
    ErroBadRequest, ErroForbidden, ErroNotFound, ErroPayloadTooLarge, ErroUnauthorized, ErroUnavailable,
};
use crate::app::App;
use crate::emv::{AReqSchema, ARes, EmvError};
use crate::flows::{authenticate, challenges};
use crate::storage::{CallbackStatus, ChallengeState, PurchaseStatus};

/// Authenticate a purchase (AReq → ARes)
///
/// Decides at once (`Y` frictionless, `N` or `R` refused) or starts a
/// challenge (`C`): a push to the cardholder's app, or a one-time code. The
/// result of a challenge is posted to `notificationURL` as an RReq and can
/// be read with `getAuthentication`.
#[utoipa::path(
    post, path = "/v1/authentications", tag = "requestor", operation_id = "authenticate",
    request_body = AReqSchema,
    responses(
        (status = 200, description = "The ARes", body = ARes),
        (status = 400, response = ErroBadRequest), (status = 401, response = ErroUnauthorized),
        (status = 403, response = ErroForbidden), (status = 413, response = ErroPayloadTooLarge),
        (status = 503, response = ErroUnavailable),
    ),
    security(("requestorKey" = [])),
)]
pub async fn authenticate(
    State(app): State<App>,
    RequestorAuth(requestor): RequestorAuth,
    req: Request,
) -> Result<Json<ARes>, EmvError> {
    let limit = app.config.server.body_limit_bytes;
    let body = read_body(req.into_body(), limit).await.map_err(|_| EmvError::too_large(limit))?;
    authenticate::authenticate(&app, &requestor, &body).await.map(Json)
}

/// The result as it stands, for the requestor that asked.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationStatus {
    #[serde(rename = "acsTransID")]
    acs_trans_id: String,
    #[serde(rename = "threeDSServerTransID")]
    three_ds_server_trans_id: String,
    trans_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    trans_status_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authentication_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eci: Option<String>,
    /// Why the server decided as it did (risk and challenge reason codes).
    reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge: Option<ChallengeStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_delivery: Option<CallbackStatus>,
    created_at: i64,
    updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ChallengeStatus {
    state: ChallengeState,
    expires_at: i64,
    /// The number the checkout shows for the cardholder to pick in the app.
    #[serde(skip_serializing_if = "Option::is_none")]
    number_match: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome_reason: Option<String>,
}

/// Read a purchase's result
///
/// The result as it stands, for the requestor that sent the AReq (another
/// requestor's purchase is not found). While a challenge is pending it
/// holds the number the checkout shows for number matching.
#[utoipa::path(
    get, path = "/v1/authentications/{acs_trans_id}", tag = "requestor", operation_id = "getAuthentication",
    params(("acs_trans_id" = String, Path, description = "The acsTransID from the ARes")),
    responses(
        (status = 200, description = "The result", body = AuthenticationStatus),
        (status = 401, response = ErroUnauthorized), (status = 404, response = ErroNotFound),
        (status = 503, response = ErroUnavailable),
    ),
    security(("requestorKey" = [])),
)]
pub async fn status(
    State(app): State<App>,
    RequestorAuth(requestor): RequestorAuth,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AuthenticationStatus>, EmvError> {
    // A segment that does not even decode names no transaction.
    let Path(acs_trans_id) = path.map_err(|_| EmvError::transaction_not_found())?;
    let transient = |e: crate::storage::StorageError| EmvError::transient(e.to_string());
    let not_found = || EmvError::transaction_not_found();
    let read = || async { app.storage.purchase_status(&acs_trans_id).await.map_err(transient)?.ok_or_else(not_found) };
    let mut status = read().await?;
    // Another requestor's transaction is as good as absent.
    if status.authentication.requestor_id != requestor.id {
        return Err(not_found());
    }
    // Close an overdue challenge now rather than at the next sweep.
    if let Some(c) =
        status.challenge.as_ref().filter(|c| c.state == ChallengeState::Pending && c.expires_at <= app.now_ms())
    {
        challenges::finish(&app, c, &status.authentication, challenges::Ending::Expired, app.now_ms())
            .await
            .map_err(|e| EmvError::transient(e.message))?;
        status = read().await?;
    }
    let PurchaseStatus { authentication: auth, challenge, result_delivery } = status;
    Ok(Json(AuthenticationStatus {
        acs_trans_id: auth.acs_trans_id,
        three_ds_server_trans_id: auth.ds_trans_id,
        trans_status: auth.trans_status,
        trans_status_reason: auth.trans_status_reason,
        authentication_value: auth.authentication_value,
        eci: auth.eci,
        reasons: auth.reasons,
        challenge: challenge.map(|c| ChallengeStatus {
            state: c.state,
            expires_at: c.expires_at,
            number_match: c.number_match.filter(|_| c.state == ChallengeState::Pending),
            outcome_reason: c.outcome_reason,
        }),
        result_delivery,
        created_at: auth.created_at,
        updated_at: auth.updated_at,
    }))
}
