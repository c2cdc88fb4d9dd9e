//! Connections to PostgreSQL: building the client config from the daemon config and driving the
//! connection futures.
//!
//! Owns how the daemon connects (password file, application name, timeouts) and the listener
//! connection's notification stream. It must not log a password: only redacted URLs leave here.

use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::config::DatabaseConfig;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database.url is not a PostgreSQL connection string: {0}")]
    BadUrl(tokio_postgres::Error),
    #[error("database.password_file {path}: {source}")]
    PasswordFile { path: String, source: std::io::Error },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: tokio_postgres::Error },
}

/// Build the tokio-postgres config: the URL, plus the password file and application name.
pub fn pg_config(db: &DatabaseConfig, app_suffix: &str) -> Result<tokio_postgres::Config, DbError> {
    let mut pg: tokio_postgres::Config = db.url.parse().map_err(DbError::BadUrl)?;
    if let Some(path) = &db.password_file {
        let pw = std::fs::read_to_string(path)
            .map_err(|source| DbError::PasswordFile { path: path.display().to_string(), source })?;
        pg.password(pw.trim_end_matches(['\n', '\r']));
    }
    pg.application_name(format!("{}{}", db.application_name, app_suffix));
    pg.connect_timeout(db.connect_timeout);
    pg.keepalives(true);
    pg.keepalives_idle(Duration::from_secs(30));
    Ok(pg)
}

/// Connect and spawn the connection driver. The returned client errors once the connection dies.
pub async fn connect(db: &DatabaseConfig, app_suffix: &str) -> Result<Client, DbError> {
    let pg = pg_config(db, app_suffix)?;
    let (client, conn) = pg
        .connect(NoTls)
        .await
        .map_err(|source| DbError::Connect { url: crate::config::redact_url(&db.url), source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "database connection ended");
        }
    });
    Ok(client)
}

/// Connect a session for LISTEN. Notifications (payloads are ignored: they are only a hint) are
/// sent on the returned channel; the channel closes when the connection dies.
pub async fn connect_listener(db: &DatabaseConfig, app_suffix: &str) -> Result<(Client, mpsc::Receiver<()>), DbError> {
    let pg = pg_config(db, app_suffix)?;
    let (client, mut conn) = pg
        .connect(NoTls)
        .await
        .map_err(|source| DbError::Connect { url: crate::config::redact_url(&db.url), source })?;
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
                    tracing::debug!(error = %e, "listener connection ended");
                    break;
                }
            }
        }
    });
    Ok((client, rx))
}
