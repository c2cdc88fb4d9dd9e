//! The drain: claim a batch of captured events, route the opportunities, write owners back,
//! record why, all in one transaction per batch.
//!
//! Owns the per-batch statements and their order, the members' open loads while this daemon is the
//! leader, and what happens to an event that fails (retry with backoff, then dead letter). Per
//! batch there is one query per kind of work, never one per row. It must not decide owners itself
//! (that is `engine`), nor connect, wait or watch files (that is `daemon`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_postgres::{Client, GenericClient, Transaction};

use crate::capture::ORIGIN_SETTING;
use crate::config::Config;
use crate::crm::CrmSql;
use crate::db::prepared::Prepared;
use crate::db::row::FromRow;
use crate::engine::history::{CrmCountNeed, HistoryNeed};
use crate::engine::{Engine, Ledger, Outcome, Undo};
use crate::store::Statements;
pub use crate::store::{Event, EventKind};
use rand::rngs::SmallRng;

mod claims;
mod crm_count;
mod process;
mod reclaim;
mod rounds;
mod shares;
mod skips;
pub use reclaim::SweepStep;
pub use rounds::Progress;
use rounds::{Round, Working};

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The lease no longer names this leader's session: another replica leads. Nothing of the
    /// batch was written; the session ends and stands by.
    #[error("the leader lease names another session: another replica leads now")]
    Fenced,
    /// The connection failed or the server said to go away: reconnect, nothing is lost.
    #[error("database connection problem: {}", crate::db::describe(.0))]
    Connection(tokio_postgres::Error),
    /// The server refused the daemon something no retry fixes (a missing grant, the router's
    /// schema gone): stop, and say so; no event is charged for it.
    #[error("the database refused the daemon: {}", crate::db::describe(.0))]
    Refused(tokio_postgres::Error),
    /// A statement of the mapping no longer fits the CRM (a column or function gone): end the
    /// session; the mapping is checked again on reconnect. No event is charged for it.
    #[error("the CRM no longer fits the mapping: {}", crate::db::describe(.0))]
    Mapping(tokio_postgres::Error),
    /// A statement of the drain's own (a claim, a retry, a dead letter) met another transaction
    /// or a lock it would not wait for: the session goes on and tries again shortly.
    #[error("the queue met another transaction: {}", crate::db::describe(.0))]
    Contention(tokio_postgres::Error),
    /// A statement of the drain's own ran past `router.statement_timeout` (or was cancelled):
    /// the session goes on and tries again shortly.
    #[error("a statement of the queue timed out: {}", crate::db::describe(.0))]
    Timeout(tokio_postgres::Error),
    /// A statement of the drain's own failed on the data it read or wrote: the session goes on
    /// and tries again shortly.
    #[error("a statement of the queue failed: {}", crate::db::describe(.0))]
    Row(tokio_postgres::Error),
}

impl DrainError {
    /// The error as its kind says (`db::kind_of`): what ends the session (refused: stop; the
    /// mapping: check it again; the connection: reconnect), and what the session waits out.
    pub fn from_pg(e: tokio_postgres::Error) -> DrainError {
        match crate::db::kind_of(&e) {
            crate::db::ErrorKind::Refused => DrainError::Refused(e),
            crate::db::ErrorKind::Mapping => DrainError::Mapping(e),
            crate::db::ErrorKind::Connection => DrainError::Connection(e),
            crate::db::ErrorKind::Contention => DrainError::Contention(e),
            crate::db::ErrorKind::Timeout => DrainError::Timeout(e),
            crate::db::ErrorKind::Row => DrainError::Row(e),
        }
    }

    /// Whether the session must end for it (else it waits a moment and goes on).
    pub fn ends_session(&self) -> bool {
        matches!(self, DrainError::Fenced | DrainError::Connection(_) | DrainError::Refused(_) | DrainError::Mapping(_))
    }
}

/// Whether an error ends the session (`db::ErrorKind::ends_session`).
fn ends_session(e: &tokio_postgres::Error) -> bool {
    crate::db::kind_of(e).ends_session()
}

/// How long a deferred batch's events wait before they are claimed again (`BatchReport::deferred`).
const DEFER_DELAY: Duration = Duration::from_millis(100);

/// At most this many failed events are retried (each alone) before each fresh batch.
const RETRIES_PER_BATCH: i64 = 20;

/// One decision that was committed, for the demo and for tests.
#[derive(Debug, Clone)]
pub struct Routed {
    pub opp_id: String,
    pub owner: Option<String>,
    pub team: Option<String>,
    pub outcome: Outcome,
    pub rule_id: Option<String>,
    pub pipeline: String,
    pub event_at: DateTime<Utc>,
    /// Who could have received it, and their share (`Engine::entitlement`).
    pub entitled: Vec<(Arc<str>, f64)>,
}

/// What one batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    pub claimed: usize,
    pub routed: usize,
    pub fallback: usize,
    pub held: usize,
    pub unassigned: usize,
    pub skipped: usize,
    /// Why each skipped one was not written ([`skips`]'s words), counted once committed.
    pub skipped_by: Vec<&'static str>,
    pub activities: usize,
    pub changes: usize,
    pub retried: usize,
    pub dead_lettered: usize,
    /// Events of a fresh batch that failed as a whole, processed one by one instead.
    pub isolated: usize,
    /// Opportunities a CRM transaction held locked: left for a moment, routed again shortly.
    pub locked: usize,
    /// Events whose transaction met another one (a deadlock, a serialization failure): rolled
    /// back, not charged, claimed again.
    pub contended: usize,
    /// Events of a batch that had to recount loads and found no moment without another batch in
    /// flight: given back uncharged, claimed again a moment later.
    pub deferred: usize,
    /// Where the time went, in microseconds: claim, context, route, write, record, commit.
    pub phase_us: [u64; 6],
}

impl BatchReport {
    fn add(&mut self, o: &BatchReport) {
        self.claimed += o.claimed;
        self.routed += o.routed;
        self.fallback += o.fallback;
        self.held += o.held;
        self.unassigned += o.unassigned;
        self.skipped += o.skipped;
        self.skipped_by.extend(&o.skipped_by);
        self.activities += o.activities;
        self.changes += o.changes;
        self.retried += o.retried;
        self.dead_lettered += o.dead_lettered;
        self.isolated += o.isolated;
        self.locked += o.locked;
        self.contended += o.contended;
        self.deferred += o.deferred;
        for (a, b) in self.phase_us.iter_mut().zip(o.phase_us) {
            *a += b;
        }
    }
}

/// One row of the context (or state) query: `id`, `owner`, `open`, `deleted`, `opp`, `unowned`,
/// `only_owner`, then the `pipeline` and the fields (the context query only; the fields, a list as long as the mapping's,
/// are read by position after `pipeline`). A row `locked` by a CRM transaction was read by the
/// state query: no pipeline, no fields.
pub fn context_from_row(r: &tokio_postgres::Row, locked: bool) -> Result<(String, Context), tokio_postgres::Error> {
    const FIELDS_FROM: usize = 8;
    let full = !locked && r.len() >= FIELDS_FROM;
    let c = Context {
        owner: r.try_get("owner")?,
        open: r.try_get("open")?,
        deleted: r.try_get("deleted")?,
        opportunity: r.try_get("opp")?,
        unowned: r.try_get("unowned")?,
        only_owner: r.try_get("only_owner")?,
        pipeline: if full { r.try_get("pipeline")? } else { None },
        fields: if full { (FIELDS_FROM..r.len()).map(|i| r.try_get(i)).collect::<Result<_, _>>()? } else { Vec::new() },
        locked,
    };
    Ok((r.try_get("id")?, c))
}

/// One change to the ledger made inside a batch, undone if the batch does not commit.
enum Journal {
    Assign(Undo),
    /// An assignment taken back because its write did not happen (the row was owned meanwhile).
    Unassigned(usize, i64),
    /// An assignment a write statement made to another member than the one picked.
    Assigned(usize, i64),
    /// A member's open load moved by this much (a recount, a reclaim moving a load).
    Moved(usize, i64),
}

/// Undo a journal, newest first. `alone`: no other transaction used the ledger since, so the pick
/// state and away flags go back as they were too; otherwise only loads and histories are taken
/// back (they add up in any order), and the turns other batches took since stay.
fn undo_journal(ledger: &mut Ledger, journal: Vec<Journal>, alone: bool) {
    for j in journal.into_iter().rev() {
        match j {
            Journal::Assign(u) if alone => ledger.undo(&u),
            Journal::Assign(u) => ledger.undo_load(&u),
            Journal::Unassigned(m, at) => ledger.assign(m, at),
            Journal::Assigned(m, at) => ledger.unassign(m, at),
            Journal::Moved(m, by) => ledger.open[m] = (ledger.open[m] - by).max(0),
        }
    }
}

/// Set a member's open load, journaled as the move it is.
fn set_open(ledger: &mut Ledger, journal: &mut Vec<Journal>, m: usize, open: i64) {
    journal.push(Journal::Moved(m, open - ledger.open[m]));
    ledger.open[m] = open;
}

/// The ledger, even if a panic elsewhere poisoned its lock (it is only ever changed whole, a
/// decision at a time, and every change is journaled).
fn lock_ledger(l: &std::sync::Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The ledger lent to one batch's transaction, a phase at a time ([`LedgerTx::with`]): batches on
/// other connections route in between, and see this one's assignments (so caps hold while both are
/// in flight). Its changes are kept by [`LedgerTx::commit`] once the transaction committed and
/// undone otherwise (an error, an early return or a dropped future alike): the ledger never holds
/// what the database does not.
///
/// It also holds the batch's place at the gate ([`LedgerTx::enter`]) until it commits or rolls
/// back: a batch that recounts loads from the CRM does so alone, when no other batch has
/// assignments in flight that the count could not see.
struct LedgerTx<'a> {
    ledger: &'a std::sync::Mutex<Ledger>,
    /// Bumped by every use of the ledger: whether anybody used it after this transaction did.
    uses: &'a AtomicU64,
    last_use: u64,
    gate: &'a tokio::sync::RwLock<()>,
    held: Gate<'a>,
    journal: Vec<Journal>,
    /// Explanations this transaction stored, learned when it commits.
    explained: &'a Explained,
    learned: Vec<ExplanationKey>,
    committed: bool,
}

/// A batch's place at the gate.
enum Gate<'a> {
    Out,
    /// Held for its drop (the place is given up with it).
    Shared {
        _held: tokio::sync::RwLockReadGuard<'a, ()>,
    },
    Alone {
        held: tokio::sync::RwLockWriteGuard<'a, ()>,
    },
}

impl<'a> LedgerTx<'a> {
    fn new(
        ledger: &'a std::sync::Mutex<Ledger>,
        uses: &'a AtomicU64,
        gate: &'a tokio::sync::RwLock<()>,
        explained: &'a Explained,
    ) -> Self {
        let (journal, learned) = (Vec::new(), Vec::new());
        LedgerTx { ledger, uses, last_use: 0, gate, held: Gate::Out, journal, explained, learned, committed: false }
    }

    /// Use the ledger for one phase (never across an await).
    fn with<R>(&mut self, f: impl FnOnce(&mut Ledger, &mut Vec<Journal>) -> R) -> R {
        let mut ledger = lock_ledger(self.ledger);
        self.last_use = self.uses.fetch_add(1, Ordering::SeqCst) + 1;
        f(&mut ledger, &mut self.journal)
    }

    /// Take a place at the gate: alone (no other batch in flight) to recount loads, else shared.
    /// Alone, it never queues (a queued recount would hold up every batch behind one that takes
    /// long): it looks for a moment when no batch is in flight, for at most `wait`; false when
    /// none came (the batch is then given back and claimed again a moment later).
    async fn enter(&mut self, alone: bool, wait: Duration) -> bool {
        match self.held {
            Gate::Out => {}
            Gate::Alone { .. } => return true,
            // A shared place is never made exclusive: the batch is given back instead.
            Gate::Shared { .. } => return !alone,
        }
        if !alone {
            self.held = Gate::Shared { _held: self.gate.read().await };
            return true;
        }
        let until = Instant::now() + wait;
        loop {
            if let Ok(held) = self.gate.try_write() {
                self.held = Gate::Alone { held };
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            rounds::moment().await;
        }
    }

    /// The recount is done: other batches may go on beside this one.
    fn share(&mut self) {
        self.held = match std::mem::replace(&mut self.held, Gate::Out) {
            Gate::Alone { held } => Gate::Shared { _held: held.downgrade() },
            other => other,
        };
    }

    /// The transaction committed: its changes stay, and the explanations it stored are known.
    fn commit(mut self) {
        self.committed = true;
        self.explained.learn(std::mem::take(&mut self.learned));
    }
}

impl Drop for LedgerTx<'_> {
    fn drop(&mut self) {
        if !self.committed && !self.journal.is_empty() {
            let mut ledger = lock_ledger(self.ledger);
            let alone = self.uses.load(Ordering::SeqCst) == self.last_use;
            undo_journal(&mut ledger, std::mem::take(&mut self.journal), alone);
        }
        // The place at the gate is given up after the undo (the fields drop after this).
    }
}

/// The ledger taken out whole by one transaction that runs alone (a reclaim sweep's batch),
/// put back when it ends: with its changes once [`LedgerOut::commit`] was called, undone
/// otherwise.
struct LedgerOut<'a> {
    slot: &'a std::sync::Mutex<Ledger>,
    ledger: Ledger,
    journal: Vec<Journal>,
    committed: bool,
}

impl<'a> LedgerOut<'a> {
    fn take(slot: &'a std::sync::Mutex<Ledger>) -> LedgerOut<'a> {
        let ledger = std::mem::take(&mut *lock_ledger(slot));
        LedgerOut { slot, ledger, journal: Vec::new(), committed: false }
    }

    fn parts(&mut self) -> (&mut Ledger, &mut Vec<Journal>) {
        (&mut self.ledger, &mut self.journal)
    }

    fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for LedgerOut<'_> {
    fn drop(&mut self) {
        if !self.committed {
            undo_journal(&mut self.ledger, std::mem::take(&mut self.journal), true);
        }
        *lock_ledger(self.slot) = std::mem::take(&mut self.ledger);
    }
}

/// A batch's transaction and the statements prepared on its connection.
struct BatchTx<'t> {
    tx: &'t Transaction<'t>,
    prep: &'t Prepared,
}

impl BatchTx<'_> {
    async fn query(
        &self,
        sql: &str,
        p: crate::db::prepared::Params<'_>,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        self.prep.query(self.tx, sql, p).await
    }

    async fn execute(&self, sql: &str, p: crate::db::prepared::Params<'_>) -> Result<u64, tokio_postgres::Error> {
        self.prep.execute(self.tx, sql, p).await
    }
}

/// A connection the drain works on, and the statements prepared on it.
struct Conn<'c> {
    client: &'c mut Client,
    prep: &'c Prepared,
}

/// One more connection the drain works on beside the session's own, on batches of its own
/// (`router.drain_connections`). While it is open it holds the lanes' shared advisory lock, so a
/// replica taking over ends it as it ends the old leader's session (`daemon::lease`).
pub struct Lane {
    client: Client,
    prep: Prepared,
}

impl Lane {
    /// A lane on `client` (a connection of its own): it takes the lanes' lock first.
    pub async fn start(client: Client, cfg: &Config) -> Result<Lane, tokio_postgres::Error> {
        client.execute(crate::store::LANE_LOCK, &[&crate::store::lane_key(&cfg.router.schema)]).await?;
        Ok(Lane { client, prep: Prepared::new() })
    }

    /// The lane's connection.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

pub struct Context {
    pub owner: Option<String>,
    pub open: bool,
    pub deleted: bool,
    /// The row is an opportunity at all (`opportunity.where`); leads in a shared table are not.
    pub opportunity: bool,
    /// Nobody owns it, in the CRM's own words (`opportunity.unowned_when`, else the owner column).
    pub unowned: bool,
    /// Nobody would own it were its owner column cleared: no person's assignment elsewhere in the
    /// row, so a reclaim may hand it on.
    pub only_owner: bool,
    pub pipeline: Option<String>,
    pub fields: Vec<Option<String>>,
    /// Read without its fields because a CRM transaction holds the row: not routed now.
    pub locked: bool,
}

/// The drain's state for one leader session.
pub struct Drain {
    cfg: Arc<Config>,
    sql: CrmSql,
    engine: Arc<Engine>,
    /// Lent to batch transactions a phase at a time ([`LedgerTx`]), or taken out whole by one
    /// that runs alone ([`LedgerOut`]).
    ledger: std::sync::Mutex<Ledger>,
    /// Uses of the ledger so far ([`LedgerTx::with`]).
    uses: AtomicU64,
    /// Batches in flight share it; one that recounts loads holds it alone ([`LedgerTx::enter`]).
    gate: tokio::sync::RwLock<()>,
    /// More connections, each draining batches of its own beside the session's.
    lanes: Vec<Lane>,
    /// Explanations known to be stored.
    explained: Explained,
    /// Claims tried and batches that found events, per connection (the session's first, then each lane's).
    batches: std::sync::Mutex<Vec<Tries>>,
    /// The leader session's backend: each batch's transaction first checks that the lease still
    /// names it (and holds the lease row, so a replica taking over waits for the batch to end).
    fence: Option<i32>,
    /// Beats after every round: the lease is renewed only while it does (`daemon::lease`).
    progress: Arc<Progress>,
    rng: std::sync::Mutex<SmallRng>,
    decisions: Option<mpsc::UnboundedSender<Routed>>,
    /// The statements over the router's own tables.
    store: Statements,
    /// Statements prepared on this session's connection (a drain lives one leader session).
    prep: Prepared,
    /// Per pipeline, the rule set version and reclaim fingerprint its stored due times were
    /// last aligned with.
    aligned: HashMap<String, (String, String)>,
    /// The rule set for which the sweeper said it cannot reclaim (no reclaim write configured).
    said_no_reclaim: Option<String>,
    /// A reclaim sweep under way, taken a step at a time between batches.
    sweeping: Option<reclaim::Sweep>,
    /// The past the ledger holds: what the rule set in force needs ([`HistoryNeed`]).
    history: HistoryNeed,
    /// Whether the last round left a backlog (a connection's last batch came back full): then
    /// every connection drains in the next, else only the first [`STEADY_CONNECTIONS`].
    backlog: bool,
    /// What each member received and could expect per team since this leader started.
    shares: std::sync::Mutex<shares::Shares>,
}

/// A connection's batches: claims tried, and those that found events.
#[derive(Debug, Clone, Copy, Default)]
struct Tries {
    tried: usize,
    claimed: usize,
}

/// Events done with (committed), by kind, for the metrics.
fn count_drained(events: &[Event]) {
    let kinds = [EventKind::Route, EventKind::Changed, EventKind::Activity, EventKind::Edit];
    for kind in kinds {
        let n = events.iter().filter(|e| e.kind == kind).count() as u64;
        if n > 0 {
            metrics::counter!("oppty_router_events_drained_total", "kind" => kind.as_str()).increment(n);
        }
    }
}

/// The phases of a batch, in the order of [`BatchReport::phase_us`].
const PHASES: [&str; 6] = ["claim", "context", "route", "write", "record", "commit"];

/// How many connections serve a steady stream of events; the others join during a backlog.
pub const STEADY_CONNECTIONS: usize = 2;

impl Drain {
    pub fn new(
        cfg: Arc<Config>,
        sql: CrmSql,
        engine: Arc<Engine>,
        decisions: Option<mpsc::UnboundedSender<Routed>>,
    ) -> Drain {
        Drain {
            store: Statements::new(&cfg.router.schema),
            prep: Prepared::new(),
            ledger: std::sync::Mutex::new(Ledger::for_engine(&engine, None)),
            uses: AtomicU64::new(0),
            gate: tokio::sync::RwLock::new(()),
            lanes: Vec::new(),
            batches: std::sync::Mutex::new(vec![Tries::default()]),
            explained: Explained::default(),
            fence: None,
            progress: Arc::new(Progress::new()),
            engine,
            rng: std::sync::Mutex::new(rand::make_rng::<SmallRng>()),
            cfg,
            sql,
            decisions,
            aligned: HashMap::new(),
            said_no_reclaim: None,
            sweeping: None,
            history: HistoryNeed::default(),
            // A new leader may find a backlog: every connection starts.
            backlog: true,
            shares: std::sync::Mutex::default(),
        }
    }

    /// The rule set this drain routes with.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The CRM statements this drain uses.
    pub fn crm_sql(&self) -> &CrmSql {
        &self.sql
    }

    /// Rebuild the ledger from the database (on becoming leader): every member's open load from
    /// the CRM, recent assignments for windowed caps, round-robin state. Stores the loads.
    pub async fn reconcile(&mut self, client: &mut Client) -> Result<(), DrainError> {
        let engine = self.engine.clone();
        let mut ledger = Ledger::for_engine(&engine, None);
        let pg = DrainError::from_pg;
        let loads = self.prep.query(client, &self.sql.full_count, &[]).await.map_err(pg)?;
        for r in crate::crm::Load::from_rows(&loads).map_err(pg)? {
            if let Some(m) = engine.member_index(&r.owner) {
                ledger.open[m] = r.open;
            }
        }
        let need = HistoryNeed::of(&engine);
        self.read_history(client, &engine, &need, &mut ledger).await?;
        self.history = need;
        let states = self.prep.query(client, &self.store.pick_states, &[]).await.map_err(pg)?;
        for r in crate::store::PickState::from_rows(&states).map_err(pg)? {
            if let Some(c) = r.cursor {
                ledger.cursors.insert(r.rule_key.clone(), c);
            }
            if let Ok(w) = serde_json::from_value::<HashMap<String, i64>>(r.weights) {
                if !w.is_empty() {
                    ledger.weights.insert(r.rule_key, w);
                }
            }
        }
        let members: Vec<String> = engine.member_ids().map(str::to_string).collect();
        let counts: Vec<i32> = ledger.open.iter().map(|v| clamp_i32(*v)).collect();
        let zeros = vec![0i64; members.len()];
        self.prep.execute(client, &self.store.member_state, &[&members, &counts, &zeros]).await.map_err(pg)?;
        *lock_ledger(&self.ledger) = ledger;
        self.refresh_pauses(client).await.map_err(DrainError::from_pg)?;
        self.read_crm_assigned(client).await
    }

    /// Route with a new rule set from the next batch on. The ledger is carried over by member id;
    /// members new to this set have their open load counted from the CRM.
    pub async fn swap_engine(&mut self, client: &mut Client, engine: Arc<Engine>) -> Result<(), DrainError> {
        let mut ledger = Ledger::for_engine(&engine, Some((&self.engine, &lock_ledger(&self.ledger))));
        let new: Vec<String> =
            engine.member_ids().filter(|id| self.engine.member_index(id).is_none()).map(str::to_string).collect();
        if !new.is_empty() {
            let rows = self.prep.query(client, &self.sql.recount, &[&new]).await.map_err(DrainError::from_pg)?;
            for r in crate::crm::Load::from_rows(&rows).map_err(DrainError::from_pg)? {
                if let Some(m) = engine.member_index(&r.owner) {
                    ledger.open[m] = r.open;
                }
            }
        }
        // Between rounds: every batch committed, so the table holds all the ledger would.
        let need = HistoryNeed::of(&engine);
        if !self.history.covers(&need) {
            self.read_history(client, &engine, &need, &mut ledger).await?;
        }
        self.history = need;
        *lock_ledger(&self.ledger) = ledger;
        let crm_need_changed = CrmCountNeed::of(&engine) != CrmCountNeed::of(&self.engine);
        self.engine = engine;
        if crm_need_changed {
            self.read_crm_assigned(client).await?;
        }
        Ok(())
    }

    /// Replace the ledger's past with what `need` asks of the assignments table: per member its
    /// latest assignments (oldest first), per membership with a team's own cap those through it.
    async fn read_history(
        &self,
        client: &mut Client,
        engine: &Engine,
        need: &HistoryNeed,
        ledger: &mut Ledger,
    ) -> Result<(), DrainError> {
        let pg = DrainError::from_pg;
        let (members, teams, depths) = need.columns();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&members, &teams, &depths, &need.window];
        let rows = self.prep.query(client, &self.store.history, &params).await.map_err(pg)?;
        ledger.recent.iter_mut().for_each(VecDeque::clear);
        ledger.recent_here.clear();
        for r in crate::store::Recent::from_rows(&rows).map_err(pg)? {
            let Some(m) = engine.member_index(&r.owner_id) else { continue };
            match r.team_id.and_then(|t| engine.team_index.get(&t).copied()) {
                Some(t) => ledger.assign_here(&engine.members[m].id, &engine.teams[t].id, r.at),
                None => ledger.recent[m].push_back(r.at),
            }
        }
        ledger.recent.iter_mut().for_each(|q| q.make_contiguous().sort_unstable());
        Ok(())
    }

    /// Each team's open load (its members' open opportunities) as this leader knows it.
    pub fn team_loads(&self) -> Vec<(Arc<str>, i64)> {
        let ledger = lock_ledger(&self.ledger);
        let open = |m: &usize| ledger.open.get(*m).copied().unwrap_or(0);
        self.engine.teams.iter().map(|t| (t.id.clone(), t.members.iter().map(open).sum())).collect()
    }

    /// Each team's fairness since this leader started (received against expected by the rules).
    pub fn team_fairness(&self) -> Vec<(Arc<str>, crate::report::Fairness)> {
        self.shares.lock().unwrap_or_else(|p| p.into_inner()).fairness()
    }

    /// The open load of a member as this leader knows it (0 while a transaction has the ledger).
    pub fn load_of(&self, member: &str) -> i64 {
        let Ok(ledger) = self.ledger.try_lock() else { return 0 };
        self.engine.member_index(member).map_or(0, |m| ledger.open.get(m).copied().unwrap_or(0))
    }

    /// The ledger, lent to one transaction.
    fn lend(&self) -> LedgerTx<'_> {
        LedgerTx::new(&self.ledger, &self.uses, &self.gate, &self.explained)
    }

    /// Add a connection to drain on (`router.drain_connections`), beside the session's own.
    pub fn add_lane(&mut self, lane: Lane) {
        self.lanes.push(lane);
        self.batches.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).push(Tries::default());
    }

    /// Batches that claimed events so far, per connection: the session's, then each lane's.
    pub fn batches_per_connection(&self) -> Vec<usize> {
        self.batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|t| t.claimed).collect()
    }

    /// Claims tried so far, per connection, whether they found events or not.
    pub fn claims_per_connection(&self) -> Vec<usize> {
        self.batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|t| t.tried).collect()
    }

    /// Beat `progress` after every round (the lease renewer watches it).
    pub fn beat_into(&mut self, progress: Arc<Progress>) {
        self.progress = progress;
    }

    /// Fence every batch on the leader session `backend` (see [`Drain::fence`]).
    pub fn fence_on(&mut self, backend: i32) {
        self.fence = Some(backend);
    }

    /// A transaction of the router's: its writes carry `oppty_router.origin = 'router'`, which
    /// the capture triggers skip (the router never hears its own writes as a person's change).
    /// Fenced, it first holds the lease row while the lease still names this leader's session;
    /// otherwise the session is over (another replica leads).
    async fn begin<'c>(&self, client: &'c mut Client, prep: &Prepared) -> Result<Transaction<'c>, DrainError> {
        let tx = client.transaction().await.map_err(DrainError::from_pg)?;
        self.mark(&tx, prep).await?;
        Ok(tx)
    }

    /// The origin and the fence of a transaction just begun ([`Drain::begin`]), sent together (one
    /// round trip, and the batch's first statement can go with them).
    async fn mark(&self, tx: &Transaction<'_>, prep: &Prepared) -> Result<(), DrainError> {
        let pg = DrainError::from_pg;
        let origin = format!("SET LOCAL {ORIGIN_SETTING} = 'router'");
        let Some(pid) = self.fence else {
            return tx.batch_execute(&origin).await.map_err(pg);
        };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&pid];
        let (set, held) = tokio::join!(tx.batch_execute(&origin), prep.query_opt(tx, &self.store.fence, &params));
        set.map_err(pg)?;
        if held.map_err(pg)?.is_none() {
            return Err(DrainError::Fenced);
        }
        Ok(())
    }

    /// Process the retries that are due, each alone, then claim and process one batch of fresh
    /// events, on the session's connection. Returns how many events were claimed (0 = nothing to do).
    pub async fn batch(&mut self, client: &mut Client) -> Result<BatchReport, DrainError> {
        let prep = std::mem::take(&mut self.prep);
        let result = self.batch_on(&mut Conn { client, prep: &prep }, 0).await;
        self.prep = prep;
        result
    }

    /// One batch on connection `n` of `conn` (0: the session's): the events due again first, each
    /// alone, then a fresh batch; counted in [`Drain::claims_per_connection`], and in
    /// [`Drain::batches_per_connection`] when it claimed anything. (An event that ends the session
    /// charges only itself: the other connections' claims are given back as the session ends.)
    async fn batch_on(&self, conn: &mut Conn<'_>, n: usize) -> Result<BatchReport, DrainError> {
        let started = Instant::now();
        let mut report = self.retries(conn, n).await?;
        let fresh = self.fresh(conn).await?;
        report.add(&fresh);
        if report.claimed + report.contended + report.deferred > 0 {
            self.log_batch(&report, started);
        }
        if let Some(b) = self.batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(n) {
            b.tried += 1;
            b.claimed += usize::from(report.claimed > 0);
        }
        Ok(report)
    }

    /// Claim a batch of fresh events, charging each an attempt in the claim's own statement (it
    /// stands whatever becomes of the batch: a crash counts), and process them in one transaction;
    /// if it fails for something about the rows, process them one by one.
    async fn fresh(&self, conn: &mut Conn<'_>) -> Result<BatchReport, DrainError> {
        let started = Instant::now();
        let limit = i64::from(self.cfg.router.batch_size);
        let prep = conn.prep;
        let rows = prep.query(conn.client, &self.store.claim, &[&limit, &self.fence]).await;
        let events = rows.and_then(|r| Event::from_rows(&r)).map_err(DrainError::from_pg)?;
        if events.is_empty() {
            return Ok(BatchReport::default());
        }
        let mut lent = self.lend();
        let (events, deferred) = self.enter_or_defer(conn, &mut lent, events).await?;
        if events.is_empty() {
            return Ok(BatchReport { deferred, ..Default::default() });
        }
        let tx = conn.client.transaction().await.map_err(DrainError::from_pg)?;
        // The claim taken with the origin and the fence: a fenced batch writes nothing.
        let events = self.take(&tx, prep, events).await?;
        let claim_us = started.elapsed().as_micros() as u64;
        if events.is_empty() {
            tx.rollback().await.map_err(DrainError::from_pg)?;
            return Ok(BatchReport { deferred, ..Default::default() });
        }
        let result = self.process(&BatchTx { tx: &tx, prep }, &events, &mut lent).await;
        if result.as_ref().is_ok_and(|(r, _)| r.deferred > 0) {
            drop((tx, lent)); // nothing was done: rolled back
            self.refund(conn, &events, DEFER_DELAY).await?;
            return Ok(BatchReport { deferred: events.len(), ..Default::default() });
        }
        let result = match result {
            Ok(ok) => {
                let commit_started = Instant::now();
                tx.commit().await.map(|()| (ok, commit_started.elapsed().as_micros() as u64))
            }
            Err(e) => {
                drop(tx); // rolls back
                Err(e)
            }
        };
        let report = match result {
            Ok(((mut report, routed), commit_us)) => {
                lent.commit();
                report.deferred += deferred;
                report.phase_us[0] = claim_us;
                report.phase_us[5] = commit_us;
                report.claimed = events.len();
                count_drained(&events);
                self.publish(routed, &report);
                report
            }
            Err(e) => {
                drop(lent); // undone
                self.batch_failed(conn, &events, e).await?
            }
        };
        Ok(report)
    }

    /// The one line per batch, at info.
    fn log_batch(&self, report: &BatchReport, started: Instant) {
        metrics::counter!("oppty_router_dead_letters_total").increment(report.dead_lettered as u64);
        for (phase, us) in PHASES.iter().zip(report.phase_us) {
            metrics::histogram!("oppty_router_batch_phase_seconds", "phase" => *phase).record(us as f64 / 1e6);
        }
        tracing::info!(
            events = report.claimed,
            routed = report.routed,
            fallback = report.fallback,
            held = report.held,
            unassigned = report.unassigned,
            skipped = report.skipped,
            activities = report.activities,
            changes = report.changes,
            retried = report.retried,
            dead_lettered = report.dead_lettered,
            isolated = report.isolated,
            locked = report.locked,
            contended = report.contended,
            deferred = report.deferred,
            rules = %self.engine.version,
            ms = started.elapsed().as_millis() as u64,
            claim_us = report.phase_us[0],
            context_us = report.phase_us[1],
            route_us = report.phase_us[2],
            write_us = report.phase_us[3],
            record_us = report.phase_us[4],
            commit_us = report.phase_us[5],
            "batch"
        );
    }

    /// Committed decisions: counted for the metrics, sent to whoever listens (the demo); the
    /// batch's skips counted by why.
    fn publish(&self, routed: Vec<Routed>, report: &BatchReport) {
        for reason in &report.skipped_by {
            metrics::counter!("oppty_router_skipped_total", "reason" => *reason).increment(1);
        }
        let now = Utc::now();
        // Counted per distinct (pipeline, rule, outcome) of the batch: labels are built a few
        // times a batch, not once a decision. Only final outcomes: a hold is a wait (the
        // `oppty_router_held_opportunities` gauge), counted once it ends. Label values are the
        // rules' own: a pipeline or rule the rule files do not name is `other`.
        let mut counts: HashMap<(&str, &str, &'static str), u64> = HashMap::new();
        let insert_to_owner = metrics::histogram!("oppty_router_insert_to_owner_seconds");
        for r in routed.iter().filter(|r| r.outcome != crate::engine::Outcome::Held) {
            let (pipeline, rule) = crate::telemetry::bounded_labels(&self.engine, &r.pipeline, r.rule_id.as_deref());
            *counts.entry((pipeline, rule, r.outcome.as_str())).or_default() += 1;
            if r.owner.is_some() {
                insert_to_owner.record((now - r.event_at).to_std().unwrap_or_default().as_secs_f64());
            }
        }
        for ((pipeline, rule, outcome), n) in counts {
            let labels =
                [("pipeline", pipeline.to_string()), ("rule", rule.to_string()), ("outcome", outcome.to_string())];
            metrics::counter!("oppty_router_decisions_total", &labels).increment(n);
        }
        {
            let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
            routed.iter().for_each(|r| shares.add(r));
        }
        if let Some(tx) = &self.decisions {
            for r in routed {
                let _ = tx.send(r);
            }
        }
    }

    /// The context of these opportunities: owner, open, deleted, pipeline, fields for those to
    /// route (one query), and the state alone for those that only changed (one more). With
    /// `lock`, the rows to route are locked, and those a CRM transaction holds come back with
    /// their state alone, marked `locked`.
    async fn load_context(
        &self,
        t: &BatchTx<'_>,
        ids: &[String],
        state_ids: &[String],
        lock: bool,
    ) -> Result<HashMap<String, Context>, tokio_postgres::Error> {
        let locking = self.sql.context_locking.as_ref().filter(|_| lock);
        let full = async {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            t.query(locking.unwrap_or(&self.sql.context), &[&ids]).await
        };
        let state = async {
            if state_ids.is_empty() {
                return Ok(Vec::new());
            }
            t.query(&self.sql.state, &[&state_ids]).await
        };
        let (full, state) = tokio::join!(full, state);
        let mut both = first_cause([full, state])?.into_iter();
        let (full, state) = (both.next().unwrap_or_default(), both.next().unwrap_or_default());
        let mut ctx = HashMap::with_capacity(full.len() + state.len());
        for r in full.iter().chain(&state) {
            let (id, c) = context_from_row(r, false)?;
            ctx.insert(id, c);
        }
        let skipped: Vec<&String> = ids.iter().filter(|i| !ctx.contains_key(*i)).collect();
        if locking.is_some() && !skipped.is_empty() {
            // Not returned: deleted, or locked by a CRM transaction (then its state says so).
            for r in t.query(&self.sql.state, &[&skipped]).await? {
                let (id, c) = context_from_row(&r, true)?;
                ctx.insert(id, c);
            }
        }
        Ok(ctx)
    }

    /// Tell the triggers whether to NOTIFY (only while the daemon is idle).
    pub async fn set_idle<C: GenericClient + Sync>(&self, client: &C, idle: bool) -> Result<(), DrainError> {
        let ms = self.idle_for().as_secs_f64() * 1000.0;
        self.prep.execute(client, &self.store.idle, &[&idle, &ms]).await.map_err(DrainError::from_pg)?;
        Ok(())
    }

    /// Drain until every connection finds the queue empty, or `stop` says so between batches: on
    /// the session's connection and on each lane at once, each claiming batches of its own.
    pub async fn drain_all(
        &mut self,
        client: &mut Client,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<BatchReport, DrainError> {
        Ok(self.drain_for(client, stop, None).await?.0)
    }

    /// Like [`Drain::drain_all`], for at most about `limit` (a batch under way is finished), so
    /// the session can see to its other duties between rounds. Also says whether the backlog is
    /// worked off: each connection's last batch came back short.
    pub async fn drain_for(
        &mut self,
        client: &mut Client,
        stop: &tokio_util::sync::CancellationToken,
        limit: Option<Duration>,
    ) -> Result<(BatchReport, bool), DrainError> {
        let until = limit.map(|l| Instant::now() + l);
        let prep = std::mem::take(&mut self.prep);
        let mut lanes = std::mem::take(&mut self.lanes);
        // Past the first two, connections join only while there is a backlog: a steady stream
        // split more ways is only more, smaller batches, each a commit of its own.
        let joining = if self.backlog { lanes.len() } else { lanes.len().min(STEADY_CONNECTIONS - 1) };
        let progress = self.progress.clone();
        let working = Working::new(1 + joining, &progress);
        let result = {
            let this = &*self;
            let round = Round { stop, until, working: &working };
            let main =
                async { this.drain_on(Conn { client: &mut *client, prep: &prep }, 0, round).await.map_err(|e| (0, e)) };
            let others = (lanes.iter_mut().take(joining).enumerate()).map(|(i, l)| async move {
                this.drain_on(Conn { client: &mut l.client, prep: &l.prep }, i + 1, round).await.map_err(|e| (i + 1, e))
            });
            // The first error ends the session: the other lanes' batches are dropped (rolled back, undone).
            futures_util::future::try_join(main, futures_util::future::try_join_all(others)).await
        };
        self.prep = prep;
        self.lanes = lanes;
        let ((mut total, mut caught_up), others) = match result {
            Ok(v) => {
                self.progress.beat();
                v
            }
            Err((failed, e)) => {
                self.give_back_all_but(client, failed).await;
                return Err(e);
            }
        };
        for (r, c) in &others {
            total.add(r);
            caught_up &= c;
        }
        self.backlog = !caught_up;
        Ok((total, caught_up))
    }

    /// Batches on connection `n` (0: the session's) while there are events, until the round ends.
    /// Also says whether its last batch came back short. A connection with nothing more to do
    /// waits for the others, looking for new events every poll meanwhile.
    async fn drain_on(
        &self,
        mut conn: Conn<'_>,
        n: usize,
        round: Round<'_>,
    ) -> Result<(BatchReport, bool), DrainError> {
        let mut total = BatchReport::default();
        let poll = self.cfg.router.poll_interval.min(Duration::from_millis(100));
        loop {
            crate::systemd::watchdog();
            round.working.in_batch(n, true);
            let r = self.batch_on(&mut conn, n).await?;
            round.working.in_batch(n, false);
            total.add(&r);
            let short = r.claimed < self.cfg.router.batch_size as usize && r.contended == 0;
            let more = r.claimed > 0 || r.contended > 0 || r.deferred > 0;
            if more && !round.over() {
                continue;
            }
            if round.working.rest() || !round.working.wait(&round, poll).await {
                return Ok((total, short));
            }
        }
    }

    /// How long a raised idle flag holds unless renewed: a leader's lease (a leader gone for
    /// longer is taken over anyway).
    pub fn idle_for(&self) -> Duration {
        self.cfg.router.leader_lease
    }

    /// How long the oldest event due has waited (zero when none is).
    pub async fn oldest_pending(&self, client: &Client) -> Result<Duration, DrainError> {
        let row = self.prep.query_one(client, &self.store.oldest_pending, &[]).await.map_err(DrainError::from_pg)?;
        let secs: f64 = row.try_get("secs").map_err(DrainError::from_pg)?;
        Ok(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or_default())
    }

    /// How many opportunities are held now (waiting for capacity, an away team or fields).
    pub async fn held_now(&self, client: &Client) -> Result<i64, DrainError> {
        let row = self.prep.query_one(client, &self.store.held_now, &[]).await.map_err(DrainError::from_pg)?;
        row.try_get("n").map_err(DrainError::from_pg)
    }

    /// How long to wait between polls.
    pub fn poll_interval(&self) -> Duration {
        self.cfg.router.poll_interval
    }
}

/// What a batch left unowned (with why), and what it owned, saw closed or gone: the `unrouted`
/// table's changes. The last word about an opportunity in the batch wins.
#[derive(Default)]
struct Unrouted {
    clear: Vec<String>,
    park: HashMap<String, (&'static str, String, String)>,
}

impl Unrouted {
    fn clear(&mut self, id: &str) {
        self.park.remove(id);
        self.clear.push(id.to_string());
    }

    fn note(&mut self, id: &str, d: &crate::engine::Decision) {
        let ex = &d.explanation;
        let parked = match d.outcome {
            Outcome::Held => {
                let why = ex.held.as_deref().unwrap_or("held");
                Some(("held", why.split("; held until").next().unwrap_or(why).to_string()))
            }
            Outcome::Unassigned => {
                let why = ex.fallback.as_deref().unwrap_or("no rule yielded anybody");
                Some(("unassigned", ex.note.as_ref().map_or_else(|| why.to_string(), |n| format!("{n}; {why}"))))
            }
            _ => None,
        };
        match parked {
            Some((outcome, reason)) => {
                self.park.insert(id.to_string(), (outcome, reason, d.pipeline.clone()));
            }
            None => self.clear(id),
        }
    }

    /// The write statement refused a row nobody has: left unowned until it is fixed (`backfill`
    /// queues such rows again).
    fn unwritten(&mut self, id: &str, pipeline: &str) {
        self.park.insert(id.to_string(), ("unwritten", skips::REFUSED.to_string(), pipeline.to_string()));
    }

    fn is_empty(&self) -> bool {
        self.clear.is_empty() && self.park.is_empty()
    }

    /// `(ids to clear, (ids, outcomes, reasons, pipelines) to park)`, disjoint.
    #[allow(clippy::type_complexity)]
    fn into_columns(self) -> (Vec<String>, (Vec<String>, Vec<&'static str>, Vec<String>, Vec<String>)) {
        let clear: Vec<String> = self.clear.into_iter().filter(|id| !self.park.contains_key(id)).collect();
        let mut park = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, (outcome, reason, pipeline)) in self.park {
            park.0.push(id);
            park.1.push(outcome);
            park.2.push(reason);
            park.3.push(pipeline);
        }
        (clear, park)
    }
}

/// An explanation's key in the store: the first 16 bytes of the SHA-256 of its JSON text.
type ExplanationKey = [u8; 16];

fn explanation_key(text: &str) -> ExplanationKey {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// The keys of explanations known to be in the store (their batch committed): a batch sends the
/// text of new ones only. Bounded: when full it starts over (a forgotten one is sent again, and the
/// store keeps its first copy).
#[derive(Default)]
struct Explained(std::sync::Mutex<HashSet<ExplanationKey>>);

impl Explained {
    const MAX: usize = 100_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<ExplanationKey>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// These were committed.
    fn learn(&self, keys: Vec<ExplanationKey>) {
        let mut known = self.lock();
        if known.len() + keys.len() > Self::MAX {
            known.clear();
        }
        known.extend(keys);
    }
}

#[derive(Default)]
struct AuditCols {
    opp: Vec<String>,
    owner: Vec<Option<String>>,
    team: Vec<Option<String>>,
    previous: Vec<Option<String>>,
    outcome: Vec<String>,
    pipeline: Vec<String>,
    rule: Vec<Option<String>>,
    /// Each row's explanation, as JSON text, and its key.
    explanation: Vec<String>,
    key: Vec<ExplanationKey>,
    event_at: Vec<DateTime<Utc>>,
    /// What each decision saw (`engine::seen`, JSON), when it was a routing decision.
    seen: Vec<Option<String>>,
}

impl AuditCols {
    /// The rows whose `keep` is true.
    fn retain(self, keep: &[bool]) -> AuditCols {
        fn pick<T>(v: Vec<T>, keep: &[bool]) -> Vec<T> {
            v.into_iter().zip(keep).filter(|(_, k)| **k).map(|(x, _)| x).collect()
        }
        AuditCols {
            opp: pick(self.opp, keep),
            owner: pick(self.owner, keep),
            team: pick(self.team, keep),
            previous: pick(self.previous, keep),
            outcome: pick(self.outcome, keep),
            pipeline: pick(self.pipeline, keep),
            rule: pick(self.rule, keep),
            explanation: pick(self.explanation, keep),
            key: pick(self.key, keep),
            event_at: pick(self.event_at, keep),
            seen: pick(self.seen, keep),
        }
    }

    /// The explanations `known` does not hold, each once, in key order: (keys, texts).
    fn new_explanations(&self, known: &Explained) -> (Vec<ExplanationKey>, Vec<&str>) {
        let known = known.lock();
        let mut new: Vec<(ExplanationKey, &str)> = (self.key.iter().zip(&self.explanation))
            .filter(|(k, _)| !known.contains(*k))
            .map(|(k, t)| (*k, t.as_str()))
            .collect();
        new.sort_unstable_by_key(|(k, _)| *k);
        new.dedup_by_key(|(k, _)| *k);
        new.into_iter().unzip()
    }

    /// The rows into `assignments`, by the prepared audit statement, as rule set `version`, with
    /// the explanations the store may not hold yet. Returns the keys of those sent, to learn once
    /// the transaction committed.
    async fn insert(
        &self,
        prep: &Prepared,
        tx: &Transaction<'_>,
        sql: &str,
        version: &str,
        known: &Explained,
    ) -> Result<Vec<ExplanationKey>, tokio_postgres::Error> {
        let (new_keys, new_texts) = self.new_explanations(known);
        let keys: Vec<&[u8]> = self.key.iter().map(|k| k.as_slice()).collect();
        let new: Vec<&[u8]> = new_keys.iter().map(|k| k.as_slice()).collect();
        prep.execute(
            tx,
            sql,
            &[
                &self.opp,
                &self.owner,
                &self.team,
                &self.previous,
                &self.outcome,
                &self.pipeline,
                &self.rule,
                &version,
                &keys,
                &self.event_at,
                &new,
                &new_texts,
                &self.seen,
            ],
        )
        .await?;
        Ok(new_keys)
    }

    fn push(
        &mut self,
        opp: &str,
        d: &crate::engine::Decision,
        previous: Option<String>,
        event_at: DateTime<Utc>,
        seen: Option<String>,
    ) {
        self.seen.push(seen);
        self.opp.push(opp.to_string());
        self.owner.push(d.owner.clone());
        self.team.push(d.team.clone());
        self.previous.push(previous);
        self.outcome.push(d.outcome.as_str().to_string());
        self.pipeline.push(d.pipeline.clone());
        self.rule.push(d.rule_id.clone());
        let text = serde_json::to_string(&d.explanation).unwrap_or_else(|_| "{}".into());
        self.key.push(explanation_key(&text));
        self.explanation.push(text);
        self.event_at.push(event_at);
    }
}

/// Run an ops write statement once per row, pipelined; `row` holds the values of
/// [`crate::crm::WRITE_PARAMS`] (opportunity id first, owner second), `params` which of them each
/// `$n` takes. Returns each row written with the owner the statement says it set (its `owner`
/// column: the one wanted if any row returned says so, else the first given); a statement that
/// returns no row, or no owner, wrote nothing.
async fn write_per_row(
    prep: &Prepared,
    tx: &Transaction<'_>,
    sql: &str,
    params: &[usize],
    rows: impl Iterator<Item = [Option<String>; 4]>,
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let stmt = prep.statement(tx, sql).await?;
    let futs = rows.map(|row| {
        let stmt = stmt.clone();
        let values: Vec<Option<String>> = params.iter().map(|k| row[*k].clone()).collect();
        async move {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                values.iter().map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
            let returned = tx.query(&stmt, &refs).await?;
            let owners: Vec<String> = returned
                .iter()
                .map(|r| r.try_get::<_, Option<String>>("owner"))
                .filter_map(Result::transpose)
                .collect::<Result<_, _>>()?;
            let [id, wanted, ..] = row;
            let owners: Vec<String> = owners.into_iter().map(|o| o.trim_end().to_string()).collect();
            let owner = owners.iter().find(|o| Some(*o) == wanted.as_ref()).or(owners.first()).cloned();
            Ok::<_, tokio_postgres::Error>(id.zip(owner))
        }
    });
    Ok(first_cause(futures_util::future::join_all(futs).await)?.into_iter().flatten().collect())
}

/// The results of pipelined statements, or the error that failed their transaction: the first
/// one that is not 25P02 (`current transaction is aborted`, which only follows another
/// statement's failure, and may be seen first).
fn first_cause<T>(
    results: impl IntoIterator<Item = Result<T, tokio_postgres::Error>>,
) -> Result<Vec<T>, tokio_postgres::Error> {
    let aborted =
        |e: &tokio_postgres::Error| e.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION);
    let (mut oks, mut errors) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(v) => oks.push(v),
            Err(e) => errors.push(e),
        }
    }
    match errors.iter().position(|e| !aborted(e)) {
        Some(i) => Err(errors.swap_remove(i)),
        None => errors.into_iter().next().map_or(Ok(oks), Err),
    }
}

fn clamp_i32(v: i64) -> i32 {
    v.clamp(0, i64::from(i32::MAX)) as i32
}

/// The server's message (SQLSTATE, detail, hint) without the driver's prefix.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    crate::db::describe(e)
}

#[cfg(test)]
mod ledger_tx_tests {
    use super::*;
    use rand::SeedableRng;

    fn engine() -> Engine {
        let text = "[[member]]\nid = \"a\"\n[[member]]\nid = \"b\"\n[[team]]\nid = \"t\"\nmembers = [\"a\", \"b\"]\n\
                    pipelines = [\"p\"]\n[[pipeline]]\nid = \"p\"\n[[pipeline.rule]]\nid = \"r\"\nmember = \"round_robin\"\n";
        crate::rules::compile_texts(&[("r.toml", text)], &[]).expect("rules")
    }

    /// What a drain lends its batches: the ledger, its use count, the gate.
    struct Shared {
        ledger: std::sync::Mutex<Ledger>,
        uses: AtomicU64,
        gate: tokio::sync::RwLock<()>,
        explained: Explained,
    }

    impl Shared {
        fn new(l: Ledger) -> Shared {
            let (uses, gate) = (AtomicU64::new(0), tokio::sync::RwLock::new(()));
            Shared { ledger: std::sync::Mutex::new(l), uses, gate, explained: Explained::default() }
        }

        fn lend(&self) -> LedgerTx<'_> {
            LedgerTx::new(&self.ledger, &self.uses, &self.gate, &self.explained)
        }

        fn now(&self) -> Ledger {
            let mut l = lock_ledger(&self.ledger).clone();
            l.dirty.clear(); // what to persist next, not state: rewriting a cursor is harmless
            l
        }
    }

    /// Route opportunities through a lent ledger, journaling as a batch does.
    fn route(lent: &mut LedgerTx<'_>, e: &Engine, ids: &[&str]) {
        let now = chrono::Utc::now();
        let mut rng = SmallRng::seed_from_u64(1);
        lent.with(|ledger, journal| {
            for id in ids {
                let opp = crate::engine::Opportunity {
                    id,
                    pipeline: Some("p"),
                    fields: &[],
                    waiting_since: now,
                    exclude: &[],
                    only_team: None,
                };
                let d = e.route(&opp, ledger, now, &mut rng);
                journal.push(Journal::Assign(d.undo.clone()));
            }
        });
    }

    #[tokio::test]
    async fn a_ledger_lent_to_a_transaction_that_does_not_commit_is_as_before() {
        let e = engine();
        let before = Ledger::for_engine(&e, None);
        let shared = Shared::new(before.clone());
        let mut lent = shared.lend();
        route(&mut lent, &e, &["o1", "o2", "o3"]);
        // A load a person moved, recounted in the same transaction.
        lent.with(|l, j| set_open(l, j, 0, l.open[0] + 10));
        assert_ne!(shared.now(), before, "routing changed the ledger");
        drop(lent); // no commit: an error, an early return or a dropped future
        assert!(shared.now() == before, "undone on drop");

        let mut lent = shared.lend();
        route(&mut lent, &e, &["o1", "o2", "o3"]);
        lent.with(|l, j| set_open(l, j, 0, l.open[0] + 10));
        lent.commit();
        assert_eq!(shared.now().open.iter().sum::<i64>(), 13, "kept once committed");
    }

    #[tokio::test]
    async fn a_batch_that_fails_while_another_is_in_flight_takes_back_only_its_own_loads() {
        let e = engine();
        let shared = Shared::new(Ledger::for_engine(&e, None));
        let mut first = shared.lend();
        route(&mut first, &e, &["o1", "o2", "o3"]);
        let mut second = shared.lend();
        route(&mut second, &e, &["o4", "o5"]);
        let turns = shared.now().cursors.clone();
        drop(first); // the first batch rolls back after the second routed
        let after = shared.now();
        assert_eq!(after.open.iter().sum::<i64>(), 2, "the second batch's two assignments stay, the first's three go");
        assert_eq!(after.recent.iter().map(|q| q.len()).sum::<usize>(), 2, "and so do their histories");
        assert_eq!(after.cursors, turns, "the turns the second batch took are not rewound");
        second.commit();
        assert_eq!(shared.now().open.iter().sum::<i64>(), 2);
    }

    #[test]
    fn explanations_a_batch_stored_are_known_once_it_commits_and_not_if_it_rolls_back() {
        let shared = Shared::new(Ledger::default());
        let (a, b) = (explanation_key("{\"rule\":\"a\"}"), explanation_key("{\"rule\":\"b\"}"));
        assert_ne!(a, b);
        let mut rolled_back = shared.lend();
        rolled_back.learned.push(a);
        drop(rolled_back);
        let mut committed = shared.lend();
        committed.learned.push(b);
        committed.commit();
        let known = shared.explained.lock();
        assert!(!known.contains(&a), "a rolled-back batch's explanation is sent again next time");
        assert!(known.contains(&b), "a committed one is not");
    }

    #[tokio::test]
    async fn a_batch_recounts_loads_only_when_no_other_batch_is_in_flight_and_holds_none_up_while_it_looks() {
        let shared = Shared::new(Ledger::default());
        let mut in_flight = shared.lend();
        assert!(in_flight.enter(false, Duration::ZERO).await);
        let mut recounting = shared.lend();
        assert!(
            !recounting.enter(true, Duration::from_millis(100)).await,
            "no recount while another batch is in flight"
        );
        // A recount looking for its moment holds up no batch meanwhile.
        let mut beside = shared.lend();
        let looking = async { recounting.enter(true, Duration::from_millis(300)).await };
        let (alone, shared_now) = tokio::join!(looking, async {
            let entered = tokio::time::timeout(Duration::from_millis(100), beside.enter(false, Duration::ZERO)).await;
            drop(beside);
            entered
        });
        assert!(shared_now.is_ok(), "a batch goes on while a recount looks for its moment");
        assert!(!alone, "still one in flight");
        in_flight.commit();
        assert!(recounting.enter(true, Duration::from_secs(5)).await, "alone once the others committed");
        // While it recounts, a new batch waits; once it shares, the new one goes on beside it.
        let mut next = shared.lend();
        assert!(
            tokio::time::timeout(Duration::from_millis(100), next.enter(false, Duration::ZERO)).await.is_err(),
            "waits for the recount"
        );
        recounting.share();
        tokio::time::timeout(Duration::from_secs(5), next.enter(false, Duration::ZERO))
            .await
            .expect("beside it after the recount");
    }
}
