//! Records as the storage layer keeps them, shared by every backend.

use serde::{Deserialize, Serialize};

/// A merchant or 3DS server allowed to send AReqs. Its API key is kept
/// only as a keyed hash (not here: it is what finds the requestor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requestor {
    /// Its `threeDSRequestorID`.
    pub id: String,
    pub name: String,
    /// Key for the HMAC on result callbacks; shared with the requestor.
    pub callback_secret: StoredSecret,
    /// After a rotation, the secret it replaced: callbacks are signed with
    /// both until `until`, so the requestor can switch without a gap.
    pub previous_callback_secret: Option<PreviousSecret>,
    /// After a rotation, when the API key it replaced stops working.
    pub previous_key_expires_at: Option<i64>,
    pub created_at: i64,
}

/// A secret the server must use again (so cannot keep as a hash), as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredSecret {
    /// Sealed under a key derived from the master key (`Secrets::seal`).
    Sealed(Vec<u8>),
    /// In the clear, as versions before sealing stored it; sealed at the
    /// next start (`flows::admin::seal_callback_secrets`).
    Legacy(String),
}

impl StoredSecret {
    /// From its two columns: the sealed secret, and the clear one (`''`
    /// once sealed; the column stays so that nodes of the previous version
    /// keep answering during a rolling upgrade). `None` if both are empty.
    pub fn from_columns(sealed: Option<Vec<u8>>, clear: String) -> Option<Self> {
        match sealed {
            Some(sealed) => Some(Self::Sealed(sealed)),
            None if !clear.is_empty() => Some(Self::Legacy(clear)),
            None => None,
        }
    }

    /// Its two columns: sealed, clear.
    pub fn columns(&self) -> (Option<&[u8]>, &str) {
        match self {
            Self::Sealed(sealed) => (Some(sealed), ""),
            Self::Legacy(clear) => (None, clear),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousSecret {
    pub sealed: Vec<u8>,
    pub until: i64,
}

impl PreviousSecret {
    pub fn from_columns(sealed: Option<Vec<u8>>, until: Option<i64>) -> Option<Self> {
        Some(Self { sealed: sealed?, until: until? })
    }
}

/// A requestor credential that can be rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    ApiKey,
    CallbackSecret,
}

impl Credential {
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::ApiKey => "api_key",
            Credential::CallbackSecret => "callback_secret",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperatorRole {
    Support,
    Admin,
}

impl OperatorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Support => "support",
            OperatorRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "support" => Some(OperatorRole::Support),
            "admin" => Some(OperatorRole::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: String,
    pub name: String,
    pub role: OperatorRole,
    pub created_at: i64,
    /// A revoked operator's key no longer authenticates.
    pub revoked_at: Option<i64>,
}

impl Operator {
    /// How audit lines name this operator.
    pub fn actor(&self) -> String {
        format!("operator:{}", self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub id: String,
    pub pan_last4: String,
    pub language: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub blocked_at: Option<i64>,
    /// Wrong one-time codes in a row; at the configured limit the card's
    /// authentication is blocked until an operator unblocks it.
    pub failed_code_attempts: u32,
    pub created_at: i64,
}

impl Card {
    pub fn masked_pan(&self) -> String {
        format!("•••• {}", self.pan_last4)
    }

    /// This card with what an import row sets (a `None` keeps the card's
    /// own), and the names of the fields that changed.
    pub fn with_imported(&self, row: &Card) -> (Card, Vec<&'static str>) {
        let mut card = self.clone();
        let mut changed = Vec::new();
        for (name, field, value) in [
            ("language", &mut card.language, &row.language),
            ("email", &mut card.email, &row.email),
            ("phone", &mut card.phone, &row.phone),
        ] {
            if value.is_some() && value != field {
                field.clone_from(value);
                changed.push(name);
            }
        }
        (card, changed)
    }
}

#[derive(Debug, Clone)]
pub struct NewCard {
    pub card: Card,
    /// Keyed hash of the full card number.
    pub pan_hash: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentCode {
    /// The public first part of the code, used to find it.
    pub lookup: String,
    /// Keyed hash of the secret rest of the code.
    pub secret_hash: Vec<u8>,
    pub card_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub attempts_left: u32,
    pub used_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub public_key: Vec<u8>,
    pub platform: String,
    pub display_name: String,
    pub push_token: Option<String>,
    pub notifications_enabled: bool,
    /// The push provider refused its token; pushes wait for a new one.
    pub push_unreachable: bool,
    pub revoked_at: Option<i64>,
    pub created_at: i64,
}

impl Device {
    /// Whether a push can be sent to it at all.
    pub fn pushable(&self) -> bool {
        self.revoked_at.is_none() && self.notifications_enabled && self.push_token.is_some() && !self.push_unreachable
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeState {
    Pending,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl ChallengeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeState::Pending => "pending",
            ChallengeState::Approved => "approved",
            ChallengeState::Denied => "denied",
            ChallengeState::Expired => "expired",
            ChallengeState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Approved, Self::Denied, Self::Expired, Self::Cancelled]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One purchase as authenticated (an AReq and everything decided about it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub acs_trans_id: String,
    pub ds_trans_id: String,
    pub requestor_id: String,
    pub card_id: Option<String>,
    pub message_version: String,
    pub message_category: String,
    pub amount_minor: u64,
    pub currency: u16,
    pub exponent: u8,
    pub merchant_name: String,
    pub merchant_id: String,
    pub notification_url: String,
    pub trans_status: String,
    pub trans_status_reason: Option<String>,
    /// The risk engine's reason codes, and any later ones (e.g. why a
    /// challenge ended).
    pub reasons: Vec<String>,
    pub low_value_exempt: bool,
    pub authentication_value: Option<String>,
    pub eci: Option<String>,
    pub challenge_id: Option<String>,
    /// The browser's language and UTC offset (EMV `browserTZ`, minutes
    /// behind UTC), for messages to the cardholder.
    pub browser_language: Option<String>,
    pub browser_tz: Option<i32>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub id: String,
    pub acs_trans_id: String,
    pub card_id: String,
    pub nonce: Vec<u8>,
    pub state: ChallengeState,
    /// The number the checkout shows, when number matching applies.
    pub number_match: Option<u8>,
    /// The three numbers the app offers (one is `number_match`).
    pub number_choices: Option<Vec<u8>>,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by_device: Option<String>,
    /// Why it ended, as a reason code (e.g. `approved`, `not_me`,
    /// `number_mismatch`, `expired`).
    pub outcome_reason: Option<String>,
    /// When an unanswered push gives way to a one-time code.
    pub push_deadline: Option<i64>,
    /// Why a one-time code was offered (`no_device`, `notifications_off`,
    /// `token_rejected`, `push_timeout`, `cardholder_request`).
    pub fallback_reason: Option<String>,
}

/// A challenge with what a device is shown of it — its purchase, its card,
/// the requestor's name — read together (one lookup instead of four on
/// every device call about a challenge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChallenge {
    pub challenge: Challenge,
    pub authentication: Authentication,
    pub card: Card,
    /// `None` if the requestor is no longer known.
    pub requestor_name: Option<String>,
    /// Whether the device asking is enrolled for the challenge's card.
    pub device_enrolled: bool,
}

/// An AReq's whole outcome, stored in one transaction.
#[derive(Debug, Clone)]
pub struct NewAuthentication {
    pub authentication: Authentication,
    pub challenge: Option<Challenge>,
    pub audit: AuditEvent,
}

/// The end of a challenge and all it causes, applied at most once.
#[derive(Debug, Clone)]
pub struct ChallengeEnd {
    pub challenge_id: String,
    pub state: ChallengeState,
    pub outcome_reason: String,
    pub decided_by_device: Option<String>,
    pub at: i64,
    pub trans_status: String,
    pub trans_status_reason: Option<String>,
    pub authentication_value: Option<String>,
    pub eci: Option<String>,
    /// The result message for the requestor (built before the write, sent
    /// by the delivery worker after it).
    pub callback: Option<NewCallback>,
    /// A one-time code answered it: mark the code used and clear the
    /// card's count of wrong codes.
    pub code_verified: bool,
    pub audit: AuditEvent,
}

#[derive(Debug, Clone)]
pub struct NewCallback {
    pub acs_trans_id: String,
    pub requestor_id: String,
    pub url: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackJob {
    pub id: i64,
    pub acs_trans_id: String,
    pub requestor_id: String,
    pub url: String,
    pub body: String,
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackNext {
    Delivered,
    RetryAt(i64),
    GiveUp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackAttempt {
    pub attempt: u32,
    pub at: i64,
    pub http_status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackStatus {
    pub state: String,
    pub attempts: Vec<CallbackAttempt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxPush {
    pub id: i64,
    pub device_id: String,
    pub challenge_id: String,
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// An audit line: what happened, when, to what, and why. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub at: i64,
    pub kind: String,
    /// Who did it: `requestor:ID`, `device:ID`, `operator:ID`, `system`.
    pub actor: String,
    pub card_id: Option<String>,
    pub acs_trans_id: Option<String>,
    pub challenge_id: Option<String>,
    pub device_id: Option<String>,
    pub outcome: String,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(at: i64, kind: &str, actor: String, outcome: &str) -> Self {
        Self {
            at,
            kind: kind.into(),
            actor,
            card_id: None,
            acs_trans_id: None,
            challenge_id: None,
            device_id: None,
            outcome: outcome.into(),
            detail: serde_json::Value::Null,
        }
    }

    /// This event for each of `cards`, or as it is if there are none.
    pub fn per_card(&self, cards: &[String]) -> Vec<AuditEvent> {
        if cards.is_empty() {
            return vec![self.clone()];
        }
        cards.iter().map(|card| AuditEvent { card_id: Some(card.clone()), ..self.clone() }).collect()
    }

    /// What an import did to one card, as a line of its own.
    pub fn card_imported(&self, imported: &CardImported, changed: &[&str]) -> Option<AuditEvent> {
        let (kind, card) = match imported {
            CardImported::Created(card) => ("card.created", card),
            CardImported::Updated(card) => ("card.updated", card),
            CardImported::Unchanged(_) => return None,
        };
        Some(AuditEvent {
            kind: kind.into(),
            card_id: Some(card.clone()),
            detail: serde_json::json!({ "via": "import", "changed": changed }),
            ..self.clone()
        })
    }
}

/// An audit line as stored: its position in the log, and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Increases with every line appended; pages of a search follow it.
    pub id: i64,
    pub event: AuditEvent,
}

/// Which audit lines to read: those matching every field set, in the
/// order they were appended, after `after_id`, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Lines naming this card. A line about a purchase is found through
    /// the purchase (stored purchases are never deleted), so it must name
    /// the purchase's card, as every flow's line does.
    pub card_id: Option<String>,
    pub acs_trans_id: Option<String>,
    pub device_id: Option<String>,
    pub actor: Option<String>,
    pub kind: Option<String>,
    pub outcome: Option<String>,
    /// `at` from this time on (inclusive)…
    pub from: Option<i64>,
    /// …and before this one (exclusive).
    pub until: Option<i64>,
    pub after_id: Option<i64>,
    pub limit: u32,
}

/// What importing a card did, with the card's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardImported {
    Created(String),
    /// It existed; the row changed some of its fields.
    Updated(String),
    /// It existed with the row's fields already.
    Unchanged(String),
}

/// Which of a card's past the risk engine needs counted, and how far.
/// A count is only ever compared with its limit, so it stops there: the
/// cost of an AReq does not grow with the card's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The purchase's currency (the low-value tally is per currency).
    pub currency: u16,
    /// Start of the velocity window.
    pub recent_since: i64,
    /// Count authenticated (Y) purchases up to this many.
    pub authenticated_up_to: u32,
    /// Count AReqs within the window up to this many.
    pub recent_up_to: u32,
}

/// Everything an AReq needs of its card, read in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseCard {
    pub card: Card,
    pub activity: CardActivity,
    /// The card's devices, not revoked, in enrolment order.
    pub devices: Vec<Device>,
}

/// What the risk engine needs to know of a card's past.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardActivity {
    /// Earlier purchases authenticated (Y), up to the query's limit.
    pub authenticated: u64,
    /// AReqs since the velocity window began, up to the query's limit.
    pub recent: u32,
    /// Low-value exemptions in this currency since the last approved challenge.
    pub low_value_count: u32,
    pub low_value_sum: u64,
}

/// A contact channel for one-time codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContactChannel {
    Email,
    Sms,
}

impl ContactChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactChannel::Email => "email",
            ContactChannel::Sms => "sms",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Email, Self::Sms].into_iter().find(|c| c.as_str() == s)
    }
}

/// What a requestor reads about its purchase, at once: the authentication,
/// its challenge if it had one, and how its latest result callback fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseStatus {
    pub authentication: Authentication,
    pub challenge: Option<Challenge>,
    pub result_delivery: Option<CallbackStatus>,
}

/// What checking a typed code needs of a purchase, read at once: the
/// authentication, its challenge and card, and the code if one was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeCheck {
    pub authentication: Authentication,
    pub challenge: Challenge,
    pub card: Card,
    pub code: Option<OneTimeCode>,
}

/// A one-time code as stored: never the code itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeCode {
    pub challenge_id: String,
    /// With the server's key, derives the code again (for a resend).
    pub salt: Vec<u8>,
    pub code_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    pub resends: u32,
    pub last_sent_at: i64,
    pub used_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Sent,
    Failed,
    /// Not sent by policy (e.g. SMS to a country not allowed).
    Restricted,
    /// Not sent because the challenge ended first.
    Skipped,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::Restricted => "restricted",
            DeliveryState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed, Self::Restricted, Self::Skipped].into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub channel: ContactChannel,
    pub destination_masked: String,
    pub state: DeliveryState,
}

/// One message of a code to one contact (a resend is a new delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: i64,
    pub challenge_id: String,
    pub channel: ContactChannel,
    pub destination_masked: String,
    pub send_round: u32,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    Sent,
    RetryAt(i64),
    Failed,
    Skipped,
}

/// A new one-time code for a challenge, with its first deliveries.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub code: OneTimeCode,
    pub fallback_reason: String,
    /// The challenge stays answerable (by push too) until the code expires.
    pub challenge_expires_at: i64,
    pub deliveries: Vec<NewDelivery>,
    pub audit: AuditEvent,
}

/// What a wrong code did to the card's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeFailure {
    pub failures: u32,
    /// This failure reached the limit and blocked the card.
    pub blocked_now: bool,
}

/// A message as the development outbox recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMessage {
    pub id: i64,
    pub channel: ContactChannel,
    pub recipient: String,
    pub subject: Option<String>,
    pub body: String,
    pub created_at: i64,
}

/// A challenge window, opened by the first CReq for a purchase. The
/// browser acts on it with a random capability; only its keyed hash is
/// stored, and a session reaches no purchase but its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSession {
    pub acs_trans_id: String,
    pub token_hash: Vec<u8>,
    /// The requestor's `threeDSSessionData`, returned unchanged with the CRes.
    pub three_ds_session_data: Option<String>,
    /// EMV `challengeWindowSize` ("01"–"05").
    pub window_size: String,
    pub language: String,
    pub created_at: i64,
    /// The cardholder's last action in the window (page loads and forms,
    /// not the page's own polling).
    pub last_active_at: i64,
    /// When the security questions were answered in this window.
    pub verified_at: Option<i64>,
}

/// One of a card's security questions; the answer only as a keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityQuestion {
    pub position: u32,
    pub question: String,
    pub answer_hash: Vec<u8>,
}
