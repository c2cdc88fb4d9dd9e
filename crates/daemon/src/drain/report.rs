//! What a batch did, as the router tells it: the committed decisions (`Routed`), the batch's
//! report, its log line (one per batch at info) and its metrics. Derived from what the batch
//! committed; it must not read or write anything itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::engine::Outcome;
use crate::held::held;

use super::{Drain, PHASES};

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

/// `BatchReport` with its counts named once: the struct's fields and their sum (`add`) both come
/// from the list.
macro_rules! batch_report {
    ($( $(#[$doc:meta])* $count:ident ),* $(,)?) => {
        /// What one batch did.
        #[derive(Debug, Default, Clone)]
        pub struct BatchReport {
            $( $(#[$doc])* pub $count: usize, )*
            /// Why each skipped one was not written (`drain::skips`'s words), counted once committed.
            pub skipped_by: Vec<&'static str>,
            /// Where the time went, in microseconds: claim, context, route, write, record, commit.
            pub phase_us: [u64; 6],
        }

        impl BatchReport {
            /// Another batch's report added to this one (a round's, a drain's).
            pub(super) fn add(&mut self, o: &BatchReport) {
                $( self.$count += o.$count; )*
                self.skipped_by.extend(&o.skipped_by);
                for (a, b) in self.phase_us.iter_mut().zip(o.phase_us) {
                    *a += b;
                }
            }
        }
    };
}

batch_report! {
    claimed,
    routed,
    fallback,
    held,
    unassigned,
    skipped,
    activities,
    changes,
    retried,
    dead_lettered,
    /// Events of a fresh batch that failed as a whole, processed one by one instead.
    isolated,
    /// Opportunities a CRM transaction held locked: left for a moment, routed again shortly.
    locked,
    /// Events whose transaction met another one (a deadlock, a serialization failure): rolled
    /// back, not charged, claimed again.
    contended,
    /// Events of a batch that had to recount loads and found no moment without another batch in
    /// flight: given back uncharged, claimed again a moment later.
    deferred,
}

impl Drain {
    /// The one line per batch, at info.
    pub(super) fn log_batch(&self, report: &BatchReport, started: Instant) {
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
    pub(super) fn publish(&self, routed: Vec<Routed>, report: &BatchReport) {
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
            let mut shares = held(&self.shares);
            routed.iter().for_each(|r| shares.add(r));
        }
        if let Some(tx) = &self.decisions {
            for r in routed {
                let _ = tx.send(r);
            }
        }
    }
}
