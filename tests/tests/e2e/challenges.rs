//! The push path: AReq → push → the phone fetches, decides, signs → result.

use countersign_core::client::ClientError;
use countersign_core::protocol::wire::{ChallengeOutcome, PushPayload};
use countersign_core::protocol::{Decision, DenyReason};
use reqwest::Method;

use crate::support::*;

#[tokio::test]
async fn push_approval_end_to_end() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (card, phone) = s.card_with_phone(PAN).await;

    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 12_800, &receiver.url)).await;
    assert_eq!(ares["transStatus"], "C");
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();

    // The push carries ids and expiry only: no card number, amount or
    // merchant. (Its fields exactly, not an absence of substrings: a
    // random challenge id may well contain "128".)
    let (_, pushes) = s.admin(Method::GET, &format!("/v1/admin/pushes?deviceId={}", phone.device_id()), None).await;
    let payload = &pushes[0]["payload"];
    let mut fields: Vec<&str> = payload.as_object().expect("a map").keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["cs_challenge", "cs_expires", "cs_type"], "{payload}");
    assert_eq!(payload["cs_type"], "challenge");
    assert!(payload["cs_expires"].as_str().is_some_and(|t| t.parse::<i64>().is_ok()), "{payload}");
    let map = serde_json::from_value(payload.clone()).unwrap();
    let view = phone.call(move |c| c.handle_push(&map)).await.unwrap().expect("a Countersign push");
    assert_eq!(view.terms.amount_minor, 12_800);
    assert_eq!(view.terms.currency, 978);
    assert_eq!(view.terms.merchant_name, "Nordic Outdoor AB");
    assert_eq!(view.card.card_id, card);
    assert_eq!(view.card.masked_pan, "•••• 0005");
    assert_eq!(
        PushPayload::from_map(&serde_json::from_value(payload.clone()).unwrap()).unwrap().challenge_id,
        view.challenge_id
    );

    // Number matching: the checkout shows one of the three the phone offers.
    let number = s.status(&shop, &acs).await["challenge"]["numberMatch"].as_u64().unwrap() as u8;
    assert!(view.number_choices.as_ref().unwrap().contains(&number));

    let v = view.clone();
    let receipt = phone.call(move |c| c.decide(&v, Decision::Approve, Some(number))).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Approved);

    let result = s.status(&shop, &acs).await;
    assert_eq!(result["transStatus"], "Y");
    assert_eq!(result["eci"], "05");
    assert_eq!(result["authenticationValue"].as_str().unwrap().len(), 28);
    assert_eq!(result["challenge"]["state"], "approved");
    assert!(result["challenge"].get("numberMatch").is_none(), "the number is shown only while pending");

    let rreq = &receiver.wait_for(1).await[0];
    assert_eq!(rreq["messageType"], "RReq");
    assert_eq!(rreq["acsTransID"], acs.as_str());
    assert_eq!(rreq["transStatus"], "Y");
    assert_eq!(rreq["interactionCounter"], "01");
    assert_eq!(rreq["authenticationValue"], result["authenticationValue"]);

    // Answering again changes nothing.
    let again = phone.call(move |c| c.decide(&view, Decision::Deny(DenyReason::NotMe), None)).await;
    assert!(matches!(again, Err(ClientError::AlreadyDecided)), "{again:?}");
    assert_eq!(s.status(&shop, &acs).await["transStatus"], "Y");
}

#[tokio::test]
async fn not_me_denies_with_suspected_fraud() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 6_000, "http://127.0.0.1:9/notify")).await;
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();
    let pending = phone.call(|c| c.pending_challenges()).await.unwrap();
    assert_eq!(pending.challenges.len(), 1);
    let view = pending.challenges[0].clone();
    assert!(view.number_choices.is_none(), "60.00 EUR is under the number-matching amount");
    let receipt = phone.call(move |c| c.decide(&view, Decision::Deny(DenyReason::NotMe), None)).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Denied);
    let result = s.status(&shop, &acs).await;
    assert_eq!(result["transStatus"], "N");
    assert_eq!(result["transStatusReason"], "11");
    assert!(result.get("authenticationValue").is_none());
    assert!(phone.call(|c| c.pending_challenges()).await.unwrap().challenges.is_empty());
}

#[tokio::test]
async fn a_wrong_number_is_a_denial() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 50_000, "http://127.0.0.1:9/notify")).await;
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();
    let number = s.status(&shop, &acs).await["challenge"]["numberMatch"].as_u64().unwrap() as u8;
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
    let wrong = *view.number_choices.as_ref().unwrap().iter().find(|n| **n != number).unwrap();
    let receipt = phone.call(move |c| c.decide(&view, Decision::Approve, Some(wrong))).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Denied);
    let result = s.status(&shop, &acs).await;
    assert_eq!(result["transStatus"], "N");
    assert_eq!(result["challenge"]["outcomeReason"], "number_mismatch");
}

#[tokio::test]
async fn an_unanswered_challenge_expires_once_with_timeout_reason() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 6_000, &receiver.url)).await;
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);

    s.clock.advance_secs(s.app.config.challenge.expiry_secs as i64);
    let result = s.status(&shop, &acs).await;
    assert_eq!(result["transStatus"], "N");
    assert_eq!(result["transStatusReason"], "14");
    assert_eq!(result["challenge"]["state"], "expired");

    // The phone's late answer is refused, and nothing changes.
    let late = phone.call(move |c| c.decide(&view, Decision::Approve, None)).await;
    assert!(matches!(late, Err(ClientError::Expired)), "{late:?}");
    let rreqs = receiver.wait_for(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(receiver.bodies().len(), 1, "exactly one result for one challenge");
    assert_eq!(rreqs[0]["transStatus"], "N");
    assert_eq!(rreqs[0]["challengeCancel"], "04");
    let (_, audit) = s.admin(Method::GET, &format!("/v1/admin/audit?acsTransID={acs}"), None).await;
    let ended: Vec<_> = audit["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "challenge.ended").collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["outcome"], "expired");
}

#[tokio::test]
async fn twenty_concurrent_decisions_have_exactly_one_outcome() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let card = s.create_card(PAN).await;
    let mut phones = Vec::new();
    for _ in 0..20 {
        let phone = s.phone();
        phone.enrol(&s.enrolment_code(&card).await).await;
        phones.push(phone);
    }
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 6_000, &receiver.url)).await;
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();
    let view = phones[0].call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);

    let answers = phones.iter().enumerate().map(|(i, phone)| {
        let view = view.clone();
        let decision = if i % 2 == 0 { Decision::Approve } else { Decision::Deny(DenyReason::Cancelled) };
        let phone = phone.clone();
        async move { phone.call(move |c| c.decide(&view, decision, None)).await }
    });
    let results = futures_join_all(answers).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(ClientError::AlreadyDecided))),
        "{results:?}"
    );

    let expected = if winners[0].outcome == ChallengeOutcome::Approved { "Y" } else { "N" };
    assert_eq!(s.status(&shop, &acs).await["transStatus"], expected);
    receiver.wait_for(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(receiver.bodies().len(), 1);
    assert_eq!(receiver.bodies()[0]["transStatus"], expected);
    let (_, audit) = s.admin(Method::GET, &format!("/v1/admin/audit?acsTransID={acs}"), None).await;
    assert_eq!(audit["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "challenge.ended").count(), 1);
}

/// Awaits every future concurrently (tokio tasks; no extra crate).
async fn futures_join_all<T: Send + 'static>(
    futures: impl IntoIterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn cancelling_ends_the_challenge_cancelled_and_tells_the_requestor() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 6_000, &receiver.url)).await;
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
    let receipt = phone.call(move |c| c.decide(&view, Decision::Deny(DenyReason::Cancelled), None)).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Cancelled);
    let result = s.status(&shop, &acs).await;
    assert_eq!(result["challenge"]["state"], "cancelled");
    assert_eq!(result["transStatus"], "N");
    assert_eq!(result["transStatusReason"], "01");
    let rreq = &receiver.wait_for(1).await[0];
    assert_eq!(rreq["challengeCancel"], "01");
}
