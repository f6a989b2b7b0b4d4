//! The operator API (Bearer operator key). The same flows back the CLI.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::extract::{self, OperatorAuth};
use crate::app::App;
use crate::error::ApiError;
use crate::flows::admin::{
    self as flows, CardView, Contacts, CreatedEnrolmentCode, CreatedRequestor, NewCardRequest, NewRequestorRequest,
};
use crate::flows::authentication_value::{self, VerifyRequest, VerifyResponse};
use crate::storage::{AuditEvent, AuditFilter, OutboxMessage, OutboxPush};

pub async fn create_requestor(
    State(app): State<App>,
    op: OperatorAuth,
    extract::Json(req): extract::Json<NewRequestorRequest>,
) -> Result<(StatusCode, Json<CreatedRequestor>), ApiError> {
    op.require_admin()?;
    Ok((StatusCode::CREATED, Json(flows::create_requestor(&app, req, &op.actor()).await?)))
}

pub async fn create_card(
    State(app): State<App>,
    op: OperatorAuth,
    extract::Json(req): extract::Json<NewCardRequest>,
) -> Result<(StatusCode, Json<CardView>), ApiError> {
    op.require_admin()?;
    Ok((StatusCode::CREATED, Json(flows::create_card(&app, req, &op.actor()).await?)))
}

pub async fn card(
    State(app): State<App>,
    _op: OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::card(&app, &card_id).await?))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSummary {
    device_id: String,
    platform: String,
    display_name: String,
    notifications_enabled: bool,
    has_push_token: bool,
    created_at: i64,
}

pub async fn card_devices(
    State(app): State<App>,
    _op: OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<Vec<DeviceSummary>>, ApiError> {
    let devices = app.storage.card_devices(&card_id).await?;
    Ok(Json(
        devices
            .into_iter()
            .map(|d| DeviceSummary {
                device_id: d.id,
                platform: d.platform,
                display_name: d.display_name,
                notifications_enabled: d.notifications_enabled,
                has_push_token: d.push_token.is_some(),
                created_at: d.created_at,
            })
            .collect(),
    ))
}

pub async fn create_enrolment_code(
    State(app): State<App>,
    op: OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<(StatusCode, Json<CreatedEnrolmentCode>), ApiError> {
    op.require_admin()?;
    Ok((StatusCode::CREATED, Json(flows::create_enrolment_code(&app, &card_id, &op.actor()).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushQuery {
    device_id: Option<String>,
    limit: Option<u32>,
}

/// The default notifier's outbox: what would have been pushed.
pub async fn pushes(
    State(app): State<App>,
    _op: OperatorAuth,
    Query(q): Query<PushQuery>,
) -> Result<Json<Vec<OutboxPush>>, ApiError> {
    Ok(Json(app.storage.outbox_pushes(q.device_id.as_deref(), q.limit.unwrap_or(50).min(500)).await?))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    #[serde(rename = "cardId")]
    card_id: Option<String>,
    #[serde(rename = "acsTransID")]
    acs_trans_id: Option<String>,
    limit: Option<u32>,
}

pub async fn audit(
    State(app): State<App>,
    _op: OperatorAuth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let filter =
        AuditFilter { card_id: q.card_id, acs_trans_id: q.acs_trans_id, limit: q.limit.unwrap_or(100).min(1000) };
    Ok(Json(app.storage.audit_events(&filter).await?))
}

pub async fn verify_authentication_value(
    State(app): State<App>,
    _op: OperatorAuth,
    extract::Json(req): extract::Json<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    Ok(Json(authentication_value::verify(&app, &req).await?))
}

/// Replaces the card's email and phone (this card only: other cards on the
/// same account keep theirs).
pub async fn set_contacts(
    State(app): State<App>,
    op: OperatorAuth,
    Path(card_id): Path<String>,
    extract::Json(contacts): extract::Json<Contacts>,
) -> Result<Json<CardView>, ApiError> {
    op.require_admin()?;
    Ok(Json(flows::set_contacts(&app, &card_id, contacts, &op.actor()).await?))
}

/// Lifts a block after too many wrong codes (support or admin).
pub async fn unblock_card(
    State(app): State<App>,
    op: OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::unblock_card(&app, &card_id, &op.actor()).await?))
}

#[derive(Debug, Deserialize)]
pub struct MessageQuery {
    limit: Option<u32>,
}

/// The development message outbox: only while a channel delivers to it.
pub async fn messages(
    State(app): State<App>,
    op: OperatorAuth,
    Query(q): Query<MessageQuery>,
) -> Result<Json<Vec<OutboxMessage>>, ApiError> {
    op.require_admin()?;
    if !app.uses_message_outbox() {
        return Err(ApiError::not_found("message outbox (no channel delivers to it)"));
    }
    Ok(Json(app.storage.outbox_messages(q.limit.unwrap_or(50).min(500)).await?))
}

/// Replaces a card's security questions and answers (answers are stored
/// only as keyed hashes, never shown again).
pub async fn set_security_questions(
    State(app): State<App>,
    op: OperatorAuth,
    Path(card_id): Path<String>,
    extract::Json(questions): extract::Json<crate::window::security::NewQuestions>,
) -> Result<Json<crate::window::security::QuestionsView>, ApiError> {
    op.require_admin()?;
    Ok(Json(crate::window::security::provision(&app, &card_id, questions, &op.actor()).await?))
}

/// A card's security questions, without answers.
pub async fn security_questions(
    State(app): State<App>,
    _op: OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<crate::window::security::QuestionsView>, ApiError> {
    Ok(Json(crate::window::security::show(&app, &card_id).await?))
}
