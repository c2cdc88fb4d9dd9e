//! A batch's decisions after the write-back: the owners the write says it set, the rows it
//! missed read again, and what is left to record (audit, ownership, counts). It must not decide
//! owners: a write that set another owner is recorded as written.

use std::collections::HashMap;

use super::{Again, Pending, RouteStep};
use crate::crm::WriteSql;
use crate::drain::skips::{self, Skips};
use crate::drain::{write_per_row, AuditCols, BatchReport, BatchTx, Context, Drain, Journal, Routed};
use crate::engine::{Engine, Outcome};

/// Rows for `ownership`: what the router assigned, and when the sweeper first looks.
#[derive(Default)]
pub(super) struct OwnershipCols {
    pub(super) opp: Vec<String>,
    pub(super) owner: Vec<String>,
    pub(super) team: Vec<Option<String>>,
    pub(super) pipeline: Vec<String>,
    /// Seconds to the sweeper's first look.
    pub(super) first_look: Vec<i64>,
}

/// What the batch records besides the CRM's owners.
#[derive(Default)]
pub(super) struct Records {
    pub(super) audit: AuditCols,
    pub(super) ownership: OwnershipCols,
    /// Assignments per owner in this batch.
    pub(super) assigned: HashMap<String, i64>,
    pub(super) routed: Vec<Routed>,
    /// Opportunities queued to route and not written, with why.
    pub(super) skips: Skips,
    /// Members whose load moved besides the decisions' own (a write statement's other owner).
    pub(super) touched: Vec<usize>,
}

/// What the write-back did: the owner written to each row it matched, and the rows it matched
/// nothing of as read again.
pub(super) struct Written {
    pub(super) owners: HashMap<String, String>,
    pub(super) missed: HashMap<String, Context>,
}

impl Drain {
    /// Write owners back; only rows still unowned are written. Returns those written, each with
    /// the owner the write says it set.
    pub(super) async fn write_owners(
        &self,
        t: &BatchTx<'_>,
        pending: &[Pending],
    ) -> Result<HashMap<String, String>, tokio_postgres::Error> {
        let to_write: Vec<&Pending> = pending.iter().filter(|p| p.decision.owner.is_some()).collect();
        let mut written: HashMap<String, String> = HashMap::new();
        if to_write.is_empty() {
            return Ok(written);
        }
        match &self.sql.write {
            WriteSql::Batch(sql) => {
                let ids: Vec<&str> = to_write.iter().map(|p| p.opp.as_str()).collect();
                let owners: Vec<Option<&str>> = to_write.iter().map(|p| p.decision.owner.as_deref()).collect();
                let teams: Vec<Option<&str>> = to_write.iter().map(|p| p.decision.team_crm_id.as_deref()).collect();
                for r in t.query(sql, &[&ids, &owners, &teams]).await? {
                    written.insert(r.try_get("id")?, r.try_get("owner")?);
                }
            }
            WriteSql::PerRow { sql, params } => {
                let rows = to_write.iter().map(|p| {
                    [Some(p.opp.clone()), p.decision.owner.clone(), p.decision.team_crm_id.clone(), p.previous.clone()]
                });
                written.extend(write_per_row(t.prep, t.tx, sql, params, rows).await?);
            }
        }
        Ok(written)
    }

    /// The rows a write matched nothing of, read again (their state alone): what they are now
    /// says why. One more query, only in a batch where a write missed.
    pub(super) async fn reread_missed(
        &self,
        t: &BatchTx<'_>,
        pending: &[Pending],
        written: &HashMap<String, String>,
    ) -> Result<HashMap<String, Context>, tokio_postgres::Error> {
        let missed: Vec<String> = (pending.iter())
            .filter(|p| p.decision.owner.is_some() && !written.contains_key(&p.opp))
            .map(|p| p.opp.clone())
            .collect();
        if missed.is_empty() {
            return Ok(HashMap::new());
        }
        self.load_context(t, &[], &missed, false).await
    }

    /// A decision whose write matched no row: taken back out of the ledger, and recorded with why
    /// (a statement that refused a row nobody has leaves it unowned, and says so).
    fn missed(&self, p: &Pending, now: Option<&Context>, step: &mut RouteStep<'_>) {
        if let Some((m, at)) = p.decision.undo.assigned {
            step.ledger.unassign(m, at);
            step.journal.push(Journal::Unassigned(m, at));
        }
        let custom = matches!(self.sql.write, WriteSql::PerRow { .. });
        let (why, left_unowned) = skips::after_write(now, custom);
        step.tally.skips.push(&p.opp, why, now.and_then(|c| c.owner.clone()), p.event_at);
        step.tally.report.skipped += 1;
        step.tally.report.skipped_by.push(why);
        if left_unowned {
            step.tally.unrouted.unwritten(&p.opp, &p.decision.pipeline);
        } else {
            step.tally.unrouted.clear(&p.opp);
        }
    }

    /// A write statement that set another owner than the one picked: the ledger, the audit and
    /// the tracking follow what it wrote. Returns the member now holding it, when one is.
    fn written_as(&self, engine: &Engine, p: &mut Pending, owner: &str, step: &mut RouteStep<'_>) -> Option<usize> {
        tracing::warn!(opportunity = %p.opp, picked = ?p.decision.owner, written = owner,
            "write_back.statement set another owner than the one picked; recorded as written");
        let at = p.decision.undo.assigned.map(|(_, at)| at);
        if let Some((m, at)) = p.decision.undo.assigned.take() {
            step.ledger.unassign(m, at);
            step.journal.push(Journal::Unassigned(m, at));
        }
        p.decision.owner = Some(owner.to_string());
        let n = engine.member_index(owner)?;
        let at = at.unwrap_or_else(|| p.event_at.timestamp());
        step.ledger.assign(n, at);
        step.journal.push(Journal::Assigned(n, at));
        Some(n)
    }

    /// The decisions as they stand after the write: one a person (or another writer) owned
    /// between our read and our write is taken back out of the ledger and recorded as skipped;
    /// the others are counted, audited and tracked as written.
    pub(super) fn settle(
        &self,
        engine: &Engine,
        pending: Vec<Pending>,
        written: &Written,
        step: &mut RouteStep<'_>,
    ) -> Records {
        let mut r = Records::default();
        for mut p in pending {
            if p.decision.owner.is_some() {
                match written.owners.get(&p.opp) {
                    None => {
                        self.missed(&p, written.missed.get(&p.opp), step);
                        continue;
                    }
                    Some(w) if p.decision.owner.as_deref() != Some(w.as_str()) => {
                        r.touched.extend(self.written_as(engine, &mut p, w, step));
                    }
                    Some(_) => {}
                }
            }
            let d = &p.decision;
            step.tally.unrouted.note(&p.opp, d);
            count(&mut step.tally.report, &p, &mut step.tally.again);
            tracing::debug!(opportunity = %p.opp, owner = ?d.owner, team = ?d.team, outcome = d.outcome.as_str(),
                rule = ?d.rule_id, pipeline = %d.pipeline, "decision");
            r.audit.push(&p.opp, d, p.previous.clone(), p.event_at, p.seen.take());
            if let Some(o) = &d.owner {
                r.ownership.opp.push(p.opp.clone());
                r.ownership.owner.push(o.clone());
                r.ownership.team.push(d.team.clone());
                r.ownership.pipeline.push(d.pipeline.clone());
                // The sweeper's first look: the shortest window (now, without a reclaim rule, so
                // a rule added later finds it at once).
                let first =
                    engine.pipelines.get(&d.pipeline).and_then(|p| p.reclaim.as_ref()).map_or(0, |r| r.earliest());
                r.ownership.first_look.push(first);
                *r.assigned.entry(o.clone()).or_default() += 1;
            }
            let entitled = match (&d.owner, &d.rule_id, &d.team) {
                (Some(_), Some(rule), Some(team)) => engine.entitlement(&d.explanation, &d.pipeline, rule, team),
                _ => Vec::new(),
            };
            r.routed.push(Routed {
                opp_id: p.opp.clone(),
                owner: d.owner.clone(),
                team: d.team.clone(),
                outcome: d.outcome,
                rule_id: d.rule_id.clone(),
                pipeline: d.pipeline.clone(),
                event_at: p.event_at,
                entitled,
            });
        }
        r
    }
}

/// The decision in the batch's counts; one held for capacity goes back in the queue for later.
fn count(report: &mut BatchReport, p: &Pending, again: &mut Again) {
    match p.decision.outcome {
        Outcome::Rule => report.routed += 1,
        Outcome::Fallback => report.fallback += 1,
        Outcome::Held => {
            report.held += 1;
            if let Some(at) = p.decision.retry_at {
                again.push(&p.opp, p.event_at, at);
            }
        }
        // The engine's route never yields these (the sweeper sets them).
        Outcome::Unassigned | Outcome::Reclaim | Outcome::Kept => report.unassigned += 1,
    }
}
