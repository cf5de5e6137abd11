//! TLS client setup. Verification is always on: a self-signed test or
//! corporate server is trusted by giving its CA file, never by turning checks off.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::IngestError;

/// A client config trusting `ca_file` only when given (a private CA should not
/// widen to the public web PKI), else the Mozilla roots.
pub fn client_config(
    host: &str,
    ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, IngestError> {
    let tls_err = |detail: String| IngestError::Tls {
        host: host.to_string(),
        detail,
    };
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(format!("cannot read CA file {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert
                    .map_err(|e| tls_err(format!("bad certificate in {}: {e}", path.display())))?;
                roots.add(cert).map_err(|e| {
                    tls_err(format!(
                        "unusable CA certificate in {}: {e}",
                        path.display()
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(tls_err(format!(
                    "no certificates in CA file {}",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

pub async fn handshake(
    tcp: TcpStream,
    host: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, IngestError> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| IngestError::Tls {
        host: host.to_string(),
        detail: format!("not a valid server name: {e}"),
    })?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| IngestError::Tls {
            host: host.to_string(),
            detail: e.to_string(),
        })
}
