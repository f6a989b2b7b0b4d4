//! How purchases read to a person at a terminal.

use chrono::{DateTime, Utc};
use countersign_core::protocol::TransactionTerms;
use countersign_core::protocol::wire::ChallengeView;

/// `123.45 EUR (978)`: minor units placed by the exponent, then the
/// currency's letters when this tool knows them, and its ISO 4217 number.
pub fn amount(terms: &TransactionTerms) -> String {
    let exponent = usize::from(terms.exponent);
    let digits = format!("{:0>width$}", terms.amount_minor, width = exponent + 1);
    let (units, minor) = digits.split_at(digits.len() - exponent);
    let number = if minor.is_empty() { units.to_owned() } else { format!("{units}.{minor}") };
    match currency_letters(terms.currency) {
        Some(letters) => format!("{number} {letters} ({:03})", terms.currency),
        None => format!("{number} ({:03})", terms.currency),
    }
}

fn currency_letters(numeric: u16) -> Option<&'static str> {
    Some(match numeric {
        36 => "AUD",
        124 => "CAD",
        208 => "DKK",
        392 => "JPY",
        578 => "NOK",
        752 => "SEK",
        756 => "CHF",
        826 => "GBP",
        840 => "USD",
        978 => "EUR",
        _ => return None,
    })
}

/// `in 4m 05s` or `expired 12s ago`.
pub fn relative(at_ms: i64, now_ms: i64) -> String {
    let seconds = at_ms.saturating_sub(now_ms) / 1000;
    if seconds >= 0 { format!("in {}", span(seconds)) } else { format!("expired {} ago", span(-seconds)) }
}

/// The two largest units of a duration, as a person reads it.
fn span(seconds: i64) -> String {
    match seconds {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

pub fn timestamp(at_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(at_ms)
        .map_or_else(|| at_ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// The pending purchases as aligned columns.
pub fn table(challenges: &[ChallengeView], now_ms: i64) -> String {
    let mut rows = vec![["ID".to_owned(), "MERCHANT".into(), "AMOUNT".into(), "EXPIRES".into()]];
    rows.extend(challenges.iter().map(|c| {
        [c.challenge_id.clone(), c.terms.merchant_name.clone(), amount(&c.terms), relative(c.expires_at, now_ms)]
    }));
    let widths: Vec<usize> = (0..4).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            cells.join("  ").trim_end().to_owned() + "\n"
        })
        .collect()
}

/// Everything the cardholder is asked to approve.
pub fn details(view: &ChallengeView, now_ms: i64) -> String {
    let mut lines = vec![
        format!("Purchase      {}", view.challenge_id),
        format!("Card          {} ({})", view.card.masked_pan, view.card.issuer_name),
        format!("Merchant      {} (merchant id {})", view.terms.merchant_name, view.terms.merchant_id),
        format!("Requested by  {} ({})", view.requestor_name, view.terms.requestor_id),
        format!("Amount        {}", amount(&view.terms)),
        format!("Made          {}", timestamp(view.created_at)),
        format!("Expires       {} ({})", timestamp(view.expires_at), relative(view.expires_at, now_ms)),
    ];
    if let Some(choices) = &view.number_choices {
        let choices: Vec<String> = choices.iter().map(|n| format!("{n:02}")).collect();
        lines.push(format!(
            "Numbers       {}: approve with --number and the one the checkout page shows",
            choices.join(" ")
        ));
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(amount_minor: u64, currency: u16, exponent: u8) -> TransactionTerms {
        TransactionTerms {
            amount_minor,
            currency,
            exponent,
            merchant_name: "Shop".into(),
            requestor_id: "r".into(),
            merchant_id: "m".into(),
        }
    }

    #[test]
    fn amounts_use_the_exponent() {
        assert_eq!(amount(&terms(12_345, 978, 2)), "123.45 EUR (978)");
        assert_eq!(amount(&terms(5, 978, 2)), "0.05 EUR (978)");
        assert_eq!(amount(&terms(12_345, 392, 0)), "12345 JPY (392)");
        assert_eq!(amount(&terms(1_000, 48, 3)), "1.000 (048)");
    }

    #[test]
    fn expiry_reads_both_ways() {
        assert_eq!(relative(245_000, 0), "in 4m 05s");
        assert_eq!(relative(0, 12_000), "expired 12s ago");
        assert_eq!(relative(90_061_000, 0), "in 1d 1h");
    }
}
