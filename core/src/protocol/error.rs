use thiserror::Error;

/// Why a protocol message was refused. Each variant names what failed and
/// carries no personal data, so it is safe to log and to show.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("public key is not an uncompressed P-256 point (65 bytes starting 0x04)")]
    MalformedPublicKey,
    #[error("signature is not a well-formed ASN.1 DER ECDSA signature")]
    MalformedSignature,
    #[error("signature does not verify for this key and message")]
    BadSignature,
    #[error("timestamp is {skew_ms} ms away from the server's clock, outside the allowed window")]
    StaleTimestamp { skew_ms: i64 },
    #[error("nonce was already used within the freshness window")]
    ReplayedNonce,
    #[error("missing {0}")]
    MissingField(&'static str),
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: &'static str },
}
