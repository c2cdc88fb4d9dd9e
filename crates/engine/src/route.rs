//! Routing one opportunity: tag it, find its pipeline, wait for required fields, then try the
//! pipeline's rules in order. Each rule is the same ladder of small steps: its condition, the
//! team stage, the candidates of those teams, the filters, the scope (who can take work now),
//! what it does when everyone is full or away, fair re-entry, and the pick. The first rule that
//! picks someone decides; a hold or the fallback owner otherwise.
//!
//! Like the rest of the engine it does no I/O and reads no clock: "now" and the randomness are
//! handed in, and the ledger is the only state it changes (every change undoable).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::{
    cap_label, pick, Cands, Decision, Engine, Excl, Explanation, Facts, FilterTrace, FlagUndo, IfNobody, Ledger,
    Opportunity, Outcome, PickTrace, Pipeline, Rule, RuleResult, RuleTrace, TeamTrace, Undo, WhenAway, WhenFull,
    DEFAULT_PIPELINE,
};

/// What one routing carries from rule to rule.
struct Attempt<'a, 'o> {
    opp: &'a Opportunity<'o>,
    pipeline_id: &'a str,
    facts: Facts<'o>,
    /// The opportunity's tags as symbols, sorted.
    tag_syms: Vec<u32>,
    now: DateTime<Utc>,
    /// Schedule states already computed at `now`: (schedule, out of office, working).
    cache: Vec<(u32, bool, bool)>,
    /// The first hold a rule asked for: until when, and why.
    hold: Option<(DateTime<Utc>, String)>,
    ex: Explanation,
}

/// How a rule ended.
enum Tried {
    /// Try the next rule.
    Next,
    /// No further rule is tried (a hold was asked for).
    Stop,
    /// Decided.
    Done(Box<Decision>),
}

/// Who of the candidates can take a new opportunity now, and why the others cannot.
#[derive(Default)]
struct Scope {
    eligible: Cands,
    /// At a cap.
    full: usize,
    /// Out of office or outside working hours.
    away: usize,
    /// When the first of those away starts working again.
    next_start: Option<DateTime<Utc>>,
}

impl Engine {
    /// Decide the owner of one opportunity. The ledger is updated with the assignment (undo it
    /// with [`Decision::undo`] if the write does not happen).
    pub fn route(&self, opp: &Opportunity<'_>, ledger: &mut Ledger, now: DateTime<Utc>, rng: &mut dyn Rng) -> Decision {
        let mut flags = Vec::new();
        let mut d = self.route_noting(opp, ledger, now, rng, &mut flags);
        d.undo.flags = flags;
        d
    }

    /// [`Engine::route`], noting the away flags and re-entry ramps it changes in `flags`.
    fn route_noting(
        &self,
        opp: &Opportunity<'_>,
        ledger: &mut Ledger,
        now: DateTime<Utc>,
        rng: &mut dyn Rng,
        flags: &mut Vec<FlagUndo>,
    ) -> Decision {
        let pipeline_id = opp.pipeline.map(str::trim).filter(|p| !p.is_empty()).unwrap_or(DEFAULT_PIPELINE);
        let mut a = self.attempt(opp, pipeline_id, now);
        let Some(pipeline) = self.pipelines.get(pipeline_id) else {
            a.ex.note = Some(format!("pipeline `{pipeline_id}` has no rules"));
            return self.fallback(pipeline_id, None, a.ex, a.facts.tags);
        };
        if let Some(held) = self.wait_for_fields(pipeline, &a.facts, opp, now, &mut a.ex) {
            return held;
        }
        for rule in &pipeline.rules {
            match self.try_rule(rule, pipeline, &mut a, ledger, rng, flags) {
                Tried::Next => {}
                Tried::Stop => break,
                Tried::Done(d) => return *d,
            }
        }
        self.no_rule_picked(pipeline, a)
    }

    /// The opportunity tagged by the tag rules, and an explanation to fill in.
    fn attempt<'a, 'o>(&self, opp: &'a Opportunity<'o>, pipeline_id: &'a str, now: DateTime<Utc>) -> Attempt<'a, 'o> {
        let mut facts = Facts::new(opp.fields);
        for t in &self.tag_rules {
            if !facts.tags.contains(&t.tag) && t.when.eval(&facts) {
                facts.tags.push(t.tag.clone());
            }
        }
        let mut tag_syms: Vec<u32> = facts.tags.iter().filter_map(|t| self.symbol(t)).collect();
        tag_syms.sort_unstable();
        let ex = Explanation {
            pipeline: pipeline_id.to_string(),
            tags: facts.tags.clone(),
            rules: Vec::new(),
            member: None,
            fallback: None,
            held: None,
            note: None,
        };
        Attempt { opp, pipeline_id, facts, tag_syms, now, cache: Vec::new(), hold: None, ex }
    }

    /// One rule, step by step; its trace goes into the explanation whatever the outcome.
    fn try_rule(
        &self,
        rule: &Rule,
        pipeline: &Pipeline,
        a: &mut Attempt<'_, '_>,
        ledger: &mut Ledger,
        rng: &mut dyn Rng,
        flags: &mut Vec<FlagUndo>,
    ) -> Tried {
        let mut trace = RuleTrace {
            rule: rule.id.clone(),
            result: RuleResult::Pending,
            why: None,
            team: None,
            filters: Vec::new(),
            excluded: BTreeMap::new(),
        };
        let Some((cands, outside)) = self.candidates(rule, pipeline, a, &mut trace) else {
            a.ex.rules.push(trace);
            return Tried::Next;
        };
        let mut scope = self.scope(&cands, a, ledger, flags, &mut trace);
        let outside = self.outside_ok(rule, outside, a, ledger);
        if scope.eligible.is_empty()
            && scope.full > 0
            && self.when_full(rule, &cands, &mut scope, a, ledger, &mut trace)
        {
            trace.result = RuleResult::EveryoneAtCap;
            a.ex.rules.push(trace);
            let (ex, tags) = (std::mem::take(&mut a.ex), std::mem::take(&mut a.facts.tags));
            return Tried::Done(Box::new(self.fallback(a.pipeline_id, pipeline.fallback_owner.as_deref(), ex, tags)));
        }
        if scope.eligible.is_empty() && scope.away > 0 && scope.full == 0 && rule.when_away == WhenAway::Wait {
            if let Some(at) = scope.next_start {
                a.hold.get_or_insert((at, format!("rule `{}`: the whole team is away", rule.id)));
            }
        }
        if scope.eligible.is_empty() && (outside.is_empty() || !ignores_remit(rule)) {
            trace.result = RuleResult::NobodyEligible;
            a.ex.rules.push(trace);
            return if a.hold.is_some() { Tried::Stop } else { Tried::Next };
        }
        let nows = a.now.timestamp();
        reenter(&scope.eligible, ledger, nows, flags);
        match self.pick(&rule.pick, rule, &scope.eligible, &outside, &a.facts, ledger, nows, rng) {
            Ok(picked) => {
                trace.result = RuleResult::Matched;
                a.ex.rules.push(trace);
                Tried::Done(Box::new(self.assign(rule, a, picked, ledger)))
            }
            Err(why) => {
                trace.result = RuleResult::NoPick;
                trace.why = Some(why.into());
                a.ex.rules.push(trace);
                Tried::Next
            }
        }
    }

    /// The rule's condition, its team stage, the members of those teams whose remit accepts the
    /// opportunity, and of those the ones its filters keep; `None` (the trace says why) when the
    /// rule does not apply or leaves nobody. Also those left out by their remit (for a sticky pick
    /// that ignores remits).
    fn candidates(
        &self,
        rule: &Rule,
        pipeline: &Pipeline,
        a: &Attempt<'_, '_>,
        trace: &mut RuleTrace,
    ) -> Option<(Cands, Cands)> {
        if let Some(c) = rule.when.as_ref().filter(|c| !c.eval(&a.facts)) {
            trace.result = RuleResult::ConditionsNotMet;
            trace.why = Some(c.why_false(&a.facts).into());
            return None;
        }
        let (teams, team_why) = match self.team_stage(rule, pipeline, &a.facts, &a.tag_syms) {
            Ok(t) => t,
            Err(why) => {
                trace.result = RuleResult::NoTeam;
                trace.why = Some(why.into());
                return None;
            }
        };
        trace.team = Some(TeamTrace { ids: teams.iter().map(|t| self.teams[*t].id.clone()).collect(), why: team_why });
        let mut cands: Cands = Vec::new();
        for &t in &teams {
            cands.extend(self.teams[t].members.iter().map(|m| (*m, t)));
        }
        if teams.len() > 1 {
            // A member in several of these teams counts once (through the first team whose
            // remit for them accepts it).
            cands.sort_by_key(|(m, _)| *m);
        }
        let outside = self.within_remits(&mut cands, &a.facts, trace);
        if teams.len() > 1 {
            cands.dedup_by_key(|(m, _)| *m);
        }
        if cands.is_empty() && !outside.is_empty() && !ignores_remit(rule) {
            trace.result = RuleResult::NobodyFits;
            trace.why = Some("every member's remit rejects it".into());
            return None;
        }
        self.filter_all(rule, cands, a, trace).map(|c| (c, outside))
    }

    /// Leave out the candidates whose remit (their own `accepts`, and the one they have in that
    /// team) rejects the opportunity, each in the trace with why; returns them.
    fn within_remits(&self, cands: &mut Cands, facts: &Facts<'_>, trace: &mut RuleTrace) -> Cands {
        let mut outside = Vec::new();
        cands.retain(|&(m, t)| {
            let own = self.members[m].accepts.as_ref().filter(|c| !c.eval(facts));
            let here = self.teams[t].remits.iter().find(|(x, c)| *x == m && !c.eval(facts)).map(|(_, c)| c);
            let Some(c) = own.or(here) else { return true };
            let label = format!("outside their remit: {}", c.why_false(facts));
            trace.excluded.entry(std::borrow::Cow::Owned(label)).or_default().push(self.members[m].id.clone());
            outside.push((m, t));
            false
        });
        // A member left out through one team but kept through another is not outside.
        outside.retain(|(m, _)| !cands.iter().any(|(c, _)| c == m));
        outside.dedup_by_key(|(m, _)| *m);
        outside
    }

    /// Those left out by their remit whom the pick may see: for a sticky pick that ignores remits,
    /// those who could take it otherwise (active, not paused, under their caps, at work); for any
    /// other, all of them (it only names them in the explanation).
    fn outside_ok(&self, rule: &Rule, outside: Cands, a: &mut Attempt<'_, '_>, ledger: &Ledger) -> Cands {
        if !ignores_remit(rule) {
            return outside;
        }
        let now = a.now;
        outside
            .into_iter()
            .filter(|&(m, t)| {
                self.exclusion(m, a.opp, ledger, now, true, &mut a.cache).is_none()
                    && self.team_exclusion(m, t, ledger, now, true).is_none()
            })
            .collect()
    }

    /// The rule's filters in order: who fits this opportunity.
    fn filter_all(&self, rule: &Rule, mut cands: Cands, a: &Attempt<'_, '_>, trace: &mut RuleTrace) -> Option<Cands> {
        for f in &rule.filters {
            let before = cands.len();
            let (kept, label): (Cands, String) = self.apply_filter(f, &cands, &a.facts, &a.tag_syms);
            if kept.is_empty() {
                match f.if_nobody {
                    IfNobody::NextRule => {
                        let left_out = self.left_out(&cands, &kept);
                        trace.filters.push(FilterTrace { filter: label, kept: 0, of: before, note: None, left_out });
                        trace.result = RuleResult::NobodyFits;
                        return None;
                    }
                    IfNobody::SkipFilter => {
                        let note = Some("skipped: it would leave nobody".into());
                        let left_out = Vec::new();
                        trace.filters.push(FilterTrace { filter: label, kept: before, of: before, note, left_out });
                        continue;
                    }
                }
            }
            let left_out = self.left_out(&cands, &kept);
            trace.filters.push(FilterTrace { filter: label, kept: kept.len(), of: before, note: None, left_out });
            cands = kept;
        }
        Some(cands)
    }

    /// The members of `before` that `kept` no longer has. A filter keeps candidates in their
    /// order, so one walk over both finds them (never a search per candidate).
    fn left_out(&self, before: &Cands, kept: &Cands) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::with_capacity(before.len() - kept.len().min(before.len()));
        let mut next = kept.iter().peekable();
        for c in before {
            if next.peek() == Some(&c) {
                next.next();
            } else {
                out.push(self.members[c.0].id.clone());
            }
        }
        out.dedup();
        out
    }

    /// Who of the candidates can take a new opportunity now; the others are in the trace with
    /// why, and a member found paused, inactive or out of office is marked away (for fair
    /// re-entry later).
    fn scope(
        &self,
        cands: &Cands,
        a: &mut Attempt<'_, '_>,
        ledger: &mut Ledger,
        flags: &mut Vec<FlagUndo>,
        trace: &mut RuleTrace,
    ) -> Scope {
        let mut s = Scope::default();
        let now = a.now;
        for &(m, t) in cands {
            let excl = (self.exclusion(m, a.opp, ledger, now, true, &mut a.cache))
                .or_else(|| self.team_exclusion(m, t, ledger, now, true));
            let Some(e) = excl else {
                s.eligible.push((m, t));
                continue;
            };
            match &e {
                Excl::AtCap(_) | Excl::AtCapHere => s.full += 1,
                Excl::OutOfOffice | Excl::OutsideHours => {
                    s.away += 1;
                    if let Some(start) =
                        self.members[m].schedule.and_then(|x| self.schedules[x as usize].next_start(now))
                    {
                        s.next_start = Some(s.next_start.map_or(start, |n| n.min(start)));
                    }
                }
                _ => {}
            }
            if matches!(e, Excl::Paused | Excl::PausedHere | Excl::PausedForLapses | Excl::Inactive | Excl::OutOfOffice)
                && !ledger.away[m]
            {
                flags.push(FlagUndo { member: m, away: false, reentry: ledger.reentry[m] });
                ledger.away[m] = true;
            }
            let label = match &e {
                Excl::AtCap(c) => cap_label(&self.members[m].caps[*c]),
                e => e.label(),
            };
            trace.excluded.entry(std::borrow::Cow::Borrowed(label)).or_default().push(self.members[m].id.clone());
        }
        s
    }

    /// Everyone in scope is at a cap: as the rule's `when_full` says. True when that is the
    /// fallback owner, now; otherwise caps ignored (the eligible widened) or a hold noted.
    fn when_full(
        &self,
        rule: &Rule,
        cands: &Cands,
        scope: &mut Scope,
        a: &mut Attempt<'_, '_>,
        ledger: &Ledger,
        trace: &mut RuleTrace,
    ) -> bool {
        match rule.when_full {
            WhenFull::NextRule => false,
            WhenFull::Fallback => true,
            WhenFull::IgnoreCaps => {
                let now = a.now;
                scope.eligible = (cands.iter().copied())
                    .filter(|&(m, t)| {
                        self.exclusion(m, a.opp, ledger, now, false, &mut a.cache).is_none()
                            && self.team_exclusion(m, t, ledger, now, false).is_none()
                    })
                    .collect();
                if !scope.eligible.is_empty() {
                    trace.why = Some("every candidate is at a cap: caps ignored by this rule".into());
                }
                false
            }
            WhenFull::Hold => {
                let at = a.now + chrono::Duration::seconds(self.hold_retry);
                a.hold.get_or_insert((at, format!("rule `{}`: every candidate is at a cap", rule.id)));
                false
            }
        }
    }

    /// The picked member gets it: in the ledger (and in the team's own count where the CRM caps
    /// the member there), with the decision's undo.
    fn assign(&self, rule: &Rule, a: &mut Attempt<'_, '_>, picked: pick::Picked, ledger: &mut Ledger) -> Decision {
        let pick::Picked { m, t, why, undo: picks } = picked;
        let nows = a.now.timestamp();
        let member = &self.members[m];
        let team = &self.teams[t];
        ledger.assign(m, nows);
        let here = team.caps_member(m).then(|| (member.id.clone(), team.id.clone()));
        if let Some((mid, tid)) = &here {
            ledger.assign_here(mid, tid, nows);
        }
        let mut ex = std::mem::take(&mut a.ex);
        ex.member = Some(PickTrace { id: member.id.clone(), name: member.name.clone(), why });
        Decision {
            owner: Some(member.id.to_string()),
            team: Some(team.id.to_string()),
            team_crm_id: team.crm_id.clone(),
            outcome: Outcome::Rule,
            pipeline: a.pipeline_id.to_string(),
            rule_id: Some(rule.id.to_string()),
            tags: std::mem::take(&mut a.facts.tags),
            retry_at: None,
            explanation: ex,
            undo: Undo { assigned: Some((m, nows)), picks, here, flags: Vec::new() },
        }
    }

    /// No rule picked anybody: held when a rule asked for it and the opportunity has not waited
    /// too long; else the fallback owner.
    fn no_rule_picked(&self, pipeline: &Pipeline, mut a: Attempt<'_, '_>) -> Decision {
        if let Some((at, why)) = a.hold {
            if (a.now - a.opp.waiting_since).num_seconds() < self.hold_max {
                a.ex.held = Some(format!("{why}; held until {}", at.to_rfc3339()));
                return Decision {
                    owner: None,
                    team: None,
                    team_crm_id: None,
                    outcome: Outcome::Held,
                    pipeline: a.pipeline_id.to_string(),
                    rule_id: None,
                    tags: a.facts.tags,
                    retry_at: Some(at),
                    explanation: a.ex,
                    undo: Undo::default(),
                };
            }
            a.ex.note = Some(format!("{why}, and it has waited longer than the hold limit"));
        }
        self.fallback(a.pipeline_id, pipeline.fallback_owner.as_deref(), a.ex, a.facts.tags)
    }
}

/// Whether the rule's pick keeps a named owner even outside their remit.
fn ignores_remit(rule: &Rule) -> bool {
    matches!(rule.pick, super::Pick::Owner { ignore_remit: true, .. })
}

/// Fair re-entry: a member back from a pause or holiday enters level with the least loaded of
/// the others eligible, and the deficit fades over the ramp.
fn reenter(eligible: &Cands, ledger: &mut Ledger, nows: i64, flags: &mut Vec<FlagUndo>) {
    for &(m, _) in eligible {
        if ledger.away[m] {
            flags.push(FlagUndo { member: m, away: true, reentry: ledger.reentry[m] });
            ledger.away[m] = false;
            let min_other = eligible.iter().filter(|(o, _)| *o != m).map(|(o, _)| ledger.open[*o]).min();
            let deficit = min_other.map_or(0, |o| (o - ledger.open[m]).max(0));
            ledger.reentry[m] = (deficit > 0).then_some((nows, deficit));
        }
    }
}
