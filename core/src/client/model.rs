//! What the app works with: enrolments, challenges, and its own history of
//! decisions. None of it carries a full card number.

use crate::protocol::wire::{ChallengeOutcome, ChallengeView, EnrolledCard};
use crate::protocol::{Decision, TransactionTerms};

/// One card enrolled on this device at one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// The server as the app gave it, normalised (no trailing slash).
    pub server_url: String,
    /// The id that server gave this device.
    pub device_id: String,
    pub card: EnrolledCard,
    /// When the server accepted the enrolment (server time, ms).
    pub enrolled_at: i64,
}

/// A purchase waiting for the cardholder, and the server that asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub server_url: String,
    pub view: ChallengeView,
}

/// A decision this device sent and the server accepted, kept locally so the
/// app can show "what did I approve" without a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub server_url: String,
    pub challenge_id: String,
    pub card: EnrolledCard,
    pub terms: TransactionTerms,
    pub decision: Decision,
    /// The server's verdict: an approval with the wrong number is `Denied`.
    pub outcome: ChallengeOutcome,
    pub decided_at: i64,
}
