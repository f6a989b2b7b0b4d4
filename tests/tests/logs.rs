//! What operators can see: a whole day's flows with DEBUG logs captured in
//! memory, then no card number, code, key, secret, security answer or
//! private key may appear in the logs or in any database table — and the
//! metrics listener counts what happened.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use countersign_core::protocol::Decision;
use countersign_core::protocol::wire::ChallengeOutcome;
use reqwest::{Method, StatusCode};
use serde_json::json;

// Its own test binary: the subscriber is the process-wide default, so it
// sees every thread (the blocking database pool too), and no other test's
// traffic shares it.
#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

use support::*;

/// The one table that holds codes on purpose: in development the message
/// outbox *is* the email/SMS channel, so each message carries its code.
const DELIVERY_CHANNEL_TABLE: &str = "message_outbox";

const EMAIL: &str = "hanako@example.jp";
const PHONE: &str = "+819098765432";
const SECURITY_ANSWER: &str = "Kumamoto-Aso-1987";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The 32-byte private scalar inside a P-256 PKCS#8 document
/// (`ECPrivateKey`: version 1, then an OCTET STRING of 32 bytes).
fn private_scalar(pkcs8: &[u8]) -> Vec<u8> {
    let at = pkcs8.windows(5).position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20]).expect("an EC private key");
    pkcs8[at + 5..at + 37].to_vec()
}

fn key_forms(what: &'static str, bytes: &[u8]) -> Vec<Secret> {
    [hex::encode(bytes), STANDARD.encode(bytes), URL_SAFE_NO_PAD.encode(bytes)]
        .into_iter()
        .map(|value| Secret { what, value })
        .collect()
}

/// Every row of every table but `except`, each value as text (blobs both
/// as hex and as lossy UTF-8), one line per row.
fn dump_database(path: &std::path::Path, except: &str) -> String {
    let db = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(tables.iter().any(|t| t == except), "{except} exists: {tables:?}");
    let mut dump = String::new();
    for table in tables.iter().filter(|t| *t != except) {
        let mut statement = db.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = statement.column_count();
        let mut rows = statement.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            dump.push_str(table);
            for i in 0..columns {
                dump.push('\t');
                match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => dump.push_str("NULL"),
                    rusqlite::types::ValueRef::Integer(n) => dump.push_str(&n.to_string()),
                    rusqlite::types::ValueRef::Real(x) => dump.push_str(&x.to_string()),
                    rusqlite::types::ValueRef::Text(t) => dump.push_str(&String::from_utf8_lossy(t)),
                    rusqlite::types::ValueRef::Blob(b) => {
                        dump.push_str(&hex::encode(b));
                        dump.push(' ');
                        dump.push_str(&String::from_utf8_lossy(b));
                    }
                }
            }
            dump.push('\n');
        }
    }
    dump
}

/// Each digit one higher: a well-formed code that is not the right one.
fn wrong(code: &str) -> String {
    code.bytes().map(|b| char::from(b'0' + (b - b'0' + 1) % 10)).collect()
}

#[tokio::test]
async fn no_secret_reaches_the_logs_or_the_database() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .without_time()
        .with_writer(move || writer.clone())
        .init();

    let s = TestServer::start_with(|c| {
        c.metrics.enabled = true;
        c.metrics.listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let shop = s.create_requestor("shop-1").await;
    let receiver = CallbackReceiver::start(0).await;

    // Admin: a card with a phone (enrolment code), one with contacts and
    // security questions.
    let push_card = s.create_card(PAN).await;
    let enrolment_code = s.enrolment_code(&push_card).await;
    let phone = s.phone();
    phone.enrol(&enrolment_code).await;
    let code_card = s.create_card(OTHER_PAN).await;
    let (status, body) = s
        .admin(
            Method::PUT,
            &format!("/v1/admin/cards/{code_card}/contacts"),
            Some(json!({"email": EMAIL, "phone": PHONE})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let questions = json!({"questions": [{"question": "Where were you born?", "answer": SECURITY_ANSWER}]});
    let path = format!("/v1/admin/cards/{code_card}/security-questions");
    assert_eq!(s.admin(Method::PUT, &path, Some(questions)).await.0, StatusCode::OK);

    // Push approval.
    let acs = s.challenge(&shop, PAN, &receiver.url).await;
    let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.pop().expect("a pending challenge");
    let receipt = phone.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
    assert_eq!(receipt.outcome, ChallengeOutcome::Approved);
    assert_eq!(s.status(&shop, &acs).await["transStatus"], "Y");

    // A one-time code: a wrong one, then the right one.
    let (_, ares) = s.areq(&shop, &areq("shop-1", OTHER_PAN, 90_000, &receiver.url)).await;
    assert_eq!(ares["transStatus"], "C", "{ares}");
    let code_acs = ares["acsTransID"].as_str().unwrap().to_owned();
    let code = s.nth_code_to(EMAIL, 1).await;
    assert_eq!(s.nth_code_to(PHONE, 1).await, code);
    let (status, body) = s.window_post(&code_acs, "code/verify", Some(json!({"code": wrong(&code)}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = s.window_post(&code_acs, "code/verify", Some(json!({"code": code}))).await;
    assert_eq!((status, body["transStatus"].as_str()), (StatusCode::OK, Some("Y")), "{body}");

    // Frictionless: under the low-value exemption.
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 2_000, &receiver.url)).await;
    assert_eq!(ares["transStatus"], "Y", "{ares}");
    receiver.wait_for(2).await;

    // More admin: read, unblock, audit.
    assert_eq!(s.admin(Method::GET, &format!("/v1/admin/cards/{code_card}"), None).await.0, StatusCode::OK);
    assert_eq!(s.admin(Method::POST, &format!("/v1/admin/cards/{code_card}/unblock"), None).await.0, StatusCode::OK);
    let audit = s.admin(Method::GET, &format!("/v1/admin/audit?cardId={code_card}"), None).await;
    assert_eq!(audit.0, StatusCode::OK);

    // The metrics listener counted all that, by route template. (A result
    // callback is counted once its attempt is recorded, a moment after the
    // receiver has it.)
    let metrics_url = format!("http://{}/metrics", s.metrics_addr().expect("metrics enabled"));
    let delivered = "countersign_result_callbacks_total{result=\"delivered\"} 2";
    let mut metrics = String::new();
    for _ in 0..250 {
        metrics = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        if metrics.contains(delivered) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(metrics.contains(delivered), "{delivered} missing from\n{metrics}");
    for series in [
        "countersign_http_requests_total{route=\"/v1/authentications\",method=\"POST\",status=\"200\"}",
        "countersign_http_requests_total{route=\"/v1/window/{acs_trans_id}/code/verify\",method=\"POST\",status=\"422\"}",
        "countersign_authentications_total{status=\"Y\",reason=\"low_value_exemption\"}",
        "countersign_challenges_ended_total{channel=\"push\",outcome=\"approved\"}",
        "countersign_challenges_ended_total{channel=\"code\",outcome=\"code_verified\"}",
        "countersign_code_deliveries_total{channel=\"email\",provider=\"outbox\",result=\"sent\"}",
        "countersign_code_deliveries_total{channel=\"sms\",provider=\"outbox\",result=\"sent\"}",
        "countersign_cards_unblocked_total",
        "countersign_db_operation_duration_seconds_bucket",
        "countersign_push_deliveries_total{provider=\"fcm\",result=\"delivered\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing from\n{metrics}");
    }
    assert!(!metrics.contains(&acs), "no ids in labels");

    let shop_key = shop.api_key.clone();
    let mut secrets = vec![
        Secret { what: "card number", value: PAN.into() },
        Secret { what: "card number", value: OTHER_PAN.into() },
        Secret { what: "one-time code", value: code.clone() },
        Secret { what: "wrong one-time code", value: wrong(&code) },
        Secret { what: "enrolment code", value: enrolment_code.clone() },
        Secret { what: "enrolment code", value: enrolment_code.replace('-', "") },
        Secret { what: "operator API key", value: s.admin_key.clone() },
        Secret { what: "requestor API key", value: shop_key },
        Secret { what: "callback secret", value: shop.callback_secret.clone() },
        Secret { what: "security answer", value: SECURITY_ANSWER.into() },
        Secret { what: "security answer", value: SECURITY_ANSWER.to_lowercase() },
    ];
    secrets.extend(key_forms("device private key", &private_scalar(phone.key.pkcs8())));
    secrets.extend(key_forms("device private key", phone.key.pkcs8()));

    let captured = logs.text();
    assert!(captured.lines().count() > 50, "DEBUG logs were captured:\n{captured}");
    assert!(
        captured.lines().any(|l| l.contains("\"request_id\"") && l.contains("/v1/authentications")),
        "request spans carry request ids:\n{captured}"
    );
    let database = s.dir.path().join("countersign.db");
    let dump = dump_database(&database, DELIVERY_CHANNEL_TABLE);
    assert!(dump.lines().count() > 20, "the dump read the tables:\n{dump}");
    let outbox = rusqlite::Connection::open(&database)
        .unwrap()
        .query_row(&format!("SELECT group_concat(body, ' ') FROM {DELIVERY_CHANNEL_TABLE}"), [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap();
    assert!(leaks(&outbox, &Secret { what: "control", value: code.clone() }), "the check finds a code where it is");

    for secret in &secrets {
        assert!(!leaks(&captured, secret), "a {} ({}) is in the logs", secret.what, secret.value);
        assert!(!leaks(&dump, secret), "a {} ({}) is in the database", secret.what, secret.value);
    }
}
