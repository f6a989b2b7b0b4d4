//! Enrolment codes, devices holding several cards, push settings and
//! unenrolment, over real HTTP.

use std::collections::BTreeSet;

use countersign_core::client::ClientError;
use countersign_core::protocol::wire::{
    ChallengeOutcome, EnrolmentRequest, EnrolmentResponse, ErrorCode, PushSettings,
};
use countersign_core::protocol::{Decision, EnrolmentMessage, Platform, SoftwareKey};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::*;

async fn try_enrol(phone: &Phone, code: &str) -> Result<EnrolmentResponse, ClientError> {
    let code = code.to_owned();
    phone.call(move |c| c.enrol(&code, Platform::Android, None, false, "Pixel")).await
}

#[track_caller]
fn assert_refused_with(got: &Result<EnrolmentResponse, ClientError>, status: u16, code: ErrorCode) -> String {
    match got {
        Err(ClientError::ServerRefused { status: s, code: c, message }) if *s == status && *c == code => {
            message.clone()
        }
        other => panic!("expected HTTP {status} {code:?}, got {other:?}"),
    }
}

async fn devices_of(s: &TestServer, card: &str) -> Vec<Value> {
    let (status, body) = s.admin(Method::GET, &format!("/v1/admin/cards/{card}/devices"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

/// The same code with its last (secret) character changed.
fn wrong(code: &str) -> String {
    let last = if code.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &code[..code.len() - 1])
}

#[tokio::test]
async fn wrong_codes_count_down_and_then_block_the_right_one() {
    let s = TestServer::start().await;
    let card = s.create_card(PAN).await;
    let code = s.enrolment_code(&card).await;
    let phone = s.phone();
    let max = s.app.config.enrolment.max_attempts;
    assert_eq!(max, 5);
    for left in (0..max).rev() {
        let message =
            assert_refused_with(&try_enrol(&phone, &wrong(&code)).await, 400, ErrorCode::EnrolmentCodeInvalid);
        assert!(message.contains(&format!("{left} attempts left")), "{message}");
    }
    let message = assert_refused_with(&try_enrol(&phone, &code).await, 400, ErrorCode::EnrolmentCodeInvalid);
    assert!(message.contains("too many"), "{message}");
    assert!(devices_of(&s, &card).await.is_empty());

    // A new code for the card is not affected.
    let fresh = s.enrolment_code(&card).await;
    let enrolled = try_enrol(&phone, &fresh).await.unwrap();
    assert_eq!(enrolled.card.card_id, card);
    assert_eq!(devices_of(&s, &card).await.len(), 1);
}

#[tokio::test]
async fn a_used_code_is_refused() {
    let s = TestServer::start().await;
    let card = s.create_card(PAN).await;
    let code = s.enrolment_code(&card).await;
    let first = s.phone();
    first.enrol(&code).await;
    let second = s.phone();
    assert_refused_with(&try_enrol(&second, &code).await, 409, ErrorCode::EnrolmentCodeUsed);
    let devices = devices_of(&s, &card).await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["deviceId"], first.device_id().as_str());
}

#[tokio::test]
async fn a_code_expires_after_24_hours() {
    let s = TestServer::start().await;
    let card = s.create_card(PAN).await;
    let (early, late) = (s.enrolment_code(&card).await, s.enrolment_code(&card).await);
    s.clock.advance_secs(24 * 3600 - 1);
    try_enrol(&s.phone(), &early).await.unwrap();
    s.clock.advance_secs(1);
    assert_refused_with(&try_enrol(&s.phone(), &late).await, 410, ErrorCode::EnrolmentCodeExpired);
    assert_eq!(devices_of(&s, &card).await.len(), 1);
}

#[tokio::test]
async fn a_bad_proof_of_possession_is_refused_and_spends_nothing() {
    let s = TestServer::start().await;
    let card = s.create_card(PAN).await;
    let code = s.enrolment_code(&card).await;
    let phone = s.phone();
    let normalized = EnrolmentMessage::normalize_code(&code);
    let request = |signer: &SoftwareKey, signed_code: &str| {
        let signed_at = s.now();
        let message = EnrolmentMessage {
            code: signed_code.to_owned(),
            public_key: phone.key.public_key(),
            platform: Platform::Ios,
            signed_at_ms: signed_at,
        };
        EnrolmentRequest {
            code: normalized.clone(),
            public_key: phone.key.public_key(),
            platform: Platform::Ios,
            push_token: Some("apns-token-1".into()),
            notifications_enabled: true,
            display_name: "Taro's iPhone".into(),
            signed_at,
            proof: signer.sign(&message.signed_bytes()),
        }
    };
    let post = |req: EnrolmentRequest| send(s.http.post(s.url("/v1/device/enrolments")).json(&req));
    // Signed by a key other than the one registered.
    let other = SoftwareKey::generate();
    let got = post(request(&other, &normalized)).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "bad_signature");
    // Signed by the right key, but over another code.
    let got = post(request(&phone.key, &wrong(&normalized))).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "bad_signature");
    // Not a signature at all.
    let mut garbage = request(&phone.key, &normalized);
    garbage.proof = vec![0x30, 0x02, 0x01];
    let got = post(garbage).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "bad_signature");
    assert!(devices_of(&s, &card).await.is_empty());

    // No attempt was spent: the first wrong code still has four left…
    let message = assert_refused_with(&try_enrol(&phone, &wrong(&code)).await, 400, ErrorCode::EnrolmentCodeInvalid);
    assert!(message.contains("4 attempts left"), "{message}");
    // …and a correct proof with the right code enrols.
    let (status, body) = post(request(&phone.key, &normalized)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["card"]["cardId"], card.as_str());
}

#[tokio::test]
async fn one_key_enrols_two_cards_as_one_device_and_sees_both_cards_challenges() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let (card1, card2) = (s.create_card(PAN).await, s.create_card(OTHER_PAN).await);
    let phone = s.phone();
    let first = phone.enrol(&s.enrolment_code(&card1).await).await;
    let second = phone.enrol(&s.enrolment_code(&card2).await).await;
    assert_eq!(first.device_id, second.device_id);
    assert_eq!(first.card.card_id, card1);
    assert_eq!(second.card.card_id, card2);
    assert_eq!(second.card.masked_pan, "•••• 8431");
    for card in [&card1, &card2] {
        let devices = devices_of(&s, card).await;
        assert_eq!(devices.len(), 1, "{devices:?}");
        assert_eq!(devices[0]["deviceId"], first.device_id.as_str());
    }

    let acs1 = s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;
    let acs2 = s.challenge(&shop, OTHER_PAN, "http://127.0.0.1:9/notify").await;
    let pending = phone.call(|c| c.pending_challenges()).await.unwrap();
    let cards: BTreeSet<_> = pending.challenges.iter().map(|v| v.card.card_id.clone()).collect();
    assert_eq!(cards, BTreeSet::from([card1.clone(), card2.clone()]));
    assert_eq!(pending.challenges.len(), 2);
    assert_eq!(s.pushes(&first.device_id).await.len(), 2);

    for view in pending.challenges {
        let receipt = phone.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
        assert_eq!(receipt.outcome, ChallengeOutcome::Approved);
    }
    assert_eq!(s.status(&shop, &acs1).await["transStatus"], "Y");
    assert_eq!(s.status(&shop, &acs2).await["transStatus"], "Y");
}

#[tokio::test]
async fn without_notifications_there_is_no_push_but_the_challenge_can_be_pulled() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let card = s.create_card(PAN).await;
    let muted = s.phone();
    muted.enrol_with(&s.enrolment_code(&card).await, Some("apns-muted"), false).await;
    let tokenless = s.phone();
    tokenless.enrol_with(&s.enrolment_code(&card).await, None, true).await;
    let pushed = s.phone();
    pushed.enrol(&s.enrolment_code(&card).await).await;

    let acs = s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;
    assert!(s.pushes(&muted.device_id()).await.is_empty());
    assert!(s.pushes(&tokenless.device_id()).await.is_empty());
    let pushes = s.pushes(&pushed.device_id()).await;
    assert_eq!(pushes.len(), 1, "the outbox records pushes: {pushes:?}");

    let pulled = muted.call(|c| c.pending_challenges()).await.unwrap().challenges;
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0].challenge_id, pushes[0]["payload"]["cs_challenge"].as_str().unwrap());
    let view = pulled[0].clone();
    let receipt = muted.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Approved);
    assert_eq!(s.status(&shop, &acs).await["transStatus"], "Y");
}

#[tokio::test]
async fn unenrolling_a_card_stops_its_challenges_reaching_the_device() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let (card1, card2) = (s.create_card(PAN).await, s.create_card(OTHER_PAN).await);
    let phone = s.phone();
    phone.enrol(&s.enrolment_code(&card1).await).await;
    phone.enrol(&s.enrolment_code(&card2).await).await;
    s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;
    let acs2 = s.challenge(&shop, OTHER_PAN, "http://127.0.0.1:9/notify").await;
    let before = phone.call(|c| c.pending_challenges()).await.unwrap();
    assert_eq!(before.challenges.len(), 2);
    let on_card1 = before.challenges.iter().find(|v| v.card.card_id == card1).unwrap().clone();

    let c1 = card1.clone();
    phone.call(move |c| c.unenrol_card(&c1)).await.unwrap();

    // The open challenge on that card is no longer listed, shown or answerable…
    let after = phone.call(|c| c.pending_challenges()).await.unwrap();
    assert_eq!(after.challenges.len(), 1);
    assert_eq!(after.challenges[0].card.card_id, card2);
    let path = format!("/v1/device/challenges/{}", on_card1.challenge_id);
    let got = send(phone.signed(&s.http, Method::GET, &path, b"", s.now(), nonce())).await;
    assert_refused(&got, StatusCode::FORBIDDEN, "not_enrolled_for_card");
    let v = on_card1.clone();
    let late = phone.call(move |c| c.decide(&v, Decision::Approve, None)).await;
    assert!(matches!(late, Err(ClientError::NotEnrolled)), "{late:?}");
    assert!(devices_of(&s, &card1).await.is_empty());

    // …and a new purchase on it finds no device to challenge, and pushes nothing.
    let pushes_before = s.pushes(&phone.device_id()).await.len();
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 6_000, "http://127.0.0.1:9/notify")).await;
    assert_eq!(ares["transStatus"], "C");
    let window = s.window(ares["acsTransID"].as_str().unwrap()).await;
    assert_eq!(window["challenge"]["fallbackReason"], "no_device");
    assert_eq!(s.pushes(&phone.device_id()).await.len(), pushes_before);

    // Unenrolling twice is a typed 404; the other card still works.
    let c1 = card1.clone();
    let again = phone.call(move |c| c.unenrol_card(&c1)).await;
    assert!(
        matches!(again, Err(ClientError::ServerRefused { status: 404, code: ErrorCode::NotFound, .. })),
        "{again:?}"
    );
    let view = after.challenges[0].clone();
    phone.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
    assert_eq!(s.status(&shop, &acs2).await["transStatus"], "Y");
}

#[tokio::test]
async fn push_settings_updates_are_applied() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let (card, phone) = s.card_with_phone(PAN).await;
    let id = phone.device_id();
    let stored_token = || async { s.app.storage.device(&id).await.unwrap().unwrap().push_token };
    let set = |token: Option<&str>, enabled: bool| {
        let settings = PushSettings { push_token: token.map(str::to_owned), notifications_enabled: enabled };
        phone.call(move |c| c.set_push_settings(&settings))
    };

    s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;
    assert_eq!(s.pushes(&id).await.len(), 1);

    // Notifications turned off: the next purchase pushes nothing.
    set(Some("apns-token-2"), false).await.unwrap();
    assert_eq!(stored_token().await.as_deref(), Some("apns-token-2"));
    assert_eq!(devices_of(&s, &card).await[0]["notificationsEnabled"], false);
    s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;
    assert_eq!(s.pushes(&id).await.len(), 1);

    // A bad token is refused and changes nothing.
    let refused = set(Some(""), true).await;
    assert!(
        matches!(refused, Err(ClientError::ServerRefused { status: 400, code: ErrorCode::BadRequest, .. })),
        "{refused:?}"
    );
    assert_eq!(stored_token().await.as_deref(), Some("apns-token-2"));
    assert_eq!(devices_of(&s, &card).await[0]["notificationsEnabled"], false);

    // A new token with notifications on: the next purchase is pushed.
    set(Some("apns-token-3"), true).await.unwrap();
    assert_eq!(stored_token().await.as_deref(), Some("apns-token-3"));
    let acs = s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;
    let pushes = s.pushes(&id).await;
    assert_eq!(pushes.len(), 2);
    let newest = &pushes[0];
    let payload = newest["payload"].as_object().unwrap();
    let keys: BTreeSet<&str> = payload.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["cs_type", "cs_challenge", "cs_expires"]));
    assert_eq!(payload["cs_type"], "challenge");
    assert_eq!(payload["cs_challenge"], newest["challengeId"]);
    let expires = s.status(&shop, &acs).await["challenge"]["expiresAt"].as_i64().unwrap();
    assert_eq!(payload["cs_expires"], expires.to_string().as_str());
    let pending = phone.call(|c| c.pending_challenges()).await.unwrap();
    assert!(pending.challenges.iter().any(|v| v.challenge_id == payload["cs_challenge"].as_str().unwrap()));

    // Dropping the token stops pushes even with notifications on.
    set(None, true).await.unwrap();
    assert_eq!(stored_token().await, None);
    assert_eq!(devices_of(&s, &card).await[0]["hasPushToken"], false);
    s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;
    assert_eq!(s.pushes(&id).await.len(), 2);
}

#[tokio::test]
async fn an_unenrolled_devices_key_cannot_enrol_again_and_the_code_survives() {
    let s = TestServer::start().await;
    let (card, phone) = s.card_with_phone(PAN).await;
    phone.call(|c| c.unenrol_device()).await.unwrap();
    assert!(devices_of(&s, &card).await.is_empty());

    let code = s.enrolment_code(&card).await;
    let signed_at = s.now();
    let message = EnrolmentMessage {
        code: EnrolmentMessage::normalize_code(&code),
        public_key: phone.key.public_key(),
        platform: Platform::Ios,
        signed_at_ms: signed_at,
    };
    let request = EnrolmentRequest {
        code: message.code.clone(),
        public_key: message.public_key.clone(),
        platform: Platform::Ios,
        push_token: None,
        notifications_enabled: false,
        display_name: "Taro's old iPhone".into(),
        signed_at,
        proof: phone.key.sign(&message.signed_bytes()),
    };
    let got = send(s.http.post(s.url("/v1/device/enrolments")).json(&request)).await;
    assert_refused(&got, StatusCode::FORBIDDEN, "device_revoked");
    // The client reports it as "not enrolled".
    let via_client = try_enrol(&phone, &code).await;
    assert!(matches!(via_client, Err(ClientError::NotEnrolled)), "{via_client:?}");
    assert!(devices_of(&s, &card).await.is_empty());
    // The refused attempt did not use the code up: a new key redeems it.
    let fresh = s.phone();
    fresh.enrol(&code).await;
    assert_ne!(fresh.key.public_key(), phone.key.public_key());
    assert_eq!(devices_of(&s, &card).await.len(), 1);
}
