//! Bad input on every API gets a typed 4xx — EMV `Erro` for requestors,
//! `{"error":{code,message}}` elsewhere — never a 500, and nothing breaks.

use countersign_core::protocol::RequestAuth;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const LIMIT: usize = 16 * 1024;

/// Sends raw bytes; returns status, content type and body text.
async fn raw(req: reqwest::RequestBuilder) -> (StatusCode, String, String) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, resp.text().await.unwrap())
}

async fn still_ready(s: &TestServer) {
    let resp = s.http.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_areqs_get_emv_erro_messages() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let good = areq("shop-1", PAN, 2_500, "http://127.0.0.1:9/notify");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let duplicate = {
        let text = serde_json::to_string(&good).unwrap();
        format!("{{\"merchantName\":\"Other\",{}", &text[1..]).into_bytes()
    };
    let mut huge = good.clone();
    huge["browserUserAgent"] = json!("M".repeat(LIMIT + 1));

    type Case = (&'static str, Vec<u8>, StatusCode, &'static str, Option<&'static str>);
    let cases: Vec<Case> = vec![
        ("not JSON", b"purchaseAmount=2500".to_vec(), StatusCode::BAD_REQUEST, "101", None),
        ("empty", Vec::new(), StatusCode::BAD_REQUEST, "101", None),
        ("truncated", serde_json::to_vec(&good).unwrap()[..40].to_vec(), StatusCode::BAD_REQUEST, "101", None),
        ("array", b"[{\"messageType\":\"AReq\"}]".to_vec(), StatusCode::BAD_REQUEST, "101", None),
        ("string", b"\"AReq\"".to_vec(), StatusCode::BAD_REQUEST, "101", None),
        (
            "amount as a number",
            with(&|v| v["purchaseAmount"] = json!(2500)),
            StatusCode::BAD_REQUEST,
            "203",
            Some("purchaseAmount"),
        ),
        ("CReq here", with(&|v| v["messageType"] = json!("CReq")), StatusCode::BAD_REQUEST, "101", Some("messageType")),
        (
            "version 2.1.0",
            with(&|v| v["messageVersion"] = json!("2.1.0")),
            StatusCode::BAD_REQUEST,
            "102",
            Some("messageVersion"),
        ),
        (
            "no card number",
            with(&|v| {
                v.as_object_mut().unwrap().remove("acctNumber");
            }),
            StatusCode::BAD_REQUEST,
            "201",
            Some("acctNumber"),
        ),
        (
            "currency 999",
            with(&|v| v["purchaseCurrency"] = json!("999")),
            StatusCode::BAD_REQUEST,
            "304",
            Some("purchaseCurrency"),
        ),
        (
            "currency 959 (gold)",
            with(&|v| v["purchaseCurrency"] = json!("959")),
            StatusCode::BAD_REQUEST,
            "304",
            Some("purchaseCurrency"),
        ),
        ("duplicate element", duplicate, StatusCode::BAD_REQUEST, "204", Some("merchantName")),
        ("over the body limit", serde_json::to_vec(&huge).unwrap(), StatusCode::PAYLOAD_TOO_LARGE, "101", None),
    ];
    for (what, body, status, code, detail) in cases {
        let (got, content_type, text) = raw(s
            .http
            .post(s.url("/v1/authentications"))
            .bearer_auth(&shop.api_key)
            .header("content-type", "application/json")
            .body(body))
        .await;
        assert_eq!(got, status, "{what}: {text}");
        assert_eq!(content_type, "application/json", "{what}");
        let erro: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(erro["messageType"], "Erro", "{what}: {erro}");
        assert_eq!(erro["errorCode"], code, "{what}: {erro}");
        assert_eq!(erro["errorComponent"], "A", "{what}: {erro}");
        assert!(erro["errorDescription"].is_string(), "{what}: {erro}");
        if let Some(detail) = detail {
            assert_eq!(erro["errorDetail"], detail, "{what}: {erro}");
            // A well-formed object gets its transaction id echoed.
            assert_eq!(erro["threeDSServerTransID"], good["threeDSServerTransID"], "{what}: {erro}");
        }
        assert!(!text.contains(PAN), "{what}: the card number was echoed");
    }

    // Unauthenticated: 401 with Erro 303.
    let (got, _, text) = raw(s.http.post(s.url("/v1/authentications")).json(&good)).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED);
    let erro: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(erro["messageType"], "Erro");
    assert_eq!(erro["errorCode"], "303");
    assert_eq!(erro["errorDetail"], "Authorization");

    // None of it was recorded as an authentication…
    let (_, audit) = s.admin(Method::GET, "/v1/admin/audit?limit=1000", None).await;
    assert!(!audit["events"].as_array().unwrap().iter().any(|e| e["kind"] == "authentication.decided"), "{audit}");
    // …and the same requestor's good AReq still goes through.
    let (got, ares) = s.areq(&shop, &good).await;
    assert_eq!(got, StatusCode::OK, "{ares}");
    assert_eq!(ares["transStatus"], "Y");
    still_ready(&s).await;
}

#[tokio::test]
async fn bad_device_requests_get_typed_errors_and_change_nothing() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let (card, phone) = s.card_with_phone(PAN).await;
    let acs = s.challenge(&shop, PAN, "http://127.0.0.1:9/notify").await;
    let signed_put =
        |body: &[u8]| send(phone.signed(&s.http, Method::PUT, "/v1/device/push-settings", body, s.now(), nonce()));

    // Correctly signed, but not the JSON the route expects.
    for body in [
        &br#"{"pushToken": "#[..],
        br#"{"pushToken": 5, "notificationsEnabled": true}"#,
        br#"{"pushToken": "t", "notificationsEnabled": true, "sound": "loud"}"#,
        br#"{"pushToken": "t"}"#,
        br#"[]"#,
        b"",
    ] {
        let got = signed_put(body).await;
        assert_refused(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
    // Over the body limit, even though it is signed.
    let big = json!({"pushToken": "t".repeat(LIMIT), "notificationsEnabled": false});
    let got = signed_put(&serde_json::to_vec(&big).unwrap()).await;
    assert_refused(&got, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // A decision that is not a decision.
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
    let got = send(phone.signed(
        &s.http,
        Method::POST,
        &format!("/v1/device/challenges/{}/decision", view.challenge_id),
        br#"{"challengeId": 7, "decision": "approve"}"#,
        s.now(),
        nonce(),
    ))
    .await;
    assert_refused(&got, StatusCode::BAD_REQUEST, "bad_request");

    // Unsigned, or missing a signature header.
    let got = send(s.http.get(s.url("/v1/device/challenges"))).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "unauthenticated");
    let got = send(
        s.http
            .put(s.url("/v1/device/push-settings"))
            .header("x-countersign-device", phone.device_id())
            .json(&json!({"pushToken": null, "notificationsEnabled": false})),
    )
    .await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "unauthenticated");
    // Signed properly, but the nonce is not 16 bytes.
    let mut auth =
        RequestAuth { device_id: phone.device_id(), timestamp_ms: s.now(), nonce: vec![7; 5], signature: vec![] };
    auth.signature = phone.key.sign(&auth.message("GET", "/v1/device/challenges", b"").signed_bytes());
    let mut req = s.http.get(s.url("/v1/device/challenges"));
    for (name, value) in auth.to_headers() {
        req = req.header(name, value);
    }
    assert_refused(&send(req).await, StatusCode::UNAUTHORIZED, "unauthenticated");

    // Enrolment with the wrong JSON types: refused without echoing values.
    let enrol = |body: Value| send(s.http.post(s.url("/v1/device/enrolments")).json(&body));
    let key = phone.key.public_key();
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let good_shape = json!({
        "code": "ABCD-EFGH-JKMN", "publicKey": b64(&key), "platform": "ios",
        "pushToken": null, "notificationsEnabled": true, "displayName": "x",
        "signedAt": s.now(), "proof": b64(b"0")
    });
    for (field, value) in [
        ("code", json!(12345678)),
        ("publicKey", json!([4, 1, 2])),
        ("platform", json!("windows")),
        ("notificationsEnabled", json!("yes")),
        ("signedAt", json!("now")),
        ("proof", json!("not base64!")),
    ] {
        let mut body = good_shape.clone();
        body[field] = value;
        let got = enrol(body).await;
        assert_refused(&got, StatusCode::BAD_REQUEST, "bad_request");
        assert!(!got.1.to_string().contains("12345678"), "{field}: {}", got.1);
    }
    let got =
        send(s.http.post(s.url("/v1/device/enrolments")).header("content-type", "application/json").body("code=ABCD"))
            .await;
    assert_refused(&got, StatusCode::BAD_REQUEST, "bad_request");

    // Nothing changed: the device's settings, the challenge, the phone.
    let devices = s.admin(Method::GET, &format!("/v1/admin/cards/{card}/devices"), None).await.1;
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
    assert_eq!(devices[0]["notificationsEnabled"], true);
    assert_eq!(devices[0]["hasPushToken"], true);
    let stored = s.app.storage.device(&phone.device_id()).await.unwrap().unwrap();
    assert_eq!(stored.push_token.as_deref(), Some("apns-token-1"));
    assert_eq!(s.challenge_state(&shop, &acs).await, "pending");
    assert_eq!(phone.call(|c| c.pending_challenges()).await.unwrap().challenges.len(), 1);
    still_ready(&s).await;
}

#[tokio::test]
async fn bad_admin_requests_and_unknown_routes_get_json_errors() {
    let s = TestServer::start().await;
    let admin_post = |path: &str, body: Vec<u8>| {
        raw(s.http.post(s.url(path)).bearer_auth(&s.admin_key).header("content-type", "application/json").body(body))
    };
    let error_code = |text: &str| -> Value { serde_json::from_str::<Value>(text).unwrap()["error"]["code"].clone() };

    // A Luhn-invalid card number is refused and never echoed.
    let luhn_invalid = "378282246310006";
    let (got, content_type, text) = admin_post(
        "/v1/admin/cards",
        serde_json::to_vec(&json!({"acctNumber": luhn_invalid, "email": "taro@example.jp"})).unwrap(),
    )
    .await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(content_type, "application/json");
    assert_eq!(error_code(&text), "bad_request");
    assert!(text.contains("acctNumber"), "{text}");
    assert!(!text.contains(luhn_invalid) && !text.contains("46310006"), "{text}");

    // The number sent as a JSON number: a type error, still not echoed.
    let (got, _, text) = admin_post("/v1/admin/cards", br#"{"acctNumber": 378282246310005}"#.to_vec()).await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(error_code(&text), "bad_request");
    assert!(!text.contains("378282246310005") && !text.contains("46310005"), "{text}");

    // Over the body limit.
    let big = json!({"acctNumber": PAN, "email": format!("{}@example.jp", "t".repeat(LIMIT))});
    let (got, _, text) = admin_post("/v1/admin/cards", serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(error_code(&text), "payload_too_large");

    // No operator key.
    let (got, _, text) = raw(s.http.post(s.url("/v1/admin/cards")).json(&json!({"acctNumber": PAN}))).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED, "{text}");
    assert_eq!(error_code(&text), "unauthenticated");

    // None of those created a card.
    let (_, audit) = s.admin(Method::GET, "/v1/admin/audit?limit=1000", None).await;
    assert!(!audit["events"].as_array().unwrap().iter().any(|e| e["kind"] == "card.created"), "{audit}");

    // Unknown routes and wrong methods.
    for (method, path, status, code) in [
        (Method::GET, "/v1/nothing-here", StatusCode::NOT_FOUND, "not_found"),
        (Method::GET, "/v1/device/nothing-here", StatusCode::NOT_FOUND, "not_found"),
        (Method::POST, "/", StatusCode::NOT_FOUND, "not_found"),
        (Method::GET, "/v1/authentications", StatusCode::METHOD_NOT_ALLOWED, "bad_request"),
        (Method::DELETE, "/v1/admin/cards", StatusCode::METHOD_NOT_ALLOWED, "bad_request"),
        (Method::POST, "/readyz", StatusCode::METHOD_NOT_ALLOWED, "bad_request"),
    ] {
        let (got, content_type, text) =
            raw(s.http.request(method.clone(), s.url(path)).bearer_auth(&s.admin_key)).await;
        assert_eq!(got, status, "{method} {path}: {text}");
        assert_eq!(content_type, "application/json", "{method} {path}");
        assert_eq!(error_code(&text), code, "{method} {path}: {text}");
    }

    // Still up, and still working.
    still_ready(&s).await;
    s.create_card(PAN).await;
}

/// axum's own refusals (a query string, path segment or form it cannot
/// read) come out as the typed JSON error with the documented status, never
/// as axum's plain text. The API fuzzing found these plain-text answers.
#[tokio::test]
async fn query_path_and_form_refusals_are_typed() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let card = s.create_card(PAN).await;
    let error = |text: &str| -> Value { serde_json::from_str::<Value>(text).unwrap()["error"].clone() };

    // Query parameters of the wrong type, with a card number in one: not echoed.
    for path in ["/v1/admin/audit?limit=lots", "/v1/admin/pushes?limit=-1", "/v1/admin/messages?limit=378282246310005"]
    {
        let (got, content_type, text) = raw(s.http.get(s.url(path)).bearer_auth(&s.admin_key)).await;
        assert_eq!(got, StatusCode::BAD_REQUEST, "{path}: {text}");
        assert_eq!(content_type, "application/json", "{path}");
        assert_eq!(error(&text)["code"], "bad_request", "{path}: {text}");
        assert!(error(&text)["message"].as_str().unwrap().contains("limit"), "{path}: {text}");
        assert!(!text.contains("46310005"), "{path}: {text}");
    }

    // A path segment that is not UTF-8 once decoded.
    let (got, content_type, text) = raw(s.http.get(s.url("/v1/admin/cards/%FF%FE")).bearer_auth(&s.admin_key)).await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(content_type, "application/json");
    assert_eq!(error(&text)["code"], "bad_request", "{text}");
    let (got, _, text) = raw(s.http.get(s.url("/v1/window/%FF")).bearer_auth(&s.admin_key)).await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(error(&text)["code"], "bad_request", "{text}");
    // The requestor API answers an EMV Erro instead: no such transaction.
    let (got, content_type, text) = raw(s.http.get(s.url("/v1/authentications/%FF")).bearer_auth(&shop.api_key)).await;
    assert_eq!(got, StatusCode::NOT_FOUND, "{text}");
    assert_eq!(content_type, "application/json");
    let erro: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((erro["messageType"].as_str(), erro["errorCode"].as_str()), (Some("Erro"), Some("301")), "{text}");

    // The window's form endpoints sent JSON, or nothing, instead of a form.
    for path in ["/challenge", "/challenge/act", "/challenge/poll"] {
        let (got, content_type, text) =
            raw(s.http.post(s.url(path)).header("content-type", "application/json").body(r#"{"creq":"x"}"#)).await;
        assert_eq!(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}: {text}");
        assert_eq!(content_type, "application/json", "{path}");
        assert_eq!(error(&text)["code"], "bad_request", "{path}: {text}");
        let (got, _, text) = raw(s.http.post(s.url(path))).await;
        assert_eq!(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}: {text}");
        assert_eq!(error(&text)["code"], "bad_request", "{path}: {text}");
    }

    // Nothing happened to the card, and the server is fine.
    let (got, view) = s.admin(Method::GET, &format!("/v1/admin/cards/{card}"), None).await;
    assert_eq!(got, StatusCode::OK, "{view}");
    assert_eq!(view["blocked"], false);
    still_ready(&s).await;
}
