//! The typed refusal every device and admin operation returns: an HTTP
//! status, a stable code from the protocol, and a sentence for people.
//! Requestor (3DS) endpoints use EMV `Erro` messages instead (`emv`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use countersign_core::protocol::ProtocolError;
use countersign_core::protocol::wire::{ErrorBody, ErrorCode, ErrorDetail};

use crate::storage::StorageError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub attempts_left: Option<u32>,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), attempts_left: None, retry_after_secs: None }
    }

    pub fn with_attempts_left(mut self, left: u32) -> Self {
        self.attempts_left = Some(left);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, message)
    }

    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
}

/// `text` with every run of six digits or more replaced by `…`, so an
/// error message never echoes a card number sent where it did not belong.
pub fn mask_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() >= 6 { "…" } else { &run });
        run.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "the service is briefly unavailable; retry",
                )
            }
            StorageError::Conflict(what) => {
                Self::new(StatusCode::CONFLICT, ErrorCode::BadRequest, format!("{what} already exists"))
            }
            StorageError::Corrupt(_) => {
                tracing::error!(error = %e, "stored data could not be read");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error")
            }
        }
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        let code = match e {
            ProtocolError::BadSignature | ProtocolError::MalformedSignature | ProtocolError::MalformedPublicKey => {
                ErrorCode::BadSignature
            }
            ProtocolError::StaleTimestamp { .. } => ErrorCode::StaleTimestamp,
            ProtocolError::ReplayedNonce => ErrorCode::ReplayedNonce,
            ProtocolError::MissingField(_) | ProtocolError::InvalidField { .. } => ErrorCode::Unauthenticated,
        };
        Self::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                attempts_left: self.attempts_left,
                retry_after_secs: self.retry_after_secs,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// An error and its causes on one line. HTTP and SMTP clients keep the
/// useful part ("connection refused") in the causes, out of `Display`.
pub fn describe_chain(e: &dyn std::error::Error) -> String {
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !detail.contains(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = cause.source();
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_digit_runs_are_masked() {
        assert_eq!(
            mask_digit_runs("invalid type: integer `378282246310005`, line 1"),
            "invalid type: integer `…`, line 1"
        );
        assert_eq!(mask_digit_runs("12345 ok 123456"), "12345 ok …");
    }
}
