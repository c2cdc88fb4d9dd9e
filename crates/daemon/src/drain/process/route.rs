//! Routing a batch's opportunities: each still routable one through the engine, with its own
//! seed, and what the decision saw kept beside it. It must not write anything: the decisions go
//! back to the batch as pending.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::{Pending, RouteStep};
use crate::drain::skips;
use crate::drain::{Context, Drain, Event, Journal};
use crate::engine::{Decision, Engine, Opportunity};
use crate::held::held;

impl Drain {
    /// Route each opportunity still routable; one a CRM transaction holds is routed again
    /// shortly, never waited on.
    pub(super) fn route(
        &self,
        engine: &Engine,
        route: &[&Event],
        ctx: &HashMap<String, Context>,
        now: DateTime<Utc>,
        step: &mut RouteStep<'_>,
    ) -> Vec<Pending> {
        let mut pending = Vec::new();
        let mut rng = held(&self.rng);
        // Looked up once a batch: each decision then costs two clock reads and an atomic add.
        let decision_time = metrics::histogram!("oppty_router_decision_seconds");
        for ev in route {
            let Some(c) = ctx.get(&ev.opp_id).filter(|c| self.routable(c)) else {
                let seen = ctx.get(&ev.opp_id);
                let why = skips::at_read(seen);
                step.tally.skips.push(&ev.opp_id, why, seen.and_then(|c| c.owner.clone()), ev.created_at);
                step.tally.report.skipped += 1;
                step.tally.report.skipped_by.push(why);
                step.tally.unrouted.clear(&ev.opp_id);
                continue;
            };
            if c.locked {
                let at = now + chrono::Duration::from_std(self.cfg.router.retry_backoff).unwrap_or_default();
                // Per decision, at debug: a row a person holds for minutes comes back every
                // retry_backoff; the batch line counts it (`locked`).
                tracing::debug!(opportunity = %ev.opp_id, retry_at = %at, "locked by a CRM transaction; routing it again shortly");
                step.tally.report.locked += 1;
                step.tally.again.push(&ev.opp_id, ev.created_at, at);
                continue;
            }
            let opp = Opportunity {
                id: &ev.opp_id,
                pipeline: c.pipeline.as_deref(),
                fields: &c.fields,
                waiting_since: ev.created_at,
                exclude: &[],
                only_team: None,
            };
            // Each decision's randomness from a seed of its own, kept with what it saw: a replay
            // draws the same.
            let seed: u64 = rand::RngExt::random(&mut *rng);
            let started = std::time::Instant::now();
            let decision = engine.route(&opp, step.ledger, now, &mut SmallRng::seed_from_u64(seed));
            decision_time.record(started.elapsed().as_secs_f64());
            let seen = self.seen(engine, &opp, &decision, step.ledger, now, seed);
            step.journal.push(Journal::Assign(decision.undo.clone()));
            pending.push(Pending {
                opp: ev.opp_id.clone(),
                decision,
                previous: c.owner.clone(),
                event_at: ev.created_at,
                seen,
            });
        }
        pending
    }

    /// What a decision saw, as JSON: the fields by name, the moment, the seed, and the ledger as
    /// it stood before the decision for the members its rules reached.
    fn seen(
        &self,
        engine: &Engine,
        opp: &Opportunity<'_>,
        d: &Decision,
        ledger: &crate::engine::Ledger,
        now: DateTime<Utc>,
        seed: u64,
    ) -> Option<String> {
        use crate::engine::seen::{reached, LedgerView, Seen};
        let reached = reached(engine, &d.explanation);
        let view = LedgerView::of(engine, ledger, &reached, &d.pipeline, now, &d.undo);
        let names = self.cfg.opportunity.fields.iter().map(|f| f.name.clone());
        let seen = Seen {
            now_us: now.timestamp_micros(),
            seed,
            pipeline: opp.pipeline.map(str::to_string),
            fields: names.zip(opp.fields).filter_map(|(n, v)| Some((n, v.clone()?))).collect(),
            waiting_since_us: opp.waiting_since.timestamp_micros(),
            exclude: opp.exclude.iter().map(|x| x.to_string()).collect(),
            only_team: opp.only_team.map(str::to_string),
            ledger: view,
        };
        serde_json::to_string(&seen).ok()
    }
}
