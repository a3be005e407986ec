//! TLS for the control and scoring ports (rustls). The certificate and key are read from
//! PEM files at start and again on [`TlsReloader::reload`] (the binary calls it on SIGHUP):
//! connections accepted after a reload get the new certificate, the listening sockets and
//! open connections stay as they are. A reload that fails keeps the previous certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const READY_BOUND: usize = 64;

/// The certificate and key a TLS port serves, and where they are read from.
#[derive(Clone)]
pub struct TlsReloader {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl std::fmt::Debug for TlsReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReloader")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl TlsReloader {
    /// Reads the certificate chain and key (PEM); refuses files that do not make a usable
    /// server configuration, naming the file and why.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsReloader> {
        let config = server_config(cert, key)?;
        Ok(TlsReloader {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: Arc::new(RwLock::new(Arc::new(config))),
        })
    }

    /// Reads the files again; new connections get what they now hold. On an error the
    /// previous certificate stays in use.
    pub fn reload(&self) -> Result<()> {
        let config = Arc::new(server_config(&self.cert, &self.key)?);
        if let Ok(mut current) = self.current.write() {
            *current = config;
        }
        Ok(())
    }

    fn acceptor(&self) -> Option<TlsAcceptor> {
        self.current
            .read()
            .ok()
            .map(|c| TlsAcceptor::from(c.clone()))
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig> {
    let bad =
        |path: &Path, why: String| Error::config("tlsCert", format!("{}: {why}", path.display()));
    let cert_pem = std::fs::read(cert).map_err(|e| bad(cert, e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad(cert, "holds no certificate".into()));
    }
    let key_pem = std::fs::read(key)
        .map_err(|e| Error::config("tlsKey", format!("{}: {e}", key.display())))?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        Error::config(
            "tlsKey",
            format!("{}: not a PEM private key: {e}", key.display()),
        )
    })?;
    // ring, as the client side (ureq) uses: it builds without cmake or a C++ toolchain.
    // rustls marks it deprecated only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("tlsCert", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            Error::config(
                "tlsKey",
                format!("{} does not go with {}: {e}", key.display(), cert.display()),
            )
        })?;
    // HTTP/2 first (gRPC needs it; the ports speak both), then HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A TCP listener that hands the server TLS connections. Handshakes run on their own
/// tasks, so a slow or silent client holds up no one.
pub struct TlsListener {
    tcp: TcpListener,
    tls: TlsReloader,
    ready_tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    ready_rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, tls: TlsReloader) -> TlsListener {
        let (ready_tx, ready_rx) = mpsc::channel(READY_BOUND);
        TlsListener {
            tcp,
            tls,
            ready_tx,
            ready_rx,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                Some(ready) = self.ready_rx.recv() => return ready,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let Some(acceptor) = self.tls.acceptor() else { continue };
                        let tx = self.ready_tx.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => {
                                    let _ = tx.send((tls, addr)).await;
                                }
                                Ok(Err(e)) => tracing::debug!("TLS handshake with {addr} failed: {e}"),
                                Err(_) => tracing::debug!("TLS handshake with {addr} timed out"),
                            }
                        });
                    }
                    // Out of fds and the like: wait a little instead of spinning.
                    Err(e) => {
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
