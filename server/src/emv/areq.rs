//! The Authentication Request (AReq): parsing and validation.
//!
//! Rules beyond field formats:
//! * the first error found wins, in this order: `messageType`, `messageVersion`,
//!   `deviceChannel`/`messageCategory` formats, then *all* missing required
//!   elements at once (201, comma-separated `errorDetail`), then each
//!   element's format in EMV table order;
//! * JSON `null` counts as absent;
//! * `messageCategory` "02" (non-payment) is accepted: the purchase elements
//!   may then be absent (`AReq::purchase == None`), but if any is present all
//!   four are required and validated as for a payment;
//! * `notificationURL` and the browser elements are required for
//!   `deviceChannel` "02"; for the other channels `notificationURL` is
//!   validated if present and the browser elements are ignored;
//! * unknown elements are ignored; a known one appearing twice is 204.

use std::net::IpAddr;

use chrono::NaiveDateTime;
use serde_json::Value;
use uuid::Uuid;

use super::currency::Currency;
use super::error::EmvError;
use super::fields::canonical_uuid;
use super::pan::Pan;
use super::types::{ChallengeIndicator, DeviceChannel, MessageCategory, MessageVersion};
use super::validate::{ELEMENTS, RawAReq, validate};

/// Largest AReq body [`parse_areq`] reads; larger ones get [`EmvError::too_large`].
/// Leaves room for app-channel `deviceInfo` and 81,920 characters of message extensions.
pub const MAX_AREQ_BYTES: usize = 256 * 1024;

/// EMV message types, echoed in `errorMessageType` when one is received.
const MESSAGE_TYPES: [&str; 9] = ["AReq", "ARes", "CReq", "CRes", "PReq", "PRes", "RReq", "RRes", "Erro"];

/// A validated AReq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AReq {
    pub message_version: MessageVersion,
    pub three_ds_server_trans_id: Uuid,
    pub device_channel: DeviceChannel,
    pub message_category: MessageCategory,
    pub acct_number: Pan,
    pub card_expiry_date: Option<CardExpiry>,
    /// Always `Some` for [`MessageCategory::Payment`].
    pub purchase: Option<Purchase>,
    pub merchant_name: String,
    /// Four digits, as sent ("0742").
    pub mcc: String,
    /// ISO 3166-1 numeric.
    pub merchant_country_code: u16,
    pub acquirer_merchant_id: String,
    pub three_ds_requestor_id: String,
    pub three_ds_requestor_name: String,
    pub three_ds_requestor_challenge_ind: Option<ChallengeIndicator>,
    /// Always `Some` for [`DeviceChannel::Browser`].
    pub notification_url: Option<String>,
    /// `Some` exactly for [`DeviceChannel::Browser`].
    pub browser: Option<BrowserInfo>,
}

/// `cardExpiryDate` (YYMM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CardExpiry {
    /// Two-digit year, 0–99.
    pub yy: u8,
    /// 1–12.
    pub month: u8,
}

impl CardExpiry {
    /// Four-digit year, assuming 20YY.
    pub fn year(self) -> u16 {
        2000 + u16::from(self.yy)
    }
}

/// The purchase elements, validated together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Purchase {
    /// In minor units of `currency`.
    pub amount: u64,
    pub currency: Currency,
    /// Equal to `currency.exponent`.
    pub exponent: u8,
    /// UTC.
    pub date: NaiveDateTime,
}

/// Browser elements (deviceChannel "02").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserInfo {
    pub accept_header: String,
    pub ip: Option<IpAddr>,
    pub java_enabled: bool,
    pub javascript_enabled: Option<bool>,
    pub language: String,
    /// Bits per pixel: 1, 4, 8, 15, 16, 24, 32 or 48.
    pub color_depth: u8,
    pub screen_height: u32,
    pub screen_width: u32,
    /// `browserTZ`: minutes between UTC and local time (may be negative).
    pub tz_offset_minutes: i32,
    pub user_agent: String,
}

/// Parses and validates an AReq body. Never panics; every refusal is an
/// [`EmvError`] carrying the readable `threeDSServerTransID` and
/// `messageVersion` for the Erro.
pub fn parse_areq(body: &[u8]) -> Result<AReq, EmvError> {
    if body.len() > MAX_AREQ_BYTES {
        return Err(EmvError::too_large(MAX_AREQ_BYTES));
    }
    let raw: RawAReq = match serde_json::from_slice(body) {
        Ok(raw) => raw,
        Err(e) => return Err(json_error(&e, body)),
    };
    let echo =
        Echo::read(raw.message_type.as_ref(), raw.message_version.as_ref(), raw.three_ds_server_trans_id.as_ref());
    validate(raw).map_err(|e| echo.attach(e))
}

/// What an Erro may echo from the request.
#[derive(Default)]
struct Echo {
    message_type: Option<&'static str>,
    message_version: Option<MessageVersion>,
    trans_id: Option<Uuid>,
}

impl Echo {
    fn read(message_type: Option<&Value>, version: Option<&Value>, trans_id: Option<&Value>) -> Self {
        Echo {
            message_type: message_type
                .and_then(Value::as_str)
                .and_then(|t| MESSAGE_TYPES.into_iter().find(|&known| known == t)),
            message_version: version.and_then(Value::as_str).and_then(MessageVersion::parse),
            trans_id: trans_id.and_then(Value::as_str).and_then(canonical_uuid),
        }
    }

    fn attach(&self, mut e: EmvError) -> EmvError {
        if e.error_message_type.is_none() {
            e.error_message_type = self.message_type;
        }
        if e.message_version.is_none() {
            e.message_version = self.message_version;
        }
        if e.three_ds_server_trans_id.is_none() {
            e.three_ds_server_trans_id = self.trans_id;
        }
        e
    }
}

fn json_error(e: &serde_json::Error, body: &[u8]) -> EmvError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => match duplicate_element(&e.to_string()) {
            Some(name) => {
                // Read what can be echoed, letting the last duplicate win.
                let echo = serde_json::from_slice::<Value>(body)
                    .map(|v| Echo::read(v.get("messageType"), v.get("messageVersion"), v.get("threeDSServerTransID")))
                    .unwrap_or_default();
                echo.attach(EmvError::duplicate(name))
            }
            None => EmvError::message_invalid("the message must be a JSON object"),
        },
        Category::Io | Category::Syntax | Category::Eof => EmvError::message_invalid("the message is not valid JSON"),
    }
}

/// The element named in serde's "duplicate field `x`" message.
fn duplicate_element(message: &str) -> Option<&'static str> {
    let rest = message.strip_prefix("duplicate field `")?;
    let name = &rest[..rest.find('`')?];
    ELEMENTS.into_iter().find(|&known| known == name)
}
