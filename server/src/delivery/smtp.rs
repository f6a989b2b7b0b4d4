//! Codes by email, through an SMTP relay.

use std::time::Duration;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{EmailConfig, EmailSecurity};
use super::{Channel, CodeMessage, DeliveryError, Sender, describe, render_email, scrub};

/// Sends multipart (plain text and HTML) UTF-8 emails through the relay of
/// an [`EmailConfig`], over a small pool of connections.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Bounds a whole send: lettre's own timeout covers connecting, not a
    /// relay that stops answering halfway.
    timeout: Duration,
}

impl SmtpSender {
    /// Must run inside the Tokio runtime: the connection pool starts a task.
    pub fn new(config: &EmailConfig) -> Result<SmtpSender, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("email: the SMTP sender must be built inside the Tokio runtime".into());
        }
        let from = config
            .from
            .parse::<Mailbox>()
            .map_err(|e| format!("email.from is not a valid sender ({e}): {:?}", config.from))?;
        let tls = match config.security {
            EmailSecurity::Starttls => Tls::Required(tls_parameters(config)?),
            EmailSecurity::Tls => Tls::Wrapper(tls_parameters(config)?),
            EmailSecurity::Plain => Tls::None,
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.trim())
            .port(config.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(username) = &config.username {
            let password = config.password()?.ok_or("email.username is set but email.password(_file) is not")?;
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        Ok(SmtpSender { transport: builder.build(), from, timeout })
    }

    fn message(&self, msg: &CodeMessage) -> Result<Message, DeliveryError> {
        let to = msg
            .to
            .trim()
            .parse::<Mailbox>()
            .map_err(|_| DeliveryError::Permanent("the recipient's email address is not valid".into()))?;
        let content = render_email(msg);
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(content.subject)
            .header(AutoSubmitted)
            .multipart(MultiPart::alternative_plain_html(content.text, content.html))
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the email: {}", scrub(&e.to_string(), msg))))
    }
}

#[async_trait::async_trait]
impl Sender for SmtpSender {
    async fn send(&self, msg: &CodeMessage) -> Result<(), DeliveryError> {
        if msg.channel != Channel::Email {
            return Err(DeliveryError::Permanent("an SMS message was handed to the email sender".into()));
        }
        let email = self.message(msg)?;
        match tokio::time::timeout(self.timeout, self.transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e, msg)),
            Err(_) => Err(DeliveryError::Transient(format!(
                "the SMTP relay did not finish within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    fn provider(&self) -> &'static str {
        "smtp"
    }
}

fn tls_parameters(config: &EmailConfig) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(config.host.trim().to_owned());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("email.ca_file: cannot read {}: {e}", path.display()))?;
        // An empty or non-PEM file would otherwise add nothing, silently.
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(format!("email.ca_file: {} holds no PEM certificate", path.display()));
        }
        let cert = Certificate::from_pem(&pem).map_err(|e| format!("email.ca_file: {}: {e}", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| format!("email: cannot set up TLS: {e}"))
}

/// SMTP replies 5xx (refused recipient, failed authentication) are
/// permanent; 4xx replies, timeouts, TLS and network failures may pass.
fn classify(e: &lettre::transport::smtp::Error, msg: &CodeMessage) -> DeliveryError {
    let detail = scrub(&describe(e), msg);
    if e.is_permanent() {
        DeliveryError::Permanent(format!("the SMTP relay refused the message: {detail}"))
    } else if e.is_transient() {
        DeliveryError::Transient(format!("the SMTP relay deferred the message: {detail}"))
    } else if e.is_timeout() {
        DeliveryError::Transient(format!("the SMTP relay did not answer in time: {detail}"))
    } else if e.is_tls() {
        DeliveryError::Transient(format!("TLS with the SMTP relay failed: {detail}"))
    } else {
        DeliveryError::Transient(format!("cannot talk to the SMTP relay: {detail}"))
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): out-of-office replies and
/// other robots leave the message alone.
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}
