//! The daemon: connections, leadership, waiting for work, reconnecting, shutting down.
//!
//! Owns the life of a database session (main connection + LISTEN connection), the leader lock that
//! lets only one replica drain at a time, the idle/notify hand-shake, reconnect with backoff, and
//! the systemd notifications. It must not build SQL for the CRM (that is `crm`) nor decide owners
//! (that is `engine`); it must never exit on a lost connection, only on shutdown or a bad config.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::crm;
use crate::db;
use crate::db::row::FromRow;
use crate::drain::{DrainError, Routed};
use crate::engine::Engine;
use crate::reload::Reloader;
use crate::rules::Directory;
use crate::store::{LastLeader, LeaseStatements};

pub mod connect;
mod directory;
mod in_force;
mod lease;
mod session;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The mapping does not fit the database: retrying will not help (exit 78).
    #[error(transparent)]
    Mapping(crm::CrmError),
    /// The server refuses the daemon for a reason a retry will not fix (credentials, an unknown
    /// database, missing grants, a certificate that does not verify), or the router's schema is
    /// missing or of another version (exit 78).
    #[error("{0}")]
    Refused(String),
}

/// An error met while a session runs: refused (stop: a retry will not help) or anything else
/// (the session is lost: reconnect).
trait Fault: std::fmt::Display {
    fn refused(&self) -> bool;

    /// The error in the server's words (never a bare "db error").
    fn said(&self) -> String {
        self.to_string()
    }
}

impl Fault for tokio_postgres::Error {
    fn refused(&self) -> bool {
        db::kind_of(self) == db::ErrorKind::Refused
    }

    fn said(&self) -> String {
        db::describe(self)
    }
}

impl Fault for db::DbError {
    fn refused(&self) -> bool {
        self.kind() == db::ErrorKind::Refused
    }
}

impl Fault for DrainError {
    fn refused(&self) -> bool {
        matches!(self, DrainError::Refused(_))
    }
}

fn end_for(e: impl Fault, cfg: &Config) -> Result<SessionEnd, DaemonError> {
    if e.refused() {
        let said = e.said();
        let hint = refusal_hint(&said, cfg);
        return Err(DaemonError::Refused(format!("{said}{hint}")));
    }
    Ok(SessionEnd::Lost(e.said()))
}

/// What to do about a refusal, for the common ones.
fn refusal_hint(msg: &str, cfg: &Config) -> String {
    let schema = cfg.router.schema.as_str();
    if msg.contains("(28P01)") || msg.contains("(28000)") {
        " (check database.url's user and password, database.password_file, and the server's pg_hba.conf)".into()
    } else if msg.contains("(42501)") {
        " (the daemon's role lacks a grant: print what it needs with `oppty-router grants ROLE` and run it as the \
         database owner)"
            .into()
    } else if msg.contains("(3F000)") || msg.contains("(42P01)") && msg.contains(schema) {
        format!(" (the router's schema `{schema}` is not installed in this database: run `oppty-router install`)")
    } else {
        String::new()
    }
}

/// What the caller wants besides routing.
#[derive(Default)]
pub struct RunOptions {
    /// Send `READY=1` to systemd once connected, leader, and rules loaded.
    pub notify_systemd: bool,
    /// Every committed decision is sent here (the demo prints them).
    pub decisions: Option<mpsc::UnboundedSender<Routed>>,
    /// Set once the daemon is leader and has drained its first backlog.
    pub ready: Option<Arc<AtomicBool>>,
    /// What the CRM says about members (`[directory]`), shared with whoever recompiles the rules
    /// (the SIGHUP handler); the daemon refreshes it every `directory.refresh`.
    pub directory: Arc<ArcSwap<Directory>>,
    /// When set, rule sets are recompiled through it (so `status` sees every reload).
    pub reloader: Option<Arc<crate::reload::Reloader>>,
    /// What `/readyz` reads (`[metrics]`), kept up to date by the sessions.
    pub health: Option<Arc<crate::telemetry::Health>>,
}

enum SessionEnd {
    Shutdown,
    /// The session was lost after it connected: reconnect after a backoff that doubles.
    Lost(String),
    /// The server could not be reached at all (down, restarting, cut off): look again soon, so
    /// routing resumes within a moment of the server accepting connections again.
    Unreachable(String),
}

/// How often a daemon whose server cannot be reached tries again (jittered): a refused connection
/// costs neither side anything.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// The rule sets: the one in force, which only the daemon writes (it owns the database that
/// checks a set), the reloader that compiles candidates (from the files, the directory refresh,
/// SIGHUP: one path for every cause), and the candidates it promotes.
struct RuleSets {
    live: Arc<ArcSwap<Engine>>,
    reloader: Arc<Reloader>,
    candidates: tokio::sync::watch::Receiver<Arc<crate::reload::Candidate>>,
}

/// Run until `shutdown` is cancelled. Lost connections are retried with backoff for ever.
pub async fn run(
    cfg: Arc<Config>,
    rules: Arc<ArcSwap<Engine>>,
    shutdown: CancellationToken,
    opts: RunOptions,
) -> Result<(), DaemonError> {
    let mut backoff = Duration::from_millis(100);
    let mut notified = false;
    let reloader = match &opts.reloader {
        Some(r) => r.clone(),
        None => {
            // Without a caller's reloader, one of the daemon's own: every rule set, whatever
            // caused it, is compiled and compared the same way.
            opts.directory.store(Arc::new(crate::directory_flags(&cfg)));
            Arc::new(Reloader::new(cfg.clone(), rules.clone(), opts.directory.clone()))
        }
    };
    let candidates = reloader.candidates().subscribe();
    let mut sets = RuleSets { live: rules, reloader, candidates };
    if let Some(h) = &opts.health {
        h.set_rules_loaded(true);
    }
    // What the last unreachable server said: said once, not at every look.
    let mut unreachable: Option<String> = None;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let end = session::session(&cfg, &mut sets, &shutdown, &opts, &mut notified, &mut backoff).await?;
        // Jittered: replicas that lost the database together do not all come back at once.
        let wait = match end {
            SessionEnd::Shutdown => {
                tracing::info!("shut down cleanly");
                return Ok(());
            }
            SessionEnd::Lost(why) => {
                unreachable = None;
                session_ended(&opts, &why);
                tracing::warn!(error = %why, retry_in_ms = backoff.as_millis() as u64, "database session lost; reconnecting");
                crate::systemd::status(&format!(
                    "waiting for the database (retry in {} ms): {why}",
                    backoff.as_millis()
                ));
                let wait = crate::retry::backoff(backoff, 1, cfg.router.reconnect_max_backoff, rand::random::<f64>());
                backoff = (backoff * 2).min(cfg.router.reconnect_max_backoff);
                wait
            }
            SessionEnd::Unreachable(why) => {
                if unreachable.as_deref() != Some(why.as_str()) {
                    session_ended(&opts, &why);
                    tracing::warn!(error = %why, every_ms = PROBE_EVERY.as_millis() as u64, "cannot reach the database; looking again until it answers");
                    crate::systemd::status(&format!("waiting for the database: {why}"));
                    unreachable = Some(why);
                }
                crate::retry::backoff(PROBE_EVERY, 1, PROBE_EVERY * 2, rand::random::<f64>())
            }
        };
        if !sleep_alive(wait, &shutdown).await {
            return Ok(());
        }
    }
}

/// A session ended (lost, or the server unreachable): counted, and told `/readyz`.
fn session_ended(opts: &RunOptions, why: &str) {
    metrics::counter!("oppty_router_sessions_lost_total").increment(1);
    if let Some(h) = &opts.health {
        h.session_ended(why);
    }
}

/// The longest the daemon waits without telling systemd's watchdog it is alive.
const ALIVE_EVERY: Duration = Duration::from_secs(10);

/// Sleep `d` (pinging the watchdog at least every [`ALIVE_EVERY`]); false if shut down meanwhile.
async fn sleep_alive(d: Duration, shutdown: &CancellationToken) -> bool {
    let until = tokio::time::Instant::now() + d;
    loop {
        crate::systemd::watchdog();
        let now = tokio::time::Instant::now();
        if now >= until {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep((until - now).min(ALIVE_EVERY)) => {}
            _ = shutdown.cancelled() => return false,
        }
    }
}

/// A clean stop of the leader, recorded for `status`; and the triggers told not to NOTIFY any
/// more: nobody listens until a leader starts again, which drains the queue first and raises the
/// flag itself when it waits (the event table is the truth; a NOTIFY only wakes). Best effort:
/// the stop goes on if a write fails.
async fn stopped(client: &tokio_postgres::Client, cfg: &Config) -> SessionEnd {
    let sql = LeaseStatements::new(&cfg.router.schema).stopped;
    if let Err(e) = client.execute(&sql, &[&(std::process::id() as i32)]).await {
        tracing::warn!(error = %db::describe(&e), "could not record the stop for `status`");
    }
    let quiet = crate::store::idle_sql(&cfg.router.schema);
    if let Err(e) = client.execute(&quiet, &[&false, &0f64]).await {
        tracing::warn!(error = %db::describe(&e), "could not tell the triggers to stop notifying");
    }
    SessionEnd::Shutdown
}

/// Rule set versions never repeat, across restarts and replicas: the sets put in force from now
/// on are numbered after the last version the previous leader recorded (unless that was this
/// very process); the same content keeps that version.
async fn continue_versions(client: &tokio_postgres::Client, cfg: &Config) -> Result<(), tokio_postgres::Error> {
    let sql = LeaseStatements::new(&cfg.router.schema).last_leader;
    let Some(row) = client.query_opt(&sql, &[]).await? else { return Ok(()) };
    let LastLeader { rules_version: version, host, pid } = LastLeader::from_row(&row)?;
    let ours = pid == Some(std::process::id() as i32) && host == this_host().into();
    if let Some(last) = version.as_deref().filter(|_| !ours) {
        crate::rules::recorded_in_force(last);
    }
    Ok(())
}

fn this_host() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// Report this leader's state in `<schema>.daemon_status` (read by `oppty-router status`).
async fn write_status(
    client: &tokio_postgres::Client,
    cfg: &Config,
    engine: &Engine,
    people: Option<&str>,
    reloader: &Reloader,
    leading_since: chrono::DateTime<chrono::Utc>,
) -> Result<(), tokio_postgres::Error> {
    let st = (**reloader.status.load()).clone();
    let host = this_host();
    let (err_at, err) = match &st.last_error {
        Some((at, e)) => (Some(*at), Some(e.clone())),
        None => (None, None),
    };
    let sql = LeaseStatements::new(&cfg.router.schema).report;
    client
        .execute(
            &sql,
            &[
                &host,
                &(std::process::id() as i32),
                &leading_since,
                &engine.version,
                &st.in_force_since,
                &(st.reloads as i64),
                &(st.refused as i64),
                &err,
                &err_at,
                &people,
            ],
        )
        .await?;
    Ok(())
}
