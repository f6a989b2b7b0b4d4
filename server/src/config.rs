//! Configuration: defaults that start a working server with no file at all,
//! a TOML file over them, and `COUNTERSIGN_SECTION__KEY` environment
//! variables over that. Unknown keys are an error naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::delivery::{EmailConfig, SmsConfig};
use crate::notifier::PushConfig;
use crate::risk::RiskConfig;
use crate::storage::sqlite::Synchronous;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub secrets: SecretsConfig,
    pub issuer: IssuerConfig,
    pub challenge: ChallengeConfig,
    pub enrolment: EnrolmentConfig,
    /// Requestor credentials.
    pub requestors: RequestorConfig,
    pub callbacks: CallbackConfig,
    pub codes: CodeConfig,
    /// How one-time codes are emailed.
    pub email: EmailConfig,
    /// How one-time codes are texted.
    pub sms: SmsConfig,
    /// Who delivers push notifications: the outbox, APNs, FCM.
    pub push: PushConfig,
    pub risk: RiskConfig,
    /// The browser challenge window and the demo shop.
    pub window: WindowConfig,
    /// Prometheus metrics on a listener of their own.
    pub metrics: crate::metrics::MetricsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Loopback by default: put a TLS proxy in front,
    /// or bind elsewhere on purpose.
    pub listen: SocketAddr,
    /// The URL browsers and devices reach this server at; `acsURL` is built
    /// from it. Defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// On SIGTERM/SIGINT: how long requests in flight may take to finish
    /// once the listener stopped accepting, before their connections close.
    pub shutdown_grace_secs: u64,
    /// Serve HTTPS with these PEM files (`[server.tls]`, absent = plain
    /// HTTP, e.g. behind a TLS-terminating proxy). SIGHUP reloads them.
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8480)),
            public_url: None,
            body_limit_bytes: 64 * 1024,
            shutdown_grace_secs: 20,
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (or a plain path) for the embedded database, or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` for PostgreSQL, which several
    /// server nodes can share (docs/postgres.md).
    pub url: String,
    /// Connections in the pool (per node, for PostgreSQL).
    pub max_connections: usize,
    /// SQLite durability (PostgreSQL keeps its own settings): `normal` (WAL; survives a crash of the process,
    /// may lose the last commits on power loss) or `full` (an fsync per
    /// commit; survives power loss, far fewer commits per second).
    pub synchronous: Synchronous,
    /// PostgreSQL over TLS (`sslmode=require`, `verify-ca` or `verify-full`
    /// in the URL): a PEM file of the certificate authorities trusted for
    /// the server's certificate. Unset: the Mozilla roots built in.
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL: a file holding the password (a trailing newline is
    /// ignored), to keep it out of the URL, the configuration file and the
    /// environment. The URL then names the user without a password.
    pub password_file: Option<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://./data/countersign.db".into(),
            max_connections: 4,
            synchronous: Synchronous::Normal,
            ca_file: None,
            password_file: None,
        }
    }
}

impl DatabaseConfig {
    /// The PostgreSQL URL to connect with: `url`, with the password from
    /// `password_file` when that is set. Errors never hold the password.
    pub fn postgres_url(&self) -> Result<String, ConfigError> {
        let Some(path) = &self.password_file else {
            return Ok(self.url.clone());
        };
        let invalid = |why: &str| ConfigError::Invalid(format!("database.password_file: {why}"));
        let password = read_secret_file("database.password", path).map_err(ConfigError::Invalid)?;
        let mut url = reqwest::Url::parse(&self.url).map_err(|_| invalid("database.url is not a postgres:// URL"))?;
        if url.password().is_some() {
            return Err(invalid("database.url holds a password already: use one of the two"));
        }
        if url.username().is_empty() {
            return Err(invalid("database.url names no user for the password"));
        }
        url.set_password(Some(&password)).map_err(|_| invalid("database.url cannot take a password"))?;
        Ok(url.into())
    }
}

/// A secret read from a file (`{key}_file`): the whole file but a trailing
/// newline. Errors name the key and the file, never the secret.
pub(crate) fn read_secret_file(key: &str, path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{key}_file: cannot read {}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{key}_file: {} is empty", path.display()));
    }
    Ok(secret.to_owned())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// 32-byte master key from which every keyed hash and MAC key is
    /// derived. Created on first start if missing. Back it up: without it
    /// no stored card, API key or code can be matched again.
    pub master_key_file: PathBuf,
    /// Master keys this one replaced (a rotation): what was made under
    /// them is still recognised, and long-lived rows are re-keyed under
    /// `master_key_file` as they are used. When a previous file can be
    /// dropped: docs/operations.md, "Rotating the master key".
    pub previous_master_key_files: Vec<PathBuf>,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        Self { master_key_file: PathBuf::from("./data/master.key"), previous_master_key_files: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerConfig {
    /// Shown to cardholders in the app.
    pub name: String,
    /// `acsReferenceNumber` in ARes messages.
    pub acs_reference_number: String,
}

impl Default for IssuerConfig {
    fn default() -> Self {
        Self { name: "Countersign Demo Bank".into(), acs_reference_number: "COUNTERSIGN-ACS-1".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChallengeConfig {
    /// How long a push challenge can be answered.
    pub expiry_secs: u64,
    /// Number matching: the checkout shows a two-digit number, the app
    /// offers three and the cardholder picks the one shown.
    pub number_match: NumberMatchConfig,
    /// How often expired challenges are swept and closed.
    pub sweep_interval_ms: u64,
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        Self { expiry_secs: 300, number_match: NumberMatchConfig::default(), sweep_interval_ms: 1000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumberMatchConfig {
    pub enabled: bool,
    /// Amount in minor units, per ISO 4217 numeric currency code, above
    /// which a challenge asks for number matching. A currency not listed
    /// always gets number matching while it is enabled.
    pub above: BTreeMap<String, u64>,
}

impl Default for NumberMatchConfig {
    fn default() -> Self {
        let above = [("978", 10_000), ("840", 10_000), ("826", 10_000), ("392", 20_000), ("752", 100_000)];
        Self { enabled: true, above: above.into_iter().map(|(c, a)| (c.to_owned(), a)).collect() }
    }
}

impl NumberMatchConfig {
    pub fn applies(&self, currency: u16, amount_minor: u64) -> bool {
        self.enabled && self.above.get(&format!("{currency:03}")).is_none_or(|limit| amount_minor > *limit)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrolmentConfig {
    /// Lifetime of an enrolment code.
    pub code_ttl_secs: u64,
    /// Wrong tries before an enrolment code is burnt.
    pub max_attempts: u32,
}

impl Default for EnrolmentConfig {
    fn default() -> Self {
        Self { code_ttl_secs: 24 * 3600, max_attempts: 5 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestorConfig {
    /// After an API key or callback secret is rotated, how long the one it
    /// replaced keeps working (unless revoked sooner), so the requestor can
    /// switch without a gap.
    pub rotation_overlap_secs: u64,
}

impl Default for RequestorConfig {
    fn default() -> Self {
        Self { rotation_overlap_secs: 24 * 3600 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackConfig {
    /// Attempts to deliver a result (RReq) before giving up.
    pub max_attempts: u32,
    /// First retry delay; doubles each time up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub request_timeout_ms: u64,
    /// How often the delivery worker looks for due callbacks.
    pub poll_interval_ms: u64,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff_ms: 1000,
            max_backoff_ms: 300_000,
            request_timeout_ms: 10_000,
            poll_interval_ms: 250,
        }
    }
}

/// The one-time-code fallback (numbers from the SafeKey FAQ).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CodeConfig {
    /// How long a code is valid from creation. A resend repeats the same
    /// code and does not extend it.
    pub validity_secs: u64,
    /// An unanswered push falls back to a code after this long.
    pub push_timeout_secs: u64,
    /// Resends allowed per code.
    pub max_resends: u32,
    /// Least time between two sends of a code.
    pub resend_interval_secs: u64,
    /// Wrong codes in a row (across purchases) that block the card until
    /// an operator unblocks it.
    pub max_failures: u32,
    /// Attempts to deliver one message before giving up on that channel.
    pub delivery_max_attempts: u32,
    /// First retry delay for a failed send; doubles each time.
    pub delivery_initial_backoff_ms: u64,
    /// How often due sends are looked for.
    pub delivery_poll_interval_ms: u64,
}

impl Default for CodeConfig {
    fn default() -> Self {
        Self {
            validity_secs: 600,
            push_timeout_secs: 60,
            max_resends: 3,
            resend_interval_secs: 30,
            max_failures: 5,
            delivery_max_attempts: 5,
            delivery_initial_backoff_ms: 2000,
            delivery_poll_interval_ms: 250,
        }
    }
}

/// The browser challenge window (EMV 3DS browser flow).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// A challenge whose window was not opened (no CReq) this long after
    /// the ARes ends N with reason 14 and challengeCancel 05. 0 = never.
    pub creq_timeout_secs: u64,
    /// A window with no cardholder activity this long ends N with reason
    /// 14. 0 = never.
    pub inactivity_secs: u64,
    /// A window's session is deleted this long after its purchase ended;
    /// a CReq for a purchase that ended longer ago opens nothing.
    pub session_retention_secs: u64,
    /// Serve the demo shop at `/demo` (a checkout acting as merchant and
    /// 3DS server). Turn it off in production.
    pub demo: bool,
    /// Who may frame the window (CSP `frame-ancestors` sources), unless
    /// the requestor has its own list below.
    pub frame_ancestors: Vec<String>,
    /// Per requestor (`threeDSRequestorID`): the origins of its checkout.
    pub requestor_frame_ancestors: BTreeMap<String, Vec<String>>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            creq_timeout_secs: 30,
            inactivity_secs: 600,
            session_retention_secs: 3600,
            demo: true,
            frame_ancestors: vec!["'self'".into()],
            requestor_frame_ancestors: BTreeMap::new(),
        }
    }
}

impl WindowConfig {
    /// The CSP `frame-ancestors` sources for a requestor's window.
    pub fn frame_ancestors_for(&self, requestor_id: &str) -> &[String] {
        self.requestor_frame_ancestors.get(requestor_id).unwrap_or(&self.frame_ancestors)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then the file (if given), then `COUNTERSIGN_*` variables.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                text.parse::<toml::Table>().map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if let Some(rest) = name.strip_prefix("COUNTERSIGN_")
                && rest.contains("__")
            {
                apply_env(&mut tree, rest, &value)?;
            }
        }
        let config: Config = toml::Value::Table(tree)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.risk.validate().map_err(ConfigError::Invalid)?;
        self.push.validate().map_err(ConfigError::Invalid)?;
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid("database.max_connections must be at least 1".into()));
        }
        if self.codes.validity_secs == 0 || self.codes.max_failures == 0 {
            return Err(ConfigError::Invalid("codes.validity_secs and codes.max_failures must be at least 1".into()));
        }
        let sources =
            self.window.frame_ancestors.iter().chain(self.window.requestor_frame_ancestors.values().flatten());
        for source in sources {
            if source.is_empty() || source.chars().any(|c| c.is_whitespace() || c == ';' || c == ',') {
                return Err(ConfigError::Invalid(format!("window: `{source}` is not a frame-ancestors source")));
            }
        }
        if self.database.password_file.is_some() && !matches!(self.database(), Database::Postgres(_)) {
            return Err(ConfigError::Invalid("database.password_file is for PostgreSQL URLs only".into()));
        }
        if self.challenge.expiry_secs == 0 {
            return Err(ConfigError::Invalid("challenge.expiry_secs must be at least 1".into()));
        }
        Ok(())
    }

    pub fn public_url(&self) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| {
                let scheme = if self.server.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{}", self.server.listen)
            })
            .trim_end_matches('/')
            .to_owned()
    }

    /// The database `database.url` names.
    pub fn database(&self) -> Database {
        let url = &self.database.url;
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Database::Postgres(url.clone())
        } else {
            Database::Sqlite(PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url)))
        }
    }

    /// The SQLite file named by `database.url`.
    pub fn sqlite_path(&self) -> Result<PathBuf, ConfigError> {
        match self.database() {
            Database::Sqlite(path) => Ok(path),
            Database::Postgres(_) => {
                Err(ConfigError::Invalid("database.url names PostgreSQL, not a SQLite file".into()))
            }
        }
    }
}

/// Where the server keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded database in this file: one node.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (with any password in it): any number of nodes.
    Postgres(String),
}

/// `COUNTERSIGN_SERVER__LISTEN=0.0.0.0:8480` sets `server.listen`. The value
/// is read as TOML when it parses as such (numbers, booleans), else as text.
fn apply_env(tree: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name.split("__").map(str::to_ascii_lowercase).collect();
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, parents) = path.split_last().expect("split yields at least one part");
    let mut table = tree;
    for part in parents {
        let entry = table.entry(part.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Invalid(format!("COUNTERSIGN_{name}: `{part}` is not a table")))?;
    }
    table.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_password_file_is_for_postgresql_only() {
        let env = [("COUNTERSIGN_DATABASE__PASSWORD_FILE".to_owned(), "/run/secrets/db".to_owned())];
        let err = Config::load(None, env).unwrap_err().to_string();
        assert!(err.contains("database.password_file"), "{err}");
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, []).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8480");
        assert_eq!(c.public_url(), "http://127.0.0.1:8480");
        assert_eq!(c.sqlite_path().unwrap(), PathBuf::from("./data/countersign.db"));
    }

    #[test]
    fn database_url_picks_the_backend() {
        let mut c = Config::default();
        c.database.url = "/var/lib/countersign/cs.db".into();
        assert_eq!(c.database(), Database::Sqlite(PathBuf::from("/var/lib/countersign/cs.db")));
        for url in ["postgres://cs:pw@db.internal:5432/countersign", "postgresql://db.internal/countersign"] {
            c.database.url = url.into();
            assert_eq!(c.database(), Database::Postgres(url.into()));
            assert!(c.sqlite_path().is_err());
        }
    }

    #[test]
    fn file_then_environment_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[challenge]\nexpiry_secs = 120\n[issuer]\nname = \"Bank\"\n").unwrap();
        let env = [
            ("COUNTERSIGN_CHALLENGE__EXPIRY_SECS".to_owned(), "90".to_owned()),
            ("COUNTERSIGN_SERVER__PUBLIC_URL".to_owned(), "https://acs.example/".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let c = Config::load(Some(&file), env).unwrap();
        assert_eq!(c.challenge.expiry_secs, 90);
        assert_eq!(c.issuer.name, "Bank");
        assert_eq!(c.public_url(), "https://acs.example");
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[challenge]\nexpiry_sec = 120\n").unwrap();
        let err = Config::load(Some(&file), []).unwrap_err().to_string();
        assert!(err.contains("expiry_sec"), "{err}");
        let err = Config::load(None, [("COUNTERSIGN_SERVER__LISTN".into(), "x".into())]).unwrap_err().to_string();
        assert!(err.contains("listn"), "{err}");
    }

    #[test]
    fn number_matching_by_amount_and_unlisted_currency() {
        let n = NumberMatchConfig::default();
        assert!(!n.applies(978, 10_000));
        assert!(n.applies(978, 10_001));
        assert!(n.applies(36, 1));
    }
}

#[cfg(test)]
mod doc_tests {
    /// docs/configuration.md shows the defaults exactly as the code has them.
    #[test]
    fn documented_defaults_match_the_code() {
        let doc = include_str!("../../docs/configuration.md");
        let defaults = toml::to_string_pretty(&super::Config::default()).unwrap();
        assert!(doc.contains(&defaults), "docs/configuration.md is out of date; paste `countersign config` into it");
    }
}
