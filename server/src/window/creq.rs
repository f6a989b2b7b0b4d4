//! The EMV browser-flow messages the window exchanges with the 3DS side:
//! the CReq posted into the window and the CRes it posts back, each as
//! base64url JSON in a form field.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

/// Largest `creq` field accepted (a CReq is a few hundred bytes).
const MAX_CREQ_CHARS: usize = 4096;
/// EMV limits `threeDSSessionData` to 1024 characters.
pub const MAX_SESSION_DATA_CHARS: usize = 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CReq {
    pub message_type: String,
    pub message_version: String,
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: String,
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    /// "01"–"05"; absent means "05" (full screen).
    #[serde(default)]
    pub challenge_window_size: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CReqError {
    #[error("the creq field is missing")]
    Missing,
    #[error("the creq field is too long")]
    TooLong,
    #[error("the creq field is not base64url")]
    NotBase64,
    #[error("the creq is not a CReq: {0}")]
    Invalid(String),
}

/// The window sizes EMV defines: 250×400, 390×400, 500×600, 600×400, full.
pub const WINDOW_SIZES: [&str; 5] = ["01", "02", "03", "04", "05"];

/// Decodes a `creq` field (base64url, with or without padding).
pub fn parse(field: Option<&str>) -> Result<CReq, CReqError> {
    let field = field.map(str::trim).filter(|f| !f.is_empty()).ok_or(CReqError::Missing)?;
    if field.len() > MAX_CREQ_CHARS {
        return Err(CReqError::TooLong);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(field.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(field))
        .map_err(|_| CReqError::NotBase64)?;
    let creq: CReq = serde_json::from_slice(&bytes).map_err(|e| CReqError::Invalid(e.to_string()))?;
    if creq.message_type != "CReq" {
        return Err(CReqError::Invalid("messageType is not CReq".into()));
    }
    if let Some(size) = &creq.challenge_window_size
        && !WINDOW_SIZES.contains(&size.as_str())
    {
        return Err(CReqError::Invalid("challengeWindowSize must be 01 to 05".into()));
    }
    Ok(creq)
}

/// Encodes a CReq (used by the demo shop acting as 3DS server).
pub fn encode_creq(message_version: &str, three_ds_server_trans_id: &str, acs_trans_id: &str, size: &str) -> String {
    let json = serde_json::json!({
        "messageType": "CReq",
        "messageVersion": message_version,
        "threeDSServerTransID": three_ds_server_trans_id,
        "acsTransID": acs_trans_id,
        "challengeWindowSize": size,
    });
    URL_SAFE_NO_PAD.encode(json.to_string())
}

/// The final CRes the window posts to the notificationURL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CRes {
    pub message_type: String,
    pub message_version: String,
    #[serde(rename = "threeDSServerTransID")]
    pub three_ds_server_trans_id: String,
    #[serde(rename = "acsTransID")]
    pub acs_trans_id: String,
    pub challenge_completion_ind: String,
    pub trans_status: String,
}

impl CRes {
    pub fn new(message_version: &str, three_ds_server_trans_id: &str, acs_trans_id: &str, trans_status: &str) -> Self {
        Self {
            message_type: "CRes".into(),
            message_version: message_version.into(),
            three_ds_server_trans_id: three_ds_server_trans_id.into(),
            acs_trans_id: acs_trans_id.into(),
            challenge_completion_ind: "Y".into(),
            trans_status: trans_status.into(),
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("a CRes serialises"))
    }

    pub fn decode(field: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(field.trim().trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creq_with_or_without_padding() {
        let encoded = encode_creq("2.2.0", "a", "b", "02");
        assert_eq!(parse(Some(&encoded)).unwrap().acs_trans_id, "b");
        let json = br#"{"messageType":"CReq","messageVersion":"2.2.0","threeDSServerTransID":"a","acsTransID":"bc"}"#;
        let padded = URL_SAFE.encode(json);
        assert!(padded.ends_with('='));
        assert_eq!(parse(Some(&padded)).unwrap().challenge_window_size, None);
    }

    #[test]
    fn bad_creqs_are_named() {
        assert_eq!(parse(None).unwrap_err(), CReqError::Missing);
        assert_eq!(parse(Some("***")).unwrap_err(), CReqError::NotBase64);
        let not_creq = URL_SAFE_NO_PAD.encode(br#"{"messageType":"AReq"}"#);
        assert!(matches!(parse(Some(&not_creq)), Err(CReqError::Invalid(_))));
        let big = encode_creq("2.2.0", "a", "b", "07");
        assert!(matches!(parse(Some(&big)), Err(CReqError::Invalid(_))));
    }

    #[test]
    fn cres_round_trips() {
        let c = CRes::new("2.2.0", "a", "b", "Y");
        assert_eq!(CRes::decode(&c.encode()), Some(c));
    }
}
