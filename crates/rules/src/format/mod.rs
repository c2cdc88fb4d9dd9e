//! The rule file format as written: the serde structs an admin's TOML or JSON is read into, and
//! nothing else. They stay inside `rules` (the engine sees compiled types only) and generate the
//! JSON Schema (`config/rules.schema.json`), so what is documented here is what editors complete.
//!
//! Owns the shape of a file and its key names. It must not check meaning (ids, references,
//! values: that is `compile`), read files, or know where a key is written (`locate`, `parse`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::IdForm;

mod words;
pub(crate) use words::*;

/// Every user id of a file, in the CRM's form.
pub(crate) fn canon_ids(f: &mut RawFile, form: IdForm) {
    let c = |s: &mut String| *s = form.canon(s);
    let else_owner = |e: &mut Option<RawReclaimElse>| {
        if let Some(RawReclaimElse::Owner { owner }) = e {
            *owner = form.canon(owner);
        }
    };
    let escalate = |e: &mut Option<RawEscalate>| {
        if let Some(x) = e.as_mut().filter(|x| x.to != "team_lead") {
            x.to = form.canon(&x.to);
        }
    };
    if let Some(fb) = f.settings.as_mut().and_then(|s| s.fallback_owner.as_mut()) {
        c(fb);
    }
    f.member.iter_mut().for_each(|m| c(&mut m.id));
    for t in &mut f.team {
        t.members.iter_mut().for_each(|m| c(m.id_mut()));
        t.lead.iter_mut().for_each(c);
        if let Some(r) = &mut t.reclaim {
            else_owner(&mut r.then);
            escalate(&mut r.escalate);
        }
    }
    for p in &mut f.pipeline {
        p.fallback_owner.iter_mut().for_each(c);
        if let Some(r) = &mut p.reclaim {
            else_owner(&mut r.then);
            else_owner(&mut r.when_nobody);
            escalate(&mut r.escalate);
        }
    }
    for t in &mut f.test {
        t.expect.member.iter_mut().for_each(c);
        t.paused.iter_mut().for_each(c);
        t.open = std::mem::take(&mut t.open).into_iter().map(|(k, v)| (form.canon(&k), v)).collect();
    }
}

// ---------- the files as written ----------

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "oppty-router rule file")]
pub(crate) struct RawFile {
    /// The JSON Schema of this file, for editors (ignored).
    #[serde(rename = "$schema", default)]
    #[allow(dead_code)]
    pub(crate) schema: Option<String>,
    pub(crate) settings: Option<RawSettings>,
    #[serde(default)]
    pub(crate) territory: Vec<RawTerritory>,
    #[serde(default)]
    pub(crate) schedule: Vec<RawSchedule>,
    #[serde(default)]
    pub(crate) member: Vec<RawMember>,
    #[serde(default)]
    pub(crate) team: Vec<RawTeam>,
    #[serde(default)]
    pub(crate) tag: Vec<RawTagRule>,
    #[serde(default)]
    pub(crate) pipeline: Vec<RawPipeline>,
    #[serde(default)]
    pub(crate) test: Vec<RawTest>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Settings")]
pub(crate) struct RawSettings {
    pub(crate) fallback_owner: Option<String>,
    pub(crate) hold_max: Option<String>,
    pub(crate) hold_retry: Option<String>,
    pub(crate) reentry_ramp: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Territory")]
pub(crate) struct RawTerritory {
    pub(crate) id: String,
    /// Its name; a field holding the name (any letter case) matches it like the id does, unless
    /// another territory has the same name (then give aliases).
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) parent: Option<String>,
    /// Other ways the CRM writes it ("United States", "USA", "US"): matched like the id.
    #[serde(default)]
    pub(crate) aliases: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Schedule")]
pub(crate) struct RawSchedule {
    pub(crate) id: String,
    pub(crate) timezone: String,
    pub(crate) week: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) out_of_office: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Cap")]
pub(crate) struct RawCap {
    pub(crate) max: u32,
    pub(crate) per: String,
    pub(crate) timezone: Option<String>,
    /// What a windowed cap counts: "router" (default: the assignments the router made) or "crm"
    /// (every assignment the CRM records in the window, manual ones included).
    pub(crate) count: Option<CapCountWord>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Member")]
pub(crate) struct RawMember {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) paused: bool,
    pub(crate) max_open: Option<u32>,
    #[serde(default)]
    pub(crate) caps: Vec<RawCap>,
    pub(crate) weight: Option<u32>,
    pub(crate) kpi: Option<f64>,
    #[serde(default)]
    pub(crate) attributes: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub(crate) products: Vec<String>,
    #[serde(default)]
    pub(crate) categories: Vec<String>,
    #[serde(default)]
    pub(crate) territories: Vec<String>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    pub(crate) schedule: Option<String>,
    #[serde(default)]
    pub(crate) out_of_office: Vec<String>,
    /// The member's remit: only opportunities this condition accepts reach them (in any team).
    pub(crate) accepts: Option<RawCond>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Team")]
pub(crate) struct RawTeam {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) crm_id: Option<String>,
    #[serde(default)]
    pub(crate) pipelines: Vec<String>,
    #[serde(default)]
    pub(crate) territories: Vec<String>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    /// Member ids, or `{ id = "7", accepts = … }` for a member's remit inside this team.
    #[serde(default)]
    pub(crate) members: Vec<RawTeamMember>,
    /// The team's domain: only opportunities this condition accepts are routed to this team.
    pub(crate) accepts: Option<RawCond>,
    /// Members' default schedule.
    pub(crate) schedule: Option<String>,
    /// The team lead (a CRM user id): where a reclaim ladder with `escalate.to = "team_lead"` goes.
    pub(crate) lead: Option<String>,
    /// This team's changes to its pipelines' reclaim rules.
    pub(crate) reclaim: Option<RawReclaimOverride>,
}

/// A team's member: an id, or an id with a remit inside this team.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "TeamMember")]
pub(crate) enum RawTeamMember {
    Id(String),
    Membership(RawMembership),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Membership")]
pub(crate) struct RawMembership {
    pub(crate) id: String,
    /// The member's remit inside this team (on top of the team's domain and their own).
    pub(crate) accepts: Option<Box<RawCond>>,
}

impl RawTeamMember {
    pub(crate) fn id(&self) -> &str {
        match self {
            RawTeamMember::Id(id) => id,
            RawTeamMember::Membership(m) => &m.id,
        }
    }

    pub(crate) fn id_mut(&mut self) -> &mut String {
        match self {
            RawTeamMember::Id(id) => id,
            RawTeamMember::Membership(m) => &mut m.id,
        }
    }

    pub(crate) fn accepts(&self) -> Option<&RawCond> {
        match self {
            RawTeamMember::Id(_) => None,
            RawTeamMember::Membership(m) => m.accepts.as_deref(),
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TagRule")]
pub(crate) struct RawTagRule {
    pub(crate) name: String,
    pub(crate) when: RawCond,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Pipeline")]
pub(crate) struct RawPipeline<R = RawRule> {
    pub(crate) id: String,
    pub(crate) fallback_owner: Option<String>,
    /// Fields an opportunity must have before it is routed: CRMs often save its relations (the
    /// account link, the product line) a moment after the row. Missing one, it is held, not sent to
    /// the fallback owner, until the field is set or `wait_up_to` has passed.
    #[serde(default)]
    pub(crate) require: Vec<String>,
    /// How long an opportunity waits for its required fields, then it is routed with what it has
    /// (default "10m").
    pub(crate) wait_up_to: Option<String>,
    pub(crate) reclaim: Option<RawReclaim>,
    // The pipeline's rules (`R` is other than `RawRule` only to check the other keys alone).
    #[serde(default = "Vec::<R>::new")]
    pub(crate) rule: Vec<R>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rule")]
pub(crate) struct RawRule {
    pub(crate) id: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) description: String,
    pub(crate) when: Option<RawCond>,
    pub(crate) team: Option<RawTeamStage>,
    #[serde(default)]
    pub(crate) filters: Vec<RawFilter>,
    pub(crate) member: RawPick,
    pub(crate) when_full: Option<WhenFullWord>,
    pub(crate) when_away: Option<WhenAwayWord>,
    /// Round robin: "team" (default; one turn per team, shared by every rule feeding it) or "rule".
    pub(crate) turn: Option<TurnWord>,
}

/// Take back an assignment whose owner did nothing in time, and give it to someone else.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Reclaim")]
pub(crate) struct RawReclaim {
    /// The inactivity window, e.g. "48h" or "3d 4h".
    pub(crate) after: String,
    /// What counts as an interaction: "owner" (an activity by the owner; always counts), "anyone"
    /// (an activity by anyone), "owner_edits" (an edit of the opportunity by its owner; needs
    /// `opportunity.edited_by` in the daemon config). One word or a list.
    pub(crate) interactions: Option<OneOrMany<InteractionWord>>,
    /// Count only the owner's working hours (their schedule) towards the window (default false).
    pub(crate) working_hours: Option<bool>,
    /// Reassign within the owner's team (default true).
    pub(crate) within_team: Option<bool>,
    /// Who must not get it back: "previous" (the owner losing it; the default) or "all_previous".
    pub(crate) exclude: Option<ExcludeWord>,
    /// Who must not get it back: the last k distinct owners (instead of `exclude`).
    pub(crate) exclude_last: Option<u32>,
    /// How many times one opportunity may be reassigned within the team (default 3).
    pub(crate) max_reclaims: Option<i32>,
    /// Warn the owner when this fraction of the window has passed, e.g. 0.75.
    pub(crate) warn_at: Option<f64>,
    /// After the reassignments: give it to the team lead (or a named user) for a window of its own.
    pub(crate) escalate: Option<RawEscalate>,
    /// At the end of the ladder: "leave", or { owner = "<id>" } (release to a pool owner).
    pub(crate) then: Option<RawReclaimElse>,
    /// When nobody else is eligible: "leave", or { owner = "<id>" }.
    pub(crate) when_nobody: Option<RawReclaimElse>,
    /// Pause a member who lets this many opportunities lapse within a period, until an admin lifts it.
    pub(crate) pause_after: Option<RawPauseAfter>,
}

/// A team's changes to the reclaim rule of its pipelines; what is not given is the pipeline's.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ReclaimOverride")]
pub(crate) struct RawReclaimOverride {
    pub(crate) after: Option<String>,
    pub(crate) interactions: Option<OneOrMany<InteractionWord>>,
    pub(crate) working_hours: Option<bool>,
    pub(crate) warn_at: Option<f64>,
    pub(crate) max_reclaims: Option<i32>,
    pub(crate) escalate: Option<RawEscalate>,
    pub(crate) then: Option<RawReclaimElse>,
    pub(crate) pause_after: Option<RawPauseAfter>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Escalate")]
pub(crate) struct RawEscalate {
    /// "team_lead" (the team's `lead`), or a CRM user id.
    pub(crate) to: String,
    /// The lead's window (default: the reclaim window).
    pub(crate) after: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PauseAfter")]
pub(crate) struct RawPauseAfter {
    /// Opportunities reclaimed from the member …
    pub(crate) lapses: u32,
    /// … within this period, e.g. "7d".
    pub(crate) within: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "ReclaimElse")]
pub(crate) enum RawReclaimElse {
    Word(ElseWord),
    Owner { owner: String },
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub(crate) fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
    pub(crate) fn num(&self) -> Option<f64> {
        match self {
            Scalar::Text(s) => s.trim().parse().ok(),
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Bool(_) => None,
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "OneOrMany_for_{T}")]
pub(crate) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub(crate) fn list(&self) -> Vec<T> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Cond")]
pub(crate) struct RawCond {
    pub(crate) all: Option<Vec<RawCond>>,
    pub(crate) any: Option<Vec<RawCond>>,
    pub(crate) not: Option<Box<RawCond>>,
    pub(crate) tagged: Option<String>,
    pub(crate) field: Option<String>,
    pub(crate) equals: Option<Scalar>,
    pub(crate) not_equals: Option<Scalar>,
    #[serde(rename = "in")]
    pub(crate) in_: Option<Vec<Scalar>>,
    pub(crate) not_in: Option<Vec<Scalar>>,
    pub(crate) contains: Option<String>,
    pub(crate) starts_with: Option<String>,
    pub(crate) above: Option<Scalar>,
    pub(crate) at_least: Option<Scalar>,
    pub(crate) below: Option<Scalar>,
    pub(crate) at_most: Option<Scalar>,
    pub(crate) between: Option<Vec<Scalar>>,
    pub(crate) after: Option<String>,
    pub(crate) before: Option<String>,
    pub(crate) dates_between: Option<Vec<String>>,
    pub(crate) is_empty: Option<bool>,
    pub(crate) is_set: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TeamStage")]
pub(crate) struct RawTeamStage {
    pub(crate) id: Option<String>,
    pub(crate) territory: Option<OneOrMany<String>>,
    pub(crate) from_field: Option<String>,
    pub(crate) tags: Option<AnyAllWord>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Filter")]
pub(crate) struct RawFilter {
    pub(crate) attribute: Option<String>,
    pub(crate) equals_field: Option<String>,
    pub(crate) products: Option<String>,
    pub(crate) categories: Option<String>,
    pub(crate) territory: Option<OneOrMany<String>>,
    pub(crate) tags: Option<AnyAllWord>,
    pub(crate) if_nobody: Option<IfNobodyWord>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Pick")]
pub(crate) enum RawPick {
    Name(PickWord),
    Spec(RawPickSpec),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PickSpec")]
pub(crate) struct RawPickSpec {
    pub(crate) pick: SpecPickWord,
    #[serde(default)]
    pub(crate) fields: Vec<String>,
    pub(crate) otherwise: Option<PickWord>,
    /// The named owner keeps the opportunity even when it is outside their remit (`accepts`).
    #[serde(default)]
    pub(crate) ignore_remit: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Test")]
pub(crate) struct RawTest {
    pub(crate) name: String,
    pub(crate) pipeline: Option<String>,
    #[serde(default)]
    pub(crate) fields: BTreeMap<String, Scalar>,
    /// Open opportunities per member id.
    #[serde(default)]
    pub(crate) open: BTreeMap<String, i64>,
    /// Members paused for this test only.
    #[serde(default)]
    pub(crate) paused: Vec<String>,
    pub(crate) now: Option<String>,
    pub(crate) expect: RawExpect,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Expect")]
pub(crate) struct RawExpect {
    pub(crate) member: Option<String>,
    pub(crate) team: Option<String>,
    pub(crate) outcome: Option<String>,
    pub(crate) rule: Option<String>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    pub(crate) explanation_contains: Option<String>,
}
