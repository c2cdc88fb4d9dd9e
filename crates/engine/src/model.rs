//! The compiled rule model: members and their caps, teams and their territories, pipelines of
//! rules (team stage, filters, pick, when full / away / nobody), tag rules, and the `Engine` that
//! holds one rule set. `rules` builds it from the files; `route` reads it. It must not know how a
//! file is written, nor decide anything.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;

use crate::{schedule, Cond, ReclaimPolicy, Schedule};

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
