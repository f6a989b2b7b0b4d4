//! The challenge window: its timers over HTTP, and the pages in real
//! Chromium (tests/browser/run.mjs, driven from here). The script asks for
//! what only the test can do — the phone's answer, a code from the outbox,
//! a move of the clock — by printing `>> COMMAND args`; the answer goes
//! back on its stdin. Screenshots land in target/browser-screenshots/.

use std::path::PathBuf;
use std::process::Stdio;

use countersign_core::protocol::Decision;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::*;

const CREQ_TIMEOUT_SECS: u64 = 30;

async fn server() -> TestServer {
    TestServer::start_with(|c| c.window.creq_timeout_secs = CREQ_TIMEOUT_SECS).await
}

async fn post_creq(s: &TestServer, creq: &str) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let resp = s
        .http
        .post(s.url("/challenge"))
        .form(&[("creq", creq), ("threeDSSessionData", "opaque-42")])
        .send()
        .await
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, resp.text().await.unwrap(), headers)
}

#[tokio::test]
async fn no_creq_in_time_ends_n14_with_challenge_cancel_05_once() {
    let s = server().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let receiver = CallbackReceiver::start(0).await;
    let acs = s.challenge(&shop, PAN, &receiver.url).await;
    s.clock.advance_ms(CREQ_TIMEOUT_SECS as i64 * 1000 - 1);
    countersign_server::window::sweep(&s.app).await.unwrap();
    assert_eq!(s.challenge_state(&shop, &acs).await, "pending");
    s.clock.advance_ms(1);
    countersign_server::window::sweep(&s.app).await.unwrap();
    countersign_server::window::sweep(&s.app).await.unwrap();
    let status = s.status(&shop, &acs).await;
    assert_eq!((status["transStatus"].as_str(), status["transStatusReason"].as_str()), (Some("N"), Some("14")));
    let rreqs = receiver.wait_for(1).await;
    assert_eq!(rreqs[0]["challengeCancel"], "05");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(receiver.bodies().len(), 1, "the timer fires once");
}

#[tokio::test]
async fn an_idle_window_ends_n14_and_a_creq_opens_only_once() {
    let s = server().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 6_000, &receiver.url)).await;
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();
    let creq = creq(&ares, "02");
    let (status, page, headers) = post_creq(&s, &creq).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(headers["cache-control"], "no-store");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
    let last_six = Secret::new("the card number's last six digits", &PAN[PAN.len() - 6..]);
    assert!(!page.contains(PAN) && !leaks(&page, &last_six), "no card number in the page");
    assert!(page.contains("autocomplete=\"one-time-code\""));
    // A second CReq for the same purchase opens nothing.
    assert_eq!(post_creq(&s, &creq).await.0, StatusCode::NOT_FOUND);
    // The window is open, so the CReq timer does not apply; inactivity does.
    s.clock.advance_ms(599_000);
    countersign_server::window::sweep(&s.app).await.unwrap();
    assert_eq!(s.challenge_state(&shop, &acs).await, "pending");
    s.clock.advance_ms(1_000);
    countersign_server::window::sweep(&s.app).await.unwrap();
    let status = s.status(&shop, &acs).await;
    assert_eq!((status["transStatus"].as_str(), status["transStatusReason"].as_str()), (Some("N"), Some("14")));
    assert_eq!(receiver.wait_for(1).await[0]["challengeCancel"], "04");
}

/// The page's long-poll answers with the final screen once the phone
/// decides, without waiting out its interval.
#[tokio::test]
async fn a_waiting_window_hears_the_phone_decide() {
    let s = server().await;
    let shop = s.create_requestor("shop-1").await;
    let (_, phone) = s.card_with_phone(PAN).await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 6_000, &receiver.url)).await;
    let (status, page, _) = post_creq(&s, &creq(&ares, "05")).await;
    assert!(status == StatusCode::OK && page.contains("data-screen=\"waiting\""), "{page}");
    let window = async {
        let answer = s.poll_window(&page, "waiting").await;
        (answer, std::time::Instant::now())
    };
    let decision = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
        phone.call(move |c| c.decide(&view, Decision::Approve, None)).await.unwrap();
        std::time::Instant::now()
    };
    let (((status, answer), answered), decided) = tokio::join!(window, decision);
    assert_eq!((status, answer["screen"].as_str()), (StatusCode::OK, Some("success")), "{answer}");
    eprintln!("the window heard {:?} after the decision", answered.saturating_duration_since(decided));
    // A poll that saw an older screen answers at once.
    assert_eq!(s.poll_window(&page, "waiting").await.1["screen"], "success");
}

#[tokio::test]
async fn a_forged_or_foreign_session_acts_on_nothing() {
    let s = server().await;
    let resp = s
        .http
        .post(s.url("/challenge/act"))
        .form(&[("session", "00".repeat(32).as_str()), ("csrf", "x"), ("action", "cancel")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let bad = s.http.post(s.url("/challenge")).form(&[("creq", "not base64!")]).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("<html"), "people get a page, not JSON");
}

async fn act(s: &TestServer, page: &str, action: &str) -> (StatusCode, String) {
    let (session, csrf) = (hidden(page, "session"), hidden(page, "csrf"));
    let fields = [("session", session.as_str()), ("csrf", csrf.as_str()), ("action", action)];
    let resp = s.http.post(s.url("/challenge/act")).form(&fields).send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test]
async fn a_plain_get_link_opens_the_window_once() {
    let s = server().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 6_000, &receiver.url)).await;
    let acs = ares["acsTransID"].as_str().unwrap().to_owned();
    // Unpadded base64url, as a link would carry it.
    let creq = creq(&ares, "03").trim_end_matches('=').to_owned();
    let link = |creq: &str| s.http.get(s.url("/challenge")).query(&[("creq", creq)]).send();
    let resp = link(&creq).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let page = resp.text().await.unwrap();
    assert!(page.contains("data-screen=\"code\"") && page.contains("class=\"size-03\""), "{page}");
    assert!(!page.contains(PAN), "no card number in the page");
    assert_eq!(link(&creq).await.unwrap().status(), StatusCode::NOT_FOUND, "a link opens the window once");
    assert_eq!(link("bm90IGEgY3JlcQ").await.unwrap().status(), StatusCode::BAD_REQUEST);
    // The link's window is a real one: its forms act on its purchase.
    let (status, cancelled) = act(&s, &page, "cancel").await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert!(cancelled.contains("data-screen=\"cancelled\""), "{cancelled}");
    assert_eq!(s.challenge_state(&shop, &acs).await, "cancelled");
}

#[tokio::test]
async fn window_sessions_go_an_hour_after_their_purchase_ended() {
    let s = server().await;
    let shop = s.create_requestor("shop-1").await;
    s.create_card(PAN).await;
    let receiver = CallbackReceiver::start(0).await;
    let (_, ares) = s.areq(&shop, &areq("shop-1", PAN, 6_000, &receiver.url)).await;
    let creq = creq(&ares, "05");
    let (status, page, _) = post_creq(&s, &creq).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (status, ended) = act(&s, &page, "cancel").await;
    assert!(status == StatusCode::OK && ended.contains("data-screen=\"cancelled\""), "{ended}");
    let retention_ms = s.app.config.window.session_retention_secs as i64 * 1000;
    assert_eq!(retention_ms, 3_600_000);

    // Until then the final page can still be shown (and its CRes posted).
    s.clock.advance_ms(retention_ms - 1);
    countersign_server::window::sweep(&s.app).await.unwrap();
    let (status, still) = act(&s, &page, "show").await;
    assert!(status == StatusCode::OK && still.contains("data-screen=\"cancelled\""), "{still}");

    s.clock.advance_ms(1);
    countersign_server::window::sweep(&s.app).await.unwrap();
    assert_eq!(act(&s, &page, "show").await.0, StatusCode::FORBIDDEN, "the session is gone");
    assert_eq!(post_creq(&s, &creq).await.0, StatusCode::NOT_FOUND, "its CReq does not open a new one");
}

#[tokio::test]
async fn security_questions_are_provisioned_without_their_answers() {
    let s = server().await;
    let card = s.create_card(PAN).await;
    let path = format!("/v1/admin/cards/{card}/security-questions");
    let body = json!({"questions": [{"question": "Birthplace?", "answer": "Tokyo"}]});
    let (status, view) = s.admin(reqwest::Method::PUT, &path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["questions"], json!(["Birthplace?"]));
    assert!(!view.to_string().contains("Tokyo"));
    let audit = s.admin(reqwest::Method::GET, &format!("/v1/admin/audit?cardId={card}"), None).await.1;
    assert!(audit.to_string().contains("card.security_questions_set") && !audit.to_string().contains("Tokyo"));
}

// ---- real Chromium -----------------------------------------------------

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Whether the browser suite can run; scripts/test-browser.sh installs
/// what is missing and sets COUNTERSIGN_BROWSER_TESTS=require.
fn browser_available() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready = std::path::Path::new(&chromium).exists()
        && workspace().join("tests/browser/node_modules/playwright-core").exists();
    if !ready {
        assert!(
            std::env::var("COUNTERSIGN_BROWSER_TESTS").as_deref() != Ok("require"),
            "Chromium or playwright-core is missing: run scripts/test-browser.sh"
        );
        eprintln!("skipping the browser test: run scripts/test-browser.sh");
    }
    ready
}

/// One browser at a time: the machines have two cores.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run_scenario(s: &TestServer, scenario: &str, pan: &str, locale: &str, phone: Option<&Phone>) {
    let _one = BROWSER.lock().await;
    let root = workspace();
    let mut child = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/run.mjs"))
        .arg(scenario)
        .env("BASE_URL", &s.base)
        .env("PAN", pan)
        .env("LOCALE", locale)
        .env("SHOTS", root.join("target/browser-screenshots"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    while let Some(line) = tokio::time::timeout(std::time::Duration::from_secs(90), lines.next_line())
        .await
        .expect("the browser script answers within 90 s")
        .unwrap()
    {
        eprintln!("[{scenario}] {line}");
        log.push(line.clone());
        let Some(request) = line.strip_prefix(">> ") else { continue };
        let answer = answer(s, request, phone).await;
        stdin.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "scenario {scenario} failed:\n{}", log.join("\n"));
}

async fn answer(s: &TestServer, request: &str, phone: Option<&Phone>) -> String {
    let parts: Vec<&str> = request.split_whitespace().collect();
    match parts.as_slice() {
        ["APPROVE", number] => {
            let phone = phone.expect("a phone for this scenario").clone();
            let number = number.parse::<u8>().ok();
            let view = phone.call(|c| c.pending_challenges()).await.unwrap().challenges.remove(0);
            phone.call(move |c| c.decide(&view, Decision::Approve, number)).await.unwrap();
            "ok".into()
        }
        ["CODE", recipient, n] => format!("ok {}", s.nth_code_to(recipient, n.parse().unwrap()).await),
        ["ADVANCE", secs] => {
            s.clock.advance_ms(secs.parse::<i64>().unwrap() * 1000);
            countersign_server::flows::challenges::expire_due(&s.app).await.unwrap();
            countersign_server::window::sweep(&s.app).await.unwrap();
            "ok".into()
        }
        _ => format!("error unknown request {request}"),
    }
}

#[tokio::test]
async fn browser_push_approval_completes_without_reload() {
    if !browser_available() {
        return;
    }
    let s = server().await;
    let (_, phone) = s.card_with_phone(PAN).await;
    run_scenario(&s, "push", PAN, "ja-JP", Some(&phone)).await;
}

#[tokio::test]
async fn browser_code_resend_wrong_code_and_keyboard_completion() {
    if !browser_available() {
        return;
    }
    let s = server().await;
    s.create_card(PAN).await;
    run_scenario(&s, "code", PAN, "en-GB", None).await;
}

#[tokio::test]
async fn browser_five_wrong_codes_block_and_expiry_ends() {
    if !browser_available() {
        return;
    }
    let s = server().await;
    s.create_card(PAN).await;
    run_scenario(&s, "blocked", PAN, "en-GB", None).await;
    s.create_card(OTHER_PAN).await;
    run_scenario(&s, "expiry", OTHER_PAN, "ja-JP", None).await;
}

#[tokio::test]
async fn browser_contact_registration_after_security_questions() {
    if !browser_available() {
        return;
    }
    let s = server().await;
    let (status, body) =
        s.admin(reqwest::Method::POST, "/v1/admin/cards", Some(json!({"acctNumber": PAN, "language": "en"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let card = body["cardId"].as_str().unwrap();
    let questions = json!({"questions": [
        {"question": "Where were you born?", "answer": "Tokyo"},
        {"question": "Your first pet's name?", "answer": "Pochi"},
    ]});
    let path = format!("/v1/admin/cards/{card}/security-questions");
    assert_eq!(s.admin(reqwest::Method::PUT, &path, Some(questions)).await.0, StatusCode::OK);
    run_scenario(&s, "register", PAN, "en-GB", None).await;
    let card = s.admin(reqwest::Method::GET, &format!("/v1/admin/cards/{card}"), None).await.1;
    assert_eq!(card["hasEmail"], true, "the card has its new contact: {card}");
}

#[tokio::test]
async fn browser_code_path_without_javascript() {
    if !browser_available() {
        return;
    }
    let s = server().await;
    s.create_card(PAN).await;
    run_scenario(&s, "nojs", PAN, "en-GB", None).await;
}

#[tokio::test]
async fn browser_window_sizes_01_and_05_fit() {
    if !browser_available() {
        return;
    }
    let s = server().await;
    let (_, phone) = s.card_with_phone(PAN).await;
    run_scenario(&s, "size01", PAN, "ja-JP", Some(&phone)).await;
    s.create_card(OTHER_PAN).await;
    run_scenario(&s, "size05", OTHER_PAN, "sv-SE", None).await;
}

#[tokio::test]
async fn browser_languages_small_window_and_cancel() {
    if !browser_available() {
        return;
    }
    let s = server().await;
    s.create_card(PAN).await;
    run_scenario(&s, "languages", PAN, "sv-SE", None).await;
}
