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
//!
//! The master key can be rotated: previous master keys are kept for
//! checking and opening only, never for making anything new.

use std::path::{Path, PathBuf};

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

/// The subkeys derived from one master key.
pub struct Keys {
    id: String,
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

/// The current master key's subkeys, which make every new hash, MAC and
/// seal, and those of previous master keys, which are still recognised so
/// that a key can be rotated without losing what was made under the old
/// one (see docs/operations.md, "Rotating the master key").
pub struct Secrets {
    /// Current first, then the previous keys in the order configured.
    keys: Vec<Keys>,
}

/// The first byte of a sealed value: how it was sealed.
const SEALED_V1: u8 = 1;
const SEALING_LABEL: &[u8] = b"countersign/sealing/v1";
const KEY_ID_LABEL: &[u8] = b"countersign/key-id";

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
    #[error("the previous master key file {path} is missing (previous keys are never created)")]
    MissingPrevious { path: String },
    #[error("the master key {id} is configured twice (current and previous, or twice as previous)")]
    Duplicate { id: String },
}

impl Keys {
    fn derive(master: &[u8; Secrets::MASTER_KEY_LEN]) -> Self {
        let root = hmac::Key::new(hmac::HMAC_SHA256, master);
        let derive = |p: Purpose| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, p.label()).as_ref());
        Self {
            id: hex::encode(&hmac::sign(&root, KEY_ID_LABEL).as_ref()[..4]),
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

    /// A short public name of the master key (8 hex digits of a keyed
    /// hash of a fixed label): says which key is which in logs and status
    /// output without revealing anything of it.
    pub fn id(&self) -> &str {
        &self.id
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

    fn open(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
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

/// What a value was made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAge {
    Current,
    /// A previous master key: a long-lived value should be made again
    /// under the current one.
    Previous,
}

impl Secrets {
    pub const MASTER_KEY_LEN: usize = 32;

    pub fn from_master_key(master: &[u8; Self::MASTER_KEY_LEN]) -> Self {
        Self { keys: vec![Keys::derive(master)] }
    }

    /// The current key and the previous ones, current first; refuses a key
    /// given twice (its rows would count as stale forever).
    pub fn from_master_keys(
        current: &[u8; Self::MASTER_KEY_LEN],
        previous: &[[u8; Self::MASTER_KEY_LEN]],
    ) -> Result<Self, SecretsError> {
        let keys: Vec<Keys> = std::iter::once(current).chain(previous).map(Keys::derive).collect();
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|earlier| earlier.id == k.id) {
                return Err(SecretsError::Duplicate { id: k.id.clone() });
            }
        }
        Ok(Self { keys })
    }

    /// Reads the 32-byte master key, creating it (mode 0600) on first start.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        Self::load(path, &[])
    }

    /// Reads the current master key (creating it on first start) and the
    /// previous ones, which must exist.
    pub fn load(current: &Path, previous: &[PathBuf]) -> Result<Self, SecretsError> {
        let current = read_or_create_key(current)?;
        let previous = previous
            .iter()
            .map(|path| match read_key(path) {
                Err(SecretsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    Err(SecretsError::MissingPrevious { path: path.display().to_string() })
                }
                other => other,
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_master_keys(&current, &previous)
    }

    /// The keys that make new values.
    pub fn current(&self) -> &Keys {
        &self.keys[0]
    }

    /// Every key a value may have been made under: current first.
    pub fn all(&self) -> impl Iterator<Item = (KeyAge, &Keys)> {
        self.keys.iter().enumerate().map(|(i, k)| (if i == 0 { KeyAge::Current } else { KeyAge::Previous }, k))
    }

    /// The previous keys' ids, in the order configured.
    pub fn previous_ids(&self) -> impl Iterator<Item = &str> {
        self.keys[1..].iter().map(Keys::id)
    }

    /// The hash of `data` under the current key: what is stored.
    pub fn keyed_hash(&self, purpose: Purpose, data: &[u8]) -> Vec<u8> {
        self.current().keyed_hash(purpose, data)
    }

    /// The hash of `data` under each key, current first: what a stored
    /// hash may be.
    pub fn keyed_hashes(&self, purpose: Purpose, data: &[u8]) -> impl Iterator<Item = (KeyAge, Vec<u8>)> {
        self.all().map(move |(age, k)| (age, k.keyed_hash(purpose, data)))
    }

    /// Under which key `stored` is the hash of `data`, if any. Every key
    /// is tried, so the time taken says nothing of which matched.
    pub fn verify(&self, purpose: Purpose, data: &[u8], stored: &[u8]) -> Option<KeyAge> {
        self.keyed_hashes(purpose, data)
            .fold(None, |found, (age, hash)| if constant_time_eq(&hash, stored) { found.or(Some(age)) } else { found })
    }

    /// Seals `secret` for `context` (what it belongs to: it opens for that
    /// context only) under the current key: a version byte, a random
    /// nonce, the ciphertext and tag.
    pub fn seal(&self, context: &[u8], secret: &[u8]) -> Vec<u8> {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + secret.len() + AES_256_GCM.tag_len());
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&nonce);
        let mut body = secret.to_vec();
        self.current()
            .sealing
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context), &mut body)
            .expect("AES-GCM seals any secret of a sane size");
        sealed.extend_from_slice(&body);
        sealed
    }

    /// The secret `seal` sealed for `context`, and under which key; `None`
    /// if it was sealed for another context, under an unknown key, or
    /// altered.
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Option<(Vec<u8>, KeyAge)> {
        self.all().find_map(|(age, k)| k.open(context, sealed).map(|secret| (secret, age)))
    }
}

fn read_key(path: &Path) -> Result<[u8; Secrets::MASTER_KEY_LEN], SecretsError> {
    let bytes = std::fs::read(path).map_err(|source| SecretsError::Io { path: path.display().to_string(), source })?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| SecretsError::BadLength { path: path.display().to_string(), len: bytes.len() })
}

fn read_or_create_key(path: &Path) -> Result<[u8; Secrets::MASTER_KEY_LEN], SecretsError> {
    if !path.exists() {
        let io = |source| SecretsError::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let key = random_bytes::<{ Secrets::MASTER_KEY_LEN }>();
        write_private_file(path, &key).map_err(io)?;
        return Ok(key);
    }
    read_key(path)
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

/// A new identifier for a row that is looked up by it and written often
/// (a purchase's acsTransID, a challenge's id): a UUIDv7 (RFC 9562) whose
/// first 48 bits are the creation time in milliseconds and whose other 74
/// variable bits come from the system's CSPRNG.
///
/// Ids that grow with time land at the right edge of every index keyed by
/// them, so a commit carrying many new rows touches a few index pages
/// instead of one random page per row (random UUIDv4s cost an index page
/// each, written to the WAL and again at checkpoint). The random part stays
/// unguessable — 74 bits, where an acsTransID also names its purchase to the
/// unauthenticated window API — so the uuid crate's own `now_v7`, which
/// spends most of those bits on a counter, is not used.
pub fn time_ordered_id(now_ms: i64) -> uuid::Uuid {
    let millis = u64::try_from(now_ms).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &random_bytes::<10>()).into_uuid()
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
        assert_eq!(s.open(b"requestor:shop-1", &sealed), Some((b"the secret".to_vec(), KeyAge::Current)));
        assert_eq!(s.open(b"requestor:shop-2", &sealed), None);
        assert_eq!(Secrets::from_master_key(&[8; 32]).open(b"requestor:shop-1", &sealed), None);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(s.open(b"requestor:shop-1", &altered), None);
        assert_eq!(s.open(b"requestor:shop-1", &sealed[..5]), None);
        assert_eq!(s.open(b"requestor:shop-1", &[]), None);
    }

    #[test]
    fn previous_keys_still_verify_and_open_but_never_make_new_values() {
        let a = Secrets::from_master_key(&[1; 32]);
        let b_after_a = Secrets::from_master_keys(&[2; 32], &[[1; 32]]).unwrap();
        let b_alone = Secrets::from_master_key(&[2; 32]);
        let old_hash = a.keyed_hash(Purpose::CardNumber, b"4111");
        assert_eq!(
            b_after_a.keyed_hash(Purpose::CardNumber, b"4111"),
            b_alone.keyed_hash(Purpose::CardNumber, b"4111")
        );
        assert_ne!(b_after_a.keyed_hash(Purpose::CardNumber, b"4111"), old_hash);
        assert_eq!(b_after_a.verify(Purpose::CardNumber, b"4111", &old_hash), Some(KeyAge::Previous));
        assert_eq!(b_after_a.verify(Purpose::ApiKey, b"4111", &old_hash), None, "purposes stay apart");
        assert_eq!(b_after_a.verify(Purpose::CardNumber, b"4112", &old_hash), None);
        assert_eq!(b_alone.verify(Purpose::CardNumber, b"4111", &old_hash), None, "a dropped key is forgotten");
        let new_hash = b_after_a.keyed_hash(Purpose::CardNumber, b"4111");
        assert_eq!(b_after_a.verify(Purpose::CardNumber, b"4111", &new_hash), Some(KeyAge::Current));
        let hashes: Vec<_> = b_after_a.keyed_hashes(Purpose::CardNumber, b"4111").collect();
        assert_eq!(hashes, vec![(KeyAge::Current, new_hash), (KeyAge::Previous, old_hash)]);

        let sealed = a.seal(b"ctx", b"secret");
        assert_eq!(b_after_a.open(b"ctx", &sealed), Some((b"secret".to_vec(), KeyAge::Previous)));
        assert_eq!(b_alone.open(b"ctx", &sealed), None);
        let resealed = b_after_a.seal(b"ctx", b"secret");
        assert_eq!(b_alone.open(b"ctx", &resealed), Some((b"secret".to_vec(), KeyAge::Current)));
    }

    #[test]
    fn key_ids_name_keys_and_a_key_is_configured_once() {
        let a = Secrets::from_master_key(&[1; 32]);
        let b = Secrets::from_master_keys(&[2; 32], &[[1; 32]]).unwrap();
        assert_eq!(a.current().id().len(), 8);
        assert_ne!(a.current().id(), b.current().id());
        assert_eq!(b.previous_ids().collect::<Vec<_>>(), vec![a.current().id()]);
        assert!(matches!(Secrets::from_master_keys(&[1; 32], &[[1; 32]]), Err(SecretsError::Duplicate { .. })));
        assert!(matches!(
            Secrets::from_master_keys(&[1; 32], &[[2; 32], [2; 32]]),
            Err(SecretsError::Duplicate { .. })
        ));
    }

    #[test]
    fn previous_key_files_must_exist_and_are_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let (current, old) = (dir.path().join("new.key"), dir.path().join("old.key"));
        let missing = Secrets::load(&current, std::slice::from_ref(&old));
        assert!(matches!(missing, Err(SecretsError::MissingPrevious { .. })));
        assert!(!old.exists());
        std::fs::write(&old, [9; 32]).unwrap();
        let s = Secrets::load(&current, &[old]).unwrap();
        let h = Secrets::from_master_key(&[9; 32]).keyed_hash(Purpose::ApiKey, b"k");
        assert_eq!(s.verify(Purpose::ApiKey, b"k", &h), Some(KeyAge::Previous));
    }

    #[test]
    fn time_ordered_ids_sort_by_time_and_keep_74_random_bits() {
        let t = 1_795_000_000_000;
        let ids: Vec<_> = (0..64).map(|i| time_ordered_id(t + i / 8)).collect();
        assert!(ids.iter().all(|id| id.get_version() == Some(uuid::Version::SortRand)));
        // Later milliseconds sort later, as strings too (the column is TEXT).
        assert!(ids.windows(9).all(|w| w[0].to_string() < w[8].to_string()));
        // Within one millisecond the rest is random, not a counter: no two
        // share their random bits, and they do not come out in order.
        let same_ms: Vec<u128> = (0..64).map(|_| time_ordered_id(t).as_u128() & ((1 << 80) - 1)).collect();
        let distinct: std::collections::HashSet<_> = same_ms.iter().collect();
        assert_eq!(distinct.len(), same_ms.len());
        assert!(same_ms.windows(2).any(|w| w[0] > w[1]));
        // The first 48 bits are the milliseconds.
        assert_eq!(time_ordered_id(t).as_u128() >> 80, t as u128);
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
