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

#[cfg(test)]
mod tests {
    use super::*;

    const PEOPLE: &str = r#"
[[member]]
id = "1"
max_open = 40
[[member]]
id = "2"
caps = [{ max = 150, per = "24h" }, { max = 3000, per = "30d" }]
[[member]]
id = "3"
caps = [{ max = 50, per = "day", timezone = "Asia/Ho_Chi_Minh" }]
[[team]]
id = "t"
pipelines = ["retail"]
members = ["1", "2", "3"]
[[pipeline]]
id = "retail"
fallback_owner = "1"
[[pipeline.rule]]
id = "r"
team = { id = "t" }
member = "fewest_open"
"#;

    fn need(text: &str) -> HistoryNeed {
        HistoryNeed::of(&crate::rules::compile_texts(&[("p.toml", text)], &[]).expect("rules"))
    }

    #[test]
    fn a_member_needs_as_many_of_its_latest_assignments_as_its_largest_windowed_cap_and_at_least_one() {
        let n = need(PEOPLE);
        let of = |m: &str| n.depth.get(&(Arc::from(m), None)).copied();
        assert_eq!((of("1"), of("2"), of("3")), (Some(1), Some(3000), Some(50)), "an open cap reads no history");
        assert_eq!(n.window, 30 * 86_400, "within the longest window");
        let (members, teams, depths) = n.columns();
        assert_eq!((members.len(), teams.len(), depths.len()), (3, 3, 3));
    }

    #[test]
    fn a_larger_cap_a_longer_window_or_a_new_member_needs_a_fresh_read() {
        let read = need(PEOPLE);
        assert!(read.covers(&read));
        assert!(read.covers(&need(&PEOPLE.replace("max = 150", "max = 100"))), "a smaller cap");
        assert!(!read.covers(&need(&PEOPLE.replace("max = 3000", "max = 3001"))), "a larger cap");
        assert!(!read.covers(&need(&PEOPLE.replace("30d", "31d"))), "a longer window");
        let more = PEOPLE.replace("[[team]]", "[[member]]\nid = \"4\"\n[[team]]").replace("\"3\"]", "\"3\", \"4\"]");
        assert!(!read.covers(&need(&more)), "a new member");
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
