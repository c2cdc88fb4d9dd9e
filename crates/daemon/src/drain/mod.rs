//! The drain: claim a batch of captured events, route the opportunities, write owners back,
//! record why, all in one transaction per batch.
//!
//! Owns the per-batch statements and their order, the members' open loads while this daemon is the
//! leader, and what happens to an event that fails (retry with backoff, then dead letter). Per
//! batch there is one query per kind of work, never one per row. It must not decide owners itself
//! (that is `engine`), nor connect, wait or watch files (that is `daemon`).
//!
//! The rooms: `lanes` (the connections, and draining on all of them), `batch` (one batch's
//! transaction: begin and fence, claim, context), `process` (a batch's phases in order; `route`, `settle` after the write-back, `record`), `claims`
//! (a claimed event's life: retries, dead letter), `ledger_tx` (the ledger lent to a batch, undone
//! unless committed), `leading` (the ledger rebuilt when leading or when the rules change),
//! `records` (unrouted, explanations, audit columns), `writes` (row by row when the batch's
//! statement cannot), `report` (what a batch tells), `error`, `rounds`, `reclaim`, `crm_count`,
//! `skips`, `shares`.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{Client, GenericClient};

use crate::config::Config;
use crate::crm::CrmSql;
use crate::db::prepared::Prepared;
use crate::engine::history::HistoryNeed;
use crate::engine::{Engine, Ledger};
use crate::store::Statements;
pub use crate::store::{Event, EventKind};
use rand::rngs::SmallRng;

mod batch;
mod claims;
mod crm_count;
mod error;
mod lanes;
mod leading;
mod ledger_tx;
mod process;
mod reclaim;
mod records;
mod report;
mod rounds;
mod shares;
mod skips;
mod writes;
use batch::BatchTx;
pub use batch::{context_from_row, Context};
use error::ends_session;
pub use error::DrainError;
use lanes::Conn;
pub use lanes::Lane;
use ledger_tx::{set_open, Journal, LedgerOut, LedgerTx};
pub use reclaim::SweepStep;
use records::{AuditCols, Explained, ExplanationKey, Unrouted};
pub use report::{BatchReport, Routed};
pub use rounds::Progress;
use rounds::{Round, Working};
pub use writes::db_message;
use writes::{clamp_i32, first_cause, write_per_row};

/// How long a deferred batch's events wait before they are claimed again (`BatchReport::deferred`).
const DEFER_DELAY: Duration = Duration::from_millis(100);

/// At most this many failed events are retried (each alone) before each fresh batch.
const RETRIES_PER_BATCH: i64 = 20;

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

    /// Beat `progress` after every round (the lease renewer watches it).
    pub fn beat_into(&mut self, progress: Arc<Progress>) {
        self.progress = progress;
    }

    /// Fence every batch on the leader session `backend` (see [`Drain::fence`]).
    pub fn fence_on(&mut self, backend: i32) {
        self.fence = Some(backend);
    }

    /// Tell the triggers whether to NOTIFY (only while the daemon is idle).
    pub async fn set_idle<C: GenericClient + Sync>(&self, client: &C, idle: bool) -> Result<(), DrainError> {
        let ms = self.idle_for().as_secs_f64() * 1000.0;
        self.prep.execute(client, &self.store.idle, &[&idle, &ms]).await.map_err(DrainError::from_pg)?;
        Ok(())
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
