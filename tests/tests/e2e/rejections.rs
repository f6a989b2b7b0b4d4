//! Every way a decision can be refused: each gets its typed error and
//! changes nothing — the challenge stays pending and the cardholder's real
//! answer still goes through afterwards.

use countersign_core::protocol::wire::{ChallengeOutcome, ChallengeView, DecisionKind, DecisionRequest};
use countersign_core::protocol::{Decision, DecisionMessage, DenyReason, SoftwareKey};
use countersign_server::flows::admin::CreatedRequestor;
use reqwest::{Method, StatusCode};

use crate::support::*;

/// A server, a requestor, a card with one phone, and one pending challenge
/// that phone has fetched.
struct Fixture {
    s: TestServer,
    shop: CreatedRequestor,
    phone: Phone,
    acs: String,
    view: ChallengeView,
}

async fn fixture() -> Fixture {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let acs = s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
    Fixture { s, shop, phone, acs, view }
}

/// A decision on `view`'s purchase signed by `key` as `device_id`;
/// `tweak` changes what the device saw (and signs) before signing.
fn decision_body(
    view: &ChallengeView,
    key: &SoftwareKey,
    device_id: &str,
    signed_at: i64,
    tweak: impl FnOnce(&mut DecisionRequest),
) -> Vec<u8> {
    let (decision, deny_reason) = Decision::Approve.into();
    let mut req = DecisionRequest {
        challenge_id: view.challenge_id.clone(),
        decision,
        deny_reason,
        terms: view.terms.clone(),
        signed_at,
        number_match: None,
        signature: vec![],
    };
    tweak(&mut req);
    let message = DecisionMessage {
        challenge_id: req.challenge_id.clone(),
        challenge_nonce: view.nonce.clone(),
        decision: req.decision().unwrap(),
        terms: req.terms.clone(),
        device_id: device_id.to_owned(),
        signed_at_ms: req.signed_at,
        number_match: req.number_match,
    };
    req.signature = key.sign(&message.signed_bytes());
    serde_json::to_vec(&req).unwrap()
}

fn decision_path(challenge_id: &str) -> String {
    format!("/v1/device/challenges/{challenge_id}/decision")
}

impl Fixture {
    /// Sends a decision body for this fixture's challenge, request-signed
    /// by `phone` now with a fresh nonce.
    async fn post_decision(&self, phone: &Phone, body: &[u8]) -> (StatusCode, serde_json::Value) {
        send(phone.signed(
            &self.s.http,
            Method::POST,
            &decision_path(&self.view.challenge_id),
            body,
            self.s.now(),
            nonce(),
        ))
        .await
    }

    /// The refusal changed nothing: still pending, no result, and the
    /// cardholder's genuine approval still goes through.
    async fn assert_unchanged_then_approve(self) {
        let status = self.s.status(&self.shop, &self.acs).await;
        assert_eq!(status["challenge"]["state"], "pending", "{status}");
        assert_eq!(status["transStatus"], "C", "{status}");
        assert!(status.get("authenticationValue").is_none(), "{status}");
        let view = self.view.clone();
        let receipt = self.phone.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
        assert_eq!(receipt.outcome, ChallengeOutcome::Approved);
        let status = self.s.status(&self.shop, &self.acs).await;
        assert_eq!(status["challenge"]["state"], "approved");
        assert_eq!(status["transStatus"], "Y");
    }
}

#[tokio::test]
async fn a_decision_signed_by_another_key_is_a_bad_signature() {
    let fx = fixture().await;
    let other = SoftwareKey::generate();
    // The request itself is correctly signed by the enrolled device; only
    // the decision's signature is made with a key the server never saw.
    let body = decision_body(&fx.view, &other, &fx.phone.device_id(), fx.s.now(), |_| {});
    let got = fx.post_decision(&fx.phone, &body).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "bad_signature");

    // A decision signed for another device id fails the same way.
    let body = decision_body(&fx.view, &fx.phone.key, "someone-else", fx.s.now(), |_| {});
    let got = fx.post_decision(&fx.phone, &body).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "bad_signature");

    // A signature over one decision does not cover another (deny → approve).
    let deny = decision_body(&fx.view, &fx.phone.key, &fx.phone.device_id(), fx.s.now(), |r| {
        r.decision = DecisionKind::Deny;
        r.deny_reason = Some(DenyReason::NotMe);
    });
    let mut req: DecisionRequest = serde_json::from_slice(&deny).unwrap();
    req.decision = DecisionKind::Approve;
    req.deny_reason = None;
    let got = fx.post_decision(&fx.phone, &serde_json::to_vec(&req).unwrap()).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "bad_signature");
    fx.assert_unchanged_then_approve().await;
}

#[tokio::test]
async fn a_body_naming_another_challenge_is_a_challenge_mismatch() {
    let fx = fixture().await;
    // A second real, pending challenge on the same card: a decision validly
    // signed for it, posted to the first one's path.
    let other_acs = fx.s.challenge(&fx.shop, PAN, "http://127.0.0.1:9/notify").await;
    let other_view = fx
        .phone
        .call(|c| c.pending_challenges())
        .await
        .unwrap()
        .challenges
        .into_iter()
        .find(|v| v.challenge_id != fx.view.challenge_id)
        .unwrap();
    let body = decision_body(&other_view, &fx.phone.key, &fx.phone.device_id(), fx.s.now(), |_| {});
    let got = fx.post_decision(&fx.phone, &body).await;
    assert_refused(&got, StatusCode::BAD_REQUEST, "challenge_mismatch");
    assert_eq!(fx.s.challenge_state(&fx.shop, &other_acs).await, "pending");
    fx.assert_unchanged_then_approve().await;
}

#[tokio::test]
async fn tampered_terms_are_refused_naming_what_differs() {
    let fx = fixture().await;
    type Tamper = fn(&mut DecisionRequest);
    let cases: [(Tamper, &str); 5] = [
        (|r| r.terms.amount_minor = 600, "amount_mismatch"),
        (|r| r.terms.currency = 840, "currency_mismatch"),
        (|r| r.terms.exponent = 0, "exponent_mismatch"),
        (|r| r.terms.merchant_name = "Nordic Outdoor AB.".into(), "merchant_mismatch"),
        (|r| r.terms.merchant_id = "MID-000452".into(), "requestor_mismatch"),
    ];
    // Malformed decisions: a number where the challenge has none, a
    // denial without a reason.
    type Bad = fn(&mut DecisionRequest);
    let malformed: [Bad; 2] = [
        |r| r.number_match = Some(42),
        |r| {
            r.decision = DecisionKind::Deny;
            r.deny_reason = None;
        },
    ];
    for bad in malformed {
        let body = decision_body(&fx.view, &fx.phone.key, &fx.phone.device_id(), fx.s.now(), |_| {});
        let mut req: DecisionRequest = serde_json::from_slice(&body).unwrap();
        bad(&mut req);
        let got = fx.post_decision(&fx.phone, &serde_json::to_vec(&req).unwrap()).await;
        assert_refused(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    for (tamper, code) in cases {
        // Signed consistently over the tampered terms: the signature is
        // fine for what the body says, but that is not this purchase.
        let body = decision_body(&fx.view, &fx.phone.key, &fx.phone.device_id(), fx.s.now(), tamper);
        let got = fx.post_decision(&fx.phone, &body).await;
        assert_refused(&got, StatusCode::BAD_REQUEST, code);
    }
    fx.assert_unchanged_then_approve().await;
}

#[tokio::test]
async fn a_device_enrolled_only_for_another_card_is_refused() {
    let fx = fixture().await;
    let (_, stranger) = fx.s.card_with_phone(OTHER_PAN).await;

    // It can neither see the challenge…
    let path = format!("/v1/device/challenges/{}", fx.view.challenge_id);
    let got = send(stranger.signed(&fx.s.http, Method::GET, &path, b"", fx.s.now(), nonce())).await;
    assert_refused(&got, StatusCode::FORBIDDEN, "not_enrolled_for_card");
    assert!(stranger.call(|c| c.pending_challenges()).await.unwrap().challenges.is_empty());
    // …nor answer it, even with a decision it signed correctly.
    let body = decision_body(&fx.view, &stranger.key, &stranger.device_id(), fx.s.now(), |_| {});
    let got = fx.post_decision(&stranger, &body).await;
    assert_refused(&got, StatusCode::FORBIDDEN, "not_enrolled_for_card");
    fx.assert_unchanged_then_approve().await;
}

#[tokio::test]
async fn a_request_replayed_byte_for_byte_is_refused() {
    let fx = fixture().await;
    // A read replayed: the second copy is refused even though it changes nothing.
    let (ts, n) = (fx.s.now(), nonce());
    let list = || fx.phone.signed(&fx.s.http, Method::GET, "/v1/device/challenges", b"", ts, n);
    assert_eq!(send(list()).await.0, StatusCode::OK);
    assert_refused(&send(list()).await, StatusCode::UNAUTHORIZED, "replayed_nonce");
    assert_eq!(fx.s.challenge_state(&fx.shop, &fx.acs).await, "pending");

    // A denial replayed: refused for its nonce before anything else is
    // looked at, and the one outcome stays the one recorded.
    let body = decision_body(&fx.view, &fx.phone.key, &fx.phone.device_id(), ts, |r| {
        r.decision = DecisionKind::Deny;
        r.deny_reason = Some(DenyReason::NotMe);
    });
    let (ts, n) = (fx.s.now(), nonce());
    let decide = || fx.phone.signed(&fx.s.http, Method::POST, &decision_path(&fx.view.challenge_id), &body, ts, n);
    let first = send(decide()).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(first.1["outcome"], "denied");
    fx.s.clock.advance_secs(60);
    let again = send(decide()).await;
    assert_refused(&again, StatusCode::UNAUTHORIZED, "replayed_nonce");
    let status = fx.s.status(&fx.shop, &fx.acs).await;
    assert_eq!(status["challenge"]["state"], "denied");
    assert_eq!(status["transStatus"], "N");
    assert_eq!(status["transStatusReason"], "11");
    let (_, audit) = fx.s.admin(Method::GET, &format!("/v1/admin/audit?acsTransID={}", fx.acs), None).await;
    let ended = audit["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "challenge.ended").count();
    assert_eq!(ended, 1);
}

#[tokio::test]
async fn the_sweeper_forgets_nonces_once_they_cannot_replay() {
    let s = TestServer::start().await;
    let storage = &s.app.storage;
    // A backlog bigger than one batch of the sweeper's, from a busy minute.
    let seen = s.now();
    for i in 0..2_500u32 {
        assert!(storage.remember_nonce("dev-busy", &i.to_be_bytes(), seen, seen - 600_000).await.unwrap());
    }
    // Inside the window the sweeper keeps them: a replay is still refused.
    s.clock.advance_secs(60);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let now = s.now();
    assert!(!storage.remember_nonce("dev-busy", &7u32.to_be_bytes(), now, now - 600_000).await.unwrap());
    // Past it the sweeper forgets them all. (Each look forgets at most one
    // itself, so the 2 500 cannot be gone by looking alone within the
    // bounded wait.)
    s.clock.advance_secs(600);
    eventually("the sweeper forgets the old nonces", || async {
        storage.forget_nonces(s.now() - 600_000, 1).await.unwrap() == 0
    })
    .await;
}

#[tokio::test]
async fn a_replayed_refused_decision_is_refused_for_its_nonce() {
    let fx = fixture().await;
    let body = decision_body(&fx.view, &fx.phone.key, &fx.phone.device_id(), fx.s.now(), |r| r.terms.amount_minor = 1);
    let (ts, n) = (fx.s.now(), nonce());
    let decide = || fx.phone.signed(&fx.s.http, Method::POST, &decision_path(&fx.view.challenge_id), &body, ts, n);
    assert_refused(&send(decide()).await, StatusCode::BAD_REQUEST, "amount_mismatch");
    assert_refused(&send(decide()).await, StatusCode::UNAUTHORIZED, "replayed_nonce");
    fx.assert_unchanged_then_approve().await;
}

#[tokio::test]
async fn stale_or_future_timestamps_are_refused() {
    let fx = fixture().await;
    let path = decision_path(&fx.view.challenge_id);
    let six_minutes = 6 * 60 * 1000;
    let body = decision_body(&fx.view, &fx.phone.key, &fx.phone.device_id(), fx.s.now(), |_| {});
    for ts in [fx.s.now() - six_minutes, fx.s.now() + six_minutes] {
        let got = send(fx.phone.signed(&fx.s.http, Method::POST, &path, &body, ts, nonce())).await;
        assert_refused(&got, StatusCode::UNAUTHORIZED, "stale_timestamp");
    }
    // A fresh request carrying a decision signed six minutes ago.
    let old = decision_body(&fx.view, &fx.phone.key, &fx.phone.device_id(), fx.s.now() - six_minutes, |_| {});
    let got = fx.post_decision(&fx.phone, &old).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "stale_timestamp");
    // Just inside the window is still accepted further down.
    let got = send(fx.phone.signed(
        &fx.s.http,
        Method::GET,
        "/v1/device/challenges",
        b"",
        fx.s.now() - 4 * 60 * 1000,
        nonce(),
    ))
    .await;
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    fx.assert_unchanged_then_approve().await;
}

#[tokio::test]
async fn an_unknown_device_is_refused() {
    let fx = fixture().await;
    let ghost = uuid::Uuid::new_v4().to_string();
    let body = decision_body(&fx.view, &fx.phone.key, &ghost, fx.s.now(), |_| {});
    let got = send(fx.phone.signed_as(
        &ghost,
        &fx.s.http,
        Method::POST,
        &decision_path(&fx.view.challenge_id),
        &body,
        fx.s.now(),
        nonce(),
    ))
    .await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "unknown_device");
    fx.assert_unchanged_then_approve().await;
}

#[tokio::test]
async fn a_decision_after_expiry_is_refused_and_the_purchase_is_not_approved() {
    let fx = fixture().await;
    fx.s.clock.advance_secs(fx.s.app.config.challenge.expiry_secs as i64);
    let body = decision_body(&fx.view, &fx.phone.key, &fx.phone.device_id(), fx.s.now(), |_| {});
    let got = fx.post_decision(&fx.phone, &body).await;
    assert_refused(&got, StatusCode::GONE, "challenge_expired");
    let status = fx.s.status(&fx.shop, &fx.acs).await;
    assert_eq!(status["challenge"]["state"], "expired");
    assert_eq!(status["transStatus"], "N");
    assert_eq!(status["transStatusReason"], "14");
    assert!(status.get("authenticationValue").is_none());
    // Asking again changes nothing either.
    let got = fx.post_decision(&fx.phone, &body).await;
    assert_refused(&got, StatusCode::GONE, "challenge_expired");
    assert_eq!(fx.s.status(&fx.shop, &fx.acs).await["transStatus"], "N");
}

#[tokio::test]
async fn an_unenrolled_device_is_revoked() {
    let fx = fixture().await;
    let card = fx.view.card.card_id.clone();
    let second = fx.s.phone();
    second.enrol(&fx.s.enrolment_code(&card).await).await;
    let revoked_id = second.device_id();
    second.call(|c| c.unenrol_device()).await.unwrap();

    let body = decision_body(&fx.view, &second.key, &revoked_id, fx.s.now(), |_| {});
    let got = send(second.signed_as(
        &revoked_id,
        &fx.s.http,
        Method::POST,
        &decision_path(&fx.view.challenge_id),
        &body,
        fx.s.now(),
        nonce(),
    ))
    .await;
    assert_refused(&got, StatusCode::FORBIDDEN, "device_revoked");
    let got =
        send(second.signed_as(&revoked_id, &fx.s.http, Method::GET, "/v1/device/challenges", b"", fx.s.now(), nonce()))
            .await;
    assert_refused(&got, StatusCode::FORBIDDEN, "device_revoked");
    fx.assert_unchanged_then_approve().await;
}

#[tokio::test]
async fn a_future_dated_request_cannot_be_replayed_once_the_server_forgets_it() {
    let fx = fixture().await;
    // Signed four minutes ahead (a phone clock running fast, or a request
    // made to be replayed later): accepted, as it is inside the window.
    let (ts, n) = (fx.s.now() + 4 * 60 * 1000, nonce());
    let list = || fx.phone.signed(&fx.s.http, Method::GET, "/v1/device/challenges", b"", ts, n);
    assert_eq!(send(list()).await.0, StatusCode::OK);
    // Six minutes later its timestamp is still fresh (two minutes old),
    // so its nonce must still be remembered.
    fx.s.clock.advance_secs(6 * 60);
    assert_refused(&send(list()).await, StatusCode::UNAUTHORIZED, "replayed_nonce");
    // Once the timestamp itself is stale, that is the refusal.
    fx.s.clock.advance_secs(4 * 60);
    assert_refused(&send(list()).await, StatusCode::UNAUTHORIZED, "stale_timestamp");
}
