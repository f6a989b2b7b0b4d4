//! Tests of `parse_areq`: a valid fixture, then one refusal per rule.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::*;

const AMEX: &str = "378282246310005";
const TRANS_ID: &str = "8a880dc0-d2d2-4067-bcb1-b08d1690b26e";

fn fixture() -> Value {
    json!({
        "messageType": "AReq",
        "messageVersion": "2.2.0",
        "threeDSServerTransID": TRANS_ID,
        "deviceChannel": "02",
        "messageCategory": "01",
        "acctNumber": AMEX,
        "cardExpiryDate": "2812",
        "purchaseAmount": "12345",
        "purchaseCurrency": "978",
        "purchaseExponent": "2",
        "purchaseDate": "20250314092653",
        "merchantName": "Boulangerie Dupont",
        "mcc": "5462",
        "merchantCountryCode": "250",
        "acquirerMerchantID": "ACQ-MERCH-0001",
        "threeDSRequestorID": "REQ-42",
        "threeDSRequestorName": "Dupont en ligne",
        "threeDSRequestorChallengeInd": "01",
        "notificationURL": "https://merchant.example/3ds/notify?order=42",
        "browserAcceptHeader": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "browserIP": "192.0.2.10",
        "browserJavaEnabled": false,
        "browserJavascriptEnabled": true,
        "browserLanguage": "fr-FR",
        "browserColorDepth": "24",
        "browserScreenHeight": "1080",
        "browserScreenWidth": "1920",
        "browserTZ": "-60",
        "browserUserAgent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        // Elements this module does not read are ignored.
        "threeDSServerRefNumber": "3DS_LOA_SER_PPFU_020100_00008",
        "dsReferenceNumber": "DS_LOA_DIS_PPFU_020100_00010",
        "messageExtension": [{"name": "x", "id": "y", "criticalityIndicator": false, "data": {"a": [1, 2]}}],
    })
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn with(field: &str, value: Value) -> Vec<u8> {
    let mut v = fixture();
    v[field] = value;
    bytes(&v)
}

fn without(fields: &[&str]) -> Vec<u8> {
    let mut v = fixture();
    for f in fields {
        v.as_object_mut().unwrap().remove(*f);
    }
    bytes(&v)
}

#[track_caller]
fn refused(body: &[u8], code: &str, detail: &str) -> EmvError {
    let err = parse_areq(body).expect_err("should be refused");
    assert_eq!((err.code.as_str(), err.detail.as_str()), (code, detail), "{err}");
    err
}

#[test]
fn valid_browser_areq() {
    let a = parse_areq(&bytes(&fixture())).unwrap();
    assert_eq!(a.message_version, MessageVersion::V2_2_0);
    assert_eq!(a.three_ds_server_trans_id.to_string(), TRANS_ID);
    assert_eq!(a.device_channel, DeviceChannel::Browser);
    assert_eq!(a.message_category, MessageCategory::Payment);
    assert_eq!(a.acct_number.as_str(), AMEX);
    assert_eq!(a.card_expiry_date, Some(CardExpiry { yy: 28, month: 12 }));
    assert_eq!(a.card_expiry_date.unwrap().year(), 2028);
    let p = a.purchase.unwrap();
    assert_eq!(p.amount, 12345);
    assert_eq!((p.currency.numeric, p.currency.alpha, p.currency.exponent), (978, "EUR", 2));
    assert_eq!(p.exponent, 2);
    assert_eq!(p.date.to_string(), "2025-03-14 09:26:53");
    assert_eq!(a.merchant_name, "Boulangerie Dupont");
    assert_eq!(a.mcc, "5462");
    assert_eq!(a.merchant_country_code, 250);
    assert_eq!(a.acquirer_merchant_id, "ACQ-MERCH-0001");
    assert_eq!(a.three_ds_requestor_id, "REQ-42");
    assert_eq!(a.three_ds_requestor_name, "Dupont en ligne");
    assert_eq!(a.three_ds_requestor_challenge_ind, Some(ChallengeIndicator::NoPreference));
    assert_eq!(a.notification_url.as_deref(), Some("https://merchant.example/3ds/notify?order=42"));
    let b = a.browser.unwrap();
    assert_eq!(b.ip, Some("192.0.2.10".parse().unwrap()));
    assert!(!b.java_enabled);
    assert_eq!(b.javascript_enabled, Some(true));
    assert_eq!(b.language, "fr-FR");
    assert_eq!(b.color_depth, 24);
    assert_eq!((b.screen_width, b.screen_height), (1920, 1080));
    assert_eq!(b.tz_offset_minutes, -60);
    assert!(b.user_agent.starts_with("Mozilla/5.0"));
}

#[test]
fn valid_jpy_areq_on_2_3_1() {
    let mut v = fixture();
    v["messageVersion"] = json!("2.3.1");
    v["purchaseCurrency"] = json!("392");
    v["purchaseExponent"] = json!("0");
    v["purchaseAmount"] = json!("0000500");
    v["threeDSServerTransID"] = json!(TRANS_ID.to_uppercase());
    v["threeDSRequestorChallengeInd"] = json!("07");
    for optional in ["cardExpiryDate", "browserIP", "browserJavascriptEnabled"] {
        v.as_object_mut().unwrap().remove(optional);
    }
    let a = parse_areq(&bytes(&v)).unwrap();
    assert_eq!(a.message_version, MessageVersion::V2_3_1);
    assert_eq!(a.three_ds_server_trans_id.to_string(), TRANS_ID);
    let p = a.purchase.unwrap();
    assert_eq!((p.amount, p.currency.alpha, p.exponent), (500, "JPY", 0));
    assert_eq!(a.card_expiry_date, None);
    assert_eq!(a.three_ds_requestor_challenge_ind, Some(ChallengeIndicator::Other(7)));
    let b = a.browser.unwrap();
    assert_eq!((b.ip, b.javascript_enabled), (None, None));
}

#[test]
fn valid_app_and_3ri_need_no_browser_elements() {
    let browser_only = [
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
    for channel in ["01", "03"] {
        let mut v: Value = serde_json::from_slice(&without(&browser_only)).unwrap();
        v["deviceChannel"] = json!(channel);
        let a = parse_areq(&bytes(&v)).unwrap();
        assert_eq!(a.device_channel.as_str(), channel);
        assert_eq!((a.browser, a.notification_url), (None, None));
    }
    // Browser elements are ignored outside the browser channel, even if malformed.
    let mut v = fixture();
    v["deviceChannel"] = json!("01");
    v["browserColorDepth"] = json!(7);
    assert!(parse_areq(&bytes(&v)).unwrap().browser.is_none());
}

#[test]
fn non_payment_purchase_is_optional_but_all_or_nothing() {
    let purchase = ["purchaseAmount", "purchaseCurrency", "purchaseExponent", "purchaseDate"];
    let mut v: Value = serde_json::from_slice(&without(&purchase)).unwrap();
    v["messageCategory"] = json!("02");
    let a = parse_areq(&bytes(&v)).unwrap();
    assert_eq!((a.message_category, a.purchase), (MessageCategory::NonPayment, None));

    v["purchaseAmount"] = json!("100");
    refused(&bytes(&v), "201", "purchaseCurrency,purchaseExponent,purchaseDate");

    let mut full = fixture();
    full["messageCategory"] = json!("02");
    assert_eq!(parse_areq(&bytes(&full)).unwrap().purchase.unwrap().amount, 12345);
}

const REQUIRED: [&str; 25] = [
    "messageType",
    "messageVersion",
    "threeDSServerTransID",
    "deviceChannel",
    "messageCategory",
    "acctNumber",
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
    "notificationURL",
    "browserAcceptHeader",
    "browserJavaEnabled",
    "browserLanguage",
    "browserColorDepth",
    "browserScreenHeight",
    "browserScreenWidth",
    "browserTZ",
    "browserUserAgent",
];

#[test]
fn every_required_element_missing_is_201() {
    for field in REQUIRED {
        refused(&without(&[field]), "201", field);
        // JSON null counts as absent.
        refused(&with(field, Value::Null), "201", field);
    }
}

#[test]
fn all_missing_elements_are_listed() {
    refused(&without(&["mcc", "acctNumber", "browserTZ"]), "201", "acctNumber,mcc,browserTZ");
    // Without a deviceChannel the browser elements cannot be required yet.
    refused(&without(&["deviceChannel", "browserTZ"]), "201", "deviceChannel");
}

#[test]
fn wrong_json_types_are_203() {
    let string_fields = REQUIRED
        .iter()
        .chain(&["cardExpiryDate", "threeDSRequestorChallengeInd", "browserIP"])
        .filter(|f| !matches!(**f, "messageType" | "browserJavaEnabled"));
    for field in string_fields {
        refused(&with(field, json!(1)), "203", field);
        refused(&with(field, json!(true)), "203", field);
        refused(&with(field, json!(["x"])), "203", field);
        refused(&with(field, json!({"x": 1})), "203", field);
    }
    for field in ["browserJavaEnabled", "browserJavascriptEnabled"] {
        refused(&with(field, json!("true")), "203", field);
        refused(&with(field, json!(1)), "203", field);
    }
    // A number for the amount: a JSON number is not the EMV numeric string.
    refused(&with("purchaseAmount", json!(12345)), "203", "purchaseAmount");
}

#[test]
fn bad_values() {
    let u64_max = u64::MAX.to_string();
    let over = "18446744073709551616"; // u64::MAX + 1
    let cases: &[(&str, Value, &str)] = &[
        ("messageType", json!("CReq"), "101"),
        ("messageType", json!("areq"), "101"),
        ("messageType", json!(1), "101"),
        ("messageVersion", json!("2.1.0"), "102"),
        ("messageVersion", json!("2.2"), "102"),
        ("threeDSServerTransID", json!("not-a-uuid"), "203"),
        ("threeDSServerTransID", json!("8a880dc0d2d24067bcb1b08d1690b26e"), "203"),
        ("threeDSServerTransID", json!("{8a880dc0-d2d2-4067-bcb1-b08d1690b26e}"), "203"),
        ("threeDSServerTransID", json!("8a880dc0-d2d2-4067-bcb1-b08d1690b26z"), "203"),
        ("deviceChannel", json!("04"), "203"),
        ("deviceChannel", json!("2"), "203"),
        ("messageCategory", json!("80"), "203"),
        ("acctNumber", json!("378282246310006"), "203"),      // Luhn
        ("acctNumber", json!("400000000002"), "203"),         // 12 digits
        ("acctNumber", json!("40000000000000000006"), "203"), // 20 digits
        ("acctNumber", json!("3782 822463 10005"), "203"),
        ("acctNumber", json!(""), "203"),
        ("cardExpiryDate", json!("2813"), "203"),
        ("cardExpiryDate", json!("2800"), "203"),
        ("cardExpiryDate", json!("12/28"), "203"),
        ("purchaseAmount", json!("12.50"), "203"),
        ("purchaseAmount", json!("-1"), "203"),
        ("purchaseAmount", json!("1e3"), "203"),
        ("purchaseAmount", json!(" 100"), "203"),
        ("purchaseAmount", json!(""), "203"),
        ("purchaseAmount", json!(over), "203"),
        ("purchaseAmount", json!("9".repeat(48)), "203"),
        ("purchaseAmount", json!("1".repeat(49)), "203"),
        ("purchaseCurrency", json!("999"), "304"),
        ("purchaseCurrency", json!("955"), "304"),
        ("purchaseCurrency", json!("959"), "304"),
        ("purchaseCurrency", json!("960"), "304"),
        ("purchaseCurrency", json!("964"), "304"),
        ("purchaseCurrency", json!("000"), "304"),
        ("purchaseCurrency", json!("001"), "304"),
        ("purchaseCurrency", json!("191"), "304"), // HRK, withdrawn
        ("purchaseCurrency", json!("EUR"), "203"),
        ("purchaseCurrency", json!("97"), "203"),
        ("purchaseCurrency", json!("0978"), "203"),
        ("purchaseExponent", json!("3"), "203"),
        ("purchaseExponent", json!("0"), "203"),
        ("purchaseExponent", json!("22"), "203"),
        ("purchaseExponent", json!("x"), "203"),
        ("purchaseDate", json!("20250230120000"), "203"),
        ("purchaseDate", json!("2025-03-14T09:26:53Z"), "203"),
        ("purchaseDate", json!("202503140926"), "203"),
        ("purchaseDate", json!("20251314092653"), "203"),
        ("purchaseDate", json!("20250314246000"), "203"),
        ("merchantName", json!("M".repeat(41)), "203"),
        ("merchantName", json!("M".repeat(100_000)), "203"),
        ("merchantName", json!(""), "203"),
        ("mcc", json!("546"), "203"),
        ("mcc", json!("54a2"), "203"),
        ("merchantCountryCode", json!("999"), "304"),
        ("merchantCountryCode", json!("955"), "304"),
        ("merchantCountryCode", json!("964"), "304"),
        ("merchantCountryCode", json!("000"), "304"),
        ("merchantCountryCode", json!("FRA"), "203"),
        ("merchantCountryCode", json!("25"), "203"),
        ("acquirerMerchantID", json!("A".repeat(36)), "203"),
        ("threeDSRequestorID", json!("R".repeat(36)), "203"),
        ("threeDSRequestorName", json!("N".repeat(41)), "203"),
        ("threeDSRequestorChallengeInd", json!("00"), "203"),
        ("threeDSRequestorChallengeInd", json!("10"), "203"),
        ("threeDSRequestorChallengeInd", json!("1"), "203"),
        ("notificationURL", json!("merchant.example/notify"), "203"),
        ("notificationURL", json!("ftp://merchant.example/notify"), "203"),
        ("notificationURL", json!("javascript:alert(1)"), "203"),
        ("notificationURL", json!("https://merchant example/"), "203"),
        ("notificationURL", json!("https://user:pw@merchant.example/"), "203"),
        ("notificationURL", json!(format!("https://merchant.example/{}", "a".repeat(240))), "203"),
        ("browserAcceptHeader", json!("a".repeat(2049)), "203"),
        ("browserIP", json!("999.1.1.1"), "203"),
        ("browserIP", json!("192.0.2.10:80"), "203"),
        ("browserLanguage", json!("fr-FR-xyz"), "203"),
        ("browserLanguage", json!("fr_FR"), "203"),
        ("browserColorDepth", json!("23"), "203"),
        ("browserColorDepth", json!("024"), "203"),
        ("browserScreenHeight", json!("1234567"), "203"),
        ("browserScreenWidth", json!("-1"), "203"),
        ("browserTZ", json!("abc"), "203"),
        ("browserTZ", json!("--60"), "203"),
        ("browserTZ", json!("-"), "203"),
        ("browserTZ", json!("123456"), "203"),
        ("browserUserAgent", json!("U".repeat(2049)), "203"),
    ];
    for (field, value, code) in cases {
        let err = parse_areq(&with(field, value.clone())).expect_err(field);
        assert_eq!((err.code.as_str(), err.detail.as_str()), (*code, *field), "{field} = {value:.40}: {err}");
        assert_eq!(err.http_status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(parse_areq(&with("purchaseAmount", json!(u64_max))).unwrap().purchase.unwrap().amount, u64::MAX);
    assert!(parse_areq(&with("notificationURL", json!(format!("https://m.example/{}", "a".repeat(238))))).is_ok());
    assert!(parse_areq(&with("browserIP", json!("2001:db8::7"))).is_ok());
    assert!(parse_areq(&with("browserTZ", json!("+330"))).is_ok());
    assert!(parse_areq(&with("merchantName", json!("Café Zoë ".repeat(4).trim_end()))).is_ok());
}

#[test]
fn exponent_must_match_currency() {
    let mut jpy_with_cents = fixture();
    jpy_with_cents["purchaseCurrency"] = json!("392");
    let err = refused(&bytes(&jpy_with_cents), "203", "purchaseExponent");
    assert!(err.description.contains("must be 0"), "{}", err.description);
    let mut bhd = fixture();
    bhd["purchaseCurrency"] = json!("048");
    bhd["purchaseExponent"] = json!("3");
    assert_eq!(parse_areq(&bytes(&bhd)).unwrap().purchase.unwrap().currency.alpha, "BHD");
}

#[test]
fn duplicate_element_is_204() {
    let body = bytes(&fixture());
    let dup = format!("{{\"acctNumber\":\"4111111111111111\",{}", std::str::from_utf8(&body[1..]).unwrap());
    let err = refused(dup.as_bytes(), "204", "acctNumber");
    assert_eq!(err.three_ds_server_trans_id.map(|u| u.to_string()).as_deref(), Some(TRANS_ID));
    assert_eq!(err.error_message_type, Some("AReq"));
    assert_eq!(err.message_version, Some(MessageVersion::V2_2_0));

    let dup_header = br#"{"messageType":"AReq","messageType":"AReq"}"#;
    refused(dup_header, "204", "messageType");
    // Unknown elements are not checked for duplicates.
    let dup_unknown = format!("{{\"sdkAppID\":1,\"sdkAppID\":2,{}", std::str::from_utf8(&body[1..]).unwrap());
    assert!(parse_areq(dup_unknown.as_bytes()).is_ok());
}

#[test]
fn unparseable_messages_are_101() {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    // Known elements are read as JSON values, which serde_json nests at most 128 deep.
    let deep_in_field = format!("{{\"merchantName\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"[]".to_vec(),
        bytes(&json!([fixture()])),
        b"null".to_vec(),
        b"\"AReq\"".to_vec(),
        b"42".to_vec(),
        b"{\"messageType\":\"AReq\"".to_vec(),
        [bytes(&fixture()), b" trailing".to_vec()].concat(),
        b"{\"messageType\":\"AR\xffeq\"}".to_vec(),
        deep.into_bytes(),
        deep_in_field.into_bytes(),
    ];
    for body in &bodies {
        let err = refused(body, "101", "message");
        assert_eq!(err.http_status(), StatusCode::BAD_REQUEST);
        assert_eq!((err.three_ds_server_trans_id, err.error_message_type), (None, None));
    }
    refused(b"{}", "201", "messageType");
    // Unknown elements are skipped without recursion, however deep.
    let mut v = fixture();
    v["sdkEphemPubKey"] = json!("placeholder");
    let deep_unknown = String::from_utf8(bytes(&v))
        .unwrap()
        .replace("\"placeholder\"", &format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)));
    assert!(parse_areq(deep_unknown.as_bytes()).is_ok());
}

#[test]
fn oversized_body_is_413() {
    let huge = with("merchantName", json!("M".repeat(10 * 1024 * 1024)));
    let err = refused(&huge, "101", "message");
    assert_eq!(err.http_status(), StatusCode::PAYLOAD_TOO_LARGE);
    let at_limit = with("merchantName", json!("M".repeat(MAX_AREQ_BYTES - 2000)));
    refused(&at_limit, "203", "merchantName");
}

#[test]
fn errors_echo_what_was_readable() {
    let err = refused(&with("purchaseAmount", json!("1.5")), "203", "purchaseAmount");
    let erro = serde_json::to_value(err.to_erro()).unwrap();
    assert_eq!(
        erro,
        json!({
            "messageType": "Erro",
            "messageVersion": "2.2.0",
            "threeDSServerTransID": TRANS_ID,
            "errorCode": "203",
            "errorComponent": "A",
            "errorDescription": "Format of one or more data elements is invalid: purchaseAmount must be 1 to 48 digits",
            "errorDetail": "purchaseAmount",
            "errorMessageType": "AReq",
        })
    );

    let mut v = fixture();
    v["messageType"] = json!("CReq");
    v["messageVersion"] = json!("2.3.1");
    let err = refused(&bytes(&v), "101", "messageType");
    assert_eq!(err.error_message_type, Some("CReq"));
    assert_eq!(err.message_version, Some(MessageVersion::V2_3_1));

    let err = refused(&with("messageVersion", json!("2.1.0")), "102", "messageVersion");
    assert_eq!(err.message_version, None);
    assert_eq!(err.to_erro().message_version, ERRO_FALLBACK_VERSION);
    assert!(err.three_ds_server_trans_id.is_some());

    let err = refused(&with("threeDSServerTransID", json!("nope")), "203", "threeDSServerTransID");
    assert!(err.three_ds_server_trans_id.is_none());
    assert!(serde_json::to_value(err.to_erro()).unwrap().get("threeDSServerTransID").is_none());

    let err = refused(&with("messageType", json!("Bogus")), "101", "messageType");
    assert_eq!(err.error_message_type, None);
}

#[test]
fn pan_never_leaks() {
    let a = parse_areq(&bytes(&fixture())).unwrap();
    let debug = format!("{a:?}");
    assert!(!debug.contains(AMEX), "{debug}");
    assert!(debug.contains("Pan(…0005)"));
    assert_eq!(a.acct_number.masked(), "•••• 0005");
    assert_eq!(a.acct_number.last_digits(4), "0005");

    for bad in ["378282246310006", "37828224631000512345"] {
        let err = parse_areq(&with("acctNumber", json!(bad))).unwrap_err();
        let all = format!("{err} {err:?} {}", serde_json::to_string(&err.to_erro()).unwrap());
        assert!(!all.contains(bad) && !all.contains("3782822463"), "{all}");
    }
}

#[test]
fn never_panics_on_mangled_input() {
    let body = bytes(&fixture());
    for cut in 0..body.len() {
        let _ = parse_areq(&body[..cut]);
    }
    // Deterministic byte mutations (xorshift).
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut b = body.clone();
        for _ in 0..=(next() % 4) {
            let i = (next() % b.len() as u64) as usize;
            b[i] = (next() & 0xff) as u8;
        }
        let _ = parse_areq(&b);
    }
    // Odd values in every element.
    let odd =
        [json!(""), json!(" "), json!("\u{0}"), json!("é".repeat(50)), json!(-1), json!(1.5e300), json!({}), json!([])];
    for field in REQUIRED {
        for value in &odd {
            let _ = parse_areq(&with(field, value.clone()));
        }
    }
}
