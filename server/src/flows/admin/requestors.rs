//! Requestors: merchants and 3DS servers, each with an API key (kept as a
//! keyed hash) and a callback secret (sealed: the server signs result
//! callbacks with it, so it cannot be a hash). Both are shown once, on
//! creation or rotation. A rotation leaves the credential it replaces
//! valid for `requestors.rotation_overlap_secs` (24 h) — or until revoked —
//! so a requestor can deploy the new one without a gap.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{action, check_text, conflict_or, new_api_key, record};
use crate::app::App;
use crate::error::ApiError;
use crate::secrets::{KeyAge, Purpose, random_bytes};
use crate::storage::{AuditEvent, Credential, Rekeyed, Requestor, StorageError, StoredSecret};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewRequestorRequest {
    /// The requestor's `threeDSRequestorID`.
    #[schema(min_length = 1, max_length = 35, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub id: String,
    #[schema(min_length = 1, max_length = 40, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: String,
}

/// Returned once: the key and secret are not stored in the clear.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedRequestor {
    pub id: String,
    pub name: String,
    pub api_key: String,
    pub callback_secret: String,
}

/// A requestor as operators see it: never a key or secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestorView {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    /// While a rotation's overlap lasts: when the previous API key stops working.
    pub previous_key_valid_until: Option<i64>,
    /// While a rotation's overlap lasts: until when callbacks are also
    /// signed with the previous secret.
    pub previous_callback_secret_valid_until: Option<i64>,
}

impl RequestorView {
    fn at(r: &Requestor, now: i64) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            created_at: r.created_at,
            previous_key_valid_until: r.previous_key_expires_at.filter(|&t| t > now),
            previous_callback_secret_valid_until: r
                .previous_callback_secret
                .as_ref()
                .map(|p| p.until)
                .filter(|&t| t > now),
        }
    }
}

/// Returned once, on rotation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedApiKey {
    pub requestor_id: String,
    pub api_key: String,
    /// The key it replaced works until then (or until revoked).
    pub previous_key_valid_until: i64,
}

/// Returned once, on rotation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedCallbackSecret {
    pub requestor_id: String,
    pub callback_secret: String,
    /// Callbacks carry a signature under the previous secret too until then.
    pub previous_callback_secret_valid_until: i64,
}

pub async fn create_requestor(app: &App, req: NewRequestorRequest, actor: &str) -> Result<CreatedRequestor, ApiError> {
    check_text("id", &req.id, 35)?;
    check_text("name", &req.name, 40)?;
    let (api_key, callback_secret) = (new_api_key("csr"), new_callback_secret());
    let requestor = Requestor {
        callback_secret: StoredSecret::Sealed(seal(app, &req.id, &callback_secret)),
        id: req.id,
        name: req.name,
        previous_callback_secret: None,
        previous_key_expires_at: None,
        created_at: app.now_ms(),
    };
    app.storage
        .create_requestor(&requestor, &app.secrets.keyed_hash(Purpose::ApiKey, api_key.as_bytes()))
        .await
        .map_err(|e| conflict_or(e, "a requestor with this id already exists"))?;
    record(app, requestor_action(app, "requestor.created", actor, &requestor.id)).await?;
    Ok(CreatedRequestor { id: requestor.id, name: requestor.name, api_key, callback_secret })
}

pub async fn requestors(app: &App, actor: &str) -> Result<Vec<RequestorView>, ApiError> {
    let all = app.storage.requestors().await?;
    record(app, action(app, "requestors.listed", actor)).await?;
    let now = app.now_ms();
    Ok(all.iter().map(|r| RequestorView::at(r, now)).collect())
}

pub async fn requestor(app: &App, requestor_id: &str, actor: &str) -> Result<RequestorView, ApiError> {
    let r = load(app, requestor_id).await?;
    record(app, requestor_action(app, "requestor.viewed", actor, requestor_id)).await?;
    Ok(RequestorView::at(&r, app.now_ms()))
}

/// A new API key; the current one keeps working for the overlap.
pub async fn rotate_api_key(app: &App, requestor_id: &str, actor: &str) -> Result<RotatedApiKey, ApiError> {
    let api_key = new_api_key("csr");
    let hash = app.secrets.keyed_hash(Purpose::ApiKey, api_key.as_bytes());
    let until = rotate(app, requestor_id, Credential::ApiKey, &hash, actor).await?;
    Ok(RotatedApiKey { requestor_id: requestor_id.to_owned(), api_key, previous_key_valid_until: until })
}

/// A new callback secret; callbacks carry a signature under the current
/// one too for the overlap.
pub async fn rotate_callback_secret(
    app: &App,
    requestor_id: &str,
    actor: &str,
) -> Result<RotatedCallbackSecret, ApiError> {
    // A secret still in the clear is sealed first, so it lives on as the
    // previous one like any other.
    seal_if_clear(app, &load(app, requestor_id).await?).await?;
    let secret = new_callback_secret();
    let sealed = seal(app, requestor_id, &secret);
    let until = rotate(app, requestor_id, Credential::CallbackSecret, &sealed, actor).await?;
    Ok(RotatedCallbackSecret {
        requestor_id: requestor_id.to_owned(),
        callback_secret: secret,
        previous_callback_secret_valid_until: until,
    })
}

/// Ends a rotation's overlap now: the previous credential stops working.
pub async fn revoke_previous(
    app: &App,
    requestor_id: &str,
    credential: Credential,
    actor: &str,
) -> Result<RequestorView, ApiError> {
    let kind = format!("requestor.previous_{}_revoked", credential.as_str());
    let audit = requestor_action(app, &kind, actor, requestor_id);
    let dropped = app.storage.drop_previous_credential(requestor_id, credential, &audit).await?;
    app.requestor_keys.clear();
    if !dropped {
        load(app, requestor_id).await?;
        return Err(ApiError::not_found(match credential {
            Credential::ApiKey => "a previous API key",
            Credential::CallbackSecret => "a previous callback secret",
        }));
    }
    Ok(RequestorView::at(&load(app, requestor_id).await?, app.now_ms()))
}

/// The secrets a callback to `requestor` is signed with at `now`: the
/// current one, then the previous one while its overlap lasts.
pub fn callback_secrets(app: &App, requestor: &Requestor, now: i64) -> Result<Vec<String>, ApiError> {
    let open = |sealed: &[u8]| {
        app.secrets.open(&context(&requestor.id), sealed).and_then(|(s, _)| String::from_utf8(s).ok()).ok_or_else(
            || ApiError::from(StorageError::Corrupt(format!("requestor {}: callback secret", requestor.id))),
        )
    };
    let mut secrets = vec![match &requestor.callback_secret {
        StoredSecret::Sealed(sealed) => open(sealed)?,
        StoredSecret::Legacy(clear) => clear.clone(),
    }];
    if let Some(previous) = requestor.previous_callback_secret.as_ref().filter(|p| p.until > now) {
        secrets.push(open(&previous.sealed)?);
    }
    Ok(secrets)
}

/// What bringing the stored callback secrets up to date did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealedSecrets {
    /// Secrets an earlier version stored in the clear, sealed now.
    pub sealed: usize,
    /// Secrets sealed under a previous master key, sealed again under the
    /// current one (after a rotation).
    pub resealed: usize,
}

/// Seals the callback secrets earlier versions stored in the clear, and
/// seals again under the current master key those sealed under a previous
/// one, in one pass over the requestors. Run at start and by `migrate`
/// (any node: each row changes once): there are few requestors, and
/// afterwards no secret is in the clear or needs an old key.
pub async fn seal_callback_secrets(app: &App) -> Result<SealedSecrets, ApiError> {
    let mut done = SealedSecrets::default();
    for r in app.storage.requestors().await? {
        if seal_if_clear(app, &r).await? {
            done.sealed += 1;
        }
        done.resealed += reseal_if_previous(app, &r).await?;
    }
    Ok(done)
}

/// Seals again under the current master key the requestor's secrets (its
/// current and any previous one) sealed under a previous key; how many.
async fn reseal_if_previous(app: &App, r: &Requestor) -> Result<usize, ApiError> {
    let current = match &r.callback_secret {
        StoredSecret::Sealed(sealed) => Some(sealed),
        StoredSecret::Legacy(_) => None,
    };
    let mut resealed = 0;
    for sealed in current.into_iter().chain(r.previous_callback_secret.as_ref().map(|p| &p.sealed)) {
        if let Some((secret, KeyAge::Previous)) = app.secrets.open(&context(&r.id), sealed) {
            let new = app.secrets.seal(&context(&r.id), &secret);
            if app.storage.rekey(Rekeyed::CallbackSecret, sealed, &new).await? {
                resealed += 1;
            }
        }
    }
    Ok(resealed)
}

/// Seals the requestor's callback secret if it is still in the clear;
/// whether this call did.
async fn seal_if_clear(app: &App, r: &Requestor) -> Result<bool, ApiError> {
    let StoredSecret::Legacy(clear) = &r.callback_secret else {
        return Ok(false);
    };
    Ok(app.storage.seal_legacy_callback_secret(&r.id, clear, &seal(app, &r.id, clear)).await?)
}

async fn rotate(
    app: &App,
    requestor_id: &str,
    credential: Credential,
    new_value: &[u8],
    actor: &str,
) -> Result<i64, ApiError> {
    let mut audit = requestor_action(app, &format!("requestor.{}_rotated", credential.as_str()), actor, requestor_id);
    let until = audit.at + app.config.requestors.rotation_overlap_secs as i64 * 1000;
    audit.detail["previousValidUntil"] = until.into();
    let rotated = app.storage.rotate_requestor_credential(requestor_id, credential, new_value, until, &audit).await?;
    app.requestor_keys.clear();
    if !rotated {
        return Err(ApiError::not_found("requestor"));
    }
    Ok(until)
}

async fn load(app: &App, requestor_id: &str) -> Result<Requestor, ApiError> {
    app.storage.requestor(requestor_id).await?.ok_or_else(|| ApiError::not_found("requestor"))
}

fn requestor_action(app: &App, kind: &str, actor: &str, requestor_id: &str) -> AuditEvent {
    let mut audit = action(app, kind, actor);
    audit.detail = serde_json::json!({ "requestorId": requestor_id });
    audit
}

/// 256 random bits, as text (the requestor's HMAC key is its bytes).
fn new_callback_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// What a sealed callback secret is bound to: it opens for its requestor only.
fn context(requestor_id: &str) -> Vec<u8> {
    format!("countersign/requestor-callback-secret/{requestor_id}").into_bytes()
}

fn seal(app: &App, requestor_id: &str, secret: &str) -> Vec<u8> {
    app.secrets.seal(&context(requestor_id), secret.as_bytes())
}
