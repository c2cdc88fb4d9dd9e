//! Who the rules in force pause, disable or cap: the leader records it with its heartbeat (from
//! the very set it routes with), and `status` prints it. Without a leader, `status` derives the
//! same from the files and the CRM as they are now, and says so.
//!
//! It must not read anything: the set is handed in.

use std::fmt::Write;

use crate::engine::{Engine, Member, Window};

/// Who the rules in force pause, disable or cap, by name.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct People {
    /// The set these come from.
    pub rules_version: String,
    /// Members paused in the rule files (they get nothing new).
    pub paused_in_rules: Vec<String>,
    /// Members disabled in the CRM (`directory.active_members` does not return them).
    pub inactive: Vec<String>,
    /// Members the CRM pauses in one team (`directory.team_members`' `paused` column).
    pub paused_in_teams: Vec<String>,
    /// Caps that hold in one team only (the CRM's per-membership maximum).
    pub caps_in_teams: Vec<String>,
    /// Caps that count the CRM's own assignments (`count = "crm"`), manual ones included.
    #[serde(default)]
    pub caps_counted_by_the_crm: Vec<String>,
    /// What the set warns about (a remit that never applies, a rule-file test the CRM broke).
    pub warnings: Vec<String>,
}

fn named(m: &Member) -> String {
    if *m.name == *m.id || m.name.is_empty() {
        m.id.to_string()
    } else {
        format!("{} ({})", m.id, m.name)
    }
}

/// [`People`] of a set, in member id and team order.
pub fn of(e: &Engine) -> People {
    let mut p = People { rules_version: e.version.clone(), warnings: e.warnings.clone(), ..Default::default() };
    let mut members: Vec<&Member> = e.members.iter().collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    p.paused_in_rules = members.iter().filter(|m| m.paused).map(|m| named(m)).collect();
    p.inactive = members.iter().filter(|m| !m.active).map(|m| named(m)).collect();
    for m in &members {
        for c in m.caps.iter().filter(|c| c.crm_count) {
            p.caps_counted_by_the_crm.push(format!("{}: {} per {}", named(m), c.max, c.label));
        }
    }
    for t in &e.teams {
        for m in t.paused_here.iter().map(|m| &e.members[*m]) {
            p.paused_in_teams.push(format!("{} in team {}", named(m), t.id));
        }
        for (m, c) in &t.caps_here {
            let per = match c.window {
                Window::Rolling(_) | Window::Day(_) => format!(" per {}", c.label),
                Window::Open => " open".into(),
            };
            p.caps_in_teams.push(format!("{} in team {}: {}{per}", named(&e.members[*m]), t.id, c.max));
        }
    }
    p
}

impl People {
    /// The lines `status` prints; `source` says where they come from.
    pub fn text(&self, source: &str, out: &mut String) {
        let _ = writeln!(out, "people, {source}:");
        let lines = [
            ("paused in the rule files", &self.paused_in_rules),
            ("disabled in the CRM", &self.inactive),
            ("paused in one team by the CRM", &self.paused_in_teams),
            ("capped in one team by the CRM", &self.caps_in_teams),
            ("caps counting the CRM's assignments (manual ones included)", &self.caps_counted_by_the_crm),
        ];
        let mut any = false;
        for (what, who) in lines {
            if !who.is_empty() {
                let _ = writeln!(out, "  {what}: {}", who.join(", "));
                any = true;
            }
        }
        if !any {
            let _ = writeln!(out, "  nobody paused, disabled or capped in one team");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
    }
}
