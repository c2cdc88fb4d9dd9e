//! What changed about people between two rule sets, in words an admin or a sales manager reads in
//! the log: "Felix Wagner paused in sales-europe", "Hải's cap in danang-retail 2 per 30d → 0 per
//! 30d", "Quang joined danang-retail". Derived from the two compiled sets (the state the router
//! acts on), never from the CRM's rows or the files' text, so what is logged is what routes.
//!
//! It must not read anything: both sets are handed in. Bounded: a refresh that changes thousands
//! of people names the first [`MAX_LINES`] and counts the rest.

use std::collections::BTreeSet;

use crate::engine::{Cap, Engine, Member, Team, Window};

/// At most this many lines of people changes per reload.
pub const MAX_LINES: usize = 40;

/// A member's name and id as people read it: "Felix Wagner (301)", or the id alone.
fn who(m: &Member) -> String {
    crate::engine::person(&m.id, &m.name)
}

fn cap_words(c: &Cap) -> String {
    match &c.window {
        Window::Open => format!("{} open", c.max),
        Window::Rolling(secs) => format!("{} per {}", c.max, span_words(*secs)),
        Window::Day(_) => format!("{} per {}", c.max, c.label),
    }
}

/// "30 days", "12 hours", "90 minutes", "1 day": a rolling window as people say it.
fn span_words(secs: i64) -> String {
    let (n, unit) = match secs {
        s if s > 0 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s > 0 && s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s > 0 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn caps_words(caps: &[&Cap]) -> String {
    if caps.is_empty() {
        return "none".into();
    }
    caps.iter().map(|c| cap_words(c)).collect::<Vec<_>>().join(", ")
}

/// Every change about people from `old` to `new`, one line each (bounded), in member id order.
pub fn changes(old: &Engine, new: &Engine) -> Vec<String> {
    let mut out = Vec::new();
    let mut ids: BTreeSet<&str> = old.member_ids().collect();
    ids.extend(new.member_ids());
    for id in ids {
        match (old.member_index(id), new.member_index(id)) {
            (None, Some(n)) => out.push(format!("{} added", who(&new.members[n]))),
            (Some(o), None) => out.push(format!("{} removed", who(&old.members[o]))),
            (Some(o), Some(n)) => member_changes(old, o, new, n, &mut out),
            (None, None) => {}
        }
    }
    team_changes(old, new, &mut out);
    if out.len() > MAX_LINES {
        let more = out.len() - MAX_LINES;
        out.truncate(MAX_LINES);
        out.push(format!("… and {more} more change(s) about people"));
    }
    out
}

fn member_changes(old: &Engine, o: usize, new: &Engine, n: usize, out: &mut Vec<String>) {
    let (a, b) = (&old.members[o], &new.members[n]);
    let name = who(b);
    if a.active != b.active {
        out.push(format!("{name} {}", if b.active { "activated" } else { "disabled" }));
    }
    if a.paused != b.paused {
        out.push(format!("{name} {}", if b.paused { "paused" } else { "un-paused" }));
    }
    let (ca, cb): (Vec<&Cap>, Vec<&Cap>) = (a.caps.iter().collect(), b.caps.iter().collect());
    if caps_words(&ca) != caps_words(&cb) {
        out.push(format!("{name}'s cap {} → {}", caps_words(&ca), caps_words(&cb)));
    }
    if a.weight != b.weight {
        out.push(format!("{name}'s weight {} → {}", a.weight, b.weight));
    }
    if a.accepts.as_ref().map(remit_text) != b.accepts.as_ref().map(remit_text) {
        out.push(format!("{name}'s remit changed"));
    }
}

fn remit_text(c: &crate::engine::cond::Cond) -> String {
    super::summary::canon(c)
}

/// A membership as people read it, by member id: paused here, this team's caps, remit here.
struct Here {
    paused: bool,
    caps: String,
    remit: Option<String>,
}

fn here(t: &Team, m: usize) -> Here {
    let caps: Vec<&Cap> = t.caps_here.iter().filter(|(x, _)| *x == m).map(|(_, c)| c).collect();
    Here {
        paused: t.paused_here.contains(&m),
        caps: caps_words(&caps),
        remit: t.remits.iter().find(|(x, _)| *x == m).map(|(_, c)| remit_text(c)),
    }
}

fn team_changes(old: &Engine, new: &Engine, out: &mut Vec<String>) {
    for t in &new.teams {
        let Some(ot) = old.team_index.get(&*t.id).map(|i| &old.teams[*i]) else { continue };
        let mut ids: BTreeSet<&str> = ot.members.iter().map(|m| &*old.members[*m].id).collect();
        ids.extend(t.members.iter().map(|m| &*new.members[*m].id));
        for id in ids {
            let was = old.member_index(id).filter(|m| ot.members.contains(m));
            let is = new.member_index(id).filter(|m| t.members.contains(m));
            match (was, is) {
                (None, Some(n)) => out.push(format!("{} joined {}", who(&new.members[n]), t.id)),
                (Some(o), None) => out.push(format!("{} left {}", who(&old.members[o]), t.id)),
                (Some(o), Some(n)) => {
                    let (a, b) = (here(ot, o), here(t, n));
                    let name = who(&new.members[n]);
                    if a.paused != b.paused {
                        let what = if b.paused { "paused" } else { "un-paused" };
                        out.push(format!("{name} {what} in {}", t.id));
                    }
                    if a.caps != b.caps {
                        out.push(format!("{name}'s cap in {} {} → {}", t.id, a.caps, b.caps));
                    }
                    if a.remit != b.remit {
                        out.push(format!("{name}'s remit in {} changed", t.id));
                    }
                }
                (None, None) => {}
            }
        }
    }
}
