//! Countersign core: the protocol the phone and the server share, and the
//! device-side client built on it.
//!
//! [`protocol`] holds the wire types, the canonical bytes every signature
//! covers, and their verification. It depends on neither HTTP nor storage, so
//! the server and the device can never disagree on what is signed.

pub mod protocol;

#[cfg(feature = "client")]
pub mod client;
