//! The client against a recording stand-in server: every signature is
//! checked with the protocol's own verification, as the server will.

use std::collections::HashMap;
use std::sync::Arc;

use super::fake_server::{FakeServer, Recorded};
use super::*;
use crate::protocol::wire::{ChallengeOutcome, EnrolledCard, ErrorCode, PushPayload};
use crate::protocol::{DenyReason, RequestAuth, SoftwareKey, TransactionTerms, verify_signature};

const NOW: i64 = 1_700_000_000_000;

fn fixed_clock() -> i64 {
    NOW
}

fn client(url: &str, key: &Arc<SoftwareKey>, device_id: Option<&str>) -> DeviceClient {
    DeviceClient::new(url, key.clone(), device_id.map(str::to_owned)).unwrap().with_clock(Arc::new(fixed_clock))
}

fn card() -> EnrolledCard {
    EnrolledCard { card_id: "card-1".into(), masked_pan: "•••• 10005".into(), issuer_name: "Bank".into() }
}

fn view(id: &str) -> ChallengeView {
    ChallengeView {
        challenge_id: id.into(),
        card: card(),
        terms: TransactionTerms {
            amount_minor: 12_345,
            currency: 978,
            exponent: 2,
            merchant_name: "Shop".into(),
            requestor_id: "req-1".into(),
            merchant_id: "m-1".into(),
        },
        requestor_name: "Shop 3DS".into(),
        created_at: NOW - 1_000,
        expires_at: NOW + 300_000,
        nonce: vec![5; 32],
        number_choices: Some(vec![12, 47, 83]),
    }
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

/// Checks the request's four headers as the server does, against the
/// request target and body exactly as they arrived.
fn assert_signed_by(request: &Recorded, key: &SoftwareKey, device_id: &str) {
    let auth = RequestAuth::from_headers(|name| request.header(name)).expect("auth headers");
    assert_eq!(auth.device_id, device_id);
    assert_eq!(auth.timestamp_ms, NOW);
    auth.verify(&key.public_key(), &request.method, &request.target, &request.body, NOW)
        .expect("the server would accept this signature");
}

#[test]
fn signed_requests_cover_the_path_as_sent_including_the_prefix() {
    let server = FakeServer::start(vec![(200, r#"{"challenges":[]}"#.into())]);
    let key = Arc::new(SoftwareKey::generate());
    let pending = client(&format!("{}/countersign/", server.url), &key, Some("dev-1")).pending_challenges().unwrap();
    assert!(pending.challenges.is_empty());
    let request = server.next_request();
    assert_eq!((request.method.as_str(), request.target.as_str()), ("GET", "/countersign/v1/device/challenges"));
    assert_eq!(request.header("content-type"), None);
    assert_signed_by(&request, &key, "dev-1");
}

#[test]
fn each_request_has_a_fresh_nonce() {
    let server = FakeServer::start(vec![(204, String::new()), (204, String::new())]);
    let key = Arc::new(SoftwareKey::generate());
    let client = client(&server.url, &key, Some("dev-1"));
    let settings = PushSettings { push_token: Some("tok".into()), notifications_enabled: true };
    client.set_push_settings(&settings).unwrap();
    client.set_push_settings(&settings).unwrap();
    let (first, second) = (server.next_request(), server.next_request());
    assert_eq!(first.target, "/v1/device/push-settings");
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(serde_json::from_slice::<PushSettings>(&first.body).unwrap(), settings);
    assert_signed_by(&first, &key, "dev-1");
    assert_ne!(first.header("x-countersign-nonce"), second.header("x-countersign-nonce"));
}

#[test]
fn enrolment_proves_the_key_over_the_normalised_code_and_keeps_the_device_id() {
    let response = EnrolmentResponse { device_id: "dev-9".into(), card: card(), server_time: NOW };
    let server = FakeServer::start(vec![(201, json(&response)), (204, String::new())]);
    let key = Arc::new(SoftwareKey::generate());
    let client = client(&server.url, &key, None);
    let answer = client.enrol("ab12-cd34 ", Platform::Android, Some("fcm".into()), true, "Pixel").unwrap();
    assert_eq!(answer, response);
    assert_eq!(client.device_id().as_deref(), Some("dev-9"));

    let request = server.next_request();
    assert_eq!((request.method.as_str(), request.target.as_str()), ("POST", "/v1/device/enrolments"));
    assert_eq!(request.header("x-countersign-signature"), None, "enrolment is unsigned");
    let sent: EnrolmentRequest = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(sent.code, "AB12CD34");
    let proven = EnrolmentMessage {
        code: "AB12CD34".into(),
        public_key: key.public_key(),
        platform: Platform::Android,
        signed_at_ms: NOW,
    };
    assert_eq!(verify_signature(&sent.public_key, &proven.signed_bytes(), &sent.proof), Ok(()));

    client.unenrol_card("card-1").unwrap();
    let request = server.next_request();
    assert_eq!((request.method.as_str(), request.target.as_str()), ("DELETE", "/v1/device/cards/card-1"));
    assert_signed_by(&request, &key, "dev-9");
}

#[test]
fn a_decision_binds_the_terms_shown_and_the_challenge_nonce() {
    let receipt = DecisionReceipt { challenge_id: "ch-1".into(), outcome: ChallengeOutcome::Denied, decided_at: NOW };
    let server = FakeServer::start(vec![(200, json(&receipt))]);
    let key = Arc::new(SoftwareKey::generate());
    let shown = view("ch-1");
    let decision = Decision::Deny(DenyReason::NotMe);
    let answer = client(&server.url, &key, Some("dev-1")).decide(&shown, decision, Some(47)).unwrap();
    assert_eq!(answer, receipt);

    let request = server.next_request();
    assert_eq!(request.target, "/v1/device/challenges/ch-1/decision");
    assert_signed_by(&request, &key, "dev-1");
    let sent: DecisionRequest = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(sent.decision(), Some(decision));
    assert_eq!(sent.terms, shown.terms);
    let signed = DecisionMessage {
        challenge_id: "ch-1".into(),
        challenge_nonce: shown.nonce.clone(),
        decision,
        terms: shown.terms.clone(),
        device_id: "dev-1".into(),
        signed_at_ms: NOW,
        number_match: Some(47),
    };
    assert_eq!(verify_signature(&key.public_key(), &signed.signed_bytes(), &sent.signature), Ok(()));
}

#[test]
fn an_id_cannot_change_the_route() {
    let server = FakeServer::start(vec![(200, json(&view("a/b?c")))]);
    let key = Arc::new(SoftwareKey::generate());
    client(&server.url, &key, Some("dev-1")).challenge("a/b?c").unwrap();
    let request = server.next_request();
    assert_eq!(request.target, "/v1/device/challenges/a%2Fb%3Fc");
    assert_signed_by(&request, &key, "dev-1");
    let offline = client("http://127.0.0.1:9", &key, Some("dev-1"));
    assert!(matches!(offline.challenge(".."), Err(ClientError::BadPayload(_))));
}

#[test]
fn server_errors_map_to_what_the_app_can_act_on() {
    let expired = r#"{"error":{"code":"challenge_expired","message":"too late"}}"#;
    let revoked = r#"{"error":{"code":"device_revoked","message":"gone"}}"#;
    let mismatch = r#"{"error":{"code":"amount_mismatch","message":"amount differs"}}"#;
    let server = FakeServer::start(vec![
        (410, expired.into()),
        (403, revoked.into()),
        (422, mismatch.into()),
        (502, "<html>bad gateway</html>".into()),
    ]);
    let key = Arc::new(SoftwareKey::generate());
    let client = client(&server.url, &key, Some("dev-1"));
    assert_eq!(client.decide(&view("c"), Decision::Approve, None), Err(ClientError::Expired));
    assert_eq!(client.pending_challenges().unwrap_err(), ClientError::NotEnrolled);
    assert_eq!(
        client.decide(&view("c"), Decision::Approve, None).unwrap_err(),
        ClientError::ServerRefused { status: 422, code: ErrorCode::AmountMismatch, message: "amount differs".into() }
    );
    assert!(matches!(client.pending_challenges(), Err(ClientError::BadResponse(_))));
}

#[test]
fn foreign_pushes_are_ignored_without_a_request() {
    let key = Arc::new(SoftwareKey::generate());
    let offline = client("http://127.0.0.1:9", &key, Some("dev-1"));
    let marketing = HashMap::from([("aps".to_owned(), "{}".to_owned()), ("cs_type".to_owned(), "promo".to_owned())]);
    assert_eq!(offline.handle_push(&marketing), Ok(None));
    assert_eq!(offline.handle_push(&HashMap::new()), Ok(None));
}

#[test]
fn a_challenge_push_fetches_the_purchase_over_the_signed_channel() {
    let server = FakeServer::start(vec![(200, json(&view("ch-7")))]);
    let key = Arc::new(SoftwareKey::generate());
    let push = PushPayload { challenge_id: "ch-7".into(), expires_at: NOW + 1 }.to_map();
    let shown = client(&server.url, &key, Some("dev-1")).handle_push(&push).unwrap();
    assert_eq!(shown, Some(view("ch-7")));
    let request = server.next_request();
    assert_eq!(request.target, "/v1/device/challenges/ch-7");
    assert_signed_by(&request, &key, "dev-1");
}

#[test]
fn a_device_that_has_not_enrolled_sends_nothing_signed() {
    let key = Arc::new(SoftwareKey::generate());
    let offline = client("http://127.0.0.1:9", &key, None);
    assert_eq!(offline.pending_challenges().unwrap_err(), ClientError::NotEnrolled);
    assert_eq!(offline.decide(&view("c"), Decision::Approve, None).unwrap_err(), ClientError::NotEnrolled);
}

#[test]
fn an_unreachable_server_is_a_network_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let key = Arc::new(SoftwareKey::generate());
    let result = client(&format!("http://127.0.0.1:{port}"), &key, Some("d")).pending_challenges();
    assert!(matches!(result, Err(ClientError::Network(_))), "{result:?}");
}

#[test]
fn plain_http_is_only_for_this_machine() {
    let key: Arc<dyn DeviceSigner> = Arc::new(SoftwareKey::generate());
    for ok in ["https://issuer.example/cs", "http://localhost:8080", "http://127.0.0.1:1", "http://[::1]:1"] {
        assert!(DeviceClient::new(ok, key.clone(), None).is_ok(), "{ok}");
    }
    for bad in ["http://issuer.example", "ftp://x", "not a url", "https://u:p@x", "https://x/?q=1"] {
        assert!(matches!(DeviceClient::new(bad, key.clone(), None), Err(ClientError::BadPayload(_))), "{bad}");
    }
}
