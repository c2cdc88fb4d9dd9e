//! The reclaim ladder's decisions for one stale assignment: escalate to the lead, release at the
//! end of the ladder, reassign within the team (routing with earlier owners excluded), or what
//! `when_nobody` says; each with the explanation written to the audit.
//!
//! Pure like the rest of the engine: the assignment as the sweep read it, the opportunity's
//! fields, its earlier owners, the ledger, "now" and the randomness are handed in. It must not
//! know where ownership is kept, nor write anything but the ledger it is given.

use chrono::{DateTime, Utc};
use rand::Rng;

use super::{EscalateTo, Exclude, ReclaimElse, ReclaimPolicy, Stage};
use crate::{Decision, Engine, Explanation, Ledger, Opportunity, Outcome, Undo};

/// An assignment whose window has passed, as the sweep read it.
#[derive(Debug, Clone)]
pub struct Stale {
    pub id: String,
    /// The owner the router assigned, still the CRM's owner.
    pub owner: String,
    /// The team (rule-file id) it is tracked in.
    pub team: Option<String>,
    /// Reassignments so far.
    pub reclaims: i32,
    pub stage: Stage,
    /// Seconds idle (of working hours, when the policy counts those).
    pub idle: i64,
}

/// What the ladder does with a stale assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Give it to `to`. `track`: the router keeps tracking it in that team and stage; `None`:
    /// it stops (released to an owner outside the ladder).
    Move { to: String, team_crm: Option<String>, track: Option<(Option<String>, Stage)>, by_engine: bool },
    /// Leave it with its owner; the router stops tracking it (the end of the ladder).
    Leave,
    /// Leave it with its owner; the clock restarts (nobody else is eligible now).
    Restart,
}

/// The step and the decision recorded for it.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub step: Step,
    pub decision: Decision,
}

impl ReclaimPolicy {
    /// Whether a captured change counts as an interaction by `owner` under this policy: an
    /// activity by the owner always does, by anyone else when `anyone`; an edit by the owner when
    /// `owner_edits`.
    pub fn counts(&self, kind: Interaction, actor: Option<&str>, owner: &str) -> bool {
        let by_owner = actor == Some(owner);
        match kind {
            Interaction::Activity => self.anyone || by_owner,
            Interaction::Edit => self.owner_edits && by_owner,
        }
    }

    /// Whether deciding needs the opportunity's earlier owners (beyond the one losing it).
    pub fn needs_history(&self) -> bool {
        self.exclude != Exclude::Previous
    }

    /// Who must not get it back: from the earlier owners (newest first), those the policy
    /// excludes, and always the owner losing it.
    fn excluded(&self, owner: &str, mut earlier: Vec<String>) -> Vec<String> {
        match self.exclude {
            Exclude::Previous => earlier.clear(),
            Exclude::AllPrevious => {}
            Exclude::Last(k) => earlier.truncate(k as usize),
        }
        if !earlier.iter().any(|o| o == owner) {
            earlier.push(owner.to_string());
        }
        earlier
    }
}

/// A change the capture recorded that may count as an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// A row of an activity table (a call, a meeting, a note).
    Activity,
    /// An edit of the opportunity row.
    Edit,
}

/// A decision that leaves the opportunity with `owner` (the base every ladder step edits).
fn kept(pipeline: &str, owner: &str, team: Option<String>) -> Decision {
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

impl Stale {
    fn note(&self, p: &ReclaimPolicy, what: &str) -> String {
        format!("reclaimed from {} after {} s{} without an interaction: {what}", self.owner, self.idle, hours(p))
    }

    fn to(&self, pipeline: &str, to: &str, note: String) -> Decision {
        let mut d = kept(pipeline, &self.owner, self.team.clone());
        d.owner = Some(to.to_string());
        d.outcome = Outcome::Reclaim;
        d.explanation.note = Some(note);
        d
    }
}

fn hours(p: &ReclaimPolicy) -> &'static str {
    if p.working_hours {
        " of working hours"
    } else {
        ""
    }
}

impl Engine {
    /// The next ladder step for a stale assignment under policy `p` (its team's): escalate once
    /// the reassignments are used up, release or leave at the end, else reassign it within scope
    /// (`earlier` are its earlier owners, newest first), else what `when_nobody` says. A
    /// reassignment is recorded in `ledger` like any routing decision (its undo is in the
    /// decision).
    #[allow(clippy::too_many_arguments)]
    pub fn reclaim(
        &self,
        pipeline: &str,
        s: &Stale,
        p: &ReclaimPolicy,
        fields: &[Option<String>],
        earlier: Vec<String>,
        ledger: &mut Ledger,
        now: DateTime<Utc>,
        rng: &mut dyn Rng,
    ) -> Verdict {
        if let Some(v) = self.escalation(pipeline, s, p) {
            return v;
        }
        if s.stage == Stage::Escalated || s.reclaims >= p.max_reclaims {
            return end_of_ladder(pipeline, s, p);
        }
        let exclude = p.excluded(&s.owner, earlier);
        let opp = Opportunity {
            id: &s.id,
            pipeline: Some(pipeline),
            fields,
            waiting_since: now,
            exclude: &exclude,
            only_team: if p.within_team { s.team.as_deref() } else { None },
        };
        let mut d = self.route(&opp, ledger, now, rng);
        if d.outcome == Outcome::Rule {
            let new = d.owner.clone().unwrap_or_default();
            d.outcome = Outcome::Reclaim;
            d.explanation.note =
                Some(s.note(p, &format!("to {new} (reassignment {} of {})", s.reclaims + 1, p.max_reclaims)));
            let step = Step::Move {
                to: new,
                team_crm: d.team_crm_id.clone(),
                track: Some((d.team.clone(), Stage::Owner)),
                by_engine: true,
            };
            return Verdict { step, decision: d };
        }
        nobody_else(s, p, d)
    }

    /// The escalation step: the reassignments are used up and the rule escalates to someone
    /// other than the owner (the team lead, or a named user).
    fn escalation(&self, pipeline: &str, s: &Stale, p: &ReclaimPolicy) -> Option<Verdict> {
        let e = p.escalate.as_ref().filter(|_| s.stage == Stage::Owner && s.reclaims >= p.max_reclaims)?;
        let lead = match &e.to {
            EscalateTo::Owner(x) => Some(x.clone()),
            EscalateTo::TeamLead => {
                s.team.as_deref().and_then(|t| self.teams.iter().find(|x| &*x.id == t)).and_then(|t| t.lead.clone())
            }
        }
        .filter(|x| *x != s.owner)?;
        let note = s.note(
            p,
            &format!("escalated to the team lead {lead} after {} reassignment(s), as the rule says", s.reclaims),
        );
        let decision = s.to(pipeline, &lead, note);
        let step =
            Step::Move { to: lead, team_crm: None, track: Some((s.team.clone(), Stage::Escalated)), by_engine: false };
        Some(Verdict { step, decision })
    }
}

/// The end of the ladder: the lead's window has passed, or the reassignments are used up with
/// no escalation (or nobody to escalate to): released to `then`'s owner, or left.
fn end_of_ladder(pipeline: &str, s: &Stale, p: &ReclaimPolicy) -> Verdict {
    let why = if s.stage == Stage::Escalated {
        "the team lead did not act either".to_string()
    } else {
        format!("the maximum of {} reassignment(s) is reached", p.max_reclaims)
    };
    match &p.then {
        ReclaimElse::Owner(x) if *x != s.owner => Verdict {
            decision: s.to(pipeline, x, s.note(p, &format!("{why}: released to {x}, as the rule says"))),
            step: Step::Move { to: x.clone(), team_crm: None, track: None, by_engine: false },
        },
        _ => {
            let mut d = kept(pipeline, &s.owner, s.team.clone());
            d.explanation.note =
                Some(format!("idle {} s{}, but {why}: left with {}, as the rule says", s.idle, hours(p), s.owner));
            Verdict { step: Step::Leave, decision: d }
        }
    }
}

/// Nobody else in scope is eligible (the fallback owner is not a reclaim target): as
/// `when_nobody` says. `d` is the routing decision that found nobody (its undo stays with it).
fn nobody_else(s: &Stale, p: &ReclaimPolicy, mut d: Decision) -> Verdict {
    d.team = s.team.clone();
    d.explanation.fallback = None;
    match &p.when_nobody {
        ReclaimElse::Owner(x) if *x != s.owner => {
            d.owner = Some(x.clone());
            d.outcome = Outcome::Reclaim;
            d.explanation.note =
                Some(s.note(p, &format!("nobody else in scope is eligible: to {x}, as the rule says")));
            Verdict { step: Step::Move { to: x.clone(), team_crm: None, track: None, by_engine: false }, decision: d }
        }
        _ => {
            d.owner = Some(s.owner.clone());
            d.outcome = Outcome::Kept;
            d.explanation.note = Some(format!(
                "idle {} s{}, but nobody else in scope is eligible: left with {}; the clock restarts",
                s.idle,
                hours(p),
                s.owner
            ));
            Verdict { step: Step::Restart, decision: d }
        }
    }
}
