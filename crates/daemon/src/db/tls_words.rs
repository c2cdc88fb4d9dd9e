//! A TLS failure said in words an ops engineer acts on: which certificate, which file, what to
//! change ("the server's certificate is not signed by the CA in /etc/oppty-router/db-ca.pem").
//!
//! It only words an error rustls raised; it decides nothing about it (`db::kind_of` does).

use rustls::{AlertDescription, CertificateError};

/// The value of `key` in a connection string as `db::redacted` shows it (`key=value` pairs).
fn setting<'t>(target: &'t str, key: &str) -> Option<&'t str> {
    let at = target.find(&format!("{key}="))?;
    let rest = &target[at + key.len() + 1..];
    let value = rest.split_whitespace().next()?;
    Some(value.trim_matches('\''))
}

/// The failure in words, or `None` when rustls said nothing a person can act on better.
pub fn in_words(e: &rustls::Error, target: Option<&str>) -> Option<String> {
    let root = target.and_then(|t| setting(t, "sslrootcert"));
    let host = target.and_then(|t| setting(t, "host"));
    let ca = root.map_or_else(
        || "any CA the daemon trusts (no sslrootcert is set: give the server's CA file as sslrootcert)".to_string(),
        |r| format!("the CA in {r} (sslrootcert)"),
    );
    Some(match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => format!("the server's certificate is not signed by {ca}"),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "the server's certificate is not valid for the host name {} (sslmode=verify-full checks it): connect by a \
                 name the certificate lists, or use sslmode=verify-ca",
                host.unwrap_or("connected to")
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired: the server needs a new one".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet: check this machine's clock and the server's".to_string()
            }
            CertificateError::Revoked => "the server's certificate has been revoked".to_string(),
            CertificateError::BadSignature | CertificateError::BadEncoding => {
                "the server's certificate is damaged or badly signed".to_string()
            }
            _ => format!("the server's certificate is refused (checked against {ca})"),
        },
        rustls::Error::NoCertificatesPresented => "the server presented no certificate".to_string(),
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::BadCertificate | AlertDescription::UnknownCA,
        ) => "the server refused this client's certificate, or wanted one: set sslcert and sslkey to a certificate \
              its CA signed"
            .to_string(),
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure | AlertDescription::ProtocolVersion) => {
            "the server and the daemon share no TLS version or cipher (the daemon speaks TLS 1.2 and 1.3)".to_string()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_failure_names_the_file_and_the_fix() {
        let target =
            "host=db.example port=5432 user=router sslmode=verify-full sslrootcert=/etc/oppty-router/db-ca.pem";
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            in_words(&unknown, Some(target)).as_deref(),
            Some("the server's certificate is not signed by the CA in /etc/oppty-router/db-ca.pem (sslrootcert)")
        );
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(in_words(&name, Some(target)).is_some_and(|w| w.contains("host name db.example")));
        assert!(in_words(&unknown, None).is_some_and(|w| w.contains("no sslrootcert is set")));
        assert_eq!(in_words(&rustls::Error::HandshakeNotComplete, Some(target)), None);
    }
}
