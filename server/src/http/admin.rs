//! The operator API (Bearer operator key). Each handler's first extractor
//! says who may call it: [`AdminAuth`] (admins only; a support key gets 403
//! `forbidden`) or [`OperatorAuth`] (support too: reading cards, devices
//! and the audit trail, unblocking). The flows in `flows::admin` do the
//! work — and the auditing — for the CLI too.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{self, AdminAuth, OperatorAuth, Path, Query};
use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
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

// The path parameters, described once.
const OPERATOR_ID: &str = "The operator's id (from its creation)";
const REQUESTOR_ID: &str = "The requestor's `threeDSRequestorID`";
const CARD_ID: &str = "The card's id (from its creation), never its number";
const DEVICE_ID: &str = "The device's id (from its enrolment)";

// ---- operators (admin) ----------------------------------------------------

/// Create an operator
///
/// A new operator API key with a role. The key is in this answer only: it
/// is stored as a keyed hash.
#[utoipa::path(
    post, path = "/v1/admin/operators", tag = "admin", operation_id = "createOperator",
    request_body = NewOperatorRequest,
    responses(
        (status = 201, description = "Created; the key is shown this once", body = CreatedOperator),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn create_operator(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    extract::Json(req): extract::Json<NewOperatorRequest>,
) -> Result<Created<CreatedOperator>, ApiError> {
    Ok((StatusCode::CREATED, Json(flows::create_operator(&app, &req.name, req.role, &op.actor()).await?)))
}

/// List operators
///
/// Every operator, revoked ones too, never a key.
#[utoipa::path(
    get, path = "/v1/admin/operators", tag = "admin", operation_id = "listOperators",
    responses(
        (status = 200, description = "The operators", body = [OperatorView]),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn operators(State(app): State<App>, AdminAuth(op): AdminAuth) -> Result<Json<Vec<OperatorView>>, ApiError> {
    Ok(Json(flows::operators(&app, &op.actor()).await?))
}

/// Revoke an operator
///
/// The operator's key stops working now. An admin may revoke their own (the
/// CLI can always create another admin).
#[utoipa::path(
    post, path = "/v1/admin/operators/{operator_id}/revoke", tag = "admin", operation_id = "revokeOperator",
    params(("operator_id" = String, Path, description = OPERATOR_ID)),
    responses(
        (status = 200, description = "The operator as it now is", body = OperatorView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn revoke_operator(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(operator_id): Path<String>,
) -> Result<Json<OperatorView>, ApiError> {
    Ok(Json(flows::revoke_operator(&app, &operator_id, &op.actor()).await?))
}

// ---- requestors (admin) ---------------------------------------------------

/// Create a requestor
///
/// A merchant or 3DS server allowed to send AReqs. Its API key and callback
/// secret are in this answer only: the key is stored as a keyed hash, the
/// secret sealed.
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
    AdminAuth(op): AdminAuth,
    extract::Json(req): extract::Json<NewRequestorRequest>,
) -> Result<Created<CreatedRequestor>, ApiError> {
    Ok((StatusCode::CREATED, Json(flows::create_requestor(&app, req, &op.actor()).await?)))
}

/// List requestors
///
/// Every requestor, never a key or secret.
#[utoipa::path(
    get, path = "/v1/admin/requestors", tag = "admin", operation_id = "listRequestors",
    responses(
        (status = 200, description = "The requestors", body = [RequestorView]),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn requestors(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
) -> Result<Json<Vec<RequestorView>>, ApiError> {
    Ok(Json(flows::requestors(&app, &op.actor()).await?))
}

/// Show a requestor
///
/// With, while a rotation's overlap lasts, when the previous key and
/// secret stop working.
#[utoipa::path(
    get, path = "/v1/admin/requestors/{requestor_id}", tag = "admin", operation_id = "getRequestor",
    params(("requestor_id" = String, Path, description = REQUESTOR_ID)),
    responses(
        (status = 200, description = "The requestor", body = RequestorView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn requestor(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(requestor_id): Path<String>,
) -> Result<Json<RequestorView>, ApiError> {
    Ok(Json(flows::requestor(&app, &requestor_id, &op.actor()).await?))
}

/// Rotate a requestor's API key
///
/// A new key, shown this once. The current one keeps working for
/// `requestors.rotation_overlap_secs` (or until its revocation), so the
/// requestor can deploy the new one without a gap.
#[utoipa::path(
    post, path = "/v1/admin/requestors/{requestor_id}/api-key/rotate", tag = "admin",
    operation_id = "rotateRequestorApiKey",
    params(("requestor_id" = String, Path, description = REQUESTOR_ID)),
    responses(
        (status = 200, description = "The new key, shown this once", body = RotatedApiKey),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn rotate_api_key(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(requestor_id): Path<String>,
) -> Result<Json<RotatedApiKey>, ApiError> {
    Ok(Json(flows::rotate_api_key(&app, &requestor_id, &op.actor()).await?))
}

/// Revoke a requestor's previous API key
///
/// Ends a rotation's overlap now: the key the last rotation replaced stops
/// working. 404 when there is none.
#[utoipa::path(
    post, path = "/v1/admin/requestors/{requestor_id}/api-key/revoke-previous", tag = "admin",
    operation_id = "revokePreviousRequestorApiKey",
    params(("requestor_id" = String, Path, description = REQUESTOR_ID)),
    responses(
        (status = 200, description = "The requestor as it now is", body = RequestorView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn revoke_previous_api_key(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(requestor_id): Path<String>,
) -> Result<Json<RequestorView>, ApiError> {
    Ok(Json(flows::revoke_previous(&app, &requestor_id, Credential::ApiKey, &op.actor()).await?))
}

/// Rotate a requestor's callback secret
///
/// A new secret, shown this once. Result callbacks carry a signature under
/// the current one too for `requestors.rotation_overlap_secs` (or until its
/// revocation).
#[utoipa::path(
    post, path = "/v1/admin/requestors/{requestor_id}/callback-secret/rotate", tag = "admin",
    operation_id = "rotateRequestorCallbackSecret",
    params(("requestor_id" = String, Path, description = REQUESTOR_ID)),
    responses(
        (status = 200, description = "The new secret, shown this once", body = RotatedCallbackSecret),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn rotate_callback_secret(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(requestor_id): Path<String>,
) -> Result<Json<RotatedCallbackSecret>, ApiError> {
    Ok(Json(flows::rotate_callback_secret(&app, &requestor_id, &op.actor()).await?))
}

/// Revoke a requestor's previous callback secret
///
/// Ends a rotation's overlap now: callbacks are signed with the current
/// secret only. 404 when there is no previous one.
#[utoipa::path(
    post, path = "/v1/admin/requestors/{requestor_id}/callback-secret/revoke-previous", tag = "admin",
    operation_id = "revokePreviousRequestorCallbackSecret",
    params(("requestor_id" = String, Path, description = REQUESTOR_ID)),
    responses(
        (status = 200, description = "The requestor as it now is", body = RequestorView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn revoke_previous_callback_secret(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(requestor_id): Path<String>,
) -> Result<Json<RequestorView>, ApiError> {
    Ok(Json(flows::revoke_previous(&app, &requestor_id, Credential::CallbackSecret, &op.actor()).await?))
}

// ---- cards ----------------------------------------------------------------

/// Register a card
///
/// The answer shows the card masked; the number is kept only as a keyed
/// hash and its last four digits.
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
    AdminAuth(op): AdminAuth,
    extract::Json(req): extract::Json<NewCardRequest>,
) -> Result<Created<CardView>, ApiError> {
    Ok((StatusCode::CREATED, Json(flows::create_card(&app, req, &op.actor()).await?)))
}

/// Import cards
///
/// Up to 500 cards in one JSON batch; each row succeeds or fails on its
/// own, and failures name their row, never its card number. A number
/// already registered is updated with the row's language and contacts (or
/// left alone if nothing differs), so an import can be run again. CSV and
/// JSON Lines files are the CLI's (`countersign card import`), which reads
/// them and imports them in batches like this one.
#[utoipa::path(
    post, path = "/v1/admin/cards/import", tag = "admin", operation_id = "importCards",
    request_body(content = ImportRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What the import did", body = ImportReport),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn import_cards(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    extract::Json(req): extract::Json<ImportRequest>,
) -> Result<Json<ImportReport>, ApiError> {
    Ok(Json(flows::import_cards(&app, flows::batch_rows(req), &op.actor()).await?))
}

/// Show a card
///
/// Masked: never the full number.
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
    OperatorAuth(op): OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::show_card(&app, &card_id, &op.actor()).await?))
}

/// Set a card's language
///
/// The language of the emails, SMS and challenge window for this card;
/// `null` removes it (the browser's language is used, then English).
#[utoipa::path(
    put, path = "/v1/admin/cards/{card_id}/language", tag = "admin", operation_id = "setCardLanguage",
    params(("card_id" = String, Path, description = CARD_ID)),
    request_body = CardLanguage,
    responses(
        (status = 200, description = "The card as it now is", body = CardView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn set_language(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(card_id): Path<String>,
    extract::Json(req): extract::Json<CardLanguage>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::set_language(&app, &card_id, req, &op.actor()).await?))
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
    AdminAuth(op): AdminAuth,
    Path(card_id): Path<String>,
    extract::Json(contacts): extract::Json<Contacts>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::set_contacts(&app, &card_id, contacts, &op.actor()).await?))
}

/// Unblock a card
///
/// Lifts the block that too many wrong codes put on a card.
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
    OperatorAuth(op): OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<CardView>, ApiError> {
    Ok(Json(flows::unblock_card(&app, &card_id, &op.actor()).await?))
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
    AdminAuth(op): AdminAuth,
    Path(card_id): Path<String>,
    extract::Json(questions): extract::Json<NewQuestions>,
) -> Result<Json<QuestionsView>, ApiError> {
    Ok(Json(flows::set_security_questions(&app, &card_id, questions, &op.actor()).await?))
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
    OperatorAuth(op): OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<QuestionsView>, ApiError> {
    Ok(Json(flows::security_questions(&app, &card_id, &op.actor()).await?))
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
    AdminAuth(op): AdminAuth,
    Path(card_id): Path<String>,
) -> Result<Created<CreatedEnrolmentCode>, ApiError> {
    Ok((StatusCode::CREATED, Json(flows::create_enrolment_code(&app, &card_id, &op.actor()).await?)))
}

// ---- devices --------------------------------------------------------------

/// List a card's devices
///
/// The devices enrolled for the card (revoked ones are not), never a key
/// or push token.
#[utoipa::path(
    get, path = "/v1/admin/cards/{card_id}/devices", tag = "admin", operation_id = "listCardDevices",
    params(("card_id" = String, Path, description = CARD_ID)),
    responses(
        (status = 200, description = "The devices", body = [DeviceSummary]),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 404, response = NotFound), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = [])),
)]
pub async fn card_devices(
    State(app): State<App>,
    OperatorAuth(op): OperatorAuth,
    Path(card_id): Path<String>,
) -> Result<Json<Vec<DeviceSummary>>, ApiError> {
    Ok(Json(flows::card_devices(&app, &card_id, &op.actor()).await?))
}

/// Revoke a device
///
/// A lost or stolen phone: it is unenrolled from every card, its signed
/// requests are refused (403 `device_revoked`), and a purchase waiting on
/// it that no other device of the card can answer falls back to a
/// one-time code at once.
#[utoipa::path(
    post, path = "/v1/admin/devices/{device_id}/revoke", tag = "admin", operation_id = "revokeDevice",
    params(("device_id" = String, Path, description = DEVICE_ID)),
    responses(
        (status = 200, description = "Revoked", body = RevokedDevice),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn revoke_device(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Path(device_id): Path<String>,
) -> Result<Json<RevokedDevice>, ApiError> {
    Ok(Json(flows::revoke_device(&app, &device_id, &op.actor()).await?))
}

// ---- audit, verification, outboxes -----------------------------------------

/// Search the audit trail
///
/// Lines matching every filter given, a page at a time in the order they
/// were appended. A page that is not the last has a `nextCursor`: pass it,
/// with the same filters, for the next.
#[utoipa::path(
    get, path = "/v1/admin/audit", tag = "admin", operation_id = "searchAudit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of audit lines", body = AuditPage),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = [])),
)]
pub async fn audit(
    State(app): State<App>,
    OperatorAuth(op): OperatorAuth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(flows::search_audit(&app, q, &op.actor()).await?))
}

/// Verify an authentication value
///
/// The issuer's check of a `Y` before it authorises the payment: the value
/// must belong to that purchase, card number, amount and currency. It
/// answers yes or no only, so a support key may ask.
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
    OperatorAuth(op): OperatorAuth,
    extract::Json(req): extract::Json<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    Ok(Json(flows::check_authentication_value(&app, &req, &op.actor()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PushQuery {
    /// Only the pushes to this device.
    device_id: Option<String>,
    /// At most this many (default 50; 0 counts as 1, above 500 as 500).
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    limit: Option<u32>,
}

/// List recorded pushes
///
/// The default notifier's outbox: what would have been pushed (challenge
/// ids, never card or purchase details).
#[utoipa::path(
    get, path = "/v1/admin/pushes", tag = "admin", operation_id = "listPushes",
    params(PushQuery),
    responses(
        (status = 200, description = "The pushes, newest first", body = [OutboxPush]),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn pushes(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Query(q): Query<PushQuery>,
) -> Result<Json<Vec<OutboxPush>>, ApiError> {
    Ok(Json(flows::pushes(&app, q.device_id.as_deref(), q.limit.unwrap_or(50), &op.actor()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// At most this many (default 50; 0 counts as 1, above 500 as 500).
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
        (status = 200, description = "The messages, newest first", body = [OutboxMessage]),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("operatorKey" = ["admin"])),
)]
pub async fn messages(
    State(app): State<App>,
    AdminAuth(op): AdminAuth,
    Query(q): Query<MessageQuery>,
) -> Result<Json<Vec<OutboxMessage>>, ApiError> {
    Ok(Json(flows::messages(&app, q.limit.unwrap_or(50), &op.actor()).await?))
}
