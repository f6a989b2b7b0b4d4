//! Risk engine: decides whether a purchase is authenticated frictionlessly
//! ("automatic authentication", `transStatus` Y) or must be challenged
//! (`transStatus` C), and says why with stable reason codes.
//!
//! [`assess`] is a pure function of a [`RiskConfig`] (the `[risk]` table of
//! the server's TOML configuration) and a [`RiskInput`] (the purchase plus the
//! card's history, which the caller gathers from storage). It does no I/O and
//! reads no clock, so the same input always gives the same decision.
//!
//! # Order of rules
//!
//! Rules run in this order. Rules 1 to 3 end the evaluation when they match;
//! rules 4 and 5 both run, so a challenge can carry both of their reasons.
//!
//! 1. **Requestor mandate.** The 3DS requestor asked for a challenge
//!    (`threeDSRequestorChallengeInd` = `04`): Challenge with
//!    [`RiskReason::RequestorMandate`]. Nothing exempts it.
//! 2. **First purchases.** While the card has fewer than
//!    [`RiskConfig::first_purchases_exempt`] earlier authenticated purchases:
//!    Frictionless with [`RiskReason::FirstPurchaseExemption`], whatever the
//!    amount. Off by default (0); the Swedish `SafeKey` FAQ exempts the first 2.
//! 3. **Low-value exemption** (PSD2 RTS art. 16), only in the currencies
//!    listed under [`LowValueConfig::currencies`]: the amount is at most the
//!    single limit (EUR 30.00 by default) and, counting this purchase, the
//!    low-value exemptions granted since the card's last challenge stay
//!    within the cumulative amount (EUR 100.00) and/or count (5), as chosen
//!    by [`LowValueConfig::limit_by`]. The RTS lets the issuer pick either
//!    the amount or the count limit; `both` (the default) applies both.
//!    Frictionless with [`RiskReason::LowValueExemption`].
//! 4. **Amount threshold.** The amount is strictly above the currency's
//!    [`RiskConfig::challenge_above`] threshold: Challenge with
//!    [`RiskReason::AmountAboveThreshold`]. A currency with no threshold uses
//!    [`RiskConfig::default_challenge_above`] when set, otherwise it is
//!    challenged with [`RiskReason::NoThresholdForCurrency`].
//! 5. **Velocity.** Counting this purchase, the card would have more than
//!    [`VelocityConfig::max_authentications`] authentications within
//!    [`VelocityConfig::window_secs`]: Challenge with
//!    [`RiskReason::VelocityExceeded`].
//! 6. **Otherwise** Frictionless with [`RiskReason::LowRisk`].
//!
//! # What the caller does
//!
//! - Fill [`CardHistory`] from storage: `previous_authentications` counts the
//!   card's earlier purchases that were authenticated (Y);
//!   `recent_authentications` counts every authentication request on the
//!   card within the velocity window (`velocity.window_secs` before now),
//!   whatever its outcome, not this purchase — a burst of attempts is what
//!   velocity guards against; `low_value_since_challenge` is the tally for
//!   this purchase's currency since the card's last approved challenge.
//! - When an assessment grants the low-value exemption
//!   ([`RiskAssessment::grants_low_value_exemption`]), record it with the
//!   purchase, so the next tally includes it; an approved challenge (strong
//!   customer authentication applied) starts the tally afresh. The server
//!   derives the tally from stored authentications, so both follow from
//!   the data.
//!
//! Amounts are in the currency's minor units as given by `purchaseAmount`
//! with `purchaseExponent` (5000 = EUR 50.00; JPY has no minor unit, so
//! 10000 = JPY 10,000). Currencies are ISO 4217 numeric codes (978 = EUR).

use std::fmt;

use serde::{Deserialize, Serialize};

mod config;
#[cfg(test)]
mod tests;

pub use config::{LimitBy, LowValueConfig, LowValueLimits, RiskConfig, VelocityConfig};

/// What the engine is asked about: one purchase and the card's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RiskInput {
    /// Purchase amount in the currency's minor units (`purchaseAmount`).
    pub amount_minor: u64,
    /// ISO 4217 numeric currency code (`purchaseCurrency`), e.g. 978 for EUR.
    pub currency: u16,
    /// The requestor mandated a challenge (`threeDSRequestorChallengeInd` 04).
    pub challenge_mandated_by_requestor: bool,
    /// What the server knows about the card's earlier purchases.
    pub history: CardHistory,
}

/// The card's history as the rules need it; the caller counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardHistory {
    /// All earlier purchases on this card that were authenticated (Y).
    pub previous_authentications: u64,
    /// Earlier authentication requests on this card within the velocity
    /// window, whatever their outcome (this purchase not included).
    pub recent_authentications: u32,
    /// Frictionless low-value exemptions granted in this purchase's currency
    /// since the card's last challenge (this purchase not included).
    pub low_value_since_challenge: LowValueTally,
}

/// Running tally of low-value exemptions in one currency since the last
/// challenge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LowValueTally {
    /// Number of exemptions granted.
    pub count: u32,
    /// Sum of their amounts, in the currency's minor units.
    pub sum_minor: u64,
}

/// The engine's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskOutcome {
    /// Authenticate without involving the cardholder (`transStatus` Y).
    Frictionless,
    /// Ask the cardholder to approve (`transStatus` C).
    Challenge,
}

impl RiskOutcome {
    /// Stable `snake_case` name, as serialised.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Frictionless => "frictionless",
            Self::Challenge => "challenge",
        }
    }
}

impl fmt::Display for RiskOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the engine decided as it did. The `snake_case` names are stable: they
/// are stored in the audit trail and returned by the APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskReason {
    /// The 3DS requestor mandated a challenge (`threeDSRequestorChallengeInd` 04).
    RequestorMandate,
    /// One of the card's first `first_purchases_exempt` purchases.
    FirstPurchaseExemption,
    /// Low-value exemption (PSD2 RTS art. 16) within the single and cumulative limits.
    LowValueExemption,
    /// The amount is above the currency's challenge threshold.
    AmountAboveThreshold,
    /// No threshold is configured for the currency and there is no default.
    NoThresholdForCurrency,
    /// Too many authentications on the card within the velocity window.
    VelocityExceeded,
    /// No rule asked for a challenge.
    LowRisk,
}

impl RiskReason {
    /// Every reason, in rule order.
    pub const ALL: [RiskReason; 7] = [
        Self::RequestorMandate,
        Self::FirstPurchaseExemption,
        Self::LowValueExemption,
        Self::AmountAboveThreshold,
        Self::NoThresholdForCurrency,
        Self::VelocityExceeded,
        Self::LowRisk,
    ];

    /// Stable `snake_case` code, as serialised.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RequestorMandate => "requestor_mandate",
            Self::FirstPurchaseExemption => "first_purchase_exemption",
            Self::LowValueExemption => "low_value_exemption",
            Self::AmountAboveThreshold => "amount_above_threshold",
            Self::NoThresholdForCurrency => "no_threshold_for_currency",
            Self::VelocityExceeded => "velocity_exceeded",
            Self::LowRisk => "low_risk",
        }
    }
}

impl fmt::Display for RiskReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision with the reasons behind it (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskAssessment {
    /// Frictionless or challenge.
    pub outcome: RiskOutcome,
    /// Every rule that decided the outcome, in rule order.
    pub reasons: Vec<RiskReason>,
}

impl RiskAssessment {
    fn frictionless(reason: RiskReason) -> Self {
        Self { outcome: RiskOutcome::Frictionless, reasons: vec![reason] }
    }

    /// True when the cardholder must be challenged.
    #[must_use]
    pub fn is_challenge(&self) -> bool {
        self.outcome == RiskOutcome::Challenge
    }

    /// True when this decision used the low-value exemption: the caller must
    /// then add the purchase to the card's low-value tally for its currency.
    #[must_use]
    pub fn grants_low_value_exemption(&self) -> bool {
        self.reasons.contains(&RiskReason::LowValueExemption)
    }
}

/// Decide on one purchase. Pure: see the module documentation for the rules
/// and their order.
#[must_use]
pub fn assess(config: &RiskConfig, input: &RiskInput) -> RiskAssessment {
    let history = &input.history;

    // 1. The requestor's mandate overrides every exemption.
    if input.challenge_mandated_by_requestor {
        return RiskAssessment { outcome: RiskOutcome::Challenge, reasons: vec![RiskReason::RequestorMandate] };
    }

    // 2. The card's first N purchases.
    if history.previous_authentications < u64::from(config.first_purchases_exempt) {
        return RiskAssessment::frictionless(RiskReason::FirstPurchaseExemption);
    }

    // 3. Low-value exemption.
    if config.low_value.exempts(input.currency, input.amount_minor, history.low_value_since_challenge) {
        return RiskAssessment::frictionless(RiskReason::LowValueExemption);
    }

    // 4 and 5 both run so that every reason shows.
    let mut reasons = Vec::new();
    match config.challenge_threshold(input.currency) {
        Some(limit) if input.amount_minor > limit => {
            reasons.push(RiskReason::AmountAboveThreshold);
        }
        Some(_) => {}
        None => reasons.push(RiskReason::NoThresholdForCurrency),
    }
    if config.velocity.exceeded_by(history.recent_authentications) {
        reasons.push(RiskReason::VelocityExceeded);
    }

    if reasons.is_empty() {
        RiskAssessment::frictionless(RiskReason::LowRisk)
    } else {
        RiskAssessment { outcome: RiskOutcome::Challenge, reasons }
    }
}
