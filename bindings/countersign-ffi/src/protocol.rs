//! The protocol's canonical bytes and signature check, exported so that
//! Kotlin and Swift tests can check the shared vectors in `test-vectors/`
//! (and a platform key store can be tested against real messages). Apps
//! never need them to approve a purchase.

use countersign_core::protocol::{self, DecisionMessage, DeviceRequestMessage, EnrolmentMessage, ProtocolError};

use crate::records::number;
use crate::{CountersignError, Decision, Platform, PurchaseTerms};

/// The fields of an enrolment proof (`countersign.enrolment.v1`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct EnrolmentFields {
    /// As typed: it is normalised (upper case, no spaces or dashes) first.
    pub code: String,
    pub public_key: Vec<u8>,
    pub platform: Platform,
    pub signed_at: i64,
}

/// The fields of a signed device request (`countersign.request.v1`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct RequestFields {
    pub method: String,
    /// Path and query exactly as sent.
    pub path: String,
    pub device_id: String,
    pub timestamp: i64,
    pub nonce: Vec<u8>,
    /// The body bytes; the message covers their SHA-256.
    pub body: Vec<u8>,
}

/// The fields of a decision (`countersign.decision.v1`).
#[derive(Debug, Clone, uniffi::Record)]
pub struct DecisionFields {
    pub challenge_id: String,
    pub challenge_nonce: Vec<u8>,
    pub decision: Decision,
    pub terms: PurchaseTerms,
    pub device_id: String,
    pub signed_at: i64,
    pub number_match: Option<u32>,
}

/// The verdict on a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SignatureCheck {
    Valid,
    /// Not a well-formed ASN.1 DER ECDSA signature.
    MalformedSignature,
    /// Well-formed, but not made by this key over this message.
    BadSignature,
    /// Not an uncompressed P-256 point.
    MalformedPublicKey,
}

#[uniffi::export]
pub fn enrolment_signed_bytes(fields: EnrolmentFields) -> Vec<u8> {
    EnrolmentMessage {
        code: EnrolmentMessage::normalize_code(&fields.code),
        public_key: fields.public_key,
        platform: fields.platform.into(),
        signed_at_ms: fields.signed_at,
    }
    .signed_bytes()
}

#[uniffi::export]
pub fn request_signed_bytes(fields: RequestFields) -> Vec<u8> {
    DeviceRequestMessage::new(
        &fields.method,
        &fields.path,
        &fields.device_id,
        fields.timestamp,
        &fields.nonce,
        &fields.body,
    )
    .signed_bytes()
}

#[uniffi::export]
pub fn decision_signed_bytes(fields: DecisionFields) -> Result<Vec<u8>, CountersignError> {
    Ok(DecisionMessage {
        challenge_id: fields.challenge_id,
        challenge_nonce: fields.challenge_nonce,
        decision: fields.decision.into(),
        terms: fields.terms.into(),
        device_id: fields.device_id,
        signed_at_ms: fields.signed_at,
        number_match: fields.number_match.map(number).transpose()?,
    }
    .signed_bytes())
}

/// Checks a DER ECDSA P-256/SHA-256 signature as the server does.
#[uniffi::export]
pub fn verify_signature(public_key: Vec<u8>, message: Vec<u8>, signature: Vec<u8>) -> SignatureCheck {
    match protocol::verify_signature(&public_key, &message, &signature) {
        Ok(()) => SignatureCheck::Valid,
        Err(ProtocolError::MalformedSignature) => SignatureCheck::MalformedSignature,
        Err(ProtocolError::MalformedPublicKey) => SignatureCheck::MalformedPublicKey,
        Err(_) => SignatureCheck::BadSignature,
    }
}
