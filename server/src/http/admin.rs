//! The operator API (Bearer operator key). Each handler's first extractor
//! says who may call it: [`AdminAuth`] (admins only; a support key gets 403
//! `forbidden`) or [`OperatorAuth`] (support too: reading cards, devices
//! and the audit trail, unblocking). The flows in `flows::admin` do the
//! work — and the auditing — for the CLI too.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::extract::{self, AdminAuth, OperatorAuth, Query};
use crate::app::App;
use crate::error::ApiError;
use crate::flows::admin::{
    self as flows, AuditPage, AuditQuery, CardLanguage, CardView, Contacts, CreatedEnrolmentCode, CreatedOperator,
    CreatedRequestor, DeviceSummary, ImportReport, ImportRequest, NewCardRequest, NewOperatorRequest,
    NewRequestorRequest, OperatorView, RequestorView, RevokedDevice, RotatedApiKey, RotatedCallbackSecret,
};
use crate::flows::authentication_value::{VerifyRequest, VerifyResponse};
use crate::storage::{Credential, OutboxMessage, OutboxPush};
use crate::window::security::{NewQuestions, QuestionsView};

type Created<T> = (StatusCode, Json<T>);

// ---- operators (admin) ----------------------------------------------------

pub async fn create_operator(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    extract::Json(req): extract::Json<NewOperatorRequest>,
) -> Result<Created<CreatedOperator>, ApiError> {
    Ok((StatusCode::CREATED, Json(flows::create_operator(&app, &req.name, req.role, &op.actor()).await?)))
}

pub async fn operators(State(app): State<App>, AdminAuth(op): AdminAuth) -> Result<Json<Vec<OperatorView>>, ApiError> {
    Ok(Json(flows::operators(&app, &op.actor()).await?))
}

pub async fn revoke_operator(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(operator_id): Path<String>,
) -> Result<Json<OperatorView>, ApiError> {
    Ok(Json(flows::revoke_operator(&app, &operator_id, &op.actor()).await?))
}

// ---- requestors (admin) ---------------------------------------------------

pub async fn create_requestor(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    extract::Json(req): extract::Json<NewRequestorRequest>,
) -> Result<Created<CreatedRequestor>, ApiError> {
    Ok((StatusCode::CREATED, Json(flows::create_requestor(&app, req, &op.actor()).await?)))
}

pub async fn requestors(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
) -> Result<Json<Vec<RequestorView>>, ApiError> {
    Ok(Json(flows::requestors(&app, &op.actor()).await?))
}

pub async fn requestor(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(requestor_id): Path<String>,
) -> Result<Json<RequestorView>, ApiError> {
    Ok(Json(flows::requestor(&app, &requestor_id, &op.actor()).await?))
}

pub async fn rotate_api_key(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(requestor_id): Path<String>,
) -> Result<Json<RotatedApiKey>, ApiError> {
    Ok(Json(flows::rotate_api_key(&app, &requestor_id, &op.actor()).await?))
}

pub async fn revoke_previous_api_key(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(requestor_id): Path<String>,
) -> Result<Json<RequestorView>, ApiError> {
    Ok(Json(flows::revoke_previous(&app, &requestor_id, Credential::ApiKey, &op.actor()).await?))
}

pub async fn rotate_callback_secret(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(requestor_id): Path<String>,
) -> Result<Json<RotatedCallbackSecret>, ApiError> {
    Ok(Json(flows::rotate_callback_secret(&app, &requestor_id, &op.actor()).await?))
}

pub async fn revoke_previous_callback_secret(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(requestor_id): Path<String>,
) -> Result<Json<RequestorView>, ApiError> {
    Ok(Json(flows::revoke_previous(&app, &requestor_id, Credential::CallbackSecret, &op.actor()).await?))
}

// ---- cards ----------------------------------------------------------------

pub async fn create_card(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    extract::Json(req): extract::Json<NewCardRequest>,
) -> Result<Created<CardView>, ApiError> {
    Ok((StatusCode::CREATED, Json(flows::create_card(&app, req, &op.actor()).await?)))
}

/// Up to 500 cards; each row succeeds or fails on its own.
pub async fn import_cards(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    extract::Json(req): extract::Json<ImportRequest>,
) -> Result<Json<ImportReport>, ApiError> {
    Ok(Json(flows::import_cards(&app, flows::batch_rows(req), &op.actor()).await?))
}

/// A card, masked (support too).
pub async fn card(
    State(app): State<App>,
    OperatorAuth(op): OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::show_card(&app, &card_id, &op.actor()).await?))
}

pub async fn set_language(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(card_id): Path<String>,
    extract::Json(req): extract::Json<CardLanguage>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::set_language(&app, &card_id, req, &op.actor()).await?))
}

/// Replaces the card's email and phone (this card only: other cards on the
/// same account keep theirs).
pub async fn set_contacts(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(card_id): Path<String>,
    extract::Json(contacts): extract::Json<Contacts>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::set_contacts(&app, &card_id, contacts, &op.actor()).await?))
}

/// Lifts a block after too many wrong codes (support too).
pub async fn unblock_card(
    State(app): State<App>,
    OperatorAuth(op): OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::unblock_card(&app, &card_id, &op.actor()).await?))
}

/// Replaces a card's security questions and answers (answers are stored
/// only as keyed hashes, never shown again).
pub async fn set_security_questions(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(card_id): Path<String>,
    extract::Json(questions): extract::Json<NewQuestions>,
) -> Result<Json<QuestionsView>, ApiError> {
    Ok(Json(flows::set_security_questions(&app, &card_id, questions, &op.actor()).await?))
}

/// A card's security questions, without answers (support too).
pub async fn security_questions(
    State(app): State<App>,
    OperatorAuth(op): OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<QuestionsView>, ApiError> {
    Ok(Json(flows::security_questions(&app, &card_id, &op.actor()).await?))
}

pub async fn create_enrolment_code(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(card_id): Path<String>,
) -> Result<Created<CreatedEnrolmentCode>, ApiError> {
    Ok((StatusCode::CREATED, Json(flows::create_enrolment_code(&app, &card_id, &op.actor()).await?)))
}

// ---- devices --------------------------------------------------------------

/// A card's enrolled devices (support too).
pub async fn card_devices(
    State(app): State<App>,
    OperatorAuth(op): OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<Vec<DeviceSummary>>, ApiError> {
    Ok(Json(flows::card_devices(&app, &card_id, &op.actor()).await?))
}

pub async fn revoke_device(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(device_id): Path<String>,
) -> Result<Json<RevokedDevice>, ApiError> {
    Ok(Json(flows::revoke_device(&app, &device_id, &op.actor()).await?))
}

// ---- audit, verification, outboxes -----------------------------------------

/// Audit lines matching the query, a page at a time (support too).
pub async fn audit(
    State(app): State<App>,
    OperatorAuth(op): OperatorAuth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(flows::search_audit(&app, q, &op.actor()).await?))
}

/// The issuer's authorisation system checks a `Y` before authorising: it
/// reveals a yes or no only, so a support key (least privilege) may ask.
pub async fn verify_authentication_value(
    State(app): State<App>,
    OperatorAuth(op): OperatorAuth,
    extract::Json(req): extract::Json<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    Ok(Json(flows::check_authentication_value(&app, &req, &op.actor()).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushQuery {
    device_id: Option<String>,
    limit: Option<u32>,
}

/// The default notifier's outbox: what would have been pushed.
pub async fn pushes(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Query(q): Query<PushQuery>,
) -> Result<Json<Vec<OutboxPush>>, ApiError> {
    Ok(Json(flows::pushes(&app, q.device_id.as_deref(), q.limit.unwrap_or(50), &op.actor()).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageQuery {
    limit: Option<u32>,
}

/// The development message outbox: only while a channel delivers to it.
pub async fn messages(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Query(q): Query<MessageQuery>,
) -> Result<Json<Vec<OutboxMessage>>, ApiError> {
    Ok(Json(flows::messages(&app, q.limit.unwrap_or(50), &op.actor()).await?))
}
