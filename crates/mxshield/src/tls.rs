//! TLS for STARTTLS: loading the configured certificate and key, and generating a
//! self-signed pair for development.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::config::TlsFiles;

/// Builds the acceptor from PEM files.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read certificate {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad certificate PEM in {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read private key {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Writes a self-signed certificate for `hostname` and its key as PEM files.
pub fn write_self_signed(hostname: &str, cert: &Path, key: &Path) -> anyhow::Result<()> {
    let pair = rcgen::generate_simple_self_signed(vec![hostname.to_string()]).context("generating certificate")?;
    std::fs::write(cert, pair.cert.pem()).with_context(|| format!("writing {}", cert.display()))?;
    std::fs::write(key, pair.signing_key.serialize_pem()).with_context(|| format!("writing {}", key.display()))?;
    Ok(())
}
