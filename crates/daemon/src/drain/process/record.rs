//! Recording a batch beside the owners: audit, ownership, interactions, opportunities to route
//! again, what is left unowned, loads and pick state, one statement each, pipelined. It must not
//! decide or change any decision.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::settle::Records;
use super::Again;
use crate::drain::{clamp_i32, first_cause, BatchTx, Drain, Event, EventKind, ExplanationKey, Routed, Unrouted};
use crate::engine::{Engine, Ledger};

/// The ledger as the batch leaves it, to store: the touched members' loads and assignment
/// totals (by member id, so two batches lock `member_state` rows in the same order), and the
/// pick state that changed.
pub(super) struct LedgerState {
    members: Vec<String>,
    counts: Vec<i32>,
    totals: Vec<i64>,
    keys: Vec<String>,
    cursors: Vec<Option<String>>,
    weights: Vec<String>,
}

impl LedgerState {
    pub(super) fn of(engine: &Engine, touched: &HashSet<usize>, r: &Records, ledger: &mut Ledger) -> LedgerState {
        let mut members: Vec<usize> = touched.iter().copied().collect();
        members.sort_by(|a, b| engine.members[*a].id.cmp(&engine.members[*b].id));
        let ids: Vec<String> = members.iter().map(|m| engine.members[*m].id.to_string()).collect();
        let counts = members.iter().map(|m| clamp_i32(ledger.open[*m])).collect();
        let totals = ids.iter().map(|m| r.assigned.get(m).copied().unwrap_or(0)).collect();
        let keys = ledger.take_dirty();
        let cursors = keys.iter().map(|k| ledger.cursors.get(k).cloned()).collect();
        let weights = (keys.iter())
            .map(|k| ledger.weights.get(k).and_then(|w| serde_json::to_string(w).ok()).unwrap_or_else(|| "{}".into()))
            .collect();
        LedgerState { members: ids, counts, totals, keys, cursors, weights }
    }
}

impl Drain {
    /// Audit, ownership, interactions, opportunities to route again, what is left unowned,
    /// loads and pick state: one statement each, pipelined (sent together, one round trip's
    /// wait). All are awaited, so that the error reported is the one that failed the
    /// transaction, not a later statement's "aborted".
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_batch(
        &self,
        t: &BatchTx<'_>,
        engine: &Engine,
        r: Records,
        state: LedgerState,
        activities: &[&Event],
        again: Again,
        unrouted: Unrouted,
    ) -> Result<(Vec<Routed>, Vec<ExplanationKey>), tokio_postgres::Error> {
        let LedgerState { members, counts, totals, keys, cursors, weights } = state;
        let (a, own) = (&r.audit, &r.ownership);
        // Prepared first, then polled in order (`biased`), so each goes out on its first poll and
        // they reach the server in this order in every batch: two batches then take their locks
        // in one order (explanations, loads, turns; each sorted). A first use sent after the
        // others (waiting for its parse) deadlocked with a batch on another connection (1 s lost).
        let st = &self.store;
        let sqls =
            [&st.audit, &st.own, &st.touch, &st.requeue, &st.unrouted, &st.skips, &st.member_state, &st.pick_state];
        t.prep.prepare_all(t.tx, &sqls.map(String::as_str)).await?;
        let audit = async {
            if a.opp.is_empty() {
                return Ok(Vec::new());
            }
            a.insert(t.prep, t.tx, &self.store.audit, &engine.version, &self.explained).await
        };
        let ownership = async {
            if own.opp.is_empty() {
                return Ok(0);
            }
            t.execute(&self.store.own, &[&own.opp, &own.owner, &own.team, &own.pipeline, &own.first_look]).await
        };
        let member_state = async {
            if members.is_empty() {
                return Ok(0);
            }
            t.execute(&self.store.member_state, &[&members, &counts, &totals]).await
        };
        let touch = self.touch(t, activities);
        let requeue = async {
            if again.opp.is_empty() {
                return Ok(0);
            }
            t.execute(&self.store.requeue, &[&again.opp, &again.waiting_since, &again.at]).await
        };
        let picks = async {
            if keys.is_empty() {
                return Ok(0);
            }
            t.execute(&self.store.pick_state, &[&keys, &cursors, &weights]).await
        };
        let parked = async {
            if unrouted.is_empty() {
                return Ok(0);
            }
            let (clear, park) = unrouted.into_columns();
            t.execute(&self.store.unrouted, &[&clear, &park.0, &park.1, &park.2, &park.3]).await
        };
        let skipped = async {
            let k = &r.skips;
            if k.is_empty() {
                return Ok(0);
            }
            t.execute(&self.store.skips, &[&k.opp, &k.reason, &k.owner, &k.event_at]).await
        };
        // The rows other batches write too (loads, turns) go last: locked only until the commit.
        let (stored, ownership, touch, requeue, parked, skipped, member_state, picks) =
            tokio::join!(biased; audit, ownership, touch, requeue, parked, skipped, member_state, picks);
        let (keys, audit) = match stored {
            Ok(keys) => (keys, Ok(0)),
            Err(e) => (Vec::new(), Err(e)),
        };
        first_cause([audit, ownership, touch, requeue, parked, skipped, member_state, picks])?;
        Ok((r.routed, keys))
    }

    /// Interactions: the owner's clock restarts (and, for the sweeper, who touched it when).
    async fn touch(&self, t: &BatchTx<'_>, activities: &[&Event]) -> Result<u64, tokio_postgres::Error> {
        if activities.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = activities.iter().map(|e| e.opp_id.as_str()).collect();
        let actors: Vec<Option<&str>> = activities.iter().map(|e| e.actor.as_deref()).collect();
        let ats: Vec<DateTime<Utc>> = activities.iter().map(|e| e.at.unwrap_or(e.created_at)).collect();
        let edits: Vec<bool> = activities.iter().map(|e| e.kind == EventKind::Edit).collect();
        t.execute(&self.store.touch, &[&ids, &actors, &ats, &edits]).await
    }
}
