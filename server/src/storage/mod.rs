//! Where the server keeps its state. Handlers see only the [`Storage`]
//! trait; each backend implements it with its own schema and migrations.
//!
//! Every method that changes more than one row does so in one transaction,
//! and every state change that must happen once (a challenge ending, an
//! enrolment code being spent) is a conditional update whose row count
//! decides who won.

mod audit_search;
mod columns;
mod events;
mod model;
pub mod postgres;
pub mod sqlite;

pub use events::{ChallengeEvents, ChallengeWatch};
pub use model::*;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database cannot be reached or is busy beyond its timeout.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule refused the write; names what was duplicated.
    #[error("already exists: {0}")]
    Conflict(&'static str),
    /// A stored value could not be read back (a bug or a damaged database).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// A long-lived stored value made with the master key, which a rotation
/// replaces as it is used (see `Storage::rekey`).
#[derive(Debug, Clone, Copy)]
pub enum Rekeyed<'a> {
    /// A card's number hash.
    PanHash,
    /// A requestor's API key hash, current or previous.
    RequestorApiKey,
    OperatorApiKey,
    /// A requestor's sealed callback secret, current or previous.
    CallbackSecret,
    /// The hash of one of this card's security answers.
    SecurityAnswer {
        card_id: &'a str,
    },
}

impl<'a> Rekeyed<'a> {
    /// The one statement that does it, for both backends: `?1` the old
    /// value, `?2` the new, `?3` the card (security answers only). A
    /// keyed hash of a secret, or a seal with a random nonce, names its
    /// row by itself.
    fn update_sql(self) -> &'static str {
        match self {
            Rekeyed::PanHash => "UPDATE cards SET pan_hash = ?2 WHERE pan_hash = ?1",
            Rekeyed::RequestorApiKey => {
                "UPDATE requestors SET \
                 api_key_hash = CASE WHEN api_key_hash = ?1 THEN ?2 ELSE api_key_hash END, \
                 previous_api_key_hash = CASE WHEN previous_api_key_hash = ?1 THEN ?2 ELSE previous_api_key_hash END \
                 WHERE api_key_hash = ?1 OR previous_api_key_hash = ?1"
            }
            Rekeyed::OperatorApiKey => "UPDATE operators SET api_key_hash = ?2 WHERE api_key_hash = ?1",
            Rekeyed::CallbackSecret => {
                "UPDATE requestors SET \
                 callback_secret_sealed = \
                   CASE WHEN callback_secret_sealed = ?1 THEN ?2 ELSE callback_secret_sealed END, \
                 previous_callback_secret_sealed = \
                   CASE WHEN previous_callback_secret_sealed = ?1 THEN ?2 ELSE previous_callback_secret_sealed END \
                 WHERE callback_secret_sealed = ?1 OR previous_callback_secret_sealed = ?1"
            }
            Rekeyed::SecurityAnswer { .. } => {
                "UPDATE security_questions SET answer_hash = ?2 WHERE card_id = ?3 AND answer_hash = ?1"
            }
        }
    }

    fn card_id(self) -> Option<&'a str> {
        match self {
            Rekeyed::SecurityAnswer { card_id } => Some(card_id),
            _ => None,
        }
    }
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Succeeds when the database answers.
    async fn ping(&self) -> StorageResult<()>;

    /// Wakes whoever waits for a challenge to end or get a code, on this
    /// node, whichever node made the change.
    fn challenge_events(&self) -> &ChallengeEvents;

    // Requestors and operators, found by the keyed hash of their API key.
    async fn create_requestor(&self, requestor: &Requestor, api_key_hash: &[u8]) -> StorageResult<()>;
    /// The requestor whose API key hashes to this: its current key, or the
    /// one a rotation replaced while that is still valid at `now`.
    async fn requestor_by_key(&self, api_key_hash: &[u8], now: i64) -> StorageResult<Option<Requestor>>;
    async fn requestor(&self, id: &str) -> StorageResult<Option<Requestor>>;
    /// Every requestor, by id.
    async fn requestors(&self) -> StorageResult<Vec<Requestor>>;
    /// Makes `new_value` (an API key hash or a sealed callback secret) the
    /// requestor's current credential; the one it replaces stays valid until
    /// `previous_until` (a previous one still in its overlap is dropped).
    /// `false` if there is no such requestor.
    async fn rotate_requestor_credential(
        &self,
        id: &str,
        credential: Credential,
        new_value: &[u8],
        previous_until: i64,
        audit: &AuditEvent,
    ) -> StorageResult<bool>;
    /// Ends a rotation's overlap now: the previous credential stops working.
    /// `false` if the requestor had none.
    async fn drop_previous_credential(
        &self,
        id: &str,
        credential: Credential,
        audit: &AuditEvent,
    ) -> StorageResult<bool>;
    /// Replaces a callback secret stored in the clear by its sealed form,
    /// unless it changed meanwhile; `false` then.
    async fn seal_legacy_callback_secret(&self, id: &str, legacy: &str, sealed: &[u8]) -> StorageResult<bool>;
    /// Replaces a keyed hash or sealed secret made under a previous master
    /// key by the same made under the current one (key rotation), unless
    /// it changed meanwhile; whether this call did.
    async fn rekey(&self, value: Rekeyed<'_>, old: &[u8], new: &[u8]) -> StorageResult<bool>;
    async fn create_operator(&self, operator: &Operator, api_key_hash: &[u8]) -> StorageResult<()>;
    /// The operator whose API key hashes to this, unless revoked.
    async fn operator_by_key(&self, api_key_hash: &[u8]) -> StorageResult<Option<Operator>>;
    /// Every operator, revoked ones too, oldest first.
    async fn operators(&self) -> StorageResult<Vec<Operator>>;
    /// `false` if there is no such operator or it was revoked already.
    async fn revoke_operator(&self, id: &str, now: i64, audit: &AuditEvent) -> StorageResult<bool>;

    // Cards.
    async fn create_card(&self, card: &NewCard) -> StorageResult<()>;
    async fn card(&self, id: &str) -> StorageResult<Option<Card>>;
    async fn card_by_pan_hash(&self, pan_hash: &[u8]) -> StorageResult<Option<Card>>;
    async fn card_activity(&self, card_id: &str, history: &HistoryQuery) -> StorageResult<CardActivity>;
    /// The card with this number, its activity and its devices, in one
    /// round trip (the AReq's reads).
    async fn card_for_purchase(&self, pan_hash: &[u8], history: &HistoryQuery) -> StorageResult<Option<PurchaseCard>>;
    /// Creates each card, or — when its number is registered already —
    /// sets the language and contacts the row has (a `None` keeps the
    /// card's own), all in one transaction. Each card created or changed is
    /// audited as a copy of `audit` with kind `card.created` or
    /// `card.updated` and the card's id.
    async fn import_cards(&self, cards: &[NewCard], audit: &AuditEvent) -> StorageResult<Vec<CardImported>>;
    /// `false` if there is no such card.
    async fn set_card_language(&self, card_id: &str, language: Option<&str>, audit: &AuditEvent)
    -> StorageResult<bool>;

    // Enrolment.
    async fn create_enrolment_code(&self, code: &EnrolmentCode) -> StorageResult<()>;
    async fn enrolment_code(&self, lookup: &str) -> StorageResult<Option<EnrolmentCode>>;
    /// Spends one attempt; returns the attempts left, `None` if none were.
    async fn spend_enrolment_attempt(&self, lookup: &str) -> StorageResult<Option<u32>>;
    /// Marks the code used and enrols the device for its card, creating the
    /// device unless one with the same public key exists. Returns the
    /// device as stored, or `Conflict` if the code was used meanwhile.
    async fn complete_enrolment(
        &self,
        lookup: &str,
        device: &Device,
        now: i64,
        audit: &AuditEvent,
    ) -> StorageResult<Device>;

    // Devices.
    async fn device(&self, id: &str) -> StorageResult<Option<Device>>;
    async fn device_cards(&self, device_id: &str) -> StorageResult<Vec<Card>>;
    async fn card_devices(&self, card_id: &str) -> StorageResult<Vec<Device>>;
    async fn set_push_settings(
        &self,
        device_id: &str,
        token: Option<&str>,
        enabled: bool,
        now: i64,
    ) -> StorageResult<()>;
    /// Returns whether the device was enrolled for the card.
    async fn unenrol_card(&self, device_id: &str, card_id: &str, audit: &AuditEvent) -> StorageResult<bool>;
    /// Revokes the device and ends all its enrolments; `audit` is written
    /// once per card it was enrolled for (with that card's id), or once if
    /// none. `false` if there is no such device or it was revoked already.
    async fn revoke_device(&self, device_id: &str, now: i64, audit: &AuditEvent) -> StorageResult<bool>;
    /// Records a request nonce; `false` if the device used it since
    /// `window_start` (a replay). One used before that is taken afresh.
    async fn remember_nonce(&self, device_id: &str, nonce: &[u8], now: i64, window_start: i64) -> StorageResult<bool>;
    /// Forgets up to `limit` nonces last seen before `before` (they can no
    /// longer make a replay); returns how many.
    async fn forget_nonces(&self, before: i64, limit: u32) -> StorageResult<u64>;

    // Authentications and challenges.
    /// `Conflict("threeDSServerTransID")` when the requestor reused one.
    async fn record_authentication(&self, new: &NewAuthentication) -> StorageResult<()>;
    async fn authentication(&self, acs_trans_id: &str) -> StorageResult<Option<Authentication>>;
    async fn challenge(&self, id: &str) -> StorageResult<Option<Challenge>>;
    /// A purchase with its challenge and its latest result callback's
    /// delivery, in one read.
    async fn purchase_status(&self, acs_trans_id: &str) -> StorageResult<Option<PurchaseStatus>>;
    /// A challenge as `device_id` sees it (whether or not it is enrolled
    /// for the challenge's card: the caller decides), in one read.
    async fn challenge_for_device(&self, id: &str, device_id: &str) -> StorageResult<Option<DeviceChallenge>>;
    /// The challenges still open (pending, not past expiry) on the device's
    /// cards, oldest first, in one read.
    async fn pending_challenges_for_device(&self, device_id: &str, now: i64) -> StorageResult<Vec<DeviceChallenge>>;
    /// Ends a pending challenge and applies everything it causes; `false`
    /// (and no change at all) if it was not pending any more.
    async fn end_challenge(&self, end: &ChallengeEnd) -> StorageResult<bool>;
    async fn expired_challenges(&self, now: i64, limit: u32) -> StorageResult<Vec<Challenge>>;

    // Push outbox (the default notifier's queue).
    async fn enqueue_push(
        &self,
        device_id: &str,
        challenge_id: &str,
        payload: &serde_json::Value,
        now: i64,
    ) -> StorageResult<()>;
    async fn outbox_pushes(&self, device_id: Option<&str>, limit: u32) -> StorageResult<Vec<OutboxPush>>;

    // Result callbacks.
    /// Takes up to `limit` due callbacks and hides them until `lease_until`,
    /// so a concurrent worker does not send them too.
    async fn claim_callbacks(&self, now: i64, lease_until: i64, limit: u32) -> StorageResult<Vec<CallbackJob>>;
    async fn record_callback_attempt(
        &self,
        job: &CallbackJob,
        attempt: &CallbackAttempt,
        next: CallbackNext,
    ) -> StorageResult<()>;
    async fn callback_status(&self, acs_trans_id: &str) -> StorageResult<Option<CallbackStatus>>;

    // Contacts and blocking.
    /// Replaces the card's contacts; `false` if there is no such card.
    async fn set_card_contacts(
        &self,
        card_id: &str,
        email: Option<&str>,
        phone: Option<&str>,
        audit: &AuditEvent,
    ) -> StorageResult<bool>;
    /// Clears the block and the count of wrong codes; `false` if no such card.
    async fn unblock_card(&self, card_id: &str, audit: &AuditEvent) -> StorageResult<bool>;
    async fn mark_push_unreachable(&self, device_id: &str, now: i64) -> StorageResult<()>;

    // One-time codes.
    /// Stores a challenge's code and its first deliveries, moves the
    /// challenge's expiry, records why; `false` (no change) if the challenge
    /// already has a code or is no longer pending.
    async fn start_code(&self, new: &NewCode) -> StorageResult<bool>;
    async fn one_time_code(&self, challenge_id: &str) -> StorageResult<Option<OneTimeCode>>;
    /// The purchase a typed code answers, with its challenge, card and code,
    /// in one read; `None` without a purchase or a challenge.
    async fn code_check(&self, acs_trans_id: &str) -> StorageResult<Option<CodeCheck>>;
    /// Records a resend (the same code, new deliveries) if the code is still
    /// at `expected_resends`; `false` if another resend got there first.
    async fn record_resend(
        &self,
        challenge_id: &str,
        expected_resends: u32,
        now: i64,
        deliveries: &[NewDelivery],
        audit: &AuditEvent,
    ) -> StorageResult<bool>;
    /// Counts a wrong code against the card, blocking it at `limit`.
    async fn record_code_failure(
        &self,
        card_id: &str,
        limit: u32,
        now: i64,
        audit: &AuditEvent,
    ) -> StorageResult<CodeFailure>;
    async fn deliveries(&self, challenge_id: &str) -> StorageResult<Vec<Delivery>>;
    async fn claim_deliveries(&self, now: i64, lease_until: i64, limit: u32) -> StorageResult<Vec<Delivery>>;
    async fn record_delivery_attempt(
        &self,
        delivery: &Delivery,
        at: i64,
        provider: &str,
        error: Option<&str>,
        next: DeliveryNext,
    ) -> StorageResult<()>;
    async fn challenges_past_push_deadline(&self, now: i64, limit: u32) -> StorageResult<Vec<Challenge>>;
    async fn record_outbox_message(
        &self,
        channel: ContactChannel,
        recipient: &str,
        subject: Option<&str>,
        body: &str,
        now: i64,
    ) -> StorageResult<()>;
    async fn outbox_messages(&self, limit: u32) -> StorageResult<Vec<OutboxMessage>>;

    // The challenge window.
    /// Opens the purchase's window session; `false` (no change) if one
    /// was opened already (a CReq is accepted once).
    async fn open_window_session(&self, session: &WindowSession) -> StorageResult<bool>;
    async fn window_session(&self, token_hash: &[u8]) -> StorageResult<Option<WindowSession>>;
    /// Records the cardholder's activity at `now` and the window's language;
    /// with `verified`, that the security questions were answered. Times
    /// only move forward, so racing requests cannot undo each other.
    async fn update_window_session(
        &self,
        acs_trans_id: &str,
        now: i64,
        language: &str,
        verified: bool,
    ) -> StorageResult<()>;
    /// Pending challenges created at or before `created_before` whose
    /// window was never opened (no CReq arrived).
    async fn challenges_without_window(&self, created_before: i64, limit: u32) -> StorageResult<Vec<Challenge>>;
    /// Pending challenges whose window saw no activity since `active_before`.
    async fn challenges_idle_in_window(&self, active_before: i64, limit: u32) -> StorageResult<Vec<Challenge>>;
    /// Deletes up to `limit` window sessions whose purchase ended (its
    /// challenge is no longer pending) at or before `ended_before`; returns
    /// how many went.
    async fn delete_ended_window_sessions(&self, ended_before: i64, limit: u32) -> StorageResult<u64>;

    // Security questions (for registering a contact during a purchase).
    /// Replaces the card's questions; `false` if there is no such card.
    async fn set_security_questions(
        &self,
        card_id: &str,
        questions: &[SecurityQuestion],
        audit: &AuditEvent,
    ) -> StorageResult<bool>;
    /// The card's questions in order.
    async fn security_questions(&self, card_id: &str) -> StorageResult<Vec<SecurityQuestion>>;

    // Audit.
    async fn append_audit(&self, event: &AuditEvent) -> StorageResult<()>;
    async fn audit_events(&self, filter: &AuditFilter) -> StorageResult<Vec<AuditRecord>>;
}
