//! The routing engine: from one opportunity, the compiled rules and the ledger (loads, recent
//! assignments, pick state) to a decision with its explanation.
//!
//! Owns what a decision is and how it is made. It does no I/O and reads no clock: the rules, the
//! opportunity's fields, the ledger, the time and the randomness are handed in, so the same inputs
//! always give the same decision. It must not know about SQL, files or the daemon; `rules` builds
//! its types and the drain keeps the ledger.
//!
//! The rooms: `model` (the compiled rule model: members, teams, pipelines, rules, the `Engine`),
//! `explanation` (a decision and its reasons), `route` (one decision, step by step), `cond`,
//! `schedule`, `ledger`, `pick`, `entitle`, `history`, `reclaim`, `seen`.

pub mod cond;
mod entitle;
mod explanation;
pub mod history;
pub mod ledger;
mod model;
mod pick;
pub mod reclaim;
mod route;
pub mod schedule;
pub mod seen;

use chrono::{DateTime, Utc};

pub use cond::{Cond, Facts, Op};
pub use explanation::*;
pub use ledger::{FlagUndo, Ledger, Undo};
pub use model::*;
pub use pick::{id_key, id_order, PickUndo};
pub use reclaim::{
    Due, Escalate, EscalateTo, Exclude, Interaction, PauseAfter, ReclaimElse, ReclaimPolicy, Stage, Stale, Step,
    Verdict,
};
pub use schedule::Schedule;

/// The pipeline used for opportunities whose pipeline is not mapped or is empty.
pub const DEFAULT_PIPELINE: &str = "default";

/// A person as people read them: "Bình (102)", or the id alone when no other name is known.
pub fn person(id: &str, name: &str) -> String {
    if name.is_empty() || name == id {
        id.to_string()
    } else {
        format!("{name} ({id})")
    }
}

/// One opportunity as the engine sees it: the mapped fields, by their position in the mapping.
#[derive(Debug, Clone)]
pub struct Opportunity<'a> {
    pub id: &'a str,
    pub pipeline: Option<&'a str>,
    pub fields: &'a [Option<String>],
    /// When the opportunity first asked to be routed (a held opportunity keeps its first time).
    pub waiting_since: DateTime<Utc>,
    /// Members this opportunity must not go to (reclaim: its previous owners).
    pub exclude: &'a [String],
    /// Reclaim within a team: only this team's members are candidates (its rule-file id).
    pub only_team: Option<&'a str>,
}

enum Excl {
    Inactive,
    Paused,
    PausedHere,
    AtCapHere,
    PausedForLapses,
    Excluded,
    OutOfOffice,
    OutsideHours,
    AtCap(usize),
}

impl Excl {
    fn label(&self) -> &'static str {
        match self {
            Excl::Inactive => "inactive in the CRM",
            Excl::Paused => "paused (rule files)",
            Excl::PausedHere => "paused in this team (the CRM)",
            Excl::AtCapHere => "at cap in this team (the CRM)",
            Excl::PausedForLapses => "paused for letting opportunities lapse (until an admin lifts it)",
            Excl::Excluded => "previous owner (excluded)",
            Excl::OutOfOffice => "out of office",
            Excl::OutsideHours => "outside working hours",
            Excl::AtCap(_) => "at cap",
        }
    }
}

/// Candidates of one rule while it is being evaluated: (member, team it came through).
type Cands = Vec<(usize, usize)>;

impl Engine {
    pub fn member_index(&self, id: &str) -> Option<usize> {
        self.member_index.get(id).copied()
    }

    /// Every CRM user id these rules can write as an owner: members, fallback owners, team leads,
    /// and the reclaim ladder's named owners (escalation, release, nobody-else). Checked against the
    /// CRM's owner column before a set goes live.
    pub fn owner_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.member_ids().map(str::to_string).collect();
        ids.extend(self.global_fallback.iter().cloned());
        ids.extend(self.teams.iter().filter_map(|t| t.lead.clone()));
        for p in self.pipelines.values() {
            ids.extend(p.fallback_owner.iter().cloned());
            if let Some(r) = &p.reclaim {
                for policy in std::iter::once(r).chain(r.by_team.values()) {
                    for e in [&policy.then, &policy.when_nobody] {
                        if let ReclaimElse::Owner(x) = e {
                            ids.push(x.clone());
                        }
                    }
                    if let Some(Escalate { to: EscalateTo::Owner(x), .. }) = &policy.escalate {
                        ids.push(x.clone());
                    }
                }
            }
        }
        ids.sort();
        ids.dedup();
        ids
    }

    /// Ids of every member, for load bookkeeping.
    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| &*m.id)
    }

    fn territory_of(&self, facts: &Facts<'_>, fields: &[(usize, String)]) -> Option<(u32, String)> {
        fields.iter().find_map(|(f, name)| {
            let v = facts.text(*f)?;
            self.territories.index.get(v).map(|n| (*n, format!("{name} = `{}`", facts.original(*f).unwrap_or(v))))
        })
    }

    /// The member's load as fewest-open sees it: with the fading re-entry deficit added.
    fn effective_load(&self, m: usize, ledger: &Ledger, now: i64) -> i64 {
        let open = ledger.open[m];
        match ledger.reentry[m] {
            Some((since, deficit)) if self.reentry_ramp > 0 && now < since + self.reentry_ramp => {
                let left = (since + self.reentry_ramp - now) as f64 / self.reentry_ramp as f64;
                open + (deficit as f64 * left).round() as i64
            }
            _ => open,
        }
    }

    fn cap_reached(&self, m: usize, ledger: &Ledger, now: DateTime<Utc>) -> Option<usize> {
        let member = &self.members[m];
        member.caps.iter().position(|cap| {
            let since = |from: i64| {
                let n = if cap.crm_count { ledger.crm_assigned_since(m, from) } else { ledger.assigned_since(m, from) };
                n as i64
            };
            let used = match cap.since(now) {
                None => ledger.open[m],
                Some(from) => since(from),
            };
            used >= i64::from(cap.max)
        })
    }

    /// What the CRM says about the member within team `t`: paused there, or at that team's cap.
    fn team_exclusion(&self, m: usize, t: usize, ledger: &Ledger, now: DateTime<Utc>, caps: bool) -> Option<Excl> {
        let team = &self.teams[t];
        if team.paused_here.binary_search(&m).is_ok() {
            return Some(Excl::PausedHere);
        }
        if !caps {
            return None;
        }
        let full = team.caps_here.iter().any(|(x, cap)| {
            *x == m
                && match cap.window {
                    Window::Rolling(secs) => {
                        ledger.assigned_here(&self.members[m].id, &team.id, now.timestamp() - secs) as i64
                            >= i64::from(cap.max)
                    }
                    _ => false,
                }
        });
        full.then_some(Excl::AtCapHere)
    }

    /// A symbol's id, if any rule or member uses it.
    pub fn symbol(&self, s: &str) -> Option<u32> {
        self.symbols.get(s).copied()
    }

    /// (out of office, working) for a schedule at `now`, computed once per decision.
    fn schedule_state(&self, sched: u32, now: DateTime<Utc>, cache: &mut Vec<(u32, bool, bool)>) -> (bool, bool) {
        if let Some(&(_, o, w)) = cache.iter().find(|(s, _, _)| *s == sched) {
            return (o, w);
        }
        let s = &self.schedules[sched as usize];
        let ooo = s.out_of_office(now);
        let working = !ooo && s.working(now);
        cache.push((sched, ooo, working));
        (ooo, working)
    }

    /// Why a member cannot take a new opportunity now, if they cannot.
    fn exclusion(
        &self,
        m: usize,
        opp: &Opportunity<'_>,
        ledger: &Ledger,
        now: DateTime<Utc>,
        caps: bool,
        cache: &mut Vec<(u32, bool, bool)>,
    ) -> Option<Excl> {
        let member = &self.members[m];
        if !member.active {
            return Some(Excl::Inactive);
        }
        if member.paused {
            return Some(Excl::Paused);
        }
        if ledger.paused.get(m).copied().unwrap_or(false) {
            return Some(Excl::PausedForLapses);
        }
        if opp.exclude.iter().any(|x| **x == *member.id) {
            return Some(Excl::Excluded);
        }
        if let Some(s) = member.schedule {
            let (ooo, working) = self.schedule_state(s, now, cache);
            if ooo {
                return Some(Excl::OutOfOffice);
            }
            if !working {
                return Some(Excl::OutsideHours);
            }
        }
        if caps {
            if let Some(c) = self.cap_reached(m, ledger, now) {
                return Some(Excl::AtCap(c));
            }
        }
        None
    }

    /// Held while a required field is missing and the wait is not over; past it, a note says
    /// what it waited for and routing goes on with what it has.
    fn wait_for_fields(
        &self,
        pipeline: &Pipeline,
        facts: &Facts<'_>,
        opp: &Opportunity<'_>,
        now: DateTime<Utc>,
        ex: &mut Explanation,
    ) -> Option<Decision> {
        let req = pipeline.require.as_ref()?;
        let missing: Vec<&str> =
            req.fields.iter().filter(|(f, _)| facts.text(*f).is_none()).map(|(_, n)| n.as_str()).collect();
        if missing.is_empty() {
            return None;
        }
        let until = opp.waiting_since + chrono::Duration::seconds(req.wait_secs);
        let list = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
        if now < until {
            ex.held = Some(format!(
                "waiting for required field(s) {list} (pipeline `{}` requires them); held until {}",
                pipeline.id,
                until.to_rfc3339()
            ));
            return Some(Decision {
                owner: None,
                team: None,
                team_crm_id: None,
                outcome: Outcome::Held,
                pipeline: pipeline.id.clone(),
                rule_id: None,
                tags: facts.tags.clone(),
                retry_at: Some(until),
                explanation: ex.clone(),
                undo: Undo::default(),
            });
        }
        ex.note = Some(format!(
            "waited {} for required field(s) {list}; routed with what it has",
            humantime::format_duration(std::time::Duration::from_secs(req.wait_secs.max(0) as u64))
        ));
        None
    }

    /// The rule's teams for this opportunity: those its team stage names whose domain
    /// (`accepts`) takes it (a territory stage moves on to the next, wider match).
    fn team_stage(
        &self,
        rule: &Rule,
        pipeline: &Pipeline,
        facts: &Facts<'_>,
        tag_syms: &[u32],
    ) -> Result<(Vec<usize>, String), String> {
        let (teams, why) = self.teams_by_stage(rule, pipeline, facts, tag_syms)?;
        if matches!(rule.team, TeamStage::Territory { .. }) {
            return Ok((teams, why));
        }
        match self.accepting(teams, facts) {
            (ok, rejected) if rejected.is_empty() => Ok((ok, why)),
            (ok, rejected) if !ok.is_empty() => Ok((ok, format!("{why}; left out: {}", rejected.join("; ")))),
            (_, rejected) => Err(rejected.join("; ")),
        }
    }

    /// The teams whose domain takes the opportunity, and why each of the others does not.
    fn accepting(&self, teams: Vec<usize>, facts: &Facts<'_>) -> (Vec<usize>, Vec<String>) {
        let mut rejected = Vec::new();
        let ok = teams
            .into_iter()
            .filter(|t| match self.teams[*t].accepts.as_ref().filter(|c| !c.eval(facts)) {
                Some(c) => {
                    rejected.push(format!("team `{}` does not accept it: {}", self.teams[*t].id, c.why_false(facts)));
                    false
                }
                None => true,
            })
            .collect();
        (ok, rejected)
    }

    fn teams_by_stage(
        &self,
        rule: &Rule,
        pipeline: &Pipeline,
        facts: &Facts<'_>,
        tag_syms: &[u32],
    ) -> Result<(Vec<usize>, String), String> {
        match &rule.team {
            TeamStage::AllPipelineTeams => {
                Ok((pipeline.teams.clone(), "every team taking part in the pipeline".into()))
            }
            TeamStage::Fixed(t) => Ok((vec![*t], format!("the rule names team `{}`", self.teams[*t].id))),
            TeamStage::Territory { fields } => {
                let Some((node, what)) = self.territory_of(facts, fields) else {
                    let names: Vec<&str> = fields.iter().map(|(_, n)| n.as_str()).collect();
                    return Err(format!("no known territory in {}", names.join(", ")));
                };
                let mut rejected = Vec::new();
                for (depth, n) in self.territories.path(node).enumerate() {
                    let teams: Vec<usize> =
                        pipeline.teams.iter().copied().filter(|t| self.teams[*t].territories.contains(&n)).collect();
                    let (teams, not) = self.accepting(teams, facts);
                    rejected.extend(not);
                    if !teams.is_empty() {
                        let code = &self.territories.written[n as usize];
                        let why = if depth == 0 {
                            format!("its territory covers {what}")
                        } else {
                            format!("its territory `{code}` contains {what} (most specific match)")
                        };
                        if !rejected.is_empty() {
                            return Ok((teams, format!("{why}; left out: {}", rejected.join("; "))));
                        }
                        return Ok((teams, why));
                    }
                }
                if !rejected.is_empty() {
                    return Err(format!("the teams covering {what} do not take it: {}", rejected.join("; ")));
                }
                Err(format!("no team of the pipeline covers {what}"))
            }
            TeamStage::FromField { field, name } => {
                let Some(v) = facts.original(*field) else { return Err(format!("field `{name}` is empty")) };
                let found = pipeline.teams.iter().copied().find(|t| {
                    let team = &self.teams[*t];
                    team.id.eq_ignore_ascii_case(v) || team.crm_id.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(v))
                });
                match found {
                    Some(t) => Ok((vec![t], format!("{name} = `{v}` names team `{}`", self.teams[t].id))),
                    None => Err(format!("{name} = `{v}` is not a team of this pipeline")),
                }
            }
            TeamStage::Tags { all } => {
                if facts.tags.is_empty() {
                    return Err("the opportunity has no tags".into());
                }
                let teams: Vec<usize> = pipeline
                    .teams
                    .iter()
                    .copied()
                    .filter(|t| {
                        let tt = &self.teams[*t].tags;
                        if *all {
                            tag_syms.len() == facts.tags.len() && tag_syms.iter().all(|g| tt.binary_search(g).is_ok())
                        } else {
                            tag_syms.iter().any(|g| tt.binary_search(g).is_ok())
                        }
                    })
                    .collect();
                if teams.is_empty() {
                    Err(format!("no team of the pipeline has the work tags [{}]", facts.tags.join(", ")))
                } else {
                    Ok((teams, format!("work tags match [{}]", facts.tags.join(", "))))
                }
            }
        }
    }

    fn apply_filter(&self, f: &Filter, cands: &Cands, facts: &Facts<'_>, tag_syms: &[u32]) -> (Cands, String) {
        let keep =
            |pred: &dyn Fn(&Member) -> bool| cands.iter().copied().filter(|(m, _)| pred(&self.members[*m])).collect();
        match &f.kind {
            FilterKind::Attribute { attribute, symbol, field, field_name } => {
                let v = facts.text(*field);
                let label =
                    format!("attribute `{attribute}` = {field_name} (`{}`)", facts.original(*field).unwrap_or(""));
                let kept = match v.and_then(|v| self.symbol(v)) {
                    Some(v) => keep(&|m| m.attributes.iter().any(|(a, x)| a == symbol && *x == v)),
                    None => Vec::new(),
                };
                (kept, label)
            }
            FilterKind::Products { field, field_name } | FilterKind::Categories { field, field_name } => {
                let names: Vec<&str> = facts.list(*field).collect();
                let wanted: Vec<u32> = names.iter().filter_map(|w| self.symbol(w)).collect();
                let is_products = matches!(f.kind, FilterKind::Products { .. });
                let label = format!(
                    "{} of {field_name} [{}]",
                    if is_products { "products" } else { "categories" },
                    facts.original(*field).unwrap_or("")
                );
                let kept = keep(&|m| {
                    let set = if is_products { &m.products } else { &m.categories };
                    wanted.iter().any(|w| set.binary_search(w).is_ok())
                });
                (kept, label)
            }
            FilterKind::Territory { fields } => match self.territory_of(facts, fields) {
                None => (Vec::new(), "territory (none known in the opportunity)".into()),
                Some((node, what)) => {
                    let path: Vec<u32> = self.territories.path(node).collect();
                    (keep(&|m| m.territories.iter().any(|t| path.contains(t))), format!("territory covers {what}"))
                }
            },
            FilterKind::Tags { all } => {
                let label = format!("work tags {} of [{}]", if *all { "all" } else { "any" }, facts.tags.join(", "));
                let kept = if facts.tags.is_empty() {
                    Vec::new()
                } else if *all {
                    if tag_syms.len() < facts.tags.len() {
                        Vec::new()
                    } else {
                        keep(&|m| tag_syms.iter().all(|g| m.tags.binary_search(g).is_ok()))
                    }
                } else {
                    keep(&|m| tag_syms.iter().any(|g| m.tags.binary_search(g).is_ok()))
                };
                (kept, label)
            }
        }
    }

    fn fallback(
        &self,
        pipeline_id: &str,
        pipeline_fallback: Option<&str>,
        mut ex: Explanation,
        tags: Vec<String>,
    ) -> Decision {
        let (owner, source) = match (pipeline_fallback, self.global_fallback.as_deref()) {
            (Some(o), _) => (Some(o.to_string()), "the pipeline's fallback owner"),
            (None, Some(o)) => (Some(o.to_string()), "the global fallback owner"),
            (None, None) => (None, "no fallback owner is configured"),
        };
        ex.fallback = Some(format!("no rule yielded anybody: {source}"));
        Decision {
            outcome: if owner.is_some() { Outcome::Fallback } else { Outcome::Unassigned },
            explanation: ex,
            owner,
            team: None,
            team_crm_id: None,
            pipeline: pipeline_id.to_string(),
            rule_id: None,
            tags,
            retry_at: None,
            undo: Undo::default(),
        }
    }
}

fn cap_label(cap: &Cap) -> &'static str {
    match (&cap.window, cap.crm_count) {
        (Window::Open, _) => "at cap: open opportunities",
        (Window::Rolling(_), false) => "at cap: assignments in a rolling window",
        (Window::Rolling(_), true) => "at cap: assignments in a rolling window (the CRM's count, manual ones included)",
        (Window::Day(_), false) => "at cap: assignments today",
        (Window::Day(_), true) => "at cap: assignments today (the CRM's count, manual ones included)",
    }
}
