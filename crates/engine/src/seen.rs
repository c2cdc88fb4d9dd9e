//! What one decision saw, kept with it in the audit so a replay (`simulate`) decides from the
//! same inputs: the opportunity's fields and pipeline as read, the moment and the randomness it
//! was decided with, and the part of the ledger it looked at (the members of the teams its rules
//! reached: their loads as counted, the assignments their caps count, re-entry and away flags,
//! pauses; the pipeline's round-robin turns).
//!
//! It must not read anything: the drain hands in what it read and the ledger as it stood.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
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
    /// The turns this view speaks for, whether it holds one or not: the pipeline's own
    /// (`<pipeline>/…`) and the reached teams' shared turns (`team:<id>`). A turn among them that
    /// the view lacks had not been taken yet when the decision was made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<String>,
}

/// One member as a decision saw them: loads and cap counts as counted, not the assignments
/// behind them (a replay puts back assignments that count the same).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberView {
    pub open: i64,
    /// The newest assignment (epoch seconds): fewest-open's tie-break reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<i64>,
    /// Per windowed cap: where its window started and what it counted (at most its maximum + 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<(i64, u32)>,
    /// Per team with a cap of its own: the same.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub here: BTreeMap<String, Vec<(i64, u32)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reentry: Option<(i64, i64)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub away: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// The teams a decision's rules' team stages named, and their members.
pub fn reached(engine: &Engine, ex: &Explanation) -> (Vec<usize>, Vec<usize>) {
    let mut teams: Vec<usize> = (ex.rules.iter())
        .filter_map(|r| r.team.as_ref())
        .flat_map(|t| t.ids.iter())
        .filter_map(|id| engine.team_index.get(&**id).copied())
        .collect();
    teams.sort_unstable();
    teams.dedup();
    let mut members: Vec<usize> = teams.iter().flat_map(|t| engine.teams[*t].members.iter().copied()).collect();
    members.sort_unstable();
    members.dedup();
    (teams, members)
}

/// Assignments that count as `counts` say (each window's count from its start) with `last`
/// the newest: one at `last`, the rest at each window's start, which only it and the wider ones
/// count.
fn assignments(last: Option<i64>, counts: &[(i64, u32)]) -> VecDeque<i64> {
    let mut q: Vec<i64> = last.into_iter().collect();
    let mut windows = counts.to_vec();
    windows.sort_by_key(|w| std::cmp::Reverse(w.0));
    for (since, n) in windows {
        let have = q.iter().filter(|t| **t >= since).count();
        q.extend(std::iter::repeat_n(since, (n as usize).saturating_sub(have)));
    }
    q.sort_unstable();
    q.into()
}

impl LedgerView {
    /// The ledger as a decision's reached `teams` and their `members` saw it, before the decision
    /// (taken after it, `undo` taken back: which members it reached is known only then).
    pub fn of(
        engine: &Engine,
        ledger: &Ledger,
        (teams, members): &(Vec<usize>, Vec<usize>),
        pipeline: &str,
        now: DateTime<Utc>,
        undo: &Undo,
    ) -> LedgerView {
        let mine = undo.assigned;
        let mut view = LedgerView::default();
        for &m in members {
            let member = &engine.members[m];
            let took = mine.filter(|(x, _)| *x == m).map(|(_, at)| at);
            let counts = (member.caps.iter())
                .filter_map(|cap| {
                    let since = cap.since(now)?;
                    let n = if cap.crm_count {
                        ledger.crm_assigned_since(m, since)
                    } else {
                        ledger.assigned_since(m, since)
                    };
                    let n = n.saturating_sub(usize::from(took.is_some_and(|at| at >= since)));
                    Some((since, n.min(cap.max as usize + 1) as u32))
                })
                .collect();
            let mut newest = ledger.recent[m].iter().rev().copied();
            let last = match took {
                Some(at) => newest.by_ref().position(|t| t == at).and_then(|_| newest.next()),
                None => newest.next(),
            };
            let v = MemberView {
                open: ledger.open[m] - i64::from(took.is_some()),
                last,
                counts,
                here: BTreeMap::new(),
                reentry: ledger.reentry[m],
                away: ledger.away[m],
                paused: ledger.paused.get(m).copied().unwrap_or(false),
            };
            view.members.insert(member.id.to_string(), v);
        }
        view.team_caps(engine, ledger, teams, now, undo);
        view.turns = std::iter::once(format!("{pipeline}/"))
            .chain(teams.iter().map(|t| format!("team:{}", engine.teams[*t].id)))
            .collect();
        let cursors = ledger.cursors.iter().filter(|(k, _)| view.speaks_for(k));
        let cursors: BTreeMap<String, String> = cursors.map(|(k, c)| (k.clone(), c.clone())).collect();
        let weights = ledger.weights.iter().filter(|(k, _)| view.speaks_for(k));
        let weights = weights.map(|(k, w)| (k.clone(), w.iter().map(|(a, b)| (a.clone(), *b)).collect())).collect();
        (view.cursors, view.weights) = (cursors, weights);
        view.turns_and_flags_before(engine, undo);
        view
    }

    /// Whether turn `key` is one this view speaks for ([`LedgerView::turns`]).
    fn speaks_for(&self, key: &str) -> bool {
        self.turns.iter().any(|t| if t.ends_with('/') { key.starts_with(t.as_str()) } else { key == t })
    }

    /// The caps the reached teams hold for their members, as counted before the decision.
    fn team_caps(&mut self, engine: &Engine, ledger: &Ledger, teams: &[usize], now: DateTime<Utc>, undo: &Undo) {
        for &t in teams {
            let team = &engine.teams[t];
            for (m, cap) in &team.caps_here {
                let Some(since) = cap.since(now) else { continue };
                let id = &engine.members[*m].id;
                let mut n = ledger.assigned_here(id, &team.id, since);
                if undo.here.as_ref().is_some_and(|(w, x)| w == id && *x == team.id) {
                    n = n.saturating_sub(1);
                }
                if let Some(v) = self.members.get_mut(&**id) {
                    v.here.insert(team.id.to_string(), vec![(since, n.min(cap.max as usize + 1) as u32)]);
                }
            }
        }
    }

    /// The decision's pick state and flags taken back, as [`Ledger::undo`] does.
    fn turns_and_flags_before(&mut self, engine: &Engine, undo: &Undo) {
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
    }

    /// Put what this view saw into `ledger` (for `engine`'s members), over whatever it held for
    /// them: a replay decides from the loads, caps and turns the router counted then. The counts
    /// are the effective ones (a CRM-counted cap's included), so the CRM's own record is not used.
    pub fn apply(&self, engine: &Engine, ledger: &mut Ledger) {
        for (id, v) in &self.members {
            let Some(m) = engine.member_index(id) else { continue };
            ledger.open[m] = v.open;
            ledger.recent[m] = assignments(v.last, &v.counts);
            if let Some(q) = ledger.crm_recent.get_mut(m) {
                q.clear();
            }
            ledger.reentry[m] = v.reentry;
            ledger.away[m] = v.away;
            if let Some(p) = ledger.paused.get_mut(m) {
                *p = v.paused;
            }
            ledger.recent_here.retain(|(who, _), _| **who != **id);
            for (team, counts) in &v.here {
                let key: (Arc<str>, Arc<str>) = (Arc::from(id.as_str()), Arc::from(team.as_str()));
                ledger.recent_here.insert(key, assignments(None, counts));
            }
        }
        // The turns it speaks for are as it saw them: one it lacks was not taken yet.
        ledger.cursors.retain(|k, _| !self.speaks_for(k));
        ledger.weights.retain(|k, _| !self.speaks_for(k));
        for (k, c) in &self.cursors {
            ledger.cursors.insert(k.clone(), c.clone());
        }
        for (k, w) in &self.weights {
            ledger.weights.insert(k.clone(), w.iter().map(|(a, b)| (a.clone(), *b)).collect());
        }
        ledger.crm_read_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_put_back_count_as_each_window_counted_with_the_newest_last() {
        let q = assignments(Some(1_000), &[(500, 5), (900, 3), (990, 1)]);
        let since = |from: i64| q.iter().filter(|t| **t >= from).count();
        assert_eq!((since(990), since(900), since(500)), (1, 3, 5), "{q:?}");
        assert_eq!(q.back(), Some(&1_000), "the tie-break reads the newest");
        assert!(assignments(None, &[]).is_empty());
    }
}
