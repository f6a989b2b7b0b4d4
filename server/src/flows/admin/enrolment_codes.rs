//! Enrolment codes: what a cardholder types into the app to enrol it for a
//! card. Shown once; only the first part (to find it) and a keyed hash of
//! the rest are stored.

use axum::http::StatusCode;
use countersign_core::protocol::wire::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{card_action, record};
use crate::app::App;
use crate::error::ApiError;
use crate::secrets::{Purpose, random_below};
use crate::storage::{EnrolmentCode, StorageError};

/// Crockford's base32 alphabet: no I, L, O or U to misread.
const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// The first part of a code finds it; the rest is the secret.
pub const CODE_LOOKUP_LEN: usize = 4;
pub const CODE_LEN: usize = 12;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
                let mut audit = card_action(app, "enrolment_code.created", actor, &card.id);
                audit.detail = serde_json::json!({ "expiresAt": expires_at });
                record(app, audit).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_shape() {
        assert!(is_code_shaped("ABCD0123WXYZ"));
        assert!(!is_code_shaped("ABCD0123WXYI"));
        assert!(!is_code_shaped("ABCD"));
    }
}
