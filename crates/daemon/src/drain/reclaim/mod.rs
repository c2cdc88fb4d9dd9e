//! The reclaim sweep: take back assignments whose owner did nothing in time, one ladder step at
//! a time (warn, reassign within the team, escalate to the lead, release to a pool owner), and
//! pause members who keep letting opportunities lapse.
//!
//! Owns the sweep's statements and their order. When an assignment is due is the engine's
//! arithmetic (`engine::reclaim`); who gets it is the engine's decision. It must not touch an
//! opportunity a person changed, closed or deleted, nor one whose owner interacted with it after
//! the sweep read it: every write is conditional on the CRM still showing the owner the router
//! assigned and on no counting interaction being queued.

mod align;
mod sweep;
mod writes;

use sweep::{Deferrals, SweepBatch, Triage, Verdicts, Warnings};

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::{db_message, ends_session, Drain, DrainError};
use crate::engine::{Engine, ReclaimPolicy, Stage};
use crate::held::held;

/// What one batch of a pipeline's sweep did.
/// A sweep under way, taken a step at a time between routing batches.
pub(super) struct Sweep {
    /// The rule set it was started with (a new one starts it again).
    version: String,
    /// The time it measures staleness against.
    now: DateTime<Utc>,
    /// Pipelines still to sweep, the current one first.
    left: std::collections::VecDeque<String>,
    /// Whether the current pipeline's due times are aligned with its rule.
    aligned: bool,
    /// How far (by opportunity id) they have been brought forward so far.
    align_after: String,
    /// Batches taken in the current pipeline.
    batches: usize,
    /// Assignments taken from their owner so far.
    total: usize,
}

impl Sweep {
    fn next_pipeline(&mut self) {
        self.left.pop_front();
        self.aligned = false;
        self.align_after.clear();
        self.batches = 0;
    }
}

/// What one step of a sweep left.
#[derive(Debug, PartialEq, Eq)]
pub enum SweepStep {
    /// More steps to take.
    Going,
    /// The sweep is over: assignments taken from their owner.
    Done(usize),
}

#[derive(Debug, Default, Clone, Copy)]
struct Swept {
    /// Rows whose due time had come.
    due: usize,
    /// Rows acted on (reclaimed, kept, released, deferred, warned).
    acted: usize,
    reclaimed: usize,
}

/// A write of a new owner to the CRM, and how the router tracks it afterwards.
struct Write<'a> {
    opp: String,
    new: String,
    team_crm: Option<String>,
    old: String,
    /// The rule it is written under: which interactions count, whether a lapse pauses.
    policy: &'a ReclaimPolicy,
    /// The engine picked the new owner (its load is already in the ledger).
    by_engine: bool,
    /// `Some((team, stage))`: the router keeps tracking it; `None`: it stops (released).
    track: Option<(Option<String>, Stage)>,
}

impl Drain {
    /// Reclaim: for every pipeline with a reclaim rule, take the next ladder step for the
    /// assignments whose owner did nothing in time, in one transaction per batch. Returns how many
    /// were taken from their owner.
    pub async fn sweep(&mut self, client: &mut Client) -> Result<usize, DrainError> {
        self.sweep_at(client, Utc::now()).await
    }

    /// [`Drain::sweep`] as of `now` (tests inject a clock): every step of one sweep in a row.
    pub async fn sweep_at(&mut self, client: &mut Client, now: DateTime<Utc>) -> Result<usize, DrainError> {
        self.sweeping = None;
        loop {
            if let SweepStep::Done(total) = self.sweep_step(client, now).await? {
                return Ok(total);
            }
        }
    }

    /// Whether a sweep is under way (the daemon then takes its next step between batches).
    pub fn sweeping(&self) -> bool {
        self.sweeping.is_some()
    }

    /// One step of a sweep, started as of `now` if none is under way: one chunk of due times
    /// brought forward, or one batch of due assignments. Routing waits for one step at most,
    /// never for a whole sweep.
    pub async fn sweep_step(&mut self, client: &mut Client, now: DateTime<Utc>) -> Result<SweepStep, DrainError> {
        let engine = self.engine.clone();
        let Some(reassign) = self.sql.reassign.clone() else {
            self.say_no_reclaim(&engine);
            return Ok(SweepStep::Done(0));
        };
        let mut sweep = match self.sweeping.take() {
            Some(s) if s.version == engine.version => s,
            _ => self.start_sweep(client, &engine, now).await?,
        };
        let Some(pipeline) = sweep.left.front().cloned() else {
            return Ok(SweepStep::Done(sweep.total));
        };
        let Some(policy) = engine.pipelines.get(&pipeline).and_then(|p| p.reclaim.as_ref()) else {
            sweep.next_pipeline();
            return Ok(self.keep(sweep));
        };
        if !sweep.aligned {
            match self.align_chunk(client, &engine, &pipeline, policy, &mut sweep.align_after).await {
                Ok(done) => sweep.aligned = done,
                Err(e) if ends_session(&e) => return Err(DrainError::from_pg(e)),
                Err(e) => {
                    tracing::error!(pipeline = %pipeline, error = %db_message(&e), "reclaim: bringing due times forward failed; it will run again");
                    sweep.next_pipeline();
                }
            }
            return Ok(self.keep(sweep));
        }
        let mut lent = super::LedgerOut::take(&self.ledger);
        let tx = self.begin(client, &self.prep).await?;
        let (ledger, journal) = lent.parts();
        let batch = SweepBatch { pipeline: &pipeline, policy, reassign: &reassign, now: sweep.now };
        let result = self.sweep_pipeline(tx, &engine, batch, ledger, journal).await;
        if result.is_ok() {
            lent.commit();
        } else {
            drop(lent); // undone
        }
        match result {
            // A short batch (or one where nothing could be done: rows a person is changing right
            // now wait for the next sweep) ends this pipeline.
            Ok(s) => {
                sweep.total += s.reclaimed;
                sweep.batches += 1;
                if s.due < self.cfg.router.batch_size as usize || s.acted == 0 || sweep.batches >= 10_000 {
                    sweep.next_pipeline();
                }
            }
            Err(e) if ends_session(&e) => return Err(DrainError::from_pg(e)),
            Err(e) => {
                tracing::error!(pipeline = %pipeline, error = %db_message(&e), "reclaim sweep failed; it will run again");
                sweep.next_pipeline();
            }
        }
        Ok(self.keep(sweep))
    }

    /// Keep a sweep for its next step, or end it.
    fn keep(&mut self, sweep: Sweep) -> SweepStep {
        if sweep.left.is_empty() {
            return SweepStep::Done(sweep.total);
        }
        self.sweeping = Some(sweep);
        SweepStep::Going
    }

    /// A new sweep: the pauses as they are now, the pipelines with a reclaim rule.
    async fn start_sweep(
        &mut self,
        client: &mut Client,
        engine: &Engine,
        now: DateTime<Utc>,
    ) -> Result<Sweep, DrainError> {
        match self.refresh_pauses(client).await {
            Ok(()) => {}
            Err(e) if ends_session(&e) => return Err(DrainError::from_pg(e)),
            Err(e) => tracing::error!(error = %db_message(&e), "reading member pauses failed; kept as they were"),
        }
        let mut left: Vec<String> =
            engine.pipelines.iter().filter(|(_, p)| p.reclaim.is_some()).map(|(id, _)| id.clone()).collect();
        left.sort();
        Ok(Sweep {
            version: engine.version.clone(),
            now,
            left: left.into(),
            aligned: false,
            align_after: String::new(),
            batches: 0,
            total: 0,
        })
    }

    fn say_no_reclaim(&mut self, engine: &Engine) {
        if engine.pipelines.values().any(|p| p.reclaim.is_some())
            && self.said_no_reclaim.as_deref() != Some(&*engine.version)
        {
            tracing::warn!(
                "reclaim rules are not applied: the daemon config writes owners with write_back.statement and has no \
                 write_back.reclaim_statement (see `oppty-router check`)"
            );
            self.said_no_reclaim = Some(engine.version.clone()); // once per rule set
        }
    }

    /// Members paused for lapses, as the router's table says now (an admin may have lifted one).
    pub(super) async fn refresh_pauses<C: tokio_postgres::GenericClient + Sync>(
        &mut self,
        client: &C,
    ) -> Result<(), tokio_postgres::Error> {
        let rows = self.prep.query(client, &self.store.sweep.paused, &[]).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.try_get("member_id")).collect::<Result<_, _>>()?;
        let changed = held(&self.ledger).set_paused(&self.engine, ids.iter().map(String::as_str));
        if changed > 0 {
            tracing::info!(paused = ids.len(), "members paused for lapses: {}", ids.join(", "));
        }
        Ok(())
    }
}
