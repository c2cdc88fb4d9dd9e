//! The routing engine: from one opportunity, the compiled rules and the ledger (loads, recent
//! assignments, pick state) to a decision with its explanation.
//!
//! Owns what a decision is and how it is made. It does no I/O and reads no clock: the rules, the
//! opportunity's fields, the ledger, the time and the randomness are handed in, so the same inputs
//! always give the same decision. It must not know about SQL, files or the daemon; `rules` builds
//! its types and the drain keeps the ledger.

pub mod cond;
mod entitle;
pub mod history;
pub mod ledger;
mod pick;
pub mod reclaim;
mod route;
pub mod schedule;
pub mod seen;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use cond::{Cond, Facts, Op};
pub use ledger::{FlagUndo, Ledger, Undo};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A rule yielded the owner.
    Rule,
    /// No rule yielded anybody; the pipeline's or the global fallback owner.
    Fallback,
    /// Held: every candidate is full or away, and the rule says wait; retry at `retry_at`.
    Held,
    /// Nobody, and no fallback owner is configured.
    Unassigned,
    /// Reclaim: taken from an owner who did nothing in time and given to another.
    Reclaim,
    /// Reclaim: stale, but left with its owner (maximum reached, or nobody else eligible).
    Kept,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Rule => "rule",
            Outcome::Fallback => "fallback",
            Outcome::Held => "held",
            Outcome::Unassigned => "unassigned",
            Outcome::Reclaim => "reclaim",
            Outcome::Kept => "kept",
        }
    }
}

/// How one rule went, as the explanation stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleResult {
    /// Not tried yet (never stored).
    #[serde(rename = "")]
    Pending,
    #[serde(rename = "conditions not met")]
    ConditionsNotMet,
    #[serde(rename = "no team")]
    NoTeam,
    #[serde(rename = "nobody fits")]
    NobodyFits,
    #[serde(rename = "nobody eligible")]
    NobodyEligible,
    #[serde(rename = "everyone at cap: fallback owner")]
    EveryoneAtCap,
    #[serde(rename = "no pick")]
    NoPick,
    #[serde(rename = "matched")]
    Matched,
}

impl RuleResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleResult::Pending => "",
            RuleResult::ConditionsNotMet => "conditions not met",
            RuleResult::NoTeam => "no team",
            RuleResult::NobodyFits => "nobody fits",
            RuleResult::NobodyEligible => "nobody eligible",
            RuleResult::EveryoneAtCap => "everyone at cap: fallback owner",
            RuleResult::NoPick => "no pick",
            RuleResult::Matched => "matched",
        }
    }
}

impl std::fmt::Display for RuleResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one rule went, for the explanation. Stored as JSON and read back by `explain` through
/// these same types.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleTrace {
    pub rule: Arc<str>,
    pub result: RuleResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamTrace>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<FilterTrace>,
    /// Members left out, by why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub excluded: BTreeMap<std::borrow::Cow<'static, str>, Vec<Arc<str>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeamTrace {
    pub ids: Vec<Arc<str>>,
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilterTrace {
    pub filter: String,
    pub kept: usize,
    pub of: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The members it left out (they could not receive this opportunity: fairness counts it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<Arc<str>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PickTrace {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub why: String,
}

impl Explanation {
    /// The decision in one line, for a rule-file test that failed: each rule tried and how it
    /// went (who was excluded and why), then who was picked or what happened instead.
    pub fn brief(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for r in &self.rules {
            let mut p = format!("rule `{}` {}", r.rule, r.result);
            if let Some(why) = r.why.as_deref().filter(|_| r.result != RuleResult::Matched) {
                p.push_str(&format!(" ({why})"));
            }
            for (why, who) in &r.excluded {
                let who: Vec<&str> = who.iter().map(|w| &**w).collect();
                p.push_str(&format!(", {} {why}", who.join(", ")));
            }
            parts.push(p);
        }
        if let Some(m) = &self.member {
            parts.push(format!("picked {}: {}", person(&m.id, &m.name), m.why));
        }
        for what in [&self.held, &self.fallback, &self.note].into_iter().flatten() {
            parts.push(what.clone());
        }
        parts.join("; ")
    }
}

/// Everything that explains one decision; stored as JSON with the assignment, and read back by
/// `explain` through this same type (a renamed field cannot silently break it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Explanation {
    pub pipeline: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RuleTrace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<PickTrace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub owner: Option<String>,
    /// The rule-file team id.
    pub team: Option<String>,
    /// The CRM's id for that team, written back when the mapping has a team column.
    pub team_crm_id: Option<String>,
    pub outcome: Outcome,
    pub pipeline: String,
    pub rule_id: Option<String>,
    pub tags: Vec<String>,
    /// For [`Outcome::Held`]: when to try again.
    pub retry_at: Option<DateTime<Utc>>,
    pub explanation: Explanation,
    /// How to take this decision back out of the ledger (its assignment, pick state, away flags).
    pub undo: Undo,
}

/// A window a cap counts assignments in.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Window {
    /// Open opportunities now.
    Open,
    /// Assignments in the last so many seconds.
    Rolling(i64),
    /// Assignments since local midnight in this time zone.
    Day(#[serde(serialize_with = "schedule::tz_name")] chrono_tz::Tz),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Cap {
    pub window: Window,
    pub max: u32,
    pub label: String,
    /// Counts every assignment the CRM records in the window (`count = "crm"`), manual ones
    /// included, plus the router's own since the CRM was last read; else the router's own.
    pub crm_count: bool,
}

impl Cap {
    /// Where the cap's window starts at `now` (epoch seconds); `None` for open opportunities.
    pub fn since(&self, now: DateTime<Utc>) -> Option<i64> {
        match &self.window {
            Window::Open => None,
            Window::Rolling(secs) => Some(now.timestamp() - secs),
            Window::Day(tz) => Some(
                now.with_timezone(tz)
                    .date_naive()
                    .and_hms_opt(0, 0, 0)
                    .and_then(|n| chrono::TimeZone::from_local_datetime(tz, &n).earliest())
                    .map(|d| d.timestamp())
                    .unwrap_or(now.timestamp() - 86_400),
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub active: bool,
    pub paused: bool,
    pub caps: Vec<Cap>,
    pub weight: u32,
    pub kpi: Option<f64>,
    /// (attribute name, lower-cased value), as symbols.
    pub attributes: Vec<(u32, u32)>,
    /// Sorted symbols.
    pub products: Vec<u32>,
    pub categories: Vec<u32>,
    /// Territory node indexes the member covers (and so everything below them).
    pub territories: Vec<u32>,
    /// Sorted tag symbols.
    pub tags: Vec<u32>,
    /// Index into [`Engine::schedules`].
    pub schedule: Option<u32>,
    /// Position of the id in id order (round robin turns go by id, so membership changes never
    /// reset them).
    pub rank: u32,
    /// The member's remit (`accepts`): opportunities it rejects never reach them.
    pub accepts: Option<Cond>,
}

#[derive(Debug, Clone)]
pub struct Team {
    pub id: Arc<str>,
    pub name: String,
    pub crm_id: Option<String>,
    /// The team lead (a CRM user id): where the reclaim ladder escalates.
    pub lead: Option<String>,
    pub members: Vec<usize>,
    pub territories: Vec<u32>,
    /// Sorted tag symbols.
    pub tags: Vec<u32>,
    /// Members paused in this team only (the CRM's per-membership opt-out), sorted.
    pub paused_here: Vec<usize>,
    /// Caps that hold in this team only (the CRM's per-membership maximum): assignments made
    /// through this team in a rolling window.
    pub caps_here: Vec<(usize, Cap)>,
    /// The team's domain (`accepts`): an opportunity it rejects is not routed to this team.
    pub accepts: Option<Cond>,
    /// Members' remits inside this team (`members = [{ id, accepts }]`), by member index.
    pub remits: Vec<(usize, Cond)>,
}

impl Team {
    /// Whether member `m` has a cap of this team's own (its assignments through it are counted).
    pub fn caps_member(&self, m: usize) -> bool {
        self.caps_here.iter().any(|(x, _)| *x == m)
    }
}

/// Territories as a tree (country › province › district › ward); codes are lower-cased.
#[derive(Debug, Clone, Default)]
pub struct Territories {
    pub codes: Vec<String>,
    /// Each code as the rules or the CRM write it (`DE`), for what people read.
    pub written: Vec<String>,
    pub parent: Vec<Option<u32>>,
    pub index: HashMap<String, u32>,
}

impl Territories {
    /// The node and its ancestors, most specific first.
    pub fn path(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        let mut cur = Some(node);
        std::iter::from_fn(move || {
            let n = cur?;
            cur = self.parent[n as usize];
            Some(n)
        })
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub enum TeamStage {
    /// Every team that takes part in the pipeline.
    AllPipelineTeams,
    /// One named team.
    Fixed(usize),
    /// The pipeline teams covering the most specific territory of the first of these fields that
    /// names a known territory.
    Territory { fields: Vec<(usize, String)> },
    /// The team named by this field (its rule id or CRM id): the last team that served the
    /// profile or company, computed by an SQL field in the daemon config.
    FromField { field: usize, name: String },
    /// Pipeline teams whose work tags match the opportunity's tags.
    Tags { all: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IfNobody {
    /// The rule yields nobody: try the next rule.
    NextRule,
    /// Ignore this filter.
    SkipFilter,
}

#[derive(Debug, Clone, serde::Serialize)]
pub enum FilterKind {
    /// Member attribute equals the opportunity field.
    Attribute {
        attribute: String,
        /// The attribute's symbol: a number that depends on the order things were read in.
        #[serde(skip)]
        symbol: u32,
        field: usize,
        field_name: String,
    },
    /// Member products include one of the field's (comma-separated) products.
    Products {
        field: usize,
        field_name: String,
    },
    Categories {
        field: usize,
        field_name: String,
    },
    /// Member covers the territory of the first of these fields naming a known territory.
    Territory {
        fields: Vec<(usize, String)>,
    },
    /// Member work tags: any of the opportunity's tags, or all of them.
    Tags {
        all: bool,
    },
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Filter {
    pub kind: FilterKind,
    pub if_nobody: IfNobody,
}

#[derive(Debug, Clone, serde::Serialize)]
pub enum Pick {
    Random,
    FewestOpen,
    RoundRobin,
    WeightedRoundRobin,
    /// The highest KPI score (members without a score come last; ties: fewest open).
    BestKpi,
    /// The member named by the first of these fields that names an eligible member (profile
    /// owner, company owner, last deal owner…); `otherwise` when none does.
    Owner {
        fields: Vec<(usize, String)>,
        otherwise: Option<Box<Pick>>,
        /// The named owner keeps it even outside their remit (`ignore_remit = true`).
        ignore_remit: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum WhenFull {
    NextRule,
    Fallback,
    IgnoreCaps,
    Hold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum WhenAway {
    NextRule,
    Wait,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: Arc<str>,
    /// `pipeline/rule`: the key of its round-robin state.
    pub key: String,
    pub when: Option<Cond>,
    pub team: TeamStage,
    pub filters: Vec<Filter>,
    pub pick: Pick,
    pub when_full: WhenFull,
    pub when_away: WhenAway,
    /// Round robin keeps a turn of this rule's own in each team (`turn = "rule"`); by default
    /// every rule feeding a team follows the team's one turn.
    pub own_turn: bool,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub id: String,
    pub rules: Vec<Rule>,
    pub reclaim: Option<ReclaimPolicy>,
    pub fallback_owner: Option<String>,
    /// Teams taking part, in file order.
    pub teams: Vec<usize>,
    /// Fields an opportunity waits for before it is routed (`require`, `wait_up_to`).
    pub require: Option<Require>,
}

/// A pipeline's required fields: `(field index, name)`, and how long to wait for them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Require {
    pub fields: Vec<(usize, String)>,
    pub wait_secs: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TagRule {
    pub tag: String,
    pub when: Cond,
}

/// A compiled, checked rule set. Built only by `rules::compile`.
#[derive(Debug, Clone)]
pub struct Engine {
    /// `<sequence>-<content hash>`: recorded with every decision; the sequence grows with every
    /// rule set this process compiles, so versions only move forward.
    pub version: String,
    /// Hash of the rule files and the CRM directory data the set was compiled from.
    pub hash: String,
    /// Compiled before the CRM's directory was read (`[directory]` in the config): it must never
    /// route; the daemon compiles the set again with the directory first.
    pub provisional: bool,
    /// Rule-file tests not run yet: they run when the set is compiled with the CRM's directory.
    pub tests_waiting: usize,
    pub members: Vec<Member>,
    pub member_index: FxHashMap<String, usize>,
    /// Member ids in id order (`rank` indexes it).
    pub sorted_ids: Vec<Arc<str>>,
    pub schedules: Vec<Schedule>,
    /// Products, categories, tags, attribute names and values, lower-cased, as small integers.
    pub symbols: FxHashMap<String, u32>,
    pub teams: Vec<Team>,
    pub team_index: HashMap<String, usize>,
    pub territories: Territories,
    pub pipelines: HashMap<String, Pipeline>,
    pub tag_rules: Vec<TagRule>,
    pub global_fallback: Option<String>,
    /// How long an opportunity may be held before it goes to the fallback owner.
    pub hold_max: i64,
    /// How long a held opportunity waits before the next try when capacity is the problem.
    pub hold_retry: i64,
    /// Fair re-entry: over this many seconds after a pause or holiday, a member's load deficit fades.
    pub reentry_ramp: i64,
    /// The longest rolling window of any cap (the ledger keeps this much history).
    pub history: i64,
    /// What `check` warns about: the set routes, but some of it can never apply (a member whose
    /// remit shares no value with their team's domain).
    pub warnings: Vec<String>,
    /// The rule files the set was compiled from (name, text), kept for messages that say where a
    /// value is written (a member id the CRM refuses). Never read to route.
    pub sources: std::sync::Arc<[(std::path::PathBuf, String)]>,
    /// What the CRM's directory said when the set was compiled (JSON), kept with the files so
    /// the set can be compiled again exactly (`simulate --in-force`).
    pub directory: std::sync::Arc<str>,
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
