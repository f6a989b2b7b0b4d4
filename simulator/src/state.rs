//! What the simulated phone remembers between runs, in one JSON file.
//!
//! The file holds the device's private key, so it is written readable by
//! its owner only, and replaced atomically so a crash never leaves half of it.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use countersign_core::client::DeviceClient;
use countersign_core::protocol::wire::EnrolledCard;
use countersign_core::protocol::{Platform, SoftwareKey};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceState {
    pub server_url: String,
    /// Set once the first enrolment succeeds.
    pub device_id: Option<String>,
    /// The device key, PKCS#8 DER in standard base64. A secret.
    pub private_key: String,
    pub platform: Platform,
    pub push_token: Option<String>,
    pub notifications_enabled: bool,
    pub cards: Vec<EnrolledCard>,
}

impl DeviceState {
    /// A device with a new key that has not enrolled anywhere yet.
    pub fn new(server_url: String, platform: Platform) -> Self {
        Self {
            server_url,
            device_id: None,
            private_key: STANDARD.encode(SoftwareKey::generate().pkcs8()),
            platform,
            push_token: None,
            notifications_enabled: true,
            cards: Vec::new(),
        }
    }

    /// Reads the state file; `None` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read the device state {}", path.display()));
            }
        };
        let state =
            serde_json::from_str(&text).with_context(|| format!("{} is not a device state file", path.display()))?;
        Ok(Some(state))
    }

    /// Reads the state of a device that has enrolled.
    pub fn load_enrolled(path: &Path) -> Result<Self> {
        let state = Self::load(path)?.ok_or_else(|| {
            anyhow!(
                "no device state at {}: enrol first with `countersign-device enrol --server URL --code CODE`",
                path.display()
            )
        })?;
        if state.device_id.is_none() {
            bail!("the device in {} has not finished enrolling: run `enrol` again", path.display());
        }
        Ok(state)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        let temporary = sibling(path, ".tmp");
        let mut file = private_file(&temporary)
            .with_context(|| format!("cannot write the device state {}", temporary.display()))?;
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&temporary, path).with_context(|| format!("cannot replace the device state {}", path.display()))
    }

    pub fn remove(path: &Path) -> Result<()> {
        fs::remove_file(path).with_context(|| format!("cannot remove the device state {}", path.display()))
    }

    pub fn key(&self) -> Result<SoftwareKey> {
        let pkcs8 = STANDARD.decode(self.private_key.trim()).context("the stored private key is not base64")?;
        SoftwareKey::from_pkcs8(&pkcs8).context("the stored private key is not a P-256 key")
    }

    pub fn client(&self) -> Result<DeviceClient> {
        Ok(DeviceClient::new(&self.server_url, Arc::new(self.key()?), self.device_id.clone())?)
    }

    /// Adds a newly enrolled card, or refreshes one enrolled before.
    pub fn remember_card(&mut self, card: EnrolledCard) {
        self.cards.retain(|known| known.card_id != card.card_id);
        self.cards.push(card);
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // An older file keeps its mode on open; tighten it in that case too.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.json");
        assert!(DeviceState::load(&path).unwrap().is_none());
        let mut state = DeviceState::new("http://localhost:8080".into(), Platform::Ios);
        state.device_id = Some("dev-1".into());
        state.remember_card(EnrolledCard {
            card_id: "c".into(), masked_pan: "•••• 1".into(), issuer_name: "B".into()
        });
        state.save(&path).unwrap();
        let again = DeviceState::load_enrolled(&path).unwrap();
        assert_eq!(again.key().unwrap().public_key(), state.key().unwrap().public_key());
        assert_eq!(again.cards, state.cards);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_device_that_never_enrolled_is_told_to_enrol() {
        let dir = tempfile::tempdir().unwrap();
        let message = DeviceState::load_enrolled(&dir.path().join("none.json")).unwrap_err().to_string();
        assert!(message.contains("enrol"), "{message}");
    }
}
