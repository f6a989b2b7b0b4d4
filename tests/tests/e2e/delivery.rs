//! One-time codes through real delivery components: a real SMTP server
//! (aiosmtpd, started here on a free port) and a local server that honours
//! the Twilio Messages API contract. Failures on one channel never stop
//! the other, and every attempt is recorded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use countersign_server::delivery::{EmailSecurity, EmailTransport, SmsTransport};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

const EMAIL: &str = "taro@example.jp";
const PHONE: &str = "+819012345678";

/// aiosmtpd writing what it receives to a Maildir, until dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> Self {
        let python = std::env::var_os("COUNTERSIGN_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/python"));
        assert!(python.exists(), "aiosmtpd is needed: run scripts/ensure-python-tools.sh");
        let port = free_port();
        let maildir = tempfile::tempdir().unwrap();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let server = Self { child, port, maildir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("aiosmtpd did not listen");
    }

    /// The raw messages received so far.
    fn messages(&self) -> Vec<Vec<u8>> {
        let new = self.maildir.path().join("mail/new");
        let mut files: Vec<_> =
            std::fs::read_dir(new).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        files.sort();
        files.into_iter().map(|f| std::fs::read(f).unwrap()).collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback port that refuses connections for as long as the socket
/// lives: bound but never listening, so no other test can take it meanwhile
/// (a port found free and let go could be).
fn closed_port() -> tokio::net::TcpSocket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    socket
}

/// A Twilio-compatible Messages API: checks basic auth and the form, and
/// records each message; answers `status` to every request.
struct SmsApi {
    base: String,
    sent: Arc<Mutex<Vec<HashMap<String, String>>>>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
}

impl SmsApi {
    async fn start(status: u16) -> Self {
        use axum::extract::{Form, Path};
        use axum::routing::post;
        let sent: Arc<Mutex<Vec<HashMap<String, String>>>> = Arc::default();
        let store = sent.clone();
        let hits: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let counter = hits.clone();
        let handler = move |Path(sid): Path<String>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>| {
            let store = store.clone();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                use base64::Engine;
                let expected =
                    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("ACtest:secret-token"));
                if sid != "ACtest"
                    || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str())
                {
                    return (AxumStatus::UNAUTHORIZED, axum::Json(json!({"code": 20003, "message": "Authenticate"})));
                }
                if !form.contains_key("To")
                    || !form.contains_key("Body")
                    || form.get("From").map(String::as_str) != Some("+46700000000")
                {
                    return (AxumStatus::BAD_REQUEST, axum::Json(json!({"code": 21604, "message": "missing field"})));
                }
                let code = AxumStatus::from_u16(status).unwrap();
                if code.is_success() {
                    store.lock().unwrap().push(form);
                }
                (code, axum::Json(json!({"sid": "SM1", "status": "queued"})))
            }
        };
        let router = axum::Router::new().route("/2010-04-01/Accounts/{sid}/Messages.json", post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { base, sent, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn bodies(&self) -> Vec<String> {
        self.sent.lock().unwrap().iter().map(|f| f["Body"].clone()).collect()
    }
}

fn use_smtp(c: &mut countersign_server::config::Config, port: u16) {
    c.email.transport = EmailTransport::Smtp;
    c.email.host = "127.0.0.1".into();
    c.email.port = port;
    c.email.security = EmailSecurity::Plain;
    c.email.from = "SafeKey <no-reply@bank.example>".into();
    c.email.timeout_ms = 3_000;
}

fn use_sms_api(c: &mut countersign_server::config::Config, base: &str) {
    c.sms.transport = SmsTransport::Twilio;
    c.sms.base_url = base.into();
    c.sms.account_sid = "ACtest".into();
    c.sms.auth_token = Some("secret-token".into());
    c.sms.from = Some("+46700000000".into());
}

async fn code_purchase(
    s: &TestServer,
    email: Option<&str>,
    phone: Option<&str>,
) -> (countersign_server::flows::admin::CreatedRequestor, String) {
    let shop = s.create_requestor("shop-1").await;
    let card = s.create_card(PAN).await;
    let (status, _) = s
        .admin(Method::PUT, &format!("/v1/admin/cards/{card}/contacts"), Some(json!({"email": email, "phone": phone})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 90_000, "http://127.0.0.1:9/n")).await;
    assert_eq!(ares["transStatus"], "C");
    (shop, ares["acsTransID"].as_str().unwrap().to_owned())
}

async fn destination_states(s: &TestServer, acs: &str) -> Vec<String> {
    let window = s.window(acs).await;
    window["code"]["destinations"].as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_code_arrives_by_real_smtp_and_completes_the_purchase() {
    let smtp = SmtpServer::start();
    let s = TestServer::start_with(|c| use_smtp(c, smtp.port)).await;
    let (shop, acs) = code_purchase(&s, Some(EMAIL), None).await;

    let mut raw = Vec::new();
    for _ in 0..250 {
        if let Some(m) = smtp.messages().pop() {
            raw = m;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mail = mail_parser::MessageParser::default().parse(&raw).expect("a received mail");
    let subject = mail.subject().unwrap().to_owned();
    let text = mail.body_text(0).unwrap().into_owned();
    let html = mail.body_html(0).unwrap().into_owned();
    let code = six_digits(&text).expect("the code in the text part");
    assert!(!subject.contains(&code), "never in the subject: {subject}");
    assert!(html.contains(&code));
    assert!(text.contains("Nordic Outdoor AB"), "names the merchant: {text}");
    assert!(text.contains("900"), "names the amount: {text}");
    assert_eq!(mail.to().unwrap().first().unwrap().address().unwrap(), EMAIL);
    // The card's language is Japanese.
    assert!(text.chars().any(|c| ('\u{3040}'..='\u{30ff}').contains(&c)), "{text}");

    eventually("the email to show as sent", || async { destination_states(&s, &acs).await == ["sent"] }).await;
    let ok = s.window_post(&acs, "code/verify", Some(json!({"code": code}))).await;
    assert_eq!(ok.0, StatusCode::OK, "{ok:?}");
    assert_eq!(s.status(&shop, &acs).await["transStatus"], "Y");
}

#[tokio::test]
async fn smtp_down_the_sms_still_goes_and_the_failure_is_recorded() {
    let sms = SmsApi::start(201).await;
    let dead = closed_port();
    let dead_port = dead.local_addr().unwrap().port();
    let s = TestServer::start_with(|c| {
        use_smtp(c, dead_port);
        use_sms_api(c, &sms.base);
        c.codes.delivery_max_attempts = 2;
    })
    .await;
    let (shop, acs) = code_purchase(&s, Some(EMAIL), Some(PHONE)).await;

    eventually("the SMS", || async { !sms.bodies().is_empty() }).await;
    let code = six_digits(&sms.bodies()[0]).expect("the code in the SMS");
    assert_eq!(sms.sent.lock().unwrap()[0]["To"], PHONE);
    eventually("the first email attempt", || async {
        s.window(&acs).await["code"]["destinations"][0]["state"] == "pending"
    })
    .await;
    // The second and last attempt comes after the backoff.
    s.clock.advance_ms(s.app.config.codes.delivery_initial_backoff_ms as i64);
    eventually("email marked failed", || async { destination_states(&s, &acs).await == ["failed", "sent"] }).await;
    assert_eq!(s.window(&acs).await["code"]["undeliverable"], false);

    let ok = s.window_post(&acs, "code/verify", Some(json!({"code": code}))).await;
    assert_eq!(ok.0, StatusCode::OK, "{ok:?}");
    assert_eq!(s.status(&shop, &acs).await["transStatus"], "Y");
}

#[tokio::test]
async fn when_every_channel_fails_the_window_is_told() {
    let refusing = SmsApi::start(400).await;
    let dead = closed_port();
    let dead_port = dead.local_addr().unwrap().port();
    let s = TestServer::start_with(|c| {
        use_smtp(c, dead_port);
        use_sms_api(c, &refusing.base);
        c.codes.delivery_max_attempts = 1;
    })
    .await;
    let (_, acs) = code_purchase(&s, Some(EMAIL), Some(PHONE)).await;
    eventually("both channels to fail", || async { destination_states(&s, &acs).await == ["failed", "failed"] }).await;
    assert_eq!(s.window(&acs).await["code"]["undeliverable"], true);
    let (_, audit) = s.admin(Method::GET, &format!("/v1/admin/audit?acsTransID={acs}"), None).await;
    assert!(audit.to_string().contains("code.issued"));
}

#[tokio::test]
async fn a_transient_sms_failure_is_retried_with_backoff_then_given_up() {
    let flaky = SmsApi::start(503).await;
    let s = TestServer::start_with(|c| {
        use_sms_api(c, &flaky.base);
        c.email.transport = EmailTransport::Off;
        c.codes.delivery_max_attempts = 3;
    })
    .await;
    let (_, acs) = code_purchase(&s, None, Some(PHONE)).await;
    eventually("a first attempt", || async { flaky.hits() == 1 }).await;
    // Nothing more until the backoff (2 s, then 4 s) has passed.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(flaky.hits(), 1);
    assert_eq!(destination_states(&s, &acs).await, ["pending"]);
    s.clock.advance_ms(2_000);
    eventually("a second attempt", || async { flaky.hits() == 2 }).await;
    s.clock.advance_ms(4_000);
    eventually("the channel marked failed", || async { destination_states(&s, &acs).await == ["failed"] }).await;
    assert_eq!(flaky.hits(), 3);
    assert_eq!(s.window(&acs).await["code"]["undeliverable"], true);
}
