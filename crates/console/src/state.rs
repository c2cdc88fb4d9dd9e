//! The console's state: its config, accounts, sessions, drafts, login throttle, TLS acceptor, and
//! the one database connection it reads on (made again when it breaks), with what it reads there
//! (`status`'s report, the CRM's directory and open loads) and who put the rules in force (the
//! journal). It must not serve, render or write anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oppty_router::config::Config;

use crate::accounts::Accounts;
use crate::drafts::Drafts;
use crate::sessions::Sessions;
use crate::throttle::Throttle;
use crate::ConsoleError;

/// How long a session lasts without a request.
const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Failed logins one name may have within [`LOGIN_WINDOW`] before it must wait.
const LOGIN_TRIES: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The console's state: its config, accounts, sessions, and one database connection it reads on
/// (made again when it breaks).
pub struct Console {
    pub(crate) cfg: Arc<Config>,
    pub(crate) accounts: Accounts,
    pub(crate) sessions: Sessions,
    /// Each editor's unsaved changes.
    pub(crate) drafts: Drafts,
    /// Failed logins, by name.
    pub(crate) throttle: Throttle,
    db: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Served over TLS (`console.tls_cert`): cookies are `Secure`.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Console {
    /// The console for this config: its accounts read and checked.
    pub fn new(cfg: Arc<Config>) -> Result<Console, ConsoleError> {
        let accounts = Accounts::load(&cfg.console.users)?;
        let tls = match &cfg.console.tls {
            Some((cert, key)) => Some(crate::tls::acceptor(cert, key).map_err(ConsoleError::Tls)?),
            None => None,
        };
        Ok(Console {
            cfg,
            accounts,
            sessions: Sessions::new(IDLE),
            drafts: Drafts::default(),
            throttle: Throttle::new(LOGIN_TRIES, LOGIN_WINDOW),
            db: tokio::sync::Mutex::new(None),
            tls,
        })
    }

    /// Read `status`'s report on the console's connection (connecting first when it has none).
    pub(crate) async fn report(&self) -> Result<oppty_router::status::Report, String> {
        let db = self.connected().await?;
        let Some(client) = db.as_ref() else { return Err("not connected".into()) };
        oppty_router::status::report(client, &self.cfg).await.map_err(|e| oppty_router::db::describe(&e))
    }

    /// Who put the rules in force in the files (a save or revert the journal records), if known.
    pub(crate) fn author(&self, r: &oppty_router::status::Report) -> Option<String> {
        let hash = r.daemon.as_ref()?.rules_version.split_once('-')?.1.to_string();
        authors(&self.cfg.console.journal).remove(&hash)
    }

    /// What the CRM's directory says now, as the daemon reads it to compile the rules.
    pub(crate) async fn directory(&self) -> Result<rules::Directory, String> {
        self.read_crm(false).await.map(|(d, _)| d)
    }

    /// The CRM's directory, and each owner's open opportunities now.
    pub(crate) async fn directory_and_loads(&self) -> Result<(rules::Directory, HashMap<String, i64>), String> {
        self.read_crm(true).await
    }

    async fn read_crm(&self, loads: bool) -> Result<(rules::Directory, HashMap<String, i64>), String> {
        use oppty_router::simulate::{directory_as_routed, SimulateError};
        let db = self.connected().await?;
        let Some(client) = db.as_ref() else { return Err("not connected".into()) };
        let (directory, sql) = match directory_as_routed(client, &self.cfg).await {
            Ok(read) => read,
            Err(SimulateError::Sql(e)) => return Err(oppty_router::db::describe(&e)),
            Err(e) => return Err(e.to_string()),
        };
        let mut open = HashMap::new();
        if loads {
            let rows = oppty_router::crm::open_loads(client, &sql).await.map_err(|e| oppty_router::db::describe(&e))?;
            open.extend(rows.into_iter().map(|l| (l.owner, l.open)));
        }
        Ok((directory, open))
    }

    /// The console's connection, made (again) when it has none.
    pub(crate) async fn connected(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<tokio_postgres::Client>>, String> {
        let mut db = self.db.lock().await;
        if db.as_ref().is_none_or(|c| c.is_closed()) {
            let c = oppty_router::db::connect(&self.cfg.database, " console").await.map_err(|e| e.to_string())?;
            *db = Some(c);
        }
        Ok(db)
    }
}

/// Who put each rules hash in the files, as the console's journal (saves and reverts, from the
/// console or the shell) records it: "saved by lan at …". A journal that cannot be read names nobody.
pub(crate) fn authors(journal: &std::path::Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|j| {
            let (hash, user, action, at) =
                (j["rules_hash"].as_str()?, j["user"].as_str()?, j["action"].as_str()?, j["at"].as_str()?);
            let done = if action == "revert" { "reverted" } else { "saved" };
            Some((hash.to_string(), format!("{done} by {user} at {at}")))
        })
        .collect()
}
