//! What can go wrong on the device side, in terms an app can act on.

use thiserror::Error;

use crate::protocol::wire::{ErrorBody, ErrorCode};

/// A failed client call. No variant carries a card number or anything else
/// personal, so every one is safe to log and to show.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// The server could not be reached, or the connection broke or timed out.
    #[error("network: {0}")]
    Network(String),
    /// The server answered with an error this enum has no better name for.
    #[error("the server refused the request (HTTP {status}, {code:?}): {message}")]
    ServerRefused { status: u16, code: ErrorCode, message: String },
    #[error("the purchase can no longer be approved or denied: it has expired")]
    Expired,
    #[error("the purchase was already approved or denied")]
    AlreadyDecided,
    /// This device is unknown, revoked, not enrolled for the card, or has not
    /// enrolled yet.
    #[error("this device is not enrolled")]
    NotEnrolled,
    /// The key store could not provide the key or a usable signature.
    #[error("device key unavailable: {0}")]
    KeyUnavailable(String),
    /// Something the app passed in cannot be used as given.
    #[error("unusable input: {0}")]
    BadPayload(String),
    /// The server answered something that is not the device API.
    #[error("unexpected server response: {0}")]
    BadResponse(String),
    /// The device's own database cannot be read or written (corrupted, from
    /// a newer app version, disk full). Deleting it loses the enrolments.
    #[error("local storage: {0}")]
    LocalStorage(String),
}

impl ClientError {
    /// The error an HTTP error status with its Countersign error body means.
    pub fn from_error_body(status: u16, body: ErrorBody) -> Self {
        match body.error.code {
            ErrorCode::ChallengeExpired => ClientError::Expired,
            ErrorCode::AlreadyDecided => ClientError::AlreadyDecided,
            ErrorCode::UnknownDevice | ErrorCode::DeviceRevoked | ErrorCode::NotEnrolledForCard => {
                ClientError::NotEnrolled
            }
            code => ClientError::ServerRefused { status, code, message: body.error.message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::ErrorDetail;

    fn body(code: ErrorCode) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code, message: "why".into(), attempts_left: None, retry_after_secs: None } }
    }

    #[test]
    fn codes_the_app_acts_on_get_their_own_variant() {
        assert_eq!(ClientError::from_error_body(410, body(ErrorCode::ChallengeExpired)), ClientError::Expired);
        assert_eq!(ClientError::from_error_body(409, body(ErrorCode::AlreadyDecided)), ClientError::AlreadyDecided);
        for code in [ErrorCode::UnknownDevice, ErrorCode::DeviceRevoked, ErrorCode::NotEnrolledForCard] {
            assert_eq!(ClientError::from_error_body(403, body(code)), ClientError::NotEnrolled, "{code:?}");
        }
    }

    #[test]
    fn other_codes_keep_status_code_and_message() {
        assert_eq!(
            ClientError::from_error_body(422, body(ErrorCode::AmountMismatch)),
            ClientError::ServerRefused { status: 422, code: ErrorCode::AmountMismatch, message: "why".into() }
        );
    }

    #[test]
    fn a_code_from_a_newer_server_is_still_an_error() {
        let parsed: ErrorBody = serde_json::from_str(r#"{"error":{"code":"brand_new","message":"later"}}"#).unwrap();
        assert!(matches!(
            ClientError::from_error_body(400, parsed),
            ClientError::ServerRefused { code: ErrorCode::Unknown, .. }
        ));
    }
}
