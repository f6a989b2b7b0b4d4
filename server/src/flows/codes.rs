//! The one-time-code fallback: when a push cannot do the job, a six-digit
//! code goes to every contact of the card, by email and SMS.
//!
//! The code is never stored. A random salt is, and with the server's key it
//! derives the code again — so a resend repeats the same code (SafeKey FAQ
//! Q19) while a copy of the database reveals nothing. A typed code is
//! checked against a keyed hash in constant time.

use std::sync::Arc;

use axum::http::StatusCode;
use countersign_core::protocol::CanonicalWriter;
use countersign_core::protocol::wire::ErrorCode;
use serde::Serialize;

use crate::app::App;
use crate::delivery::{self, CodeMessage, DeliveryError, Language};
use crate::emv::Currency;
use crate::error::ApiError;
use crate::flows::challenges::{self, Ending};
use crate::secrets::{Keys, Purpose, Secrets, random_bytes};
use crate::storage::{
    AuditEvent, Authentication, Card, Challenge, ChallengeState, CodeCheck, ContactChannel, Delivery, DeliveryNext,
    DeliveryState, NewCode, NewDelivery, OneTimeCode,
};
use crate::worker;

pub const CODE_DIGITS: usize = 6;
const SALT_LEN: usize = 16;
/// How long a claimed send stays hidden from other workers.
const LEASE_MS: i64 = 60_000;

/// Why a challenge fell back to a one-time code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The card has no enrolled device.
    NoDevice,
    /// No enrolled device has notifications on (or a push token).
    NotificationsOff,
    /// The push provider refused every device's token.
    TokenRejected,
    /// Nobody answered the push in time.
    PushTimeout,
    /// Every push failed to go out.
    PushFailed,
    /// The cardholder chose "send me a code instead".
    CardholderRequest,
    /// The device the push went to was revoked (and no other can answer).
    DeviceRevoked,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::NoDevice => "no_device",
            Fallback::NotificationsOff => "notifications_off",
            Fallback::TokenRejected => "token_rejected",
            Fallback::PushTimeout => "push_timeout",
            Fallback::PushFailed => "push_failed",
            Fallback::CardholderRequest => "cardholder_request",
            Fallback::DeviceRevoked => "device_revoked",
        }
    }
}

/// Derives the code from its salt: HMAC output read as 32-bit numbers,
/// rejecting the few at the top of the range so every code is equally
/// likely (no modulo bias).
pub fn derive_code(keys: &Keys, challenge_id: &str, salt: &[u8]) -> String {
    const ZONE: u32 = u32::MAX - (u32::MAX % 1_000_000);
    for counter in 0u8.. {
        let input =
            CanonicalWriter::new("countersign.one-time-code.v1").str(challenge_id).bytes(salt).u8(counter).finish();
        let block = keys.keyed_hash(Purpose::OneTimeCodeDerivation, &input);
        for word in block.chunks_exact(4) {
            let v = u32::from_be_bytes(word.try_into().expect("4-byte chunk"));
            if v < ZONE {
                return format!("{:06}", v % 1_000_000);
            }
        }
    }
    unreachable!("a 256-bit block holds a usable word with overwhelming probability")
}

fn code_hash(keys: &Keys, challenge_id: &str, code: &str) -> Vec<u8> {
    keys.keyed_hash(Purpose::OneTimeCode, &code_input(challenge_id, code))
}

fn code_input(challenge_id: &str, code: &str) -> Vec<u8> {
    CanonicalWriter::new("countersign.one-time-code-check.v1").str(challenge_id).str(code).finish()
}

/// The code a stored one was derived as: under the key that made it,
/// which a rotation since may have made a previous one.
fn stored_code(secrets: &Secrets, challenge_id: &str, stored: &OneTimeCode) -> String {
    let derived = |keys: &Keys| derive_code(keys, challenge_id, &stored.salt);
    secrets
        .all()
        .map(|(_, keys)| derived(keys))
        .find(|code| secrets.verify(Purpose::OneTimeCode, &code_input(challenge_id, code), &stored.code_hash).is_some())
        // Its key dropped: no code sent now can verify; the current key's
        // is as good as any, and the code expires within minutes anyway.
        .unwrap_or_else(|| derived(secrets.current()))
}

/// Where a code goes: every contact of the card, SMS only to allowed
/// countries. Masked for display; the address itself is read at send time.
fn destinations(app: &App, card: &Card) -> Vec<NewDelivery> {
    let mut out = Vec::new();
    if let Some(email) = &card.email {
        out.push(NewDelivery {
            channel: ContactChannel::Email,
            destination_masked: delivery::mask_email(email),
            state: DeliveryState::Pending,
        });
    }
    if let Some(phone) = &card.phone {
        let allowed = app.config.sms.allows(phone);
        out.push(NewDelivery {
            channel: ContactChannel::Sms,
            destination_masked: delivery::mask_phone(phone, app.config.sms.visible_phone_digits),
            state: if allowed { DeliveryState::Pending } else { DeliveryState::Restricted },
        });
    }
    out
}

/// Issues the challenge's code and sends it, unless it already has one.
/// A card with no contact still gets a code (sent once a contact is
/// registered); its window shows the `no_contact` state.
pub async fn start(app: &App, challenge: &Challenge, reason: Fallback) -> Result<bool, ApiError> {
    let card = app.storage.card(&challenge.card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    let now = app.now_ms();
    let salt = random_bytes::<SALT_LEN>().to_vec();
    let code = derive_code(app.secrets.current(), &challenge.id, &salt);
    let expires_at = now + app.config.codes.validity_secs as i64 * 1000;
    let deliveries = destinations(app, &card);
    let mut audit = AuditEvent::new(now, "code.issued", "system".into(), reason.as_str());
    audit.card_id = Some(card.id.clone());
    audit.acs_trans_id = Some(challenge.acs_trans_id.clone());
    audit.challenge_id = Some(challenge.id.clone());
    audit.detail = serde_json::json!({
        "channels": deliveries.iter().map(|d| (d.channel.as_str(), d.state.as_str())).collect::<Vec<_>>(),
        "expiresAt": expires_at,
    });
    let new = NewCode {
        code: OneTimeCode {
            challenge_id: challenge.id.clone(),
            code_hash: code_hash(app.secrets.current(), &challenge.id, &code),
            salt,
            created_at: now,
            expires_at,
            resends: 0,
            last_sent_at: now,
            used_at: None,
        },
        fallback_reason: reason.as_str().into(),
        challenge_expires_at: expires_at,
        deliveries,
        audit,
    };
    let started = app.storage.start_code(&new).await?;
    if started {
        send_soon(app);
    }
    Ok(started)
}

/// Has this node's worker send what was just queued now rather than at
/// its next poll.
fn send_soon(app: &App) {
    app.wake.deliveries.notify_one();
}

/// The challenge and authentication behind a window, pending or not.
async fn load(app: &App, acs_trans_id: &str) -> Result<(Authentication, Challenge), ApiError> {
    let auth = app.storage.authentication(acs_trans_id).await?.ok_or_else(|| ApiError::not_found("authentication"))?;
    let id = auth.challenge_id.clone().ok_or_else(|| ApiError::not_found("challenge"))?;
    let challenge = app.storage.challenge(&id).await?.ok_or_else(|| ApiError::not_found("challenge"))?;
    Ok((auth, challenge))
}

fn ended(state: ChallengeState) -> ApiError {
    match state {
        ChallengeState::Expired => {
            ApiError::new(StatusCode::GONE, ErrorCode::ChallengeExpired, "this purchase has timed out; start it again")
        }
        _ => ApiError::conflict(ErrorCode::AlreadyDecided, "this purchase was already answered"),
    }
}

async fn pending(app: &App, acs_trans_id: &str) -> Result<(Authentication, Challenge), ApiError> {
    let (auth, challenge) = load(app, acs_trans_id).await?;
    still_pending(&challenge)?;
    Ok((auth, challenge))
}

/// A code can only answer a challenge still waiting for one.
fn still_pending(challenge: &Challenge) -> Result<(), ApiError> {
    match challenge.state {
        ChallengeState::Pending => Ok(()),
        state => Err(ended(state)),
    }
}

fn blocked() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::CardBlocked,
        "authentication for this card is blocked; call the number on the back of your card",
    )
}

/// "Send me a code instead."
pub async fn request(app: &App, acs_trans_id: &str) -> Result<CodeView, ApiError> {
    let (auth, challenge) = pending(app, acs_trans_id).await?;
    start(app, &challenge, Fallback::CardholderRequest).await?;
    view(app, &auth).await.map(|v| v.code.expect("a code was just issued or already existed"))
}

/// Sends the same code again, within its validity and the resend limits.
/// After expiry the purchase is over: the challenge ends N.
pub async fn resend(app: &App, acs_trans_id: &str) -> Result<CodeView, ApiError> {
    let (auth, challenge) = pending(app, acs_trans_id).await?;
    let code = app.storage.one_time_code(&challenge.id).await?.ok_or_else(not_issued)?;
    let now = app.now_ms();
    if code.expires_at <= now {
        challenges::finish(app, &challenge, &auth, Ending::CodeExpired, now).await?;
        return Err(expired());
    }
    let limits = &app.config.codes;
    if code.resends >= limits.max_resends {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ResendLimitReached,
            "the code cannot be sent again",
        )
        .with_attempts_left(0));
    }
    let next_at = code.last_sent_at + limits.resend_interval_secs as i64 * 1000;
    if now < next_at {
        let wait = ((next_at - now) as u64).div_ceil(1000);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ResendTooSoon,
            format!("wait {wait} s before asking again"),
        )
        .with_retry_after(wait));
    }
    let card = app.storage.card(&challenge.card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    let deliveries = destinations(app, &card);
    let mut audit = AuditEvent::new(now, "code.resent", "cardholder:window".into(), "ok");
    audit.card_id = Some(card.id.clone());
    audit.acs_trans_id = Some(auth.acs_trans_id.clone());
    audit.challenge_id = Some(challenge.id.clone());
    audit.detail = serde_json::json!({ "resend": code.resends + 1 });
    if !app.storage.record_resend(&challenge.id, code.resends, now, &deliveries, &audit).await? {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ResendTooSoon,
            "the code was just sent again",
        )
        .with_retry_after(limits.resend_interval_secs));
    }
    send_soon(app);
    view(app, &auth).await.map(|v| v.code.expect("the code exists"))
}

/// Registers the first contact of a card that had none, during a purchase
/// (the window checks the security questions first), and sends it the
/// code already issued for the purchase. Refused if the card has a contact.
pub async fn register_contact(
    app: &App,
    acs_trans_id: &str,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<CodeView, ApiError> {
    let (auth, challenge) = pending(app, acs_trans_id).await?;
    let card = app.storage.card(&challenge.card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    if card.email.is_some() || card.phone.is_some() {
        return Err(ApiError::conflict(ErrorCode::BadRequest, "this card already has a contact"));
    }
    if email.is_none() && phone.is_none() {
        return Err(ApiError::bad_request("an email or a phone is needed"));
    }
    crate::flows::admin::check_contacts(email, phone)?;
    let now = app.now_ms();
    let mut audit = AuditEvent::new(now, "card.contacts_changed", "cardholder:window".into(), "ok");
    audit.card_id = Some(card.id.clone());
    audit.acs_trans_id = Some(auth.acs_trans_id.clone());
    audit.challenge_id = Some(challenge.id.clone());
    audit.detail =
        serde_json::json!({ "hasEmail": email.is_some(), "hasPhone": phone.is_some(), "registeredInWindow": true });
    if !app.storage.set_card_contacts(&card.id, email, phone, &audit).await? {
        return Err(ApiError::not_found("card"));
    }
    let code = app.storage.one_time_code(&challenge.id).await?.ok_or_else(not_issued)?;
    let card = Card { email: email.map(str::to_owned), phone: phone.map(str::to_owned), ..card };
    let mut audit = AuditEvent::new(now, "code.resent", "cardholder:window".into(), "ok");
    audit.card_id = Some(card.id.clone());
    audit.acs_trans_id = Some(auth.acs_trans_id.clone());
    audit.challenge_id = Some(challenge.id.clone());
    audit.detail = serde_json::json!({ "resend": code.resends + 1, "toNewContact": true });
    app.storage.record_resend(&challenge.id, code.resends, now, &destinations(app, &card), &audit).await?;
    send_soon(app);
    view(app, &auth).await.map(|v| v.code.expect("the code exists"))
}

fn not_issued() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, ErrorCode::CodeNotIssued, "no code was sent for this purchase yet")
}

fn expired() -> ApiError {
    ApiError::new(StatusCode::GONE, ErrorCode::CodeExpired, "the code has expired; start the purchase again")
}

/// The outcome of a correct code.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub trans_status: String,
}

/// Checks a typed code. A wrong one counts against the card (never
/// saying more than "not correct" and how many tries are left); at the
/// limit the card is blocked and the purchase ends N.
pub async fn verify(app: &App, acs_trans_id: &str, typed: &str) -> Result<Verified, ApiError> {
    // Purchase, challenge, card and code in one read.
    let CodeCheck { authentication: auth, challenge, card, code } =
        app.storage.code_check(acs_trans_id).await?.ok_or_else(|| ApiError::not_found("challenge"))?;
    still_pending(&challenge)?;
    if card.blocked_at.is_some() {
        challenges::finish(app, &challenge, &auth, Ending::CardBlocked, app.now_ms()).await?;
        return Err(blocked());
    }
    let code = code.ok_or_else(not_issued)?;
    let now = app.now_ms();
    if code.expires_at <= now {
        challenges::finish(app, &challenge, &auth, Ending::CodeExpired, now).await?;
        return Err(expired());
    }
    let typed = typed.trim();
    let well_formed = typed.len() == CODE_DIGITS && typed.bytes().all(|b| b.is_ascii_digit());
    if well_formed
        && app.secrets.verify(Purpose::OneTimeCode, &code_input(&challenge.id, typed), &code.code_hash).is_some()
    {
        if challenges::finish(app, &challenge, &auth, Ending::CodeVerified, now).await? {
            return Ok(Verified { trans_status: "Y".into() });
        }
        let state = app.storage.challenge(&challenge.id).await?.map_or(ChallengeState::Expired, |c| c.state);
        return Err(ended(state));
    }

    let limit = app.config.codes.max_failures;
    let mut audit = AuditEvent::new(now, "code.rejected", "cardholder:window".into(), "wrong_code");
    audit.card_id = Some(card.id.clone());
    audit.acs_trans_id = Some(auth.acs_trans_id.clone());
    audit.challenge_id = Some(challenge.id.clone());
    let failure = app.storage.record_code_failure(&card.id, limit, now, &audit).await?;
    if failure.blocked_now {
        crate::metrics::card_blocked();
    }
    if failure.failures >= limit {
        challenges::finish(app, &challenge, &auth, Ending::CardBlocked, now).await?;
        return Err(blocked().with_attempts_left(0));
    }
    let left = limit - failure.failures;
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::CodeIncorrect,
        format!("the code is not correct; {left} attempts left"),
    )
    .with_attempts_left(left))
}

/// What the browser window shows about a purchase.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowView {
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    pub trans_status: String,
    pub merchant_name: String,
    pub amount_minor: u64,
    pub currency: u16,
    pub exponent: u8,
    pub challenge: ChallengeSummary,
    /// Present once a code was issued.
    pub code: Option<CodeView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeSummary {
    pub state: ChallengeState,
    pub expires_at: i64,
    /// The number to show for matching in the app, while pending.
    pub number_match: Option<u8>,
    /// Why a code was offered, if one was.
    pub fallback_reason: Option<String>,
    /// When an unanswered push falls back to a code.
    pub push_deadline: Option<i64>,
    pub card_blocked: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeView {
    pub expires_at: i64,
    /// Where the code went, masked, and how each send fared.
    pub destinations: Vec<DestinationView>,
    /// No email or phone is registered for the card: the cardholder must
    /// register one first.
    pub no_contact: bool,
    /// Every channel failed or is restricted: no code will arrive.
    pub undeliverable: bool,
    pub resends_left: u32,
    pub next_resend_at: i64,
    pub attempts_left: u32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DestinationView {
    pub channel: ContactChannel,
    pub masked: String,
    pub state: DeliveryState,
}

pub async fn view(app: &App, auth: &Authentication) -> Result<WindowView, ApiError> {
    let challenge_id = auth.challenge_id.clone().ok_or_else(|| ApiError::not_found("challenge"))?;
    let challenge = app.storage.challenge(&challenge_id).await?.ok_or_else(|| ApiError::not_found("challenge"))?;
    let card = app.storage.card(&challenge.card_id).await?.ok_or_else(|| ApiError::not_found("card"))?;
    let code = match app.storage.one_time_code(&challenge.id).await? {
        Some(code) => Some(code_view(app, &code, &card, app.storage.deliveries(&challenge.id).await?)),
        None => None,
    };
    let pending = challenge.state == ChallengeState::Pending;
    Ok(WindowView {
        acs_trans_id: auth.acs_trans_id.clone(),
        trans_status: auth.trans_status.clone(),
        merchant_name: auth.merchant_name.clone(),
        amount_minor: auth.amount_minor,
        currency: auth.currency,
        exponent: auth.exponent,
        challenge: ChallengeSummary {
            state: challenge.state,
            expires_at: challenge.expires_at,
            number_match: challenge.number_match.filter(|_| pending),
            fallback_reason: challenge.fallback_reason.clone(),
            push_deadline: challenge.push_deadline.filter(|_| pending),
            card_blocked: card.blocked_at.is_some(),
        },
        code,
    })
}

fn code_view(app: &App, code: &OneTimeCode, card: &Card, deliveries: Vec<Delivery>) -> CodeView {
    // The latest round per channel says where things stand.
    let mut latest: Vec<Delivery> = Vec::new();
    for d in deliveries {
        match latest.iter_mut().find(|l| l.channel == d.channel) {
            Some(l) if l.send_round <= d.send_round => *l = d,
            Some(_) => {}
            None => latest.push(d),
        }
    }
    let limits = &app.config.codes;
    let undeliverable = !latest.is_empty()
        && latest.iter().all(|d| matches!(d.state, DeliveryState::Failed | DeliveryState::Restricted));
    CodeView {
        expires_at: code.expires_at,
        no_contact: card.email.is_none() && card.phone.is_none(),
        undeliverable,
        destinations: latest
            .into_iter()
            .map(|d| DestinationView { channel: d.channel, masked: d.destination_masked, state: d.state })
            .collect(),
        resends_left: limits.max_resends.saturating_sub(code.resends),
        next_resend_at: code.last_sent_at + limits.resend_interval_secs as i64 * 1000,
        attempts_left: limits.max_failures.saturating_sub(card.failed_code_attempts),
    }
}

/// The window's view of a purchase.
pub async fn window(app: &App, acs_trans_id: &str) -> Result<WindowView, ApiError> {
    let (auth, _) = load(app, acs_trans_id).await?;
    view(app, &auth).await
}

// ---- delivery ----------------------------------------------------------

/// How one channel's messages leave the server.
pub enum Transport {
    /// Recorded in the database's message outbox (development).
    Outbox,
    /// Not sent at all.
    Off,
    /// A real provider (SMTP, an SMS API).
    Provider(Arc<dyn delivery::Sender>),
}

impl Transport {
    pub fn for_email(config: &delivery::EmailConfig) -> anyhow::Result<Self> {
        config.validate().map_err(|e| anyhow::anyhow!("email: {e}"))?;
        Ok(match config.transport {
            delivery::EmailTransport::Outbox => Transport::Outbox,
            delivery::EmailTransport::Off => Transport::Off,
            delivery::EmailTransport::Smtp => Self::provider(config.build(), "email")?,
        })
    }

    pub fn for_sms(config: &delivery::SmsConfig) -> anyhow::Result<Self> {
        config.validate().map_err(|e| anyhow::anyhow!("sms: {e}"))?;
        Ok(match config.transport {
            delivery::SmsTransport::Outbox => Transport::Outbox,
            delivery::SmsTransport::Off => Transport::Off,
            delivery::SmsTransport::Twilio => Self::provider(config.build(), "sms")?,
        })
    }

    fn provider(built: Result<Option<Arc<dyn delivery::Sender>>, String>, table: &str) -> anyhow::Result<Self> {
        match built {
            Ok(Some(sender)) => Ok(Transport::Provider(sender)),
            Ok(None) => Err(anyhow::anyhow!("{table}: the transport has no sender")),
            Err(e) => Err(anyhow::anyhow!("{table}: {e}")),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Transport::Outbox => "outbox",
            Transport::Off => "off",
            Transport::Provider(s) => s.provider(),
        }
    }
}

/// Sends one worker makes at once: each waits on a mail server or an SMS
/// gateway.
const SENDS_AT_ONCE: usize = 32;

/// Sends one message and records the attempt. A failure of ours (the
/// database) is logged; the lease runs out and the message goes again.
async fn send(app: App, job: Delivery) {
    if let Err(e) = deliver(&app, job).await {
        tracing::warn!(error = %e, "a one-time code could not be sent or recorded");
    }
}

async fn deliver(app: &App, job: Delivery) -> Result<(), ApiError> {
    let now = app.now_ms();
    let transport = match job.channel {
        ContactChannel::Email => &app.email,
        ContactChannel::Sms => &app.sms,
    };
    let Some(message) = message_for(app, &job, now).await? else {
        app.storage.record_delivery_attempt(&job, now, transport.name(), None, DeliveryNext::Skipped).await?;
        return Ok(());
    };
    let result = match transport {
        Transport::Off => Err(DeliveryError::Permanent("this channel is turned off".into())),
        Transport::Outbox => record_in_outbox(app, &message, now).await,
        Transport::Provider(sender) => sender.send(&message).await,
    };
    let attempt = job.attempts + 1;
    let (next, error) = match &result {
        Ok(()) => (DeliveryNext::Sent, None),
        Err(DeliveryError::Permanent(e)) => (DeliveryNext::Failed, Some(e.clone())),
        Err(DeliveryError::Transient(e)) => {
            let backoff = worker::backoff_ms(app.config.codes.delivery_initial_backoff_ms, attempt, u64::MAX);
            let next = if attempt >= app.config.codes.delivery_max_attempts {
                DeliveryNext::Failed
            } else {
                DeliveryNext::RetryAt(now + backoff)
            };
            (next, Some(e.clone()))
        }
    };
    if let Some(e) = &error {
        tracing::warn!(challenge_id = %job.challenge_id, channel = job.channel.as_str(), provider = transport.name(), attempt, error = %e, "one-time code send failed");
    }
    app.storage.record_delivery_attempt(&job, now, transport.name(), error.as_deref(), next).await?;
    let outcome = match (&result, next) {
        (Ok(()), _) => "sent",
        (Err(_), DeliveryNext::RetryAt(_)) => "retried",
        (Err(_), _) => "failed",
    };
    crate::metrics::code_delivery(job.channel.as_str(), transport.name(), outcome);
    Ok(())
}

/// The message for a delivery, with the code derived again; `None` when
/// there is nothing to send any more (challenge over, code expired, the
/// contact removed).
async fn message_for(app: &App, job: &Delivery, now: i64) -> Result<Option<CodeMessage>, ApiError> {
    let Some(challenge) = app.storage.challenge(&job.challenge_id).await? else { return Ok(None) };
    let Some(code) = app.storage.one_time_code(&challenge.id).await? else { return Ok(None) };
    if challenge.state != ChallengeState::Pending || code.expires_at <= now || code.used_at.is_some() {
        return Ok(None);
    }
    let Some(auth) = app.storage.authentication(&challenge.acs_trans_id).await? else { return Ok(None) };
    let Some(card) = app.storage.card(&challenge.card_id).await? else { return Ok(None) };
    let to = match job.channel {
        ContactChannel::Email => card.email.clone(),
        ContactChannel::Sms => card.phone.clone(),
    };
    let Some(to) = to else { return Ok(None) };
    let currency = Currency::from_numeric(auth.currency);
    Ok(Some(CodeMessage {
        channel: match job.channel {
            ContactChannel::Email => delivery::Channel::Email,
            ContactChannel::Sms => delivery::Channel::Sms,
        },
        to,
        language: Language::negotiate(card.language.as_deref(), auth.browser_language.as_deref()),
        code: stored_code(&app.secrets, &challenge.id, &code),
        issuer_name: app.config.issuer.name.clone(),
        merchant_name: auth.merchant_name.clone(),
        amount_minor: auth.amount_minor,
        currency_alpha: currency.map_or_else(|| format!("{:03}", auth.currency), |c| c.alpha.to_owned()),
        exponent: auth.exponent,
        expires_at_ms: code.expires_at,
        tz_offset_minutes: auth.browser_tz,
    }))
}

async fn record_in_outbox(app: &App, m: &CodeMessage, now: i64) -> Result<(), DeliveryError> {
    let (channel, subject, body) = match m.channel {
        delivery::Channel::Email => {
            let content = delivery::render_email(m);
            (ContactChannel::Email, Some(content.subject), content.text)
        }
        delivery::Channel::Sms => (ContactChannel::Sms, None, delivery::render_sms(m)),
    };
    app.storage
        .record_outbox_message(channel, &m.to, subject.as_deref(), &body, now)
        .await
        .map_err(|e| DeliveryError::Transient(e.to_string()))
}

/// Sends one-time codes as they come due, until `shutdown` fires.
pub async fn run_delivery_worker(app: App, shutdown: tokio::sync::watch::Receiver<bool>) {
    let interval = std::time::Duration::from_millis(app.config.codes.delivery_poll_interval_ms.max(10));
    let app = &app;
    let claim = |n| async move {
        let now = app.now_ms();
        app.storage.claim_deliveries(now, now + LEASE_MS, u32::try_from(n).unwrap_or(u32::MAX)).await
    };
    let send = |job| send(app.clone(), job);
    worker::work_queue("one-time code sends", SENDS_AT_ONCE, interval, &app.wake.deliveries, shutdown, claim, send)
        .await
}

/// Falls back to a code for every push left unanswered past its deadline.
pub async fn fall_back_unanswered_pushes(app: &App) -> Result<usize, ApiError> {
    let now = app.now_ms();
    let mut started = 0;
    for challenge in app.storage.challenges_past_push_deadline(now, 100).await? {
        // A purchase whose time is already up (the sweep came late, say
        // after downtime) ends as expired rather than starting a code.
        if challenge.expires_at <= now {
            continue;
        }
        if start(app, &challenge, Fallback::PushTimeout).await? {
            started += 1;
        }
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_repeat_for_the_same_salt() {
        let secrets = Secrets::from_master_key(&[3; 32]);
        let s = secrets.current();
        let a = derive_code(s, "c", b"salt");
        assert_eq!(a.len(), 6);
        assert!(a.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(a, derive_code(s, "c", b"salt"));
        assert_ne!(code_hash(s, "c", &a), code_hash(s, "other", &a), "a hash is bound to its challenge");
    }

    #[test]
    fn a_code_made_before_a_rotation_is_sent_again_as_it_was_and_still_verifies() {
        let before = Secrets::from_master_key(&[5; 32]);
        let code = derive_code(before.current(), "c", b"salt");
        let stored = OneTimeCode {
            challenge_id: "c".into(),
            salt: b"salt".to_vec(),
            code_hash: code_hash(before.current(), "c", &code),
            created_at: 0,
            expires_at: 1,
            resends: 0,
            last_sent_at: 0,
            used_at: None,
        };
        let after = Secrets::from_master_keys(&[6; 32], &[[5; 32]]).unwrap();
        assert_ne!(derive_code(after.current(), "c", b"salt"), code, "the new key alone derives another code");
        assert_eq!(stored_code(&after, "c", &stored), code);
        assert!(after.verify(Purpose::OneTimeCode, &code_input("c", &code), &stored.code_hash).is_some());
    }

    #[test]
    fn codes_spread_over_all_digits() {
        let secrets = Secrets::from_master_key(&[4; 32]);
        let s = secrets.current();
        let mut first_digit = [0u32; 10];
        for i in 0..5000u32 {
            let code = derive_code(s, "c", &i.to_be_bytes());
            first_digit[(code.as_bytes()[0] - b'0') as usize] += 1;
        }
        // Each leading digit should take about a tenth (500); a biased
        // derivation would skew the low digits.
        assert!(first_digit.iter().all(|n| (380..=620).contains(n)), "{first_digit:?}");
    }
}
