//! The AReq as the OpenAPI document shows it. The parser reads untyped
//! JSON element by element (`validate.rs`), so this type only describes:
//! the same elements, with the formats the parser enforces. A test keeps
//! its element list equal to the parser's.

use serde::Deserialize;
use utoipa::ToSchema;

use super::types::{DeviceChannel, MessageCategory, MessageVersion};

/// An EMV 3-D Secure Authentication Request (the subset Countersign reads;
/// other elements are ignored). The purchase elements are required for
/// `messageCategory` "01" (and, if one is present, all four are); the
/// browser elements and `notificationURL` for `deviceChannel` "02". JSON
/// `null` counts as absent; an element sent twice is refused (204).
#[derive(Deserialize, ToSchema)]
#[schema(
    as = AReq,
    example = json!({
        "messageType": "AReq", "messageVersion": "2.2.0",
        "threeDSServerTransID": "8a880dc0-d2d2-4067-bcb1-b08d1690b26e",
        "deviceChannel": "02", "messageCategory": "01",
        "acctNumber": "378282246310005", "cardExpiryDate": "3012",
        "purchaseAmount": "12800", "purchaseCurrency": "978", "purchaseExponent": "2",
        "purchaseDate": "20261122101500", "merchantName": "Nordic Outdoor AB", "mcc": "5941",
        "merchantCountryCode": "752", "acquirerMerchantID": "MID-000451",
        "threeDSRequestorID": "shop-1", "threeDSRequestorName": "Demo Shop",
        "notificationURL": "https://shop.example/3ds/notify",
        "browserAcceptHeader": "text/html", "browserJavaEnabled": false, "browserLanguage": "ja-JP",
        "browserColorDepth": "24", "browserScreenHeight": "900", "browserScreenWidth": "1440",
        "browserTZ": "-540", "browserUserAgent": "Mozilla/5.0"
    })
)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Only its schema is used.
pub struct AReqSchema {
    #[schema(pattern = "^AReq$")]
    message_type: String,
    message_version: MessageVersion,
    #[serde(rename = "threeDSServerTransID")]
    #[schema(format = Uuid)]
    three_ds_server_trans_id: String,
    device_channel: DeviceChannel,
    message_category: MessageCategory,
    /// The card number: 13 to 19 digits, Luhn-valid.
    #[schema(pattern = "^[0-9]{13,19}$")]
    acct_number: String,
    /// YYMM.
    #[schema(pattern = "^[0-9]{2}(0[1-9]|1[0-2])$")]
    card_expiry_date: Option<String>,
    /// In minor units of the currency.
    #[schema(pattern = "^[0-9]{1,48}$")]
    purchase_amount: Option<String>,
    /// ISO 4217 numeric; reserved codes (955–964, 999) are refused (304).
    #[schema(pattern = "^[0-9]{3}$")]
    purchase_currency: Option<String>,
    /// Must be the currency's exponent.
    #[schema(pattern = "^[0-9]$")]
    purchase_exponent: Option<String>,
    /// YYYYMMDDHHMMSS, UTC.
    #[schema(pattern = "^[0-9]{14}$")]
    purchase_date: Option<String>,
    #[schema(min_length = 1, max_length = 40)]
    merchant_name: String,
    #[schema(pattern = "^[0-9]{4}$")]
    mcc: String,
    /// ISO 3166-1 numeric.
    #[schema(pattern = "^[0-9]{3}$")]
    merchant_country_code: String,
    #[serde(rename = "acquirerMerchantID")]
    #[schema(min_length = 1, max_length = 35)]
    acquirer_merchant_id: String,
    /// Must be the calling requestor's id (else 303, HTTP 403).
    #[serde(rename = "threeDSRequestorID")]
    #[schema(min_length = 1, max_length = 35)]
    three_ds_requestor_id: String,
    #[serde(rename = "threeDSRequestorName")]
    #[schema(min_length = 1, max_length = 40)]
    three_ds_requestor_name: String,
    /// "01" to "09"; 03, 04 and 09 ask for a challenge.
    #[serde(rename = "threeDSRequestorChallengeInd")]
    #[schema(pattern = "^0[1-9]$")]
    three_ds_requestor_challenge_ind: Option<String>,
    /// Where the result (RReq) is posted: an absolute http(s) URL.
    #[serde(rename = "notificationURL")]
    #[schema(pattern = "^[Hh][Tt][Tt][Pp][Ss]?://", max_length = 256)]
    notification_url: Option<String>,
    #[schema(min_length = 1, max_length = 2048)]
    browser_accept_header: Option<String>,
    /// An IPv4 or IPv6 address.
    #[serde(rename = "browserIP")]
    #[schema(max_length = 45)]
    browser_ip: Option<String>,
    browser_java_enabled: Option<bool>,
    browser_javascript_enabled: Option<bool>,
    /// A BCP 47 language tag.
    #[schema(pattern = "^[A-Za-z0-9-]{1,8}$")]
    browser_language: Option<String>,
    /// Bits per pixel.
    #[schema(pattern = "^(1|4|8|15|16|24|32|48)$")]
    browser_color_depth: Option<String>,
    #[schema(pattern = "^[0-9]{1,6}$")]
    browser_screen_height: Option<String>,
    #[schema(pattern = "^[0-9]{1,6}$")]
    browser_screen_width: Option<String>,
    /// Minutes between UTC and local time.
    #[serde(rename = "browserTZ")]
    #[schema(pattern = "^[+-]?[0-9]{1,4}$")]
    browser_tz: Option<String>,
    #[schema(min_length = 1, max_length = 2048)]
    browser_user_agent: Option<String>,
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;
    use utoipa::openapi::{RefOr, Schema};

    use super::*;
    use crate::emv::validate::ELEMENTS;

    #[test]
    fn the_schema_lists_the_elements_the_parser_reads() {
        let RefOr::T(Schema::Object(object)) = AReqSchema::schema() else { panic!("an object schema") };
        let described: Vec<&str> = object.properties.keys().map(String::as_str).collect();
        assert_eq!(described, ELEMENTS);
    }
}
