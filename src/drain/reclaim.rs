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
use tokio_postgres::Client;

use super::{
    clamp_i32, db_message, ends_session, rollback_ledger, write_per_row, AuditCols, Drain, DrainError, Journal,
};
use crate::capture::ORIGIN_SETTING;
use crate::crm::Reassign;
use crate::engine::{
    Decision, Due, Engine, EscalateTo, Exclude, Explanation, Ledger, Opportunity, Outcome, ReclaimElse, ReclaimPolicy,
    Stage, Undo,
};

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

fn blank_decision(pipeline: &str, owner: &str, team: Option<String>) -> Decision {
    Decision {
        owner: Some(owner.to_string()),
        team,
        team_crm_id: None,
        outcome: Outcome::Kept,
        pipeline: pipeline.to_string(),
        rule_id: None,
        tags: Vec::new(),
        retry_at: None,
        explanation: Explanation {
            pipeline: pipeline.to_string(),
            tags: Vec::new(),
            rules: Vec::new(),
            member: None,
            fallback: None,
            held: None,
            note: None,
        },
        undo: Undo::default(),
    }
}

/// What a pipeline's due times depend on: its reclaim rule, and the schedules when a window
/// counts working hours. A change brings stored due times forward once.
fn fingerprint(engine: &Engine, policy: &ReclaimPolicy) -> String {
    let mut h = sha2::Sha256::new();
    h.update(format!("{policy:?}"));
    if policy.working_hours || policy.by_team.values().any(|p| p.working_hours) {
        h.update(format!("{:?}", engine.schedules));
        for m in &engine.members {
            h.update(format!("{}={:?};", m.id, m.schedule));
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
        let mut ledger = std::mem::take(&mut self.ledger);
        let mut journal = Vec::new();
        let result = self
            .sweep_pipeline(client, &engine, &pipeline, policy, &reassign, &mut ledger, &mut journal, sweep.now)
            .await;
        if result.is_err() {
            rollback_ledger(&mut ledger, journal);
        }
        self.ledger = ledger;
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
    pub(super) async fn refresh_pauses<C: tokio_postgres::GenericClient>(
        &mut self,
        client: &C,
    ) -> Result<(), tokio_postgres::Error> {
        let s = self.cfg.router.schema.quoted();
        let rows =
            client.query(&format!("SELECT member_id FROM {s}.member_pauses WHERE lifted_at IS NULL"), &[]).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
        let changed = self.ledger.set_paused(&self.engine, ids.iter().map(String::as_str));
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
        let s = self.cfg.router.schema.quoted();
        let stored: Option<String> = client
            .query_opt(&format!("SELECT fingerprint FROM {s}.reclaim_state WHERE pipeline = $1"), &[&pipeline])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        if stored.as_deref() != Some(fp.as_str()) {
            // Brought forward where later than the new lower bound. The first time a pipeline is
            // seen (a new rule, or rows from before due times existed) every row is set to it, so
            // rows that would all look due at once are not refined one batch at a time.
            let cond = if stored.is_none() { "IS DISTINCT FROM" } else { ">" };
            let moves =
                format!("(o.due_at IS NULL OR o.due_at {cond} o.last_owner_touch_at + $2::int8 * interval '1 second')");
            // One look first: when nothing is to move (a longer window, another edit), that is all.
            let any: bool = client
                .query_one(
                    &format!("SELECT EXISTS (SELECT 1 FROM {s}.ownership o WHERE o.pipeline = $1 AND {moves})"),
                    &[&pipeline, &policy.earliest()],
                )
                .await?
                .try_get(0)?;
            if any && !self.align_step(client, pipeline, policy, &moves, after).await? {
                return Ok(false);
            }
            client
                .execute(
                    &format!(
                        "INSERT INTO {s}.reclaim_state (pipeline, fingerprint) VALUES ($1, $2) \
                         ON CONFLICT (pipeline) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, updated_at = clock_timestamp()"
                    ),
                    &[&pipeline, &fp],
                )
                .await?;
            tracing::info!(pipeline, "reclaim rule changed: due times brought forward");
        }
        self.aligned.insert(pipeline.to_string(), (engine.version.clone(), fp));
        Ok(true)
    }

    /// One chunk of due times brought forward: the next `20 × batch_size` ids of the pipeline
    /// after `after` (a range of the primary key), those that `moves` updated by id. True when
    /// the pipeline's last ids are done.
    async fn align_step(
        &self,
        client: &mut Client,
        pipeline: &str,
        policy: &ReclaimPolicy,
        moves: &str,
        after: &mut String,
    ) -> Result<bool, tokio_postgres::Error> {
        let s = self.cfg.router.schema.quoted();
        let chunk = i64::from(self.cfg.router.batch_size) * 20;
        // The ids are a CTE (run once, its LIMIT kept); the update finds them by key.
        let row = client
            .query_one(
                &format!(
                    "WITH c AS (SELECT opp_id FROM {s}.ownership WHERE pipeline = $1 AND opp_id > $4 ORDER BY opp_id LIMIT $3), \
                     u AS (UPDATE {s}.ownership o SET due_at = o.last_owner_touch_at + $2::int8 * interval '1 second' \
                     WHERE o.opp_id = ANY(ARRAY(SELECT opp_id FROM c)) AND {moves} RETURNING 1) \
                     SELECT (SELECT count(*) FROM c), (SELECT max(opp_id) FROM c), (SELECT count(*) FROM u)"
                ),
                &[&pipeline, &policy.earliest(), &chunk, &*after],
            )
            .await?;
        let (seen, last, moved): (i64, Option<String>, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        tracing::debug!(pipeline, brought_forward = moved, "reclaim rule changed: due times brought forward");
        *after = last.unwrap_or_default();
        Ok(seen < chunk)
    }

    #[allow(clippy::too_many_arguments)]
    async fn sweep_pipeline(
        &self,
        client: &mut Client,
        engine: &Engine,
        pipeline: &str,
        policy: &ReclaimPolicy,
        reassign: &Reassign,
        ledger: &mut Ledger,
        journal: &mut Vec<Journal>,
        now: DateTime<Utc>,
    ) -> Result<Swept, tokio_postgres::Error> {
        let s = self.cfg.router.schema.quoted();
        let limit = i64::from(self.cfg.router.batch_size);
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("SET LOCAL {ORIGIN_SETTING} = 'router'")).await?;
        // One range scan of (pipeline, due_at); rows being changed elsewhere are skipped.
        let due = tx
            .query(
                &format!(
                    "SELECT w.opp_id, w.owner_id, w.team_id, w.reclaims, w.stage, w.last_owner_touch_at, \
                     w.last_activity_at, w.last_owner_edit_at, w.warned_at \
                     FROM {s}.ownership w WHERE w.pipeline = $1 AND w.due_at <= $2 \
                     ORDER BY w.due_at LIMIT $3 FOR UPDATE OF w SKIP LOCKED"
                ),
                &[&pipeline, &now, &limit],
            )
            .await?;
        if due.is_empty() {
            tx.rollback().await?;
            return Ok(Swept::default());
        }
        let ids: Vec<String> = due.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
        // Interactions captured but not yet drained: they count as if drained.
        let mut queued: HashMap<String, Vec<(String, Option<String>)>> = HashMap::new();
        for r in tx
            .query(
                &format!(
                    "SELECT opp_id, kind, actor FROM {s}.events WHERE opp_id = ANY($1) AND kind IN ('activity', 'edit')"
                ),
                &[&ids],
            )
            .await?
        {
            queued.entry(r.try_get(0)?).or_default().push((r.try_get(1)?, r.try_get(2)?));
        }

        struct Row {
            id: String,
            old: String,
            team: Option<String>,
            reclaims: i32,
            stage: Stage,
            idle: i64,
        }
        let mut stale: Vec<Row> = Vec::new();
        let mut defer: (Vec<String>, Vec<DateTime<Utc>>, Vec<bool>) = (Vec::new(), Vec::new(), Vec::new());
        // Warnings due: opportunity, owner, idle since, reclaim at.
        type Warnings = (Vec<String>, Vec<String>, Vec<DateTime<Utc>>, Vec<DateTime<Utc>>);
        let mut warn: Warnings = Default::default();
        let mut waiting = 0usize;
        for r in &due {
            let (id, old, team): (String, String, Option<String>) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let stage = if r.try_get::<_, String>(4)? == "escalated" { Stage::Escalated } else { Stage::Owner };
            let p = policy.for_team(team.as_deref());
            let counts = |kind: &str, actor: &Option<String>| {
                let by_owner = actor.as_deref() == Some(old.as_str());
                (kind == "activity" && (p.anyone || by_owner)) || (kind == "edit" && p.owner_edits && by_owner)
            };
            if queued.get(&id).is_some_and(|q| q.iter().any(|(k, a)| counts(k, a))) {
                waiting += 1; // the drain restarts its clock first
                continue;
            }
            let idle_since = p.idle_since(r.try_get(5)?, r.try_get(6)?, r.try_get(7)?);
            let warned = r.try_get::<_, Option<DateTime<Utc>>>(8)?.is_some_and(|w| w >= idle_since);
            let schedule = engine
                .member_index(&old)
                .and_then(|m| engine.members[m].schedule)
                .and_then(|x| engine.schedules.get(x as usize));
            match p.due(stage, idle_since, warned, schedule, now) {
                Due::NotBefore(at) => {
                    defer.0.push(id);
                    defer.1.push(at);
                    defer.2.push(false);
                }
                Due::Warn(at) => {
                    warn.0.push(id.clone());
                    warn.1.push(old);
                    warn.2.push(idle_since);
                    warn.3.push(at);
                    defer.0.push(id);
                    defer.1.push(at);
                    defer.2.push(true);
                }
                Due::Stale => stale.push(Row {
                    id,
                    old,
                    team,
                    reclaims: r.try_get(3)?,
                    stage,
                    idle: (now - idle_since).num_seconds(),
                }),
            }
        }

        // Owners that must not get it back, newest first, where a rule looks further than the
        // owner losing it.
        let mut history: HashMap<String, Vec<String>> = HashMap::new();
        let needs_history: Vec<&str> = stale
            .iter()
            .filter(|r| policy.for_team(r.team.as_deref()).exclude != Exclude::Previous)
            .map(|r| r.id.as_str())
            .collect();
        if !needs_history.is_empty() {
            for r in tx
                .query(
                    &format!(
                        "SELECT opp_id, owner_id FROM {s}.assignments WHERE opp_id = ANY($1) AND owner_id IS NOT NULL \
                         ORDER BY id DESC"
                    ),
                    &[&needs_history],
                )
                .await?
            {
                let owners = history.entry(r.try_get(0)?).or_default();
                let o: String = r.try_get(1)?;
                if !owners.contains(&o) {
                    owners.push(o);
                }
            }
        }
        let stale_ids: Vec<String> = stale.iter().map(|r| r.id.clone()).collect();
        let ctx = self.load_context(&tx, &stale_ids, &[], false).await?;

        // Decide.
        let mut writes: Vec<Write> = Vec::new();
        let mut audit = AuditCols::default();
        let mut finished: Vec<String> = Vec::new(); // ownership rows the router stops tracking
        let mut restart: Vec<String> = Vec::new(); // left with their owner: the clock restarts
        let mut pending_undo: HashMap<String, (usize, i64)> = HashMap::new();
        {
            let mut rng = match self.rng.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            for row in &stale {
                let Row { id, old, team, reclaims, stage, idle } = row;
                let (reclaims, stage, idle) = (*reclaims, *stage, *idle);
                let p = policy.for_team(team.as_deref());
                let Some(c) = ctx
                    .get(id)
                    .filter(|c| c.open && !c.deleted && c.opportunity && c.owner.as_deref() == Some(old.as_str()))
                else {
                    // Deleted, closed or reassigned by a person since: not ours to reclaim.
                    finished.push(id.clone());
                    continue;
                };
                let hours = if p.working_hours { " of working hours" } else { "" };
                let note =
                    |what: &str| format!("reclaimed from {old} after {idle} s{hours} without an interaction: {what}");
                let write = |new: &str, track: Option<(Option<String>, Stage)>| Write {
                    opp: id.clone(),
                    new: new.to_string(),
                    team_crm: None,
                    old: old.clone(),
                    policy: p,
                    by_engine: false,
                    track,
                };
                let mut d = blank_decision(pipeline, old, team.clone());
                // The end of the ladder: the lead's window has passed, or the reassignments are
                // used up and there is no escalation (or nobody to escalate to).
                let lead = match (&p.escalate, stage) {
                    (Some(e), Stage::Owner) if reclaims >= p.max_reclaims => match &e.to {
                        EscalateTo::Owner(x) => Some(x.clone()),
                        EscalateTo::TeamLead => team
                            .as_deref()
                            .and_then(|t| engine.teams.iter().find(|x| &*x.id == t))
                            .and_then(|t| t.lead.clone()),
                    }
                    .filter(|x| x != old),
                    _ => None,
                };
                if let Some(lead) = lead {
                    d.owner = Some(lead.clone());
                    d.outcome = Outcome::Reclaim;
                    d.explanation.note = Some(note(&format!(
                        "escalated to the team lead {lead} after {reclaims} reassignment(s), as the rule says"
                    )));
                    writes.push(write(&lead, Some((team.clone(), Stage::Escalated))));
                    audit.push(id, &d, Some(old.clone()), now);
                    continue;
                }
                if stage == Stage::Escalated || reclaims >= p.max_reclaims {
                    let why = if stage == Stage::Escalated {
                        "the team lead did not act either".to_string()
                    } else {
                        format!("the maximum of {} reassignment(s) is reached", p.max_reclaims)
                    };
                    match &p.then {
                        ReclaimElse::Owner(x) if x != old => {
                            d.owner = Some(x.clone());
                            d.outcome = Outcome::Reclaim;
                            d.explanation.note = Some(note(&format!("{why}: released to {x}, as the rule says")));
                            writes.push(write(x, None));
                        }
                        _ => {
                            d.explanation.note =
                                Some(format!("idle {idle} s{hours}, but {why}: left with {old}, as the rule says"));
                            finished.push(id.clone());
                        }
                    }
                    audit.push(id, &d, Some(old.clone()), now);
                    continue;
                }
                let mut exclude: Vec<String> = match p.exclude {
                    Exclude::Previous => Vec::new(),
                    Exclude::AllPrevious => history.remove(id).unwrap_or_default(),
                    Exclude::Last(k) => {
                        let mut h = history.remove(id).unwrap_or_default();
                        h.truncate(k as usize);
                        h
                    }
                };
                if !exclude.contains(old) {
                    exclude.push(old.clone());
                }
                let only_team = if p.within_team { team.as_deref() } else { None };
                let opp = Opportunity {
                    id,
                    pipeline: Some(pipeline),
                    fields: &c.fields,
                    waiting_since: now,
                    exclude: &exclude,
                    only_team,
                };
                let mut d = engine.route(&opp, ledger, now, &mut *rng);
                journal.push(Journal::Assign(d.undo.clone()));
                if let Some(a) = d.undo.assigned {
                    pending_undo.insert(id.clone(), a);
                }
                if d.outcome == Outcome::Rule {
                    let new = d.owner.clone().unwrap_or_default();
                    d.outcome = Outcome::Reclaim;
                    d.explanation.note =
                        Some(note(&format!("to {new} (reassignment {} of {})", reclaims + 1, p.max_reclaims)));
                    let mut w = write(&new, Some((d.team.clone(), Stage::Owner)));
                    w.team_crm = d.team_crm_id.clone();
                    w.by_engine = true;
                    writes.push(w);
                    audit.push(id, &d, Some(old.clone()), now);
                    continue;
                }
                // Nobody else (the fallback owner is not a reclaim target): as the rule says.
                d.team = team.clone();
                d.explanation.fallback = None;
                match &p.when_nobody {
                    ReclaimElse::Owner(x) if x != old => {
                        d.owner = Some(x.clone());
                        d.outcome = Outcome::Reclaim;
                        d.explanation.note =
                            Some(note(&format!("nobody else in scope is eligible: to {x}, as the rule says")));
                        writes.push(write(x, None));
                    }
                    _ => {
                        d.owner = Some(old.clone());
                        d.outcome = Outcome::Kept;
                        d.explanation.note = Some(format!(
                            "idle {idle} s{hours}, but nobody else in scope is eligible: left with {old}; the clock restarts"
                        ));
                        restart.push(id.clone());
                    }
                }
                audit.push(id, &d, Some(old.clone()), now);
            }
        }

        // Write: only where the CRM still has the owner we assigned and no interaction that
        // counts arrived since the read above.
        let mut written: HashSet<String> = HashSet::new();
        if !writes.is_empty() {
            let ids: Vec<&str> = writes.iter().map(|w| w.opp.as_str()).collect();
            let news: Vec<&str> = writes.iter().map(|w| w.new.as_str()).collect();
            let teams: Vec<Option<&str>> = writes.iter().map(|w| w.team_crm.as_deref()).collect();
            let olds: Vec<&str> = writes.iter().map(|w| w.old.as_str()).collect();
            let anyone: Vec<bool> = writes.iter().map(|w| w.policy.anyone).collect();
            let edits: Vec<bool> = writes.iter().map(|w| w.policy.owner_edits).collect();
            match reassign {
                Reassign::Batch(sql) => {
                    for r in tx.query(sql, &[&ids, &news, &teams, &olds, &anyone, &edits]).await? {
                        written.insert(r.get(0));
                    }
                }
                Reassign::PerRow { sql, params } => {
                    // The ops statement checks the owner; the interactions are checked here, just
                    // before it runs.
                    let touched: HashSet<String> = tx
                        .query(
                            &format!(
                                "SELECT u.id FROM unnest($1::text[], $2::text[], $3::bool[], $4::bool[]) AS u(id, old, anyone, edits) \
                                 WHERE EXISTS (SELECT 1 FROM {s}.events e WHERE e.opp_id = u.id \
                                   AND ((e.kind = 'activity' AND (u.anyone OR e.actor = u.old)) OR (e.kind = 'edit' AND u.edits AND e.actor = u.old)))"
                            ),
                            &[&ids, &olds, &anyone, &edits],
                        )
                        .await?
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    let rows = writes
                        .iter()
                        .filter(|w| !touched.contains(&w.opp))
                        .map(|w| [Some(w.opp.clone()), Some(w.new.clone()), w.team_crm.clone(), Some(w.old.clone())]);
                    written.extend(write_per_row(&tx, sql, params, rows).await?);
                }
            }
        }
        // What was not written (a person changed it this instant) is not recorded as reclaimed.
        let mut keep = vec![true; audit.opp.len()];
        for (i, (opp, outcome)) in audit.opp.iter().zip(&audit.outcome).enumerate() {
            if outcome == "reclaim" && !written.contains(opp) {
                keep[i] = false;
                if let Some(&(m, at)) = pending_undo.get(opp) {
                    ledger.unassign(m, at);
                    journal.push(Journal::Unassigned(m, at));
                }
            }
        }
        let audit = audit.retain(&keep);
        let done: Vec<&Write> = writes.iter().filter(|w| written.contains(&w.opp)).collect();
        for w in &done {
            if let Some(m) = engine.member_index(&w.old) {
                journal.push(Journal::Open(m, ledger.open[m]));
                ledger.open[m] = (ledger.open[m] - 1).max(0);
            }
            if !w.by_engine {
                if let Some(m) = engine.member_index(&w.new) {
                    journal.push(Journal::Open(m, ledger.open[m]));
                    ledger.open[m] += 1;
                }
            }
        }
        let tracked: Vec<(&str, &str, Option<&str>, &str)> = done
            .iter()
            .filter_map(|w| {
                w.track.as_ref().map(|(team, stage)| {
                    let stage = if *stage == Stage::Escalated { "escalated" } else { "owner" };
                    (w.opp.as_str(), w.new.as_str(), team.as_deref(), stage)
                })
            })
            .collect();
        let next_due = now + chrono::Duration::seconds(policy.earliest());
        if !tracked.is_empty() {
            let ids: Vec<&str> = tracked.iter().map(|t| t.0).collect();
            let owners: Vec<&str> = tracked.iter().map(|t| t.1).collect();
            let teams: Vec<Option<&str>> = tracked.iter().map(|t| t.2).collect();
            let stages: Vec<&str> = tracked.iter().map(|t| t.3).collect();
            tx.execute(
                &format!(
                    "UPDATE {s}.ownership w SET owner_id = u.w, team_id = coalesce(u.t, w.team_id), assigned_at = $5, \
                     last_owner_touch_at = $5, last_activity_at = NULL, last_owner_edit_at = NULL, warned_at = NULL, \
                     due_at = $6, stage = u.s, reclaims = w.reclaims + 1 \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(o, w, t, s) WHERE w.opp_id = u.o"
                ),
                &[&ids, &owners, &teams, &stages, &now, &next_due],
            )
            .await?;
        }
        // Released ones stop being tracked once written; one that was not written (a person's
        // change, or a last-second interaction) stays, and a person's change goes with its event.
        let finished: Vec<&str> = finished
            .iter()
            .map(String::as_str)
            .chain(done.iter().filter(|w| w.track.is_none()).map(|w| w.opp.as_str()))
            .collect();
        if !finished.is_empty() {
            tx.execute(&format!("DELETE FROM {s}.ownership WHERE opp_id = ANY($1)"), &[&finished]).await?;
        }
        if !restart.is_empty() {
            tx.execute(
                &format!(
                    "UPDATE {s}.ownership SET last_owner_touch_at = $2, due_at = $3, warned_at = NULL WHERE opp_id = ANY($1)"
                ),
                &[&restart, &now, &next_due],
            )
            .await?;
        }
        if !defer.0.is_empty() {
            tx.execute(
                &format!(
                    "UPDATE {s}.ownership w SET due_at = u.d, warned_at = CASE WHEN u.warn THEN $4 ELSE w.warned_at END \
                     FROM unnest($1::text[], $2::timestamptz[], $3::bool[]) AS u(o, d, warn) WHERE w.opp_id = u.o"
                ),
                &[&defer.0, &defer.1, &defer.2, &now],
            )
            .await?;
        }
        if !warn.0.is_empty() {
            let channel = format!("{}_reclaim_warning", self.cfg.router.channel.as_str());
            tx.execute(
                &format!(
                    "WITH i AS (INSERT INTO {s}.reclaim_warnings (opp_id, owner_id, idle_since, reclaim_at) \
                       SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) RETURNING opp_id) \
                     SELECT pg_notify($5, opp_id) FROM i"
                ),
                &[&warn.0, &warn.1, &warn.2, &warn.3, &channel],
            )
            .await?;
            tracing::info!(pipeline, warned = warn.0.len(), channel = %channel, "reclaim warnings");
        }
        if !audit.opp.is_empty() {
            let version = engine.version.clone();
            tx.execute(
                &self.audit,
                &[
                    &audit.opp,
                    &audit.owner,
                    &audit.team,
                    &audit.previous,
                    &audit.outcome,
                    &audit.pipeline,
                    &audit.rule,
                    &version,
                    &audit.explanation,
                    &audit.event_at,
                ],
            )
            .await?;
        }
        // Members who keep letting opportunities lapse: paused until an admin lifts it.
        let lapsed: Vec<(&str, crate::engine::PauseAfter)> =
            done.iter().filter_map(|w| w.policy.pause_after.map(|p| (w.old.as_str(), p))).collect();
        let mut paused: Vec<String> = Vec::new();
        if !lapsed.is_empty() {
            let members: Vec<&str> = lapsed.iter().map(|l| l.0).collect();
            let within: Vec<i64> = lapsed.iter().map(|l| l.1.within).collect();
            let lapses: Vec<i64> = lapsed.iter().map(|l| l.1.lapses).collect();
            let human: Vec<String> = lapsed
                .iter()
                .map(|l| {
                    humantime::format_duration(std::time::Duration::from_secs(l.1.within.max(0) as u64)).to_string()
                })
                .collect();
            for r in tx
                .query(
                    &format!(
                        "WITH c AS (SELECT DISTINCT ON (u.m) u.m, u.n, u.h, \
                           (SELECT count(*) FROM {s}.assignments a WHERE a.outcome = 'reclaim' AND a.previous_owner = u.m \
                            AND a.decided_at > clock_timestamp() - u.w * interval '1 second') AS lapsed \
                           FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[]) AS u(m, w, n, h) ORDER BY u.m, u.n) \
                         INSERT INTO {s}.member_pauses (member_id, reason) \
                         SELECT m, 'let ' || lapsed || ' opportunities lapse within ' || h || ' (pause_after: ' || n || ')' \
                         FROM c WHERE lapsed >= n \
                         ON CONFLICT (member_id) WHERE lifted_at IS NULL DO NOTHING RETURNING member_id"
                    ),
                    &[&members, &within, &lapses, &human],
                )
                .await?
            {
                paused.push(r.try_get(0)?);
            }
        }
        let mut touched: Vec<usize> =
            done.iter().flat_map(|w| [engine.member_index(&w.new), engine.member_index(&w.old)]).flatten().collect();
        touched.sort_unstable();
        touched.dedup();
        if !touched.is_empty() {
            let members: Vec<String> = touched.iter().map(|m| engine.members[*m].id.to_string()).collect();
            let counts: Vec<i32> = touched.iter().map(|m| clamp_i32(ledger.open[*m])).collect();
            let zeros = vec![0i64; members.len()];
            tx.execute(&self.member_state, &[&members, &counts, &zeros]).await?;
        }
        tx.commit().await?;
        for m in &paused {
            if let Some(i) = engine.member_index(m) {
                if let Some(p) = ledger.paused.get_mut(i) {
                    *p = true;
                }
            }
            tracing::warn!(member = %m, pipeline, "member paused for letting opportunities lapse; lift with `oppty-router unpause {m}`");
        }
        let reclaimed = done.len();
        let acted = reclaimed + restart.len() + finished.len() + defer.0.len();
        tracing::info!(
            pipeline,
            due = due.len(),
            reclaimed,
            kept = restart.len(),
            deferred = defer.0.len() - warn.0.len(),
            warned = warn.0.len(),
            waiting,
            "reclaim sweep"
        );
        Ok(Swept { due: due.len(), acted, reclaimed })
    }
}
