//! TLS for the gRPC listener (rustls, ALPN `h2`), as a Sensor with `secure: true` and a
//! `certSecret` expects. The certificate and key are read from files and reloaded when the
//! files change (a renewed cert-manager Secret), without a restart: each handshake looks at the
//! files' modification times, which costs one `stat` each.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

use crate::config::{ConfigError, TlsConfig};

/// A client that opens a connection and says nothing must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate in use, and the files' modification times it was read at.
struct Loaded {
    stamp: (Option<SystemTime>, Option<SystemTime>),
    key: Arc<CertifiedKey>,
}

/// Serves the certificate of two PEM files, reloading them when they change.
pub(super) struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    loaded: RwLock<Loaded>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReloadingCert({})", self.cert.display())
    }
}

fn stamp(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, ConfigError> {
    let fail =
        |what: &Path, e: &dyn fmt::Display| ConfigError(format!("TLS {}: {e}", what.display()));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(cert, &e))?;
    if chain.is_empty() {
        return Err(fail(cert, &"no certificate in the file"));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| fail(key, &e))?;
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| fail(key, &e))?;
    Ok(CertifiedKey::new(chain, signer))
}

impl ReloadingCert {
    /// Reads the files once (a bad certificate stops start-up with a clear error).
    pub(super) fn new(
        tls: &TlsConfig,
        provider: Arc<CryptoProvider>,
    ) -> Result<ReloadingCert, ConfigError> {
        let key = load(&tls.cert_file, &tls.key_file, &provider)?;
        Ok(ReloadingCert {
            loaded: RwLock::new(Loaded {
                stamp: stamp(&tls.cert_file, &tls.key_file),
                key: Arc::new(key),
            }),
            cert: tls.cert_file.clone(),
            key: tls.key_file.clone(),
            provider,
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let now = stamp(&self.cert, &self.key);
        let current = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        if current.stamp == now {
            return Some(current.key.clone());
        }
        drop(current);
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        match load(&self.cert, &self.key, &self.provider) {
            Ok(key) => {
                info!(cert = %self.cert.display(), "TLS certificate reloaded");
                *loaded = Loaded {
                    stamp: now,
                    key: Arc::new(key),
                };
            }
            // Half-written files during a renewal: keep serving the old certificate.
            Err(e) => {
                warn!(error = %e, "TLS certificate changed but cannot be loaded; keeping the old one")
            }
        }
        Some(loaded.key.clone())
    }
}

/// A TLS acceptor for `tls`, offering HTTP/2 only (gRPC).
pub(super) fn acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, ConfigError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = ReloadingCert::new(tls, provider.clone())?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepted TLS connections of `listener`; handshakes run concurrently, and a failed one only
/// drops that connection.
pub(super) fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<std::io::Result<TlsStream<tokio::net::TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let Ok((tcp, peer)) = accepted else { continue };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
