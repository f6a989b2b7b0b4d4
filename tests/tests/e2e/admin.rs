//! The admin API as operators use it: who may do what (route by route),
//! that every action is audited, that no answer reveals a secret, and the
//! operations themselves — operators, requestor key rotation, card import,
//! language, device revocation, audit search.

use std::sync::Arc;

use countersign_core::protocol::Decision;
use countersign_core::protocol::wire::ChallengeOutcome;
use countersign_server::app::App;
use countersign_server::flows::admin::{self, CreatedOperator, CreatedRequestor};
use countersign_server::flows::callbacks;
use countersign_server::requestor_keys;
use countersign_server::storage::{AuditFilter, Credential, OperatorRole};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const VISA: &str = "4111111111111111";
const MASTERCARD: &str = "5555555555554444";
const EMAIL: &str = "hanako@example.jp";
const ANSWER: &str = "Kumamoto-Aso-1987";
const OTHER_ANSWER: &str = "Sapporo-Snow-2001";

async fn operator(s: &TestServer, name: &str, role: OperatorRole) -> CreatedOperator {
    admin::create_operator(&s.app, name, role, "test").await.unwrap()
}

/// How many audit lines `actor` has of `kind` (read from storage, so the
/// count itself appends nothing).
async fn audited(s: &TestServer, actor: &str, kind: &str) -> usize {
    let filter =
        AuditFilter { actor: Some(actor.into()), kind: Some(kind.into()), limit: 10_000, ..AuditFilter::default() };
    s.app.storage.audit_events(&filter).await.unwrap().len()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    /// Support and admin.
    Support,
    Admin,
}

struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    who: Who,
    /// The audit line the action leaves.
    kind: &'static str,
}

fn route(method: Method, path: impl Into<String>, body: Option<Value>, who: Who, kind: &'static str) -> Route {
    Route { method, path: path.into(), body, who, kind }
}

/// Every admin route, table-driven: without a key or with a revoked one it
/// is 401; a support key gets 403 `forbidden` wherever it may not go; each
/// allowed call succeeds and leaves an audit line naming its operator; and
/// no answer holds a card number, code, security answer or key.
#[tokio::test]
async fn every_admin_route_checks_the_role_audits_and_reveals_no_secret() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (card, _phone) = s.card_with_phone(PAN).await;
    let lost_phone = s.phone();
    let enrolment_code = s.enrolment_code(&card).await;
    lost_phone.enrol(&enrolment_code).await;
    // A card with a contact and no device: a one-time code is sent.
    let code_card = s.create_card(OTHER_PAN).await;
    let path = format!("/v1/admin/cards/{code_card}/contacts");
    assert_eq!(s.admin(Method::PUT, &path, Some(json!({"email": EMAIL}))).await.0, StatusCode::OK);
    let questions = json!({"questions": [{"question": "Where were you born?", "answer": ANSWER}]});
    let path = format!("/v1/admin/cards/{code_card}/security-questions");
    assert_eq!(s.admin(Method::PUT, &path, Some(questions)).await.0, StatusCode::OK);
    let (_, ares) = s.areq(&shop, &areq("shop-1", OTHER_PAN, 90_000, &receiver.url)).await;
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();
    let code = s.nth_code_to(EMAIL, 1).await;

    let support = operator(&s, "Sven", OperatorRole::Support).await;
    let boss = operator(&s, "Ada", OperatorRole::Admin).await;
    let leaver = operator(&s, "Leaver", OperatorRole::Support).await;
    let revoked = operator(&s, "Gone", OperatorRole::Admin).await;
    admin::revoke_operator(&s.app, &revoked.id, "test").await.unwrap();

    let verify = json!({"acsTransID": acs, "acctNumber": OTHER_PAN, "purchaseAmount": "90000",
        "purchaseCurrency": "978", "authenticationValue": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="});
    let requestor = |tail: &str| format!("/v1/admin/requestors/shop-1{tail}");
    let on_card = |tail: &str| format!("/v1/admin/cards/{card}{tail}");
    let routes = [
        route(Method::GET, on_card(""), None, Who::Support, "card.viewed"),
        route(Method::GET, on_card("/devices"), None, Who::Support, "card.devices_viewed"),
        route(Method::GET, on_card("/security-questions"), None, Who::Support, "card.security_questions_viewed"),
        route(Method::POST, on_card("/unblock"), None, Who::Support, "card.unblocked"),
        route(Method::GET, format!("/v1/admin/audit?cardId={code_card}"), None, Who::Support, "audit.searched"),
        route(
            Method::POST,
            "/v1/admin/authentication-values/verify",
            Some(verify),
            Who::Support,
            "authentication_value.checked",
        ),
        route(
            Method::POST,
            "/v1/admin/operators",
            Some(json!({"name": "New", "role": "support"})),
            Who::Admin,
            "operator.created",
        ),
        route(Method::GET, "/v1/admin/operators", None, Who::Admin, "operators.listed"),
        route(Method::POST, format!("/v1/admin/operators/{}/revoke", leaver.id), None, Who::Admin, "operator.revoked"),
        route(
            Method::POST,
            "/v1/admin/requestors",
            Some(json!({"id": "shop-2", "name": "Shop 2"})),
            Who::Admin,
            "requestor.created",
        ),
        route(Method::GET, "/v1/admin/requestors", None, Who::Admin, "requestors.listed"),
        route(Method::GET, requestor(""), None, Who::Admin, "requestor.viewed"),
        route(Method::POST, requestor("/api-key/rotate"), None, Who::Admin, "requestor.api_key_rotated"),
        route(
            Method::POST,
            requestor("/api-key/revoke-previous"),
            None,
            Who::Admin,
            "requestor.previous_api_key_revoked",
        ),
        route(
            Method::POST,
            requestor("/callback-secret/rotate"),
            None,
            Who::Admin,
            "requestor.callback_secret_rotated",
        ),
        route(
            Method::POST,
            requestor("/callback-secret/revoke-previous"),
            None,
            Who::Admin,
            "requestor.previous_callback_secret_revoked",
        ),
        route(Method::POST, "/v1/admin/cards", Some(json!({"acctNumber": VISA})), Who::Admin, "card.created"),
        route(
            Method::POST,
            "/v1/admin/cards/import",
            Some(json!({"cards": [{"acctNumber": MASTERCARD}]})),
            Who::Admin,
            "cards.imported",
        ),
        route(Method::PUT, on_card("/language"), Some(json!({"language": "sv"})), Who::Admin, "card.language_changed"),
        route(Method::PUT, on_card("/contacts"), Some(json!({"email": EMAIL})), Who::Admin, "card.contacts_changed"),
        route(
            Method::PUT,
            on_card("/security-questions"),
            Some(json!({"questions": [{"question": "First pet?", "answer": OTHER_ANSWER}]})),
            Who::Admin,
            "card.security_questions_set",
        ),
        route(Method::POST, on_card("/enrolment-codes"), None, Who::Admin, "enrolment_code.created"),
        route(
            Method::POST,
            format!("/v1/admin/devices/{}/revoke", lost_phone.device_id()),
            None,
            Who::Admin,
            "device.revoked",
        ),
        route(Method::GET, "/v1/admin/pushes", None, Who::Admin, "outbox.pushes_read"),
        route(Method::GET, "/v1/admin/messages", None, Who::Admin, "outbox.messages_read"),
    ];

    routes_match_the_document(&s, &routes).await;

    let mut secrets = vec![
        Secret::new("card number", PAN),
        Secret::new("card number", OTHER_PAN),
        Secret::new("card number", VISA),
        Secret::new("card number", MASTERCARD),
        Secret::new("one-time code", code),
        Secret::new("enrolment code", enrolment_code.clone()),
        Secret::new("enrolment code", enrolment_code.replace('-', "")),
        Secret::new("security answer", ANSWER),
        Secret::new("security answer", ANSWER.to_lowercase()),
        Secret::new("security answer", OTHER_ANSWER),
        Secret::new("requestor API key", shop.api_key.clone()),
        Secret::new("callback secret", shop.callback_secret.clone()),
    ];
    for key in [&s.admin_key, &support.api_key, &boss.api_key, &leaver.api_key, &revoked.api_key] {
        secrets.push(Secret::new("operator API key", key.clone()));
    }

    for r in &routes {
        let what = format!("{} {}", r.method, r.path);
        for key in [None, Some(revoked.api_key.as_str())] {
            let got = s.admin_as(key, r.method.clone(), &r.path, r.body.clone()).await;
            assert_refused(&got, StatusCode::UNAUTHORIZED, "unauthenticated");
        }
        if r.who == Who::Admin {
            let got = s.admin_as(Some(&support.api_key), r.method.clone(), &r.path, r.body.clone()).await;
            assert_refused(&got, StatusCode::FORBIDDEN, "forbidden");
            assert_eq!(audited(&s, &format!("operator:{}", support.id), r.kind).await, 0, "{what}: refused, not done");
        }
    }
    for r in &routes {
        let what = format!("{} {}", r.method, r.path);
        let callers: &[&CreatedOperator] = if r.who == Who::Support { &[&support, &boss] } else { &[&boss] };
        for caller in callers {
            let actor = format!("operator:{}", caller.id);
            let before = audited(&s, &actor, r.kind).await;
            let (status, body) = s.admin_as(Some(&caller.api_key), r.method.clone(), &r.path, r.body.clone()).await;
            assert!(status.is_success(), "{what} as {actor}: {status} {body}");
            assert!(audited(&s, &actor, r.kind).await > before, "{what} as {actor} left no {} line", r.kind);
            // The development message outbox is the code's delivery channel:
            // it holds codes by design (and answers only while a channel
            // delivers to it; see `the_message_outbox_is_gone_in_production`).
            if r.path == "/v1/admin/messages" {
                continue;
            }
            let text = body.to_string();
            for secret in &secrets {
                assert!(!leaks(&text, secret), "{what} answered a {} ({}): {text}", secret.what, secret.value);
            }
        }
    }
    // The audit trail itself holds none either.
    let (_, trail) = s.admin(Method::GET, "/v1/admin/audit?limit=1000", None).await;
    let text = trail.to_string();
    assert!(trail["events"].as_array().unwrap().len() > routes.len(), "{text}");
    for secret in &secrets {
        assert!(!leaks(&text, secret), "the audit trail holds a {} ({})", secret.what, secret.value);
    }
}

/// The table holds every admin operation of the served OpenAPI document,
/// with the role its security names, so no route escapes the checks above
/// and the document says truly who may call what.
async fn routes_match_the_document(s: &TestServer, routes: &[Route]) {
    let doc: Value = s.http.get(s.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut operations = 0;
    for (template, item) in doc["paths"].as_object().unwrap().iter().filter(|(p, _)| p.starts_with("/v1/admin/")) {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let what = format!("{} {template}", method.to_uppercase());
            let r = routes
                .iter()
                .find(|r| r.method.as_str().eq_ignore_ascii_case(method) && fills(template, &r.path))
                .unwrap_or_else(|| panic!("{what} is not in the role table"));
            let admin_only = operation["security"] == json!([{"operatorKey": ["admin"]}]);
            assert_eq!(r.who == Who::Admin, admin_only, "{what}: the document and the table disagree on the role");
        }
    }
    assert_eq!(operations, routes.len(), "the role table has routes the document lacks");
}

/// Whether `path` (perhaps with a query) is `template` with its `{…}` filled in.
fn fills(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let (template, path): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    template.len() == path.len() && template.iter().zip(&path).all(|(t, p)| t.starts_with('{') || t == p)
}

#[tokio::test]
async fn the_message_outbox_is_gone_in_production() {
    let s = TestServer::start_with(|c| {
        c.email.transport = countersign_server::delivery::EmailTransport::Off;
        c.sms.transport = countersign_server::delivery::SmsTransport::Off;
    })
    .await;
    let got = s.admin(Method::GET, "/v1/admin/messages", None).await;
    assert_refused(&got, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn operators_are_created_listed_and_revoked_by_admins() {
    let s = TestServer::start().await;
    let card = s.create_card(PAN).await;
    s.clock.advance_ms(1);
    let (status, created) =
        s.admin(Method::POST, "/v1/admin/operators", Some(json!({"name": "Sven", "role": "support"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["apiKey"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cso_"), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, _) = s.admin_as(Some(&key), Method::GET, &format!("/v1/admin/cards/{card}"), None).await;
    assert_eq!(status, StatusCode::OK);

    let (_, listed) = s.admin(Method::GET, "/v1/admin/operators", None).await;
    let roles: Vec<(&str, &str)> =
        listed.as_array().unwrap().iter().map(|o| (o["name"].as_str().unwrap(), o["role"].as_str().unwrap())).collect();
    assert_eq!(roles, [("test admin", "admin"), ("Sven", "support")]);
    assert!(!listed.to_string().contains(&key) && !listed.to_string().contains("apiKey"), "{listed}");

    let bad = json!({"name": "X", "role": "root"});
    assert_refused(
        &s.admin(Method::POST, "/v1/admin/operators", Some(bad)).await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    let (status, revoked) = s.admin(Method::POST, &format!("/v1/admin/operators/{id}/revoke"), None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revokedAt"].is_i64(), "{revoked}");
    let got = s.admin_as(Some(&key), Method::GET, &format!("/v1/admin/cards/{card}"), None).await;
    assert_refused(&got, StatusCode::UNAUTHORIZED, "unauthenticated");
    let again = s.admin(Method::POST, &format!("/v1/admin/operators/{id}/revoke"), None).await;
    assert_refused(&again, StatusCode::CONFLICT, "bad_request");
    let unknown = s.admin(Method::POST, "/v1/admin/operators/nobody/revoke", None).await;
    assert_refused(&unknown, StatusCode::NOT_FOUND, "not_found");
}

/// Requestor "shop-1" and the acsTransID of a purchase it sent.
async fn shop_with_a_purchase(s: &TestServer) -> (CreatedRequestor, String) {
    let shop = s.create_requestor("shop-1").await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 2_000, "http://127.0.0.1:9/notify")).await;
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();
    (shop, acs)
}

/// The status the purchase's result read answers with `key`.
async fn read_result_with(s: &TestServer, acs: &str, key: String) -> StatusCode {
    s.http.get(s.url(&format!("/v1/authentications/{acs}"))).bearer_auth(key).send().await.unwrap().status()
}

#[tokio::test]
async fn a_rotated_api_key_overlaps_with_the_old_one_for_a_day_or_until_revoked() {
    let s = TestServer::start().await;
    let (shop, acs) = shop_with_a_purchase(&s).await;
    let status_with = |key: String| read_result_with(&s, &acs, key);

    let (status, rotated) = s.admin(Method::POST, "/v1/admin/requestors/shop-1/api-key/rotate", None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_key = rotated["apiKey"].as_str().unwrap().to_owned();
    assert_eq!(rotated["previousKeyValidUntil"], s.now() + 24 * 3600 * 1000);
    assert_eq!(status_with(new_key.clone()).await, StatusCode::OK);
    assert_eq!(status_with(shop.api_key.clone()).await, StatusCode::OK, "the old key in its overlap");
    let (_, view) = s.admin(Method::GET, "/v1/admin/requestors/shop-1", None).await;
    assert_eq!(view["previousKeyValidUntil"], rotated["previousKeyValidUntil"]);
    s.clock.advance_secs(24 * 3600);
    assert_eq!(status_with(shop.api_key.clone()).await, StatusCode::UNAUTHORIZED, "the overlap is over");
    assert_eq!(status_with(new_key.clone()).await, StatusCode::OK);

    // Revoking the previous key ends the overlap at once.
    let (_, again) = s.admin(Method::POST, "/v1/admin/requestors/shop-1/api-key/rotate", None).await;
    let newest = again["apiKey"].as_str().unwrap().to_owned();
    assert_eq!(status_with(new_key.clone()).await, StatusCode::OK);
    let (status, view) = s.admin(Method::POST, "/v1/admin/requestors/shop-1/api-key/revoke-previous", None).await;
    assert_eq!((status, &view["previousKeyValidUntil"]), (StatusCode::OK, &Value::Null), "{view}");
    assert_eq!(status_with(new_key).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_with(newest).await, StatusCode::OK);
    let none = s.admin(Method::POST, "/v1/admin/requestors/shop-1/api-key/revoke-previous", None).await;
    assert_refused(&none, StatusCode::NOT_FOUND, "not_found");
    let unknown = s.admin(Method::POST, "/v1/admin/requestors/shop-9/api-key/rotate", None).await;
    assert_refused(&unknown, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn a_key_revoked_on_another_node_stops_working_here_within_a_second() {
    let s = TestServer::start().await;
    let (shop, acs) = shop_with_a_purchase(&s).await;
    let status_with = |key: String| read_result_with(&s, &acs, key);
    assert_eq!(status_with(shop.api_key.clone()).await, StatusCode::OK);

    // Another node on the same database rotates the key and ends the overlap.
    let other_node = App::open(s.app.config.clone(), Arc::new(s.clock.clone())).unwrap();
    let rotated = admin::rotate_api_key(&other_node, "shop-1", "test").await.unwrap();
    admin::revoke_previous(&other_node, "shop-1", Credential::ApiKey, "test").await.unwrap();
    assert_eq!(status_with(rotated.api_key.clone()).await, StatusCode::OK, "a new key works at once");
    assert_eq!(status_with(shop.api_key.clone()).await, StatusCode::OK, "this node still remembers the old one");
    s.clock.advance_ms(requestor_keys::TTL_MS);
    assert_eq!(status_with(shop.api_key.clone()).await, StatusCode::UNAUTHORIZED, "but not for longer");
    assert_eq!(status_with(rotated.api_key).await, StatusCode::OK);
}

/// Approves the one pending challenge on `phone`.
async fn approve(phone: &Phone) {
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.pop().expect("a pending challenge");
    let receipt = phone.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Approved);
}

/// The signature header of the `n`th callback (from 1).
fn signature(receiver: &CallbackReceiver, n: usize) -> (String, String) {
    let (headers, body) = receiver.received.lock().unwrap()[n - 1].clone();
    (headers[callbacks::SIGNATURE_HEADER].to_str().unwrap().to_owned(), body)
}

#[tokio::test]
async fn a_rotated_callback_secret_signs_beside_the_old_one_until_revoked() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, phone) = s.card_with_phone(PAN).await;

    let (status, rotated) = s.admin(Method::POST, "/v1/admin/requestors/shop-1/callback-secret/rotate", None).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["callbackSecret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, shop.callback_secret);
    s.challenge(&shop, PAN, &receiver.url).await;
    approve(&phone).await;
    receiver.wait_for(1).await;
    let (header, body) = signature(&receiver, 1);
    assert_eq!(header.matches(",v1=").count(), 2, "{header}");
    assert!(callbacks::verify(&new_secret, &header, &body).is_some(), "the new secret verifies");
    assert!(callbacks::verify(&shop.callback_secret, &header, &body).is_some(), "so does the old, in the overlap");

    let path = "/v1/admin/requestors/shop-1/callback-secret/revoke-previous";
    let (status, view) = s.admin(Method::POST, path, None).await;
    assert_eq!((status, &view["previousCallbackSecretValidUntil"]), (StatusCode::OK, &Value::Null), "{view}");
    s.challenge(&shop, PAN, &receiver.url).await;
    approve(&phone).await;
    receiver.wait_for(2).await;
    let (header, body) = signature(&receiver, 2);
    assert_eq!(header.matches(",v1=").count(), 1, "{header}");
    assert!(callbacks::verify(&new_secret, &header, &body).is_some());
    assert!(callbacks::verify(&shop.callback_secret, &header, &body).is_none(), "the old secret is over");
}

/// A database from before sealing: the requestor's clear callback secret
/// is sealed at the next start, and callbacks are still signed with it.
#[tokio::test]
async fn a_callback_secret_stored_in_the_clear_is_sealed_at_start_and_still_signs() {
    if on_postgres() {
        // It edits the SQLite file under the server; over PostgreSQL the
        // storage contract suite seals a legacy secret on both backends.
        return;
    }
    let mut s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let db = rusqlite::Connection::open(s.dir.path().join("countersign.db")).unwrap();
    // The running server writes too (its workers): wait for the lock, as it does.
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    let clear = "a-secret-from-an-older-version";
    db.execute("UPDATE requestors SET callback_secret = ?1, callback_secret_sealed = NULL", [clear]).unwrap();

    s.restart().await;
    eventually("the clear secret to be sealed", || async {
        db.query_row("SELECT callback_secret = '' AND callback_secret_sealed IS NOT NULL FROM requestors", [], |r| {
            r.get::<_, bool>(0)
        })
        .unwrap()
    })
    .await;
    let row: Vec<u8> = db.query_row("SELECT callback_secret_sealed FROM requestors", [], |r| r.get(0)).unwrap();
    assert!(!String::from_utf8_lossy(&row).contains(clear));

    let phone = phone.reconnect(&s.base);
    s.challenge(&shop, PAN, &receiver.url).await;
    approve(&phone).await;
    receiver.wait_for(1).await;
    let (header, body) = signature(&receiver, 1);
    assert!(callbacks::verify(clear, &header, &body).is_some(), "{header}");
}

#[tokio::test]
async fn cards_import_over_the_api_row_by_row_and_again_changes_nothing() {
    let s = TestServer::start().await;
    let batch = json!({"cards": [
        {"acctNumber": PAN, "language": "ja", "email": EMAIL},
        {"acctNumber": "378282246310006"},
        {"acctNumber": 4111111111111111u64},
        {"acctNumber": OTHER_PAN, "language": "fr"},
        {"acctNumber": VISA, "phone": "+46701234567"},
        {"acctNumber": VISA, "language": "sv"},
    ]});
    let (status, report) = s.admin(Method::POST, "/v1/admin/cards/import", Some(batch.clone())).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["created"].as_u64(), report["updated"].as_u64()), (Some(2), Some(1)), "{report}");
    let failed: Vec<(u64, &str)> = report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["row"].as_u64().unwrap(), f["error"].as_str().unwrap()))
        .collect();
    assert_eq!(failed.iter().map(|f| f.0).collect::<Vec<_>>(), [2, 3, 4], "{report}");
    assert!(failed[0].1.contains("Luhn") && failed[2].1.contains("language"), "{report}");
    for number in [PAN, OTHER_PAN, VISA, "378282246310006", "4111111111111111"] {
        assert!(!leaks(&report.to_string(), &Secret::new("card number", number)), "{report}");
    }

    let (_, again) = s.admin(Method::POST, "/v1/admin/cards/import", Some(batch)).await;
    assert_eq!(
        (again["created"].as_u64(), again["updated"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(0), Some(3))
    );
    let (_, trail) = s.admin(Method::GET, "/v1/admin/audit?kind=card.created", None).await;
    assert_eq!(trail["events"].as_array().unwrap().len(), 2, "{trail}");

    let too_many = json!({"cards": vec![json!({}); 501]});
    let got = s.admin(Method::POST, "/v1/admin/cards/import", Some(too_many)).await;
    assert_refused(&got, StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn a_cards_language_is_one_of_ja_en_sv() {
    let s = TestServer::start().await;
    let card = s.create_card(PAN).await;
    let path = format!("/v1/admin/cards/{card}/language");
    for (given, stored) in [(json!("sv"), json!("sv")), (json!("en-GB"), json!("en")), (Value::Null, Value::Null)] {
        let (status, view) = s.admin(Method::PUT, &path, Some(json!({"language": given}))).await;
        assert_eq!((status, &view["language"]), (StatusCode::OK, &stored), "{given}: {view}");
    }
    let got = s.admin(Method::PUT, &path, Some(json!({"language": "fr"}))).await;
    assert_refused(&got, StatusCode::BAD_REQUEST, "bad_request");
    let got = s.admin(Method::PUT, "/v1/admin/cards/nope/language", Some(json!({"language": "ja"}))).await;
    assert_refused(&got, StatusCode::NOT_FOUND, "not_found");
    let got = s.admin(Method::POST, "/v1/admin/cards", Some(json!({"acctNumber": OTHER_PAN, "language": "de"}))).await;
    assert_refused(&got, StatusCode::BAD_REQUEST, "bad_request");
}

/// A lost phone: the operator revokes it; its signed requests are refused
/// and the purchase waiting on it falls back to a code at once.
#[tokio::test]
async fn a_revoked_device_is_refused_and_its_pending_push_falls_back_to_a_code() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (card, phone) = s.card_with_phone(PAN).await;
    let acs = s.challenge(&shop, PAN, &receiver.url).await;
    assert_eq!(s.window(&acs).await["challenge"]["fallbackReason"], Value::Null);

    let path = format!("/v1/admin/devices/{}/revoke", phone.device_id());
    let (status, revoked) = s.admin(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(s.window(&acs).await["challenge"]["fallbackReason"], "device_revoked");
    let code = s.nth_code_to("taro@example.jp", 1).await;
    let refused = phone.call(|c| c.pending_challenges()).await;
    assert!(refused.is_err(), "a revoked device is refused: {refused:?}");
    let (status, body) = s.window_post(&acs, "code/verify", Some(json!({"code": code}))).await;
    assert_eq!((status, body["transStatus"].as_str()), (StatusCode::OK, Some("Y")), "{body}");

    let (_, devices) = s.admin(Method::GET, &format!("/v1/admin/cards/{card}/devices"), None).await;
    assert_eq!(devices, json!([]));
    let (_, trail) = s.admin(Method::GET, &format!("/v1/admin/audit?cardId={card}&kind=device.revoked"), None).await;
    let line = &trail["events"][0];
    assert!(
        line["actor"].as_str().unwrap().starts_with("operator:") && line["deviceId"] == phone.device_id(),
        "{trail}"
    );
    assert_refused(&s.admin(Method::POST, &path, None).await, StatusCode::CONFLICT, "device_revoked");
    let unknown = s.admin(Method::POST, "/v1/admin/devices/nope/revoke", None).await;
    assert_refused(&unknown, StatusCode::NOT_FOUND, "not_found");
}

/// Follows `nextCursor` from `query` to the end; returns every event's kind
/// and card, and how many pages it took.
async fn all_pages(s: &TestServer, query: &str) -> (Vec<(String, Value)>, usize) {
    let (mut seen, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/admin/audit?{query}&cursor={c}"),
            None => format!("/v1/admin/audit?{query}"),
        };
        let (status, page) = s.admin(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for e in page["events"].as_array().unwrap() {
            seen.push((e["kind"].as_str().unwrap().to_owned(), e["cardId"].clone()));
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (seen, pages),
        }
    }
}

/// Every line of the trail, oldest first, but the searches' own lines.
async fn trail(s: &TestServer, query: &str) -> Vec<Value> {
    let (status, page) = s.admin(Method::GET, &format!("/v1/admin/audit?limit=1000{query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["events"].as_array().unwrap();
    events.iter().filter(|e| e["kind"] != "audit.searched").cloned().collect()
}

/// A card's trail holds every line that names it, its purchases' among
/// them (the AReq's, the push decision's, the code's), whatever path the
/// search takes to them; and no other card's.
#[tokio::test]
async fn a_cards_trail_holds_its_purchases_lines() {
    let s = TestServer::start().await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;
    let (with_phone, phone) = s.card_with_phone(PAN).await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 2_500, &receiver.url)).await;
    assert_eq!(ares["transStatus"], "Y", "{ares}");
    s.challenge(&shop, PAN, &receiver.url).await;
    phone.approve_first().await;

    let with_code = s.create_card(VISA).await;
    let contacts = json!({"email": EMAIL, "phone": null});
    let path = format!("/v1/admin/cards/{with_code}/contacts");
    let (status, body) = s.admin(Method::PUT, &path, Some(contacts)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let acs = s.challenge(&shop, VISA, &receiver.url).await;
    let code = s.nth_code_to(EMAIL, 1).await;
    let wrong = wrong_code(&code);
    let refused = s.window_post(&acs, "code/verify", Some(json!({"code": wrong}))).await;
    assert_refused(&refused, StatusCode::UNPROCESSABLE_ENTITY, "code_incorrect");
    let (status, ok) = s.window_post(&acs, "code/verify", Some(json!({"code": code}))).await;
    assert_eq!(status, StatusCode::OK, "{ok}");

    for (card, purchase_kinds) in
        [(&with_phone, ["authentication.decided", "challenge.ended"]), (&with_code, ["code.issued", "code.rejected"])]
    {
        let naming: Vec<Value> = trail(&s, "").await.into_iter().filter(|e| e["cardId"] == json!(card)).collect();
        assert_eq!(trail(&s, &format!("&cardId={card}")).await, naming);
        for kind in purchase_kinds {
            assert!(naming.iter().any(|e| e["kind"] == kind && e["acsTransId"].is_string()), "no {kind} in {naming:?}");
        }
    }
}

#[tokio::test]
async fn the_audit_trail_is_searched_by_card_kind_outcome_and_time_a_page_at_a_time() {
    let s = TestServer::start().await;
    let start = s.now();
    let mut cards = Vec::new();
    for pan in [PAN, OTHER_PAN, VISA, MASTERCARD, "378734493671000"] {
        cards.push(s.create_card(pan).await);
        s.clock.advance_secs(60);
    }
    let (everything, pages) = all_pages(&s, "kind=card.created&limit=2").await;
    assert_eq!(pages, 3);
    let created: Vec<Value> = everything.iter().map(|(_, card)| card.clone()).collect();
    assert_eq!(created, cards.iter().map(|c| json!(c)).collect::<Vec<_>>(), "in order, each once");

    let range = format!("kind=card.created&from={}&until={}", start + 60_000, start + 180_000);
    let (middle, _) = all_pages(&s, &range).await;
    assert_eq!(middle.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(), [json!(cards[1]), json!(cards[2])]);
    let (one, _) = all_pages(&s, &format!("cardId={}", cards[3])).await;
    assert_eq!(one, [("card.created".to_owned(), json!(cards[3]))]);
    let (searches, _) = all_pages(&s, "kind=audit.searched&outcome=ok&limit=1000").await;
    assert_eq!(searches.len(), 5, "each search before this one is audited: {searches:?}");
    let (none, _) = all_pages(&s, "kind=card.created&outcome=failed").await;
    assert!(none.is_empty());

    for bad in ["limit=0", "limit=1001", "cursor=not-a-cursor", "cardid=x", "from=yesterday"] {
        let got = s.admin(Method::GET, &format!("/v1/admin/audit?{bad}"), None).await;
        assert_refused(&got, StatusCode::BAD_REQUEST, "bad_request");
    }
}
