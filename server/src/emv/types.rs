//! Small coded EMV values shared by requests and responses.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Supported `messageVersion`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum MessageVersion {
    #[serde(rename = "2.2.0")]
    V2_2_0,
    #[serde(rename = "2.3.1")]
    V2_3_1,
}

impl MessageVersion {
    pub const ALL: [MessageVersion; 2] = [Self::V2_2_0, Self::V2_3_1];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V2_2_0 => "2.2.0",
            Self::V2_3_1 => "2.3.1",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for MessageVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `deviceChannel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum DeviceChannel {
    /// "01": app-based (3DS SDK).
    #[serde(rename = "01")]
    App,
    /// "02": browser-based.
    #[serde(rename = "02")]
    Browser,
    /// "03": 3DS Requestor Initiated (3RI), no cardholder present.
    #[serde(rename = "03")]
    ThreeRi,
}

impl DeviceChannel {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::App => "01",
            Self::Browser => "02",
            Self::ThreeRi => "03",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::App, Self::Browser, Self::ThreeRi].into_iter().find(|v| v.as_str() == s)
    }
}

/// `messageCategory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum MessageCategory {
    /// "01": payment authentication (PA).
    #[serde(rename = "01")]
    Payment,
    /// "02": non-payment authentication (NPA), e.g. adding a card.
    #[serde(rename = "02")]
    NonPayment,
}

impl MessageCategory {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Payment => "01",
            Self::NonPayment => "02",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Payment, Self::NonPayment].into_iter().find(|v| v.as_str() == s)
    }
}

/// `threeDSRequestorChallengeInd`: "01" to "09".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeIndicator {
    /// "01": no preference.
    NoPreference,
    /// "02": no challenge requested.
    NoChallengeRequested,
    /// "03": challenge requested, 3DS Requestor preference.
    ChallengeRequested3dsRequestorPreference,
    /// "04": challenge requested, mandate.
    ChallengeMandated,
    /// "05"–"09" kept as their number: 05 no challenge (TRA already
    /// performed), 06 no challenge (data share only), 07 no challenge (SCA
    /// already performed), 08 no challenge (whitelist exemption), 09
    /// challenge requested (whitelist prompt).
    Other(u8),
}

impl ChallengeIndicator {
    /// Parses "01".."09".
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 2 || b[0] != b'0' || !(b'1'..=b'9').contains(&b[1]) {
            return None;
        }
        Some(Self::from_code(b[1] - b'0'))
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::NoPreference,
            2 => Self::NoChallengeRequested,
            3 => Self::ChallengeRequested3dsRequestorPreference,
            4 => Self::ChallengeMandated,
            n => Self::Other(n),
        }
    }

    /// The numeric code (1 for "01").
    pub const fn code(self) -> u8 {
        match self {
            Self::NoPreference => 1,
            Self::NoChallengeRequested => 2,
            Self::ChallengeRequested3dsRequestorPreference => 3,
            Self::ChallengeMandated => 4,
            Self::Other(n) => n,
        }
    }

    /// True for 03, 04 and 09: the requestor asks for a challenge.
    pub const fn challenge_requested(self) -> bool {
        matches!(self.code(), 3 | 4 | 9)
    }
}

impl fmt::Display for ChallengeIndicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coded_values_round_trip() {
        for v in MessageVersion::ALL {
            assert_eq!(MessageVersion::parse(v.as_str()), Some(v));
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        assert_eq!(MessageVersion::parse("2.1.0"), None);
        assert_eq!(DeviceChannel::parse("02"), Some(DeviceChannel::Browser));
        assert_eq!(DeviceChannel::parse("2"), None);
        assert_eq!(serde_json::to_value(MessageCategory::NonPayment).unwrap(), "02");
        assert_eq!(MessageCategory::parse("03"), None);
        for code in 1..=9u8 {
            let s = format!("{code:02}");
            let ind = ChallengeIndicator::parse(&s).unwrap();
            assert_eq!(ind.code(), code);
            assert_eq!(ind.to_string(), s);
        }
        assert_eq!(ChallengeIndicator::parse("04"), Some(ChallengeIndicator::ChallengeMandated));
        assert_eq!(ChallengeIndicator::parse("07"), Some(ChallengeIndicator::Other(7)));
        for bad in ["00", "10", "1", "001", "0x", "", "٠١"] {
            assert_eq!(ChallengeIndicator::parse(bad), None, "{bad}");
        }
    }
}
