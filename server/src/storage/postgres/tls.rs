//! TLS to PostgreSQL, as `sslmode` in `database.url` asks, with libpq's
//! names. The driver itself knows only `disable`, `prefer` and `require`,
//! so the mode is read (and taken out of the URL) here:
//!
//! - absent or `disable`: no TLS;
//! - `require` and `verify-ca`: TLS, the server's certificate chain
//!   verified, its name not checked (libpq's `require` verifies nothing
//!   without a root certificate; we never send credentials to a server we
//!   have not verified);
//! - `verify-full`: TLS, the chain verified and the certificate issued to
//!   the host named in the URL;
//! - `allow` and `prefer` are refused: both would fall back to a clear
//!   connection without saying so.
//!
//! The chain is verified against `database.ca_file` (PEM), or without one
//! against the Mozilla roots built in (`webpki-roots`). libpq's
//! `sslrootcert` is refused in the URL in favour of `database.ca_file`, so
//! there is one place for it.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::super::{StorageError, StorageResult};

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// `require` or `verify-ca`.
    VerifyCa,
    VerifyFull,
}

/// Takes `sslmode` out of `url`; returns the URL the driver reads and the
/// mode.
pub fn split_url(url: &str) -> StorageResult<(String, SslMode)> {
    let refuse = |why: String| Err(StorageError::Unavailable(format!("database.url: {why}")));
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), SslMode::Disable)) };
    let mut mode = SslMode::Disable;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = match value {
                    "disable" => SslMode::Disable,
                    "require" | "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    "allow" | "prefer" => {
                        return refuse(format!(
                            "sslmode={value} may connect without TLS; ask for require, verify-ca or verify-full, \
                             or disable"
                        ));
                    }
                    other => return refuse(format!("sslmode={other} is not a libpq sslmode")),
                }
            }
            "sslrootcert" => {
                return refuse("give the certificate authority as database.ca_file, not sslrootcert".into());
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, mode))
}

/// The connector for `mode`, trusting the certificates in `ca_file` or, by
/// default, the Mozilla roots. With `Disable` it is never used.
pub fn connector(mode: SslMode, ca_file: Option<&Path>) -> StorageResult<MakeRustlsConnect> {
    let unavailable = |why: String| StorageError::Unavailable(why);
    if mode == SslMode::Disable && ca_file.is_some() {
        return Err(unavailable(
            "database.ca_file is set but database.url does not ask for TLS (add sslmode=verify-full)".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| unavailable(format!("database TLS: {e}")))?;
    let roots = match (mode, ca_file) {
        (SslMode::Disable, _) => return Ok(MakeRustlsConnect::new(no_tls(builder))),
        (_, Some(path)) => roots_from(path)?,
        (_, None) => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| unavailable(format!("database TLS: {e}")))?;
    let config = match mode {
        SslMode::VerifyCa => builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(verifier))),
        SslMode::Disable | SslMode::VerifyFull => builder.with_webpki_verifier(verifier),
    };
    Ok(MakeRustlsConnect::new(config.with_no_client_auth()))
}

/// A configuration that trusts nobody, for the connector `sslmode=disable`
/// never uses.
fn no_tls(builder: rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>) -> ClientConfig {
    builder.with_root_certificates(RootCertStore::empty()).with_no_client_auth()
}

fn roots_from(path: &Path) -> StorageResult<RootCertStore> {
    let refuse = |why: String| StorageError::Unavailable(format!("database.ca_file {}: {why}", path.display()));
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| refuse(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(refuse("no certificate in it".into()));
    }
    Ok(roots)
}

/// `verify-ca`: the chain must lead to a trusted authority; the name on
/// the certificate is not checked. rustls checks the name only once the
/// chain verified, so a name error means the chain is good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_read_and_taken_out_of_the_url() {
        let split = |url: &str| split_url(url).unwrap();
        assert_eq!(split("postgres://u@h/db"), ("postgres://u@h/db".into(), SslMode::Disable));
        assert_eq!(split("postgres://u@h/db?sslmode=disable"), ("postgres://u@h/db".into(), SslMode::Disable));
        assert_eq!(split("postgres://u@h/db?sslmode=require"), ("postgres://u@h/db".into(), SslMode::VerifyCa));
        assert_eq!(
            split("postgres://u@h/db?connect_timeout=3&sslmode=verify-ca&application_name=x"),
            ("postgres://u@h/db?connect_timeout=3&application_name=x".into(), SslMode::VerifyCa)
        );
        assert_eq!(split("postgres://u@h/db?sslmode=verify-full"), ("postgres://u@h/db".into(), SslMode::VerifyFull));
    }

    #[test]
    fn modes_that_may_fall_back_to_clear_text_and_sslrootcert_are_refused() {
        let refused = |url: &str| match split_url(url) {
            Err(StorageError::Unavailable(why)) => why,
            other => panic!("{url}: {other:?}"),
        };
        assert!(refused("postgres://u@h/db?sslmode=prefer").contains("without TLS"));
        assert!(refused("postgres://u@h/db?sslmode=allow").contains("without TLS"));
        assert!(refused("postgres://u@h/db?sslmode=verify_full").contains("not a libpq sslmode"));
        assert!(refused("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem").contains("database.ca_file"));
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate_and_needs_tls() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let refused = |mode, path: &Path| match connector(mode, Some(path)) {
            Err(StorageError::Unavailable(why)) => why,
            Ok(_) => panic!("accepted {}", path.display()),
            Err(other) => panic!("{other:?}"),
        };
        assert!(refused(SslMode::VerifyFull, &empty).contains("no certificate"));
        assert!(refused(SslMode::VerifyFull, &dir.path().join("missing.pem")).contains("missing.pem"));
        assert!(refused(SslMode::Disable, &empty).contains("does not ask for TLS"));
        assert!(connector(SslMode::VerifyFull, None).is_ok(), "the built-in roots");
    }
}
