//! The HTTP surface: routes, extractors and the layers around them.

mod admin;
mod device;
pub(crate) mod extract;
mod health;
pub mod openapi;
mod requestor;
mod window;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use countersign_core::protocol::wire::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::error::ApiError;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::serve))
        .route("/v1/authentications", post(requestor::authenticate))
        .route("/v1/authentications/{acs_trans_id}", get(requestor::status))
        .route("/v1/device/enrolments", post(device::enrol))
        .route("/v1/device/push-settings", put(device::push_settings))
        .route("/v1/device/challenges", get(device::pending))
        .route("/v1/device/challenges/{challenge_id}", get(device::show))
        .route("/v1/device/challenges/{challenge_id}/decision", post(device::decide))
        .route("/v1/device/cards/{card_id}", delete(device::unenrol_card))
        .route("/v1/device", delete(device::unenrol_device))
        .route("/v1/window/{acs_trans_id}", get(window::show))
        .route("/v1/window/{acs_trans_id}/code", post(window::request_code))
        .route("/v1/window/{acs_trans_id}/code/resend", post(window::resend_code))
        .route("/v1/window/{acs_trans_id}/code/verify", post(window::verify_code))
        .route("/challenge", post(crate::window::routes::creq_post).get(crate::window::routes::creq_get))
        .route("/challenge/act", post(crate::window::routes::act))
        .route("/challenge/poll", post(crate::window::routes::poll))
        .route("/challenge/assets/window.css", get(crate::window::routes::stylesheet))
        .route("/challenge/assets/window.js", get(crate::window::routes::script))
        .route("/demo", get(crate::window::demo::checkout_form))
        .route("/demo/checkout", post(crate::window::demo::checkout))
        .route("/demo/notify", post(crate::window::demo::notify))
        .route("/demo/result/{acs_trans_id}", get(crate::window::demo::result))
        .route("/v1/admin/operators", post(admin::create_operator).get(admin::operators))
        .route("/v1/admin/operators/{operator_id}/revoke", post(admin::revoke_operator))
        .route("/v1/admin/requestors", post(admin::create_requestor).get(admin::requestors))
        .route("/v1/admin/requestors/{requestor_id}", get(admin::requestor))
        .route("/v1/admin/requestors/{requestor_id}/api-key/rotate", post(admin::rotate_api_key))
        .route("/v1/admin/requestors/{requestor_id}/api-key/revoke-previous", post(admin::revoke_previous_api_key))
        .route("/v1/admin/requestors/{requestor_id}/callback-secret/rotate", post(admin::rotate_callback_secret))
        .route(
            "/v1/admin/requestors/{requestor_id}/callback-secret/revoke-previous",
            post(admin::revoke_previous_callback_secret),
        )
        .route("/v1/admin/cards", post(admin::create_card))
        .route("/v1/admin/cards/import", post(admin::import_cards))
        .route("/v1/admin/cards/{card_id}", get(admin::card))
        .route("/v1/admin/cards/{card_id}/language", put(admin::set_language))
        .route("/v1/admin/cards/{card_id}/contacts", put(admin::set_contacts))
        .route(
            "/v1/admin/cards/{card_id}/security-questions",
            put(admin::set_security_questions).get(admin::security_questions),
        )
        .route("/v1/admin/cards/{card_id}/unblock", post(admin::unblock_card))
        .route("/v1/admin/cards/{card_id}/enrolment-codes", post(admin::create_enrolment_code))
        .route("/v1/admin/cards/{card_id}/devices", get(admin::card_devices))
        .route("/v1/admin/devices/{device_id}/revoke", post(admin::revoke_device))
        .route("/v1/admin/audit", get(admin::audit))
        .route("/v1/admin/authentication-values/verify", post(admin::verify_authentication_value))
        .route("/v1/admin/messages", get(admin::messages))
        .route("/v1/admin/pushes", get(admin::pushes))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
        .layer(CatchPanicLayer::custom(|_| internal_error()))
        .layer(middleware::from_fn(count_request))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The route template a request matched (never the raw URI, which holds ids).
fn route_of(request: &Request) -> &str {
    request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str)
}

/// Every request's span carries its request id, so every line logged while
/// serving it does too. The path is the matched template, without ids or query.
fn request_span(request: &Request) -> tracing::Span {
    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info_span!("request", request_id = %id, method = %request.method(), route = route_of(request))
}

async fn count_request(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = route_of(&request).to_owned();
    let method = request.method().clone();
    let response = next.run(request).await;
    crate::metrics::http_request(&route, method.as_str(), response.status().as_u16(), started.elapsed());
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::BadRequest, "method not allowed on this route")
}

/// A handler that panicked still answers with the typed JSON error.
fn internal_error() -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error").into_response()
}
