//! TLS client setup. Verification is always on: a self-signed or corporate
//! server is trusted by naming what to trust (a CA file, or the server's own
//! certificate by pin), never by turning checks off.
//!
//! [`TrustVerifier`] wraps rustls' WebPKI verifier for two cases it refuses
//! and operators meet every day: appliances whose self-signed certificate
//! says `CA:TRUE` (webpki: `CaUsedAsEndEntity`), and certificates without the
//! right names. A certificate the operator named exactly (its SHA-256 in
//! `tls_pin_sha256`, or the certificate itself in `ca_file`) is accepted as
//! the server's identity; the handshake signature is still verified with
//! its key, so only the holder of that key can present it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::IngestError;

/// A SHA-256 digest of a certificate's DER bytes.
pub type Pin = [u8; 32];

/// Lowercase hex, the form `openssl x509 -noout -fingerprint -sha256` gives
/// (without its colons) and the form accepted in `tls_pin_sha256`.
pub fn hex(pin: &Pin) -> String {
    pin.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client config trusting `ca_file` only when given (a private CA should
/// not widen to the public web PKI), else the Mozilla roots; with `pins`,
/// trusting only a server certificate whose SHA-256 is one of them.
pub fn client_config(
    host: &str,
    ca_file: Option<&Path>,
    pins: &[Pin],
) -> Result<Arc<rustls::ClientConfig>, IngestError> {
    let tls_err = |detail: String| IngestError::Tls {
        host: host.to_string(),
        detail,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let mut exact = Vec::new();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_err(format!("cannot read CA file {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert
                    .map_err(|e| tls_err(format!("bad certificate in {}: {e}", path.display())))?;
                exact.push(Sha256::digest(cert.as_ref()).into());
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
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_err(e.to_string()))?;
    let verifier = TrustVerifier {
        webpki,
        pins: pins.to_vec(),
        exact,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// See the module doc. With pins, the pin is the only trust: a certificate
/// from a public CA that does not match is refused (that is what a pin is for).
#[derive(Debug)]
struct TrustVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pins: Vec<Pin>,
    /// SHA-256 of each certificate in `ca_file`.
    exact: Vec<Pin>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// Why a certificate was refused, in words (rustls would print its own
/// error with `Debug`).
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(reason: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused(
        reason,
    )))))
}

impl ServerCertVerifier for TrustVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest: Pin = Sha256::digest(end_entity.as_ref()).into();
        if !self.pins.is_empty() {
            if self.pins.contains(&digest) {
                return Ok(ServerCertVerified::assertion());
            }
            return Err(refused(format!(
                "the server's certificate (SHA-256 {}) does not match tls_pin_sha256; \
                 if the server's certificate was replaced on purpose, pin the new one",
                hex(&digest)
            )));
        }
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => Ok(v),
            Err(_) if self.exact.contains(&digest) => Ok(ServerCertVerified::assertion()),
            // webpki's error type is not re-exported by rustls; its name is stable.
            Err(e) if format!("{e:?}").contains("CaUsedAsEndEntity") => Err(refused(format!(
                "the server presents a CA certificate (CA:TRUE) as its own, as self-signed \
                     appliance certificates often do; to trust it, put exactly that certificate \
                     in ca_file, or set tls_pin_sha256 = \"{}\" after checking that fingerprint \
                     on the server",
                hex(&digest)
            ))),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A readable reason for a failed handshake: ours in words, rustls' as it
/// prints them.
fn handshake_detail(e: &std::io::Error) -> String {
    let refused = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|r| match r {
            rustls::Error::InvalidCertificate(CertificateError::Other(o)) => {
                o.0.downcast_ref::<Refused>().map(ToString::to_string)
            }
            _ => None,
        });
    match refused {
        Some(reason) => reason,
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the handshake".to_string()
        }
        None => e.to_string(),
    }
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
            detail: handshake_detail(&e),
        })
}

/// Parses one `tls_pin_sha256` value: 64 hex digits (colons allowed, as
/// `openssl x509 -fingerprint -sha256` prints them) or standard base64 of
/// the 32 bytes (as `openssl dgst -sha256 -binary | base64` prints them).
pub fn parse_pin(text: &str) -> Result<Pin, String> {
    use base64::Engine;
    let t = text.trim();
    let hexdigits: String = t.chars().filter(|c| *c != ':').collect();
    let bytes = if hexdigits.len() == 64 && hexdigits.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&hexdigits[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| e.to_string())?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|_| {
                "not a SHA-256 fingerprint: give 64 hex digits (colons allowed) or the base64 of the 32 bytes".to_string()
            })?
    };
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("a SHA-256 fingerprint is 32 bytes, this is {}", b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_read_as_hex_with_or_without_colons_or_as_base64() {
        let want: Pin = std::array::from_fn(|i| i as u8 * 7);
        let h = hex(&want);
        let colons = want
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(want);
        for form in [h.as_str(), colons.as_str(), b64.as_str()] {
            assert_eq!(parse_pin(form), Ok(want), "{form}");
        }
        assert!(parse_pin("abcd").unwrap_err().contains("32 bytes"));
        assert!(
            parse_pin("not a pin!")
                .unwrap_err()
                .contains("64 hex digits")
        );
    }
}
