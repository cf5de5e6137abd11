//! HTTPS served directly (`[http] tls_cert_file`, `tls_key_file`), so
//! vendors can reach webhook intake without a reverse proxy.
//!
//! rustls with the ring provider. The certificate and key are read at
//! start (a bad pair stops `serve`) and looked at again on every handshake:
//! when either file's modification time or size changed, the pair is
//! reloaded, so a renewed certificate (certbot, an ACME client) takes
//! effect for the next connection without a restart. A new pair that does
//! not load (half written, key not matching) is logged and the previous
//! one keeps serving; it is tried again when the files change again.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::config::TlsFiles;

/// Why a certificate/key pair cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate chain {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("cannot read the private key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("{0} holds no certificate")]
    NoCert(PathBuf),
    #[error("the private key does not belong to the certificate ({0})")]
    Mismatch(String),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The files' identity as last seen: a change means "reload".
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.modified().ok(), m.len()))
            .unwrap_or((None, 0))
    };
    [one(&files.cert), one(&files.key)]
}

fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert {
            path: files.cert.clone(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(files.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        message: e.to_string(),
    })?;
    let signing = provider.key_provider.load_private_key(key)?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    Ok(Arc::new(ck))
}

/// Serves the current pair, reloading it when the files change.
#[derive(Debug)]
pub struct Reloading {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    /// The pair being served, and the stamp of the files last tried.
    state: Mutex<(Arc<CertifiedKey>, Stamp)>,
}

impl Reloading {
    pub fn new(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Reloading, TlsError> {
        let seen = stamp(&files);
        let key = load(&files, &provider)?;
        Ok(Reloading {
            files,
            provider,
            state: Mutex::new((key, seen)),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let now = stamp(&self.files);
        // A poisoned lock only means a panic elsewhere while swapping an Arc.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.1 != now {
            state.1 = now;
            match load(&self.files, &self.provider) {
                Ok(k) => {
                    info!(cert = %self.files.cert.display(), "TLS certificate changed; serving the new one");
                    state.0 = k;
                }
                Err(e) => {
                    error!(error = %e, cert = %self.files.cert.display(), "TLS certificate changed but does not load; still serving the previous one")
                }
            }
        }
        state.0.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener whose connections come out TLS-terminated. Handshakes
/// run in their own tasks, so a slow client never holds up the next one.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(
        listener: TcpListener,
        files: &TlsFiles,
        shutdown: CancellationToken,
    ) -> Result<TlsListener, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = Reloading::new(files.clone(), provider.clone())?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // No session resumption: a resumed session skips the certificate,
        // and every new connection must see the current one after a renewal.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let local = listener
            .local_addr()
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, acceptor, tx, shutdown));
        Ok(TlsListener { rx, local })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => debug!(peer = %peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(peer = %peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended (shutdown): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
