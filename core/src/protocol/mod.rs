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
    Decision, DecisionMessage, DenyReason, DeviceRequestMessage, EnrolmentMessage, Platform,
    TransactionTerms, DECISION_DOMAIN, ENROLMENT_DOMAIN, REQUEST_DOMAIN,
};
pub use request_auth::{
    FRESHNESS_WINDOW_MS, NONCE_LEN, RequestAuth, SeenNonces, check_freshness, HEADER_DEVICE,
    HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
