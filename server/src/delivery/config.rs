//! The `[email]` and `[sms]` tables of the server's configuration.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Sender, SmsSender, SmtpSender, mask_phone};

/// How one-time codes go out by email.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTransport {
    /// Recorded in the database, where the development outbox lists them;
    /// nothing leaves the machine.
    #[default]
    Outbox,
    /// Sent through the SMTP relay of the `[email]` table.
    Smtp,
    /// No codes by email.
    Off,
}

/// How the connection to the SMTP relay is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailSecurity {
    /// Plain connection upgraded with STARTTLS, usually on port 587. The
    /// upgrade is required: nothing is sent if the relay does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte ("implicit TLS", SMTPS), usually port 465.
    Tls,
    /// No encryption at all: only for a relay on the same host or a
    /// private network, since codes and the password travel in the clear.
    Plain,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `outbox` (messages are recorded in the database and listed by the
    /// development outbox; nothing is sent), `smtp` (sent through the relay
    /// below) or `off` (no codes by email).
    pub transport: EmailTransport,
    /// Host name of the SMTP relay. With TLS, its certificate must be valid
    /// for this name.
    pub host: String,
    /// Port of the relay: 587 for STARTTLS, 465 for implicit TLS.
    pub port: u16,
    /// `starttls` (required upgrade), `tls` (implicit TLS) or `plain` (no
    /// encryption; local relays only).
    pub security: EmailSecurity,
    /// User name for SMTP authentication; none means no authentication.
    pub username: Option<String>,
    /// Password for SMTP authentication. Prefer `password_file`.
    pub password: Option<String>,
    /// File holding the SMTP password (a trailing newline is ignored).
    pub password_file: Option<PathBuf>,
    /// Sender of the emails, as cardholders see it, e.g.
    /// `"SafeKey <no-reply@issuer.example>"`.
    pub from: String,
    /// Time allowed for one whole send (connecting, TLS, authentication
    /// and the message), in milliseconds. A send that takes longer fails
    /// and is retried.
    pub timeout_ms: u64,
    /// PEM file with the certificate of a private CA to trust besides the
    /// public ones, for an internal relay.
    pub ca_file: Option<PathBuf>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            transport: EmailTransport::Outbox,
            host: "localhost".into(),
            port: 587,
            security: EmailSecurity::Starttls,
            username: None,
            password: None,
            password_file: None,
            from: "Countersign <no-reply@localhost>".into(),
            timeout_ms: 30_000,
            ca_file: None,
        }
    }
}

/// Leaves the password out.
impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("transport", &self.transport)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("from", &self.from)
            .field("timeout_ms", &self.timeout_ms)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl EmailConfig {
    /// Checks what the chosen transport needs, without touching the network.
    pub fn validate(&self) -> Result<(), String> {
        if self.transport != EmailTransport::Smtp {
            return Ok(());
        }
        if self.host.trim().is_empty() {
            return Err("email.host must name the SMTP relay".into());
        }
        if self.port == 0 {
            return Err("email.port must not be 0".into());
        }
        if self.timeout_ms == 0 {
            return Err("email.timeout_ms must be at least 1".into());
        }
        self.from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("email.from is not a valid sender ({e}): {:?}", self.from))?;
        check_one_of("email.password", self.password.is_some(), self.password_file.is_some())?;
        let has_password = self.password.is_some() || self.password_file.is_some();
        match (&self.username, has_password) {
            (Some(_), false) => Err("email.username is set but email.password(_file) is not".into()),
            (None, true) => Err("email.password(_file) is set but email.username is not".into()),
            _ => Ok(()),
        }
    }

    /// The SMTP password, read from `password_file` if that is where it is.
    pub(super) fn password(&self) -> Result<Option<String>, String> {
        read_secret("email.password", &self.password, &self.password_file)
    }

    /// The email sender for `transport = "smtp"`; `None` for `outbox` and
    /// `off`, which the caller handles. Call it inside the Tokio runtime.
    pub fn build(&self) -> Result<Option<Arc<dyn Sender>>, String> {
        self.validate()?;
        match self.transport {
            EmailTransport::Outbox | EmailTransport::Off => Ok(None),
            EmailTransport::Smtp => Ok(Some(Arc::new(SmtpSender::new(self)?))),
        }
    }
}

/// How one-time codes go out by SMS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsTransport {
    /// Recorded in the database, where the development outbox lists them;
    /// nothing leaves the machine.
    #[default]
    Outbox,
    /// Sent through a Twilio-compatible Messages API.
    Twilio,
    /// No codes by SMS.
    Off,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// `outbox` (messages are recorded in the database and listed by the
    /// development outbox; nothing is sent), `twilio` (sent through a
    /// Twilio-compatible Messages API) or `off` (no codes by SMS).
    pub transport: SmsTransport,
    /// Base URL of the Messages API; messages are POSTed to
    /// `{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`. Must be
    /// https, except on localhost.
    pub base_url: String,
    /// Account SID: part of the URL and the user name of the API's basic
    /// authentication.
    pub account_sid: String,
    /// API auth token (the basic-authentication password). Prefer
    /// `auth_token_file`.
    pub auth_token: Option<String>,
    /// File holding the auth token (a trailing newline is ignored).
    pub auth_token_file: Option<PathBuf>,
    /// Sending number in E.164, or an alphanumeric sender ID where the
    /// destination country allows one. Set this or `messaging_service_sid`.
    pub from: Option<String>,
    /// Messaging service that picks the sender. Set this or `from`.
    pub messaging_service_sid: Option<String>,
    /// Time allowed for one API request, in milliseconds. A request that
    /// takes longer fails and is retried.
    pub timeout_ms: u64,
    /// Country calling codes that SMS may go to, without "+", e.g. `["46"]`
    /// for Swedish mobile numbers only. Empty: every country. A card whose
    /// number is outside the list gets its code by email only.
    pub allowed_country_codes: Vec<String>,
    /// How many trailing digits of the phone number the cardholder is shown
    /// when told where the code went.
    pub visible_phone_digits: usize,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            transport: SmsTransport::Outbox,
            base_url: "https://api.twilio.com".into(),
            account_sid: String::new(),
            auth_token: None,
            auth_token_file: None,
            from: None,
            messaging_service_sid: None,
            timeout_ms: 10_000,
            allowed_country_codes: Vec::new(),
            visible_phone_digits: 5,
        }
    }
}

/// Leaves the auth token out.
impl fmt::Debug for SmsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsConfig")
            .field("transport", &self.transport)
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "<redacted>"))
            .field("auth_token_file", &self.auth_token_file)
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("timeout_ms", &self.timeout_ms)
            .field("allowed_country_codes", &self.allowed_country_codes)
            .field("visible_phone_digits", &self.visible_phone_digits)
            .finish()
    }
}

impl SmsConfig {
    /// Whether SMS may go to this number: it must be E.164 ("+" and 7 to 15
    /// digits, the first not 0) and, when `allowed_country_codes` is not
    /// empty, start with one of them. Country codes are prefix-free, so a
    /// prefix match is exact.
    pub fn allows(&self, e164: &str) -> bool {
        let Some(digits) = e164.strip_prefix('+') else {
            return false;
        };
        let well_formed =
            (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        well_formed
            && (self.allowed_country_codes.is_empty()
                || self.allowed_country_codes.iter().any(|code| digits.starts_with(code.trim_start_matches('+'))))
    }

    /// A phone number as the cardholder is shown it: the last
    /// `visible_phone_digits` digits only.
    pub fn mask(&self, e164: &str) -> String {
        mask_phone(e164, self.visible_phone_digits)
    }

    /// Checks what the chosen transport needs, without touching the network.
    pub fn validate(&self) -> Result<(), String> {
        for code in &self.allowed_country_codes {
            let digits = code.trim_start_matches('+');
            if !(1..=3).contains(&digits.len())
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || digits.starts_with('0')
            {
                return Err(format!(
                    "sms.allowed_country_codes: {code:?} is not a country calling code (1 to 3 digits, e.g. \"46\")"
                ));
            }
        }
        if self.transport != SmsTransport::Twilio {
            return Ok(());
        }
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| format!("sms.base_url is not a URL ({e}): {:?}", self.base_url))?;
        let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        match url.scheme() {
            "https" => {}
            "http" if local => {}
            _ => {
                return Err("sms.base_url must be https (the auth token is sent with every request); \
                     http is accepted for localhost only"
                    .into());
            }
        }
        if self.account_sid.trim().is_empty() || !self.account_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("sms.account_sid must be set (letters and digits only)".into());
        }
        if self.timeout_ms == 0 {
            return Err("sms.timeout_ms must be at least 1".into());
        }
        check_one_of("sms.auth_token", self.auth_token.is_some(), self.auth_token_file.is_some())?;
        if self.auth_token.is_none() && self.auth_token_file.is_none() {
            return Err("sms.auth_token or sms.auth_token_file must be set".into());
        }
        match (&self.from, &self.messaging_service_sid) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err("set exactly one of sms.from and sms.messaging_service_sid".into()),
        }
    }

    /// The API auth token, read from `auth_token_file` if that is where it is.
    pub(super) fn auth_token(&self) -> Result<Option<String>, String> {
        read_secret("sms.auth_token", &self.auth_token, &self.auth_token_file)
    }

    /// The SMS sender for `transport = "twilio"`; `None` for `outbox` and
    /// `off`, which the caller handles.
    pub fn build(&self) -> Result<Option<Arc<dyn Sender>>, String> {
        self.validate()?;
        match self.transport {
            SmsTransport::Outbox | SmsTransport::Off => Ok(None),
            SmsTransport::Twilio => Ok(Some(Arc::new(SmsSender::new(self)?))),
        }
    }
}

fn check_one_of(key: &str, inline: bool, file: bool) -> Result<(), String> {
    if inline && file { Err(format!("{key} and {key}_file are both set: use one")) } else { Ok(()) }
}

/// A secret given inline or in a file (`{key}_file`). Errors name the key
/// and the file, never the secret.
fn read_secret(key: &str, inline: &Option<String>, file: &Option<PathBuf>) -> Result<Option<String>, String> {
    check_one_of(key, inline.is_some(), file.is_some())?;
    match (inline, file) {
        (Some(value), _) => Ok(Some(value.clone())),
        (None, Some(path)) => crate::config::read_secret_file(key, path).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twilio() -> SmsConfig {
        SmsConfig {
            transport: SmsTransport::Twilio,
            account_sid: "AC0123456789abcdef".into(),
            auth_token: Some("token".into()),
            from: Some("+46700000000".into()),
            ..SmsConfig::default()
        }
    }

    fn smtp() -> EmailConfig {
        EmailConfig {
            transport: EmailTransport::Smtp,
            host: "smtp.issuer.example".into(),
            from: "SafeKey <no-reply@issuer.example>".into(),
            ..EmailConfig::default()
        }
    }

    #[test]
    fn defaults_are_the_outbox_and_round_trip_through_toml() {
        let email = EmailConfig::default();
        let sms = SmsConfig::default();
        assert_eq!(email.transport, EmailTransport::Outbox);
        assert_eq!((email.port, email.security), (587, EmailSecurity::Starttls));
        assert_eq!(sms.transport, SmsTransport::Outbox);
        assert_eq!(sms.base_url, "https://api.twilio.com");
        assert_eq!(sms.visible_phone_digits, 5);
        assert!(email.build().unwrap().is_none());
        assert!(sms.build().unwrap().is_none());

        let text = toml::to_string_pretty(&email).unwrap();
        assert_eq!(toml::from_str::<EmailConfig>(&text).unwrap(), email);
        let text = toml::to_string_pretty(&sms).unwrap();
        assert_eq!(toml::from_str::<SmsConfig>(&text).unwrap(), sms);

        let partial: EmailConfig = toml::from_str("transport = \"smtp\"\nsecurity = \"tls\"\nport = 465").unwrap();
        assert_eq!(partial.security, EmailSecurity::Tls);
        assert_eq!(partial.timeout_ms, 30_000);
        let err = toml::from_str::<SmsConfig>("alowed_country_codes = [\"46\"]").unwrap_err().to_string();
        assert!(err.contains("alowed_country_codes"), "{err}");
        let err = toml::from_str::<EmailConfig>("security = \"ssl\"").unwrap_err().to_string();
        assert!(err.contains("ssl"), "{err}");
    }

    #[test]
    fn country_filter() {
        let mut sms = SmsConfig::default();
        assert!(sms.allows("+819012345678"));
        assert!(sms.allows("+46701234567"));
        assert!(!sms.allows("46701234567"), "no plus sign");
        assert!(!sms.allows("+46 70 123 45 67"), "not E.164");
        assert!(!sms.allows("+4670"), "too short");
        assert!(!sms.allows("+1234567890123456"), "too long");
        assert!(!sms.allows("+0701234567"));
        assert!(!sms.allows(""));

        sms.allowed_country_codes = vec!["46".into()];
        assert!(sms.allows("+46701234567"));
        assert!(!sms.allows("+819012345678"));
        assert!(!sms.allows("+4701234567"), "Norway is not Sweden");

        sms.allowed_country_codes = vec!["81".into(), "+1".into()];
        assert!(sms.allows("+819012345678"));
        assert!(sms.allows("+12025550123"));
        assert!(!sms.allows("+46701234567"));
        assert!(sms.validate().is_ok());

        sms.allowed_country_codes = vec!["0046".into()];
        assert!(sms.validate().unwrap_err().contains("0046"));
        sms.allowed_country_codes = vec!["Sweden".into()];
        assert!(sms.validate().is_err());
        assert_eq!(SmsConfig::default().mask("+46701234567"), "•••••34567");
    }

    #[test]
    fn sms_settings_are_checked() {
        assert!(twilio().validate().is_ok());
        let both = SmsConfig { messaging_service_sid: Some("MG1".into()), ..twilio() };
        assert!(both.validate().unwrap_err().contains("exactly one"));
        let neither = SmsConfig { from: None, ..twilio() };
        assert!(neither.validate().is_err());
        let no_token = SmsConfig { auth_token: None, ..twilio() };
        assert!(no_token.validate().unwrap_err().contains("sms.auth_token"));
        let two_tokens = SmsConfig { auth_token_file: Some("/x".into()), ..twilio() };
        assert!(two_tokens.validate().unwrap_err().contains("both set"));
        let clear_text = SmsConfig { base_url: "http://sms.example".into(), ..twilio() };
        assert!(clear_text.validate().unwrap_err().contains("https"));
        let local = SmsConfig { base_url: "http://127.0.0.1:9000".into(), ..twilio() };
        assert!(local.validate().is_ok());
        let no_sid = SmsConfig { account_sid: String::new(), ..twilio() };
        assert!(no_sid.validate().unwrap_err().contains("sms.account_sid"));
    }

    #[test]
    fn secrets_come_from_files_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret token\n").unwrap();
        let sms = SmsConfig { auth_token: None, auth_token_file: Some(file.clone()), ..twilio() };
        assert_eq!(sms.auth_token().unwrap().as_deref(), Some("s3cret token"));
        assert!(sms.build().unwrap().is_some());

        let missing = SmsConfig { auth_token_file: Some(dir.path().join("absent")), ..sms.clone() };
        let err = missing.build().err().unwrap();
        assert!(err.starts_with("sms.auth_token_file: cannot read"), "{err}");
        assert!(err.contains("absent"), "{err}");

        std::fs::write(&file, "\n").unwrap();
        assert!(sms.build().err().unwrap().contains("is empty"));

        let email =
            EmailConfig { username: Some("mailer".into()), password_file: Some(dir.path().join("nope")), ..smtp() };
        let err = email.password().unwrap_err();
        assert!(err.starts_with("email.password_file: cannot read"), "{err}");
    }

    #[test]
    fn email_settings_are_checked() {
        assert!(smtp().validate().is_ok());
        let bad_from = EmailConfig { from: "not an address".into(), ..smtp() };
        assert!(bad_from.validate().unwrap_err().contains("email.from"));
        let password_alone = EmailConfig { password: Some("pw".into()), ..smtp() };
        assert!(password_alone.validate().unwrap_err().contains("email.username"));
        let user_alone = EmailConfig { username: Some("u".into()), ..smtp() };
        assert!(user_alone.validate().is_err());
        let no_host = EmailConfig { host: " ".into(), ..smtp() };
        assert!(no_host.validate().unwrap_err().contains("email.host"));
        // The outbox needs none of it.
        let outbox = EmailConfig { transport: EmailTransport::Outbox, ..no_host };
        assert!(outbox.validate().is_ok());
    }

    #[test]
    fn debug_hides_secrets() {
        let email = EmailConfig { username: Some("mailer".into()), password: Some("hunter2".into()), ..smtp() };
        let sms = SmsConfig { auth_token: Some("tok3n-value".into()), ..twilio() };
        assert!(!format!("{email:?}").contains("hunter2"));
        assert!(!format!("{sms:?}").contains("tok3n-value"));
        assert!(format!("{email:?}").contains("mailer"));
    }

    #[test]
    fn building_smtp_outside_a_runtime_is_an_error_not_a_panic() {
        let err = smtp().build().err().unwrap();
        assert!(err.contains("Tokio"), "{err}");
    }
}
