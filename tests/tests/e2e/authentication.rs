//! AReq → ARes: frictionless, refusals, and the issuer's value check.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn small_purchase_is_frictionless_with_a_verifiable_authentication_value() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;

    let (status, ares) = s.areq(&shop, &areq("shop-1", PAN, 2_500, "http://127.0.0.1:9/notify")).await;
    assert_eq!(status, StatusCode::OK, "{ares}");
    assert_eq!(ares["messageType"], "ARes");
    assert_eq!(ares["transStatus"], "Y");
    assert_eq!(ares["eci"], "05");
    let value = ares["authenticationValue"].as_str().unwrap();
    assert_eq!(value.len(), 28);
    assert!(ares.get("acsURL").is_none());
    let acs = ares["acsTransID"].as_str().unwrap();
    assert_eq!(s.status(&shop, acs).await["reasons"], json!(["low_value_exemption"]));

    let verify = |amount: &str, value: &str| json!({"acsTransID": acs, "acctNumber": PAN, "purchaseAmount": amount, "purchaseCurrency": "978", "authenticationValue": value});
    let path = "/v1/admin/authentication-values/verify";
    let (_, ok) = s.admin(Method::POST, path, Some(verify("2500", value))).await;
    assert_eq!(ok, json!({"valid": true, "eci": "05"}));
    let (_, other_amount) = s.admin(Method::POST, path, Some(verify("2501", value))).await;
    assert_eq!(other_amount["valid"], false);
    let (_, forged) = s.admin(Method::POST, path, Some(verify("2500", &forged(value)))).await;
    assert_eq!(forged["valid"], false);
}

#[tokio::test]
async fn unknown_card_is_refused_with_no_card_record() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let (status, ares) = s.areq(&shop, &areq("shop-1", PAN, 2_500, "http://127.0.0.1:9/notify")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ares["transStatus"], "N");
    assert_eq!(ares["transStatusReason"], "08");
}

#[tokio::test]
async fn challenge_without_any_enrolled_device_falls_back_to_a_code() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 90_000, "http://127.0.0.1:9/notify")).await;
    assert_eq!(ares["transStatus"], "C");
    let window = s.window(ares["acsTransID"].as_str().unwrap()).await;
    assert_eq!(window["challenge"]["fallbackReason"], "no_device");
    assert_eq!(window["code"]["destinations"][0]["masked"], "t•••@example.jp");
}

#[tokio::test]
async fn requestor_mandate_challenges_even_a_small_purchase() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    s.card_with_phone(PAN).await;
    let mut req = areq("shop-1", PAN, 100, "http://127.0.0.1:9/notify");
    req["threeDSRequestorChallengeInd"] = json!("04");
    let (_, ares) = s.areq(&shop, &req).await;
    assert_eq!(ares["transStatus"], "C");
    assert_eq!(ares["acsChallengeMandated"], "Y");
    assert!(ares["acsURL"].as_str().unwrap().starts_with(&s.base));
    let status = s.status(&shop, ares["acsTransID"].as_str().unwrap()).await;
    assert_eq!(status["reasons"], json!(["requestor_mandate"]));
}

#[tokio::test]
async fn first_purchases_exemption_is_configurable() {
    let s = TestServer::start_with(|c| c.risk.first_purchases_exempt = 2).await;
    let shop = s.create_requestor("shop-1").await;
    s.card_with_phone(PAN).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 90_000, "http://127.0.0.1:9/notify")).await;
        statuses.push(ares["transStatus"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses, ["Y", "Y", "C"]);
}

#[tokio::test]
async fn requestors_cannot_speak_for_others_or_read_their_results() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let other = s.create_requestor("shop-2").await;
    s.create_card(PAN).await;

    let (status, erro) = s.areq(&other, &areq("shop-1", PAN, 2_500, "http://127.0.0.1:9/notify")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(erro["messageType"], "Erro");
    assert_eq!(erro["errorDetail"], "threeDSRequestorID");

    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 2_500, "http://127.0.0.1:9/notify")).await;
    let acs = ares["acsTransID"].as_str().unwrap();
    let resp =
        s.http.get(s.url(&format!("/v1/authentications/{acs}"))).bearer_auth(&other.api_key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    let resp = s
        .http
        .post(s.url("/v1/authentications"))
        .bearer_auth("csr_not-a-key")
        .json(&areq("shop-1", PAN, 1, "http://x/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let erro: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(erro["errorCode"], "303");
}

#[tokio::test]
async fn a_reused_three_ds_server_trans_id_is_refused() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let req = areq("shop-1", PAN, 2_500, "http://127.0.0.1:9/notify");
    assert_eq!(s.areq(&shop, &req).await.0, StatusCode::OK);
    let (status, erro) = s.areq(&shop, &req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(erro["errorCode"], "305");
    assert_eq!(erro["errorDetail"], "threeDSServerTransID");
}
