//! What the ledger must know of past assignments for a rule set's caps to be exact, so a new
//! leader reads only that: per member, its latest assignments within the longest cap window, as
//! many as its largest windowed cap counts; per membership with a team's own cap, likewise
//! through that team.
//!
//! Why the latest `N` suffice: a cap of `max` counts assignments in a window ending now and is
//! reached at `used >= max`. Of the latest `N ≥ max` assignments, those inside any window ending
//! now are exactly the true ones when fewer than `N`, and at least `N` otherwise: either way the
//! cap is reached exactly when it truly is. Every member keeps at least its last one (the
//! fewest-open pick breaks ties by it). Pure data from the compiled rules: no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Engine, Window};

/// The past a rule set's caps need: per (member, team or `None` for all teams), how many of the
/// latest assignments within `window` seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryNeed {
    pub window: i64,
    pub depth: BTreeMap<(Arc<str>, Option<Arc<str>>), i64>,
}

impl HistoryNeed {
    /// What `engine`'s caps need.
    pub fn of(engine: &Engine) -> HistoryNeed {
        let mut depth = BTreeMap::new();
        for m in &engine.members {
            let most = m
                .caps
                .iter()
                .filter(|c| !matches!(c.window, Window::Open))
                .map(|c| i64::from(c.max))
                .max()
                .unwrap_or(0);
            depth.insert((m.id.clone(), None), most.max(1));
        }
        for t in &engine.teams {
            for (m, cap) in &t.caps_here {
                if let (Window::Rolling(_), Some(member)) = (&cap.window, engine.members.get(*m)) {
                    let d = depth.entry((member.id.clone(), Some(t.id.clone()))).or_insert(1);
                    *d = (*d).max(i64::from(cap.max));
                }
            }
        }
        HistoryNeed { window: engine.history, depth }
    }

    /// Whether what was read for `self` holds everything `other` needs: a new rule set with a
    /// longer window, a larger cap, or a member or membership new to it needs a fresh read.
    pub fn covers(&self, other: &HistoryNeed) -> bool {
        self.window >= other.window && other.depth.iter().all(|(k, d)| self.depth.get(k).is_some_and(|h| h >= d))
    }

    /// The read's parameters: member ids, team ids (`None`: through any team), depths.
    pub fn columns(&self) -> (Vec<&str>, Vec<Option<&str>>, Vec<i64>) {
        let members = self.depth.keys().map(|(m, _)| &**m).collect();
        let teams = self.depth.keys().map(|(_, t)| t.as_deref()).collect();
        let depths = self.depth.values().copied().collect();
        (members, teams, depths)
    }
}

/// The CRM's record a rule set's caps with `count = "crm"` need: the members with such a cap, and
/// how far back (seconds: the longest such window; a day's cap reads a day and a half, whatever
/// its time zone). Empty when no cap counts the CRM's assignments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrmCountNeed {
    pub members: Vec<String>,
    pub window: i64,
}

impl CrmCountNeed {
    pub fn of(engine: &Engine) -> CrmCountNeed {
        let mut need = CrmCountNeed::default();
        for m in &engine.members {
            let windows: Vec<i64> = m
                .caps
                .iter()
                .filter(|c| c.crm_count)
                .map(|c| match c.window {
                    Window::Rolling(secs) => secs,
                    Window::Day(_) | Window::Open => 36 * 3_600,
                })
                .collect();
            if let Some(w) = windows.into_iter().max() {
                need.members.push(m.id.to_string());
                need.window = need.window.max(w);
            }
        }
        need
    }
}
