//! Operator actions: operators, requestors, cards, devices and the audit
//! trail. Shared by the admin API and the CLI, so each rule (validation,
//! auditing, what may be shown) lives here once, whoever asks.
//!
//! Every action — reads included — appends an audit line naming who
//! (`operator:ID`, `cli`), what and on which card or device, never a secret.
//! Secrets are shown once, on creation, and stored only as keyed hashes or
//! sealed; nothing here returns a full card number, a one-time code, a
//! security answer or a key after that.

mod audit;
mod cards;
mod devices;
mod enrolment_codes;
mod import;
mod issuer;
mod operators;
mod outbox;
mod requestors;

pub use audit::*;
pub use cards::*;
pub use devices::*;
pub use enrolment_codes::*;
pub use import::*;
pub use issuer::*;
pub use operators::*;
pub use outbox::*;
pub use requestors::*;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use countersign_core::protocol::wire::ErrorCode;

use crate::app::App;
use crate::error::ApiError;
use crate::secrets::random_bytes;
use crate::storage::{AuditEvent, StorageError};

/// A new API key: a recognisable prefix and 192 random bits.
pub fn new_api_key(prefix: &str) -> String {
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(random_bytes::<24>()))
}

/// The audit line of an action by `actor`, at the current time.
fn action(app: &App, kind: &str, actor: &str) -> AuditEvent {
    AuditEvent::new(app.now_ms(), kind, actor.to_owned(), "ok")
}

/// The audit line of an action on one card.
fn card_action(app: &App, kind: &str, actor: &str, card_id: &str) -> AuditEvent {
    AuditEvent { card_id: Some(card_id.to_owned()), ..action(app, kind, actor) }
}

async fn record(app: &App, event: AuditEvent) -> Result<(), ApiError> {
    app.storage.append_audit(&event).await.map_err(ApiError::from)
}

fn conflict_or(e: StorageError, message: &str) -> ApiError {
    match e {
        StorageError::Conflict(_) => ApiError::conflict(ErrorCode::BadRequest, message),
        other => other.into(),
    }
}

/// A name or id: 1 to `max` characters, none of them a control character
/// (`char::is_control`: U+0000–001F, U+007F–009F, which the request schemas
/// state as their `pattern`).
fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let len = value.chars().count();
    if len == 0 || len > max || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!("{field}: 1 to {max} printable characters")));
    }
    Ok(())
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
}
