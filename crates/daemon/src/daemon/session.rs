//! One database session, in order: connect (main and LISTEN connections), check the mapping and
//! the router's schema, read the CRM's directory, stand by until this replica leads, hold the
//! lease, start the drain, then lead: between batches report status, refresh the directory,
//! pick up a newer rule set, take a reclaim step; drain; wait for a NOTIFY or the poll.
//!
//! Every step says how it ends a session: `Halt::End` (shut down, or lost: the caller
//! reconnects) or `Halt::Stop` (a person must fix something). It must not exit the process.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::in_force::{crm_count_every, people_of, put_in_force, record_set, refuse};
use super::{
    continue_versions, directory, end_for, lease, stopped, write_status, DaemonError, Fault, RuleSets, RunOptions,
    SessionEnd, ALIVE_EVERY,
};
use crate::config::Config;
use crate::crm::{self, CrmSql};
use crate::db;
use crate::drain::{BatchReport, Drain};
use crate::engine::Engine;
use crate::telemetry::Role;

/// Why a session's step does not go on.
enum Halt {
    /// The session ends: shut down, or lost (reconnect).
    End(SessionEnd),
    /// The daemon stops: a person must fix something.
    Stop(DaemonError),
}

type Step<T> = Result<T, Halt>;

/// A fault met in a step, as the session's end it calls for.
trait OrHalt<T> {
    fn or_halt(self, cfg: &Config) -> Step<T>;
}

impl<T, E: Fault> OrHalt<T> for Result<T, E> {
    fn or_halt(self, cfg: &Config) -> Step<T> {
        self.map_err(|e| match end_for(e, cfg) {
            Ok(end) => Halt::End(end),
            Err(stop) => Halt::Stop(stop),
        })
    }
}

/// The first connection of a session failed: refused (stop), else the server is not there
/// (down, restarting, cut off): the daemon looks again soon.
fn unreachable(e: db::DbError, cfg: &Config) -> Halt {
    match end_for(e, cfg) {
        Ok(SessionEnd::Lost(why)) => Halt::End(SessionEnd::Unreachable(why)),
        Ok(end) => Halt::End(end),
        Err(stop) => Halt::Stop(stop),
    }
}

/// A problem of the mapping or the rules that a restart will not fix.
fn mapping(key: &str, message: String) -> Halt {
    let problem = crm::MappingProblem { key: key.into(), message };
    Halt::Stop(DaemonError::Mapping(crm::CrmError::Mapping(vec![problem])))
}

/// The connections of a session and the mapping's statements.
struct Connected {
    client: tokio_postgres::Client,
    /// Kept open: dropping it closes the LISTEN connection.
    _listener: tokio_postgres::Client,
    wakeups: mpsc::Receiver<()>,
    sql: CrmSql,
}

pub(super) async fn session(
    cfg: &Arc<Config>,
    sets: &mut RuleSets,
    shutdown: &CancellationToken,
    opts: &RunOptions,
    notified: &mut bool,
    backoff: &mut Duration,
) -> Result<SessionEnd, DaemonError> {
    match steps(cfg, sets, shutdown, opts, notified, backoff).await {
        Ok(end) | Err(Halt::End(end)) => Ok(end),
        Err(Halt::Stop(e)) => Err(e),
    }
}

async fn steps(
    cfg: &Arc<Config>,
    sets: &mut RuleSets,
    shutdown: &CancellationToken,
    opts: &RunOptions,
    notified: &mut bool,
    backoff: &mut Duration,
) -> Step<SessionEnd> {
    let c = connect(cfg, sets).await?;
    let health = opts.health.as_deref();
    health.inspect(|h| h.set_role(Role::StandingBy));
    if !stand_by(&c.client, cfg, shutdown).await? {
        return Ok(SessionEnd::Shutdown);
    }
    let lease = hold_lease(&c, cfg).await?;
    let _stop_renewing = lease.stop.clone().drop_guard();
    let mut leader = Leader::start(cfg, sets, opts, c, &lease).await?;
    health.inspect(|h| h.set_role(Role::Leading));
    *backoff = Duration::from_millis(100);
    leader.run(shutdown, notified).await
}

/// Connect, check the mapping and the router's schema, and read the CRM's directory.
async fn connect(cfg: &Arc<Config>, sets: &RuleSets) -> Step<Connected> {
    let client = super::connect::connect_daemon(cfg, "").await.map_err(|e| unreachable(e, cfg))?;
    let (listener, wakeups) = db::connect_listener(&cfg.database, " listener").await.or_halt(cfg)?;
    let listen = format!("{}; LISTEN {}", super::connect::settings(&cfg.router), cfg.router.channel.quoted());
    listener.batch_execute(&listen).await.or_halt(cfg)?;
    if let Some(role) = crate::grants::is_superuser(&client).await.or_halt(cfg)? {
        // Said once a process, not at every reconnect.
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            tracing::warn!(role = %role, "connected as a superuser: give the daemon its own narrow role (`oppty-router grants ROLE` prints what it needs)");
        }
    }
    let sql = match crm::prepare(&client, cfg).await {
        Ok(s) => s,
        Err(crm::CrmError::Sql(e)) => return Err(e).or_halt(cfg),
        // What looked like a mapping problem came from a connection that went: retry.
        Err(e) if client.is_closed() => return Err(Halt::End(SessionEnd::Lost(e.to_string()))),
        Err(e) => return Err(Halt::Stop(DaemonError::Mapping(e))),
    };
    if let Err(why) = crate::install::check_installed(&client, cfg).await.or_halt(cfg)? {
        return Err(Halt::Stop(DaemonError::Refused(why)));
    }
    rights(&client, cfg, &sql).await?;
    let r = &sets.reloader;
    if let Err(e) = directory::use_id_form(&r.directory, r, sql.id_form).await {
        return Err(mapping("rules", e));
    }
    if let Err(e) = directory::refresh(&client, cfg, &r.directory, r).await {
        if client.is_closed() || e.is_session_fault() {
            return Err(e).or_halt(cfg);
        }
        if r.latest().provisional {
            // Never compiled with the directory: a wrong query, or rules (their tests included)
            // that fail with the CRM's teams, is a config error; a provisional set never routes.
            return Err(mapping("directory", e.to_string()));
        }
        tracing::error!(error = %e, "directory refresh failed; the last good rules stay in force");
    }
    Ok(Connected { client, _listener: listener, wakeups, sql })
}

/// Every privilege the daemon's statements need is held, before anything is routed: a missing
/// one stops the daemon at start (78) with the GRANTs that fix it, never at its first write.
async fn rights(client: &tokio_postgres::Client, cfg: &Arc<Config>, sql: &crm::CrmSql) -> Step<()> {
    match crate::grants::lacking(client, cfg, sql).await {
        Ok(missing) if missing.is_empty() => Ok(()),
        Ok(missing) => Err(Halt::Stop(DaemonError::Refused(format!(
            "the daemon's role lacks {} privilege(s) its statements need (`oppty-router grants ROLE` prints them all):\n  {}",
            missing.len(),
            missing.join("\n  ")
        )))),
        Err(crate::grants::GrantsError::Sql(e)) => Err(e).or_halt(cfg),
        Err(e) => Err(Halt::Stop(DaemonError::Refused(e.to_string()))),
    }
}

/// Leadership: one replica drains at a time; the others wait here as hot standbys. The lock is
/// held by the session, so it is released the moment this connection dies; a leader that stops
/// renewing its lease (frozen, cut off) has its session ended by a standby (`lease`). False on
/// shutdown.
async fn stand_by(client: &tokio_postgres::Client, cfg: &Arc<Config>, shutdown: &CancellationToken) -> Step<bool> {
    let mut waiting_logged = false;
    let mut said_cannot = false;
    loop {
        match lease::try_lead(client, cfg, &mut said_cannot).await {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            // The old leader's batch still holds the lease row, or a lock timed out: look again.
            Err(e) if !db::kind_of(&e).ends_session() => {
                tracing::debug!(error = %db::describe(&e), "the lease is busy; looking again");
            }
            Err(e) => return Err(e).or_halt(cfg),
        }
        if !waiting_logged {
            tracing::info!("another replica is draining; standing by");
            crate::systemd::status("standing by: another replica is draining");
            waiting_logged = true;
        }
        crate::systemd::watchdog();
        tokio::select! {
            _ = tokio::time::sleep(lease::standby_poll(cfg)) => {}
            _ = shutdown.cancelled() => return Ok(false),
        }
    }
}

/// Keep the lease while leading: the renewer's own connection, and a token cancelled if the
/// lease is lost. The LISTEN connection joins the lanes' lock: a leader that takes over ends it
/// with the old leader's other sessions.
async fn hold_lease(c: &Connected, cfg: &Arc<Config>) -> Step<Lease> {
    let lanes = crate::store::lane_key(&cfg.router.schema);
    c._listener.execute(crate::store::LANE_LOCK, &[&lanes]).await.or_halt(cfg)?;
    let backend: i32 =
        c.client.query_one(crate::store::BACKEND_PID, &[]).await.or_halt(cfg)?.try_get("pid").or_halt(cfg)?;
    let (stop, lost) = (CancellationToken::new(), CancellationToken::new());
    let progress = Arc::new(crate::drain::Progress::new());
    lease::spawn_renewer(cfg.clone(), backend, progress.clone(), stop.clone(), lost.clone());
    Ok(Lease { lost, stop, backend, progress })
}

/// The lease while leading.
struct Lease {
    /// Cancelled if the lease is lost.
    lost: CancellationToken,
    /// Stops the renewer.
    stop: CancellationToken,
    /// The leading session's backend, which the lease names.
    backend: i32,
    /// The drain's heartbeat: the lease is renewed only while it beats.
    progress: Arc<crate::drain::Progress>,
}

/// The drain's lanes: `router.drain_connections` − 1 more connections, each holding the lanes'
/// lock, with the same settings as the session's.
async fn open_lanes(cfg: &Arc<Config>, drain: &mut Drain) -> Step<()> {
    for n in 2..=cfg.router.drain_connections as usize {
        let client = super::connect::connect_daemon(cfg, &format!(" lane {n}")).await.or_halt(cfg)?;
        drain.add_lane(crate::drain::Lane::start(client, cfg).await.or_halt(cfg)?);
    }
    Ok(())
}

/// The leading session's state between batches.
struct Leader<'a> {
    cfg: &'a Arc<Config>,
    sets: &'a mut RuleSets,
    opts: &'a RunOptions,
    c: Connected,
    drain: Drain,
    engine: Arc<Engine>,
    /// Who `engine` pauses, disables or caps, as `status` reads it (JSON): made once per set in
    /// force, not at every heartbeat.
    people: Option<String>,
    lease_lost: CancellationToken,
    /// The drain's heartbeat, beaten between rounds and while waiting too.
    progress: Arc<crate::drain::Progress>,
    /// Rounds in a row that met a problem the session waits out ([`Leader::wait_out`]).
    setbacks: u32,
    leading_since: chrono::DateTime<chrono::Utc>,
    idle: bool,
    /// When the idle flag was last raised or renewed.
    idle_raised: Option<Instant>,
    /// When `/readyz`'s lag and the team loads are next taken ([`Leader::observe`]).
    next_observe: Instant,
    first: bool,
    reported: Option<Arc<crate::reload::ReloadStatus>>,
    /// The last candidate handled: promoted (its version may have been renamed since) or
    /// refused. It is not looked at again.
    handled: Arc<crate::reload::Candidate>,
    next_refresh: Option<Instant>,
    refreshing: Option<tokio::task::JoinHandle<()>>,
    /// When the CRM's assignments are next read for caps that count them.
    next_crm_count: Instant,
    next_sweep: Instant,
    next_heartbeat: Instant,
}

impl<'a> Leader<'a> {
    /// The set to lead with: the latest candidate once the CRM accepts it (a provisional set
    /// never routes); versions go on after the last recorded; the drain's ledger is rebuilt from
    /// the CRM and the audit.
    async fn start(
        cfg: &'a Arc<Config>,
        sets: &'a mut RuleSets,
        opts: &'a RunOptions,
        mut c: Connected,
        lease: &Lease,
    ) -> Step<Leader<'a>> {
        let leading_since = chrono::Utc::now();
        continue_versions(&c.client, cfg).await.or_halt(cfg)?;
        let candidate = sets.candidates.borrow_and_update().clone();
        let handled = candidate.clone();
        let mut live_checked = false;
        if !Arc::ptr_eq(&candidate.engine, &sets.live.load()) {
            match crm::check_rule_values(&c.client, &c.sql, &candidate.engine).await {
                Ok(()) => {
                    put_in_force(sets, &candidate).await;
                    live_checked = true;
                }
                Err(crm::RuleValuesError::Db(e)) => return Err(e).or_halt(cfg),
                Err(e) => refuse(sets, &candidate, &e),
            }
        }
        // The set in force: an id the CRM cannot hold in it is a config error (a provisional
        // set, never compiled with the CRM's directory, never routes).
        if sets.live.load().provisional {
            return Err(mapping("directory", "the rules were never compiled with the CRM's directory".into()));
        }
        if !live_checked {
            match crm::check_rule_values(&c.client, &c.sql, &sets.live.load()).await {
                Ok(()) => {}
                Err(crm::RuleValuesError::Db(e)) => return Err(e).or_halt(cfg),
                Err(e) => return Err(mapping("rules", e.to_string())),
            }
        }
        // Leading with it: the set in force takes its place in the sequence (leading again
        // with the same set changes nothing).
        let before = sets.live.load_full();
        let engine = crate::rules::put_in_force(&before);
        if !Arc::ptr_eq(&engine, &before) {
            tracing::info!(previous = %before.version, now = %engine.version, "rules version continues after the last one recorded");
            sets.reloader.renamed(&engine.version);
            sets.live.store(engine.clone());
        }
        record_set(&c.client, cfg, &engine).await.or_halt(cfg)?;
        let mut drain = Drain::new(cfg.clone(), c.sql.clone(), engine.clone(), opts.decisions.clone());
        drain.reconcile(&mut c.client).await.or_halt(cfg)?;
        drain.fence_on(lease.backend);
        drain.beat_into(lease.progress.clone());
        lease.progress.beat();
        open_lanes(cfg, &mut drain).await?;
        tracing::info!(rules = %engine.version, members = engine.members.len(), "connected and leading; draining the backlog");
        crate::telemetry::rules_in_force(&engine.version);
        drain.set_idle(&c.client, false).await.or_halt(cfg)?;
        crate::systemd::status(&format!("routing with rules {}", engine.version));
        let now = Instant::now();
        Ok(Leader {
            cfg,
            sets,
            opts,
            c,
            drain,
            people: people_of(&engine),
            engine,
            lease_lost: lease.lost.clone(),
            progress: lease.progress.clone(),
            setbacks: 0,
            leading_since,
            idle: false,
            idle_raised: None,
            next_observe: now,
            first: true,
            reported: None,
            handled,
            next_refresh: cfg.directory.as_ref().map(|d| now + d.refresh),
            refreshing: None,
            next_crm_count: now + crm_count_every(cfg),
            next_sweep: now + cfg.router.reclaim_interval,
            next_heartbeat: now,
        })
    }

    async fn run(&mut self, shutdown: &CancellationToken, notified: &mut bool) -> Step<SessionEnd> {
        // Draining goes on in rounds of about this long; between them the heartbeat, new rules
        // and the sweep get their turn.
        const ROUND: Duration = Duration::from_secs(1);
        let cfg = self.cfg;
        loop {
            crate::systemd::watchdog();
            self.progress.beat();
            if self.lease_lost.is_cancelled() {
                return Ok(SessionEnd::Lost("the leader lease was lost".into()));
            }
            self.report_status().await?;
            self.refresh_directory();
            self.pick_up_rules().await?;
            self.read_crm_count().await?;
            self.sweep_step().await?;
            let (report, caught_up) = match self.drain.drain_for(&mut self.c.client, shutdown, Some(ROUND)).await {
                Ok(round) => {
                    self.setbacks = 0;
                    round
                }
                Err(e) if !e.ends_session() => {
                    self.wait_out(&e, shutdown).await;
                    continue;
                }
                Err(e) => return Err(e).or_halt(cfg),
            };
            if caught_up {
                self.ready(notified);
            }
            self.observe(caught_up).await?;
            if shutdown.is_cancelled() {
                return Ok(stopped(&self.c.client, cfg).await);
            }
            if self.more_to_do(&report).await? {
                continue;
            }
            self.progress.beat();
            tokio::select! {
                w = self.c.wakeups.recv() => {
                    if w.is_none() {
                        return Ok(SessionEnd::Lost("the LISTEN connection closed".into()));
                    }
                    // Busy from now on: the CRM's transactions stop paying for a NOTIFY at once,
                    // not only after the first round.
                    self.busy().await?;
                }
                // Never longer than the watchdog allows between two pings, nor than the idle
                // flag holds without a renewal.
                _ = tokio::time::sleep(self.drain.poll_interval().min(ALIVE_EVERY).min(self.drain.idle_for() / 3)) => {}
                // A new candidate rule set is promoted at once, not at the next poll.
                _ = self.sets.candidates.changed() => {}
                _ = shutdown.cancelled() => return Ok(stopped(&self.c.client, cfg).await),
                _ = self.lease_lost.cancelled() => return Ok(SessionEnd::Lost("the leader lease was lost".into())),
            }
        }
    }

    /// A round that met a problem the session waits out (a statement of the queue's that timed
    /// out or met another transaction): said once per problem in a row, then tried again after a
    /// capped, jittered wait; the session and its state stay.
    async fn wait_out(&mut self, e: &crate::drain::DrainError, shutdown: &CancellationToken) {
        self.setbacks += 1;
        let wait = crate::retry::backoff(
            Duration::from_millis(100),
            self.setbacks,
            Duration::from_secs(5),
            rand::random::<f64>(),
        );
        if self.setbacks == 1 {
            tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "draining met a problem; trying again shortly");
        } else {
            tracing::debug!(error = %e, setbacks = self.setbacks, "draining met the problem again");
        }
        self.progress.beat();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => {}
        }
    }

    /// `status`'s heartbeat, and at once when the reload status changed.
    async fn report_status(&mut self) -> Step<()> {
        let now_status = self.sets.reloader.status.load_full();
        let changed = self.reported.as_ref().is_none_or(|b| !Arc::ptr_eq(&now_status, b));
        if changed || Instant::now() >= self.next_heartbeat {
            self.reported = Some(now_status);
            let people = self.people.as_deref();
            write_status(&self.c.client, self.cfg, &self.engine, people, &self.sets.reloader, self.leading_since)
                .await
                .or_halt(self.cfg)?;
            self.next_heartbeat = Instant::now() + Duration::from_secs(10);
        }
        Ok(())
    }

    /// The directory's queries and the recompile run beside routing, on a connection of their
    /// own; the new set is picked up once it is in force.
    fn refresh_directory(&mut self) {
        if self.next_refresh.is_none_or(|at| Instant::now() < at) {
            return;
        }
        if self.refreshing.as_ref().is_none_or(|h| h.is_finished()) {
            let r = &self.sets.reloader;
            self.refreshing = Some(directory::spawn_refresh(self.cfg.clone(), r.directory.clone(), r.clone()));
        }
        self.next_refresh = self.cfg.directory.as_ref().map(|d| Instant::now() + d.refresh);
    }

    /// Every `directory.refresh`, between rounds: the CRM's assignments, for caps that count
    /// them (a person's manual assignment counts from then on).
    async fn read_crm_count(&mut self) -> Step<()> {
        if Instant::now() < self.next_crm_count {
            return Ok(());
        }
        self.drain.read_crm_assigned(&mut self.c.client).await.or_halt(self.cfg)?;
        self.next_crm_count = Instant::now() + crm_count_every(self.cfg);
        Ok(())
    }

    /// A newer candidate: check its member ids against the CRM, then promote it and route with
    /// it from the next batch; refused, it never goes in force (the last good set stays).
    async fn pick_up_rules(&mut self) -> Step<()> {
        // Seen or not (the wait below marks it seen), the latest is compared with the last one
        // handled (promoted, renamed since, or refused).
        let latest = self.sets.candidates.borrow_and_update().clone();
        if Arc::ptr_eq(&latest, &self.handled) {
            return Ok(());
        }
        self.handled = latest.clone();
        if Arc::ptr_eq(&latest.engine, &self.engine) {
            // The files are back to the set in force: nothing to do.
            return Ok(());
        }
        match crm::check_rule_values(&self.c.client, self.drain.crm_sql(), &latest.engine).await {
            Ok(()) => {
                let engine = put_in_force(self.sets, &latest).await;
                record_set(&self.c.client, self.cfg, &engine).await.or_halt(self.cfg)?;
                self.people = people_of(&engine);
                self.engine = engine.clone();
                self.drain.swap_engine(&mut self.c.client, engine).await.or_halt(self.cfg)?;
                self.next_heartbeat = Instant::now();
            }
            Err(crm::RuleValuesError::Db(e)) => return Err(e).or_halt(self.cfg),
            Err(e) => refuse(self.sets, &latest, &e),
        }
        Ok(())
    }

    /// Reclaim, a step at a time between batches: routing never waits for a whole sweep.
    async fn sweep_step(&mut self) -> Step<()> {
        if !self.drain.sweeping() && Instant::now() < self.next_sweep {
            return Ok(());
        }
        let step = self.drain.sweep_step(&mut self.c.client, chrono::Utc::now()).await.or_halt(self.cfg)?;
        if let crate::drain::SweepStep::Done(_) = step {
            self.next_sweep = Instant::now() + self.cfg.router.reclaim_interval;
        }
        Ok(())
    }

    /// After the first backlog is drained: ready (for tests and for systemd, once per process).
    fn ready(&mut self, notified: &mut bool) {
        if !self.first {
            return;
        }
        self.first = false;
        if let Some(r) = &self.opts.ready {
            r.store(true, Ordering::SeqCst);
        }
        if self.opts.notify_systemd && !*notified {
            crate::systemd::ready(&format!("routing with rules {}", self.engine.version));
            *notified = true;
        }
    }

    /// Whether to drain again at once: events came, or a sweep is under way. Before waiting, the
    /// triggers are told to NOTIFY, then the queue is looked at once more (an event committed just
    /// before the flag was set did not NOTIFY).
    /// A waiting leader renews the flag before a third of its time is up (it expires, so a
    /// killed daemon's flag stops costing the CRM a NOTIFY per transaction).
    async fn more_to_do(&mut self, report: &BatchReport) -> Step<bool> {
        if report.claimed > 0 || self.drain.sweeping() {
            self.busy().await?;
            return Ok(true);
        }
        let renew = self.idle_raised.is_some_and(|at| at.elapsed() >= self.drain.idle_for() / 3);
        if !self.idle || renew {
            self.drain.set_idle(&self.c.client, true).await.or_halt(self.cfg)?;
            self.idle_raised = Some(Instant::now());
            let first = !std::mem::replace(&mut self.idle, true);
            return Ok(first);
        }
        Ok(false)
    }

    /// For `/readyz` and the metrics, after a round: how long the oldest event due has waited
    /// (none when caught up), and each team's open load. Rounds can follow each other every few
    /// milliseconds: the query and the loads are taken at most once a second.
    async fn observe(&mut self, caught_up: bool) -> Step<()> {
        let Some(h) = self.opts.health.as_deref() else { return Ok(()) };
        if caught_up {
            h.set_lag(Duration::ZERO);
        }
        if Instant::now() < self.next_observe {
            return Ok(());
        }
        self.next_observe = Instant::now() + Duration::from_secs(1);
        if !caught_up {
            h.set_lag(self.drain.oldest_pending(&self.c.client).await.or_halt(self.cfg)?);
        }
        crate::telemetry::team_loads(&self.drain.team_loads());
        crate::telemetry::team_fairness(&self.drain.team_fairness());
        crate::telemetry::held(self.drain.held_now(&self.c.client).await.or_halt(self.cfg)?);
        Ok(())
    }

    /// Tell the triggers not to NOTIFY (if they were told to).
    async fn busy(&mut self) -> Step<()> {
        if self.idle {
            self.drain.set_idle(&self.c.client, false).await.or_halt(self.cfg)?;
            self.idle = false;
            self.idle_raised = None;
        }
        Ok(())
    }
}
