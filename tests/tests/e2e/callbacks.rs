//! The result callback (RReq) to the requestor's notificationURL: signed,
//! retried with backoff on the server's clock, every attempt recorded.
//!
//! "Nothing more is due" is checked by running one delivery pass directly
//! (`deliver_due`): it claims every due job, so 0 means none was due —
//! no waiting needed to show that something does not happen.

use countersign_core::protocol::{Decision, DenyReason};
use countersign_server::flows::admin::CreatedRequestor;
use countersign_server::flows::callbacks::deliver_due;
use reqwest::StatusCode;
use ring::hmac;
use serde_json::{Value, json};

use crate::support::*;

/// The cardholder answers the only pending challenge on `phone`.
async fn answer(phone: &Phone, decision: Decision) {
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
    phone.call(move |c| c.decide(&view, decision, None)).await.unwrap();
}

async fn delivery(s: &TestServer, shop: &CreatedRequestor, acs: &str) -> Value {
    s.status(shop, acs).await["resultDelivery"].clone()
}

/// Waits until the server has recorded `n` attempts (it records each one
/// after the receiver has answered).
async fn recorded(s: &TestServer, shop: &CreatedRequestor, acs: &str, n: usize) -> Value {
    eventually(&format!("{n} recorded attempts"), || async move {
        delivery(s, shop, acs).await["attempts"].as_array().is_some_and(|a| a.len() == n)
    })
    .await;
    delivery(s, shop, acs).await
}

/// `(attempt, httpStatus)` of every recorded attempt.
fn attempts(delivery: &Value) -> Vec<(u64, Option<u64>)> {
    delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["attempt"].as_u64().unwrap(), a["httpStatus"].as_u64()))
        .collect()
}

fn attempt_times(delivery: &Value) -> Vec<i64> {
    delivery["attempts"].as_array().unwrap().iter().map(|a| a["at"].as_i64().unwrap()).collect()
}

async fn nothing_due(s: &TestServer) {
    assert_eq!(deliver_due(&s.app).await.unwrap(), 0, "a callback was due");
}

#[tokio::test]
async fn the_rreq_is_signed_with_the_requestors_callback_secret() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let req = areq("shop-1", PAN, 6_000, &receiver.url);
    let (_, ares) = s.areq(&shop, &req).await;
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();
    answer(&phone, Decision::Approve).await;
    let sent_at = s.now();

    receiver.wait_for(1).await;
    let (headers, body) = receiver.received.lock().unwrap()[0].clone();
    assert_eq!(headers["content-type"], "application/json");
    let header = headers["x-countersign-signature"].to_str().unwrap();
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("unexpected signature header {header}"));
    assert_eq!(t.parse::<i64>().unwrap(), sent_at, "t is the server's clock");
    let tag = hex::decode(v1).unwrap();
    let key = hmac::Key::new(hmac::HMAC_SHA256, shop.callback_secret.as_bytes());
    hmac::verify(&key, format!("{t}.{body}").as_bytes(), &tag).expect("a valid HMAC");
    // The MAC binds the body, the time and the secret.
    assert!(hmac::verify(&key, format!("{t}.{body} ").as_bytes(), &tag).is_err());
    assert!(hmac::verify(&key, format!("{}.{body}", sent_at + 1).as_bytes(), &tag).is_err());
    let other = hmac::Key::new(hmac::HMAC_SHA256, b"another secret");
    assert!(hmac::verify(&other, format!("{t}.{body}").as_bytes(), &tag).is_err());

    let rreq: Value = serde_json::from_str(&body).unwrap();
    let status = s.status(&shop, &acs).await;
    assert_eq!(rreq["messageType"], "RReq");
    assert_eq!(rreq["messageVersion"], "2.2.0");
    assert_eq!(rreq["acsTransID"], acs.as_str());
    assert_eq!(rreq["threeDSServerTransID"], req["threeDSServerTransID"]);
    assert_eq!(rreq["transStatus"], "Y");
    assert_eq!(rreq["eci"], "05");
    assert_eq!(rreq["authenticationValue"], status["authenticationValue"]);
    assert_eq!(rreq["interactionCounter"], "01");

    let delivered = recorded(&s, &shop, &acs, 1).await;
    assert_eq!(delivered["state"], "delivered");
    assert_eq!(attempts(&delivered), [(1, Some(200))]);
    nothing_due(&s).await;
}

#[tokio::test]
async fn a_cardholder_cancel_is_reported_with_its_reason() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let acs = s.challenge(&shop, PAN, &receiver.url).await;
    answer(&phone, Decision::Deny(DenyReason::Cancelled)).await;
    let rreq = &receiver.wait_for(1).await[0];
    assert_eq!(rreq["acsTransID"], acs.as_str());
    assert_eq!(rreq["transStatus"], "N");
    assert_eq!(rreq["transStatusReason"], "01");
    assert_eq!(rreq["challengeCancel"], "01");
    assert!(rreq.get("authenticationValue").is_none(), "{rreq}");
    let status = s.status(&shop, &acs).await;
    assert_eq!(status["transStatusReason"], "01");
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_until_one_succeeds() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(2).await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let acs = s.challenge(&shop, PAN, &receiver.url).await;
    answer(&phone, Decision::Approve).await;
    let t0 = s.now();

    receiver.wait_for(1).await;
    let first = recorded(&s, &shop, &acs, 1).await;
    assert_eq!(first["state"], "pending");
    assert_eq!(attempts(&first), [(1, Some(500))]);

    // 1 s backoff: not due a millisecond before, due at it.
    s.clock.advance_ms(999);
    nothing_due(&s).await;
    s.clock.advance_ms(1);
    receiver.wait_for(2).await;
    let second = recorded(&s, &shop, &acs, 2).await;
    assert_eq!(second["state"], "pending");

    // Then 2 s.
    s.clock.advance_ms(1_999);
    nothing_due(&s).await;
    s.clock.advance_ms(1);
    receiver.wait_for(3).await;
    let done = recorded(&s, &shop, &acs, 3).await;
    assert_eq!(done["state"], "delivered");
    assert_eq!(attempts(&done), [(1, Some(500)), (2, Some(500)), (3, Some(200))]);
    assert_eq!(attempt_times(&done), [t0, t0 + 1_000, t0 + 3_000]);

    // The same signed RReq each time; nothing more after success.
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    s.clock.advance_secs(3600);
    nothing_due(&s).await;
    assert_eq!(receiver.bodies().len(), 3);
}

#[tokio::test]
async fn delivery_gives_up_after_max_attempts() {
    let s = TestServer::start().await;
    let max = s.app.config.callbacks.max_attempts as usize;
    assert_eq!(max, 4);
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(usize::MAX).await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let acs = s.challenge(&shop, PAN, &receiver.url).await;
    answer(&phone, Decision::Approve).await;

    let mut backoff_ms = 1_000;
    for n in 1..=max {
        receiver.wait_for(n).await;
        let d = recorded(&s, &shop, &acs, n).await;
        if n < max {
            assert_eq!(d["state"], "pending", "{d}");
            s.clock.advance_ms(backoff_ms - 1);
            nothing_due(&s).await;
            s.clock.advance_ms(1);
            backoff_ms *= 2;
        }
    }
    let failed = delivery(&s, &shop, &acs).await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(attempts(&failed), (1..=max as u64).map(|n| (n, Some(500))).collect::<Vec<_>>());

    // Given up for good: however much time passes, nothing is due.
    s.clock.advance_secs(24 * 3600);
    nothing_due(&s).await;
    assert_eq!(receiver.bodies().len(), max);
    assert_eq!(attempts(&delivery(&s, &shop, &acs).await).len(), max);
    // The result itself is unaffected by the failed delivery.
    assert_eq!(s.status(&shop, &acs).await["transStatus"], "Y");
}

#[tokio::test]
async fn a_frictionless_result_sends_no_callback() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, phone) = s.card_with_phone(PAN).await;

    let (status, ares) = s.areq(&shop, &areq("shop-1", PAN, 2_500, &receiver.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ares["transStatus"], "Y");
    let frictionless = ares["acsTransID"].as_str().unwrap().to_owned();
    // No delivery job exists for it (the job would be stored with the result).
    assert_eq!(delivery(&s, &shop, &frictionless).await, Value::Null);
    nothing_due(&s).await;

    // A challenge to the same endpoint afterwards is the only RReq sent.
    let challenged = s.challenge(&shop, PAN, &receiver.url).await;
    answer(&phone, Decision::Approve).await;
    receiver.wait_for(1).await;
    recorded(&s, &shop, &challenged, 1).await;
    nothing_due(&s).await;
    let acs_ids: Vec<Value> = receiver.bodies().iter().map(|b| b["acsTransID"].clone()).collect();
    assert_eq!(acs_ids, [json!(challenged)]);
    assert_eq!(delivery(&s, &shop, &frictionless).await, Value::Null);
}

/// Results go out as fast as purchases end, not a batch per poll: with an
/// hour between the worker's polls, a hundred purchases ending at once all
/// reach the requestor (each ending wakes the worker, and while its claims
/// come back full the next follows at once).
#[tokio::test]
async fn the_results_of_many_purchases_ending_at_once_go_out_without_waiting_for_a_poll() {
    let s = TestServer::start_with(|c| c.callbacks.poll_interval_ms = 3_600_000).await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    s.card_with_phone(PAN).await;
    let mut purchases = Vec::new();
    for _ in 0..100 {
        purchases.push(s.challenge(&shop, PAN, &receiver.url).await);
    }
    // Unanswered, they all expire at the sweeper's next pass.
    s.clock.advance_secs(s.app.config.challenge.expiry_secs as i64 + 1);
    let mut reported: Vec<String> =
        receiver.wait_for(100).await.iter().map(|r| r["acsTransID"].as_str().unwrap().to_owned()).collect();
    reported.sort();
    purchases.sort();
    assert_eq!(reported, purchases);
}
