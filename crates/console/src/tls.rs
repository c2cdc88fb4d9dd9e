//! The console over TLS (`console.tls_cert`, `console.tls_key`: PEM files): the certificate chain
//! and key read and checked at start, and a listener whose connections have finished their
//! handshake. Handshakes run on tasks of their own, each bounded in time, so one slow or hostile
//! client never stalls the others. It must not serve anything itself (`server` does).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client has to finish its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The acceptor for this certificate chain and key, or what is wrong with them, by config key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).map_err(|e| {
            format!("console.tls_cert: {}: {e} (a PEM certificate chain, the server's first)", cert.display())
        })?;
    if chain.is_empty() {
        return Err(format!("console.tls_cert: {}: holds no PEM certificate", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("console.tls_key: {}: {e} (the PEM private key of the certificate)", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("console.tls_key: {}: does not go with console.tls_cert: {e}", key.display()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Connections that have finished their TLS handshake.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Accept on `tcp` until `shutdown`, handshaking each connection on a task of its own.
pub fn listen(tcp: TcpListener, acceptor: TlsAcceptor, shutdown: CancellationToken) -> std::io::Result<TlsListener> {
    let local = tcp.local_addr()?;
    let (tx, ready) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = tcp.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "console: cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => drop(tx.send((tls, peer)).await),
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "console: TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "console: TLS handshake timed out"),
                }
            });
        }
    });
    Ok(TlsListener { ready, local })
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task ended (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
