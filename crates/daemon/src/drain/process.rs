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

use super::skips::{self, Skips};
use super::{
    clamp_i32, first_cause, set_open, write_per_row, AuditCols, BatchReport, BatchTx, Context, Drain, Event, EventKind,
    Journal, LedgerTx, Routed, Unrouted,
};
use crate::crm::WriteSql;

/// How long a batch that must recount loads looks for a moment when no other batch is in flight,
/// before it is given back (to be claimed again [`super::DEFER_DELAY`] later).
pub(super) const RECOUNT_WAIT: Duration = Duration::from_millis(500);
use crate::db::row::FromRow;
use crate::engine::{Decision, Engine, Ledger, Opportunity, Outcome};
use crate::held::held;
use rand::rngs::SmallRng;
use rand::SeedableRng;

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

/// Rows for `ownership`: what the router assigned, and when the sweeper first looks.
#[derive(Default)]
struct OwnershipCols {
    opp: Vec<String>,
    owner: Vec<String>,
    team: Vec<Option<String>>,
    pipeline: Vec<String>,
    /// Seconds to the sweeper's first look.
    first_look: Vec<i64>,
}

/// What the batch records besides the CRM's owners.
#[derive(Default)]
struct Records {
    audit: AuditCols,
    ownership: OwnershipCols,
    /// Assignments per owner in this batch.
    assigned: HashMap<String, i64>,
    routed: Vec<Routed>,
    /// Opportunities queued to route and not written, with why.
    skips: Skips,
    /// Members whose load moved besides the decisions' own (a write statement's other owner).
    touched: Vec<usize>,
}

/// What the write-back did: the owner written to each row it matched, and the rows it matched
/// nothing of as read again.
struct Written {
    owners: HashMap<String, String>,
    missed: HashMap<String, Context>,
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

/// The ledger as the batch leaves it, to store: the touched members' loads and assignment
/// totals (by member id, so two batches lock `member_state` rows in the same order), and the
/// pick state that changed.
struct LedgerState {
    members: Vec<String>,
    counts: Vec<i32>,
    totals: Vec<i64>,
    keys: Vec<String>,
    cursors: Vec<Option<String>>,
    weights: Vec<String>,
}

impl LedgerState {
    fn of(engine: &Engine, touched: &HashSet<usize>, r: &Records, ledger: &mut Ledger) -> LedgerState {
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

    /// Route each opportunity still routable; one a CRM transaction holds is routed again
    /// shortly, never waited on.
    fn route(
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

    /// Write owners back; only rows still unowned are written. Returns those written, each with
    /// the owner the write says it set.
    async fn write_owners(
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
    async fn reread_missed(
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
    fn settle(&self, engine: &Engine, pending: Vec<Pending>, written: &Written, step: &mut RouteStep<'_>) -> Records {
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

    /// Audit, ownership, interactions, opportunities to route again, what is left unowned,
    /// loads and pick state: one statement each, pipelined (sent together, one round trip's
    /// wait). All are awaited, so that the error reported is the one that failed the
    /// transaction, not a later statement's "aborted".
    #[allow(clippy::too_many_arguments)]
    async fn record_batch(
        &self,
        t: &BatchTx<'_>,
        engine: &Engine,
        r: Records,
        state: LedgerState,
        activities: &[&Event],
        again: Again,
        unrouted: Unrouted,
    ) -> Result<(Vec<Routed>, Vec<super::ExplanationKey>), tokio_postgres::Error> {
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
