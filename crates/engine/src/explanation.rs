//! A decision and its explanation: the outcome, each rule's trace (team stage, filters, pick), in
//! the words `explain`, the audit and `report` show. Built by `route`; it must not decide anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{person, Undo};

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
