//! The one-time-code fallback, with the SafeKey FAQ's rules: six digits,
//! ten minutes, single use, the same code on resend, five wrong tries block.
//! Messages are read from the development outbox; real SMTP and SMS
//! providers are exercised in `delivery.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use countersign_core::protocol::wire::PushPayload;
use countersign_core::protocol::{Decision, wire::ChallengeOutcome};
use countersign_server::notifier::{Notifier, NotifyError};
use countersign_server::storage::Device;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const EMAIL: &str = "taro@example.jp";
const PHONE: &str = "+819012345678";

async fn set_contacts(s: &TestServer, card: &str, email: Option<&str>, phone: Option<&str>) {
    let (status, body) = s
        .admin(Method::PUT, &format!("/v1/admin/cards/{card}/contacts"), Some(json!({"email": email, "phone": phone})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A purchase that needs a challenge on a card with no device: a code.
async fn code_purchase(
    s: &TestServer,
    shop: &countersign_server::flows::admin::CreatedRequestor,
    notify: &str,
) -> String {
    let (_, ares) = s.areq(shop, &areq("shop-1", PAN, 90_000, notify)).await;
    assert_eq!(ares["transStatus"], "C", "{ares}");
    ares["acsTransID"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_card_without_a_device_gets_a_code_by_email_and_sms_and_either_finishes() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let card = s.create_card(PAN).await;
    set_contacts(&s, &card, Some(EMAIL), Some(PHONE)).await;
    let acs = code_purchase(&s, &shop, &receiver.url).await;

    let by_mail = s.nth_code_to(EMAIL, 1).await;
    let by_sms = s.nth_code_to(PHONE, 1).await;
    assert_eq!(by_mail, by_sms, "one code, sent to every contact");
    // A message is handed over first and its delivery marked sent after
    // (two steps, as with a real provider): the window may say `pending`
    // for that moment.
    eventually("both deliveries to be marked sent", || async {
        let window = s.window(&acs).await;
        window["code"]["destinations"].as_array().is_some_and(|d| d.iter().all(|d| d["state"] == "sent"))
    })
    .await;
    let window = s.window(&acs).await;
    assert_eq!(window["challenge"]["fallbackReason"], "no_device");
    let code = &window["code"];
    assert_eq!(
        code["destinations"],
        json!([
            {"channel": "email", "masked": "t•••@example.jp", "state": "sent"},
            {"channel": "sms", "masked": "•••••45678", "state": "sent"},
        ])
    );
    assert_eq!(code["attemptsLeft"], 5);
    assert_eq!(code["resendsLeft"], 3);
    assert_eq!(code["expiresAt"].as_i64().unwrap(), s.now() + 600_000);
    let email = s.messages().await.into_iter().find(|m| m["recipient"] == EMAIL).unwrap();
    assert!(!email["subject"].as_str().unwrap().contains(&by_mail), "the code is never in the subject");

    // Nothing that operators can read shows the code.
    let (_, audit) = s.admin(Method::GET, &format!("/v1/admin/audit?acsTransID={acs}"), None).await;
    let code = Secret::new("one-time code", by_mail.clone());
    assert!(!leaks(&audit.to_string(), &code));
    assert!(!leaks(&s.window(&acs).await.to_string(), &code));
    assert!(!leaks(&s.status(&shop, &acs).await.to_string(), &code));

    let (status, ok) = s.window_post(&acs, "code/verify", Some(json!({"code": by_sms}))).await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    assert_eq!(ok["transStatus"], "Y");
    let result = s.status(&shop, &acs).await;
    assert_eq!(result["transStatus"], "Y");
    assert_eq!(result["challenge"]["outcomeReason"], "code_verified");
    assert_eq!(receiver.wait_for(1).await[0]["transStatus"], "Y");

    // Single use.
    let again = s.window_post(&acs, "code/verify", Some(json!({"code": by_mail}))).await;
    assert_refused(&again, StatusCode::CONFLICT, "already_decided");
}

#[tokio::test]
async fn the_code_expires_after_ten_minutes_and_a_late_resend_ends_the_purchase() {
    // The challenge outlives the code here: with the default 5-minute expiry
    // the sweeper may end it first (challenge_expired), a race under load.
    let s = TestServer::start_with(|c| c.challenge.expiry_secs = 900).await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    let code = s.nth_code_to(EMAIL, 1).await;

    s.clock.advance_secs(600);
    let late = s.window_post(&acs, "code/resend", None).await;
    assert_refused(&late, StatusCode::GONE, "code_expired");
    let result = s.status(&shop, &acs).await;
    assert_eq!(result["transStatus"], "N");
    assert_eq!(result["transStatusReason"], "14");
    assert_eq!(result["challenge"]["outcomeReason"], "code_expired");
    let after = s.window_post(&acs, "code/verify", Some(json!({"code": code}))).await;
    assert_eq!(after.0, StatusCode::GONE, "{after:?}");
}

#[tokio::test]
async fn a_code_typed_in_the_last_second_still_counts() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    let code = s.nth_code_to(EMAIL, 1).await;
    s.clock.advance_ms(599_999);
    let ok = s.window_post(&acs, "code/verify", Some(json!({"code": code}))).await;
    assert_eq!(ok.0, StatusCode::OK, "{ok:?}");
}

#[tokio::test]
async fn resend_repeats_the_same_code_within_its_limits() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    let first = s.nth_code_to(EMAIL, 1).await;

    let too_soon = s.window_post(&acs, "code/resend", None).await;
    assert_refused(&too_soon, StatusCode::TOO_MANY_REQUESTS, "resend_too_soon");
    assert_eq!(too_soon.1["error"]["retryAfterSecs"], 30);

    for n in 2..=4 {
        s.clock.advance_secs(30);
        let (status, view) = s.window_post(&acs, "code/resend", None).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["resendsLeft"], 4 - n);
        assert_eq!(s.nth_code_to(EMAIL, n as usize).await, first, "a resend sends the same code");
    }
    s.clock.advance_secs(30);
    let limit = s.window_post(&acs, "code/resend", None).await;
    assert_refused(&limit, StatusCode::TOO_MANY_REQUESTS, "resend_limit_reached");
    // The validity did not move: it still ends ten minutes after creation.
    assert_eq!(s.window(&acs).await["code"]["expiresAt"].as_i64().unwrap(), s.now() - 120_000 + 600_000);
    let ok = s.window_post(&acs, "code/verify", Some(json!({"code": first}))).await;
    assert_eq!(ok.0, StatusCode::OK);
}

#[tokio::test]
async fn five_wrong_codes_block_the_card_until_an_operator_unblocks_it() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let card = s.create_card(PAN).await;
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    let right = s.nth_code_to(EMAIL, 1).await;
    let wrong = wrong_code(&right);

    for left in (1..=4).rev() {
        let got = s.window_post(&acs, "code/verify", Some(json!({"code": wrong}))).await;
        assert_refused(&got, StatusCode::UNPROCESSABLE_ENTITY, "code_incorrect");
        assert_eq!(got.1["error"]["attemptsLeft"], left);
        let message = got.1["error"]["message"].as_str().unwrap();
        assert!(!message.contains(wrong) && !message.contains(&right));
    }
    let fifth = s.window_post(&acs, "code/verify", Some(json!({"code": "12345"}))).await;
    assert_refused(&fifth, StatusCode::FORBIDDEN, "card_blocked");
    let result = s.status(&shop, &acs).await;
    assert_eq!(result["transStatus"], "N");
    assert_eq!(result["challenge"]["outcomeReason"], "card_blocked");

    // The right code on the sixth try is refused too.
    let sixth = s.window_post(&acs, "code/verify", Some(json!({"code": right}))).await;
    assert!(sixth.0.is_client_error(), "{sixth:?}");
    assert_eq!(s.status(&shop, &acs).await["transStatus"], "N");

    // A new purchase on the blocked card is refused with a reason.
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 90_000, "http://127.0.0.1:9/n")).await;
    assert_eq!(ares["transStatus"], "R");
    assert_eq!(ares["transStatusReason"], "12");
    let (_, shown) = s.admin(Method::GET, &format!("/v1/admin/cards/{card}"), None).await;
    assert_eq!(shown["blocked"], true);

    // Unblocked, the card works again, and its count starts afresh.
    let (status, _) = s.admin(Method::POST, &format!("/v1/admin/cards/{card}/unblock"), None).await;
    assert_eq!(status, StatusCode::OK);
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    assert_eq!(s.window(&acs).await["code"]["attemptsLeft"], 5);
    let code = s.nth_code_to(EMAIL, 2).await;
    let ok = s.window_post(&acs, "code/verify", Some(json!({"code": code}))).await;
    assert_eq!(ok.0, StatusCode::OK, "{ok:?}");
}

#[tokio::test]
async fn a_correct_code_resets_the_count_of_wrong_ones() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    let code = s.nth_code_to(EMAIL, 1).await;
    let wrong = wrong_code(&code);
    for _ in 0..4 {
        s.window_post(&acs, "code/verify", Some(json!({"code": wrong}))).await;
    }
    assert_eq!(s.window_post(&acs, "code/verify", Some(json!({"code": code}))).await.0, StatusCode::OK);
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    assert_eq!(s.window(&acs).await["code"]["attemptsLeft"], 5);
}

#[tokio::test]
async fn two_correct_codes_at_once_finish_exactly_once() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    s.create_card(PAN).await;
    let acs = code_purchase(&s, &shop, &receiver.url).await;
    let code = s.nth_code_to(EMAIL, 1).await;
    let (a, b) = tokio::join!(
        s.window_post(&acs, "code/verify", Some(json!({"code": code}))),
        s.window_post(&acs, "code/verify", Some(json!({"code": code}))),
    );
    let oks = [&a, &b].iter().filter(|r| r.0 == StatusCode::OK).count();
    assert_eq!(oks, 1, "{a:?} {b:?}");
    let loser = if a.0 == StatusCode::OK { &b } else { &a };
    assert_refused(loser, StatusCode::CONFLICT, "already_decided");
    receiver.wait_for(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(receiver.bodies().len(), 1);
}

#[tokio::test]
async fn notifications_off_falls_back_to_a_code_at_once() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let card = s.create_card(PAN).await;
    let phone = s.phone();
    let code = s.enrolment_code(&card).await;
    phone.enrol_with(&code, Some("token"), false).await;
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    assert_eq!(s.window(&acs).await["challenge"]["fallbackReason"], "notifications_off");
    assert!(s.pushes(&phone.device_id()).await.is_empty());
    s.nth_code_to(EMAIL, 1).await;
}

#[tokio::test]
async fn an_unanswered_push_falls_back_after_sixty_seconds_and_stays_answerable() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let acs = code_purchase(&s, &shop, &receiver.url).await;
    let window = s.window(&acs).await;
    assert!(window["code"].is_null());
    assert_eq!(window["challenge"]["pushDeadline"].as_i64().unwrap(), s.now() + 60_000);

    s.clock.advance_secs(59);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(s.window(&acs).await["code"].is_null(), "not before the deadline");
    s.clock.advance_secs(1);
    eventually("the push to fall back to a code", || async { !s.window(&acs).await["code"].is_null() }).await;
    assert_eq!(s.window(&acs).await["challenge"]["fallbackReason"], "push_timeout");
    let code = s.nth_code_to(EMAIL, 1).await;

    // The push is still answerable; the first valid answer wins.
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
    let number = s.window(&acs).await["challenge"]["numberMatch"].as_u64().map(|n| n as u8);
    let receipt = phone.call(move |c| c.decide(&view, Decision::Approve, number)).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Approved);
    let late = s.window_post(&acs, "code/verify", Some(json!({"code": code}))).await;
    assert_refused(&late, StatusCode::CONFLICT, "already_decided");
    assert_eq!(receiver.wait_for(1).await.len(), 1);
}

#[tokio::test]
async fn the_cardholder_can_ask_for_a_code_instead() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    s.card_with_phone(PAN).await;
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    let (status, view) = s.window_post(&acs, "code", None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["destinations"][0]["masked"], "t•••@example.jp");
    assert_eq!(s.window(&acs).await["challenge"]["fallbackReason"], "cardholder_request");
    assert!(s.window(&acs).await["challenge"]["pushDeadline"].is_null());
    // Asking twice issues no second code.
    assert_eq!(s.window_post(&acs, "code", None).await.0, StatusCode::OK);
    let code = s.nth_code_to(EMAIL, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(s.messages().await.len(), 1);
    assert_eq!(s.window_post(&acs, "code/verify", Some(json!({"code": code}))).await.0, StatusCode::OK);
}

/// A notifier whose provider refuses every token.
struct RejectingNotifier;

#[async_trait]
impl Notifier for RejectingNotifier {
    async fn notify(&self, _: &Device, _: &PushPayload, _: i64) -> Result<(), NotifyError> {
        Err(NotifyError::TokenRejected("Unregistered".into()))
    }
}

#[tokio::test]
async fn a_rejected_token_falls_back_at_once_and_waits_for_a_new_token() {
    let s = TestServer::start_with_notifier(Arc::new(RejectingNotifier)).await;
    let shop = s.create_requestor("shop-1").await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    assert_eq!(s.window(&acs).await["challenge"]["fallbackReason"], "token_rejected");
    s.nth_code_to(EMAIL, 1).await;
    // The challenge is stored and the app can still pull it.
    assert_eq!(phone.call(|c| c.pending_challenges()).await.unwrap().challenges.len(), 1);

    // Until it reports a new token, the device is not pushed to.
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    assert_eq!(s.window(&acs).await["challenge"]["fallbackReason"], "notifications_off");
    let settings =
        countersign_core::protocol::wire::PushSettings { push_token: Some("new".into()), notifications_enabled: true };
    phone.call(move |c| c.set_push_settings(&settings)).await.unwrap();
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    assert_eq!(s.window(&acs).await["challenge"]["fallbackReason"], "token_rejected", "pushed again, refused again");
}

#[tokio::test]
async fn a_card_with_no_contact_shows_a_state_the_window_can_act_on() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let card = s.create_card(PAN).await;
    set_contacts(&s, &card, None, None).await;
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    let code = &s.window(&acs).await["code"];
    assert_eq!(code["noContact"], true);
    assert_eq!(code["destinations"], json!([]));
}

#[tokio::test]
async fn sms_can_be_limited_to_domestic_numbers() {
    let s = TestServer::start_with(|c| c.sms.allowed_country_codes = vec!["46".into()]).await;
    let shop = s.create_requestor("shop-1").await;
    let card = s.create_card(PAN).await;
    set_contacts(&s, &card, Some(EMAIL), Some(PHONE)).await;
    let acs = code_purchase(&s, &shop, "http://127.0.0.1:9/n").await;
    s.nth_code_to(EMAIL, 1).await;
    let destinations = &s.window(&acs).await["code"]["destinations"];
    assert_eq!(destinations[1]["state"], "restricted");
    assert!(s.messages().await.iter().all(|m| m["recipient"] != PHONE));
}

#[tokio::test]
async fn contacts_belong_to_each_card() {
    let s = TestServer::start().await;
    let primary = s.create_card(PAN).await;
    let supplementary = s.create_card(OTHER_PAN).await;
    set_contacts(&s, &supplementary, Some("hanako@example.jp"), Some("+819087654321")).await;
    set_contacts(&s, &primary, Some("new@example.jp"), None).await;
    let (_, card) = s.admin(Method::GET, &format!("/v1/admin/cards/{supplementary}"), None).await;
    assert_eq!((card["hasEmail"].clone(), card["hasPhone"].clone()), (Value::Bool(true), Value::Bool(true)));
    let (_, card) = s.admin(Method::GET, &format!("/v1/admin/cards/{primary}"), None).await;
    assert_eq!(card["hasPhone"], false);
    let bad = s
        .admin(
            Method::PUT,
            &format!("/v1/admin/cards/{primary}/contacts"),
            Some(json!({"email": null, "phone": "0701234"})),
        )
        .await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST);
}
