//! Connections to PostgreSQL: building the client config from the daemon config, TLS, driving the
//! connection futures, and saying what went wrong the way the server said it.
//!
//! Owns how the daemon connects (connection string read as libpq reads it, password file,
//! application name, timeouts, TLS) and the listener connection's notification stream, and the
//! one place errors are described (`describe`) and sorted by what to do about them (`kind_of`).
//! It must not log a password: only the redacted form of a connection string leaves here.

pub mod conninfo;
pub mod prepared;
pub mod row;
pub mod tls;
mod tls_words;

use std::error::Error as _;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

use conninfo::ConnInfo;
use tls::TlsSettings;

use crate::held::held;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database.url: {0}")]
    BadUrl(String),
    #[error("database.password_file: {0}")]
    PasswordFile(String),
    #[error("database.url: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot connect to {target}: {}", describe_connect(.source, target))]
    Connect { target: String, source: tokio_postgres::Error },
}

/// What an error asks of the caller. Every database error the router meets is sorted into one
/// of these (`kind_of`), from its SQLSTATE, else from the driver's own account of it; each kind
/// has one reaction, the same wherever it is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection is gone, or the server cannot serve now (class 08, shutdown or crash
    /// 57P01–57P03, out of resources 53, I/O 58, a standby after a failover 25006, the driver's
    /// closed connection or I/O error). The daemon reconnects with backoff and rebuilds its
    /// state; nothing is charged to an event. One-shot commands exit 69.
    Connection,
    /// Another transaction was in the way: a deadlock or serialization failure (class 40), a lock
    /// not available (55P03), an object in use (55006). The same work is tried again at once on
    /// the same connection; nothing is charged to an event. One-shot commands exit 75.
    Contention,
    /// A statement ran past its timeout or was cancelled (57014): about the rows of that
    /// statement. A batch is processed event by event; the slow event is retried alone with
    /// backoff, then dead-lettered. One-shot commands exit 75.
    Timeout,
    /// The data of a row: a bad value (class 22), a constraint of the CRM (23), an exception its
    /// triggers or functions raise (P0), a value the driver cannot send. Handled like `Timeout`;
    /// one-shot commands exit 1.
    Row,
    /// The daemon config's mapping does not fit the database: an unknown column or function,
    /// a syntax error, a type that does not match (class 42 but the ones under `Refused`, 0A),
    /// or a result the driver cannot read as expected. At start-up: exit 78 naming the key. In a
    /// batch (the CRM's schema changed under the daemon): the session ends and the mapping is
    /// checked again on reconnect, events stay queued.
    Mapping,
    /// The server refuses the daemon for a reason a retry will not fix: credentials (class 28),
    /// an unknown database (3D000) or schema (3F000), a missing grant (42501) or table (42P01: the
    /// router is not installed), a certificate that does not verify. Stop: exit 78.
    Refused,
}

impl ErrorKind {
    /// Whether waiting and trying again can fix it, without a person.
    pub fn passes(self) -> bool {
        matches!(self, ErrorKind::Connection | ErrorKind::Contention | ErrorKind::Timeout)
    }

    /// Whether it ends a daemon session: the connection (reconnect), the mapping (checked again
    /// on reconnect) or a refusal (stop). Contention is retried on the spot; timeouts and row
    /// errors are charged to their events.
    pub fn ends_session(self) -> bool {
        matches!(self, ErrorKind::Connection | ErrorKind::Mapping | ErrorKind::Refused)
    }

    /// Whether it is about the rows being processed (charged to their events) rather than the
    /// session or the config.
    pub fn about_rows(self) -> bool {
        matches!(self, ErrorKind::Timeout | ErrorKind::Row)
    }
}

impl DbError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DbError::BadUrl(_) | DbError::PasswordFile(_) | DbError::Tls(_) => ErrorKind::Refused,
            DbError::Connect { source, .. } => match kind_of(source) {
                ErrorKind::Refused => ErrorKind::Refused,
                _ => ErrorKind::Connection,
            },
        }
    }
}

/// The kind of a server error, from its SQLSTATE.
pub fn kind_of_code(code: &str) -> ErrorKind {
    let class = code.get(..2).unwrap_or("");
    if class == "28" || matches!(code, "3D000" | "3F000" | "42501" | "42P01") {
        ErrorKind::Refused
    } else if code == "57014" {
        ErrorKind::Timeout
    } else if class == "40" || matches!(code, "55P03" | "55006" | "72000") {
        ErrorKind::Contention
    } else if matches!(class, "08" | "53" | "57" | "58") || matches!(code, "25006" | "25P03") {
        ErrorKind::Connection
    } else if matches!(class, "42" | "0A") {
        ErrorKind::Mapping
    } else {
        ErrorKind::Row
    }
}

/// Sort an error by what to do about it (see [`ErrorKind`]).
pub fn kind_of(e: &tokio_postgres::Error) -> ErrorKind {
    if let Some(code) = e.code() {
        return kind_of_code(code.code());
    }
    if e.is_closed() {
        return ErrorKind::Connection;
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
                _ => ErrorKind::Connection,
            };
        }
        if s.is::<std::io::Error>() {
            return ErrorKind::Connection;
        }
        if s.is::<tokio_postgres::types::WasNull>() {
            return ErrorKind::Row;
        }
        if s.is::<tokio_postgres::types::WrongType>() {
            return ErrorKind::Mapping;
        }
        source = s.source();
    }
    driver_kind(&e.to_string())
}

/// The kind of an error the driver raised itself (no SQLSTATE, no I/O cause), from its own
/// account of it: tokio-postgres does not expose its error kinds as a type.
fn driver_kind(msg: &str) -> ErrorKind {
    const KINDS: &[(&str, ErrorKind)] = &[
        ("server does not support TLS", ErrorKind::Refused),
        ("authentication error", ErrorKind::Refused),
        ("invalid connection string", ErrorKind::Refused),
        ("invalid configuration", ErrorKind::Refused),
        ("error serializing parameter", ErrorKind::Row),
        ("error deserializing column", ErrorKind::Mapping),
        ("invalid column", ErrorKind::Mapping),
        ("parameters but got", ErrorKind::Mapping),
        ("unexpected number of rows", ErrorKind::Mapping),
    ];
    KINDS.iter().find(|(text, _)| msg.contains(text)).map_or(ErrorKind::Connection, |(_, k)| *k)
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

/// [`describe`] of a failed connection to `target` (as shown): a TLS failure said in words first
/// (which certificate, which file), the driver's account after it.
pub fn describe_connect(e: &tokio_postgres::Error, target: &str) -> String {
    let mut source = e.source();
    while let Some(s) = source {
        let inner = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as &dyn std::error::Error);
        if let Some(words) =
            inner.unwrap_or(s).downcast_ref::<rustls::Error>().and_then(|t| tls_words::in_words(t, Some(target)))
        {
            return format!("{words} ({})", describe(e));
        }
        source = s.source();
    }
    describe(e)
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
            std::fs::read_to_string(path).map_err(|e| DbError::PasswordFile(crate::access::unreadable(path, &e)))?;
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
    // A dead server (or a partition) is noticed within seconds: 5 s idle, then 3 probes 2 s apart.
    pg.keepalives_idle(Duration::from_secs(5));
    pg.keepalives_interval(Duration::from_secs(2));
    pg.keepalives_retries(3);
    Ok(Target { pg, tls: connector_for(&db.url, &tls)?, shown })
}

/// The TLS connector of a connection string, built once per process (it reads the certificate
/// files, and the system's roots with them) and reused by every connection after.
fn connector_for(url: &str, tls: &TlsSettings) -> Result<MakeRustlsConnect, DbError> {
    static BUILT: std::sync::Mutex<Vec<(String, MakeRustlsConnect)>> = std::sync::Mutex::new(Vec::new());
    let mut built = held(&BUILT);
    if let Some((_, c)) = built.iter().find(|(u, _)| u == url) {
        return Ok(c.clone());
    }
    let c = tls.connector()?;
    built.push((url.to_string(), c.clone()));
    Ok(c)
}

/// [`target`] off the runtime's threads: it may read files (the password file, certificates).
async fn target_blocking(db: &DatabaseConfig, app_suffix: &str) -> Result<Target, DbError> {
    let (db, suffix) = (db.clone(), app_suffix.to_string());
    tokio::task::spawn_blocking(move || target(&db, &suffix))
        .await
        .unwrap_or_else(|e| Err(DbError::BadUrl(format!("reading the connection settings failed: {e}"))))
}

/// Where and how to connect: the config's `[database]`.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub password_file: Option<std::path::PathBuf>,
    pub application_name: String,
    pub connect_timeout: Duration,
    /// The zone the CRM's `timestamp without time zone` columns are written in (an IANA name,
    /// usually "UTC"): the router's sessions and capture triggers read them in it.
    pub naive_timestamps: Option<String>,
}

/// Connect and spawn the connection driver. The returned client errors once the connection dies.
pub async fn connect(db: &DatabaseConfig, app_suffix: &str) -> Result<Client, DbError> {
    let t = target_blocking(db, app_suffix).await?;
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
    let t = target_blocking(db, app_suffix).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_connector_is_built_once_and_reused_by_every_connection_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root.crt");
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("a certificate");
        std::fs::write(&root, ca.cert.pem()).expect("write");
        let db = DatabaseConfig {
            url: format!("host=localhost dbname=crm sslmode=verify-full sslrootcert={}", root.display()),
            password_file: None,
            application_name: "oppty-router".into(),
            connect_timeout: Duration::from_secs(5),
            naive_timestamps: None,
        };
        assert!(target(&db, "").is_ok(), "the first connection reads the root certificate");
        std::fs::remove_file(&root).expect("remove");
        // Read once: the certificates (and the system's roots) are not read again per connection.
        assert!(target(&db, " lane 2").is_ok(), "later connections reuse the connector");
    }

    #[test]
    fn each_sqlstate_has_the_kind_whose_reaction_fits_it() {
        use ErrorKind::*;
        let cases = [
            ("08006", Connection, "connection failure"),
            ("08P01", Connection, "protocol violation"),
            ("57P01", Connection, "admin shutdown (pg_terminate_backend, a fast restart)"),
            ("57P03", Connection, "cannot connect now (starting up)"),
            ("53300", Connection, "too many connections"),
            ("58030", Connection, "I/O error"),
            ("25006", Connection, "read-only transaction: a standby after a failover"),
            ("40P01", Contention, "deadlock"),
            ("40001", Contention, "serialization failure"),
            ("55P03", Contention, "lock not available"),
            ("57014", Timeout, "statement timeout or cancel"),
            ("22012", Row, "division by zero in a field expression"),
            ("22P02", Row, "a value that is not a uuid"),
            ("23514", Row, "a CRM check constraint"),
            ("23503", Row, "a CRM foreign key"),
            ("P0001", Row, "a CRM trigger raised"),
            ("XX000", Row, "an internal error on one row"),
            ("42703", Mapping, "undefined column"),
            ("42883", Mapping, "undefined function"),
            ("42601", Mapping, "syntax error"),
            ("0A000", Mapping, "feature not supported"),
            ("28P01", Refused, "wrong password"),
            ("28000", Refused, "no pg_hba.conf entry"),
            ("3D000", Refused, "unknown database"),
            ("3F000", Refused, "unknown schema"),
            ("42501", Refused, "missing grant"),
            ("42P01", Refused, "missing table: the router not installed"),
        ];
        for (code, kind, what) in cases {
            assert_eq!(kind_of_code(code), kind, "{code} ({what})");
        }
    }

    #[test]
    fn only_connection_contention_and_timeout_pass_and_only_timeout_and_row_are_charged_to_events() {
        use ErrorKind::*;
        let all = [Connection, Contention, Timeout, Row, Mapping, Refused];
        let passes: Vec<_> = all.iter().filter(|k| k.passes()).collect();
        assert_eq!(passes, [&Connection, &Contention, &Timeout]);
        let rows: Vec<_> = all.iter().filter(|k| k.about_rows()).collect();
        assert_eq!(rows, [&Timeout, &Row]);
        let ending: Vec<_> = all.iter().filter(|k| k.ends_session()).collect();
        assert_eq!(ending, [&Connection, &Mapping, &Refused]);
    }

    #[test]
    fn the_drivers_own_errors_are_sorted_by_its_account_of_them() {
        use ErrorKind::*;
        let cases = [
            ("connection closed", Connection),
            ("error communicating with the server: Broken pipe", Connection),
            ("timeout waiting for server", Connection),
            ("error connecting to server: Connection refused", Connection),
            ("error parsing response from server", Connection),
            ("server does not support TLS", Refused),
            ("authentication error: password missing", Refused),
            ("error serializing parameter 2: value too large to transmit", Row),
            (
                "error deserializing column 1: cannot convert between the Rust type `i64` and the Postgres type `int4`",
                Mapping,
            ),
            ("invalid column `x`", Mapping),
            ("expected 2 parameters but got 1", Mapping),
            ("query returned an unexpected number of rows", Mapping),
        ];
        for (msg, kind) in cases {
            assert_eq!(driver_kind(msg), kind, "{msg}");
        }
    }
}
