//! Primary account numbers, kept out of logs.

use std::fmt;
use std::str::FromStr;

/// Shortest PAN EMV 3DS accepts in `acctNumber`.
pub const PAN_MIN_LEN: usize = 13;
/// Longest PAN EMV 3DS accepts in `acctNumber`.
pub const PAN_MAX_LEN: usize = 19;
/// The most digits `Debug`, `Display`, `Pan::last_digits` and `Pan::masked` reveal.
pub const PAN_VISIBLE_DIGITS: usize = 4;

/// A validated PAN: 13–19 ASCII digits passing the Luhn check.
///
/// `Debug` prints `Pan(…0005)` and `Display` prints `•••• 0005`; only
/// [`Pan::as_str`] gives the full number (for hashing or tokenising).
/// Deliberately not `Serialize`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pan(String);

/// Why a string is not a [`Pan`]. Messages never quote the digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PanError {
    #[error("must be 13 to 19 digits long")]
    Length,
    #[error("must contain only digits")]
    NotDigits,
    #[error("fails the Luhn check")]
    Luhn,
}

impl Pan {
    /// Validates length, digits and Luhn check digit.
    pub fn parse(digits: &str) -> Result<Self, PanError> {
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PanError::NotDigits);
        }
        if !(PAN_MIN_LEN..=PAN_MAX_LEN).contains(&digits.len()) {
            return Err(PanError::Length);
        }
        if !luhn_valid(digits) {
            return Err(PanError::Luhn);
        }
        Ok(Self(digits.to_owned()))
    }

    /// The full number. Use for hashing/tokenising only; never log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last `n` digits, with `n` capped at `PAN_VISIBLE_DIGITS` (4).
    pub fn last_digits(&self, n: usize) -> &str {
        let n = n.min(PAN_VISIBLE_DIGITS);
        // ASCII digits only, so any byte index is a char boundary.
        &self.0[self.0.len() - n..]
    }

    /// `"•••• "` followed by the last four digits.
    pub fn masked(&self) -> String {
        format!("•••• {}", self.last_digits(PAN_VISIBLE_DIGITS))
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false (a PAN has at least 13 digits); present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for Pan {
    type Err = PanError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan(…{})", self.last_digits(PAN_VISIBLE_DIGITS))
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// True when `digits` is non-empty, all ASCII digits, and its last digit is
/// the Luhn (mod 10) check digit of the rest.
pub fn luhn_valid(digits: &str) -> bool {
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && luhn_sum(digits.bytes().rev(), false).is_multiple_of(10)
}

/// The Luhn check digit to append to `partial` (all ASCII digits), or `None`
/// if `partial` is empty or has a non-digit.
pub fn luhn_check_digit(partial: &str) -> Option<u8> {
    if partial.is_empty() || !partial.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // With the check digit appended, the rightmost digit of `partial` is doubled.
    let sum = luhn_sum(partial.bytes().rev(), true);
    Some(((10 - sum % 10) % 10) as u8)
}

/// Luhn sum of ASCII digits given from the right; `double_first` says whether
/// the first (rightmost) one is doubled.
fn luhn_sum(digits_from_right: impl Iterator<Item = u8>, double_first: bool) -> u32 {
    digits_from_right
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if (i % 2 == 0) == double_first {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMEX: &str = "378282246310005";

    #[test]
    fn luhn_known_numbers() {
        for good in [AMEX, "4111111111111111", "5555555555554444", "6011111111111117", "79927398713", "0"] {
            assert!(luhn_valid(good), "{good}");
        }
        for bad in ["378282246310006", "4111111111111112", "79927398710", "", "41x1", "４"] {
            assert!(!luhn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn check_digit_matches_validation() {
        assert_eq!(luhn_check_digit("37828224631000"), Some(5));
        assert_eq!(luhn_check_digit("7992739871"), Some(3));
        assert_eq!(luhn_check_digit(""), None);
        assert_eq!(luhn_check_digit("12a"), None);
        for prefix in ["4", "40000000000000", "123456789012345678"] {
            let d = luhn_check_digit(prefix).unwrap();
            assert!(luhn_valid(&format!("{prefix}{d}")));
        }
    }

    #[test]
    fn parse_rules() {
        assert!(Pan::parse(AMEX).is_ok());
        assert_eq!(Pan::parse("400000000002"), Err(PanError::Length)); // 12 digits, Luhn-valid
        assert_eq!(Pan::parse("40000000000000000006"), Err(PanError::Length)); // 20 digits
        assert_eq!(Pan::parse("378282246310006"), Err(PanError::Luhn));
        assert_eq!(Pan::parse("3782 8224 6310 005"), Err(PanError::NotDigits));
        assert_eq!(Pan::parse(""), Err(PanError::Length));
        assert_eq!("378282246310005".parse::<Pan>().unwrap().len(), 15);
    }

    #[test]
    fn never_prints_the_number() {
        let pan = Pan::parse(AMEX).unwrap();
        let debug = format!("{pan:?}");
        let display = format!("{pan}");
        let nested = format!("{:?}", Some(&pan));
        assert_eq!(debug, "Pan(…0005)");
        assert_eq!(display, "•••• 0005");
        for s in [&debug, &display, &nested, &pan.masked()] {
            assert!(!s.contains(AMEX));
            assert!(!s.contains("3782"));
        }
        assert_eq!(pan.last_digits(4), "0005");
        assert_eq!(pan.last_digits(2), "05");
        assert_eq!(pan.last_digits(16), "0005");
        assert_eq!(pan.as_str(), AMEX);
    }
}
