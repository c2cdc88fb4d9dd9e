//! What each member of a team could expect of one decision: their entitlement. A decision made
//! through a team gives one opportunity; the members who could have received it (in the team,
//! not left out by the rule — disabled, paused, away, at a cap, outside their remit, or a
//! filter's) share it, by weight when the rule's pick is weighted round robin, equally otherwise.
//! Summed over a window, this is each member's expected share: fairness compares what they got
//! with it, so a team fair by its own rules reads as fair.
//!
//! Read from the decision's own explanation (what the router acted on), never recomputed. Like
//! the rest of the engine it does no I/O and reads no clock.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Engine, Explanation, Pick};

impl Engine {
    /// Each member's share of one decision made by `rule` of `pipeline` through `team` (fractions
    /// adding up to 1; empty when the team is not in these rules or nobody could receive it).
    pub fn entitlement(&self, ex: &Explanation, pipeline: &str, rule: &str, team: &str) -> Vec<(Arc<str>, f64)> {
        let Some(t) = self.team_index.get(team).map(|t| &self.teams[*t]) else { return Vec::new() };
        let trace = ex.rules.iter().rev().find(|r| &*r.rule == rule);
        let mut out: HashSet<&str> = HashSet::new();
        if let Some(tr) = trace {
            out.extend(tr.excluded.values().flatten().map(|id| &**id));
            out.extend(tr.filters.iter().flat_map(|f| f.left_out.iter()).map(|id| &**id));
        }
        let weighted = self
            .pipelines
            .get(pipeline)
            .and_then(|p| p.rules.iter().find(|r| &*r.id == rule))
            .is_some_and(|r| matches!(r.pick, Pick::WeightedRoundRobin));
        let weight = |m: usize| if weighted { f64::from(self.members[m].weight.max(1)) } else { 1.0 };
        let could: Vec<usize> = t.members.iter().copied().filter(|m| !out.contains(&*self.members[*m].id)).collect();
        let total: f64 = could.iter().map(|m| weight(*m)).sum();
        if total <= 0.0 {
            return Vec::new();
        }
        could.into_iter().map(|m| (self.members[m].id.clone(), weight(m) / total)).collect()
    }
}
