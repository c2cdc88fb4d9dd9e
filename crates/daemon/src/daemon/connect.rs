//! A session of the daemon's: connected with the settings every one of its sessions has
//! (keepalives, no JIT, bounded waits), for the leader, its lanes, the lease and the directory.

use tokio_postgres::Client;

use crate::config::{Config, RouterConfig};
use crate::db::{connect, redacted, DbError};

/// The settings of every session of the daemon's. Keepalives: the server notices a dead client of
/// a session within seconds (not the OS's two hours) and ends it, releasing its locks (ignored over
/// a Unix socket, where it cannot happen). No JIT: the router's statements are short, and a
/// compile costs more than they run (the start-up count over 480,000 opportunities spent 120 to
/// 300 ms compiling when the CRM's predicates made the planner's estimate large). Every wait
/// bounded: `router.lock_timeout` and `router.statement_timeout`, set by the session itself so a
/// role's or database's own setting (however short or long) does not apply.
pub fn settings(router: &RouterConfig) -> String {
    format!(
        "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3; SET jit = off; \
         SET lock_timeout = {}; SET statement_timeout = {}; SET idle_in_transaction_session_timeout = 0",
        router.lock_timeout.as_millis().max(1),
        router.statement_timeout.as_millis().max(1)
    )
}

/// Connect a session of the daemon's, with its settings ([`settings`]).
pub async fn connect_daemon(cfg: &Config, app_suffix: &str) -> Result<Client, DbError> {
    let client = connect(&cfg.database, app_suffix).await?;
    client
        .batch_execute(&settings(&cfg.router))
        .await
        .map_err(|source| DbError::Connect { target: redacted(&cfg.database.url), source })?;
    Ok(client)
}
