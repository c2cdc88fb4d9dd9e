//! What one decision saw, kept with it in the audit so a replay (`simulate`) decides from the
//! same inputs: the opportunity's fields and pipeline as read, the moment and the randomness it
//! was decided with, and the part of the ledger it looked at (the members of the teams its rules
//! reached: their loads as counted, the assignments their caps count, re-entry and away flags,
//! pauses; the pipeline's round-robin turns).
//!
//! It must not read anything: the drain hands in what it read and the ledger as it stood.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ledger::Undo;
use super::pick::PickUndo;
use super::{Engine, Explanation, Ledger};

/// One decision's inputs, as stored with it (`assignments.seen`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// The moment handed to the engine, in microseconds since the epoch.
    pub now_us: i64,
    /// The seed of the decision's randomness (random picks, ties).
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// The fields as read, by name (empty ones left out).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    pub waiting_since_us: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_team: Option<String>,
    #[serde(default)]
    pub ledger: LedgerView,
}

/// The part of the ledger a decision looked at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerView {
    /// By member id.
    #[serde(default)]
    pub members: BTreeMap<String, MemberView>,
    /// Round-robin turns and weights of the pipeline's rules, by `rule key@team`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cursors: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, BTreeMap<String, i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_read_at: Option<i64>,
}

/// One member as a decision saw them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub open: i64,
    /// Assignments the member's caps may count (epoch seconds); for a member without caps, the
    /// last one alone (a tie-break reads it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crm: Vec<i64>,
    /// Per team with a cap of its own: the assignments it counts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub here: BTreeMap<String, Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reentry: Option<(i64, i64)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub away: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// The members a decision reached: those of every team its rules' team stages named.
pub fn reached(engine: &Engine, ex: &Explanation) -> Vec<usize> {
    let mut out: Vec<usize> = (ex.rules.iter())
        .filter_map(|r| r.team.as_ref())
        .flat_map(|t| t.ids.iter())
        .filter_map(|id| engine.team_index.get(&**id))
        .flat_map(|t| engine.teams[*t].members.iter().copied())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl LedgerView {
    /// The ledger as `members` of `pipeline` stood at `now` (epoch seconds), before a decision.
    pub fn of(engine: &Engine, ledger: &Ledger, members: &[usize], pipeline: &str, now: i64) -> LedgerView {
        let from = now - engine.history;
        let window = |q: &VecDeque<i64>| q.iter().copied().filter(|t| *t >= from).collect::<Vec<i64>>();
        let mut view = LedgerView { crm_read_at: ledger.crm_read_at, ..Default::default() };
        for &m in members {
            let member = &engine.members[m];
            let capped = !member.caps.is_empty();
            let mut here = BTreeMap::new();
            for ((who, team), q) in &ledger.recent_here {
                if **who == *member.id {
                    here.insert(team.to_string(), window(q));
                }
            }
            let v = MemberView {
                open: ledger.open[m],
                // The caps count the window; fewest-open's tie-break reads the last assignment.
                recent: if capped {
                    window(&ledger.recent[m])
                } else {
                    ledger.recent[m].back().copied().into_iter().collect()
                },
                crm: if capped { ledger.crm_recent.get(m).map(window).unwrap_or_default() } else { Vec::new() },
                here,
                reentry: ledger.reentry[m],
                away: ledger.away[m],
                paused: ledger.paused.get(m).copied().unwrap_or(false),
            };
            view.members.insert(member.id.to_string(), v);
        }
        let prefix = format!("{pipeline}/");
        for (k, c) in ledger.cursors.iter().filter(|(k, _)| k.starts_with(&prefix)) {
            view.cursors.insert(k.clone(), c.clone());
        }
        for (k, w) in ledger.weights.iter().filter(|(k, _)| k.starts_with(&prefix)) {
            view.weights.insert(k.clone(), w.iter().map(|(a, b)| (a.clone(), *b)).collect());
        }
        view
    }

    /// The view as it stood before the decision whose `undo` it is (taken after it: which
    /// members it reached is known only then): its assignment, turns and flags taken back, as
    /// [`Ledger::undo`] does.
    pub fn before(mut self, engine: &Engine, undo: &Undo) -> LedgerView {
        if let Some((m, at)) = undo.assigned {
            if let Some(v) = self.members.get_mut(&*engine.members[m].id) {
                v.open = (v.open - 1).max(0);
                if let Some(pos) = v.recent.iter().rposition(|t| *t == at) {
                    v.recent.remove(pos);
                }
                if let Some((_, team)) = &undo.here {
                    if let Some(q) = v.here.get_mut(&**team) {
                        if let Some(pos) = q.iter().rposition(|t| *t == at) {
                            q.remove(pos);
                        }
                        if q.is_empty() {
                            v.here.remove(&**team);
                        }
                    }
                }
            }
        }
        for p in undo.picks.iter().rev() {
            match p {
                PickUndo::Cursor { key, prev: Some(prev) } => drop(self.cursors.insert(key.clone(), prev.clone())),
                PickUndo::Cursor { key, prev: None } => drop(self.cursors.remove(key)),
                PickUndo::Weights { key, prev } if prev.is_empty() => drop(self.weights.remove(key)),
                PickUndo::Weights { key, prev } => {
                    drop(self.weights.insert(key.clone(), prev.iter().map(|(a, b)| (a.clone(), *b)).collect()))
                }
            }
        }
        for f in undo.flags.iter().rev() {
            if let Some(v) = self.members.get_mut(&*engine.members[f.member].id) {
                v.away = f.away;
                v.reentry = f.reentry;
            }
        }
        self
    }

    /// Put what this view saw into `ledger` (for `engine`'s members), over whatever it held for
    /// them: a replay decides from the loads, caps and turns the router counted then.
    pub fn apply(&self, engine: &Engine, ledger: &mut Ledger) {
        for (id, v) in &self.members {
            let Some(m) = engine.member_index(id) else { continue };
            ledger.open[m] = v.open;
            ledger.recent[m] = v.recent.iter().copied().collect();
            if let Some(q) = ledger.crm_recent.get_mut(m) {
                *q = v.crm.iter().copied().collect();
            }
            ledger.reentry[m] = v.reentry;
            ledger.away[m] = v.away;
            if let Some(p) = ledger.paused.get_mut(m) {
                *p = v.paused;
            }
            ledger.recent_here.retain(|(who, _), _| **who != **id);
            for (team, q) in &v.here {
                let key: (Arc<str>, Arc<str>) = (Arc::from(id.as_str()), Arc::from(team.as_str()));
                ledger.recent_here.insert(key, q.iter().copied().collect());
            }
        }
        for (k, c) in &self.cursors {
            ledger.cursors.insert(k.clone(), c.clone());
        }
        for (k, w) in &self.weights {
            ledger.weights.insert(k.clone(), w.iter().map(|(a, b)| (a.clone(), *b)).collect());
        }
        if self.crm_read_at.is_some() {
            ledger.crm_read_at = self.crm_read_at;
        }
    }
}
