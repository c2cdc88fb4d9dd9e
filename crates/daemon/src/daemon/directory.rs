//! The CRM's directory while the daemon runs: reading it (`[directory]` queries) and handing it
//! to the reloader, which compiles the rules with it and publishes the set as a candidate, the
//! same path as an edit of the rule files (one comparison, one log of what changed, one version
//! per change). The user ids' form (the owner column's type) is set here too.
//!
//! It must not put a set in force (the session promotes candidates) nor route.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::crm;
use crate::db;
use crate::reload::{Reloaded, Reloader, DIRECTORY_REFRESH};
use crate::rules::Directory;

/// Why the directory could not be refreshed: a query the server failed (with that error's kind),
/// or rules that do not compile with what the CRM said.
#[derive(Debug)]
pub(super) struct RefreshError {
    message: String,
    kind: Option<db::ErrorKind>,
}

impl RefreshError {
    /// Not about the queries or the rules: the connection went, the server was busy (a retry
    /// fixes these), or it refuses us.
    pub(super) fn is_session_fault(&self) -> bool {
        self.kind.is_some_and(|k| k.passes() || k == db::ErrorKind::Refused)
    }
}

impl std::fmt::Display for RefreshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl super::Fault for RefreshError {
    fn refused(&self) -> bool {
        self.kind == Some(db::ErrorKind::Refused)
    }
}

/// Run the directory queries and recompile the rules with them. A failing query or a rule set
/// that no longer compiles leaves the last good ones in force. Any change the CRM made to people
/// (an activation, a membership, a pause, a cap, a remit) makes a new candidate, logged in words.
pub(super) async fn refresh(
    client: &tokio_postgres::Client,
    cfg: &Config,
    directory: &ArcSwap<Directory>,
    reloader: &Arc<Reloader>,
) -> Result<(), RefreshError> {
    let Some(d) = &cfg.directory else { return Ok(()) };
    let mut dir =
        crm::load_directory(client, d).await.map_err(|e| RefreshError { message: e.to_string(), kind: e.kind })?;
    dir.ids = directory.load().ids;
    let counts = (dir.active.as_ref().map(|a| a.len()), dir.memberships.len(), dir.kpi.len());
    directory.store(Arc::new(dir));
    let reloaded = reloader
        .reload_in_background(DIRECTORY_REFRESH)
        .await
        .map_err(|e| RefreshError { message: e.to_string(), kind: None })?;
    if reloaded != Reloaded::Unchanged {
        tracing::info!(active = counts.0, memberships = counts.1, kpis = counts.2, "directory loaded from the CRM");
    }
    Ok(())
}

/// Refresh the directory on a connection and task of its own (routing goes on meanwhile).
pub(super) fn spawn_refresh(
    cfg: Arc<Config>,
    directory: Arc<ArcSwap<Directory>>,
    reloader: Arc<Reloader>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = match super::connect::connect_daemon(&cfg, " directory").await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "directory refresh could not connect; the last good rules stay in force");
                return;
            }
        };
        if let Err(e) = refresh(&client, &cfg, &directory, &reloader).await {
            tracing::error!(error = %e, "directory refresh failed; the last good rules stay in force");
        }
    })
}

/// Read the rule files' user ids in the owner column's form from now on (recompiling once when
/// it changes: an upper-case uuid in a file then names the CRM's lower-case user).
pub(super) async fn use_id_form(
    directory: &ArcSwap<Directory>,
    reloader: &Arc<Reloader>,
    form: crate::rules::IdForm,
) -> Result<(), String> {
    if directory.load().ids == form {
        return Ok(());
    }
    directory.store(Arc::new(Directory { ids: form, ..(**directory.load()).clone() }));
    reloader.reload_in_background("user ids in the CRM's form").await.map(|_| ()).map_err(|e| e.to_string())
}
