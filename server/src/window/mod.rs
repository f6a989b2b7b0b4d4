//! The browser challenge window: what a cardholder sees in the merchant's
//! checkout (EMV 3DS browser flow). A CReq opens a session; the window
//! waits for the push, offers a code, lets a cardholder without a contact
//! register one after the security questions, and ends by posting the CRes
//! to the requestor's notificationURL once the RReq has gone.
//!
//! The session's capability travels in the page's forms, not in a cookie:
//! the window lives in a third-party iframe, where browsers increasingly
//! drop cookies (Safari, Firefox, Chrome's tracking protection). A hidden
//! field works everywhere, never appears in a URL, and dies with the page.

pub mod creq;
pub mod demo;
mod i18n;
mod pages;
pub mod routes;
pub mod security;

use std::time::Duration;

use countersign_core::protocol::CanonicalWriter;

use crate::app::App;
use crate::delivery::Language;
use crate::error::ApiError;
use crate::flows::challenges::{self, Ending};
use crate::flows::codes::{self, CodeView, WindowView};
use crate::secrets::{Keys, Purpose, constant_time_eq, random_bytes};
use crate::storage::{Authentication, Challenge, ChallengeState, WindowSession};

/// A page in the window, as the challenge's state decides it.
#[derive(Debug, Clone)]
pub enum Screen {
    /// A push went to the app: wait, with the number to match.
    Waiting {
        remaining_secs: i64,
    },
    /// Type the one-time code.
    Code {
        code: CodeView,
        remaining_secs: i64,
    },
    /// No contact: answer the issuer's questions first.
    Questions {
        questions: Vec<String>,
    },
    /// No contact and no questions to answer: only customer service helps.
    NoQuestions,
    /// Questions answered: register an email and/or phone.
    Contact,
    Final(Outcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Denied,
    Cancelled,
    Expired,
    Blocked,
}

impl Screen {
    /// Names the screen, so the page's polling can tell when it changes.
    pub fn kind(&self) -> &'static str {
        match self {
            Screen::Waiting { .. } => "waiting",
            Screen::Code { .. } => "code",
            Screen::Questions { .. } => "questions",
            Screen::NoQuestions => "no-questions",
            Screen::Contact => "contact",
            Screen::Final(Outcome::Success) => "success",
            Screen::Final(Outcome::Denied) => "denied",
            Screen::Final(Outcome::Cancelled) => "cancelled",
            Screen::Final(Outcome::Expired) => "expired",
            Screen::Final(Outcome::Blocked) => "blocked",
        }
    }
}

/// Why a window cannot be shown.
#[derive(Debug)]
pub enum WindowError {
    /// Unknown purchase, wrong ids, or a CReq for a window already opened.
    NoSuchPurchase,
    /// The capability or CSRF token does not match any session.
    NoSession,
    BadRequest(String),
    Api(ApiError),
}

impl From<ApiError> for WindowError {
    fn from(e: ApiError) -> Self {
        WindowError::Api(e)
    }
}

impl From<crate::storage::StorageError> for WindowError {
    fn from(e: crate::storage::StorageError) -> Self {
        WindowError::Api(e.into())
    }
}

/// One request's view of its window: the session and what it is about.
pub struct Window {
    pub token: String,
    pub session: WindowSession,
    pub auth: Authentication,
    pub challenge: Challenge,
    pub view: WindowView,
    pub language: Language,
}

impl Window {
    pub fn csrf(&self, app: &App) -> String {
        csrf_token(app.secrets.current(), &self.token)
    }
}

fn retention_ms(app: &App) -> i64 {
    app.config.window.session_retention_secs.min(i64::MAX as u64 / 1000) as i64 * 1000
}

fn token_hash(keys: &Keys, token: &str) -> Vec<u8> {
    keys.keyed_hash(Purpose::WindowSession, &CanonicalWriter::new("countersign.window.token.v1").str(token).finish())
}

/// The CSRF token of a session: derived from its capability, so it needs
/// no storage, and a page from one session is useless in another.
fn csrf_token(keys: &Keys, token: &str) -> String {
    let mac = keys
        .keyed_hash(Purpose::WindowSession, &CanonicalWriter::new("countersign.window.csrf.v1").str(token).finish());
    hex::encode(&mac[..16])
}

/// Opens the window for a CReq: the purchase must exist, the 3DS server's
/// transaction id must match, and only the first CReq opens it.
pub async fn open(
    app: &App,
    creq: &creq::CReq,
    session_data: Option<String>,
    accept_language: Option<&str>,
) -> Result<Window, WindowError> {
    let auth = app.storage.authentication(&creq.acs_trans_id).await?.ok_or(WindowError::NoSuchPurchase)?;
    if auth.ds_trans_id != creq.three_ds_server_trans_id || auth.challenge_id.is_none() {
        return Err(WindowError::NoSuchPurchase);
    }
    // Once its session is swept away, an old purchase's CReq opens nothing.
    let challenge_id = auth.challenge_id.as_deref().unwrap_or_default();
    let challenge = app.storage.challenge(challenge_id).await?.ok_or(WindowError::NoSuchPurchase)?;
    if challenge.state != ChallengeState::Pending
        && challenge.decided_at.unwrap_or(challenge.expires_at) <= app.now_ms() - retention_ms(app)
    {
        return Err(WindowError::NoSuchPurchase);
    }
    if session_data.as_ref().is_some_and(|d| d.len() > creq::MAX_SESSION_DATA_CHARS) {
        return Err(WindowError::BadRequest("threeDSSessionData is too long".into()));
    }
    let card_language = match &auth.card_id {
        Some(id) => app.storage.card(id).await?.and_then(|c| c.language),
        None => None,
    };
    let language = accept_language
        .and_then(Language::from_tag)
        .unwrap_or_else(|| Language::negotiate(card_language.as_deref(), auth.browser_language.as_deref()));
    let token = hex::encode(random_bytes::<32>());
    let now = app.now_ms();
    let session = WindowSession {
        acs_trans_id: auth.acs_trans_id.clone(),
        token_hash: token_hash(app.secrets.current(), &token),
        three_ds_session_data: session_data,
        window_size: creq.challenge_window_size.clone().unwrap_or_else(|| "05".into()),
        language: language.as_str().into(),
        created_at: now,
        last_active_at: now,
        verified_at: None,
    };
    if !app.storage.open_window_session(&session).await? {
        return Err(WindowError::NoSuchPurchase);
    }
    load(app, token, session).await
}

/// The window a form's capability and CSRF token name.
pub async fn find(app: &App, token: Option<&str>, csrf: Option<&str>) -> Result<Window, WindowError> {
    let (Some(token), Some(csrf)) = (token, csrf) else { return Err(WindowError::NoSession) };
    // A window opened before a master-key rotation stays usable: its
    // token and CSRF token were made under a key that is now a previous one.
    let csrf_ok = app
        .secrets
        .all()
        .fold(false, |ok, (_, k)| constant_time_eq(csrf_token(k, token).as_bytes(), csrf.as_bytes()) | ok);
    if token.len() != 64 || !csrf_ok {
        return Err(WindowError::NoSession);
    }
    for (_, keys) in app.secrets.all() {
        if let Some(session) = app.storage.window_session(&token_hash(keys, token)).await? {
            return load(app, token.to_owned(), session).await;
        }
    }
    Err(WindowError::NoSession)
}

async fn load(app: &App, token: String, session: WindowSession) -> Result<Window, WindowError> {
    let auth = app.storage.authentication(&session.acs_trans_id).await?.ok_or(WindowError::NoSuchPurchase)?;
    let challenge_id = auth.challenge_id.clone().ok_or(WindowError::NoSuchPurchase)?;
    let challenge = app.storage.challenge(&challenge_id).await?.ok_or(WindowError::NoSuchPurchase)?;
    let view = codes::view(app, &auth).await?;
    let language = Language::from_tag(&session.language).unwrap_or_default();
    Ok(Window { token, session, auth, challenge, view, language })
}

/// Records the cardholder's activity (for the inactivity timer).
pub async fn touch(app: &App, w: &Window, verified: bool) -> Result<(), WindowError> {
    app.storage.update_window_session(&w.auth.acs_trans_id, app.now_ms(), w.language.as_str(), verified).await?;
    Ok(())
}

/// What the window shows now.
pub async fn screen(app: &App, w: &Window) -> Result<Screen, WindowError> {
    let now = app.now_ms();
    let outcome = match w.challenge.state {
        ChallengeState::Approved => Some(Outcome::Success),
        ChallengeState::Denied if w.challenge.outcome_reason.as_deref() == Some("card_blocked") => {
            Some(Outcome::Blocked)
        }
        ChallengeState::Denied => Some(Outcome::Denied),
        ChallengeState::Cancelled => Some(Outcome::Cancelled),
        ChallengeState::Expired => Some(Outcome::Expired),
        ChallengeState::Pending if w.view.challenge.card_blocked => {
            challenges::finish(app, &w.challenge, &w.auth, Ending::CardBlocked, now).await?;
            Some(Outcome::Blocked)
        }
        ChallengeState::Pending if w.challenge.expires_at <= now => {
            challenges::finish(app, &w.challenge, &w.auth, Ending::Expired, now).await?;
            Some(Outcome::Expired)
        }
        ChallengeState::Pending => None,
    };
    if let Some(outcome) = outcome {
        return Ok(Screen::Final(outcome));
    }
    let remaining_secs = ((w.challenge.expires_at - now) / 1000).max(0);
    Ok(match &w.view.code {
        None => Screen::Waiting { remaining_secs },
        Some(code) if code.no_contact => {
            let questions = app.storage.security_questions(&w.challenge.card_id).await?;
            if questions.is_empty() {
                Screen::NoQuestions
            } else if w.session.verified_at.is_none() {
                Screen::Questions { questions: questions.into_iter().map(|q| q.question).collect() }
            } else {
                Screen::Contact
            }
        }
        Some(code) => Screen::Code { code: code.clone(), remaining_secs: ((code.expires_at - now) / 1000).max(0) },
    })
}

/// Before the final page posts the CRes, the RReq should have gone to the
/// requestor (EMV order). Waits a little, in real time, for its first
/// attempt; the callback worker is quick, and it retries on its own.
pub async fn await_result_message(app: &App, acs_trans_id: &str) {
    for _ in 0..50 {
        match app.storage.callback_status(acs_trans_id).await {
            Ok(Some(status)) if status.state != "pending" || !status.attempts.is_empty() => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return,
        }
    }
}

/// The window's timers, run by the sweeper: no CReq in time after a C,
/// and no activity in an open window. Each ends a challenge at most once
/// (the ending is a conditional update on a pending challenge).
pub async fn sweep(app: &App) -> Result<usize, ApiError> {
    let now = app.now_ms();
    let config = &app.config.window;
    let mut ended = 0;
    if config.creq_timeout_secs > 0 {
        let before = now - config.creq_timeout_secs as i64 * 1000;
        for challenge in app.storage.challenges_without_window(before, 100).await? {
            ended += end(app, &challenge, Ending::CReqTimeout, now).await? as usize;
        }
    }
    if config.inactivity_secs > 0 {
        let before = now - config.inactivity_secs as i64 * 1000;
        for challenge in app.storage.challenges_idle_in_window(before, 100).await? {
            ended += end(app, &challenge, Ending::WindowInactive, now).await? as usize;
        }
    }
    // Sessions of purchases that ended a while ago: nothing can use them.
    app.storage.delete_ended_window_sessions(now - retention_ms(app), 500).await?;
    Ok(ended)
}

async fn end(app: &App, challenge: &Challenge, ending: Ending, now: i64) -> Result<bool, ApiError> {
    match app.storage.authentication(&challenge.acs_trans_id).await? {
        Some(auth) => challenges::finish(app, challenge, &auth, ending, now).await,
        None => Ok(false),
    }
}
