//! The device-side client: enrolment, push handling, and signed approvals.
//!
//! [`Device`] is what an app uses: several enrolments, keys in the app's
//! [`KeyStore`], a local database with the history of decisions.
//! [`DeviceClient`] below it speaks the device API to one server.
//!
//! Blocking by design: apps call it off their main thread, and the uniffi
//! layer exports a synchronous API. Do not call it from inside an async
//! runtime's worker thread.

mod clock;
mod device;
mod error;
mod http;
mod key_store;
mod model;
mod push;
mod signer;
mod store;

#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod fake_server;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use reqwest::Method;
use serde::Serialize;

pub use clock::{Clock, SystemClock};
pub use device::{Device, DeviceOptions};
pub use error::ClientError;
pub use key_store::{KeyStore, KeyStoreError, SoftwareKeyStore};
pub use model::{Challenge, Enrolment, HistoryEntry};
pub use signer::DeviceSigner;

use self::http::{Signing, Transport, parse_json};
use self::signer::CheckedSigner;
use crate::protocol::wire::{
    ChallengeView, DecisionReceipt, DecisionRequest, EnrolmentRequest, EnrolmentResponse, PendingChallenges,
    PushSettings,
};
use crate::protocol::{Decision, DecisionMessage, EnrolmentMessage, Platform};

/// One device talking to one Countersign server.
pub struct DeviceClient {
    transport: Transport,
    signer: CheckedSigner,
    clock: Arc<dyn Clock>,
    device_id: Mutex<Option<String>>,
}

impl DeviceClient {
    /// `device_id` is the id from an earlier enrolment, or `None` for a
    /// device that has not enrolled yet. `server_url` may carry a path
    /// prefix (`https://issuer.example/countersign`).
    pub fn new(
        server_url: &str,
        signer: Arc<dyn DeviceSigner>,
        device_id: Option<String>,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            transport: Transport::new(server_url)?,
            signer: CheckedSigner::new(signer),
            clock: Arc::new(SystemClock),
            device_id: Mutex::new(device_id),
        })
    }

    /// Replaces the system clock, for tests of timestamps and expiry.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The id the server gave this device, once enrolled.
    pub fn device_id(&self) -> Option<String> {
        self.device_id.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Redeems an enrolment code for this device's key and remembers the
    /// device id. Enrolling a further card with the same key keeps the id.
    pub fn enrol(
        &self,
        code: &str,
        platform: Platform,
        push_token: Option<String>,
        notifications_enabled: bool,
        display_name: &str,
    ) -> Result<EnrolmentResponse, ClientError> {
        let code = EnrolmentMessage::normalize_code(code);
        if code.is_empty() {
            return Err(ClientError::BadPayload("the enrolment code is empty".into()));
        }
        let public_key = self.signer.public_key()?.to_vec();
        let signed_at = self.clock.now_ms();
        let message =
            EnrolmentMessage { code: code.clone(), public_key: public_key.clone(), platform, signed_at_ms: signed_at };
        let request = EnrolmentRequest {
            code,
            public_key,
            platform,
            push_token,
            notifications_enabled,
            display_name: display_name.to_owned(),
            signed_at,
            proof: self.signer.sign(&message.signed_bytes())?,
        };
        let url = self.transport.url(&["v1", "device", "enrolments"]);
        let reply = self.transport.send(Method::POST, url, to_json(&request)?, None)?;
        let response: EnrolmentResponse = parse_json(&reply, "enrolment response")?;
        *self.device_id.lock().unwrap_or_else(PoisonError::into_inner) = Some(response.device_id.clone());
        Ok(response)
    }

    pub fn set_push_settings(&self, settings: &PushSettings) -> Result<(), ClientError> {
        self.signed(Method::PUT, &["v1", "device", "push-settings"], to_json(settings)?)?;
        Ok(())
    }

    /// Purchases waiting for this device's answer.
    pub fn pending_challenges(&self) -> Result<PendingChallenges, ClientError> {
        let reply = self.signed(Method::GET, &["v1", "device", "challenges"], Vec::new())?;
        parse_json(&reply, "pending challenges")
    }

    pub fn challenge(&self, challenge_id: &str) -> Result<ChallengeView, ClientError> {
        check_id(challenge_id, "challenge id")?;
        let reply = self.signed(Method::GET, &["v1", "device", "challenges", challenge_id], Vec::new())?;
        let view: ChallengeView = parse_json(&reply, "challenge")?;
        if view.challenge_id != challenge_id {
            return Err(ClientError::BadResponse("the server answered with a different challenge".into()));
        }
        Ok(view)
    }

    /// Signs the cardholder's answer to exactly the purchase in `view` (the
    /// amount, currency and payee shown) and sends it.
    pub fn decide(
        &self,
        view: &ChallengeView,
        decision: Decision,
        number_match: Option<u8>,
    ) -> Result<DecisionReceipt, ClientError> {
        check_id(&view.challenge_id, "challenge id")?;
        let device_id = self.require_device_id()?;
        let signed_at = self.clock.now_ms();
        let message = DecisionMessage {
            challenge_id: view.challenge_id.clone(),
            challenge_nonce: view.nonce.clone(),
            decision,
            terms: view.terms.clone(),
            device_id,
            signed_at_ms: signed_at,
            number_match,
        };
        let (kind, deny_reason) = decision.into();
        let request = DecisionRequest {
            challenge_id: view.challenge_id.clone(),
            decision: kind,
            deny_reason,
            terms: view.terms.clone(),
            signed_at,
            number_match,
            signature: self.signer.sign(&message.signed_bytes())?,
        };
        let path = ["v1", "device", "challenges", view.challenge_id.as_str(), "decision"];
        let reply = self.signed(Method::POST, &path, to_json(&request)?)?;
        parse_json(&reply, "decision receipt")
    }

    /// Stops this device approving purchases on one card.
    pub fn unenrol_card(&self, card_id: &str) -> Result<(), ClientError> {
        check_id(card_id, "card id")?;
        self.signed(Method::DELETE, &["v1", "device", "cards", card_id], Vec::new())?;
        Ok(())
    }

    /// Removes this device from every card and forgets its id.
    pub fn unenrol_device(&self) -> Result<(), ClientError> {
        self.signed(Method::DELETE, &["v1", "device"], Vec::new())?;
        *self.device_id.lock().unwrap_or_else(PoisonError::into_inner) = None;
        Ok(())
    }

    /// Handles the data of a push notification: `Ok(None)` when it is not a
    /// Countersign challenge, `BadPayload` when it claims to be one but is
    /// malformed, otherwise the purchase, fetched over the signed channel
    /// (the push itself carries no purchase details).
    pub fn handle_push(&self, data: &HashMap<String, String>) -> Result<Option<ChallengeView>, ClientError> {
        match push::read_push(data)? {
            None => Ok(None),
            Some(push) => self.challenge(&push.challenge_id).map(Some),
        }
    }

    fn signed(&self, method: Method, path: &[&str], body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let device_id = self.require_device_id()?;
        let signing = Signing { signer: &self.signer, device_id: &device_id, now_ms: self.clock.now_ms() };
        self.transport.send(method, self.transport.url(path), body, Some(signing))
    }

    fn require_device_id(&self) -> Result<String, ClientError> {
        self.device_id().ok_or(ClientError::NotEnrolled)
    }
}

/// Ids are opaque, but an empty or dot segment would address another route.
fn check_id(id: &str, what: &str) -> Result<(), ClientError> {
    if id.is_empty() || id.len() > 64 || id == "." || id == ".." {
        return Err(ClientError::BadPayload(format!("{what} must be 1 to 64 characters")));
    }
    Ok(())
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(value).map_err(|e| ClientError::BadPayload(e.to_string()))
}
