//! One batch of a pipeline's due assignments: read and lock them, sort out what is only a warning
//! or not due after all, and let the engine decide each stale one's ladder step. The writes are
//! `reclaim::writes`'. It must not decide who gets an assignment (the engine does).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use crate::crm::Reassign;
use crate::db::row::FromRow;
use crate::drain::{AuditCols, Context, Drain, EventKind, Journal};
use crate::engine::{Due, Engine, Interaction, Ledger, Outcome, ReclaimPolicy, Stage, Stale, Step};
use crate::held::held;
use crate::store::EarlierOwner;

use super::{Swept, Write};

impl Drain {
    /// One batch of a pipeline's due assignments, in one transaction: read and lock them, sort
    /// out what is only a warning or not due after all, let the engine decide the ladder step
    /// of each stale one, write the new owners where the CRM still shows ours, and record it.
    pub(super) async fn sweep_pipeline(
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
        let ctx =
            self.load_context(&crate::drain::BatchTx { tx: &tx, prep: &self.prep }, &stale_ids, &[], true).await?;
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
    pub(super) async fn due_rows(
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
    pub(super) async fn queued_interactions(
        &self,
        tx: &Transaction<'_>,
        due: &[DueRow],
    ) -> Result<Queued, tokio_postgres::Error> {
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
    pub(super) async fn earlier_owners(
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
    pub(super) fn decide<'p>(
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
        let mut rng = held(&self.rng);
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
}

/// What one batch of a pipeline's sweep works on.
pub(super) struct SweepBatch<'a> {
    pub(super) pipeline: &'a str,
    pub(super) policy: &'a ReclaimPolicy,
    pub(super) reassign: &'a Reassign,
    /// The time staleness is measured against.
    pub(super) now: DateTime<Utc>,
}

/// An assignment whose due time has come, as `ownership` holds it (`store::Due`), its stage read.
pub(super) struct DueRow {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) team: Option<String>,
    pub(super) reclaims: i32,
    pub(super) stage: Stage,
    pub(super) owner_touch: DateTime<Utc>,
    pub(super) any_activity: Option<DateTime<Utc>>,
    pub(super) owner_edit: Option<DateTime<Utc>>,
    pub(super) warned_at: Option<DateTime<Utc>>,
}

/// Interactions queued (captured, not drained yet) per opportunity: kind and actor.
pub(super) type Queued = HashMap<String, Vec<(Interaction, Option<String>)>>;

/// Due times moved later: opportunity, when, whether a warning was given now.
#[derive(Default)]
pub(super) struct Deferrals {
    pub(super) opp: Vec<String>,
    pub(super) at: Vec<DateTime<Utc>>,
    pub(super) warned: Vec<bool>,
}

/// Warnings due: opportunity, owner, idle since, reclaim at.
#[derive(Default)]
pub(super) struct Warnings {
    pub(super) opp: Vec<String>,
    pub(super) owner: Vec<String>,
    pub(super) idle_since: Vec<DateTime<Utc>>,
    pub(super) reclaim_at: Vec<DateTime<Utc>>,
}

/// The due rows sorted out: stale ones go to the engine, the rest wait.
#[derive(Default)]
pub(super) struct Triage {
    pub(super) due: usize,
    pub(super) stale: Vec<Stale>,
    pub(super) defer: Deferrals,
    pub(super) warn: Warnings,
    /// With an interaction queued: the drain restarts their clock first.
    pub(super) waiting: usize,
}

/// The ladder's verdicts, gathered for writing.
#[derive(Default)]
pub(super) struct Verdicts<'p> {
    pub(super) writes: Vec<Write<'p>>,
    pub(super) audit: AuditCols,
    /// Ownership rows the router stops tracking.
    pub(super) finished: Vec<String>,
    /// Left with their owner: the clock restarts.
    pub(super) restart: Vec<String>,
    /// The ledger entry of each reassignment, to take back if it is not written.
    pub(super) pending_undo: HashMap<String, (usize, i64)>,
    /// Rows a CRM transaction holds: not waited for, looked at again by the next sweep.
    pub(super) locked: usize,
}

/// Sort the due rows: a queued interaction that counts waits for the drain; otherwise the
/// policy says whether it is stale, a warning is due, or nothing before some moment.
pub(super) fn triage(
    engine: &Engine,
    policy: &ReclaimPolicy,
    due: Vec<DueRow>,
    queued: &Queued,
    now: DateTime<Utc>,
) -> Triage {
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
    pub(super) fn push(&mut self, opp: String, at: DateTime<Utc>, warned: bool) {
        self.opp.push(opp);
        self.at.push(at);
        self.warned.push(warned);
    }
}

/// What was not written (a person changed it this instant) is not recorded as reclaimed, and its
/// ledger entry is taken back. What a reclaim statement wrote to another owner than the one
/// picked is recorded as written to that owner (the loads follow it too).
pub(super) fn unwritten(
    v: &mut Verdicts<'_>,
    written: &HashMap<String, String>,
    ledger: &mut Ledger,
    journal: &mut Vec<Journal>,
) {
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
pub(super) fn move_loads(engine: &Engine, done: &[&Write<'_>], ledger: &mut Ledger, journal: &mut Vec<Journal>) {
    for w in done {
        if let Some(m) = engine.member_index(&w.old) {
            let open = (ledger.open[m] - 1).max(0);
            crate::drain::set_open(ledger, journal, m, open);
        }
        if !w.by_engine {
            if let Some(m) = engine.member_index(&w.new) {
                let open = ledger.open[m] + 1;
                crate::drain::set_open(ledger, journal, m, open);
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
