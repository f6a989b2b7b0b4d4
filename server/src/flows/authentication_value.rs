//! The authentication value of a successful authentication (what EMV calls
//! the CAVV/AEVV): a 20-byte MAC over the transaction under a key only this
//! server holds, sent base64 (28 characters). The issuer's authorisation
//! system checks it with [`verify`], so a `Y` cannot be forged or moved to
//! another purchase.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use countersign_core::protocol::CanonicalWriter;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::emv::Pan;
use crate::error::ApiError;
use crate::flows::rekey;
use crate::secrets::{Purpose, Secrets, constant_time_eq};
use crate::storage::{Authentication, Rekeyed};

const DOMAIN: &str = "countersign.authentication-value.v1";
pub const MAC_LEN: usize = 20;
/// ECI for a fully authenticated transaction (Amex and Visa numbering).
pub const ECI_AUTHENTICATED: &str = "05";

/// The value under the current key.
pub fn compute(secrets: &Secrets, a: &Authentication) -> String {
    encode(&secrets.keyed_hash(Purpose::AuthenticationValue, &input(a)))
}

/// Whether `value` is the value of `a` under any known key: an issuer may
/// verify a value made before a rotation.
fn is_value_of(secrets: &Secrets, a: &Authentication, value: &str) -> bool {
    secrets
        .keyed_hashes(Purpose::AuthenticationValue, &input(a))
        .fold(false, |ok, (_, mac)| constant_time_eq(encode(&mac).as_bytes(), value.as_bytes()) | ok)
}

fn encode(mac: &[u8]) -> String {
    STANDARD.encode(&mac[..MAC_LEN])
}

fn input(a: &Authentication) -> Vec<u8> {
    CanonicalWriter::new(DOMAIN)
        .str(&a.acs_trans_id)
        .str(&a.ds_trans_id)
        .str(a.card_id.as_deref().unwrap_or(""))
        .u64(a.amount_minor)
        .u16(a.currency)
        .u8(a.exponent)
        .str(&a.merchant_id)
        .str(&a.requestor_id)
        .finish()
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyRequest {
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    pub acct_number: String,
    pub purchase_amount: String,
    pub purchase_currency: String,
    pub authentication_value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyResponse {
    pub valid: bool,
    /// Present when valid.
    pub eci: Option<String>,
}

/// Checks a value against the stored transaction and the card number,
/// amount and currency the issuer is authorising.
pub async fn verify(app: &App, req: &VerifyRequest) -> Result<VerifyResponse, ApiError> {
    let invalid = Ok(VerifyResponse { valid: false, eci: None });
    let pan = Pan::parse(req.acct_number.trim()).map_err(|e| ApiError::bad_request(format!("acctNumber: {e}")))?;
    let amount: u64 =
        req.purchase_amount.parse().map_err(|_| ApiError::bad_request("purchaseAmount: digits expected"))?;
    let currency: u16 =
        req.purchase_currency.parse().map_err(|_| ApiError::bad_request("purchaseCurrency: 3 digits expected"))?;
    let Some(a) = app.storage.authentication(&req.acs_trans_id).await? else {
        return invalid;
    };
    let by_hash = |hash: Vec<u8>| async move { app.storage.card_by_pan_hash(&hash).await };
    let Some(card) = rekey::find(app, Purpose::CardNumber, pan.as_str().as_bytes(), Rekeyed::PanHash, by_hash).await?
    else {
        return invalid;
    };
    let Some(stored_value) = &a.authentication_value else {
        return invalid;
    };
    let matches = a.trans_status == "Y"
        && a.card_id.as_deref() == Some(card.id.as_str())
        && a.amount_minor == amount
        && a.currency == currency
        && constant_time_eq(stored_value.as_bytes(), req.authentication_value.as_bytes())
        && is_value_of(&app.secrets, &a, &req.authentication_value);
    Ok(if matches {
        VerifyResponse { valid: true, eci: a.eci.clone() }
    } else {
        VerifyResponse { valid: false, eci: None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authentication {
        Authentication {
            acs_trans_id: "a".into(),
            ds_trans_id: "d".into(),
            requestor_id: "r".into(),
            card_id: Some("c".into()),
            message_version: "2.2.0".into(),
            message_category: "01".into(),
            amount_minor: 100,
            currency: 978,
            exponent: 2,
            merchant_name: "m".into(),
            merchant_id: "mid".into(),
            notification_url: "https://x".into(),
            trans_status: "Y".into(),
            trans_status_reason: None,
            reasons: vec![],
            low_value_exempt: false,
            authentication_value: None,
            eci: None,
            challenge_id: None,
            browser_language: None,
            browser_tz: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn value_is_28_base64_chars_and_bound_to_amount() {
        let s = Secrets::from_master_key(&[1; 32]);
        let v = compute(&s, &auth());
        assert_eq!(v.len(), 28);
        assert_ne!(v, compute(&s, &Authentication { amount_minor: 101, ..auth() }));
        assert_ne!(v, compute(&Secrets::from_master_key(&[2; 32]), &auth()));
    }
}
