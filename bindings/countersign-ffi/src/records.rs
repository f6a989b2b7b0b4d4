//! Records and enums of the API, mirroring core's types. Numbers the
//! cardholder picks are `u32` in the API (Kotlin `UInt`, Swift `UInt32`)
//! rather than bytes, and are checked on the way back in.

use countersign_core::client as core;
use countersign_core::protocol::{self, wire};

use crate::CountersignError;

/// The phone's operating system, sent at enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Platform {
    Ios,
    Android,
}

/// Why the cardholder denies a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum DenyReason {
    /// "This wasn't me": a suspected fraud.
    NotMe,
    /// The purchase is the cardholder's, but they no longer want it.
    Cancelled,
}

/// The cardholder's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Decision {
    Approve,
    Deny { reason: DenyReason },
}

/// How a challenge ended, as the server decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ChallengeOutcome {
    Approved,
    /// Denied as "not me", or approved with the wrong number.
    Denied,
    /// Nobody answered in time.
    Expired,
    /// Denied as "cancelled": the cardholder's purchase, no longer wanted.
    Cancelled,
}

/// A card as the device knows it: an opaque id and its last digits.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Card {
    pub card_id: String,
    /// e.g. `•••• 10005`
    pub masked_pan: String,
    pub issuer_name: String,
}

/// The purchase a decision is bound to (dynamic linking).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PurchaseTerms {
    /// In minor units of the currency: 12800 with exponent 2 is 128.00.
    pub amount_minor: u64,
    /// ISO 4217 numeric (978 = EUR).
    pub currency: u16,
    /// The currency's minor-unit exponent.
    pub exponent: u8,
    pub merchant_name: String,
    /// The 3-D Secure requestor that asked.
    pub requestor_id: String,
    /// The acquirer's id for the merchant.
    pub merchant_id: String,
}

/// One card enrolled on this device at one server.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Enrolment {
    pub server_url: String,
    pub device_id: String,
    pub card: Card,
    /// ms since the Unix epoch (server time).
    pub enrolled_at: i64,
}

/// A purchase waiting for the cardholder's answer. Pass it back unchanged
/// to `approve` or `deny`: the signature covers what it shows.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Challenge {
    pub server_url: String,
    pub challenge_id: String,
    pub card: Card,
    pub terms: PurchaseTerms,
    /// The merchant's 3-D Secure requestor, as a display name.
    pub requestor_name: String,
    /// When the purchase was made, ms since the Unix epoch.
    pub created_at: i64,
    /// After this the purchase can no longer be answered.
    pub expires_at: i64,
    /// The server's nonce for this challenge (opaque; signed).
    pub nonce: Vec<u8>,
    /// When present, show these numbers (0–99) and approve with the one the
    /// cardholder picks, which the checkout page shows.
    pub number_choices: Option<Vec<u32>>,
}

/// The server's verdict on a decision.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Receipt {
    pub challenge_id: String,
    pub outcome: ChallengeOutcome,
    pub decided_at: i64,
}

/// A decision this device sent, from the local history.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HistoryEntry {
    pub server_url: String,
    pub challenge_id: String,
    pub card: Card,
    pub terms: PurchaseTerms,
    pub decision: Decision,
    pub outcome: ChallengeOutcome,
    pub decided_at: i64,
}

/// Where and whether the servers send push notifications.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PushSettings {
    pub push_token: Option<String>,
    pub notifications_enabled: bool,
}

/// How to open a [`crate::Device`].
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceConfig {
    /// The device's SQLite database (created on first use), in the app's
    /// private storage, e.g. `Context.getNoBackupFilesDir()` or Application
    /// Support excluded from backups.
    pub database_path: String,
    pub platform: Platform,
    /// Decisions kept in the local history; older ones are dropped.
    #[uniffi(default = 500)]
    pub history_limit: u32,
}

impl From<Platform> for protocol::Platform {
    fn from(p: Platform) -> Self {
        match p {
            Platform::Ios => Self::Ios,
            Platform::Android => Self::Android,
        }
    }
}

impl From<DenyReason> for protocol::DenyReason {
    fn from(r: DenyReason) -> Self {
        match r {
            DenyReason::NotMe => Self::NotMe,
            DenyReason::Cancelled => Self::Cancelled,
        }
    }
}

impl From<protocol::DenyReason> for DenyReason {
    fn from(r: protocol::DenyReason) -> Self {
        match r {
            protocol::DenyReason::NotMe => Self::NotMe,
            protocol::DenyReason::Cancelled => Self::Cancelled,
        }
    }
}

impl From<protocol::Decision> for Decision {
    fn from(d: protocol::Decision) -> Self {
        match d {
            protocol::Decision::Approve => Self::Approve,
            protocol::Decision::Deny(reason) => Self::Deny { reason: reason.into() },
        }
    }
}

impl From<Decision> for protocol::Decision {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Approve => Self::Approve,
            Decision::Deny { reason } => Self::Deny(reason.into()),
        }
    }
}

impl From<wire::ChallengeOutcome> for ChallengeOutcome {
    fn from(o: wire::ChallengeOutcome) -> Self {
        match o {
            wire::ChallengeOutcome::Approved => Self::Approved,
            wire::ChallengeOutcome::Denied => Self::Denied,
            wire::ChallengeOutcome::Expired => Self::Expired,
            wire::ChallengeOutcome::Cancelled => Self::Cancelled,
        }
    }
}

impl From<wire::EnrolledCard> for Card {
    fn from(c: wire::EnrolledCard) -> Self {
        Self { card_id: c.card_id, masked_pan: c.masked_pan, issuer_name: c.issuer_name }
    }
}

impl From<Card> for wire::EnrolledCard {
    fn from(c: Card) -> Self {
        Self { card_id: c.card_id, masked_pan: c.masked_pan, issuer_name: c.issuer_name }
    }
}

impl From<protocol::TransactionTerms> for PurchaseTerms {
    fn from(t: protocol::TransactionTerms) -> Self {
        Self {
            amount_minor: t.amount_minor,
            currency: t.currency,
            exponent: t.exponent,
            merchant_name: t.merchant_name,
            requestor_id: t.requestor_id,
            merchant_id: t.merchant_id,
        }
    }
}

impl From<PurchaseTerms> for protocol::TransactionTerms {
    fn from(t: PurchaseTerms) -> Self {
        Self {
            amount_minor: t.amount_minor,
            currency: t.currency,
            exponent: t.exponent,
            merchant_name: t.merchant_name,
            requestor_id: t.requestor_id,
            merchant_id: t.merchant_id,
        }
    }
}

impl From<core::Enrolment> for Enrolment {
    fn from(e: core::Enrolment) -> Self {
        Self { server_url: e.server_url, device_id: e.device_id, card: e.card.into(), enrolled_at: e.enrolled_at }
    }
}

impl From<core::Challenge> for Challenge {
    fn from(c: core::Challenge) -> Self {
        let view = c.view;
        Self {
            server_url: c.server_url,
            challenge_id: view.challenge_id,
            card: view.card.into(),
            terms: view.terms.into(),
            requestor_name: view.requestor_name,
            created_at: view.created_at,
            expires_at: view.expires_at,
            nonce: view.nonce,
            number_choices: view.number_choices.map(|choices| choices.into_iter().map(u32::from).collect()),
        }
    }
}

impl TryFrom<Challenge> for core::Challenge {
    type Error = CountersignError;

    fn try_from(c: Challenge) -> Result<Self, Self::Error> {
        let number_choices = c.number_choices.map(|choices| choices.into_iter().map(number).collect()).transpose()?;
        Ok(Self {
            server_url: c.server_url,
            view: wire::ChallengeView {
                challenge_id: c.challenge_id,
                card: c.card.into(),
                terms: c.terms.into(),
                requestor_name: c.requestor_name,
                created_at: c.created_at,
                expires_at: c.expires_at,
                nonce: c.nonce,
                number_choices,
            },
        })
    }
}

/// A number the cardholder picks, which the protocol carries as one byte.
pub(crate) fn number(n: u32) -> Result<u8, CountersignError> {
    u8::try_from(n)
        .map_err(|_| CountersignError::BadPayload { reason: "a number-match value must be below 256".into() })
}

impl From<wire::DecisionReceipt> for Receipt {
    fn from(r: wire::DecisionReceipt) -> Self {
        Self { challenge_id: r.challenge_id, outcome: r.outcome.into(), decided_at: r.decided_at }
    }
}

impl From<core::HistoryEntry> for HistoryEntry {
    fn from(h: core::HistoryEntry) -> Self {
        Self {
            server_url: h.server_url,
            challenge_id: h.challenge_id,
            card: h.card.into(),
            terms: h.terms.into(),
            decision: h.decision.into(),
            outcome: h.outcome.into(),
            decided_at: h.decided_at,
        }
    }
}

impl From<wire::PushSettings> for PushSettings {
    fn from(s: wire::PushSettings) -> Self {
        Self { push_token: s.push_token, notifications_enabled: s.notifications_enabled }
    }
}
