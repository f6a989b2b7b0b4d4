//! The `[risk]` table of the server's configuration file.
//!
//! Every table is optional and every key in it too: what is left out keeps
//! its default. Unknown keys are refused, so a typo cannot silently fall back
//! to a default. Listing a map (`challenge_above`, `low_value.currencies`)
//! replaces its defaults entirely rather than adding to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::LowValueTally;

/// Risk rules and thresholds (`[risk]`). See the `risk` module documentation
/// for the order in which the rules run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// How many of a card's first authenticated purchases are frictionless
    /// whatever their amount (a requestor's mandate still challenges them).
    /// 0 turns the exemption off; the Swedish `SafeKey` FAQ exempts the first 2.
    /// Default: 0.
    pub first_purchases_exempt: u32,

    /// Challenge threshold, in minor units, for currencies that
    /// `challenge_above` does not list. Leave it unset to challenge every
    /// purchase in an unlisted currency (reason `no_threshold_for_currency`).
    /// Minor units differ between currencies, so prefer listing each one.
    /// Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_challenge_above: Option<u64>,

    /// Challenge thresholds per currency: a purchase whose amount is strictly
    /// above the threshold is challenged (`amount_above_threshold`); an
    /// amount equal to it is not. Keys are ISO 4217 numeric codes written as
    /// 3-digit strings ("978" = EUR, "840" = USD, "826" = GBP, "392" = JPY,
    /// "752" = SEK); values are in the currency's minor units (5000 = 50.00;
    /// JPY has none, so 10000 = JPY 10,000). Default: "978" = 5000,
    /// "840" = 5000, "826" = 5000, "392" = 10000, "752" = 50000.
    pub challenge_above: BTreeMap<String, u64>,

    /// Velocity rule (`[risk.velocity]`).
    pub velocity: VelocityConfig,

    /// Low-value exemption of PSD2 RTS art. 16 (`[risk.low_value]`).
    pub low_value: LowValueConfig,
}

/// Velocity rule (`[risk.velocity]`): challenge a card that authenticates
/// too often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VelocityConfig {
    /// Length of the sliding window, in seconds, over which the server counts
    /// a card's authentications. Must be above 0. Default: 86400 (24 hours).
    pub window_secs: u64,

    /// Most authentications a card may have within the window, this purchase
    /// included; the next one is challenged (`velocity_exceeded`). Must be
    /// above 0. Default: 10.
    pub max_authentications: u32,
}

/// Low-value exemption (`[risk.low_value]`), PSD2 RTS art. 16: a purchase
/// at or under the single limit is frictionless as long as, counting it, the
/// exemptions granted since the card's last challenge stay within the
/// cumulative amount and/or count limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LowValueConfig {
    /// Turns the exemption on or off. Default: true.
    pub enabled: bool,

    /// Which running limit applies: "amount" (the cumulative sum), "count"
    /// (the number of exemptions) or "both". The RTS lets the issuer pick
    /// one of the first two; "both" applies both and is the strictest.
    /// Default: "both".
    pub limit_by: LimitBy,

    /// Most low-value exemptions since the card's last challenge, this
    /// purchase included (used when `limit_by` is "count" or "both").
    /// Default: 5.
    pub max_count: u32,

    /// Currencies where the exemption applies, keyed by ISO 4217 numeric code
    /// as a 3-digit string, with their limits in minor units
    /// (`[risk.low_value.currencies."978"]`). Purchases in any other currency
    /// are never low-value exempt. Default: only "978" (EUR) with
    /// `single_limit` = 3000 and `cumulative_limit` = 10000.
    pub currencies: BTreeMap<String, LowValueLimits>,
}

/// Low-value limits for one currency, in its minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LowValueLimits {
    /// Largest single purchase that can be exempt (inclusive).
    /// Default: 3000 (EUR 30.00).
    pub single_limit: u64,

    /// Largest sum of exempt purchases since the card's last challenge, this
    /// purchase included (used when `limit_by` is "amount" or "both"). Must
    /// not be below `single_limit`. Default: 10000 (EUR 100.00).
    pub cumulative_limit: u64,
}

/// Which running limit the low-value exemption applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitBy {
    /// Cumulative amount only.
    Amount,
    /// Number of exemptions only.
    Count,
    /// Both the cumulative amount and the number of exemptions.
    #[default]
    Both,
}

impl Default for RiskConfig {
    fn default() -> Self {
        let challenge_above = [("978", 5000), ("840", 5000), ("826", 5000), ("392", 10000), ("752", 50000)]
            .into_iter()
            .map(|(code, limit)| (code.to_owned(), limit))
            .collect();
        Self {
            first_purchases_exempt: 0,
            default_challenge_above: None,
            challenge_above,
            velocity: VelocityConfig::default(),
            low_value: LowValueConfig::default(),
        }
    }
}

impl Default for VelocityConfig {
    fn default() -> Self {
        Self { window_secs: 24 * 60 * 60, max_authentications: 10 }
    }
}

impl Default for LowValueConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            limit_by: LimitBy::Both,
            max_count: 5,
            currencies: BTreeMap::from([("978".to_owned(), LowValueLimits::default())]),
        }
    }
}

impl Default for LowValueLimits {
    fn default() -> Self {
        Self { single_limit: 3000, cumulative_limit: 10000 }
    }
}

/// Looks a currency up in a map keyed by 3-digit ISO 4217 numeric codes.
fn lookup<V>(map: &BTreeMap<String, V>, code: u16) -> Option<&V> {
    if code == 0 || code > 999 {
        return None;
    }
    map.get(&format!("{code:03}"))
}

fn is_currency_key(key: &str) -> bool {
    key.len() == 3 && key.bytes().all(|b| b.is_ascii_digit()) && key != "000"
}

impl RiskConfig {
    /// Refuse settings that make no sense.
    ///
    /// # Errors
    ///
    /// A message naming every offending key (several are joined with "; "):
    /// currency keys that are not 3 digits or are "000", a zero velocity
    /// window or maximum, a zero `max_count` when the count limit applies, and
    /// a low-value `single_limit` above its `cumulative_limit`.
    pub fn validate(&self) -> Result<(), String> {
        let mut errors = Vec::new();
        for key in self.challenge_above.keys().filter(|k| !is_currency_key(k)) {
            errors.push(format!(
                "risk.challenge_above.\"{key}\": not a 3-digit ISO 4217 numeric currency code (e.g. \"978\" for EUR)"
            ));
        }
        if self.velocity.window_secs == 0 {
            errors.push("risk.velocity.window_secs: must be above 0".to_owned());
        }
        if self.velocity.max_authentications == 0 {
            errors.push("risk.velocity.max_authentications: must be above 0".to_owned());
        }
        let low = &self.low_value;
        if low.max_count == 0 && low.limit_by != LimitBy::Amount {
            errors.push("risk.low_value.max_count: must be above 0 when limit_by is \"count\" or \"both\"".to_owned());
        }
        for (key, limits) in &low.currencies {
            if !is_currency_key(key) {
                errors.push(format!(
                    "risk.low_value.currencies.\"{key}\": not a 3-digit ISO 4217 numeric currency code (e.g. \"978\" for EUR)"
                ));
            }
            if limits.single_limit > limits.cumulative_limit {
                errors.push(format!(
                    "risk.low_value.currencies.\"{key}\": single_limit ({}) is above cumulative_limit ({})",
                    limits.single_limit, limits.cumulative_limit
                ));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    }

    /// The challenge threshold that applies to a currency, if any.
    #[must_use]
    pub fn challenge_threshold(&self, currency: u16) -> Option<u64> {
        lookup(&self.challenge_above, currency).copied().or(self.default_challenge_above)
    }
}

impl VelocityConfig {
    /// True when one more authentication on top of `recent` would exceed the
    /// maximum for the window.
    #[must_use]
    pub fn exceeded_by(&self, recent: u32) -> bool {
        // recent + 1 > max, without overflow.
        recent >= self.max_authentications
    }
}

impl LowValueConfig {
    /// The limits for a currency, when the exemption applies to it.
    #[must_use]
    pub fn limits_for(&self, currency: u16) -> Option<&LowValueLimits> {
        if !self.enabled {
            return None;
        }
        lookup(&self.currencies, currency)
    }

    /// True when a purchase of `amount` in `currency` is low-value exempt
    /// given the tally of exemptions since the card's last challenge.
    #[must_use]
    pub fn exempts(&self, currency: u16, amount: u64, tally: LowValueTally) -> bool {
        let Some(limits) = self.limits_for(currency) else {
            return false;
        };
        if amount > limits.single_limit {
            return false;
        }
        let amount_ok = tally.sum_minor.saturating_add(amount) <= limits.cumulative_limit;
        // Counting this purchase: count + 1 <= max_count.
        let count_ok = tally.count < self.max_count;
        match self.limit_by {
            LimitBy::Amount => amount_ok,
            LimitBy::Count => count_ok,
            LimitBy::Both => amount_ok && count_ok,
        }
    }
}
