//! JSON shapes of the device API (camelCase). Binary values travel as
//! base64url without padding; times as milliseconds since the Unix epoch.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::messages::{Decision, DenyReason, Platform, TransactionTerms};

/// `POST /v1/device/enrolments`: redeem an enrolment code with a new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrolmentRequest {
    pub code: String,
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, content_encoding = "base64url"))]
    pub public_key: Vec<u8>,
    pub platform: Platform,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 4096))]
    pub push_token: Option<String>,
    pub notifications_enabled: bool,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub display_name: String,
    pub signed_at: i64,
    /// DER signature over the enrolment message (docs/protocol.md).
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, content_encoding = "base64url"))]
    pub proof: Vec<u8>,
}

/// A card as a device may know it: an opaque id and its last digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrolledCard {
    pub card_id: String,
    /// e.g. `•••• 10005`
    pub masked_pan: String,
    pub issuer_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrolmentResponse {
    pub device_id: String,
    pub card: EnrolledCard,
    pub server_time: i64,
}

/// `PUT /v1/device/push-settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushSettings {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 4096))]
    pub push_token: Option<String>,
    pub notifications_enabled: bool,
}

/// A challenge as the device shows it to the cardholder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeView {
    pub challenge_id: String,
    pub card: EnrolledCard,
    #[serde(flatten)]
    pub terms: TransactionTerms,
    pub requestor_name: String,
    /// When the purchase was made (ms).
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, content_encoding = "base64url"))]
    pub nonce: Vec<u8>,
    /// Three two-digit numbers, one of which the checkout page shows.
    pub number_choices: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingChallenges {
    pub challenges: Vec<ChallengeView>,
}

/// `approve` or `deny`: the wire form of a `Decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DecisionKind {
    Approve,
    Deny,
}

/// `POST /v1/device/challenges/{id}/decision`. Repeats the terms the device
/// signed so the server can say which one differs from its own record.
/// (serde cannot deny unknown fields next to `flatten`; extra keys are ignored.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionRequest {
    pub challenge_id: String,
    pub decision: DecisionKind,
    pub deny_reason: Option<DenyReason>,
    #[serde(flatten)]
    pub terms: TransactionTerms,
    pub signed_at: i64,
    pub number_match: Option<u8>,
    /// DER signature over the decision message (docs/protocol.md).
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, content_encoding = "base64url"))]
    pub signature: Vec<u8>,
}

impl DecisionRequest {
    /// The decision this request states; a denial must say why.
    pub fn decision(&self) -> Option<Decision> {
        match (self.decision, self.deny_reason) {
            (DecisionKind::Approve, None) => Some(Decision::Approve),
            (DecisionKind::Deny, Some(reason)) => Some(Decision::Deny(reason)),
            _ => None,
        }
    }
}

impl From<Decision> for (DecisionKind, Option<DenyReason>) {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Approve => (DecisionKind::Approve, None),
            Decision::Deny(r) => (DecisionKind::Deny, Some(r)),
        }
    }
}

/// How a challenge ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChallengeOutcome {
    Approved,
    Denied,
    Expired,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecisionReceipt {
    pub challenge_id: String,
    pub outcome: ChallengeOutcome,
    pub decided_at: i64,
}

/// What every device API error looks like: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(example = json!({"error": {"code": "code_incorrect", "message": "the code is not correct; 4 attempts left",
        "attemptsLeft": 4}}))
)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// How many more tries are allowed, where that is limited.
    #[serde(rename = "attemptsLeft", default, skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
    /// When trying again makes sense, in seconds.
    #[serde(rename = "retryAfterSecs", default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// Stable error codes of the device API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorCode {
    BadRequest,
    PayloadTooLarge,
    Unauthenticated,
    BadSignature,
    StaleTimestamp,
    ReplayedNonce,
    UnknownDevice,
    DeviceRevoked,
    NotEnrolledForCard,
    EnrolmentCodeInvalid,
    EnrolmentCodeExpired,
    EnrolmentCodeUsed,
    NotFound,
    /// The caller is known but its role may not do this (an admin API
    /// route a support key may not use).
    Forbidden,
    ChallengeMismatch,
    AmountMismatch,
    CurrencyMismatch,
    ExponentMismatch,
    MerchantMismatch,
    RequestorMismatch,
    ChallengeExpired,
    AlreadyDecided,
    /// One-time codes (the browser window's API).
    CodeIncorrect,
    CodeExpired,
    CodeNotIssued,
    NoContact,
    ResendLimitReached,
    ResendTooSoon,
    CardBlocked,
    Unavailable,
    Internal,
    /// A code this version of the protocol does not know (newer server).
    #[serde(other)]
    Unknown,
}

/// The only data a push notification carries: which challenge, until when.
/// The app fetches the purchase itself over the signed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPayload {
    pub challenge_id: String,
    pub expires_at: i64,
}

impl PushPayload {
    pub const KEY_TYPE: &'static str = "cs_type";
    pub const KEY_CHALLENGE: &'static str = "cs_challenge";
    pub const KEY_EXPIRES: &'static str = "cs_expires";
    pub const TYPE_CHALLENGE: &'static str = "challenge";

    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            (Self::KEY_TYPE.into(), Self::TYPE_CHALLENGE.into()),
            (Self::KEY_CHALLENGE.into(), self.challenge_id.clone()),
            (Self::KEY_EXPIRES.into(), self.expires_at.to_string()),
        ])
    }

    /// Reads the string map a platform hands the app (APNs custom keys or
    /// FCM data); `None` when the push is not a Countersign challenge.
    pub fn from_map(map: &HashMap<String, String>) -> Option<Self> {
        if map.get(Self::KEY_TYPE)? != Self::TYPE_CHALLENGE {
            return None;
        }
        let challenge_id = map.get(Self::KEY_CHALLENGE)?.clone();
        let expires_at = map.get(Self::KEY_EXPIRES)?.parse().ok()?;
        if challenge_id.is_empty() || challenge_id.len() > 64 {
            return None;
        }
        Some(Self { challenge_id, expires_at })
    }
}

/// base64url (no padding) for `Vec<u8>` fields; padded input is accepted.
pub mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| D::Error::custom("expected base64url"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_payload_round_trips_and_ignores_foreign_pushes() {
        let p = PushPayload { challenge_id: "abc".into(), expires_at: 99 };
        assert_eq!(PushPayload::from_map(&p.to_map()), Some(p));
        assert_eq!(PushPayload::from_map(&HashMap::from([("aps".into(), "x".into())])), None);
    }

    #[test]
    fn unknown_error_codes_still_parse() {
        let e: ErrorCode = serde_json::from_str("\"something_new\"").unwrap();
        assert_eq!(e, ErrorCode::Unknown);
    }

    #[test]
    fn a_denial_without_reason_is_not_a_decision() {
        let json = serde_json::json!({
            "challengeId": "c", "decision": "deny", "denyReason": null,
            "amountMinor": 1, "currency": 978, "exponent": 2, "merchantName": "m",
            "requestorId": "r", "merchantId": "x", "signedAt": 0, "numberMatch": null, "signature": "AA"
        });
        let req: DecisionRequest = serde_json::from_value(json).unwrap();
        assert_eq!(req.decision(), None);
    }
}
