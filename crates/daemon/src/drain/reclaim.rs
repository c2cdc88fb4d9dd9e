//! The reclaim sweep: take back assignments whose owner did nothing in time, one ladder step at
//! a time (warn, reassign within the team, escalate to the lead, release to a pool owner), and
//! pause members who keep letting opportunities lapse.
//!
//! Owns the sweep's statements and their order. When an assignment is due is the engine's
//! arithmetic (`engine::reclaim`); who gets it is the engine's decision. It must not touch an
//! opportunity a person changed, closed or deleted, nor one whose owner interacted with it after
//! the sweep read it: every write is conditional on the CRM still showing the owner the router
//! assigned and on no counting interaction being queued.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sha2::Digest;
use tokio_postgres::{Client, Transaction};

use super::{
    clamp_i32, db_message, ends_session, write_per_row, AuditCols, Context, Drain, DrainError, EventKind, Journal,
};
use crate::crm::Reassign;
use crate::db::row::FromRow;
use crate::engine::{Due, Engine, Interaction, Ledger, Outcome, ReclaimPolicy, Stage, Stale, Step};
use crate::store::{AlignChunk, EarlierOwner, SweepStatements};

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

/// What a pipeline's due times depend on: its reclaim rule, and the schedules when a window
/// counts working hours (each member's, in id order). A change brings stored due times forward
/// once. Canonical text, never `Debug` output: a dependency's upgrade must not re-align every
/// pipeline.
fn fingerprint(engine: &Engine, policy: &ReclaimPolicy) -> String {
    let mut h = sha2::Sha256::new();
    h.update(policy.canonical());
    if policy.working_hours || policy.by_team.values().any(|p| p.working_hours) {
        let mut members: Vec<_> = engine.members.iter().collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        for m in members {
            let schedule = m.schedule.and_then(|s| engine.schedules.get(s as usize)).map(|s| s.canonical());
            h.update(format!("{}:{}={};", m.id.len(), m.id, schedule.unwrap_or_default()));
        }
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
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
        let changed = super::lock_ledger(&self.ledger).set_paused(&self.engine, ids.iter().map(String::as_str));
        if changed > 0 {
            tracing::info!(paused = ids.len(), "members paused for lapses: {}", ids.join(", "));
        }
        Ok(())
    }

    /// Due times are lower bounds under the rule they were computed with. When a pipeline's rule
    /// (or, for working-hours windows, a schedule) changes, bring them forward to the new
    /// shortest window once, so a shorter window is never missed. One chunk of rows per call, in
    /// id order after `after` (its own statement: routing never waits for a million rows); true
    /// once aligned. Each chunk is idempotent: a sweep cut short does it again next time.
    async fn align_chunk(
        &mut self,
        client: &mut Client,
        engine: &Engine,
        pipeline: &str,
        policy: &ReclaimPolicy,
        after: &mut String,
    ) -> Result<bool, tokio_postgres::Error> {
        // Computed once per rule set; a set whose edit left this pipeline's rule alone moves nothing.
        let known = self.aligned.get(pipeline);
        if known.is_some_and(|(version, _)| *version == engine.version) {
            return Ok(true);
        }
        let fp = fingerprint(engine, policy);
        if known.is_some_and(|(_, f)| *f == fp) {
            self.aligned.insert(pipeline.to_string(), (engine.version.clone(), fp));
            return Ok(true);
        }
        let sweep = &self.store.sweep;
        let stored: Option<String> = (self.prep.query_opt(client, &sweep.fingerprint, &[&pipeline]).await?)
            .map(|r| r.try_get("fingerprint"))
            .transpose()?;
        if stored.as_deref() != Some(fp.as_str()) {
            // Brought forward where later than the new lower bound. The first time a pipeline is
            // seen (a new rule, or rows from before due times existed) every row is set to it, so
            // rows that would all look due at once are not refined one batch at a time.
            let first = SweepStatements::first(stored.as_deref());
            // One look first: when nothing is to move (a longer window, another edit), that is all.
            let any: bool = (self.prep.query_one(client, &sweep.align_any[first], &[&pipeline, &policy.earliest()]))
                .await?
                .try_get("any")?;
            if any && !self.align_step(client, pipeline, policy, first, after).await? {
                return Ok(false);
            }
            self.prep.execute(client, &sweep.set_fingerprint, &[&pipeline, &fp]).await?;
            tracing::info!(pipeline, "reclaim rule changed: due times brought forward");
        }
        self.aligned.insert(pipeline.to_string(), (engine.version.clone(), fp));
        Ok(true)
    }

    /// One chunk of due times brought forward: the next `20 × batch_size` ids of the pipeline
    /// after `after` (a range of the primary key), those to move updated by id (`first`: the
    /// pipeline's first alignment, see `store::Sweep::first`). True when
    /// the pipeline's last ids are done.
    async fn align_step(
        &self,
        client: &mut Client,
        pipeline: &str,
        policy: &ReclaimPolicy,
        first: usize,
        after: &mut String,
    ) -> Result<bool, tokio_postgres::Error> {
        let chunk = i64::from(self.cfg.router.batch_size) * 20;
        let sql = &self.store.sweep.align_chunk[first];
        let row = self.prep.query_one(client, sql, &[&pipeline, &policy.earliest(), &chunk, &*after]).await?;
        let AlignChunk { seen, last, moved } = AlignChunk::from_row(&row)?;
        tracing::debug!(pipeline, brought_forward = moved, "reclaim rule changed: due times brought forward");
        *after = last.unwrap_or_default();
        Ok(seen < chunk)
    }

    /// One batch of a pipeline's due assignments, in one transaction: read and lock them, sort
    /// out what is only a warning or not due after all, let the engine decide the ladder step
    /// of each stale one, write the new owners where the CRM still shows ours, and record it.
    async fn sweep_pipeline(
        &self,
        tx: tokio_postgres::Transaction<'_>,
        engine: &Engine,
        batch: SweepBatch<'_>,
        ledger: &mut Ledger,
        journal: &mut Vec<Journal>,
    ) -> Result<Swept, tokio_postgres::Error> {
        let due = self.due_rows(&tx, batch.pipeline, batch.now).await?;
        if due.is_empty() {
            tx.rollback().await?;
            return Ok(Swept::default());
        }
        let queued = self.queued_interactions(&tx, &due).await?;
        let triage = triage(engine, batch.policy, due, &queued, batch.now);
        let earlier = self.earlier_owners(&tx, &triage.stale, batch.policy).await?;
        let stale_ids: Vec<String> = triage.stale.iter().map(|r| r.id.clone()).collect();
        // Locked as read, skipping rows a CRM transaction holds: the sweep never waits on a person.
        let ctx = self.load_context(&super::BatchTx { tx: &tx, prep: &self.prep }, &stale_ids, &[], true).await?;
        let mut verdicts = self.decide(engine, &batch, &triage.stale, &ctx, earlier, ledger, journal);
        let written = self.reassign(&tx, batch.reassign, &verdicts.writes).await?;
        unwritten(&mut verdicts, &written, ledger, journal);
        let done: Vec<&Write> = verdicts.writes.iter().filter(|w| written.contains_key(&w.opp)).collect();
        move_loads(engine, &done, ledger, journal);
        let paused = self.record_sweep(&tx, engine, &batch, &triage, &verdicts, &done, ledger).await?;
        tx.commit().await?;
        for m in &paused {
            if let Some(p) = engine.member_index(m).and_then(|i| ledger.paused.get_mut(i)) {
                *p = true;
            }
            tracing::warn!(member = %m, pipeline = batch.pipeline, "member paused for letting opportunities lapse; lift with `oppty-router unpause {m}`");
        }
        let reclaimed = done.len();
        let (pipeline, _) = crate::telemetry::bounded_labels(engine, batch.pipeline, None);
        metrics::counter!("oppty_router_reclaims_total", "pipeline" => pipeline.to_string())
            .increment(reclaimed as u64);
        let finished = verdicts.finished.len() + done.iter().filter(|w| w.track.is_none()).count();
        let acted = reclaimed + verdicts.restart.len() + finished + triage.defer.opp.len();
        tracing::info!(
            pipeline = batch.pipeline,
            due = triage.due,
            reclaimed,
            kept = verdicts.restart.len(),
            deferred = triage.defer.opp.len() - triage.warn.opp.len(),
            warned = triage.warn.opp.len(),
            waiting = triage.waiting,
            locked = verdicts.locked,
            "reclaim sweep"
        );
        Ok(Swept { due: triage.due, acted, reclaimed })
    }

    /// The pipeline's assignments due by `now`: one range scan of (pipeline, due_at); rows being
    /// changed elsewhere are skipped.
    async fn due_rows(
        &self,
        tx: &Transaction<'_>,
        pipeline: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<DueRow>, tokio_postgres::Error> {
        let limit = i64::from(self.cfg.router.batch_size);
        let rows = self.prep.query(tx, &self.store.sweep.due, &[&pipeline, &now, &limit]).await?;
        Ok(crate::store::Due::from_rows(&rows)?.into_iter().map(DueRow::from).collect())
    }

    /// Interactions captured but not yet drained: they count as if drained.
    async fn queued_interactions(&self, tx: &Transaction<'_>, due: &[DueRow]) -> Result<Queued, tokio_postgres::Error> {
        let ids: Vec<&str> = due.iter().map(|r| r.id.as_str()).collect();
        let mut queued = Queued::new();
        let rows = self.prep.query(tx, &self.store.sweep.queued, &[&ids]).await?;
        for q in crate::store::Queued::from_rows(&rows)? {
            let kind = match q.kind {
                EventKind::Edit => Interaction::Edit,
                _ => Interaction::Activity,
            };
            queued.entry(q.opp_id).or_default().push((kind, q.actor));
        }
        Ok(queued)
    }

    /// Owners that must not get it back, newest first, where a rule looks further than the owner
    /// losing it.
    async fn earlier_owners(
        &self,
        tx: &Transaction<'_>,
        stale: &[Stale],
        policy: &ReclaimPolicy,
    ) -> Result<HashMap<String, Vec<String>>, tokio_postgres::Error> {
        let mut history: HashMap<String, Vec<String>> = HashMap::new();
        let ids: Vec<&str> = (stale.iter())
            .filter(|r| policy.for_team(r.team.as_deref()).needs_history())
            .map(|r| r.id.as_str())
            .collect();
        if ids.is_empty() {
            return Ok(history);
        }
        let rows = self.prep.query(tx, &self.store.sweep.earlier_owners, &[&ids]).await?;
        for r in EarlierOwner::from_rows(&rows)? {
            let owners = history.entry(r.opp_id).or_default();
            if !owners.contains(&r.owner_id) {
                owners.push(r.owner_id);
            }
        }
        Ok(history)
    }

    /// The engine's ladder step for each stale assignment. One whose opportunity was deleted,
    /// closed or given to someone else by a person since (in the owner column, or in any column
    /// `unowned_when` reads) is not ours to reclaim: it stops being tracked.
    #[allow(clippy::too_many_arguments)]
    fn decide<'p>(
        &self,
        engine: &Engine,
        batch: &SweepBatch<'p>,
        stale: &[Stale],
        ctx: &HashMap<String, Context>,
        mut earlier: HashMap<String, Vec<String>>,
        ledger: &mut Ledger,
        journal: &mut Vec<Journal>,
    ) -> Verdicts<'p> {
        let mut v = Verdicts::default();
        let mut rng = match self.rng.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for row in stale {
            let p = batch.policy.for_team(row.team.as_deref());
            if ctx.get(&row.id).is_some_and(|c| c.locked) {
                v.locked += 1; // still due: the next sweep looks again
                continue;
            }
            let Some(c) = ctx
                .get(&row.id)
                .filter(|c| c.open && !c.deleted && c.opportunity && c.only_owner)
                .filter(|c| c.owner.as_deref() == Some(row.owner.as_str()))
            else {
                v.finished.push(row.id.clone());
                continue;
            };
            let history = earlier.remove(&row.id).unwrap_or_default();
            let verdict = engine.reclaim(batch.pipeline, row, p, &c.fields, history, ledger, batch.now, &mut *rng);
            journal.push(Journal::Assign(verdict.decision.undo.clone()));
            if let Some(a) = verdict.decision.undo.assigned {
                v.pending_undo.insert(row.id.clone(), a);
            }
            v.audit.push(&row.id, &verdict.decision, Some(row.owner.clone()), batch.now, None);
            match verdict.step {
                Step::Move { to, team_crm, track, by_engine } => v.writes.push(Write {
                    opp: row.id.clone(),
                    new: to,
                    team_crm,
                    old: row.owner.clone(),
                    policy: p,
                    by_engine,
                    track,
                }),
                Step::Leave => v.finished.push(row.id.clone()),
                Step::Restart => v.restart.push(row.id.clone()),
            }
        }
        v
    }

    /// Write the new owners: only where the CRM still has the owner we assigned and no
    /// interaction that counts arrived since the read. Returns the opportunities written, each
    /// with the owner the write says it set.
    async fn reassign(
        &self,
        tx: &Transaction<'_>,
        reassign: &Reassign,
        writes: &[Write<'_>],
    ) -> Result<HashMap<String, String>, tokio_postgres::Error> {
        let mut written: HashMap<String, String> = HashMap::new();
        if writes.is_empty() {
            return Ok(written);
        }
        let ids: Vec<&str> = writes.iter().map(|w| w.opp.as_str()).collect();
        let olds: Vec<&str> = writes.iter().map(|w| w.old.as_str()).collect();
        let anyone: Vec<bool> = writes.iter().map(|w| w.policy.anyone).collect();
        let edits: Vec<bool> = writes.iter().map(|w| w.policy.owner_edits).collect();
        match reassign {
            Reassign::Batch(sql) => {
                let news: Vec<&str> = writes.iter().map(|w| w.new.as_str()).collect();
                let teams: Vec<Option<&str>> = writes.iter().map(|w| w.team_crm.as_deref()).collect();
                for r in self.prep.query(tx, sql, &[&ids, &news, &teams, &olds, &anyone, &edits]).await? {
                    written.insert(r.try_get("id")?, r.try_get("owner")?);
                }
            }
            Reassign::PerRow { sql, params } => {
                // The ops statement checks the owner; the interactions are checked here, just
                // before it runs.
                let touched: HashSet<String> = (self.prep)
                    .query(tx, &self.store.sweep.interacted, &[&ids, &olds, &anyone, &edits])
                    .await?
                    .iter()
                    .map(|r| r.try_get("id"))
                    .collect::<Result<_, _>>()?;
                let rows = (writes.iter())
                    .filter(|w| !touched.contains(&w.opp))
                    .map(|w| [Some(w.opp.clone()), Some(w.new.clone()), w.team_crm.clone(), Some(w.old.clone())]);
                written.extend(write_per_row(&self.prep, tx, sql, params, rows).await?);
            }
        }
        Ok(written)
    }

    /// Record the batch in the router's tables: who is tracked where now, what stops being
    /// tracked, clocks restarted, due times deferred, warnings, the audit, pauses for lapses and
    /// the members' loads. Returns the members paused.
    #[allow(clippy::too_many_arguments)]
    async fn record_sweep(
        &self,
        tx: &Transaction<'_>,
        engine: &Engine,
        batch: &SweepBatch<'_>,
        triage: &Triage,
        verdicts: &Verdicts<'_>,
        done: &[&Write<'_>],
        ledger: &Ledger,
    ) -> Result<Vec<String>, tokio_postgres::Error> {
        let next_due = batch.now + chrono::Duration::seconds(batch.policy.earliest());
        self.track(tx, done, batch.now, next_due).await?;
        let sweep = &self.store.sweep;
        // Released ones stop being tracked once written; one that was not written (a person's
        // change, or a last-second interaction) stays, and a person's change goes with its event.
        let finished: Vec<&str> = (verdicts.finished.iter().map(String::as_str))
            .chain(done.iter().filter(|w| w.track.is_none()).map(|w| w.opp.as_str()))
            .collect();
        if !finished.is_empty() {
            self.prep.execute(tx, &sweep.finish, &[&finished]).await?;
        }
        if !verdicts.restart.is_empty() {
            self.prep.execute(tx, &sweep.restart, &[&verdicts.restart, &batch.now, &next_due]).await?;
        }
        self.defer(tx, &triage.defer, batch.now).await?;
        self.warn(tx, batch.pipeline, &triage.warn).await?;
        if !verdicts.audit.opp.is_empty() {
            // Those already known are not sent; the sweep's own new ones are not learned (a few,
            // sent again next time: the store keeps one copy).
            verdicts.audit.insert(&self.prep, tx, &self.store.audit, &engine.version, &self.explained).await?;
        }
        let paused = self.pause_lapsed(tx, done).await?;
        let mut touched: Vec<usize> =
            done.iter().flat_map(|w| [engine.member_index(&w.new), engine.member_index(&w.old)]).flatten().collect();
        touched.sort_unstable();
        touched.dedup();
        if !touched.is_empty() {
            let members: Vec<String> = touched.iter().map(|m| engine.members[*m].id.to_string()).collect();
            let counts: Vec<i32> = touched.iter().map(|m| clamp_i32(ledger.open[*m])).collect();
            let zeros = vec![0i64; members.len()];
            self.prep.execute(tx, &self.store.member_state, &[&members, &counts, &zeros]).await?;
        }
        Ok(paused)
    }

    /// Reassigned and escalated ones: tracked with their new owner, team and stage, the clock
    /// started now.
    async fn track(
        &self,
        tx: &Transaction<'_>,
        done: &[&Write<'_>],
        now: DateTime<Utc>,
        next_due: DateTime<Utc>,
    ) -> Result<(), tokio_postgres::Error> {
        let tracked: Vec<(&str, &str, Option<&str>, &str)> = (done.iter())
            .filter_map(|w| {
                w.track.as_ref().map(|(team, stage)| (w.opp.as_str(), w.new.as_str(), team.as_deref(), stage.as_str()))
            })
            .collect();
        if tracked.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = tracked.iter().map(|t| t.0).collect();
        let owners: Vec<&str> = tracked.iter().map(|t| t.1).collect();
        let teams: Vec<Option<&str>> = tracked.iter().map(|t| t.2).collect();
        let stages: Vec<&str> = tracked.iter().map(|t| t.3).collect();
        let params: crate::db::prepared::Params = &[&ids, &owners, &teams, &stages, &now, &next_due];
        self.prep.execute(tx, &self.store.sweep.track, params).await?;
        Ok(())
    }

    /// Due times moved to when something is due (a warning marked as given).
    async fn defer(
        &self,
        tx: &Transaction<'_>,
        d: &Deferrals,
        now: DateTime<Utc>,
    ) -> Result<(), tokio_postgres::Error> {
        if d.opp.is_empty() {
            return Ok(());
        }
        self.prep.execute(tx, &self.store.sweep.defer, &[&d.opp, &d.at, &d.warned, &now]).await?;
        Ok(())
    }

    /// Warnings: a row each, and a NOTIFY on `<channel>_reclaim_warning` for the CRM's side.
    async fn warn(&self, tx: &Transaction<'_>, pipeline: &str, w: &Warnings) -> Result<(), tokio_postgres::Error> {
        if w.opp.is_empty() {
            return Ok(());
        }
        let channel = format!("{}_reclaim_warning", self.cfg.router.channel.as_str());
        let params: crate::db::prepared::Params = &[&w.opp, &w.owner, &w.idle_since, &w.reclaim_at, &channel];
        self.prep.execute(tx, &self.store.sweep.warn, params).await?;
        tracing::info!(pipeline, warned = w.opp.len(), channel = %channel, "reclaim warnings");
        Ok(())
    }

    /// Members who keep letting opportunities lapse: paused until an admin lifts it. Returns
    /// those paused now.
    async fn pause_lapsed(
        &self,
        tx: &Transaction<'_>,
        done: &[&Write<'_>],
    ) -> Result<Vec<String>, tokio_postgres::Error> {
        let lapsed: Vec<(&str, crate::engine::PauseAfter)> =
            done.iter().filter_map(|w| w.policy.pause_after.map(|p| (w.old.as_str(), p))).collect();
        if lapsed.is_empty() {
            return Ok(Vec::new());
        }
        let members: Vec<&str> = lapsed.iter().map(|l| l.0).collect();
        let within: Vec<i64> = lapsed.iter().map(|l| l.1.within).collect();
        let lapses: Vec<i64> = lapsed.iter().map(|l| l.1.lapses).collect();
        let human: Vec<String> = (lapsed.iter())
            .map(|l| humantime::format_duration(std::time::Duration::from_secs(l.1.within.max(0) as u64)).to_string())
            .collect();
        let rows = self.prep.query(tx, &self.store.sweep.pause_lapsed, &[&members, &within, &lapses, &human]).await?;
        rows.iter().map(|r| r.try_get("member_id")).collect()
    }
}

/// What one batch of a pipeline's sweep works on.
struct SweepBatch<'a> {
    pipeline: &'a str,
    policy: &'a ReclaimPolicy,
    reassign: &'a Reassign,
    /// The time staleness is measured against.
    now: DateTime<Utc>,
}

/// An assignment whose due time has come, as `ownership` holds it (`store::Due`), its stage read.
struct DueRow {
    id: String,
    owner: String,
    team: Option<String>,
    reclaims: i32,
    stage: Stage,
    owner_touch: DateTime<Utc>,
    any_activity: Option<DateTime<Utc>>,
    owner_edit: Option<DateTime<Utc>>,
    warned_at: Option<DateTime<Utc>>,
}

/// Interactions queued (captured, not drained yet) per opportunity: kind and actor.
type Queued = HashMap<String, Vec<(Interaction, Option<String>)>>;

/// Due times moved later: opportunity, when, whether a warning was given now.
#[derive(Default)]
struct Deferrals {
    opp: Vec<String>,
    at: Vec<DateTime<Utc>>,
    warned: Vec<bool>,
}

/// Warnings due: opportunity, owner, idle since, reclaim at.
#[derive(Default)]
struct Warnings {
    opp: Vec<String>,
    owner: Vec<String>,
    idle_since: Vec<DateTime<Utc>>,
    reclaim_at: Vec<DateTime<Utc>>,
}

/// The due rows sorted out: stale ones go to the engine, the rest wait.
#[derive(Default)]
struct Triage {
    due: usize,
    stale: Vec<Stale>,
    defer: Deferrals,
    warn: Warnings,
    /// With an interaction queued: the drain restarts their clock first.
    waiting: usize,
}

/// The ladder's verdicts, gathered for writing.
#[derive(Default)]
struct Verdicts<'p> {
    writes: Vec<Write<'p>>,
    audit: AuditCols,
    /// Ownership rows the router stops tracking.
    finished: Vec<String>,
    /// Left with their owner: the clock restarts.
    restart: Vec<String>,
    /// The ledger entry of each reassignment, to take back if it is not written.
    pending_undo: HashMap<String, (usize, i64)>,
    /// Rows a CRM transaction holds: not waited for, looked at again by the next sweep.
    locked: usize,
}

/// Sort the due rows: a queued interaction that counts waits for the drain; otherwise the
/// policy says whether it is stale, a warning is due, or nothing before some moment.
fn triage(engine: &Engine, policy: &ReclaimPolicy, due: Vec<DueRow>, queued: &Queued, now: DateTime<Utc>) -> Triage {
    let mut t = Triage { due: due.len(), ..Triage::default() };
    for r in due {
        let p = policy.for_team(r.team.as_deref());
        if queued.get(&r.id).is_some_and(|q| q.iter().any(|(k, a)| p.counts(*k, a.as_deref(), &r.owner))) {
            t.waiting += 1;
            continue;
        }
        let idle_since = p.idle_since(r.owner_touch, r.any_activity, r.owner_edit);
        let warned = r.warned_at.is_some_and(|w| w >= idle_since);
        let schedule = (engine.member_index(&r.owner))
            .and_then(|m| engine.members[m].schedule)
            .and_then(|x| engine.schedules.get(x as usize));
        match p.due(r.stage, idle_since, warned, schedule, now) {
            Due::NotBefore(at) => t.defer.push(r.id, at, false),
            Due::Warn(at) => {
                t.warn.opp.push(r.id.clone());
                t.warn.owner.push(r.owner);
                t.warn.idle_since.push(idle_since);
                t.warn.reclaim_at.push(at);
                t.defer.push(r.id, at, true);
            }
            Due::Stale => t.stale.push(Stale {
                id: r.id,
                owner: r.owner,
                team: r.team,
                reclaims: r.reclaims,
                stage: r.stage,
                idle: (now - idle_since).num_seconds(),
            }),
        }
    }
    t
}

impl Deferrals {
    fn push(&mut self, opp: String, at: DateTime<Utc>, warned: bool) {
        self.opp.push(opp);
        self.at.push(at);
        self.warned.push(warned);
    }
}

/// What was not written (a person changed it this instant) is not recorded as reclaimed, and its
/// ledger entry is taken back. What a reclaim statement wrote to another owner than the one
/// picked is recorded as written to that owner (the loads follow it too).
fn unwritten(v: &mut Verdicts<'_>, written: &HashMap<String, String>, ledger: &mut Ledger, journal: &mut Vec<Journal>) {
    let mut keep = vec![true; v.audit.opp.len()];
    for (i, (opp, outcome)) in v.audit.opp.iter().zip(&v.audit.outcome).enumerate() {
        if outcome != Outcome::Reclaim.as_str() {
            continue;
        }
        let owner = written.get(opp);
        let other = owner.filter(|o| v.audit.owner[i].as_ref() != Some(*o));
        if owner.is_some() && other.is_none() {
            continue;
        }
        keep[i] = owner.is_some();
        if let Some(&(m, at)) = v.pending_undo.get(opp) {
            ledger.unassign(m, at);
            journal.push(Journal::Unassigned(m, at));
        }
        if let Some(o) = other {
            tracing::warn!(opportunity = %opp, picked = ?v.audit.owner[i], written = %o,
                "write_back.reclaim_statement set another owner than the one picked; recorded as written");
            v.audit.owner[i] = Some(o.clone());
            for w in v.writes.iter_mut().filter(|w| &w.opp == opp) {
                w.new = o.clone();
                w.by_engine = false;
            }
        }
    }
    v.audit = std::mem::take(&mut v.audit).retain(&keep);
}

/// The loads of what was written move from the old owner to the new (a new owner the engine
/// picked is already counted).
fn move_loads(engine: &Engine, done: &[&Write<'_>], ledger: &mut Ledger, journal: &mut Vec<Journal>) {
    for w in done {
        if let Some(m) = engine.member_index(&w.old) {
            let open = (ledger.open[m] - 1).max(0);
            super::set_open(ledger, journal, m, open);
        }
        if !w.by_engine {
            if let Some(m) = engine.member_index(&w.new) {
                let open = ledger.open[m] + 1;
                super::set_open(ledger, journal, m, open);
            }
        }
    }
}

impl From<crate::store::Due> for DueRow {
    fn from(d: crate::store::Due) -> DueRow {
        DueRow {
            id: d.opp_id,
            owner: d.owner_id,
            team: d.team_id,
            reclaims: d.reclaims,
            stage: Stage::from_text(&d.stage),
            owner_touch: d.last_owner_touch_at,
            any_activity: d.last_activity_at,
            owner_edit: d.last_owner_edit_at,
            warned_at: d.warned_at,
        }
    }
}
