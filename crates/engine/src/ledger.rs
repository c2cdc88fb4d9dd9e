//! The engine's mutable state: what it must remember between decisions. Owned by the drain
//! (restored from the router's tables on start), handed to the engine by `&mut`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::{Engine, PickUndo};

/// Per-member counters, aligned with an [`Engine`]'s member order, plus pick state by rule key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// Open opportunities per member.
    pub open: Vec<i64>,
    /// Epoch seconds of recent assignments per member, oldest first (for rolling and daily caps).
    pub recent: Vec<VecDeque<i64>>,
    /// When the member came back from a pause or a holiday, and the load deficit they had then
    /// (the fair re-entry ramp).
    pub reentry: Vec<Option<(i64, i64)>>,
    /// Whether the member was away (paused, inactive, out of office) when last considered.
    pub away: Vec<bool>,
    /// Members paused by the reclaim ladder for letting opportunities lapse (the router's
    /// `member_pauses`), until an admin lifts it.
    pub paused: Vec<bool>,
    /// Round robin: the member id last picked, per `rule key@team`.
    pub cursors: HashMap<String, String>,
    /// Smooth weighted round robin: current weight per member id, per `rule key@team` (and per
    /// team id, per `rule key@team+team…`, for the team whose turn it is among several).
    pub weights: HashMap<String, HashMap<String, i64>>,
    /// Rule keys whose cursor or weights changed since the last [`Ledger::take_dirty`].
    pub dirty: Vec<String>,
    /// Epoch seconds of recent assignments per (member id, team id), oldest first, for the caps
    /// that hold in one team only (kept for memberships with such a cap).
    pub recent_here: HashMap<(Arc<str>, Arc<str>), VecDeque<i64>>,
    /// The CRM's own record of assignments per member (epoch seconds, oldest first), manual ones
    /// included, as read at [`Ledger::crm_read_at`]: what caps with `count = "crm"` count.
    pub crm_recent: Vec<VecDeque<i64>>,
    /// When the CRM's assignments were read (epoch seconds, taken before the read, between
    /// rounds: every assignment the router made before it is in the CRM's record). `None`:
    /// never read, and those caps count the router's own.
    pub crm_read_at: Option<i64>,
}

/// A member's away flag and re-entry ramp as they were before a decision changed them.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagUndo {
    pub member: usize,
    pub away: bool,
    pub reentry: Option<(i64, i64)>,
}

/// Everything one decision changed in the ledger, so it can be undone if its transaction does
/// not commit.
#[derive(Debug, Clone, Default)]
pub struct Undo {
    /// The assignment made: the member and when (epoch seconds).
    pub assigned: Option<(usize, i64)>,
    /// The pick state it changed (turns per rule and team).
    pub picks: Vec<PickUndo>,
    /// (member id, team id) when it counted against a cap of that team.
    pub here: Option<(Arc<str>, Arc<str>)>,
    /// Away flags and re-entry ramps it changed, as they were before.
    pub flags: Vec<FlagUndo>,
}

impl Ledger {
    /// A ledger for `engine`, carrying over what `old` (for `old_engine`) knew, matched by member id.
    pub fn for_engine(engine: &Engine, old: Option<(&Engine, &Ledger)>) -> Ledger {
        let n = engine.members.len();
        let mut l = Ledger {
            open: vec![0; n],
            recent: vec![VecDeque::new(); n],
            reentry: vec![None; n],
            away: vec![false; n],
            paused: vec![false; n],
            crm_recent: vec![VecDeque::new(); n],
            ..Default::default()
        };
        if let Some((oe, ol)) = old {
            for (i, m) in engine.members.iter().enumerate() {
                if let Some(j) = oe.member_index(&m.id) {
                    l.open[i] = ol.open[j];
                    l.recent[i] = ol.recent[j].clone();
                    l.crm_recent[i] = ol.crm_recent.get(j).cloned().unwrap_or_default();
                    l.reentry[i] = ol.reentry[j];
                    l.paused[i] = ol.paused.get(j).copied().unwrap_or(false);
                    // A member paused or disabled in the old rules and not in the new ones is
                    // coming back (they re-enter level with the others, not with their deficit).
                    let (was, is) = (&oe.members[j], m);
                    l.away[i] = ol.away[j] || (was.paused && !is.paused) || (!was.active && is.active);
                }
            }
            l.crm_read_at = ol.crm_read_at;
            l.cursors = ol.cursors.clone();
            l.weights = ol.weights.clone();
            l.recent_here = ol.recent_here.clone();
        }
        l
    }

    /// Mark exactly these members (CRM user ids) as paused for lapses; unknown ids are ignored.
    /// Returns the members whose state changed.
    pub fn set_paused<'a>(&mut self, engine: &Engine, ids: impl IntoIterator<Item = &'a str>) -> usize {
        let mut now = vec![false; engine.members.len()];
        for id in ids {
            if let Some(m) = engine.member_index(id) {
                now[m] = true;
            }
        }
        self.paused.resize(engine.members.len(), false);
        let changed = self.paused.iter().zip(&now).filter(|(a, b)| a != b).count();
        self.paused = now;
        changed
    }

    /// Forget assignments older than `horizon` seconds before `now`.
    pub fn trim(&mut self, now: i64, horizon: i64) {
        for q in self.recent.iter_mut().chain(self.recent_here.values_mut()).chain(self.crm_recent.iter_mut()) {
            while q.front().is_some_and(|t| *t < now - horizon) {
                q.pop_front();
            }
        }
    }

    /// Assignments of member `m` at or after `since`.
    pub fn assigned_since(&self, m: usize, since: i64) -> usize {
        let q = &self.recent[m];
        q.len() - q.partition_point(|t| *t < since)
    }

    /// Assignments of member `m` at or after `since` as a cap with `count = "crm"` counts them:
    /// the CRM's record as last read, plus the router's own since (`at` ≥ the read: one made in
    /// that very second may count twice, never not at all); never fewer than the router's own in
    /// the window (a CRM whose column missed the router's writes still holds the cap).
    pub fn crm_assigned_since(&self, m: usize, since: i64) -> usize {
        let own = self.assigned_since(m, since);
        let Some(read_at) = self.crm_read_at else { return own };
        let crm = self.crm_recent.get(m).map_or(0, |q| q.len() - q.partition_point(|t| *t < since));
        (crm + self.assigned_since(m, since.max(read_at))).max(own)
    }

    /// Put the CRM's record of assignments in, read at `read_at` (epoch seconds): `(member, at)`.
    pub fn set_crm_assigned(&mut self, engine: &Engine, rows: impl IntoIterator<Item = (usize, i64)>, read_at: i64) {
        self.crm_recent = vec![VecDeque::new(); engine.members.len()];
        for (m, at) in rows {
            if let Some(q) = self.crm_recent.get_mut(m) {
                q.push_back(at);
            }
        }
        self.crm_recent.iter_mut().for_each(|q| q.make_contiguous().sort_unstable());
        self.crm_read_at = Some(read_at);
    }

    /// Assignments of `member` through `team` at or after `since`.
    pub fn assigned_here(&self, member: &Arc<str>, team: &Arc<str>, since: i64) -> usize {
        // Keyed by the engine's own ids: a lookup clones two reference counts, allocates nothing.
        let key = (member.clone(), team.clone());
        self.recent_here.get(&key).map_or(0, |q| q.len() - q.partition_point(|t| *t < since))
    }

    /// Record an assignment through a team with a cap of its own for this member.
    pub fn assign_here(&mut self, member: &Arc<str>, team: &Arc<str>, at: i64) {
        let q = self.recent_here.entry((member.clone(), team.clone())).or_default();
        let pos = q.partition_point(|t| *t <= at);
        q.insert(pos, at);
    }

    /// Record an assignment (the engine calls this for every decision it makes).
    pub fn assign(&mut self, m: usize, at: i64) {
        self.open[m] += 1;
        let q = &mut self.recent[m];
        let pos = q.partition_point(|t| *t <= at);
        q.insert(pos, at);
    }

    /// Take back the load and history of an assignment (its pick state stays as it is).
    pub fn unassign(&mut self, m: usize, at: i64) {
        self.open[m] = (self.open[m] - 1).max(0);
        let q = &mut self.recent[m];
        if let Some(pos) = q.iter().rposition(|t| *t == at) {
            q.remove(pos);
        }
    }

    /// Undo a decision whose transaction rolled back: its assignment, pick state, away flags and
    /// re-entry ramps, as if it had never been made.
    pub fn undo(&mut self, u: &Undo) {
        self.undo_load(u);
        for p in u.picks.iter().rev() {
            match p {
                PickUndo::Cursor { key, prev: Some(prev) } => {
                    self.cursors.insert(key.clone(), prev.clone());
                }
                PickUndo::Cursor { key, prev: None } => {
                    self.cursors.remove(key);
                }
                PickUndo::Weights { key, prev } if prev.is_empty() => {
                    self.weights.remove(key);
                }
                PickUndo::Weights { key, prev } => {
                    self.weights.insert(key.clone(), prev.clone());
                }
            }
        }
        for f in u.flags.iter().rev() {
            self.away[f.member] = f.away;
            self.reentry[f.member] = f.reentry;
        }
    }

    /// Undo only the load and history of a decision whose transaction rolled back (they add up in
    /// any order): for when other decisions were made since, whose turns and flags stay.
    pub fn undo_load(&mut self, u: &Undo) {
        if let Some((m, at)) = u.assigned {
            self.unassign(m, at);
        }
        if let Some(k) = &u.here {
            if let Some(q) = self.recent_here.get_mut(k) {
                if let Some(pos) = q.iter().rposition(|t| Some(*t) == u.assigned.map(|a| a.1)) {
                    q.remove(pos);
                }
                if q.is_empty() {
                    self.recent_here.remove(k);
                }
            }
        }
    }

    /// The rule keys whose pick state changed, with their state, to persist.
    pub fn take_dirty(&mut self) -> Vec<String> {
        let mut d = std::mem::take(&mut self.dirty);
        d.sort();
        d.dedup();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> Ledger {
        Ledger {
            open: vec![0, 0],
            recent: vec![VecDeque::new(), VecDeque::new()],
            reentry: vec![None; 2],
            away: vec![false; 2],
            ..Default::default()
        }
    }

    #[test]
    fn undo_restores_load_history_and_the_round_robin_turn() {
        let mut l = ledger();
        l.cursors.insert("p/r".into(), "a".into());
        l.assign(1, 100);
        l.cursors.insert("p/r".into(), "b".into());
        let u = Undo {
            assigned: Some((1, 100)),
            picks: vec![PickUndo::Cursor { key: "p/r".into(), prev: Some("a".into()) }],
            ..Default::default()
        };
        l.undo(&u);
        assert_eq!(l.open, vec![0, 0]);
        assert!(l.recent[1].is_empty());
        assert_eq!(l.cursors.get("p/r").map(String::as_str), Some("a"));
    }

    #[test]
    fn the_crms_count_adds_the_routers_own_since_it_was_read_and_is_never_below_the_routers() {
        let mut l = ledger();
        l.assign(0, 50); // the router's, before the read: in the CRM's record too
        l.crm_recent = vec![VecDeque::from([20, 50, 60]), VecDeque::new()]; // 20 and 60 by hand
        l.crm_read_at = Some(70);
        l.assign(0, 80); // the router's, after the read
        assert_eq!(l.crm_assigned_since(0, 0), 4, "3 in the CRM's record and 1 since");
        assert_eq!(l.crm_assigned_since(0, 55), 2, "60 by hand, 80 by the router");
        // A CRM whose column missed the router's writes: never fewer than the router's own.
        l.assign(1, 30);
        l.assign(1, 40);
        assert_eq!(l.crm_assigned_since(1, 0), 2);
        l.crm_read_at = None;
        assert_eq!(l.crm_assigned_since(0, 0), 2, "never read: the router's own");
    }

    #[test]
    fn windows_count_and_trim_recent_assignments() {
        let mut l = ledger();
        for t in [10, 20, 30, 40] {
            l.assign(0, t);
        }
        assert_eq!(l.assigned_since(0, 25), 2);
        l.trim(45, 20);
        assert_eq!(l.recent[0].iter().copied().collect::<Vec<_>>(), vec![30, 40]);
        l.unassign(0, 30);
        assert_eq!((l.open[0], l.assigned_since(0, 0)), (3, 1));
    }
}
