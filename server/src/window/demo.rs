//! The demo shop at `/demo`: a checkout that plays merchant and 3DS
//! server. It sends the AReq in-process, opens the challenge window in an
//! iframe with a CReq the way a real 3DS server's page does, receives the
//! RReq and the CRes at its notificationURL, and shows the result. On by
//! default in the zero-config mode; `window.demo = false` removes it.
//! Its words are English only: it stands in for a merchant, not the issuer.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use countersign_core::protocol::CanonicalWriter;
use maud::{DOCTYPE, Markup, html};

use super::creq::{self, CRes};
use super::routes::html;
use crate::app::App;
use crate::error::ApiError;
use crate::flows::admin::{self, NewRequestorRequest};
use crate::flows::{authenticate, callbacks};
use crate::http::extract::{Form, Path};
use crate::secrets::{Keys, Purpose, constant_time_eq};
use crate::storage::{Requestor, StorageError};

/// The demo shop's threeDSRequestorID.
pub const REQUESTOR_ID: &str = "countersign-demo";
const CSRF_VALIDITY_MS: i64 = 3_600_000;
const CURRENCIES: [(&str, &str, u8); 4] = [("EUR", "978", 2), ("SEK", "752", 2), ("JPY", "392", 0), ("USD", "840", 2)];

/// The 404 every demo route answers when the demo is turned off.
fn disabled(app: &App) -> Option<Response> {
    (!app.config.window.demo).then(|| ApiError::not_found("route").into_response())
}

fn page(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Countersign demo shop" }
                link rel="stylesheet" href="/challenge/assets/window.css";
                script src="/challenge/assets/window.js" defer {}
            }
            body class="shop" {
                header class="bar" { span class="issuer" { "Demo Shop" } span { "Countersign demo" } }
                main { (content) }
            }
        }
    }
}

fn respond(app: &App, status: StatusCode, markup: Markup) -> Response {
    html(status, markup, &["'self'".to_owned()], Some(&app.config.public_url()))
}

/// A token that this page was served by this server, for the checkout form.
fn csrf(keys: &Keys, issued_at: i64) -> String {
    let mac = keys.keyed_hash(
        Purpose::WindowSession,
        &CanonicalWriter::new("countersign.demo.csrf.v1").str(&issued_at.to_string()).finish(),
    );
    format!("{issued_at}.{}", hex::encode(&mac[..16]))
}

fn csrf_ok(app: &App, token: &str) -> bool {
    let Some(issued_at) = token.split_once('.').and_then(|(t, _)| t.parse::<i64>().ok()) else { return false };
    let age = app.now_ms() - issued_at;
    (0..CSRF_VALIDITY_MS).contains(&age)
        && app
            .secrets
            .all()
            .fold(false, |ok, (_, k)| constant_time_eq(csrf(k, issued_at).as_bytes(), token.as_bytes()) | ok)
}

/// The checkout form.
pub async fn checkout_form(State(app): State<App>) -> Response {
    if let Some(r) = disabled(&app) {
        return r;
    }
    let token = csrf(app.secrets.current(), app.now_ms());
    let markup = page(
        "Checkout",
        html! {
            h1 { "Checkout" }
            p { "A merchant's checkout with Countersign as the card issuer's ACS. Use a card an operator registered "
                "(" code { "countersign card create" } "); its code arrives in the outbox ("
                code { "countersign messages" } ") and its push in the device simulator." }
            form method="post" action="/demo/checkout" {
                input type="hidden" name="csrf" value=(token);
                label for="pan" { "Card number" }
                input id="pan" name="pan" type="text" inputmode="numeric" autocomplete="cc-number" required;
                label for="amount" { "Amount" }
                input id="amount" name="amount" type="text" inputmode="decimal" value="128.00" required;
                label for="currency" { "Currency" }
                select id="currency" name="currency" {
                    @for (alpha, _, _) in CURRENCIES { option value=(alpha) { (alpha) } }
                }
                label for="size" { "Challenge window size" }
                select id="size" name="size" {
                    option value="05" { "05 — full screen" }
                    option value="01" { "01 — 250 × 400" }
                    option value="02" { "02 — 390 × 400" }
                    option value="03" { "03 — 500 × 600" }
                    option value="04" { "04 — 600 × 400" }
                }
                button type="submit" class="primary" { "Pay" }
            }
        },
    );
    respond(&app, StatusCode::OK, markup)
}

/// The demo's own requestor, created on first use.
async fn requestor(app: &App) -> Result<Requestor, ApiError> {
    if let Some(r) = app.storage.requestor(REQUESTOR_ID).await? {
        return Ok(r);
    }
    let new = NewRequestorRequest { id: REQUESTOR_ID.into(), name: "Countersign demo shop".into() };
    match admin::create_requestor(app, new, "system:demo").await {
        Ok(_) => {}
        // Another node or request created it meanwhile.
        Err(e) if e.status == StatusCode::CONFLICT => {}
        Err(e) => return Err(e),
    }
    app.storage.requestor(REQUESTOR_ID).await?.ok_or_else(|| StorageError::Unavailable("demo requestor".into()).into())
}

/// "Amount" as typed, in minor units of `exponent`.
fn minor_units(amount: &str, exponent: u8) -> Option<u64> {
    let (whole, frac) = amount.trim().split_once('.').unwrap_or((amount.trim(), ""));
    if whole.is_empty()
        || frac.len() > usize::from(exponent)
        || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac = format!("{frac:0<width$}", width = usize::from(exponent));
    format!("{whole}{frac}").parse().ok().filter(|v| *v > 0)
}

/// Sends the AReq and, for a challenge, opens the window in an iframe.
pub async fn checkout(State(app): State<App>, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    if let Some(r) = disabled(&app) {
        return r;
    }
    let get = |n: &str| f.get(n).map(String::as_str).unwrap_or_default();
    if !csrf_ok(&app, get("csrf")) {
        return respond(
            &app,
            StatusCode::FORBIDDEN,
            page(
                "Checkout",
                html! { h1 { "Please reload the checkout" } p { "The form was too old or not ours." } a href="/demo" { "Back to the checkout" } },
            ),
        );
    }
    let Some((alpha, numeric, exponent)) = CURRENCIES.into_iter().find(|(a, _, _)| *a == get("currency")) else {
        return bad(&app, "Choose a currency.");
    };
    let Some(amount) = minor_units(get("amount"), exponent) else {
        return bad(&app, "Enter an amount such as 128.00.");
    };
    let size = Some(get("size")).filter(|s| creq::WINDOW_SIZES.contains(s)).unwrap_or("05");
    let requestor = match requestor(&app).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let header_str = |h: header::HeaderName, default: &str| {
        headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or(default).chars().take(200).collect::<String>()
    };
    let language = header_str(header::ACCEPT_LANGUAGE, "en")
        .split([',', ';'])
        .next()
        .unwrap_or("en")
        .trim()
        .chars()
        .take(8)
        .collect::<String>();
    let server_trans_id = uuid::Uuid::new_v4().to_string();
    let areq = serde_json::json!({
        "messageType": "AReq", "messageVersion": "2.2.0",
        "threeDSServerTransID": server_trans_id,
        "deviceChannel": "02", "messageCategory": "01",
        "acctNumber": get("pan").chars().filter(char::is_ascii_digit).collect::<String>(),
        "purchaseAmount": amount.to_string(), "purchaseCurrency": numeric, "purchaseExponent": exponent.to_string(),
        "purchaseDate": chrono::DateTime::from_timestamp_millis(app.now_ms()).unwrap_or_default().format("%Y%m%d%H%M%S").to_string(),
        "merchantName": "Demo Shop", "mcc": "5999", "merchantCountryCode": "752", "acquirerMerchantID": "DEMO-0001",
        "threeDSRequestorID": REQUESTOR_ID, "threeDSRequestorName": "Countersign demo shop",
        "notificationURL": format!("{}/demo/notify", app.config.public_url()),
        "browserAcceptHeader": header_str(header::ACCEPT, "text/html"), "browserJavaEnabled": false,
        "browserLanguage": if language.is_empty() { "en".to_owned() } else { language },
        "browserColorDepth": "24", "browserScreenHeight": "900", "browserScreenWidth": "1440", "browserTZ": "0",
        "browserUserAgent": header_str(header::USER_AGENT, "Mozilla/5.0"),
    });
    let ares = match authenticate::authenticate(&app, &requestor, areq.to_string().as_bytes()).await {
        Ok(ares) => serde_json::to_value(&ares).unwrap_or_default(),
        Err(e) => return bad(&app, &format!("The card issuer refused the request: {} ({})", e.description, e.detail)),
    };
    let acs_trans_id = ares["acsTransID"].as_str().unwrap_or_default().to_owned();
    if ares["transStatus"] != "C" {
        return result_page(&app, &acs_trans_id, &format!("{amount_text} {alpha}", amount_text = get("amount")), None)
            .await;
    }
    let acs_url = ares["acsURL"].as_str().unwrap_or_default().to_owned();
    let creq = creq::encode_creq("2.2.0", &server_trans_id, &acs_trans_id, size);
    let markup = page(
        "Confirm with your bank",
        html! {
            h1 { "Confirm with your card issuer" }
            p { "Demo Shop · " (get("amount")) " " (alpha) }
            iframe name="challenge" title="Card issuer's confirmation" class={ "frame size-" (size) } {}
            form method="post" action=(acs_url) target="challenge" data-autosubmit="0" {
                input type="hidden" name="creq" value=(creq);
                input type="hidden" name="threeDSSessionData" value=(format!("demo-{acs_trans_id}"));
                noscript { button type="submit" class="primary" { "Open the confirmation" } }
            }
        },
    );
    respond(&app, StatusCode::OK, markup)
}

fn bad(app: &App, message: &str) -> Response {
    respond(
        app,
        StatusCode::BAD_REQUEST,
        page(
            "Checkout",
            html! { h1 { "Cannot pay" } p class="notice error" { (message) } a href="/demo" { "Back to the checkout" } },
        ),
    )
}

/// The demo's notificationURL: the RReq (JSON, signed, from the server)
/// and the CRes (a form post, from the browser in the iframe).
pub async fn notify(State(app): State<App>, request: Request) -> Response {
    if let Some(r) = disabled(&app) {
        return r;
    }
    let headers = request.headers().clone();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        let Ok(body) = Bytes::from_request(request, &()).await else { return StatusCode::BAD_REQUEST.into_response() };
        return rreq(&app, &headers, &body).await;
    }
    let Ok(Form(fields)) = Form::<HashMap<String, String>>::from_request(request, &()).await else {
        return bad(&app, "No CRes in the post.");
    };
    let Some(cres) = fields.get("cres").and_then(|c| CRes::decode(c)) else { return bad(&app, "No CRes in the post.") };
    let target = format!("/demo/result/{}", cres.acs_trans_id);
    // Inside the iframe: take the whole page to the result.
    let markup = page(
        "Result",
        html! {
            p { "Payment " (if cres.trans_status == "Y" { "confirmed" } else { "not confirmed" }) "." }
            form method="get" action=(target) target="_top" data-autosubmit="0" { button type="submit" class="primary" { "Show the result" } }
        },
    );
    respond(&app, StatusCode::OK, markup)
}

async fn rreq(app: &App, headers: &HeaderMap, body: &[u8]) -> Response {
    let Ok(Some(requestor)) = app.storage.requestor(REQUESTOR_ID).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let signature = headers.get(callbacks::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let text = String::from_utf8_lossy(body);
    let Ok(secrets) = admin::callback_secrets(app, &requestor, app.now_ms()) else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    if callbacks::verify(&secrets[0], signature, &text).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let acs = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["acsTransID"].as_str().map(str::to_owned))
        .unwrap_or_default();
    axum::Json(serde_json::json!({ "messageType": "RRes", "messageVersion": "2.2.0", "acsTransID": acs, "resultsStatus": "01" })).into_response()
}

/// The checkout's last page: what the 3DS server learnt.
pub async fn result(State(app): State<App>, Path(acs_trans_id): Path<String>) -> Response {
    if let Some(r) = disabled(&app) {
        return r;
    }
    result_page(&app, &acs_trans_id, "", None).await
}

async fn result_page(app: &App, acs_trans_id: &str, amount: &str, _note: Option<&str>) -> Response {
    let auth = match app.storage.authentication(acs_trans_id).await {
        Ok(Some(a)) if a.requestor_id == REQUESTOR_ID => a,
        Ok(_) => return bad(app, "No such purchase at this shop."),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let callback = app.storage.callback_status(acs_trans_id).await.ok().flatten();
    let ok = auth.trans_status == "Y";
    let markup = page(
        "Result",
        html! {
            h1 data-trans-status=(auth.trans_status) { @if ok { "Payment authenticated" } @else { "Payment not authenticated" } }
            table {
                tr { th { "transStatus" } td id="trans-status" { (auth.trans_status) } }
                @if let Some(reason) = &auth.trans_status_reason { tr { th { "transStatusReason" } td id="trans-status-reason" { (reason) } } }
                @if let Some(eci) = &auth.eci { tr { th { "ECI" } td { (eci) } } }
                @if !amount.is_empty() { tr { th { "Amount" } td { (amount) } } }
                tr { th { "RReq" } td id="rreq" { (callback.map_or_else(|| "none (frictionless)".to_owned(), |c| c.state)) } }
                tr { th { "acsTransID" } td { code { (auth.acs_trans_id) } } }
            }
            p { a href="/demo" { "Another purchase" } }
        },
    );
    respond(app, StatusCode::OK, markup)
}

#[cfg(test)]
mod tests {
    use super::minor_units;

    #[test]
    fn amounts_in_minor_units() {
        assert_eq!(minor_units("128.00", 2), Some(12800));
        assert_eq!(minor_units("128", 2), Some(12800));
        assert_eq!(minor_units("5.5", 2), Some(550));
        assert_eq!(minor_units("1200", 0), Some(1200));
        assert_eq!(minor_units("1.234", 2), None);
        assert_eq!(minor_units("-1", 2), None);
        assert_eq!(minor_units("0", 2), None);
    }
}
