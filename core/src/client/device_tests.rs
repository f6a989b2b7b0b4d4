//! [`Device`] against recording stand-in servers: several servers and cards,
//! the local database across reopening, and the key store's failures.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::fake_server::FakeServer;
use super::*;
use crate::protocol::wire::{ChallengeOutcome, EnrolledCard};
use crate::protocol::{TransactionTerms, verify_signature};

const NOW: i64 = 1_700_000_000_000;

/// A software key store that counts the keys it made.
#[derive(Default)]
struct CountingKeys {
    inner: Arc<SoftwareKeyStore>,
    created: AtomicUsize,
    deleted: AtomicUsize,
}

impl KeyStore for CountingKeys {
    fn create_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError> {
        self.created.fetch_add(1, Ordering::SeqCst);
        self.inner.create_key(alias)
    }
    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        self.inner.sign(alias, message)
    }
    fn delete_key(&self, alias: &str) -> Result<(), KeyStoreError> {
        self.deleted.fetch_add(1, Ordering::SeqCst);
        self.inner.delete_key(alias)
    }
}

fn open(path: &Path, keys: Arc<dyn KeyStore>) -> Device {
    Device::open(path, Platform::Android, keys, DeviceOptions::default()).unwrap().with_clock(Arc::new(|| NOW))
}

fn card(id: &str) -> EnrolledCard {
    EnrolledCard { card_id: id.into(), masked_pan: "•••• 10005".into(), issuer_name: "Bank".into() }
}

fn enrolled(device_id: &str, card_id: &str) -> (u16, String) {
    let response = EnrolmentResponse { device_id: device_id.into(), card: card(card_id), server_time: NOW };
    (201, serde_json::to_string(&response).unwrap())
}

fn view(id: &str, number_choices: Option<Vec<u8>>) -> ChallengeView {
    ChallengeView {
        challenge_id: id.into(),
        card: card("card-1"),
        terms: TransactionTerms {
            amount_minor: 12_800,
            currency: 978,
            exponent: 2,
            merchant_name: "Nordic Outdoor AB".into(),
            requestor_id: "req-1".into(),
            merchant_id: "MID-1".into(),
        },
        requestor_name: "Nordic Outdoor".into(),
        created_at: NOW - 1_000,
        expires_at: NOW + 300_000,
        nonce: vec![7; 32],
        number_choices,
    }
}

fn push(challenge_id: &str) -> HashMap<String, String> {
    crate::protocol::wire::PushPayload { challenge_id: challenge_id.into(), expires_at: NOW + 1 }.to_map()
}

fn sent_key(server: &FakeServer) -> Vec<u8> {
    let request: EnrolmentRequest = serde_json::from_slice(&server.next_request().body).unwrap();
    request.public_key
}

#[test]
fn one_key_per_server_several_cards_each_and_all_of_it_survives_reopening() {
    let a = FakeServer::start(vec![enrolled("dev-a", "card-1"), enrolled("dev-a", "card-2")]);
    let b = FakeServer::start(vec![enrolled("dev-b", "card-3")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.db");
    let keys = Arc::new(CountingKeys::default());
    let device = open(&path, keys.clone());
    device.enrol(&format!("{}/", a.url), "AAAA-1111", Some("tok".into()), true, "Pixel").unwrap();
    device.enrol(&a.url, "AAAA-2222", Some("tok".into()), true, "Pixel").unwrap();
    device.enrol(&b.url, "BBBB-3333", None, false, "Pixel").unwrap();

    assert_eq!(keys.created.load(Ordering::SeqCst), 2);
    let (first, second, other) = (sent_key(&a), sent_key(&a), sent_key(&b));
    assert_eq!(first, second, "a second card at one server reuses its key");
    assert_ne!(first, other, "servers never share a key");

    drop(device);
    let reopened = open(&path, keys);
    let enrolments: Vec<(String, String, String)> =
        reopened.enrolments().unwrap().into_iter().map(|e| (e.server_url, e.device_id, e.card.card_id)).collect();
    assert_eq!(
        enrolments,
        vec![
            (a.url.clone(), "dev-a".into(), "card-1".into()),
            (a.url.clone(), "dev-a".into(), "card-2".into()),
            (b.url.clone(), "dev-b".into(), "card-3".into()),
        ]
    );
    assert_eq!(reopened.push_settings().unwrap(), PushSettings { push_token: None, notifications_enabled: false });
}

#[test]
fn a_push_is_looked_up_at_each_server_until_one_knows_it() {
    let not_found = r#"{"error":{"code":"not_found","message":"no such challenge"}}"#;
    let a = FakeServer::start(vec![enrolled("dev-a", "card-1"), (404, not_found.into())]);
    let b = FakeServer::start(vec![
        enrolled("dev-b", "card-2"),
        (200, serde_json::to_string(&view("ch-1", None)).unwrap()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let device = open(&dir.path().join("d.db"), Arc::new(SoftwareKeyStore::in_memory()));
    device.enrol(&a.url, "AAAA", None, true, "P").unwrap();
    device.enrol(&b.url, "BBBB", None, true, "P").unwrap();
    let challenge = device.handle_push(&push("ch-1")).unwrap().unwrap();
    assert_eq!(challenge.server_url, b.url);
    assert_eq!(challenge.view, view("ch-1", None));
    assert_eq!(device.handle_push(&HashMap::new()), Ok(None));
}

#[test]
fn approval_checks_the_number_then_signs_and_is_remembered() {
    let receipt = DecisionReceipt { challenge_id: "ch-1".into(), outcome: ChallengeOutcome::Approved, decided_at: NOW };
    let server = FakeServer::start(vec![enrolled("dev-a", "card-1"), (200, serde_json::to_string(&receipt).unwrap())]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.db");
    let keys = Arc::new(SoftwareKeyStore::in_memory());
    let device = open(&path, keys.clone());
    device.enrol(&server.url, "AAAA", None, true, "P").unwrap();
    let public_key = sent_key(&server);
    let challenge = Challenge { server_url: server.url.clone(), view: view("ch-1", Some(vec![12, 47, 83])) };
    for wrong in [None, Some(99)] {
        assert!(matches!(device.approve(&challenge, wrong), Err(ClientError::BadPayload(_))));
    }
    assert_eq!(device.approve(&challenge, Some(47)), Ok(receipt));
    let sent: DecisionRequest = serde_json::from_slice(&server.next_request().body).unwrap();
    let signed = DecisionMessage {
        challenge_id: "ch-1".into(),
        challenge_nonce: vec![7; 32],
        decision: Decision::Approve,
        terms: challenge.view.terms.clone(),
        device_id: "dev-a".into(),
        signed_at_ms: NOW,
        number_match: Some(47),
    };
    assert_eq!(verify_signature(&public_key, &signed.signed_bytes(), &sent.signature), Ok(()));

    drop(device);
    let history = open(&path, keys).history(10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].challenge_id.as_str(), history[0].decision, history[0].outcome),
        ("ch-1", Decision::Approve, ChallengeOutcome::Approved)
    );
    assert_eq!(history[0].terms, challenge.view.terms);
}

#[test]
fn unenrolling_the_last_card_at_a_server_removes_the_device_and_its_key() {
    let server = FakeServer::start(vec![
        enrolled("dev-a", "card-1"),
        enrolled("dev-a", "card-2"),
        (204, String::new()),
        (204, String::new()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(CountingKeys::default());
    let device = open(&dir.path().join("d.db"), keys.clone());
    device.enrol(&server.url, "AAAA", None, true, "P").unwrap();
    device.enrol(&server.url, "BBBB", None, true, "P").unwrap();
    let _ = (server.next_request(), server.next_request());
    assert_eq!(device.unenrol(&server.url, "card-9"), Err(ClientError::NotEnrolled));

    device.unenrol(&server.url, "card-1").unwrap();
    let request = server.next_request();
    assert_eq!((request.method.as_str(), request.target.as_str()), ("DELETE", "/v1/device/cards/card-1"));
    device.unenrol(&server.url, "card-2").unwrap();
    let request = server.next_request();
    assert_eq!((request.method.as_str(), request.target.as_str()), ("DELETE", "/v1/device"));
    assert!(device.enrolments().unwrap().is_empty());
    assert_eq!(device.pending_challenges().unwrap(), vec![], "no server is asked any more");
    assert_eq!(keys.deleted.load(Ordering::SeqCst), 1, "the server's key was deleted");
}

/// A key store that fails, or hands back a compressed public key.
struct BrokenKeys(KeyStoreError, bool);

impl KeyStore for BrokenKeys {
    fn create_key(&self, _alias: &str) -> Result<Vec<u8>, KeyStoreError> {
        if self.1 { Ok([&[0x02][..], &[9; 32][..]].concat()) } else { Err(self.0.clone()) }
    }
    fn sign(&self, _alias: &str, _message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        Err(self.0.clone())
    }
    fn delete_key(&self, _alias: &str) -> Result<(), KeyStoreError> {
        Ok(())
    }
}

#[test]
fn key_store_failures_are_key_unavailable_and_nothing_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    for (n, keys) in [
        BrokenKeys(KeyStoreError::Cancelled, false),
        BrokenKeys(KeyStoreError::Unavailable("locked".into()), false),
        BrokenKeys(KeyStoreError::NotFound, true),
    ]
    .into_iter()
    .enumerate()
    {
        let device = open(&dir.path().join(format!("{n}.db")), Arc::new(keys));
        let result = device.enrol("http://127.0.0.1:9", "AAAA", None, true, "P");
        assert!(matches!(result, Err(ClientError::KeyUnavailable(_))), "{result:?}");
        assert!(device.enrolments().unwrap().is_empty());
    }
}

#[test]
fn junk_replies_are_bad_response() {
    let server =
        FakeServer::start(vec![(201, "{\"deviceId\": 7}".into()), (200, "<html>captive portal</html>".into())]);
    let dir = tempfile::tempdir().unwrap();
    let device = open(&dir.path().join("d.db"), Arc::new(SoftwareKeyStore::in_memory()));
    for _ in 0..2 {
        let result = device.enrol(&server.url, "AAAA", None, true, "P");
        assert!(matches!(result, Err(ClientError::BadResponse(_))), "{result:?}");
    }
    assert!(device.enrolments().unwrap().is_empty());
}

#[test]
fn push_settings_go_to_every_server_and_the_first_failure_is_reported() {
    let unavailable = r#"{"error":{"code":"unavailable","message":"try later"}}"#;
    let a = FakeServer::start(vec![enrolled("dev-a", "card-1"), (503, unavailable.into())]);
    let b = FakeServer::start(vec![enrolled("dev-b", "card-2"), (204, String::new())]);
    let dir = tempfile::tempdir().unwrap();
    let device = open(&dir.path().join("d.db"), Arc::new(SoftwareKeyStore::in_memory()));
    device.enrol(&a.url, "AAAA", None, true, "P").unwrap();
    device.enrol(&b.url, "BBBB", None, true, "P").unwrap();
    let result = device.update_push_settings(Some("new-token".into()), true);
    assert!(matches!(result, Err(ClientError::ServerRefused { status: 503, .. })), "{result:?}");
    let _ = b.next_request();
    let told: PushSettings = serde_json::from_slice(&b.next_request().body).unwrap();
    assert_eq!(told.push_token.as_deref(), Some("new-token"));
    assert_eq!(device.push_settings().unwrap(), told);
}
