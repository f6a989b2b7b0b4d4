//! Rotating the master key: with the old key listed as a previous one,
//! everything made under it still works and long-lived rows move to the
//! new key as they are used; once the old key is dropped, what moved keeps
//! working and what did not is gone.

use countersign_server::storage::SecurityQuestion;
use countersign_server::window::security;
use reqwest::{Method, StatusCode};
use ring::hmac;
use serde_json::{Value, json};

use crate::support::*;

/// Registered under the old key and never used until it is dropped.
const UNUSED_PAN: &str = "4111111111111111";
/// Registered under the old key, registered again under the new one.
const AGAIN_PAN: &str = "5555555555554444";

/// Whether the `n`th callback received carries a valid signature under `secret`.
fn signed_with(receiver: &CallbackReceiver, n: usize, secret: &str) -> bool {
    let (headers, body) = receiver.received.lock().unwrap()[n].clone();
    let header = headers["x-countersign-signature"].to_str().unwrap().to_owned();
    let (t, v1) = header.strip_prefix("t=").and_then(|rest| rest.split_once(",v1=")).unwrap();
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, format!("{t}.{body}").as_bytes(), &hex::decode(v1).unwrap()).is_ok()
}

async fn verify_value(s: &TestServer, acs: &str, value: &str) -> Value {
    let body = json!({"acsTransID": acs, "acctNumber": OTHER_PAN, "purchaseAmount": "2500",
        "purchaseCurrency": "978", "authenticationValue": value});
    let (status, verdict) = s.admin(Method::POST, "/v1/admin/authentication-values/verify", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{verdict}");
    verdict
}

async fn answers_right(s: &TestServer, card: &str, answers: [&str; 2]) -> bool {
    let questions: Vec<SecurityQuestion> = s.app.storage.security_questions(card).await.unwrap();
    let answers = answers.map(str::to_owned);
    security::all_correct(&s.app, card, &questions, &answers).await.unwrap()
}

async fn stored_answers(s: &TestServer, card: &str) -> Vec<Vec<u8>> {
    s.app.storage.security_questions(card).await.unwrap().into_iter().map(|q| q.answer_hash).collect()
}

#[tokio::test]
async fn a_master_key_rotates_without_losing_lookups() {
    // Under key A: a requestor, an operator (the test's admin), cards, a
    // device, security questions, a frictionless authentication value.
    let mut s = TestServer::start().await;
    let key_a = s.app.config.secrets.master_key_file.clone();
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (card, phone) = s.card_with_phone(PAN).await;
    s.create_card(OTHER_PAN).await;
    s.create_card(UNUSED_PAN).await;
    s.create_card(AGAIN_PAN).await;
    let questions = json!({"questions": [
        {"question": "Where were you born?", "answer": "Tokyo"},
        {"question": "Your first pet's name?", "answer": "Pochi"},
    ]});
    let path = format!("/v1/admin/cards/{card}/security-questions");
    assert_eq!(s.admin(Method::PUT, &path, Some(questions)).await.0, StatusCode::OK);
    let (_, ares) = s.areq(&shop, &areq("shop-1", OTHER_PAN, 2_500, "http://127.0.0.1:9/notify")).await;
    assert_eq!(ares["transStatus"], "Y", "{ares}");
    let (value_acs, value) =
        (ares["acsTransID"].as_str().unwrap().to_owned(), ares["authenticationValue"].as_str().unwrap().to_owned());
    s.challenge(&shop, PAN, &receiver.url).await;
    phone.approve_first().await;
    receiver.wait_for(1).await;
    assert!(signed_with(&receiver, 0, &shop.callback_secret));
    let sealed_under_a = s.app.storage.requestor("shop-1").await.unwrap().unwrap().callback_secret;
    let answers_under_a = stored_answers(&s, &card).await;

    // Key B current, A previous.
    let key_b = s.dir.path().join("master-b.key");
    s.restart_with(|c| {
        c.secrets.master_key_file = key_b.clone();
        c.secrets.previous_master_key_files = vec![key_a.clone()];
    })
    .await;
    let phone = phone.reconnect(&s.base);

    // The callback secret is sealed again under B at start, the same secret.
    let app = s.app.clone();
    eventually("the callback secret sealed again", || {
        let (app, before) = (app.clone(), sealed_under_a.clone());
        async move { app.storage.requestor("shop-1").await.unwrap().unwrap().callback_secret != before }
    })
    .await;

    // The operator and requestor keys work; the card is found by its number.
    let (status, body) = s.admin(Method::GET, &format!("/v1/admin/cards/{card}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.challenge(&shop, PAN, &receiver.url).await;
    phone.approve_first().await;
    receiver.wait_for(2).await;
    assert!(signed_with(&receiver, 1, &shop.callback_secret), "the callback secret did not change");

    // The value made under A still verifies (and says so only for itself).
    assert_eq!(verify_value(&s, &value_acs, &value).await, json!({"valid": true, "eci": "05"}));
    assert_eq!(verify_value(&s, &value_acs, &forged(&value)).await["valid"], false);

    // Security answers: wrong ones stay wrong and change nothing; right ones
    // are stored again under B.
    assert!(!answers_right(&s, &card, ["Tokyo", "Hachi"]).await);
    assert_eq!(stored_answers(&s, &card).await, answers_under_a);
    assert!(answers_right(&s, &card, ["tokyo", "Pochi"]).await);
    let answers_under_b = stored_answers(&s, &card).await;
    assert!(answers_under_b.iter().zip(&answers_under_a).all(|(b, a)| b != a), "re-keyed on use");

    // A card number registered under A is still taken: no second card.
    let (status, body) = s.admin(Method::POST, "/v1/admin/cards", Some(json!({"acctNumber": AGAIN_PAN}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Key B alone: what was used since the rotation moved to B and works.
    s.restart_with(|c| c.secrets.previous_master_key_files.clear()).await;
    let phone = phone.reconnect(&s.base);
    assert_eq!(s.admin(Method::GET, &format!("/v1/admin/cards/{card}"), None).await.0, StatusCode::OK);
    s.challenge(&shop, PAN, &receiver.url).await;
    phone.approve_first().await;
    receiver.wait_for(3).await;
    assert!(signed_with(&receiver, 2, &shop.callback_secret));
    let (_, ares) = s.areq(&shop, &areq("shop-1", AGAIN_PAN, 2_500, "http://127.0.0.1:9/notify")).await;
    assert_eq!(ares["transStatus"], "Y", "re-keyed when registered again: {ares}");
    assert!(answers_right(&s, &card, ["Tokyo", "Pochi"]).await);
    assert_eq!(stored_answers(&s, &card).await, answers_under_b);

    // What was never used under B is lost with A: the card not found, the
    // old value no longer verifiable.
    let (_, ares) = s.areq(&shop, &areq("shop-1", UNUSED_PAN, 2_500, "http://127.0.0.1:9/notify")).await;
    assert_eq!(ares["transStatus"], "N", "{ares}");
    assert_eq!(verify_value(&s, &value_acs, &value).await["valid"], false);
}
