//! `mqtts://`: a rustls client (ring) that trusts only the CA file the URL names.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::SinkError;

/// A TLS client configuration trusting the PEM certificates in `ca`.
///
/// # Errors
/// [`SinkError::Invalid`] naming the file when it is unreadable, holds no certificate, or a
/// certificate is malformed.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, SinkError> {
    let bad = |why: String| SinkError::Invalid(format!("mqtts CA file {}: {why}", ca.display()));
    let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not PEM certificates ({e})")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate is unusable ({e})")))?;
    }
    if roots.is_empty() {
        return Err(bad(
            "no `-----BEGIN CERTIFICATE-----` in it; give the CA that signed the broker's certificate".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
