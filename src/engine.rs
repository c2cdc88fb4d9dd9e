//! The routing engine: from one opportunity, the compiled rules and the members' loads to a
//! decision with its explanation.
//!
//! Owns what a decision is and how it is made. It does no I/O and reads no clock: everything it
//! needs (rules, opportunity fields, loads) is handed in, so the same inputs always give the same
//! decision. It must not know about SQL, files or the daemon; `rules` builds its types.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use serde_json::json;

/// The open-opportunity count of members, as the drain knows it at this moment.
pub trait Loads {
    fn open(&self, member_id: &str) -> i64;
}

impl Loads for HashMap<String, i64> {
    fn open(&self, member_id: &str) -> i64 {
        self.get(member_id).copied().unwrap_or(0)
    }
}

/// The pipeline used for opportunities whose pipeline is not mapped or is empty.
pub const DEFAULT_PIPELINE: &str = "default";

/// One opportunity as the engine sees it: the mapped fields, by their position in the mapping.
#[derive(Debug, Clone)]
pub struct Opportunity<'a> {
    pub id: &'a str,
    pub pipeline: Option<&'a str>,
    pub fields: &'a [Option<String>],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A rule yielded the owner.
    Rule,
    /// No rule yielded anybody; the pipeline's or the global fallback owner.
    Fallback,
    /// Nobody, and no fallback owner is configured.
    Unassigned,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Rule => "rule",
            Outcome::Fallback => "fallback",
            Outcome::Unassigned => "unassigned",
        }
    }
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
    pub explanation: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub max_open: Option<u32>,
    pub paused: bool,
}

#[derive(Debug, Clone)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub crm_id: Option<String>,
    pub members: Vec<usize>,
    pub territories: HashSet<String>,
}

#[derive(Debug, Clone)]
pub enum TeamStage {
    /// Every team that takes part in the pipeline.
    AllPipelineTeams,
    /// One named team.
    Fixed(usize),
    /// The pipeline team whose territories hold the value of this field.
    TerritoryOf { field: usize, field_name: String },
}

#[derive(Debug, Clone, Copy)]
pub enum Pick {
    FewestOpen,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub team: TeamStage,
    pub pick: Pick,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub id: String,
    pub rules: Vec<Rule>,
    pub fallback_owner: Option<String>,
    /// Teams taking part, in file order.
    pub teams: Vec<usize>,
}

/// A compiled, checked rule set. Built only by `rules::compile`.
#[derive(Debug, Clone)]
pub struct Engine {
    pub version: String,
    pub members: Vec<Member>,
    pub teams: Vec<Team>,
    pub pipelines: HashMap<String, Pipeline>,
    pub global_fallback: Option<String>,
}

impl Engine {
    /// Ids of every member, for load bookkeeping.
    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.id.as_str())
    }

    /// Decide the owner of one opportunity.
    pub fn route(&self, opp: &Opportunity<'_>, loads: &dyn Loads) -> Decision {
        let pipeline_id = opp.pipeline.filter(|p| !p.trim().is_empty()).unwrap_or(DEFAULT_PIPELINE);
        let mut tried = Vec::new();
        let Some(pipeline) = self.pipelines.get(pipeline_id) else {
            let why = format!("pipeline `{pipeline_id}` has no rules");
            return self.fallback(pipeline_id, None, vec![json!({ "note": why })]);
        };
        for rule in &pipeline.rules {
            let (teams, team_why) = match &rule.team {
                TeamStage::AllPipelineTeams => {
                    (pipeline.teams.clone(), "every team taking part in the pipeline".to_string())
                }
                TeamStage::Fixed(t) => (vec![*t], format!("the rule names team `{}`", self.teams[*t].id)),
                TeamStage::TerritoryOf { field, field_name } => {
                    match opp.fields.get(*field).and_then(|v| v.as_deref()) {
                        None => {
                            tried.push(json!({ "rule": rule.id, "result": "no match",
                                "why": format!("field `{field_name}` is empty") }));
                            continue;
                        }
                        Some(value) => {
                            match pipeline.teams.iter().find(|t| self.teams[**t].territories.contains(value)) {
                                Some(t) => (vec![*t], format!("its territory covers {field_name} = `{value}`")),
                                None => {
                                    tried.push(json!({ "rule": rule.id, "result": "no match",
                                        "why": format!("no team of the pipeline covers {field_name} = `{value}`") }));
                                    continue;
                                }
                            }
                        }
                    }
                }
            };
            let mut excluded: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            let mut best: Option<(i64, usize, usize)> = None; // (load, member, team)
            let mut seen = HashSet::new();
            let mut candidates = 0usize;
            for &t in &teams {
                for &m in &self.teams[t].members {
                    if !seen.insert(m) {
                        continue;
                    }
                    let member = &self.members[m];
                    let load = loads.open(&member.id);
                    if member.paused {
                        excluded.entry("paused").or_default().push(&member.id);
                        continue;
                    }
                    if let Some(cap) = member.max_open {
                        if load >= i64::from(cap) {
                            excluded.entry("at cap").or_default().push(&member.id);
                            continue;
                        }
                    }
                    candidates += 1;
                    if best.map_or(true, |(l, _, _)| load < l) {
                        best = Some((load, m, t));
                    }
                }
            }
            match best {
                Some((load, m, t)) => {
                    let member = &self.members[m];
                    let team = &self.teams[t];
                    tried.push(json!({ "rule": rule.id, "result": "matched" }));
                    return Decision {
                        owner: Some(member.id.clone()),
                        team: Some(team.id.clone()),
                        team_crm_id: team.crm_id.clone(),
                        outcome: Outcome::Rule,
                        pipeline: pipeline_id.to_string(),
                        rule_id: Some(rule.id.clone()),
                        explanation: json!({
                            "pipeline": pipeline_id,
                            "rules": tried,
                            "team": { "id": team.id, "why": team_why },
                            "candidates": candidates,
                            "excluded": excluded,
                            "member": { "id": member.id, "name": member.name,
                                "why": format!("fewest open opportunities ({load}) among {candidates} eligible") },
                        }),
                    };
                }
                None => tried.push(json!({ "rule": rule.id, "result": "nobody eligible",
                    "team_why": team_why, "excluded": excluded })),
            }
        }
        self.fallback(pipeline_id, pipeline.fallback_owner.as_deref(), tried)
    }

    fn fallback(&self, pipeline_id: &str, pipeline_fallback: Option<&str>, tried: Vec<serde_json::Value>) -> Decision {
        let (owner, source) = match (pipeline_fallback, self.global_fallback.as_deref()) {
            (Some(o), _) => (Some(o.to_string()), "the pipeline's fallback owner"),
            (None, Some(o)) => (Some(o.to_string()), "the global fallback owner"),
            (None, None) => (None, "no fallback owner is configured"),
        };
        Decision {
            outcome: if owner.is_some() { Outcome::Fallback } else { Outcome::Unassigned },
            explanation: json!({
                "pipeline": pipeline_id,
                "rules": tried,
                "fallback": { "owner": owner, "why": format!("no rule yielded anybody: {source}") },
            }),
            owner,
            team: None,
            team_crm_id: None,
            pipeline: pipeline_id.to_string(),
            rule_id: None,
        }
    }
}
