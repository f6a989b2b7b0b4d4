//! What the end-to-end suites (in `tests/`) and the benchmark share.

use serde_json::{Value, json};

/// A browser AReq for `pan` (EUR, exponent 2).
pub fn areq(requestor_id: &str, pan: &str, amount_minor: u64, notification_url: &str) -> Value {
    json!({
        "messageType": "AReq",
        "messageVersion": "2.2.0",
        "threeDSServerTransID": uuid::Uuid::new_v4().to_string(),
        "deviceChannel": "02",
        "messageCategory": "01",
        "acctNumber": pan,
        "cardExpiryDate": "3012",
        "purchaseAmount": amount_minor.to_string(),
        "purchaseCurrency": "978",
        "purchaseExponent": "2",
        "purchaseDate": chrono::Utc::now().format("%Y%m%d%H%M%S").to_string(),
        "merchantName": "Nordic Outdoor AB",
        "mcc": "5941",
        "merchantCountryCode": "752",
        "acquirerMerchantID": "MID-000451",
        "threeDSRequestorID": requestor_id,
        "threeDSRequestorName": "Nordic Outdoor",
        "notificationURL": notification_url,
        "browserAcceptHeader": "text/html",
        "browserJavaEnabled": false,
        "browserLanguage": "sv-SE",
        "browserColorDepth": "24",
        "browserScreenHeight": "900",
        "browserScreenWidth": "1440",
        "browserTZ": "-60",
        "browserUserAgent": "Mozilla/5.0"
    })
}
