//! Email delivery against a real SMTP server: aiosmtpd, started by each
//! test on a free port, storing what it receives in a Maildir that the
//! tests read back and decode.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::tests::sample;
use super::*;

/// aiosmtpd with authentication, which its command line cannot set up:
/// STARTTLS required, then AUTH with one user.
const AUTH_SERVER: &str = r#"
import ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult

port, maildir, cert, key, user, password = sys.argv[1:]

def authenticate(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == user.encode() and auth_data.password == password.encode()
    # handled=False: aiosmtpd itself answers 535 to a failure.
    return AuthResult(success=ok, handled=False)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
controller = Controller(
    Mailbox(maildir), hostname="127.0.0.1", port=int(port),
    tls_context=context, require_starttls=True,
    authenticator=authenticate, auth_required=True,
)
controller.start()
while True:
    time.sleep(3600)
"#;

/// The Python that has aiosmtpd: `$COUNTERSIGN_TEST_PYTHON`, else the
/// repository's `.tools/venv`. Missing is a failure, never a skip.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("COUNTERSIGN_TEST_PYTHON") {
        let python = PathBuf::from(python);
        assert!(
            python.exists(),
            "COUNTERSIGN_TEST_PYTHON={} does not exist: run scripts/ensure-python-tools.sh",
            python.display()
        );
        return python;
    }
    // From this crate's directory, or from this file when it is compiled
    // into another crate by path, up to the repository root.
    let starts = [PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from(file!())];
    let root = starts
        .iter()
        .filter(|p| p.is_absolute())
        .flat_map(|p| p.ancestors())
        .find(|dir| dir.join("scripts/ensure-python-tools.sh").is_file());
    let python = root.map(|root| root.join(".tools/venv/bin/python"));
    match python {
        Some(python) if python.exists() => python,
        _ => panic!(
            "the SMTP tests need aiosmtpd in <repo>/.tools/venv: run scripts/ensure-python-tools.sh \
             (or set COUNTERSIGN_TEST_PYTHON to a python that has aiosmtpd 1.4.6)"
        ),
    }
}

enum Mode {
    Plain,
    Starttls,
    ImplicitTls,
    StarttlsWithAuth { user: String, password: String },
}

/// A certificate authority of our own and a server certificate it signed
/// for `localhost` and 127.0.0.1.
struct Pki {
    ca_pem: PathBuf,
    cert_pem: PathBuf,
    key_pem: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Countersign test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let pki = Pki { ca_pem: dir.join("ca.pem"), cert_pem: dir.join("server.pem"), key_pem: dir.join("server.key") };
        std::fs::write(&pki.ca_pem, ca.pem()).unwrap();
        std::fs::write(&pki.cert_pem, server.pem()).unwrap();
        std::fs::write(&pki.key_pem, server_key.serialize_pem()).unwrap();
        pki
    }
}

/// aiosmtpd running until dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    pki: Pki,
}

impl SmtpServer {
    fn start(mode: Mode) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let maildir = dir.path().join("maildir");
        let port = free_port();
        let mut command = Command::new(python());
        let (cert, key) = (pki.cert_pem.to_str().unwrap(), pki.key_pem.to_str().unwrap());
        let listen = format!("127.0.0.1:{port}");
        match &mode {
            Mode::StarttlsWithAuth { user, password } => {
                command.args(["-c", AUTH_SERVER, &port.to_string()]);
                command.args([maildir.to_str().unwrap(), cert, key, user, password]);
            }
            _ => {
                command.args(["-m", "aiosmtpd", "-n", "-l", &listen]);
                match mode {
                    Mode::Starttls => command.args(["--tlscert", cert, "--tlskey", key]),
                    Mode::ImplicitTls => command.args(["--smtpscert", cert, "--smtpskey", key]),
                    _ => &mut command,
                };
                command.args(["-c", "aiosmtpd.handlers.Mailbox", maildir.to_str().unwrap()]);
            }
        }
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start aiosmtpd: {e}"));
        let mut server = SmtpServer { child, port, dir, pki };
        server.wait_until_listening();
        server
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("aiosmtpd exited ({status}); run scripts/ensure-python-tools.sh? {}", self.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("aiosmtpd did not listen within 20 s: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn config(&self, security: EmailSecurity) -> EmailConfig {
        EmailConfig {
            transport: EmailTransport::Smtp,
            host: "localhost".into(),
            port: self.port,
            security,
            from: "Countersign Demo Bank <no-reply@bank.example>".into(),
            timeout_ms: 10_000,
            ..EmailConfig::default()
        }
    }

    /// Every message received so far, decoded.
    fn received(&self) -> Vec<Received> {
        let new = self.dir.path().join("maildir/new");
        let Ok(entries) = std::fs::read_dir(&new) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries {
            let mut raw = Vec::new();
            std::fs::File::open(entry.unwrap().path()).unwrap().read_to_end(&mut raw).unwrap();
            out.push(Received::parse(&raw));
        }
        out
    }

    /// The message received for `address`, waiting briefly for the file.
    fn received_for(&self, address: &str) -> Received {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(found) = self.received().into_iter().find(|m| m.envelope_to.contains(address)) {
                return found;
            }
            assert!(Instant::now() < deadline, "no mail for {address}: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A received email, decoded with a MIME parser.
struct Received {
    raw: String,
    /// RCPT TO, as aiosmtpd records it (`X-RcptTo`).
    envelope_to: String,
    subject: String,
    from: (Option<String>, String),
    to: String,
    content_type: String,
    text: String,
    html: String,
}

impl Received {
    fn parse(raw: &[u8]) -> Received {
        let message = MessageParser::default().parse(raw).expect("a MIME message");
        let part_text = |index: Option<&u32>, html: bool| {
            let part = &message.parts[*index.expect("the part exists") as usize];
            match (&part.body, html) {
                // Line ends travel as CRLF.
                (PartType::Text(text), false) | (PartType::Html(text), true) => text.replace("\r\n", "\n"),
                (other, _) => panic!("unexpected part {other:?}"),
            }
        };
        let from = message.from().and_then(|a| a.first()).expect("From");
        let content_type = message
            .content_type()
            .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default()))
            .unwrap_or_default();
        Received {
            raw: String::from_utf8_lossy(raw).into_owned(),
            envelope_to: message.header_raw("X-RcptTo").unwrap_or_default().trim().to_owned(),
            subject: message.subject().unwrap_or_default().to_owned(),
            from: (from.name().map(str::to_owned), from.address().unwrap_or_default().to_owned()),
            to: message.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_owned(),
            content_type,
            text: part_text(message.text_body.first(), false),
            html: part_text(message.html_body.first(), true),
        }
    }
}

fn email_to(address: &str, language: Language) -> CodeMessage {
    CodeMessage { to: address.into(), ..sample(Channel::Email, language) }
}

async fn sender(config: &EmailConfig) -> Arc<dyn Sender> {
    config.build().unwrap().expect("an SMTP sender")
}

#[tokio::test]
async fn mail_arrives_decoded_in_every_language() {
    let server = SmtpServer::start(Mode::Plain);
    let smtp = sender(&server.config(EmailSecurity::Plain)).await;
    assert_eq!((smtp.channel(), smtp.provider()), (Channel::Email, "smtp"));

    let mut sent = Vec::new();
    for (address, language) in
        [("taro@example.jp", Language::Ja), ("jane@example.com", Language::En), ("anna@example.se", Language::Sv)]
    {
        let mut msg = email_to(address, language);
        msg.merchant_name = "Café Ström & 東京ストア".into();
        smtp.send(&msg).await.unwrap();
        sent.push(msg);
    }

    for msg in &sent {
        let mail = server.received_for(&msg.to);
        let expected = render_email(msg);
        assert_eq!(mail.subject, expected.subject, "the subject decodes to UTF-8");
        assert!(!mail.subject.contains(&msg.code));
        assert_eq!(mail.content_type, "multipart/alternative");
        assert_eq!(mail.from, (Some("Countersign Demo Bank".to_owned()), "no-reply@bank.example".to_owned()));
        assert_eq!(mail.to, msg.to);
        assert!(mail.raw.contains("Auto-Submitted: auto-generated"));
        let amount = format_amount(msg.amount_minor, msg.exponent, &msg.currency_alpha, msg.language);
        for body in [&mail.text, &mail.html] {
            for needle in [msg.code.as_str(), &amount, "15:42", "UTC+9"] {
                assert!(body.contains(needle), "{:?} lacks {needle}: {body}", msg.language);
            }
        }
        assert!(mail.text.contains("Café Ström & 東京ストア"));
        assert!(mail.html.contains("Café Ström &amp; 東京ストア"));
        assert_eq!(mail.text.trim_end(), expected.text.trim_end());
        // Only the decoded parts show the code: the wire form is encoded.
        assert!(mail.raw.is_ascii(), "headers and bodies are 7-bit encoded");
    }
    let ja = server.received_for("taro@example.jp");
    assert!(ja.subject.contains("認証コードのお知らせ"), "{}", ja.subject);
    assert!(ja.text.contains("5,400円"));
    assert!(ja.text.contains("2025年3月14日 15:42（UTC+9）まで"));
    let sv = server.received_for("anna@example.se");
    assert!(sv.text.contains("Engångskod: 482913"));
}

#[tokio::test]
async fn starttls_with_a_private_ca() {
    let server = SmtpServer::start(Mode::Starttls);
    let config = EmailConfig { ca_file: Some(server.pki.ca_pem.clone()), ..server.config(EmailSecurity::Starttls) };
    // aiosmtpd refuses MAIL before STARTTLS, so arrival proves the upgrade.
    sender(&config).await.send(&email_to("tls@example.jp", Language::Ja)).await.unwrap();
    assert!(server.received_for("tls@example.jp").subject.contains("認証コード"));
}

#[tokio::test]
async fn starttls_refuses_an_untrusted_certificate() {
    let server = SmtpServer::start(Mode::Starttls);
    let msg = email_to("untrusted@example.jp", Language::En);
    let err = sender(&server.config(EmailSecurity::Starttls)).await.send(&msg).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Transient(_)), "{err}");
    let shown = err.to_string();
    assert!(shown.contains("certificate"), "{shown}");
    assert!(!shown.contains("untrusted@") && !shown.contains(&msg.code), "{shown}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn implicit_tls_with_a_private_ca() {
    let server = SmtpServer::start(Mode::ImplicitTls);
    let config = EmailConfig { ca_file: Some(server.pki.ca_pem.clone()), ..server.config(EmailSecurity::Tls) };
    sender(&config).await.send(&email_to("smtps@example.se", Language::Sv)).await.unwrap();
    assert!(server.received_for("smtps@example.se").text.contains("482913"));
}

#[tokio::test]
async fn authentication_with_a_password_file() {
    let server = SmtpServer::start(Mode::StarttlsWithAuth { user: "mailer".into(), password: "correct horse".into() });
    let password_file = server.dir.path().join("smtp-password");
    std::fs::write(&password_file, "correct horse\n").unwrap();
    let config = EmailConfig {
        username: Some("mailer".into()),
        password_file: Some(password_file),
        ca_file: Some(server.pki.ca_pem.clone()),
        ..server.config(EmailSecurity::Starttls)
    };
    sender(&config).await.send(&email_to("auth@example.com", Language::En)).await.unwrap();
    assert!(server.received_for("auth@example.com").text.contains("482913"));

    let wrong = EmailConfig { password_file: None, password: Some("wrong".into()), ..config };
    let msg = email_to("auth2@example.com", Language::En);
    let err = sender(&wrong).await.send(&msg).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Permanent(_)), "{err}");
    assert!(err.to_string().contains("535"), "{err}");
    assert!(!err.to_string().contains("auth2@"), "{err}");
}

#[tokio::test]
async fn an_unreachable_relay_is_transient_and_names_no_one() {
    // Bound but never listening: refuses connections, and no other test
    // can take the port while it is held.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let config = EmailConfig {
        transport: EmailTransport::Smtp,
        host: "127.0.0.1".into(),
        port: closed.local_addr().unwrap().port(),
        security: EmailSecurity::Plain,
        timeout_ms: 2_000,
        ..EmailConfig::default()
    };
    let msg = email_to("nobody@example.jp", Language::Ja);
    let err = sender(&config).await.send(&msg).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Transient(_)), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("nobody") && !shown.contains(&msg.code), "{shown}");
}

#[tokio::test]
async fn a_relay_that_stops_answering_times_out() {
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let config = EmailConfig {
        transport: EmailTransport::Smtp,
        host: "127.0.0.1".into(),
        port,
        security: EmailSecurity::Plain,
        timeout_ms: 300,
        ..EmailConfig::default()
    };
    let started = Instant::now();
    let err = sender(&config).await.send(&email_to("silent@example.jp", Language::En)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, DeliveryError::Transient(_)), "{err}");
    assert!(err.to_string().contains("300 ms"), "{err}");
    held.abort();
}

#[tokio::test]
async fn bad_inputs_fail_cleanly() {
    let config = EmailConfig {
        transport: EmailTransport::Smtp,
        security: EmailSecurity::Plain,
        port: free_port(),
        ..EmailConfig::default()
    };
    let smtp = sender(&config).await;
    let err = smtp.send(&email_to("not an address 482913", Language::En)).await.unwrap_err();
    assert!(err.is_permanent());
    assert!(!err.to_string().contains("482913"), "{err}");
    let err = smtp.send(&sample(Channel::Sms, Language::En)).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let with_bad_ca = EmailConfig { security: EmailSecurity::Starttls, ca_file: Some(not_pem), ..config.clone() };
    assert!(with_bad_ca.build().err().unwrap().starts_with("email.ca_file"));
    let with_missing_ca = EmailConfig { ca_file: Some(dir.path().join("absent.pem")), ..with_bad_ca };
    let err = with_missing_ca.build().err().unwrap();
    assert!(err.starts_with("email.ca_file: cannot read"), "{err}");
}
