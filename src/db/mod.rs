//! Connections to PostgreSQL: building the client config from the daemon config, TLS, driving the
//! connection futures, and saying what went wrong the way the server said it.
//!
//! Owns how the daemon connects (connection string read as libpq reads it, password file,
//! application name, timeouts, TLS) and the listener connection's notification stream, and the
//! one place errors are described (`describe`) and sorted by what to do about them (`kind_of`).
//! It must not log a password: only the redacted form of a connection string leaves here.

pub mod conninfo;
pub mod tls;

use std::error::Error as _;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::DatabaseConfig;
use conninfo::ConnInfo;
use tls::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database.url: {0}")]
    BadUrl(String),
    #[error("database.password_file: {0}")]
    PasswordFile(String),
    #[error("database.url: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot connect to {target}: {}", describe(.source))]
    Connect { target: String, source: tokio_postgres::Error },
}

/// What an error asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The server could not be reached, or said "not now": try again later (exit 69 for one-shot
    /// commands; the daemon reconnects).
    Unreachable,
    /// The server refused us for a reason a retry will not fix: credentials, a missing database
    /// or schema, missing grants, a certificate that does not verify (exit 78).
    Refused,
    /// Anything else: about the statement or the rows.
    Other,
}

impl DbError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DbError::BadUrl(_) | DbError::PasswordFile(_) | DbError::Tls(_) => ErrorKind::Refused,
            DbError::Connect { source, .. } => match kind_of(source) {
                ErrorKind::Other => ErrorKind::Unreachable,
                k => k,
            },
        }
    }
}

/// SQLSTATEs that no retry fixes: authorization (class 28), an unknown database (3D000) or
/// schema (3F000), missing privileges (42501), a missing table (42P01, the router's not installed).
fn refused_code(code: &str) -> bool {
    code.starts_with("28") || matches!(code, "3D000" | "3F000" | "42501" | "42P01")
}

/// Sort an error by what to do about it.
pub fn kind_of(e: &tokio_postgres::Error) -> ErrorKind {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if refused_code(code) {
            return ErrorKind::Refused;
        }
        if ["08", "53", "57"].iter().any(|c| code.starts_with(c)) {
            return ErrorKind::Unreachable;
        }
        return ErrorKind::Other;
    }
    let mut source = e.source();
    while let Some(s) = source {
        // tokio-rustls hands rustls errors over inside an io::Error, whose `source` skips them.
        let inner = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as &dyn std::error::Error);
        if let Some(tls) = inner.unwrap_or(s).downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::AlertReceived(_) => ErrorKind::Refused,
                _ => ErrorKind::Unreachable,
            };
        }
        source = s.source();
    }
    if e.to_string().contains("server does not support TLS") {
        return ErrorKind::Refused;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return ErrorKind::Unreachable;
        }
        source = s.source();
    }
    let msg = e.to_string();
    if e.is_closed() || msg.contains("communicating") || msg.contains("closed") || msg.contains("timed out") {
        return ErrorKind::Unreachable;
    }
    ErrorKind::Other
}

/// An error as the server said it: `message (SQLSTATE)`, then its detail and hint; for errors that
/// are not the server's (I/O, TLS, timeouts), every cause in the chain.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} ({})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(&format!("; {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(&format!(": {c}"));
        }
        source = cause.source();
    }
    s
}

/// The server's message alone (no SQLSTATE), for problems already named by a config key; for an
/// error that is not the server's, the whole chain as [`describe`] gives it.
pub fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| describe(e))
}

/// A connection string read as libpq reads it, split into what tokio-postgres takes and TLS.
pub struct Target {
    pub pg: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    /// The connection string without secrets, for messages.
    pub shown: String,
}

/// The connection string without any password, rebuilt from its parsed form (`***` in place of
/// secrets); a string that does not parse is not shown at all.
pub fn redacted(url: &str) -> String {
    match ConnInfo::parse(url) {
        Ok(info) => info.redacted(),
        Err(_) => "(an unreadable connection string)".to_string(),
    }
}

/// Read the URL: TLS keys for rustls, the rest for tokio-postgres.
pub fn parse_url(url: &str) -> Result<(tokio_postgres::Config, TlsSettings, String), DbError> {
    let mut info = ConnInfo::parse(url).map_err(|e| DbError::BadUrl(e.to_string()))?;
    let shown = info.redacted();
    let tls = TlsSettings::take_from(&mut info)?;
    let mut pg: tokio_postgres::Config =
        info.to_pairs_string().parse().map_err(|e: tokio_postgres::Error| DbError::BadUrl(describe(&e)))?;
    let unix_only =
        !pg.get_hosts().is_empty() && pg.get_hosts().iter().all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    pg.ssl_mode(tls.tokio_mode(unix_only));
    Ok((pg, tls, shown))
}

/// Build the connection target: the URL, plus the password file, application name and TLS.
pub fn target(db: &DatabaseConfig, app_suffix: &str) -> Result<Target, DbError> {
    let (mut pg, tls, shown) = parse_url(&db.url)?;
    if let Some(path) = &db.password_file {
        let pw =
            std::fs::read_to_string(path).map_err(|e| DbError::PasswordFile(crate::config::unreadable(path, &e)))?;
        pg.password(pw.trim_end_matches(['\n', '\r']));
    }
    pg.application_name(format!("{}{}", db.application_name, app_suffix));
    if let Some(zone) = &db.naive_timestamps {
        // Naive timestamps are read in their zone in every statement of the router's sessions.
        let options = pg.get_options().map(|o| format!("{o} ")).unwrap_or_default();
        pg.options(format!("{options}-c TimeZone={zone}"));
    }
    pg.connect_timeout(db.connect_timeout);
    pg.keepalives(true);
    pg.keepalives_idle(Duration::from_secs(30));
    Ok(Target { pg, tls: tls.connector()?, shown })
}

/// Connect and spawn the connection driver. The returned client errors once the connection dies.
pub async fn connect(db: &DatabaseConfig, app_suffix: &str) -> Result<Client, DbError> {
    let t = target(db, app_suffix)?;
    let (client, conn) = t.pg.connect(t.tls).await.map_err(|source| DbError::Connect { target: t.shown, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %describe(&e), "database connection ended");
        }
    });
    Ok(client)
}

/// Connect a session for LISTEN. Notifications (payloads are ignored: they are only a hint) are
/// sent on the returned channel; the channel closes when the connection dies.
pub async fn connect_listener(db: &DatabaseConfig, app_suffix: &str) -> Result<(Client, mpsc::Receiver<()>), DbError> {
    let t = target(db, app_suffix)?;
    let (client, mut conn) =
        t.pg.connect(t.tls).await.map_err(|source| DbError::Connect { target: t.shown, source })?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        // tokio-postgres hands out notifications only while the connection is polled this way.
        let mut messages = stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(msg) = messages.next().await {
            match msg {
                Ok(AsyncMessage::Notification(_)) => {
                    // A full channel already holds a wake-up: dropping this one loses nothing.
                    let _ = tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %describe(&e), "listener connection ended");
                    break;
                }
            }
        }
    });
    Ok((client, rx))
}

/// Whether the session's role is a superuser (the daemon should not be: see `grants`).
pub async fn is_superuser(client: &Client) -> Result<Option<String>, tokio_postgres::Error> {
    let row =
        client.query_one("SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user", &[]).await?;
    Ok(row.get::<_, bool>(1).then(|| row.get(0)))
}
