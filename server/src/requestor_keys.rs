//! Requestors found by API key, remembered for a second.
//!
//! Every AReq and every result read names its requestor by API key, and
//! without this each would cost a database read — on PostgreSQL a statement
//! of its own, one in seven of a push round trip's. A key whose validity
//! changes on this node (a rotation, a revoked previous key) is forgotten at
//! once: those flows [`clear`](RequestorKeys::clear) the cache. On other
//! nodes, and after the CLI changed it, a key keeps its old standing for at
//! most [`TTL_MS`]. Unknown keys are never remembered, so guessing keys
//! cannot fill the cache, and the cache holds digests of keys, never keys.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::storage::Requestor;

/// How long a key found in the database is taken without asking it again.
pub const TTL_MS: i64 = 1_000;

/// More entries than any issuer has requestors (3DS servers): a full cache
/// is emptied rather than let grow.
const MAX_ENTRIES: usize = 1_024;

type KeyDigest = [u8; 32];

#[derive(Default)]
pub struct RequestorKeys {
    found: Mutex<HashMap<KeyDigest, (Requestor, i64)>>,
}

impl RequestorKeys {
    /// The requestor `key` named at most [`TTL_MS`] ago, if still in time.
    pub fn get(&self, key: &[u8], now: i64) -> Option<Requestor> {
        let found = self.found.lock().expect("requestor key cache lock");
        found.get(&digest(key)).filter(|(_, until)| now < *until).map(|(r, _)| r.clone())
    }

    /// Remembers that `key` names `requestor` at `now`: until [`TTL_MS`]
    /// from now, or until the requestor's previous key expires if that comes
    /// first (the key may be that one).
    pub fn put(&self, key: &[u8], requestor: &Requestor, now: i64) {
        let until = requestor.previous_key_expires_at.map_or(now + TTL_MS, |expiry| expiry.min(now + TTL_MS));
        let mut found = self.found.lock().expect("requestor key cache lock");
        if found.len() >= MAX_ENTRIES {
            found.clear();
        }
        found.insert(digest(key), (requestor.clone(), until));
    }

    /// Forgets every key: a requestor's keys changed.
    pub fn clear(&self) {
        self.found.lock().expect("requestor key cache lock").clear();
    }
}

fn digest(key: &[u8]) -> KeyDigest {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoredSecret;

    fn requestor(previous_key_expires_at: Option<i64>) -> Requestor {
        Requestor {
            id: "shop".into(),
            name: "Shop".into(),
            callback_secret: StoredSecret::Sealed(vec![1]),
            previous_callback_secret: None,
            previous_key_expires_at,
            created_at: 0,
        }
    }

    #[test]
    fn a_key_is_remembered_for_the_ttl_only() {
        let keys = RequestorKeys::default();
        assert_eq!(keys.get(b"key", 0), None);
        keys.put(b"key", &requestor(None), 1_000);
        assert_eq!(keys.get(b"key", 1_000).map(|r| r.id), Some("shop".into()));
        assert_eq!(keys.get(b"key", 1_000 + TTL_MS - 1).map(|r| r.id), Some("shop".into()));
        assert_eq!(keys.get(b"key", 1_000 + TTL_MS), None);
        assert_eq!(keys.get(b"other key", 1_000), None);
    }

    #[test]
    fn a_previous_key_is_not_remembered_past_its_expiry() {
        let keys = RequestorKeys::default();
        keys.put(b"old key", &requestor(Some(1_200)), 1_000);
        assert!(keys.get(b"old key", 1_199).is_some());
        assert_eq!(keys.get(b"old key", 1_200), None);
    }

    #[test]
    fn clearing_forgets_every_key_and_a_full_cache_starts_over() {
        let keys = RequestorKeys::default();
        keys.put(b"key", &requestor(None), 0);
        keys.clear();
        assert_eq!(keys.get(b"key", 0), None);
        for i in 0..MAX_ENTRIES + 1 {
            keys.put(format!("key {i}").as_bytes(), &requestor(None), 0);
        }
        assert_eq!(keys.found.lock().unwrap().len(), 1, "emptied when full, then the new key");
        assert!(keys.get(format!("key {MAX_ENTRIES}").as_bytes(), 0).is_some());
    }
}
