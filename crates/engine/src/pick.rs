//! Choosing one member among the eligible candidates of a rule: the `member = …` strategies.
//!
//! Owns the pick strategies and their turn state in the [`Ledger`] (round-robin cursors and
//! weighted round-robin weights). Turns are kept per team, shared by every rule that feeds it
//! (or per (rule, team) when a rule asks for its own), in the id column's natural order, so two
//! rules feeding one team never give one member two turns, and a rule that picks in several teams
//! never lets one team's turns skip members of another. Like the rest of the engine it does no I/O and reads no clock.

use std::cmp::Ordering;
use std::collections::HashMap;

use rand::Rng;

use super::{Cands, Engine, Facts, Ledger, Pick, Rule};

/// Pick state one assignment changed, so a rolled-back transaction can restore it.
#[derive(Debug, Clone, PartialEq)]
pub enum PickUndo {
    /// The round-robin cursor under `key` was `prev`.
    Cursor { key: String, prev: Option<String> },
    /// The smooth weighted round-robin weights under `key` were `prev`.
    Weights { key: String, prev: HashMap<String, i64> },
}

/// The member picked, the team it came through, why, and the pick state to restore on undo.
#[derive(Debug)]
pub(super) struct Picked {
    pub m: usize,
    pub t: usize,
    pub why: String,
    pub undo: Vec<PickUndo>,
}

/// The id column's natural order: integer ids by value (before any other id), everything else as
/// text. So "6" comes before "10", and uuids and char(36) keys go in their text order.
pub fn id_order(a: &str, b: &str) -> Ordering {
    id_key(a).cmp(&id_key(b))
}

/// The sort key of [`id_order`], to compute once per id.
pub fn id_key(id: &str) -> (bool, i128, &str) {
    match id.trim().parse::<i128>() {
        Ok(n) => (false, n, id),
        Err(_) => (true, 0, id),
    }
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    /// `outside`: candidates left out by their remit (`accepts`) who are otherwise eligible; only
    /// a sticky pick that ignores remits may take one of them.
    pub(super) fn pick(
        &self,
        pick: &Pick,
        rule: &Rule,
        eligible: &Cands,
        outside: &Cands,
        facts: &Facts<'_>,
        ledger: &mut Ledger,
        now: i64,
        rng: &mut dyn Rng,
    ) -> Result<Picked, String> {
        let n = eligible.len();
        let plain = |(m, t): (usize, usize), why: String| Picked { m, t, why, undo: Vec::new() };
        match pick {
            Pick::Random => {
                let c = *eligible.get((rng.next_u64() % n.max(1) as u64) as usize).ok_or("no candidate")?;
                Ok(plain(c, format!("random among {n} eligible")))
            }
            Pick::FewestOpen => {
                let mut best: Option<(i64, i64, usize, usize)> = None; // (load, last assigned, m, t)
                for &(m, t) in eligible {
                    let load = self.effective_load(m, ledger, now);
                    let last = ledger.recent[m].back().copied().unwrap_or(i64::MIN);
                    if best.is_none_or(|(l, la, _, _)| (load, last) < (l, la)) {
                        best = Some((load, last, m, t));
                    }
                }
                let (load, _, m, t) = best.ok_or("no candidate")?;
                let extra =
                    if load != ledger.open[m] { format!(", {} with the re-entry ramp", load) } else { String::new() };
                Ok(plain((m, t), format!("fewest open opportunities ({}{extra}) among {n} eligible", ledger.open[m])))
            }
            Pick::RoundRobin => self.take_turn(false, rule, eligible, ledger),
            Pick::WeightedRoundRobin => self.take_turn(true, rule, eligible, ledger),
            Pick::BestKpi => {
                let mut best: Option<(f64, i64, usize, usize)> = None;
                for &(m, t) in eligible {
                    let k = self.members[m].kpi.unwrap_or(f64::NEG_INFINITY);
                    let load = ledger.open[m];
                    if best.is_none_or(|(bk, bl, _, _)| k > bk || (k == bk && load < bl)) {
                        best = Some((k, load, m, t));
                    }
                }
                let (k, _, m, t) = best.ok_or("no candidate")?;
                let shown = if k.is_finite() { format!("{k}") } else { "none".into() };
                Ok(plain((m, t), format!("best KPI score ({shown}) among {n} eligible")))
            }
            Pick::Owner { fields, otherwise, ignore_remit } => {
                let mut notes = Vec::new();
                for (f, name) in fields {
                    let Some(v) = facts.original(*f) else {
                        notes.push(format!("{name} is empty"));
                        continue;
                    };
                    let Some(m) = self.member_index(v) else {
                        notes.push(format!("{name} `{v}` is not a member"));
                        continue;
                    };
                    if let Some(&c) = eligible.iter().find(|(c, _)| *c == m) {
                        let mut why = format!("{name} `{v}` is eligible");
                        if !notes.is_empty() {
                            why = format!("{why} ({})", notes.join("; "));
                        }
                        return Ok(plain(c, why));
                    }
                    match outside.iter().find(|(c, _)| *c == m) {
                        Some(&c) if *ignore_remit => {
                            let why = format!("{name} `{v}` is eligible; outside their remit, kept: the rule ignores remits (ignore_remit = true)");
                            return Ok(plain(c, why));
                        }
                        Some(_) => notes.push(format!("{name} `{v}` is outside their remit (the rule respects remits)")),
                        None => notes.push(format!("{name} `{v}` is not eligible (paused, at cap, away, or outside this rule's team and filters)")),
                    }
                }
                match otherwise {
                    Some(p) => {
                        let mut picked = self.pick(p, rule, eligible, &Vec::new(), facts, ledger, now, rng)?;
                        picked.why = format!("{} ({})", picked.why, notes.join("; "));
                        Ok(picked)
                    }
                    None => Err(notes.join("; ")),
                }
            }
        }
    }

    /// Round robin (weighted or not), with turns per (rule, team). When the candidates come
    /// through several teams, the team is chosen first, in proportion to its eligible members (or
    /// their weights), then the member by that team's own turn.
    fn take_turn(&self, weighted: bool, rule: &Rule, eligible: &Cands, ledger: &mut Ledger) -> Result<Picked, String> {
        let weight = |m: usize| if weighted { i64::from(self.members[m].weight) } else { 1 };
        let mut undo = Vec::new();
        let (t, team_why) = self.choose_team(rule, eligible, &weight, ledger, &mut undo).ok_or("no candidate")?;
        let in_team: Vec<usize> = eligible.iter().filter(|c| c.1 == t).map(|c| c.0).collect();
        let team = &self.teams[t];
        let key = turn_key(rule, &team.id);
        let n = in_team.len();
        let (m, why) = if weighted {
            let state = ledger.weights.entry(key.clone()).or_default();
            undo.push(PickUndo::Weights { key: key.clone(), prev: state.clone() });
            let m = smooth_weighted(state, in_team.iter().map(|&m| (m, &*self.members[m].id, weight(m))), |m| {
                self.members[m].rank
            })
            .ok_or("no candidate")?;
            let total: i64 = in_team.iter().map(|&m| weight(m)).sum();
            (m, format!("weighted round robin in team `{}` (weight {} of {total})", team.id, weight(m)))
        } else {
            let prev = ledger.cursors.get(&key).cloned();
            // The next member after the last one picked, in id order, wrapping around.
            let after = prev.as_deref().map_or(0, |p| {
                let p = id_key(p);
                self.sorted_ids.partition_point(|id| id_key(id) <= p) as u32
            });
            let rank = |m: &usize| self.members[*m].rank;
            let m = in_team
                .iter()
                .filter(|m| rank(m) >= after)
                .min_by_key(|m| rank(m))
                .or_else(|| in_team.iter().min_by_key(|m| rank(m)))
                .copied()
                .ok_or("no candidate")?;
            ledger.cursors.insert(key.clone(), self.members[m].id.to_string());
            undo.push(PickUndo::Cursor { key: key.clone(), prev: prev.clone() });
            let whose = if rule.own_turn { "this rule's own turn" } else { "the team's turn" };
            let why = format!(
                "round robin in team `{}` ({whose}): next after `{}` among {n} eligible",
                team.id,
                prev.as_deref().unwrap_or("-")
            );
            (m, why)
        };
        ledger.dirty.push(key);
        let why = match team_why {
            Some(tw) => format!("{tw}; {why}"),
            None => why,
        };
        Ok(Picked { m, t, why, undo })
    }

    /// The team whose turn it is among the candidates' teams: smooth weighted round robin over the
    /// teams, each weighing what its eligible members weigh, with its state under the rule and
    /// that set of teams. `None` without candidates; no reason when there is only one team.
    fn choose_team(
        &self,
        rule: &Rule,
        eligible: &Cands,
        weight: &dyn Fn(usize) -> i64,
        ledger: &mut Ledger,
        undo: &mut Vec<PickUndo>,
    ) -> Option<(usize, Option<String>)> {
        let mut teams: Vec<(usize, i64)> = Vec::new();
        for &(m, t) in eligible {
            match teams.iter_mut().find(|(x, _)| *x == t) {
                Some((_, w)) => *w += weight(m),
                None => teams.push((t, weight(m))),
            }
        }
        if teams.len() <= 1 {
            return teams.first().map(|(t, _)| (*t, None));
        }
        teams.sort_by(|a, b| id_order(&self.teams[a.0].id, &self.teams[b.0].id));
        let names: Vec<&str> = teams.iter().map(|(t, _)| &*self.teams[*t].id).collect();
        let key = format!("{}@{}", rule.key, names.join("+"));
        let state = ledger.weights.entry(key.clone()).or_default();
        undo.push(PickUndo::Weights { key: key.clone(), prev: state.clone() });
        let order: HashMap<usize, u32> = teams.iter().enumerate().map(|(i, (t, _))| (*t, i as u32)).collect();
        let t = smooth_weighted(state, teams.iter().map(|&(t, w)| (t, &*self.teams[t].id, w)), |t| {
            order.get(&t).copied().unwrap_or(u32::MAX)
        })?;
        ledger.dirty.push(key);
        Some((t, Some(format!("team `{}`'s turn among {} teams", self.teams[t].id, teams.len()))))
    }
}

/// Where a team's round-robin turn is kept: the team's one turn (`team:<id>`), shared by every
/// rule that feeds it, or the rule's own in that team (`<pipeline>/<rule>@<id>`, `turn = "rule"`).
pub fn turn_key(rule: &Rule, team: &str) -> String {
    if rule.own_turn {
        format!("{}@{team}", rule.key)
    } else {
        format!("team:{team}")
    }
}

/// One step of smooth weighted round robin over `(item, state id, weight)`: every item gains its
/// weight, the one with the most goes (ties in `order`), and gives back the total.
fn smooth_weighted<'a>(
    state: &mut HashMap<String, i64>,
    items: impl Iterator<Item = (usize, &'a str, i64)>,
    order: impl Fn(usize) -> u32,
) -> Option<usize> {
    let mut total = 0;
    let mut best: Option<(i64, u32, usize, &'a str)> = None;
    for (item, id, w) in items {
        total += w;
        let cw = state.entry(id.to_string()).or_insert(0);
        *cw += w;
        let rank = order(item);
        if best.is_none_or(|(b, r, _, _)| *cw > b || (*cw == b && rank < r)) {
            best = Some((*cw, rank, item, id));
        }
    }
    let (_, _, item, id) = best?;
    if let Some(cw) = state.get_mut(id) {
        *cw -= total;
    }
    Some(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_naturally() {
        let mut ids = vec!["10", "6", "b", "A", "-1", "9"];
        ids.sort_by(|a, b| id_order(a, b));
        assert_eq!(ids, ["-1", "6", "9", "10", "A", "b"]);
    }
}
