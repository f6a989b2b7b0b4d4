//! Operator actions: requestors, operators, cards and enrolment codes.
//! Shared by the admin API and the CLI. Secrets are shown once, on
//! creation, and stored only as keyed hashes.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_core::protocol::wire::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::emv::Pan;
use crate::error::ApiError;
use crate::secrets::{Purpose, random_below, random_bytes};
use crate::storage::{AuditEvent, Card, EnrolmentCode, NewCard, Operator, OperatorRole, Requestor, StorageError};

/// A new API key: a recognisable prefix and 192 random bits.
pub fn new_api_key(prefix: &str) -> String {
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(random_bytes::<24>()))
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewRequestorRequest {
    /// The requestor's `threeDSRequestorID`.
    #[schema(min_length = 1, max_length = 35)]
    pub id: String,
    #[schema(min_length = 1, max_length = 40)]
    pub name: String,
}

/// Returned once: the key and secret are not stored in the clear.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedRequestor {
    pub id: String,
    pub name: String,
    pub api_key: String,
    pub callback_secret: String,
}

pub async fn create_requestor(app: &App, req: NewRequestorRequest, actor: &str) -> Result<CreatedRequestor, ApiError> {
    check_text("id", &req.id, 35)?;
    check_text("name", &req.name, 40)?;
    let api_key = new_api_key("csr");
    let requestor = Requestor {
        id: req.id.clone(),
        name: req.name.clone(),
        callback_secret: URL_SAFE_NO_PAD.encode(random_bytes::<32>()),
    };
    let now = app.now_ms();
    app.storage
        .create_requestor(&requestor, &app.secrets.keyed_hash(Purpose::ApiKey, api_key.as_bytes()), now)
        .await
        .map_err(|e| conflict_or(e, "a requestor with this id already exists"))?;
    let mut audit = AuditEvent::new(now, "requestor.created", actor.to_owned(), "ok");
    audit.detail = serde_json::json!({ "requestorId": requestor.id });
    app.storage.append_audit(&audit).await?;
    Ok(CreatedRequestor { id: requestor.id, name: requestor.name, api_key, callback_secret: requestor.callback_secret })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedOperator {
    pub id: String,
    pub name: String,
    pub role: OperatorRole,
    pub api_key: String,
}

pub async fn create_operator(
    app: &App,
    name: &str,
    role: OperatorRole,
    actor: &str,
) -> Result<CreatedOperator, ApiError> {
    check_text("name", name, 64)?;
    let api_key = new_api_key("cso");
    let operator = Operator { id: uuid::Uuid::new_v4().to_string(), name: name.to_owned(), role };
    let now = app.now_ms();
    app.storage.create_operator(&operator, &app.secrets.keyed_hash(Purpose::ApiKey, api_key.as_bytes()), now).await?;
    let mut audit = AuditEvent::new(now, "operator.created", actor.to_owned(), "ok");
    audit.detail = serde_json::json!({ "operatorId": operator.id, "role": role.as_str() });
    app.storage.append_audit(&audit).await?;
    Ok(CreatedOperator { id: operator.id, name: operator.name, role, api_key })
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCardRequest {
    /// The card number: 13 to 19 digits, Luhn-valid. Kept only as a keyed
    /// hash and its last four digits.
    pub acct_number: String,
    /// BCP 47 language for messages to the cardholder: `ja`, `en`, `sv`.
    #[schema(pattern = "^[A-Za-z0-9-]{2,8}$")]
    pub language: Option<String>,
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// E.164, e.g. `+46701234567`.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    pub phone: Option<String>,
}

/// A card as operators see it: never the full number.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CardView {
    pub card_id: String,
    pub masked_pan: String,
    pub language: Option<String>,
    pub has_email: bool,
    pub has_phone: bool,
    pub blocked: bool,
    pub created_at: i64,
}

impl From<&Card> for CardView {
    fn from(c: &Card) -> Self {
        Self {
            card_id: c.id.clone(),
            masked_pan: c.masked_pan(),
            language: c.language.clone(),
            has_email: c.email.is_some(),
            has_phone: c.phone.is_some(),
            blocked: c.blocked_at.is_some(),
            created_at: c.created_at,
        }
    }
}

pub async fn create_card(app: &App, req: NewCardRequest, actor: &str) -> Result<CardView, ApiError> {
    let pan = Pan::parse(req.acct_number.trim()).map_err(|e| ApiError::bad_request(format!("acctNumber: {e}")))?;
    if let Some(lang) = &req.language
        && (!(2..=8).contains(&lang.len()) || !lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(ApiError::bad_request("language: expected a language tag such as ja, en or sv"));
    }
    check_contacts(req.email.as_deref(), req.phone.as_deref())?;
    let now = app.now_ms();
    let card = Card {
        id: uuid::Uuid::new_v4().to_string(),
        pan_last4: pan.last_digits(4).to_owned(),
        language: req.language,
        email: req.email,
        phone: req.phone,
        blocked_at: None,
        failed_code_attempts: 0,
        created_at: now,
    };
    let new =
        NewCard { card: card.clone(), pan_hash: app.secrets.keyed_hash(Purpose::CardNumber, pan.as_str().as_bytes()) };
    app.storage.create_card(&new).await.map_err(|e| conflict_or(e, "this card number is already registered"))?;
    let mut audit = AuditEvent::new(now, "card.created", actor.to_owned(), "ok");
    audit.card_id = Some(card.id.clone());
    app.storage.append_audit(&audit).await?;
    Ok(CardView::from(&card))
}

pub fn check_contacts(email: Option<&str>, phone: Option<&str>) -> Result<(), ApiError> {
    if email.is_some_and(|e| !valid_email(e)) {
        return Err(ApiError::bad_request("email: not a valid address"));
    }
    if phone.is_some_and(|p| !valid_e164(p)) {
        return Err(ApiError::bad_request("phone: expected E.164, e.g. +46701234567"));
    }
    Ok(())
}

/// A card's contacts for one-time codes; an absent one is removed.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contacts {
    #[schema(max_length = 254)]
    pub email: Option<String>,
    /// E.164, e.g. `+46701234567`.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    pub phone: Option<String>,
}

/// Replaces one card's contacts. Each card (primary, additional,
/// supplementary) has its own, so no other card changes.
pub async fn set_contacts(app: &App, card_id: &str, contacts: Contacts, actor: &str) -> Result<CardView, ApiError> {
    check_contacts(contacts.email.as_deref(), contacts.phone.as_deref())?;
    let mut audit = AuditEvent::new(app.now_ms(), "card.contacts_changed", actor.to_owned(), "ok");
    audit.card_id = Some(card_id.to_owned());
    audit.detail = serde_json::json!({ "hasEmail": contacts.email.is_some(), "hasPhone": contacts.phone.is_some() });
    if !app.storage.set_card_contacts(card_id, contacts.email.as_deref(), contacts.phone.as_deref(), &audit).await? {
        return Err(ApiError::not_found("card"));
    }
    card(app, card_id).await
}

/// Lifts the block that too many wrong codes put on a card.
pub async fn unblock_card(app: &App, card_id: &str, actor: &str) -> Result<CardView, ApiError> {
    let mut audit = AuditEvent::new(app.now_ms(), "card.unblocked", actor.to_owned(), "ok");
    audit.card_id = Some(card_id.to_owned());
    if !app.storage.unblock_card(card_id, &audit).await? {
        return Err(ApiError::not_found("card"));
    }
    crate::metrics::card_unblocked();
    card(app, card_id).await
}

pub async fn card(app: &App, card_id: &str) -> Result<CardView, ApiError> {
    let card = app.storage.card(card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    Ok(CardView::from(&card))
}

/// Crockford's base32 alphabet: no I, L, O or U to misread.
const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// The first part of a code finds it; the rest is the secret.
pub const CODE_LOOKUP_LEN: usize = 4;
pub const CODE_LEN: usize = 12;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedEnrolmentCode {
    /// Shown once, grouped for reading: `ABCD-EFGH-JKMN`.
    pub code: String,
    pub card_id: String,
    pub expires_at: i64,
}

pub async fn create_enrolment_code(app: &App, card_id: &str, actor: &str) -> Result<CreatedEnrolmentCode, ApiError> {
    let card = app.storage.card(card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    let now = app.now_ms();
    let expires_at = now + app.config.enrolment.code_ttl_secs as i64 * 1000;
    // A lookup collision is astronomically rare but possible: try again.
    for _ in 0..3 {
        let raw: String = (0..CODE_LEN).map(|_| CODE_ALPHABET[random_below(32) as usize] as char).collect();
        let (lookup, secret) = raw.split_at(CODE_LOOKUP_LEN);
        let code = EnrolmentCode {
            lookup: lookup.to_owned(),
            secret_hash: app.secrets.keyed_hash(Purpose::EnrolmentCode, secret.as_bytes()),
            card_id: card.id.clone(),
            created_at: now,
            expires_at,
            attempts_left: app.config.enrolment.max_attempts,
            used_at: None,
        };
        match app.storage.create_enrolment_code(&code).await {
            Ok(()) => {
                let mut audit = AuditEvent::new(now, "enrolment_code.created", actor.to_owned(), "ok");
                audit.card_id = Some(card.id.clone());
                audit.detail = serde_json::json!({ "expiresAt": expires_at });
                app.storage.append_audit(&audit).await?;
                let grouped = format!("{}-{}-{}", &raw[0..4], &raw[4..8], &raw[8..12]);
                return Ok(CreatedEnrolmentCode { code: grouped, card_id: card.id, expires_at });
            }
            Err(StorageError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable,
        "could not allocate an enrolment code; retry",
    ))
}

/// Whether `code` (normalised) has the shape of an enrolment code.
pub fn is_code_shaped(code: &str) -> bool {
    code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))
}

fn conflict_or(e: StorageError, message: &str) -> ApiError {
    match e {
        StorageError::Conflict(_) => ApiError::conflict(ErrorCode::BadRequest, message),
        other => other.into(),
    }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let len = value.chars().count();
    if len == 0 || len > max || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!("{field}: 1 to {max} printable characters")));
    }
    Ok(())
}

/// A deliberately plain check: one `@`, a non-empty local part, a dotted
/// domain, no spaces. Delivery is the real test.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && email.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// E.164: `+`, a non-zero country digit, 8 to 15 digits in all.
pub fn valid_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_checks() {
        assert!(valid_email("taro@example.jp"));
        assert!(!valid_email("taro@localhost"));
        assert!(!valid_email("taro example@x.jp"));
        assert!(!valid_email("@x.jp"));
        assert!(valid_e164("+46701234567"));
        assert!(!valid_e164("0701234567"));
        assert!(!valid_e164("+0123456789"));
    }

    #[test]
    fn code_shape() {
        assert!(is_code_shaped("ABCD0123WXYZ"));
        assert!(!is_code_shaped("ABCD0123WXYI"));
        assert!(!is_code_shaped("ABCD"));
    }
}
