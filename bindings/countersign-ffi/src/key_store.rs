//! The app's key store, implemented in Kotlin or Swift and called by Rust.

use std::sync::Arc;

use countersign_core::client::{KeyStore, KeyStoreError};

/// Where the device keys live: implement it over the Secure Enclave (iOS)
/// or the Android Keystore, StrongBox where present. Keys are P-256; the
/// private key never leaves the store. Rust calls these methods on the
/// thread the app called the [`crate::Device`] method on (never the main
/// thread, if the app follows the rule), so a biometric prompt may block.
#[uniffi::export(foreign)]
pub trait DeviceKeyStore: Send + Sync {
    /// Makes a new P-256 key under `alias` (replacing any there) and returns
    /// its public key as an uncompressed SEC1 point: 65 bytes, `0x04 || X || Y`.
    fn create_key(&self, alias: String) -> Result<Vec<u8>, DeviceKeyError>;
    /// Signs `message` with ECDSA over SHA-256 and returns the ASN.1 DER
    /// signature (what both platforms produce by default).
    fn sign(&self, alias: String, message: Vec<u8>) -> Result<Vec<u8>, DeviceKeyError>;
    /// Deletes the key; a missing key is not an error.
    fn delete_key(&self, alias: String) -> Result<(), DeviceKeyError>;
}

/// What a [`DeviceKeyStore`] may throw. Any other exception it throws
/// arrives as `Unavailable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum DeviceKeyError {
    /// No key under this alias.
    #[error("the device key is missing")]
    NotFound,
    /// The cardholder dismissed the biometric or passcode prompt.
    #[error("the cardholder cancelled the key's authentication")]
    Cancelled,
    /// Anything else: hardware failure, locked device, key invalidated.
    #[error("{reason}")]
    Unavailable { reason: String },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for DeviceKeyError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Unavailable { reason: format!("the key store failed: {}", e.reason) }
    }
}

impl From<DeviceKeyError> for KeyStoreError {
    fn from(e: DeviceKeyError) -> Self {
        match e {
            DeviceKeyError::NotFound => Self::NotFound,
            DeviceKeyError::Cancelled => Self::Cancelled,
            DeviceKeyError::Unavailable { reason } => Self::Unavailable(reason),
        }
    }
}

/// The foreign key store as core's [`KeyStore`].
pub(crate) struct ForeignKeyStore(pub Arc<dyn DeviceKeyStore>);

impl KeyStore for ForeignKeyStore {
    fn create_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError> {
        Ok(self.0.create_key(alias.to_owned())?)
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        Ok(self.0.sign(alias.to_owned(), message.to_vec())?)
    }

    fn delete_key(&self, alias: &str) -> Result<(), KeyStoreError> {
        Ok(self.0.delete_key(alias.to_owned())?)
    }
}
