//! Extractors that turn requests into typed, authenticated inputs, and
//! every way that can fail into a typed error. Handlers take `Path`,
//! `Query` and `Form` from here, never from axum, whose refusals are
//! plain text.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use countersign_core::protocol::RequestAuth;
use countersign_core::protocol::wire::ErrorCode;
use serde::de::DeserializeOwned;

use crate::app::App;
use crate::emv::EmvError;
use crate::error::{ApiError, mask_digit_runs};
use crate::flows::device_auth;
use crate::flows::rekey;
use crate::secrets::Purpose;
use crate::storage::{Device, Operator, OperatorRole, Rekeyed, Requestor};

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the body exceeds {limit} bytes"),
        )
    })
}

/// Parses JSON into `T`, saying where it failed. Digit runs are masked in
/// the message so a card number sent in the wrong place is not echoed.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {}", mask_digit_runs(&e.to_string()))))
}

/// A JSON body for the admin and device APIs.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<App> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Self, ApiError> {
        let body = read_body(req.into_body(), app.config.server.body_limit_bytes).await?;
        parse_json(&body).map(Json)
    }
}

/// axum's refusal (a bad path segment, query string or form) as a typed
/// error with the same status. Digit runs are masked as in [`parse_json`].
fn refused(status: StatusCode, text: &str) -> ApiError {
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE { ErrorCode::PayloadTooLarge } else { ErrorCode::BadRequest };
    ApiError::new(status, code, mask_digit_runs(text))
}

/// Path parameters, refused as a typed 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(e) => Err(refused(e.status(), &e.body_text())),
        }
    }
}

/// A query string, refused as a typed 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(e) => Err(refused(e.status(), &e.body_text())),
        }
    }
}

/// An HTML form (or, for `GET`, the query string), refused as a typed
/// error: 415 without the form content type, 413 when too large.
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Form::from_request(req, state).await {
            Ok(axum::extract::Form(value)) => Ok(Self(value)),
            Err(e) => Err(refused(e.status(), &e.body_text())),
        }
    }
}

/// A device request whose signature, freshness and nonce checked out.
pub struct SignedDevice {
    pub device: Device,
    pub body: Bytes,
}

impl SignedDevice {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.body)
    }
}

impl FromRequest<App> for SignedDevice {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &App) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let auth = RequestAuth::from_headers(|name| parts.headers.get(name).and_then(|v| v.to_str().ok()))
            .map_err(|e| ApiError::unauthenticated(e.to_string()))?;
        let path = parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let body = read_body(body, app.config.server.body_limit_bytes).await?;
        let device = device_auth::authenticate(app, &auth, parts.method.as_str(), &path, &body).await?;
        Ok(Self { device, body })
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts.headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The requestor named by its API key; refusals are EMV `Erro` messages.
pub struct RequestorAuth(pub Requestor);

impl FromRequestParts<App> for RequestorAuth {
    type Rejection = EmvError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, EmvError> {
        let key = bearer(parts).ok_or_else(|| EmvError::unauthenticated("Authorization"))?;
        let now = app.now_ms();
        if let Some(r) = app.requestor_keys.get(key.as_bytes(), now) {
            return Ok(Self(r));
        }
        let by_hash = |hash: Vec<u8>| async move { app.storage.requestor_by_key(&hash, now).await };
        match rekey::find(app, Purpose::ApiKey, key.as_bytes(), Rekeyed::RequestorApiKey, by_hash).await {
            Ok(Some(r)) => {
                app.requestor_keys.put(key.as_bytes(), &r, now);
                Ok(Self(r))
            }
            Ok(None) => Err(EmvError::unauthenticated("Authorization")),
            Err(e) => Err(EmvError::transient(e.to_string())),
        }
    }
}

/// Any operator — `support` or `admin` — named by its API key.
pub struct OperatorAuth(pub Operator);

impl FromRequestParts<App> for OperatorAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let key = bearer(parts)
            .ok_or_else(|| ApiError::unauthenticated("an operator API key is needed (Authorization: Bearer …)"))?;
        let by_hash = |hash: Vec<u8>| async move { app.storage.operator_by_key(&hash).await };
        rekey::find(app, Purpose::ApiKey, key.as_bytes(), Rekeyed::OperatorApiKey, by_hash)
            .await?
            .map(Self)
            .ok_or_else(|| ApiError::unauthenticated("unknown or revoked operator API key"))
    }
}

/// An operator with the `admin` role; a `support` key gets 403 `forbidden`.
/// A handler's signature thus says who may call it.
pub struct AdminAuth(pub Operator);

impl FromRequestParts<App> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let OperatorAuth(operator) = OperatorAuth::from_request_parts(parts, app).await?;
        if operator.role != OperatorRole::Admin {
            return Err(ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, "this needs an admin key"));
        }
        Ok(Self(operator))
    }
}
