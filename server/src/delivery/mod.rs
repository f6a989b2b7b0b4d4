//! Delivery of one-time codes to cardholders by email (SMTP) and SMS (a
//! Twilio-compatible Messages API), when a push cannot do the job.
//!
//! This module knows how to word, mask and send a message; it knows nothing
//! of challenges or storage. The caller creates the code, decides where it
//! goes, records attempts and retries [`DeliveryError::Transient`] failures.
//! The zero-config "outbox" transport is the caller's too: for it,
//! [`EmailConfig::build`] and [`SmsConfig::build`] return `None`.
//!
//! Nothing this module returns or logs carries the code, the email address
//! or the phone number, except the message sent to the cardholder.

mod config;
mod format;
mod render;
mod sms;
mod smtp;

#[cfg(test)]
mod sms_tests;
#[cfg(test)]
mod smtp_tests;

use std::fmt;

use crate::error::describe_chain as describe;
use serde::{Deserialize, Serialize};

pub use self::config::{EmailConfig, EmailSecurity, EmailTransport, SmsConfig, SmsTransport};
pub use self::format::{format_amount, mask_email, mask_phone};
pub use self::render::{EmailContent, render_email, render_sms};
pub use self::sms::SmsSender;
pub use self::smtp::SmtpSender;

/// Where a one-time code is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The languages cardholder messages are written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    Ja,
    #[default]
    En,
    Sv,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Ja => "ja",
            Language::En => "en",
            Language::Sv => "sv",
        }
    }

    /// The language of a BCP 47 tag ("ja", "ja-JP", "sv_SE", "EN-gb"), or
    /// of the first supported one in an `Accept-Language` list.
    pub fn from_tag(tag: &str) -> Option<Language> {
        tag.split(',').find_map(|item| {
            let range = item.split(';').next().unwrap_or_default().trim();
            let primary = range.split(['-', '_']).next().unwrap_or_default();
            match primary.to_ascii_lowercase().as_str() {
                "ja" => Some(Language::Ja),
                "en" => Some(Language::En),
                "sv" => Some(Language::Sv),
                _ => None,
            }
        })
    }

    /// The card's registered language wins; then the browser's
    /// (EMV `browserLanguage`, or an `Accept-Language` header); else English.
    pub fn negotiate(card: Option<&str>, browser: Option<&str>) -> Language {
        card.and_then(Language::from_tag).or_else(|| browser.and_then(Language::from_tag)).unwrap_or_default()
    }
}

/// One one-time code on its way to one contact.
#[derive(Clone)]
pub struct CodeMessage {
    pub channel: Channel,
    /// Email address, or phone number in E.164 ("+46701234567").
    pub to: String,
    pub language: Language,
    /// The 6-digit code.
    pub code: String,
    pub issuer_name: String,
    pub merchant_name: String,
    /// Purchase amount in minor units of the currency.
    pub amount_minor: u64,
    /// ISO 4217 alphabetic code ("EUR").
    pub currency_alpha: String,
    /// ISO 4217 minor-unit exponent (2 for EUR, 0 for JPY, 3 for BHD).
    pub exponent: u8,
    /// When the code stops working, in Unix milliseconds.
    pub expires_at_ms: i64,
    /// EMV `browserTZ`: minutes *behind* UTC (UTC+9 is -540). `None` shows
    /// times in UTC.
    pub tz_offset_minutes: Option<i32>,
}

/// Leaves out the code and the recipient: this is what ends up in logs.
impl fmt::Debug for CodeMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeMessage")
            .field("channel", &self.channel)
            .field("to", &"<redacted>")
            .field("language", &self.language)
            .field("code", &"<redacted>")
            .field("issuer_name", &self.issuer_name)
            .field("merchant_name", &self.merchant_name)
            .field("amount_minor", &self.amount_minor)
            .field("currency_alpha", &self.currency_alpha)
            .field("exponent", &self.exponent)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("tz_offset_minutes", &self.tz_offset_minutes)
            .finish()
    }
}

/// Why a message was not handed over. The text never contains the code,
/// the address or the number, so it can be stored and shown to operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Retrying the same message will not help: the recipient was refused,
    /// the credentials are wrong, or the message is malformed.
    #[error("delivery failed for good: {0}")]
    Permanent(String),
    /// The provider or the network failed this time: retry with backoff.
    #[error("delivery failed for now: {0}")]
    Transient(String),
}

impl DeliveryError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::Permanent(_))
    }
}

/// A way of getting a code to a cardholder.
#[async_trait::async_trait]
pub trait Sender: Send + Sync + 'static {
    /// Hands one message to the provider; `Ok` means the provider accepted
    /// it, not that the cardholder has read it.
    async fn send(&self, msg: &CodeMessage) -> Result<(), DeliveryError>;
    fn channel(&self) -> Channel;
    /// A short name for logs and the delivery record ("smtp", "twilio").
    fn provider(&self) -> &'static str;
}

/// Removes the code and the recipient from text that came back from a
/// provider (SMTP replies and SMS API errors often echo the recipient, in
/// any case or format).
fn scrub(text: &str, msg: &CodeMessage) -> String {
    let to = msg.to.trim();
    let mut secrets = vec![to.to_owned(), msg.code.clone()];
    match msg.channel {
        Channel::Email => {
            if let Some((local, _)) = to.rsplit_once('@') {
                secrets.push(local.to_owned());
            }
        }
        Channel::Sms => {
            let digits: String = to.chars().filter(char::is_ascii_digit).collect();
            // The tail also catches national forms ("09012345678").
            let tail = digits[digits.len().saturating_sub(7)..].to_owned();
            secrets.extend([digits, tail]);
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        out = replace_ignoring_ascii_case(&out, secret, "[redacted]");
    }
    out
}

fn replace_ignoring_ascii_case(haystack: &str, needle: &str, with: &str) -> String {
    // ASCII lowercasing keeps every byte offset, so indices carry over.
    let lower = haystack.to_ascii_lowercase();
    let mut out = String::with_capacity(haystack.len());
    let mut last = 0;
    for (at, _) in lower.match_indices(&needle.to_ascii_lowercase()) {
        out.push_str(&haystack[last..at]);
        out.push_str(with);
        last = at + needle.len();
    }
    out.push_str(&haystack[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sample(channel: Channel, language: Language) -> CodeMessage {
        CodeMessage {
            channel,
            to: match channel {
                Channel::Email => "taro.yamada@example.jp".into(),
                Channel::Sms => "+819012345678".into(),
            },
            language,
            code: "482913".into(),
            issuer_name: "Countersign Demo Bank".into(),
            merchant_name: "Example Shop".into(),
            amount_minor: 5_400,
            currency_alpha: "JPY".into(),
            exponent: 0,
            // 2025-03-14T06:42:00Z
            expires_at_ms: 1_741_934_520_000,
            tz_offset_minutes: Some(-540),
        }
    }

    #[test]
    fn language_negotiation() {
        assert_eq!(Language::negotiate(Some("ja"), Some("sv-SE")), Language::Ja);
        assert_eq!(Language::negotiate(None, Some("sv-SE")), Language::Sv);
        assert_eq!(Language::negotiate(None, Some("ja-JP")), Language::Ja);
        assert_eq!(Language::negotiate(None, Some("en-GB")), Language::En);
        assert_eq!(Language::negotiate(Some("de"), Some("SV_se")), Language::Sv);
        assert_eq!(Language::negotiate(Some("de-DE"), Some("fr-FR")), Language::En);
        assert_eq!(Language::negotiate(None, None), Language::En);
        assert_eq!(Language::negotiate(Some(""), Some("")), Language::En);
        assert_eq!(Language::negotiate(None, Some("de-DE,de;q=0.9,sv;q=0.8,en;q=0.7")), Language::Sv);
        assert_eq!(serde_json::to_string(&Language::Ja).unwrap(), "\"ja\"".to_owned());
        assert_eq!(serde_json::to_string(&Channel::Sms).unwrap(), "\"sms\"");
        assert_eq!(Channel::Email.as_str(), "email");
    }

    #[test]
    fn debug_hides_code_and_recipient() {
        for channel in [Channel::Email, Channel::Sms] {
            let msg = sample(channel, Language::En);
            let debug = format!("{msg:?}");
            assert!(!debug.contains(&msg.code), "{debug}");
            assert!(!debug.contains(&msg.to), "{debug}");
            assert!(!debug.contains("12345678"), "{debug}");
            assert!(debug.contains("Example Shop"), "{debug}");
        }
    }

    #[test]
    fn scrub_removes_what_providers_echo() {
        let sms = sample(Channel::Sms, Language::En);
        let text = "The 'To' number +819012345678 (819012345678) is not valid; body had 482913";
        let scrubbed = scrub(text, &sms);
        assert!(!scrubbed.contains("12345678"), "{scrubbed}");
        assert!(!scrubbed.contains("482913"), "{scrubbed}");

        let email = sample(Channel::Email, Language::En);
        let text = "550 5.1.1 <Taro.Yamada@Example.JP>: Recipient address rejected";
        let scrubbed = scrub(text, &email);
        assert!(!scrubbed.to_lowercase().contains("taro"), "{scrubbed}");
        assert!(scrubbed.contains("Recipient address rejected"));
    }

    #[test]
    fn error_messages_never_carry_the_code() {
        let msg = sample(Channel::Sms, Language::En);
        let e = DeliveryError::Permanent(scrub("rejected 482913 for +819012345678", &msg));
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("482913") && !shown.contains("12345678"), "{shown}");
        assert!(e.is_permanent());
        assert!(!DeliveryError::Transient("x".into()).is_permanent());
    }
}
