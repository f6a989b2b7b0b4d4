//! Authentication of device→server calls: who sent it, when, a nonce, and a
//! signature over method, path, timestamp, nonce and body digest.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::ProtocolError;
use super::keys::verify_signature;
use super::messages::DeviceRequestMessage;

pub const HEADER_DEVICE: &str = "x-countersign-device";
pub const HEADER_TIMESTAMP: &str = "x-countersign-timestamp";
pub const HEADER_NONCE: &str = "x-countersign-nonce";
pub const HEADER_SIGNATURE: &str = "x-countersign-signature";

/// Requests signed more than this far from the server's clock, either way,
/// are refused; nonces are remembered for this long.
pub const FRESHNESS_WINDOW_MS: i64 = 5 * 60 * 1000;
pub const NONCE_LEN: usize = 16;

/// The authentication a device attaches to a request (as four headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuth {
    pub device_id: String,
    pub timestamp_ms: i64,
    pub nonce: Vec<u8>,
    pub signature: Vec<u8>,
}

impl RequestAuth {
    /// Reads the four headers, given a lookup by lower-case header name.
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Result<Self, ProtocolError> {
        let get = |name: &'static str| header(name).ok_or(ProtocolError::MissingField(name));
        let device_id = get(HEADER_DEVICE)?.to_owned();
        if device_id.is_empty() || device_id.len() > 64 {
            return Err(ProtocolError::InvalidField { field: HEADER_DEVICE, reason: "must be 1 to 64 characters" });
        }
        let timestamp_ms = get(HEADER_TIMESTAMP)?.parse().map_err(|_| ProtocolError::InvalidField {
            field: HEADER_TIMESTAMP,
            reason: "must be milliseconds since the epoch",
        })?;
        let nonce = decode_b64(get(HEADER_NONCE)?, HEADER_NONCE)?;
        if nonce.len() != NONCE_LEN {
            return Err(ProtocolError::InvalidField { field: HEADER_NONCE, reason: "must be 16 bytes" });
        }
        let signature = decode_b64(get(HEADER_SIGNATURE)?, HEADER_SIGNATURE)?;
        Ok(Self { device_id, timestamp_ms, nonce, signature })
    }

    /// The header values, in the order of [`HEADER_DEVICE`] … [`HEADER_SIGNATURE`].
    pub fn to_headers(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_DEVICE, self.device_id.clone()),
            (HEADER_TIMESTAMP, self.timestamp_ms.to_string()),
            (HEADER_NONCE, URL_SAFE_NO_PAD.encode(&self.nonce)),
            (HEADER_SIGNATURE, URL_SAFE_NO_PAD.encode(&self.signature)),
        ]
    }

    pub fn message(&self, method: &str, path: &str, body: &[u8]) -> DeviceRequestMessage {
        DeviceRequestMessage::new(method, path, &self.device_id, self.timestamp_ms, &self.nonce, body)
    }

    /// Checks freshness and the signature. The nonce's novelty is the
    /// caller's to check (it needs shared state: see [`SeenNonces`]).
    pub fn verify(
        &self,
        public_key: &[u8],
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<(), ProtocolError> {
        check_freshness(self.timestamp_ms, now_ms)?;
        verify_signature(public_key, &self.message(method, path, body).signed_bytes(), &self.signature)
    }
}

/// Refuses a timestamp more than [`FRESHNESS_WINDOW_MS`] away from `now_ms`.
pub fn check_freshness(timestamp_ms: i64, now_ms: i64) -> Result<(), ProtocolError> {
    let skew_ms = timestamp_ms.saturating_sub(now_ms);
    if skew_ms.abs() > FRESHNESS_WINDOW_MS {
        return Err(ProtocolError::StaleTimestamp { skew_ms });
    }
    Ok(())
}

/// The reference semantics of the replay check, in memory: a nonce is
/// refused if the same device used it within the freshness window. The
/// server keeps the same rule in its database so every node shares it.
#[derive(Debug, Default)]
pub struct SeenNonces {
    seen: HashMap<(String, Vec<u8>), i64>,
}

impl SeenNonces {
    pub fn check_and_remember(&mut self, device_id: &str, nonce: &[u8], now_ms: i64) -> Result<(), ProtocolError> {
        self.seen.retain(|_, at| now_ms - *at <= FRESHNESS_WINDOW_MS * 2);
        let key = (device_id.to_owned(), nonce.to_vec());
        if self.seen.contains_key(&key) {
            return Err(ProtocolError::ReplayedNonce);
        }
        self.seen.insert(key, now_ms);
        Ok(())
    }
}

fn decode_b64(value: &str, field: &'static str) -> Result<Vec<u8>, ProtocolError> {
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| ProtocolError::InvalidField { field, reason: "must be base64url" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::SoftwareKey;

    fn signed(key: &SoftwareKey, ts: i64) -> RequestAuth {
        let mut auth = RequestAuth { device_id: "dev".into(), timestamp_ms: ts, nonce: vec![7; 16], signature: vec![] };
        auth.signature = key.sign(&auth.message("POST", "/v1/x", b"{}").signed_bytes());
        auth
    }

    #[test]
    fn headers_round_trip() {
        let key = SoftwareKey::generate();
        let auth = signed(&key, 1_000);
        let headers = auth.to_headers();
        let parsed =
            RequestAuth::from_headers(|n| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str())).unwrap();
        assert_eq!(parsed, auth);
    }

    #[test]
    fn freshness_window_is_five_minutes_each_way() {
        let key = SoftwareKey::generate();
        let auth = signed(&key, 1_000_000);
        let pk = key.public_key();
        assert!(auth.verify(&pk, "POST", "/v1/x", b"{}", 1_000_000 + FRESHNESS_WINDOW_MS).is_ok());
        assert!(auth.verify(&pk, "POST", "/v1/x", b"{}", 1_000_000 - FRESHNESS_WINDOW_MS).is_ok());
        assert!(matches!(
            auth.verify(&pk, "POST", "/v1/x", b"{}", 1_000_001 + FRESHNESS_WINDOW_MS),
            Err(ProtocolError::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn body_path_and_method_are_covered() {
        let key = SoftwareKey::generate();
        let auth = signed(&key, 0);
        let pk = key.public_key();
        assert_eq!(auth.verify(&pk, "POST", "/v1/x", b"{ }", 0), Err(ProtocolError::BadSignature));
        assert_eq!(auth.verify(&pk, "POST", "/v1/y", b"{}", 0), Err(ProtocolError::BadSignature));
        assert_eq!(auth.verify(&pk, "PUT", "/v1/x", b"{}", 0), Err(ProtocolError::BadSignature));
    }

    #[test]
    fn missing_header_is_named() {
        assert_eq!(RequestAuth::from_headers(|_| None), Err(ProtocolError::MissingField(HEADER_DEVICE)));
    }

    #[test]
    fn a_nonce_is_accepted_once() {
        let mut seen = SeenNonces::default();
        assert_eq!(seen.check_and_remember("d", b"n", 0), Ok(()));
        assert_eq!(seen.check_and_remember("d", b"n", 10), Err(ProtocolError::ReplayedNonce));
        assert_eq!(seen.check_and_remember("other", b"n", 10), Ok(()));
    }
}
