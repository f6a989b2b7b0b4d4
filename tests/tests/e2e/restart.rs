//! A restart (same database, same master key, new process state and port)
//! keeps everything: devices, challenges, results, keys, codes, nonces and
//! the result deliveries still owed.

use countersign_core::protocol::Decision;
use countersign_core::protocol::wire::ChallengeOutcome;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn a_restart_keeps_every_state() {
    let mut s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let (card, phone) = s.card_with_phone(PAN).await;
    let later_code = s.enrolment_code(&card).await;

    // One purchase approved, one still pending.
    let approved = s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
    phone.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
    let before = s.status(&shop, &approved).await;
    assert_eq!(before["transStatus"], "Y");
    let value = before["authenticationValue"].as_str().unwrap().to_owned();
    let pending = s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;

    // A signed request whose nonce is then spent.
    let (ts, spent) = (s.now(), nonce());
    let list = |phone: &Phone, base_http: &reqwest::Client| {
        phone.signed(base_http, Method::GET, "/v1/device/challenges", b"", ts, spent)
    };
    assert_eq!(send(list(&phone, &s.http)).await.0, StatusCode::OK);

    s.restart().await;
    if !on_postgres() {
        assert!(s.dir.path().join("countersign.db").exists());
    }
    let phone = phone.reconnect(&s.base);

    // The nonce spent before the restart is still spent.
    let replay = send(list(&phone, &s.http)).await;
    assert_refused(&replay, StatusCode::UNAUTHORIZED, "replayed_nonce");

    // The device still authenticates and sees the pending purchase.
    let views = phone.call(|c| c.pending_challenges()).await.unwrap().challenges;
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].card.card_id, card);
    assert_eq!(s.challenge_state(&shop, &pending).await, "pending");
    let view = views[0].clone();
    let receipt = phone.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Approved);
    assert_eq!(s.status(&shop, &pending).await["transStatus"], "Y");

    // The earlier result is unchanged and its value still verifies (the
    // requestor key and the operator key both still work).
    let after = s.status(&shop, &approved).await;
    assert_eq!(after["transStatus"], "Y");
    assert_eq!(after["authenticationValue"], value.as_str());
    assert_eq!(after["challenge"]["state"], "approved");
    assert_eq!(after["reasons"], before["reasons"]);
    let (status, verdict) = s
        .admin(
            Method::POST,
            "/v1/admin/authentication-values/verify",
            Some(json!({
                "acsTransID": approved, "acctNumber": PAN, "purchaseAmount": "6000",
                "purchaseCurrency": "978", "authenticationValue": value
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{verdict}");
    assert_eq!(verdict, json!({"valid": true, "eci": "05"}));
    let (status, card_view) = s.admin(Method::GET, &format!("/v1/admin/cards/{card}"), None).await;
    assert_eq!(status, StatusCode::OK, "{card_view}");
    assert_eq!(card_view["maskedPan"], "•••• 0005");

    // The card is still found by its number: a new purchase is frictionless.
    let (status, ares) = s.areq(&shop, &areq("shop-1", PAN, 1_000, "http://127.0.0.1:9/notify")).await;
    assert_eq!(status, StatusCode::OK, "{ares}");
    assert_eq!(ares["transStatus"], "Y");

    // A code made before the restart is redeemed after it.
    let second = s.phone();
    let enrolled = second.enrol(&later_code).await;
    assert_eq!(enrolled.card.card_id, card);
    assert_ne!(enrolled.device_id, phone.device_id());
    // And used codes stay used.
    let reused = s.phone();
    let code = later_code.clone();
    let again =
        reused.call(move |c| c.enrol(&code, countersign_core::protocol::Platform::Android, None, false, "x")).await;
    assert!(
        matches!(again, Err(countersign_core::client::ClientError::ServerRefused { status: 409, .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_result_delivery_owed_before_a_restart_is_made_after_it() {
    let mut s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(1).await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let acs = s.challenge(&shop, PAN, &receiver.url).await;
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
    phone.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
    receiver.wait_for(1).await;
    eventually("the failed attempt recorded", || async {
        s.status(&shop, &acs).await["resultDelivery"]["attempts"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;

    s.restart().await;
    let owed = s.status(&shop, &acs).await["resultDelivery"].clone();
    assert_eq!(owed["state"], "pending", "{owed}");
    s.clock.advance_secs(1);
    let bodies = receiver.wait_for(2).await;
    assert_eq!(bodies[1], bodies[0]);
    eventually("the delivery recorded", || async {
        s.status(&shop, &acs).await["resultDelivery"]["state"] == "delivered"
    })
    .await;
    let done = s.status(&shop, &acs).await["resultDelivery"].clone();
    let statuses: Vec<_> = done["attempts"].as_array().unwrap().iter().map(|a| a["httpStatus"].as_u64()).collect();
    assert_eq!(statuses, [Some(500), Some(200)]);
}
