//! EMV error codes, the [`EmvError`] type and the `Erro` message it renders to.

use std::fmt;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::types::MessageVersion;

/// `messageVersion` put in an `Erro` when the incoming one was unreadable or
/// unsupported: the baseline version every counterparty understands.
pub const ERRO_FALLBACK_VERSION: MessageVersion = MessageVersion::V2_2_0;

/// Erro `errorDescription` / `errorDetail` are at most 2048 characters (EMV).
const MAX_ERRO_TEXT: usize = 2048;

/// EMV 3DS error codes (EMV 3DS core spec, table A.4 "Error Code").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 101: message received invalid (cannot be parsed, or not the expected message type).
    MessageReceivedInvalid,
    /// 102: message version number not supported.
    MessageVersionNotSupported,
    /// 103: sent messages limit exceeded.
    SentMessagesLimitExceeded,
    /// 201: required data element missing.
    RequiredDataElementMissing,
    /// 202: critical message extension not recognised.
    CriticalMessageExtensionNotRecognised,
    /// 203: format or value of one or more data elements is invalid.
    InvalidFormat,
    /// 204: duplicate data element.
    DuplicateDataElement,
    /// 301: transaction ID not recognised.
    TransactionIdNotRecognised,
    /// 302: data decryption failure.
    DataDecryptionFailure,
    /// 303: access denied, invalid endpoint.
    AccessDenied,
    /// 304: ISO code invalid (currency, country).
    IsoCodeInvalid,
    /// 305: transaction data not valid.
    TransactionDataNotValid,
    /// 306: merchant category code not valid for payment system.
    MccNotValid,
    /// 307: serial number not valid.
    SerialNumberNotValid,
    /// 402: transaction timed out.
    TransactionTimedOut,
    /// 403: transient system failure.
    TransientSystemFailure,
    /// 404: permanent system failure.
    PermanentSystemFailure,
    /// 405: system connection failure.
    SystemConnectionFailure,
}

impl ErrorCode {
    /// Every code, for look-ups and tests.
    pub const ALL: [ErrorCode; 18] = [
        Self::MessageReceivedInvalid,
        Self::MessageVersionNotSupported,
        Self::SentMessagesLimitExceeded,
        Self::RequiredDataElementMissing,
        Self::CriticalMessageExtensionNotRecognised,
        Self::InvalidFormat,
        Self::DuplicateDataElement,
        Self::TransactionIdNotRecognised,
        Self::DataDecryptionFailure,
        Self::AccessDenied,
        Self::IsoCodeInvalid,
        Self::TransactionDataNotValid,
        Self::MccNotValid,
        Self::SerialNumberNotValid,
        Self::TransactionTimedOut,
        Self::TransientSystemFailure,
        Self::PermanentSystemFailure,
        Self::SystemConnectionFailure,
    ];

    /// The three-digit code as sent in `errorCode`, e.g. `"203"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MessageReceivedInvalid => "101",
            Self::MessageVersionNotSupported => "102",
            Self::SentMessagesLimitExceeded => "103",
            Self::RequiredDataElementMissing => "201",
            Self::CriticalMessageExtensionNotRecognised => "202",
            Self::InvalidFormat => "203",
            Self::DuplicateDataElement => "204",
            Self::TransactionIdNotRecognised => "301",
            Self::DataDecryptionFailure => "302",
            Self::AccessDenied => "303",
            Self::IsoCodeInvalid => "304",
            Self::TransactionDataNotValid => "305",
            Self::MccNotValid => "306",
            Self::SerialNumberNotValid => "307",
            Self::TransactionTimedOut => "402",
            Self::TransientSystemFailure => "403",
            Self::PermanentSystemFailure => "404",
            Self::SystemConnectionFailure => "405",
        }
    }

    /// Parses `"101"` etc.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// EMV's short name for the code, used at the start of `errorDescription`.
    pub const fn title(self) -> &'static str {
        match self {
            Self::MessageReceivedInvalid => "Message received invalid",
            Self::MessageVersionNotSupported => "Message version number not supported",
            Self::SentMessagesLimitExceeded => "Sent messages limit exceeded",
            Self::RequiredDataElementMissing => "Required data element missing",
            Self::CriticalMessageExtensionNotRecognised => "Critical message extension not recognised",
            Self::InvalidFormat => "Format of one or more data elements is invalid",
            Self::DuplicateDataElement => "Duplicate data element",
            Self::TransactionIdNotRecognised => "Transaction ID not recognised",
            Self::DataDecryptionFailure => "Data decryption failure",
            Self::AccessDenied => "Access denied, invalid endpoint",
            Self::IsoCodeInvalid => "ISO code invalid",
            Self::TransactionDataNotValid => "Transaction data not valid",
            Self::MccNotValid => "Merchant category code not valid for payment system",
            Self::SerialNumberNotValid => "Serial number not valid",
            Self::TransactionTimedOut => "Transaction timed out",
            Self::TransientSystemFailure => "Transient system failure",
            Self::PermanentSystemFailure => "Permanent system failure",
            Self::SystemConnectionFailure => "System connection failure",
        }
    }

    /// HTTP status used when no constructor chose another one.
    pub const fn default_http_status(self) -> StatusCode {
        match self {
            Self::TransactionIdNotRecognised => StatusCode::NOT_FOUND,
            Self::AccessDenied => StatusCode::FORBIDDEN,
            Self::SentMessagesLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::TransactionTimedOut => StatusCode::GATEWAY_TIMEOUT,
            Self::TransientSystemFailure => StatusCode::SERVICE_UNAVAILABLE,
            Self::PermanentSystemFailure => StatusCode::INTERNAL_SERVER_ERROR,
            Self::SystemConnectionFailure => StatusCode::BAD_GATEWAY,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused or failed EMV exchange, rendered as an EMV `Erro` message.
///
/// `detail` is EMV's `errorDetail`: the offending data element name(s),
/// comma separated. Neither `detail` nor `description` ever contains a
/// value taken from the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EMV error {code} ({detail}): {description}")]
pub struct EmvError {
    pub code: ErrorCode,
    pub detail: String,
    pub description: String,
    /// Echoed in the Erro when it was readable (a canonical UUID).
    pub three_ds_server_trans_id: Option<Uuid>,
    /// Echoed in the Erro when it was a supported version.
    pub message_version: Option<MessageVersion>,
    pub acs_trans_id: Option<Uuid>,
    /// EMV `errorMessageType`: the type of the erroneous message, when known.
    pub error_message_type: Option<&'static str>,
    status: StatusCode,
}

impl EmvError {
    /// An error with `code`'s default HTTP status.
    pub fn new(code: ErrorCode, detail: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            description: description.into(),
            three_ds_server_trans_id: None,
            message_version: None,
            acs_trans_id: None,
            error_message_type: None,
            status: code.default_http_status(),
        }
    }

    /// 201: a required data element is absent (or null).
    pub fn missing(field: impl Into<String>) -> Self {
        let field = field.into();
        let description = format!("{}: {field}", ErrorCode::RequiredDataElementMissing.title());
        Self::new(ErrorCode::RequiredDataElementMissing, field, description)
    }

    /// 203: wrong JSON type, bad format or bad value. `why` must not quote the value.
    pub fn invalid(field: impl Into<String>, why: impl fmt::Display) -> Self {
        let field = field.into();
        let description = format!("{}: {field} {why}", ErrorCode::InvalidFormat.title());
        Self::new(ErrorCode::InvalidFormat, field, description)
    }

    /// 304: invalid ISO currency or country code.
    pub fn iso_code_invalid(field: impl Into<String>, why: impl fmt::Display) -> Self {
        let field = field.into();
        let description = format!("{}: {field} {why}", ErrorCode::IsoCodeInvalid.title());
        Self::new(ErrorCode::IsoCodeInvalid, field, description)
    }

    /// 204: a data element appears twice.
    pub fn duplicate(field: impl Into<String>) -> Self {
        let field = field.into();
        let description = format!("{}: {field}", ErrorCode::DuplicateDataElement.title());
        Self::new(ErrorCode::DuplicateDataElement, field, description)
    }

    /// 101: the body is not a JSON object (or cannot be parsed at all).
    pub fn message_invalid(why: impl fmt::Display) -> Self {
        let description = format!("{}: {why}", ErrorCode::MessageReceivedInvalid.title());
        Self::new(ErrorCode::MessageReceivedInvalid, "message", description)
    }

    /// 101: `messageType` is not the one this endpoint accepts.
    pub fn unknown_message_type() -> Self {
        Self::new(
            ErrorCode::MessageReceivedInvalid,
            "messageType",
            format!("{}: unexpected messageType", ErrorCode::MessageReceivedInvalid.title()),
        )
    }

    /// 102: `messageVersion` is not supported.
    pub fn unsupported_version() -> Self {
        Self::new(
            ErrorCode::MessageVersionNotSupported,
            "messageVersion",
            format!("{}: supported versions are 2.2.0 and 2.3.1", ErrorCode::MessageVersionNotSupported.title()),
        )
    }

    /// 303 with HTTP 403: the caller is known but not allowed here.
    pub fn access_denied(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let description = format!("{}: {detail}", ErrorCode::AccessDenied.title());
        Self::new(ErrorCode::AccessDenied, detail, description)
    }

    /// 303 with HTTP 401: the caller did not authenticate (no or bad credentials).
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::access_denied(detail).with_status(StatusCode::UNAUTHORIZED)
    }

    /// 301 with HTTP 404. `errorDetail` is `acsTransID`; change it with [`Self::with_detail`].
    pub fn transaction_not_found() -> Self {
        Self::new(ErrorCode::TransactionIdNotRecognised, "acsTransID", ErrorCode::TransactionIdNotRecognised.title())
    }

    /// 101 with HTTP 413: the body is larger than `limit_bytes`.
    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            ErrorCode::MessageReceivedInvalid,
            "message",
            format!("{}: message exceeds {limit_bytes} bytes", ErrorCode::MessageReceivedInvalid.title()),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    }

    /// 403 with HTTP 503: try again later.
    pub fn transient(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let description = format!("{}: {detail}", ErrorCode::TransientSystemFailure.title());
        Self::new(ErrorCode::TransientSystemFailure, detail, description)
    }

    /// 404 with HTTP 500: a failure retrying will not fix.
    pub fn permanent(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let description = format!("{}: {detail}", ErrorCode::PermanentSystemFailure.title());
        Self::new(ErrorCode::PermanentSystemFailure, detail, description)
    }

    /// 305: the message is well formed but its data cannot be accepted.
    pub fn transaction_data_invalid(field: impl Into<String>, why: impl fmt::Display) -> Self {
        let field = field.into();
        let description = format!("{}: {field} {why}", ErrorCode::TransactionDataNotValid.title());
        Self::new(ErrorCode::TransactionDataNotValid, field, description)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_three_ds_server_trans_id(mut self, id: Uuid) -> Self {
        self.three_ds_server_trans_id = Some(id);
        self
    }

    pub fn with_message_version(mut self, version: MessageVersion) -> Self {
        self.message_version = Some(version);
        self
    }

    pub fn with_acs_trans_id(mut self, id: Uuid) -> Self {
        self.acs_trans_id = Some(id);
        self
    }

    /// Sets `errorMessageType` (e.g. "AReq", "CReq", "RRes").
    pub fn with_error_message_type(mut self, message_type: &'static str) -> Self {
        self.error_message_type = Some(message_type);
        self
    }

    /// The HTTP status [`IntoResponse`] will use.
    pub fn http_status(&self) -> StatusCode {
        self.status
    }

    /// The `Erro` message body for this error.
    pub fn to_erro(&self) -> Erro {
        Erro {
            message_type: "Erro".to_owned(),
            message_version: self.message_version.unwrap_or(ERRO_FALLBACK_VERSION),
            three_ds_server_trans_id: self.three_ds_server_trans_id,
            acs_trans_id: self.acs_trans_id,
            error_code: self.code.as_str().to_owned(),
            error_component: "A".to_owned(),
            error_description: truncate(&self.description, MAX_ERRO_TEXT),
            error_detail: truncate(&self.detail, MAX_ERRO_TEXT),
            error_message_type: self.error_message_type.map(str::to_owned),
        }
    }
}

impl IntoResponse for EmvError {
    fn into_response(self) -> Response {
        tracing::debug!(code = %self.code, detail = %self.detail, status = %self.status, "EMV Erro");
        (self.status, Json(self.to_erro())).into_response()
    }
}

/// The EMV `Erro` message. `None` fields are omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "messageType": "Erro", "messageVersion": "2.2.0", "threeDSServerTransID": "8a880dc0-d2d2-4067-bcb1-b08d1690b26e",
    "errorCode": "203", "errorComponent": "A",
    "errorDescription": "Format of one or more data elements is invalid: purchaseAmount must be digits only",
    "errorDetail": "purchaseAmount", "errorMessageType": "AReq"
}))]
#[serde(rename_all = "camelCase")]
pub struct Erro {
    pub message_type: String,
    pub message_version: MessageVersion,
    #[serde(rename = "threeDSServerTransID", default, skip_serializing_if = "Option::is_none")]
    pub three_ds_server_trans_id: Option<Uuid>,
    #[serde(rename = "acsTransID", default, skip_serializing_if = "Option::is_none")]
    pub acs_trans_id: Option<Uuid>,
    pub error_code: String,
    /// "A": the ACS.
    pub error_component: String,
    pub error_description: String,
    pub error_detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message_type: Option<String>,
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(code));
            assert_eq!(code.to_string().len(), 3);
        }
        assert_eq!(ErrorCode::from_code("999"), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(EmvError::missing("mcc").http_status(), StatusCode::BAD_REQUEST);
        assert_eq!(EmvError::invalid("mcc", "x").http_status(), StatusCode::BAD_REQUEST);
        assert_eq!(EmvError::access_denied("key").http_status(), StatusCode::FORBIDDEN);
        assert_eq!(EmvError::unauthenticated("key").http_status(), StatusCode::UNAUTHORIZED);
        assert_eq!(EmvError::unauthenticated("key").code, ErrorCode::AccessDenied);
        assert_eq!(EmvError::transaction_not_found().http_status(), StatusCode::NOT_FOUND);
        assert_eq!(EmvError::transaction_not_found().code.as_str(), "301");
        assert_eq!(EmvError::too_large(1024).http_status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(EmvError::transient("db").http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(EmvError::transient("db").code.as_str(), "403");
        assert_eq!(EmvError::permanent("db").code.as_str(), "404");
        assert_eq!(EmvError::unknown_message_type().code.as_str(), "101");
    }

    #[test]
    fn erro_shape_omits_unknowns() {
        let erro = serde_json::to_value(EmvError::too_large(65536).to_erro()).unwrap();
        assert_eq!(
            erro,
            json!({
                "messageType": "Erro",
                "messageVersion": "2.2.0",
                "errorCode": "101",
                "errorComponent": "A",
                "errorDescription": "Message received invalid: message exceeds 65536 bytes",
                "errorDetail": "message",
            })
        );
    }

    #[test]
    fn erro_shape_full() {
        let tid = Uuid::parse_str("8a880dc0-d2d2-4067-bcb1-b08d1690b26e").unwrap();
        let acs = Uuid::parse_str("d7c1ee99-9478-44a6-b1f2-391e29c6b340").unwrap();
        let err = EmvError::invalid("purchaseAmount", "must be digits only")
            .with_three_ds_server_trans_id(tid)
            .with_acs_trans_id(acs)
            .with_message_version(MessageVersion::V2_3_1)
            .with_error_message_type("AReq");
        assert_eq!(
            serde_json::to_value(err.to_erro()).unwrap(),
            json!({
                "messageType": "Erro",
                "messageVersion": "2.3.1",
                "threeDSServerTransID": "8a880dc0-d2d2-4067-bcb1-b08d1690b26e",
                "acsTransID": "d7c1ee99-9478-44a6-b1f2-391e29c6b340",
                "errorCode": "203",
                "errorComponent": "A",
                "errorDescription": "Format of one or more data elements is invalid: purchaseAmount must be digits only",
                "errorDetail": "purchaseAmount",
                "errorMessageType": "AReq",
            })
        );
    }

    #[tokio::test]
    async fn into_response_body_and_status() {
        let resp = EmvError::unauthenticated("Authorization").into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers().get("content-type").unwrap(), "application/json");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["messageType"], "Erro");
        assert_eq!(v["errorCode"], "303");
        assert_eq!(v["errorDetail"], "Authorization");
        assert!(v.get("threeDSServerTransID").is_none());
        assert!(v.get("errorMessageType").is_none());
    }

    #[test]
    fn long_texts_are_truncated() {
        let err = EmvError::transient("x".repeat(5000));
        let erro = err.to_erro();
        assert_eq!(erro.error_detail.chars().count(), MAX_ERRO_TEXT);
        assert_eq!(erro.error_description.chars().count(), MAX_ERRO_TEXT);
    }
}
