//! Countersign for iOS and Android: the device client of `countersign-core`
//! exported through uniffi as one namespace, `countersign`.
//!
//! Every call is synchronous and may block on the network, the disk or the
//! key store (which may show a biometric prompt): **call it off the main
//! thread** (a Kotlin `Dispatchers.IO` coroutine, a Swift `Task.detached`
//! or background queue). Objects are thread-safe.
//!
//! This crate only converts: records mirror core types with `From` impls,
//! errors are mapped to [`CountersignError`], and the app's key store comes
//! in as a foreign trait. Behaviour lives in core.

mod device;
mod error;
mod key_store;
mod protocol;
mod records;

pub use device::Device;
pub use error::CountersignError;
pub use key_store::{DeviceKeyError, DeviceKeyStore};
pub use protocol::{
    DecisionFields, EnrolmentFields, RequestFields, SignatureCheck, decision_signed_bytes, enrolment_signed_bytes,
    request_signed_bytes, verify_signature,
};
pub use records::*;

uniffi::setup_scaffolding!("countersign");

#[cfg(test)]
mod tests;
