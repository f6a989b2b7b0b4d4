//! Extractors that turn requests into typed, authenticated inputs, and
//! every way that can fail into a typed error.

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
use crate::secrets::Purpose;
use crate::storage::{Device, Operator, OperatorRole, Requestor};

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
        let hash = app.secrets.keyed_hash(Purpose::ApiKey, key.as_bytes());
        match app.storage.requestor_by_key(&hash, app.now_ms()).await {
            Ok(Some(r)) => Ok(Self(r)),
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
        let hash = app.secrets.keyed_hash(Purpose::ApiKey, key.as_bytes());
        app.storage
            .operator_by_key(&hash)
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

/// A query string read into `T`; a malformed or unknown parameter is a
/// typed 400 (digit runs masked), never silently ignored.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<App> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _app: &App) -> Result<Self, ApiError> {
        axum::extract::Query::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(q)| Query(q))
            .map_err(|e| ApiError::bad_request(mask_digit_runs(&e.body_text())))
    }
}
