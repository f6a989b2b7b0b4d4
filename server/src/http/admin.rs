//! The operator API (Bearer operator key). The same flows back the CLI.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{self, OperatorAuth, Path, Query};
use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use crate::app::App;
use crate::error::ApiError;
use crate::flows::admin::{
    self as flows, CardView, Contacts, CreatedEnrolmentCode, CreatedRequestor, NewCardRequest, NewRequestorRequest,
};
use crate::flows::authentication_value::{self, VerifyRequest, VerifyResponse};
use crate::storage::{AuditEvent, AuditFilter, OutboxMessage, OutboxPush};
use crate::window::security::{NewQuestions, QuestionsView};

/// The path parameter every card operation takes.
const CARD_ID: &str = "The card's id (from its creation), never its number";

/// Create a requestor
///
/// A merchant or 3DS server allowed to send AReqs. Its API key and
/// callback secret are in this answer only: they are stored as keyed hashes.
#[utoipa::path(
    post, path = "/v1/admin/requestors", tag = "admin", operation_id = "createRequestor",
    request_body = NewRequestorRequest,
    responses(
        (status = 201, description = "Created; the key and secret are shown this once", body = CreatedRequestor),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn create_requestor(
    State(app): State<App>,
    op: OperatorAuth,
    extract::Json(req): extract::Json<NewRequestorRequest>,
) -> Result<(StatusCode, Json<CreatedRequestor>), ApiError> {
    op.require_admin()?;
    Ok((StatusCode::CREATED, Json(flows::create_requestor(&app, req, &op.actor()).await?)))
}

/// Register a card
///
/// The answer shows the card masked; the number is kept only as a keyed hash
/// and its last four digits.
#[utoipa::path(
    post, path = "/v1/admin/cards", tag = "admin", operation_id = "createCard",
    request_body = NewCardRequest,
    responses(
        (status = 201, description = "Registered", body = CardView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn create_card(
    State(app): State<App>,
    op: OperatorAuth,
    extract::Json(req): extract::Json<NewCardRequest>,
) -> Result<(StatusCode, Json<CardView>), ApiError> {
    op.require_admin()?;
    Ok((StatusCode::CREATED, Json(flows::create_card(&app, req, &op.actor()).await?)))
}

/// Show a card (masked)
#[utoipa::path(
    get, path = "/v1/admin/cards/{card_id}", tag = "admin", operation_id = "getCard",
    params(("card_id" = String, Path, description = CARD_ID)),
    responses(
        (status = 200, description = "The card", body = CardView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 404, response = NotFound), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = [])),
)]
pub async fn card(
    State(app): State<App>,
    _op: OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::card(&app, &card_id).await?))
}

/// An enrolled device, without its key or push token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSummary {
    device_id: String,
    platform: String,
    display_name: String,
    notifications_enabled: bool,
    has_push_token: bool,
    created_at: i64,
}

/// List a card's devices
#[utoipa::path(
    get, path = "/v1/admin/cards/{card_id}/devices", tag = "admin", operation_id = "listCardDevices",
    params(("card_id" = String, Path, description = CARD_ID)),
    responses(
        (status = 200, description = "The devices enrolled for the card (none for an unknown card)", body = [DeviceSummary]),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = [])),
)]
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

/// Create an enrolment code
///
/// A single-use code the cardholder types into the app to enrol it for the
/// card. Shown this once.
#[utoipa::path(
    post, path = "/v1/admin/cards/{card_id}/enrolment-codes", tag = "admin", operation_id = "createEnrolmentCode",
    params(("card_id" = String, Path, description = CARD_ID)),
    responses(
        (status = 201, description = "Created; the code is shown this once", body = CreatedEnrolmentCode),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn create_enrolment_code(
    State(app): State<App>,
    op: OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<(StatusCode, Json<CreatedEnrolmentCode>), ApiError> {
    op.require_admin()?;
    Ok((StatusCode::CREATED, Json(flows::create_enrolment_code(&app, &card_id, &op.actor()).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PushQuery {
    /// Only the pushes to this device.
    device_id: Option<String>,
    /// At most this many, newest first (default 50; above 500 counts as 500).
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    limit: Option<u32>,
}

/// List recorded pushes
///
/// The default notifier's outbox: what would have been pushed.
#[utoipa::path(
    get, path = "/v1/admin/pushes", tag = "admin", operation_id = "listPushes",
    params(PushQuery),
    responses(
        (status = 200, description = "The pushes", body = [OutboxPush]),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = [])),
)]
pub async fn pushes(
    State(app): State<App>,
    _op: OperatorAuth,
    Query(q): Query<PushQuery>,
) -> Result<Json<Vec<OutboxPush>>, ApiError> {
    Ok(Json(app.storage.outbox_pushes(q.device_id.as_deref(), q.limit.unwrap_or(50).min(500)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only the events about this card.
    #[serde(rename = "cardId")]
    card_id: Option<String>,
    /// Only the events about this purchase.
    #[serde(rename = "acsTransID")]
    acs_trans_id: Option<String>,
    /// At most this many, newest first (default 100; above 1000 counts as 1000).
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    limit: Option<u32>,
}

/// Search the audit trail
#[utoipa::path(
    get, path = "/v1/admin/audit", tag = "admin", operation_id = "searchAudit",
    params(AuditQuery),
    responses(
        (status = 200, description = "The events", body = [AuditEvent]),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = [])),
)]
pub async fn audit(
    State(app): State<App>,
    _op: OperatorAuth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let filter =
        AuditFilter { card_id: q.card_id, acs_trans_id: q.acs_trans_id, limit: q.limit.unwrap_or(100).min(1000) };
    Ok(Json(app.storage.audit_events(&filter).await?))
}

/// Verify an authentication value
///
/// The issuer's check of a `Y` before it authorises the payment: the value
/// must belong to that purchase, card number, amount and currency.
#[utoipa::path(
    post, path = "/v1/admin/authentication-values/verify", tag = "admin", operation_id = "verifyAuthenticationValue",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Whether the value is valid", body = VerifyResponse),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = [])),
)]
pub async fn verify_authentication_value(
    State(app): State<App>,
    _op: OperatorAuth,
    extract::Json(req): extract::Json<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    Ok(Json(authentication_value::verify(&app, &req).await?))
}

/// Replace a card's contacts
///
/// Replaces the card's email and phone (this card only: other cards on the
/// same account keep theirs). An absent one is removed.
#[utoipa::path(
    put, path = "/v1/admin/cards/{card_id}/contacts", tag = "admin", operation_id = "setCardContacts",
    params(("card_id" = String, Path, description = CARD_ID)),
    request_body = Contacts,
    responses(
        (status = 200, description = "The card as it now is", body = CardView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn set_contacts(
    State(app): State<App>,
    op: OperatorAuth,
    Path(card_id): Path<String>,
    extract::Json(contacts): extract::Json<Contacts>,
) -> Result<Json<CardView>, ApiError> {
    op.require_admin()?;
    Ok(Json(flows::set_contacts(&app, &card_id, contacts, &op.actor()).await?))
}

/// Unblock a card
///
/// Lifts the block that too many wrong codes put on a card (support or admin).
#[utoipa::path(
    post, path = "/v1/admin/cards/{card_id}/unblock", tag = "admin", operation_id = "unblockCard",
    params(("card_id" = String, Path, description = CARD_ID)),
    responses(
        (status = 200, description = "The card as it now is", body = CardView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 404, response = NotFound), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = [])),
)]
pub async fn unblock_card(
    State(app): State<App>,
    op: OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::unblock_card(&app, &card_id, &op.actor()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// At most this many, newest first (default 50; above 500 counts as 500).
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    limit: Option<u32>,
}

/// List recorded emails and SMS
///
/// The development message outbox (the messages hold one-time codes): only
/// while a channel delivers to it (`transport = "outbox"`), 404 otherwise.
#[utoipa::path(
    get, path = "/v1/admin/messages", tag = "admin", operation_id = "listMessages",
    params(MessageQuery),
    responses(
        (status = 200, description = "The messages", body = [OutboxMessage]),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
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

/// Replace a card's security questions
///
/// At most five; an empty list removes them. The answers are stored only as
/// keyed hashes of their normalised form and never shown again.
#[utoipa::path(
    put, path = "/v1/admin/cards/{card_id}/security-questions", tag = "admin",
    operation_id = "setSecurityQuestions",
    params(("card_id" = String, Path, description = CARD_ID)),
    request_body = NewQuestions,
    responses(
        (status = 200, description = "The questions, without answers", body = QuestionsView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn set_security_questions(
    State(app): State<App>,
    op: OperatorAuth,
    Path(card_id): Path<String>,
    extract::Json(questions): extract::Json<NewQuestions>,
) -> Result<Json<QuestionsView>, ApiError> {
    op.require_admin()?;
    Ok(Json(crate::window::security::provision(&app, &card_id, questions, &op.actor()).await?))
}

/// Show a card's security questions
///
/// The questions only, never the answers.
#[utoipa::path(
    get, path = "/v1/admin/cards/{card_id}/security-questions", tag = "admin", operation_id = "getSecurityQuestions",
    params(("card_id" = String, Path, description = CARD_ID)),
    responses(
        (status = 200, description = "The questions", body = QuestionsView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 404, response = NotFound), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = [])),
)]
pub async fn security_questions(
    State(app): State<App>,
    _op: OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<QuestionsView>, ApiError> {
    Ok(Json(crate::window::security::show(&app, &card_id).await?))
}
