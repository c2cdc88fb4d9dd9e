//! What changed between two rule sets, in words an admin reads in the log: "rules ~retail/vip;
//! members +107 -103". Exact (two sets that route alike have no difference, whatever their
//! comments, formatting or file names) and bounded (a huge edit names the first few of each kind
//! and counts the rest).

use std::collections::BTreeMap;

use crate::engine::Engine;
pub use crate::rules::bounded;

/// At most this many names per kind of thing in a summary.
const NAMES_PER_KIND: usize = 12;

/// The rule set as it routes: per kind, one readable entry per thing (by id).
pub type Digest = BTreeMap<&'static str, BTreeMap<String, String>>;

/// Canonical text of a compiled value: its JSON (fields in order, maps sorted, symbols skipped).
/// Never `Debug` output, whose form a dependency may change and which prints a hash set in any
/// order.
pub(super) fn canon<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The [`Digest`] of a set. Symbols are resolved to their names and every collection is ordered,
/// so equal entries mean equal behaviour.
pub fn digest(e: &Engine) -> Digest {
    let mut names: Vec<&str> = vec![""; e.symbols.len()];
    for (s, i) in &e.symbols {
        if let Some(slot) = names.get_mut(*i as usize) {
            *slot = s;
        }
    }
    let sym = |xs: &[u32]| {
        let mut v: Vec<&str> = xs.iter().map(|i| names.get(*i as usize).copied().unwrap_or("?")).collect();
        v.sort_unstable();
        v.join(",")
    };
    let terr = |xs: &[u32]| {
        let mut v: Vec<&str> =
            xs.iter().map(|i| e.territories.codes.get(*i as usize).map_or("?", String::as_str)).collect();
        v.sort_unstable();
        v.join(",")
    };
    let mut out: BTreeMap<&'static str, BTreeMap<String, String>> = BTreeMap::new();
    let settings =
        canon(&(&e.global_fallback, e.hold_max, e.hold_retry, e.reentry_ramp, e.history, &e.tag_rules, &e.schedules));
    out.entry("settings").or_default().insert("settings".into(), settings);
    // Every name a territory answers to, gathered in one pass over the index.
    let mut aliases: Vec<Vec<&str>> = vec![Vec::new(); e.territories.codes.len()];
    for (name, n) in &e.territories.index {
        if let Some(a) = aliases.get_mut(*n as usize) {
            a.push(name);
        }
    }
    for (i, code) in e.territories.codes.iter().enumerate() {
        let parent = e.territories.parent[i].and_then(|p| e.territories.codes.get(p as usize));
        aliases[i].sort_unstable();
        out.entry("territories").or_default().insert(code.clone(), canon(&(parent, &aliases[i])));
    }
    for (id, p) in &e.pipelines {
        let teams: Vec<&str> = p.teams.iter().map(|t| &*e.teams[*t].id).collect();
        out.entry("pipelines")
            .or_default()
            .insert(id.clone(), canon(&(&p.fallback_owner, &p.reclaim, teams, &p.require, p.rules.len())));
        for (pos, r) in p.rules.iter().enumerate() {
            let team = match &r.team {
                crate::engine::TeamStage::Fixed(t) => format!("Fixed({})", e.teams[*t].id),
                other => canon(other),
            };
            // A filter's attribute symbol is skipped: its name is there.
            let text = canon(&(pos, &r.when, team, &r.filters, &r.pick, r.when_full, r.when_away, r.own_turn));
            out.entry("rules").or_default().insert(r.key.clone(), text);
        }
    }
    for t in &e.teams {
        let mut members: Vec<&str> = t.members.iter().map(|m| &*e.members[*m].id).collect();
        members.sort_unstable();
        // Per membership, by member id: paused here, this team's own caps, the remit here.
        let id = |m: &usize| &*e.members[*m].id;
        let mut paused: Vec<&str> = t.paused_here.iter().map(id).collect();
        paused.sort_unstable();
        let mut caps: Vec<(&str, String)> = t.caps_here.iter().map(|(m, c)| (id(m), canon(c))).collect();
        caps.sort_unstable();
        let mut remits: Vec<(&str, String)> = t.remits.iter().map(|(m, c)| (id(m), canon(c))).collect();
        remits.sort_unstable();
        let here = canon(&(paused, caps, remits, &t.accepts));
        let text = canon(&(&t.name, &t.crm_id, &t.lead, members, terr(&t.territories), sym(&t.tags), here));
        out.entry("teams").or_default().insert(t.id.to_string(), text);
    }
    for m in &e.members {
        let mut attributes: Vec<(&str, &str)> = m
            .attributes
            .iter()
            .map(|(a, v)| {
                (names.get(*a as usize).copied().unwrap_or("?"), names.get(*v as usize).copied().unwrap_or("?"))
            })
            .collect();
        attributes.sort_unstable();
        let schedule = m.schedule.and_then(|s| e.schedules.get(s as usize));
        let text = canon(&(
            &m.name,
            m.active,
            m.paused,
            &m.caps,
            m.weight,
            m.kpi,
            attributes,
            sym(&m.products),
            sym(&m.categories),
            terr(&m.territories),
            sym(&m.tags),
            schedule,
            &m.accepts,
        ));
        out.entry("members").or_default().insert(m.id.to_string(), text);
    }
    out
}

/// "pipelines +wealth ~retail; rules +retail/x; members -103 ~101" (added, removed, changed), or
/// `None` when the two sets route alike.
pub fn summarize(old: &Engine, new: &Engine) -> Option<String> {
    summarize_digests(&digest(old), &digest(new))
}

/// [`summarize`] from digests already made.
pub fn summarize_digests(old: &Digest, new: &Digest) -> Option<String> {
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    for kind in ["settings", "territories", "pipelines", "rules", "teams", "members"] {
        let (o, n) = (old.get(kind).unwrap_or(&empty), new.get(kind).unwrap_or(&empty));
        let mut parts = Vec::new();
        for (k, v) in n {
            match o.get(k) {
                None => parts.push(format!("+{k}")),
                Some(ov) if ov != v => parts.push(format!("~{k}")),
                _ => {}
            }
        }
        parts.extend(o.keys().filter(|k| !n.contains_key(*k)).map(|k| format!("-{k}")));
        if parts.is_empty() {
            continue;
        }
        if kind == "settings" {
            out.push("settings changed".to_string());
            continue;
        }
        let more = parts.len().saturating_sub(NAMES_PER_KIND);
        parts.truncate(NAMES_PER_KIND);
        let parts: Vec<String> = parts.into_iter().map(|p| bounded(&p, 60)).collect();
        let tail = if more > 0 { format!(" … and {more} more") } else { String::new() };
        out.push(format!("{kind} {}{tail}", parts.join(" ")));
    }
    (!out.is_empty()).then(|| out.join("; "))
}
