//! The device key, wherever it lives: in memory for simulators and tests, or
//! in the Secure Enclave / Android Keystore behind a foreign implementation.

use std::sync::{Arc, OnceLock};

use super::error::ClientError;
use crate::protocol::{PublicKey, SoftwareKey, verify_signature};

/// A P-256 key that signs with ECDSA over SHA-256.
///
/// Object-safe so that an app can hand in its hardware-backed key store as
/// `Arc<dyn DeviceSigner>`.
pub trait DeviceSigner: Send + Sync {
    /// The public key as an uncompressed SEC1 point (65 bytes, `0x04 || X || Y`).
    fn public_key(&self) -> Result<Vec<u8>, ClientError>;
    /// An ASN.1 DER ECDSA signature over SHA-256 of `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ClientError>;
}

impl DeviceSigner for SoftwareKey {
    fn public_key(&self) -> Result<Vec<u8>, ClientError> {
        Ok(SoftwareKey::public_key(self))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ClientError> {
        Ok(SoftwareKey::sign(self, message))
    }
}

/// Wraps the app's signer and checks what it returns before anything is
/// sent, so a key store that hands back a raw `r || s` signature or a
/// compressed key fails here with a clear error, not as a server refusal.
pub(crate) struct CheckedSigner {
    inner: Arc<dyn DeviceSigner>,
    public_key: OnceLock<Vec<u8>>,
}

impl CheckedSigner {
    pub(crate) fn new(inner: Arc<dyn DeviceSigner>) -> Self {
        Self { inner, public_key: OnceLock::new() }
    }

    pub(crate) fn public_key(&self) -> Result<&[u8], ClientError> {
        if let Some(key) = self.public_key.get() {
            return Ok(key);
        }
        let key = self.inner.public_key()?;
        PublicKey::from_sec1(&key).map_err(|e| ClientError::KeyUnavailable(e.to_string()))?;
        Ok(self.public_key.get_or_init(|| key))
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ClientError> {
        let public_key = self.public_key()?;
        let signature = self.inner.sign(message)?;
        verify_signature(public_key, message, &signature)
            .map_err(|e| ClientError::KeyUnavailable(format!("the key store's signature is unusable: {e}")))?;
        Ok(signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key store that signs correctly but returns the raw `r || s` form.
    struct RawSignatures(SoftwareKey);

    impl DeviceSigner for RawSignatures {
        fn public_key(&self) -> Result<Vec<u8>, ClientError> {
            Ok(self.0.public_key())
        }
        fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, ClientError> {
            Ok(vec![1; 64])
        }
    }

    struct Compressed;

    impl DeviceSigner for Compressed {
        fn public_key(&self) -> Result<Vec<u8>, ClientError> {
            Ok([&[0x02][..], &[9; 32][..]].concat())
        }
        fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, ClientError> {
            unreachable!("no signing without a usable public key")
        }
    }

    #[test]
    fn a_software_key_passes_the_checks() {
        let signer = CheckedSigner::new(Arc::new(SoftwareKey::generate()));
        let signature = signer.sign(b"m").unwrap();
        assert!(verify_signature(signer.public_key().unwrap(), b"m", &signature).is_ok());
    }

    #[test]
    fn a_non_der_signature_is_refused_before_sending() {
        let signer = CheckedSigner::new(Arc::new(RawSignatures(SoftwareKey::generate())));
        assert!(matches!(signer.sign(b"m"), Err(ClientError::KeyUnavailable(_))));
    }

    #[test]
    fn a_compressed_public_key_is_refused() {
        let signer = CheckedSigner::new(Arc::new(Compressed));
        assert!(matches!(signer.sign(b"m"), Err(ClientError::KeyUnavailable(_))));
    }
}
