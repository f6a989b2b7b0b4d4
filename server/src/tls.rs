//! TLS for the API listener (optional): rustls with the ring provider, a
//! certificate chain and key read from PEM files at start-up, and read
//! again on SIGHUP so a renewed certificate is taken without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// `[server.tls]`: serve HTTPS instead of HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls.cert_file {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("server.tls.key_file {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("server.tls: the key does not fit the certificate or is not usable: {0}")]
    Mismatch(String),
}

impl TlsConfig {
    /// Reads both files and builds the rustls configuration (HTTP/2 and
    /// HTTP/1.1 offered by ALPN, TLS 1.2 and 1.3).
    pub fn load(&self) -> Result<rustls::ServerConfig, TlsError> {
        let chain = read_chain(&self.cert_file)?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| TlsError::Key { path: self.key_file.display().to_string(), reason: e.to_string() })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Mismatch(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Mismatch(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::Certificate { path: path.display().to_string(), reason };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if chain.is_empty() {
        return Err(error("holds no CERTIFICATE block".into()));
    }
    Ok(chain)
}

/// Loads the configuration for serving; a failure stops the start-up.
pub fn rustls_config(tls: &TlsConfig) -> Result<RustlsConfig, TlsError> {
    Ok(RustlsConfig::from_config(Arc::new(tls.load()?)))
}

/// Reads the files again on every SIGHUP. A bad file is logged and the
/// certificate in use stays, so a botched renewal never takes the API down.
pub fn reload_on_hangup(tls: TlsConfig, serving: RustlsConfig) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot watch SIGHUP: the TLS certificate is reloaded only by a restart");
            return;
        };
        while hangups.recv().await.is_some() {
            match tls.load() {
                Ok(config) => {
                    serving.reload_from_config(Arc::new(config));
                    tracing::info!("TLS certificate reloaded");
                }
                Err(e) => tracing::error!(error = %e, "TLS certificate not reloaded; the previous one stays in use"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (tls, serving);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> TlsConfig {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let tls = TlsConfig { cert_file: dir.join("cert.pem"), key_file: dir.join("key.pem") };
        std::fs::write(&tls.cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&tls.key_file, cert.signing_key.serialize_pem()).unwrap();
        tls
    }

    #[test]
    fn a_certificate_and_its_key_load() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_pair(dir.path()).load().unwrap();
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn each_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let tls = write_pair(dir.path());

        let missing = TlsConfig { cert_file: dir.path().join("nope.pem"), ..tls.clone() };
        assert!(matches!(missing.load(), Err(TlsError::Certificate { path, .. }) if path.ends_with("nope.pem")));

        std::fs::write(dir.path().join("empty.pem"), "not pem\n").unwrap();
        let empty = TlsConfig { cert_file: dir.path().join("empty.pem"), ..tls.clone() };
        assert!(matches!(empty.load(), Err(TlsError::Certificate { .. })));

        let no_key = TlsConfig { key_file: tls.cert_file.clone(), ..tls.clone() };
        assert!(matches!(no_key.load(), Err(TlsError::Key { .. })));

        let other = tempfile::tempdir().unwrap();
        let mismatched = TlsConfig { key_file: write_pair(other.path()).key_file, ..tls };
        let err = mismatched.load().unwrap_err();
        assert!(matches!(err, TlsError::Mismatch(_)), "{err}");
    }
}
