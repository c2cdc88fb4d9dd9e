//! The sweep's writes, each conditional on the CRM still showing the owner the router assigned:
//! the new owners, the audit, tracking, deferrals, warnings and pauses for lapses. It must not
//! decide anything.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

use crate::crm::Reassign;
use crate::drain::{clamp_i32, write_per_row, Drain};
use crate::engine::{Engine, Ledger};

use super::{Deferrals, SweepBatch, Triage, Verdicts, Warnings, Write};

impl Drain {
    /// Write the new owners: only where the CRM still has the owner we assigned and no
    /// interaction that counts arrived since the read. Returns the opportunities written, each
    /// with the owner the write says it set.
    pub(super) async fn reassign(
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
    pub(super) async fn record_sweep(
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
    pub(super) async fn track(
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
    pub(super) async fn defer(
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
    pub(super) async fn warn(
        &self,
        tx: &Transaction<'_>,
        pipeline: &str,
        w: &Warnings,
    ) -> Result<(), tokio_postgres::Error> {
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
    pub(super) async fn pause_lapsed(
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
