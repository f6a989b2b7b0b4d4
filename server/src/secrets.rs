//! The server's master secret and the keyed hashes derived from it.
//!
//! Card numbers, API keys and enrolment codes are stored only as
//! HMAC-SHA-256 under a purpose-specific subkey, so a copy of the database
//! alone reveals none of them and a hash made for one purpose is useless for
//! another. Authentication values are MACs under their own subkey.
//!
//! A secret the server must use again — a requestor's callback secret, its
//! HMAC key for result callbacks — cannot be a hash: it is sealed
//! (AES-256-GCM under a subkey of its own, bound to what it belongs to), so
//! a copy of the database alone reveals it no more than the others.

use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// What a keyed hash is for; each purpose has its own subkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    CardNumber,
    ApiKey,
    EnrolmentCode,
    AuthenticationValue,
    /// Checks a typed one-time code.
    OneTimeCode,
    /// Derives a one-time code from its stored salt.
    OneTimeCodeDerivation,
    /// Finds a challenge window by its capability; derives its CSRF token.
    WindowSession,
    /// Checks a security answer.
    SecurityAnswer,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::CardNumber => b"countersign/card-number/v1",
            Purpose::ApiKey => b"countersign/api-key/v1",
            Purpose::EnrolmentCode => b"countersign/enrolment-code/v1",
            Purpose::AuthenticationValue => b"countersign/authentication-value/v1",
            Purpose::OneTimeCode => b"countersign/one-time-code/v1",
            Purpose::OneTimeCodeDerivation => b"countersign/one-time-code-derivation/v1",
            Purpose::WindowSession => b"countersign/window-session/v1",
            Purpose::SecurityAnswer => b"countersign/security-answer/v1",
        }
    }
}

pub struct Secrets {
    card_number: hmac::Key,
    api_key: hmac::Key,
    enrolment_code: hmac::Key,
    authentication_value: hmac::Key,
    one_time_code: hmac::Key,
    one_time_code_derivation: hmac::Key,
    window_session: hmac::Key,
    security_answer: hmac::Key,
    sealing: LessSafeKey,
}

/// The first byte of a sealed value: how it was sealed.
const SEALED_V1: u8 = 1;
const SEALING_LABEL: &[u8] = b"countersign/sealing/v1";

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read or create the master key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the master key file {path} must hold exactly 32 bytes (it holds {len})")]
    BadLength { path: String, len: usize },
}

impl Secrets {
    pub const MASTER_KEY_LEN: usize = 32;

    pub fn from_master_key(master: &[u8; Self::MASTER_KEY_LEN]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, master);
        let derive = |p: Purpose| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, p.label()).as_ref());
        Self {
            card_number: derive(Purpose::CardNumber),
            api_key: derive(Purpose::ApiKey),
            enrolment_code: derive(Purpose::EnrolmentCode),
            authentication_value: derive(Purpose::AuthenticationValue),
            one_time_code: derive(Purpose::OneTimeCode),
            one_time_code_derivation: derive(Purpose::OneTimeCodeDerivation),
            window_session: derive(Purpose::WindowSession),
            security_answer: derive(Purpose::SecurityAnswer),
            sealing: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, hmac::sign(&root, SEALING_LABEL).as_ref())
                    .expect("an HMAC-SHA-256 tag is an AES-256 key"),
            ),
        }
    }

    /// Reads the 32-byte master key, creating it (mode 0600) on first start.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        let io = |source| SecretsError::Io { path: path.display().to_string(), source };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let key = random_bytes::<{ Self::MASTER_KEY_LEN }>();
                write_private_file(path, &key).map_err(io)?;
                key.to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        let master: [u8; Self::MASTER_KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SecretsError::BadLength { path: path.display().to_string(), len: bytes.len() })?;
        Ok(Self::from_master_key(&master))
    }

    pub fn keyed_hash(&self, purpose: Purpose, data: &[u8]) -> Vec<u8> {
        let key = match purpose {
            Purpose::CardNumber => &self.card_number,
            Purpose::ApiKey => &self.api_key,
            Purpose::EnrolmentCode => &self.enrolment_code,
            Purpose::AuthenticationValue => &self.authentication_value,
            Purpose::OneTimeCode => &self.one_time_code,
            Purpose::OneTimeCodeDerivation => &self.one_time_code_derivation,
            Purpose::WindowSession => &self.window_session,
            Purpose::SecurityAnswer => &self.security_answer,
        };
        hmac::sign(key, data).as_ref().to_vec()
    }
}

impl Secrets {
    /// Seals `secret` for `context` (what it belongs to: it opens for that
    /// context only): a version byte, a random nonce, the ciphertext and tag.
    pub fn seal(&self, context: &[u8], secret: &[u8]) -> Vec<u8> {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + secret.len() + AES_256_GCM.tag_len());
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce);
        let mut body = secret.to_vec();
        self.sealing
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut body)
            .expect("AES-GCM seals any secret of a sane size");
        sealed.extend_from_slice(&body);
        sealed
    }

    /// The secret `seal` sealed for `context`; `None` if it was sealed for
    /// another context, under another master key, or altered.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = sealed.split_first()?;
        if version != SEALED_V1 || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let opened = self.sealing.open_in_place(nonce, Aad::from(context), &mut body).ok()?;
        Some(opened.to_vec())
    }
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).expect("the system random source failed");
    out
}

/// A uniformly random integer in `0..bound` (rejection sampling: no modulo bias).
pub fn random_below(bound: u32) -> u32 {
    assert!(bound > 0);
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let v = u32::from_be_bytes(random_bytes::<4>());
        if v < zone {
            return v % bound;
        }
    }
}

fn write_private_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_do_not_share_hashes() {
        let s = Secrets::from_master_key(&[7; 32]);
        assert_ne!(s.keyed_hash(Purpose::CardNumber, b"x"), s.keyed_hash(Purpose::ApiKey, b"x"));
        assert_eq!(s.keyed_hash(Purpose::CardNumber, b"x"), s.keyed_hash(Purpose::CardNumber, b"x"));
    }

    #[test]
    fn master_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/server.key");
        let a = Secrets::load_or_create(&path).unwrap().keyed_hash(Purpose::ApiKey, b"k");
        let b = Secrets::load_or_create(&path).unwrap().keyed_hash(Purpose::ApiKey, b"k");
        assert_eq!(a, b);
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(Secrets::load_or_create(&path), Err(SecretsError::BadLength { len: 5, .. })));
    }

    #[test]
    fn sealed_secrets_open_for_their_context_and_key_only() {
        let s = Secrets::from_master_key(&[7; 32]);
        let sealed = s.seal(b"requestor:shop-1", b"the secret");
        assert!(!sealed.windows(10).any(|w| w == b"the secret"));
        assert_ne!(sealed, s.seal(b"requestor:shop-1", b"the secret"), "a fresh nonce each time");
        assert_eq!(s.open(b"requestor:shop-1", &sealed).as_deref(), Some(&b"the secret"[..]));
        assert_eq!(s.open(b"requestor:shop-2", &sealed), None);
        assert_eq!(Secrets::from_master_key(&[8; 32]).open(b"requestor:shop-1", &sealed), None);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(s.open(b"requestor:shop-1", &altered), None);
        assert_eq!(s.open(b"requestor:shop-1", &sealed[..5]), None);
        assert_eq!(s.open(b"requestor:shop-1", &[]), None);
    }

    #[test]
    fn random_below_stays_in_range() {
        assert!((0..1000).all(|_| random_below(3) < 3));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
