//! The daemon: connections, leadership, waiting for work, reconnecting, shutting down.
//!
//! Owns the life of a database session (main connection + LISTEN connection), the leader lock that
//! lets only one replica drain at a time, the idle/notify hand-shake, reconnect with backoff, and
//! the systemd notifications. It must not build SQL for the CRM (that is `crm`) nor decide owners
//! (that is `engine`); it must never exit on a lost connection, only on shutdown or a bad config.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::crm;
use crate::db;
use crate::drain::{Drain, DrainError, Routed};
use crate::engine::Engine;
use crate::rules::Directory;

mod lease;

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
}

impl Fault for tokio_postgres::Error {
    fn refused(&self) -> bool {
        db::kind_of(self) == db::ErrorKind::Refused
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
        let hint = refusal_hint(&e.to_string(), cfg);
        return Err(DaemonError::Refused(format!("{e}{hint}")));
    }
    Ok(SessionEnd::Lost(e.to_string()))
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
}

/// Why the directory could not be refreshed: a query the server failed (with that error's kind),
/// or rules that do not compile with what the CRM said.
#[derive(Debug)]
struct RefreshError {
    message: String,
    kind: Option<db::ErrorKind>,
}

impl RefreshError {
    fn rules(message: String) -> Self {
        RefreshError { message, kind: None }
    }

    /// Not about the queries or the rules: the connection went, the server was busy (a retry
    /// fixes these), or it refuses us.
    fn is_session_fault(&self) -> bool {
        self.kind.is_some_and(|k| k.passes() || k == db::ErrorKind::Refused)
    }
}

impl std::fmt::Display for RefreshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Fault for RefreshError {
    fn refused(&self) -> bool {
        self.kind == Some(db::ErrorKind::Refused)
    }
}

/// Run the directory queries and recompile the rules with them. A failing query or a rule set
/// that no longer compiles leaves the last good ones in force.
async fn refresh_directory(
    client: &tokio_postgres::Client,
    cfg: &Arc<Config>,
    rules: &ArcSwap<Engine>,
    directory: &ArcSwap<Directory>,
    reloader: Option<&Arc<crate::reload::Reloader>>,
) -> Result<(), RefreshError> {
    let Some(d) = &cfg.directory else { return Ok(()) };
    let mut dir =
        crm::load_directory(client, d).await.map_err(|e| RefreshError { message: e.to_string(), kind: e.kind })?;
    dir.ids = directory.load().ids;
    if let Some(r) = reloader {
        let counts = (dir.active.as_ref().map(|a| a.len()), dir.memberships.len(), dir.kpi.len());
        directory.store(Arc::new(dir));
        r.reload_in_background(crate::reload::DIRECTORY_REFRESH)
            .await
            .map_err(|e| RefreshError::rules(e.to_string()))?;
        tracing::info!(active = counts.0, memberships = counts.1, kpis = counts.2, "directory loaded from the CRM");
        return Ok(());
    }
    let dir = Arc::new(dir);
    let engine = compile_in_background(cfg, &dir).await.map_err(RefreshError::rules)?;
    if engine.hash == rules.load().hash {
        directory.store(dir);
        return Ok(());
    }
    tracing::info!(
        active = dir.active.as_ref().map(|a| a.len()),
        memberships = dir.memberships.len(),
        kpis = dir.kpi.len(),
        "directory loaded from the CRM"
    );
    directory.store(dir);
    rules.store(Arc::new(engine));
    Ok(())
}

/// Refresh the directory on a connection and task of its own (routing goes on meanwhile).
fn spawn_refresh(
    cfg: Arc<Config>,
    rules: Arc<ArcSwap<Engine>>,
    directory: Arc<ArcSwap<Directory>>,
    reloader: Option<Arc<crate::reload::Reloader>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = match db::connect(&cfg.database, " directory").await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "directory refresh could not connect; the last good rules stay in force");
                return;
            }
        };
        if let Err(e) = refresh_directory(&client, &cfg, &rules, &directory, reloader.as_ref()).await {
            tracing::error!(error = %e, "directory refresh failed; the last good rules stay in force");
        }
    })
}

/// Compile the rule files with `dir` on a blocking thread (never on the routing task).
async fn compile_in_background(cfg: &Arc<Config>, dir: &Arc<Directory>) -> Result<Engine, String> {
    let (cfg, dir) = (cfg.clone(), dir.clone());
    match tokio::task::spawn_blocking(move || crate::load_rules_with(&cfg, &dir)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the rules compile stopped unexpectedly: {e}")),
    }
}

/// Read the rule files' user ids in the owner column's form from now on (recompiling once when
/// it changes: an upper-case uuid in a file then names the CRM's lower-case user).
async fn use_id_form(
    cfg: &Arc<Config>,
    rules: &ArcSwap<Engine>,
    directory: &ArcSwap<Directory>,
    reloader: Option<&Arc<crate::reload::Reloader>>,
    form: crate::rules::IdForm,
) -> Result<(), String> {
    if directory.load().ids == form {
        return Ok(());
    }
    let dir = Arc::new(Directory { ids: form, ..(**directory.load()).clone() });
    directory.store(dir.clone());
    match reloader {
        Some(r) => r.reload_in_background("user ids in the CRM's form").await.map(|_| ()).map_err(|e| e.to_string()),
        None => {
            rules.store(Arc::new(compile_in_background(cfg, &dir).await?));
            Ok(())
        }
    }
}

enum SessionEnd {
    Shutdown,
    Lost(String),
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
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match session(&cfg, &rules, &shutdown, &opts, &mut notified, &mut backoff).await {
            Ok(SessionEnd::Shutdown) => {
                tracing::info!("shut down cleanly");
                return Ok(());
            }
            Ok(SessionEnd::Lost(why)) => {
                tracing::warn!(error = %why, retry_in_ms = backoff.as_millis() as u64, "database session lost; reconnecting");
                crate::systemd::status(&format!(
                    "waiting for the database (retry in {} ms): {why}",
                    backoff.as_millis()
                ));
            }
            Err(e) => return Err(e),
        }
        if !sleep_alive(backoff, &shutdown).await {
            return Ok(());
        }
        backoff = (backoff * 2).min(cfg.router.reconnect_max_backoff);
    }
}

async fn session(
    cfg: &Arc<Config>,
    rules: &Arc<ArcSwap<Engine>>,
    shutdown: &CancellationToken,
    opts: &RunOptions,
    notified: &mut bool,
    backoff: &mut Duration,
) -> Result<SessionEnd, DaemonError> {
    macro_rules! lost {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => return end_for(e, cfg),
            }
        };
    }
    let mut client = lost!(db::connect(&cfg.database, "").await);
    let (listener, mut wakeups) = lost!(db::connect_listener(&cfg.database, " listener").await);
    lost!(listener.batch_execute(&format!("LISTEN {}", cfg.router.channel.quoted())).await);
    if let Some(role) = lost!(db::is_superuser(&client).await) {
        tracing::warn!(role = %role, "connected as a superuser: give the daemon its own narrow role (`oppty-router grants ROLE` prints what it needs)");
    }
    let sql = match crm::prepare(&client, cfg).await {
        Ok(s) => s,
        Err(crm::CrmError::Sql(e)) => return end_for(e, cfg),
        // What looked like a mapping problem came from a connection that went: retry.
        Err(e) if client.is_closed() => return Ok(SessionEnd::Lost(e.to_string())),
        Err(e) => return Err(DaemonError::Mapping(e)),
    };
    if let Err(why) = lost!(crate::install::check_installed(&client, cfg).await) {
        return Err(DaemonError::Refused(why));
    }
    if let Err(e) = use_id_form(cfg, rules, &opts.directory, opts.reloader.as_ref(), sql.id_form).await {
        return Err(DaemonError::Mapping(crm::CrmError::Mapping(vec![crm::MappingProblem {
            key: "rules".into(),
            message: e,
        }])));
    }
    if let Err(e) = refresh_directory(&client, cfg, rules, &opts.directory, opts.reloader.as_ref()).await {
        if client.is_closed() || e.is_session_fault() {
            return end_for(e, cfg);
        }
        if rules.load().provisional {
            // Never compiled with the directory: a wrong query, or rules (their tests included)
            // that fail with the CRM's teams, is a config error; a provisional set never routes.
            return Err(DaemonError::Mapping(crm::CrmError::Mapping(vec![crm::MappingProblem {
                key: "directory".into(),
                message: e.to_string(),
            }])));
        }
        tracing::error!(error = %e, "directory refresh failed; the last good rules stay in force");
    }
    let mut next_refresh = cfg.directory.as_ref().map(|d| tokio::time::Instant::now() + d.refresh);
    let mut refreshing: Option<tokio::task::JoinHandle<()>> = None;
    let mut next_sweep = tokio::time::Instant::now() + cfg.router.reclaim_interval;
    let mut next_heartbeat = tokio::time::Instant::now();

    // Leadership: one replica drains at a time; the others wait here as hot standbys. The lock is
    // held by the session, so it is released the moment this connection dies; a leader that stops
    // renewing its lease (frozen, cut off) has its session ended by a standby (`lease`).
    let mut waiting_logged = false;
    let mut said_cannot = false;
    loop {
        if lost!(lease::try_lead(&client, cfg, &mut said_cannot).await) {
            break;
        }
        if !waiting_logged {
            tracing::info!("another replica is draining; standing by");
            crate::systemd::status("standing by: another replica is draining");
            waiting_logged = true;
        }
        crate::systemd::watchdog();
        tokio::select! {
            _ = tokio::time::sleep(lease::standby_poll(cfg)) => {}
            _ = shutdown.cancelled() => return Ok(SessionEnd::Shutdown),
        }
    }
    // The server notices a dead client of this session within seconds (not the OS's two hours),
    // and ends it, releasing the lock (ignored over a Unix socket, where it cannot happen).
    lost!(
        client
            .batch_execute("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3")
            .await
    );
    let backend: i32 = lost!(lost!(client.query_one("SELECT pg_backend_pid()", &[]).await).try_get(0));
    let (lease_stop, lease_lost) = (CancellationToken::new(), CancellationToken::new());
    let _stop_renewing = lease_stop.clone().drop_guard();
    lease::spawn_renewer(cfg.clone(), backend, lease_stop, lease_lost.clone());

    let leading_since = chrono::Utc::now();
    lost!(continue_versions(&client, cfg, rules, opts.reloader.as_deref()).await);
    let mut engine = rules.load_full();
    match crm::check_rule_values(&client, &sql, &engine).await {
        Ok(()) => {}
        Err(crm::RuleValuesError::Db(e)) => return end_for(e, cfg),
        // The initial rule set was already compiled; an id that the CRM cannot hold is a config error.
        Err(e) => {
            return Err(DaemonError::Mapping(crm::CrmError::Mapping(vec![crm::MappingProblem {
                key: "rules".into(),
                message: e.to_string(),
            }])))
        }
    }
    let mut drain = Drain::new(cfg.clone(), sql, engine.clone(), opts.decisions.clone());
    lost!(drain.reconcile(&mut client).await);
    tracing::info!(rules = %engine.version, members = engine.members.len(), "connected and leading; draining the backlog");
    *backoff = Duration::from_millis(100);

    let mut idle = false;
    lost!(drain.set_idle(&client, false).await);
    let mut first = true;
    let mut reported: Option<Arc<crate::reload::ReloadStatus>> = None;
    crate::systemd::status(&format!("routing with rules {}", engine.version));
    loop {
        crate::systemd::watchdog();
        if lease_lost.is_cancelled() {
            return Ok(SessionEnd::Lost("the leader lease was lost".into()));
        }
        let now_status = opts.reloader.as_ref().map(|r| r.status.load_full());
        let status_changed = match (&now_status, &reported) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (Some(_), None) => true,
            _ => false,
        };
        if status_changed || tokio::time::Instant::now() >= next_heartbeat {
            reported = now_status;
            lost!(write_status(&client, cfg, &engine, opts.reloader.as_deref(), leading_since).await);
            next_heartbeat = tokio::time::Instant::now() + Duration::from_secs(10);
        }
        // The directory's queries and the recompile run beside routing, on a connection of their
        // own; the new set is picked up below once it is in force.
        if next_refresh.is_some_and(|at| tokio::time::Instant::now() >= at) {
            if refreshing.as_ref().is_none_or(|h| h.is_finished()) {
                refreshing =
                    Some(spawn_refresh(cfg.clone(), rules.clone(), opts.directory.clone(), opts.reloader.clone()));
            }
            next_refresh = cfg.directory.as_ref().map(|d| tokio::time::Instant::now() + d.refresh);
        }
        // A newer rule set: check its member ids against the CRM, then use it from the next batch.
        let latest = rules.load_full();
        if !Arc::ptr_eq(&latest, &engine) {
            match crm::check_rule_values(&client, drain.crm_sql(), &latest).await {
                Ok(()) => {
                    tracing::info!(from = %engine.version, to = %latest.version, "rules swapped in");
                    crate::systemd::status(&format!("routing with rules {}", latest.version));
                    engine = latest.clone();
                    lost!(drain.swap_engine(&mut client, latest).await);
                    next_heartbeat = tokio::time::Instant::now();
                }
                Err(crm::RuleValuesError::Db(e)) => return end_for(e, cfg),
                Err(e) => {
                    tracing::error!(error = %e, rejected = %latest.version, kept = %engine.version, "new rules refused; the last good rules stay in force");
                    rules.store(engine.clone());
                    if let Some(r) = &opts.reloader {
                        r.refused_by_database(&e.to_string(), &engine);
                    }
                }
            }
        }
        // Reclaim, a step at a time between batches: routing never waits for a whole sweep.
        if drain.sweeping() || tokio::time::Instant::now() >= next_sweep {
            match drain.sweep_step(&mut client, chrono::Utc::now()).await {
                Ok(crate::drain::SweepStep::Going) => {}
                Ok(crate::drain::SweepStep::Done(_)) => {
                    next_sweep = tokio::time::Instant::now() + cfg.router.reclaim_interval;
                }
                Err(e) => return end_for(e, cfg),
            }
        }
        let report = match drain.drain_all(&mut client, shutdown).await {
            Ok(r) => r,
            Err(e) => return end_for(e, cfg),
        };
        if first {
            first = false;
            if let Some(r) = &opts.ready {
                r.store(true, Ordering::SeqCst);
            }
            if opts.notify_systemd && !*notified {
                crate::systemd::ready(&format!("routing with rules {}", engine.version));
                *notified = true;
            }
        }
        if shutdown.is_cancelled() {
            return Ok(stopped(&client, cfg).await);
        }
        if report.claimed > 0 || drain.sweeping() {
            if idle {
                lost!(drain.set_idle(&client, false).await);
                idle = false;
            }
            continue;
        }
        if !idle {
            // Say we are idle, then look once more: an event committed just before the flag was
            // set did not NOTIFY.
            lost!(drain.set_idle(&client, true).await);
            idle = true;
            continue;
        }
        tokio::select! {
            w = wakeups.recv() => {
                if w.is_none() {
                    return Ok(SessionEnd::Lost("the LISTEN connection closed".into()));
                }
            }
            // Never longer than the watchdog allows between two pings.
            _ = tokio::time::sleep(drain.poll_interval().min(ALIVE_EVERY)) => {}
            _ = shutdown.cancelled() => return Ok(stopped(&client, cfg).await),
            _ = lease_lost.cancelled() => return Ok(SessionEnd::Lost("the leader lease was lost".into())),
        }
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

/// A clean stop, recorded for `status` (best effort: the stop goes on if the write fails).
async fn stopped(client: &tokio_postgres::Client, cfg: &Config) -> SessionEnd {
    let s = cfg.router.schema.quoted();
    let sql = format!("UPDATE {s}.daemon_status SET stopped_at = clock_timestamp() WHERE pid = $1");
    if let Err(e) = client.execute(&sql, &[&(std::process::id() as i32)]).await {
        tracing::warn!(error = %db::describe(&e), "could not record the stop for `status`");
    }
    SessionEnd::Shutdown
}

/// Rule set versions never repeat, across restarts and replicas: the sequence goes on after the
/// last version the previous leader recorded (unless that was this very process).
async fn continue_versions(
    client: &tokio_postgres::Client,
    cfg: &Config,
    rules: &ArcSwap<Engine>,
    reloader: Option<&crate::reload::Reloader>,
) -> Result<(), tokio_postgres::Error> {
    let s = cfg.router.schema.quoted();
    let sql = format!("SELECT rules_version, host, pid FROM {s}.daemon_status WHERE singleton");
    let Some(row) = client.query_opt(&sql, &[]).await? else { return Ok(()) };
    let (version, host, pid): (Option<String>, Option<String>, Option<i32>) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    let ours = pid == Some(std::process::id() as i32) && host == this_host().into();
    let Some(last) = version.as_deref().and_then(crate::rules::version_sequence).filter(|_| !ours) else {
        return Ok(());
    };
    if let Some(next) = crate::rules::continue_versions_after(last, &rules.load()) {
        tracing::info!(previous = version.as_deref().unwrap_or(""), now = %next.version, "rules version continues after the last one recorded");
        if let Some(r) = reloader {
            r.renamed(&next.version);
        }
        rules.store(Arc::new(next));
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
    reloader: Option<&crate::reload::Reloader>,
    leading_since: chrono::DateTime<chrono::Utc>,
) -> Result<(), tokio_postgres::Error> {
    let st = reloader.map(|r| (**r.status.load()).clone()).unwrap_or_default();
    let host = this_host();
    let s = cfg.router.schema.quoted();
    let (err_at, err) = match &st.last_error {
        Some((at, e)) => (Some(*at), Some(e.clone())),
        None => (None, None),
    };
    client
        .execute(
            &format!(
                "INSERT INTO {s}.daemon_status (singleton, host, pid, leading_since, rules_version, rules_loaded_at, reloads, \
                 refused_reloads, last_error, last_error_at, updated_at) VALUES (true, $1, $2, $3, $4, $5, $6, $7, $8, $9, clock_timestamp()) \
                 ON CONFLICT (singleton) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, leading_since = EXCLUDED.leading_since, \
                 rules_version = EXCLUDED.rules_version, rules_loaded_at = EXCLUDED.rules_loaded_at, reloads = EXCLUDED.reloads, \
                 refused_reloads = EXCLUDED.refused_reloads, last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at, \
                 updated_at = EXCLUDED.updated_at, stopped_at = NULL"
            ),
            &[
                &host,
                &(std::process::id() as i32),
                &leading_since,
                &engine.version,
                &st.loaded_at,
                &(st.reloads as i64),
                &(st.refused as i64),
                &err,
                &err_at,
            ],
        )
        .await?;
    Ok(())
}
