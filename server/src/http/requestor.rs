//! The 3DS requestor API: AReq in, ARes out, and the current result.

use axum::Json;
use axum::extract::{Path, Request, State};
use serde::Serialize;

use super::extract::{RequestorAuth, read_body};
use crate::app::App;
use crate::emv::{ARes, EmvError};
use crate::flows::{authenticate, challenges};
use crate::storage::{CallbackStatus, ChallengeState};

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
#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
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

pub async fn status(
    State(app): State<App>,
    RequestorAuth(requestor): RequestorAuth,
    Path(acs_trans_id): Path<String>,
) -> Result<Json<AuthenticationStatus>, EmvError> {
    let transient = |e: crate::storage::StorageError| EmvError::transient(e.to_string());
    let not_found = || EmvError::transaction_not_found();
    let mut auth = app.storage.authentication(&acs_trans_id).await.map_err(transient)?.ok_or_else(not_found)?;
    // Another requestor's transaction is as good as absent.
    if auth.requestor_id != requestor.id {
        return Err(not_found());
    }
    let mut challenge = match &auth.challenge_id {
        Some(id) => app.storage.challenge(id).await.map_err(transient)?,
        None => None,
    };
    // Close an overdue challenge now rather than at the next sweep.
    if let Some(c) = challenge.as_ref().filter(|c| c.state == ChallengeState::Pending && c.expires_at <= app.now_ms()) {
        challenges::finish(&app, c, &auth, challenges::Ending::Expired, app.now_ms())
            .await
            .map_err(|e| EmvError::transient(e.message))?;
        auth = app.storage.authentication(&acs_trans_id).await.map_err(transient)?.ok_or_else(not_found)?;
        challenge = app.storage.challenge(&c.id).await.map_err(transient)?;
    }
    let result_delivery = app.storage.callback_status(&acs_trans_id).await.map_err(transient)?;
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
