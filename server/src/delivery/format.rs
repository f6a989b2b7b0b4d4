//! Amounts, times and masked contacts as cardholders read them.

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};

use super::Language;

/// Shown in place of hidden characters.
const BULLET: char = '•';
/// How many bullets stand for the hidden part of a phone number: always the
/// same, so the mask does not give away the number's length.
const PHONE_BULLETS: usize = 5;

/// An amount in minor units, written the way the language writes money:
/// `128.00 EUR` and `5,400 JPY` in English, `5,400円` and `128.00 EUR` in
/// Japanese, `1 299,00 SEK` in Swedish. The group separator in Swedish is a
/// plain space, which every SMS alphabet has.
pub fn format_amount(minor: u64, exponent: u8, alpha: &str, lang: Language) -> String {
    let digits = minor.to_string();
    let exponent = usize::from(exponent);
    let digits = format!("{digits:0>width$}", width = exponent + 1);
    let (whole, fraction) = digits.split_at(digits.len() - exponent);
    let (group, decimal) = match lang {
        Language::Ja | Language::En => (',', '.'),
        Language::Sv => (' ', ','),
    };
    let mut number = group_thousands(whole, group);
    if !fraction.is_empty() {
        number.push(decimal);
        number.push_str(fraction);
    }
    let alpha = alpha.trim();
    if lang == Language::Ja && alpha.eq_ignore_ascii_case("JPY") && exponent == 0 {
        format!("{number}円")
    } else {
        format!("{number} {alpha}")
    }
}

fn group_thousands(whole: &str, separator: char) -> String {
    // `whole` is ASCII digits: byte slices are characters.
    let first = match whole.len() % 3 {
        0 => whole.len().min(3),
        short => short,
    };
    let mut out = whole[..first].to_owned();
    for group in whole.as_bytes()[first..].chunks(3) {
        out.push(separator);
        out.push_str(std::str::from_utf8(group).unwrap_or_default());
    }
    out
}

/// The first letter of the mailbox and the whole domain:
/// `taro@example.jp` → `t•••@example.jp`.
pub fn mask_email(addr: &str) -> String {
    let bullets = BULLET.to_string().repeat(3);
    match addr.trim().rsplit_once('@') {
        Some((local, domain)) if !domain.is_empty() => match local.chars().next() {
            Some(first) => format!("{first}{bullets}@{domain}"),
            None => format!("{bullets}@{domain}"),
        },
        _ => bullets,
    }
}

/// Only the last `visible` digits of a phone number: `+819012345678` with 5
/// → `•••••45678`. Never more than half of the digits are shown, so a short
/// number is not given away whole.
pub fn mask_phone(e164: &str, visible: usize) -> String {
    let digits: Vec<char> = e164.chars().filter(char::is_ascii_digit).collect();
    let shown = visible.min(digits.len() / 2);
    let tail: String = digits[digits.len() - shown..].iter().collect();
    format!("{}{tail}", BULLET.to_string().repeat(PHONE_BULLETS))
}

/// When a code expires, in the cardholder's local time.
pub(super) struct Expiry {
    local: DateTime<FixedOffset>,
    /// "UTC", "UTC+9", "UTC+5:30", "UTC-3".
    zone: String,
}

impl Expiry {
    /// `tz_offset_minutes` is EMV `browserTZ`: minutes *behind* UTC.
    pub(super) fn new(expires_at_ms: i64, tz_offset_minutes: Option<i32>) -> Expiry {
        let utc = DateTime::<Utc>::from_timestamp_millis(expires_at_ms).unwrap_or_default();
        let east_seconds = tz_offset_minutes.and_then(|behind| behind.checked_mul(-60)).unwrap_or(0);
        // An impossible offset (a day or more) is ignored rather than trusted.
        let offset = FixedOffset::east_opt(east_seconds).unwrap_or(FixedOffset::east_opt(0).expect("zero offset"));
        let seconds = offset.local_minus_utc();
        let zone = if seconds == 0 {
            "UTC".to_owned()
        } else {
            let sign = if seconds < 0 { '-' } else { '+' };
            let (hours, minutes) = (seconds.abs() / 3600, seconds.abs() % 3600 / 60);
            if minutes == 0 { format!("UTC{sign}{hours}") } else { format!("UTC{sign}{hours}:{minutes:02}") }
        };
        Expiry { local: utc.with_timezone(&offset), zone }
    }

    /// "15:42"
    pub(super) fn clock(&self) -> String {
        format!("{:02}:{:02}", self.local.hour(), self.local.minute())
    }

    pub(super) fn zone(&self) -> &str {
        &self.zone
    }

    /// The date in the language's usual long form: "14 March 2025",
    /// "2025年3月14日", "14 mars 2025".
    pub(super) fn date(&self, lang: Language) -> String {
        let (year, month, day) = (self.local.year(), self.local.month(), self.local.day());
        let index = usize::try_from(month - 1).unwrap_or(0);
        match lang {
            Language::Ja => format!("{year}年{month}月{day}日"),
            Language::En => format!("{day} {} {year}", MONTHS_EN[index]),
            Language::Sv => format!("{day} {} {year}", MONTHS_SV[index]),
        }
    }
}

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_SV: [&str; 12] = [
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
];

/// Text from outside (merchant and issuer names) made safe to show on one
/// line: control characters become spaces and bidirectional overrides, which
/// could make an amount or a name read differently, are dropped.
pub(super) fn one_line(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}'))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cleaned.split(' ').filter(|part| !part.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_per_currency_and_language() {
        use Language::*;
        assert_eq!(format_amount(12_800, 2, "EUR", En), "128.00 EUR");
        assert_eq!(format_amount(12_800, 2, "EUR", Ja), "128.00 EUR");
        assert_eq!(format_amount(12_800, 2, "EUR", Sv), "128,00 EUR");
        assert_eq!(format_amount(5_400, 0, "JPY", Ja), "5,400円");
        assert_eq!(format_amount(5_400, 0, "JPY", En), "5,400 JPY");
        assert_eq!(format_amount(5_400, 0, "JPY", Sv), "5 400 JPY");
        assert_eq!(format_amount(129_900, 2, "SEK", Sv), "1 299,00 SEK");
        assert_eq!(format_amount(129_900, 2, "SEK", En), "1,299.00 SEK");
        assert_eq!(format_amount(123_456_789, 2, "USD", En), "1,234,567.89 USD");
        assert_eq!(format_amount(5, 2, "USD", En), "0.05 USD");
        assert_eq!(format_amount(0, 2, "USD", En), "0.00 USD");
        assert_eq!(format_amount(12_345, 3, "BHD", En), "12.345 BHD");
        assert_eq!(format_amount(1_012_345, 3, "BHD", Sv), "1 012,345 BHD");
        assert_eq!(format_amount(7, 3, "BHD", Ja), "0.007 BHD");
        assert_eq!(format_amount(100, 0, "JPY", Ja), "100円");
        assert_eq!(format_amount(u64::MAX, 0, "JPY", En), "18,446,744,073,709,551,615 JPY");
        assert_eq!(format_amount(1, 25, "XTS", En), format!("0.{}1 XTS", "0".repeat(24)));
    }

    #[test]
    fn email_masks_keep_first_letter_and_domain() {
        assert_eq!(mask_email("taro@example.jp"), "t•••@example.jp");
        assert_eq!(mask_email("  Anna.Svensson@bank.se "), "A•••@bank.se");
        assert_eq!(mask_email("a@b.se"), "a•••@b.se");
        assert_eq!(mask_email("ärlig@exempel.se"), "ä•••@exempel.se");
        assert_eq!(mask_email("@example.jp"), "•••@example.jp");
        assert_eq!(mask_email("not-an-address"), "•••");
        assert_eq!(mask_email("x@"), "•••");
        assert_eq!(mask_email(""), "•••");
    }

    #[test]
    fn phone_masks_show_only_the_last_digits() {
        assert_eq!(mask_phone("+819012345678", 5), "•••••45678");
        assert_eq!(mask_phone("+46701234567", 5), "•••••34567");
        assert_eq!(mask_phone("+46701234567", 4), "•••••4567");
        assert_eq!(mask_phone("+46 70 123 45 67", 4), "•••••4567");
        assert_eq!(mask_phone("+46701234567", 0), "•••••");
        // Short numbers: at most half the digits.
        assert_eq!(mask_phone("+4612", 5), "•••••12");
        assert_eq!(mask_phone("+1", 5), "•••••");
        assert_eq!(mask_phone("", 5), "•••••");
        for (number, visible) in [("+819012345678", 5), ("+4612", 5), ("+46701234567", 20)] {
            let digits: String = number.chars().filter(char::is_ascii_digit).collect();
            assert!(!mask_phone(number, visible).contains(&digits));
        }
    }

    #[test]
    fn expiry_in_local_time() {
        // 2025-03-14T06:42:00Z
        let at = 1_741_934_520_000;
        let tokyo = Expiry::new(at, Some(-540));
        assert_eq!((tokyo.clock().as_str(), tokyo.zone()), ("15:42", "UTC+9"));
        assert_eq!(tokyo.date(Language::Ja), "2025年3月14日");
        let stockholm = Expiry::new(at, Some(-60));
        assert_eq!((stockholm.clock().as_str(), stockholm.zone()), ("07:42", "UTC+1"));
        assert_eq!(stockholm.date(Language::Sv), "14 mars 2025");
        let utc = Expiry::new(at, None);
        assert_eq!((utc.clock().as_str(), utc.zone()), ("06:42", "UTC"));
        assert_eq!(utc.date(Language::En), "14 March 2025");
        let new_york = Expiry::new(at, Some(240));
        assert_eq!((new_york.clock().as_str(), new_york.zone()), ("02:42", "UTC-4"));
        let delhi = Expiry::new(at, Some(-330));
        assert_eq!((delhi.clock().as_str(), delhi.zone()), ("12:12", "UTC+5:30"));
        // Crossing midnight moves the date too.
        let auckland = Expiry::new(1_741_995_000_000, Some(-780));
        assert_eq!(auckland.date(Language::En), "15 March 2025");
        // Nonsense offsets fall back to UTC instead of failing.
        assert_eq!(Expiry::new(at, Some(100_000)).zone(), "UTC");
        assert_eq!(Expiry::new(at, Some(i32::MIN)).zone(), "UTC");
    }

    #[test]
    fn one_line_cleans_names() {
        assert_eq!(one_line("  Shop\r\nInc\t "), "Shop Inc");
        assert_eq!(one_line("abc\u{202E}fed"), "abcfed");
        assert_eq!(one_line("カフェ　東京"), "カフェ　東京");
    }
}
