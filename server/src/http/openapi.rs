//! The OpenAPI 3.1 document of every public endpoint. The operations come
//! from the `#[utoipa::path]` annotations beside the handlers and the
//! schemas from the types they take and return, so the document changes
//! with the code. Served at `GET /openapi.json`, printed by `countersign
//! openapi`, committed as `docs/openapi.json`; tests keep the three equal
//! and every route of the router in the document.
//!
//! A new endpoint: annotate its handler and list it in [`ApiDoc`]'s paths.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use countersign_core::protocol::wire::ErrorBody;
use countersign_core::protocol::{HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse};

use super::{admin, device, health, requestor, window};
use crate::emv::{Erro, RReq};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Countersign",
        description = "Push-approval authentication for card payments (an EMV 3-D Secure ACS).\n\n\
            Four kinds of caller: requestors (merchants and 3DS servers, `requestorKey`), phones \
            (the device API, signed requests), the cardholder's browser (the challenge window and its \
            JSON API, keyed by the purchase), and operators (the admin API, `operatorKey` with a role).\n\n\
            Requestor errors are EMV `Erro` messages; every other JSON error is an `ErrorBody` with a \
            stable `code`. An unexpected failure answers 500 with code `internal`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        health::healthz,
        health::readyz,
        serve,
        requestor::authenticate,
        requestor::status,
        device::enrol,
        device::push_settings,
        device::pending,
        device::show,
        device::decide,
        device::unenrol_card,
        device::unenrol_device,
        window::show,
        window::request_code,
        window::resend_code,
        window::verify_code,
        crate::window::routes::creq_post,
        crate::window::routes::creq_get,
        crate::window::routes::act,
        crate::window::routes::poll,
        admin::create_operator,
        admin::operators,
        admin::revoke_operator,
        admin::create_requestor,
        admin::requestors,
        admin::requestor,
        admin::rotate_api_key,
        admin::revoke_previous_api_key,
        admin::rotate_callback_secret,
        admin::revoke_previous_callback_secret,
        admin::create_card,
        admin::import_cards,
        admin::card,
        admin::set_language,
        admin::set_contacts,
        admin::unblock_card,
        admin::set_security_questions,
        admin::security_questions,
        admin::create_enrolment_code,
        admin::card_devices,
        admin::revoke_device,
        admin::audit,
        admin::verify_authentication_value,
        admin::pushes,
        admin::messages,
    ),
    components(
        schemas(ErrorBody, Erro, RReq),
        responses(
            BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Gone, PayloadTooLarge, UnsupportedMediaType,
            Unprocessable, TooManyRequests, Unavailable, ErroBadRequest, ErroUnauthorized, ErroForbidden,
            ErroNotFound, ErroPayloadTooLarge, ErroUnavailable, ErrorPage,
        ),
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "requestor", description = "3DS requestors: AReq in, ARes out, the result later (and as an RReq \
            posted to the AReq's notificationURL, signed with the requestor's callback secret: see the RReq schema \
            and docs/api.md)."),
        (name = "device", description = "The cardholder's app. Every call but enrolment is signed with the device \
            key: the four X-Countersign-* headers (docs/protocol.md). The fuzz test cannot sign, so it reaches \
            these operations only with a bad signature: they must answer 401 with an ErrorBody."),
        (name = "window", description = "The JSON API of the browser challenge window, keyed by the purchase's \
            acsTransID."),
        (name = "challenge window (browser)", description = "The HTML pages of the challenge window: the acsURL a \
            3DS server's page posts the CReq to, the window's own forms, and its polling. Browsers use them, not \
            programs; they are here because the acsURL is part of the EMV browser flow a 3DS server integrates \
            with. Their static assets and the demo shop (/demo, development only) are left out."),
        (name = "admin", description = "Operators. `operatorKey` with role `support` (read, unblock) or `admin` \
            (everything); an operation whose security lists `admin` refuses a support key with 403."),
        (name = "health", description = "Liveness, readiness and this document."),
    ),
)]
struct ApiDoc;

/// The schemes the operations' `security` names.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        components.add_security_scheme(
            "requestorKey",
            bearer("A requestor API key (`csr_…`), made by an operator and stored only as a keyed hash."),
        );
        components.add_security_scheme(
            "operatorKey",
            bearer(
                "An operator API key (`cso_…`, `countersign operator create`) with a role: `support` or `admin`. \
                 The role an operation needs is listed in its security requirement.",
            ),
        );
        let header = |name: &str, description: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(name, description)))
        };
        components.add_security_scheme("deviceId", header(HEADER_DEVICE, "The device id from enrolment."));
        components.add_security_scheme(
            "deviceTimestamp",
            header(HEADER_TIMESTAMP, "Milliseconds since the Unix epoch; within 5 minutes of the server's clock."),
        );
        components.add_security_scheme(
            "deviceNonce",
            header(HEADER_NONCE, "16 random bytes, base64url; never reused within the freshness window."),
        );
        components.add_security_scheme(
            "deviceSignature",
            header(
                HEADER_SIGNATURE,
                "The device key's P-256 signature (DER, base64url) over the method, path and query, device id, \
                 timestamp, nonce and the body's SHA-256 (docs/protocol.md).",
            ),
        );
    }
}

/// Named error responses the operations refer to, each a JSON body of
/// one schema.
macro_rules! error_responses {
    ($($name:ident: $schema:ident, $description:literal;)*) => {$(
        #[doc = $description]
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
                let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(stringify!($schema)))).build();
                (stringify!($name), ResponseBuilder::new().description($description).content("application/json", content).build().into())
            }
        }
    )*};
}

error_responses! {
    BadRequest: ErrorBody, "The request is malformed: invalid JSON, a field out of range, a bad path segment or \
        query parameter (`bad_request`), or an enrolment code that does not match (`enrolment_code_invalid`, with \
        `attemptsLeft`).";
    Unauthorized: ErrorBody, "No valid credentials: a missing or unknown operator key (`unauthenticated`), or a \
        device request that is unsigned, signed wrongly, stale or replayed (`unauthenticated`, `bad_signature`, \
        `stale_timestamp`, `replayed_nonce`, `unknown_device`).";
    Forbidden: ErrorBody, "Refused for this caller: a support key where an admin one is needed \
        (`forbidden`), an unenrolled device (`device_revoked`), a device not enrolled for the card \
        (`not_enrolled_for_card`), or a card blocked after too many wrong codes (`card_blocked`).";
    NotFound: ErrorBody, "No such card, challenge, purchase, enrolment, operator, requestor or device \
        (`not_found`).";
    Conflict: ErrorBody, "The state does not allow it: already answered (`already_decided`), a code used \
        (`enrolment_code_used`), no code sent yet (`code_not_issued`), the record already exists \
        (`bad_request`), or it was revoked already (`bad_request` for an operator, `device_revoked` for a device).";
    Gone: ErrorBody, "Too late: the challenge, code or enrolment code expired (`challenge_expired`, \
        `code_expired`, `enrolment_code_expired`).";
    PayloadTooLarge: ErrorBody, "The body exceeds `server.body_limit_bytes` (`payload_too_large`).";
    UnsupportedMediaType: ErrorBody, "A form endpoint was sent something other than \
        `application/x-www-form-urlencoded` (`bad_request`).";
    Unprocessable: ErrorBody, "The code is not correct (`code_incorrect`, with `attemptsLeft`).";
    TooManyRequests: ErrorBody, "Too soon or too often (`resend_too_soon` with `retryAfterSecs`, \
        `resend_limit_reached`).";
    Unavailable: ErrorBody, "The database is briefly unavailable (`unavailable`): retry.";
    ErroBadRequest: Erro, "The AReq is refused: not JSON or not an AReq (101), unsupported version (102), \
        elements missing (201, `errorDetail` lists them), badly formatted (203) or duplicated (204), an ISO code \
        invalid (304), or transaction data not valid (305).";
    ErroUnauthorized: Erro, "A missing or unknown requestor API key (303).";
    ErroForbidden: Erro, "The AReq names another requestor than the key's (303).";
    ErroNotFound: Erro, "No such purchase for this requestor (301).";
    ErroPayloadTooLarge: Erro, "The AReq exceeds `server.body_limit_bytes` (101).";
    ErroUnavailable: Erro, "The database is briefly unavailable (403): retry.";
}

/// An HTML error page in the cardholder's language, fit for the 3DS iframe.
pub struct ErrorPage;

impl<'r> ToResponse<'r> for ErrorPage {
    fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
        let content = ContentBuilder::new().schema(Some(String::schema())).build();
        let response = ResponseBuilder::new()
            .description("An HTML error page in the cardholder's language, fit for the 3DS iframe.")
            .content("text/html", content)
            .build();
        ("ErrorPage", response.into())
    }
}

/// The document as served and committed: pretty JSON and a final newline.
pub fn document() -> &'static str {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        let mut json = ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises");
        json.push('\n');
        json
    });
    &DOCUMENT
}

/// This document
///
/// The OpenAPI 3.1 document of every public endpoint (the same as
/// docs/openapi.json).
#[utoipa::path(
    get, path = "/openapi.json", tag = "health", operation_id = "getOpenApi",
    responses((status = 200, description = "The document", content_type = "application/json", body = Object)),
)]
pub async fn serve() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        document(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Routes the document leaves out, and why: the window's static files,
    /// and the demo shop (development only, off with `window.demo = false`).
    const UNDOCUMENTED: [&str; 6] = [
        "GET /challenge/assets/window.css",
        "GET /challenge/assets/window.js",
        "GET /demo",
        "POST /demo/checkout",
        "POST /demo/notify",
        "GET /demo/result/{acs_trans_id}",
    ];

    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

    /// `METHOD /path` of every `.route(…)` in `http/mod.rs`.
    fn routed() -> BTreeSet<String> {
        let source = include_str!("mod.rs");
        let mut routes = BTreeSet::new();
        for (start, _) in source.match_indices(".route(") {
            let args = call_arguments(&source[start + ".route(".len()..]);
            let path = args.split('"').nth(1).expect("a route's first argument is its path");
            for method in METHODS {
                let called = args.match_indices(&format!("{method}(")).any(|(i, _)| {
                    args[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'))
                });
                if called {
                    routes.insert(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        routes
    }

    /// The text up to the parenthesis that closes an opened call.
    fn call_arguments(rest: &str) -> &str {
        let mut depth = 1;
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 1 => return &rest[..i],
                ')' => depth -= 1,
                _ => {}
            }
        }
        panic!("an unclosed .route( in http/mod.rs")
    }

    fn documented() -> BTreeSet<String> {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let mut operations = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if item.get(method).is_some() {
                    operations.insert(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        operations
    }

    #[test]
    fn every_route_is_documented_and_every_operation_routed() {
        let routed = routed();
        assert!(routed.len() > 30, "the route scan found too little: {routed:?}");
        let expected: BTreeSet<String> =
            routed.iter().filter(|r| !UNDOCUMENTED.contains(&r.as_str())).cloned().collect();
        let documented = documented();
        let missing: Vec<_> = expected.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&expected).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "routes without an OpenAPI operation: {missing:?}; operations without a route: {stale:?}. \
             Annotate the handler with #[utoipa::path] and list it in http/openapi.rs, then run \
             `cargo run -p countersign-server -- openapi > docs/openapi.json`"
        );
        for route in UNDOCUMENTED {
            assert!(routed.contains(route), "{route} is no longer routed: drop it from UNDOCUMENTED");
        }
    }

    #[test]
    fn operation_ids_are_unique_and_errors_typed() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        let typed = response.get("$ref").is_some() || path == "/readyz" || path == "/challenge/poll";
                        assert!(typed, "{method} {path} {status} is not one of the named error responses");
                    }
                }
            }
        }
    }
}
