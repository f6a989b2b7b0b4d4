//! Codes by SMS, through a Twilio-compatible Messages REST API: a
//! form-encoded `POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json`
//! with HTTP basic authentication (account SID and auth token).

use std::time::Duration;

use super::config::SmsConfig;
use super::{Channel, CodeMessage, DeliveryError, Sender, describe, render_sms, scrub};

/// Longest piece of a provider's error answer kept in an error message.
const MAX_DETAIL_CHARS: usize = 300;

/// Who the SMS comes from.
enum Origin {
    /// A number or alphanumeric sender ID (`From`).
    From(String),
    /// A messaging service that picks the number (`MessagingServiceSid`).
    Service(String),
}

pub struct SmsSender {
    client: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: String,
    origin: Origin,
}

impl SmsSender {
    pub fn new(config: &SmsConfig) -> Result<SmsSender, String> {
        config.validate()?;
        let auth_token = config.auth_token()?.ok_or("sms.auth_token or sms.auth_token_file must be set")?;
        let origin = match (&config.from, &config.messaging_service_sid) {
            (Some(from), _) => Origin::From(from.clone()),
            (None, Some(service)) => Origin::Service(service.clone()),
            (None, None) => return Err("set sms.from or sms.messaging_service_sid".into()),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            // A redirect would resend the credentials somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("sms: cannot set up the HTTP client: {e}"))?;
        Ok(SmsSender {
            client,
            url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                config.base_url.trim_end_matches('/'),
                config.account_sid
            ),
            account_sid: config.account_sid.clone(),
            auth_token,
            origin,
        })
    }
}

#[async_trait::async_trait]
impl Sender for SmsSender {
    async fn send(&self, msg: &CodeMessage) -> Result<(), DeliveryError> {
        if msg.channel != Channel::Sms {
            return Err(DeliveryError::Permanent("an email message was handed to the SMS sender".into()));
        }
        let body = render_sms(msg);
        let origin = match &self.origin {
            Origin::From(from) => ("From", from.as_str()),
            Origin::Service(sid) => ("MessagingServiceSid", sid.as_str()),
        };
        let form = [("To", msg.to.trim()), origin, ("Body", body.as_str())];
        let response = self
            .client
            .post(&self.url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                let e = e.without_url();
                DeliveryError::Transient(format!("cannot reach the SMS API: {}", scrub(&describe(&e), msg)))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let answer = response.text().await.unwrap_or_default();
        let detail = scrub(&explain(status, &answer), msg);
        if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
            Err(DeliveryError::Transient(detail))
        } else {
            Err(DeliveryError::Permanent(detail))
        }
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn provider(&self) -> &'static str {
        "twilio"
    }
}

/// "the SMS API answered 400 (error 21211): The 'To' number … is not valid."
/// from Twilio's error body `{"code", "message", "status", "more_info"}`, or
/// the start of whatever else came back.
fn explain(status: reqwest::StatusCode, answer: &str) -> String {
    let parsed = serde_json::from_str::<serde_json::Value>(answer).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).cloned();
    let code = field("code").and_then(|c| c.as_u64());
    let message =
        field("message").and_then(|m| m.as_str().map(str::to_owned)).unwrap_or_else(|| answer.trim().to_owned());
    let message: String = message.chars().take(MAX_DETAIL_CHARS).collect();
    let mut out = format!("the SMS API answered {}", status.as_u16());
    if let Some(code) = code {
        out.push_str(&format!(" (error {code})"));
    }
    if !message.is_empty() {
        out.push_str(": ");
        out.push_str(&message);
    }
    out
}
