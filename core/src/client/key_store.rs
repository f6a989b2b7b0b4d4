//! Where device keys live: the app's hardware-backed store (Secure Enclave,
//! Android Keystore) behind [`KeyStore`], or [`SoftwareKeyStore`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};
use thiserror::Error;

use super::error::ClientError;
use super::signer::DeviceSigner;
use crate::protocol::SoftwareKey;

/// A store of P-256 signing keys, each under an alias. Private keys never
/// leave it: the client only ever sees public keys and signatures.
///
/// Implementations may block (a biometric prompt gates `sign` on a phone);
/// the client calls them on the thread the app called it on.
pub trait KeyStore: Send + Sync {
    /// Makes a new key under `alias` and returns its public key as an
    /// uncompressed SEC1 point (65 bytes, `0x04 || X || Y`). An existing key
    /// under the alias is replaced.
    fn create_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError>;
    /// An ASN.1 DER ECDSA signature over SHA-256 of `message`.
    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError>;
    /// Deletes the key; deleting a key that does not exist is not an error.
    fn delete_key(&self, alias: &str) -> Result<(), KeyStoreError>;
}

/// Why a key store could not do what was asked. Carries no key material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyStoreError {
    /// No key under this alias (deleted, or lost with a restore to a new phone).
    #[error("the device key is missing")]
    NotFound,
    /// The cardholder dismissed the biometric or passcode prompt.
    #[error("the cardholder cancelled the key's authentication")]
    Cancelled,
    /// Anything else: hardware error, locked device, unsupported curve.
    #[error("{0}")]
    Unavailable(String),
}

impl From<KeyStoreError> for ClientError {
    fn from(e: KeyStoreError) -> Self {
        ClientError::KeyUnavailable(e.to_string())
    }
}

/// One key of a [`KeyStore`], as the signer the HTTP client uses. The public
/// key comes from the local database, so a key that was swapped behind the
/// client's back is caught by the signer's check before anything is sent.
pub(crate) struct StoredKey {
    pub store: Arc<dyn KeyStore>,
    pub alias: String,
    pub public_key: Vec<u8>,
}

impl DeviceSigner for StoredKey {
    fn public_key(&self) -> Result<Vec<u8>, ClientError> {
        Ok(self.public_key.clone())
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, ClientError> {
        Ok(self.store.sign(&self.alias, message)?)
    }
}

/// P-256 keys signed with `ring`, kept in process memory and, when opened on
/// a file, in a SQLite database.
///
/// **Risk.** The private keys are ordinary bytes: anything that can read the
/// process or the file (a backup, a rooted or jailbroken phone, malware with
/// the app's privileges) can copy them and approve purchases elsewhere, and
/// nothing asks the cardholder for a biometric before signing. Use it for
/// tests, simulators and devices that have no hardware-backed key store;
/// apps should implement [`KeyStore`] over the Secure Enclave or the Android
/// Keystore (StrongBox where present).
pub struct SoftwareKeyStore {
    keys: Mutex<HashMap<String, Arc<SoftwareKey>>>,
    file: Option<Mutex<Connection>>,
}

impl SoftwareKeyStore {
    /// Keys that live as long as this value: for tests.
    pub fn in_memory() -> Self {
        Self { keys: Mutex::default(), file: None }
    }

    /// Keys kept in the SQLite file at `path` (created if absent).
    pub fn open(path: &Path) -> Result<Self, KeyStoreError> {
        let unavailable =
            |e: rusqlite::Error| KeyStoreError::Unavailable(format!("the software key file is unreadable: {e}"));
        let connection = Connection::open(path).map_err(unavailable)?;
        connection
            .execute_batch(
                "PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS software_keys (
                     alias TEXT PRIMARY KEY,
                     pkcs8 BLOB NOT NULL
                 );",
            )
            .map_err(unavailable)?;
        Ok(Self { keys: Mutex::default(), file: Some(Mutex::new(connection)) })
    }

    fn key(&self, alias: &str) -> Result<Arc<SoftwareKey>, KeyStoreError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = keys.get(alias) {
            return Ok(key.clone());
        }
        let Some(file) = &self.file else {
            return Err(KeyStoreError::NotFound);
        };
        let pkcs8: Vec<u8> = file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .query_row("SELECT pkcs8 FROM software_keys WHERE alias = ?1", [alias], |row| row.get(0))
            .optional()
            .map_err(|e| KeyStoreError::Unavailable(format!("reading the key failed: {e}")))?
            .ok_or(KeyStoreError::NotFound)?;
        let key = Arc::new(
            SoftwareKey::from_pkcs8(&pkcs8)
                .map_err(|_| KeyStoreError::Unavailable("the stored key is not a P-256 key".into()))?,
        );
        keys.insert(alias.to_owned(), key.clone());
        Ok(key)
    }
}

impl Default for SoftwareKeyStore {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl KeyStore for SoftwareKeyStore {
    fn create_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError> {
        let key = SoftwareKey::generate();
        if let Some(file) = &self.file {
            file.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .execute(
                    "INSERT OR REPLACE INTO software_keys (alias, pkcs8) VALUES (?1, ?2)",
                    params![alias, key.pkcs8()],
                )
                .map_err(|e| KeyStoreError::Unavailable(format!("storing the key failed: {e}")))?;
        }
        let public_key = key.public_key();
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).insert(alias.to_owned(), Arc::new(key));
        Ok(public_key)
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        Ok(self.key(alias)?.sign(message))
    }

    fn delete_key(&self, alias: &str) -> Result<(), KeyStoreError> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner).remove(alias);
        if let Some(file) = &self.file {
            file.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .execute("DELETE FROM software_keys WHERE alias = ?1", [alias])
                .map_err(|e| KeyStoreError::Unavailable(format!("deleting the key failed: {e}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::verify_signature;

    #[test]
    fn keys_survive_reopening_the_file_and_deletion_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        let public_key = SoftwareKeyStore::open(&path).unwrap().create_key("a").unwrap();
        let reopened = SoftwareKeyStore::open(&path).unwrap();
        let signature = reopened.sign("a", b"m").unwrap();
        assert_eq!(verify_signature(&public_key, b"m", &signature), Ok(()));
        reopened.delete_key("a").unwrap();
        reopened.delete_key("a").unwrap();
        assert_eq!(SoftwareKeyStore::open(&path).unwrap().sign("a", b"m"), Err(KeyStoreError::NotFound));
    }

    #[test]
    fn aliases_are_separate_keys() {
        let store = SoftwareKeyStore::in_memory();
        let a = store.create_key("a").unwrap();
        let b = store.create_key("b").unwrap();
        assert_ne!(a, b);
        assert!(verify_signature(&b, b"m", &store.sign("a", b"m").unwrap()).is_err());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_unavailable_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.db");
        std::fs::write(&path, vec![0x5a; 4096]).unwrap();
        assert!(matches!(SoftwareKeyStore::open(&path), Err(KeyStoreError::Unavailable(_))));
    }
}
