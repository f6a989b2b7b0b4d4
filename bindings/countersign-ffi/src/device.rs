//! The exported device object: a thin shell over core's `Device`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use countersign_core::client::{self as core, DeviceOptions, SoftwareKeyStore};

use crate::key_store::{DeviceKeyStore, ForeignKeyStore};
use crate::records::number;
use crate::{Challenge, CountersignError, DenyReason, DeviceConfig, Enrolment, HistoryEntry, PushSettings, Receipt};

/// This phone as Countersign knows it: its enrolments at one or more
/// servers, a key per server in the key store, and a local history of
/// decisions. Every method blocks: call it off the main thread.
#[derive(uniffi::Object)]
pub struct Device {
    inner: core::Device,
}

type Result<T> = std::result::Result<T, CountersignError>;

impl Device {
    fn open(config: DeviceConfig, keys: Arc<dyn core::KeyStore>) -> Result<Arc<Self>> {
        let inner = core::Device::open(
            Path::new(&config.database_path),
            config.platform.into(),
            keys,
            DeviceOptions { history_limit: config.history_limit },
        )?;
        Ok(Arc::new(Self { inner }))
    }
}

#[uniffi::export]
impl Device {
    /// Opens the device with the app's key store (Secure Enclave, Android
    /// Keystore).
    #[uniffi::constructor]
    pub fn new(config: DeviceConfig, key_store: Arc<dyn DeviceKeyStore>) -> Result<Arc<Self>> {
        Self::open(config, Arc::new(ForeignKeyStore(key_store)))
    }

    /// Opens the device with software keys kept in the SQLite file at
    /// `key_file_path`. The private keys are then ordinary bytes in the
    /// app's storage, not bound to the hardware and not behind a biometric:
    /// for simulators, tests and phones without a hardware key store only.
    #[uniffi::constructor]
    pub fn with_software_keys(config: DeviceConfig, key_file_path: String) -> Result<Arc<Self>> {
        let keys = SoftwareKeyStore::open(Path::new(&key_file_path)).map_err(core::ClientError::from)?;
        Self::open(config, Arc::new(keys))
    }

    /// Redeems the enrolment code the issuer gave the cardholder at
    /// `server_url` and returns the enrolled card. Several cards, at one or
    /// several servers, may be enrolled on one device.
    pub fn enrol(
        &self,
        server_url: String,
        enrolment_code: String,
        push_token: Option<String>,
        notifications_enabled: bool,
        device_name: String,
    ) -> Result<Enrolment> {
        Ok(self.inner.enrol(&server_url, &enrolment_code, push_token, notifications_enabled, &device_name)?.into())
    }

    /// Every card enrolled on this device.
    pub fn enrolments(&self) -> Result<Vec<Enrolment>> {
        Ok(self.inner.enrolments()?.into_iter().map(Into::into).collect())
    }

    /// Handles a push's data (the FCM data map, or the APNs payload's
    /// custom keys as strings): `null`/`nil` for a push that is not
    /// Countersign's, otherwise the purchase, fetched over the signed
    /// channel. A malformed Countersign push throws `BadPayload`.
    pub fn handle_push(&self, data: HashMap<String, String>) -> Result<Option<Challenge>> {
        Ok(self.inner.handle_push(&data)?.map(Into::into))
    }

    /// The purchases waiting for this device at every server: call it when
    /// the app opens, in case a push was lost.
    pub fn pending_challenges(&self) -> Result<Vec<Challenge>> {
        Ok(self.inner.pending_challenges()?.into_iter().map(Into::into).collect())
    }

    /// Approves the purchase exactly as `challenge` shows it, with the
    /// number the cardholder picked when it offers `number_choices`.
    pub fn approve(&self, challenge: Challenge, number_match: Option<u32>) -> Result<Receipt> {
        let number_match = number_match.map(number).transpose()?;
        Ok(self.inner.approve(&challenge.try_into()?, number_match)?.into())
    }

    pub fn deny(&self, challenge: Challenge, reason: DenyReason) -> Result<Receipt> {
        Ok(self.inner.deny(&challenge.try_into()?, reason.into())?.into())
    }

    /// The push settings last given.
    pub fn push_settings(&self) -> Result<PushSettings> {
        Ok(self.inner.push_settings()?.into())
    }

    /// Call when the platform gives a new push token or the cardholder
    /// turns notifications on or off; every server is told. Without
    /// notifications, purchases fall back to one-time codes.
    pub fn update_push_settings(&self, push_token: Option<String>, notifications_enabled: bool) -> Result<()> {
        Ok(self.inner.update_push_settings(push_token, notifications_enabled)?)
    }

    /// Stops this device approving purchases on one card. The last card at
    /// a server also removes the device there and deletes its key.
    pub fn unenrol(&self, server_url: String, card_id: String) -> Result<()> {
        Ok(self.inner.unenrol(&server_url, &card_id)?)
    }

    /// The newest `limit` decisions sent from this device, newest first.
    pub fn history(&self, limit: u32) -> Result<Vec<HistoryEntry>> {
        Ok(self.inner.history(limit)?.into_iter().map(Into::into).collect())
    }
}
