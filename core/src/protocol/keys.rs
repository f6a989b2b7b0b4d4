//! Device keys: ECDSA P-256 with SHA-256, public keys as uncompressed SEC1
//! points and signatures in ASN.1 DER, which is what the Secure Enclave and
//! Android Keystore produce.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};

use super::error::ProtocolError;

/// A validated-shape P-256 public key (uncompressed SEC1: 0x04 || X || Y).
/// Whether the point is on the curve is checked at verification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(Vec<u8>);

impl PublicKey {
    pub const LEN: usize = 65;

    pub fn from_sec1(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() != Self::LEN || bytes[0] != 0x04 {
            return Err(ProtocolError::MalformedPublicKey);
        }
        Ok(Self(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> Result<(), ProtocolError> {
        verify_signature(&self.0, message, der_signature)
    }
}

/// Verifies a DER ECDSA P-256/SHA-256 signature over `message`.
pub fn verify_signature(public_key: &[u8], message: &[u8], der_signature: &[u8]) -> Result<(), ProtocolError> {
    PublicKey::from_sec1(public_key)?;
    check_der_shape(der_signature)?;
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, public_key)
        .verify(message, der_signature)
        .map_err(|_| ProtocolError::BadSignature)
}

/// Tells a malformed (for instance truncated) signature apart from one that
/// is well-formed but wrong, so errors say which happened.
fn check_der_shape(sig: &[u8]) -> Result<(), ProtocolError> {
    let malformed = Err(ProtocolError::MalformedSignature);
    // SEQUENCE, short-form length: a P-256 signature is at most 72 bytes.
    if sig.len() < 8 || sig[0] != 0x30 || sig[1] as usize != sig.len() - 2 {
        return malformed;
    }
    let mut rest = &sig[2..];
    for _ in 0..2 {
        if rest.len() < 3 || rest[0] != 0x02 {
            return malformed;
        }
        let len = rest[1] as usize;
        if len == 0 || len > 33 || rest.len() < 2 + len {
            return malformed;
        }
        rest = &rest[2 + len..];
    }
    if rest.is_empty() { Ok(()) } else { malformed }
}

/// A P-256 key held in process memory, signing with `ring`.
///
/// For tests, simulators and devices without hardware-backed keys. The
/// private key can be read by anything that can read the process or its
/// storage; a phone app should prefer the Secure Enclave or Android Keystore.
pub struct SoftwareKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareKey").field("public_key", &hex::encode(self.public_key())).finish_non_exhaustive()
    }
}

impl SoftwareKey {
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("the system random source failed");
        Self::from_pkcs8(pkcs8.as_ref()).expect("ring produced an unreadable key")
    }

    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, ProtocolError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng)
            .map_err(|_| ProtocolError::InvalidField { field: "private key", reason: "not a P-256 PKCS#8 key" })?;
        Ok(Self { pair, pkcs8: pkcs8.to_vec(), rng })
    }

    /// The private key as PKCS#8 DER, for storing it. Treat as a secret.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(&self.rng, message).expect("ECDSA signing failed").as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_tamper() {
        let key = SoftwareKey::generate();
        let sig = key.sign(b"hello");
        assert_eq!(verify_signature(&key.public_key(), b"hello", &sig), Ok(()));
        assert_eq!(verify_signature(&key.public_key(), b"hellp", &sig), Err(ProtocolError::BadSignature));
    }

    #[test]
    fn truncated_signature_is_malformed_not_wrong() {
        let key = SoftwareKey::generate();
        let sig = key.sign(b"m");
        for cut in [0, 1, 8, sig.len() - 1] {
            assert_eq!(
                verify_signature(&key.public_key(), b"m", &sig[..cut]),
                Err(ProtocolError::MalformedSignature),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn compressed_or_short_public_keys_are_refused() {
        let key = SoftwareKey::generate();
        let mut compressed = key.public_key()[..33].to_vec();
        compressed[0] = 0x02;
        assert_eq!(PublicKey::from_sec1(&compressed), Err(ProtocolError::MalformedPublicKey));
        assert_eq!(PublicKey::from_sec1(&[]), Err(ProtocolError::MalformedPublicKey));
    }

    #[test]
    fn a_point_off_the_curve_never_verifies() {
        let key = SoftwareKey::generate();
        let sig = key.sign(b"m");
        let mut bogus = key.public_key();
        bogus[64] ^= 1;
        assert_eq!(verify_signature(&bogus, b"m", &sig), Err(ProtocolError::BadSignature));
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_key() {
        let key = SoftwareKey::generate();
        let again = SoftwareKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(key.public_key(), again.public_key());
    }
}
