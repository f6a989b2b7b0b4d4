//! The raw AReq (every element as untyped JSON) and its hand validation.
//! The rules are listed in `areq.rs`.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use super::areq::{AReq, BrowserInfo, CardExpiry, Purchase};
use super::currency::{Currency, is_reserved_iso_code};
use super::error::EmvError;
use super::fields::{
    boolean, canonical_uuid, coded, digits, http_url, req_digits, req_str, required, string, timestamp14,
};
use super::pan::{PAN_MAX_LEN, Pan};
use super::types::{ChallengeIndicator, DeviceChannel, MessageCategory, MessageVersion};

/// Every element is taken as raw JSON so that types are checked by hand,
/// per element, while serde still reports duplicates.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawAReq {
    pub(super) message_type: Option<Value>,
    pub(super) message_version: Option<Value>,
    #[serde(rename = "threeDSServerTransID")]
    pub(super) three_ds_server_trans_id: Option<Value>,
    device_channel: Option<Value>,
    message_category: Option<Value>,
    acct_number: Option<Value>,
    card_expiry_date: Option<Value>,
    purchase_amount: Option<Value>,
    purchase_currency: Option<Value>,
    purchase_exponent: Option<Value>,
    purchase_date: Option<Value>,
    merchant_name: Option<Value>,
    mcc: Option<Value>,
    merchant_country_code: Option<Value>,
    #[serde(rename = "acquirerMerchantID")]
    acquirer_merchant_id: Option<Value>,
    #[serde(rename = "threeDSRequestorID")]
    three_ds_requestor_id: Option<Value>,
    #[serde(rename = "threeDSRequestorName")]
    three_ds_requestor_name: Option<Value>,
    #[serde(rename = "threeDSRequestorChallengeInd")]
    three_ds_requestor_challenge_ind: Option<Value>,
    #[serde(rename = "notificationURL")]
    notification_url: Option<Value>,
    browser_accept_header: Option<Value>,
    #[serde(rename = "browserIP")]
    browser_ip: Option<Value>,
    browser_java_enabled: Option<Value>,
    browser_javascript_enabled: Option<Value>,
    browser_language: Option<Value>,
    browser_color_depth: Option<Value>,
    browser_screen_height: Option<Value>,
    browser_screen_width: Option<Value>,
    #[serde(rename = "browserTZ")]
    browser_tz: Option<Value>,
    browser_user_agent: Option<Value>,
}

/// The element names [`RawAReq`] reads, as EMV spells them.
pub(super) const ELEMENTS: [&str; 29] = [
    "messageType",
    "messageVersion",
    "threeDSServerTransID",
    "deviceChannel",
    "messageCategory",
    "acctNumber",
    "cardExpiryDate",
    "purchaseAmount",
    "purchaseCurrency",
    "purchaseExponent",
    "purchaseDate",
    "merchantName",
    "mcc",
    "merchantCountryCode",
    "acquirerMerchantID",
    "threeDSRequestorID",
    "threeDSRequestorName",
    "threeDSRequestorChallengeInd",
    "notificationURL",
    "browserAcceptHeader",
    "browserIP",
    "browserJavaEnabled",
    "browserJavascriptEnabled",
    "browserLanguage",
    "browserColorDepth",
    "browserScreenHeight",
    "browserScreenWidth",
    "browserTZ",
    "browserUserAgent",
];

pub(super) fn validate(mut raw: RawAReq) -> Result<AReq, EmvError> {
    match raw.message_type.take() {
        None => return Err(EmvError::missing("messageType")),
        Some(Value::String(t)) if t == "AReq" => {}
        Some(_) => return Err(EmvError::unknown_message_type()),
    }
    let version = req_str("messageVersion", raw.message_version.take(), 64)?;
    let message_version = MessageVersion::parse(&version).ok_or_else(EmvError::unsupported_version)?;

    let channel = coded("deviceChannel", raw.device_channel.take(), DeviceChannel::parse)?;
    let category = coded("messageCategory", raw.message_category.take(), MessageCategory::parse)?;
    check_presence(&raw, channel, category)?;
    let device_channel = required("deviceChannel", channel)?;
    let message_category = required("messageCategory", category)?;

    let id = req_str("threeDSServerTransID", raw.three_ds_server_trans_id.take(), 36)?;
    let three_ds_server_trans_id =
        canonical_uuid(&id).ok_or_else(|| EmvError::invalid("threeDSServerTransID", "must be a canonical UUID"))?;

    let pan = req_str("acctNumber", raw.acct_number.take(), PAN_MAX_LEN)?;
    let acct_number = Pan::parse(&pan).map_err(|e| EmvError::invalid("acctNumber", e))?;

    let card_expiry_date = match digits("cardExpiryDate", raw.card_expiry_date.take(), 4, 4)? {
        None => None,
        Some(s) => Some(
            card_expiry(&s).ok_or_else(|| EmvError::invalid("cardExpiryDate", "must be YYMM with month 01 to 12"))?,
        ),
    };
    let purchase = purchase(&mut raw, message_category)?;
    let merchant_name = req_str("merchantName", raw.merchant_name.take(), 40)?;
    let mcc = req_digits("mcc", raw.mcc.take(), 4, 4)?;

    let country = req_digits("merchantCountryCode", raw.merchant_country_code.take(), 3, 3)?;
    let merchant_country_code = iso_code("merchantCountryCode", &country)?;
    if merchant_country_code == 0 {
        return Err(EmvError::iso_code_invalid("merchantCountryCode", "is not a country code"));
    }

    let acquirer_merchant_id = req_str("acquirerMerchantID", raw.acquirer_merchant_id.take(), 35)?;
    let three_ds_requestor_id = req_str("threeDSRequestorID", raw.three_ds_requestor_id.take(), 35)?;
    let three_ds_requestor_name = req_str("threeDSRequestorName", raw.three_ds_requestor_name.take(), 40)?;
    let three_ds_requestor_challenge_ind =
        coded("threeDSRequestorChallengeInd", raw.three_ds_requestor_challenge_ind.take(), ChallengeIndicator::parse)?;
    let notification_url = match string("notificationURL", raw.notification_url.take(), 256)? {
        None => None,
        Some(url) => {
            http_url(&url).map_err(|e| EmvError::invalid("notificationURL", e))?;
            Some(url)
        }
    };
    let browser = match device_channel {
        DeviceChannel::Browser => Some(browser(&mut raw)?),
        DeviceChannel::App | DeviceChannel::ThreeRi => None,
    };

    Ok(AReq {
        message_version,
        three_ds_server_trans_id,
        device_channel,
        message_category,
        acct_number,
        card_expiry_date,
        purchase,
        merchant_name,
        mcc,
        merchant_country_code,
        acquirer_merchant_id,
        three_ds_requestor_id,
        three_ds_requestor_name,
        three_ds_requestor_challenge_ind,
        notification_url,
        browser,
    })
}

/// Reports every missing required element at once.
fn check_presence(
    raw: &RawAReq,
    channel: Option<DeviceChannel>,
    category: Option<MessageCategory>,
) -> Result<(), EmvError> {
    let any_purchase = raw.purchase_amount.is_some()
        || raw.purchase_currency.is_some()
        || raw.purchase_exponent.is_some()
        || raw.purchase_date.is_some();
    let purchase = category == Some(MessageCategory::Payment) || any_purchase;
    let browser = channel == Some(DeviceChannel::Browser);

    let mut missing = Vec::new();
    let mut need = |name: &'static str, needed: bool, present: bool| {
        if needed && !present {
            missing.push(name);
        }
    };
    need("threeDSServerTransID", true, raw.three_ds_server_trans_id.is_some());
    need("deviceChannel", true, channel.is_some());
    need("messageCategory", true, category.is_some());
    need("acctNumber", true, raw.acct_number.is_some());
    need("purchaseAmount", purchase, raw.purchase_amount.is_some());
    need("purchaseCurrency", purchase, raw.purchase_currency.is_some());
    need("purchaseExponent", purchase, raw.purchase_exponent.is_some());
    need("purchaseDate", purchase, raw.purchase_date.is_some());
    need("merchantName", true, raw.merchant_name.is_some());
    need("mcc", true, raw.mcc.is_some());
    need("merchantCountryCode", true, raw.merchant_country_code.is_some());
    need("acquirerMerchantID", true, raw.acquirer_merchant_id.is_some());
    need("threeDSRequestorID", true, raw.three_ds_requestor_id.is_some());
    need("threeDSRequestorName", true, raw.three_ds_requestor_name.is_some());
    need("notificationURL", browser, raw.notification_url.is_some());
    need("browserAcceptHeader", browser, raw.browser_accept_header.is_some());
    need("browserJavaEnabled", browser, raw.browser_java_enabled.is_some());
    need("browserLanguage", browser, raw.browser_language.is_some());
    need("browserColorDepth", browser, raw.browser_color_depth.is_some());
    need("browserScreenHeight", browser, raw.browser_screen_height.is_some());
    need("browserScreenWidth", browser, raw.browser_screen_width.is_some());
    need("browserTZ", browser, raw.browser_tz.is_some());
    need("browserUserAgent", browser, raw.browser_user_agent.is_some());

    if missing.is_empty() { Ok(()) } else { Err(EmvError::missing(missing.join(","))) }
}

fn card_expiry(yymm: &str) -> Option<CardExpiry> {
    let yy = yymm.get(..2)?.parse().ok()?;
    let month = yymm.get(2..)?.parse().ok()?;
    (1..=12).contains(&month).then_some(CardExpiry { yy, month })
}

/// A three-digit ISO numeric code; 955–964 and 999 are refused with 304.
fn iso_code(name: &str, three_digits: &str) -> Result<u16, EmvError> {
    let code: u16 = three_digits.parse().map_err(|_| EmvError::invalid(name, "is out of range"))?;
    if is_reserved_iso_code(code) {
        return Err(EmvError::iso_code_invalid(name, "is a reserved ISO code"));
    }
    Ok(code)
}

fn purchase(raw: &mut RawAReq, category: MessageCategory) -> Result<Option<Purchase>, EmvError> {
    let any_present = raw.purchase_amount.is_some()
        || raw.purchase_currency.is_some()
        || raw.purchase_exponent.is_some()
        || raw.purchase_date.is_some();
    if category == MessageCategory::NonPayment && !any_present {
        return Ok(None);
    }

    let amount = req_digits("purchaseAmount", raw.purchase_amount.take(), 1, 48)?;
    let amount = amount.parse::<u64>().map_err(|_| EmvError::invalid("purchaseAmount", "is too large"))?;

    let code = req_digits("purchaseCurrency", raw.purchase_currency.take(), 3, 3)?;
    let currency = Currency::from_numeric(iso_code("purchaseCurrency", &code)?)
        .ok_or_else(|| EmvError::iso_code_invalid("purchaseCurrency", "is not an active ISO 4217 currency"))?;

    let exponent = req_digits("purchaseExponent", raw.purchase_exponent.take(), 1, 1)?;
    let exponent: u8 = exponent.parse().map_err(|_| EmvError::invalid("purchaseExponent", "is out of range"))?;
    if exponent != currency.exponent {
        let why = format!("must be {} for currency {}", currency.exponent, currency.numeric_str());
        return Err(EmvError::invalid("purchaseExponent", why));
    }

    let date = req_str("purchaseDate", raw.purchase_date.take(), 14)?;
    let date =
        timestamp14(&date).ok_or_else(|| EmvError::invalid("purchaseDate", "must be a valid YYYYMMDDHHMMSS date"))?;

    Ok(Some(Purchase { amount, currency, exponent, date }))
}

fn browser(raw: &mut RawAReq) -> Result<BrowserInfo, EmvError> {
    let accept_header = req_str("browserAcceptHeader", raw.browser_accept_header.take(), 2048)?;
    let ip = match string("browserIP", raw.browser_ip.take(), 45)? {
        None => None,
        Some(s) => {
            Some(s.parse::<IpAddr>().map_err(|_| EmvError::invalid("browserIP", "must be an IPv4 or IPv6 address"))?)
        }
    };
    let java_enabled = boolean("browserJavaEnabled", raw.browser_java_enabled.take())?;
    let java_enabled = required("browserJavaEnabled", java_enabled)?;
    let javascript_enabled = boolean("browserJavascriptEnabled", raw.browser_javascript_enabled.take())?;

    let language = req_str("browserLanguage", raw.browser_language.take(), 8)?;
    if !language.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(EmvError::invalid("browserLanguage", "must be a BCP 47 language tag"));
    }

    let depth = req_digits("browserColorDepth", raw.browser_color_depth.take(), 1, 2)?;
    let color_depth = match depth.as_str() {
        "1" | "4" | "8" | "15" | "16" | "24" | "32" | "48" => depth.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| EmvError::invalid("browserColorDepth", "is not a defined value"))?;

    let screen_height = screen("browserScreenHeight", raw.browser_screen_height.take())?;
    let screen_width = screen("browserScreenWidth", raw.browser_screen_width.take())?;

    let tz = req_str("browserTZ", raw.browser_tz.take(), 5)?;
    let unsigned = tz.strip_prefix(['-', '+']).unwrap_or(&tz);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EmvError::invalid("browserTZ", "must be an integer number of minutes"));
    }
    let tz_offset_minutes = tz.parse::<i32>().map_err(|_| EmvError::invalid("browserTZ", "is out of range"))?;

    let user_agent = req_str("browserUserAgent", raw.browser_user_agent.take(), 2048)?;
    Ok(BrowserInfo {
        accept_header,
        ip,
        java_enabled,
        javascript_enabled,
        language,
        color_depth,
        screen_height,
        screen_width,
        tz_offset_minutes,
        user_agent,
    })
}

fn screen(name: &str, value: Option<Value>) -> Result<u32, EmvError> {
    let pixels = req_digits(name, value, 1, 6)?;
    pixels.parse().map_err(|_| EmvError::invalid(name, "is out of range"))
}
