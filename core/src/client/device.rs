//! [`Device`]: the phone as the app sees it. It remembers its enrolments
//! (several cards, several servers) and its decisions in a local database,
//! keeps one key per server in the app's [`KeyStore`], and talks to each
//! server through a [`DeviceClient`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use ring::rand::{SecureRandom, SystemRandom};

use super::http::normalize_server_url;
use super::key_store::{KeyStore, StoredKey};
use super::model::{Challenge, Enrolment, HistoryEntry};
use super::push::read_push;
use super::store::{LocalStore, ServerRecord};
use super::{ClientError, Clock, DeviceClient, SystemClock};
use crate::protocol::wire::{DecisionReceipt, ErrorCode, PushSettings};
use crate::protocol::{Decision, DenyReason, Platform, PublicKey};

/// How a [`Device`] keeps its local data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceOptions {
    /// Decisions kept in the local history; older ones are dropped.
    pub history_limit: u32,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        Self { history_limit: 500 }
    }
}

/// The device side of Countersign. Every method blocks on disk, network or
/// the key store (which may show a biometric prompt): call it off the main
/// thread. One `Device` may be shared between threads.
pub struct Device {
    store: LocalStore,
    keys: Arc<dyn KeyStore>,
    platform: Platform,
    clock: Arc<dyn Clock>,
    clients: Mutex<HashMap<String, Arc<DeviceClient>>>,
    /// One enrolment at a time, so two at a new server make one key, not two.
    enrolling: Mutex<()>,
}

impl Device {
    /// Opens the device's database at `database` (created on first use).
    pub fn open(
        database: &Path,
        platform: Platform,
        keys: Arc<dyn KeyStore>,
        options: DeviceOptions,
    ) -> Result<Self, ClientError> {
        Ok(Self {
            store: LocalStore::open(database, options.history_limit)?,
            keys,
            platform,
            clock: Arc::new(SystemClock),
            clients: Mutex::default(),
            enrolling: Mutex::default(),
        })
    }

    /// Replaces the system clock, for tests of timestamps and expiry.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Redeems an enrolment code at `server_url`. The first enrolment at a
    /// server makes a new key for it; further cards there reuse key and
    /// device id. The push settings given become this device's settings.
    pub fn enrol(
        &self,
        server_url: &str,
        code: &str,
        push_token: Option<String>,
        notifications_enabled: bool,
        device_name: &str,
    ) -> Result<Enrolment, ClientError> {
        let server_url = normalize_server_url(server_url)?;
        let _one_at_a_time = self.enrolling.lock().unwrap_or_else(PoisonError::into_inner);
        let server = match self.store.server(&server_url)? {
            Some(server) => server,
            None => self.new_server(server_url)?,
        };
        let response =
            self.client(&server)?.enrol(code, self.platform, push_token.clone(), notifications_enabled, device_name)?;
        let enrolment = Enrolment {
            server_url: server.server_url,
            device_id: response.device_id,
            card: response.card,
            enrolled_at: response.server_time,
        };
        self.store.add_enrolment(&enrolment)?;
        self.store.set_push_settings(&PushSettings { push_token, notifications_enabled })?;
        Ok(enrolment)
    }

    /// Every card enrolled on this device, oldest enrolment first.
    pub fn enrolments(&self) -> Result<Vec<Enrolment>, ClientError> {
        self.store.enrolments()
    }

    /// Handles the data of a push notification: `Ok(None)` when it is not a
    /// Countersign challenge, otherwise the purchase, fetched over the
    /// signed channel (the push itself carries no purchase details).
    pub fn handle_push(&self, data: &HashMap<String, String>) -> Result<Option<Challenge>, ClientError> {
        let Some(push) = read_push(data)? else {
            return Ok(None);
        };
        // The push does not say which server sent it: ask each one this
        // device is enrolled at until one knows the challenge.
        let mut not_here = ClientError::NotEnrolled;
        for server in self.store.enrolled_servers()? {
            match self.client(&server)?.challenge(&push.challenge_id) {
                Ok(view) => {
                    return Ok(Some(Challenge { server_url: server.server_url, view }));
                }
                Err(e @ (ClientError::NotEnrolled | ClientError::ServerRefused { code: ErrorCode::NotFound, .. })) => {
                    not_here = e
                }
                Err(e) => return Err(e),
            }
        }
        Err(not_here)
    }

    /// Every purchase waiting for this device at every server, the one
    /// expiring first first: the fallback when a push was lost.
    pub fn pending_challenges(&self) -> Result<Vec<Challenge>, ClientError> {
        let mut pending = Vec::new();
        for server in self.store.enrolled_servers()? {
            let answer = self.client(&server)?.pending_challenges()?;
            pending.extend(
                answer.challenges.into_iter().map(|view| Challenge { server_url: server.server_url.clone(), view }),
            );
        }
        pending.sort_by_key(|c| c.view.expires_at);
        Ok(pending)
    }

    /// Approves exactly the purchase shown: the signature binds the amount,
    /// currency and payee in `challenge`. When the challenge offers numbers,
    /// `number_match` must be the one the cardholder picked.
    pub fn approve(&self, challenge: &Challenge, number_match: Option<u8>) -> Result<DecisionReceipt, ClientError> {
        match (&challenge.view.number_choices, number_match) {
            (Some(_), None) => {
                Err(ClientError::BadPayload("this purchase asks for the number shown at checkout".into()))
            }
            (Some(choices), Some(n)) if !choices.contains(&n) => {
                Err(ClientError::BadPayload("the number is not one this purchase offers".into()))
            }
            (None, Some(_)) => Err(ClientError::BadPayload("this purchase does not ask for a number".into())),
            _ => self.decide(challenge, Decision::Approve, number_match),
        }
    }

    pub fn deny(&self, challenge: &Challenge, reason: DenyReason) -> Result<DecisionReceipt, ClientError> {
        self.decide(challenge, Decision::Deny(reason), None)
    }

    /// The push settings last given to [`Device::enrol`] or
    /// [`Device::update_push_settings`].
    pub fn push_settings(&self) -> Result<PushSettings, ClientError> {
        self.store.push_settings()
    }

    /// Tells every server a new push token or notification permission. The
    /// settings are kept even when a server cannot be told; the first such
    /// error is returned after trying them all, so calling again retries.
    pub fn update_push_settings(
        &self,
        push_token: Option<String>,
        notifications_enabled: bool,
    ) -> Result<(), ClientError> {
        let settings = PushSettings { push_token, notifications_enabled };
        self.store.set_push_settings(&settings)?;
        let mut first_error = None;
        for server in self.store.enrolled_servers()? {
            if let Err(e) = self.client(&server)?.set_push_settings(&settings) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops this device approving purchases on one card. Unenrolling the
    /// last card at a server also removes the device there and deletes its
    /// key, so nothing is left that could sign for that server.
    pub fn unenrol(&self, server_url: &str, card_id: &str) -> Result<(), ClientError> {
        let server_url = normalize_server_url(server_url)?;
        let cards_here: Vec<Enrolment> =
            self.store.enrolments()?.into_iter().filter(|e| e.server_url == server_url).collect();
        if !cards_here.iter().any(|e| e.card.card_id == card_id) {
            return Err(ClientError::NotEnrolled);
        }
        let server = self.store.server(&server_url)?.ok_or(ClientError::NotEnrolled)?;
        let client = self.client(&server)?;
        if cards_here.len() > 1 {
            already_gone_is_done(client.unenrol_card(card_id))?;
            return self.store.remove_enrolment(&server_url, card_id);
        }
        already_gone_is_done(client.unenrol_device())?;
        self.store.remove_server(&server_url)?;
        self.clients.lock().unwrap_or_else(PoisonError::into_inner).remove(&server_url);
        Ok(self.keys.delete_key(&server.key_alias)?)
    }

    /// The newest `limit` decisions this device sent, newest first.
    pub fn history(&self, limit: u32) -> Result<Vec<HistoryEntry>, ClientError> {
        self.store.history(limit)
    }

    fn decide(
        &self,
        challenge: &Challenge,
        decision: Decision,
        number_match: Option<u8>,
    ) -> Result<DecisionReceipt, ClientError> {
        let server = self
            .store
            .server(&normalize_server_url(&challenge.server_url)?)?
            .filter(|s| s.device_id.is_some())
            .ok_or(ClientError::NotEnrolled)?;
        let view = &challenge.view;
        let receipt = self.client(&server)?.decide(view, decision, number_match)?;
        if receipt.challenge_id != view.challenge_id {
            return Err(ClientError::BadResponse("the server answered for a different challenge".into()));
        }
        // The server has applied the decision: a failure to write the local
        // history must not turn that into an error the app would retry. A
        // broken database shows at the next history read instead.
        let _ = self.store.record_decision(&HistoryEntry {
            server_url: server.server_url,
            challenge_id: view.challenge_id.clone(),
            card: view.card.clone(),
            terms: view.terms.clone(),
            decision,
            outcome: receipt.outcome,
            decided_at: receipt.decided_at,
        });
        Ok(receipt)
    }

    /// Makes this device's key for a server it has not enrolled at, and
    /// stores it before any code is redeemed: a code is single use, so a
    /// key the server may have accepted must never be forgotten.
    fn new_server(&self, server_url: String) -> Result<ServerRecord, ClientError> {
        let key_alias = new_key_alias()?;
        let public_key = self.keys.create_key(&key_alias)?;
        if let Err(e) = PublicKey::from_sec1(&public_key) {
            // Best effort: the key is unusable either way.
            let _ = self.keys.delete_key(&key_alias);
            return Err(ClientError::KeyUnavailable(format!("the key store returned an unusable key: {e}")));
        }
        let server = ServerRecord { server_url, key_alias, public_key, device_id: None };
        self.store.add_server(&server)?;
        Ok(server)
    }

    fn client(&self, server: &ServerRecord) -> Result<Arc<DeviceClient>, ClientError> {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&server.server_url) {
            return Ok(client.clone());
        }
        let signer = Arc::new(StoredKey {
            store: self.keys.clone(),
            alias: server.key_alias.clone(),
            public_key: server.public_key.clone(),
        });
        let client = Arc::new(
            DeviceClient::new(&server.server_url, signer, server.device_id.clone())?.with_clock(self.clock.clone()),
        );
        clients.insert(server.server_url.clone(), client.clone());
        Ok(client)
    }
}

/// Unenrolling what the server no longer has is done, not an error.
fn already_gone_is_done(result: Result<(), ClientError>) -> Result<(), ClientError> {
    match result {
        Err(ClientError::NotEnrolled) => Ok(()),
        other => other,
    }
}

/// A fresh alias per server: keys are never shared between servers, so two
/// issuers cannot link their cardholders through a common public key.
fn new_key_alias() -> Result<String, ClientError> {
    let mut random = [0u8; 12];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| ClientError::KeyUnavailable("the system random source failed".into()))?;
    Ok(format!("countersign-{}", hex::encode(random)))
}
