//! SMS delivery against a local HTTP server that keeps the contract of
//! Twilio's Messages API: path, basic authentication, form fields, and its
//! answers (201 with the message, JSON errors with a code).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine as _;
use serde_json::json;

use super::tests::sample;
use super::*;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token";
/// Numbers the fake API answers with something other than 201.
const INVALID_NUMBER: &str = "+15005550001";
const RATE_LIMITED: &str = "+46700000429";
const UNAVAILABLE: &str = "+46700000503";
const SLOW: &str = "+46700000999";

type Fields = BTreeMap<String, String>;

#[derive(Clone, Default)]
struct FakeApi {
    /// The forms of the requests that passed authentication.
    received: Arc<Mutex<Vec<Fields>>>,
}

async fn create_message(
    State(api): State<FakeApi>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Fields>,
) -> Response {
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}")));
    let authorised = headers.get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes() == expected.as_bytes());
    if account != ACCOUNT || !authorised {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/x-www-form-urlencoded"));
    assert!(form_encoded, "{headers:?}");
    api.received.lock().unwrap().push(form.clone());

    let to = form.get("To").cloned().unwrap_or_default();
    let has_from = form.contains_key("From");
    let has_service = form.contains_key("MessagingServiceSid");
    if to.is_empty() {
        return error(StatusCode::BAD_REQUEST, 21604, "A 'To' phone number is required.");
    }
    if has_from == has_service {
        return error(StatusCode::BAD_REQUEST, 21603, "A 'From' phone number or a MessagingServiceSid is required.");
    }
    match to.as_str() {
        INVALID_NUMBER => {
            error(StatusCode::BAD_REQUEST, 21211, &format!("The 'To' number {to} is not a valid phone number."))
        }
        RATE_LIMITED => error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests"),
        UNAVAILABLE => (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response(),
        SLOW => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::CREATED.into_response()
        }
        _ => (
            StatusCode::CREATED,
            Json(json!({
                "sid": "SM0123456789abcdef0123456789abcdef",
                "account_sid": ACCOUNT,
                "to": to,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "body": form.get("Body"),
                "status": "queued",
            })),
        )
            .into_response(),
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

async fn start_fake_api() -> (SocketAddr, FakeApi) {
    let api = FakeApi::default();
    let app = Router::new()
        .route("/2010-04-01/Accounts/{account}/Messages.json", post(create_message))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, api)
}

fn config(addr: SocketAddr) -> SmsConfig {
    SmsConfig {
        transport: SmsTransport::Twilio,
        base_url: format!("http://{addr}/"),
        account_sid: ACCOUNT.into(),
        auth_token: Some(TOKEN.into()),
        from: Some("+46700000000".into()),
        timeout_ms: 2_000,
        ..SmsConfig::default()
    }
}

fn sms_to(number: &str, language: Language) -> CodeMessage {
    CodeMessage { to: number.into(), ..sample(Channel::Sms, language) }
}

/// The error's text, checked to name neither the code nor the number.
fn shown(err: &DeliveryError, msg: &CodeMessage) -> String {
    let shown = format!("{err} {err:?}");
    let digits: String = msg.to.chars().filter(char::is_ascii_digit).collect();
    assert!(!shown.contains(&msg.code), "{shown}");
    assert!(!shown.contains(&digits), "{shown}");
    shown
}

#[tokio::test]
async fn a_message_is_posted_as_the_api_expects() {
    let (addr, api) = start_fake_api().await;
    let sms = config(addr).build().unwrap().expect("an SMS sender");
    assert_eq!((sms.channel(), sms.provider()), (Channel::Sms, "twilio"));

    let msg = sms_to("+46701234567", Language::Sv);
    sms.send(&msg).await.unwrap();

    let received = api.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let form = &received[0];
    assert_eq!(form.keys().map(String::as_str).collect::<Vec<_>>(), ["Body", "From", "To"]);
    assert_eq!(form["To"], "+46701234567");
    assert_eq!(form["From"], "+46700000000");
    assert_eq!(form["Body"], render_sms(&msg));
    // The code read out of the request, with what it approves.
    let body = &form["Body"];
    assert!(body.contains("482913"), "{body}");
    assert!(body.contains("Example Shop") && body.contains("5 400 JPY"), "{body}");
    assert!(body.contains("kl. 15:42 (UTC+9)"), "{body}");
}

#[tokio::test]
async fn a_messaging_service_replaces_the_sender_number() {
    let (addr, api) = start_fake_api().await;
    let with_service =
        SmsConfig { from: None, messaging_service_sid: Some("MG0123456789abcdef".into()), ..config(addr) };
    let sms = with_service.build().unwrap().unwrap();
    sms.send(&sms_to("+819012345678", Language::Ja)).await.unwrap();
    let form = api.received.lock().unwrap()[0].clone();
    assert_eq!(form["MessagingServiceSid"], "MG0123456789abcdef");
    assert!(!form.contains_key("From"));
    assert!(form["Body"].contains("認証コード：482913"), "{}", form["Body"]);
}

#[tokio::test]
async fn a_refused_number_is_permanent() {
    let (addr, _) = start_fake_api().await;
    let sms = config(addr).build().unwrap().unwrap();
    let msg = sms_to(INVALID_NUMBER, Language::En);
    let err = sms.send(&msg).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Permanent(_)), "{err}");
    let text = shown(&err, &msg);
    assert!(text.contains("400") && text.contains("21211"), "{text}");
    assert!(text.contains("is not a valid phone number"), "{text}");
}

#[tokio::test]
async fn wrong_credentials_are_permanent() {
    let (addr, api) = start_fake_api().await;
    let wrong = SmsConfig { auth_token: Some("not-the-token".into()), ..config(addr) };
    let msg = sms_to("+46701234567", Language::En);
    let err = wrong.build().unwrap().unwrap().send(&msg).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Permanent(_)), "{err}");
    let text = shown(&err, &msg);
    assert!(text.contains("401") && text.contains("20003"), "{text}");
    assert!(!text.contains("not-the-token"), "{text}");
    assert!(api.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn rate_limits_and_outages_are_transient() {
    let (addr, _) = start_fake_api().await;
    let sms = config(addr).build().unwrap().unwrap();
    for (number, status) in [(RATE_LIMITED, "429"), (UNAVAILABLE, "503")] {
        let msg = sms_to(number, Language::En);
        let err = sms.send(&msg).await.unwrap_err();
        assert!(matches!(err, DeliveryError::Transient(_)), "{err}");
        assert!(shown(&err, &msg).contains(status), "{err}");
    }
}

#[tokio::test]
async fn network_failures_and_timeouts_are_transient() {
    let (addr, _) = start_fake_api().await;
    let slow = SmsConfig { timeout_ms: 300, ..config(addr) };
    let msg = sms_to(SLOW, Language::En);
    let err = slow.build().unwrap().unwrap().send(&msg).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Transient(_)), "{err}");
    shown(&err, &msg);

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let msg = sms_to("+46701234567", Language::En);
    let err = config(closed_addr).build().unwrap().unwrap().send(&msg).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Transient(_)), "{err}");
    assert!(shown(&err, &msg).contains("cannot reach the SMS API"), "{err}");
}

#[tokio::test]
async fn an_email_message_is_refused() {
    let (addr, api) = start_fake_api().await;
    let sms = config(addr).build().unwrap().unwrap();
    let err = sms.send(&sample(Channel::Email, Language::En)).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(api.received.lock().unwrap().is_empty());
}
