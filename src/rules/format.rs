//! The rule file format as written: the serde structs an admin's TOML or JSON is read into, and
//! nothing else. They stay inside `rules` (the engine sees compiled types only) and generate the
//! JSON Schema (`config/rules.schema.json`), so what is documented here is what editors complete.
//!
//! Owns the shape of a file and its key names. It must not check meaning (ids, references,
//! values: that is `compile`), read files, or know where a key is written (`locate`, `parse`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::IdForm;

/// Every user id of a file, in the CRM's form.
pub(in crate::rules) fn canon_ids(f: &mut RawFile, form: IdForm) {
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

/// A word of a rule file with a fixed set of values. It is read as text, so any other word (or a
/// misspelling) is kept for `compile` to refuse with its position, its key and the values to use;
/// the JSON Schema lists the values, so editors complete them and flag a wrong one.
macro_rules! words {
    ($(#[$doc:meta])* $name:ident as $schema:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(in crate::rules) enum $name {
            $($variant,)+
            /// Not one of the words: refused by `compile`.
            Other(String),
        }

        impl $name {
            pub(in crate::rules) const WORDS: &'static [&'static str] = &[$($text),+];

            /// The word as written.
            #[allow(dead_code)] // not every word is quoted back in a message
            pub(in crate::rules) fn text(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }

            fn from_text(s: String) -> Self {
                match s.as_str() {
                    $($text => $name::$variant,)+
                    _ => $name::Other(s),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(Self::from_text)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $schema.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                word_schema(Self::WORDS)
            }
        }
    };
}

/// The schema of a word: a string, one of `words`.
fn word_schema(words: &[&str]) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": words })
}

words! {
    /// What a rule does when every candidate is at a cap.
    WhenFullWord as "WhenFull" { NextRule = "next_rule", Fallback = "fallback", IgnoreCaps = "ignore_caps", Hold = "hold" }
}

words! {
    /// What a rule does when the whole team is away (out of office, outside working hours).
    WhenAwayWord as "WhenAway" { NextRule = "next_rule", Wait = "wait" }
}

words! {
    /// What a windowed cap counts: "router" (the default: the assignments the router made, from
    /// its audit) or "crm" (every assignment the CRM records in the window, manual ones included;
    /// needs `opportunity.assigned_at` or `created_at` in the daemon config).
    CapCountWord as "CapCount" { Router = "router", Crm = "crm" }
}

words! {
    /// Whose turn a round-robin pick follows in a team: "team" (the default: one turn per team,
    /// shared by every rule that feeds it) or "rule" (a turn of this rule's own in each team).
    TurnWord as "Turn" { Team = "team", Rule = "rule" }
}

words! {
    /// What a filter that would leave nobody does.
    IfNobodyWord as "IfNobody" { NextRule = "next_rule", SkipFilter = "skip_filter" }
}

words! {
    /// Whether any or all of the opportunity's tags must match.
    AnyAllWord as "AnyAll" { Any = "any", All = "all" }
}

words! {
    /// Who must not get a reclaimed opportunity back.
    ExcludeWord as "Exclude" { Previous = "previous", AllPrevious = "all_previous" }
}

words! {
    /// What counts as an interaction with an assignment.
    InteractionWord as "Interaction" { Owner = "owner", Anyone = "anyone", OwnerEdits = "owner_edits" }
}

words! {
    /// The end of the ladder, or nobody else eligible: leave it with its owner.
    ElseWord as "Leave" { Leave = "leave" }
}

words! {
    /// A way to pick a member.
    PickWord as "PickName" {
        Random = "random",
        FewestOpen = "fewest_open",
        RoundRobin = "round_robin",
        WeightedRoundRobin = "weighted_round_robin",
        BestKpi = "best_kpi",
    }
}

words! {
    /// A way to pick a member, in its table form: "owner" (keep the owner a field names), or one
    /// of the plain ways.
    SpecPickWord as "PickSpecName" {
        Owner = "owner",
        Random = "random",
        FewestOpen = "fewest_open",
        RoundRobin = "round_robin",
        WeightedRoundRobin = "weighted_round_robin",
        BestKpi = "best_kpi",
    }
}

// ---------- the files as written ----------

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "oppty-router rule file")]
pub(in crate::rules) struct RawFile {
    /// The JSON Schema of this file, for editors (ignored).
    #[serde(rename = "$schema", default)]
    #[allow(dead_code)]
    pub(in crate::rules) schema: Option<String>,
    pub(in crate::rules) settings: Option<RawSettings>,
    #[serde(default)]
    pub(in crate::rules) territory: Vec<RawTerritory>,
    #[serde(default)]
    pub(in crate::rules) schedule: Vec<RawSchedule>,
    #[serde(default)]
    pub(in crate::rules) member: Vec<RawMember>,
    #[serde(default)]
    pub(in crate::rules) team: Vec<RawTeam>,
    #[serde(default)]
    pub(in crate::rules) tag: Vec<RawTagRule>,
    #[serde(default)]
    pub(in crate::rules) pipeline: Vec<RawPipeline>,
    #[serde(default)]
    pub(in crate::rules) test: Vec<RawTest>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Settings")]
pub(in crate::rules) struct RawSettings {
    pub(in crate::rules) fallback_owner: Option<String>,
    pub(in crate::rules) hold_max: Option<String>,
    pub(in crate::rules) hold_retry: Option<String>,
    pub(in crate::rules) reentry_ramp: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Territory")]
pub(in crate::rules) struct RawTerritory {
    pub(in crate::rules) id: String,
    /// Its name; a field holding the name (any letter case) matches it like the id does, unless
    /// another territory has the same name (then give aliases).
    #[serde(default)]
    pub(in crate::rules) name: String,
    pub(in crate::rules) parent: Option<String>,
    /// Other ways the CRM writes it ("United States", "USA", "US"): matched like the id.
    #[serde(default)]
    pub(in crate::rules) aliases: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Schedule")]
pub(in crate::rules) struct RawSchedule {
    pub(in crate::rules) id: String,
    pub(in crate::rules) timezone: String,
    pub(in crate::rules) week: BTreeMap<String, String>,
    #[serde(default)]
    pub(in crate::rules) out_of_office: Vec<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Cap")]
pub(in crate::rules) struct RawCap {
    pub(in crate::rules) max: u32,
    pub(in crate::rules) per: String,
    pub(in crate::rules) timezone: Option<String>,
    /// What a windowed cap counts: "router" (default: the assignments the router made) or "crm"
    /// (every assignment the CRM records in the window, manual ones included).
    pub(in crate::rules) count: Option<CapCountWord>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Member")]
pub(in crate::rules) struct RawMember {
    pub(in crate::rules) id: String,
    #[serde(default)]
    pub(in crate::rules) name: String,
    #[serde(default)]
    pub(in crate::rules) paused: bool,
    pub(in crate::rules) max_open: Option<u32>,
    #[serde(default)]
    pub(in crate::rules) caps: Vec<RawCap>,
    pub(in crate::rules) weight: Option<u32>,
    pub(in crate::rules) kpi: Option<f64>,
    #[serde(default)]
    pub(in crate::rules) attributes: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub(in crate::rules) products: Vec<String>,
    #[serde(default)]
    pub(in crate::rules) categories: Vec<String>,
    #[serde(default)]
    pub(in crate::rules) territories: Vec<String>,
    #[serde(default)]
    pub(in crate::rules) tags: Vec<String>,
    pub(in crate::rules) schedule: Option<String>,
    #[serde(default)]
    pub(in crate::rules) out_of_office: Vec<String>,
    /// The member's remit: only opportunities this condition accepts reach them (in any team).
    pub(in crate::rules) accepts: Option<RawCond>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Team")]
pub(in crate::rules) struct RawTeam {
    pub(in crate::rules) id: String,
    #[serde(default)]
    pub(in crate::rules) name: String,
    pub(in crate::rules) crm_id: Option<String>,
    #[serde(default)]
    pub(in crate::rules) pipelines: Vec<String>,
    #[serde(default)]
    pub(in crate::rules) territories: Vec<String>,
    #[serde(default)]
    pub(in crate::rules) tags: Vec<String>,
    /// Member ids, or `{ id = "7", accepts = … }` for a member's remit inside this team.
    #[serde(default)]
    pub(in crate::rules) members: Vec<RawTeamMember>,
    /// The team's domain: only opportunities this condition accepts are routed to this team.
    pub(in crate::rules) accepts: Option<RawCond>,
    /// Members' default schedule.
    pub(in crate::rules) schedule: Option<String>,
    /// The team lead (a CRM user id): where a reclaim ladder with `escalate.to = "team_lead"` goes.
    pub(in crate::rules) lead: Option<String>,
    /// This team's changes to its pipelines' reclaim rules.
    pub(in crate::rules) reclaim: Option<RawReclaimOverride>,
}

/// A team's member: an id, or an id with a remit inside this team.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "TeamMember")]
pub(in crate::rules) enum RawTeamMember {
    Id(String),
    Membership(RawMembership),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Membership")]
pub(in crate::rules) struct RawMembership {
    pub(in crate::rules) id: String,
    /// The member's remit inside this team (on top of the team's domain and their own).
    pub(in crate::rules) accepts: Option<Box<RawCond>>,
}

impl RawTeamMember {
    pub(in crate::rules) fn id(&self) -> &str {
        match self {
            RawTeamMember::Id(id) => id,
            RawTeamMember::Membership(m) => &m.id,
        }
    }

    pub(in crate::rules) fn id_mut(&mut self) -> &mut String {
        match self {
            RawTeamMember::Id(id) => id,
            RawTeamMember::Membership(m) => &mut m.id,
        }
    }

    pub(in crate::rules) fn accepts(&self) -> Option<&RawCond> {
        match self {
            RawTeamMember::Id(_) => None,
            RawTeamMember::Membership(m) => m.accepts.as_deref(),
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TagRule")]
pub(in crate::rules) struct RawTagRule {
    pub(in crate::rules) name: String,
    pub(in crate::rules) when: RawCond,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Pipeline")]
pub(in crate::rules) struct RawPipeline<R = RawRule> {
    pub(in crate::rules) id: String,
    pub(in crate::rules) fallback_owner: Option<String>,
    /// Fields an opportunity must have before it is routed: CRMs often save its relations (the
    /// account link, the product line) a moment after the row. Missing one, it is held, not sent to
    /// the fallback owner, until the field is set or `wait_up_to` has passed.
    #[serde(default)]
    pub(in crate::rules) require: Vec<String>,
    /// How long an opportunity waits for its required fields, then it is routed with what it has
    /// (default "10m").
    pub(in crate::rules) wait_up_to: Option<String>,
    pub(in crate::rules) reclaim: Option<RawReclaim>,
    // The pipeline's rules (`R` is other than `RawRule` only to check the other keys alone).
    #[serde(default = "Vec::<R>::new")]
    pub(in crate::rules) rule: Vec<R>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Rule")]
pub(in crate::rules) struct RawRule {
    pub(in crate::rules) id: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub(in crate::rules) description: String,
    pub(in crate::rules) when: Option<RawCond>,
    pub(in crate::rules) team: Option<RawTeamStage>,
    #[serde(default)]
    pub(in crate::rules) filters: Vec<RawFilter>,
    pub(in crate::rules) member: RawPick,
    pub(in crate::rules) when_full: Option<WhenFullWord>,
    pub(in crate::rules) when_away: Option<WhenAwayWord>,
    /// Round robin: "team" (default; one turn per team, shared by every rule feeding it) or "rule".
    pub(in crate::rules) turn: Option<TurnWord>,
}

/// Take back an assignment whose owner did nothing in time, and give it to someone else.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Reclaim")]
pub(in crate::rules) struct RawReclaim {
    /// The inactivity window, e.g. "48h" or "3d 4h".
    pub(in crate::rules) after: String,
    /// What counts as an interaction: "owner" (an activity by the owner; always counts), "anyone"
    /// (an activity by anyone), "owner_edits" (an edit of the opportunity by its owner; needs
    /// `opportunity.edited_by` in the daemon config). One word or a list.
    pub(in crate::rules) interactions: Option<OneOrMany<InteractionWord>>,
    /// Count only the owner's working hours (their schedule) towards the window (default false).
    pub(in crate::rules) working_hours: Option<bool>,
    /// Reassign within the owner's team (default true).
    pub(in crate::rules) within_team: Option<bool>,
    /// Who must not get it back: "previous" (the owner losing it; the default) or "all_previous".
    pub(in crate::rules) exclude: Option<ExcludeWord>,
    /// Who must not get it back: the last k distinct owners (instead of `exclude`).
    pub(in crate::rules) exclude_last: Option<u32>,
    /// How many times one opportunity may be reassigned within the team (default 3).
    pub(in crate::rules) max_reclaims: Option<i32>,
    /// Warn the owner when this fraction of the window has passed, e.g. 0.75.
    pub(in crate::rules) warn_at: Option<f64>,
    /// After the reassignments: give it to the team lead (or a named user) for a window of its own.
    pub(in crate::rules) escalate: Option<RawEscalate>,
    /// At the end of the ladder: "leave", or { owner = "<id>" } (release to a pool owner).
    pub(in crate::rules) then: Option<RawReclaimElse>,
    /// When nobody else is eligible: "leave", or { owner = "<id>" }.
    pub(in crate::rules) when_nobody: Option<RawReclaimElse>,
    /// Pause a member who lets this many opportunities lapse within a period, until an admin lifts it.
    pub(in crate::rules) pause_after: Option<RawPauseAfter>,
}

/// A team's changes to the reclaim rule of its pipelines; what is not given is the pipeline's.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ReclaimOverride")]
pub(in crate::rules) struct RawReclaimOverride {
    pub(in crate::rules) after: Option<String>,
    pub(in crate::rules) interactions: Option<OneOrMany<InteractionWord>>,
    pub(in crate::rules) working_hours: Option<bool>,
    pub(in crate::rules) warn_at: Option<f64>,
    pub(in crate::rules) max_reclaims: Option<i32>,
    pub(in crate::rules) escalate: Option<RawEscalate>,
    pub(in crate::rules) then: Option<RawReclaimElse>,
    pub(in crate::rules) pause_after: Option<RawPauseAfter>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Escalate")]
pub(in crate::rules) struct RawEscalate {
    /// "team_lead" (the team's `lead`), or a CRM user id.
    pub(in crate::rules) to: String,
    /// The lead's window (default: the reclaim window).
    pub(in crate::rules) after: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PauseAfter")]
pub(in crate::rules) struct RawPauseAfter {
    /// Opportunities reclaimed from the member …
    pub(in crate::rules) lapses: u32,
    /// … within this period, e.g. "7d".
    pub(in crate::rules) within: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "ReclaimElse")]
pub(in crate::rules) enum RawReclaimElse {
    Word(ElseWord),
    Owner { owner: String },
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(in crate::rules) enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub(in crate::rules) fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
    pub(in crate::rules) fn num(&self) -> Option<f64> {
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
pub(in crate::rules) enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub(in crate::rules) fn list(&self) -> Vec<T> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Cond")]
pub(in crate::rules) struct RawCond {
    pub(in crate::rules) all: Option<Vec<RawCond>>,
    pub(in crate::rules) any: Option<Vec<RawCond>>,
    pub(in crate::rules) not: Option<Box<RawCond>>,
    pub(in crate::rules) tagged: Option<String>,
    pub(in crate::rules) field: Option<String>,
    pub(in crate::rules) equals: Option<Scalar>,
    pub(in crate::rules) not_equals: Option<Scalar>,
    #[serde(rename = "in")]
    pub(in crate::rules) in_: Option<Vec<Scalar>>,
    pub(in crate::rules) not_in: Option<Vec<Scalar>>,
    pub(in crate::rules) contains: Option<String>,
    pub(in crate::rules) starts_with: Option<String>,
    pub(in crate::rules) above: Option<Scalar>,
    pub(in crate::rules) at_least: Option<Scalar>,
    pub(in crate::rules) below: Option<Scalar>,
    pub(in crate::rules) at_most: Option<Scalar>,
    pub(in crate::rules) between: Option<Vec<Scalar>>,
    pub(in crate::rules) after: Option<String>,
    pub(in crate::rules) before: Option<String>,
    pub(in crate::rules) dates_between: Option<Vec<String>>,
    pub(in crate::rules) is_empty: Option<bool>,
    pub(in crate::rules) is_set: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TeamStage")]
pub(in crate::rules) struct RawTeamStage {
    pub(in crate::rules) id: Option<String>,
    pub(in crate::rules) territory: Option<OneOrMany<String>>,
    pub(in crate::rules) from_field: Option<String>,
    pub(in crate::rules) tags: Option<AnyAllWord>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Filter")]
pub(in crate::rules) struct RawFilter {
    pub(in crate::rules) attribute: Option<String>,
    pub(in crate::rules) equals_field: Option<String>,
    pub(in crate::rules) products: Option<String>,
    pub(in crate::rules) categories: Option<String>,
    pub(in crate::rules) territory: Option<OneOrMany<String>>,
    pub(in crate::rules) tags: Option<AnyAllWord>,
    pub(in crate::rules) if_nobody: Option<IfNobodyWord>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "Pick")]
pub(in crate::rules) enum RawPick {
    Name(PickWord),
    Spec(RawPickSpec),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "PickSpec")]
pub(in crate::rules) struct RawPickSpec {
    pub(in crate::rules) pick: SpecPickWord,
    #[serde(default)]
    pub(in crate::rules) fields: Vec<String>,
    pub(in crate::rules) otherwise: Option<PickWord>,
    /// The named owner keeps the opportunity even when it is outside their remit (`accepts`).
    #[serde(default)]
    pub(in crate::rules) ignore_remit: bool,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Test")]
pub(in crate::rules) struct RawTest {
    pub(in crate::rules) name: String,
    pub(in crate::rules) pipeline: Option<String>,
    #[serde(default)]
    pub(in crate::rules) fields: BTreeMap<String, Scalar>,
    /// Open opportunities per member id.
    #[serde(default)]
    pub(in crate::rules) open: BTreeMap<String, i64>,
    /// Members paused for this test only.
    #[serde(default)]
    pub(in crate::rules) paused: Vec<String>,
    pub(in crate::rules) now: Option<String>,
    pub(in crate::rules) expect: RawExpect,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Expect")]
pub(in crate::rules) struct RawExpect {
    pub(in crate::rules) member: Option<String>,
    pub(in crate::rules) team: Option<String>,
    pub(in crate::rules) outcome: Option<String>,
    pub(in crate::rules) rule: Option<String>,
    #[serde(default)]
    pub(in crate::rules) tags: Vec<String>,
    pub(in crate::rules) explanation_contains: Option<String>,
}
