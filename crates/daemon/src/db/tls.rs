//! TLS to PostgreSQL, with libpq's meaning of `sslmode`, `sslrootcert`, `sslcert` and `sslkey`.
//!
//! Owns building the rustls client configuration from those keys: `disable`, `allow`/`prefer`
//! (TLS when the server offers it, unverified), `require` (TLS, unverified; verified against the
//! CA as `verify-ca` when a root certificate is given or `~/.postgresql/root.crt` exists, as libpq
//! does), `verify-ca` (the server's chain against the CA) and `verify-full` (chain and host name).
//! Client certificates come from `sslcert`/`sslkey` (PEM). It must not weaken a mode: a verify mode
//! without a root certificate is an error, never a silent downgrade.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conninfo::ConnInfo;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<SslMode, TlsError> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsError::BadMode(other.to_string())),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode `{0}` is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    BadMode(String),
    #[error(
        "sslmode={0} needs the certificate of the CA that signed the server's: set sslrootcert=/path/to/ca.pem \
         (or sslrootcert=system for the system's trusted roots)"
    )]
    NoRootCert(&'static str),
    #[error("{key} {path}: {message}")]
    File { key: &'static str, path: String, message: String },
    #[error("sslcert and sslkey go together: give both (PEM files) or neither")]
    HalfClientCert,
    #[error(
        "`{0}` is not supported by oppty-router: use an unencrypted key file (PEM), readable only by the service user"
    )]
    Unsupported(&'static str),
    #[error("TLS setup failed: {0}")]
    Rustls(String),
}

enum RootCert {
    File(PathBuf),
    System,
}

/// The TLS part of a connection string.
pub struct TlsSettings {
    pub mode: SslMode,
    root: Option<RootCert>,
    client: Option<(PathBuf, PathBuf)>,
}

fn home_file(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("HOME")?).join(".postgresql").join(name);
    p.exists().then_some(p)
}

impl TlsSettings {
    /// Take the TLS keys out of `info` (tokio-postgres gets the rest, with `sslmode` mapped to
    /// what it knows).
    pub fn take_from(info: &mut ConnInfo) -> Result<TlsSettings, TlsError> {
        let mode = info.take("sslmode").map(|m| SslMode::parse(&m)).transpose()?.unwrap_or(SslMode::Prefer);
        if info.take("sslpassword").is_some() {
            return Err(TlsError::Unsupported("sslpassword"));
        }
        for ignored in ["sslcompression", "sslsni", "ssl_min_protocol_version", "ssl_max_protocol_version"] {
            info.take(ignored);
        }
        for unsupported in ["sslcrl", "sslcrldir"] {
            if info.take(unsupported).is_some() {
                return Err(TlsError::Rustls(format!("`{unsupported}` is not supported; remove it")));
            }
        }
        let root = match info.take("sslrootcert") {
            Some(s) if s == "system" => Some(RootCert::System),
            Some(s) => Some(RootCert::File(PathBuf::from(s))),
            None => home_file("root.crt").map(RootCert::File),
        };
        let client = match (info.take("sslcert"), info.take("sslkey")) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => home_file("postgresql.crt").zip(home_file("postgresql.key")),
            _ => return Err(TlsError::HalfClientCert),
        };
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root.is_none() {
            let name = if mode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" };
            return Err(TlsError::NoRootCert(name));
        }
        Ok(TlsSettings { mode, root, client })
    }

    /// The mode tokio-postgres is given. TLS never runs over a Unix socket (the server does not
    /// offer it there; libpq skips it too), so a socket-only target connects without it.
    pub fn tokio_mode(&self, unix_only: bool) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as T;
        match self.mode {
            _ if unix_only => T::Disable,
            SslMode::Disable => T::Disable,
            SslMode::Allow | SslMode::Prefer => T::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => T::Require,
        }
    }

    /// The connector: reads the certificate files now, so a missing one is named at once.
    pub fn connector(&self) -> Result<MakeRustlsConnect, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let verifier: Arc<dyn ServerCertVerifier> = match (&self.root, self.mode) {
            (_, SslMode::Disable) | (None, _) | (Some(_), SslMode::Allow | SslMode::Prefer) => {
                Arc::new(Verifier::unverified(provider.clone()))
            }
            (Some(root), mode) => {
                let roots = load_roots(root)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?;
                // A server's self-signed certificate given as its own root (the PostgreSQL
                // manual's recipe, which marks it a CA) is trusted as it is, as libpq does.
                let pinned = match root {
                    RootCert::File(path) => read_certs("sslrootcert", path)?,
                    RootCert::System => Vec::new(),
                };
                let check_name = mode == SslMode::VerifyFull;
                Arc::new(Verifier { provider: provider.clone(), chain: Some(webpki), pinned, check_name })
            }
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let config = match &self.client {
            Some((cert, key)) => {
                let certs = read_certs("sslcert", cert)?;
                let key = read_key(key)?;
                builder.with_client_auth_cert(certs, key).map_err(|e| TlsError::File {
                    key: "sslkey",
                    path: cert.display().to_string(),
                    message: format!("does not go with sslcert: {e}"),
                })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

fn file_err(key: &'static str, path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File { key, path: path.display().to_string(), message: message.to_string() }
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(key, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(key, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(key, path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_err("sslkey", path, e))?;
    if String::from_utf8_lossy(&bytes).contains("ENCRYPTED") {
        return Err(TlsError::Unsupported("an encrypted sslkey"));
    }
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| file_err("sslkey", path, format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}")))
}

fn load_roots(root: &RootCert) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            for c in read_certs("sslrootcert", path)? {
                store.add(c).map_err(|e| file_err("sslrootcert", path, e))?;
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(TlsError::Rustls(
                    "sslrootcert=system: the system has no trusted root certificates (install ca-certificates)".into(),
                ));
            }
        }
    }
    Ok(store)
}

/// How the server's certificate is judged. Without a chain (`require` without a root certificate,
/// `allow`, `prefer`): encrypted, the handshake's signatures checked, the certificate itself not
/// (libpq's meaning). With one (`verify-ca`, `verify-full`): the chain must lead to a root
/// certificate; under `verify-full` the certificate must also be issued for the host (under
/// `verify-ca` the name is not compared). A certificate found, byte for byte, among the root
/// certificates (a self-signed server certificate given as its own `sslrootcert`) is trusted as it
/// is, as OpenSSL trusts it; under `verify-full` its names must still fit the host. The
/// handshake's signatures are checked the same way in every mode, by the provider.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    check_name: bool,
}

impl Verifier {
    fn unverified(provider: Arc<CryptoProvider>) -> Verifier {
        Verifier { provider, chain: None, pinned: Vec::new(), check_name: false }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        let chained = match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => return Ok(ServerCertVerified::assertion()),
            other => other,
        };
        if chained.is_ok() || !self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return chained;
        }
        if self.check_name {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<TlsSettings, TlsError> {
        let mut info = ConnInfo::parse(text).expect("parses");
        TlsSettings::take_from(&mut info)
    }

    #[test]
    fn a_verify_mode_without_a_root_certificate_is_an_error_not_a_downgrade() {
        std::env::set_var("HOME", "/nonexistent-home-for-test");
        let e = settings("host=db sslmode=verify-full").err().expect("refused");
        assert!(e.to_string().contains("sslrootcert=/path/to/ca.pem"), "{e}");
        assert!(matches!(settings("host=db sslmode=verify-every"), Err(TlsError::BadMode(_))));
        assert!(matches!(settings("host=db sslcert=/x.crt"), Err(TlsError::HalfClientCert)));
        let missing = settings("host=db sslmode=verify-ca sslrootcert=/no/such/ca.pem")
            .expect("keys are fine")
            .connector()
            .err()
            .expect("the file is missing");
        assert!(missing.to_string().starts_with("sslrootcert /no/such/ca.pem: No such file"), "{missing}");
    }

    #[test]
    fn unix_sockets_never_ask_for_tls() {
        let s = settings("host=/run/postgresql sslmode=require").expect("ok");
        assert_eq!(s.tokio_mode(true), tokio_postgres::config::SslMode::Disable);
        assert_eq!(s.tokio_mode(false), tokio_postgres::config::SslMode::Require);
    }
}
