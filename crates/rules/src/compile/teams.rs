//! Teams: their members (from the files, and from the CRM's memberships by `crm_id`), the
//! pipelines they take part in, territories, tags, and the CRM's pauses and caps that hold in one
//! team only.

use std::collections::{HashMap, HashSet};

use super::Resolver;
use crate::format::{RawPipeline, RawTeam};
use crate::MembershipRule;
use engine::{self, Cap, Window};

impl Resolver<'_> {
    pub(super) fn teams(&mut self, teams: &[(usize, RawTeam)], pipelines: &[(usize, RawPipeline)]) {
        let pipeline_ids: HashSet<&str> = pipelines.iter().map(|(_, p)| p.id.as_str()).collect();
        for (fi, t) in teams {
            let key = format!("team `{}`", t.id);
            let members = self.team_members(*fi, &key, t);
            let accepts = t.accepts.as_ref().and_then(|c| self.cx.cond(*fi, &format!("{key}.accepts"), c));
            let remits = self.remits(*fi, &key, t);
            for p in &t.pipelines {
                if !pipeline_ids.contains(p.as_str()) {
                    self.cx.err(*fi, p, &format!("{key}.pipelines"), format!("unknown pipeline `{p}`"));
                }
            }
            if t.pipelines.is_empty() {
                self.cx.err(
                    *fi,
                    &t.id,
                    &format!("{key}.pipelines"),
                    "the team takes part in no pipeline; list at least one",
                );
            }
            let mut territories = self.territory_refs(*fi, &format!("{key}.territories"), &t.territories);
            for n in self.crm_team_territories(t.crm_id.as_deref()) {
                if !territories.contains(&n) {
                    territories.push(n);
                }
            }
            let (paused_here, caps_here) =
                membership_rules(t.crm_id.as_deref(), &self.directory.membership_rules, &self.member_index);
            for (_, c) in &caps_here {
                if let Window::Rolling(secs) = c.window {
                    self.history = self.history.max(secs);
                }
            }
            self.teams.push(engine::Team {
                id: t.id.as_str().into(),
                name: if t.name.is_empty() { t.id.clone() } else { t.name.clone() },
                crm_id: t.crm_id.clone(),
                lead: t.lead.clone(),
                members,
                territories,
                tags: self.sym.set(&t.tags),
                paused_here,
                caps_here,
                accepts,
                remits,
            });
            self.team_pipelines.push(t.pipelines.clone());
        }
        self.team_index = self.teams.iter().enumerate().map(|(i, t)| (t.id.to_string(), i)).collect();
    }

    /// Each member's remit inside the team (`members = [{ id, accepts }]`), by member index.
    fn remits(&mut self, fi: usize, key: &str, t: &RawTeam) -> Vec<(usize, engine::Cond)> {
        let mut remits = Vec::new();
        for m in &t.members {
            let (Some(c), Some(&i)) = (m.accepts(), self.member_index.get(m.id())) else { continue };
            if let Some(c) = self.cx.cond(fi, &format!("{key}.members `{}`.accepts", m.id()), c) {
                remits.push((i, c));
            }
        }
        remits
    }

    /// The team's members (indexes): those the file lists, then those the CRM adds.
    fn team_members(&mut self, fi: usize, key: &str, t: &RawTeam) -> Vec<usize> {
        let mut ms = Vec::new();
        for m in t.members.iter().map(|m| m.id()) {
            match self.member_index.get(m) {
                Some(i) => ms.push(*i),
                None => self.cx.err(
                    fi,
                    m,
                    &format!("{key}.members"),
                    format!("unknown member `{m}`; define it with [[member]] id = \"{m}\""),
                ),
            }
        }
        if let Some(crm) = &t.crm_id {
            for (_, member) in self.directory.memberships.iter().filter(|(team, _)| team == crm) {
                if let Some(i) = self.member_index.get(member) {
                    if !ms.contains(i) {
                        ms.push(*i);
                    }
                }
            }
        }
        if ms.is_empty() && t.members.is_empty() && !self.directory.memberships_from_crm {
            self.cx.err(
                fi,
                &t.id,
                &format!("{key}.members"),
                "the team has no members; list CRM user ids defined as [[member]]",
            );
        }
        ms
    }
}

/// The CRM's pauses and caps for the members of the team with this CRM id: (paused member
/// indexes, sorted; (member index, cap) pairs).
fn membership_rules(
    crm_id: Option<&str>,
    rules: &[MembershipRule],
    member_index: &HashMap<String, usize>,
) -> (Vec<usize>, Vec<(usize, Cap)>) {
    let (mut paused, mut caps) = (Vec::new(), Vec::new());
    let Some(crm_id) = crm_id else { return (paused, caps) };
    for r in rules.iter().filter(|r| r.team == crm_id) {
        let Some(&m) = member_index.get(&r.member) else { continue };
        if r.paused {
            paused.push(m);
        }
        if let Some((max, per)) = r.cap {
            let label = humantime::format_duration(std::time::Duration::from_secs(per.max(0) as u64)).to_string();
            caps.push((m, Cap { window: Window::Rolling(per), max, label, crm_count: false }));
        }
    }
    paused.sort_unstable();
    paused.dedup();
    (paused, caps)
}
