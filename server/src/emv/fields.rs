//! Validation of single JSON data elements. Every refusal names the element
//! and never quotes its value.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};
use serde_json::Value;
use uuid::Uuid;

use super::error::EmvError;

/// Turns an absent element into 201.
pub(super) fn required<T>(name: &str, value: Option<T>) -> Result<T, EmvError> {
    value.ok_or_else(|| EmvError::missing(name))
}

/// A JSON string of 1 to `max` characters (`None` when absent or null).
pub(super) fn string(name: &str, value: Option<Value>, max: usize) -> Result<Option<String>, EmvError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => {
            check_len(name, &s, 1, max)?;
            Ok(Some(s))
        }
        Some(other) => Err(wrong_type(name, "a JSON string", &other)),
    }
}

/// A required JSON string of 1 to `max` characters.
pub(super) fn req_str(name: &str, value: Option<Value>, max: usize) -> Result<String, EmvError> {
    required(name, string(name, value, max)?)
}

/// A required JSON string of `min` to `max` ASCII digits.
pub(super) fn req_digits(name: &str, value: Option<Value>, min: usize, max: usize) -> Result<String, EmvError> {
    required(name, digits(name, value, min, max)?)
}

/// A coded two-character string element ("01" etc.) read with `parse`.
pub(super) fn coded<T>(
    name: &str,
    value: Option<Value>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, EmvError> {
    match string(name, value, 2)? {
        None => Ok(None),
        Some(s) => parse(&s).map(Some).ok_or_else(|| EmvError::invalid(name, "is not a defined value")),
    }
}

/// A JSON string of `min` to `max` ASCII digits.
pub(super) fn digits(name: &str, value: Option<Value>, min: usize, max: usize) -> Result<Option<String>, EmvError> {
    let Some(s) = string(name, value, max)? else {
        return Ok(None);
    };
    if s.len() < min || !s.bytes().all(|b| b.is_ascii_digit()) {
        let why =
            if min == max { format!("must be exactly {min} digits") } else { format!("must be {min} to {max} digits") };
        return Err(EmvError::invalid(name, why));
    }
    Ok(Some(s))
}

/// A JSON boolean.
pub(super) fn boolean(name: &str, value: Option<Value>) -> Result<Option<bool>, EmvError> {
    match value {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(other) => Err(wrong_type(name, "a JSON boolean", &other)),
    }
}

/// Refuses strings shorter than `min` or longer than `max` characters,
/// without counting the characters of a huge string.
pub(super) fn check_len(name: &str, s: &str, min: usize, max: usize) -> Result<(), EmvError> {
    // A char is 1 to 4 bytes, so more than 4*max bytes is surely too long.
    let too_long = s.len() > max.saturating_mul(4) || s.chars().count() > max;
    if too_long {
        return Err(EmvError::invalid(name, format!("must be at most {max} characters")));
    }
    if s.chars().count() < min {
        let why = if min == 1 { "must not be empty".to_owned() } else { format!("must be at least {min} characters") };
        return Err(EmvError::invalid(name, why));
    }
    Ok(())
}

fn wrong_type(name: &str, expected: &str, got: &Value) -> EmvError {
    EmvError::invalid(name, format!("must be {expected}, not {}", kind(got)))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A UUID in RFC 4122 canonical form (8-4-4-4-12 hex digits, either case).
pub(super) fn canonical_uuid(s: &str) -> Option<Uuid> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if shape_ok { Uuid::try_parse(s).ok() } else { None }
}

/// `YYYYMMDDHHMMSS` as a calendar date and time (no leap seconds).
pub(super) fn timestamp14(s: &str) -> Option<NaiveDateTime> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All ASCII digits: slicing cannot split a char and parsing cannot fail.
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    let year = i32::try_from(n(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, n(4..6)?, n(6..8)?)?.and_hms_opt(n(8..10)?, n(10..12)?, n(12..14)?)
}

/// Why a string is not an acceptable absolute http(s) URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UrlError {
    Characters,
    Scheme,
    Credentials,
    Host,
    Port,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Characters => "must be printable ASCII without spaces",
            Self::Scheme => "must be an absolute http or https URL",
            Self::Credentials => "must not carry credentials",
            Self::Host => "must have a valid host",
            Self::Port => "must have a valid port",
        })
    }
}

/// Checks an absolute `http`/`https` URL: printable ASCII, a host name or IP
/// literal, an optional port, and any path, query or fragment.
pub(super) fn http_url(s: &str) -> Result<(), UrlError> {
    const FORBIDDEN: &[u8] = b"<>\"{}|\\^`";
    if !s.bytes().all(|b| b.is_ascii_graphic() && !FORBIDDEN.contains(&b)) {
        return Err(UrlError::Characters);
    }
    // From here on `s` is ASCII, so byte slicing is safe.
    let rest = if s.len() >= 8 && s[..8].eq_ignore_ascii_case("https://") {
        &s[8..]
    } else if s.len() >= 7 && s[..7].eq_ignore_ascii_case("http://") {
        &s[7..]
    } else {
        return Err(UrlError::Scheme);
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(UrlError::Credentials);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or(UrlError::Host)?;
        addr.parse::<std::net::Ipv6Addr>().map_err(|_| UrlError::Host)?;
        match after {
            "" => (addr, None),
            _ => (addr, Some(after.strip_prefix(':').ok_or(UrlError::Port)?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if !authority.starts_with('[') && !valid_host_name(host) {
        return Err(UrlError::Host);
    }
    if let Some(port) = port {
        let ok = (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !ok {
            return Err(UrlError::Port);
        }
    }
    Ok(())
}

/// DNS name or dotted IPv4: labels of 1–63 letters, digits and hyphens,
/// not starting or ending with a hyphen; one trailing dot allowed.
fn valid_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls() {
        for good in [
            "https://merchant.example/3ds/notify",
            "http://localhost:8080/cb?x=1&y=%20#frag",
            "HTTPS://EXAMPLE.COM",
            "https://192.0.2.1:443/",
            "https://[2001:db8::1]:8443/n",
            "https://[::1]",
            "https://example.com./",
        ] {
            assert_eq!(http_url(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("merchant.example/notify", UrlError::Scheme),
            ("ftp://merchant.example/", UrlError::Scheme),
            ("javascript:alert(1)", UrlError::Scheme),
            ("//merchant.example/", UrlError::Scheme),
            ("https://", UrlError::Host),
            ("https:///path", UrlError::Host),
            ("https://user:pw@merchant.example/", UrlError::Credentials),
            ("https://merchant example/", UrlError::Characters),
            ("https://mérchant.example/", UrlError::Characters),
            ("https://merchant.example/\u{0}", UrlError::Characters),
            ("https://merchant.example:/", UrlError::Port),
            ("https://merchant.example:99999/", UrlError::Port),
            ("https://merchant.example:0/", UrlError::Port),
            ("https://merchant.example:8a/", UrlError::Port),
            ("https://-bad.example/", UrlError::Host),
            ("https://a..b/", UrlError::Host),
            ("https://[::1/", UrlError::Host),
            ("https://[zz::1]/", UrlError::Host),
            ("https://[::1]x/", UrlError::Port),
        ] {
            assert_eq!(http_url(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn uuids() {
        let id = "8a880dc0-d2d2-4067-bcb1-b08d1690b26e";
        assert!(canonical_uuid(id).is_some());
        assert!(canonical_uuid(&id.to_uppercase()).is_some());
        for bad in [
            "8a880dc0d2d24067bcb1b08d1690b26e",
            "{8a880dc0-d2d2-4067-bcb1-b08d1690b26e}",
            "urn:uuid:8a880dc0-d2d2-4067-bcb1-b08d1690b26e",
            "8a880dc0-d2d2-4067-bcb1-b08d1690b26g",
            "8a880dc0-d2d2-4067-bcb1_b08d1690b26e",
            "",
            "é",
        ] {
            assert!(canonical_uuid(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        let t = timestamp14("20240229235959").unwrap();
        assert_eq!(t.to_string(), "2024-02-29 23:59:59");
        for bad in [
            "20230229120000",
            "20241301120000",
            "20240100120000",
            "20240101240000",
            "20240101126000",
            "20240101120060",
            "2024010112000",
            "202401011200000",
            "2024-01-01T12:0",
            "+0240101120000",
        ] {
            assert!(timestamp14(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn lengths_count_characters() {
        assert!(check_len("f", "ééé", 1, 3).is_ok());
        assert_eq!(check_len("f", "éééé", 1, 3).unwrap_err().detail, "f");
        assert!(check_len("f", "", 1, 3).is_err());
        assert!(check_len("f", &"x".repeat(10_000_000), 1, 40).is_err());
    }

    #[test]
    fn types() {
        assert_eq!(string("f", Some(json!(1)), 5).unwrap_err().code.as_str(), "203");
        assert_eq!(string("f", None, 5).unwrap(), None);
        assert_eq!(boolean("f", Some(json!("true"))).unwrap_err().code.as_str(), "203");
        assert_eq!(boolean("f", Some(json!(false))).unwrap(), Some(false));
        assert!(digits("f", Some(json!("12a4")), 4, 4).is_err());
        assert!(digits("f", Some(json!("١٢٣٤")), 1, 4).is_err()); // non-ASCII digits
        assert_eq!(digits("f", Some(json!("0742")), 4, 4).unwrap().as_deref(), Some("0742"));
        assert_eq!(required::<u8>("f", None).unwrap_err().code.as_str(), "201");
    }
}
