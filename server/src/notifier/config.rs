//! The `[push]` table: which provider carries challenges to each platform,
//! and how to reach APNs and FCM. With no table at all every push goes to
//! the development outbox, as before. Checking the table touches no file;
//! building the notifier reads the keys, so a missing or malformed key
//! stops the server at start-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::apns::{ApnsClient, ApnsSettings};
use super::dispatch::{PushNotifier, Route, Timing};
use super::fcm::{FcmClient, FcmSettings};
use super::metrics::{self, PushMetrics};
use super::{Notifier, OutboxNotifier};
use crate::clock::Clock;
use crate::storage::Storage;

pub const APNS_PRODUCTION_URL: &str = "https://api.push.apple.com";
pub const APNS_SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// Who delivers pushes to one platform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushProvider {
    /// Recorded in the database (`countersign pushes`, the admin API);
    /// nothing leaves the machine.
    #[default]
    Outbox,
    /// Apple Push Notification service, with a token-based (`.p8`) key.
    Apns,
    /// Firebase Cloud Messaging, HTTP v1 API, with a service account.
    Fcm,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApnsEnvironment {
    /// Apps from the App Store, TestFlight and ad-hoc builds.
    #[default]
    Production,
    /// Apps built for development and run from Xcode.
    Sandbox,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Provider for devices whose platform is `ios`: `outbox`, `apns`, or
    /// `fcm` (Firebase hands the push on to APNs).
    pub ios: PushProvider,
    /// Provider for devices whose platform is `android`: `outbox` or `fcm`.
    pub android: PushProvider,
    /// How long an AReq waits for a push's outcome before answering. A push
    /// still being retried then goes on in the background, and the code
    /// fallback after `codes.push_timeout_secs` covers it; a rejected token
    /// or a configuration error is known well within this and falls back
    /// to a code at once.
    pub inline_wait_ms: u64,
    /// Time allowed for one request to a provider.
    pub request_timeout_ms: u64,
    /// First wait before retrying a push that failed for a passing reason
    /// (429, 5xx, a network error); it doubles each time up to
    /// `max_backoff_ms`, is never shorter than the provider's Retry-After,
    /// and retries stop when the challenge expires.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub apns: ApnsConfig,
    pub fcm: FcmConfig,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            ios: PushProvider::Outbox,
            android: PushProvider::Outbox,
            inline_wait_ms: 1_500,
            request_timeout_ms: 10_000,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
            apns: ApnsConfig::default(),
            fcm: FcmConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApnsConfig {
    /// The token signing key (`AuthKey_XXXXXXXXXX.p8`) from the Apple
    /// developer account. Keep it readable by the server only.
    pub key_file: Option<PathBuf>,
    /// The key's 10-character Key ID.
    pub key_id: String,
    /// The 10-character Team ID of the developer account.
    pub team_id: String,
    /// The app's bundle ID (`apns-topic`).
    pub topic: String,
    /// `production` or `sandbox` (development builds).
    pub environment: ApnsEnvironment,
    /// Overrides the environment's address (a relay, or tests). Must be
    /// https, except on localhost.
    pub base_url: Option<String>,
    /// The notification category the app registers with the Approve and
    /// Deny actions.
    pub category: String,
}

impl Default for ApnsConfig {
    fn default() -> Self {
        Self {
            key_file: None,
            key_id: String::new(),
            team_id: String::new(),
            topic: String::new(),
            environment: ApnsEnvironment::Production,
            base_url: None,
            category: "COUNTERSIGN_CHALLENGE".into(),
        }
    }
}

impl ApnsConfig {
    pub fn url(&self) -> &str {
        self.base_url.as_deref().unwrap_or(match self.environment {
            ApnsEnvironment::Production => APNS_PRODUCTION_URL,
            ApnsEnvironment::Sandbox => APNS_SANDBOX_URL,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FcmConfig {
    /// The Firebase service account's JSON key file (Project settings →
    /// Service accounts → Generate new private key).
    pub service_account_file: Option<PathBuf>,
    /// The Firebase project; defaults to the service account's `project_id`.
    pub project_id: Option<String>,
    /// Where access tokens are requested; defaults to the service account's
    /// `token_uri`, else Google's. Must be https, except on localhost.
    pub token_url: Option<String>,
    /// The FCM API's address. Must be https, except on localhost.
    pub base_url: String,
}

impl Default for FcmConfig {
    fn default() -> Self {
        Self {
            service_account_file: None,
            project_id: None,
            token_url: None,
            base_url: "https://fcm.googleapis.com".into(),
        }
    }
}

impl PushConfig {
    fn uses(&self, provider: PushProvider) -> bool {
        self.ios == provider || self.android == provider
    }

    /// Checks the table without touching the network or any file.
    pub fn validate(&self) -> Result<(), String> {
        if self.android == PushProvider::Apns {
            return Err("push.android = \"apns\": APNs reaches Apple devices only; use \"fcm\"".into());
        }
        if self.request_timeout_ms == 0 || self.initial_backoff_ms == 0 {
            return Err("push.request_timeout_ms and push.initial_backoff_ms must be at least 1".into());
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err("push.max_backoff_ms must not be less than push.initial_backoff_ms".into());
        }
        if self.uses(PushProvider::Apns) {
            let a = &self.apns;
            if a.key_file.is_none() {
                return Err("push.apns.key_file must name the .p8 token signing key".into());
            }
            check_apple_id("push.apns.key_id", &a.key_id)?;
            check_apple_id("push.apns.team_id", &a.team_id)?;
            if a.topic.trim().is_empty() || a.topic.chars().any(char::is_whitespace) {
                return Err("push.apns.topic must be the app's bundle ID".into());
            }
            check_url("push.apns.base_url", a.url())?;
        }
        if self.ios == PushProvider::Apns || self.uses(PushProvider::Fcm) {
            let category = &self.apns.category;
            if category.is_empty() || category.len() > 64 || category.chars().any(char::is_whitespace) {
                return Err("push.apns.category must be a category identifier without spaces".into());
            }
        }
        if self.uses(PushProvider::Fcm) {
            let f = &self.fcm;
            if f.service_account_file.is_none() {
                return Err("push.fcm.service_account_file must name the service account's JSON key".into());
            }
            if let Some(project) = &f.project_id {
                check_project_id(project)?;
            }
            check_url("push.fcm.base_url", &f.base_url)?;
            if let Some(url) = &f.token_url {
                check_url("push.fcm.token_url", url)?;
            }
        }
        Ok(())
    }

    /// The notifier the server runs with: the outbox alone when no platform
    /// uses a provider, else the providers with the outbox where chosen.
    /// Reads the key files. Its numbers are the ones [`metrics::metrics`] shows.
    pub fn build(&self, storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<Arc<dyn Notifier>, String> {
        self.build_with_metrics(storage, clock, metrics::global())
    }

    /// As [`Self::build`], counting into `metrics`.
    pub fn build_with_metrics(
        &self,
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        metrics: Arc<PushMetrics>,
    ) -> Result<Arc<dyn Notifier>, String> {
        self.validate()?;
        if !self.uses(PushProvider::Apns) && !self.uses(PushProvider::Fcm) {
            return Ok(Arc::new(OutboxNotifier::new(storage)));
        }
        let timeout = Duration::from_millis(self.request_timeout_ms);
        let apns = match self.uses(PushProvider::Apns) {
            true => Some(Arc::new(ApnsClient::new(self.apns_settings()?, timeout, clock.clone(), metrics.clone())?)),
            false => None,
        };
        let fcm = match self.uses(PushProvider::Fcm) {
            true => Some(Arc::new(FcmClient::new(self.fcm_settings()?, timeout, clock.clone(), metrics.clone())?)),
            false => None,
        };
        let route = |provider: PushProvider| match provider {
            PushProvider::Outbox => Route::Outbox,
            PushProvider::Apns => Route::Provider(apns.clone().expect("built when used")),
            PushProvider::Fcm => Route::Provider(fcm.clone().expect("built when used")),
        };
        let timing = Timing {
            inline_wait: Duration::from_millis(self.inline_wait_ms),
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.max_backoff_ms),
        };
        Ok(Arc::new(PushNotifier::new(route(self.ios), route(self.android), storage, clock, metrics, timing)))
    }

    fn apns_settings(&self) -> Result<ApnsSettings, String> {
        let a = &self.apns;
        let path = a.key_file.as_ref().expect("validated");
        let pem = read_key_file("push.apns.key_file", path)?;
        let key = super::jwt::SigningKey::es256_from_pem(&pem)
            .map_err(|e| format!("push.apns.key_file: {}: {e}", path.display()))?;
        Ok(ApnsSettings {
            key,
            key_id: a.key_id.clone(),
            team_id: a.team_id.clone(),
            topic: a.topic.clone(),
            base_url: a.url().trim_end_matches('/').to_owned(),
            category: a.category.clone(),
        })
    }

    fn fcm_settings(&self) -> Result<FcmSettings, String> {
        let f = &self.fcm;
        let path = f.service_account_file.as_ref().expect("validated");
        let text = read_key_file("push.fcm.service_account_file", path)?;
        let fail = |e: String| format!("push.fcm.service_account_file: {}: {e}", path.display());
        let account: ServiceAccount =
            serde_json::from_str(&text).map_err(|e| fail(format!("not a service account key ({e})")))?;
        if account.kind != "service_account" {
            return Err(fail(format!("\"type\" is {:?}, not \"service_account\"", account.kind)));
        }
        if !account.client_email.contains('@') {
            return Err(fail("\"client_email\" is not an email address".into()));
        }
        let key = super::jwt::SigningKey::rs256_from_pem(&account.private_key)
            .map_err(|e| fail(format!("\"private_key\": {e}")))?;
        let project_id = f
            .project_id
            .clone()
            .or(account.project_id)
            .ok_or_else(|| fail("no \"project_id\" in the file: set push.fcm.project_id".into()))?;
        check_project_id(&project_id)?;
        let audience = account.token_uri.unwrap_or_else(|| GOOGLE_TOKEN_URL.into());
        check_url("the service account's token_uri", &audience)?;
        Ok(FcmSettings {
            key,
            key_id: account.private_key_id,
            client_email: account.client_email,
            token_url: f.token_url.clone().unwrap_or_else(|| audience.clone()),
            audience,
            send_url: format!("{}/v1/projects/{project_id}/messages:send", f.base_url.trim_end_matches('/')),
            category: self.apns.category.clone(),
        })
    }
}

/// The fields of a Google service account key file that matter here.
#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(rename = "type")]
    kind: String,
    project_id: Option<String>,
    private_key_id: Option<String>,
    private_key: String,
    client_email: String,
    token_uri: Option<String>,
}

fn read_key_file(key: &str, path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Err(format!("{key}: {} is empty", path.display()));
    }
    Ok(text)
}

fn check_apple_id(key: &str, value: &str) -> Result<(), String> {
    if value.len() == 10 && value.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("{key} must be the 10-character identifier from the Apple developer account, got {value:?}"))
    }
}

fn check_project_id(project: &str) -> Result<(), String> {
    if !project.is_empty() && project.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        Ok(())
    } else {
        Err(format!("push.fcm.project_id: {project:?} is not a Firebase project ID"))
    }
}

/// Credentials travel with every request: https only, except to this host.
fn check_url(key: &str, value: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("{key} is not a URL ({e}): {value:?}"))?;
    let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if local => Ok(()),
        _ => Err(format!("{key} must be https (credentials go with every request); http is accepted for localhost")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::notifier::jwt::tests::{TEST_RSA_PEM, p256_pem};
    use crate::storage::sqlite::{SqliteStorage, Synchronous};

    fn storage(dir: &std::path::Path) -> Arc<dyn Storage> {
        Arc::new(SqliteStorage::open(&dir.join("db.sqlite"), 1, Synchronous::Normal, 0).unwrap())
    }

    fn apns(dir: &std::path::Path) -> PushConfig {
        let key = dir.join("AuthKey_ABC123DEFG.p8");
        std::fs::write(&key, p256_pem().0).unwrap();
        PushConfig {
            ios: PushProvider::Apns,
            apns: ApnsConfig {
                key_file: Some(key),
                key_id: "ABC123DEFG".into(),
                team_id: "TEAM123456".into(),
                topic: "jp.example.bank".into(),
                ..ApnsConfig::default()
            },
            ..PushConfig::default()
        }
    }

    fn service_account(dir: &std::path::Path, project: Option<&str>) -> PathBuf {
        let path = dir.join("service-account.json");
        let mut account = serde_json::json!({
            "type": "service_account",
            "private_key_id": "k1",
            "private_key": TEST_RSA_PEM,
            "client_email": "push@bank-app.iam.gserviceaccount.com",
            "token_uri": GOOGLE_TOKEN_URL,
            "client_id": "1234",
        });
        if let Some(p) = project {
            account["project_id"] = p.into();
        }
        std::fs::write(&path, account.to_string()).unwrap();
        path
    }

    fn fcm(dir: &std::path::Path) -> PushConfig {
        PushConfig {
            android: PushProvider::Fcm,
            fcm: FcmConfig {
                service_account_file: Some(service_account(dir, Some("bank-app"))),
                ..FcmConfig::default()
            },
            ..PushConfig::default()
        }
    }

    #[test]
    fn defaults_are_the_outbox_and_round_trip_through_toml() {
        let push = PushConfig::default();
        assert_eq!((push.ios, push.android), (PushProvider::Outbox, PushProvider::Outbox));
        assert!(push.validate().is_ok());
        assert_eq!(push.apns.url(), APNS_PRODUCTION_URL);
        let text = toml::to_string_pretty(&push).unwrap();
        assert_eq!(toml::from_str::<PushConfig>(&text).unwrap(), push);
        let sandbox: PushConfig = toml::from_str("[apns]\nenvironment = \"sandbox\"").unwrap();
        assert_eq!(sandbox.apns.url(), APNS_SANDBOX_URL);
        let err = toml::from_str::<PushConfig>("[apns]\nkeyfile = \"x\"").unwrap_err().to_string();
        assert!(err.contains("keyfile"), "{err}");
        let err = toml::from_str::<PushConfig>("android = \"gcm\"").unwrap_err().to_string();
        assert!(err.contains("gcm"), "{err}");
    }

    #[tokio::test]
    async fn zero_config_builds_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(dir.path());
        let notifier = PushConfig::default().build(storage.clone(), Arc::new(SystemClock)).unwrap();
        let device = crate::storage::Device {
            id: "d1".into(),
            public_key: vec![4; 65],
            platform: "ios".into(),
            display_name: "phone".into(),
            push_token: Some("t".into()),
            notifications_enabled: true,
            push_unreachable: false,
            revoked_at: None,
            created_at: 0,
        };
        let payload = countersign_core::protocol::wire::PushPayload { challenge_id: "c1".into(), expires_at: 9 };
        // Recorded in the database, as before the providers existed.
        notifier.notify(&device, &payload, 0).await.unwrap();
        let pushes = storage.outbox_pushes(None, 10).await.unwrap();
        assert_eq!((pushes.len(), pushes[0].challenge_id.as_str()), (1, "c1"));
    }

    #[test]
    fn what_each_provider_needs_is_checked_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = apns(dir.path());
        assert!(good.validate().is_ok());
        let check = |c: PushConfig| c.validate().unwrap_err();
        let no_key = PushConfig { apns: ApnsConfig { key_file: None, ..good.apns.clone() }, ..good.clone() };
        assert!(check(no_key).contains("push.apns.key_file"));
        let short_id = PushConfig { apns: ApnsConfig { key_id: "ABC".into(), ..good.apns.clone() }, ..good.clone() };
        assert!(check(short_id).contains("push.apns.key_id"));
        let no_team = PushConfig { apns: ApnsConfig { team_id: String::new(), ..good.apns.clone() }, ..good.clone() };
        assert!(check(no_team).contains("push.apns.team_id"));
        let no_topic = PushConfig { apns: ApnsConfig { topic: " ".into(), ..good.apns.clone() }, ..good.clone() };
        assert!(check(no_topic).contains("push.apns.topic"));
        let plain = PushConfig {
            apns: ApnsConfig { base_url: Some("http://apns.example".into()), ..good.apns.clone() },
            ..good.clone()
        };
        assert!(check(plain).contains("https"));
        let local = PushConfig {
            apns: ApnsConfig { base_url: Some("http://127.0.0.1:8443".into()), ..good.apns.clone() },
            ..good.clone()
        };
        assert!(local.validate().is_ok());
        let android_apns = PushConfig { android: PushProvider::Apns, ..good.clone() };
        assert!(check(android_apns).contains("push.android"));
        let backoff = PushConfig { max_backoff_ms: 1, ..good };
        assert!(check(backoff).contains("max_backoff_ms"));

        let good = fcm(dir.path());
        assert!(good.validate().is_ok());
        let no_account = PushConfig { fcm: FcmConfig::default(), ..good.clone() };
        assert!(check(no_account).contains("push.fcm.service_account_file"));
        let bad_project =
            PushConfig { fcm: FcmConfig { project_id: Some("My Project".into()), ..good.fcm.clone() }, ..good };
        assert!(check(bad_project).contains("project_id"));
    }

    #[test]
    fn keys_are_read_at_build_time_and_bad_ones_stop_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let build = |c: &PushConfig| c.build(storage(dir.path()), Arc::new(SystemClock)).err();
        let good = apns(dir.path());
        assert!(build(&good).is_none());

        let missing = dir.path().join("absent.p8");
        let config = PushConfig { apns: ApnsConfig { key_file: Some(missing), ..good.apns.clone() }, ..good.clone() };
        let err = build(&config).unwrap();
        assert!(err.starts_with("push.apns.key_file: cannot read") && err.contains("absent.p8"), "{err}");

        let garbage = dir.path().join("garbage.p8");
        std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let config = PushConfig { apns: ApnsConfig { key_file: Some(garbage), ..good.apns.clone() }, ..good.clone() };
        let err = build(&config).unwrap();
        assert!(err.contains("garbage.p8") && err.contains("not a P-256"), "{err}");

        let rsa = dir.path().join("rsa.p8");
        std::fs::write(&rsa, TEST_RSA_PEM).unwrap();
        let config = PushConfig { apns: ApnsConfig { key_file: Some(rsa), ..good.apns.clone() }, ..good };
        assert!(build(&config).unwrap().contains("not a P-256"));

        let good = fcm(dir.path());
        assert!(build(&good).is_none());
        let account = good.fcm.service_account_file.clone().unwrap();
        std::fs::write(&account, "{\"type\": \"authorized_user\"}").unwrap();
        let err = build(&good).unwrap();
        assert!(err.starts_with("push.fcm.service_account_file") && err.contains("not a service account"), "{err}");

        let json = serde_json::json!({
            "type": "service_account", "project_id": "bank-app", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA",
            "client_email": "push@bank-app.iam.gserviceaccount.com",
        });
        std::fs::write(&account, json.to_string()).unwrap();
        let err = build(&good).unwrap();
        assert!(err.contains("\"private_key\"") && !err.contains("AAAA"), "{err}");

        service_account(dir.path(), None);
        let err = build(&good).unwrap();
        assert!(err.contains("set push.fcm.project_id"), "{err}");
        let named = PushConfig { fcm: FcmConfig { project_id: Some("bank-app".into()), ..good.fcm.clone() }, ..good };
        assert!(build(&named).is_none());
    }
}
