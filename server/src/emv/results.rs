//! Messages the ACS sends: `ARes` (to the DS) and `RReq` (after a challenge).
//! `None` fields are omitted from the JSON.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::areq::AReq;
use super::types::{MessageCategory, MessageVersion};

/// `transStatus`, serialised as its letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum TransStatus {
    /// "Y": authentication verification successful.
    #[serde(rename = "Y")]
    Authenticated,
    /// "N": not authenticated / account not verified; transaction denied.
    #[serde(rename = "N")]
    NotAuthenticated,
    /// "U": authentication could not be performed (technical or other problem).
    #[serde(rename = "U")]
    Unavailable,
    /// "A": attempts processing performed; proof of attempt provided.
    #[serde(rename = "A")]
    Attempted,
    /// "C": challenge required.
    #[serde(rename = "C")]
    Challenge,
    /// "R": authentication rejected by the issuer; do not authorise.
    #[serde(rename = "R")]
    Rejected,
}

impl TransStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Authenticated => "Y",
            Self::NotAuthenticated => "N",
            Self::Unavailable => "U",
            Self::Attempted => "A",
            Self::Challenge => "C",
            Self::Rejected => "R",
        }
    }
}

impl fmt::Display for TransStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! trans_status_reasons {
    ($( $(#[doc = $doc:literal])* $variant:ident = $code:literal, )*) => {
        /// `transStatusReason` (EMV 3DS 2.2 codes 01–26), serialised as the two-digit code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum TransStatusReason {
            $( $(#[doc = $doc])* #[serde(rename = $code)] $variant, )*
        }

        impl TransStatusReason {
            /// Every reason, in code order.
            pub const ALL: &'static [TransStatusReason] = &[$(Self::$variant),*];

            /// The two-digit code, e.g. "01".
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code,)* }
            }

            /// Parses a two-digit code.
            pub fn parse(code: &str) -> Option<Self> {
                match code { $($code => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

trans_status_reasons! {
    /// 01: card authentication failed.
    CardAuthenticationFailed = "01",
    /// 02: unknown device.
    UnknownDevice = "02",
    /// 03: unsupported device.
    UnsupportedDevice = "03",
    /// 04: exceeds authentication frequency limit.
    ExceedsAuthenticationFrequencyLimit = "04",
    /// 05: expired card.
    ExpiredCard = "05",
    /// 06: invalid card number.
    InvalidCardNumber = "06",
    /// 07: invalid transaction.
    InvalidTransaction = "07",
    /// 08: no card record.
    NoCardRecord = "08",
    /// 09: security failure.
    SecurityFailure = "09",
    /// 10: stolen card.
    StolenCard = "10",
    /// 11: suspected fraud.
    SuspectedFraud = "11",
    /// 12: transaction not permitted to cardholder.
    TransactionNotPermitted = "12",
    /// 13: cardholder not enrolled in service.
    CardholderNotEnrolled = "13",
    /// 14: transaction timed out at the ACS.
    TransactionTimedOutAtAcs = "14",
    /// 15: low confidence.
    LowConfidence = "15",
    /// 16: medium confidence.
    MediumConfidence = "16",
    /// 17: high confidence.
    HighConfidence = "17",
    /// 18: very high confidence.
    VeryHighConfidence = "18",
    /// 19: exceeds ACS maximum challenges.
    ExceedsAcsMaximumChallenges = "19",
    /// 20: non-payment transaction not supported.
    NonPaymentNotSupported = "20",
    /// 21: 3RI transaction not supported.
    ThreeRiNotSupported = "21",
    /// 22: ACS technical issue.
    AcsTechnicalIssue = "22",
    /// 23: decoupled authentication required by ACS but not requested by 3DS Requestor.
    DecoupledRequiredNotRequested = "23",
    /// 24: 3DS Requestor decoupled max expiry time exceeded.
    DecoupledMaxExpiryExceeded = "24",
    /// 25: decoupled authentication was given insufficient time; ACS will not attempt it.
    DecoupledInsufficientTime = "25",
    /// 26: authentication attempted but not performed by the cardholder.
    AttemptedNotPerformedByCardholder = "26",
}

impl fmt::Display for TransStatusReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `authenticationType` in a challenge ARes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AuthenticationType {
    /// "01": static.
    #[serde(rename = "01")]
    Static,
    /// "02": dynamic.
    #[serde(rename = "02")]
    Dynamic,
    /// "03": out-of-band (e.g. approval in a banking app — Countersign's push).
    #[serde(rename = "03")]
    OutOfBand,
}

/// "Y"/"N" flags such as `acsChallengeMandated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum YesNo {
    #[serde(rename = "Y")]
    Yes,
    #[serde(rename = "N")]
    No,
}

impl From<bool> for YesNo {
    fn from(b: bool) -> Self {
        if b { Self::Yes } else { Self::No }
    }
}

/// `challengeCancel` in an RReq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ChallengeCancel {
    /// "01": cardholder selected Cancel.
    #[serde(rename = "01")]
    CardholderCancelled,
    /// "03": transaction timed out (decoupled authentication).
    #[serde(rename = "03")]
    DecoupledTimedOut,
    /// "04": transaction timed out at the ACS (other timeouts).
    #[serde(rename = "04")]
    AcsTimedOut,
    /// "05": transaction timed out at the ACS, first CReq not received.
    #[serde(rename = "05")]
    FirstCReqNotReceived,
    /// "06": transaction error.
    #[serde(rename = "06")]
    TransactionError,
    /// "07": unknown.
    #[serde(rename = "07")]
    Unknown,
    /// "08": transaction timed out at the SDK.
    #[serde(rename = "08")]
    SdkTimedOut,
}

/// The Authentication Response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "messageType": "ARes", "messageVersion": "2.2.0",
    "threeDSServerTransID": "8a880dc0-d2d2-4067-bcb1-b08d1690b26e",
    "acsTransID": "d7c1ee99-9478-44a6-b1f2-391e29c6b340", "acsReferenceNumber": "COUNTERSIGN-ACS-1",
    "transStatus": "C", "acsChallengeMandated": "Y", "acsURL": "https://acs.example/challenge",
    "authenticationType": "03"
}))]
#[serde(rename_all = "camelCase")]
pub struct ARes {
    /// "ARes".
    pub message_type: String,
    pub message_version: MessageVersion,
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: Uuid,
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: Uuid,
    pub acs_reference_number: String,
    pub trans_status: TransStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trans_status_reason: Option<TransStatusReason>,
    /// Only with `C`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acs_challenge_mandated: Option<YesNo>,
    /// Only with `C` (browser flow).
    #[serde(rename = "acsURL", default, skip_serializing_if = "Option::is_none")]
    pub acs_url: Option<String>,
    /// Only with `Y`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_value: Option<String>,
    /// Only with `Y`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eci: Option<String>,
    /// Only with `C`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_type: Option<AuthenticationType>,
}

impl ARes {
    /// An ARes with only the required elements.
    pub fn new(
        message_version: MessageVersion,
        three_ds_server_trans_id: Uuid,
        acs_trans_id: Uuid,
        acs_reference_number: impl Into<String>,
        trans_status: TransStatus,
    ) -> Self {
        Self {
            message_type: "ARes".to_owned(),
            message_version,
            three_ds_server_trans_id,
            acs_trans_id,
            acs_reference_number: acs_reference_number.into(),
            trans_status,
            trans_status_reason: None,
            acs_challenge_mandated: None,
            acs_url: None,
            authentication_value: None,
            eci: None,
            authentication_type: None,
        }
    }

    /// [`ARes::new`] echoing the AReq's version and `threeDSServerTransID`.
    pub fn for_areq(
        areq: &AReq,
        acs_trans_id: Uuid,
        acs_reference_number: impl Into<String>,
        trans_status: TransStatus,
    ) -> Self {
        Self::new(areq.message_version, areq.three_ds_server_trans_id, acs_trans_id, acs_reference_number, trans_status)
    }

    pub fn with_reason(mut self, reason: TransStatusReason) -> Self {
        self.trans_status_reason = Some(reason);
        self
    }

    /// Sets `authenticationValue` and `eci` (for `Y`).
    pub fn with_authentication(mut self, authentication_value: impl Into<String>, eci: impl Into<String>) -> Self {
        self.authentication_value = Some(authentication_value.into());
        self.eci = Some(eci.into());
        self
    }

    /// Sets the challenge elements (for `C`); `acs_url` only for the browser flow.
    pub fn with_challenge(
        mut self,
        acs_url: Option<String>,
        mandated: bool,
        authentication_type: AuthenticationType,
    ) -> Self {
        self.acs_url = acs_url;
        self.acs_challenge_mandated = Some(mandated.into());
        self.authentication_type = Some(authentication_type);
        self
    }
}

/// The Results Request sent to the 3DS Server after a challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RReq {
    /// "RReq".
    pub message_type: String,
    pub message_version: MessageVersion,
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: Uuid,
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: Uuid,
    pub trans_status: TransStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trans_status_reason: Option<TransStatusReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eci: Option<String>,
    /// Number of challenge interactions, serialised as two digits ("01"); at most 99.
    #[serde(with = "two_digits")]
    #[schema(value_type = String, pattern = "^[0-9]{2}$")]
    pub interaction_counter: u8,
    pub message_category: MessageCategory,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_cancel: Option<ChallengeCancel>,
}

impl RReq {
    pub fn new(
        message_version: MessageVersion,
        three_ds_server_trans_id: Uuid,
        acs_trans_id: Uuid,
        trans_status: TransStatus,
        interaction_counter: u8,
        message_category: MessageCategory,
    ) -> Self {
        Self {
            message_type: "RReq".to_owned(),
            message_version,
            three_ds_server_trans_id,
            acs_trans_id,
            trans_status,
            trans_status_reason: None,
            authentication_value: None,
            eci: None,
            interaction_counter,
            message_category,
            challenge_cancel: None,
        }
    }

    pub fn with_reason(mut self, reason: TransStatusReason) -> Self {
        self.trans_status_reason = Some(reason);
        self
    }

    /// Sets `authenticationValue` and `eci`.
    pub fn with_authentication(mut self, authentication_value: impl Into<String>, eci: impl Into<String>) -> Self {
        self.authentication_value = Some(authentication_value.into());
        self.eci = Some(eci.into());
        self
    }

    pub fn with_challenge_cancel(mut self, cancel: ChallengeCancel) -> Self {
        self.challenge_cancel = Some(cancel);
        self
    }
}

/// A `u8` as a two-digit string ("01"); values over 99 are written as "99".
mod two_digits {
    use super::*;

    pub(super) fn serialize<S: Serializer>(n: &u8, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:02}", (*n).min(99)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(serde::de::Error::custom)
        } else {
            Err(serde::de::Error::custom("expected two digits"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids() -> (Uuid, Uuid) {
        (
            Uuid::parse_str("8a880dc0-d2d2-4067-bcb1-b08d1690b26e").unwrap(),
            Uuid::parse_str("d7c1ee99-9478-44a6-b1f2-391e29c6b340").unwrap(),
        )
    }

    #[test]
    fn reasons_are_01_to_26() {
        assert_eq!(TransStatusReason::ALL.len(), 26);
        for (i, r) in TransStatusReason::ALL.iter().enumerate() {
            let code = format!("{:02}", i + 1);
            assert_eq!(r.as_str(), code);
            assert_eq!(TransStatusReason::parse(&code), Some(*r));
            assert_eq!(serde_json::to_value(r).unwrap(), json!(code));
        }
        assert_eq!(TransStatusReason::parse("27"), None);
    }

    #[test]
    fn ares_frictionless_shape() {
        let (tid, acs) = ids();
        let ares = ARes::new(MessageVersion::V2_2_0, tid, acs, "COUNTERSIGN-ACS-1", TransStatus::Authenticated)
            .with_authentication("AAABBBCCCDDDEEEFFFGGGHHHIII=", "05");
        let v = serde_json::to_value(&ares).unwrap();
        assert_eq!(
            v,
            json!({
                "messageType": "ARes",
                "messageVersion": "2.2.0",
                "threeDSServerTransID": tid.to_string(),
                "acsTransID": acs.to_string(),
                "acsReferenceNumber": "COUNTERSIGN-ACS-1",
                "transStatus": "Y",
                "authenticationValue": "AAABBBCCCDDDEEEFFFGGGHHHIII=",
                "eci": "05",
            })
        );
        assert_eq!(serde_json::from_value::<ARes>(v).unwrap(), ares);
    }

    #[test]
    fn ares_challenge_and_denied_shapes() {
        let (tid, acs) = ids();
        let c = ARes::new(MessageVersion::V2_3_1, tid, acs, "R", TransStatus::Challenge).with_challenge(
            Some("https://acs.example/challenge".into()),
            true,
            AuthenticationType::OutOfBand,
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["transStatus"], "C");
        assert_eq!(v["acsChallengeMandated"], "Y");
        assert_eq!(v["acsURL"], "https://acs.example/challenge");
        assert_eq!(v["authenticationType"], "03");
        assert!(v.get("eci").is_none() && v.get("authenticationValue").is_none());

        let n = ARes::new(MessageVersion::V2_2_0, tid, acs, "R", TransStatus::NotAuthenticated)
            .with_reason(TransStatusReason::SuspectedFraud);
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["transStatus"], "N");
        assert_eq!(v["transStatusReason"], "11");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 7, "{keys:?}");
        assert!(v.get("acsURL").is_none() && v.get("acsChallengeMandated").is_none());
    }

    #[test]
    fn rreq_shape() {
        let (tid, acs) = ids();
        let rreq = RReq::new(MessageVersion::V2_2_0, tid, acs, TransStatus::Authenticated, 1, MessageCategory::Payment)
            .with_authentication("AAABBBCCCDDDEEEFFFGGGHHHIII=", "05");
        let v = serde_json::to_value(&rreq).unwrap();
        assert_eq!(
            v,
            json!({
                "messageType": "RReq",
                "messageVersion": "2.2.0",
                "threeDSServerTransID": tid.to_string(),
                "acsTransID": acs.to_string(),
                "transStatus": "Y",
                "authenticationValue": "AAABBBCCCDDDEEEFFFGGGHHHIII=",
                "eci": "05",
                "interactionCounter": "01",
                "messageCategory": "01",
            })
        );
        assert_eq!(serde_json::from_value::<RReq>(v).unwrap(), rreq);

        let cancelled =
            RReq::new(MessageVersion::V2_2_0, tid, acs, TransStatus::NotAuthenticated, 0, MessageCategory::NonPayment)
                .with_reason(TransStatusReason::TransactionTimedOutAtAcs)
                .with_challenge_cancel(ChallengeCancel::AcsTimedOut);
        let v = serde_json::to_value(&cancelled).unwrap();
        assert_eq!(v["interactionCounter"], "00");
        assert_eq!(v["challengeCancel"], "04");
        assert_eq!(v["transStatusReason"], "14");
        assert_eq!(v["messageCategory"], "02");

        let mut many = cancelled.clone();
        many.interaction_counter = 250;
        assert_eq!(serde_json::to_value(&many).unwrap()["interactionCounter"], "99");
        let mut bad = serde_json::to_value(&cancelled).unwrap();
        bad["interactionCounter"] = json!("1");
        assert!(serde_json::from_value::<RReq>(bad).is_err());
    }
}
