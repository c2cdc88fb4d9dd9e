//! One batch's work inside its transaction, phase by phase: sort the events, recount loads a
//! person moved, read the opportunities, forget what a person took over, route, write owners
//! back (only where still unowned), and record it all (audit, ownership, loads, interactions,
//! opportunities to route again, pick state, what is left unowned).
//!
//! Owns the order of those phases and the columns each statement is given. It must not decide
//! owners (the engine does), nor commit: the caller commits or rolls back the whole batch.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::skips::Skips;
use super::{set_open, BatchReport, BatchTx, Context, Drain, Event, EventKind, Journal, LedgerTx, Routed, Unrouted};

/// How long a batch that must recount loads looks for a moment when no other batch is in flight,
/// before it is given back (to be claimed again [`super::DEFER_DELAY`] later).
pub(super) const RECOUNT_WAIT: Duration = Duration::from_millis(500);
use crate::db::row::FromRow;
use crate::engine::{Decision, Engine, Ledger};

mod record;
mod route;
mod settle;
use record::LedgerState;
use settle::Written;

/// A batch's events by what they ask for.
#[derive(Default)]
struct Sorted<'e> {
    /// Opportunities to route, each once.
    route: Vec<&'e Event>,
    /// Opportunities whose owner, open-ness or soft delete changed.
    changed: Vec<String>,
    /// Interactions (activities and edits).
    activities: Vec<&'e Event>,
    /// Owners whose load a person moved.
    recount: HashSet<String>,
}

/// A routing decision waiting to be written and recorded.
struct Pending {
    opp: String,
    decision: Decision,
    previous: Option<String>,
    event_at: DateTime<Utc>,
    /// What the decision saw (`engine::seen`), as stored with it.
    seen: Option<String>,
}

/// Opportunities to route again later (held for capacity, locked by a CRM transaction).
#[derive(Default)]
struct Again {
    opp: Vec<String>,
    waiting_since: Vec<DateTime<Utc>>,
    at: Vec<DateTime<Utc>>,
}

impl Again {
    fn push(&mut self, opp: &str, waiting_since: DateTime<Utc>, at: DateTime<Utc>) {
        self.opp.push(opp.to_string());
        self.waiting_since.push(waiting_since);
        self.at.push(at);
    }
}

/// What routing and settling a batch change besides the ledger: the counts, what is left
/// unowned, what is routed again later, what was not written and why.
#[derive(Default)]
struct Tally {
    report: BatchReport,
    unrouted: Unrouted,
    again: Again,
    skips: Skips,
}

/// The ledger lent for a phase, and the batch's [`Tally`].
struct RouteStep<'a> {
    ledger: &'a mut Ledger,
    journal: &'a mut Vec<Journal>,
    tally: &'a mut Tally,
}

/// Time spent per phase, into the report.
struct Laps(Instant);

impl Laps {
    fn lap(&mut self, report: &mut BatchReport, phase: usize) {
        report.phase_us[phase] += self.0.elapsed().as_micros() as u64;
        self.0 = Instant::now();
    }
}

impl Drain {
    pub(super) async fn process(
        &self,
        t: &BatchTx<'_>,
        events: &[Event],
        lent: &mut LedgerTx<'_>,
    ) -> Result<(BatchReport, Vec<Routed>), tokio_postgres::Error> {
        let engine = &*self.engine;
        let mut tally = Tally::default();
        let mut touched: HashSet<usize> = HashSet::new();
        let mut sorted = self.sort(events, &mut tally.report);
        // A recount sees only committed loads: it runs when no other batch has assignments in
        // flight (a batch takes its place at the gate only as it starts routing, so one stuck
        // reading its context holds up no recount).
        if !sorted.recount.is_empty() {
            if !lent.enter(true, RECOUNT_WAIT).await {
                // Nothing done yet: the caller rolls back and gives the events back.
                return Ok((BatchReport { deferred: events.len(), ..Default::default() }, Vec::new()));
            }
            self.recount(t, engine, std::mem::take(&mut sorted.recount), lent, &mut touched).await?;
            lent.share();
        }
        // Opportunities to route need their fields; those that only changed, their state alone.
        let mut ids: Vec<String> = sorted.route.iter().map(|e| e.opp_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let mut state_ids: Vec<String> =
            sorted.changed.iter().filter(|i| ids.binary_search(i).is_err()).cloned().collect();
        state_ids.sort();
        state_ids.dedup();
        let mut laps = Laps(Instant::now());
        let ctx = self.load_context(t, &ids, &state_ids, true).await?;
        tally.unrouted = self.release(t, &sorted.changed, &ctx).await?;
        laps.lap(&mut tally.report, 1);
        lent.enter(false, Duration::ZERO).await;
        let now = Utc::now();
        let pending = lent.with(|ledger, journal| {
            ledger.trim(now.timestamp(), engine.history);
            self.route(engine, &sorted.route, &ctx, now, &mut RouteStep { ledger, journal, tally: &mut tally })
        });
        for p in &pending {
            touched.extend(p.decision.undo.assigned.map(|(m, _)| m));
        }
        laps.lap(&mut tally.report, 2);
        let written = self.write_owners(t, &pending).await?;
        let missed = self.reread_missed(t, &pending, &written).await?;
        laps.lap(&mut tally.report, 3);
        let (records, state) = lent.with(|ledger, journal| {
            let mut step = RouteStep { ledger, journal, tally: &mut tally };
            let mut records = self.settle(engine, pending, &Written { owners: written, missed }, &mut step);
            records.skips = std::mem::take(&mut step.tally.skips);
            touched.extend(records.touched.iter().copied());
            let state = LedgerState::of(engine, &touched, &records, step.ledger);
            (records, state)
        });
        let Tally { mut report, unrouted, again, .. } = tally;
        let (routed, stored) =
            self.record_batch(t, engine, records, state, &sorted.activities, again, unrouted).await?;
        lent.learned.extend(stored);
        laps.lap(&mut report, 4);
        Ok((report, routed))
    }

    /// Who is touched: opportunities to route, opportunities that changed, owners to recount.
    /// Whether the event moves the load of a member of the rules in force (its owners are then
    /// recounted from the CRM, alone at the gate).
    pub(super) fn needs_recount(&self, ev: &Event) -> bool {
        self.recounted(ev).next().is_some()
    }

    /// The members of the rules in force whose loads the event moves (its owners, the unowned
    /// left out): the one definition the gate and the recount share.
    fn recounted<'e>(&self, ev: &'e Event) -> impl Iterator<Item = &'e String> + use<'_, 'e> {
        [&ev.old_owner, &ev.new_owner]
            .into_iter()
            .flatten()
            .filter(|o| !self.sql.unowned(Some(o)) && self.engine.member_index(o).is_some())
    }

    fn sort<'e>(&self, events: &'e [Event], report: &mut BatchReport) -> Sorted<'e> {
        let mut s = Sorted::default();
        let mut seen_route = HashSet::new();
        for ev in events {
            s.recount.extend(self.recounted(ev).cloned());
            match ev.kind {
                EventKind::Route => {
                    if seen_route.insert(ev.opp_id.as_str()) {
                        s.route.push(ev);
                    }
                }
                EventKind::Changed => {
                    report.changes += 1;
                    s.changed.push(ev.opp_id.clone());
                }
                EventKind::Activity | EventKind::Edit => {
                    report.activities += 1;
                    s.activities.push(ev);
                }
            }
        }
        s
    }

    /// Members' loads moved by a person (owner changed, closed, reopened, deleted): recount them.
    async fn recount(
        &self,
        t: &BatchTx<'_>,
        engine: &Engine,
        recount: HashSet<String>,
        lent: &mut LedgerTx<'_>,
        touched: &mut HashSet<usize>,
    ) -> Result<(), tokio_postgres::Error> {
        if recount.is_empty() {
            return Ok(());
        }
        let owners: Vec<String> = recount.into_iter().collect();
        let rows = t.query(&self.sql.recount, &[&owners]).await?;
        let mut counts: HashMap<String, i64> =
            crate::crm::Load::from_rows(&rows)?.into_iter().map(|l| (l.owner, l.open)).collect();
        lent.with(|ledger, journal| {
            for o in &owners {
                if let Some(m) = engine.member_index(o) {
                    set_open(ledger, journal, m, counts.remove(o).unwrap_or(0));
                    touched.insert(m);
                }
            }
        });
        Ok(())
    }

    /// Changed opportunities: forget the ownership of what a person took over, closed or
    /// deleted; those no longer routable leave `unrouted`.
    async fn release(
        &self,
        t: &BatchTx<'_>,
        changed: &[String],
        ctx: &HashMap<String, Context>,
    ) -> Result<Unrouted, tokio_postgres::Error> {
        let mut unrouted = Unrouted::default();
        if changed.is_empty() {
            return Ok(unrouted);
        }
        let owners: Vec<Option<String>> = changed.iter().map(|i| ctx.get(i).and_then(|c| c.owner.clone())).collect();
        let open: Vec<bool> =
            changed.iter().map(|i| ctx.get(i).is_some_and(|c| c.open && !c.deleted && c.opportunity)).collect();
        t.execute(&self.store.release, &[&changed, &owners, &open]).await?;
        for id in changed {
            if !ctx.get(id).is_some_and(|c| self.routable(c)) {
                unrouted.clear(id);
            }
        }
        Ok(unrouted)
    }

    /// An open opportunity, not deleted, without an owner.
    fn routable(&self, c: &Context) -> bool {
        c.opportunity && c.open && !c.deleted && self.unowned(c)
    }

    fn unowned(&self, c: &Context) -> bool {
        c.unowned
    }
}
