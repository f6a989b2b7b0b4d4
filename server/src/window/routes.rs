//! The window's HTTP side: the CReq entry, one endpoint for every form,
//! the page's polling, and its two assets. Every page is HTML with
//! headers fit for a 3DS iframe; no card number, code or answer is ever
//! in a URL, and none is logged.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use countersign_core::protocol::wire::ErrorCode;
use maud::Markup;
use serde::Serialize;
use utoipa::ToSchema;

use super::pages::{self, Notice};
use super::{Window, WindowError, creq, i18n, security};
use crate::app::App;
use crate::delivery::Language;
use crate::flows::challenges::{self, Ending};
use crate::flows::codes;
use crate::http::extract::{Form, Query};
use crate::http::openapi::{ErrorPage, PayloadTooLarge, UnsupportedMediaType};

type Fields = HashMap<String, String>;

/// The form a 3DS server's page posts into the window (EMV browser flow).
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used: the handlers read the fields by name.
struct CReqForm {
    /// The CReq: base64url JSON with `messageType` "CReq", `messageVersion`,
    /// `threeDSServerTransID`, `acsTransID` and `challengeWindowSize`.
    creq: String,
    /// Returned unchanged with the CRes (at most 1024 characters).
    #[schema(rename = "threeDSSessionData")]
    three_ds_session_data: Option<String>,
}

/// What the window's forms post: the session's capability and CSRF token,
/// the action, and the action's fields.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ActForm {
    session: String,
    csrf: String,
    /// `show`, `lang`, `code` (send me a code), `resend`, `verify`,
    /// `answers` (security questions: `answer0`, `answer1`, …), `contact`
    /// (register an email or phone after the questions), `cancel`.
    action: Option<String>,
    /// For `lang`: ja, en or sv.
    lang: Option<String>,
    /// For `verify`: the six digits.
    code: Option<String>,
    /// For `contact`.
    email: Option<String>,
    /// For `contact`, E.164.
    phone: Option<String>,
}

/// The page's live update: which screen it shows now.
#[derive(ToSchema)]
#[allow(dead_code)]
struct PollForm {
    session: String,
    csrf: String,
    /// The screen the page shows (`waiting`, `code`, `questions`, …).
    seen: Option<String>,
}

/// Open the challenge window (the acsURL)
///
/// A 3DS server's page posts `creq` (and `threeDSSessionData`) here. Opens
/// the challenge window for the purchase in the CReq: an HTML page
/// made for a 3DS iframe (its CSP names who may frame it). A second CReq
/// for the same purchase opens nothing.
#[utoipa::path(
    post, path = "/challenge", tag = "challenge window (browser)", operation_id = "postCReq",
    request_body(content = CReqForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The window", content_type = "text/html", body = String),
        (status = 400, response = ErrorPage), (status = 403, response = ErrorPage),
        (status = 404, response = ErrorPage), (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType), (status = 503, response = ErrorPage),
    ),
)]
pub async fn creq_post(State(app): State<App>, headers: HeaderMap, Form(fields): Form<Fields>) -> Response {
    enter(&app, &headers, &fields).await
}

/// The acsURL as a plain link
///
/// The same as posting the CReq form (`?creq=…`), for demos and manual tests.
#[utoipa::path(
    get, path = "/challenge", tag = "challenge window (browser)", operation_id = "getCReq",
    params(
        ("creq" = String, Query, description = "The CReq, base64url JSON"),
        ("threeDSSessionData" = Option<String>, Query, description = "Returned unchanged with the CRes"),
    ),
    responses(
        (status = 200, description = "The window", content_type = "text/html", body = String),
        (status = 400, response = ErrorPage), (status = 403, response = ErrorPage),
        (status = 404, response = ErrorPage), (status = 503, response = ErrorPage),
    ),
)]
pub async fn creq_get(State(app): State<App>, headers: HeaderMap, Query(fields): Query<Fields>) -> Response {
    enter(&app, &headers, &fields).await
}

async fn enter(app: &App, headers: &HeaderMap, fields: &Fields) -> Response {
    let accept_language = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    let result = async {
        let creq =
            creq::parse(fields.get("creq").map(String::as_str)).map_err(|e| WindowError::BadRequest(e.to_string()))?;
        let w = super::open(app, &creq, fields.get("threeDSSessionData").cloned(), accept_language).await?;
        show(app, &w, None).await
    }
    .await;
    result.unwrap_or_else(|e| error_page(app, accept_language, e))
}

/// Act in the window
///
/// Every form in the window posts here, with its capability (`session`),
/// CSRF token (`csrf`) and `action`; the answer is the window's next page.
#[utoipa::path(
    post, path = "/challenge/act", tag = "challenge window (browser)", operation_id = "actInWindow",
    request_body(content = ActForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The window's next page", content_type = "text/html", body = String),
        (status = 400, response = ErrorPage), (status = 403, response = ErrorPage),
        (status = 404, response = ErrorPage), (status = 409, response = ErrorPage),
        (status = 410, response = ErrorPage), (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType), (status = 503, response = ErrorPage),
    ),
)]
pub async fn act(State(app): State<App>, headers: HeaderMap, Form(fields): Form<Fields>) -> Response {
    let accept_language = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    match act_inner(&app, &fields).await {
        Ok(r) => r,
        Err(e) => error_page(&app, accept_language, e),
    }
}

async fn act_inner(app: &App, fields: &Fields) -> Result<Response, WindowError> {
    let field = |name: &str| fields.get(name).map(|s| s.trim()).filter(|s| !s.is_empty());
    let mut w = super::find(app, field("session"), field("csrf")).await?;
    let s = i18n::strings(w.language);
    let acs = w.auth.acs_trans_id.clone();
    let mut verified = false;
    let notice = match field("action").unwrap_or("show") {
        "show" => None,
        "lang" => {
            if let Some(lang) = field("lang").and_then(Language::from_tag) {
                w.language = lang;
            }
            None
        }
        "code" => codes::request(app, &acs).await.map(|_| None).or_else(api_notice(w.language))?,
        "resend" => match codes::resend(app, &acs).await {
            Ok(_) => Some(Notice::info(s.resend_done.into())),
            Err(e) => api_notice(w.language)(e)?,
        },
        "verify" => match codes::verify(app, &acs, field("code").unwrap_or_default()).await {
            Ok(_) => None,
            Err(e) => api_notice(w.language)(e)?,
        },
        "answers" => {
            let questions = app.storage.security_questions(&w.challenge.card_id).await?;
            let answers: Vec<String> =
                (0..questions.len()).map(|i| fields.get(&format!("answer{i}")).cloned().unwrap_or_default()).collect();
            if w.challenge.state == crate::storage::ChallengeState::Pending
                && security::all_correct(app, &w.challenge.card_id, &questions, &answers).await?
            {
                verified = true;
                None
            } else {
                wrong_answer(app, &w).await?
            }
        }
        "contact" => {
            if w.session.verified_at.is_none() {
                return Err(WindowError::BadRequest("the security questions come first".into()));
            }
            match codes::register_contact(app, &acs, field("email"), field("phone")).await {
                Ok(_) => None,
                Err(e) if e.code == ErrorCode::BadRequest => Some(Notice::error(s.contact_invalid.into())),
                Err(e) => api_notice(w.language)(e)?,
            }
        }
        "cancel" => {
            challenges::finish(app, &w.challenge, &w.auth, Ending::WindowCancelled, app.now_ms()).await?;
            None
        }
        other => return Err(WindowError::BadRequest(format!("unknown action {other}"))),
    };
    super::touch(app, &w, verified).await?;
    // Read again: the action may have changed the challenge.
    let token = w.token.clone();
    let language = w.language;
    let csrf = w.csrf(app);
    let mut w = super::find(app, Some(&token), Some(&csrf)).await?;
    w.language = language;
    show(app, &w, notice).await
}

/// A wrong set of answers counts as a wrong code against the card.
async fn wrong_answer(app: &App, w: &Window) -> Result<Option<Notice>, WindowError> {
    let now = app.now_ms();
    let limit = app.config.codes.max_failures;
    let mut audit =
        crate::storage::AuditEvent::new(now, "security.answers_rejected", "cardholder:window".into(), "wrong_answer");
    audit.card_id = Some(w.challenge.card_id.clone());
    audit.acs_trans_id = Some(w.auth.acs_trans_id.clone());
    audit.challenge_id = Some(w.challenge.id.clone());
    let failure = app.storage.record_code_failure(&w.challenge.card_id, limit, now, &audit).await?;
    if failure.failures >= limit {
        challenges::finish(app, &w.challenge, &w.auth, Ending::CardBlocked, now).await?;
        return Ok(None);
    }
    Ok(Some(Notice::error(i18n::with_n(i18n::strings(w.language).answers_wrong, limit - failure.failures))))
}

/// Turns a refusal from the code flow into a notice on the page; refusals
/// that end the purchase show as its final page instead.
fn api_notice(language: Language) -> impl Fn(crate::error::ApiError) -> Result<Option<Notice>, WindowError> {
    move |e| {
        let s = i18n::strings(language);
        Ok(match e.code {
            ErrorCode::CodeIncorrect => Some(Notice::error(i18n::with_n(s.code_wrong, e.attempts_left.unwrap_or(0)))),
            ErrorCode::ResendTooSoon => {
                Some(Notice::error(i18n::with_n(s.resend_wait, e.retry_after_secs.unwrap_or(0))))
            }
            ErrorCode::ResendLimitReached => Some(Notice::error(s.resend_limit.into())),
            ErrorCode::CardBlocked
            | ErrorCode::CodeExpired
            | ErrorCode::ChallengeExpired
            | ErrorCode::AlreadyDecided
            | ErrorCode::CodeNotIssued => None,
            _ => return Err(WindowError::Api(e)),
        })
    }
}

async fn show(app: &App, w: &Window, notice: Option<Notice>) -> Result<Response, WindowError> {
    let screen = super::screen(app, w).await?;
    if let super::Screen::Final(_) = screen {
        super::await_result_message(app, &w.auth.acs_trans_id).await;
    }
    let issuer = &app.config.issuer.name;
    let page = pages::window(w, &w.csrf(app), issuer, &screen, notice.as_ref());
    let ancestors = app.config.window.frame_ancestors_for(&w.auth.requestor_id);
    Ok(html(StatusCode::OK, page, ancestors, Some(&w.auth.notification_url)))
}

/// The screen the window should show: `gone` when the session is no more.
#[derive(Serialize, ToSchema)]
pub struct PollAnswer {
    screen: &'static str,
}

/// How long the page's long-poll waits for its screen to change.
const POLL_FOR: Duration = Duration::from_secs(20);

/// Wait for the window to change
///
/// The page's live update: answers as soon as the screen differs from
/// `seen` (a decision or a code on any node wakes it), or after about
/// 20 seconds. Not the cardholder's activity.
#[utoipa::path(
    post, path = "/challenge/poll", tag = "challenge window (browser)", operation_id = "pollWindow",
    request_body(content = PollForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The screen to show", body = PollAnswer),
        (status = 403, description = "No such session (`gone`)", body = PollAnswer),
        (status = 413, response = PayloadTooLarge), (status = 415, response = UnsupportedMediaType),
    ),
)]
pub async fn poll(State(app): State<App>, Form(fields): Form<Fields>) -> Response {
    let seen = fields.get("seen").cloned().unwrap_or_default();
    let get = |n: &str| fields.get(n).map(String::as_str);
    // Watching from before the first read: a change in between wakes it.
    let mut watch = app.storage.challenge_events().watch();
    let deadline = tokio::time::Instant::now() + POLL_FOR;
    loop {
        let w = match super::find(&app, get("session"), get("csrf")).await {
            Ok(w) => w,
            Err(_) => return (StatusCode::FORBIDDEN, no_store(), Json(PollAnswer { screen: "gone" })).into_response(),
        };
        let kind = match super::screen(&app, &w).await {
            Ok(screen) => screen.kind(),
            Err(_) => "error",
        };
        if kind != seen {
            return (no_store(), Json(PollAnswer { screen: kind })).into_response();
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        watch.changed(&w.challenge.id, left).await;
    }
    (no_store(), Json(PollAnswer { screen: static_kind(&seen) })).into_response()
}

fn static_kind(seen: &str) -> &'static str {
    ["waiting", "code", "questions", "no-questions", "contact"].into_iter().find(|k| *k == seen).unwrap_or("unknown")
}

fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/window.css"))
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/window.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

fn error_page(app: &App, accept_language: Option<&str>, e: WindowError) -> Response {
    let language = accept_language.and_then(Language::from_tag).unwrap_or_default();
    let s = i18n::strings(language);
    let (status, body) = match &e {
        WindowError::NoSuchPurchase => (StatusCode::NOT_FOUND, s.error_body),
        WindowError::NoSession => (StatusCode::FORBIDDEN, s.session_error_body),
        WindowError::BadRequest(reason) => {
            tracing::info!(reason = %reason, "challenge window request refused");
            (StatusCode::BAD_REQUEST, s.error_body)
        }
        WindowError::Api(err) => {
            tracing::warn!(error = %err, "challenge window failed");
            (err.status, s.error_body)
        }
    };
    let page = pages::error(language, &app.config.issuer.name, s.error_heading, body);
    html(status, page, &app.config.window.frame_ancestors, None)
}

/// An HTML page with the headers the window needs in a 3DS iframe.
pub fn html(status: StatusCode, page: Markup, frame_ancestors: &[String], posts_to: Option<&str>) -> Response {
    let form_action = match posts_to.and_then(origin_of) {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".into(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; \
         frame-src 'self'; form-action {form_action}; base-uri 'none'; frame-ancestors {}",
        frame_ancestors.join(" ")
    );
    let mut response = (status, axum::response::Html(page.into_string())).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// `scheme://host[:port]` of an http(s) URL, for the CSP.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    let clean = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    clean.then(|| format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origins_for_the_csp() {
        assert_eq!(origin_of("https://shop.example/3ds/notify?x=1").as_deref(), Some("https://shop.example"));
        assert_eq!(origin_of("http://127.0.0.1:8480/demo/notify").as_deref(), Some("http://127.0.0.1:8480"));
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("https://a b/"), None);
    }
}
