//! The Countersign protocol: what travels between device and server, and the
//! exact bytes each signature covers. See `docs/protocol.md`.

mod canonical;
mod error;
mod keys;
mod messages;
mod request_auth;
pub mod wire;

pub use canonical::{CanonicalWriter, ENCODING_VERSION};
pub use error::ProtocolError;
pub use keys::{PublicKey, SoftwareKey, verify_signature};
pub use messages::{
    DECISION_DOMAIN, Decision, DecisionMessage, DenyReason, DeviceRequestMessage, ENROLMENT_DOMAIN, EnrolmentMessage,
    Platform, REQUEST_DOMAIN, TransactionTerms,
};
pub use request_auth::{
    FRESHNESS_WINDOW_MS, HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, NONCE_LEN, RequestAuth,
    SeenNonces, check_freshness,
};
