//! The three kinds of signed message and their canonical bytes.

use serde::{Deserialize, Serialize};

use super::canonical::CanonicalWriter;
use super::error::ProtocolError;

pub const ENROLMENT_DOMAIN: &str = "countersign.enrolment.v1";
pub const REQUEST_DOMAIN: &str = "countersign.request.v1";
pub const DECISION_DOMAIN: &str = "countersign.decision.v1";

/// The phone's operating system, as the device reports it at enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Platform {
    Ios,
    Android,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ios" => Ok(Platform::Ios),
            "android" => Ok(Platform::Android),
            _ => Err(ProtocolError::InvalidField { field: "platform", reason: "must be ios or android" }),
        }
    }
}

/// Proof that the enrolling device holds the private key of the public key
/// it registers, bound to the enrolment code it redeems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentMessage {
    /// The enrolment code, normalised (upper case, no separators).
    pub code: String,
    /// Uncompressed SEC1 P-256 point (65 bytes).
    pub public_key: Vec<u8>,
    pub platform: Platform,
    /// Milliseconds since the Unix epoch.
    pub signed_at_ms: i64,
}

impl EnrolmentMessage {
    /// Upper case without spaces or dashes: what the cardholder typed,
    /// reduced to the form that is signed and looked up.
    pub fn normalize_code(typed: &str) -> String {
        typed.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_uppercase()).collect()
    }

    pub fn signed_bytes(&self) -> Vec<u8> {
        CanonicalWriter::new(ENROLMENT_DOMAIN)
            .str(&self.code)
            .bytes(&self.public_key)
            .str(self.platform.as_str())
            .i64(self.signed_at_ms)
            .finish()
    }
}

/// What every signed device→server HTTP call covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequestMessage {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path and query exactly as sent, e.g. `/v1/device/challenges?state=pending`.
    pub path: String,
    pub device_id: String,
    pub timestamp_ms: i64,
    pub nonce: Vec<u8>,
    /// SHA-256 of the request body (of the empty string when there is none).
    pub body_sha256: [u8; 32],
}

impl DeviceRequestMessage {
    pub fn new(method: &str, path: &str, device_id: &str, timestamp_ms: i64, nonce: &[u8], body: &[u8]) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            device_id: device_id.to_owned(),
            timestamp_ms,
            nonce: nonce.to_vec(),
            body_sha256: sha256(body),
        }
    }

    pub fn signed_bytes(&self) -> Vec<u8> {
        CanonicalWriter::new(REQUEST_DOMAIN)
            .str(&self.method)
            .str(&self.path)
            .str(&self.device_id)
            .i64(self.timestamp_ms)
            .bytes(&self.nonce)
            .bytes(&self.body_sha256)
            .finish()
    }
}

/// Why a cardholder denied a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DenyReason {
    /// "This wasn't me": a suspected fraud.
    NotMe,
    /// The cardholder made the purchase but no longer wants it.
    Cancelled,
}

impl DenyReason {
    fn code(self) -> u8 {
        match self {
            DenyReason::NotMe => 1,
            DenyReason::Cancelled => 2,
        }
    }
}

/// The cardholder's answer to a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny(DenyReason),
}

impl Decision {
    fn codes(self) -> (u8, u8) {
        match self {
            Decision::Approve => (1, 0),
            Decision::Deny(reason) => (2, reason.code()),
        }
    }
}

/// The purchase as the cardholder sees it: what a decision is bound to
/// (dynamic linking). Amount in minor units of an ISO 4217 numeric currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransactionTerms {
    pub amount_minor: u64,
    pub currency: u16,
    pub exponent: u8,
    pub merchant_name: String,
    /// The 3DS requestor (merchant or its 3DS server) that asked.
    pub requestor_id: String,
    /// The acquirer's id for the merchant.
    pub merchant_id: String,
}

/// A cardholder's signed answer to one challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionMessage {
    pub challenge_id: String,
    /// The server's random nonce for this challenge (32 bytes).
    pub challenge_nonce: Vec<u8>,
    pub decision: Decision,
    pub terms: TransactionTerms,
    pub device_id: String,
    pub signed_at_ms: i64,
    /// The number the cardholder picked, when the challenge asked for one.
    pub number_match: Option<u8>,
}

impl DecisionMessage {
    pub fn signed_bytes(&self) -> Vec<u8> {
        let (decision, reason) = self.decision.codes();
        CanonicalWriter::new(DECISION_DOMAIN)
            .str(&self.challenge_id)
            .bytes(&self.challenge_nonce)
            .u8(decision)
            .u8(reason)
            .u64(self.terms.amount_minor)
            .u16(self.terms.currency)
            .u8(self.terms.exponent)
            .str(&self.terms.merchant_name)
            .str(&self.terms.requestor_id)
            .str(&self.terms.merchant_id)
            .str(&self.device_id)
            .i64(self.signed_at_ms)
            .opt_u8(self.number_match)
            .finish()
    }
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> TransactionTerms {
        TransactionTerms {
            amount_minor: 12345,
            currency: 392,
            exponent: 0,
            merchant_name: "Shop".into(),
            requestor_id: "req".into(),
            merchant_id: "m1".into(),
        }
    }

    fn decision(d: Decision) -> DecisionMessage {
        DecisionMessage {
            challenge_id: "c".into(),
            challenge_nonce: vec![0; 32],
            decision: d,
            terms: terms(),
            device_id: "d".into(),
            signed_at_ms: 1,
            number_match: None,
        }
    }

    #[test]
    fn approve_and_each_denial_encode_differently() {
        let a = decision(Decision::Approve).signed_bytes();
        let n = decision(Decision::Deny(DenyReason::NotMe)).signed_bytes();
        let c = decision(Decision::Deny(DenyReason::Cancelled)).signed_bytes();
        assert_ne!(a, n);
        assert_ne!(n, c);
    }

    #[test]
    fn absent_and_present_number_match_differ() {
        let mut m = decision(Decision::Approve);
        let without = m.signed_bytes();
        m.number_match = Some(0);
        assert_ne!(without, m.signed_bytes());
    }

    #[test]
    fn request_body_digest_of_empty_body_is_sha256_of_nothing() {
        let m = DeviceRequestMessage::new("get", "/x", "d", 0, &[1; 16], b"");
        assert_eq!(m.method, "GET");
        assert_eq!(hex::encode(m.body_sha256), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
