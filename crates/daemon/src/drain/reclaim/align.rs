//! Due times brought forward when a pipeline's reclaim rule changes: once per rule set (a canonical
//! fingerprint, never `Debug` output), a chunk of ids at a time between batches, fenced on the
//! lease. It must not decide what is stale.

use sha2::Digest;
use tokio_postgres::Client;

use crate::db::row::FromRow;
use crate::drain::Drain;
use crate::engine::{Engine, ReclaimPolicy};
use crate::store::{AlignChunk, SweepStatements};

/// What a pipeline's due times depend on: its reclaim rule, and the schedules when a window
/// counts working hours (each member's, in id order). A change brings stored due times forward
/// once. Canonical text, never `Debug` output: a dependency's upgrade must not re-align every
/// pipeline.
pub(super) fn fingerprint(engine: &Engine, policy: &ReclaimPolicy) -> String {
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
    /// Due times are lower bounds under the rule they were computed with. When a pipeline's rule
    /// (or, for working-hours windows, a schedule) changes, bring them forward to the new
    /// shortest window once, so a shorter window is never missed. One chunk of rows per call, in
    /// id order after `after` (its own statement: routing never waits for a million rows); true
    /// once aligned. Each chunk is idempotent: a sweep cut short does it again next time.
    pub(super) async fn align_chunk(
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
            self.prep.execute(client, &sweep.set_fingerprint, &[&pipeline, &fp, &self.fence]).await?;
            tracing::info!(pipeline, "reclaim rule changed: due times brought forward");
        }
        self.aligned.insert(pipeline.to_string(), (engine.version.clone(), fp));
        Ok(true)
    }

    /// One chunk of due times brought forward: the next `20 × batch_size` ids of the pipeline
    /// after `after` (a range of the primary key), those to move updated by id (`first`: the
    /// pipeline's first alignment, see `store::Sweep::first`). True when
    /// the pipeline's last ids are done.
    pub(super) async fn align_step(
        &self,
        client: &mut Client,
        pipeline: &str,
        policy: &ReclaimPolicy,
        first: usize,
        after: &mut String,
    ) -> Result<bool, tokio_postgres::Error> {
        let chunk = i64::from(self.cfg.router.batch_size) * 20;
        let sql = &self.store.sweep.align_chunk[first];
        let row =
            self.prep.query_one(client, sql, &[&pipeline, &policy.earliest(), &chunk, &*after, &self.fence]).await?;
        let AlignChunk { seen, last, moved } = AlignChunk::from_row(&row)?;
        tracing::debug!(pipeline, brought_forward = moved, "reclaim rule changed: due times brought forward");
        *after = last.unwrap_or_default();
        Ok(seen < chunk)
    }
}
