//! The one error every exported call can throw.

use countersign_core::client::ClientError;

/// What went wrong, in terms an app can act on. No variant carries a card
/// number or other personal data: each is safe to log and report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum CountersignError {
    /// The server could not be reached, or the connection broke or timed
    /// out. Retrying later may work.
    #[error("network: {reason}")]
    Network { reason: String },
    /// The server refused the request. `code` is the device API's stable
    /// error code (`enrolment_code_invalid`, `amount_mismatch`, …; see
    /// docs/api.md), `unknown` for one newer than this library.
    #[error("the server refused the request (HTTP {status}, {code}): {reason}")]
    ServerRefused { status: u16, code: String, reason: String },
    /// The purchase can no longer be approved or denied.
    #[error("the purchase has expired")]
    Expired,
    /// The purchase was already approved or denied (perhaps on another device).
    #[error("the purchase was already approved or denied")]
    AlreadyDecided,
    /// This device is not enrolled for that server or card (or was unenrolled).
    #[error("this device is not enrolled")]
    NotEnrolled,
    /// The key store could not create, use or delete the device key, or the
    /// cardholder cancelled its prompt.
    #[error("device key unavailable: {reason}")]
    KeyUnavailable { reason: String },
    /// Something the app passed in cannot be used: a malformed push, an
    /// invalid server URL, a number the purchase did not offer.
    #[error("unusable input: {reason}")]
    BadPayload { reason: String },
    /// The server answered something that is not the Countersign device API.
    #[error("unexpected server response: {reason}")]
    BadResponse { reason: String },
    /// The local database cannot be read or written (corrupted, written by a
    /// newer app version, disk full). Deleting it forgets the enrolments.
    #[error("local storage: {reason}")]
    LocalStorage { reason: String },
}

impl From<ClientError> for CountersignError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Network(reason) => Self::Network { reason },
            ClientError::ServerRefused { status, code, message } => {
                Self::ServerRefused { status, code: serde_name(&code), reason: message }
            }
            ClientError::Expired => Self::Expired,
            ClientError::AlreadyDecided => Self::AlreadyDecided,
            ClientError::NotEnrolled => Self::NotEnrolled,
            ClientError::KeyUnavailable(reason) => Self::KeyUnavailable { reason },
            ClientError::BadPayload(reason) => Self::BadPayload { reason },
            ClientError::BadResponse(reason) => Self::BadResponse { reason },
            ClientError::LocalStorage(reason) => Self::LocalStorage { reason },
        }
    }
}

/// The wire name of an error code (`amount_mismatch`), as in docs/api.md.
fn serde_name(code: &countersign_core::protocol::wire::ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "unknown".to_owned(),
    }
}
